"""Optimizer update rules by hand (reference.optim) against torch.optim, step by step.

Each step starts the hand rule from torch's parameter and state before the step, so every step is
judged on its own (rounding from earlier steps is not charged twice). The parameter's natural scale
is |p| + |dp|: an update p - dp rounds at that size. State moments are judged at the size of their
terms (see _state_scale). An update rule chains four to seven roundings in the parameter's dtype
(the direction d = g + wd p is rounded before it is squared), where the policy's k is set for one
op, so a rule gets 2k. Measured: 2.9 ULP worst over 300 draws per cell, 4.74 ULP once in the
thorough profile (bfloat16 exp_avg_sq, k = 4 per op); 2k = 16 ULP in float64 is still 3.5e-15.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from checks import dtypes
from checks.compare import Context, assert_agrees, compare
from checks.spec import FLOAT_DTYPES
from checks.tolerance import k_for
from reference import optim

RULE_K_FACTOR = 2  # see the module docstring

TORCH = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad}
STATE_KEYS = {"momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "square_avg", "grad_avg", "sum"}


def sgd_hyper():
    return st.fixed_dictionaries(
        {"lr": st.sampled_from([0.001, 0.1, 0.5]), "momentum": st.sampled_from([0.0, 0.9]), "dampening": st.sampled_from([0.0, 0.5]),
         "weight_decay": st.sampled_from([0.0, 0.01]), "nesterov": st.booleans(), "maximize": st.booleans()}
    ).filter(lambda h: not h["nesterov"] or (h["momentum"] > 0 and h["dampening"] == 0))


def adam_hyper(weight_decay):
    return st.fixed_dictionaries(
        {"lr": st.sampled_from([0.001, 0.01]), "betas": st.sampled_from([(0.9, 0.999), (0.5, 0.9)]), "eps": st.sampled_from([1e-8, 1e-3]),
         "weight_decay": weight_decay, "amsgrad": st.booleans(), "maximize": st.booleans()}
    )


def rmsprop_hyper():
    return st.fixed_dictionaries(
        {"lr": st.sampled_from([0.001, 0.01]), "alpha": st.sampled_from([0.99, 0.5]), "eps": st.sampled_from([1e-8, 1e-3]),
         "weight_decay": st.sampled_from([0.0, 0.01]), "momentum": st.sampled_from([0.0, 0.9]), "centered": st.booleans(), "maximize": st.booleans()}
    )


def adagrad_hyper():
    return st.fixed_dictionaries(
        {"lr": st.sampled_from([0.01, 0.1]), "lr_decay": st.sampled_from([0.0, 0.1]), "weight_decay": st.sampled_from([0.0, 0.01]),
         "initial_accumulator_value": st.sampled_from([0.0, 0.1]), "eps": st.sampled_from([1e-10, 1e-3]), "maximize": st.booleans()}
    )


HYPER = {"sgd": sgd_hyper(), "adam": adam_hyper(st.sampled_from([0.0, 0.1])), "adamw": adam_hyper(st.sampled_from([0.0, 0.01, 0.1])),
         "rmsprop": rmsprop_hyper(), "adagrad": adagrad_hyper()}
RULES = {"sgd": optim.sgd_step, "adam": optim.adam_step, "adamw": optim.adamw_step, "rmsprop": optim.rmsprop_step, "adagrad": optim.adagrad_step}


def _np(t):
    return t.detach().to("cpu", torch.float64).numpy().copy()  # a float64 tensor would share memory with step()


def _torch_state(opt, param):
    state = opt.state[param]
    out = {k: _np(v) for k, v in state.items() if k in STATE_KEYS and v is not None}
    if "step" in state:
        out["step"] = int(state["step"])
    return out


# torch's CPU rounding of d = g + wd p in a reduced dtype rounds alpha = wd to the dtype, and (on one
# element) the product wd p, then the sum: half a unit each (measured: d = 0 where float32 gives -1.6e-5).
DIRECTION_UNITS = 1.5
NORMALISED = {"adam", "rmsprop", "adagrad"}  # the rules that step by d over a root of d^2


def _nearest_over_direction_rounding(actual, hand, rule, param, grad, state, hyper, info):
    """The hand rule's new parameter nearest torch's, over the direction d = +-g + wd p moved by its
    rounding. torch rounds d in the dtype (up to DIRECTION_UNITS units at |g| + wd |p|); where d
    cancels (g close to -wd p; with maximize, to wd p) and the rule divides d by its own size (Adam, RMSprop and Adagrad
    step by about lr d / |d|), that rounding alone decides the step, up to lr (in bfloat16, drawn:
    g = 0.00406, wd p = 0.00404 made d = 0 in torch, and the step lr = 0.1 by hand). Elsewhere the
    range is a fraction of a unit of the parameter. SGD steps by lr d, whose rounding is a rounding of
    the step (2k covers it); AdamW's decay is not in d, so its d = g is exact. A NaN or inf from torch
    is judged against the hand step itself."""
    coupled = hyper.get("weight_decay", 0.0) if rule in NORMALISED else 0.0
    if not coupled:  # d = +-g exactly, or a step in proportion to d
        return hand
    delta = DIRECTION_UNITS * dtypes.ulp(np.abs(grad) + coupled * np.abs(param), info)
    # The step is monotonic in d over so short a range, up to a flat extremum: its ends and middle bound it.
    candidates = [hand, *(RULES[rule](param, grad + shift, state, **hyper)[0] for shift in (-delta, delta))]
    return np.where(np.isfinite(actual), np.clip(actual, np.minimum.reduce(candidates), np.maximum.reduce(candidates)), hand)


def _state_scale(key, before, param, grad, hyper):
    """The size of each state's terms. The direction d = g + wd p can cancel, and torch rounds it at
    the size |g| + wd |p|, so that is d's size; v sums (1 - b2) d^2 at that size squared."""
    d = np.abs(grad) + (0.0 if hyper.get("decoupled") else hyper["weight_decay"]) * np.abs(param)
    if key == "sum":  # Adagrad: G + d^2
        return np.abs(before.get(key, 0.0)) + d * d
    if "alpha" in hyper:  # RMSprop: v, the centered mean, and the buffer of d / (sqrt(v) + eps)
        a = hyper["alpha"]
        v = a * np.abs(before.get("square_avg", 0.0)) + (1 - a) * d * d
        if key == "square_avg":
            return v
        if key == "grad_avg":
            return a * np.abs(before.get(key, 0.0)) + (1 - a) * d
        return hyper["momentum"] * np.abs(before.get(key, 0.0)) + d / (np.sqrt(np.abs(v - (before.get("grad_avg", 0.0) ** 2 if hyper["centered"] else 0.0))) + hyper["eps"])
    if key == "momentum_buffer":
        return hyper["momentum"] * np.abs(before.get(key, 0.0)) + d
    b1, b2 = hyper["betas"]
    if key == "exp_avg":
        return b1 * np.abs(before.get(key, 0.0)) + (1 - b1) * d
    return b2 * np.abs(before.get("exp_avg_sq", 0.0)) + (1 - b2) * d * d


# Adam, RMSprop and Adagrad in float16 are not update rules torch can keep (eps rounds to 0 and a small
# gradient's square underflows: see the test below for Adam), so keep float32 master
# weights (as mixed precision does). SGD runs in every dtype.
CELLS = [(rule, dtype) for rule in RULES for dtype in FLOAT_DTYPES if rule == "sgd" or dtype != "float16"]


@pytest.mark.parametrize("rule, dtype", CELLS)
@given(data=st.data())
def test_update_rule_matches_torch_optim_at_every_step(device, rule, dtype, data):
    info = dtypes.get(dtype)
    if device == "mps" and dtype == "float64":
        pytest.skip("MPS has no float64")
    hyper = data.draw(HYPER[rule], label="hyper")
    steps = data.draw(st.integers(1, 6), label="steps")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    shape = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    param = torch.tensor(dtypes.round_to(rng.normal(0, 1, shape), info), dtype=info.torch, device=device, requires_grad=True)
    opt = TORCH[rule]([param], **hyper)
    k = k_for("forward", dtype) * RULE_K_FACTOR
    for step in range(1, steps + 1):
        grad = dtypes.round_to(rng.normal(0, 1, shape) * 10.0 ** rng.uniform(-3, 1), info)
        before_p, before_state = _np(param), _torch_state(opt, param)
        param.grad = torch.tensor(grad, dtype=info.torch, device=device)
        opt.step()
        hand_p, hand_state = RULES[rule](before_p, grad, before_state, **hyper)
        where = f"{rule} step {step} of {steps}, {hyper}"
        ctx = Context(rule, "param", "torch.optim", device, dtype, shape, where)
        nearest = _nearest_over_direction_rounding(_np(param), hand_p, rule, before_p, grad, before_state, hyper, info)
        assert_agrees(compare(_np(param), nearest, scale=np.abs(before_p) + np.abs(hand_p - before_p), info=info, k=k, context=ctx))
        after_state = _torch_state(opt, param)
        assert set(after_state) == set(hand_state), f"{where}: torch keeps {sorted(after_state)}, the hand rule {sorted(hand_state)}"
        for key in STATE_KEYS & set(hand_state):
            ctx = Context(rule, f"state[{key}]", "torch.optim", device, dtype, shape, where)
            scale = _state_scale(key, before_state, before_p, grad, {**hyper, "decoupled": rule == "adamw"})
            assert_agrees(compare(after_state[key], hand_state[key], scale=scale, info=info, k=k, context=ctx))


def test_notebook_manual_update_is_sgd_without_momentum():
    """The notebooks' `weight = weight - lr * weight.grad` is exactly one plain SGD step."""
    weight, grad, lr = np.array([[0.5, -0.25]]), np.array([[0.125, 2.0]]), 0.001
    new, _ = optim.sgd_step(weight, grad, {}, lr=lr)
    np.testing.assert_array_equal(new, weight - lr * grad)


@pytest.mark.parametrize("bad", [{"lr": -0.1}, {"lr": 0.1, "momentum": -1.0}, {"lr": 0.1, "nesterov": True}])
def test_sgd_rejects_bad_hyperparameters_by_name(bad):
    with pytest.raises(ValueError, match="lr|momentum|nesterov"):
        optim.sgd_step(np.ones(2), np.ones(2), {}, **bad)


def test_adam_rejects_betas_outside_the_unit_interval():
    with pytest.raises(ValueError, match="betas"):
        optim.adam_step(np.ones(2), np.ones(2), {}, betas=(1.0, 0.999))


def test_adam_in_float16_divides_by_zero_for_small_gradients():
    """eps = 1e-8 rounds to 0 in float16 and (1 - b2) g^2 underflows for |g| < ~0.008, so the first
    step computes m / (sqrt(0) + 0) = inf. By hand (exact): the first Adam step moves each
    parameter by lr * sign(g) / (1 + eps / |g|), i.e. about lr."""
    param = torch.zeros(1, dtype=torch.float16, requires_grad=True)
    opt = torch.optim.Adam([param], lr=0.001)
    param.grad = torch.tensor([0.001], dtype=torch.float16)
    opt.step()
    assert torch.isinf(param).all() or torch.isnan(param).all()
    hand, _ = optim.adam_step(np.zeros(1), np.array([0.001]), {}, lr=0.001)
    assert hand[0] == pytest.approx(-0.001 / (1 + 1e-8 / 0.001), rel=1e-12)
