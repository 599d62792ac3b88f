r"""The Kullback-Leibler divergence, as torch's ``kl_div`` computes it, and its hand-derived gradients.

``input`` is log-probabilities $x$; ``target`` is probabilities $t$ (or log-probabilities $s$ with
``log_target=True``). Each element contributes $t(\log t - x)$, with torch's convention
$0 \log 0 = 0$ (``xlogy``), or $e^{s}(s - x)$. Reductions: 'sum', 'mean' (over every element, as
torch warns) and 'batchmean' (the sum over the first dimension's size: the divergence per sample).

Gradients: $\partial/\partial x = -t$ (resp. $-e^{s}$), and for the target $\log t + 1 - x$ (resp.
$e^{s}(s - x + 1)$). At $t = 0$ the target's derivative does not exist ($t \log t$ falls with
infinite slope); torch returns NaN there, and so does the reference.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
import sympy as sp

from reference import facts
from reference import symbolic as S
from reference._validation import as_float, check_reduction, legacy_reduction, quiet, reduce_backward, tangents
from reference._validation import reduce as reduce_loss  # `reduce` is torch's deprecated flag's name

__all__ = ["kl_div", "kl_div_backward", "kl_div_jvp"]


def reduction_of(reduction: str, shape: tuple[int, ...]) -> tuple[str, int | None]:
    """kl_div's reduction as reduce() takes it: 'batchmean' is a mean over the first dimension's size
    (a 0-d input is one sample); the others as they are (a mean's divisor None: every element)."""
    if reduction == "batchmean":
        return "mean", (shape[0] if len(shape) else 1)
    return check_reduction(reduction), None


def _args(input: Any, target: Any, reduction: str) -> tuple[np.ndarray, np.ndarray, str, int | None]:
    x, t = as_float(input, "input"), as_float(target, "target")
    if x.shape != t.shape:
        raise ValueError(f"target shape {t.shape} must equal the input shape {x.shape}")
    return (x, t, *reduction_of(reduction, x.shape))


def _xlogx(t: np.ndarray) -> np.ndarray:
    return np.where(t == 0, 0.0, t * np.log(np.where(t == 0, 1.0, t)))


@quiet
@facts.declare(curve=facts.against("kl_div", 0.25, -6, 0, "x = log q (target p = 0.25)"), accuracy=3)
def kl_div(input: Any, target: Any, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean",
           log_target: bool = False) -> np.ndarray:
    r"""$\ell = t(\log t - x)$, or $e^{s}(s - x)$ for a log target; $\partial\ell/\partial x = -t$."""
    x, t, how, divisor = _args(input, target, legacy_reduction(size_average, reduce, reduction))
    terms = np.exp(t) * (t - x) if log_target else _xlogx(t) - t * x
    return reduce_loss(terms, how, divisor)


@quiet
def kl_div_backward(grad_output: Any, input: Any, target: Any, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean",
           log_target: bool = False) -> tuple[np.ndarray, np.ndarray]:
    r"""$\partial L/\partial x = -t\,\bar g$ and $\partial L/\partial t = (\log t + 1 - x)\,\bar g$ (log target: $-e^{s}\bar g$ and $e^{s}(s - x + 1)\bar g$)."""
    x, t, how, divisor = _args(input, target, legacy_reduction(size_average, reduce, reduction))
    g = reduce_backward(grad_output, x.shape, how, divisor)
    if log_target:
        p = np.exp(t)
        return -p * g, p * (t - x + 1.0) * g
    # NaN where t = 0: the derivative of t log t does not exist there (torch: 0/0 in xlogy's backward)
    target_slope = np.where(t == 0, np.nan, np.log(np.where(t == 0, 1.0, t)) + 1.0 - x)
    return -t * g, target_slope * g


@quiet
def kl_div_jvp(tangent: Any, input: Any, target: Any, size_average: bool | None = None, reduce: bool | None = None, reduction: str = "mean",
               log_target: bool = False) -> np.ndarray:
    r"""$\dot\ell = -t\,\dot x + (\log t + 1 - x)\,\dot t$ (log target: $-e^{s}\dot x + e^{s}(s - x + 1)\,\dot s$), reduced as the loss;
    ``tangent`` = (ẋ, ṫ), each may be None. NaN where $t = 0$ and ṫ is given, as the backward."""
    x, t, how, divisor = _args(input, target, legacy_reduction(size_average, reduce, reduction))
    tx, tt = tangents(tangent, {"input": x.shape, "target": t.shape})
    terms = np.zeros(x.shape)
    if log_target:
        p = np.exp(t)
        terms = terms if tx is None else terms - p * tx
        terms = terms if tt is None else terms + p * (t - x + 1.0) * tt
    else:
        terms = terms if tx is None else terms - t * tx
        # the derivative of t log t does not exist at t = 0 (the backward's NaN)
        target_slope = np.where(t == 0, np.nan, np.log(np.where(t == 0, 1.0, t)) + 1.0 - x)
        terms = terms if tt is None else terms + target_slope * tt
    return reduce_loss(terms, how, divisor)


@facts.derivation(kl_div)
def _kl_div(*, log_target: Literal[False, True] = False) -> S.Derivation:
    x, t = S.x, sp.Symbol("t", positive=True)
    if log_target:
        s = sp.Symbol("s", real=True)
        term = sp.exp(s) * (s - x)
        hand = (-sp.exp(s), sp.exp(s) * (s - x + 1))
        inputs = (x, s)
    else:
        term = t * sp.log(t) - t * x
        hand = (-t, sp.log(t) + 1 - x)
        inputs = (x, t)
    steps = (S.Step("definition", sp.Eq(S.L, term)),
             S.Step("input", sp.Eq(sp.Derivative(S.L, x), hand[0])),
             S.Step("target", sp.Eq(sp.Derivative(S.L, inputs[1]), hand[1])))
    return S.Derivation("kl_div", term, inputs, hand, steps, {t: (0.01, 1.0)}, pointwise=term, inputs=inputs, differentiated=2,
                        note="batchmean divides the sum by the first dimension's size, mean by every element")
