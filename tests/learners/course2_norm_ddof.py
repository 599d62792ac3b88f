"""A student who normalises with the sample variance from statistics class (ddof=1), and whose
BatchNorm takes each sample's statistics over its features, like LayerNorm."""
import numpy as np


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    axes = tuple(range(-len(shape), 0))
    mean = np.mean(input, axis=axes, keepdims=True)
    var = np.var(input, axis=axes, keepdims=True, ddof=1)  # the unbiased variance
    out = (input - mean) / np.sqrt(var + eps)
    if weight is not None:
        out = out * weight + bias
    return out


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    shape = (1, -1) + (1,) * (input.ndim - 2)
    if training:
        axes = tuple(range(1, input.ndim))  # over each sample's features: the wrong axes
        mean = input.mean(axis=axes, keepdims=True)
        var = input.var(axis=axes, keepdims=True)
    else:
        mean, var = running_mean.reshape(shape), running_var.reshape(shape)
    out = (input - mean) / np.sqrt(var + eps)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out
