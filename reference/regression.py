"""Regression losses: MSE, L1, Huber and SmoothL1, and their hand-derived gradients.

Unlike torch, which only warns and broadcasts, a target whose shape differs from the input's is a
``ValueError``: silent broadcasting of (N, 1) against (N,) is the classic wrong-number bug.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp

from reference import facts
from reference import symbolic as S
from reference._validation import as_float, check_reduction, check_same_shape, quiet, reduce, reduce_backward


__all__ = ["huber_loss", "huber_loss_backward", "l1_loss", "l1_loss_backward", "mse_loss", "mse_loss_backward", "smooth_l1_loss", "smooth_l1_loss_backward"]


def _difference(input: Any, target: Any) -> np.ndarray:
    """x - y in np.longdouble: the terms and their sum round once, at the end, to float64."""
    x, y = as_float(input, "input"), as_float(target, "target")
    check_same_shape(x, y)
    return x.astype(np.longdouble) - y


def _f64(value: np.ndarray) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


def _positive(value: float, name: str, allow_zero: bool) -> float:
    v = float(value)
    if not (v >= 0 if allow_zero else v > 0):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value}")
    return v


@quiet
@facts.declare(curve=facts.against("mse_loss", 0.0, -3, 3, "x (target 0)"))
def mse_loss(input: Any, target: Any, reduction: str = "mean") -> np.ndarray:
    r"""$\ell = (x - y)^2$; $\partial\ell/\partial x = 2(x - y)$."""
    check_reduction(reduction)
    return reduce(_difference(input, target) ** 2, reduction)


@quiet
def mse_loss_backward(grad_output: Any, input: Any, target: Any, reduction: str = "mean") -> np.ndarray:
    r"""$\partial L/\partial x = 2(x - y)\,\bar g$."""
    check_reduction(reduction)
    d = _difference(input, target)
    return _f64(2.0 * d * reduce_backward(grad_output, d.shape, reduction))


@quiet
@facts.declare(curve=facts.against("l1_loss", 0.0, -3, 3, "x (target 0)"), kinks=lambda p: [0.0])
def l1_loss(input: Any, target: Any, reduction: str = "mean") -> np.ndarray:
    r"""$\ell = |x - y|$; $\partial\ell/\partial x = \mathrm{sign}(x - y)$, 0 at $x = y$ (torch's subgradient)."""
    check_reduction(reduction)
    return reduce(np.abs(_difference(input, target)), reduction)


@quiet
def l1_loss_backward(grad_output: Any, input: Any, target: Any, reduction: str = "mean") -> np.ndarray:
    r"""$\partial L/\partial x = \mathrm{sign}(x - y)\,\bar g$; torch's sign is 0 at 0 and at NaN."""
    check_reduction(reduction)
    d = _difference(input, target)
    sign = np.where(np.isnan(d), 0.0, np.sign(d))
    return _f64(sign * reduce_backward(grad_output, d.shape, reduction))


@quiet
@facts.declare(curve=facts.against("huber_loss", 0.0, -3, 3, "x (target 0, δ = 1)"), kinks=lambda p: [p["delta"]])
def huber_loss(input: Any, target: Any, reduction: str = "mean", delta: float = 1.0) -> np.ndarray:
    r"""$\ell = \frac{1}{2} d^2$ for $|d| < \delta$, else $\delta(|d| - \frac{1}{2}\delta)$, $d = x - y$;
    $\partial\ell/\partial x = \mathrm{clip}(d, -\delta, \delta)$."""
    check_reduction(reduction)
    delta = _positive(delta, "delta", allow_zero=False)
    d = _difference(input, target)
    a = np.abs(d)
    return reduce(np.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta)), reduction)


@quiet
def huber_loss_backward(grad_output: Any, input: Any, target: Any, reduction: str = "mean", delta: float = 1.0) -> np.ndarray:
    r"""$\partial L/\partial x = \mathrm{clip}(d, -\delta, \delta)\,\bar g$ (NaN at NaN)."""
    check_reduction(reduction)
    delta = _positive(delta, "delta", allow_zero=False)
    d = _difference(input, target)
    clipped = np.where(d < -delta, -delta, np.where(d > delta, delta, d))
    return _f64(clipped * reduce_backward(grad_output, d.shape, reduction))


@quiet
@facts.declare(curve=facts.against("smooth_l1_loss", 0.0, -3, 3, "x (target 0, β = 1)"), kinks=lambda p: [0.0, p["beta"]])
def smooth_l1_loss(input: Any, target: Any, reduction: str = "mean", beta: float = 1.0) -> np.ndarray:
    r"""$\ell = \frac{1}{2} d^2/\beta$ for $|d| < \beta$, else $|d| - \frac{1}{2}\beta$ (plain L1 when $\beta = 0$);
    $\partial\ell/\partial x = d/\beta$, resp. $\mathrm{sign}(d)$."""
    check_reduction(reduction)
    beta = _positive(beta, "beta", allow_zero=True)
    if beta == 0:
        return l1_loss(input, target, reduction)
    d = _difference(input, target)
    a = np.abs(d)
    return reduce(np.where(a < beta, 0.5 * d * d / beta, a - 0.5 * beta), reduction)


@quiet
def smooth_l1_loss_backward(grad_output: Any, input: Any, target: Any, reduction: str = "mean", beta: float = 1.0) -> np.ndarray:
    r"""$\partial L/\partial x = (d/\beta$ for $|d| < \beta$, else $\mathrm{sign}(d))\,\bar g$ (NaN at NaN)."""
    check_reduction(reduction)
    beta = _positive(beta, "beta", allow_zero=True)
    if beta == 0:
        return l1_loss_backward(grad_output, input, target, reduction)
    d = _difference(input, target)
    local = np.where(np.abs(d) < beta, d / beta, np.where(np.isnan(d), np.nan, np.sign(d)))
    return _f64(local * reduce_backward(grad_output, d.shape, reduction))


def _regression(op: str, term: sp.Expr, hand: sp.Expr, params: dict[str, sp.Symbol] | None = None, **domain: tuple[float, float]) -> S.Derivation:
    """A loss of d = x - y per element; reductions only sum or average the terms."""
    x, y = S.x, S.y
    steps = (S.Step("definition", sp.Eq(S.L, term)), S.Step("derivative (hand)", sp.Eq(sp.Derivative(S.L, x), hand)))
    return S.Derivation(op, term, (x,), (hand,), steps, {sp.Symbol(k, real=True): v for k, v in domain.items()},
                        note="" if op == "mse_loss" else "d = x - y", pointwise=term, inputs=(x, y), params=dict(params or {}))


@facts.derivation(mse_loss)
def _mse_loss() -> S.Derivation:
    return _regression("mse_loss", (S.x - S.y) ** 2, 2 * (S.x - S.y))


@facts.derivation(l1_loss)
def _l1_loss() -> S.Derivation:
    return _regression("l1_loss", sp.Abs(S.x - S.y), sp.sign(S.x - S.y))


@facts.derivation(huber_loss)
def _huber_loss() -> S.Derivation:
    d, delta = S.x - S.y, S.delta
    term = sp.Piecewise((d**2 / 2, sp.Abs(d) < delta), (delta * (sp.Abs(d) - delta / 2), True))
    hand = sp.Piecewise((-delta, d < -delta), (delta, d > delta), (d, True))
    return _regression("huber_loss", term, hand, {"delta": delta}, delta=(0.1, 3.0))


@facts.derivation(smooth_l1_loss)
def _smooth_l1_loss() -> S.Derivation:
    d, beta = S.x - S.y, S.beta
    term = sp.Piecewise((d**2 / (2 * beta), sp.Abs(d) < beta), (sp.Abs(d) - beta / 2, True))
    hand = sp.Piecewise((d / beta, sp.Abs(d) < beta), (sp.sign(d), True))
    return _regression("smooth_l1_loss", term, hand, {"beta": beta}, beta=(0.1, 3.0))
