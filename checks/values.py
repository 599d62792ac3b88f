"""Numpy generators of op inputs, named for what they draw, by input regime.

Hypothesis draws only a small recipe (seed, regime, shape, knobs); these functions turn it into
arrays. That is about twice as fast as drawing every element through hypothesis
(TORCH_NUMERICS.md), and extremal values are placed on purpose from the tables below rather than
left to chance.

Regimes:
- normal: O(1) values, the everyday case;
- small: magnitudes 1e-8..1e-2, where absolute tolerances would hide relative errors;
- large: magnitudes up to 1e4 (logits that overflow a naive exp);
- extremal: normal values with a third of the elements replaced by special values;
- ties: values from a tiny set (-2..2; probabilities 0, 1/4, ..., 1), so exact ties happen on
  purpose: equal maxima in a softmax row, ReLU at exactly 0, x = y in L1, |x - y| = delta in Huber.
"""
from __future__ import annotations

import numpy as np

from checks.dtypes import DtypeInfo

REGIMES = ("normal", "small", "large", "extremal", "ties")
EXTREMAL_SHARE = 1 / 3


def special_reals(info: DtypeInfo, *, infinite: bool = True, nan: bool = True, huge: bool = True) -> np.ndarray:
    """Values that break naive formulas: signed zeros, subnormals, exp over/underflow thresholds
    (float64 exp overflows past 709.78 and underflows below -745.13; float32 at ±88.72/-103.28;
    float16 at 11.09), sigmoid's saturation points (16.64 in float32, 8.32 in float16, 36.7 in
    float64), |x| = 1e4 and (``huge``) the dtype's largest finite value.

    Ops that sum or multiply their inputs draw without ``huge``: there torch's intermediate terms
    overflow in the dtype (IEEE arithmetic, not a torch bug) where the float64 reference's do not."""
    values = [0.0, -0.0, info.subnormal, -info.subnormal, info.tiny, -info.tiny]
    values += [-745.2, -709.78, 709.78, 710.0, -103.3, -88.72, 88.72, 11.09, -17.33]
    values += [16.64, -16.64, 8.32, -8.32, 36.74, -36.74, 1e4, -1e4]
    if huge:
        values += [info.max, -info.max]
    if infinite:
        values += [np.inf, -np.inf]
    if nan:
        values += [np.nan]
    return np.array(values)


def special_probabilities(info: DtypeInfo, *, endpoints: bool = True) -> np.ndarray:
    """0 and 1 (BCE's clamps), the dtype's subnormals, e^-100 (below which BCE's log clamp
    bites), and the numbers just inside 1."""
    values = [info.subnormal, info.tiny, np.exp(-100.0), np.exp(-101.0), 1e-12, 0.5, 1 - info.eps, 1 - info.eps / 2]
    if endpoints:
        values += [0.0, 1.0]
    return np.array(values)


def _sprinkle(rng: np.random.Generator, base: np.ndarray, specials: np.ndarray) -> np.ndarray:
    if base.size == 0:
        return base
    mask = rng.random(base.shape) < EXTREMAL_SHARE
    mask.flat[rng.integers(base.size)] = True  # at least one special value per array
    return np.where(mask, rng.choice(specials, size=base.shape), base)


def reals(rng: np.random.Generator, shape: tuple[int, ...], regime: str, info: DtypeInfo, *, specials: np.ndarray | None = None) -> np.ndarray:
    """Real inputs (logits, activations' inputs, regression predictions and targets)."""
    if regime == "normal":
        return rng.normal(0.0, 3.0, shape)
    if regime == "small":
        return rng.normal(0.0, 1.0, shape) * 10.0 ** rng.uniform(-8, -2, shape)
    if regime == "large":
        return rng.choice([-1.0, 1.0], shape) * 10.0 ** rng.uniform(0, 4, shape)
    if regime == "extremal":
        table = special_reals(info) if specials is None else specials
        return _sprinkle(rng, rng.normal(0.0, 3.0, shape), table)
    if regime == "ties":
        return rng.integers(-2, 3, shape).astype(np.float64)
    raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")


def logits(rng: np.random.Generator, shape: tuple[int, ...], regime: str, info: DtypeInfo, **kwargs: object) -> np.ndarray:
    """Unnormalised class scores: the same draws as :func:`reals`."""
    return reals(rng, shape, regime, info, **kwargs)  # type: ignore[arg-type]


def probabilities(rng: np.random.Generator, shape: tuple[int, ...], regime: str, info: DtypeInfo, *, endpoints: bool = True) -> np.ndarray:
    """Values in [0, 1]: uniform; near 0 (small); near 1 (large); or with the special table."""
    if regime == "normal":
        return rng.uniform(0.0, 1.0, shape)
    if regime == "small":
        return 10.0 ** rng.uniform(-12, 0, shape)
    if regime == "large":
        return 1.0 - 10.0 ** rng.uniform(-12, 0, shape)
    if regime == "extremal":
        return _sprinkle(rng, rng.uniform(0.0, 1.0, shape), special_probabilities(info, endpoints=endpoints))
    if regime == "ties":
        return rng.choice([0.0, 0.25, 0.5, 0.75, 1.0] if endpoints else [0.25, 0.5, 0.75], shape)
    raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")


def binary_targets(rng: np.random.Generator, shape: tuple[int, ...], soft: bool) -> np.ndarray:
    """Hard 0/1 labels, or soft labels in [0, 1] with some exact 0s and 1s among them."""
    hard = rng.integers(0, 2, shape).astype(np.float64)
    if not soft:
        return hard
    return np.where(rng.random(shape) < 0.2, hard, rng.uniform(0.0, 1.0, shape))


def class_targets(rng: np.random.Generator, shape: tuple[int, ...], n_classes: int) -> np.ndarray:
    """Class indices in [0, n_classes), int64."""
    return rng.integers(0, n_classes, shape).astype(np.int64)


def probability_targets(rng: np.random.Generator, shape: tuple[int, ...], class_dim: int) -> np.ndarray:
    """Rows of class probabilities along ``class_dim``: soft (a softmax), one-hot, or unnormalised
    values in [0, 1] (torch does not normalise probability targets, and byhand checks that too)."""
    kind = rng.integers(3)
    if kind == 0:
        e = np.exp(rng.normal(0.0, 2.0, shape))
        return e / e.sum(axis=class_dim, keepdims=True)
    if kind == 1:
        winner = rng.integers(0, shape[class_dim], shape[:class_dim] + shape[class_dim + 1 :])
        return (np.expand_dims(winner, class_dim) == np.arange(shape[class_dim]).reshape((-1,) + (1,) * (len(shape) - class_dim - 1))).astype(np.float64)
    return rng.uniform(0.0, 1.0, shape)


def positive_weights(rng: np.random.Generator, shape: tuple[int, ...], regime: str) -> np.ndarray:
    """Per-class or per-element weights in [0.1, 3); in the extremal regime some are exactly 0."""
    w = rng.uniform(0.1, 3.0, shape)
    if regime == "extremal":
        w = np.where(rng.random(shape) < 0.25, 0.0, w)
    return w
