"""The natural scale of a network's values and gradients: the chain rule run in magnitudes.

Two float64 computations of a composition differ by their roundings, each carried to the output by
the links after it. To first order the error of a value is eps times a sum of terms
|local derivative| × |operand|, so each value is given a *magnitude* m: the size at which it carries
rounding error. Forward, a layer's output magnitude is its own rounding (its registry scale) plus
its input's magnitude carried through |Jacobian|: |W| m + |b| through Linear, |f(h)| + L m through an
activation of derivative at most L (its ``lipschitz`` fact). Backward, every product is taken in
absolute values and every difference as a sum, with the forward magnitudes standing for the forward
values (their error enters the gradient too). A residual link adds both paths' magnitudes.

The rules for layer normalisation and multi-head attention are written out below, each a bound on
the first-order error of the steps in its docstring.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np

import reference
from reference import facts, network
from reference.attention import _SelfAttention, merge_heads, split_heads
from checks import dtypes
from checks.spec import Case

Record = tuple[np.ndarray, np.ndarray, Any]  # a layer's input, its magnitude, and what its rule kept for the backward


def link_case(name: str, h: np.ndarray, params: dict[str, Any], info: dtypes.DtypeInfo) -> Case:
    """A layer as its registry op's case: the leading array arguments of its reference are inputs
    (input, weight, bias of Linear and conv2d), the rest parameters (layer_norm's weight follows
    normalized_shape)."""
    inputs, order = {"input": h}, list(inspect.signature(network._LAYERS[name][0]).parameters)[1:]
    for key in order:
        if not isinstance(params.get(key), np.ndarray):
            break
        inputs[key] = params[key]
    return Case(inputs, {k: v for k, v in params.items() if k not in inputs}, info)


def activation_facts(name: str) -> facts.Facts | None:
    """An activation's facts (its lipschitz bound, whether it mixes a row); None for a layer that is not one."""
    known = None if name in ("flatten", "layer_norm", "multi_head_attention") else facts.of(name)
    return known if known is not None and known.lipschitz is not None else None


def _spec(name: str):
    from checks.networks import link_spec

    return link_spec(name)


# -- layer normalisation ---------------------------------------------------------------------------

def _norm_parts(h: np.ndarray, m: np.ndarray, params: dict[str, Any]):
    axes = tuple(range(h.ndim - len(params["normalized_shape"]), h.ndim))
    mean = lambda a: np.mean(a, axis=axes, keepdims=True)  # noqa: E731
    sigma = np.sqrt(np.var(h, axis=axes, keepdims=True) + params.get("eps", 1e-5))
    xhat = (h - mean(h)) / sigma
    # x̂ moves by (δx − mean δx − x̂ mean(x̂ δx)) / σ
    dxhat = (m + mean(m) + np.abs(xhat) * mean(np.abs(xhat) * m)) / sigma
    return axes, mean, sigma, xhat, dxhat


def _norm_forward(h, m, params, info):
    axes, mean, sigma, xhat, dxhat = _norm_parts(h, m, params)
    w = 1.0 if params.get("weight") is None else np.abs(params["weight"])
    out = network._LAYERS["layer_norm"][0](h, **params)
    own = _spec("layer_norm").scale(link_case("layer_norm", h, params, info), out)
    return out, own + w * dxhat, None


def _norm_backward(g, h, m, params, memo, info):
    r"""$\bar x = (\hat g - \overline{\hat g} - \hat x\,\overline{\hat g \hat x})/\sigma$ with $\hat g = g w$: each term
    in size, x̂ at |x̂| + its error, and 1/σ's own relative error."""
    axes, mean, sigma, xhat, dxhat = _norm_parts(h, m, params)
    w = 1.0 if params.get("weight") is None else np.abs(params["weight"])
    gw, a = g * w, np.abs(xhat) + dxhat
    through = (gw + mean(gw) + a * mean(gw * a)) / sigma * (1.0 + mean(np.abs(xhat) * m) / sigma)
    own = _spec("layer_norm").grad_scale(link_case("layer_norm", h, params, info), g)
    batch = tuple(range(h.ndim - len(axes)))
    sizes = {"weight": own["weight"] + np.sum(g * a, axis=batch), "bias": own["bias"] + np.sum(g, axis=batch)}
    return own["input"] + through, {k: v for k, v in sizes.items() if isinstance(params.get(k), np.ndarray)}


# -- multi-head self-attention ---------------------------------------------------------------------

def _attention_case(a: _SelfAttention, info: dtypes.DtypeInfo) -> Case:
    return Case({"query": a.q, "key": a.k, "value": a.v},
                {"attn_mask": a.mask, "dropout_p": 0.0, "is_causal": False, "scale": None, "enable_gqa": False}, info)


def _attention_forward(h, m, params, info):
    r"""[Q K V] at |W_in| m + |b_in|; each score $z_{ij} = s\,q_i \cdot k_j$ moves by
    $D_{ij} = s(m_{q_i} \cdot |k_j| + |q_i| \cdot m_{k_j})$, so $O_i = \sum_j P_{ij} v_j$ moves by at most
    $\sum_j P_{ij} (m_{v_j} + D_{ij}(|v_j| + |O_i|))$ beyond its own rounding; then |W_out| m_O + |b_out|."""
    a = _SelfAttention(h, params["in_proj_weight"], params["in_proj_bias"], params["out_proj_weight"], params["out_proj_bias"],
                       params["num_heads"], params.get("attn_mask"))
    b_in = 0.0 if a.b_in is None else np.abs(a.b_in)
    mq, mk, mv = (split_heads(part, a.heads) for part in np.split(m @ np.abs(a.w_in).T + b_in, 3, axis=-1))
    p = reference.attention.attention_weights(a.q, a.k, a.v, attn_mask=a.mask)[0]
    s = 1.0 / np.sqrt(a.q.shape[-1])
    d = s * (mq @ np.abs(a.k).swapaxes(-1, -2) + np.abs(a.q) @ mk.swapaxes(-1, -2))
    o = split_heads(a.merged, a.heads)
    pd = p * d
    case = _attention_case(a, info)
    m_o = _spec("scaled_dot_product_attention").scale(case, o) + p @ mv + pd @ np.abs(a.v) + np.sum(pd, axis=-1, keepdims=True) * np.abs(o)
    m_merged = merge_heads(m_o)
    b_out = 0.0 if a.b_out is None else np.abs(a.b_out)
    out = network._LAYERS["multi_head_attention"][0](h, **params)
    return out, m_merged @ np.abs(a.w_out).T + b_out, (a, p, s, d, mq, mk, mv, m_merged, case)


def _attention_backward(g, h, m, params, memo, info):
    r"""Back through the out-projection in magnitudes; then sdpa's $\bar V = P^\top G$, $\bar P = G V^\top$,
    $\bar Z = P \odot (\bar P - \mathrm{rowsum}(P \odot \bar P))$, $\bar Q = s \bar Z K$, $\bar K = s \bar Z^\top Q$ with P at
    P + its error, V, K, Q at |value| + magnitude; then the in-projection."""
    a, p, s, d, mq, mk, mv, m_merged, case = memo
    absolute = lambda v: None if v is None else np.abs(v)  # noqa: E731
    g_merged, w_out, b_out = reference.linear_backward(g, m_merged, np.abs(a.w_out), absolute(a.b_out))
    gh = split_heads(g_merged, a.heads)
    pp = p + p * (d + np.sum(p * d, axis=-1, keepdims=True))
    pbar = gh @ (np.abs(a.v) + mv).swapaxes(-1, -2)
    zbar = pp * (pbar + np.sum(pp * pbar, axis=-1, keepdims=True))
    own = _spec("scaled_dot_product_attention").grad_scale(case, gh)
    grads = (own["query"] + s * zbar @ (np.abs(a.k) + mk), own["key"] + s * zbar.swapaxes(-1, -2) @ (np.abs(a.q) + mq),
             own["value"] + pp.swapaxes(-1, -2) @ gh)
    g_qkv = np.concatenate([merge_heads(part) for part in grads], axis=-1)
    g_in, w_in, b_in = reference.linear_backward(g_qkv, m, np.abs(a.w_in), absolute(a.b_in))
    sizes = {"in_proj_weight": w_in, "in_proj_bias": b_in, "out_proj_weight": w_out, "out_proj_bias": b_out}
    return g_in, {k: v for k, v in sizes.items() if v is not None}


_RULES: dict[str, tuple[Callable, Callable]] = {"layer_norm": (_norm_forward, _norm_backward),
                                                "multi_head_attention": (_attention_forward, _attention_backward)}


# -- the chain ---------------------------------------------------------------------------------------

def forward(layers: list[network.Layer], x: np.ndarray, info: dtypes.DtypeInfo) -> tuple[np.ndarray, np.ndarray, list[Record]]:
    """The network's output, its magnitude, and each layer's (input, magnitude, memo): |x| first,
    then |W| M + |b| through Linear or a convolution (a sum can cancel to far below its terms),
    |f(h)| + L M through an activation (an op that mixes its row, softmax, passes on the row's
    largest M), M itself through a selection (max pooling, flatten), and the rules above."""
    return _forward(layers, x, np.abs(x), info)


def _forward(layers, h, m, info):
    records: list[Record] = []
    for name, params in layers:
        if name == "residual":  # h + f(h): both paths' magnitudes
            out, m_out, inner = _forward(params["layers"], h, m, info)
            records.append((h, m, inner))
            h, m = h + out, m + m_out
            continue
        if name in _RULES:
            out, m_out, memo = _RULES[name][0](h, m, params, info)
            records.append((h, m, memo))
            h, m = out, m_out
            continue
        records.append((h, m, None))
        forward_fn = network._LAYERS[name][0]
        out = forward_fn(h, **params)
        known = activation_facts(name)
        if known is not None:
            spread = np.max(m, axis=params["dim"], keepdims=True) if known.mixes else m
            m = np.abs(out) + known.lipschitz(params) * spread
        else:
            m = forward_fn(m, **{k: np.abs(v) if isinstance(v, np.ndarray) else v for k, v in params.items()})
        h = out
    return h, m, records


def loss_gradient(loss: str, out: np.ndarray, size: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The size of dLoss/dout's terms (mean reduction), plus its sensitivity to the error the
    network's output carries (at the scale ``size``)."""
    n = out.shape[0] if loss == "cross_entropy" else out.size
    if loss == "cross_entropy":  # (p - onehot) / N; p moves by at most 2 p max|dz|
        p = reference.softmax(out, -1)
        return (p + reference.one_hot(target, out.shape[-1]) + 2 * p * np.max(size, axis=-1, keepdims=True)) / n
    if loss == "binary_cross_entropy":  # (p - y) / (p (1 - p)) / N, whose p-derivative is <= 2 / (p (1 - p))^2
        q = np.maximum(out * (1 - out), 1e-12)
        return ((np.abs(out) + np.abs(target)) / q + 2 * size / q**2) / n
    if loss == "mse_loss":
        return 2 * (np.abs(out) + np.abs(target) + size) / n
    return np.full(out.shape, 1.0 / n)  # l1: sign / N


def gradients(layers: list[network.Layer], x: np.ndarray, loss: str, target: np.ndarray, info: dtypes.DtypeInfo) -> list[dict[str, Any]]:
    """The natural scale of every parameter gradient, in the nesting of reference.network.backward's
    dicts. Each link is at least that op's own registry gradient scale: sigmoid's is |g|, not
    |g| s (1 - s), because 1 - s is only accurate to eps absolutely."""
    out, m_out, records = forward(layers, x, info)
    _, sizes = _backward(layers, records, loss_gradient(loss, out, m_out, target), info)
    return sizes


def _backward(layers, records, g, info):
    sizes: list[dict[str, Any]] = []
    for (name, params), (h, m, memo) in zip(reversed(layers), reversed(records)):
        if name == "residual":
            through, inner = _backward(params["layers"], memo, g, info)
            g = g + through
            sizes.append({"layers": inner})
            continue
        if name in _RULES:
            g, own_sizes = _RULES[name][1](g, h, m, params, memo, info)
            sizes.append(own_sizes)
            continue
        case = link_case(name, h, {k: np.abs(v) if isinstance(v, np.ndarray) else v for k, v in params.items()}, info)
        own = _spec(name).grad_scale(case, g)
        arrays = {k: np.abs(v) for k, v in params.items() if isinstance(v, np.ndarray)}
        if arrays:  # Linear, a convolution: the backward of |W| against the forward magnitudes
            result = network._LAYERS[name][1](g, m, **{k: arrays.get(k, v) for k, v in params.items()})
            g = np.maximum(result[0], own["input"])
            sizes.append({k: np.maximum(v, own[k]) for k, v in zip(network.parameter_names(name, params), (r for r in result[1:] if r is not None))})
            continue
        known = activation_facts(name)
        if known is None:  # max pooling, flatten: g routed where the values went
            g = np.maximum(np.abs(network._LAYERS[name][1](g, h, **params)), own["input"])
        elif known.mixes:  # softmax: |p_i (delta_ij - p_j)| summed against g
            p = reference.softmax(h, params["dim"])
            g = np.maximum(p * (g + np.sum(g * p, axis=params["dim"], keepdims=True)), own["input"])
        else:  # elementwise: |f'(h)| g
            g = np.maximum(np.abs(network._LAYERS[name][1](g, h, **params)), own["input"])
        sizes.append({})
    return g, sizes[::-1]
