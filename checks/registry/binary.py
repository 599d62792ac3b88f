"""Registry entries for binary cross-entropy, on probabilities and on logits."""
from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

from checks.spec import Case, OpSpec
from checks.strategies import knobs, reductions, shapes
from checks.values import binary_targets, positive_weights, probabilities, reals, special_reals


def _weight(rng, recipe, shape) -> np.ndarray | None:
    kind = recipe.knobs["weight"]
    if kind == "none" or not shape:
        return None
    return positive_weights(rng, shape if kind == "full" else shape[-1:], recipe.regime)


def _make_bce(rng, recipe, info) -> Case:
    p = probabilities(rng, recipe.shape, recipe.regime, info)
    y = binary_targets(rng, recipe.shape, recipe.knobs["soft"])
    return Case({"input": p, "target": y}, {"weight": _weight(rng, recipe, recipe.shape), "reduction": recipe.knobs["reduction"]})


def _make_bcel(rng, recipe, info) -> Case:
    z = reals(rng, recipe.shape, recipe.regime, info, specials=special_reals(info, huge=False))
    y = binary_targets(rng, recipe.shape, recipe.knobs["soft"])
    pos_weight = positive_weights(rng, recipe.shape[-1:], "normal") if recipe.knobs["pos_weight"] and recipe.shape else None
    params = {"weight": _weight(rng, recipe, recipe.shape), "reduction": recipe.knobs["reduction"], "pos_weight": pos_weight}
    return Case({"input": z, "target": y}, params)


def _reduce_like(case: Case, elementwise: np.ndarray) -> np.ndarray:
    reduction = case.params["reduction"]
    full = np.broadcast_to(elementwise, case.inputs["input"].shape)
    if reduction == "none":
        return full
    return np.sum(full) if reduction == "sum" else np.mean(full) if full.size else np.float64(0.0)


def _weights(case: Case) -> np.ndarray:
    w = case.params["weight"]
    return np.ones(()) if w is None else w


def _pos_weights(case: Case) -> np.ndarray:
    pw = case.params.get("pos_weight")
    return np.ones(()) if pw is None else np.maximum(pw, 1.0)


def _bce_grad_scale(case: Case, g: np.ndarray) -> dict:
    """torch forms g (p - y) in the dtype before dividing by max(p (1 - p), 1e-12): where that
    product is subnormal (in any dtype: float32 at p = 1e-45) it keeps fewer bits, an absolute error
    up to eps·tiny/2 that the division magnifies by 1 / max(p (1 - p), 1e-12). A scale of
    tiny / max(p (1 - p), 1e-12) allows exactly that; elsewhere the quotient is judged at its own size."""
    p = case.inputs["input"]
    return {"input": case.info.tiny / np.maximum(p * (1.0 - p), 1e-12)}


def _upstream(case: Case, g: np.ndarray) -> np.ndarray:
    shape, reduction = case.inputs["input"].shape, case.params["reduction"]
    if reduction == "none":
        return np.abs(g)
    n = max(int(np.prod(shape)), 1)
    return np.broadcast_to(np.abs(g) / (n if reduction == "mean" else 1), shape)


BCE_KNOBS = dict(reduction=reductions(), soft=st.booleans(), weight=st.sampled_from(["none", "full", "last"]))

SPECS = (
    OpSpec(
        name="binary_cross_entropy",
        functional=F.binary_cross_entropy,
        module=lambda input, target, weight, reduction: nn.BCELoss(weight=weight, reduction=reduction)(input, target),
        make=_make_bce,
        shapes=shapes(),
        knobs=knobs(**BCE_KNOBS),
        # torch takes log(1 - p), which is 0 for p below eps/2 where the truth is -p: judged at
        # the weight's size, the natural size of a loss term.
        scale=lambda case, expected: _reduce_like(case, _weights(case)),
        grad_scale=_bce_grad_scale,
    ),
    OpSpec(
        name="binary_cross_entropy_with_logits",
        functional=F.binary_cross_entropy_with_logits,
        module=lambda input, target, weight, reduction, pos_weight: nn.BCEWithLogitsLoss(weight=weight, reduction=reduction, pos_weight=pos_weight)(input, target),
        make=_make_bcel,
        shapes=shapes(),
        knobs=knobs(pos_weight=st.booleans(), **BCE_KNOBS),
        # torch's (1 - y) z + (1 + (pw - 1) y)(log1p(e^-|z|) + max(-z, 0)) cancels for z < 0: terms
        # of size |z| max(1, pw) leave an error of about |z| eps (TORCH_NUMERICS.md). For z > 0 both
        # terms are positive. So the size is max(1, pw)(1 + max(-z, 0)).
        scale=lambda case, expected: _reduce_like(case, _weights(case) * (1 + np.maximum(-case.inputs["input"], 0)) * _pos_weights(case)),
        grad_scale=lambda case, g: {"input": _upstream(case, g) * _weights(case) * _pos_weights(case)},
    ),
)
