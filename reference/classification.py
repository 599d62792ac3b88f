r"""Cross-entropy and negative log-likelihood, with class-index or probability targets.

Shapes as in torch: input (C,), (N, C) or (N, C, d1, ...), class dimension 1 (0 when unbatched).
Internally the class axis is moved last, so a "row" is one sample's C scores.

Every variant is one formula: per sample, $\ell = -\sum_c a_c \log p_c$ with coefficients
- class index t: $a_c = w_t(1-\varepsilon)[c=t] + w_c\,\varepsilon/C$ (0 for an ignored sample);
- probabilities q: $a_c = w_c((1-\varepsilon) q_c + \varepsilon/C)$.
so $\partial\ell/\partial z = p\sum_c a_c - a$. 'mean' divides by $\sum_n w_{t_n}$ over the
non-ignored samples for class indices (torch: NaN when that is 0, with a zero gradient where
every sample is ignored) and by the number of samples for probability targets, weights or not.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

from reference import facts
from reference import symbolic as S
from reference._validation import (
    as_float,
    as_index,
    as_optional_float,
    check_reduction,
    quiet,
    legacy_reduction,
    reduce as reduce_loss,  # `reduce` is torch's deprecated flag's name
    reduce_backward,
    tangents,
)

from reference.softmaxes import log_softmax_extended, softmax_extended


__all__ = ["cross_entropy", "cross_entropy_backward", "cross_entropy_jvp", "nll_loss", "nll_loss_backward", "nll_loss_jvp"]


@dataclass(frozen=True)
class _Rows:
    """Input with the class axis last, and what the reduction needs to know about the targets."""

    x: np.ndarray  # (..., C)
    shape: tuple[int, ...]  # the unreduced loss shape, batch dims only
    weight: np.ndarray  # (C,)
    target: np.ndarray  # (...) int64 or (..., C) float64
    valid: np.ndarray  # (...) bool: sample not ignored
    probabilities: bool


def _class_last(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim == 0:
        raise ValueError(f"{name} must have a class dimension, got a 0-d array")
    return x if x.ndim == 1 else np.moveaxis(x, 1, -1)


def _rows(input: Any, target: Any, weight: Any, ignore_index: int, name: str = "input") -> _Rows:
    x = as_float(input, name)
    xl = _class_last(x, name)
    n_classes, batch = xl.shape[-1], xl.shape[:-1]
    w = as_optional_float(weight, "weight")
    if w is None:
        w = np.ones(n_classes)
    elif w.shape != (n_classes,):
        raise ValueError(f"weight must have shape (C,) = ({n_classes},), got {w.shape}")
    t = np.asarray(target)
    if t.dtype.kind == "f":
        if t.shape != x.shape:
            raise ValueError(
                f"target: probability targets must have the input's shape {x.shape}, got {t.shape} "
                "(class-index targets must be integers)"
            )
        if ignore_index >= 0:
            raise ValueError(f"ignore_index={ignore_index} is not supported with probability targets")
        return _Rows(xl, batch, w, _class_last(t.astype(np.float64), "target"), np.ones(batch, bool), True)
    t = as_index(target, "target")
    if t.shape != batch:
        raise ValueError(f"target shape {t.shape} must be the input shape without its class dimension, {batch}")
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= n_classes))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"target{list(where)}={int(t[where])} is not a class index in [0, {n_classes}) nor ignore_index={ignore_index}")
    return _Rows(xl, batch, w, t, valid, False)


def _check_smoothing(label_smoothing: float) -> float:
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    return eps


def _target_onehot(rows: _Rows) -> np.ndarray:
    safe = np.where(rows.valid, rows.target, 0)
    return (safe[..., None] == np.arange(rows.x.shape[-1])) & rows.valid[..., None]


def _divisor(rows: _Rows) -> float:
    if rows.probabilities:
        return float(np.prod(rows.shape))
    safe = np.where(rows.valid, rows.target, 0)
    return float(np.sum(np.where(rows.valid, rows.weight[safe], 0.0)))


def _coefficients(rows: _Rows, eps: float) -> np.ndarray:
    """The $a_c$ of the module docstring, shape (..., C)."""
    n_classes = rows.x.shape[-1]
    if rows.probabilities:
        return rows.weight * ((1.0 - eps) * rows.target + eps / n_classes)
    picked = _target_onehot(rows) * rows.weight
    smooth = rows.valid[..., None] * rows.weight * (eps / n_classes)
    return (1.0 - eps) * picked + (smooth if eps > 0 else 0.0)


def _index_parts(rows: _Rows, logp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Per sample: the NLL term $-w_t \log p_t$ and the smoothing term $-\sum_c w_c \log p_c$."""
    # Gather rather than multiply: a -inf log-probability of a class that is not the target must
    # not turn 0 * -inf into NaN (torch gathers too).
    safe = np.where(rows.valid, rows.target, 0)
    picked = np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    nll = np.where(rows.valid, -rows.weight[safe] * picked, 0.0)
    return nll, np.where(rows.valid, -np.sum(rows.weight * logp, axis=-1), 0.0)


def _reduced_loss(rows: _Rows, logp: np.ndarray, eps: float, reduction: str) -> np.ndarray:
    divisor = _divisor(rows)
    if rows.probabilities:
        return reduce_loss(-np.sum(_coefficients(rows, eps).astype(np.longdouble) * logp, axis=-1), reduction, divisor)
    nll, smooth = _index_parts(rows, logp)
    if eps == 0:
        return reduce_loss(nll, reduction, divisor)
    # torch reduces the two parts separately: the same number, except that when every selected
    # weight is 0 the NLL part's mean is 0/0, so the loss is NaN rather than inf.
    combined = (1.0 - eps) * np.asarray(reduce_loss(nll, reduction, divisor), np.longdouble) + (eps / rows.x.shape[-1]) * np.asarray(reduce_loss(smooth, reduction, divisor), np.longdouble)
    return combined.astype(np.float64)


def _restore(grad: np.ndarray, ndim: int) -> np.ndarray:
    return grad if ndim == 1 else np.moveaxis(grad, -1, 1)


@quiet
@facts.declare(curve=facts.first_logit("cross_entropy", -6, 6, "z₀, the target's logit (others 0)", "loss"))
def cross_entropy(
    input: Any,
    target: Any,
    weight: Any = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> np.ndarray:
    r"""$\ell_n = -\sum_c a_c \log\mathrm{softmax}(z_n)_c$ (see module docstring for $a$);
    $\partial \ell_n/\partial z_n = \mathrm{softmax}(z_n)\sum_c a_c - a$."""
    reduction = check_reduction(legacy_reduction(size_average, reduce, reduction))
    eps = _check_smoothing(label_smoothing)
    rows = _rows(input, target, weight, ignore_index)
    # Carried in np.longdouble until reduce() rounds it once.
    return _reduced_loss(rows, log_softmax_extended(rows.x, -1), eps, reduction)


@quiet
def cross_entropy_backward(
    grad_output: Any,
    input: Any,
    target: Any,
    weight: Any = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> np.ndarray:
    r"""$\partial L/\partial z_n = \bar g_n\,(p_n \sum_c a_{nc} - a_n)$, $\bar g_n$ = g, g/divisor or $g_n$ by reduction.

    Ignored samples get 0, even when the mean's divisor is 0 (torch: zero gradient, NaN loss).
    """
    reduction = check_reduction(legacy_reduction(size_average, reduce, reduction))
    eps = _check_smoothing(label_smoothing)
    rows = _rows(input, target, weight, ignore_index)
    divisor = _divisor(rows)
    g = reduce_backward(grad_output, rows.shape, reduction, divisor)
    if reduction == "mean" and divisor == 0 and not rows.probabilities:
        g = np.full(rows.shape, np.nan)  # 0/0: every selected weight is 0 (torch: NaN rows)
    a = _coefficients(rows, eps).astype(np.longdouble)  # extended precision, rounded once at the end
    local = softmax_extended(rows.x, -1) * np.sum(a, axis=-1, keepdims=True) - a
    # An ignored sample's upstream gradient is 0, not g/0: its row stays 0 (or NaN where its
    # softmax is NaN, as in torch, whose zero gradient meets that NaN in log_softmax's backward).
    grad = local * np.where(rows.valid, g, 0.0).astype(np.longdouble)[..., None]
    return _restore(grad.astype(np.float64), np.ndim(input))


@quiet
def cross_entropy_jvp(
    tangent: Any,
    input: Any,
    target: Any,
    weight: Any = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> np.ndarray:
    r"""$\dot\ell_n = \sum_c (p_{nc} \sum_k a_{nk} - a_{nc})\,\dot z_{nc}$ (module docstring for $a$), then summed or
    averaged as the loss; ignored samples add 0, a 'mean' whose divisor is 0 is NaN (0 if every sample is ignored), as the backward."""
    reduction = check_reduction(legacy_reduction(size_average, reduce, reduction))
    eps = _check_smoothing(label_smoothing)
    rows = _rows(input, target, weight, ignore_index)
    (t,) = tangents(tangent, {"input": np.shape(input)})
    if t is None:
        return np.zeros(rows.shape if reduction == "none" else ())
    a = _coefficients(rows, eps).astype(np.longdouble)
    local = softmax_extended(rows.x, -1) * np.sum(a, axis=-1, keepdims=True) - a
    per_sample = np.sum(local * _class_last(t, "tangent"), axis=-1)
    # An ignored sample's row of J is 0 (NaN where its softmax is NaN, as in the backward).
    per_sample = np.where(rows.valid, per_sample, per_sample * 0.0)
    divisor = _divisor(rows)
    if reduction == "mean" and divisor == 0 and not rows.probabilities:
        total = np.sum(per_sample)  # 0 (or NaN) over ignored samples; NaN where any sample counts: g/0 in the backward
        return np.asarray(np.nan if rows.valid.any() else total, dtype=np.float64)
    return reduce_loss(per_sample, reduction, divisor)


@quiet
@facts.declare(curve=facts.first_logit("nll_loss", -6, 0, "x₀, the target's log-probability", "loss"))
def nll_loss(
    input: Any, target: Any, weight: Any = None, size_average: bool | None = None, ignore_index: int = -100,
    reduce: bool | None = None, reduction: str = "mean"
) -> np.ndarray:
    r"""$\ell_n = -w_{t_n}\,x_{n,t_n}$ on log-probabilities x; $\partial\ell_n/\partial x_{n,c} = -w_{t_n}[c = t_n]$."""
    reduction = check_reduction(legacy_reduction(size_average, reduce, reduction))
    rows = _rows(input, as_index(target, "target"), weight, ignore_index)
    safe = np.where(rows.valid, rows.target, 0)
    picked = np.take_along_axis(rows.x, safe[..., None], axis=-1)[..., 0]
    loss = np.where(rows.valid, -rows.weight[safe] * picked, 0.0)
    return reduce_loss(loss, reduction, _divisor(rows))


@quiet
def nll_loss_backward(
    grad_output: Any, input: Any, target: Any, weight: Any = None, size_average: bool | None = None, ignore_index: int = -100,
    reduce: bool | None = None, reduction: str = "mean"
) -> np.ndarray:
    r"""$\partial L/\partial x_{n,c} = -\bar g_n\,w_{t_n}[c = t_n]$, 0 for ignored samples."""
    reduction = check_reduction(legacy_reduction(size_average, reduce, reduction))
    rows = _rows(input, as_index(target, "target"), weight, ignore_index)
    g = reduce_backward(grad_output, rows.shape, reduction, _divisor(rows))
    picked = _target_onehot(rows)
    # Only the target entry is written (torch too): -w_t g / 0 is NaN there when every selected
    # weight is 0, and the other entries stay exactly 0.
    grad = np.where(picked, -(rows.weight * picked) * g[..., None], 0.0)
    return _restore(grad, np.ndim(input))


@quiet
def nll_loss_jvp(
    tangent: Any, input: Any, target: Any, weight: Any = None, size_average: bool | None = None, ignore_index: int = -100,
    reduce: bool | None = None, reduction: str = "mean"
) -> np.ndarray:
    r"""$\dot\ell_n = -w_{t_n}\,\dot x_{n,t_n}$ (0 for ignored samples), then summed or averaged as the loss
    (0 when every sample is ignored, as the backward's zero gradient)."""
    reduction = check_reduction(legacy_reduction(size_average, reduce, reduction))
    rows = _rows(input, as_index(target, "target"), weight, ignore_index)
    (t,) = tangents(tangent, {"input": np.shape(input)})
    if t is None or not rows.valid.any():
        return np.zeros(() if reduction != "none" else rows.shape)
    safe = np.where(rows.valid, rows.target, 0)
    picked = np.take_along_axis(_class_last(t, "tangent"), safe[..., None], axis=-1)[..., 0]
    return reduce_loss(np.where(rows.valid, -rows.weight[safe] * picked, 0.0), reduction, _divisor(rows))


def _class_example(op: str, n: int):
    """Class targets, reduction='none': the coefficients are g_n times the target's one-hot row."""
    def example(rng: np.random.Generator) -> S.Example:
        x, t, g = rng.normal(0, 2, (20, n)), rng.integers(0, n, 20), rng.normal(0, 1, 20)
        coefficients = np.eye(n)[t] * g[:, None]
        values = {**S.columns(x, "z" if op == "cross_entropy" else "x"), **S.columns(coefficients, "a")}
        return S.Example((x, t), {"reduction": "none"}, g, values, lambda grads: S.stacked(grads, 20))

    return example


@facts.derivation(cross_entropy)
def _cross_entropy(n: int = 3) -> S.Derivation:
    """One sample, any coefficients a_c: class index t gives a = w_t(1-eps) e_t + w eps/C,
    probabilities q give a = w((1-eps) q + eps/C); reductions only scale the result."""
    zs, _, ps = S.classes(n)
    A, P, Z, c, j, C = S.A, S.P, S.Z, S.c, S.j, S.C
    coeffs = sp.symbols(f"a_1:{n + 1}", real=True)
    loss = -sum(ac * sp.log(pc) for ac, pc in zip(coeffs, ps))
    hand = tuple(ps[jj] * sum(coeffs) - coeffs[jj] for jj in range(n))
    steps = (S.Step("definition", sp.Eq(S.L, -sp.Sum(A[c] * sp.log(P[c]), (c, 1, C)))), *S.SOFTMAX_STEPS,
             S.Step("chain rule", sp.Eq(sp.Derivative(S.L, Z[j]), sp.Sum(-A[c] / P[c] * P[c] * (sp.KroneckerDelta(c, j) - P[j]), (c, 1, C)))),
             S.Step("result", sp.Eq(sp.Derivative(S.L, Z[j]), P[j] * sp.Sum(A[c], (c, 1, C)) - A[j])),
             S.Step("one-hot target t, no weights", sp.Eq(sp.Derivative(S.L, Z[j]), P[j] - sp.KroneckerDelta(j, sp.Symbol("t")))))
    return S.Derivation("cross_entropy", loss, zs, hand, steps, size=n, example=_class_example("cross_entropy", n))


@facts.derivation(nll_loss)
def _nll_loss(n: int = 3) -> S.Derivation:
    xs = sp.symbols(f"x_1:{n + 1}", real=True)
    coeffs = sp.symbols(f"a_1:{n + 1}", real=True)  # a = w_t e_t
    X, A, c, j = sp.IndexedBase("x"), S.A, S.c, S.j
    steps = (S.Step("definition", sp.Eq(S.L, -sp.Sum(A[c] * X[c], (c, 1, S.C)))),
             S.Step("result", sp.Eq(sp.Derivative(S.L, X[j]), -A[j])))
    return S.Derivation("nll_loss", -sum(ac * xc for ac, xc in zip(coeffs, xs)), xs, tuple(-ac for ac in coeffs), steps, size=n,
                        example=_class_example("nll_loss", n))
