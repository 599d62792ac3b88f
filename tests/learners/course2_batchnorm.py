"""A student who writes BatchNorm for (N, C) and (N, C, L) batches as nn.BatchNorm1d does: batch
statistics in training (and the running ones updated in place), the running ones in evaluation."""
import numpy as np


def per_channel(v, ndim):
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    axes = (0,) + tuple(range(2, input.ndim))
    if training:
        mean = input.mean(axis=axes)
        var = input.var(axis=axes)
        if running_mean is not None:
            n = input.size // input.shape[1]
            running_mean[:] = (1 - momentum) * running_mean + momentum * mean
            running_var[:] = (1 - momentum) * running_var + momentum * var * n / (n - 1)  # the unbiased variance
    else:
        mean, var = running_mean, running_var
    out = (input - per_channel(mean, input.ndim)) / np.sqrt(per_channel(var, input.ndim) + eps)
    if weight is not None:
        out = out * per_channel(weight, input.ndim)
    if bias is not None:
        out = out + per_channel(bias, input.ndim)
    return out


def batch_norm_backward(grad_output, input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    axes = (0,) + tuple(range(2, input.ndim))
    if training:
        mean = input.mean(axis=axes, keepdims=True)
        rstd = 1 / np.sqrt(input.var(axis=axes, keepdims=True) + eps)
    else:
        mean = per_channel(running_mean, input.ndim)
        rstd = 1 / np.sqrt(per_channel(running_var, input.ndim) + eps)
    xhat = (input - mean) * rstd
    g = grad_output if weight is None else grad_output * per_channel(weight, input.ndim)
    if training:  # the batch statistics depend on x too
        grad_input = rstd * (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True))
    else:
        grad_input = g * rstd
    grad_weight = None if weight is None else (grad_output * xhat).sum(axis=axes)
    grad_bias = None if bias is None else grad_output.sum(axis=axes)
    return grad_input, grad_weight, grad_bias
