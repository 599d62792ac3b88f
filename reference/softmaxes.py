"""Softmax and log-softmax along a dimension, and their hand-derived gradients.

Both subtract the maximum before ``exp`` (the log-sum-exp trick), so logits of ±1e4 neither overflow
nor underflow the normaliser. The exponentials and their sum are carried in ``np.longdouble``
(80-bit on x86 Linux; only float64 on Windows and macOS-arm64, where tests/test_accuracy.py widens
the reference's bound by the summation error) and rounded to float64 once, so the reference stays the more accurate side of the
comparison with torch's float64 kernels (measured against the 50-digit oracle, tests/test_accuracy.py). A -inf logit is a class of probability 0; a +inf (or NaN) logit makes
the slice NaN, as in torch: inf - inf is undefined.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp

from reference import facts
from reference import symbolic as S
import warnings

from reference._formats import cast
from reference._validation import as_float, check_dim, check_grad_shape, quiet, symmetric_jvp, tangents


__all__ = ["log_softmax", "log_softmax_backward", "log_softmax_jvp", "softmax", "softmax_backward", "softmax_jvp"]


def _args(input: Any, dim: Any, dtype: Any, op: str, stacklevel: int) -> tuple[np.ndarray, int]:
    """The input, rounded to ``dtype`` first when one is given (torch casts before computing; the
    result is then exact for those values), and the dimension, chosen as torch's deprecated
    implicit choice does when it is None: 0 for 0-, 1- and 3-d inputs, else 1."""
    x = cast(as_float(input, "input"), dtype)
    if dim is None:
        warnings.warn(f"Implicit dimension choice for {op} has been deprecated. Change the call to include dim=X as an argument.",
                      stacklevel=stacklevel + 1)  # torch's default 3 names the caller of F.softmax; here one more frame: quiet()
        dim = 0 if x.ndim in (0, 1, 3) else 1
    return x, check_dim(dim, x.ndim)


def log_softmax_extended(x: np.ndarray, dim: int) -> np.ndarray:
    """log_softmax in np.longdouble, for references that keep computing with it before rounding."""
    shifted = x.astype(np.longdouble) - np.max(x, axis=dim, keepdims=True, initial=-np.inf)
    return shifted - np.log(np.sum(np.exp(shifted), axis=dim, keepdims=True))


@quiet
@facts.declare(curve=facts.first_logit("log_softmax", -6, 6, "z₀ (z₁ = z₂ = 0)", "log_softmax(z)₀"))
def log_softmax(input: Any, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> np.ndarray:
    r"""$\log\mathrm{softmax}(x)_i = x_i - \log\sum_j e^{x_j}$; $\partial/\partial x_j = \delta_{ij} - p_j$."""
    x, d = _args(input, dim, dtype, "log_softmax", _stacklevel)
    if x.ndim == 0:
        return x - x  # a single class: log 1 = 0 (NaN stays NaN)
    return log_softmax_extended(x, d).astype(np.float64)


def softmax_extended(x: np.ndarray, dim: int) -> np.ndarray:
    """softmax in np.longdouble, for references that keep computing with it before rounding."""
    e = np.exp(x.astype(np.longdouble) - np.max(x, axis=dim, keepdims=True, initial=-np.inf))
    return e / np.sum(e, axis=dim, keepdims=True)


@quiet
@facts.declare(curve=facts.first_logit("softmax", -6, 6, "z₀ (z₁ = z₂ = 0)", "softmax(z)₀"), lipschitz=lambda p: 0.5, mixes=True)
def softmax(input: Any, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> np.ndarray:
    r"""$\mathrm{softmax}(x)_i = e^{x_i - m}/\sum_j e^{x_j - m}$ with $m = \max_j x_j$;
    $\partial p_i/\partial x_j = p_i(\delta_{ij} - p_j)$."""
    x, d = _args(input, dim, dtype, "softmax", _stacklevel)
    if x.ndim == 0:
        return x - x + 1.0
    return softmax_extended(x, d).astype(np.float64)


def _centred(p: np.ndarray, v: np.ndarray, dim: int) -> np.ndarray:
    r"""$v_i - \sum_j p_j v_j$ along ``dim``, in np.longdouble, accurate also at a dominant class.

    Where $p_i > 1/2$ (at most one class a row) the difference is $\sum_j p_j (v_i - v_j)$, equal since
    $\sum_j p_j = 1$. When the other classes' probabilities are below the working precision, the plain
    difference cancels to 0 there, though softmax's true $p_i(v_i - \sum_j p_j v_j)$ at that class is as
    large as at the others (for both J t and Jᵀ g: J is symmetric)."""
    v = v.astype(np.longdouble)
    dominant = p > 0.5
    at_dominant = np.sum(np.where(dominant, v, 0.0), axis=dim, keepdims=True)
    plain = v - np.sum(p * v, axis=dim, keepdims=True)
    return np.where(dominant, np.sum(p * (at_dominant - v), axis=dim, keepdims=True), plain)


@quiet
def softmax_backward(grad_output: Any, input: Any, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> np.ndarray:
    r"""$\partial L/\partial x_j = \sum_i g_i p_i(\delta_{ij} - p_j) = p_j\,(g_j - \sum_i g_i p_i)$."""
    x, d = _args(input, dim, dtype, "softmax", _stacklevel)
    g = check_grad_shape(grad_output, x.shape)
    if x.ndim == 0:
        return g * 0.0
    p = softmax_extended(x, d)
    return (p * _centred(p, g, d)).astype(np.float64)


@quiet
def log_softmax_backward(grad_output: Any, input: Any, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> np.ndarray:
    r"""$\partial L/\partial x_j = \sum_i g_i(\delta_{ij} - p_j) = g_j - p_j \sum_i g_i$."""
    x, d = _args(input, dim, dtype, "log_softmax", _stacklevel)
    g = check_grad_shape(grad_output, x.shape)
    if x.ndim == 0:
        return g * 0.0
    g = g.astype(np.longdouble)
    return (g - softmax_extended(x, d) * np.sum(g, axis=d, keepdims=True)).astype(np.float64)


@quiet
def softmax_jvp(tangent: Any, input: Any, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> np.ndarray:
    r"""$\dot p_i = \sum_j p_i(\delta_{ij} - p_j)\dot x_j = p_i\,(\dot x_i - \sum_j p_j \dot x_j)$, at the input rounded to
    ``dtype`` (the cast's derivative taken as 1, as in the backward). J = diag(p) - p pᵀ is symmetric: the backward's."""
    _args(input, dim, dtype, "softmax", _stacklevel)  # the arguments checked as the forward checks them
    return symmetric_jvp(softmax_backward, tangent, input, dim, _stacklevel, dtype)


@quiet
def log_softmax_jvp(tangent: Any, input: Any, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> np.ndarray:
    r"""$\dot y_i = \sum_j (\delta_{ij} - p_j)\dot x_j = \dot x_i - \sum_j p_j \dot x_j$, at the input rounded to
    ``dtype`` (the cast's derivative taken as 1, as in the backward)."""
    x, d = _args(input, dim, dtype, "log_softmax", _stacklevel)
    (t,) = tangents(tangent, {"input": x.shape})
    if t is None:
        return np.zeros(x.shape)
    if x.ndim == 0:
        return t * 0.0
    return _centred(softmax_extended(x, d), t, d).astype(np.float64)


def _rows_example(op: str, n: int):
    def example(rng: np.random.Generator) -> S.Example:
        x, g = rng.normal(0, 2, (20, n)), rng.normal(0, 1, (20, n))
        return S.Example((x,), {"dim": 1}, g, {**S.columns(x, "z"), **S.columns(g, "g")}, lambda grads: S.stacked(grads, 20))

    return example


@facts.derivation(softmax)
def _softmax(n: int = 3) -> S.Derivation:
    zs, gs, ps = S.classes(n)
    P, G, i, j, C = S.P, S.G, S.i, S.j, S.C
    total = sum(gi * pi for gi, pi in zip(gs, ps))
    hand = tuple(ps[jj] * (gs[jj] - total) for jj in range(n))
    steps = (S.Step("definition", S.SOFTMAX_STEPS[0].expr), S.SOFTMAX_STEPS[1],
             S.Step("vector-Jacobian product", sp.Eq(sp.Derivative(S.L, S.Z[j]), P[j] * (G[j] - sp.Sum(G[i] * P[i], (i, 1, C))))))
    return S.Derivation("softmax", total, zs, hand, steps, size=n, example=_rows_example("softmax", n))


@facts.derivation(log_softmax)
def _log_softmax(n: int = 3) -> S.Derivation:
    zs, gs, ps = S.classes(n)
    P, G, Z, i, j, k, C = S.P, S.G, S.Z, S.i, S.j, S.k, S.C
    logp = [t - sp.log(sum(sp.exp(u) for u in zs)) for t in zs]
    hand = tuple(gs[jj] - ps[jj] * sum(gs) for jj in range(n))
    steps = (S.Step("definition", sp.Eq(sp.log(P[i]), Z[i] - sp.log(sp.Sum(sp.exp(Z[k]), (k, 1, C))))),
             S.Step("its Jacobian", sp.Eq(sp.Derivative(sp.log(P[i]), Z[j]), sp.KroneckerDelta(i, j) - P[j])),
             S.Step("vector-Jacobian product", sp.Eq(sp.Derivative(S.L, Z[j]), G[j] - P[j] * sp.Sum(G[i], (i, 1, C)))))
    return S.Derivation("log_softmax", sum(gi * li for gi, li in zip(gs, logp)), zs, hand, steps, size=n, example=_rows_example("log_softmax", n))
