"""A student who writes max pooling's backward the CS231n 'naive' way: a mask of where the window
equals its maximum."""
import numpy as np


def max_pool2d(input, kernel_size, stride=None):
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    sh, sw = (kh, kw) if stride is None else (stride, stride) if isinstance(stride, int) else stride
    N, C, H, W = input.shape
    H_out, W_out = (H - kh) // sh + 1, (W - kw) // sw + 1
    out = np.zeros((N, C, H_out, W_out))
    for i in range(H_out):
        for j in range(W_out):
            out[:, :, i, j] = input[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw].max(axis=(2, 3))
    return out


def max_pool2d_backward(grad_output, input, kernel_size, stride=None):
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    sh, sw = (kh, kw) if stride is None else (stride, stride) if isinstance(stride, int) else stride
    grad = np.zeros(input.shape)
    for i in range(grad_output.shape[2]):
        for j in range(grad_output.shape[3]):
            rows, cols = slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)
            window = input[:, :, rows, cols]
            mask = window == window.max(axis=(2, 3), keepdims=True)  # every maximum of the window
            grad[:, :, rows, cols] += mask * grad_output[:, :, i, j][:, :, None, None]
    return grad
