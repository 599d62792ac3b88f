"""Mathematical laws the hand formulas must obey, one property test per law.

Each law is checked on the reference (float64) and, where torch has the same op, on torch in
float64 too: both sides of every comparison must satisfy the math. Tolerances come from the policy
in checks/tolerance.py; inputs are drawn so that the law is exact in the math (multiples of 2**-10,
which float64 adds without rounding).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import reference
from checks.compare import Context, assert_agrees, compare
from checks.dtypes import get
from checks.strategies import shapes
from checks.tolerance import k_for, k_for_sum

F64 = get("float64")
SIDES = ("reference", "torch")


def agrees(actual, expected, law: str, *, scale=1.0, k=None) -> None:
    __tracebackhide__ = True
    e = np.asarray(expected, dtype=np.float64)
    context = Context(law, "law", "property", "cpu", "float64", e.shape)
    assert_agrees(compare(actual, e, scale=scale, info=F64, k=k_for("forward", "float64") if k is None else k, context=context))


def exact_reals(shape_strategy=shapes(min_dims=1, max_dims=3, min_side=1, max_side=8), bound=40):
    """Multiples of 2**-10 in [-bound, bound]: sums and differences of these are exact in float64."""
    return shape_strategy.flatmap(lambda s: arrays(np.int64, s, elements=st.integers(-bound * 1024, bound * 1024)).map(lambda a: a / 1024.0))


def softmax(side, x, dim):
    return reference.softmax(x, dim) if side == "reference" else F.softmax(torch.from_numpy(x), dim).numpy()


def log_softmax(side, x, dim):
    return reference.log_softmax(x, dim) if side == "reference" else F.log_softmax(torch.from_numpy(x), dim).numpy()


def sigmoid(side, x):
    return reference.sigmoid(x) if side == "reference" else torch.sigmoid(torch.from_numpy(np.asarray(x))).numpy()


@pytest.mark.parametrize("side", SIDES)
@given(x=exact_reals(), data=st.data())
def test_softmax_rows_sum_to_one(side, x, data):
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1), label="dim")
    total = softmax(side, x, dim).sum(axis=dim)
    agrees(total, np.ones_like(total), "softmax rows sum to 1", k=k_for_sum("float64", x.shape[dim]))


@pytest.mark.parametrize("side", SIDES)
@given(x=exact_reals(), shift=st.integers(-1000, 1000), data=st.data())
def test_softmax_is_shift_invariant(side, x, shift, data):
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1), label="dim")
    agrees(softmax(side, x + shift, dim), softmax(side, x, dim), "softmax(x + c) = softmax(x)")


@pytest.mark.parametrize("side", SIDES)
@given(x=exact_reals(bound=700))
def test_sigmoid_symmetry(side, x):
    agrees(sigmoid(side, -x), 1.0 - sigmoid(side, x), "sigmoid(-x) = 1 - sigmoid(x)")


@pytest.mark.parametrize("side", SIDES)
@given(ab=exact_reals(st.tuples(st.integers(1, 6), st.just(2))))
def test_softmax_of_two_classes_is_sigmoid_of_the_difference(side, ab):
    """The notebooks' 'softmax of two classes is sigmoid': softmax([a, b])_0 = sigmoid(a - b)."""
    agrees(softmax(side, ab, 1)[:, 0], sigmoid(side, ab[:, 0] - ab[:, 1]), "softmax([a, b])[0] = sigmoid(a - b)")


@pytest.mark.parametrize("side", SIDES)
@given(x=exact_reals(bound=30), data=st.data())
def test_log_softmax_is_log_of_softmax_where_it_does_not_underflow(side, x, data):
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1), label="dim")
    agrees(log_softmax(side, x, dim), np.log(softmax(side, x, dim)), "log_softmax = log(softmax)")


@given(x=exact_reals(st.tuples(st.integers(1, 6), st.integers(1, 6))), data=st.data())
def test_softmax_gradient_rows_sum_to_zero(x, data):
    """sum_j p_j (g_j - sum_i g_i p_i) = 0: a softmax cannot change its own total."""
    g = data.draw(arrays(np.float64, x.shape, elements=st.floats(-10, 10)), label="grad_output")
    rows = reference.softmax_backward(g, x, 1).sum(axis=1)
    agrees(rows, np.zeros_like(rows), "sum_j d softmax", scale=np.abs(g).max(initial=1.0), k=k_for_sum("float64", x.shape[1]))


def class_problem(with_weight: bool):
    def build(draw):
        n, c = draw(st.integers(1, 6), label="N"), draw(st.integers(1, 6), label="C")
        x = draw(exact_reals(st.just((n, c))), label="logits")
        target = np.array(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n), label="target"))
        weight = np.array(draw(st.lists(st.floats(0.1, 3), min_size=c, max_size=c), label="weight")) if with_weight else None
        return x, target, weight

    return st.composite(lambda draw: build(draw))()


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@given(problem=class_problem(with_weight=False))
def test_cross_entropy_with_one_hot_probabilities_equals_class_indices(reduction, problem):
    x, target, _ = problem
    one_hot = reference.one_hot(target, x.shape[1]).astype(np.float64)
    agrees(reference.cross_entropy(x, one_hot, reduction=reduction), reference.cross_entropy(x, target, reduction=reduction), "CE(one-hot) = CE(index)")
    torch_probs = F.cross_entropy(torch.from_numpy(x), torch.from_numpy(one_hot), reduction=reduction).numpy()
    torch_index = F.cross_entropy(torch.from_numpy(x), torch.from_numpy(target), reduction=reduction).numpy()
    agrees(torch_probs, torch_index, "torch: CE(one-hot) = CE(index)")


@pytest.mark.parametrize("reduction", ["none", "sum"])
@given(problem=class_problem(with_weight=True))
def test_weighted_one_hot_probabilities_equal_weighted_indices_unless_averaged(reduction, problem):
    """With weights, the two agree per sample and summed; 'mean' divides by sum w_t for indices but
    by N for probabilities (tests/test_conventions.py)."""
    x, target, w = problem
    one_hot = reference.one_hot(target, x.shape[1]).astype(np.float64)
    agrees(reference.cross_entropy(x, one_hot, weight=w, reduction=reduction), reference.cross_entropy(x, target, weight=w, reduction=reduction), "weighted CE(one-hot) = CE(index)", scale=w.max())


@given(problem=class_problem(with_weight=True))
def test_cross_entropy_is_nll_of_log_softmax(problem):
    x, target, w = problem
    agrees(reference.cross_entropy(x, target, weight=w), reference.nll_loss(reference.log_softmax(x, 1), target, weight=w), "CE = NLL(log_softmax)", scale=w.max())


@given(problem=class_problem(with_weight=False))
def test_cross_entropy_gradient_is_softmax_minus_one_hot(problem):
    """The notebooks' chain rule, summed: dCE/dz = (softmax(z) - onehot(t)) / N."""
    x, target, _ = problem
    expected = (reference.softmax(x, 1) - reference.one_hot(target, x.shape[1])) / len(target)
    agrees(reference.cross_entropy_backward(np.ones(()), x, target), expected, "dCE/dz = softmax - onehot")


@given(z=exact_reals(bound=20), data=st.data())
def test_bce_of_sigmoid_equals_bce_with_logits(z, data):
    """Where p = sigmoid(z) is not clamped (|z| <= 20, so log p > -100). Going through p costs
    accuracy: rounding p to float64 moves log(1 - p) by up to eps (1 + e^z), the scale used here."""
    y = data.draw(arrays(np.float64, z.shape, elements=st.floats(0, 1)), label="target")
    via_p = reference.binary_cross_entropy(reference.sigmoid(z), y, reduction="none")
    agrees(via_p, reference.binary_cross_entropy_with_logits(z, y, reduction="none"), "BCE(sigmoid(z)) = BCE_logits(z)", scale=1 + np.exp(np.abs(z)))


@given(labels=arrays(np.int64, shapes(max_dims=2), elements=st.integers(0, 9)), extra=st.integers(0, 3))
def test_one_hot_rows_sum_to_one_and_argmax_recovers_the_label(labels, extra):
    encoded = reference.one_hot(labels, 10 + extra)
    assert encoded.dtype == np.int64 and (encoded.sum(axis=-1) == 1).all()
    assert (encoded.argmax(axis=-1) == labels).all()
