"""A student who writes convolutions with np.einsum, looping only over the kernel's offsets."""
import numpy as np


def as_pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv1d(input, weight, bias=None, stride=1, padding=0):
    s = stride if isinstance(stride, int) else stride[0]
    p = padding if isinstance(padding, int) else padding[0]
    K = weight.shape[2]
    x = np.pad(input, ((0, 0), (0, 0), (p, p)))
    L_out = (x.shape[2] - K) // s + 1
    out = np.zeros((input.shape[0], weight.shape[0], L_out))
    for k in range(K):
        out += np.einsum("ncl,oc->nol", x[:, :, k:k + s * (L_out - 1) + 1:s], weight[:, :, k])
    if bias is not None:
        out += bias[None, :, None]
    return out


def conv1d_backward(grad_output, input, weight, bias=None, stride=1, padding=0):
    s = stride if isinstance(stride, int) else stride[0]
    p = padding if isinstance(padding, int) else padding[0]
    K = weight.shape[2]
    L = input.shape[2]
    x = np.pad(input, ((0, 0), (0, 0), (p, p)))
    L_out = grad_output.shape[2]
    grad_x = np.zeros(x.shape)
    grad_w = np.zeros(weight.shape)
    for k in range(K):
        window = slice(k, k + s * (L_out - 1) + 1, s)
        grad_x[:, :, window] += np.einsum("nol,oc->ncl", grad_output, weight[:, :, k])
        grad_w[:, :, k] = np.einsum("nol,ncl->oc", grad_output, x[:, :, window])
    grad_b = None if bias is None else np.einsum("nol->o", grad_output)
    return grad_x[:, :, p:p + L], grad_w, grad_b


def conv2d(input, weight, bias=None, stride=1, padding=0):
    sh, sw = as_pair(stride)
    ph, pw = as_pair(padding)
    KH, KW = weight.shape[2:]
    x = np.pad(input, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    H_out = (x.shape[2] - KH) // sh + 1
    W_out = (x.shape[3] - KW) // sw + 1
    out = np.zeros((input.shape[0], weight.shape[0], H_out, W_out))
    for i in range(KH):
        for j in range(KW):
            patch = x[:, :, i:i + sh * (H_out - 1) + 1:sh, j:j + sw * (W_out - 1) + 1:sw]
            out += np.einsum("nchw,oc->nohw", patch, weight[:, :, i, j])
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def conv2d_backward(grad_output, input, weight, bias=None, stride=1, padding=0):
    sh, sw = as_pair(stride)
    ph, pw = as_pair(padding)
    KH, KW = weight.shape[2:]
    H, W = input.shape[2:]
    x = np.pad(input, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    H_out, W_out = grad_output.shape[2:]
    grad_x = np.zeros(x.shape)
    grad_w = np.zeros(weight.shape)
    for i in range(KH):
        for j in range(KW):
            rows = slice(i, i + sh * (H_out - 1) + 1, sh)
            cols = slice(j, j + sw * (W_out - 1) + 1, sw)
            grad_x[:, :, rows, cols] += np.einsum("nohw,oc->nchw", grad_output, weight[:, :, i, j])
            grad_w[:, :, i, j] = np.einsum("nohw,nchw->oc", grad_output, x[:, :, rows, cols])
    grad_b = None if bias is None else np.einsum("nohw->o", grad_output)
    return grad_x[:, :, ph:ph + H, pw:pw + W], grad_w, grad_b
