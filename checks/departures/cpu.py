"""Quirks of torch's CPU kernels (and of its implementation, wherever it runs): each probed here and now.

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

from checks.departures import Departure, Where, conventions
from checks.spec import Recipe

ALL_DEVICES = ("cpu", "cuda", "mps")
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
    tests=("tests/test_departures.py::test_a_quirk_behaves_as_declared_where_it_shows_and_as_the_math_where_it_does_not",),
    region=_odd_k_region, rule=lambda actual, expected, limit, where: np.isnan(actual), probe=_odd_k_probe,
    example=Recipe(seed=0, regime="extremal", shape=(64, 9), knobs={"out_features": 16, "bias": False}), example_dtype="bfloat16",
)


# --- native bf16 dot products flush subnormal products ----------------------------------------


def _subnormal_products(where: Where) -> np.ndarray:
    """How many of the products each element sums are nonzero bf16 subnormals."""
    x, w = where.case.inputs["input"], where.case.inputs["weight"]
    g = where.grad_output
    if where.phase == "forward":
        products = x[..., None, :] * w  # (..., out, in)
    elif where.phase == "grad[input]":
        products = np.swapaxes(g[..., :, None] * w, -1, -2)  # (..., in, out): sums over out
    elif where.phase == "grad[weight]":
        products = np.moveaxis(g.reshape(-1, w.shape[0])[:, :, None] * x.reshape(-1, w.shape[1])[:, None, :], 0, -1)
    else:
        return np.zeros((), int)
    return ((products != 0) & (np.abs(products) < BF16_TINY)).sum(axis=-1)


def _flush_rule(actual: np.ndarray, expected: np.ndarray, limit: np.ndarray, where: Where) -> np.ndarray:
    return np.abs(actual - expected) <= limit + _subnormal_products(where) * BF16_TINY


def _flush_probe(device: str) -> bool:
    row = torch.tensor([[BF16_TINY, -BF16_TINY]], dtype=torch.bfloat16)
    x = torch.cat([torch.ones(15 * 16, 2, dtype=torch.bfloat16), row]).to(device)
    w = torch.cat([torch.tensor([[-0.66015625, 0.95703125]], dtype=torch.bfloat16), torch.ones(8, 2, dtype=torch.bfloat16)]).to(device)
    return F.linear(x, w)[-1, 0].item() == 0.0  # the exact answer is -1.9e-38, a normal bf16 number


SUBNORMAL_FLUSH = Departure(
    id="bf16-dot-product-flushes-subnormals", kind="quirk", title="Native bf16 dot products flush subnormal products to zero",
    ops=("linear",), phases=("forward", "grad[input]", "grad[weight]"), dtypes=("bfloat16",), devices=("cpu",),
    what="Where oneDNN runs a bfloat16 GEMM on VDPBF16PS or AMX, each product that is a bf16 subnormal is dropped: "
         "Intel documents that these instructions always flush bf16 denormals, inputs and outputs. "
         "x = [tiny, −tiny], w = [−0.66, 0.957] gives −0.0 for a true −1.9e-38.",
    returns="the sum without its subnormal products: off by at most one smallest normal per such product",
    upstream="Intel Architecture Instruction Set Extensions Programming Reference, VDPBF16PS: 'denormal inputs and outputs are treated as zero'",
    tests=("tests/test_departures.py::test_a_quirk_behaves_as_declared_where_it_shows_and_as_the_math_where_it_does_not",),
    region=lambda where: _subnormal_products(where) > 0, rule=_flush_rule, probe=_flush_probe,
    example=Recipe(seed=0, regime="extremal", shape=(256, 16), knobs={"out_features": 16, "bias": True}), example_dtype="bfloat16",
)


# --- ELU's backward at NaN: NaN in the vectorised loop, the upstream gradient in the tail ---------


def _elu_nan_probe(device: str) -> bool:
    x = torch.full((67,), math.nan, dtype=torch.float64 if device != "mps" else torch.float32, device=device, requires_grad=True)
    F.elu(x, alpha=2.0).backward(torch.ones_like(x))
    return bool(x.grad.isnan().any())


ELU_NAN = Departure(
    id="elu-backward-nan-in-vector-loop", kind="quirk", title="ELU's gradient at NaN depends on where the NaN sits",
    ops=("elu",), phases=("grad[input]",), devices=ALL_DEVICES,
    what="torch's CPU ELU backward (cpu_kernel_vec) gives NaN for a NaN input handled by its vectorised loop but the "
         "upstream gradient for one in the scalar tail: of 67 float64 NaNs the first 64 get NaN, the last 3 get g. "
         "The reference takes the scalar rule (g), since x ≤ 0 is false for NaN.",
    returns="NaN", upstream="aten/src/ATen/native/cpu/Activation.cpp (elu_backward_kernel: the vectorised and scalar branches differ at NaN)",
    tests=("tests/test_conventions.py::test_elu_gradient_at_nan_is_nan_or_the_upstream_gradient",
           "tests/test_departures.py::test_a_quirk_behaves_as_declared_where_it_shows_and_as_the_math_where_it_does_not"),
    region=lambda where: np.isnan(where.case.inputs["input"]), rule=lambda actual, expected, limit, where: np.isnan(actual),
    probe=_elu_nan_probe,
    example=Recipe(seed=0, regime="extremal", shape=(300,), knobs={"alpha": 1.0}), example_dtype="float64",
)


# --- BCE with logits at infinite logits --------------------------------------------------------


def _any_for_reduction(where: Where, elementwise: np.ndarray) -> np.ndarray:
    """A reduced loss is in the region when any of its terms is."""
    return elementwise if where.case.params.get("reduction") == "none" else np.asarray(elementwise.any())


def _bcel_probe(device: str) -> bool:
    z = torch.tensor([-math.inf], device=device)
    return bool(F.binary_cross_entropy_with_logits(z, torch.zeros(1, device=device)).isnan())


BCEL_INFINITE = Departure(
    id="bce-with-logits-nan-at-infinite-logits", kind="quirk", title="BCE-with-logits is NaN at infinite logits",
    ops=("binary_cross_entropy_with_logits",), phases=("forward",), devices=ALL_DEVICES,
    what="torch evaluates (1 − y)·z + (1 + (pw − 1)y)(log1p(e^−|z|) + max(−z, 0)) and meets inf − inf or 0·inf at z = ±inf, "
         "where the loss has a limit: 0 at (z, y) = (−inf, 0) and (inf, 1), inf at (−inf, 1). The gradient there is right.",
    returns="NaN (and NaN for a mean or sum that includes the term)",
    upstream="aten/src/ATen/native/Loss.cpp (binary_cross_entropy_with_logits)",
    tests=("tests/test_conventions.py::test_bce_with_logits_is_nan_at_infinite_logits_where_the_limit_exists",
           "tests/test_departures.py::test_a_quirk_behaves_as_declared_where_it_shows_and_as_the_math_where_it_does_not"),
    region=lambda where: _any_for_reduction(where, np.isinf(where.case.inputs["input"])),
    rule=lambda actual, expected, limit, where: np.isnan(actual), probe=_bcel_probe,
    example=Recipe(seed=5, regime="extremal", shape=(6, 5), knobs={"pos_weight": False, "reduction": "none", "soft": True, "weight": "none"}),
)


# --- BCE's float16 gradient is float16 arithmetic ---------------------------------------------

HALF_EDGE = 2.0**-11  # float16's largest number below 1 is 1 - 2**-11


def _bce_half_region(where: Where) -> np.ndarray:
    """p within 2**-11 of 0 or 1 (the floor 1e-12 underflows, p(1 − p) is subnormal), or the
    unscaled quotient g·w·(p − y)/(p(1 − p)) past float16's range. (A subnormal g·(p − y) is the
    registry's grad scale: it happens in every dtype.)"""
    case, g = where.case, np.abs(where.grad_output)
    p, y = case.inputs["input"], case.inputs["target"]
    w = 1.0 if case.params.get("weight") is None else case.params["weight"]
    with np.errstate(all="ignore"):
        quotient = g * w * np.abs(p - y) / (p * (1 - p))
    return (p < HALF_EDGE) | (p > 1 - HALF_EDGE) | ~(quotient < 32768.0)


def _bce_half_probe(device: str) -> bool:
    p = torch.zeros(1, dtype=torch.float16, device=device, requires_grad=True)
    F.binary_cross_entropy(p, torch.zeros(1, dtype=torch.float16, device=device)).backward()
    return bool(p.grad.isnan().any())


BCE_HALF_GRADIENT = Departure(
    id="bce-float16-gradient-in-float16", kind="quirk", title="BCE's float16 gradient is computed in float16",
    ops=("binary_cross_entropy",), phases=("grad[input]",), dtypes=("float16",), devices=ALL_DEVICES,
    what="torch evaluates (g(p − y)) / max((1 − p)p, 1e-12) in float16, bit for bit, and only then applies the weight "
         "and the mean's 1/n. The floor 1e-12 underflows to 0, so p = 0 or 1 gives NaN or ±inf; below 2**-14 the "
         "denominator is subnormal and loses bits; and g·w/p overflows 65504 before "
         "the 1/n that would bring it back.",
    returns="NaN, ±inf, or a quotient that lost bits: whatever float16 arithmetic gives",
    upstream="tools/autograd/derivatives.yaml (binary_cross_entropy_backward), aten/src/ATen/native/Loss.cpp",
    tests=("tests/test_conventions.py::test_bce_gradient_in_float16_is_float16_arithmetic_in_torch",
           "tests/test_departures.py::test_a_quirk_behaves_as_declared_where_it_shows_and_as_the_math_where_it_does_not"),
    region=_bce_half_region, rule=lambda actual, expected, limit, where: np.ones(actual.shape, bool), probe=_bce_half_probe,
    example=Recipe(seed=5, regime="extremal", shape=(6, 5), knobs={"reduction": "none", "soft": False, "weight": "none"}), example_dtype="float16",
)


# --- cross-entropy's label-smoothing sum in the input dtype --------------------------------------


def _smoothing_sum_region(where: Where) -> np.ndarray:
    """Index targets with label smoothing: the rows (or, reduced, the batch) whose smoothing sum
    Σ_c w_c(−log p_c) comes within a factor 2 of the dtype's largest number."""
    import reference
    from checks.dtypes import DTYPES

    case = where.case
    x, target = case.inputs["input"], case.inputs["target"]
    if target.dtype.kind not in "iu" or not case.params.get("label_smoothing") or case.info is None or x.size == 0:
        return np.zeros((), bool)
    dim = 0 if x.ndim == 1 else 1
    w = np.ones(x.shape[dim]) if case.params.get("weight") is None else case.params["weight"]
    w = w.reshape((-1,) + (1,) * (x.ndim - dim - 1))
    with np.errstate(all="ignore"):
        rows = np.where(target != case.params.get("ignore_index", -100), -np.sum(w * reference.log_softmax(x, dim), axis=dim), 0.0)
    near = DTYPES[case.info.name].max / 2
    return rows > near if case.params.get("reduction") == "none" else np.asarray(np.sum(rows) > near)


def _smoothing_probe(device: str) -> bool:
    row = torch.tensor([[0.0] + [-1e4] * 7], dtype=torch.float16, device=device)
    return bool(F.cross_entropy(row, torch.tensor([0], device=device), label_smoothing=0.1).isinf())


SMOOTHING_OVERFLOW = Departure(
    id="label-smoothing-sum-overflows", kind="quirk", title="Cross-entropy's label-smoothing sum overflows float16",
    ops=("cross_entropy",), phases=("forward",), dtypes=("float16", "bfloat16"), devices=ALL_DEVICES,
    what="With class-index targets and label smoothing, torch sums Σ_c w_c(−log p_c) over classes (and, for a mean or "
         "sum, over the batch) in the input dtype before scaling it by ε/C: in float16 that passes 65504 (7 classes at "
         "|z| = 1e4) and the loss is inf, though it is finite (875 there). The gradient stays right.",
    returns="inf", upstream="aten/src/ATen/native/LossNLL.cpp (cross_entropy_loss_label_smoothing)",
    tests=("tests/test_conventions.py::test_float16_label_smoothing_overflows_an_intermediate_sum",
           "tests/test_departures.py::test_a_quirk_behaves_as_declared_where_it_shows_and_as_the_math_where_it_does_not"),
    region=_smoothing_sum_region, rule=lambda actual, expected, limit, where: np.isinf(actual), probe=_smoothing_probe,
    measure=conventions.float16_label_smoothing,
    example=Recipe(seed=17, regime="large", shape=(4, 8), knobs={"ignore": False, "label_smoothing": 0.1, "probabilities": False,
                                                               "reduction": "none", "weighted": False}), example_dtype="float16",
)


# --- cross-entropy with probability targets reduces in the input dtype -----------------------------


def _probability_sum_region(where: Where) -> np.ndarray:
    """Probability targets: the loss (a row, or the batch's sum before a mean divides it) whose
    terms |w_c q'_c log p_c| add up to within a factor 2 of the dtype's largest number."""
    import reference
    from checks.dtypes import DTYPES

    case = where.case
    x, q = case.inputs["input"], case.inputs["target"]
    if q.dtype.kind != "f" or case.info is None or x.size == 0:
        return np.zeros((), bool)
    dim = 0 if x.ndim == 1 else 1
    eps = case.params.get("label_smoothing", 0.0)
    w = np.ones(x.shape[dim]) if case.params.get("weight") is None else case.params["weight"]
    w = w.reshape((-1,) + (1,) * (x.ndim - dim - 1))
    with np.errstate(all="ignore"):
        rows = np.sum(np.abs(w * ((1 - eps) * q + eps / x.shape[dim]) * reference.log_softmax(x, dim)), axis=dim)
    near = DTYPES[case.info.name].max / 2
    return rows > near if case.params.get("reduction") == "none" else np.asarray(np.sum(rows) > near)


def _probability_sum_probe(device: str) -> bool:
    x = torch.tensor([[0.0, -1e4]] * 8, dtype=torch.float16, device=device)
    return bool(F.cross_entropy(x, torch.tensor([[0.0, 1.0]] * 8, dtype=torch.float16, device=device)).isinf())


PROBABILITY_SUM_OVERFLOW = Departure(
    id="probability-targets-sum-overflows", kind="quirk", title="Cross-entropy with probability targets sums the batch in float16",
    ops=("cross_entropy",), phases=("forward",), dtypes=("float16", "bfloat16"), devices=ALL_DEVICES,
    what="With probability targets torch sums the per-sample losses in the input dtype before a mean divides by N: eight "
         "float16 rows [0, −1e4] with target [0, 1] give inf where the mean is 1e4. Index targets accumulate in float32 "
         "and do not overflow. The gradient stays right.",
    returns="inf", upstream="aten/src/ATen/native/LossNLL.cpp (cross_entropy_loss_prob_target)",
    tests=("tests/test_departures.py::test_a_quirk_behaves_as_declared_where_it_shows_and_as_the_math_where_it_does_not",),
    region=_probability_sum_region, rule=lambda actual, expected, limit, where: np.isinf(actual), probe=_probability_sum_probe,
    example=Recipe(seed=0, regime="large", shape=(2, 4, 3, 3), knobs={"ignore": False, "label_smoothing": 0.0, "probabilities": True,
                                                                     "reduction": "mean", "weighted": False}), example_dtype="float16",
)


# --- float32 matmul in reduced precision (a user's setting) -----------------------------------


def _reduced_fp32_probe(device: str) -> bool:
    """Witness: x @ I is x exactly in float32, but 1 + 2**-12 rounds to 1 in bf16 and in TF32."""
    x = torch.full((64, 64), 1 + 2.0**-12, device=device)
    return bool((F.linear(x, torch.eye(64, device=device)) != x).any())


def _reduced_rule(eps: float):
    def rule(actual: np.ndarray, expected: np.ndarray, limit: np.ndarray, where: Where) -> np.ndarray:
        return np.abs(actual - expected) <= limit + eps * where.scale  # each product carries 2 input roundings

    return rule


FP32_MATMUL_REDUCED = Departure(
    id="float32-matmul-in-reduced-precision", kind="quirk", title="float32 matmuls computed in bf16 or TF32",
    ops=("linear",), phases=("forward", "grad[input]", "grad[weight]"), dtypes=("float32",), devices=("cpu", "cuda"),
    what="torch.set_float32_matmul_precision('high'/'medium'), torch.backends.mkldnn.matmul.fp32_precision = 'bf16'/'tf32' "
         "(a CPU with native bf16/AMX) or torch.backends.cuda.matmul.allow_tf32 = True (the TF32 tensor cores of an "
         "Ampere or later GPU) round float32 inputs to 8 or 10 mantissa bits inside the matmul.",
    returns="a float32 result with bf16 accuracy: off by up to 2**-8 of Σ|w x| + |b|",
    upstream="https://pytorch.org/docs/stable/notes/cuda.html#tensorfloat-32-tf32-on-ampere-and-later-devices; torch.set_float32_matmul_precision",
    tests=("tests/test_departures.py::test_a_quirk_behaves_as_declared_where_it_shows_and_as_the_math_where_it_does_not",),
    region=lambda where: np.ones((), bool), rule=_reduced_rule(2.0**-8), probe=_reduced_fp32_probe,
    example=Recipe(seed=0, regime="normal", shape=(64, 16), knobs={"out_features": 16, "bias": True}),
)

DECLARED = (ODD_K_INF_NAN, SUBNORMAL_FLUSH, ELU_NAN, BCEL_INFINITE, BCE_HALF_GRADIENT, SMOOTHING_OVERFLOW, PROBABILITY_SUM_OVERFLOW, FP32_MATMUL_REDUCED)
