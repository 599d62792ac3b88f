"""Quirks of torch's implementation of the losses and activations: arithmetic done in an order or a
dtype the math does not need. Not tied to a CPU, but not documented either, so each is probed on
every device: an upgrade that fixes one shows up as a quirk that disappeared.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

import reference
from reference._validation import reduce_backward
from reference.divergence import reduction_of
from checks.departures import BOTH_WAYS, Departure, Map, Where, conventions, returns_inf, returns_nan
from checks.dtypes import DTYPES
from checks.spec import Case, Recipe

ALL_DEVICES = ("cpu", "cuda", "mps")


# --- ELU's backward at NaN: NaN in the vectorised loop, the upstream gradient in the tail ---------


def _gradient_at_nans(op, device: str) -> torch.Tensor:
    """``op``'s gradient at 67 NaNs (64 for the vectorised loop, 3 for the scalar tail), upstream 1."""
    x = torch.full((67,), math.nan, dtype=torch.float64 if device != "mps" else torch.float32, device=device, requires_grad=True)
    op(x).backward(torch.ones_like(x))
    return x.grad


def _elu_nan_probe(device: str) -> bool:
    return bool(_gradient_at_nans(lambda x: F.elu(x, alpha=2.0), device).isnan().any())


ELU_NAN = Departure(
    id="elu-backward-nan-in-vector-loop", kind="quirk", title="ELU's gradient at NaN depends on where the NaN sits",
    ops=("elu",), phases=("grad[input]",), devices=ALL_DEVICES,
    what="torch's CPU ELU backward (cpu_kernel_vec) gives NaN for a NaN input handled by its vectorised loop but the "
         "upstream gradient for one in the scalar tail: of 67 float64 NaNs the first 64 get NaN, the last 3 get g. "
         "The reference takes the scalar rule (g), since x ≤ 0 is false for NaN.",
    returns="NaN", upstream="aten/src/ATen/native/cpu/Activation.cpp (elu_backward_kernel: the vectorised and scalar branches differ at NaN)",
    tests=("tests/test_conventions.py::test_elu_gradient_at_nan_is_nan_or_the_upstream_gradient",
           BOTH_WAYS),
    # NaN on either side: torch's own answer at NaN is NaN or g, so a learner's function that
    # propagates NaN (checks/learner) gives one of torch's answers too.
    region=lambda where: np.isnan(where.case.inputs["input"]), rule=lambda actual, expected, limit, where: np.isnan(actual) | np.isnan(expected),
    probe=_elu_nan_probe,
    example=Recipe(seed=0, regime="extremal", shape=(300,), knobs={"alpha": 1.0}), example_dtype="float64",
)


# --- Hardtanh's backward at NaN: 0 in the vectorised loop, the upstream gradient in the tail -------


def _hardtanh_nan_probe(device: str) -> bool:
    return bool((_gradient_at_nans(F.hardtanh, device) == 0).any())


HARDTANH_NAN = Departure(
    id="hardtanh-backward-nan-in-vector-loop", kind="quirk", title="Hardtanh's gradient at NaN depends on where the NaN sits",
    ops=("hardtanh",), phases=("grad[input]",), devices=ALL_DEVICES,
    what="torch's CPU hardtanh backward gives 0 for a NaN input handled by its vectorised loop and the upstream gradient g "
         "for one in the scalar tail (x <= min_val or x >= max_val is false for NaN): 40 NaNs in a row get 0, a single one g. "
         "The reference takes the scalar rule (g).",
    returns="0", upstream="aten/src/ATen/native/cpu/Activation.cpp (hardtanh_backward_kernel: the vectorised and scalar branches differ at NaN)",
    tests=("tests/test_conventions.py::test_hardtanh_gradient_at_nan_is_zero_or_the_upstream_gradient", BOTH_WAYS),
    # 0 (torch's vector loop), or NaN on either side, as for ELU: a learner's NaN is one of the answers too.
    region=lambda where: np.isnan(where.case.inputs["input"]),
    rule=lambda actual, expected, limit, where: (actual == 0) | np.isnan(actual) | np.isnan(expected),
    probe=_hardtanh_nan_probe,
    example=Recipe(seed=0, regime="extremal", shape=(300,), knobs={"min_val": -1.0, "max_val": 1.0}), example_dtype="float64",
)


# --- SiLU in float32: x / (1 + exp(-x)) is -0 once exp(-x) overflows ------------------------------

EXP_OVERFLOWS = {"float64": -math.log(float(np.finfo(np.float64).max))}  # -709.78; the others compute in float32
EXP_OVERFLOWS_FLOAT32 = -math.log(float(np.finfo(np.float32).max))  # -88.72


def _silu_probe(device: str) -> bool:
    return bool(F.silu(torch.tensor([-89.0], device=device)) == 0)


SILU_EXP_OVERFLOW = Departure(
    id="silu-float32-exp-overflow", kind="quirk", title="SiLU is −0 below x = −88.72 (float32) or −709.78 (float64), where the truth is still normal",
    ops=("silu",), phases=("forward",), dtypes=("float32", "bfloat16", "float64"), devices=ALL_DEVICES,
    what="torch evaluates x / (1 + exp(−x)) in float32 (bfloat16 computes in float32 too): exp(−x) overflows below "
         "x = −88.72 and the quotient is −0, where the true x·σ(x) ≈ x·eˣ is a normal float32 down to about x = −95 "
         "(−3.2e-37 at x = −88.5, torch's last nonzero value). float64 does the same below x = −709.78. "
         "The gradient there is within its scale.",
    returns="−0", upstream="aten/src/ATen/native/cpu/Activation.cpp (silu_kernel: x / (1 + exp(-x)))",
    tests=("tests/test_conventions.py::test_silu_is_zero_in_float32_where_exp_overflows", BOTH_WAYS),
    region=lambda where: where.case.inputs["input"] < EXP_OVERFLOWS.get(where.case.info.name if where.case.info else "", EXP_OVERFLOWS_FLOAT32),
    rule=lambda actual, expected, limit, where: actual == 0,
    probe=_silu_probe,
    example=Recipe(seed=0, regime="large", shape=(3, 5, 8), knobs={}), example_dtype="float32",
)


# --- kl_div's target gradient, taken through xlogy's backward ---------------------------------------


def _kl_spread(where: Where) -> np.ndarray:
    """The upstream gradient each element of kl_div receives (1/N for 'mean', 1/size(0) for 'batchmean')."""
    shape = where.case.inputs["input"].shape
    return np.abs(reduce_backward(where.grad_output, shape, *reduction_of(where.case.params["reduction"], shape)))


def _kl_subnormal_probe(device: str) -> bool:
    t = torch.tensor([5e-324], dtype=torch.float64 if device != "mps" else torch.float32, device=device, requires_grad=True)
    F.kl_div(torch.full_like(t, -2.0).detach(), t, reduction="none").backward(torch.full_like(t, 0.3))
    return bool(abs(float(t.grad) - 0.3 * (math.log(5e-324) + 3.0)) > 0.1)


KL_TARGET_SUBNORMAL = Departure(
    id="kl-div-target-gradient-subnormal-product", kind="quirk", title="kl_div's target gradient loses its +1 where g·t is subnormal",
    ops=("kl_div",), phases=("grad[target]",), devices=ALL_DEVICES,
    what="torch builds kl_div from xlogy(t, t) − t·x, so autograd takes the target's gradient through xlogy's backward, "
         "g·log t + (g·t)/t. Where g·t is subnormal in the dtype it has lost bits (or is 0), and (g·t)/t is anywhere "
         "between 0 and 2g instead of g: the +1 of log t + 1 − x is off by up to one upstream gradient.",
    returns="the gradient off by up to |g|", upstream="tools/autograd/derivatives.yaml (xlogy: other: grad * self / other)",
    tests=("tests/test_conventions.py::test_kl_div_target_gradient_loses_the_one_where_g_times_t_is_subnormal", BOTH_WAYS),
    region=lambda where: (not where.case.params["log_target"]) & (where.case.inputs["target"] > 0)
    & (_kl_spread(where) * np.abs(where.case.inputs["target"]) < 2 * where.case.info.tiny),
    rule=lambda actual, expected, limit, where: np.abs(actual - expected) <= _kl_spread(where) + limit,
    probe=_kl_subnormal_probe,
    example=Recipe(seed=0, regime="extremal", shape=(1,), knobs={"reduction": "none", "log_target": False}), example_dtype="float64",
)


def _kl_overflow_probe(device: str) -> bool:
    s = torch.tensor([-1.0], device=device, requires_grad=True)
    F.kl_div(torch.tensor([-3e38], device=device), s, reduction="none", log_target=True).backward(torch.tensor([2.0], device=device))
    return bool(s.grad.isinf().any())


KL_LOG_TARGET_OVERFLOW = Departure(
    id="kl-div-log-target-gradient-overflows", kind="quirk", title="kl_div's log-target gradient overflows before e^s brings it back",
    ops=("kl_div",), phases=("grad[target]",), devices=ALL_DEVICES,
    what="With log_target=True the target's gradient g·e^s(s − x + 1) is formed as g·(s − x) first, in the dtype: "
         "where that product passes the dtype's maximum it is ±inf, though e^s ≤ 1 would bring the true value back in range.",
    returns="±inf", upstream="tools/autograd/derivatives.yaml (exp and mul: the backward of e^s·(s − x), in the input dtype)",
    tests=("tests/test_conventions.py::test_kl_div_log_target_gradient_overflows_in_the_dtype", BOTH_WAYS),
    region=lambda where: where.case.params["log_target"]
    & (_kl_spread(where) * (np.abs(where.case.inputs["target"] - where.case.inputs["input"]) + 1) > where.case.info.max / 2),
    rule=returns_inf, probe=_kl_overflow_probe,
    example=Recipe(seed=0, regime="extremal", shape=(3, 5), knobs={"reduction": "none", "log_target": True}), example_dtype="bfloat16",
)


def _kl_subnormal_exp(where: Where) -> np.ndarray:
    """Elements whose e^s is below the dtype's smallest normal: torch holds it with fewer bits, or 0."""
    return where.case.params["log_target"] & (np.exp(where.case.inputs["target"]) < where.case.info.tiny)


def _kl_subnormal_exp_rule(actual, expected, limit, where: Where) -> np.ndarray:
    """NaN (0·inf at x = −inf), or off by at most the subnormal's spacing times |s − x| + 1 (times g)."""
    x, t = where.case.inputs["input"], where.case.inputs["target"]
    with np.errstate(all="ignore"):
        slack = np.where(_kl_subnormal_exp(where), (np.abs(t - x) + 1.0) * where.case.info.subnormal, 0.0)
        if where.phase != "forward":
            slack = slack * _kl_spread(where)
        elif where.case.params["reduction"] != "none":
            how, divisor = reduction_of(where.case.params["reduction"], x.shape)
            slack = np.sum(slack) / (1 if how == "sum" else max(x.size if divisor is None else divisor, 1))
        return np.isnan(actual) | (np.abs(actual - expected) <= 2 * slack + limit)


def _kl_sum_probe(device: str) -> bool:
    x = torch.full((2, 50), -1000.0, dtype=torch.float16, device=device)
    return bool(F.kl_div(x, torch.ones_like(x), reduction="batchmean").isinf())


def _kl_sum_overflows(where: Where) -> np.ndarray:
    if where.case.params["reduction"] not in ("mean", "batchmean"):
        return np.asarray(False)
    with np.errstate(all="ignore"):
        terms = reference.kl_div(where.case.inputs["input"], where.case.inputs["target"], reduction="none", log_target=where.case.params["log_target"])
        return np.asarray(abs(np.sum(terms)) > where.case.info.max)


KL_SUM_OVERFLOW = Departure(
    id="kl-div-sum-overflows-before-dividing", kind="quirk", title="kl_div's batchmean (and float64 mean) overflow in the sum",
    ops=("kl_div",), phases=("forward",), devices=ALL_DEVICES,
    what="'batchmean' is sum(terms) / size(0) with the sum held in the dtype, so it is inf wherever the sum passes the "
         "dtype's maximum, though the quotient fits (float16: 100 terms of 1000 over a batch of 2 give inf, not 50000). "
         "float64's 'mean' does the same; float16's 'mean' accumulates in float32 and does not.",
    returns="inf", upstream="torch/nn/functional.py (kl_div: reduced.sum() / input.size(0) for 'batchmean')",
    tests=("tests/test_conventions.py::test_kl_div_batchmean_sums_in_the_dtype_before_dividing", BOTH_WAYS),
    region=_kl_sum_overflows, rule=returns_inf, probe=_kl_sum_probe,
    example=Recipe(seed=0, regime="large", shape=(4, 4, 4), knobs={"reduction": "batchmean", "log_target": False}), example_dtype="float16",
)


def _weighted_probe(device: str) -> bool:
    x = torch.tensor([300.0, 1.0], dtype=torch.float16, device=device)
    return bool(F.mse_loss(x, torch.zeros_like(x), weight=torch.tensor([0.0, 1.0], dtype=torch.float16, device=device), reduction="none")[0].isnan())


def _weighted_overflows(where: Where) -> np.ndarray:
    """Where a weighted loss passes the dtype's maximum before its end: x − y, the term, the term times
    its weight, or (a reduction) the weighted sum."""
    case = where.case
    weight = case.params.get("weight")
    if weight is None:
        return np.asarray(False)
    x, y = case.inputs["input"], case.inputs["target"]
    params = {k: v for k, v in case.params.items() if k not in ("weight", "reduction")}
    with np.errstate(all="ignore"):
        terms = getattr(reference, where.op)(x, y, reduction="none", **params)
        weighted = terms * weight
        elementwise = (np.abs(x - y) > case.info.max) | (terms > case.info.max) | (np.abs(weighted) > case.info.max)
        if case.params["reduction"] == "none":
            return elementwise
        return np.asarray(elementwise.any() | (abs(np.sum(weighted)) > case.info.max))


def _inf_or_nan(actual, expected, limit, where: Where) -> np.ndarray:
    """inf where a term overflowed; NaN where that inf met a zero weight (inf·0) or its negative."""
    return ~np.isfinite(actual)


WEIGHTED_OVERFLOW = Departure(
    id="weighted-loss-overflows-in-the-dtype", kind="quirk", title="A weighted MSE, L1 or Huber loss computes its terms in the dtype",
    ops=("mse_loss", "l1_loss", "huber_loss"), phases=("forward",), devices=ALL_DEVICES,
    what="With ``weight``, torch 2.13 computes (x − y)², |x − y| or the Huber term, then its product with the weight and "
         "their sum, each rounded to the dtype (a Python composite, not the fused kernel). A term past the dtype's maximum "
         "is inf even where its weight is small, and NaN where the weight is 0 (float16: 300² · 0 = inf · 0), though the "
         "weighted term is finite; a weighted sum past the maximum is inf though the mean fits.",
    returns="inf or NaN", upstream="torch/nn/functional.py (mse_loss, l1_loss, huber_loss: the `weight is not None` branch)",
    tests=("tests/test_conventions.py::test_a_weighted_mse_is_nan_where_a_term_overflows_under_a_zero_weight", BOTH_WAYS),
    region=_weighted_overflows, rule=_inf_or_nan, probe=_weighted_probe,
    example=Recipe(seed=0, regime="large", shape=(3, 7), knobs={"reduction": "mean", "weighted": True}), example_dtype="float16",
)


def _kl_nan_probe(device: str) -> bool:
    x = torch.tensor([-math.inf], dtype=torch.bfloat16, device=device)
    return bool(F.kl_div(x, torch.full_like(x, -100.0), reduction="none", log_target=True).isnan().any())


KL_LOG_TARGET_SUBNORMAL_EXP = Departure(
    id="kl-div-log-target-rounds-exp-to-the-dtype", kind="quirk", title="kl_div with a log target rounds e^s to the dtype, subnormals included",
    ops=("kl_div",), phases=("forward", "grad[target]"), devices=ALL_DEVICES,
    what="torch evaluates e^s·(s − x) with e^s rounded to the dtype. Where e^s is below the smallest normal it keeps "
         "fewer bits (bfloat16: e^-92 = 1.1e-40 becomes 9.2e-41), and the factor s − x, up to 1e4 and more, carries that "
         "error into a normal result (9.1e-37 instead of 1.1e-36); where e^s underflows to 0 and x = −inf it is 0·inf = NaN, "
         "though the term's limit is +inf.",
    returns="NaN, or a result off by the subnormal's spacing times |s − x| + 1", upstream="aten/src/ATen/native/Loss.cpp (kl_div: exp(target) * (target - input))",
    tests=("tests/test_conventions.py::test_kl_div_log_target_is_nan_at_minus_inf_where_exp_underflows", BOTH_WAYS),
    region=lambda where: _any_for_reduction(where, _kl_subnormal_exp(where)) if where.phase == "forward" else _kl_subnormal_exp(where),
    rule=_kl_subnormal_exp_rule, probe=_kl_nan_probe,
    example=Recipe(seed=0, regime="extremal", shape=(5, 5), knobs={"reduction": "none", "log_target": True}), example_dtype="bfloat16",
)


# --- rms_norm's eps=None in float16 and bfloat16 --------------------------------------------------

FLOAT32_EPS = float(np.finfo(np.float32).eps)


def _rms_eps_probe(device: str) -> bool:
    x = torch.tensor([1e-4, 2e-4], dtype=torch.float16, device=device)
    return bool((F.rms_norm(x, (2,)) - F.rms_norm(x, (2,), eps=FLOAT32_EPS)).abs().max() == 0)


def _rms_eps_rule(actual, expected, limit, where: Where) -> np.ndarray:
    """torch's value is the one eps = float32's machine epsilon gives (to the policy's bound at its size)."""
    case = where.case
    args = (case.inputs["input"], case.params["normalized_shape"], case.params["weight"], FLOAT32_EPS)
    with np.errstate(all="ignore"):
        if where.phase == "forward":
            alternative = reference.rms_norm(*args)
        else:
            alternative = dict(zip(("grad[input]", "grad[weight]"), reference.rms_norm_backward(where.grad_output, *args)))[where.phase]
    return np.abs(actual - alternative) <= limit + 8 * case.info.eps * np.abs(alternative)


RMS_NORM_DEFAULT_EPS = Departure(
    id="rms-norm-default-eps-is-float32s", kind="quirk", title="rms_norm's eps=None is float32's epsilon for float16 and bfloat16 inputs",
    ops=("rms_norm",), phases=("forward", "grad[input]", "grad[weight]"), dtypes=("float16", "bfloat16"), devices=ALL_DEVICES,
    what="The documentation says eps=None means torch.finfo(input.dtype).eps (9.8e-4 for float16, 7.8e-3 for bfloat16); "
         "torch uses the epsilon of the type it computes in, float32's 1.2e-7. Rows whose mean square is not far above "
         "1e-3 come out measurably different: [1e-4, 2e-4] in float16 normalises to [0.263, 0.527], not [0.0032, 0.0064].",
    returns="the result for eps = 1.19e-7", upstream="https://pytorch.org/docs/stable/generated/torch.nn.functional.rms_norm.html; aten/src/ATen/native/layer_norm.cpp (rms_norm: std::numeric_limits<opmath_t>::epsilon())",
    tests=("tests/test_conventions.py::test_rms_norm_default_eps_is_float32s_for_float16", BOTH_WAYS),
    region=lambda where: np.broadcast_to(np.asarray(where.case.params["eps"] is None), np.shape(where.scale)),
    rule=_rms_eps_rule, probe=_rms_eps_probe,
    example=Recipe(seed=0, regime="small", shape=(1,), knobs={"dims": 1, "affine": False, "eps": None}), example_dtype="float16",
)


# --- embedding's max_norm: the row's norm in the dtype -----------------------------------------------


def _embedding_norm_overflows(where: Where) -> np.ndarray:
    """Output elements of a looked-up row whose sum of |x|^p passes the dtype's maximum (inf included)."""
    p, t, w = where.case.params, where.case.inputs["input"], where.case.inputs["weight"]
    if p.get("max_norm") is None or where.phase != "forward":
        return np.zeros(np.shape(where.scale), dtype=bool)
    with np.errstate(all="ignore"):
        powers = np.sum(np.abs(w) ** float(p["norm_type"]), axis=1)
    return np.broadcast_to((~(powers <= where.case.info.max))[t][..., None], t.shape + (w.shape[1],))


def _embedding_norm_probe(device: str) -> bool:
    w = torch.tensor([[3e38, 3e38]], device=device)
    return bool((F.embedding(torch.tensor([0], device=device), w, max_norm=1.0) == 0).all())


EMBEDDING_NORM_OVERFLOW = Departure(
    id="embedding-max-norm-overflows-in-the-dtype", kind="quirk", title="embedding's max_norm zeroes a row whose norm overflows the dtype",
    ops=("embedding",), phases=("forward",), devices=ALL_DEVICES,
    what="max_norm renormalises a row by max_norm / (‖W_i‖ + 1e-7) with the norm computed in the weight's dtype as "
         "(Σ|x|^p)^(1/p): where the sum of powers overflows (a float32 row with |x| > 1.8e19 for p = 2) the norm is inf and "
         "the row becomes 0, where the math gives the row scaled to norm max_norm. (A row holding inf or NaN has no norm: "
         "0 or NaN on both sides.)",
    returns="0 for the whole row", upstream="aten/src/ATen/native/Embedding.cpp (embedding_renorm_: norm in the weight's dtype)",
    tests=("tests/test_conventions.py::test_embedding_max_norm_zeroes_a_row_whose_norm_overflows", BOTH_WAYS),
    region=_embedding_norm_overflows, rule=lambda actual, expected, limit, where: (actual == 0) | np.isnan(actual) | np.isnan(expected),
    probe=_embedding_norm_probe,
    example=Recipe(seed=24022, regime="extremal", shape=(), knobs={"num_embeddings": 4, "embedding_dim": 4, "padding_idx": None, "max_norm": 1.0,
                                                                    "norm_type": 2.0, "scale_grad_by_freq": False}),
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
           BOTH_WAYS),
    # NaN at z = -inf (any y) and at z = +inf with y = 1 (0 * inf); (+inf, y < 1) is a correct inf.
    region=lambda where: _any_for_reduction(where, (where.case.inputs["input"] == -np.inf) | ((where.case.inputs["input"] == np.inf) & (where.case.inputs["target"] == 1))),
    rule=returns_nan, probe=_bcel_probe,
    example=Recipe(seed=5, regime="extremal", shape=(6, 5), knobs={"pos_weight": False, "reduction": "none", "soft": True, "weight": "none"}),
)


# --- BCE's float16 gradient is float16 arithmetic ---------------------------------------------

SUBNORMAL_EDGE = 2.0**-14  # float16's smallest normal: below it p(1 - p) is subnormal


def _bce_half_region(where: Where) -> np.ndarray:
    """p = 0 or 1 (the floor 1e-12 underflows to 0), p below 2**-14 (p(1 − p) is subnormal), or the
    unscaled quotient g·w·(p − y)/(p(1 − p)) past half float16's range. (A subnormal g·(p − y) is
    the registry's grad scale: it happens in every dtype.)"""
    case, g = where.case, np.abs(where.grad_output)
    p, y = case.inputs["input"], case.inputs["target"]
    w = 1.0 if case.params.get("weight") is None else case.params["weight"]
    with np.errstate(all="ignore"):
        quotient = g * w * np.abs(p - y) / (p * (1 - p))
    return (p < SUBNORMAL_EDGE) | (p == 1) | ~(quotient < 32768.0)


def _bce_half_rule(actual: np.ndarray, expected: np.ndarray, limit: np.ndarray, where: Where) -> np.ndarray:
    """NaN or ±inf, or a finite quotient that lost bits but kept its sign and size (within 2x)."""
    with np.errstate(all="ignore"):
        return ~np.isfinite(actual) | ((np.sign(actual) == np.sign(expected)) & (np.abs(actual) <= 2 * np.abs(expected) + limit)
                                       & (np.abs(actual) >= np.abs(expected) / 2 - limit))


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
    returns="NaN or ±inf, or a quotient that lost bits (same sign, within a factor 2)",
    upstream="tools/autograd/derivatives.yaml (binary_cross_entropy_backward), aten/src/ATen/native/Loss.cpp",
    tests=("tests/test_conventions.py::test_bce_gradient_in_float16_is_float16_arithmetic_in_torch",
           BOTH_WAYS),
    region=_bce_half_region, rule=_bce_half_rule, probe=_bce_half_probe,
    example=Recipe(seed=5, regime="extremal", shape=(6, 5), knobs={"reduction": "none", "soft": False, "weight": "none"}), example_dtype="float16",
)


# --- cross-entropy's label-smoothing sum in the input dtype --------------------------------------


def _class_weights(case: Case) -> tuple[np.ndarray, int, np.ndarray]:
    """The logits' class dimension, the class weights shaped to broadcast along it, and log p."""
    x = case.inputs["input"]
    dim = 0 if x.ndim == 1 else 1
    w = np.ones(x.shape[dim]) if case.params.get("weight") is None else case.params["weight"]
    with np.errstate(all="ignore"):
        return w.reshape((-1,) + (1,) * (x.ndim - dim - 1)), dim, reference.log_softmax(x, dim)


def _near_overflow(case: Case, rows: np.ndarray) -> np.ndarray:
    """Rows (reduction 'none') or their sum (a mean or sum) within a factor 2 of the dtype's maximum."""
    near = DTYPES[case.info.name].max / 2 if case.info is not None else np.inf
    return rows > near if case.params.get("reduction") == "none" else np.asarray(np.sum(rows) > near)


def _smoothing_sum_region(where: Where) -> np.ndarray:
    """Index targets with label smoothing: the rows (or, reduced, the batch) whose smoothing sum
    Σ_c w_c(−log p_c) comes within a factor 2 of the dtype's largest number."""
    case = where.case
    target = case.inputs["target"]
    if target.dtype.kind not in "iu" or not case.params.get("label_smoothing") or case.inputs["input"].size == 0:
        return np.zeros((), bool)
    w, dim, logp = _class_weights(case)
    rows = np.where(target != case.params.get("ignore_index", -100), -np.sum(w * logp, axis=dim), 0.0)
    return _near_overflow(case, rows)


def _smoothing_probe(device: str) -> bool:
    row = torch.tensor([[0.0] + [-1e4] * 7], dtype=torch.float16, device=device)
    return bool(F.cross_entropy(row, torch.tensor([0], device=device), label_smoothing=0.1).isinf())


def _float16_label_smoothing() -> Map:
    m = np.linspace(100, 12000, 120)
    eps = 0.1
    rows = np.zeros((len(m), 8))
    rows[:, 1:] = -m[:, None]
    target = np.zeros(len(m), dtype=np.int64)
    theirs = F.cross_entropy(torch.tensor(rows, dtype=torch.float16), torch.tensor(target), label_smoothing=eps, reduction="none").double().numpy()
    ours = reference.cross_entropy(rows, target, label_smoothing=eps, reduction="none")
    first_inf = m[np.isinf(theirs)].min()
    return Map(m.tolist(), {"reference (exact for these float16 inputs)": conventions.finite(ours), "torch float16 (inf drawn as a gap)": conventions.finite(theirs)},
               "|z| of 7 wrong-class logits (target logit 0, ε = 0.1)", "loss",
               f"torch's float16 loss is inf from |z| = {first_inf:.0f}: it sums Σ_c w_c(−log p_c) in float16 (> 65504) before scaling by ε/C, though the loss is finite", "linear", "linear")


SMOOTHING_OVERFLOW = Departure(
    id="label-smoothing-sum-overflows", kind="quirk", title="Cross-entropy's label-smoothing sum overflows float16",
    ops=("cross_entropy",), phases=("forward",), dtypes=("float16", "bfloat16"), devices=ALL_DEVICES,
    what="With class-index targets and label smoothing, torch sums Σ_c w_c(−log p_c) over classes (and, for a mean or "
         "sum, over the batch) in the input dtype before scaling it by ε/C: in float16 that passes 65504 (7 classes at "
         "|z| = 1e4) and the loss is inf, though it is finite (875 there). The gradient stays right.",
    returns="inf", upstream="aten/src/ATen/native/LossNLL.cpp (cross_entropy_loss_label_smoothing)",
    tests=("tests/test_conventions.py::test_float16_label_smoothing_overflows_an_intermediate_sum",
           BOTH_WAYS),
    region=_smoothing_sum_region, rule=returns_inf, probe=_smoothing_probe,
    measure=_float16_label_smoothing,
    example=Recipe(seed=17, regime="large", shape=(4, 8), knobs={"ignore": False, "label_smoothing": 0.1, "probabilities": False,
                                                               "reduction": "none", "weighted": False}), example_dtype="float16",
)


# --- cross-entropy with probability targets reduces in the input dtype -----------------------------


def _probability_sum_region(where: Where) -> np.ndarray:
    """Probability targets: the loss (a row, or the batch's sum before a mean divides it) whose
    terms |w_c q'_c log p_c| add up to within a factor 2 of the dtype's largest number."""
    case = where.case
    x, q = case.inputs["input"], case.inputs["target"]
    if q.dtype.kind != "f" or x.size == 0:
        return np.zeros((), bool)
    eps = case.params.get("label_smoothing", 0.0)
    w, dim, logp = _class_weights(case)
    with np.errstate(all="ignore"):
        rows = np.sum(np.abs(w * ((1 - eps) * q + eps / x.shape[dim]) * logp), axis=dim)
    return _near_overflow(case, rows)


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
    tests=(BOTH_WAYS,),
    region=_probability_sum_region, rule=returns_inf, probe=_probability_sum_probe,
    example=Recipe(seed=0, regime="large", shape=(2, 4, 3, 3), knobs={"ignore": False, "label_smoothing": 0.0, "probabilities": True,
                                                                     "reduction": "mean", "weighted": False}), example_dtype="float16",
)

# --- GELU's tanh approximation: x squared overflows float32 in the backward ------------------------

OVERFLOWS_SQUARED = {"float64": 2.0**512}  # float32 (and bfloat16, computed in float32) overflow past 2**64


def _gelu_tanh_probe(device: str) -> bool:
    x = torch.tensor([1e20], device=device, requires_grad=True)
    F.gelu(x, approximate="tanh").backward(torch.ones_like(x))
    return bool(x.grad.isnan().any())


GELU_TANH_OVERFLOW = Departure(
    id="gelu-tanh-gradient-overflows-x-squared", kind="quirk", title="GELU-tanh's gradient is NaN where x² overflows",
    ops=("gelu",), phases=("grad[input]",), devices=ALL_DEVICES,
    what="torch's backward of gelu(approximate='tanh') computes x², then 1 − tanh²u and their product in float32 "
         "(bfloat16 computes in float32 too): past |x| = 2**64 the square is inf, tanh²u is exactly 1, and 0·inf is NaN. "
         "float64 does the same past |x| = 2**512. "
         "The math has a limit there: the gradient is g for x → +inf and 0 for x → −inf. In float16 only ±inf is that large.",
    returns="NaN", upstream="aten/src/ATen/native/cpu/Activation.cpp (GeluBackwardKernelImpl, tanh branch: x_sq = x * x in opmath)",
    tests=("tests/test_conventions.py::test_gelu_tanh_gradient_is_nan_where_x_squared_overflows_float32", BOTH_WAYS),
    region=lambda where: (where.case.params.get("approximate") == "tanh")
    & (np.abs(where.case.inputs["input"]) > OVERFLOWS_SQUARED.get(where.case.info.name if where.case.info else "", 2.0**64)),
    rule=returns_nan, probe=_gelu_tanh_probe,
    example=Recipe(seed=1, regime="extremal", shape=(4, 4), knobs={"approximate": "tanh"}), example_dtype="float32",
)


DECLARED = (ELU_NAN, HARDTANH_NAN, SILU_EXP_OVERFLOW, KL_TARGET_SUBNORMAL, KL_LOG_TARGET_OVERFLOW, KL_LOG_TARGET_SUBNORMAL_EXP, KL_SUM_OVERFLOW, RMS_NORM_DEFAULT_EPS, EMBEDDING_NORM_OVERFLOW, WEIGHTED_OVERFLOW, BCEL_INFINITE, BCE_HALF_GRADIENT, SMOOTHING_OVERFLOW, PROBABILITY_SUM_OVERFLOW, GELU_TANH_OVERFLOW)
