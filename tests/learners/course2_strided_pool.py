"""A student who pools through strided window views (sliding_window_view and as_strided), no loops."""
import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view


def windows_of(x, kh, kw, sh, sw):
    """(..., H, W) -> (..., H_out, W_out, kh, kw): a read-only view of every window."""
    return sliding_window_view(x, (kh, kw), axis=(-2, -1))[..., ::sh, ::sw, :, :]


def max_pool2d(input, kernel_size, stride=None, padding=0):
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    sh, sw = (kh, kw) if stride is None else (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    pads = [(0, 0)] * (input.ndim - 2) + [(ph, ph), (pw, pw)]
    x = np.pad(input, pads, constant_values=-np.inf)
    return windows_of(x, kh, kw, sh, sw).max(axis=(-2, -1))


def avg_pool2d(input, kernel_size, stride=None, padding=0):
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    sh, sw = (kh, kw) if stride is None else (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    x = np.pad(input, [(0, 0)] * (input.ndim - 2) + [(ph, ph), (pw, pw)])
    x = np.ascontiguousarray(x)
    *lead, H, W = x.shape
    H_out, W_out = (H - kh) // sh + 1, (W - kw) // sw + 1
    *lead_strides, s_h, s_w = x.strides
    win = as_strided(x, shape=(*lead, H_out, W_out, kh, kw), strides=(*lead_strides, s_h * sh, s_w * sw, s_h, s_w), writeable=False)
    return win.sum(axis=(-2, -1)) / (kh * kw)  # count_include_pad=True: the padded zeros count


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0):
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    sh, sw = (kh, kw) if stride is None else (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    *lead, H, W = input.shape
    grad_x = np.zeros((*lead, H + 2 * ph, W + 2 * pw))
    H_out, W_out = grad_output.shape[-2:]
    share = grad_output / (kh * kw)
    for i in range(kh):
        for j in range(kw):
            grad_x[..., i:i + sh * (H_out - 1) + 1:sh, j:j + sw * (W_out - 1) + 1:sw] += share
    return grad_x[..., ph:ph + H, pw:pw + W]
