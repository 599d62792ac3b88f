r"""Learning-rate schedules in closed form: the learning rate at step $t$ (after $t$ calls of
``scheduler.step()``) from the initial rate $\eta_0$, as torch.optim.lr_scheduler documents them.

torch computes most of them recursively, one multiplication per step from the previous rate (the
documentation gives both forms for CosineAnnealingLR); tests/test_schedules.py checks that the two
agree, to within the rounding the recursion accumulates.
"""
from __future__ import annotations

import math
from typing import Sequence


def _check(t: int) -> int:
    if int(t) != t or t < 0:
        raise ValueError(f"step must be a non-negative integer, got {t}")
    return int(t)


def step_lr(t: int, lr: float, step_size: int, gamma: float = 0.1) -> float:
    r"""$\eta_t = \eta_0\,\gamma^{\lfloor t / s \rfloor}$."""
    if step_size < 1:
        raise ValueError(f"step_size must be >= 1, got {step_size}")
    return lr * gamma ** (_check(t) // step_size)


def multi_step_lr(t: int, lr: float, milestones: Sequence[int], gamma: float = 0.1) -> float:
    r"""$\eta_t = \eta_0\,\gamma^{|\{m \in \text{milestones} : m \le t\}|}$ (a repeated milestone counts twice, as in torch)."""
    return lr * gamma ** sum(1 for m in milestones if m <= _check(t))


def exponential_lr(t: int, lr: float, gamma: float) -> float:
    r"""$\eta_t = \eta_0\,\gamma^t$."""
    return lr * gamma ** _check(t)


def cosine_annealing_lr(t: int, lr: float, T_max: int, eta_min: float = 0.0) -> float:
    r"""$\eta_t = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})(1 + \cos(\pi t / T_{max}))$, periodic past $T_{max}$."""
    if T_max < 1:
        raise ValueError(f"T_max must be >= 1, got {T_max}")
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * _check(t) / T_max)) / 2


def linear_lr(t: int, lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5) -> float:
    r"""$\eta_t = \eta_0\,(f_s + (f_e - f_s)\min(t, T)/T)$."""
    if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
        raise ValueError(f"start_factor must be in (0, 1] and end_factor in [0, 1], got {start_factor}, {end_factor}")
    return lr * (start_factor + (end_factor - start_factor) * min(_check(t), total_iters) / total_iters)


def one_cycle_lr(t: int, max_lr: float, total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0,
                 final_div_factor: float = 1e4) -> float:
    r"""Cosine from $\eta_{max}/d$ up to $\eta_{max}$ over the first pct_start of the steps, then down to
    $\eta_{max}/(d\,d_f)$: $\eta = e + \tfrac12(s - e)(1 + \cos(\pi p))$ in each phase, $p$ its fraction done."""
    t = _check(t)
    if t > total_steps:
        raise ValueError(f"step {t} is past total_steps = {total_steps}")
    initial = max_lr / div_factor
    phases = ((float(pct_start * total_steps) - 1, initial, max_lr), (total_steps - 1, max_lr, initial / final_div_factor))
    start_step = 0.0
    for i, (end_step, start, end) in enumerate(phases):
        if t <= end_step or i == len(phases) - 1:
            pct = (t - start_step) / (end_step - start_step)
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        start_step = end_step
    raise AssertionError("unreachable")
