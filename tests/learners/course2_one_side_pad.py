"""A student who pads only the top and the left of the image (thinking of padding as 'shifting the
window back'), with im2col-by-loops and one matrix product."""
import numpy as np


def conv2d(input, weight, bias=None, stride=1, padding=0):
    x = np.pad(input, ((0, 0), (0, 0), (padding, 0), (padding, 0)))  # pads one side only
    N, C, H, W = x.shape
    O, _, KH, KW = weight.shape
    H_out, W_out = (H - KH) // stride + 1, (W - KW) // stride + 1
    cols = np.empty((N, H_out, W_out, C * KH * KW))
    for i in range(H_out):
        for j in range(W_out):
            cols[:, i, j] = x[:, :, i * stride:i * stride + KH, j * stride:j * stride + KW].reshape(N, -1)
    out = cols @ weight.reshape(O, -1).T  # (N, H_out, W_out, O)
    if bias is not None:
        out = out + bias
    return out.transpose(0, 3, 1, 2)
