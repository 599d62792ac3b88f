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

from reference import facts
from reference._validation import as_float, check_dim, check_grad_shape, quiet


def log_softmax_extended(x: np.ndarray, dim: int) -> np.ndarray:
    """log_softmax in np.longdouble, for references that keep computing with it before rounding."""
    shifted = x.astype(np.longdouble) - np.max(x, axis=dim, keepdims=True, initial=-np.inf)
    return shifted - np.log(np.sum(np.exp(shifted), axis=dim, keepdims=True))


@quiet
@facts.declare(curve=facts.first_logit("log_softmax", -6, 6, "z₀ (z₁ = z₂ = 0)", "log_softmax(z)₀"))
def log_softmax(input: Any, dim: int) -> np.ndarray:
    r"""$\log\mathrm{softmax}(x)_i = x_i - \log\sum_j e^{x_j}$; $\partial/\partial x_j = \delta_{ij} - p_j$."""
    x = as_float(input, "input")
    d = check_dim(dim, x.ndim)
    if x.ndim == 0:
        return x - x  # a single class: log 1 = 0 (NaN stays NaN)
    return log_softmax_extended(x, d).astype(np.float64)


def softmax_extended(x: np.ndarray, dim: int) -> np.ndarray:
    """softmax in np.longdouble, for references that keep computing with it before rounding."""
    e = np.exp(x.astype(np.longdouble) - np.max(x, axis=dim, keepdims=True, initial=-np.inf))
    return e / np.sum(e, axis=dim, keepdims=True)


@quiet
@facts.declare(curve=facts.first_logit("softmax", -6, 6, "z₀ (z₁ = z₂ = 0)", "softmax(z)₀"))
def softmax(input: Any, dim: int) -> np.ndarray:
    r"""$\mathrm{softmax}(x)_i = e^{x_i - m}/\sum_j e^{x_j - m}$ with $m = \max_j x_j$;
    $\partial p_i/\partial x_j = p_i(\delta_{ij} - p_j)$."""
    x = as_float(input, "input")
    d = check_dim(dim, x.ndim)
    if x.ndim == 0:
        return x - x + 1.0
    return softmax_extended(x, d).astype(np.float64)


@quiet
def softmax_backward(grad_output: Any, input: Any, dim: int) -> np.ndarray:
    r"""$\partial L/\partial x_j = \sum_i g_i p_i(\delta_{ij} - p_j) = p_j\,(g_j - \sum_i g_i p_i)$."""
    x = as_float(input, "input")
    g = check_grad_shape(grad_output, x.shape)
    d = check_dim(dim, x.ndim)
    if x.ndim == 0:
        return g * 0.0
    p, g = softmax_extended(x, d), g.astype(np.longdouble)
    return (p * (g - np.sum(g * p, axis=d, keepdims=True))).astype(np.float64)


@quiet
def log_softmax_backward(grad_output: Any, input: Any, dim: int) -> np.ndarray:
    r"""$\partial L/\partial x_j = \sum_i g_i(\delta_{ij} - p_j) = g_j - p_j \sum_i g_i$."""
    x = as_float(input, "input")
    g = check_grad_shape(grad_output, x.shape)
    d = check_dim(dim, x.ndim)
    if x.ndim == 0:
        return g * 0.0
    g = g.astype(np.longdouble)
    return (g - softmax_extended(x, d) * np.sum(g, axis=d, keepdims=True)).astype(np.float64)
