"""Registry entry for the KL divergence (torch's kl_div): log-probabilities against probabilities or
log-probabilities, every reduction including 'batchmean', and the gradient of both arguments."""
from __future__ import annotations

import warnings

import numpy as np
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

from checks.spec import Case, OpSpec
from checks.strategies import knobs, shapes
from checks.values import probabilities, reals
from reference._validation import reduce, reduce_backward
from reference.divergence import reduction_of

REDUCTIONS = ("none", "sum", "mean", "batchmean")

_MEAN_WARNING = "reduction: 'mean' divides the total loss by both the batch size and the support size"


def _quietly(call):
    """torch warns at every 'mean' that it will mean 'batchmean' one day: documented, and checked here."""
    def wrapped(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_MEAN_WARNING)
            return call(*args, **kwargs)

    return wrapped


def _make(rng, recipe, info) -> Case:
    x = -np.abs(reals(rng, recipe.shape, recipe.regime, info))  # log-probabilities, <= 0 (-inf in the extremal draws)
    t = probabilities(rng, recipe.shape, recipe.regime, info)  # exact 0 and 1 in the extremal draws
    if recipe.knobs["log_target"]:
        with np.errstate(divide="ignore"):
            t = np.log(t)
    return Case({"input": x, "target": t}, dict(recipe.knobs))


def _how(case: Case) -> tuple[str, int | None]:
    return reduction_of(case.params["reduction"], case.inputs["input"].shape)


def _sizes(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """|t log t| + |t x| (or e^s(|s| + |x|)): the terms each element's loss subtracts."""
    x, t = (np.nan_to_num(np.abs(case.inputs[k]), posinf=0.0) for k in ("input", "target"))
    with np.errstate(all="ignore"):
        if case.params["log_target"]:
            p = np.exp(-t)  # t = |s|, s <= 0
            return p * (t + x), p * (t + x + 1.0)
        log_t = np.nan_to_num(np.abs(np.log(t)), posinf=0.0)
        return t * log_t + t * x, log_t + 1.0 + x


def _scale(case: Case, expected: np.ndarray) -> np.ndarray:
    """A sum of terms of either sign cancels: judged at the sum of their sizes."""
    how, divisor = _how(case)
    return reduce(_sizes(case)[0], how, divisor)


def _grad_scale(case: Case, g: np.ndarray) -> dict:
    how, divisor = _how(case)
    spread = np.abs(reduce_backward(g, case.inputs["input"].shape, how, divisor))
    return {"input": 0.0, "target": spread * _sizes(case)[1]}


SPECS = (
    OpSpec(
        name="kl_div",
        functional=_quietly(F.kl_div),
        module=_quietly(lambda input, target, **kw: nn.KLDivLoss(**kw)(input, target)),
        make=_make,
        shapes=shapes(),
        knobs=knobs(reduction=st.sampled_from(REDUCTIONS), log_target=st.booleans()),
        scale=_scale,
        grad_scale=_grad_scale,
        grad_inputs=("input", "target"),
        notes="0·log 0 = 0 (torch's xlogy); the target's gradient at t = 0 is NaN on both sides (t log t has no derivative there).",
    ),
)
