r"""Regression losses: MSE, L1, Huber and SmoothL1, and their hand-derived gradients.

Unlike torch, which only warns and broadcasts, a target whose shape differs from the input's is a
``ValueError``: silent broadcasting of (N, 1) against (N,) is the classic wrong-number bug.

``weight`` (torch 2.13, MSE, L1 and Huber) scales each term and must have the input's shape. Its
'mean' is not the same everywhere in torch: MSE and L1 divide the weighted sum by $\sum w$, Huber by
the number of elements (``weighted_loss.mean()``). Both are matched, and pinned in tests/test_conventions.py.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp

from reference import facts
from reference import symbolic as S
from reference._validation import as_float, as_optional_float, check_reduction, check_same_shape, legacy_reduction, quiet, reduce_backward, tangents
from reference._validation import reduce as reduce_loss  # `reduce` is torch's deprecated flag's name


__all__ = ["huber_loss", "huber_loss_backward", "huber_loss_jvp", "l1_loss", "l1_loss_backward", "l1_loss_jvp", "mse_loss", "mse_loss_backward",
           "mse_loss_jvp", "smooth_l1_loss", "smooth_l1_loss_backward", "smooth_l1_loss_jvp"]


def _difference(input: Any, target: Any) -> np.ndarray:
    """x - y in np.longdouble: the terms and their sum round once, at the end, to float64."""
    x, y = as_float(input, "input"), as_float(target, "target")
    check_same_shape(x, y)
    return x.astype(np.longdouble) - y


def _weight(weight: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    w = as_optional_float(weight, "weight")
    if w is not None and w.shape != shape:
        raise ValueError(f"weight shape {w.shape} must equal the input shape {shape} (torch: 'Weights and input must have the same size')")
    return w


def _weighted(terms: np.ndarray, weight: Any, reduction: str, mean_over_weights: bool) -> np.ndarray:
    """Each term times its weight, reduced; a weighted 'mean' divides by the weights' sum (MSE, L1)
    or by the element count (Huber)."""
    w = _weight(weight, terms.shape)
    if w is None:
        return reduce_loss(terms, reduction)
    return reduce_loss(terms * w, reduction, np.sum(w, dtype=np.longdouble) if mean_over_weights else None)


def _weighted_backward(local: np.ndarray, grad_output: Any, weight: Any, reduction: str, mean_over_weights: bool) -> np.ndarray:
    r"""$\partial L/\partial x = \ell'(d)\,w\,\bar g$, with $\bar g = g/\sum w$ for a weighted mean (MSE, L1)."""
    w = _weight(weight, local.shape)
    divisor = np.sum(w, dtype=np.longdouble) if w is not None and mean_over_weights else None
    grad = local * reduce_backward(grad_output, local.shape, reduction, divisor)
    return _f64(grad if w is None else grad * w)


def _weighted_jvp(local: np.ndarray, tangent: Any, weight: Any, reduction: str, mean_over_weights: bool) -> np.ndarray:
    r"""$\dot L$: each term's $\ell'(d)\,\dot x$, weighted and reduced as the loss itself (_weighted)."""
    (t,) = tangents(tangent, {"input": local.shape})
    if t is None:
        _weight(weight, local.shape)
        return np.zeros(local.shape if reduction == "none" else ())
    return _weighted(local * t, weight, reduction, mean_over_weights)


def _f64(value: np.ndarray) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


def _positive(value: float, name: str, allow_zero: bool) -> float:
    v = float(value)
    if not (v >= 0 if allow_zero else v > 0):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value}")
    return v


@quiet
@facts.declare(curve=facts.against("mse_loss", 0.0, -3, 3, "x (target 0)"), weighted_mean="weights")
def mse_loss(input: Any, target: Any, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean",
             weight: Any = None) -> np.ndarray:
    r"""$\ell = (x - y)^2$; $\partial\ell/\partial x = 2(x - y)$."""
    how = check_reduction(legacy_reduction(size_average, reduce, reduction))
    return _weighted(_difference(input, target) ** 2, weight, how, mean_over_weights=True)


@quiet
def mse_loss_backward(grad_output: Any, input: Any, target: Any, size_average: bool | None = None, reduce: bool | None = None,
                      reduction: str = "mean", weight: Any = None) -> np.ndarray:
    r"""$\partial L/\partial x = 2(x - y)\,w\,\bar g$."""
    how = check_reduction(legacy_reduction(size_average, reduce, reduction))
    return _weighted_backward(2.0 * _difference(input, target), grad_output, weight, how, mean_over_weights=True)


@quiet
def mse_loss_jvp(tangent: Any, input: Any, target: Any, size_average: bool | None = None, reduce: bool | None = None,
                 reduction: str = "mean", weight: Any = None) -> np.ndarray:
    r"""$\dot\ell = 2(x - y)\,\dot x$, weighted and reduced as the loss (a weighted mean over $\sum w$)."""
    how = check_reduction(legacy_reduction(size_average, reduce, reduction))
    return _weighted_jvp(2.0 * _difference(input, target), tangent, weight, how, mean_over_weights=True)


@quiet
@facts.declare(curve=facts.against("l1_loss", 0.0, -3, 3, "x (target 0)"), kinks=lambda p: [0.0], weighted_mean="weights")
def l1_loss(input: Any, target: Any, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean",
            weight: Any = None) -> np.ndarray:
    r"""$\ell = |x - y|$; $\partial\ell/\partial x = \mathrm{sign}(x - y)$, 0 at $x = y$ (torch's subgradient)."""
    how = check_reduction(legacy_reduction(size_average, reduce, reduction))
    return _weighted(np.abs(_difference(input, target)), weight, how, mean_over_weights=True)


@quiet
def l1_loss_backward(grad_output: Any, input: Any, target: Any, size_average: bool | None = None, reduce: bool | None = None,
                     reduction: str = "mean", weight: Any = None) -> np.ndarray:
    r"""$\partial L/\partial x = \mathrm{sign}(x - y)\,w\,\bar g$; torch's sign is 0 at 0 and at NaN."""
    how = check_reduction(legacy_reduction(size_average, reduce, reduction))
    d = _difference(input, target)
    return _weighted_backward(np.where(np.isnan(d), 0.0, np.sign(d)), grad_output, weight, how, mean_over_weights=True)


@quiet
def l1_loss_jvp(tangent: Any, input: Any, target: Any, size_average: bool | None = None, reduce: bool | None = None,
                reduction: str = "mean", weight: Any = None) -> np.ndarray:
    r"""$\dot\ell = \mathrm{sign}(x - y)\,\dot x$ (0 at 0 and at NaN, as the backward), weighted and reduced as the loss."""
    how = check_reduction(legacy_reduction(size_average, reduce, reduction))
    d = _difference(input, target)
    return _weighted_jvp(np.where(np.isnan(d), 0.0, np.sign(d)), tangent, weight, how, mean_over_weights=True)


@quiet
@facts.declare(curve=facts.against("huber_loss", 0.0, -3, 3, "x (target 0, δ = 1)"), kinks=lambda p: [p["delta"]])
def huber_loss(input: Any, target: Any, reduction: str = "mean", delta: float = 1.0, weight: Any = None) -> np.ndarray:
    r"""$\ell = \frac{1}{2} d^2$ for $|d| < \delta$, else $\delta(|d| - \frac{1}{2}\delta)$, $d = x - y$;
    $\partial\ell/\partial x = \mathrm{clip}(d, -\delta, \delta)$."""
    check_reduction(reduction)
    delta = _positive(delta, "delta", allow_zero=False)
    d = _difference(input, target)
    a = np.abs(d)
    return _weighted(np.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta)), weight, reduction, mean_over_weights=False)


@quiet
def huber_loss_backward(grad_output: Any, input: Any, target: Any, reduction: str = "mean", delta: float = 1.0, weight: Any = None) -> np.ndarray:
    r"""$\partial L/\partial x = \mathrm{clip}(d, -\delta, \delta)\,w\,\bar g$ (NaN at NaN; a weighted mean still divides by the count)."""
    check_reduction(reduction)
    delta = _positive(delta, "delta", allow_zero=False)
    d = _difference(input, target)
    clipped = np.where(d < -delta, -delta, np.where(d > delta, delta, d))
    return _weighted_backward(clipped, grad_output, weight, reduction, mean_over_weights=False)


@quiet
def huber_loss_jvp(tangent: Any, input: Any, target: Any, reduction: str = "mean", delta: float = 1.0, weight: Any = None) -> np.ndarray:
    r"""$\dot\ell = \mathrm{clip}(d, -\delta, \delta)\,\dot x$, weighted and reduced as the loss (a weighted mean over the count)."""
    check_reduction(reduction)
    delta = _positive(delta, "delta", allow_zero=False)
    d = _difference(input, target)
    clipped = np.where(d < -delta, -delta, np.where(d > delta, delta, d))
    return _weighted_jvp(clipped, tangent, weight, reduction, mean_over_weights=False)


@quiet
@facts.declare(curve=facts.against("smooth_l1_loss", 0.0, -3, 3, "x (target 0, β = 1)"), kinks=lambda p: [0.0, p["beta"]])
def smooth_l1_loss(input: Any, target: Any, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean",
                   beta: float = 1.0) -> np.ndarray:
    r"""$\ell = \frac{1}{2} d^2/\beta$ for $|d| < \beta$, else $|d| - \frac{1}{2}\beta$ (plain L1 when $\beta = 0$);
    $\partial\ell/\partial x = d/\beta$, resp. $\mathrm{sign}(d)$."""
    reduction = check_reduction(legacy_reduction(size_average, reduce, reduction))
    beta = _positive(beta, "beta", allow_zero=True)
    if beta == 0:
        return l1_loss(input, target, reduction=reduction)
    d = _difference(input, target)
    a = np.abs(d)
    return reduce_loss(np.where(a < beta, 0.5 * d * d / beta, a - 0.5 * beta), reduction)


@quiet
def smooth_l1_loss_backward(grad_output: Any, input: Any, target: Any, size_average: bool | None = None, reduce: bool | None = None,
                            reduction: str = "mean", beta: float = 1.0) -> np.ndarray:
    r"""$\partial L/\partial x = (d/\beta$ for $|d| < \beta$, else $\mathrm{sign}(d))\,\bar g$ (NaN at NaN)."""
    reduction = check_reduction(legacy_reduction(size_average, reduce, reduction))
    beta = _positive(beta, "beta", allow_zero=True)
    if beta == 0:
        return l1_loss_backward(grad_output, input, target, reduction=reduction)
    d = _difference(input, target)
    return _f64(_smooth_l1_slope(d, beta) * reduce_backward(grad_output, d.shape, reduction))


def _smooth_l1_slope(d: np.ndarray, beta: float) -> np.ndarray:
    """d/β inside |d| < β, sign(d) outside, NaN at NaN: the loss's derivative in d."""
    return np.where(np.abs(d) < beta, d / beta, np.where(np.isnan(d), np.nan, np.sign(d)))


@quiet
def smooth_l1_loss_jvp(tangent: Any, input: Any, target: Any, size_average: bool | None = None, reduce: bool | None = None,
                       reduction: str = "mean", beta: float = 1.0) -> np.ndarray:
    r"""$\dot\ell = d/\beta\,\dot x$ for $|d| < \beta$, else $\mathrm{sign}(d)\,\dot x$ (l1_loss_jvp when $\beta = 0$), reduced as the loss."""
    reduction = check_reduction(legacy_reduction(size_average, reduce, reduction))
    beta = _positive(beta, "beta", allow_zero=True)
    if beta == 0:
        return l1_loss_jvp(tangent, input, target, reduction=reduction)
    d = _difference(input, target)
    return _weighted_jvp(_smooth_l1_slope(d, beta), tangent, None, reduction, mean_over_weights=False)


def _regression(op: str, term: sp.Expr, hand: sp.Expr, params: dict[str, sp.Symbol] | None = None, simplify: bool = True,
                **domain: tuple[float, float]) -> S.Derivation:
    """A loss of d = x - y per element; reductions only sum or average the terms."""
    x, y = S.x, S.y
    steps = (S.Step("definition", sp.Eq(S.L, term)), S.Step("derivative (hand)", sp.Eq(sp.Derivative(S.L, x), hand)))
    return S.Derivation(op, term, (x,), (hand,), steps, {sp.Symbol(k, real=True): v for k, v in domain.items()},
                        note="" if op == "mse_loss" else "d = x - y", pointwise=term, inputs=(x, y), params=dict(params or {}), simplify=simplify)


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
    # Branches cut differently (|d| < delta against d < -delta, d > delta): simplify gives up after
    # a second, so the proof is by evaluation, whose points fall in all three branches.
    return _regression("huber_loss", term, hand, {"delta": delta}, simplify=False, delta=(0.1, 3.0))


@facts.derivation(smooth_l1_loss)
def _smooth_l1_loss() -> S.Derivation:
    d, beta = S.x - S.y, S.beta
    term = sp.Piecewise((d**2 / (2 * beta), sp.Abs(d) < beta), (sp.Abs(d) - beta / 2, True))
    hand = sp.Piecewise((d / beta, sp.Abs(d) < beta), (sp.sign(d), True))
    return _regression("smooth_l1_loss", term, hand, {"beta": beta}, beta=(0.1, 3.0))
