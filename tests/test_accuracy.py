"""Who is more accurate, measured against the 50-digit oracle (reference/oracle.py).

The reference computes in float64 and must be within a few float64 ULPs of the truth; in every
dtype it must be no less accurate than torch (in float64, where both compute in the same precision,
up to the 1-ULP resolution of two results rounded to the same grid); and the tolerance
policy's k must cover torch's measured error against the truth, not just against the reference.
(In float64 "no less accurate" holds to the 1-ULP resolution of comparing two float64 results.)
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import settings

import reference
from checks import dtypes
from checks.accuracy import measure_named
from checks.registry import REGISTRY
from checks.runner import unsupported
from checks.tolerance import k_for
from reference import facts, oracle

EXAMPLES = 120 if settings.get_current_profile_name() == "thorough" else 5  # the oracle is slow: the measurement proper is thorough's
# The reference carries its sums in np.longdouble, probed here rather than assumed: 64 mantissa bits
# on x86 Linux (a sum rounds once, at the end: the bounds above), but only float64's 52 on Windows and
# macOS-arm64, where recursive summation of n terms can be off by n/2 float64 ULPs. The draws sum
# at most 16 terms (Linear's in_features), so a float64 longdouble adds up to 8.
LONGDOUBLE_BITS = int(np.finfo(np.longdouble).nmant)
SUMMATION_SLACK = 0.0 if LONGDOUBLE_BITS >= 63 else 16 / 2
# The declared bounds count each libm result (exp, log, log1p, expm1, tanh) as correctly rounded to
# half an ULP, as glibc's are. On a CPU with AVX512F numpy runs its own vectorised float64 exp and log
# (SVML-derived expm1, log1p, tanh on AVX512_SKX), which its validation sets
# (numpy/_core/tests/data/umath-validation-set-*.csv) allow 1 ULP: half an ULP more per result, times
# the results an output depends on (facts.libm: 2 for BCE-with-logits' gradient, sigma(z) and sigma(-z);
# 3 for mish, tanh of log1p of exp). An AVX-512 Zen 4 measured BCE-with-logits' gradient (bfloat16
# inputs) at exactly 3.00 float64 ULPs against the 2.5 declared for correctly rounded exps.
NUMPY_SIMD_LIBM = bool(getattr(np._core._multiarray_umath, "__cpu_features__", {}).get("AVX512F", False))
LIBM_SLACK = 0.5 if NUMPY_SIMD_LIBM else 0.0  # per libm result


def reference_bound(name: str) -> float:
    """The reference's own float64 error bound against the truth (declared beside it,
    reference/facts.py), for this machine's longdouble and numpy's libm."""
    declared = facts.of(name)
    return declared.accuracy + (SUMMATION_SLACK if declared.sums else 0.0) + LIBM_SLACK * declared.libm

# Each cell is measured once, in the worker beside the suite (conftest.py), for both tests below.
CELLS = [pytest.param(spec, dtype, marks=pytest.mark.beside(measure_named, spec.name, dtype, EXAMPLES), id=f"{spec.name}-{dtype}")
         for spec in REGISTRY if spec.differentiable for dtype in ("float16", "bfloat16", "float32", "float64")]


def _measure(beside, spec, dtype):
    reason = unsupported(spec.name, "cpu", dtype)
    if reason:
        pytest.skip(reason)
    return beside


@pytest.mark.parametrize("spec, dtype", CELLS)
def test_reference_is_accurate_and_no_less_accurate_than_torch(beside, spec, dtype):
    acc = _measure(beside, spec, dtype)
    assert acc.cases > 0
    bound = reference_bound(spec.name)
    for phase in ("forward", "gradient"):
        own = acc.reference_f64[phase].floored
        assert own <= bound, f"{spec.name} {phase}: the reference is {own:.2f} float64 ULPs from the truth (bound {bound})"
        ours, theirs = acc.reference[phase].floored, acc.torch[phase].floored
        # In float64 both sides and the truth are rounded to the same grid: each is within half an
        # ULP of the real value, so two correctly rounded answers can sit 1 ULP apart; and numpy's
        # SIMD libm may cost the reference half an ULP per result where torch calls glibc.
        declared = facts.of(spec.name)
        slack = 1.0 + (SUMMATION_SLACK if declared.sums else 0.0) + LIBM_SLACK * declared.libm if dtype == "float64" else 0.0
        assert ours <= theirs + slack, f"{spec.name} {phase} {dtype}: reference {ours:.2f} ULP, torch {theirs:.2f} ULP from the truth"


@pytest.mark.parametrize("spec, dtype", CELLS)
def test_tolerance_covers_torchs_error_against_the_truth(beside, spec, dtype):
    """The policy compares torch with the reference; judged against the truth instead, torch's
    error plus the reference's (both in the dtype's ULPs) must still fit in k."""
    acc = _measure(beside, spec, dtype)
    for phase, table in (("forward", "forward"), ("gradient", "gradient")):
        k = k_for(table, dtype)
        assert acc.torch[phase].floored + acc.reference[phase].floored <= k, f"{spec.name} {phase} {dtype}: {acc.torch[phase].floored:.2f} + {acc.reference[phase].floored:.2f} > k = {k}"


def test_torch_bce_with_logits_soft_label_cancellation_against_the_oracle():
    """float32, z = -270.13, y = 1.1e-6: the truth (50 digits) is y |z| + log1p(e^z) = 2.9714e-4 by
    hand; torch returns 2.7466e-4 (7.6% off); the reference is within 1 float64 ULP of the truth."""
    z, y = np.array([np.float32(-270.13)], dtype=np.float64), np.array([np.float32(1.1e-6)], dtype=np.float64)
    truth = oracle.forward("binary_cross_entropy_with_logits", z, y)
    ours = reference.binary_cross_entropy_with_logits(z, y)
    theirs = F.binary_cross_entropy_with_logits(torch.tensor(z, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)).item()
    assert abs(ours - truth) <= dtypes.ulp(truth, dtypes.get("float64"))
    assert abs(theirs - truth) / truth > 0.05
    assert float(truth[0] if np.ndim(truth) else truth) == pytest.approx(float(y[0]) * -float(z[0]) + math.log1p(math.exp(float(z[0]))), rel=1e-12)


def test_torch_sigmoid_flushes_what_the_oracle_says_is_a_float32_subnormal():
    """sigmoid(-100) is 3.78e-44, a float32 subnormal: torch's 0 is 27 ULPs off in pure terms, yet
    far inside the tolerance floored at the scale 1. Pure ULP alone misleads."""
    info = dtypes.get("float32")
    truth = oracle.forward("sigmoid", np.array([-100.0]))
    truth32 = dtypes.round_to(truth, info)
    assert 0 < truth32[0] < info.tiny and math.isclose(truth[0], math.exp(-100) / (1 + math.exp(-100)), rel_tol=1e-15)
    theirs = torch.sigmoid(torch.tensor([-100.0])).item()
    assert theirs == 0.0 and (truth32[0] - theirs) / dtypes.ulp(truth32[0], info) == 27
    assert reference.sigmoid(np.array([-100.0]))[0] == pytest.approx(truth[0], rel=1e-15)
