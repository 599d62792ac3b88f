r"""1-D and 2-D convolution (torch's cross-correlation) and its hand-derived gradients.

``conv1d``/``conv2d`` follow ``torch.nn.functional``: input (N, C_in, *spatial) or unbatched
(C_in, *spatial), weight (C_out, C_in/groups, *kernel), bias (C_out,). With padding p, dilation d and
stride s, output position o of a spatial axis reads the padded input at $s\,o + d\,j$ for kernel
tap j, so its length is $\lfloor (L + 2p - d(k - 1) - 1)/s \rfloor + 1$. ``padding="same"`` pads
$d(k-1)$ in all, the smaller half first, as torch does; ``"valid"`` is 0.

The windows are a strided view of the padded input (``sliding_window_view``: no copy, no loop over
pixels); products are summed in np.longdouble and rounded once, as everywhere in reference/.
The gradient of the input is the transposed convolution: each output gradient, times the kernel,
is added back onto the window it read (a loop over the few kernel taps, never over pixels).
"""
from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import sympy as sp
from numpy.lib.stride_tricks import sliding_window_view

from reference import facts
from reference import symbolic as S
from reference._validation import as_float, as_optional_float, quiet, tangents

__all__ = ["conv1d", "conv1d_backward", "conv1d_jvp", "conv2d", "conv2d_backward", "conv2d_jvp"]


def _tuple(value: Any, nd: int, name: str, minimum: int) -> tuple[int, ...]:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * nd
    if len(values) != nd or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in values):
        raise TypeError(f"{name} must be an int or a tuple of {nd} ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return tuple(int(v) for v in values)


class _Geometry:
    """The arguments checked once: arrays in batched form, and per spatial axis the padding on
    each side, the stride and the dilation."""

    def __init__(self, nd: int, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Any, padding: Any, dilation: Any, groups: Any) -> None:
        if w.ndim != nd + 2:
            raise ValueError(f"weight must be {nd + 2}-D (out_channels, in_channels/groups, *kernel), got shape {w.shape}")
        if x.ndim not in (nd + 1, nd + 2):
            raise ValueError(f"input must be {nd + 1}-D (unbatched) or {nd + 2}-D (N, C_in, *spatial), got shape {x.shape}")
        self.unbatched = x.ndim == nd + 1
        self.x = x[None] if self.unbatched else x
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
            raise ValueError(f"groups must be a positive int, got {groups!r}")
        self.groups = int(groups)
        c_in, c_out = self.x.shape[1], w.shape[0]
        if c_in % self.groups or c_out % self.groups:
            raise ValueError(f"groups={groups} must divide in_channels={c_in} and out_channels={c_out}")
        if w.shape[1] * self.groups != c_in:
            raise ValueError(f"weight shape {w.shape} expects {w.shape[1] * self.groups} input channels (groups={groups}), input has {c_in}")
        if b is not None and b.shape != (c_out,):
            raise ValueError(f"bias shape {b.shape} must be (out_channels,) = ({c_out},)")
        self.w, self.b, self.nd = w, b, nd
        self.kernel = w.shape[2:]
        self.stride = _tuple(stride, nd, "stride", 1)
        self.dilation = _tuple(dilation, nd, "dilation", 1)
        self.pads = self._pads(padding)
        padded = [n + lo + hi for n, (lo, hi) in zip(self.x.shape[2:], self.pads)]
        spans = [d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel)]
        if any(p < s for p, s in zip(padded, spans)):
            raise ValueError(f"kernel {tuple(self.kernel)} (dilation {self.dilation}) is larger than the padded input {tuple(padded)}")
        self.out = tuple((p - s) // st + 1 for p, s, st in zip(padded, spans, self.stride))

    def _pads(self, padding: Any) -> tuple[tuple[int, int], ...]:
        if isinstance(padding, str):
            if padding == "valid":
                return ((0, 0),) * self.nd
            if padding != "same":
                raise ValueError(f"padding must be an int, a tuple of ints, 'same' or 'valid', got {padding!r}")
            if any(s != 1 for s in self.stride):
                raise ValueError("padding='same' is not supported for strided convolutions (torch neither)")
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel)]
            return tuple((t // 2, t - t // 2) for t in totals)
        return tuple((p, p) for p in _tuple(padding, self.nd, "padding", 0))

    def padded(self, x: np.ndarray) -> np.ndarray:
        return np.pad(x, ((0, 0), (0, 0), *self.pads))

    def windows(self, xp: np.ndarray) -> np.ndarray:
        """(N, G, C_in/G, *out, *kernel): the taps each output position reads, a view of ``xp``."""
        spans = [d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel)]
        axes = tuple(range(2, 2 + self.nd))
        view = sliding_window_view(xp, spans, axis=axes)
        view = view[(..., *(slice(None, None, d) for d in self.dilation))]  # the dilated taps
        view = view[(slice(None), slice(None), *(slice(None, None, s) for s in self.stride))][(slice(None), slice(None), *(slice(0, o) for o in self.out))]
        n, c = xp.shape[:2]
        return view.reshape(n, self.groups, c // self.groups, *view.shape[2:])

    def grouped_weight(self, w: np.ndarray) -> np.ndarray:
        """(G, C_out/G, C_in/G, *kernel)."""
        return w.reshape(self.groups, w.shape[0] // self.groups, *w.shape[1:])

    def restore(self, y: np.ndarray) -> np.ndarray:
        return y[0] if self.unbatched else y


_SPACE = "xyz"
_KERNEL = "uvw"


def _subscripts(nd: int) -> tuple[str, str, str]:
    """einsum subscripts: windows (n g c *out *kernel), grouped weight (g o c *kernel), output (n g o *out)."""
    out, ker = _SPACE[:nd], _KERNEL[:nd]
    return f"ngc{out}{ker}", f"goc{ker}", f"ngo{out}"


def convolve(nd: int, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Any, padding: Any, dilation: Any, groups: Any) -> np.ndarray:
    """The forward in the arrays' own number type: np.longdouble here, exact mpmath numbers in the oracle."""
    geo = _Geometry(nd, x, w, b, stride, padding, dilation, groups)
    win, ker, out = _subscripts(nd)
    y = np.einsum(f"{win},{ker}->{out}", geo.windows(geo.padded(geo.x)), geo.grouped_weight(geo.w))
    y = y.reshape(y.shape[0], -1, *y.shape[3:])
    return geo.restore(y if geo.b is None else y + geo.b.reshape(-1, *(1,) * nd))


def convolve_backward(nd: int, g: np.ndarray, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Any, padding: Any, dilation: Any,
                      groups: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The three gradients in the arrays' own number type."""
    geo = _Geometry(nd, x, w, b, stride, padding, dilation, groups)
    n, c_out = geo.x.shape[0], geo.w.shape[0]
    expected = (n, c_out, *geo.out)[1 if geo.unbatched else 0:]
    if g.shape != expected:
        raise ValueError(f"grad_output shape {g.shape} must equal the output shape {expected}")
    g = g[None] if geo.unbatched else g
    gg = g.reshape(n, geo.groups, c_out // geo.groups, *geo.out)
    win, ker, out = _subscripts(nd)
    xp = geo.padded(geo.x)
    grad_weight = np.einsum(f"{out},{win}->{ker}", gg, geo.windows(xp)).reshape(geo.w.shape)
    # The transposed convolution: cols[n, g, c, *out, *kernel] = sum_o G[n, g, o, *out] W[g, o, c, *kernel],
    # each tap's share added back where that tap read the padded input.
    cols = np.einsum(f"{out},{ker}->{win}", gg, geo.grouped_weight(geo.w))
    cols = cols.reshape(n, -1, *cols.shape[3:])
    grad_padded = np.zeros_like(xp)
    for tap in itertools.product(*(range(k) for k in geo.kernel)):
        where = tuple(slice(d * j, d * j + s * (o - 1) + 1, s) for j, d, s, o in zip(tap, geo.dilation, geo.stride, geo.out))
        grad_padded[(slice(None), slice(None), *where)] += cols[(..., *tap)]
    inside = tuple(slice(lo, lo + size) for (lo, _), size in zip(geo.pads, geo.x.shape[2:]))
    grad_input = geo.restore(grad_padded[(slice(None), slice(None), *inside)])
    return grad_input, grad_weight, None if geo.b is None else g.sum(axis=(0, *range(2, 2 + nd)))


def _one_kind(**arrays: Any) -> None:
    """torch convolves integers with integers and floats with floats, never a mix: int64 input and
    weight with a float64 bias raise "Input type (long int) and bias type (double) should be the same"."""
    kinds = {name: np.asarray(v).dtype for name, v in arrays.items() if v is not None}
    if len({dtype.kind in "iu" for dtype in kinds.values()}) > 1:
        named = ", ".join(f"{name} ({dtype})" for name, dtype in kinds.items())
        raise TypeError(f"{named} must all be integer or all be floating point, as torch requires")


def _wide(input: Any, weight: Any, bias: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The arguments checked, in np.longdouble: products are summed there and rounded once."""
    x, w, b = as_float(input, "input"), as_float(weight, "weight"), as_optional_float(bias, "bias")
    _one_kind(input=input, weight=weight, bias=bias)
    return x.astype(np.longdouble), w.astype(np.longdouble), None if b is None else b.astype(np.longdouble)


def _conv(nd: int, input: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, groups: Any) -> np.ndarray:
    return convolve(nd, *_wide(input, weight, bias), stride, padding, dilation, groups).astype(np.float64)


def _conv_backward(nd: int, grad_output: Any, input: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any,
                   groups: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    g = as_float(grad_output, "grad_output").astype(np.longdouble)
    grads = convolve_backward(nd, g, *_wide(input, weight, bias), stride, padding, dilation, groups)
    return tuple(None if r is None else r.astype(np.float64) for r in grads)  # type: ignore[return-value]


def _conv_jvp(nd: int, tangent: Any, input: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, groups: Any) -> np.ndarray:
    """Bilinear in (x, w), affine in b: J t = conv(ẋ, w) + conv(x, ẇ) + ḃ, each term only where its tangent is given."""
    x, w, b = _wide(input, weight, bias)
    geo = _Geometry(nd, x, w, b, stride, padding, dilation, groups)
    tx, tw, tb = tangents(tangent, {"input": x.shape, "weight": w.shape, "bias": None if b is None else b.shape})
    y = np.zeros((geo.x.shape[0], w.shape[0], *geo.out), dtype=np.longdouble)
    y = geo.restore(y)
    if tx is not None:
        y = y + convolve(nd, tx.astype(np.longdouble), w, None, stride, padding, dilation, groups)
    if tw is not None:
        y = y + convolve(nd, x, tw.astype(np.longdouble), None, stride, padding, dilation, groups)
    if tb is not None:
        y = y + tb.astype(np.longdouble).reshape(-1, *(1,) * nd)
    return y.astype(np.float64)


def _conv_curve(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centre output of a 3-tap kernel (0.5, 1, -0.25) over (0, t, 0), and its slope in t."""
    x = np.stack([np.zeros_like(t), t, np.zeros_like(t)], axis=1)[:, None, :]
    w = np.array([[[0.5, 1.0, -0.25]]])
    y = conv1d(x, w, np.array([0.1]))[:, 0, 0]
    return y, conv1d_backward(np.ones((len(t), 1, 1)), x, w, np.array([0.1]))[0][:, 0, 1]


@quiet
@facts.declare(curve=facts.Curve(-3, 3, "x (one tap of a 3-tap window)", "y = Σ w_j x_j + b", _conv_curve), accuracy=3)
def conv1d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1) -> np.ndarray:
    r"""$y_{n,o,t} = b_o + \sum_{c,j} w_{o,c,j}\,x_{n,c,st + dj - p}$; $\partial y/\partial w_{o,c,j} = x_{n,c,st+dj-p}$, $\partial y/\partial x = w$ at the tap that read it."""
    return _conv(1, input, weight, bias, stride, padding, dilation, groups)


@quiet
def conv1d_backward(grad_output: Any, input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                    groups: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    r"""$\bar x_{n,c,i} = \sum_{o,t,j:\,st+dj-p=i} g_{n,o,t}\,w_{o,c,j}$ (transposed convolution), $\bar w_{o,c,j} = \sum_{n,t} g_{n,o,t}\,x_{n,c,st+dj-p}$, $\bar b_o = \sum_{n,t} g_{n,o,t}$."""
    return _conv_backward(1, grad_output, input, weight, bias, stride, padding, dilation, groups)


@quiet
def conv1d_jvp(tangent: Any, input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1) -> np.ndarray:
    r"""$\dot y = \mathrm{conv}(\dot x, w) + \mathrm{conv}(x, \dot w) + \dot b$ (bilinear in x and w), ``tangent`` = (ẋ, ẇ, ḃ), each may be None."""
    return _conv_jvp(1, tangent, input, weight, bias, stride, padding, dilation, groups)


@quiet
@facts.declare(curve=facts.Curve(-3, 3, "x (one tap of a 3-tap window)", "y = Σ w_j x_j + b", _conv_curve), accuracy=3)
def conv2d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1) -> np.ndarray:
    r"""$y_{n,o,h,w} = b_o + \sum_{c,i,j} W_{o,c,i,j}\,x_{n,c,s_1h + d_1i - p_1,\,s_2w + d_2j - p_2}$; each weight's derivative is the input it meets."""
    return _conv(2, input, weight, bias, stride, padding, dilation, groups)


@quiet
def conv2d_backward(grad_output: Any, input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                    groups: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    r"""$\bar x$: the transposed convolution of $g$ with $W$; $\bar W_{o,c,i,j} = \sum_{n,h,w} g_{n,o,h,w}\,x_{n,c,\dots}$ (a correlation of x with g); $\bar b_o = \sum g_{n,o,h,w}$."""
    return _conv_backward(2, grad_output, input, weight, bias, stride, padding, dilation, groups)


@quiet
def conv2d_jvp(tangent: Any, input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1) -> np.ndarray:
    r"""$\dot y = \mathrm{conv}(\dot x, W) + \mathrm{conv}(x, \dot W) + \dot b$ (bilinear in x and W), ``tangent`` = (ẋ, Ẇ, ḃ), each may be None."""
    return _conv_jvp(2, tangent, input, weight, bias, stride, padding, dilation, groups)


def _conv_example(nd: int, length: int, k: int, stride: int, padding: int):
    """One sample, one channel, no groups: the proof's symbols by position."""
    def example(rng: np.random.Generator) -> S.Example:
        shape_x, shape_w = (1, 1) + (length,) * nd, (1, 1) + (k,) * nd
        x, w, b = rng.normal(size=shape_x), rng.normal(size=shape_w), rng.normal(size=1)
        g = rng.normal(size=conv1d(x, w, b, stride, padding).shape if nd == 1 else conv2d(x, w, b, stride, padding).shape)
        values = {**_named(x, "x"), **_named(w, "w"), "b": b[0], **_named(g, "g")}

        def assemble(grads: list) -> tuple[np.ndarray, ...]:
            flat = np.array(grads, dtype=float)
            return flat[:x.size].reshape(shape_x), flat[x.size:x.size + w.size].reshape(shape_w), flat[-1:]

        return S.Example((x, w, b), {"stride": stride, "padding": padding}, g, values, assemble)

    return example


def _named(a: np.ndarray, stem: str) -> dict[str, float]:
    return {_symbol_name(stem, idx): float(v) for idx, v in np.ndenumerate(a[0, 0])}


def _symbol_name(stem: str, idx: tuple[int, ...]) -> str:
    return f"{stem}_{''.join(str(i + 1) for i in idx)}"


def _conv_derivation(op: str, nd: int, length: int, k: int, stride: int, padding: int) -> S.Derivation:
    """L = sum_t g_t y_t for one channel; the hand gradients built by the backward's index rules."""
    xs = {idx: sp.Symbol(_symbol_name("x", idx), real=True) for idx in itertools.product(range(length), repeat=nd)}
    ws = {idx: sp.Symbol(_symbol_name("w", idx), real=True) for idx in itertools.product(range(k), repeat=nd)}
    b = sp.Symbol("b", real=True)
    out = (length + 2 * padding - k) // stride + 1
    gs = {idx: sp.Symbol(_symbol_name("g", idx), real=True) for idx in itertools.product(range(out), repeat=nd)}

    def read(o: tuple[int, ...], j: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(stride * oi + ji - padding for oi, ji in zip(o, j))

    ys = {o: b + sum(ws[j] * xs.get(read(o, j), 0) for j in ws) for o in gs}
    loss = sum(gs[o] * ys[o] for o in gs)
    hand_x = tuple(sum(gs[o] * ws[j] for o in gs for j in ws if read(o, j) == i) for i in xs)  # transposed convolution
    hand_w = tuple(sum(gs[o] * xs.get(read(o, j), 0) for o in gs) for j in ws)  # correlation of x with g
    hand = (*hand_x, *hand_w, sum(gs.values()))
    X, W, G, Y = sp.IndexedBase("x"), sp.IndexedBase("w"), S.G, sp.IndexedBase("y")
    t, j, s, p = sp.Symbol("t", integer=True), sp.Symbol("j", integer=True), sp.Symbol("s", positive=True), sp.Symbol("p", integer=True)
    i, K, T = sp.Symbol("i", integer=True), sp.Symbol("k", positive=True), sp.Symbol("T", positive=True)
    steps = (S.Step("definition", sp.Eq(Y[t], b + sp.Sum(W[j] * X[s * t + j - p], (j, 1, K)))),
             S.Step("input (transposed convolution)", sp.Eq(sp.Derivative(S.L, X[i]), sp.Sum(G[t] * W[i + p - s * t], (t, 1, T)))),
             S.Step("weight (correlation of x with g)", sp.Eq(sp.Derivative(S.L, W[j]), sp.Sum(G[t] * X[s * t + j - p], (t, 1, T)))),
             S.Step("bias", sp.Eq(sp.Derivative(S.L, b), sp.Sum(G[t], (t, 1, T)))))
    return S.Derivation(op, loss, (*xs.values(), *ws.values(), b), hand, steps, size=length,
                        note=f"stride {stride}, padding {padding}; a tap outside the input reads the padding's 0",
                        example=_conv_example(nd, length, k, stride, padding))


@facts.derivation(conv1d)
def _conv1d(length: int = 5) -> S.Derivation:
    return _conv_derivation("conv1d", 1, length, 3, 2, 1)


@facts.derivation(conv2d)
def _conv2d(length: int = 3) -> S.Derivation:
    return _conv_derivation("conv2d", 2, length, 2, 1, 1)
