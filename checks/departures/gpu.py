"""Quirks of CUDA's GEMMs, probed from torch's flags on the device at hand.

TF32 for float32 matmuls is declared with the CPU's reduced-precision float32 setting
(checks/departures/cpu.py, ``float32-matmul-in-reduced-precision``): one setting, one declaration.
cuDNN's TF32 for float32 convolutions (``torch.backends.cudnn.allow_tf32``, on by default) is declared
here, probed by a witness convolution on the device at hand.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from checks.departures import BOTH_WAYS, Departure, Where
from checks.dtypes import DTYPES
from checks.spec import Recipe


def _reduced_reduction_probe(flag: str):
    def probe(device: str) -> bool:
        return device == "cuda" and bool(getattr(torch.backends.cuda.matmul, flag))

    return probe


def _partial_sums_rule(dtype: str):
    eps = DTYPES[dtype].eps

    def rule(actual: np.ndarray, expected: np.ndarray, limit: np.ndarray, where: Where) -> np.ndarray:
        # At most one rounding per summed term (the bound for any split into partial sums): the
        # forward sums in_features terms, grad[input] out_features, grad[weight] and grad[bias] the batch.
        w, x = where.case.inputs["weight"], where.case.inputs["input"]
        terms = {"forward": w.shape[1], "grad[input]": w.shape[0]}.get(where.phase, max(int(np.prod(x.shape[:-1])), 1))
        return np.abs(actual - expected) <= limit + terms * eps / 2 * where.scale

    return rule


def _reduced_reduction(dtype: str, flag: str) -> Departure:
    return Departure(
        id=f"cuda-{dtype}-reduced-precision-reduction", kind="quirk", title=f"cuBLAS may reduce {dtype} GEMMs in {dtype}",
        ops=("linear",), phases=("forward", "grad[input]", "grad[weight]"), dtypes=(dtype,), devices=("cuda",),
        what=f"With torch.backends.cuda.matmul.{flag} = True (the default), cuBLAS may keep split-K partial sums of a "
             f"{dtype} GEMM in {dtype} instead of float32, so the result carries one {dtype} rounding per partial sum.",
        returns=f"a {dtype} result off by up to one half-ULP of Σ|w x| per summed term (the bound for any split-K)",
        upstream="https://pytorch.org/docs/stable/notes/numerical_accuracy.html#reduced-precision-reduction-for-fp16-and-bf16-gemms",
        tests=(BOTH_WAYS,),
        region=lambda where: np.ones((), bool), rule=_partial_sums_rule(dtype), probe=_reduced_reduction_probe(flag),
        example=Recipe(seed=0, regime="normal", shape=(64, 16), knobs={"out_features": 16, "bias": True}), example_dtype=dtype,
        always=False,
    )


def _conv_tf32_probe(device: str) -> bool:
    """Witness: a 1x1 convolution by 1 returns x exactly in float32; TF32 rounds 1 + 2**-12 to 1."""
    if device != "cuda":
        return False
    x = torch.full((1, 4, 32, 32), 1 + 2.0**-12, device=device)
    return bool((F.conv2d(x, torch.eye(4, device=device)[:, :, None, None]) != x).any())


def _tf32_rule(actual: np.ndarray, expected: np.ndarray, limit: np.ndarray, where: Where) -> np.ndarray:
    # TF32 keeps 10 mantissa bits: each product carries two input roundings of 2**-11, (1 + 2**-11)**2 - 1 < 2**-10
    return np.abs(actual - expected) <= limit + 2.0**-10 * where.scale


CONV_TF32 = Departure(
    id="cuda-float32-convolution-in-tf32", kind="quirk", title="cuDNN computes float32 convolutions in TF32",
    ops=("conv1d", "conv2d"), phases=("forward", "grad[input]", "grad[weight]"), dtypes=("float32",), devices=("cuda",),
    what="With torch.backends.cudnn.allow_tf32 = True (the default), cuDNN may round a float32 convolution's inputs to "
         "TF32's 10 mantissa bits on the tensor cores of an Ampere or later GPU, and accumulate in float32.",
    returns="a float32 result with TF32 accuracy: off by up to 2**-10 of Σ|w x| + |b|",
    upstream="https://pytorch.org/docs/stable/notes/cuda.html#tensorfloat-32-tf32-on-ampere-and-later-devices "
             "(torch.backends.cudnn.allow_tf32 defaults to True)",
    tests=(BOTH_WAYS,),
    region=lambda where: np.ones((), bool), rule=_tf32_rule, probe=_conv_tf32_probe,
    example=Recipe(seed=0, regime="normal", shape=(2, 8, 16, 16), knobs={"out_per_group": 8, "groups": 1, "kernel": (3, 3), "stride": 1,
                                                                         "padding": 1, "dilation": 1, "bias": True, "batched": True}),
    always=False,  # cuDNN picks its algorithm per shape: a TF32 one is allowed, not promised
)

DECLARED = (
    _reduced_reduction("float16", "allow_fp16_reduced_precision_reduction"),
    _reduced_reduction("bfloat16", "allow_bf16_reduced_precision_reduction"),
    CONV_TF32,
)
