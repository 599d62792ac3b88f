"""Learning-rate schedules: torch.optim.lr_scheduler stepped 300 times against the closed forms in
reference/schedules.py.

torch's recursive forms multiply the previous rate by a ratio at each step, so their rounding
accumulates: each step's ratio and product round at most ROUNDINGS times, half an ULP of the initial
rate each; the closed form itself rounds a few times. The tolerance is the policy's k plus that growth,
in ULPs of max(η_0, η_t): k + ROUNDINGS · t / 2.

CosineAnnealingLR is the exception, declared here with its measured size: torch's recursive form
multiplies by (1 + cos(πt/T)) / (1 + cos(π(t − 1)/T)), whose denominator nears 0 around odd multiples
of T_max, so the rounding accumulated so far is amplified there instead of growing by a few ULPs a
step. Measured over T_max = 1..120, η_min ∈ {0, 1e-3}, η_0 ∈ {0.1, 1, 3e-4} and 300 steps: at most
5.4e-13 of max(η_0, η_min) (T_max = 111, at t = 222). COSINE_DEPARTURE bounds it at 1e-12.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler as L

from checks import dtypes
from checks.compare import Context, assert_agrees, compare
from checks.tolerance import k_for
from reference import schedules

F64 = dtypes.get("float64")
STEPS = 300
COSINE_DEPARTURE = 1e-12  # relative to max(η_0, η_min): see the module docstring

# name: (torch scheduler, closed form, hyper-parameters, roundings per step of torch's form)
CASES = {
    "StepLR": (L.StepLR, schedules.step_lr, st.fixed_dictionaries({"step_size": st.integers(1, 40), "gamma": st.sampled_from([0.1, 0.5, 0.9])}), 1),
    "MultiStepLR": (L.MultiStepLR, schedules.multi_step_lr,
                    st.fixed_dictionaries({"milestones": st.lists(st.integers(1, STEPS), max_size=5).map(sorted), "gamma": st.sampled_from([0.1, 0.5])}), 1),
    "ExponentialLR": (L.ExponentialLR, schedules.exponential_lr, st.fixed_dictionaries({"gamma": st.sampled_from([0.99, 0.95, 0.9])}), 1),
    "CosineAnnealingLR": (L.CosineAnnealingLR, schedules.cosine_annealing_lr,
                          st.fixed_dictionaries({"T_max": st.integers(1, 120), "eta_min": st.sampled_from([0.0, 1e-3])}), None),
    "LinearLR": (L.LinearLR, schedules.linear_lr, st.fixed_dictionaries(
        {"start_factor": st.sampled_from([1 / 3, 0.1, 0.5]), "end_factor": st.sampled_from([1.0, 0.5]), "total_iters": st.integers(1, 100)}), 4),
    "OneCycleLR": (L.OneCycleLR, schedules.one_cycle_lr, st.fixed_dictionaries(
        {"total_steps": st.just(STEPS), "pct_start": st.sampled_from([0.3, 0.1, 0.5]), "div_factor": st.sampled_from([25.0, 10.0]),
         "final_div_factor": st.sampled_from([1e4, 100.0])}), 0),
}


def torch_rates(scheduler, hyper: dict, lr: float) -> np.ndarray:
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    optimizer = torch.optim.SGD([param], lr=lr)
    kwargs = {**hyper, "max_lr": lr} if scheduler is L.OneCycleLR else hyper
    sched = scheduler(optimizer, **kwargs)
    rates = [sched.get_last_lr()[0]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # OneCycleLR's momentum cycling on plain SGD
        for _ in range(STEPS if scheduler is not L.OneCycleLR else hyper["total_steps"]):
            optimizer.step()
            sched.step()
            rates.append(sched.get_last_lr()[0])
    return np.array(rates)


# 300 steps per draw: 4 draws per scheduler in the default run (the thorough profile's hundreds find
# the worst T_max), for the suite's budget.
@pytest.mark.parametrize("name", list(CASES))
@settings(max_examples=4 if settings.get_current_profile_name() != "thorough" else settings().max_examples)
@given(data=st.data())
def test_scheduler_follows_its_closed_form(name, data):
    scheduler, closed, hyper_strategy, roundings = CASES[name]
    hyper, lr = data.draw(hyper_strategy, label="hyper"), data.draw(st.sampled_from([0.1, 1.0, 3e-4]), label="lr")
    theirs = torch_rates(scheduler, {**hyper, "cycle_momentum": False} if scheduler is L.OneCycleLR else hyper, lr)
    t = np.arange(theirs.size)
    first = {"max_lr": lr} if scheduler is L.OneCycleLR else {"lr": lr}
    ours = np.array([closed(int(step), **first, **hyper) for step in t])
    if roundings is None:  # CosineAnnealingLR: its declared departure
        size = max(lr, hyper["eta_min"])
        worst = int(np.argmax(np.abs(theirs - ours)))
        assert np.max(np.abs(theirs - ours)) <= COSINE_DEPARTURE * size, (
            f"{name} lr={lr}, {hyper}: step {worst}: torch {theirs[worst]!r}, closed form {ours[worst]!r}, "
            f"beyond the declared recursive departure {COSINE_DEPARTURE:g} x {size:g}")
        return
    k = k_for("forward", "float64")
    # the allowance k + roundings·t/2 ULPs of the rate's size, as a scale on k ULPs (times 2: the ULP at
    # a larger scale can be up to a factor 2 smaller than the scale's ratio, ULPs step by powers of two)
    growth = 2 * (k + roundings * t / 2) / k
    context = Context(name, "lr", "torch.optim.lr_scheduler", "cpu", "float64", theirs.shape, f"lr={lr}, {hyper}")
    assert_agrees(compare(theirs, ours, scale=max(lr, np.max(np.abs(ours))) * growth, info=F64, k=k, context=context))


def test_cosine_annealing_passes_eta_min_at_T_max_and_comes_back():
    """The closed form is periodic: eta_min at T_max, eta_0 again at 2 T_max, and torch follows it."""
    rates = torch_rates(L.CosineAnnealingLR, {"T_max": 10, "eta_min": 0.001}, 0.1)
    assert rates[10] == pytest.approx(0.001, rel=1e-12) and rates[20] == pytest.approx(0.1, rel=1e-12)
    assert schedules.cosine_annealing_lr(10, 0.1, 10, 0.001) == pytest.approx(0.001, rel=1e-15)


def test_schedules_refuse_bad_arguments_by_name():
    with pytest.raises(ValueError, match="step_size"):
        schedules.step_lr(3, 0.1, 0)
    with pytest.raises(ValueError, match="T_max"):
        schedules.cosine_annealing_lr(3, 0.1, 0)
    with pytest.raises(ValueError, match="step"):
        schedules.exponential_lr(-1, 0.1, 0.9)
