"""A student who writes LayerNorm from the paper, vectorised with keepdims, and derives its backward
on paper (the 'three terms' form)."""
import numpy as np


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    axes = tuple(range(input.ndim - len(shape), input.ndim))
    mean = input.mean(axis=axes, keepdims=True)
    var = input.var(axis=axes, keepdims=True)
    out = (input - mean) / np.sqrt(var + eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def layer_norm_backward(grad_output, input, normalized_shape, weight=None, bias=None, eps=1e-5):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    axes = tuple(range(input.ndim - len(shape), input.ndim))
    batch_axes = tuple(range(input.ndim - len(shape)))
    mean = input.mean(axis=axes, keepdims=True)
    rstd = 1 / np.sqrt(input.var(axis=axes, keepdims=True) + eps)
    xhat = (input - mean) * rstd
    g = grad_output if weight is None else grad_output * weight
    grad_input = rstd * (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True))
    grad_weight = None if weight is None else (grad_output * xhat).sum(axis=batch_axes)
    grad_bias = None if bias is None else grad_output.sum(axis=batch_axes)
    return grad_input, grad_weight, grad_bias
