"""Registry entries for the Linear layer and one-hot encoding."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

from checks.spec import Case, OpSpec, loaded
from checks.strategies import knobs, shapes
from checks.tolerance import sum_growth
from checks.values import class_targets, reals, special_reals


def _make_linear(rng, recipe, info) -> Case:
    in_features, out_features = recipe.shape[-1], recipe.knobs["out_features"]
    bound = 1.0 / np.sqrt(in_features)  # nn.Linear's own initialisation range
    return Case(
        {
            "input": reals(rng, recipe.shape, recipe.regime, info, specials=special_reals(info, huge=False)),
            "weight": rng.uniform(-bound, bound, (out_features, in_features)) * 3,
            "bias": rng.uniform(-1, 1, out_features) if recipe.knobs["bias"] else None,
        }
    )


def _linear_module(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype)
    return loaded(layer, weight=weight, bias=bias)(input)


def _linear_scale(case: Case, expected: np.ndarray) -> np.ndarray:
    x, w, b = case.inputs["input"], case.inputs["weight"], case.inputs["bias"]
    grow = sum_growth(w.shape[1], case.info.name)  # in_features terms per output
    return (np.abs(x) @ np.abs(w).T + (0.0 if b is None else np.abs(b))) * grow  # sum |w x| + |b|


def _linear_grad_scale(case: Case, g: np.ndarray) -> dict:
    """Each gradient's sum of |terms|, grown for long sums: out_features terms for the input, one per
    batch row (all batch dimensions) for the weight and bias."""
    x, w = case.inputs["input"], case.inputs["weight"]
    g2, x2 = np.abs(g).reshape(-1, w.shape[0]), np.abs(x).reshape(-1, w.shape[1])
    rows = sum_growth(g2.shape[0], case.info.name)
    return {"input": np.abs(g) @ np.abs(w) * sum_growth(w.shape[0], case.info.name), "weight": g2.T @ x2 * rows, "bias": g2.sum(axis=0) * rows}


def _make_one_hot(rng, recipe, info) -> Case:
    n_classes = recipe.knobs["classes"]
    labels = class_targets(rng, recipe.shape, n_classes)
    num_classes = -1 if recipe.knobs["infer"] and labels.size else n_classes + recipe.knobs["extra"]
    return Case({"tensor": labels}, {"num_classes": num_classes})


SPECS = (
    OpSpec(
        name="linear",
        functional=F.linear,
        module=_linear_module,
        make=_make_linear,
        shapes=shapes(min_dims=1, max_dims=3, min_side=1, max_side=16),
        knobs=knobs(out_features=st.integers(1, 16), bias=st.booleans()),
        scale=_linear_scale,
        grad_scale=_linear_grad_scale,
        grad_inputs=("input", "weight", "bias"),
        large_shape=(8192, 16),
        # The course's Linear: a 2-D batch (N, in_features) and a bias.
        course_shapes=shapes(min_dims=2, max_dims=2, min_side=1, max_side=8),
        course_knobs=knobs(out_features=st.integers(1, 8), bias=st.just(True)),
        lessons={"unbatched": "torch's linear also takes one unbatched sample (a 1-D input) and bias=None; "
                              "x @ weight.T + bias works for both when bias is optional.",
                 "raised": "torch's weight has shape (out_features, in_features): the layer computes input @ weight.T + bias."},
    ),
    OpSpec(
        name="one_hot",
        functional=F.one_hot,
        module=None,
        make=_make_one_hot,
        shapes=shapes(max_dims=2),
        knobs=knobs(classes=st.integers(1, 10), infer=st.booleans(), extra=st.integers(0, 3)),
        regimes=("normal",),
        dtypes=("int64",),
        notes="integer in, int64 out: checked exactly, once per device; not differentiable.",
    ),
)
