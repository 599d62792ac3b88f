"""Registry entries for the elementwise activations."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

from checks.spec import Case, OpSpec
from checks.strategies import knobs, shapes, unit_floats
from checks.values import reals


def _make_reals(rng, recipe, info) -> Case:
    return Case({"input": reals(rng, recipe.shape, recipe.regime, info)}, dict(recipe.knobs))


def _alpha_upstream(case: Case, grad_output: np.ndarray) -> dict:
    return {"input": np.abs(grad_output) * max(1.0, case.params["alpha"])}


SPECS = (
    OpSpec(
        name="sigmoid",
        layer=nn.Sigmoid,
        functional=torch.sigmoid,
        module=lambda input: nn.Sigmoid()(input),
        make=_make_reals,
        shapes=shapes(),
        # sigmoid's backward in torch is g * s * (1 - s) on the *rounded* output s, so 1 - s has
        # absolute (not relative) accuracy: the gradient is judged at the upstream gradient's size.
        notes="torch flushes sigmoid(x) to 0 below -88.72 (float32) and -709.78 (float64); the "
        "tolerance's smallest-normal term absorbs that flush.",
    ),
    OpSpec(
        name="relu",
        layer=nn.ReLU,
        functional=F.relu,
        module=lambda input: nn.ReLU()(input),
        make=_make_reals,
        shapes=shapes(),
        grad_scale=lambda case, g: {"input": 0.0},
        lessons={"kink": "At exactly x = 0 ReLU has no derivative: torch uses 0 there (the gradient is g where x > 0, else 0).",
                 "nonfinite": "torch's ReLU gradient zeroes g where x <= 0; for NaN that test is false, so g passes through: "
                              "write np.where(x <= 0, 0, g), not g * (x > 0)."},
    ),
    OpSpec(
        name="leaky_relu",
        layer=nn.LeakyReLU,
        functional=F.leaky_relu,
        module=lambda input, negative_slope: nn.LeakyReLU(negative_slope)(input),
        make=_make_reals,
        shapes=shapes(),
        knobs=knobs(negative_slope=unit_floats(1e-3, 1.0, 0.01, 0.2, 0.0)),
        grad_scale=lambda case, g: {"input": 0.0},
    ),
    OpSpec(
        name="elu",
        layer=nn.ELU,
        functional=F.elu,
        module=lambda input, alpha: nn.ELU(alpha)(input),
        make=_make_reals,
        shapes=shapes(),
        knobs=knobs(alpha=unit_floats(0.05, 3.0, 1.0)),
        grad_scale=_alpha_upstream,
    ),
    OpSpec(
        name="hardtanh",
        layer=nn.Hardtanh,
        functional=F.hardtanh,
        module=lambda input, min_val, max_val: nn.Hardtanh(min_val, max_val)(input),
        make=_make_reals,
        shapes=shapes(),
        # Bounds every dtype represents exactly: torch compares x with them in the input's dtype.
        knobs=st.sampled_from([(-1.0, 1.0), (0.0, 6.0), (-0.5, 0.25), (-2.0, 2.0)]).map(lambda b: {"min_val": b[0], "max_val": b[1]}),
        grad_scale=lambda case, g: {"input": 0.0},
    ),
)
