"""Quirks of the CPU's GEMMs, and of float32 matmuls under reduced-precision settings: each probed here and now.

The oneDNN ones depend on the CPU: for a bfloat16 GEMM with m·n·k > 16³ torch calls oneDNN when the
CPU has avx512bw/vl/dq (aten/src/ATen/native/mkldnn/Matmul.cpp, ``mkldnn_bf16_device_check``,
``mkldnn_gemm_min_size``); oneDNN emulates bf16 without avx512_bf16/AMX and runs VDPBF16PS/AMX with
them. ``ONEDNN_MAX_CPU_ISA=AVX2`` or ``torch.backends.mkldnn.enabled = False`` takes the native path.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from checks.departures import BOTH_WAYS, Departure, Where, returns_nan
from checks.spec import Recipe

BF16_TINY = float(torch.finfo(torch.bfloat16).tiny)


# --- oneDNN's emulated bf16 GEMM: an infinite input in an odd K's last column -------------------


def _odd_k_region(where: Where) -> np.ndarray:
    x = where.case.inputs["input"]
    if x.shape[-1] % 2 == 0:
        return np.zeros((), bool)
    return np.isinf(x[..., -1])[..., None]  # the whole output row


def _odd_k_probe(device: str) -> bool:
    x = torch.ones(32, 9, dtype=torch.bfloat16)
    x[3, -1] = -math.inf
    out = F.linear(x.to(device), torch.full((16, 9), 0.5, dtype=torch.bfloat16, device=device))
    return bool(out[3].isnan().any())


ODD_K_INF_NAN = Departure(
    id="onednn-bf16-odd-k-inf-nan", kind="quirk", title="oneDNN's emulated bf16 GEMM turns an infinite last input into a NaN row",
    ops=("linear",), phases=("forward",), dtypes=("bfloat16",), devices=("cpu",),
    what="On an AVX-512 CPU without avx512_bf16/AMX, a bfloat16 Linear large enough for oneDNN (m·n·k > 16³) with an odd "
         "in_features K returns a whole output row of NaN when that row's last input is ±inf; the answer is ±inf. "
         "Seen for K = 3 … 33, never for even K: it fits a padding zero multiplied by inf.",
    returns="NaN across the output row", upstream="pytorch/pytorch#171034",
    tests=(BOTH_WAYS,),
    region=_odd_k_region, rule=returns_nan, probe=_odd_k_probe,
    example=Recipe(seed=0, regime="extremal", shape=(64, 9), knobs={"out_features": 16, "bias": False}), example_dtype="bfloat16",
)


# --- native bf16 dot products flush subnormal products ----------------------------------------


def _subnormal(v: np.ndarray) -> np.ndarray:
    return (v != 0) & (np.abs(v) < BF16_TINY)


def _flushed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Products a·b that involve a bf16 subnormal: a subnormal factor (read as 0) or a subnormal
    product (written as 0)."""
    products = a * b
    return (products != 0) & (_subnormal(a) | _subnormal(b) | _subnormal(products))


def _linear_flushed(where: Where) -> np.ndarray:
    x, w = where.case.inputs["input"], where.case.inputs["weight"]
    g = where.grad_output
    if where.phase == "forward":
        a, b = np.broadcast_arrays(x[..., None, :], w)  # (..., out, in): sums over in
    elif where.phase == "grad[input]":
        a, b = np.broadcast_arrays(np.swapaxes(g[..., :, None], -1, -2), w.T)  # (..., in, out): sums over out
    elif where.phase == "grad[weight]":
        a, b = np.broadcast_arrays(np.moveaxis(g.reshape(-1, w.shape[0])[:, :, None], 0, -1), np.moveaxis(x.reshape(-1, w.shape[1])[:, None, :], 0, -1))
    else:
        return np.zeros((), int)
    return _flushed(a, b).sum(axis=-1)


CONV_DEFAULTS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}  # F.conv1d's and F.conv2d's


def _conv_flushed(where: Where) -> np.ndarray:
    """The same count for a convolution: its windows (reference.convolution's own geometry) times
    the weight (forward: summed over channels and taps) or times the upstream gradient
    (grad[weight]: summed over samples and positions). grad[input] sums g·w, never subnormal in a draw."""
    from reference.convolution import _Geometry

    case, nd = where.case, where.case.inputs["weight"].ndim - 2
    geo = _Geometry(nd, case.inputs["input"], case.inputs["weight"], None, *(case.params.get(k, d) for k, d in CONV_DEFAULTS.items()))
    win = geo.windows(geo.padded(geo.x))[:, :, None]  # (N, G, 1, C, *out, *kernel)
    if where.phase == "forward":
        w = geo.grouped_weight(geo.w)  # (G, O, C, *kernel)
        w = w.reshape(1, *w.shape[:3], *(1,) * nd, *w.shape[3:])
        count = _flushed(win, w).sum(axis=(3, *range(4 + nd, 4 + 2 * nd)))  # (N, G, O, *out)
        return geo.restore(count.reshape(count.shape[0], -1, *count.shape[3:]))
    if where.phase == "grad[weight]":
        g = where.grad_output[None] if geo.unbatched else where.grad_output
        g = g.reshape(g.shape[0], geo.groups, -1, 1, *g.shape[2:], *(1,) * nd)  # (N, G, O, 1, *out, 1...)
        count = _flushed(win, g).sum(axis=(0, *range(4, 4 + nd)))  # (G, O, C, *kernel)
        return count.reshape(geo.w.shape)
    return np.zeros((), int)


def _subnormal_products(where: Where) -> np.ndarray:
    """How many of the products each element sums involve a bf16 subnormal."""
    return (_linear_flushed if where.op == "linear" else _conv_flushed)(where)


def _flush_rule(actual: np.ndarray, expected: np.ndarray, limit: np.ndarray, where: Where) -> np.ndarray:
    return np.abs(actual - expected) <= limit + _subnormal_products(where) * BF16_TINY


def _flush_probe(device: str, op: str, phase: str) -> bool:
    """Witnesses whose exact answer is a normal bf16 number made of subnormal products."""
    bf16 = dict(dtype=torch.bfloat16, device=device)
    if op == "linear":
        if phase == "forward":  # x = [tiny, -tiny], w = [-0.66, 0.957]: -1.9e-38, above 16^3 so oneDNN runs it
            row = torch.tensor([[BF16_TINY, -BF16_TINY]], **bf16)
            x = torch.cat([torch.ones(15 * 16, 2, **bf16), row])
            w = torch.cat([torch.tensor([[-0.66015625, 0.95703125]], **bf16), torch.ones(8, 2, **bf16)])
            return F.linear(x, w)[-1, 0].item() == 0.0
        # 64 products of tiny and 0.5 sum to 32 tiny: the gradient of x (g = tiny) or of w (x = tiny)
        x = torch.full((64, 64), BF16_TINY if phase == "grad[weight]" else 1.0, **bf16).requires_grad_()
        w = torch.full((64, 64), 0.5, **bf16).requires_grad_()
        g = torch.full((64, 64), BF16_TINY if phase == "grad[input]" else 1.0, **bf16)
        F.linear(x, w).backward(g)
        grad = x.grad if phase == "grad[input]" else w.grad
        return grad[0, 0].item() == 0.0
    # A 1x1 convolution of 64 positions at 2^-127 (subnormal): each output 2^-128, normal after the 2-channel sum;
    # grad[weight] sums 64 positions of x·g = 2^-127 · 1 to 2^-121.
    shape = (1, 2, 64) if op == "conv1d" else (1, 2, 8, 8)
    x = torch.full(shape, 2.0**-127, **bf16).requires_grad_()
    w = torch.full((1, 2) + (1,) * (len(shape) - 2), 1.0 if phase == "grad[weight]" else 2.0, **bf16).requires_grad_()
    out = getattr(F, op)(x, w)
    if phase == "forward":
        return out.flatten()[0].item() == 0.0  # the answer is 2 · 2 · 2^-127 = 2^-125
    out.backward(torch.ones_like(out))
    return w.grad.flatten()[0].item() == 0.0


SUBNORMAL_FLUSH = Departure(
    id="bf16-dot-product-flushes-subnormals", kind="quirk", title="Native bf16 dot products flush subnormal products to zero",
    ops=("linear", "conv1d", "conv2d"), phases=("forward", "grad[input]", "grad[weight]"), dtypes=("bfloat16",), devices=("cpu",),
    what="Where oneDNN runs a bfloat16 GEMM or convolution on VDPBF16PS or AMX, each product that is a bf16 subnormal is dropped: "
         "Intel documents that these instructions always flush bf16 denormals, inputs and outputs. "
         "x = [tiny, −tiny], w = [−0.66, 0.957] gives −0.0 for a true −1.9e-38. Linear goes there above m·n·k = 16³; "
         "conv1d and conv2d at every size (even a 1x1 kernel on a 2x2 image). Each op and phase has its own probe.",
    returns="the sum without its subnormal products: off by at most one smallest normal per such product",
    upstream="Intel Architecture Instruction Set Extensions Programming Reference, VDPBF16PS: 'denormal inputs and outputs are treated as zero'",
    tests=(BOTH_WAYS, "tests/test_recordings.py::test_every_recording_is_judged_as_on_its_machine"),
    region=lambda where: _subnormal_products(where) > 0, rule=_flush_rule, probe=_flush_probe, probe_per=("op", "phase"),
    example=Recipe(seed=0, regime="extremal", shape=(256, 16), knobs={"out_features": 16, "bias": True}), example_dtype="bfloat16",
    # Dropping a few 1e-38 products shows only in an output that is itself near 1e-38: a random
    # example rarely has one (tests/test_departures.py builds one by hand).
    always=False,
)


# --- float32 matmul in reduced precision (a user's setting) -----------------------------------


def _reduced_fp32_probe(device: str) -> bool:
    """Witness: x @ I is x exactly in float32, but 1 + 2**-12 rounds to 1 in bf16 and in TF32."""
    x = torch.full((64, 64), 1 + 2.0**-12, device=device)
    return bool((F.linear(x, torch.eye(64, device=device)) != x).any())


def _reduced_rule(eps: float):
    def rule(actual: np.ndarray, expected: np.ndarray, limit: np.ndarray, where: Where) -> np.ndarray:
        # Each product carries two input roundings of eps/2: (1 + eps/2)**2 - 1 < eps.
        return np.abs(actual - expected) <= limit + eps * where.scale

    return rule


FP32_MATMUL_REDUCED = Departure(
    id="float32-matmul-in-reduced-precision", kind="quirk", title="float32 matmuls computed in bf16 or TF32",
    ops=("linear",), phases=("forward", "grad[input]", "grad[weight]"), dtypes=("float32",), devices=("cpu", "cuda"),
    what="torch.set_float32_matmul_precision('high'/'medium'), torch.backends.mkldnn.matmul.fp32_precision = 'bf16'/'tf32' "
         "(a CPU with native bf16/AMX) or torch.backends.cuda.matmul.allow_tf32 = True (the TF32 tensor cores of an "
         "Ampere or later GPU) round float32 inputs to 8 or 10 mantissa bits inside the matmul.",
    returns="a float32 result with bf16 accuracy: off by up to 2**-7 of Σ|w x| + |b|",
    upstream="https://pytorch.org/docs/stable/notes/cuda.html#tensorfloat-32-tf32-on-ampere-and-later-devices; torch.set_float32_matmul_precision",
    tests=(BOTH_WAYS,),
    region=lambda where: np.ones((), bool), rule=_reduced_rule(2.0**-7), probe=_reduced_fp32_probe,
    example=Recipe(seed=0, regime="normal", shape=(64, 16), knobs={"out_features": 16, "bias": True}),
)

DECLARED = (ODD_K_INF_NAN, SUBNORMAL_FLUSH, FP32_MATMUL_REDUCED)
