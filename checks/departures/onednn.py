"""Quirks of oneDNN's AVX-512 kernels (torch's CPU convolutions and GELU): each probed per path.

Both show on AVX-512 CPUs (native, and ``ONEDNN_MAX_CPU_ISA=AVX512_CORE``) and not under
``ONEDNN_MAX_CPU_ISA=AVX2`` or with oneDNN off; ``ATEN_CPU_CAPABILITY`` does not change them (they are
not ATen kernels). Measured on an AMD EPYC Zen 4 (avx512_bf16, no AMX), torch 2.13.0+cpu: the
recordings in tests/recordings/ hold what it returned.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from checks.departures import BOTH_WAYS, Departure, Where, returns_nan
from checks.departures.cpu import CONV_DEFAULTS
from checks.spec import Recipe
from reference.convolution import convolve, convolve_backward

RECORDINGS = "tests/test_recordings.py::test_every_recording_is_judged_as_on_its_machine"


# --- oneDNN's AVX-512 bf16 convolution: a non-finite input spreads NaN to its left neighbour's outputs


def poisoned(x: np.ndarray, spatial: int) -> np.ndarray:
    """The inputs that meet a non-finite value in the kernel: each non-finite element, and the one
    before it in memory within a sample (channels, then the spatial axes, row-major). The measured
    NaNs fit a kernel that reads taps in pairs (x[i], x[i+1]) and multiplies the partner of the last
    tap by a zero weight: 0 · inf = NaN."""
    bad = ~np.isfinite(x)
    batched = bad.ndim == spatial + 2
    flat = bad.reshape(bad.shape[0], -1) if batched else bad.reshape(1, -1)
    near = flat.copy()
    near[:, :-1] |= flat[:, 1:]
    return near.reshape(bad.shape)


def _conv_reach(where: Where) -> np.ndarray:
    """The elements whose sum reads a poisoned input: outputs (forward) or weight taps (grad[weight])."""
    case = where.case
    x, w = case.inputs["input"], case.inputs["weight"]
    nd = w.ndim - 2
    near = poisoned(x, nd).astype(np.float64)
    params = {k: case.params.get(k, d) for k, d in CONV_DEFAULTS.items()}
    if where.phase == "forward":
        return convolve(nd, near, np.ones_like(w), None, **params) > 0
    if where.phase == "grad[weight]":
        g = np.ones(np.shape(where.grad_output))
        return convolve_backward(nd, g, near, np.ones_like(w), None, **params)[1] > 0
    return np.zeros((), bool)


def _conv(op: str, x: list[float], w: list[float], g: list[float] | None = None) -> torch.Tensor:
    """A bfloat16 witness: a one-channel signal (conv1d) or a one-row image (conv2d)."""
    shape = (1, 1, len(x)) if op == "conv1d" else (1, 1, 1, len(x))
    xt = torch.tensor(x, dtype=torch.bfloat16).reshape(shape).requires_grad_(g is not None)
    wt = torch.tensor(w, dtype=torch.bfloat16).reshape(shape[:-1] + (len(w),)).requires_grad_(g is not None)
    out = getattr(F, op)(xt, wt)
    if g is None:
        return out.detach().flatten()
    out.backward(torch.tensor(g, dtype=torch.bfloat16).reshape(out.shape))
    return wt.grad.flatten()


def _spread_probe(device: str, op: str, phase: str) -> bool:
    if phase == "forward":  # [1, 2, inf, 3, 4] ⋆ [0.5, 0.25] = [1, inf, inf, 2.5]: the first output's window holds no inf
        return bool(_conv(op, [1, 2, math.inf, 3, 4], [0.5, 0.25])[0].isnan())
    # grad[weight] of [1, 2, 3, 4, inf] ⋆ [0.5, 0.25] at g = 1: the first tap reads x[0..3] only, 1 + 2 + 3 + 4 = 10
    return bool(_conv(op, [1, 2, 3, 4, math.inf], [0.5, 0.25], [1, 1, 1, 1])[0].isnan())


CONV_NAN_SPREAD = Departure(
    id="onednn-bf16-convolution-nan-spread", kind="quirk",
    title="oneDNN's AVX-512 bf16 convolution spreads a non-finite input to its neighbour's outputs",
    ops=("conv1d", "conv2d"), phases=("forward", "grad[weight]"), dtypes=("bfloat16",), devices=("cpu",),
    what="On an AVX-512 CPU, a bfloat16 conv1d/conv2d returns NaN at outputs whose window holds the element just before a "
         "non-finite input (in memory, along the spatial axes), and NaN for +-inf where the window holds the inf: "
         "[1, 2, inf, 3, 4] ⋆ [0.5, 0.25] gives [nan, nan, inf, 2.5] for [1, inf, inf, 2.5]. It fits a kernel that reads taps "
         "in pairs and multiplies the partner by a zero weight. grad[input] is not declared: it sums g·w, finite in every draw.",
    returns="NaN at the outputs (or weight taps) whose sum reads a non-finite input or the element before it",
    upstream="uxlfoundation/oneDNN#5717 (the same class: NaN leaking into unrelated outputs of a bf16 kernel); pytorch/pytorch#171034",
    tests=(BOTH_WAYS, RECORDINGS),
    region=_conv_reach, rule=returns_nan, probe=_spread_probe, probe_per=("op", "phase"),
    example=Recipe(seed=0, regime="extremal", shape=(1, 1, 3), knobs={"out_per_group": 1, "groups": 1, "kernel": (2,), "stride": 1, "padding": 1,
                                                                       "dilation": 1, "bias": False, "batched": False}),
    example_dtype="bfloat16",  # the thorough profile's draw: input [16.6, nan, 1.92], padding 1; out[0] = 30.6 came back NaN
)


# --- oneDNN's AVX-512 GELU (erf): NaN at +inf in a vector -------------------------------------------


def _gelu_region(where: Where) -> np.ndarray:
    x = where.case.inputs["input"]
    if where.case.params.get("approximate", "none") != "none":
        return np.zeros((), bool)
    return x == np.inf  # one element alone gave inf on the Zen 4 that showed it: allowed either way


def _gelu_probe(device: str, dtype: str) -> bool:
    x = torch.tensor([math.inf, 1.0], dtype=getattr(torch, dtype), device=device)
    return bool(F.gelu(x, approximate="none")[0].isnan())


GELU_INF_NAN = Departure(
    id="onednn-avx512-gelu-nan-at-inf", kind="quirk", title="oneDNN's AVX-512 GELU returns NaN for +inf",
    ops=("gelu",), phases=("forward",), devices=("cpu",),
    what="On an AVX-512 CPU, F.gelu(x, approximate='none') returns NaN for x = +inf in a tensor of two or more elements "
         "(one element alone gave inf on the CPU measured); the answer is +inf. Seen in float32 and bfloat16.",
    returns="NaN where the input is +inf", upstream="pytorch/pytorch#185770",
    tests=(BOTH_WAYS, RECORDINGS),
    region=_gelu_region, rule=returns_nan, probe=_gelu_probe, probe_per=("dtype",),
    example=Recipe(seed=1, regime="extremal", shape=(64,), knobs={"approximate": "none"}),  # two +inf among 64
)

DECLARED = (CONV_NAN_SPREAD, GELU_INF_NAN)
