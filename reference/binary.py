"""Binary cross-entropy on probabilities and on logits, and their hand-derived gradients.

``binary_cross_entropy`` reproduces two torch conventions that make it finite at p = 0 and 1:
each log term is clamped at -100 in the forward, and the gradient's denominator $p(1-p)$ is floored
at $10^{-12}$ (the float32 constant 9.99999996e-13, as torch uses it in every dtype).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp

from reference import facts
from reference import symbolic as S
from reference._validation import (

    as_float,
    as_optional_float,
    check_broadcastable,
    check_reduction,
    check_same_shape,
    quiet,
    legacy_reduction,
    reduce as reduce_loss,  # `reduce` is torch's deprecated flag's name
    reduce_backward,
    tangents,
)
from reference.activations import sigmoid

__all__ = ["binary_cross_entropy", "binary_cross_entropy_backward", "binary_cross_entropy_jvp", "binary_cross_entropy_with_logits",
           "binary_cross_entropy_with_logits_backward", "binary_cross_entropy_with_logits_jvp"]


LOG_CLAMP = -100.0
GRAD_EPS = float(np.float32(1e-12))  # torch's EPSILON in the BCE backward kernel


def _check_unit_interval(value: np.ndarray, name: str) -> None:
    inside = (value >= 0) & (value <= 1)  # False for NaN
    if not inside.all():
        where = tuple(int(i) for i in np.argwhere(~inside)[0])
        raise ValueError(f"{name}{list(where)}={value[where]!r} is outside [0, 1]; all elements of {name} must be in [0, 1]")


def _bce_args(input: Any, target: Any, weight: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p, y, w = as_float(input, "input"), as_float(target, "target"), as_optional_float(weight, "weight")
    check_same_shape(p, y)
    check_broadcastable(w, p.shape, "weight")
    _check_unit_interval(p, "input")
    _check_unit_interval(y, "target")
    return p, y, np.ones(()) if w is None else w


@quiet
@facts.declare(curve=facts.against("binary_cross_entropy", 0.25, 0.005, 0.995, "p (target y = 0.25)"), accuracy=3,
         domain=lambda p: np.clip(p, 0.01, 0.99))
def binary_cross_entropy(input: Any, target: Any, weight: Any = None, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean") -> np.ndarray:
    r"""$\ell = -w\,[y\max(\log p, -100) + (1-y)\max(\log(1-p), -100)]$;
    $\partial\ell/\partial p = w\,(p - y)/\max(p(1-p), 10^{-12})$ (torch's floored form).

    ``log1p(-p)`` keeps $\log(1-p)$ accurate for small p.
    """
    reduction = check_reduction(legacy_reduction(size_average, reduce, reduction))
    p, y, w = (a.astype(np.longdouble) for a in _bce_args(input, target, weight))  # rounded once, by reduce()
    log_p = np.maximum(np.log(p), LOG_CLAMP)
    log_q = np.maximum(np.log1p(-p), LOG_CLAMP)
    loss = -w * (y * log_p + (1.0 - y) * log_q)
    return reduce_loss(loss, reduction)


@quiet
def binary_cross_entropy_backward(
    grad_output: Any, input: Any, target: Any, weight: Any = None, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean"
) -> np.ndarray:
    r"""$\partial L/\partial p = \bar g\,w\,(p - y)/\max(p(1-p), 10^{-12})$.

    At p = 0, y = 1 this is $-10^{12}$ rather than the clamped loss's true derivative 0: torch's
    convention, kept so that training at a saturated output still pushes the right way.
    """
    reduction = check_reduction(legacy_reduction(size_average, reduce, reduction))
    p, y, w = (a.astype(np.longdouble) for a in _bce_args(input, target, weight))
    g = reduce_backward(grad_output, p.shape, reduction)
    return (g * w * (p - y) / np.maximum(p * (1.0 - p), GRAD_EPS)).astype(np.float64)


@quiet
def binary_cross_entropy_jvp(
    tangent: Any, input: Any, target: Any, weight: Any = None, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean"
) -> np.ndarray:
    r"""$\dot\ell = w\,(p - y)/\max(p(1-p), 10^{-12})\,\dot p$, then summed or averaged as the loss: the backward's
    (torch's) floored slope, also where the forward's log clamps at -100."""
    reduction = check_reduction(legacy_reduction(size_average, reduce, reduction))
    p, y, w = (a.astype(np.longdouble) for a in _bce_args(input, target, weight))
    (t,) = tangents(tangent, {"input": p.shape})
    if t is None:
        return np.zeros(p.shape if reduction == "none" else ())
    return reduce_loss(w * (p - y) / np.maximum(p * (1.0 - p), GRAD_EPS) * t, reduction)


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)  # log(1 + e^z) without overflow


def _times(coefficient: np.ndarray, value: np.ndarray) -> np.ndarray:
    """coefficient * value with 0 * inf = 0: a term whose coefficient is 0 is absent, not undefined."""
    return np.where(coefficient == 0, 0.0, coefficient * value)


def _bcel_args(input: Any, target: Any, weight: Any, pos_weight: Any) -> tuple[np.ndarray, ...]:
    z, y = as_float(input, "input"), as_float(target, "target")
    w, pw = as_optional_float(weight, "weight"), as_optional_float(pos_weight, "pos_weight")
    check_same_shape(z, y)
    check_broadcastable(w, z.shape, "weight")
    check_broadcastable(pw, z.shape, "pos_weight")
    return z, y, np.ones(()) if w is None else w, np.ones(()) if pw is None else pw


@quiet
@facts.declare(curve=facts.against("binary_cross_entropy_with_logits", 0.25, -6, 6, "z (target y = 0.25)"))
def binary_cross_entropy_with_logits(
    input: Any, target: Any, weight: Any = None, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean", pos_weight: Any = None
) -> np.ndarray:
    r"""$\ell = w\,[\,p_w\,y\,\mathrm{softplus}(-z) + (1-y)\,\mathrm{softplus}(z)\,]$, i.e. BCE of $\sigma(z)$
    with $-\log\sigma(z) = \mathrm{softplus}(-z)$; $\partial\ell/\partial z = w\,[(1-y)\sigma(z) - p_w\,y\,\sigma(-z)]$.

    softplus via ``logaddexp`` has no cancellation, so soft labels at large |z| stay exact, and at
    $z = \pm\infty$ the loss is its limit (torch returns NaN there; see tests/test_conventions.py).
    """
    reduction = check_reduction(legacy_reduction(size_average, reduce, reduction))
    z, y, w, pw = _bcel_args(input, target, weight, pos_weight)
    loss = w * (_times(pw * y, _softplus(-z)) + _times(1.0 - y, _softplus(z)))
    return reduce_loss(loss, reduction)


@quiet
def binary_cross_entropy_with_logits_backward(
    grad_output: Any, input: Any, target: Any, weight: Any = None, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean", pos_weight: Any = None
) -> np.ndarray:
    r"""$\partial L/\partial z = \bar g\,w\,[(1-y)\,\sigma(z) - p_w\,y\,\sigma(-z)]$."""
    reduction = check_reduction(legacy_reduction(size_average, reduce, reduction))
    z, y, w, pw = _bcel_args(input, target, weight, pos_weight)
    g = reduce_backward(grad_output, z.shape, reduction)
    return g * w * ((1.0 - y) * sigmoid(z) - pw * y * sigmoid(-z))


@quiet
def binary_cross_entropy_with_logits_jvp(
    tangent: Any, input: Any, target: Any, weight: Any = None, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean", pos_weight: Any = None
) -> np.ndarray:
    r"""$\dot\ell = w\,[(1-y)\,\sigma(z) - p_w\,y\,\sigma(-z)]\,\dot z$, then summed or averaged as the loss."""
    reduction = check_reduction(legacy_reduction(size_average, reduce, reduction))
    z, y, w, pw = _bcel_args(input, target, weight, pos_weight)
    (t,) = tangents(tangent, {"input": z.shape})
    if t is None:
        return np.zeros(z.shape if reduction == "none" else ())
    return reduce_loss(w * ((1.0 - y) * sigmoid(z) - pw * y * sigmoid(-z)) * t, reduction)


@facts.derivation(binary_cross_entropy)
def _binary_cross_entropy() -> S.Derivation:
    p, y, w = S.p, S.y, S.w
    loss = -w * (y * sp.log(p) + (1 - y) * sp.log(1 - p))
    steps = (S.Step("definition", sp.Eq(S.L, loss)),
             S.Step("derivative", sp.Eq(sp.Derivative(S.L, p), -w * (y / p - (1 - y) / (1 - p)))),
             S.Step("one fraction", sp.Eq(sp.Derivative(S.L, p), w * (p - y) / (p * (1 - p)))))
    # The oracle keeps its own BCE (reference/oracle.py): torch's -100 clamp and 1e-12 floor are
    # conventions at p = 0, 1 that this definition does not have.
    return S.Derivation("binary_cross_entropy", loss, (p,), (w * (p - y) / (p * (1 - p)),), steps, {p: (0.01, 0.99), y: (0.0, 1.0), w: (0.1, 3.0)},
                        note="torch clamps each log at -100 and floors p(1-p) at 1e-12; both are conventions at p = 0, 1, outside this proof.",
                        pointwise=loss, inputs=(p, y), params={"weight": w}, absent={"weight": 1.0})


@facts.derivation(binary_cross_entropy_with_logits)
def _binary_cross_entropy_with_logits() -> S.Derivation:
    z, y, w, pw = S.z, S.y, S.w, S.pw
    loss = w * (pw * y * sp.log(1 + sp.exp(-z)) + (1 - y) * sp.log(1 + sp.exp(z)))
    hand = w * ((1 - y) * S.logistic(z) - pw * y * S.logistic(-z))
    steps = (S.Step("definition", sp.Eq(S.L, loss)),
             S.Step("softplus derivative", sp.Eq(sp.Derivative(sp.log(1 + sp.exp(z)), z), S.SIGMA(z))),
             S.Step("result", sp.Eq(sp.Derivative(S.L, z), hand)))
    return S.Derivation("binary_cross_entropy_with_logits", loss, (z,), (hand,), steps, {y: (0.0, 1.0), w: (0.1, 3.0), pw: (0.1, 3.0)},
                        pointwise=loss, inputs=(z, y), params={"weight": w, "pos_weight": pw}, absent={"weight": 1.0, "pos_weight": 1.0})
