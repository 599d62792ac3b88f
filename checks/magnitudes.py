"""How much rounding error a network's values and gradients carry: a first-order error analysis.

Two float64 computations of a composition differ by their roundings, each carried to the output by
the links after it. Every value is given an *error* e, in units of eps: torch's value is within about
eps·e of the exact one. A link's output error is its own rounding (its registry scale: what the
link checks judge it at) plus its input's error carried through |Jacobian|. Backward, a gradient's
error is the op's own rounding, plus the incoming gradient's error through |Jacobian|, plus the
incoming gradient's *value* times the error of the Jacobian itself (which moves with the forward
errors). Values and errors are kept apart, so no error is ever multiplied by another: that would be
second order, eps², yet count as eps here (a factor 1/eps too loose).

Rules: Linear and conv2d (|W| e + own; ē = ē_out |W|, W̄'s error ē_outᵀ|h| + |ḡ|ᵀ e_h), activations
(own + L e forward with their ``lipschitz`` fact, |f'(h)| ē backward; the change of f' with h's error
is not counted: at a kink it is a convention, elsewhere second order in practice), selections (max
pooling, flatten: the errors routed with the values), and layer normalisation and multi-head
attention written out below. A residual adds both paths' errors.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import reference
from reference import facts, network
from reference.attention import _SelfAttention, merge_heads, split_heads
from checks import dtypes
from checks.spec import Case


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


def _abs(value: Any) -> Any:
    return np.abs(value) if isinstance(value, np.ndarray) else value


@dataclass
class Record:
    """One layer on the forward pass: its input, that input's error, and what its rule keeps."""

    h: np.ndarray
    e: np.ndarray
    memo: Any = None


# -- layer normalisation ---------------------------------------------------------------------------

def _norm_parts(h: np.ndarray, e: np.ndarray, params: dict[str, Any]):
    axes = tuple(range(h.ndim - len(params["normalized_shape"]), h.ndim))
    mean = lambda a: np.mean(a, axis=axes, keepdims=True)  # noqa: E731
    sigma = np.sqrt(np.var(h, axis=axes, keepdims=True) + params.get("eps", 1e-5))
    xhat = (h - mean(h)) / sigma
    # x̂ moves by (δx − mean δx − x̂ mean(x̂ δx)) / σ, and 1/σ by mean(x̂ δx)/σ relatively
    return axes, mean, sigma, xhat, (e + mean(e) + np.abs(xhat) * mean(np.abs(xhat) * e)) / sigma, mean(np.abs(xhat) * e) / sigma


def _norm_forward(h, e, params, info):
    parts = _norm_parts(h, e, params)  # kept for the backward
    w = 1.0 if params.get("weight") is None else np.abs(params["weight"])
    out = network._LAYERS["layer_norm"][0](h, **params)
    return out, _spec("layer_norm").scale(link_case("layer_norm", h, params, info), out) + w * parts[4], parts


def _norm_backward(g, ge, h, e, params, memo, info):
    r"""$\bar x = r(\hat g - \overline{\hat g} - \hat x\,\overline{\hat g \hat x})$, $\hat g = g w$: ĝ's error through the same
    map, x̂'s error against ĝ's value, and r's relative error times x̄."""
    axes, mean, sigma, xhat, dxhat, dr = memo
    w = 1.0 if params.get("weight") is None else np.abs(params["weight"])
    x = np.abs(xhat)
    gv, gerr = np.abs(g) * w, ge * w
    result = network._LAYERS["layer_norm"][1](g, h, **params)
    through = (gerr + mean(gerr) + x * mean(gerr * x) + dxhat * mean(gv * x) + x * mean(gv * dxhat)) / sigma + np.abs(result[0]) * dr
    own = _spec("layer_norm").grad_scale(link_case("layer_norm", h, params, info), g)
    batch = tuple(range(h.ndim - len(axes)))
    errors = {"weight": own["weight"] + np.sum(ge * x + np.abs(g) * dxhat, axis=batch), "bias": own["bias"] + np.sum(ge, axis=batch)}
    grads = dict(zip(("weight", "bias"), result[1:]))
    return result[0], own["input"] + through, {k: (grads[k], v) for k, v in errors.items() if isinstance(params.get(k), np.ndarray)}


# -- multi-head self-attention ---------------------------------------------------------------------

def _attention_case(a: _SelfAttention, info: dtypes.DtypeInfo) -> Case:
    return Case({"query": a.q, "key": a.k, "value": a.v},
                {"attn_mask": a.mask, "dropout_p": 0.0, "is_causal": False, "scale": None, "enable_gqa": False}, info)


def _in_projection(a: _SelfAttention, info: dtypes.DtypeInfo) -> Case:
    return Case({"input": a.x, "weight": a.w_in, "bias": a.b_in}, {}, info)


def _out_projection(a: _SelfAttention, info: dtypes.DtypeInfo) -> Case:
    return Case({"input": a.merged, "weight": a.w_out, "bias": a.b_out}, {}, info)


def _attention_forward(h, e, params, info):
    r"""[Q K V] within own + |W_in| e; each score $z_{ij} = s\,q_i \cdot k_j$ moves by
    $D_{ij} = s(e_{q_i} \cdot |k_j| + |q_i| \cdot e_{k_j})$, so $O_i = \sum_j P_{ij} v_j$ moves by its own rounding plus
    $\sum_j P_{ij} (e_{v_j} + D_{ij} |v_j - O_i|)$; then own + |W_out| e_O."""
    a = _SelfAttention(h, params["in_proj_weight"], params["in_proj_bias"], params["out_proj_weight"], params["out_proj_bias"],
                       params["num_heads"], params.get("attn_mask"))
    linear = _spec("linear")
    qkv = linear.scale(_in_projection(a, info), a.qkv) + e @ np.abs(a.w_in).T
    eq, ek, ev = (split_heads(part, a.heads) for part in np.split(qkv, 3, axis=-1))
    p = reference.attention.attention_weights(a.q, a.k, a.v, attn_mask=a.mask)[0]
    s = 1.0 / np.sqrt(a.q.shape[-1])
    d = s * (eq @ np.abs(a.k).swapaxes(-1, -2) + np.abs(a.q) @ ek.swapaxes(-1, -2))
    o = split_heads(a.merged, a.heads)
    spread = np.abs(a.v[..., None, :, :] - o[..., :, None, :])  # |v_j - O_i|, (..., L, S, d)
    case = _attention_case(a, info)
    e_o = _spec("scaled_dot_product_attention").scale(case, o) + p @ ev + np.einsum("...ls,...lsd->...ld", p * d, spread)
    e_merged = merge_heads(e_o)
    out = linear.forward(a.merged, a.w_out, a.b_out)
    return out, linear.scale(_out_projection(a, info), out) + e_merged @ np.abs(a.w_out).T, (a, p, s, d, eq, ek, ev, e_merged, case)


def _attention_backward(g, ge, h, e, params, memo, info):
    r"""Back through the out-projection; then sdpa's $\bar V = P^\top G$, $\bar P = G V^\top$,
    $\bar Z = P \odot (\bar P - \mathrm{rowsum}(P \odot \bar P))$, $\bar Q = s \bar Z K$, $\bar K = s \bar Z^\top Q$, each
    product's error the first-order sum (error of one factor times the other's value); then the
    in-projection."""
    a, p, s, d, eq, ek, ev, e_merged, case = memo
    linear, sdpa = _spec("linear"), _spec("scaled_dot_product_attention")
    w_out, w_in = np.abs(a.w_out), np.abs(a.w_in)
    g_merged, g_w_out, g_b_out = reference.linear_backward(g, a.merged, a.w_out, a.b_out)
    own = linear.grad_scale(_out_projection(a, info), g)
    err_merged = own["input"] + ge @ w_out
    err_w_out = own["weight"] + _flat(ge).T @ _flat(np.abs(a.merged)) + _flat(np.abs(g)).T @ _flat(e_merged)
    err_b_out = own["bias"] + _flat(ge).sum(axis=0)
    gh, geh = split_heads(g_merged, a.heads), split_heads(err_merged, a.heads)
    dp = p * (d + np.sum(p * d, axis=-1, keepdims=True))  # P's error
    pbar = gh @ a.v.swapaxes(-1, -2)
    err_pbar = geh @ np.abs(a.v).swapaxes(-1, -2) + np.abs(gh) @ ev.swapaxes(-1, -2)
    centred = np.abs(pbar - np.sum(p * pbar, axis=-1, keepdims=True))
    zbar = np.abs(p * (pbar - np.sum(p * pbar, axis=-1, keepdims=True)))
    err_z = dp * centred + p * (err_pbar + np.sum(p * err_pbar + dp * np.abs(pbar), axis=-1, keepdims=True))
    own_heads = sdpa.grad_scale(case, gh)
    errors = (own_heads["query"] + s * (err_z @ np.abs(a.k) + zbar @ ek), own_heads["key"] + s * (err_z.swapaxes(-1, -2) @ np.abs(a.q) + zbar.swapaxes(-1, -2) @ eq),
              own_heads["value"] + p.swapaxes(-1, -2) @ geh + dp.swapaxes(-1, -2) @ np.abs(gh))
    g_heads = reference.scaled_dot_product_attention_backward(gh, a.q, a.k, a.v, attn_mask=a.mask)
    g_qkv = np.concatenate([merge_heads(part) for part in g_heads], axis=-1)
    err_qkv = np.concatenate([merge_heads(part) for part in errors], axis=-1)
    g_x, g_w_in, g_b_in = reference.linear_backward(g_qkv, a.x, a.w_in, a.b_in)
    own_in = linear.grad_scale(_in_projection(a, info), g_qkv)
    err_x = own_in["input"] + err_qkv @ w_in
    err_w_in = own_in["weight"] + _flat(err_qkv).T @ _flat(np.abs(a.x)) + _flat(np.abs(g_qkv)).T @ _flat(e)
    grads = {"in_proj_weight": (g_w_in, err_w_in), "in_proj_bias": (g_b_in, own_in["bias"] + _flat(err_qkv).sum(axis=0)),
             "out_proj_weight": (g_w_out, err_w_out), "out_proj_bias": (g_b_out, err_b_out)}
    return g_x, err_x, {k: v for k, v in grads.items() if v[0] is not None}


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, a.shape[-1])


_RULES: dict[str, tuple[Callable, Callable]] = {"layer_norm": (_norm_forward, _norm_backward),
                                                "multi_head_attention": (_attention_forward, _attention_backward)}


# -- the chain ---------------------------------------------------------------------------------------

def forward(layers: list[network.Layer], x: np.ndarray, info: dtypes.DtypeInfo, error: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, list[Record]]:
    """The network's output, its error, and each layer's record. ``error``: the input's (0: the
    network's input is the same exact array for torch and the reference)."""
    return _forward(layers, x, np.zeros(np.shape(x)) if error is None else error, info)


def _forward(layers, h, e, info):
    records: list[Record] = []
    for name, params in layers:
        if name == "residual":  # h + f(h): both paths' errors, and the sum's own rounding
            out, e_out, inner = _forward(params["layers"], h, e, info)
            records.append(Record(h, e, inner))
            h = h + out
            e = e + e_out + np.abs(h)
            continue
        if name in _RULES:
            out, e_out, memo = _RULES[name][0](h, e, params, info)
            records.append(Record(h, e, memo))
            h, e = out, e_out
            continue
        records.append(Record(h, e))
        forward_fn = network._LAYERS[name][0]
        out = forward_fn(h, **params)
        own = _spec(name).scale(link_case(name, h, params, info), out)
        known = activation_facts(name)
        if known is not None:
            spread = np.max(e, axis=params["dim"], keepdims=True) if known.mixes else e
            e = own + known.lipschitz(params) * spread
        else:  # Linear, a convolution (|W| e, no bias), or a selection (max pooling, flatten: the errors moved with the values)
            e = own + forward_fn(e, **{k: (None if k == "bias" else _abs(v)) for k, v in params.items()})
        h, e = out, np.broadcast_to(e, np.shape(out))  # a scale may be one number for the whole output
    return h, e, records


def loss_gradient(loss: str, out: np.ndarray, error: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The error of dLoss/dout (mean reduction): its own rounding, at the size of its terms, plus
    its sensitivity to the error the network's output carries."""
    n = out.shape[0] if loss == "cross_entropy" else out.size
    if loss == "cross_entropy":  # (p - onehot) / N; p moves by at most 2 p max|dz|
        p = reference.softmax(out, -1)
        return (p + reference.one_hot(target, out.shape[-1]) + 2 * p * np.max(error, axis=-1, keepdims=True)) / n
    if loss == "binary_cross_entropy":  # (p - y) / (p (1 - p)) / N, whose p-derivative is <= 2 / (p (1 - p))^2
        q = np.maximum(out * (1 - out), 1e-12)
        return ((np.abs(out) + np.abs(target)) / q + 2 * error / q**2) / n
    if loss == "mse_loss":
        return 2 * (np.abs(out) + np.abs(target) + error) / n
    return np.full(out.shape, 1.0 / n)  # l1: sign / N


def gradients(layers: list[network.Layer], x: np.ndarray, loss: str, target: np.ndarray,
              info: dtypes.DtypeInfo) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The error of x's gradient, and of every parameter gradient in the nesting of
    reference.network.backward's dicts."""
    out, e_out, records = forward(layers, x, info)
    g = reference.network._LOSSES[loss][1](np.ones(()), out, target)
    _, input_error, errors = backward(layers, records, g, loss_gradient(loss, out, e_out, target), info)
    return input_error, errors


def backward(layers, records, g, ge, info):
    """The gradient (value) and its error back through each layer: returns the input's gradient,
    its error, and each layer's parameter gradient errors."""
    errors: list[dict[str, Any]] = []
    for (name, params), record in zip(reversed(layers), reversed(records)):
        h, e = record.h, record.e
        if name == "residual":
            through, through_err, inner = backward(params["layers"], record.memo, g, ge, info)
            g, ge = g + through, ge + through_err + np.abs(g + through)
            errors.append({"layers": inner})
            continue
        if name in _RULES:
            g, ge, found = _RULES[name][1](g, ge, h, e, params, record.memo, info)
            errors.append({k: err for k, (_, err) in found.items()})
            continue
        backward_fn = network._LAYERS[name][1]
        own = _spec(name).grad_scale(link_case(name, h, params, info), g)
        result = backward_fn(g, h, **params)
        g_in = result[0] if isinstance(result, tuple) else result
        if isinstance(result, tuple):  # Linear, a convolution: ē_out |W|; a parameter's: ē_outᵀ|h| + |ḡ|ᵀ e_h
            absolute = {k: _abs(v) for k, v in params.items()}
            by_error = backward_fn(ge, np.abs(h), **absolute)
            by_value = backward_fn(np.abs(g), e, **absolute)
            names = network.parameter_names(name, params)
            # a bias's gradient sums ḡ alone: no forward value enters it
            errors.append({k: own[k] + a + (0.0 if k == "bias" else b)
                           for k, a, b in zip(names, (r for r in by_error[1:] if r is not None), (r for r in by_value[1:] if r is not None))})
            g, ge = g_in, own["input"] + by_error[0]
            continue
        known = activation_facts(name)
        if known is not None and known.mixes:  # softmax: |p_i (delta_ij - p_j)| against ē
            p = reference.softmax(h, params["dim"])
            ge = own["input"] + p * (ge + np.sum(ge * p, axis=params["dim"], keepdims=True))
        else:  # elementwise |f'(h)| ē; a selection routes ē with g
            ge = own["input"] + np.abs(backward_fn(ge, h, **params))
        g = g_in
        errors.append({})
    return g, ge, errors[::-1]
