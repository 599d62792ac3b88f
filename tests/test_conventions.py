"""torch's conventions and quirks, pinned.

Where the math is undefined (a kink, log 0, 0/0), the references follow torch and each rule is
checked on both sides here, unconditionally: conventions hold on every machine. Where torch departs
from exact math in its implementation (low-precision intermediates, a NaN where a limit exists), the
departure is a declared quirk (checks/departures) and its test here runs where the quirk's probe says
it shows, and says so in its skip reason where it does not. Expected values come from hand arithmetic
or TORCH_NUMERICS.md, never from the torch call under test. All on the CPU.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reference
from reference import oracle
from checks import departures, dtypes
from checks.tolerance import bound

inf, nan = math.inf, math.nan
F64 = torch.float64


def t(values, dtype=F64, grad=False):
    return torch.tensor(values, dtype=dtype, requires_grad=grad)


def shown(quirk_id: str) -> None:
    """Skip, with the reason, where the quirk's probe says this machine does not show it."""
    if not departures.shows(departures.get(quirk_id), "cpu"):
        pytest.skip(f"quirk {quirk_id} does not show here (its probe): {departures.get(quirk_id).upstream}")


def torch_grad(fn, x, g=None):
    out = fn(x)
    out.backward(torch.ones_like(out) if g is None else g)
    return x.grad


# --- gradients at kinks: the subgradient torch picks --------------------------------------------


@pytest.mark.parametrize(
    "op, kwargs, expected",
    [("relu", {}, 0.0), ("leaky_relu", {"negative_slope": 0.3}, 0.3), ("elu", {"alpha": 1.7}, 1.7)],
)
def test_activation_gradient_at_exactly_zero(op, kwargs, expected):
    x = np.array([0.0, -0.0])
    assert list(getattr(reference, f"{op}_backward")(np.ones(2), x, **kwargs)) == [expected, expected]
    assert torch_grad(lambda v: getattr(F, op)(v, **kwargs), t(x, grad=True)).tolist() == [expected, expected]


def test_relu_keeps_negative_zero_and_nan():
    x = np.array([-0.0, nan])
    ours, theirs = reference.relu(x), F.relu(t(x)).numpy()
    assert np.signbit(ours[0]) and np.signbit(theirs[0]), "relu(-0.0) is -0.0 (clamp keeps it)"
    assert np.isnan(ours[1]) and np.isnan(theirs[1])


def test_relu_gradient_at_nan_is_the_upstream_gradient():
    """torch tests x <= 0 to zero the gradient; NaN fails that test, so the gradient passes."""
    assert reference.relu_backward(np.array([2.5]), np.array([nan]))[0] == 2.5
    assert torch_grad(F.relu, t([nan], grad=True), t([2.5])).item() == 2.5


def test_l1_gradient_at_zero_and_nan_is_zero():
    x, y = np.array([1.0, nan, 3.0]), np.array([1.0, 0.0, 1.0])
    assert reference.l1_loss_backward(np.ones(()), x, y, reduction="sum").tolist() == [0.0, 0.0, 1.0]
    grad = torch_grad(lambda v: F.l1_loss(v, t(y), reduction="sum"), t(x, grad=True))
    assert grad.tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("op, params, expected", [
    ("mse_loss", {}, 21 / 3.5),  # w·(1, 4, 9) = (1, 2, 18), over sum(w) = 3.5
    ("l1_loss", {}, 8 / 3.5),  # w·(1, 2, 3) = (1, 1, 6), over sum(w)
    ("huber_loss", {"delta": 1.0}, 6.25 / 3),  # w·(0.5, 1.5, 2.5) = (0.5, 0.75, 5), over the count: weighted_loss.mean()
])
def test_a_weighted_mean_divides_by_the_weights_sum_except_huber_by_the_count(op, params, expected):
    """torch 2.13's ``weight``: MSE and L1 divide the weighted sum by sum(w), Huber by the element count."""
    x, y, w = np.array([1.0, 2.0, 3.0]), np.zeros(3), np.array([1.0, 0.5, 2.0])
    assert getattr(reference, op)(x, y, weight=w, **params) == expected  # each side rounds once: exactly the float of the fraction
    theirs = getattr(F, op)(torch.from_numpy(x), torch.from_numpy(y), weight=torch.from_numpy(w), **params)
    assert theirs.item() == expected


def test_a_weighted_mse_is_nan_where_a_term_overflows_under_a_zero_weight():
    """weighted-loss-overflows-in-the-dtype: 300² = 90000 passes float16's 65504 before the weight 0 applies."""
    shown("weighted-loss-overflows-in-the-dtype")
    x = np.array([300.0, 1.0])
    w = np.array([0.0, 1.0])
    assert reference.mse_loss(x, np.zeros(2), weight=w, reduction="none").tolist() == [0.0, 1.0]
    theirs = F.mse_loss(torch.tensor(x, dtype=torch.float16), torch.zeros(2, dtype=torch.float16), weight=torch.tensor(w, dtype=torch.float16), reduction="none")
    assert math.isnan(theirs[0].item()) and theirs[1].item() == 1.0


def test_elu_gradient_at_nan_is_nan_or_the_upstream_gradient():
    """The reference returns g at NaN (x <= 0 is false for NaN: torch's scalar rule). torch's
    vectorised loop may give NaN instead (quirk elu-backward-nan-in-vector-loop, where its probe says
    so); any other value is wrong on every machine."""
    x = t([nan] * 67, grad=True)
    grad = torch_grad(lambda v: F.elu(v, alpha=2.0), x)
    assert (grad.isnan() | (grad == 1.0)).all()
    assert grad.isnan().any() == departures.shows(departures.get("elu-backward-nan-in-vector-loop"), "cpu")
    assert reference.elu_backward(np.ones(67), np.full(67, nan), alpha=2.0).tolist() == [1.0] * 67


def test_hardtanh_with_equal_bounds_is_a_constant_with_gradient_zero():
    """min_val = max_val = 0.5 is allowed (torch refuses only min_val > max_val): every x maps to
    0.5, and the gradient is 0 everywhere, the ends included."""
    x = [-2.0, 0.5, 2.0]
    assert reference.hardtanh(np.array(x), 0.5, 0.5).tolist() == F.hardtanh(t(x), 0.5, 0.5).tolist() == [0.5] * 3
    assert reference.hardtanh_backward(np.ones(3), np.array(x), 0.5, 0.5).tolist() == [0.0] * 3
    assert torch_grad(lambda v: F.hardtanh(v, 0.5, 0.5), t(x, grad=True)).tolist() == [0.0] * 3


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gelu_of_plus_inf_is_inf_or_nan_where_onednns_avx512_kernel_runs(dtype):
    """x Φ(x) → +inf as x → +inf: the reference's inf, and torch's on one element; in a vector
    oneDNN's AVX-512 GELU returns NaN where its probe says so (quirk onednn-avx512-gelu-nan-at-inf)."""
    assert reference.gelu(np.array([np.inf, 1.0])).tolist()[0] == inf
    theirs = F.gelu(torch.tensor([inf, 1.0], dtype=getattr(torch, dtype)))[0].item()
    quirk = departures.shows(departures.get("onednn-avx512-gelu-nan-at-inf"), "cpu", dtype=dtype)
    assert math.isnan(theirs) if quirk else theirs == inf
    alone = F.gelu(torch.tensor([inf], dtype=getattr(torch, dtype))).item()  # inf on the Zen 4 that showed the quirk
    assert alone == inf or (quirk and math.isnan(alone))


def test_gelu_tanh_gradient_is_nan_where_x_squared_overflows_float32():
    """The math's limits at |x| = 1e20 are g (x > 0) and 0 (x < 0), as the reference gives; float32
    torch gives NaN there where its probe says so (quirk gelu-tanh-gradient-overflows-x-squared),
    and the limits below 2**64, where x² still fits."""
    x = np.array([1e20, -1e20, 1e18, -1e18])
    assert reference.gelu_backward(np.ones(4), x, approximate="tanh").tolist() == [1.0, 0.0, 1.0, 0.0]
    grad = torch_grad(lambda v: F.gelu(v, approximate="tanh"), torch.tensor(x, dtype=torch.float32, requires_grad=True))
    assert grad[2:].tolist() == [1.0, 0.0]
    quirk = departures.shows(departures.get("gelu-tanh-gradient-overflows-x-squared"), "cpu")
    assert grad[:2].isnan().all() if quirk else grad[:2].tolist() == [1.0, 0.0]


def test_hardtanh_gradient_at_nan_is_zero_or_the_upstream_gradient():
    """The reference returns g at NaN (neither bound test holds: torch's scalar rule); torch's
    vectorised loop gives 0 where its probe says so (quirk hardtanh-backward-nan-in-vector-loop)."""
    assert torch_grad(F.hardtanh, t([nan], grad=True)).tolist() == [1.0]
    grad = torch_grad(F.hardtanh, t([nan] * 67, grad=True))
    assert ((grad == 0) | (grad == 1.0)).all()
    assert (grad == 0).any() == departures.shows(departures.get("hardtanh-backward-nan-in-vector-loop"), "cpu")
    assert reference.hardtanh_backward(np.ones(67), np.full(67, nan)).tolist() == [1.0] * 67


def test_silu_is_zero_in_float32_where_exp_overflows():
    """x σ(x) at x = −89 is −3.9e-37, a normal float32 (the oracle and the reference agree); torch
    gives −0 where its probe says so (quirk silu-float32-exp-overflow), and is right above −88.72."""
    x = np.array([-89.0, -88.5])
    truth = oracle.forward("silu", x)
    assert np.all(np.abs(truth) > np.finfo(np.float32).tiny) and np.allclose(reference.silu(x), truth, rtol=1e-15, atol=0)
    theirs = F.silu(torch.tensor(x, dtype=torch.float32)).double().numpy()
    assert abs(theirs[1] - truth[1]) <= 1e-6 * abs(truth[1])
    assert (theirs[0] == 0) == departures.shows(departures.get("silu-float32-exp-overflow"), "cpu")


def test_kl_div_target_gradient_loses_the_one_where_g_times_t_is_subnormal():
    """d/dt [t log t − t x] = log t + 1 − x, as the reference computes it even at t = 5e-324; torch's
    (g·t)/t is 1 only where g·t is a normal number (quirk kl-div-target-gradient-subnormal-product)."""
    x, t, g = np.array([-2.0, -2.0]), np.array([5e-324, 0.25]), np.array([0.3, 0.3])
    hand = reference.kl_div_backward(g, x, t, reduction="none")[1]
    assert np.allclose(hand, g * (np.log(t) + 1.0 - x), rtol=1e-15, atol=0)
    T = torch.tensor(t, requires_grad=True)
    F.kl_div(torch.tensor(x), T, reduction="none").backward(torch.tensor(g))
    assert abs(T.grad[1].item() - hand[1]) <= 1e-15 * abs(hand[1])
    quirk = departures.shows(departures.get("kl-div-target-gradient-subnormal-product"), "cpu")
    assert (abs(T.grad[0].item() - hand[0]) > 0.1) == quirk and abs(T.grad[0].item() - hand[0]) <= 0.3 + 1e-12


def test_kl_div_log_target_gradient_overflows_in_the_dtype():
    """g·e^s(s − x + 1) = 2·e^-1·(3e38) = 2.2e38 fits float32; torch forms 2·(s − x) first, which
    does not (quirk kl-div-log-target-gradient-overflows)."""
    s, x = np.array([-1.0]), np.array([-3e38])
    hand = reference.kl_div_backward(np.array([2.0]), x, s, reduction="none", log_target=True)[1]
    assert np.isfinite(hand).all() and hand[0] < np.finfo(np.float32).max
    S = torch.tensor(s, dtype=torch.float32, requires_grad=True)
    F.kl_div(torch.tensor(x, dtype=torch.float32), S, reduction="none", log_target=True).backward(torch.tensor([2.0]))
    assert bool(S.grad.isinf().all()) == departures.shows(departures.get("kl-div-log-target-gradient-overflows"), "cpu")


def test_kl_div_log_target_is_nan_at_minus_inf_where_exp_underflows():
    """e^s (s − x) at x = −inf, s = −100 is +inf (the reference, and torch in float32, where e^-100
    is a subnormal); bfloat16 rounds e^-100 to 0 and gives 0·inf (quirk kl-div-log-target-rounds-exp-to-the-dtype)."""
    x, s = np.array([-np.inf]), np.array([-100.0])
    assert reference.kl_div(x, s, reduction="none", log_target=True).tolist() == [np.inf]
    assert F.kl_div(torch.tensor(x, dtype=torch.float32), torch.tensor(s, dtype=torch.float32), reduction="none", log_target=True).tolist() == [np.inf]
    theirs = F.kl_div(torch.tensor(x, dtype=torch.bfloat16), torch.tensor(s, dtype=torch.bfloat16), reduction="none", log_target=True)
    assert bool(theirs.isnan().all()) == departures.shows(departures.get("kl-div-log-target-rounds-exp-to-the-dtype"), "cpu")


def test_kl_div_batchmean_sums_in_the_dtype_before_dividing():
    """100 terms of 1000 over a batch of 2: the KL per sample is 50000, a float16 number (the
    reference); torch sums to 1e5 in float16 first (quirk kl-div-sum-overflows-before-dividing)."""
    x, t = np.full((2, 50), -1000.0), np.ones((2, 50))
    assert reference.kl_div(x, t, reduction="batchmean") == 50000.0
    theirs = F.kl_div(torch.tensor(x, dtype=torch.float16), torch.tensor(t, dtype=torch.float16), reduction="batchmean")
    assert bool(theirs.isinf()) == departures.shows(departures.get("kl-div-sum-overflows-before-dividing"), "cpu")
    assert bool(theirs.isinf()) or theirs.item() == 50000.0


def test_rms_norm_default_eps_is_float32s_for_float16():
    """The documented default, finfo(float16).eps, gives [0.0032, 0.0064] for [1e-4, 2e-4] (the
    reference); torch uses float32's where its probe says so (quirk rms-norm-default-eps-is-float32s)."""
    x = np.array([1e-4, 2e-4], dtype=np.float16)
    documented = reference.rms_norm(x, (2,))
    assert np.allclose(documented, reference.rms_norm(x.astype(np.float64), (2,), eps=float(np.finfo(np.float16).eps)))
    theirs = F.rms_norm(torch.tensor(x), (2,)).double().numpy()
    quirk = departures.shows(departures.get("rms-norm-default-eps-is-float32s"), "cpu")
    expected = reference.rms_norm(x.astype(np.float64), (2,), eps=float(np.finfo(np.float32).eps)) if quirk else documented
    assert np.allclose(theirs, expected, rtol=2e-3, atol=0)


def test_embedding_max_norm_zeroes_a_row_whose_norm_overflows():
    """A row (3e38, 3e38) with max_norm 1 is (0.707, 0.707) by the math (the reference, in float64);
    float32 torch computes its norm as inf and returns 0 where its probe says so (quirk
    embedding-max-norm-overflows-in-the-dtype)."""
    w = np.array([[3e38, 3e38]])
    assert np.allclose(reference.embedding(np.array([0]), w.copy(), max_norm=1.0), [[2**-0.5, 2**-0.5]], rtol=1e-12)
    theirs = F.embedding(torch.tensor([0]), torch.tensor(w, dtype=torch.float32), max_norm=1.0)
    assert bool((theirs == 0).all()) == departures.shows(departures.get("embedding-max-norm-overflows-in-the-dtype"), "cpu")


# --- BCE: the clamp, the gradient floor, and float16 ------------------------------------------


@pytest.mark.parametrize(
    "p, y, expected",
    [(0.0, 1.0, 100.0), (0.0, 0.0, 0.0), (0.0, 0.5, 50.0), (1.0, 0.0, 100.0), (1e-50, 1.0, 100.0)],
    ids=["p0-y1", "p0-y0", "p0-yhalf", "p1-y0", "below-e^-100"],
)
def test_bce_clamps_each_log_term_at_minus_100(p, y, expected):
    assert reference.binary_cross_entropy(np.array([p]), np.array([y])) == expected
    assert F.binary_cross_entropy(t([p]), t([y])).item() == expected


def test_bce_loss_at_p_one_y_one_is_negative_zero_in_torch():
    """-(1·log 1 + 0·max(log 0, -100)) = -(0 + 0·(-100)) = -0.0: the sign survives in both."""
    ours = reference.binary_cross_entropy(np.array([1.0]), np.array([1.0]), reduction="none")
    theirs = F.binary_cross_entropy(t([1.0]), t([1.0]), reduction="none")
    assert ours[0] == 0 and np.signbit(ours[0]) and np.signbit(theirs.item())


def test_bce_gradient_denominator_is_floored_at_float32_1e_minus_12():
    """(p - y) / max(p (1 - p), 1e-12), with 1e-12 the float32 constant 9.99999996e-13."""
    floor = float(np.float32(1e-12))
    expected = [-1.0 / floor, 0.0, 0.0, 1.0 / floor]
    p, y = [0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 1.0, 0.0]
    assert reference.binary_cross_entropy_backward(np.ones(4), np.array(p), np.array(y), reduction="none").tolist() == expected
    grad = torch_grad(lambda v: F.binary_cross_entropy(v, t(y), reduction="none"), t(p, grad=True))
    assert grad.tolist() == expected


def test_bce_gradient_in_float16_is_float16_arithmetic_in_torch():
    """torch's float16 BCE backward is exactly (g (p - y)) / max((1 - p) p, 1e-12) evaluated in
    float16, in that order (bitwise, here over 2,000 draws). So the floor 1e-12 underflows to 0 and
    p = 0 or 1 gives NaN or inf, where the reference (and torch in float32) is finite."""
    shown("bce-float16-gradient-in-float16")
    rng = np.random.default_rng(0)
    h = np.float16
    p = np.concatenate([[0.0, 0.0, 1.0, 1.0], rng.uniform(0, 1, 1996) ** 3]).astype(h)
    y = np.concatenate([[1.0, 0.0, 1.0, 0.0], rng.uniform(0, 1, 1996)]).astype(h)
    g = (rng.normal(0, 1, p.size) * 10 ** rng.uniform(-7, 0, p.size)).astype(h)
    with np.errstate(all="ignore"):
        model = (g * (p - y)).astype(h) / np.maximum(((h(1) - p) * p).astype(h), h(1e-12))
    pt = torch.tensor(p, requires_grad=True)
    grad = torch_grad(lambda v: F.binary_cross_entropy(v, torch.tensor(y), reduction="none"), pt, torch.tensor(g)).numpy()
    np.testing.assert_array_equal(grad, model.astype(h))
    assert np.isnan(grad[1]) and np.isnan(grad[2]), "0/0 at p=0,y=0 and p=1,y=1"
    assert np.isfinite(reference.binary_cross_entropy_backward(g[:4], p[:4], y[:4], reduction="none")[1:3]).all()


def test_bce_float16_gradient_leaves_the_policy_below_2_to_minus_14():
    """Why the quirk's region includes p < 2**-11: below 2**-14 torch's denominator p (1 - p) is a
    float16 subnormal and the gradient leaves the tolerance."""
    shown("bce-float16-gradient-in-float16")
    p = np.array([3e-7, 1e-6, 3e-6], dtype=np.float16).astype(np.float64)
    ours = reference.binary_cross_entropy_backward(np.ones(3), p, np.ones(3), reduction="none")
    theirs = torch_grad(lambda v: F.binary_cross_entropy(v, torch.ones(3, dtype=torch.float16), reduction="none"), torch.tensor(p, dtype=torch.float16, requires_grad=True))
    info = dtypes.get("float16")
    finite = np.isfinite(theirs.double().numpy())
    outside = np.abs(theirs.double().numpy() - ours) > bound(ours, 0.0, info, 4)
    assert (outside | ~finite).any()


# --- sigmoid: the flush to zero and the saturated gradient -------------------------------------


@pytest.mark.parametrize("dtype, x", [("float32", -89.0), ("float64", -710.0)])
def test_sigmoid_flushes_to_zero_where_the_truth_is_subnormal(dtype, x):
    info = dtypes.get(dtype)
    truth = math.exp(x) / (1 + math.exp(x))  # hand math: e^x / (1 + e^x), a subnormal of the dtype
    assert 0 < dtypes.round_to(np.array(truth), info) < info.tiny
    assert torch.sigmoid(torch.tensor(x, dtype=info.torch)).item() == 0.0
    assert reference.sigmoid(np.array(x)) == pytest.approx(truth, rel=1e-12)
    assert np.abs(0.0 - truth) <= bound(np.array(truth), 0.0, info, 8), "the policy's tiny term absorbs the flush"


@pytest.mark.parametrize("dtype, x", [("float32", 16.7), ("float16", 8.32), ("bfloat16", 8.0)])
def test_sigmoid_gradient_is_exactly_zero_past_saturation(dtype, x):
    """torch's backward is g·s·(1 - s) on the rounded output s, which is exactly 1 here; the true
    gradient e^-x / (1 + e^-x)^2 is positive (3.4e-4 at x = 8)."""
    info = dtypes.get(dtype)
    truth = math.exp(-x) / (1 + math.exp(-x)) ** 2
    grad = torch_grad(torch.sigmoid, torch.tensor([x], dtype=info.torch, requires_grad=True))
    assert grad.item() == 0.0 and truth > 0
    assert reference.sigmoid_backward(np.ones(1), np.array([x]))[0] == pytest.approx(truth, rel=1e-12)


# --- BCE with logits at infinite logits -------------------------------------------------------


@pytest.mark.parametrize("z, y, limit", [(-inf, 0.0, 0.0), (inf, 1.0, 0.0), (-inf, 1.0, inf)])
def test_bce_with_logits_is_nan_at_infinite_logits_where_the_limit_exists(z, y, limit):
    """The loss w[y·softplus(-z) + (1 - y)·softplus(z)] tends to ``limit``; torch computes
    (1 - y) z + softplus(-z) and meets inf - inf or 0·inf (quirk bce-with-logits-nan-at-infinite-logits)."""
    shown("bce-with-logits-nan-at-infinite-logits")
    assert math.isnan(F.binary_cross_entropy_with_logits(t([z]), t([y])).item())
    assert reference.binary_cross_entropy_with_logits(np.array([z]), np.array([y])) == limit


def test_bce_with_logits_soft_label_cancellation_at_large_logits():
    """float32, z = -270.13, y = 1.1e-6: torch's (1 - y) z + softplus(-z) cancels; its error is
    about |z| eps, which the registry's scale (1 + |z|) max(1, pos_weight) allows for."""
    z, y = np.float32(-270.13), np.float32(1.1e-6)
    truth = float(y) * -float(z) + math.log1p(math.exp(float(z)))  # y·softplus(-z) + (1 - y)·softplus(z)
    theirs = F.binary_cross_entropy_with_logits(torch.tensor([z]), torch.tensor([y])).item()
    ours = reference.binary_cross_entropy_with_logits(np.array([z], dtype=np.float64), np.array([y], dtype=np.float64))
    assert ours == pytest.approx(truth, rel=1e-12)
    assert abs(theirs - truth) / truth > 0.01, "torch is off by several percent here"
    assert abs(theirs - truth) <= bound(np.array(truth), 1 + abs(float(z)), dtypes.get("float32"), 8)


# --- cross-entropy: ignore_index, weights, empty batches, label smoothing ---------------------


def _ce(x, target, **kwargs):
    ours = reference.cross_entropy(x, target, **kwargs)
    theirs = F.cross_entropy(t(x), torch.tensor(target), **{k: (t(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()})
    return ours, theirs.numpy()


def test_cross_entropy_all_targets_ignored():
    x, target = np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([-100, -100])
    assert all(np.isnan(v) for v in _ce(x, target))  # mean: 0 / 0
    assert all(v == 0 for v in _ce(x, target, reduction="sum"))
    assert all((v == 0).all() for v in _ce(x, target, reduction="none"))
    xt = t(x, grad=True)
    F.cross_entropy(xt, torch.tensor(target)).backward()
    assert (xt.grad == 0).all() and (reference.cross_entropy_backward(np.ones(()), x, target) == 0).all()


def test_cross_entropy_with_every_selected_weight_zero_is_nan_with_nan_gradient():
    x, target, w = np.array([[0.0, 0.0]]), np.array([0]), np.array([0.0, 1.0])
    assert all(np.isnan(v) for v in _ce(x, target, weight=w))
    xt = t(x, grad=True)
    F.cross_entropy(xt, torch.tensor(target), weight=t(w)).backward()
    assert xt.grad.isnan().all() and np.isnan(reference.cross_entropy_backward(np.ones(()), x, target, weight=w)).all()


@pytest.mark.parametrize("reduction, expected", [("mean", nan), ("sum", 0.0)])
def test_cross_entropy_of_an_empty_batch(reduction, expected):
    for value in _ce(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), reduction=reduction):
        assert (np.isnan(value) and np.isnan(expected)) or value == expected


def test_label_smoothing_with_weights_differs_between_index_and_probability_targets():
    """Index targets: sum_n [(1-eps) w_t (-log p_t) + eps/C sum_c w_c (-log p_c)] / sum_n w_t.
    Smoothed one-hot probabilities: -sum_c w_c ((1-eps) q_c + eps/C) log p_c, divided by N.
    Both are torch's, and they differ; the reference reproduces each."""
    x, target, w, eps = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]), np.array([1, 2]), np.array([1.0, 2.0, 0.5]), 0.2
    logp = reference.log_softmax(x, 1)
    by_hand_index = sum((1 - eps) * w[k] * -logp[n, k] + eps / 3 * np.sum(w * -logp[n]) for n, k in enumerate(target)) / w[target].sum()
    q = np.eye(3)[target]
    by_hand_probs = np.sum(-w * ((1 - eps) * q + eps / 3) * logp) / 2
    index_ours, index_torch = _ce(x, target, weight=w, label_smoothing=eps)
    probs_ours, probs_torch = _ce(x, q, weight=w, label_smoothing=eps)
    assert index_ours == pytest.approx(by_hand_index, rel=1e-14) and index_torch == pytest.approx(by_hand_index, rel=1e-14)
    assert probs_ours == pytest.approx(by_hand_probs, rel=1e-14) and probs_torch == pytest.approx(by_hand_probs, rel=1e-14)
    assert abs(by_hand_index - by_hand_probs) > 0.1


def test_negative_label_smoothing_is_zero_in_torch_and_an_error_in_the_reference():
    x, target = np.array([[1.0, 2.0]]), np.array([0])
    assert F.cross_entropy(t(x), torch.tensor(target), label_smoothing=-0.5).item() == pytest.approx(float(reference.cross_entropy(x, target)), rel=1e-15)
    with pytest.raises(ValueError, match="label_smoothing"):
        reference.cross_entropy(x, target, label_smoothing=-0.5)


def test_probability_targets_are_not_normalised():
    """torch takes the targets as given (rows need not sum to 1, may be negative); so does the reference."""
    x, q = np.array([[0.3, -1.2, 2.0]]), np.array([[0.5, 0.9, -0.2]])
    by_hand = -np.sum(q * reference.log_softmax(x, 1))
    assert all(v == pytest.approx(by_hand, rel=1e-14) for v in _ce(x, q))


def test_float16_label_smoothing_overflows_an_intermediate_sum():
    """torch sums sum_c w_c (-log p_c) in float16 before scaling by eps / C: 7·1e4 > 65504 is inf,
    though the loss is (eps / 8)·7e4 = 875 (quirk label-smoothing-sum-overflows)."""
    shown("label-smoothing-sum-overflows")
    row = [[0.0] + [-1e4] * 7]
    by_hand = 0.1 / 8 * 7 * 1e4  # log p_0 = 0 and log p_c = -1e4 up to e^-1e4 terms
    assert math.isinf(F.cross_entropy(torch.tensor(row, dtype=torch.float16), torch.tensor([0]), label_smoothing=0.1).item())
    assert reference.cross_entropy(np.array(row), np.array([0]), label_smoothing=0.1) == pytest.approx(by_hand, rel=1e-12)


def test_float32_logits_with_float64_probability_targets_give_float64_of_float32_precision():
    """torch promotes the result to float64, but log_softmax has already run in float32: the loss
    is log 3 to float32's precision (its vectorised log is within an ULP, which one depends on the
    CPU), not log 3. (The reference always computes in float64.)"""
    out = F.cross_entropy(torch.zeros(1, 3), torch.tensor([[0.0, 1.0, 0.0]], dtype=F64))
    log3 = float(np.float32(math.log(3)))
    assert out.dtype == F64 and out.item() != math.log(3) and float(np.float32(out.item())) == out.item()
    assert abs(out.item() - log3) <= float(np.spacing(np.float32(log3)))
    assert reference.cross_entropy(np.zeros((1, 3)), np.array([[0.0, 1.0, 0.0]])) == pytest.approx(math.log(3), rel=1e-15)


def test_label_smoothing_with_every_selected_weight_zero_is_nan_not_inf():
    """Found by the thorough profile: the weighted mean divides by sum_n w_t = 0. torch averages
    the NLL part (0/0 = NaN) and the smoothing part (x/0 = inf) separately, so the loss is NaN and
    the gradient NaN in the non-ignored rows, 0 in the ignored ones; the reference does the same."""
    x, target, w = np.array([[1.0, -2.0, 0.5], [0.3, 0.1, 0.2]]), np.array([1, -100]), np.array([1.0, 0.0, 2.0])
    assert all(np.isnan(v) for v in _ce(x, target, weight=w, label_smoothing=0.1))
    xt = t(x, grad=True)
    F.cross_entropy(xt, torch.tensor(target), weight=t(w), label_smoothing=0.1).backward()
    hand = reference.cross_entropy_backward(np.ones(()), x, target, weight=w, label_smoothing=0.1)
    for grad in (xt.grad.numpy(), hand):
        assert np.isnan(grad[0]).all() and (grad[1] == 0).all()


def test_bce_float16_weighted_mean_gradient_overflows_before_it_is_scaled():
    """Found by the thorough profile: with reduction='mean' torch forms g (p - y) / (p (1 - p)) and
    the weight in float16 before dividing by n, so |g| 3.1, w 2.9, p 2**-13 overflows to -inf
    though the gradient is -9377: the quirk's region includes |g w (p - y) / (p (1 - p))| >= 32768."""
    shown("bce-float16-gradient-in-float16")
    p = np.full(8, 2.0**-13)
    y, w, g = np.ones(8), np.full(8, 2.94140625), 3.11328125
    by_hand = reference.binary_cross_entropy_backward(np.array(g), p, y, weight=w)
    assert by_hand[0] == pytest.approx(g / 8 * 2.94140625 * (p[0] - 1) / (p[0] * (1 - p[0])), rel=1e-12)
    assert abs(by_hand[0]) < 65504
    pt = torch.tensor(p, dtype=torch.float16, requires_grad=True)
    F.binary_cross_entropy(pt, torch.ones(8, dtype=torch.float16), weight=torch.tensor(w, dtype=torch.float16)).backward(torch.tensor(g, dtype=torch.float16))
    assert torch.isinf(pt.grad).all()
