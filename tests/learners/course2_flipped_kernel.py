"""A student who learnt convolution in a signals course and flips the kernel, as the textbook's
definition of convolution does."""
import numpy as np


def pad2d(x, p):
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))


def conv2d(input, weight, bias=None, stride=1, padding=0):
    x = pad2d(input, padding)
    N, C, H, W = x.shape
    O, _, KH, KW = weight.shape
    kernel = weight[:, :, ::-1, ::-1]  # a true convolution: y[t] = sum_j w[j] x[t - j]
    H_out, W_out = (H - KH) // stride + 1, (W - KW) // stride + 1
    out = np.zeros((N, O, H_out, W_out))
    for i in range(H_out):
        for j in range(W_out):
            patch = x[:, :, i * stride:i * stride + KH, j * stride:j * stride + KW]
            out[:, :, i, j] = np.tensordot(patch, kernel, axes=([1, 2, 3], [1, 2, 3]))
    if bias is not None:
        out += bias[None, :, None, None]
    return out
