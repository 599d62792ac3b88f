"""batch_norm's running statistics: in training mode torch updates running_mean and running_var in
place, and they must equal the hand update (1 - m)·running + m·batch statistic, with the *unbiased*
variance n/(n - 1)·σ² for the running estimate, after the call, in every dtype."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference
import torch
import torch.nn.functional as F
from checks import dtypes
from checks.compare import Context, assert_agrees, compare
from checks.registry import get
from checks.runner import build_case, to_numpy, to_tensor
from checks.spec import Recipe
from checks.strategies import recipes
from checks.tolerance import k_for
from reference import oracle

SPEC = get("batch_norm")
TRAINING = dataclasses.replace(SPEC, knobs=SPEC.knobs.map(lambda k: {**k, "training": True, "running": True}))


def _sizes(x: np.ndarray, momentum: float, mean: np.ndarray, var: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
    """The size of each update's terms: (1 - m)|running| + m·(the batch statistic's terms), the
    statistic's sum growing by half an ULP a term past 2k terms (checks.tolerance.k_for_sum)."""
    rows = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)
    n = rows.shape[1]
    grow = max(1.0, n / (2 * k))
    with np.errstate(all="ignore"):  # inf and NaN draws: their scale is NaN, and the policy reads |expected|
        size = np.abs(rows) + np.mean(np.abs(rows), axis=1, keepdims=True)
        return ((1 - momentum) * np.abs(mean) + momentum * np.mean(np.abs(rows), axis=1) * grow,
                (1 - momentum) * np.abs(var) + momentum * n / (n - 1) * np.mean(size**2, axis=1) * grow)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@given(recipe=recipes(TRAINING))
def test_running_statistics_after_a_training_step(dtype, recipe):
    info = dtypes.get(dtype)
    case = build_case(TRAINING, recipe, info)
    x, p = case.inputs["input"], case.params
    mean, var = p["running_mean"].copy(), p["running_var"].copy()
    tensors = {k: to_tensor(v, info, "cpu") for k, v in p.items()}
    SPEC.functional(to_tensor(x, info, "cpu"), **tensors)
    reference.batch_norm(x, mean, var, p["weight"], p["bias"], True, p["momentum"], p["eps"])  # updates mean, var in place
    k = k_for("forward", dtype)
    mean_size, var_size = _sizes(x, p["momentum"], p["running_mean"], p["running_var"], k)
    for name, theirs, ours, size in (("running_mean", tensors["running_mean"], mean, mean_size), ("running_var", tensors["running_var"], var, var_size)):
        context = Context("batch_norm", f"after[{name}]", "functional", "cpu", dtype, x.shape, f"momentum={p['momentum']}")
        assert_agrees(compare(to_numpy(theirs), ours, scale=size, info=info, k=k, context=context))


def test_the_running_update_is_the_unbiased_variance_against_the_oracle():
    """One step by hand at 50 digits: the running variance moves toward n/(n - 1)·σ², not σ²."""
    x = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 1.0]])  # (N=3, C=2)
    mean, var = np.zeros(2), np.ones(2)
    reference.batch_norm(x, mean, var, training=True, momentum=0.5)
    truth_mean, truth_var = oracle.batch_norm_running(x, np.zeros(2), np.ones(2), 0.5)
    assert np.allclose(mean, truth_mean, rtol=1e-15) and np.allclose(var, truth_var, rtol=1e-15)
    assert np.allclose(var, 0.5 + 0.5 * np.var(x, axis=0, ddof=1))  # [2.5, 5.0833]


@pytest.mark.parametrize("shape, training", [((0,), True), ((0,), False), ((0, 3), True), ((0, 3), False), ((0, 3, 2), True), ((2, 3, 0), True)])
def test_batch_norm_of_an_empty_batch_is_empty_and_leaves_the_running_statistics(shape, training):
    """Nothing to normalise: torch returns the empty shape and does not touch its running statistics
    (a 1-D empty input counts as zero channels, and takes no weight: torch's select() fails on one);
    so does the reference, and its gradients are sums of no terms."""
    c = shape[1] if len(shape) > 1 else 0
    affine = len(shape) > 1
    ours_mean, ours_var = np.full(c, 0.25), np.full(c, 2.0)
    theirs_mean, theirs_var = torch.full((c,), 0.25, dtype=torch.float64), torch.full((c,), 2.0, dtype=torch.float64)
    x = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    w = torch.ones(c, dtype=torch.float64, requires_grad=True) if affine else None
    y = F.batch_norm(x, theirs_mean, theirs_var, w, None, training=training)
    y.backward(torch.zeros(shape, dtype=torch.float64))
    ours = reference.batch_norm(np.zeros(shape), ours_mean, ours_var, np.ones(c) if affine else None, None, training=training)
    assert ours.shape == tuple(y.shape) == shape
    assert ours_mean.tolist() == theirs_mean.tolist() == [0.25] * c and ours_var.tolist() == theirs_var.tolist() == [2.0] * c
    gx, gw, gb = reference.batch_norm_backward(np.zeros(shape), np.zeros(shape), ours_mean, ours_var, np.ones(c) if affine else None, None,
                                               training=training)
    assert gx.shape == shape and gb is None
    assert gw is None if not affine else gw.tolist() == w.grad.tolist() == [0.0] * c


@pytest.mark.parametrize("shape, groups", [((0, 4), 2), ((0, 4, 3), 4), ((2, 4, 0), 2)])
def test_group_norm_of_an_empty_input_is_empty(shape, groups):
    ours = reference.group_norm(np.zeros(shape), groups, np.ones(shape[1]))
    theirs = F.group_norm(torch.zeros(shape, dtype=torch.float64), groups, torch.ones(shape[1], dtype=torch.float64))
    assert ours.shape == tuple(theirs.shape) == shape
    gx, gw, _ = reference.group_norm_backward(np.zeros(shape), np.zeros(shape), groups, np.ones(shape[1]))
    assert gx.shape == shape and gw.tolist() == [0.0] * shape[1]


def test_group_norm_of_one_value_per_group_in_a_batch_of_two_is_zero():
    """torch refuses one value per group only when the batch holds one sample: x - mean = 0 in each group of one."""
    x = np.arange(8.0).reshape(2, 4, 1)
    assert reference.group_norm(x, 4).tolist() == F.group_norm(torch.from_numpy(x), 4).tolist() == np.zeros((2, 4, 1)).tolist()
