"""A student who writes pooling with explicit loops over every output pixel."""
import numpy as np


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def max_pool2d(input, kernel_size, stride=None, padding=0):
    kh, kw = pair(kernel_size)
    sh, sw = pair(stride) if stride is not None else (kh, kw)
    ph, pw = pair(padding)
    N, C, H, W = input.shape
    x = np.pad(input, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    H_out = (H + 2 * ph - kh) // sh + 1
    W_out = (W + 2 * pw - kw) // sw + 1
    out = np.zeros((N, C, H_out, W_out))
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    out[n, c, i, j] = np.max(x[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw])
    return out


def max_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0):
    kh, kw = pair(kernel_size)
    sh, sw = pair(stride) if stride is not None else (kh, kw)
    ph, pw = pair(padding)
    N, C, H, W = input.shape
    x = np.pad(input, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    grad_x = np.zeros(x.shape)
    for n in range(N):
        for c in range(C):
            for i in range(grad_output.shape[2]):
                for j in range(grad_output.shape[3]):
                    window = x[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    a, b = np.unravel_index(np.argmax(window), window.shape)  # the first maximum, like torch
                    grad_x[n, c, i * sh + a, j * sw + b] += grad_output[n, c, i, j]
    return grad_x[:, :, ph:ph + H, pw:pw + W]


def avg_pool2d(input, kernel_size, stride=None, padding=0, count_include_pad=True):
    kh, kw = pair(kernel_size)
    sh, sw = pair(stride) if stride is not None else (kh, kw)
    ph, pw = pair(padding)
    N, C, H, W = input.shape
    x = np.pad(input, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    real = np.pad(np.ones((H, W)), ((ph, ph), (pw, pw)))  # 1 where the input is, 0 in the padding
    H_out = (H + 2 * ph - kh) // sh + 1
    W_out = (W + 2 * pw - kw) // sw + 1
    out = np.zeros((N, C, H_out, W_out))
    for i in range(H_out):
        for j in range(W_out):
            rows, cols = slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)
            count = kh * kw if count_include_pad else real[rows, cols].sum()
            out[:, :, i, j] = x[:, :, rows, cols].sum(axis=(2, 3)) / count
    return out


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, count_include_pad=True):
    kh, kw = pair(kernel_size)
    sh, sw = pair(stride) if stride is not None else (kh, kw)
    ph, pw = pair(padding)
    N, C, H, W = input.shape
    real = np.pad(np.ones((H, W)), ((ph, ph), (pw, pw)))
    grad_x = np.zeros((N, C, H + 2 * ph, W + 2 * pw))
    for i in range(grad_output.shape[2]):
        for j in range(grad_output.shape[3]):
            rows, cols = slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)
            count = kh * kw if count_include_pad else real[rows, cols].sum()
            grad_x[:, :, rows, cols] += grad_output[:, :, i, j][:, :, None, None] / count
    return grad_x[:, :, ph:ph + H, pw:pw + W]
