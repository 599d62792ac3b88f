"""Registry entries for cross-entropy and NLL."""
from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

from checks.registry.softmaxes import SOFTMAX_LESSON
from checks.spec import Case, OpSpec
from checks.strategies import knobs, reductions, shapes, unit_floats
from checks.values import class_targets, logits, positive_weights, probability_targets, reals, special_reals

# (C,), (N, C), (N, C, d1) and (N, C, d1, d2); C >= 1 and an empty batch is allowed.
CLASS_SHAPES = st.one_of(
    shapes(min_dims=1, max_dims=1, min_side=1, max_side=8),
    st.tuples(st.integers(0, 8), st.integers(1, 8)),
    st.tuples(st.integers(0, 4), st.integers(1, 6), st.integers(1, 4)),
    st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3)),
)


def _class_dim(shape: tuple[int, ...]) -> int:
    return 0 if len(shape) == 1 else 1


def _index_targets(rng, shape, knobs) -> tuple[np.ndarray, int]:
    """Class indices for ``shape`` (input's), with ignore_index set on some when asked."""
    n_classes = shape[_class_dim(shape)]
    batch = shape[:1] + shape[2:] if len(shape) > 1 else ()
    target = class_targets(rng, batch, n_classes)
    if not knobs["ignore"]:
        return target, -100
    # Ignore either torch's default -100 or a real class; sometimes every sample.
    ignore_index = int(rng.choice([-100, rng.integers(n_classes)]))
    share = 1.0 if rng.random() < 0.15 else 0.3
    return np.where(rng.random(batch) < share, ignore_index, target), ignore_index


def _weight(rng, recipe, n_classes: int) -> np.ndarray | None:
    return positive_weights(rng, (n_classes,), recipe.regime) if recipe.knobs["weighted"] else None


def _make_ce(rng, recipe, info) -> Case:
    shape = recipe.shape
    x = logits(rng, shape, recipe.regime, info, specials=special_reals(info, huge=False))
    if recipe.knobs["probabilities"]:
        target, ignore_index = probability_targets(rng, shape, _class_dim(shape)), -100
    else:
        target, ignore_index = _index_targets(rng, shape, recipe.knobs)
    params = {
        "weight": _weight(rng, recipe, shape[_class_dim(shape)]),
        "ignore_index": ignore_index,
        "reduction": recipe.knobs["reduction"],
        "label_smoothing": recipe.knobs["label_smoothing"],
    }
    return Case({"input": x, "target": target}, params)


def _make_nll(rng, recipe, info) -> Case:
    shape = recipe.shape
    x = -np.abs(reals(rng, shape, recipe.regime, info, specials=special_reals(info, huge=False)))  # log-probabilities are <= 0
    target, ignore_index = _index_targets(rng, shape, recipe.knobs)
    params = {"weight": _weight(rng, recipe, shape[_class_dim(shape)]), "ignore_index": ignore_index, "reduction": recipe.knobs["reduction"]}
    return Case({"input": x, "target": target}, params)


def _weights(case: Case) -> np.ndarray:
    x = case.inputs["input"]
    w = case.params["weight"]
    return np.ones(x.shape[_class_dim(x.shape)]) if w is None else w


def _batch(x: np.ndarray) -> tuple[int, ...]:
    return x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()


def _divisor(case: Case) -> float:
    """The 'mean' divisor: sum of w_t over non-ignored samples, or N for probability targets."""
    x, target = case.inputs["input"], case.inputs["target"]
    if target.dtype.kind == "f":
        return float(np.prod(_batch(x)))
    valid = target != case.params["ignore_index"]
    return float(np.sum(_weights(case)[np.where(valid, target, 0)] * valid))


def _per_sample_upstream(case: Case, g: np.ndarray) -> np.ndarray:
    """|upstream gradient| reaching each sample's loss: g, g / divisor ('mean') or g_n ('none')."""
    reduction = case.params["reduction"]
    if reduction == "none":
        return np.abs(g)
    divisor = _divisor(case) if reduction == "mean" else 1.0
    return np.broadcast_to(np.abs(g) / divisor, _batch(case.inputs["input"]))


def _ce_grad_scale(case: Case, g: np.ndarray) -> dict:
    x = case.inputs["input"]
    upstream = _per_sample_upstream(case, g) * np.max(_weights(case), initial=0.0)
    return {"input": upstream if x.ndim == 1 else np.expand_dims(upstream, 1)}


def _nll_scale(case: Case, expected: np.ndarray) -> np.ndarray:
    """The reduction of |w_t x_t|: the sum can cancel, its rounding cannot exceed this."""
    x, target = case.inputs["input"], case.inputs["target"]
    valid = target != case.params["ignore_index"]
    safe = np.where(valid, target, 0)
    picked = np.take_along_axis(np.moveaxis(x, _class_dim(x.shape), -1), safe[..., None], axis=-1)[..., 0]
    terms = np.where(valid, np.abs(picked * _weights(case)[safe]), 0.0)
    reduction = case.params["reduction"]
    if reduction == "none":
        return terms
    return np.sum(terms) / (_divisor(case) if reduction == "mean" else 1.0)


# The course's cross-entropy: a batch of N >= 1 rows of C >= 2 logits and class-index targets.
COURSE_SHAPES = st.tuples(st.integers(1, 6), st.integers(2, 6))

CE_KNOBS = knobs(
    probabilities=st.booleans(),
    reduction=reductions(),
    weighted=st.booleans(),
    ignore=st.booleans(),
    label_smoothing=unit_floats(0.0, 1.0, 0.0, 0.1, 1.0),
)

SPECS = (
    OpSpec(
        name="cross_entropy",
        functional=F.cross_entropy,
        module=lambda input, target, **kw: nn.CrossEntropyLoss(**kw)(input, target),
        make=_make_ce,
        shapes=CLASS_SHAPES,
        knobs=CE_KNOBS,
        # Per-sample losses are sums of non-negative terms -sum a_c log p_c, but log p_c of the
        # leading class is a difference of O(1) terms: judged at the weight's size.
        scale=lambda case, expected: np.max(_weights(case), initial=0.0),
        grad_scale=_ce_grad_scale,
        grad_inputs=("input",),
        large_shape=(2048, 7, 9),
        course_shapes=COURSE_SHAPES,
        course_knobs=knobs(probabilities=st.just(False), reduction=reductions(), weighted=st.booleans(), ignore=st.just(False),
                           label_smoothing=unit_floats(0.0, 1.0, 0.0, 0.1)),
        lessons={"overflow": SOFTMAX_LESSON},
    ),
    OpSpec(
        name="nll_loss",
        functional=F.nll_loss,
        module=lambda input, target, **kw: nn.NLLLoss(**kw)(input, target),
        make=_make_nll,
        shapes=CLASS_SHAPES,
        knobs=knobs(reduction=reductions(), weighted=st.booleans(), ignore=st.booleans()),
        scale=_nll_scale,
        grad_scale=lambda case, g: {"input": 0.0},
        large_shape=(2048, 7, 9),
        course_shapes=COURSE_SHAPES,
        course_knobs=knobs(reduction=reductions(), weighted=st.booleans(), ignore=st.just(False)),
    ),
)
