r"""Embedding lookup, torch's ``F.embedding``, and its hand-derived gradient: a scatter-add.

$y_{\dots} = W_{t_{\dots}}$: each index picks a row of the weight. The gradient of the weight is
$\partial L/\partial W_i = \sum_{j : t_j = i} g_j$ (every position that looked row $i$ up adds its
upstream gradient; ``scale_grad_by_freq`` divides by how often $i$ occurs), except the row
``padding_idx``, which gets none. ``max_norm`` renormalises, in place and before the lookup, each
looked-up row whose ``norm_type``-norm exceeds it: $W_i \leftarrow W_i \cdot$ max_norm / (‖W_i‖ + 1e-7),
as torch does (the padding row included); the gradient does not pass through that renormalisation.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp

from reference import facts
from reference import symbolic as S
from reference._validation import as_float, as_index, check_grad_shape, quiet, tangents

__all__ = ["embedding", "embedding_backward", "embedding_jvp"]


def _args(input: Any, weight: Any, padding_idx: Any) -> tuple[np.ndarray, np.ndarray, int | None]:
    t, w = as_index(input, "input"), as_float(weight, "weight")
    if w.ndim != 2:
        raise ValueError(f"weight must be a 2-D (num_embeddings, embedding_dim) array, got shape {w.shape}")
    if t.size and (t.min() < 0 or t.max() >= w.shape[0]):
        raise ValueError(f"input indices must lie in [0, {w.shape[0]}), got {t.min()}..{t.max()}")
    if padding_idx is not None:
        if not -w.shape[0] <= int(padding_idx) < w.shape[0]:
            raise ValueError(f"padding_idx={padding_idx} must lie in [-{w.shape[0]}, {w.shape[0]})")
        padding_idx = int(padding_idx) % w.shape[0]
    return t, w, padding_idx


def _norms(values: np.ndarray, p: float) -> np.ndarray:
    """Each row's p-norm without overflow: m·‖x/m‖ with m the row's largest magnitude."""
    with np.errstate(all="ignore"):
        wide = np.abs(values).astype(np.longdouble)  # rounded once, at the end of _renormalize
        m = np.max(wide, axis=1, initial=0.0)
        safe = np.where((m > 0) & np.isfinite(m), m, 1.0)
        scaled = np.sum((wide / safe[:, None]) ** p, axis=1) ** (1 / np.longdouble(p)) * safe
        return np.where(np.isfinite(m), np.where(m > 0, scaled, 0.0), m)


def _renormalize(weight: Any, t: np.ndarray, max_norm: float, norm_type: float) -> None:
    rows = np.unique(t)
    if not rows.size:
        return
    values = np.asarray(weight, dtype=np.float64)[rows]
    norms = _norms(values, float(norm_type))
    scale = np.where(norms > max_norm, max_norm / (norms + np.longdouble(1e-7)), 1.0)
    weight[rows] = (values * scale[:, None]).astype(np.float64)


def _renorm_curve(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A row of norm t looked up with max_norm = 1: the norm it comes back with, and the gradient a
    unit upstream gradient gives it (1: the renormalisation is not differentiated)."""
    return np.where(t > 1.0, t / (t + 1e-7), t), np.ones_like(t)


@quiet
@facts.declare(curve=facts.Curve(0, 3, "‖W_i‖ (max_norm = 1)", "‖y‖, the row looked up", _renorm_curve), accuracy=2.5, sums=False)
def embedding(input: Any, weight: Any, padding_idx: int | None = None, max_norm: float | None = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> np.ndarray:
    r"""$y = W_t$, one row of the weight per index (rows past ``max_norm`` renormalised in place first)."""
    t, w, _ = _args(input, weight, padding_idx)
    if max_norm is not None:
        if not isinstance(weight, np.ndarray) or weight.dtype.kind != "f":
            raise TypeError("max_norm renormalises the weight in place: pass it as a float numpy array")
        _renormalize(weight, t, float(max_norm), norm_type)
        w = as_float(weight, "weight")
    return w[t]


@quiet
def embedding_backward(grad_output: Any, input: Any, weight: Any, padding_idx: int | None = None, max_norm: float | None = None,
                       norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> np.ndarray:
    r"""$\partial L/\partial W_i = \sum_{j: t_j = i} g_j$ (divided by the count of $i$ with ``scale_grad_by_freq``), 0 for ``padding_idx``."""
    t, w, padding_idx = _args(input, weight, padding_idx)
    g = check_grad_shape(grad_output, t.shape + (w.shape[1],)).reshape(-1, w.shape[1])
    flat = t.reshape(-1)
    if scale_grad_by_freq:
        counts = np.bincount(flat, minlength=w.shape[0])
        g = g / counts[flat][:, None]
    grad = np.zeros(w.shape, dtype=np.longdouble)
    np.add.at(grad, flat, g.astype(np.longdouble))
    if padding_idx is not None:
        grad[padding_idx] = 0.0
    return grad.astype(np.float64)


@quiet
def embedding_jvp(tangent: Any, input: Any, weight: Any, padding_idx: int | None = None, max_norm: float | None = None, norm_type: float = 2.0,
                  scale_grad_by_freq: bool = False, sparse: bool = False) -> np.ndarray:
    r"""$\dot y_j = \dot W_{t_j}$: the forward gathers rows, so its derivative gathers the tangent's.

    padding_idx and scale_grad_by_freq are conventions of the gradient only (torch's backward drops
    the padding row and divides by the counts; its forward mode, like the math, does neither), and
    max_norm's renormalisation happens outside autograd, so it has no tangent."""
    t, w, padding_idx = _args(input, weight, padding_idx)
    (tw,) = tangents(tangent, {"weight": w.shape})
    if tw is None:
        return np.zeros(t.shape + (w.shape[1],))
    return tw[t.reshape(-1)].reshape(t.shape + (w.shape[1],)).astype(np.float64)


def _scatter_example(rng: np.random.Generator) -> S.Example:
    t = np.array([0, 2, 0, 1, 0])
    w, g = rng.normal(size=(3, 2)), rng.normal(size=(5, 2))
    values = {**{f"W_{i}{d}": w[i, d] for i in range(3) for d in range(2)}, **{f"g_{j}{d}": g[j, d] for j in range(5) for d in range(2)}}
    return S.Example((t, w), {}, g, values, lambda grads: (np.array(grads, dtype=float).reshape(3, 2),))


@facts.derivation(embedding)
def _embedding() -> S.Derivation:
    """Five lookups t = (0, 2, 0, 1, 0) into three rows of two: row 0 gathers three upstream gradients."""
    t = (0, 2, 0, 1, 0)
    W = sp.Matrix(3, 2, lambda i, d: sp.Symbol(f"W_{i}{d}", real=True))
    G = sp.Matrix(5, 2, lambda j, d: sp.Symbol(f"g_{j}{d}", real=True))
    loss = sum(G[j, d] * W[t[j], d] for j in range(5) for d in range(2))
    hand = tuple(sum((G[j, d] for j in range(5) if t[j] == i), sp.S.Zero) for i in range(3) for d in range(2))
    Wb, Gb, T, i, j = sp.IndexedBase("W"), sp.IndexedBase("g"), sp.IndexedBase("t"), S.i, S.j
    steps = (S.Step("definition", sp.Eq(sp.IndexedBase("y")[j], Wb[T[j]])),
             S.Step("scatter-add", sp.Eq(sp.Derivative(S.L, Wb[i]), sp.Sum(Gb[j] * sp.KroneckerDelta(T[j], i), (j, 1, sp.Symbol("n"))))))
    return S.Derivation("embedding", loss, tuple(W), hand, steps, note="indices are integers: only the weight is differentiable",
                        example=_scatter_example)
