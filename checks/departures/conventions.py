"""torch's documented conventions and the limits of its dtypes: what holds on every machine.

The references follow each convention, and tests assert it unconditionally; none of them excuses an
element (that is what a probed quirk does, checks/departures/cpu.py). Each carries an error map the
report measures when it is built: torch's values against the truth (hand math in float64 or the
50-digit oracle) and against the reference, never against a recorded torch value.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

import reference
from checks.departures import Departure, Map
from reference import oracle


def _grad(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> np.ndarray:
    x = x.detach().requires_grad_(True)
    fn(x).sum().backward()
    return x.grad.double().numpy()


def finite(values: np.ndarray) -> list[float]:
    return [float(v) if np.isfinite(v) else math.nan for v in values]


def _bce_clamp() -> Map:
    p = np.logspace(-60, -1, 121)
    y = np.ones_like(p)
    exact = -np.log(p)  # y = 1: the loss is -log p, unbounded as p -> 0
    theirs = F.binary_cross_entropy(torch.tensor(p), torch.tensor(y), reduction="none").numpy()
    ours = reference.binary_cross_entropy(p, y, reduction="none")
    below = p < math.exp(-100)
    above_err = np.max(np.abs(theirs[~below] - exact[~below]) / exact[~below])
    return Map(p.tolist(), {"exact −log p": finite(exact), "torch (float64)": finite(theirs), "reference": finite(ours)},
               "p (target y = 1)", "loss",
               f"torch's loss is exactly 100 at all {below.sum()} points below e^-100 = {math.exp(-100):.3g} and −log p above (relative difference ≤ {above_err:.1e}); the reference follows", "log")


def _bce_gradient_floor() -> Map:
    p = np.logspace(-20, -2, 91)
    y = np.ones_like(p)
    exact = 1.0 / p  # |d/dp -log p|
    theirs = np.abs(_grad(lambda v: F.binary_cross_entropy(v, torch.tensor(y), reduction="none"), torch.tensor(p)))
    ours = np.abs(reference.binary_cross_entropy_backward(np.ones_like(p), p, y, reduction="none"))
    return Map(p.tolist(), {"exact 1/p": finite(exact), "torch (float64)": finite(theirs), "reference": finite(ours)},
               "p (target y = 1)", "|∂ loss/∂p|", f"torch's gradient is capped at {theirs.max():.4g} (p(1 − p) floored at float32 1e-12) for p below 1e-12", "log", "log")


def _sigmoid_float32() -> Map:
    x = np.linspace(0.0, 110.0, 1101)
    truth_forward = oracle.forward("sigmoid", -x)  # sigma(-x): the left tail
    truth_gradient = oracle.backward("sigmoid", np.ones_like(x), x)  # sigma'(x) on the right
    forward = torch.sigmoid(torch.tensor(-x, dtype=torch.float32)).double().numpy()
    gradient = _grad(torch.sigmoid, torch.tensor(x, dtype=torch.float32))
    with np.errstate(all="ignore"):
        rel_f = np.abs(forward - truth_forward) / truth_forward
        rel_g = np.abs(gradient - truth_gradient) / truth_gradient
    zero_g, zero_f = x[gradient == 0].min(), x[forward == 0].min()
    return Map(x.tolist(), {"σ(−x), relative error": finite(rel_f), "σ′(x), relative error": finite(rel_g)},
               "x (float32)", "relative error against the 50-digit truth",
               f"float32: the gradient is exactly 0 from x = {zero_g:g} (σ(x) rounds to 1), the forward flushes to 0 from x = {zero_f:g} (the truth is subnormal)", "linear", "symlog")


def _bce_with_logits_cancellation() -> Map:
    z = -np.linspace(5.0, 300.0, 119)
    z32 = z.astype(np.float32).astype(np.float64)
    y = np.full_like(z32, float(np.float32(1.1e-6)))
    truth = oracle.forward("binary_cross_entropy_with_logits", z32, y, reduction="none")
    theirs = F.binary_cross_entropy_with_logits(torch.tensor(z32, dtype=torch.float32), torch.tensor(y, dtype=torch.float32), reduction="none").double().numpy()
    ours = reference.binary_cross_entropy_with_logits(z32, y, reduction="none")
    rel_t, rel_r = np.abs(theirs - truth) / truth, np.abs(ours - truth) / truth
    return Map((-z32).tolist(), {"torch float32": finite(rel_t), "reference": finite(np.maximum(rel_r, 1e-18))},
               "−z (target y = 1.1e-6)", "relative error against the 50-digit truth",
               f"torch computes (1 − y)z + softplus(−z) and cancels: up to {rel_t.max():.1%} off in float32; the reference stays within {rel_r.max():.1e}", "linear", "log")


def _label_smoothing_targets() -> Map:
    eps = np.linspace(0.0, 1.0, 41)
    x = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    target, weight = np.array([1, 2]), np.array([1.0, 2.0, 0.5])
    q = np.eye(3)[target]
    index, probs = [], []
    for e in eps:
        kwargs = {"weight": torch.tensor(weight), "label_smoothing": float(e)}
        index.append(F.cross_entropy(torch.tensor(x), torch.tensor(target), **kwargs).item())
        probs.append(F.cross_entropy(torch.tensor(x), torch.tensor(q), **kwargs).item())
    ours_index = [float(reference.cross_entropy(x, target, weight=weight, label_smoothing=e)) for e in eps]
    ours_probs = [float(reference.cross_entropy(x, q, weight=weight, label_smoothing=e)) for e in eps]
    agree = max(abs(a - b) for a, b in zip(index + probs, ours_index + ours_probs))
    return Map(eps.tolist(), {"index targets, torch": index, "one-hot probabilities, torch": probs,
                              "index targets, reference": ours_index, "one-hot probabilities, reference": ours_probs},
               "label_smoothing ε (weights 1, 2, 0.5)", "loss",
               f"the two target forms differ by up to {max(abs(a - b) for a, b in zip(index, probs)):.3f} with weights; the reference reproduces each within {agree:.1e}")


DECLARED: tuple[Departure, ...] = (
    Departure(
        id="bce-log-clamp", kind="convention", title="BCE clamps each log at −100", ops=("binary_cross_entropy",),
        what="binary_cross_entropy computes max(log p, −100): the loss is at most 100 per term, where −log p grows without bound as p → 0.",
        returns="100 per term below p = e^-100", upstream="https://pytorch.org/docs/stable/generated/torch.nn.BCELoss.html",
        handling="A documented convention: the reference clamps the same way.",
        tests=("tests/test_conventions.py::test_bce_clamps_each_log_term_at_minus_100",), measure=_bce_clamp),
    Departure(
        id="bce-gradient-floor", kind="convention", title="BCE's gradient denominator is floored at 1e-12", ops=("binary_cross_entropy",),
        phases=("grad[input]",),
        what="The gradient (p − y)/(p(1 − p)) uses max(p(1 − p), 1e-12), the float32 constant 9.99999996e-13, in every dtype: it is capped near 1e12 instead of growing as 1/p.",
        returns="(p − y)/1e-12 below p(1 − p) = 1e-12", upstream="aten/src/ATen/native/Loss.cpp (binary_cross_entropy_backward, EPSILON = 1e-12)",
        handling="A convention of torch's: the reference floors the same way.",
        tests=("tests/test_conventions.py::test_bce_gradient_denominator_is_floored_at_float32_1e_minus_12",), measure=_bce_gradient_floor),
    Departure(
        id="gradients-at-kinks", kind="convention", title="The gradient torch picks where the math has none",
        ops=("relu", "leaky_relu", "elu", "l1_loss"), phases=("grad[input]",),
        what="At exactly 0, ReLU's gradient is 0, LeakyReLU's the negative slope and ELU's alpha; L1's is 0 at x = y. ReLU(−0.0) is −0.0 and its gradient at NaN is the upstream gradient.",
        returns="the subgradients listed", upstream="tools/autograd/derivatives.yaml (threshold_backward, leaky_relu_backward, elu_backward, sgn)",
        handling="A convention: the references pick the same subgradient, and the ties regime draws exact kinks on purpose.",
        tests=("tests/test_conventions.py::test_activation_gradient_at_exactly_zero", "tests/test_conventions.py::test_relu_gradient_at_nan_is_the_upstream_gradient",
               "tests/test_conventions.py::test_l1_gradient_at_zero_and_nan_is_zero")),
    Departure(
        id="sigmoid-float32-tails", kind="convention", title="sigmoid flushes subnormals and has no gradient past saturation", ops=("sigmoid",),
        phases=("forward", "grad[input]"),
        what="torch.sigmoid returns 0 where the true value is a float32 subnormal, and its backward g·s·(1 − s) on the rounded output s is exactly 0 once s rounds to 1 (x > 16.6 in float32, 8.3 in float16).",
        returns="0", upstream="tools/autograd/derivatives.yaml (sigmoid_backward uses the result)",
        handling="Within the policy: the tolerance is floored at the scale 1 plus the smallest normal, so both count as rounding of a value near 0.",
        tests=("tests/test_conventions.py::test_sigmoid_flushes_to_zero_where_the_truth_is_subnormal",
               "tests/test_conventions.py::test_sigmoid_gradient_is_exactly_zero_past_saturation",
               "tests/test_accuracy.py::test_torch_sigmoid_flushes_what_the_oracle_says_is_a_float32_subnormal"), measure=_sigmoid_float32),
    Departure(
        id="bce-with-logits-cancellation", kind="convention", title="BCE-with-logits cancels with soft labels at large |z|",
        ops=("binary_cross_entropy_with_logits",),
        what="torch evaluates (1 − y)·z + softplus(−z): for z ≪ 0 and small y the two terms nearly cancel, so the float32 result loses digits (7.6% at z = −270).",
        returns="an error of about |z|·eps", upstream="aten/src/ATen/native/Loss.cpp (binary_cross_entropy_with_logits)",
        handling="Within the policy: the registry's scale (1 + |z|)·max(1, pos_weight) allows an error of |z|·eps.",
        tests=("tests/test_conventions.py::test_bce_with_logits_soft_label_cancellation_at_large_logits",
               "tests/test_accuracy.py::test_torch_bce_with_logits_soft_label_cancellation_against_the_oracle"), measure=_bce_with_logits_cancellation),
    Departure(
        id="label-smoothing-targets", kind="convention", title="Label smoothing means two things with class weights", ops=("cross_entropy",),
        what="With index targets torch divides by Σ_n w_{t_n} and smooths over the weighted classes; with probability targets it divides by N. The same one-hot targets give different losses.",
        returns="two different losses for the same one-hot targets", upstream="https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html",
        handling="A documented convention: the reference implements both forms through one coefficient vector a.",
        tests=("tests/test_conventions.py::test_label_smoothing_with_weights_differs_between_index_and_probability_targets",), measure=_label_smoothing_targets),
)

