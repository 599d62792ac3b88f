"""A student whose conv2d forward handles the stride, but whose backward was written and tested
at stride 1 and never revisited."""
import numpy as np


def conv2d(input, weight, bias=None, stride=1, padding=0):
    x = np.pad(input, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    N, C, H, W = x.shape
    O, _, KH, KW = weight.shape
    H_out, W_out = (H - KH) // stride + 1, (W - KW) // stride + 1
    out = np.zeros((N, O, H_out, W_out))
    for i in range(H_out):
        for j in range(W_out):
            patch = x[:, :, i * stride:i * stride + KH, j * stride:j * stride + KW]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, weight)
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def conv2d_backward(grad_output, input, weight, bias=None, stride=1, padding=0):
    x = np.pad(input, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    O, _, KH, KW = weight.shape
    grad_x = np.zeros(x.shape)
    grad_w = np.zeros(weight.shape)
    H_out, W_out = grad_output.shape[2:]
    for i in range(H_out):
        for j in range(W_out):
            g = grad_output[:, :, i, j]
            grad_x[:, :, i:i + KH, j:j + KW] += np.einsum("no,ochw->nchw", g, weight)  # forgets the stride
            grad_w += np.einsum("no,nchw->ochw", g, x[:, :, i:i + KH, j:j + KW])
    H, W = input.shape[2:]
    grad_b = None if bias is None else grad_output.sum(axis=(0, 2, 3))
    return grad_x[:, :, padding:padding + H, padding:padding + W], grad_w, grad_b
