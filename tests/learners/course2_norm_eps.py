"""A student who adds eps to the standard deviation rather than the variance, and who copied the
tanh GELU from the GPT-2 code while the course asks for the exact one."""
import numpy as np


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    axes = tuple(range(input.ndim - len(shape), input.ndim))
    mean = input.mean(axis=axes, keepdims=True)
    std = input.std(axis=axes, keepdims=True)
    out = (input - mean) / (std + eps)  # eps outside the square root
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def gelu(input):
    return 0.5 * input * (1 + np.tanh(np.sqrt(2 / np.pi) * (input + 0.044715 * input ** 3)))
