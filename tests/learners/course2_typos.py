"""A student who names the functions after the nn layers rather than torch.nn.functional: layernorm,
maxpool2d; with one name right and a helper."""
import numpy as np


def layernorm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    axes = tuple(range(-len(normalized_shape), 0))
    mean = input.mean(axis=axes, keepdims=True)
    var = input.var(axis=axes, keepdims=True)
    out = (input - mean) / np.sqrt(var + eps)
    return out if weight is None else out * weight + bias


def maxpool2d(input, kernel_size, stride=None):
    k = kernel_size
    s = k if stride is None else stride
    N, C, H, W = input.shape
    H_out, W_out = (H - k) // s + 1, (W - k) // s + 1
    out = np.empty((N, C, H_out, W_out))
    for i in range(H_out):
        for j in range(W_out):
            out[:, :, i, j] = input[:, :, i * s:i * s + k, j * s:j * s + k].max(axis=(2, 3))
    return out


def sigmoid_np(x):
    return 1 / (1 + np.exp(-x))


def silu(input):
    return input * sigmoid_np(input)
