r"""Normalization layers: layer_norm and rms_norm over the last dimensions, group_norm over groups
of channels, batch_norm per channel over the batch, and their hand-derived gradients with respect to
the input, the weight and the bias.

batch_norm in training mode normalises with the batch's statistics and updates the running ones in
place, as torch does: $\hat\mu \leftarrow (1 - m)\hat\mu + m\mu$ and
$\hat\sigma^2 \leftarrow (1 - m)\hat\sigma^2 + m\,\frac{n}{n - 1}\sigma^2$ (the *unbiased* variance for
the running estimate, the biased one to normalise). In evaluation mode it uses the running statistics,
and the input's gradient is just $g w / \sqrt{\hat\sigma^2 + \epsilon}$.

Over the $M$ elements of ``normalized_shape`` (the input's last dimensions): layer_norm subtracts the
mean $\mu$ and divides by $\sqrt{\sigma^2 + \epsilon}$ with the *biased* variance
$\sigma^2 = \frac1M\sum (x - \mu)^2$; rms_norm divides by $\sqrt{\overline{x^2} + \epsilon}$ and does
not centre ($\epsilon$ = None: the input dtype's machine epsilon, as torch). Then $y = \hat x w + b$.

With $r = 1/\sqrt{\cdot}$, $\hat x$ the normalised input and $\hat g = g w$, both gradients are the
upstream gradient projected off what the normalisation removed: layer_norm
$\partial L/\partial x = r(\hat g - \overline{\hat g} - \hat x\,\overline{\hat g \hat x})$, rms_norm
$r(\hat g - \hat x\,\overline{\hat g \hat x})$; $\partial L/\partial w = \sum g \hat x$ and
$\partial L/\partial b = \sum g$ over every other dimension. Where a row has one degree of freedom
(M = 1 for rms_norm, M = 2 centred) the projection is exactly $\epsilon r^3$ times the centring, and it is
computed so: the general formula reaches that value through a cancellation of terms $1/\epsilon$ times larger.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
import sympy as sp

from reference import facts
from reference import symbolic as S
from reference._validation import as_float, as_optional_float, check_grad_shape, quiet, tangents

__all__ = ["batch_norm", "batch_norm_backward", "batch_norm_jvp", "group_norm", "group_norm_backward", "group_norm_jvp",
           "layer_norm", "layer_norm_backward", "layer_norm_jvp", "rms_norm", "rms_norm_backward", "rms_norm_jvp"]


def _axes(x: np.ndarray, normalized_shape: Any) -> tuple[int, ...]:
    shape = (int(normalized_shape),) if isinstance(normalized_shape, (int, np.integer)) else tuple(int(n) for n in normalized_shape)
    if not shape or x.shape[x.ndim - len(shape):] != shape or len(shape) > x.ndim:
        raise ValueError(f"normalized_shape {shape} must be the input's last dimensions, got an input of shape {x.shape}")
    return tuple(range(x.ndim - len(shape), x.ndim))


def _affine(name: str, value: Any, x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray | None:
    array = as_optional_float(value, name)
    if array is not None and array.shape != tuple(x.shape[a] for a in axes):
        raise ValueError(f"{name} shape {array.shape} must equal normalized_shape {tuple(x.shape[a] for a in axes)}")
    return array


def _affine_apply(xhat: np.ndarray, w: np.ndarray | None, b: np.ndarray | None) -> np.ndarray:
    r"""$\hat x w + b$, each part only where it is given."""
    return (xhat if w is None else xhat * w) + (0.0 if b is None else b)


def _normalized(x: np.ndarray, axes: tuple[int, ...], eps: float, centre: bool, wide: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(x̂, r): the normalised input and the reciprocal of its denominator, per row (``wide``: left in np.longdouble)."""
    x = x.astype(np.longdouble)
    centred = x - np.mean(x, axis=axes, keepdims=True) if centre else x
    r = 1 / np.sqrt(np.mean(centred * centred, axis=axes, keepdims=True) + eps)
    return (centred * r, r) if wide else ((centred * r).astype(np.float64), r.astype(np.float64))


def _eps(eps: Any, input: Any) -> float:
    """rms_norm's eps=None: the machine epsilon of the input's dtype (float64 for anything else)."""
    if eps is not None:
        return float(eps)
    dtype = np.asarray(input).dtype
    return float(np.finfo(dtype if dtype.kind == "f" else np.float64).eps)


def _one_dof(xhat: np.ndarray, axes: tuple[int, ...], centre: bool) -> np.ndarray | None:
    """Where a row has one degree of freedom (M = 1 for rms_norm, M = 2 centred) and finite x̂: there
    $\dot c \parallel c$, the normalisation's Jacobian is $\epsilon r^3$ times the centring, and the general
    formula would reach that through a cancellation of terms $1/\epsilon$ times larger. None for other sizes."""
    if int(np.prod([xhat.shape[a] for a in axes])) != (2 if centre else 1):
        return None
    return np.isfinite(xhat).all(axis=axes, keepdims=True)


def _backward(g: np.ndarray, xhat: np.ndarray, r: np.ndarray, w: np.ndarray | None, axes: tuple[int, ...], centre: bool,
              eps: float) -> np.ndarray:
    """The input's gradient, in np.longdouble with x̂ and r unrounded (``_normalized(..., wide=True)``), rounded once:
    the projection cancels where the upstream gradient is nearly along x̂."""
    gw = (g if w is None else g * w).astype(np.longdouble)
    mean = lambda v: np.mean(v, axis=axes, keepdims=True)  # noqa: E731
    projected = gw - xhat * mean(gw * xhat)
    grad = r * (projected - mean(gw) if centre else projected)
    exact = _one_dof(xhat, axes, centre)  # the Jacobian is symmetric: the same closed form as the JVP's
    grad = grad if exact is None else np.where(exact, eps * r ** 3 * (gw - mean(gw) if centre else gw), grad)
    return grad.astype(np.float64)


def _batch_sum(v: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.sum(v.astype(np.longdouble), axis=tuple(range(v.ndim - len(axes)))).astype(np.float64)


def _xhat_jvp(t: np.ndarray, xhat: np.ndarray, r: np.ndarray, axes: tuple[int, ...], centre: bool, eps: float) -> np.ndarray:
    r"""$\dot{\hat x}$ along $\dot x$: with $c = x - \mu$, $\dot r = -r^3\,\overline{c\dot c}$, so
    $\dot{\hat x} = r(\dot c - \hat x\,\overline{\hat x\dot c})$, $\dot c = \dot x - \overline{\dot x}$ (rms_norm: $\dot c = \dot x$);
    as $\overline{\hat x} = 0$, $\overline{\hat x\dot c} = \overline{\hat x\dot x}$.

    Equally $\dot{\hat x} = r^3(\epsilon\,\dot c + \sigma^2\dot c - c\,\overline{c\dot c})$, and where the row has one degree
    of freedom (M = 1 for rms_norm, M = 2 centred) $\dot c \parallel c$ and the last two terms cancel exactly: there
    $\dot{\hat x} = \epsilon r^3 \dot c$, which the first form would leave to a cancellation of terms $1/\epsilon$ times larger.

    In np.longdouble throughout (x̂ and r unrounded, from ``_normalized(..., wide=True)``): a tangent along x
    (the direction the normalisation removes) has $\dot{\hat x} = O(\epsilon)$, reached by cancellation."""
    t = t.astype(np.longdouble)
    mean = lambda v: np.mean(v, axis=axes, keepdims=True)  # noqa: E731
    projected = t - xhat * mean(t * xhat)
    general = r * (projected - mean(t) if centre else projected)
    exact = _one_dof(xhat, axes, centre)
    return general if exact is None else np.where(exact, eps * r ** 3 * (t - mean(t) if centre else t), general)


def _affine_jvp(xhat: np.ndarray, txhat: np.ndarray | None, w: np.ndarray | None, tw: np.ndarray | None, tb: np.ndarray | None) -> np.ndarray:
    r"""$\dot y = \dot{\hat x} w + \hat x \dot w + \dot b$, each term only where its tangent is given; summed in np.longdouble, rounded once."""
    y = np.zeros(xhat.shape, dtype=np.longdouble)
    if txhat is not None:
        y = y + (txhat if w is None else txhat * w)
    if tw is not None:
        y = y + xhat * tw
    return (y if tb is None else y + tb).astype(np.float64)


def _shape(value: np.ndarray | None) -> tuple[int, ...] | None:
    return None if value is None else value.shape


def _row_curve(name: str) -> facts.Curve:
    """A row (t, 0, 1): the first output as t moves, and its derivative in t (upstream e_0)."""
    def values(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from reference import normalization

        rows = np.stack([t, np.zeros_like(t), np.ones_like(t)], axis=1)
        upstream = np.zeros_like(rows)
        upstream[:, 0] = 1.0
        forward, backward = getattr(normalization, name), getattr(normalization, f"{name}_backward")
        if name == "batch_norm":  # a batch of three samples per channel: one channel per point of the curve
            return (forward(rows.T, None, None, training=True)[0],
                    backward(upstream.T, rows.T, None, None, training=True)[0][0])
        how = 1 if name == "group_norm" else (3,)  # group_norm: three channels in one group
        return forward(rows, how, eps=1e-5)[:, 0], backward(upstream, rows, how, eps=1e-5)[0][:, 0]

    return facts.Curve(-4, 4, "x₀ of the row (x₀, 0, 1)", f"{name}(row)₀", values)


@quiet
@facts.declare(curve=_row_curve("layer_norm"), accuracy=3)
def layer_norm(input: Any, normalized_shape: Any, weight: Any = None, bias: Any = None, eps: float = 1e-5) -> np.ndarray:
    r"""$y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}\,w + b$ over the last dimensions, $\sigma^2$ the biased variance."""
    x = as_float(input, "input")
    axes = _axes(x, normalized_shape)
    w, b = _affine("weight", weight, x, axes), _affine("bias", bias, x, axes)
    xhat, _ = _normalized(x, axes, float(eps), centre=True)
    return _affine_apply(xhat, w, b)


@quiet
def layer_norm_backward(grad_output: Any, input: Any, normalized_shape: Any, weight: Any = None, bias: Any = None,
                        eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""$\partial L/\partial x = r(\hat g - \overline{\hat g} - \hat x\,\overline{\hat g\hat x})$, $\hat g = g w$; $\partial L/\partial w = \sum g\hat x$, $\partial L/\partial b = \sum g$."""
    x = as_float(input, "input")
    axes = _axes(x, normalized_shape)
    w, b = _affine("weight", weight, x, axes), _affine("bias", bias, x, axes)
    g = check_grad_shape(grad_output, x.shape)
    xhat, r = _normalized(x, axes, float(eps), centre=True, wide=True)
    grad_input = _backward(g, xhat, r, w, axes, True, float(eps))
    return grad_input, (None if w is None else _batch_sum(g * xhat, axes)), (None if b is None else _batch_sum(g, axes))


@quiet
def layer_norm_jvp(tangent: Any, input: Any, normalized_shape: Any, weight: Any = None, bias: Any = None, eps: float = 1e-5) -> np.ndarray:
    r"""$\dot y = r(\dot x - \overline{\dot x} - \hat x\,\overline{\hat x\dot x})\,w + \hat x\dot w + \dot b$ (means over the normalized dimensions), ``tangent`` = (ẋ, ẇ, ḃ)."""
    x = as_float(input, "input")
    axes = _axes(x, normalized_shape)
    w, b = _affine("weight", weight, x, axes), _affine("bias", bias, x, axes)
    tx, tw, tb = tangents(tangent, {"input": x.shape, "weight": _shape(w), "bias": _shape(b)})
    xhat, r = _normalized(x, axes, float(eps), centre=True, wide=True)
    return _affine_jvp(xhat, None if tx is None else _xhat_jvp(tx, xhat, r, axes, True, float(eps)), w, tw, tb)


@quiet
@facts.declare(curve=_row_curve("rms_norm"), accuracy=3)
def rms_norm(input: Any, normalized_shape: Any, weight: Any = None, eps: float | None = None) -> np.ndarray:
    r"""$y = \frac{x}{\sqrt{\overline{x^2} + \epsilon}}\,w$ over the last dimensions ($\epsilon$ = None: the dtype's eps)."""
    x = as_float(input, "input")
    axes = _axes(x, normalized_shape)
    w = _affine("weight", weight, x, axes)
    xhat, _ = _normalized(x, axes, _eps(eps, input), centre=False)
    return xhat if w is None else xhat * w


@quiet
def rms_norm_backward(grad_output: Any, input: Any, normalized_shape: Any, weight: Any = None,
                      eps: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    r"""$\partial L/\partial x = r(\hat g - \hat x\,\overline{\hat g\hat x})$, $\hat g = g w$; $\partial L/\partial w = \sum g\hat x$."""
    x = as_float(input, "input")
    axes = _axes(x, normalized_shape)
    w = _affine("weight", weight, x, axes)
    g = check_grad_shape(grad_output, x.shape)
    xhat, r = _normalized(x, axes, _eps(eps, input), centre=False, wide=True)
    return _backward(g, xhat, r, w, axes, False, _eps(eps, input)), (None if w is None else _batch_sum(g * xhat, axes))


@quiet
def rms_norm_jvp(tangent: Any, input: Any, normalized_shape: Any, weight: Any = None, eps: float | None = None) -> np.ndarray:
    r"""$\dot y = r(\dot x - \hat x\,\overline{\hat x\dot x})\,w + \hat x\dot w$ ($\dot r = -r^3\,\overline{x\dot x}$), ``tangent`` = (ẋ, ẇ)."""
    x = as_float(input, "input")
    axes = _axes(x, normalized_shape)
    w = _affine("weight", weight, x, axes)
    tx, tw = tangents(tangent, {"input": x.shape, "weight": _shape(w)})
    xhat, r = _normalized(x, axes, _eps(eps, input), centre=False, wide=True)
    return _affine_jvp(xhat, None if tx is None else _xhat_jvp(tx, xhat, r, axes, False, _eps(eps, input)), w, tw, None)


def _groups(x: np.ndarray, num_groups: Any) -> tuple[np.ndarray, int]:
    """(N, C, *) as (N, G, C/G · prod(*)): each group of channels is one row to normalise."""
    if x.ndim < 2:
        raise ValueError(f"group_norm expects an input of shape (N, C, *), got {x.shape}")
    groups = int(num_groups)
    if groups < 1 or x.shape[1] % groups:
        raise ValueError(f"num_groups={num_groups} must divide the {x.shape[1]} channels")
    per_group = x.shape[1] // groups * int(np.prod(x.shape[2:]))
    rows = x.reshape(x.shape[0], groups, per_group)
    if x.shape[0] * per_group == 1:  # torch's check: "Expected more than 1 value per channel when training" (none is empty, allowed)
        raise ValueError(f"group_norm needs more than one value per group across the batch, got an input of shape {x.shape} in {groups} groups")
    return rows, groups


def _channel_sum(v: np.ndarray) -> np.ndarray:
    """A sum over every dimension but the channels (1), in np.longdouble, rounded once."""
    return np.sum(v.astype(np.longdouble), axis=(0, *range(2, v.ndim))).astype(np.float64)


def _per_channel(name: str, value: Any, x: np.ndarray) -> np.ndarray | None:
    array = as_optional_float(value, name)
    if array is not None and array.shape != (x.shape[1],):
        raise ValueError(f"{name} must have one value per channel, shape ({x.shape[1]},), got {array.shape}")
    return None if array is None else array.reshape((1, -1) + (1,) * (x.ndim - 2))


@quiet
@facts.declare(curve=_row_curve("group_norm"), accuracy=3)
def group_norm(input: Any, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5) -> np.ndarray:
    r"""$y = \frac{x - \mu_g}{\sqrt{\sigma_g^2 + \epsilon}}\,w_c + b_c$, the statistics over each group of $C/G$ channels (and all positions)."""
    x = as_float(input, "input")
    rows, _ = _groups(x, num_groups)
    w, b = _per_channel("weight", weight, x), _per_channel("bias", bias, x)
    if x.size == 0:  # an empty batch or empty groups: torch returns the empty input's shape
        return np.zeros(x.shape)
    xhat = _normalized(rows, (2,), float(eps), centre=True)[0].reshape(x.shape)
    return _affine_apply(xhat, w, b)


@quiet
def group_norm_backward(grad_output: Any, input: Any, num_groups: int, weight: Any = None, bias: Any = None,
                        eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""Per group, layer_norm's $r(\hat g - \overline{\hat g} - \hat x\,\overline{\hat g\hat x})$ with $\hat g = g w_c$; $\partial L/\partial w_c = \sum g\hat x$, $\partial L/\partial b_c = \sum g$ over N and positions."""
    x = as_float(input, "input")
    rows, _ = _groups(x, num_groups)
    w, b = _per_channel("weight", weight, x), _per_channel("bias", bias, x)
    g = check_grad_shape(grad_output, x.shape)
    if x.size == 0:
        return np.zeros(x.shape), None if w is None else np.zeros(x.shape[1]), None if b is None else np.zeros(x.shape[1])
    xhat, r = _normalized(rows, (2,), float(eps), centre=True, wide=True)
    gw = (g if w is None else g * w).reshape(rows.shape)
    grad_input = _backward(gw, xhat, r, None, (2,), True, float(eps)).reshape(x.shape)
    return (grad_input, None if w is None else _channel_sum(g * xhat.reshape(x.shape)), None if b is None else _channel_sum(g))


def _channel_shape(value: Any, x: np.ndarray) -> tuple[int, ...] | None:
    return None if value is None else (x.shape[1],)


def _channel_tangent(t: np.ndarray | None, x: np.ndarray) -> np.ndarray | None:
    """A per-channel tangent (C,) shaped to broadcast against (N, C, *)."""
    return None if t is None else t.reshape((1, -1) + (1,) * (x.ndim - 2))


@quiet
def group_norm_jvp(tangent: Any, input: Any, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5) -> np.ndarray:
    r"""Per group, layer_norm's $\dot{\hat x} = r(\dot x - \overline{\dot x} - \hat x\,\overline{\hat x\dot x})$; $\dot y = \dot{\hat x} w_c + \hat x\dot w_c + \dot b_c$, ``tangent`` = (ẋ, ẇ, ḃ)."""
    x = as_float(input, "input")
    rows, _ = _groups(x, num_groups)
    w, b = _per_channel("weight", weight, x), _per_channel("bias", bias, x)
    tx, tw, tb = tangents(tangent, {"input": x.shape, "weight": _channel_shape(w, x), "bias": _channel_shape(b, x)})
    if x.size == 0:
        return np.zeros(x.shape)
    xhat, r = _normalized(rows, (2,), float(eps), centre=True, wide=True)
    txhat = None if tx is None else _xhat_jvp(tx.reshape(rows.shape), xhat, r, (2,), True, float(eps)).reshape(x.shape)
    return _affine_jvp(xhat.reshape(x.shape), txhat, w, _channel_tangent(tw, x), _channel_tangent(tb, x))


def _channels_last(x: np.ndarray) -> np.ndarray:
    """(N, C, *) as (C, N · prod(*)): one row per channel."""
    return np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)


def _channels_back(rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.moveaxis(rows.reshape((shape[1], shape[0]) + shape[2:]), 0, 1)


def _bn_args(input: Any, running_mean: Any, running_var: Any, weight: Any, bias: Any, training: bool):
    x = as_float(input, "input")
    if x.ndim < 2 and not (x.ndim == 1 and x.size == 0):  # torch takes an empty 1-D input, as zero channels
        raise ValueError(f"batch_norm expects an input of shape (N, C, *), got {x.shape}")
    if x.ndim == 1:
        x = x.reshape(0, 0)
        weight = bias = None  # torch checks neither against zero channels
    stats = [_per_channel(n, v, x) for n, v in (("running_mean", running_mean), ("running_var", running_var))]
    if not training and (stats[0] is None or stats[1] is None):
        raise ValueError("running_mean and running_var must be given in evaluation mode (training=False)")
    if training and x.shape[0] * int(np.prod(x.shape[2:])) == 1:  # torch's check; an empty batch is allowed
        raise ValueError(f"training needs more than one value per channel, got an input of shape {x.shape}")
    return x, stats, _per_channel("weight", weight, x), _per_channel("bias", bias, x)


@quiet
@facts.declare(curve=_row_curve("batch_norm"), accuracy=3)
def batch_norm(input: Any, running_mean: Any, running_var: Any, weight: Any = None, bias: Any = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> np.ndarray:
    r"""$y = \frac{x - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}}\,w_c + b_c$: batch statistics in training (running ones updated in place), running ones otherwise."""
    x, (mean, var), w, b = _bn_args(input, running_mean, running_var, weight, bias, training)
    if x.size == 0:  # torch returns the empty input's shape and leaves the running statistics as they were
        return np.zeros(np.shape(input))
    if training:
        rows = _channels_last(x)
        xhat = _channels_back(_normalized(rows, (1,), float(eps), centre=True)[0], x.shape)
        if running_mean is not None:
            n = rows.shape[1]
            batch_mean = np.mean(rows.astype(np.longdouble), axis=1)
            unbiased = np.sum((rows - batch_mean[:, None]).astype(np.longdouble) ** 2, axis=1) / (n - 1)
            m = float(momentum)
            running_mean[...] = ((1 - m) * np.asarray(running_mean, dtype=np.longdouble) + m * batch_mean).astype(np.float64)
            running_var[...] = ((1 - m) * np.asarray(running_var, dtype=np.longdouble) + m * unbiased).astype(np.float64)
    else:
        xhat = (x - mean) / np.sqrt(var + float(eps))
    return _affine_apply(xhat, w, b)


@quiet
def batch_norm_backward(grad_output: Any, input: Any, running_mean: Any, running_var: Any, weight: Any = None, bias: Any = None,
                        training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""Training: per channel, layer_norm's $r(\hat g - \overline{\hat g} - \hat x\,\overline{\hat g\hat x})$; evaluation: $g w_c/\sqrt{\hat\sigma_c^2 + \epsilon}$; $\partial L/\partial w_c = \sum g\hat x$, $\partial L/\partial b_c = \sum g$."""
    x, (mean, var), w, b = _bn_args(input, running_mean, running_var, weight, bias, training)
    if x.size == 0:
        zeros = lambda v: None if v is None else np.zeros(np.shape(v))  # noqa: E731  every sum of no terms
        return np.zeros(np.shape(input)), zeros(weight), zeros(bias)
    g = check_grad_shape(grad_output, x.shape)
    gw = g if w is None else g * w
    if training:
        rows = _channels_last(x)
        xhat_rows, r = _normalized(rows, (1,), float(eps), centre=True, wide=True)
        grad_input = _channels_back(_backward(_channels_last(gw), xhat_rows, r, None, (1,), True, float(eps)), x.shape)
        xhat = _channels_back(xhat_rows, x.shape)
    else:
        r = 1 / np.sqrt(var + float(eps))
        grad_input, xhat = gw * r, (x - mean) * r
    return grad_input, (None if w is None else _channel_sum(g * xhat)), (None if b is None else _channel_sum(g))


@quiet
def batch_norm_jvp(tangent: Any, input: Any, running_mean: Any, running_var: Any, weight: Any = None, bias: Any = None,
                   training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> np.ndarray:
    r"""Training: per channel over the batch, $\dot{\hat x} = r(\dot x - \overline{\dot x} - \hat x\,\overline{\hat x\dot x})$; evaluation: $\dot{\hat x} = \dot x/\sqrt{\hat\sigma_c^2 + \epsilon}$.
    $\dot y = \dot{\hat x} w_c + \hat x\dot w_c + \dot b_c$, ``tangent`` = (ẋ, ẇ, ḃ); the running statistics take no tangent and are left as they are."""
    shape = np.shape(as_float(input, "input"))
    x, (mean, var), w, b = _bn_args(input, running_mean, running_var, weight, bias, training)
    tx, tw, tb = tangents(tangent, {"input": shape, "weight": None if weight is None else np.shape(weight),
                                    "bias": None if bias is None else np.shape(bias)})
    if x.size == 0:
        return np.zeros(shape)
    if training:
        rows = _channels_last(x)
        xhat_rows, r = _normalized(rows, (1,), float(eps), centre=True, wide=True)
        xhat = _channels_back(xhat_rows, x.shape)
        txhat = None if tx is None else _channels_back(_xhat_jvp(_channels_last(tx), xhat_rows, r, (1,), True, float(eps)), x.shape)
    else:
        r = 1 / np.sqrt(var + float(eps))
        xhat, txhat = (x - mean) * r, None if tx is None else tx * r
    return _affine_jvp(xhat, txhat, w, _channel_tangent(tw, x), _channel_tangent(tb, x))


# --- the sympy proofs, over M = n symbolic elements of one row ------------------------------------

def _row_example(op: str, n: int, centre: bool):
    """20 rows of n elements: for group_norm, 20 samples of n channels in one group."""
    def example(rng: np.random.Generator) -> S.Example:
        x, w, b, g = rng.normal(0, 2, (20, n)), rng.normal(1, 0.5, n), rng.normal(0, 1, n), rng.normal(0, 1, (20, n))
        eps = 1e-5
        values = {**S.columns(x, "x"), **S.columns(g, "g"), **{f"w_{i + 1}": w[i] for i in range(n)}, "epsilon": eps}
        kwargs = {"num_groups": 1} if op == "group_norm" else {"normalized_shape": (n,)}
        kwargs |= {"weight": w, "eps": eps}
        if centre:
            values |= {f"b_{i + 1}": b[i] for i in range(n)}
            kwargs["bias"] = b

        def assemble(grads: list) -> tuple[np.ndarray, ...]:
            per_row = [np.broadcast_to(np.asarray(v, dtype=float), (20,)) for v in grads]
            parts = [np.stack(per_row[:n], axis=1), np.sum(np.stack(per_row[n:2 * n], axis=1), axis=0)]
            if centre:
                parts.append(np.sum(np.stack(per_row[2 * n:], axis=1), axis=0))
            return tuple(parts)

        return S.Example((x,), kwargs, g, values, assemble)

    return example


def _norm_derivation(op: str, n: int, centre: bool) -> S.Derivation:
    xs, gs = sp.symbols(f"x_1:{n + 1}", real=True), sp.symbols(f"g_1:{n + 1}", real=True)
    ws, bs = sp.symbols(f"w_1:{n + 1}", real=True), sp.symbols(f"b_1:{n + 1}", real=True)
    eps = sp.Symbol("epsilon", positive=True)
    mu = sum(xs) / n if centre else 0
    r = 1 / sp.sqrt(sum((xi - mu) ** 2 for xi in xs) / n + eps)
    xhat = [(xi - mu) * r for xi in xs]
    ys = [xh * wi + (bi if centre else 0) for xh, wi, bi in zip(xhat, ws, bs)]
    gw = [gi * wi for gi, wi in zip(gs, ws)]
    mean_gw_xhat = sum(a * h for a, h in zip(gw, xhat)) / n
    mean_gw = sum(gw) / n
    hand_x = tuple(r * (gw[j] - xhat[j] * mean_gw_xhat - (mean_gw if centre else 0)) for j in range(n))
    hand_w = tuple(gi * xh for gi, xh in zip(gs, xhat))
    wrt = (*xs, *ws, *(bs if centre else ()))
    hand = (*hand_x, *hand_w, *(gs if centre else ()))
    X, G, Xh, R, i, M = sp.IndexedBase("x"), S.G, sp.IndexedBase(r"\hat{x}"), sp.Symbol("r"), S.i, sp.Symbol("M")
    j = S.j
    Ghat = sp.IndexedBase(r"\hat{g}")
    steps = (S.Step("definition", sp.Eq(sp.IndexedBase("y")[i], Xh[i] * sp.IndexedBase("w")[i] + (sp.IndexedBase("b")[i] if centre else 0))),
             S.Step("normalised input", sp.Eq(Xh[i], (X[i] - (sp.Symbol("mu") if centre else 0)) * R)),
             S.Step("input", sp.Eq(sp.Derivative(S.L, X[j]), R * (Ghat[j] - Xh[j] * sp.Sum(Ghat[i] * Xh[i], (i, 1, M)) / M
                                                                    - (sp.Sum(Ghat[i], (i, 1, M)) / M if centre else 0)))),
             S.Step("weight", sp.Eq(sp.Derivative(S.L, sp.IndexedBase("w")[i]), G[i] * Xh[i])))
    if centre:
        steps += (S.Step("bias", sp.Eq(sp.Derivative(S.L, sp.IndexedBase("b")[i]), G[i])),)
    return S.Derivation(op, sum(gi * yi for gi, yi in zip(gs, ys)), wrt, hand, steps, {eps: (1e-3, 1.0)}, size=n,
                        note=f"one row of M = {n} elements; the weight's and bias's gradients sum this over the rows",
                        example=_row_example(op, n, centre))


@facts.derivation(layer_norm)
def _layer_norm(n: int = 3) -> S.Derivation:
    return _norm_derivation("layer_norm", n, centre=True)


@facts.derivation(rms_norm)
def _rms_norm(n: int = 3) -> S.Derivation:
    return _norm_derivation("rms_norm", n, centre=False)


@facts.derivation(group_norm)
def _group_norm(n: int = 3) -> S.Derivation:
    """One group of n channels at one position: layer_norm's algebra, with a weight per channel."""
    return _norm_derivation("group_norm", n, centre=True)


def _batch_example(n: int, training: bool):
    """n samples of 20 channels: each channel is one row of the proof, with its own w, b (and running statistics)."""
    def example(rng: np.random.Generator) -> S.Example:
        x, g = rng.normal(0, 2, (n, 20)), rng.normal(0, 1, (n, 20))
        w, b, mean, var = rng.normal(1, 0.5, 20), rng.normal(0, 1, 20), rng.normal(0, 1, 20), rng.uniform(0.5, 2, 20)
        eps = 1e-5
        values = {**{f"x_{i + 1}": x[i] for i in range(n)}, **{f"g_{i + 1}": g[i] for i in range(n)}, "w": w, "b": b, "epsilon": eps}
        if not training:
            values |= {"m": mean, "v": var}
        kwargs = {"running_mean": None if training else mean, "running_var": None if training else var, "weight": w, "bias": b,
                  "training": training, "eps": eps}

        def assemble(grads: list) -> tuple[np.ndarray, ...]:
            per = [np.broadcast_to(np.asarray(v, dtype=float), (20,)) for v in grads]
            return np.stack(per[:n], axis=0), per[n], per[n + 1]

        return S.Example((x,), kwargs, g, values, assemble)

    return example


@facts.derivation(batch_norm)
def _batch_norm(n: int = 3, *, training: Literal[True, False] = True) -> S.Derivation:
    """One channel over a batch of n values, with its one weight and bias."""
    xs, gs = sp.symbols(f"x_1:{n + 1}", real=True), sp.symbols(f"g_1:{n + 1}", real=True)
    w, b, m, v = sp.symbols("w b m v", real=True)
    eps = sp.Symbol("epsilon", positive=True)
    if training:
        mu = sum(xs) / n
        r = 1 / sp.sqrt(sum((xi - mu) ** 2 for xi in xs) / n + eps)
    else:
        mu, r = m, 1 / sp.sqrt(v + eps)
    xhat = [(xi - mu) * r for xi in xs]
    gw = [gi * w for gi in gs]
    if training:
        hand_x = tuple(r * (gw[j] - sum(gw) / n - xhat[j] * sum(a * h for a, h in zip(gw, xhat)) / n) for j in range(n))
    else:
        hand_x = tuple(gj * w * r for gj in gs)
    hand = (*hand_x, sum(gi * h for gi, h in zip(gs, xhat)), sum(gs))
    X, G, Xh, i, j, N = sp.IndexedBase("x"), S.G, sp.IndexedBase(r"\hat{x}"), S.i, S.j, sp.Symbol("n")
    Ghat = sp.IndexedBase(r"\hat{g}")
    steps = (S.Step("definition", sp.Eq(sp.IndexedBase("y")[i], Xh[i] * w + b)),
             S.Step("normalised input", sp.Eq(Xh[i], (X[i] - (sp.Symbol("mu") if training else m)) * (sp.Symbol("r") if training else 1 / sp.sqrt(v + eps)))),
             S.Step("input", sp.Eq(sp.Derivative(S.L, X[j]), sp.Symbol("r") * (Ghat[j] - sp.Sum(Ghat[i], (i, 1, N)) / N - Xh[j] * sp.Sum(Ghat[i] * Xh[i], (i, 1, N)) / N)
                                    if training else G[j] * w / sp.sqrt(v + eps))),
             S.Step("weight", sp.Eq(sp.Derivative(S.L, w), sp.Sum(G[i] * Xh[i], (i, 1, N)))),
             S.Step("bias", sp.Eq(sp.Derivative(S.L, b), sp.Sum(G[i], (i, 1, N)))))
    return S.Derivation("batch_norm", sum(gi * (h * w + b) for gi, h in zip(gs, xhat)), (*xs, w, b), hand, steps,
                        {eps: (1e-3, 1.0), v: (0.1, 3.0)}, size=n, example=_batch_example(n, training),
                        note=("training: the batch's biased variance normalises; the running variance is updated with the unbiased one"
                              if training else "evaluation: the running statistics are constants"))
