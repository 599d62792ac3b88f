r"""The ground truth: every op and its gradient in 50-digit arithmetic (mpmath).

Inputs are the exact values of the (dtype-rounded) floats; every operation is carried out on
object arrays of ``mpmath.mpf`` at 50 significant digits, so the result is the true value to far
below any dtype's precision, then rounded to float64 (correctly, by mpmath). Rounding that to a
lower dtype rounds twice, which can differ from correct rounding only within 2**-53 of a tie.

Pointwise ops (activations, the per-element terms of regression losses and BCE with logits) need no
code here: their sympy definition (beside the numpy functions in reference/) and ``sympy.diff`` of it
are evaluated through ``lambdify(..., modules="mpmath")``, with ``exp(u) - 1`` and ``log(1 + u)``
evaluated as expm1 and log1p (see symbolic.stable). Where sympy's canonical form still subtracts
terms of equal size (erfc(-u) becomes 2 - erfc(u)), the 50 digits are relative to those terms, far
below the natural scale at which such an op is judged.

The ops below the line are written out by hand in mpmath, because a sympy definition cannot carry
what they add: BCE's -100 clamp and 1e-12 gradient floor; ignore_index, weights, label smoothing
and torch's 'mean' divisors; a reduction over a dim or a matrix product. They follow the same
definitions as the references but share no code with them: a third implementation, meant for finite
inputs (infinities and NaN are conventions, pinned in tests/test_conventions.py, not accuracy).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import mpmath
import numpy as np

import reference
from reference import attention, convolution, pooling
from reference import facts as reference_facts
from reference import symbolic
from reference._formats import cast

DIGITS = 50
_mp = np.frompyfunc(lambda v: mpmath.mpf(float(v)), 1, 1)
_exp, _log = (np.frompyfunc(f, 1, 1) for f in (mpmath.exp, mpmath.log))
_float = np.frompyfunc(float, 1, 1)
GRAD_EPS = mpmath.mpf(float(np.float32(1e-12)))


def to_float(values: Any) -> np.ndarray:
    """Round 50-digit values to float64 (round to nearest)."""
    return np.asarray(_float(np.asarray(values, dtype=object)), dtype=np.float64)


def _where(cond: np.ndarray, a: Any, b: Any) -> np.ndarray:
    return np.where(cond, a, b).astype(object)


NAN = mpmath.mpf("nan")


def _divide(a: Any, divisor: Any) -> Any:
    """a / divisor; a zero divisor (empty batch, every target ignored or weighted 0) gives NaN,
    the convention of the references and torch, where mpmath would raise."""
    return NAN if divisor == 0 else a / divisor


def _reduce(loss: Any, reduction: str, divisor: Any = None) -> np.ndarray:
    loss = np.asarray(loss, dtype=object)  # a sum over the classes of one sample is a bare mpf
    if reduction == "none":
        return loss
    total = mpmath.fsum(loss.ravel())
    if reduction == "batchmean":  # kl_div: per sample, the first dimension's size (a 0-d loss is one)
        divisor = loss.shape[0] if loss.ndim else 1
    return np.array(total if reduction == "sum" else _divide(total, loss.size if divisor is None else divisor), dtype=object)


def _spread(g: np.ndarray, shape: tuple[int, ...], reduction: str, divisor: Any = None) -> np.ndarray:
    g = np.asarray(g, dtype=object)
    if reduction == "none":
        return g
    scalar = g.reshape(())[()]
    if reduction == "batchmean":
        divisor = shape[0] if len(shape) else 1
    return np.full(shape, scalar if reduction == "sum" else _divide(scalar, int(np.prod(shape)) if divisor is None else divisor), dtype=object)


FORWARD: dict[str, Callable[..., np.ndarray]] = {}
BACKWARD: dict[str, Callable[..., Any]] = {}


# --- softmax family --------------------------------------------------------------------------------

def _softmax(x: np.ndarray, dim: int) -> np.ndarray:
    if x.size == 0:
        return x.copy()
    e = _exp(x - np.max(x, axis=dim, keepdims=True))
    return e / np.sum(e, axis=dim, keepdims=True)


def _log_softmax(x: np.ndarray, dim: int) -> np.ndarray:
    if x.size == 0:
        return x.copy()
    m = np.max(x, axis=dim, keepdims=True)
    return x - m - _log(np.sum(_exp(x - m), axis=dim, keepdims=True))


def _cast(x: np.ndarray, dtype: Any) -> np.ndarray:
    """softmax's dtype: the input rounded to it before the op, as the reference does (exact values are float64s)."""
    return x if dtype is None else cast(np.asarray(x, dtype=np.float64), dtype)


FORWARD["softmax"] = lambda x, dim, dtype=None: _softmax(_cast(x, dtype), dim)
FORWARD["log_softmax"] = lambda x, dim, dtype=None: _log_softmax(_cast(x, dtype), dim)
BACKWARD["softmax"] = lambda g, x, dim, dtype=None: (lambda p: p * (g - np.sum(g * p, axis=dim, keepdims=True)))(_softmax(_cast(x, dtype), dim))
BACKWARD["log_softmax"] = lambda g, x, dim, dtype=None: g - _softmax(_cast(x, dtype), dim) * np.sum(g, axis=dim, keepdims=True)


# --- Linear ------------------------------------------------------------------------------------------

def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b with every sum taken exactly (fsum) at 50 digits."""
    out = np.empty(a.shape[:-1] + b.shape[1:], dtype=object)
    for idx in np.ndindex(out.shape):
        row, col = idx[: a.ndim - 1], idx[a.ndim - 1 :]
        out[idx] = mpmath.fsum(a[row + (k,)] * b[(k,) + col] for k in range(a.shape[-1]))
    return out


def _linear(x, weight, bias=None):
    y = _dot(x, weight.T)
    return y if bias is None else y + bias


def _linear_backward(g, x, weight, bias=None):
    g2, x2 = g.reshape(-1, weight.shape[0]), x.reshape(-1, weight.shape[1])
    grad_bias = None if bias is None else np.array([mpmath.fsum(g2[:, k]) for k in range(g2.shape[1])], dtype=object)
    return _dot(g, weight), _dot(g2.T, x2), grad_bias


FORWARD["linear"], BACKWARD["linear"] = _linear, _linear_backward


# --- cross-entropy and NLL -------------------------------------------------------------------------

def _class_last(x: np.ndarray) -> np.ndarray:
    return x if x.ndim == 1 else np.moveaxis(x, 1, -1)


def _coefficients(x, target, weight, ignore_index, eps):
    """(a_c per sample, non-ignored mask, 'mean' divisor) as in the module docstring of
    reference/classification.py, in 50-digit arithmetic."""
    xl = _class_last(x)
    n_classes = xl.shape[-1]
    w = np.array([mpmath.mpf(1)] * n_classes, dtype=object) if weight is None else weight
    eps = mpmath.mpf(eps)
    if target.dtype.kind == "f" or target.dtype == object and np.shape(target) == np.shape(x):
        q = _class_last(target)
        return w * ((1 - eps) * q + eps / n_classes), np.ones(xl.shape[:-1], bool), mpmath.mpf(int(np.prod(xl.shape[:-1])))
    t = np.asarray(target, dtype=np.int64)
    valid = t != ignore_index
    onehot = (np.where(valid, t, 0)[..., None] == np.arange(n_classes)) & valid[..., None]
    a = onehot * w * (1 - eps) + valid[..., None] * w * (eps / n_classes)
    divisor = mpmath.fsum(w[k] for k in np.where(valid, t, 0)[valid].ravel())
    return a.astype(object), valid, divisor


def _cross_entropy(x, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    a, valid, divisor = _coefficients(x, target, weight, ignore_index, label_smoothing)
    logp = _log_softmax(_class_last(x), -1)
    terms = _where(a == 0, mpmath.mpf(0), -a * logp)  # gather: an absent class contributes nothing
    return _reduce(np.sum(terms, axis=-1), reduction, divisor)


def _cross_entropy_backward(g, x, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    a, valid, divisor = _coefficients(x, target, weight, ignore_index, label_smoothing)
    gs = _spread(g, valid.shape, reduction, divisor)
    local = _softmax(_class_last(x), -1) * np.sum(a, axis=-1, keepdims=True) - a
    grad = local * _where(valid, gs, mpmath.mpf(0))[..., None]
    return grad if x.ndim == 1 else np.moveaxis(grad, -1, 1)


def _nll_loss(x, target, weight=None, ignore_index=-100, reduction="mean"):
    a, valid, divisor = _coefficients(x, target, weight, ignore_index, 0.0)
    return _reduce(np.sum(-a * _class_last(x), axis=-1), reduction, divisor)


def _nll_loss_backward(g, x, target, weight=None, ignore_index=-100, reduction="mean"):
    a, valid, divisor = _coefficients(x, target, weight, ignore_index, 0.0)
    grad = -a * _spread(g, valid.shape, reduction, divisor)[..., None]
    return grad if x.ndim == 1 else np.moveaxis(grad, -1, 1)


FORWARD.update(cross_entropy=_cross_entropy, nll_loss=_nll_loss)
BACKWARD.update(cross_entropy=_cross_entropy_backward, nll_loss=_nll_loss_backward)


# --- binary ------------------------------------------------------------------------------------------

def _ones(w):
    return mpmath.mpf(1) if w is None else w


def _bce(p, y, weight=None, reduction="mean"):
    log_p = np.maximum(_log(p), mpmath.mpf(-100))
    log_q = np.maximum(_log(1 - p), mpmath.mpf(-100))
    return _reduce(-_ones(weight) * (y * log_p + (1 - y) * log_q), reduction)


def _bce_backward(g, p, y, weight=None, reduction="mean"):
    return _spread(g, p.shape, reduction) * _ones(weight) * (p - y) / np.maximum(p * (1 - p), GRAD_EPS)


FORWARD["binary_cross_entropy"], BACKWARD["binary_cross_entropy"] = _bce, _bce_backward


# --- normalization ---------------------------------------------------------------------------------

_sqrt = np.frompyfunc(mpmath.sqrt, 1, 1)


def _norm_axes(x, normalized_shape):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    return tuple(range(x.ndim - len(shape), x.ndim))


def _row_mean(v, axes):
    count = int(np.prod([v.shape[a] for a in axes]))
    return np.sum(v, axis=axes, keepdims=True) / count


def _normalize(x, normalized_shape, eps, centre):
    axes = _norm_axes(x, normalized_shape)
    c = x - _row_mean(x, axes) if centre else x
    r = 1 / _sqrt(_row_mean(c * c, axes) + mpmath.mpf(eps))
    return c * r, r, axes


def _layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    xhat, _, _ = _normalize(x, normalized_shape, eps, True)
    return (xhat if weight is None else xhat * weight) + (0 if bias is None else bias)


def _norm_backward(g, x, normalized_shape, weight, eps, centre):
    xhat, r, axes = _normalize(x, normalized_shape, eps, centre)
    gw = g if weight is None else g * weight
    grad = r * (gw - xhat * _row_mean(gw * xhat, axes) - (_row_mean(gw, axes) if centre else 0))
    batch = tuple(range(x.ndim - len(axes)))
    return grad, (None if weight is None else np.sum(g * xhat, axis=batch)), np.sum(g, axis=batch)


def _layer_norm_backward(g, x, normalized_shape, weight=None, bias=None, eps=1e-5):
    grad, grad_weight, grad_bias = _norm_backward(g, x, normalized_shape, weight, eps, True)
    return grad, grad_weight, (None if bias is None else grad_bias)


def _rms_norm(x, normalized_shape, weight=None, eps=None):
    xhat, _, _ = _normalize(x, normalized_shape, eps, False)
    return xhat if weight is None else xhat * weight


def _rms_norm_backward(g, x, normalized_shape, weight=None, eps=None):
    return _norm_backward(g, x, normalized_shape, weight, eps, False)[:2]


def _channel(v, x):
    return None if v is None else v.reshape((1, -1) + (1,) * (x.ndim - 2))


def _group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    rows = x.reshape(x.shape[0], num_groups, -1)
    xhat = _normalize(rows, (rows.shape[2],), eps, True)[0].reshape(x.shape)
    w, b = _channel(weight, x), _channel(bias, x)
    return (xhat if w is None else xhat * w) + (0 if b is None else b)


def _group_norm_backward(g, x, num_groups, weight=None, bias=None, eps=1e-5):
    rows = x.reshape(x.shape[0], num_groups, -1)
    w = _channel(weight, x)
    gw = (g if w is None else g * w).reshape(rows.shape)
    grad, _, _ = _norm_backward(gw, rows, (rows.shape[2],), None, eps, True)
    xhat = _normalize(rows, (rows.shape[2],), eps, True)[0].reshape(x.shape)
    others = (0,) + tuple(range(2, x.ndim))
    return (grad.reshape(x.shape), None if weight is None else np.sum(g * xhat, axis=others), None if bias is None else np.sum(g, axis=others))


def _bn_rows(x):
    return np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)


def _bn_back(rows, shape):
    return np.moveaxis(rows.reshape((shape[1], shape[0]) + shape[2:]), 0, 1)


def _bn_xhat(x, running_mean, running_var, training, eps):
    if training:
        xhat, r, _ = _normalize(_bn_rows(x), (x.size // x.shape[1],), eps, True)
        return _bn_back(xhat, x.shape), r
    r = 1 / _sqrt(_channel(running_var, x) + mpmath.mpf(eps))
    return (x - _channel(running_mean, x)) * r, r


def _batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    xhat, _ = _bn_xhat(x, running_mean, running_var, training, eps)
    w, b = _channel(weight, x), _channel(bias, x)
    return (xhat if w is None else xhat * w) + (0 if b is None else b)


def _batch_norm_backward(g, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    w = _channel(weight, x)
    gw = g if w is None else g * w
    xhat, r = _bn_xhat(x, running_mean, running_var, training, eps)
    if training:
        rows = _bn_rows(x)
        grad = _bn_back(_norm_backward(_bn_rows(gw), rows, (rows.shape[1],), None, eps, True)[0], x.shape)
    else:
        grad = gw * r
    others = (0,) + tuple(range(2, x.ndim))
    return grad, (None if weight is None else np.sum(g * xhat, axis=others)), (None if bias is None else np.sum(g, axis=others))


def batch_norm_running(x: np.ndarray, running_mean: np.ndarray, running_var: np.ndarray, momentum: float) -> tuple[np.ndarray, np.ndarray]:
    """The running statistics after one training step, at 50 digits (unbiased variance)."""
    with mpmath.workdps(DIGITS):
        rows = _bn_rows(_exact(np.asarray(x, dtype=np.float64)))
        n = rows.shape[1]
        mean = np.sum(rows, axis=1) / n
        unbiased = np.sum((rows - mean[:, None]) ** 2, axis=1) / (n - 1)
        m = mpmath.mpf(momentum)
        return (to_float((1 - m) * _exact(running_mean) + m * mean), to_float((1 - m) * _exact(running_var) + m * unbiased))


def _embedding(t, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False, sparse=False):
    w = weight.copy()
    if max_norm is not None:
        for i in np.unique(t):
            norm = mpmath.norm(list(w[i]), p=mpmath.mpf(norm_type))
            if norm > max_norm:
                w[i] = w[i] * (mpmath.mpf(max_norm) / (norm + mpmath.mpf(1e-7)))
    return w[np.asarray(t, dtype=np.int64)]


def _embedding_backward(g, t, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False, sparse=False):
    flat = np.asarray(t, dtype=np.int64).reshape(-1)
    rows = g.reshape(flat.size, weight.shape[1])
    counts = np.bincount(flat, minlength=weight.shape[0])
    grad = np.array([[mpmath.fsum(rows[j, d] / (counts[i] if scale_grad_by_freq else 1) for j in np.flatnonzero(flat == i))
                      for d in range(weight.shape[1])] for i in range(weight.shape[0])], dtype=object).reshape(weight.shape)
    if padding_idx is not None:
        grad[int(padding_idx) % weight.shape[0]] = mpmath.mpf(0)
    return grad


def _conv(nd: int):
    return lambda x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1: convolution.convolve(nd, x, weight, bias, stride, padding, dilation, groups)


def _conv_backward(nd: int):
    return lambda g, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1: convolution.convolve_backward(
        nd, g, x, weight, bias, stride, padding, dilation, groups)


# Convolution: the reference's own index arithmetic on exact numbers (sums of products; einsum on
# object arrays adds them as mpmath numbers at 50 digits).
FORWARD.update(conv1d=_conv(1), conv2d=_conv(2))
BACKWARD.update(conv1d=_conv_backward(1), conv2d=_conv_backward(2))
def _pool_input(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """The exact input batched, and its float64 twin (the same values) for the pooling geometry."""
    exact = np.asarray(x, dtype=object)
    exact = exact[None] if exact.ndim == 3 else exact
    floats, unbatched = pooling._batched(np.asarray(x, dtype=np.float64))
    return exact, floats, unbatched


def _unbatch(value: np.ndarray, unbatched: bool) -> np.ndarray:
    return value[0] if unbatched else value


def _max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """A selection: the exact elements at the reference's argmax (exact numbers stay exact, so a
    directional derivative sees the selected element move)."""
    _, where = reference.max_pool2d(np.asarray(x, dtype=np.float64), kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)
    exact = np.asarray(x, dtype=object)
    flat = exact.reshape(exact.shape[:-2] + (-1,))
    return np.take_along_axis(flat, where.reshape(where.shape[:-2] + (-1,)), axis=-1).reshape(where.shape)


def _max_pool2d_backward(g, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    _, floats, unbatched = _pool_input(x)
    g = np.asarray(g, dtype=object)
    return _unbatch(pooling.max_pool_routed(g[None] if unbatched else g, floats, pooling._Windows(floats, kernel_size, stride, padding, dilation, ceil_mode)), unbatched)


def _avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
    exact, floats, unbatched = _pool_input(x)
    w, divisor = pooling._avg_plan(floats, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    return _unbatch(pooling.avg_pool_mean(exact, w, divisor.astype(int).astype(object)), unbatched)


def _avg_pool2d_backward(g, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
    _, floats, unbatched = _pool_input(x)
    w, divisor = pooling._avg_plan(floats, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    g = np.asarray(g, dtype=object)
    return _unbatch(pooling.avg_pool_spread(g[None] if unbatched else g, floats.shape, w, divisor.astype(int).astype(object)), unbatched)


def _adaptive_avg_pool2d(x, output_size):
    exact, floats, unbatched = _pool_input(x)
    _, _, rows, cols = pooling._adaptive_plan(floats, output_size)
    return _unbatch(pooling.adaptive_mean(exact, rows, cols), unbatched)


def _adaptive_avg_pool2d_backward(g, x, output_size):
    _, floats, unbatched = _pool_input(x)
    _, _, rows, cols = pooling._adaptive_plan(floats, output_size)
    g = np.asarray(g, dtype=object)
    return _unbatch(pooling.adaptive_spread(g[None] if unbatched else g, floats.shape, rows, cols), unbatched)


# Pooling: the reference's own window geometry, with the sums and divisions on exact numbers.
FORWARD.update(max_pool2d=_max_pool2d, avg_pool2d=_avg_pool2d, adaptive_avg_pool2d=_adaptive_avg_pool2d)
BACKWARD.update(max_pool2d=_max_pool2d_backward, avg_pool2d=_avg_pool2d_backward, adaptive_avg_pool2d=_adaptive_avg_pool2d_backward)
_EXP = np.frompyfunc(mpmath.exp, 1, 1)


def _attention_parts(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """P exactly (50 digits), and the exact key, value and scale: the reference checks the arguments
    and counts the GQA heads on the float64 twins (the same values), without computing P there."""
    floats = [np.asarray(a, dtype=np.float64) for a in (q, k, v)]
    float_mask = None if attn_mask is None or np.asarray(attn_mask).dtype == bool else np.asarray(attn_mask, dtype=np.float64)
    groups = attention.attention_groups(*floats, attn_mask if float_mask is None else float_mask, dropout_p, is_causal, scale, enable_gqa)
    k_x, v_x = (np.repeat(np.asarray(a, dtype=object), groups, axis=-3) if groups > 1 else np.asarray(a, dtype=object) for a in (k, v))
    s = 1 / mpmath.sqrt(floats[0].shape[-1]) if scale is None else mpmath.mpf(float(scale))
    z = np.einsum("...le,...se->...ls", np.asarray(q, dtype=object), k_x) * s
    keep = None
    if is_causal:
        keep = np.tril(np.ones(z.shape[-2:], dtype=bool))
    elif attn_mask is not None and np.asarray(attn_mask).dtype == bool:
        keep = np.asarray(attn_mask)
    elif attn_mask is not None:
        z = z + np.asarray(attn_mask, dtype=object)
    if keep is not None:
        z = np.where(keep, z, mpmath.mpf("-inf"))
    top = np.max(z, axis=-1, keepdims=True)
    masked = np.vectorize(lambda t: t == mpmath.mpf("-inf"), otypes=[bool])(top)
    e = _EXP(z - np.where(masked, 0, top))
    p = np.where(masked, 0, e / np.where(masked, 1, np.sum(e, axis=-1, keepdims=True)))
    return p, k_x, v_x, s, groups


def _fold_heads(grad, groups):
    if groups == 1:
        return grad
    return grad.reshape(grad.shape[:-3] + (grad.shape[-3] // groups, groups) + grad.shape[-2:]).sum(axis=-3)


def _sdpa(q, k, v, *args, **kwargs):
    p, _, v_x, _, _ = _attention_parts(q, k, v, *args, **kwargs)
    return np.einsum("...ls,...sv->...lv", p, v_x)


def _sdpa_backward(g, q, k, v, *args, **kwargs):
    p, k_x, v_x, s, groups = _attention_parts(q, k, v, *args, **kwargs)
    g = np.asarray(g, dtype=object)
    pbar = np.einsum("...lv,...sv->...ls", g, v_x)
    zbar = p * (pbar - np.sum(p * pbar, axis=-1, keepdims=True))
    grad_q = np.einsum("...ls,...se->...le", zbar, k_x) * s
    grad_k = np.einsum("...ls,...le->...se", zbar, np.asarray(q, dtype=object)) * s
    return grad_q, _fold_heads(grad_k, groups), _fold_heads(np.einsum("...ls,...lv->...sv", p, g), groups)


FORWARD["scaled_dot_product_attention"] = _sdpa
BACKWARD["scaled_dot_product_attention"] = _sdpa_backward
FORWARD.update(embedding=_embedding)
BACKWARD.update(embedding=_embedding_backward)
FORWARD.update(layer_norm=_layer_norm, rms_norm=_rms_norm, group_norm=_group_norm, batch_norm=_batch_norm)
BACKWARD.update(layer_norm=_layer_norm_backward, rms_norm=_rms_norm_backward, group_norm=_group_norm_backward, batch_norm=_batch_norm_backward)


def _resolve_eps(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """eps=None (rms_norm) is the machine epsilon of the input's dtype: read before the values
    become exact, dtype-less numbers."""
    if "eps" in kwargs and kwargs["eps"] is None:
        dtype = np.asarray(args[0]).dtype
        return {**kwargs, "eps": float(np.finfo(dtype if dtype.kind == "f" else np.float64).eps)}
    return kwargs


# --- entry points ------------------------------------------------------------------------------------

def _exact(value: Any) -> Any:
    """Float arrays become object arrays of the same shape holding their exact values."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return np.array(_mp(value), dtype=object).reshape(value.shape)
    return value


def _pointwise(op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Callable, tuple[Callable, ...], list[Any], str | None]:
    """f and its derivatives lambdified from the op's derivation, the values of its inputs and parameters in
    the derivation's order (a parameter torch takes as None at its ``absent`` value, one not given
    at the reference's default), and the reduction (None for an activation)."""
    kwargs = dict(kwargs)
    chosen = {name: kwargs.pop(name) for name in symbolic.choices(op) if name in kwargs}
    derivation = symbolic.derive(op, **chosen)
    f, *df = derivation.local("mpmath")
    defaults = {n: p.default for n, p in inspect.signature(getattr(reference, op)).parameters.items()}
    reduction = kwargs.pop("reduction", defaults.get("reduction"))
    if kwargs.get("weight") is not None and "weight" not in derivation.params:  # applied by the reduction (regression's _weighted)
        reduction = (reduction, kwargs["weight"], reference_facts.of(op).weighted_mean)
    values = list(args)
    for name in derivation.params:
        value = kwargs.get(name, defaults.get(name))
        values.append(mpmath.mpf(derivation.absent[name]) if value is None else value)
    return f, tuple(df), values, reduction


def _elementwise(function: Callable, values: list[Any]) -> np.ndarray:
    out = np.frompyfunc(function, len(values), 1)(*values)
    return np.asarray(out, dtype=object)


def _forward_exact(op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> np.ndarray:
    """The op's value on exact arguments, as an object array of mpf (in the caller's precision)."""
    if op in FORWARD:
        return np.asarray(FORWARD[op](*args, **kwargs), dtype=object)
    f, _, values, reduction = _pointwise(op, args, kwargs)
    out = _elementwise(f, values)
    if isinstance(reduction, tuple):
        how, weight, mean = reduction
        return np.asarray(_reduce(out * weight, how, mpmath.fsum(weight.ravel()) if mean == "weights" else None), dtype=object)
    return np.asarray(out if reduction is None else _reduce(out, reduction), dtype=object)


def _backward_exact(op: str, g: np.ndarray, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The op's gradients on exact arguments: an object array, or a tuple of them (None for an absent input)."""
    if op in BACKWARD:
        return BACKWARD[op](g, *args, **kwargs)
    _, derivatives, values, reduction = _pointwise(op, args, kwargs)
    grads = []
    for df in derivatives:
        local = _elementwise(df, values)
        if isinstance(reduction, tuple):
            how, weight, mean = reduction
            grads.append(local * weight * _spread(g, local.shape, how, mpmath.fsum(weight.ravel()) if mean == "weights" else None))
        else:
            grads.append(local * (g if reduction is None else _spread(g, local.shape, reduction)))
    return grads[0] if len(grads) == 1 else tuple(grads)


def _rounded(result: Any) -> Any:
    if isinstance(result, tuple):
        return tuple(None if r is None else to_float(r) for r in result)
    return to_float(result)


def forward(op: str, *args: Any, **kwargs: Any) -> np.ndarray:
    """The true value of ``reference.<op>(*args, **kwargs)``, rounded to float64."""
    kwargs = _resolve_eps(args, kwargs)
    with mpmath.workdps(DIGITS):
        return to_float(_forward_exact(op, tuple(map(_exact, args)), {k: _exact(v) for k, v in kwargs.items()}))


def backward(op: str, grad_output: Any, *args: Any, **kwargs: Any) -> Any:
    """The true value of ``reference.<op>_backward(...)``, rounded to float64 (a tuple for linear)."""
    kwargs = _resolve_eps(args, kwargs)
    with mpmath.workdps(DIGITS):
        g, args, kwargs = _exact(np.asarray(grad_output, dtype=np.float64)), tuple(map(_exact, args)), {k: _exact(v) for k, v in kwargs.items()}
        return _rounded(_backward_exact(op, g, args, kwargs))


# --- derivatives of every order, along directions ---------------------------------------------------
#
# A directional derivative of the 50-digit forward or backward, by central differences carried out
# in 90-digit arithmetic: with a step h = 1e-25 (first order) or 1e-15 (second and third) against
# values of size ~1, the rounding error of the difference quotient is ~1e-90 / h^order and its
# truncation error ~h^2, both far below float64's 1e-16. Exact arguments stay exact; the
# directions are exact float values too. Meant for smooth points: at a kink (relu at 0, a max-pool
# tie) a central difference averages the two sides, where torch picks one by convention.

_WIDE = 90
_STEP = {1: mpmath.mpf("1e-25"), 2: mpmath.mpf("1e-15"), 3: mpmath.mpf("1e-15")}


def _bound(op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
    bound = inspect.signature(getattr(reference, op)).bind(*args, **kwargs)
    bound.arguments = {k: _exact(v) for k, v in bound.arguments.items()}
    return bound


def _moved(bound: inspect.BoundArguments, positional: int, steps: list[tuple[Any, dict[str, Any]]]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments moved by sum(coefficient * direction) for each (coefficient, directions by
    name), split as the caller gave them: the first ``positional`` by position, the rest by name."""
    arguments = dict(bound.arguments)
    for coefficient, directions in steps:
        for name, d in directions.items():
            if d is not None:
                # as an object array: arithmetic on a 0-d one returns a bare mpf, without a shape
                arguments[name] = np.asarray(arguments[name] + coefficient * _exact(np.asarray(d, dtype=np.float64)), dtype=object)
    names = list(arguments)
    return tuple(arguments[n] for n in names[:positional]), {n: arguments[n] for n in names[positional:]}


def _combine(terms: list[tuple[Any, Any]], divisor: Any) -> Any:
    """sum(weight * value) / divisor over values that are arrays or tuples of arrays (or None)."""
    first = terms[0][1]
    if isinstance(first, tuple):
        return tuple(None if first[i] is None else sum((w * v[i] for w, v in terms[1:]), terms[0][0] * first[i]) / divisor
                     for i in range(len(first)))
    return sum((w * v for w, v in terms[1:]), terms[0][0] * first) / divisor


def _stencil(evaluate: Callable[..., Any], bound: inspect.BoundArguments, positional: int, directions: list[dict[str, Any]]) -> Any:
    """The derivative of ``evaluate`` along each of ``directions`` in turn (one to three), by
    central differences: each direction doubles the stencil, (f(x + h d) - f(x - h d)) / 2h."""
    h = _STEP[len(directions)]
    points: list[tuple[int, list]] = [(1, [])]
    for d in directions:
        points = [(w * s, steps + [(s * h, d)]) for w, steps in points for s in (1, -1)]
    terms = [(w, evaluate(*_moved(bound, positional, steps))) for w, steps in points]
    for _, value in terms:  # a value rounded to float64 inside would make the quotient rounding noise
        for part in value if isinstance(value, tuple) else (value,):
            if part is not None and np.asarray(part).dtype != object:
                raise TypeError("the oracle's value is not exact (rounded to float64 inside): its directional derivative would be noise")
    return _combine(terms, (2 * h) ** len(directions))


def directional(op: str, directions: list[dict[str, Any]], *args: Any, grad_output: Any = None, **kwargs: Any) -> Any:
    """The true derivative of ``reference.<op>`` (``grad_output`` None) or of its backward
    ``reference.<op>_backward(grad_output, ...)`` along ``directions`` (each: directions for some
    differentiable arguments, by name; None or missing holds one fixed), rounded to float64.

    Along one direction the forward's is the JVP J t and the backward's the Hessian-vector product
    H_u v of phi = <u, f>; along two, the forward's second derivative f''[t, s] and the backward's
    third, phi'''[v, w, .]; along three, the forward's third derivative."""
    if not 1 <= len(directions) <= 3:
        raise ValueError(f"directions must hold 1 to 3 directions, got {len(directions)}")
    kwargs = _resolve_eps(args, kwargs)
    if kwargs.get("dtype") is not None:  # softmax's dtype=: a cast, whose derivative is 1 (autograd's), taken at the cast point
        args, kwargs = (cast(np.asarray(args[0], dtype=np.float64), kwargs["dtype"]),) + tuple(args[1:]), {**kwargs, "dtype": None}
    with mpmath.workdps(_WIDE):
        bound = _bound(op, args, kwargs)
        if grad_output is None:
            result = _stencil(lambda a, k: _forward_exact(op, a, k), bound, len(args), directions)
        else:
            g = _exact(np.asarray(grad_output, dtype=np.float64))
            result = _stencil(lambda a, k: _backward_exact(op, g, a, k), bound, len(args), directions)
        return _rounded(result)
