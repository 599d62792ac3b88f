r"""2-D max, average and adaptive average pooling, and their hand-derived gradients.

Inputs are (N, C, H, W) or unbatched (C, H, W), as in ``torch.nn.functional``. Along each spatial
axis window o starts at $s\,o - p$ and has k taps $d$ apart (dilation: max pooling only). The
output length is $\lfloor (L + 2p - d(k-1) - 1)/s \rfloor + 1$, or with ``ceil_mode`` the ceiling,
less one if the last window would start in the right padding (torch's ``pooling_output_shape``).

- max: the padding is $-\infty$; the gradient goes to the one element torch's scan picks: the first
  maximum in row-major order, the last NaN if the window holds one, and for a window of $-\infty$
  its first element inside the input (pinned in tests/test_conventions.py).
- average: the sum of the window over a divisor, per axis separable: with ``count_include_pad``
  the window's extent clipped to the padded input, else the input elements it covers, unless
  ``divisor_override``. The gradient spreads $g/D$ over the input elements of the window.
- adaptive average: window o of L elements onto n outputs is
  $[\lfloor oL/n \rfloor, \lceil (o+1)L/n \rceil)$; the mean is $A_h\,x\,A_w^\top$ with averaging
  matrices, and the gradient $A_h^\top g\,A_w$.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp
from numpy.lib.stride_tricks import sliding_window_view

from reference import facts
from reference import symbolic as S
from reference._validation import as_float, quiet, tangents

__all__ = ["adaptive_avg_pool2d", "adaptive_avg_pool2d_backward", "adaptive_avg_pool2d_jvp", "avg_pool2d", "avg_pool2d_backward", "avg_pool2d_jvp",
           "max_pool2d", "max_pool2d_backward", "max_pool2d_jvp"]


def _pair(value: Any, name: str, minimum: int) -> tuple[int, int]:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in values):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(values[0]), int(values[1])


def _batched(input: Any) -> tuple[np.ndarray, bool]:
    x = as_float(input, "input")
    if x.ndim not in (3, 4):
        raise ValueError(f"input must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape {x.shape}")
    if 0 in x.shape[-2:]:
        raise ValueError(f"input's spatial size must be non-empty, got shape {x.shape}")
    return (x[None] if x.ndim == 3 else x), x.ndim == 3


def _out_length(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    span = d * (k - 1) + 1
    numerator = size + 2 * p - span + (s - 1 if ceil_mode else 0)
    out = numerator // s + 1
    if ceil_mode and (out - 1) * s >= size + p:  # the last window would start in the right padding
        out -= 1
    if out < 1:
        raise ValueError(f"the output would be empty: size {size}, kernel {k}, stride {s}, padding {p}, dilation {d}")
    return out


class _Windows:
    """The pooling arguments checked once, per spatial axis."""

    def __init__(self, x: np.ndarray, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: Any) -> None:
        self.k = _pair(kernel_size, "kernel_size", 1)
        self.s = self.k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) else _pair(stride, "stride", 1)
        self.p = _pair(padding, "padding", 0)
        self.d = _pair(dilation, "dilation", 1)
        if not isinstance(ceil_mode, (bool, np.bool_)):
            raise TypeError(f"ceil_mode must be a bool, got {ceil_mode!r}")
        if any(p > k // 2 for k, p in zip(self.k, self.p)):  # the kernel's own size, dilation aside, as torch checks
            raise ValueError(f"padding {self.p} must be at most half the kernel_size {self.k} (torch: 'pad should be smaller than or equal to half of kernel size')")
        self.size = x.shape[-2:]
        self.out = tuple(_out_length(n, k, s, p, d, bool(ceil_mode)) for n, k, s, p, d in zip(self.size, self.k, self.s, self.p, self.d))
        for axis, (o, n, k, s, p, d) in enumerate(zip(self.out, self.size, self.k, self.s, self.p, self.d)):
            taps = np.arange(o)[:, None] * s - p + d * np.arange(k)[None, :]
            empty = ~((taps >= 0) & (taps < n)).any(axis=1)
            if empty.any():  # torch returns -inf, an index past the input, and its backward writes there
                raise ValueError(f"window {int(np.argmax(empty))} of spatial axis {axis} covers no input element (size {n}, kernel {k}, "
                                 f"dilation {d}, padding {p}): torch returns -inf for it (pytorch/pytorch#114216)")

    def view(self, x: np.ndarray, fill: Any) -> np.ndarray:
        """(N, C, OH, OW, kh*kw): each window's taps, padded with ``fill`` (also past the right edge in ceil mode)."""
        extra = [max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p)) for o, s, d, k, n, p in zip(self.out, self.s, self.d, self.k, self.size, self.p)]
        padded = np.pad(x, ((0, 0), (0, 0), (self.p[0], self.p[0] + extra[0]), (self.p[1], self.p[1] + extra[1])), constant_values=fill)
        spans = [d * (k - 1) + 1 for d, k in zip(self.d, self.k)]
        v = sliding_window_view(padded, spans, axis=(2, 3))[..., ::self.d[0], ::self.d[1]]
        v = v[:, :, ::self.s[0], ::self.s[1]][:, :, :self.out[0], :self.out[1]]
        return v.reshape(*v.shape[:4], -1)

    def flat_index(self) -> np.ndarray:
        """(OH, OW, kh*kw): each tap's index into the input's H*W (meaningless where the tap is padding)."""
        rows = np.arange(self.out[0])[:, None] * self.s[0] - self.p[0] + np.arange(self.k[0])[None, :] * self.d[0]
        cols = np.arange(self.out[1])[:, None] * self.s[1] - self.p[1] + np.arange(self.k[1])[None, :] * self.d[1]
        return (rows[:, None, :, None] * self.size[1] + cols[None, :, None, :]).reshape(self.out[0], self.out[1], -1)


def _argmax(x: np.ndarray, w: _Windows) -> np.ndarray:
    """(N, C, OH, OW): the input index (into H*W) torch's max pooling records for each window."""
    taps = w.view(x, -np.inf)
    inside = w.view(np.ones(x.shape[:2] + w.size, dtype=bool), False)
    nan = np.isnan(taps) & inside
    top = np.max(np.where(inside, taps, -np.inf), axis=-1, keepdims=True)
    first_max = np.argmax(inside & (taps == top), axis=-1)
    last_nan = taps.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
    tap = np.where(nan.any(axis=-1), last_nan, first_max)
    return np.take_along_axis(np.broadcast_to(w.flat_index(), taps.shape), tap[..., None], axis=-1)[..., 0]


@quiet
@facts.declare(curve=facts.Curve(-3, 3, "x₀ (window (x₀, 0.5, -1))", "max", lambda t: _max_curve(t)), accuracy=0.5, sums=False, libm=0)
def max_pool2d(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Any:
    r"""$y_o = \max_{i \in W_o} x_i$ over each window; $\partial y_o/\partial x_i = [i = \arg\max_{W_o} x]$ (the first maximum)."""
    x, unbatched = _batched(input)
    w = _Windows(x, kernel_size, stride, padding, dilation, ceil_mode)
    index = _argmax(x, w)
    flat = x.reshape(*x.shape[:2], -1)
    out = np.take_along_axis(flat, index.reshape(*x.shape[:2], -1), axis=-1).reshape(index.shape)
    out, index = (out[0], index[0]) if unbatched else (out, index)
    return (out, index.astype(np.int64)) if return_indices else out


@quiet
def max_pool2d_backward(grad_output: Any, input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                        ceil_mode: bool = False, return_indices: bool = False) -> np.ndarray:
    r"""$\bar x_i = \sum_o g_o\,[i = \arg\max_{W_o} x]$: each window's gradient goes to its maximum (overlapping windows add)."""
    x, unbatched = _batched(input)
    w = _Windows(x, kernel_size, stride, padding, dilation, ceil_mode)
    g = _grad(grad_output, x.shape[:2] + w.out, unbatched).astype(np.longdouble)
    grad = max_pool_routed(g, x, w).astype(np.float64)  # overlapping windows' shares summed once, then rounded
    return grad[0] if unbatched else grad


@quiet
def max_pool2d_jvp(tangent: Any, input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                   ceil_mode: bool = False, return_indices: bool = False) -> np.ndarray:
    r"""$\dot y_o = \dot x_{\arg\max_{W_o} x}$: each window's tangent read at the maximum the backward routes to (same tie rule); J t of the pooled values, also with ``return_indices``."""
    x, unbatched = _batched(input)
    w = _Windows(x, kernel_size, stride, padding, dilation, ceil_mode)
    (t,) = tangents(tangent, {"input": x.shape[1:] if unbatched else x.shape})
    if t is None:
        y = np.zeros(x.shape[:2] + w.out)
    else:
        index = _argmax(x, w)
        flat = (t[None] if unbatched else t).reshape(*x.shape[:2], -1)
        y = np.take_along_axis(flat, index.reshape(*x.shape[:2], -1), axis=-1).reshape(index.shape)
    return y[0] if unbatched else y


def max_pool_routed(g: np.ndarray, x: np.ndarray, w: _Windows) -> np.ndarray:
    """(N, C, H, W): each window's g added onto its maximum, in g's own number type (the oracle's exact ones too)."""
    index = _argmax(np.asarray(x, dtype=np.float64), w)
    return _scatter(g[..., None], index[..., None], np.ones(1, dtype=bool), x.shape)


def _grad(grad_output: Any, shape: tuple[int, ...], unbatched: bool) -> np.ndarray:
    g = as_float(grad_output, "grad_output")
    expected = shape[1:] if unbatched else shape
    if g.shape != expected:
        raise ValueError(f"grad_output shape {g.shape} must equal the output shape {expected}")
    return g[None] if unbatched else g


def _max_curve(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([t, np.full_like(t, 0.5), np.full_like(t, -1.0)], axis=-1)[:, None, None, :]
    return max_pool2d(x, (1, 3))[:, 0, 0, 0], max_pool2d_backward(np.ones((len(t), 1, 1, 1)), x, (1, 3))[:, 0, 0, 0]


# --- average pooling: separable sums and divisors --------------------------------------------------

def _avg_axis(n: int, k: int, s: int, p: int, out: int, include_pad: bool) -> tuple[np.ndarray, np.ndarray]:
    """Along one axis: membership (out, n), 1 where input element i is in window o, and each window's
    divisor factor (torch's avg_pool2d: hend = min(start + k, n + p), clipped to the input or not)."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, n + p)
    padded_extent = end - start
    lo, hi = np.maximum(start, 0), np.minimum(end, n)
    i = np.arange(n)
    member = ((i[None, :] >= lo[:, None]) & (i[None, :] < hi[:, None])).astype(np.float64)
    return member, (padded_extent if include_pad else hi - lo).astype(np.float64)


def _scatter(values: np.ndarray, index: np.ndarray, inside: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(N, C, H, W): ``values`` (N, C, OH, OW, T), one per window tap, added onto the input element
    at ``index`` (its position in H*W) where ``inside`` (the tap is not padding)."""
    rows = values.shape[0] * values.shape[1]
    grad = np.zeros((rows, shape[-2] * shape[-1]), dtype=values.dtype)
    at = np.broadcast_to(index, values.shape).reshape(rows, -1)
    keep = np.broadcast_to(inside, values.shape).reshape(rows, -1)
    row = np.broadcast_to(np.arange(rows)[:, None], at.shape)
    np.add.at(grad, (row[keep], at[keep]), values.reshape(rows, -1)[keep])
    return grad.reshape(shape)


def _avg_plan(x: np.ndarray, kernel_size: Any, stride: Any, padding: Any, ceil_mode: Any, count_include_pad: Any,
              divisor_override: Any) -> tuple[_Windows, np.ndarray]:
    w = _Windows(x, kernel_size, stride, padding, 1, ceil_mode)
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"count_include_pad must be a bool, got {count_include_pad!r}")
    (_, dh), (_, dw) = (_avg_axis(n, k, s, p, o, bool(count_include_pad)) for n, k, s, p, o in zip(w.size, w.k, w.s, w.p, w.out))
    if divisor_override is None:
        divisor = dh[:, None] * dw[None, :]
    elif isinstance(divisor_override, bool) or not isinstance(divisor_override, (int, np.integer)) or divisor_override == 0:
        raise ValueError(f"divisor_override must be a non-zero int or None, got {divisor_override!r}")
    else:
        divisor = np.full(w.out, float(divisor_override))
    return w, divisor


@quiet
@facts.declare(curve=facts.Curve(-3, 3, "x₀ (window (x₀, 0.5, -1))", "mean", lambda t: _avg_curve(t)), accuracy=3)
def avg_pool2d(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Any = None) -> np.ndarray:
    r"""$y_o = \frac{1}{D_o}\sum_{i \in W_o} x_i$; $\partial y_o/\partial x_i = 1/D_o$ for $i$ in the window."""
    x, unbatched = _batched(input)
    w, divisor = _avg_plan(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    y = avg_pool_mean(x.astype(np.longdouble), w, divisor).astype(np.float64)
    return y[0] if unbatched else y


def avg_pool_mean(x: np.ndarray, w: _Windows, divisor: np.ndarray) -> np.ndarray:
    """Each window's taps summed (padding reads 0: only the window's own elements enter, so an inf
    elsewhere stays out) over its divisor, in x's own number type."""
    return np.sum(w.view(x, 0), axis=-1) / divisor


def avg_pool_spread(g: np.ndarray, shape: tuple[int, ...], w: _Windows, divisor: np.ndarray) -> np.ndarray:
    """Each window's g / D added onto the input elements it covers, in g's own number type."""
    inside = w.view(np.ones(shape[:2] + w.size, dtype=bool), False)
    return _scatter(np.broadcast_to((g / divisor)[..., None], inside.shape), w.flat_index(), inside, shape)


@quiet
def avg_pool2d_backward(grad_output: Any, input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                        count_include_pad: bool = True, divisor_override: Any = None) -> np.ndarray:
    r"""$\bar x_i = \sum_{o:\,i \in W_o} g_o/D_o$."""
    x, unbatched = _batched(input)
    w, divisor = _avg_plan(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    g = _grad(grad_output, x.shape[:2] + divisor.shape, unbatched)
    grad = avg_pool_spread(g.astype(np.longdouble), x.shape, w, divisor).astype(np.float64)
    return grad[0] if unbatched else grad


@quiet
def avg_pool2d_jvp(tangent: Any, input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                   count_include_pad: bool = True, divisor_override: Any = None) -> np.ndarray:
    r"""$\dot y_o = \frac{1}{D_o}\sum_{i \in W_o} \dot x_i$: average pooling is linear, so J t pools the tangent."""
    x, unbatched = _batched(input)
    w, divisor = _avg_plan(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    (t,) = tangents(tangent, {"input": x.shape[1:] if unbatched else x.shape})
    if t is None:
        y = np.zeros(x.shape[:2] + divisor.shape)
    else:
        y = avg_pool_mean((t[None] if unbatched else t).astype(np.longdouble), w, divisor).astype(np.float64)
    return y[0] if unbatched else y


def _avg_curve(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([t, np.full_like(t, 0.5), np.full_like(t, -1.0)], axis=-1)[:, None, None, :]
    return avg_pool2d(x, (1, 3))[:, 0, 0, 0], avg_pool2d_backward(np.ones((len(t), 1, 1, 1)), x, (1, 3))[:, 0, 0, 0]


# --- adaptive average pooling: averaging matrices ---------------------------------------------------

def _adaptive_bounds(n: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Window o of n elements onto ``out``: [floor(o n / out), ceil((o + 1) n / out))."""
    o = np.arange(out)
    return (o * n) // out, -((-(o + 1) * n) // out)


def _adaptive_matrix(n: int, out: int) -> np.ndarray:
    """(out, n): row o averages its window's elements (the derivation's A)."""
    start, end = _adaptive_bounds(n, out)
    i = np.arange(n)
    member = (i[None, :] >= start[:, None]) & (i[None, :] < end[:, None])
    return member / (end - start)[:, None]


def _adaptive_taps(n: int, out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(out, m) positions of each window's taps (m the longest window), which of them are in it, and its length."""
    start, end = _adaptive_bounds(n, out)
    j = np.arange(int(np.max(end - start)))
    position = start[:, None] + j[None, :]
    return np.minimum(position, n - 1), position < end[:, None], end - start


def _adaptive_plan(input: Any, output_size: Any) -> tuple[np.ndarray, bool, tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    x, unbatched = _batched(input)
    sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(sizes) != 2:
        raise ValueError(f"output_size must be an int or a pair (None keeps the input's size), got {output_size!r}")
    sizes = tuple(n if s is None else s for s, n in zip(sizes, x.shape[-2:]))
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
        raise ValueError(f"output_size must hold positive ints or None, got {output_size!r}")
    return x, unbatched, _adaptive_taps(x.shape[-2], sizes[0]), _adaptive_taps(x.shape[-1], sizes[1])


@quiet
@facts.declare(curve=facts.Curve(-3, 3, "x₀ (row (x₀, 0.5, -1) onto 2)", "mean", lambda t: _adaptive_curve(t)), accuracy=3)
def adaptive_avg_pool2d(input: Any, output_size: Any) -> np.ndarray:
    r"""$y = A_h\,x\,A_w^\top$, $(A)_{oi} = 1/|W_o|$ for $i \in W_o = [\lfloor oL/n\rfloor, \lceil (o+1)L/n\rceil)$; $\bar x = A_h^\top g\,A_w$."""
    x, unbatched, rows, cols = _adaptive_plan(input, output_size)
    y = adaptive_mean(x.astype(np.longdouble), rows, cols).astype(np.float64)
    return y[0] if unbatched else y


def adaptive_mean(x: np.ndarray, rows: tuple[np.ndarray, ...], cols: tuple[np.ndarray, ...]) -> np.ndarray:
    """(N, C, OH, OW): each window's mean, its taps gathered, in x's own number type."""
    (ri, rin, rn), (ci, cin, cn) = rows, cols
    taps = x[:, :, ri[:, None, :, None], ci[None, :, None, :]]  # (N, C, OH, OW, mh, mw)
    inside = rin[:, None, :, None] & cin[None, :, None, :]
    # where, not a product with 0: an inf outside the window stays out of it
    return np.sum(np.where(inside, taps, 0), axis=(-2, -1)) / (rn[:, None] * cn[None, :])


def adaptive_spread(g: np.ndarray, shape: tuple[int, ...], rows: tuple[np.ndarray, ...], cols: tuple[np.ndarray, ...]) -> np.ndarray:
    """Each window's g / |W| added onto its elements, in g's own number type."""
    (ri, rin, rn), (ci, cin, cn) = rows, cols
    inside = (rin[:, None, :, None] & cin[None, :, None, :]).reshape(len(rn), len(cn), -1)
    index = (ri[:, None, :, None] * shape[-1] + ci[None, :, None, :]).reshape(inside.shape)
    share = np.broadcast_to((g / (rn[:, None] * cn[None, :]))[..., None], g.shape + inside.shape[-1:])
    return _scatter(share, index, inside, shape)


@quiet
def adaptive_avg_pool2d_backward(grad_output: Any, input: Any, output_size: Any) -> np.ndarray:
    r"""$\bar x = A_h^\top g\,A_w$: each output's gradient spread evenly over its window."""
    x, unbatched, rows, cols = _adaptive_plan(input, output_size)
    g = _grad(grad_output, x.shape[:2] + (len(rows[2]), len(cols[2])), unbatched)
    grad = adaptive_spread(g.astype(np.longdouble), x.shape, rows, cols).astype(np.float64)
    return grad[0] if unbatched else grad


@quiet
def adaptive_avg_pool2d_jvp(tangent: Any, input: Any, output_size: Any) -> np.ndarray:
    r"""$\dot y = A_h\,\dot x\,A_w^\top$: linear, so J t is the tangent's window means."""
    x, unbatched, rows, cols = _adaptive_plan(input, output_size)
    (t,) = tangents(tangent, {"input": x.shape[1:] if unbatched else x.shape})
    if t is None:
        y = np.zeros(x.shape[:2] + (len(rows[2]), len(cols[2])))
    else:
        y = adaptive_mean((t[None] if unbatched else t).astype(np.longdouble), rows, cols).astype(np.float64)
    return y[0] if unbatched else y


def _adaptive_curve(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([t, np.full_like(t, 0.5), np.full_like(t, -1.0)], axis=-1)[:, None, None, :]
    return adaptive_avg_pool2d(x, (1, 2))[:, 0, 0, 0], adaptive_avg_pool2d_backward(np.ones((len(t), 1, 1, 2)) * [1.0, 0.0], x, (1, 2))[:, 0, 0, 0]


# --- derivations: one channel, the index rules of the numpy code, written out symbolically ----------

def _grid(stem: str, rows: int, cols: int) -> dict[tuple[int, int], sp.Symbol]:
    return {(r, c): sp.Symbol(f"{stem}_{r + 1}{c + 1}", real=True) for r in range(rows) for c in range(cols)}


def _pool_example(op: str, rows: int, cols: int, kwargs: dict[str, Any]):
    def example(rng: np.random.Generator) -> S.Example:
        import reference

        x = rng.normal(size=(1, 1, rows, cols))
        out = getattr(reference, op)(x, **kwargs)
        g = rng.normal(size=out.shape)
        values = {**{f"x_{r + 1}{c + 1}": x[0, 0, r, c] for r in range(rows) for c in range(cols)},
                  **{f"g_{r + 1}{c + 1}": g[0, 0, r, c] for r in range(out.shape[2]) for c in range(out.shape[3])}}
        return S.Example((x,), kwargs, g, values, lambda grads: (np.array(grads, dtype=float).reshape(x.shape),))

    return example


def _steps(definition: sp.Expr, gradient: sp.Expr) -> tuple[S.Step, ...]:
    return (S.Step("definition", definition), S.Step("vector-Jacobian product", gradient))


@facts.derivation(max_pool2d)
def _max_pool2d() -> S.Derivation:
    """A 1x3 row, 1x2 windows at stride 1: two overlapping windows, each routing g to its maximum."""
    xs, gs = _grid("x", 1, 3), _grid("g", 1, 2)
    windows = {(0, o): [(0, c) for c in range(o, o + 2)] for o in range(2)}
    ys = {o: sp.Max(*(xs[i] for i in taps)) for o, taps in windows.items()}

    def first_max(taps: list, i: tuple[int, int]) -> sp.Expr:
        """[x_i is the window's first maximum]: no earlier tap reaches it, no later tap exceeds it."""
        before, after = taps[:taps.index(i)], taps[taps.index(i) + 1:]
        condition = sp.And(*(xs[i] > xs[j] for j in before), *(xs[i] >= xs[j] for j in after))
        return sp.Piecewise((1, condition), (0, True))

    hand = tuple(sum(gs[o] * first_max(taps, i) for o, taps in windows.items() if i in taps) for i in xs)
    X, Y, G, i, o = sp.IndexedBase("x"), sp.IndexedBase("y"), S.G, sp.Symbol("i", integer=True), sp.Symbol("o", integer=True)
    steps = _steps(sp.Eq(Y[o], sp.Function("max")(X[i])),
                   sp.Eq(sp.Derivative(S.L, X[i]), sp.Sum(G[o] * sp.Function("first_argmax")(o, i), (o, 1, sp.Symbol("n")))))
    return S.Derivation("max_pool2d", sum(gs[o] * ys[o] for o in gs), tuple(xs.values()), hand, steps,
                        note="a 1×3 row, 1×2 windows, stride 1; ties go to the first maximum (not sampled)",
                        example=_pool_example("max_pool2d", 1, 3, {"kernel_size": (1, 2), "stride": 1}),
                        simplify=False)  # Max's derivative is Heaviside, the hand's a Piecewise: simplify gives up


@facts.derivation(avg_pool2d)
def _avg_pool2d() -> S.Derivation:
    """3x3 input, 2x2 windows at stride 2, padding 1, count_include_pad=False: divisors 1, 2 and 4."""
    n, k, s, p = 3, 2, 2, 1
    xs = _grid("x", n, n)
    mh, dh = _avg_axis(n, k, s, p, 2, include_pad=False)
    gs = _grid("g", 2, 2)
    ys = {(a, b): sum(xs[(r, c)] for r in range(n) for c in range(n) if mh[a, r] and mh[b, c]) / int(dh[a] * dh[b]) for (a, b) in gs}
    hand = tuple(sum(gs[o] / int(dh[o[0]] * dh[o[1]]) for o in gs if mh[o[0], i[0]] and mh[o[1], i[1]]) for i in xs)
    X, Y, G, D, i, o = sp.IndexedBase("x"), sp.IndexedBase("y"), S.G, sp.IndexedBase("D"), sp.Symbol("i", integer=True), sp.Symbol("o", integer=True)
    steps = _steps(sp.Eq(Y[o], sp.Sum(X[i], (i, sp.Symbol("W_o"), sp.Symbol("W_o'"))) / D[o]),
                   sp.Eq(sp.Derivative(S.L, X[i]), sp.Sum(G[o] / D[o], (o, 1, sp.Symbol("n")))))
    return S.Derivation("avg_pool2d", sum(gs[o] * ys[o] for o in gs), tuple(xs.values()), hand, steps,
                        note="3×3 input, 2×2 windows, stride 2, padding 1, count_include_pad=False",
                        example=_pool_example("avg_pool2d", 3, 3, {"kernel_size": 2, "stride": 2, "padding": 1, "count_include_pad": False}))


@facts.derivation(adaptive_avg_pool2d)
def _adaptive_avg_pool2d() -> S.Derivation:
    """A 1x5 row onto 3 outputs: windows [0, 2), [1, 4), [3, 5), overlapping."""
    xs, gs = _grid("x", 1, 5), _grid("g", 1, 3)
    a = _adaptive_matrix(5, 3)
    ys = {(0, o): sum(sp.Rational(1, int(round(1 / a[o, c]))) * xs[(0, c)] for c in range(5) if a[o, c]) for o in range(3)}
    hand = tuple(sum(gs[(0, o)] * sp.Rational(1, int(round(1 / a[o, i[1]]))) for o in range(3) if a[o, i[1]]) for i in xs)
    X, Y, G, A, i, o = sp.IndexedBase("x"), sp.IndexedBase("y"), S.G, sp.IndexedBase("A"), sp.Symbol("i", integer=True), sp.Symbol("o", integer=True)
    steps = _steps(sp.Eq(Y[o], sp.Sum(A[o, i] * X[i], (i, 1, sp.Symbol("L")))),
                   sp.Eq(sp.Derivative(S.L, X[i]), sp.Sum(A[o, i] * G[o], (o, 1, sp.Symbol("n")))))
    return S.Derivation("adaptive_avg_pool2d", sum(gs[o] * ys[o] for o in gs), tuple(xs.values()), hand, steps,
                        note="a 1×5 row onto 3 outputs: windows [0, 2), [1, 4), [3, 5)",
                        example=_pool_example("adaptive_avg_pool2d", 1, 5, {"output_size": (1, 3)}))
