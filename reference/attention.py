r"""Scaled dot-product attention and its hand-derived gradients.

``scaled_dot_product_attention`` follows ``torch.nn.functional``: query (..., L, E), key (..., S, E),
value (..., S, Ev), output (..., L, Ev). With $s$ = ``scale`` (default $1/\sqrt{E}$):

$$Z = s\,QK^\top + M,\quad P = \mathrm{softmax}_{\text{rows}}(Z),\quad O = PV,$$

where a boolean mask keeps the True positions (the others get $-\infty$), a float mask is added and
``is_causal`` keeps $j \le i$ (top-left aligned). A row with every position masked has no softmax:
torch returns 0 for it and passes no gradient through it (tests/test_conventions.py), and so does
the reference. ``enable_gqa`` repeats each key/value head for ``Hq/H`` query heads in a row.

The gradients, with $G = \bar O$: $\bar V = P^\top G$; $\bar P = G V^\top$; through the softmax
Jacobian $\bar Z = P \odot (\bar P - \mathrm{rowsum}(P \odot \bar P))$; then $\bar Q = s\,\bar Z K$ and
$\bar K = s\,\bar Z^\top Q$ (a repeated key/value head sums its copies' gradients).
Everything is computed in np.longdouble and rounded once.

``multi_head_attention`` is nn.MultiheadAttention's self-attention (batch first, packed in-projection,
``need_weights=False``) as a layer of a hand network, not an F op: the in-projection, the heads split,
sdpa per head, the heads merged and the out-projection, and each step's gradient in reverse. Its mask
follows nn.MultiheadAttention, where True *forbids* a position (sdpa's True keeps one).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import sympy as sp

from reference import facts
from reference import symbolic as S
from reference._validation import as_float, check_grad_shape, quiet, tangents
from reference.layers import linear, linear_backward

__all__ = ["scaled_dot_product_attention", "scaled_dot_product_attention_backward", "scaled_dot_product_attention_jvp"]  # and multi_head_attention: a layer, not an F op


class _Attention:
    """The arguments checked once; key and value repeated for grouped-query attention."""

    def __init__(self, query: Any, key: Any, value: Any, attn_mask: Any, dropout_p: Any, is_causal: Any, scale: Any, enable_gqa: Any) -> None:
        q, k, v = as_float(query, "query"), as_float(key, "key"), as_float(value, "value")
        for name, a in (("query", q), ("key", k), ("value", v)):
            if a.ndim < 2:
                raise ValueError(f"{name} must have at least 2 dimensions (..., sequence, features), got shape {a.shape}")
        if k.shape[-1] != q.shape[-1]:
            raise ValueError(f"key's last dimension {k.shape[-1]} must equal query's {q.shape[-1]} (E)")
        if v.shape[-2] != k.shape[-2]:
            raise ValueError(f"value's sequence length {v.shape[-2]} must equal key's {k.shape[-2]} (S)")
        if float(dropout_p) != 0.0:
            raise ValueError(f"dropout_p={dropout_p}: dropout draws a random mask, which no hand reference can match; use 0.0")
        if not isinstance(is_causal, (bool, np.bool_)) or not isinstance(enable_gqa, (bool, np.bool_)):
            raise TypeError(f"is_causal and enable_gqa must be bools, got {is_causal!r} and {enable_gqa!r}")
        self.groups = 1
        if enable_gqa and q.ndim >= 3:
            hq, hk = q.shape[-3], k.shape[-3]
            if hq % hk or v.shape[-3] != hk:
                raise ValueError(f"enable_gqa: query's {hq} heads must be a multiple of key's and value's {hk}")
            self.groups = hq // hk
        k_rep, v_rep = (np.repeat(a, self.groups, axis=-3) for a in (k, v)) if self.groups > 1 else (k, v)
        batch = np.broadcast_shapes(q.shape[:-2], k_rep.shape[:-2], v_rep.shape[:-2])
        if batch != q.shape[:-2] or k_rep.shape[:-2] != q.shape[:-2] or v_rep.shape[:-2] != q.shape[:-2]:
            raise ValueError(f"query {q.shape}, key {k.shape} and value {v.shape} must share their leading (batch, head) dimensions")
        self.q, self.k, self.v, self.key_shape = q, k_rep, v_rep, k.shape
        self.scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
        self.mask = self._mask(attn_mask, bool(is_causal), q.shape[-2], k.shape[-2])

    def _mask(self, attn_mask: Any, is_causal: bool, length: int, source: int) -> tuple[str, np.ndarray] | None:
        if is_causal:
            if attn_mask is not None:
                raise ValueError("attn_mask and is_causal cannot both be given (torch neither)")
            return "bool", np.tril(np.ones((length, source), dtype=bool))
        if attn_mask is None:
            return None
        m = np.asarray(attn_mask)
        if m.dtype == bool:
            kind = "bool"
        else:
            kind, m = "float", as_float(m, "attn_mask")
        try:
            np.broadcast_shapes(m.shape, self.q.shape[:-2] + (length, source))
        except ValueError:
            raise ValueError(f"attn_mask of shape {m.shape} does not broadcast to the scores' shape {self.q.shape[:-2] + (length, source)}") from None
        return kind, m

    def probabilities(self) -> tuple[np.ndarray, np.ndarray]:
        """P (rows of a fully masked query are 0) and Z, in np.longdouble."""
        z = np.einsum("...le,...se->...ls", self.q.astype(np.longdouble), self.k.astype(np.longdouble)) * self.scale
        if self.mask is not None:
            kind, m = self.mask
            z = np.where(m, z, -np.inf) if kind == "bool" else z + m
        top = np.max(z, axis=-1, keepdims=True)
        masked = np.isneginf(top)  # every position masked: torch's safe softmax gives 0, not 0/0
        e = np.exp(z - np.where(masked, 0.0, top))
        p = np.where(masked, 0.0, e / np.where(masked, 1.0, np.sum(e, axis=-1, keepdims=True)))
        return p, z

    def fold(self, grad: np.ndarray) -> np.ndarray:
        """A repeated key/value head's gradient: the sum over its query heads' copies."""
        if self.groups == 1:
            return grad
        shape = grad.shape[:-3] + (grad.shape[-3] // self.groups, self.groups) + grad.shape[-2:]
        return grad.reshape(shape).sum(axis=-3)


def attention_groups(query: Any, key: Any, value: Any, attn_mask: Any = None, dropout_p: float = 0.0, is_causal: bool = False,
                     scale: float | None = None, enable_gqa: bool = False) -> int:
    """The arguments checked as the reference checks them; how many query heads share a key/value head."""
    return _Attention(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa).groups


def attention_weights(query: Any, key: Any, value: Any, attn_mask: Any = None, dropout_p: float = 0.0, is_causal: bool = False,
                      scale: float | None = None, enable_gqa: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """P (float64), the key and value with their heads repeated for grouped-query attention, and the
    scale: what the registry's tolerance scales are built from."""
    a = _Attention(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)
    return a.probabilities()[0].astype(np.float64), a.k, a.v, a.scale


def _attention_curve(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One query against keys (1) and (0) with values 1 and 0: the output is sigmoid(t·s), a soft switch."""
    n = len(t)
    q, k, v = t.reshape(n, 1, 1), np.broadcast_to(np.array([[1.0], [0.0]]), (n, 2, 1)), np.broadcast_to(np.array([[1.0], [0.0]]), (n, 2, 1))
    out = scaled_dot_product_attention(q, k, v, scale=1.0)[:, 0, 0]
    grad = scaled_dot_product_attention_backward(np.ones((n, 1, 1)), q, k, v, scale=1.0)[0][:, 0, 0]
    return out, grad


@quiet
@facts.declare(curve=facts.Curve(-6, 6, "q (keys 1 and 0, values 1 and 0)", "attention output", _attention_curve), accuracy=3)
def scaled_dot_product_attention(query: Any, key: Any, value: Any, attn_mask: Any = None, dropout_p: float = 0.0, is_causal: bool = False,
                                 scale: float | None = None, enable_gqa: bool = False) -> np.ndarray:
    r"""$O = \mathrm{softmax}(s\,QK^\top + M)\,V$; $\bar V = P^\top G$, $\bar Q = s\,\bar Z K$, $\bar K = s\,\bar Z^\top Q$ with $\bar Z = P \odot (GV^\top - \mathrm{rowsum}(P \odot GV^\top))$."""
    a = _Attention(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)
    p, _ = a.probabilities()
    return np.einsum("...ls,...sv->...lv", p, a.v.astype(np.longdouble)).astype(np.float64)


@quiet
def scaled_dot_product_attention_backward(grad_output: Any, query: Any, key: Any, value: Any, attn_mask: Any = None, dropout_p: float = 0.0,
                                          is_causal: bool = False, scale: float | None = None,
                                          enable_gqa: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""$\bar Q = s\,\bar Z K$, $\bar K = s\,\bar Z^\top Q$, $\bar V = P^\top G$, $\bar Z = P \odot (\bar P - \mathrm{rowsum}(P \odot \bar P))$, $\bar P = G V^\top$."""
    a = _Attention(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)
    g = as_float(grad_output, "grad_output")
    expected = a.q.shape[:-1] + (a.v.shape[-1],)
    if g.shape != expected:
        raise ValueError(f"grad_output shape {g.shape} must equal the output shape {expected}")
    p, _ = a.probabilities()
    g = g.astype(np.longdouble)
    grad_v = np.einsum("...ls,...lv->...sv", p, g)
    grad_p = np.einsum("...lv,...sv->...ls", g, a.v.astype(np.longdouble))
    grad_z = p * (grad_p - np.sum(p * grad_p, axis=-1, keepdims=True))
    grad_q = np.einsum("...ls,...se->...le", grad_z, a.k.astype(np.longdouble)) * a.scale
    grad_k = np.einsum("...ls,...le->...se", grad_z, a.q.astype(np.longdouble)) * a.scale
    return grad_q.astype(np.float64), a.fold(grad_k).astype(np.float64), a.fold(grad_v).astype(np.float64)


@quiet
def scaled_dot_product_attention_jvp(tangent: Any, query: Any, key: Any, value: Any, attn_mask: Any = None, dropout_p: float = 0.0,
                                     is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False) -> np.ndarray:
    r"""$\dot O = \dot P V + P \dot V$, $\dot P = P \odot (\dot Z - \mathrm{rowsum}(P \odot \dot Z))$, $\dot Z = s(\dot Q K^\top + Q \dot K^\top)$ (0 where masked);
    ``tangent`` = (Q̇, K̇, V̇), each may be None; a fully masked row's output is 0, and so is its tangent."""
    a = _Attention(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)
    tq, tk, tv = tangents(tangent, {"query": a.q.shape, "key": a.key_shape, "value": np.shape(as_float(value, "value"))})
    repeat = (lambda t: np.repeat(t, a.groups, axis=-3)) if a.groups > 1 else (lambda t: t)  # noqa: E731  as the forward repeats K and V
    p, z = a.probabilities()
    out = np.zeros(a.q.shape[:-1] + (a.v.shape[-1],), dtype=np.longdouble)
    if tq is not None or tk is not None:
        tz = np.zeros(p.shape, dtype=np.longdouble)
        if tq is not None:
            tz = tz + np.einsum("...le,...se->...ls", tq.astype(np.longdouble), a.k.astype(np.longdouble))
        if tk is not None:
            tz = tz + np.einsum("...le,...se->...ls", a.q.astype(np.longdouble), repeat(tk).astype(np.longdouble))
        tz = np.where(np.isneginf(z), 0.0, tz * a.scale)  # a masked score is a constant -inf: no tangent
        tp = p * (tz - np.sum(p * tz, axis=-1, keepdims=True))
        out = out + np.einsum("...ls,...sv->...lv", tp, a.v.astype(np.longdouble))
    if tv is not None:
        out = out + np.einsum("...ls,...sv->...lv", p, repeat(tv).astype(np.longdouble))
    return out.astype(np.float64)


def split_heads(x: Any, num_heads: int) -> np.ndarray:
    r"""(..., L, E) to (..., H, L, E/H): head h takes features $[h E/H, (h+1) E/H)$, as nn.MultiheadAttention
    splits them; its gradient is merge_heads."""
    a = as_float(x, "x")
    heads = _heads(num_heads, a.shape[-1])
    return np.swapaxes(a.reshape(a.shape[:-1] + (heads, a.shape[-1] // heads)), -2, -3)


def merge_heads(x: Any) -> np.ndarray:
    r"""(..., H, L, d) to (..., L, H d): the heads side by side again; its gradient is split_heads."""
    a = np.swapaxes(as_float(x, "x"), -2, -3)
    return a.reshape(a.shape[:-2] + (a.shape[-2] * a.shape[-1],))


def _heads(num_heads: Any, embed_dim: int) -> int:
    if isinstance(num_heads, bool) or not isinstance(num_heads, (int, np.integer)):
        raise TypeError(f"num_heads must be an int, got {num_heads!r}")
    if num_heads < 1:
        raise ValueError(f"num_heads must be at least 1, got {num_heads}")
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
    return int(num_heads)


class _SelfAttention:
    """nn.MultiheadAttention's arguments checked, and its steps up to the heads' outputs."""

    def __init__(self, input: Any, in_proj_weight: Any, in_proj_bias: Any, out_proj_weight: Any, out_proj_bias: Any, num_heads: Any, attn_mask: Any) -> None:
        x = as_float(input, "input")
        if x.ndim not in (2, 3) or 0 in x.shape:
            raise ValueError(f"input must be (L, E) or batch-first (N, L, E) with at least one token and feature, got shape {x.shape}")
        e = x.shape[-1]
        self.heads = _heads(num_heads, e)
        w_in, w_out = as_float(in_proj_weight, "in_proj_weight"), as_float(out_proj_weight, "out_proj_weight")
        if w_in.shape != (3 * e, e) or w_out.shape != (e, e):
            raise ValueError(f"in_proj_weight {w_in.shape} must be (3E, E) and out_proj_weight {w_out.shape} (E, E), E = {e}")
        for name, bias, size in (("in_proj_bias", in_proj_bias, 3 * e), ("out_proj_bias", out_proj_bias, e)):
            if bias is not None and as_float(bias, name).shape != (size,):
                raise ValueError(f"{name} must have shape ({size},), got {np.shape(bias)}")
        self.x, self.w_in, self.w_out = x, w_in, w_out
        self.b_in, self.b_out = in_proj_bias, out_proj_bias
        self.mask = self._mask(attn_mask, x)
        self.qkv = linear(x, w_in, in_proj_bias)  # the packed projection: [Q K V] = x W_in^T + b_in
        self.q, self.k, self.v = (split_heads(part, self.heads) for part in np.split(self.qkv, 3, axis=-1))
        self.merged = merge_heads(scaled_dot_product_attention(self.q, self.k, self.v, attn_mask=self.mask))

    def _mask(self, attn_mask: Any, x: np.ndarray) -> np.ndarray | None:
        """nn.MultiheadAttention's mask is the opposite of sdpa's: True (or -inf) forbids a position."""
        if attn_mask is None:
            return None
        try:
            m = np.asarray(attn_mask)
        except ValueError:
            raise ValueError("attn_mask must be a rectangular array") from None
        if m.dtype != bool and not np.issubdtype(m.dtype, np.floating):
            raise TypeError(f"attn_mask must be bool or floating (torch refuses others), got {m.dtype}")
        length, batch = x.shape[-2], x.shape[0] if x.ndim == 3 else 1
        if m.ndim == 3 and m.shape[0] == batch * self.heads:
            m = m.reshape(x.shape[:-2] + (self.heads,) + m.shape[1:])  # (N·H, L, S): one mask per sample and head
        elif m.ndim != 2:
            raise ValueError(f"attn_mask must be (L, S) or (N·num_heads, L, S), got shape {m.shape}")
        if m.shape[-2:] != (length, length):
            raise ValueError(f"attn_mask's last two dimensions {m.shape[-2:]} must be (L, S) = ({length}, {length})")
        return ~m if m.dtype == bool else as_float(m, "attn_mask")


@facts.declare(curve=None)
@quiet
def multi_head_attention(input: Any, in_proj_weight: Any, in_proj_bias: Any, out_proj_weight: Any, out_proj_bias: Any, num_heads: int,
                         attn_mask: Any = None) -> np.ndarray:
    r"""nn.MultiheadAttention(E, H, batch_first=True)(x, x, x, need_weights=False)[0]: $[Q\,K\,V] = x W_\text{in}^\top + b_\text{in}$,
    each split into H heads, $O_h = \mathrm{sdpa}(Q_h, K_h, V_h)$, $y = [O_1 \dots O_H] W_\text{out}^\top + b_\text{out}$."""
    a = _SelfAttention(input, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, num_heads, attn_mask)
    return linear(a.merged, a.w_out, out_proj_bias)


@quiet
def multi_head_attention_backward(grad_output: Any, input: Any, in_proj_weight: Any, in_proj_bias: Any, out_proj_weight: Any, out_proj_bias: Any,
                                  num_heads: int, attn_mask: Any = None) -> tuple[np.ndarray, ...]:
    r"""Each step's gradient in reverse: $\bar O = \bar y W_\text{out}$ split into heads, sdpa's $(\bar Q_h, \bar K_h, \bar V_h)$,
    merged and packed into $\overline{QKV}$; $\bar x = \overline{QKV}\,W_\text{in}$ (the sum of the three paths), $\bar W_\text{in} = \overline{QKV}^\top x$.
    Returns the gradients of input, in_proj_weight, in_proj_bias, out_proj_weight and out_proj_bias."""
    a = _SelfAttention(input, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, num_heads, attn_mask)
    g = check_grad_shape(grad_output, a.x.shape)
    g_merged, g_w_out, g_b_out = linear_backward(g, a.merged, a.w_out, out_proj_bias)
    g_heads = scaled_dot_product_attention_backward(split_heads(g_merged, a.heads), a.q, a.k, a.v, attn_mask=a.mask)
    g_qkv = np.concatenate([merge_heads(part) for part in g_heads], axis=-1)
    g_x, g_w_in, g_b_in = linear_backward(g_qkv, a.x, a.w_in, in_proj_bias)
    return g_x, g_w_in, g_b_in, g_w_out, g_b_out


def _attention_example(length: int, source: int, e: int, ev: int):
    def example(rng: np.random.Generator) -> S.Example:
        q, k, v = rng.normal(size=(length, e)), rng.normal(size=(source, e)), rng.normal(size=(source, ev))
        g = rng.normal(size=(length, ev))
        values = {**_named(q, "q"), **_named(k, "k"), **_named(v, "v"), **_named(g, "g"), "s": 0.7}

        def assemble(grads: list) -> tuple[np.ndarray, ...]:
            flat = np.array(grads, dtype=float)
            sizes = np.cumsum([q.size, k.size])
            return flat[:sizes[0]].reshape(q.shape), flat[sizes[0]:sizes[1]].reshape(k.shape), flat[sizes[1]:].reshape(v.shape)

        return S.Example((q, k, v), {"scale": 0.7}, g, values, assemble)

    return example


def _named(a: np.ndarray, stem: str) -> dict[str, float]:
    return {f"{stem}_{r + 1}{c + 1}": float(a[r, c]) for r in range(a.shape[0]) for c in range(a.shape[1])}


def _matrix(stem: str, rows: int, cols: int) -> sp.Matrix:
    return sp.Matrix(rows, cols, lambda r, c: sp.Symbol(f"{stem}_{r + 1}{c + 1}", real=True))


@facts.derivation(scaled_dot_product_attention)
def _scaled_dot_product_attention() -> S.Derivation:
    """L = sum G ⊙ O for one query against 3 keys of 2 features, with 1-feature values (rows are
    independent: one is the general case); the hand gradients are the matrix formulas above,
    written out with the same P. (One size: a larger one takes seconds to derive.)"""
    length, source, e, ev = 1, 3, 2, 1
    Q, K, V, G = _matrix("q", length, e), _matrix("k", source, e), _matrix("v", source, ev), _matrix("g", length, ev)
    s = sp.Symbol("s", positive=True)  # the scale, any: 1/√E by default
    P = _softmax_rows(Q * K.T * s)
    O = P * V
    loss = sum(G[i, j] * O[i, j] for i in range(length) for j in range(ev))
    hand = tuple(x for bar_ in _attention_bars(P, Q, K, V, G, s) for x in bar_)
    Qm, Km, Vm, Pm, Om, Gm = (sp.MatrixSymbol(n, 2, 2) for n in ("Q", "K", "V", "P", "O", "G"))
    steps = (S.Step("definition", sp.Eq(Om, sp.MatMul(Pm, Vm))),
             # evaluate=False: sympy settles an equation between a matrix and a scalar-shaped symbol as False
             S.Step("softmax of the scaled scores", sp.Eq(Pm, sp.Function("softmax")(sp.Symbol("s") * sp.MatMul(Qm, Km.T)), evaluate=False)),
             S.Step("value", sp.Eq(_bar("V"), sp.MatMul(Pm.T, Gm), evaluate=False)),
             S.Step("softmax Jacobian, row by row", sp.Eq(_bar("Z"), sp.Symbol(r"P \odot (G V^{\top} - \mathrm{rowsum}(P \odot G V^{\top}))"))),
             S.Step("query and key", sp.Eq(sp.Tuple(_bar("Q"), _bar("K")), sp.Tuple(sp.Symbol(r"s \bar{Z} K"), sp.Symbol(r"s \bar{Z}^{\top} Q")))))
    wrt = (*Q, *K, *V)
    return S.Derivation("scaled_dot_product_attention", loss, tuple(wrt), hand, steps, size=length,
                        note=f"{length} query, {source} keys of {e} features, values of {ev}; any scale s",
                        example=_attention_example(length, source, e, ev))


@facts.derivation(multi_head_attention)
def _multi_head_attention() -> S.Derivation:
    """L = sum G ⊙ y for 2 tokens of 2 features in 2 heads, with every weight and bias a symbol: the
    hand gradients are the steps of multi_head_attention_backward written out. sympy cannot simplify
    the 28 differences in reasonable time, so they are evaluated at 50 digits (simplify=False).

    One feature per head keeps it to 2 s (4 features take 34 s), at a price: the scale 1/√(E/H) is 1
    and contiguous heads cannot be told from interleaved ones here. Those two are pinned elsewhere:
    sdpa's own proof holds for any scale, and tests/test_attention.py and tests/test_networks.py
    check the heads' layout against nn.MultiheadAttention."""
    length, e, heads = 2, 2, 2
    d = e // heads
    X, W_in, W_out, G = _matrix("x", length, e), _matrix("w", 3 * e, e), _matrix("u", e, e), _matrix("g", length, e)
    b_in, b_out = _matrix("b", 1, 3 * e), _matrix("c", 1, e)
    ones = sp.ones(length, 1)
    QKV = X * W_in.T + ones * b_in
    s = 1 / sp.sqrt(d)  # nn.MultiheadAttention's scale: 1/sqrt(E/H)
    blocks = [[QKV[:, part * e + h * d: part * e + (h + 1) * d] for h in range(heads)] for part in range(3)]  # [Q, K, V][h]
    P = [_softmax_rows(blocks[0][h] * blocks[1][h].T * s) for h in range(heads)]
    O = sp.Matrix.hstack(*(P[h] * blocks[2][h] for h in range(heads)))
    loss = sum(G[i, j] * (O * W_out.T + ones * b_out)[i, j] for i in range(length) for j in range(e))
    O_bar = G * W_out
    per_head = [_attention_bars(P[h], blocks[0][h], blocks[1][h], blocks[2][h], O_bar[:, h * d:(h + 1) * d], s) for h in range(heads)]
    QKV_bar = sp.Matrix.hstack(*(per_head[h][part] for part in range(3) for h in range(heads)))  # [Q̄_1 Q̄_2 K̄_1 K̄_2 V̄_1 V̄_2]
    hand = (*(QKV_bar * W_in), *(QKV_bar.T * X), *(ones.T * QKV_bar), *(G.T * O), *(ones.T * G))
    Om, Um, Bm = (sp.MatrixSymbol(n, 2, 2) for n in ("O", "W_out", "b_out"))
    steps = (S.Step("definition", sp.Eq(sp.MatrixSymbol("y", 2, 2), sp.MatMul(Om, Um.T) + Bm)),
             S.Step("heads: softmax attention of each block of QKV = x W_in^T + b_in", sp.Eq(sp.Symbol("O_h"), sp.Symbol(r"\mathrm{sdpa}(Q_h, K_h, V_h)"))),
             S.Step("out-projection", sp.Eq(sp.Tuple(_bar("O"), _bar("W_{out}"), _bar("b_{out}")), sp.Tuple(sp.Symbol("G W_{out}"), sp.Symbol("G^{\\top} O"), sp.Symbol(r"\mathrm{colsum}(G)")))),
             S.Step("each head's sdpa gradients, its heads merged, then packed", sp.Eq(_bar("QKV"), sp.Symbol(r"[\bar{Q} \; \bar{K} \; \bar{V}]"))),
             S.Step("in-projection: the three paths to x summed", sp.Eq(sp.Tuple(_bar("x"), _bar("W_{in}"), _bar("b_{in}")),
                                                                          sp.Tuple(sp.Symbol(r"\bar{QKV} W_{in}"), sp.Symbol(r"\bar{QKV}^{\top} x"), sp.Symbol(r"\mathrm{colsum}(\bar{QKV})")))))
    return S.Derivation("multi_head_attention", loss, (*X, *W_in, *b_in, *W_out, *b_out), hand, steps, size=length, simplify=False,
                        note=f"{length} tokens of {e} features in {heads} heads; every weight and bias a symbol")


def _softmax_rows(Z: sp.Matrix) -> sp.Matrix:
    return sp.Matrix(Z.rows, Z.cols, lambda i, j: sp.exp(Z[i, j]) / sum(sp.exp(Z[i, t]) for t in range(Z.cols)))


def _attention_bars(P: sp.Matrix, Q: sp.Matrix, K: sp.Matrix, V: sp.Matrix, G: sp.Matrix, s: sp.Expr) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
    """sdpa's hand gradients (Q̄, K̄, V̄) for O = P V, P = softmax(s Q Kᵀ), Ō = G: through the softmax
    Jacobian row by row, Z̄ = P ⊙ (P̄ − rowsum(P ⊙ P̄)) with P̄ = G Vᵀ."""
    P_bar = G * V.T
    Z_bar = sp.Matrix(P.rows, P.cols, lambda i, j: P[i, j] * (P_bar[i, j] - sum(P[i, t] * P_bar[i, t] for t in range(P.cols))))
    return s * Z_bar * K, s * Z_bar.T * Q, P.T * G


def _bar(name: str) -> sp.Symbol:
    return sp.Symbol(rf"\bar{{{name}}}")
