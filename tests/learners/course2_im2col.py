"""A student who lowers conv2d to one matrix product with im2col (CS231n's assignment), and reads the
docs closely: tuple strides, padding='same'/'valid', and an unbatched (C, H, W) image."""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def pad_amounts(padding, kh, kw):
    """((top, bottom), (left, right)) as torch pads them."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":  # torch puts the odd one out at the end
        return ((kh - 1) // 2, kh - 1 - (kh - 1) // 2), ((kw - 1) // 2, kw - 1 - (kw - 1) // 2)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return (ph, ph), (pw, pw)


def im2col(x, kh, kw, sh, sw):
    """(N, C, H, W) -> (C*kh*kw, N*H_out*W_out), one column per window."""
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]  # (N, C, H_out, W_out, kh, kw)
    N, C, H_out, W_out = windows.shape[:4]
    return windows.transpose(1, 4, 5, 0, 2, 3).reshape(C * kh * kw, N * H_out * W_out), (H_out, W_out)


def conv2d(input, weight, bias=None, stride=1, padding=0):
    unbatched = input.ndim == 3
    x = input[None] if unbatched else input
    O, C, kh, kw = weight.shape
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    (pt, pb), (pl, pr) = pad_amounts(padding, kh, kw)
    x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    cols, (H_out, W_out) = im2col(x, kh, kw, sh, sw)
    out = weight.reshape(O, -1) @ cols  # (O, N*H_out*W_out)
    if bias is not None:
        out += bias[:, None]
    out = out.reshape(O, x.shape[0], H_out, W_out).transpose(1, 0, 2, 3)
    return out[0] if unbatched else out


def conv2d_backward(grad_output, input, weight, bias=None, stride=1, padding=0):
    unbatched = input.ndim == 3
    x = input[None] if unbatched else input
    g = grad_output[None] if unbatched else grad_output
    O, C, kh, kw = weight.shape
    N, _, H, W = x.shape
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    (pt, pb), (pl, pr) = pad_amounts(padding, kh, kw)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    cols, (H_out, W_out) = im2col(xp, kh, kw, sh, sw)
    g_mat = g.transpose(1, 0, 2, 3).reshape(O, -1)  # (O, N*H_out*W_out)
    grad_w = (g_mat @ cols.T).reshape(weight.shape)
    grad_cols = (weight.reshape(O, -1).T @ g_mat).reshape(C, kh, kw, N, H_out, W_out)
    grad_xp = np.zeros(xp.shape)
    for i in range(kh):  # col2im: each kernel offset adds back onto a strided grid of the input
        for j in range(kw):
            grad_xp[:, :, i:i + sh * H_out:sh, j:j + sw * W_out:sw] += grad_cols[:, i, j].transpose(1, 0, 2, 3)
    grad_x = grad_xp[:, :, pt:pt + H, pl:pl + W]
    grad_b = None if bias is None else g.sum(axis=(0, 2, 3))
    return (grad_x[0] if unbatched else grad_x), grad_w, grad_b
