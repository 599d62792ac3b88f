"""A student who writes LayerNorm without the affine part (the Linear after it learns the scale), so
the backward has one input to differentiate and returns one array."""
import numpy as np


def layer_norm(input, normalized_shape, eps=1e-5):
    axes = tuple(range(-len(normalized_shape), 0))
    mu = input.mean(axis=axes, keepdims=True)
    var = ((input - mu) ** 2).mean(axis=axes, keepdims=True)
    return (input - mu) / np.sqrt(var + eps)


def layer_norm_backward(grad_output, input, normalized_shape, eps=1e-5):
    axes = tuple(range(-len(normalized_shape), 0))
    mu = input.mean(axis=axes, keepdims=True)
    rstd = 1 / np.sqrt(((input - mu) ** 2).mean(axis=axes, keepdims=True) + eps)
    xhat = (input - mu) * rstd
    g = grad_output
    return rstd * (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True))
