"""Registry entries for the smooth activations: tanh, softplus, logsigmoid, GELU, SiLU, Mish.

Their natural scales (checks.tolerance) say where torch's own formula is only absolutely accurate:
``1 - tanh^2`` (tanh's, GELU-tanh's and Mish's gradients), ``1 - sigmoid`` (SiLU's) and
``1 + erf`` / ``1 + tanh`` (GELU for x << 0) lose digits to cancellation, by about eps times the
terms they subtract; softplus with beta != 1 rounds the product beta*x before exp, a relative error of
|beta x| eps.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

from checks.registry.activations import _make_reals
from checks.spec import Case, KnownMistake, OpSpec
from checks.strategies import knobs, shapes, unit_floats


def _x(case: Case) -> np.ndarray:
    return np.abs(np.nan_to_num(case.inputs["input"], nan=0.0, posinf=0.0, neginf=0.0))


def _upstream_times_input(case: Case, grad_output: np.ndarray) -> dict:
    """|g| (1 + |x|): the cancelling term is multiplied by x before it reaches the gradient."""
    return {"input": np.abs(grad_output) * (1.0 + _x(case))}


def _softplus_scale(case: Case, expected: np.ndarray) -> np.ndarray | float:
    beta = case.params.get("beta", 1.0)
    return 0.0 if beta == 1.0 else np.abs(np.nan_to_num(expected)) * _x(case) * abs(beta)


def _gelu_gradient(case: Case, grad_output: np.ndarray) -> dict:
    if case.params.get("approximate", "none") == "tanh":
        return _upstream_times_input(case, grad_output)
    return {"input": np.abs(grad_output)}


def _tanh_gelu(backward: bool):
    """GELU's tanh approximation where the exact one is asked for."""
    import reference

    def model(case: Case, g: np.ndarray | None) -> np.ndarray | None:
        if case.params.get("approximate", "none") != "none":
            return None
        x = case.inputs["input"]
        return reference.gelu_backward(g, x, approximate="tanh") if backward else reference.gelu(x, approximate="tanh")

    return model


_GELU_LESSON = ("Yours is GELU's tanh approximation, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): torch's default "
                "approximate='none' is the exact x Φ(x) = 0.5 x (1 + erf(x / sqrt(2))).")
GELU_MISTAKES = (KnownMistake("tanh approximation", "forward", _tanh_gelu(False), _GELU_LESSON),
                 KnownMistake("tanh approximation", "grad[input]", _tanh_gelu(True), _GELU_LESSON))


SPECS = (
    OpSpec(
        name="tanh",
        layer=nn.Tanh,
        functional=torch.tanh,
        module=lambda input: nn.Tanh()(input),
        make=_make_reals,
        shapes=shapes(),
        notes="torch's gradient is g(1 - y^2) on the rounded output y, exact 0 once y rounds to ±1: judged at |g|.",
    ),
    OpSpec(
        name="softplus",
        layer=nn.Softplus,
        functional=F.softplus,
        module=lambda input, beta, threshold: nn.Softplus(beta, threshold)(input),
        make=_make_reals,
        shapes=shapes(),
        knobs=knobs(beta=unit_floats(0.1, 5.0, 1.0, 2.0, 0.5), threshold=st.sampled_from([20.0, 10.0, 1.0, 5.0])),
        scale=_softplus_scale,
        notes="Past beta*x > threshold torch returns x itself and the gradient g: a convention the reference follows.",
    ),
    OpSpec(
        name="logsigmoid",
        layer=nn.LogSigmoid,
        functional=F.logsigmoid,
        module=lambda input: nn.LogSigmoid()(input),
        make=_make_reals,
        shapes=shapes(),
    ),
    OpSpec(
        name="gelu",
        layer=nn.GELU,
        functional=F.gelu,
        module=lambda input, approximate: nn.GELU(approximate)(input),
        make=_make_reals,
        shapes=shapes(),
        knobs=knobs(approximate=st.sampled_from(["none", "tanh"])),
        scale=lambda case, expected: _x(case),
        grad_scale=_gelu_gradient,
        mistakes=GELU_MISTAKES,
        notes="torch computes x/2 (1 + erf(x/√2)) and x/2 (1 + tanh u), which cancel for x << 0: judged at |x|.",
    ),
    OpSpec(
        name="silu",
        layer=nn.SiLU,
        functional=F.silu,
        module=lambda input: nn.SiLU()(input),
        make=_make_reals,
        shapes=shapes(),
        grad_scale=_upstream_times_input,
    ),
    OpSpec(
        name="mish",
        layer=nn.Mish,
        functional=F.mish,
        module=lambda input: nn.Mish()(input),
        make=_make_reals,
        shapes=shapes(),
        grad_scale=_upstream_times_input,
    ),
)
