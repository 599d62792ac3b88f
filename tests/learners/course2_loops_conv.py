"""A student who writes convolutions with explicit Python loops, the way the lecture's pseudocode reads."""
import numpy as np


def conv1d(input, weight, bias=None, stride=1, padding=0):
    N, C, L = input.shape
    O, _, K = weight.shape
    x = np.pad(input, ((0, 0), (0, 0), (padding, padding)))
    L_out = (L + 2 * padding - K) // stride + 1
    out = np.zeros((N, O, L_out))
    for n in range(N):
        for o in range(O):
            for t in range(L_out):
                start = t * stride
                out[n, o, t] = np.sum(x[n, :, start:start + K] * weight[o])
            if bias is not None:
                out[n, o, :] += bias[o]
    return out


def conv1d_backward(grad_output, input, weight, bias=None, stride=1, padding=0):
    N, C, L = input.shape
    O, _, K = weight.shape
    x = np.pad(input, ((0, 0), (0, 0), (padding, padding)))
    grad_x = np.zeros(x.shape)
    grad_w = np.zeros(weight.shape)
    for n in range(N):
        for o in range(O):
            for t in range(grad_output.shape[2]):
                start = t * stride
                grad_x[n, :, start:start + K] += grad_output[n, o, t] * weight[o]
                grad_w[o] += grad_output[n, o, t] * x[n, :, start:start + K]
    grad_input = grad_x[:, :, padding:padding + L]
    grad_b = None if bias is None else grad_output.sum(axis=(0, 2))
    return grad_input, grad_w, grad_b


def conv2d(input, weight, bias=None, stride=1, padding=0):
    N, C, H, W = input.shape
    O, _, KH, KW = weight.shape
    x = np.pad(input, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    H_out = (H + 2 * padding - KH) // stride + 1
    W_out = (W + 2 * padding - KW) // stride + 1
    out = np.zeros((N, O, H_out, W_out))
    for n in range(N):
        for o in range(O):
            for i in range(H_out):
                for j in range(W_out):
                    patch = x[n, :, i * stride:i * stride + KH, j * stride:j * stride + KW]
                    out[n, o, i, j] = np.sum(patch * weight[o])
            if bias is not None:
                out[n, o] += bias[o]
    return out


def conv2d_backward(grad_output, input, weight, bias=None, stride=1, padding=0):
    N, C, H, W = input.shape
    O, _, KH, KW = weight.shape
    x = np.pad(input, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    grad_x = np.zeros(x.shape)
    grad_w = np.zeros(weight.shape)
    _, _, H_out, W_out = grad_output.shape
    for n in range(N):
        for o in range(O):
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * stride, j * stride
                    g = grad_output[n, o, i, j]
                    grad_x[n, :, hs:hs + KH, ws:ws + KW] += g * weight[o]
                    grad_w[o] += g * x[n, :, hs:hs + KH, ws:ws + KW]
    grad_input = grad_x[:, :, padding:padding + H, padding:padding + W]
    grad_b = None if bias is None else grad_output.sum(axis=(0, 2, 3))
    return grad_input, grad_w, grad_b
