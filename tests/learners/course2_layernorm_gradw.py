"""A student whose LayerNorm backward is right for the input but copies Linear's weight gradient,
multiplying grad_output by the raw input instead of the normalised one."""
import numpy as np


def layer_norm_backward(grad_output, input, normalized_shape, weight=None, bias=None, eps=1e-5):
    axes = tuple(range(input.ndim - len(normalized_shape), input.ndim))
    batch = tuple(range(input.ndim - len(normalized_shape)))
    mean = input.mean(axis=axes, keepdims=True)
    rstd = 1 / np.sqrt(input.var(axis=axes, keepdims=True) + eps)
    xhat = (input - mean) * rstd
    g = grad_output if weight is None else grad_output * weight
    grad_input = rstd * (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True))
    grad_weight = None if weight is None else (grad_output * input).sum(axis=batch)  # should be xhat, not input
    grad_bias = None if bias is None else grad_output.sum(axis=batch)
    return grad_input, grad_weight, grad_bias
