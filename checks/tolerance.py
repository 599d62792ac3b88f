"""The one tolerance policy: how far torch may be from the float64 reference.

The rule, element by element, for torch's result ``a`` and the reference ``r``::

    |a - r| <= k * ulp_dtype(max(|r|, scale)) + tiny_dtype

Why this shape:
- The reference is computed in float64 from the *dtype-rounded* inputs, so input rounding is not an
  error torch is charged for; what is left is torch's own arithmetic and its final rounding.
- ``ulp_dtype`` measures the error in units of the dtype's own spacing at the value, so one k fits
  float16 (eps 2**-10) and float64 (eps 2**-52) alike.
- ``scale`` is the op's natural size (1 for probabilities and bounded losses, ``sum|w x| + |b|`` for
  Linear, ``(1 + |z|)·max(1, pos_weight)`` for BCE-with-logits, the upstream gradient's size for
  gradients), declared in the registry. It stops pure relative error from flagging results far below
  the size of what they were computed from: log_softmax of a dominated class, a loss that cancels to
  1e-14 and is returned as 0, a gradient formed as a difference of O(1) terms.
- ``tiny_dtype`` (the smallest normal number) absorbs flush-to-zero and subnormal results. A kernel
  that drops every subnormal *product* of a sum (native bf16 dot products) is a declared quirk with
  its own bound (checks/departures), not a looser policy for everyone.

k, measured (../shared/TORCH_NUMERICS.md: worst floored error over ~1M outputs per dtype was 2.8 ULP
in float16, 2.5 in bfloat16, 5.05 in float32, 6.4 in float64): 4 for float16/bfloat16, 8 for
float32/float64. That had no false alarms and detects a relative error of ~7 eps in float16/bfloat16
and ~14 eps in float32/float64 (3e-15 in float64), where torch's own default (assert_close) misses
anything under 2e-7 in float64 and false-alarms thousands of times in float16.

No op has a k of its own: an op's natural size is its ``scale``, and beyond the policy only an active
quirk (checks/departures: declared, narrow, probed here) accounts for an element.
"""
from __future__ import annotations

import numpy as np

from checks.dtypes import DtypeInfo, ulp

FORWARD_K = {"float16": 4.0, "bfloat16": 4.0, "float32": 8.0, "float64": 8.0, "int64": 0.0}
GRADIENT_K = {"float16": 4.0, "bfloat16": 4.0, "float32": 8.0, "float64": 8.0}


def k_for(phase: str, dtype: str) -> float:
    table = FORWARD_K if phase == "forward" else GRADIENT_K
    return table[dtype]


def k_for_sum(dtype: str, n: int) -> float:
    """k for a quantity formed by adding n rounded terms (a softmax row's sum, a dot product): the
    worst-case error of recursive summation grows by about half an ULP per term added."""
    return FORWARD_K[dtype] + n / 2


def sum_growth(n: int, dtype: str) -> float:
    """The factor by which a scale of n summed terms grows (at least 1): as in :func:`k_for_sum`, the
    error may grow by half an ULP per term, so a sum of more than 2k terms is judged at n/(2k)
    times the size of its terms (norms' rows, Linear's batch, a convolution's window)."""
    return max(1.0, n / (2 * FORWARD_K[dtype]))


def _magnitude(expected: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    # fmax ignores NaN: a scale made NaN by a NaN input falls back to |expected|.
    return np.fmax(np.abs(expected), np.abs(np.asarray(scale, dtype=np.float64)))


def unit(expected: np.ndarray, scale: np.ndarray | float, info: DtypeInfo) -> np.ndarray:
    """The policy's unit, element by element: one ULP of the dtype at max(|expected|, scale)."""
    return ulp(_magnitude(expected, scale), info)


def bound(expected: np.ndarray, scale: np.ndarray | float, info: DtypeInfo, k: float, units: np.ndarray | None = None) -> np.ndarray:
    """The largest |actual - expected| the policy accepts, element by element (``units``: the
    :func:`unit` of these arguments, when the caller has it already)."""
    return k * (unit(expected, scale, info) if units is None else units) + info.tiny


def ulp_error(actual: np.ndarray, expected: np.ndarray, scale: np.ndarray | float, info: DtypeInfo, units: np.ndarray | None = None) -> np.ndarray:
    """The 'floored ULP' error: |actual - expected| beyond the smallest-normal allowance, in ULPs of
    the dtype at max(|expected|, scale). An element passes exactly when this is <= k; NaN where
    either side is NaN is reported as inf."""
    with np.errstate(invalid="ignore"):
        excess = np.maximum(np.abs(actual - expected) - info.tiny, 0.0)
        return np.nan_to_num(excess / (unit(expected, scale, info) if units is None else units), nan=np.inf)


def derivative_scale(expected: np.ndarray, terms: int, dtype: str, directions: float = 0.0) -> float:
    """The scale of a derivative along directions (a JVP J t, a Hessian-vector product, a third
    derivative), judged against the 50-digit truth: the largest |element| of the whole result, grown
    by :func:`sum_growth` of the ``terms`` each element may sum (the differentiable inputs' sizes).
    Normwise, because a directional derivative's elements are sums of products of the op's
    partial derivatives with the directions, whose size no registry entry declares; an
    element that cancels far below its neighbours is judged at their size (as a gradient is judged
    at its upstream gradient's), and a derivative wrong by a fraction of its size fails in every
    dtype: torch's known higher-order bugs (layer_norm, pytorch/pytorch#196700) are wrong by 70%.
    At least ``directions``, the product of the directions' largest elements: as a gradient is
    judged at its upstream gradient's size, so that a derivative that vanishes (a saturated
    sigmoid's) is not judged by relative error."""
    finite = np.abs(np.asarray(expected, dtype=np.float64))
    finite = finite[np.isfinite(finite)]
    return max(float(finite.max(initial=0.0)), directions) * sum_growth(terms, dtype)
