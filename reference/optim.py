"""Optimizer update rules by hand: SGD (momentum, dampening, Nesterov, weight decay, maximize),
Adam and AdamW (betas, eps, weight decay, AMSGrad, maximize), RMSprop (alpha, eps, centered,
momentum, weight decay) and Adagrad (lr decay, initial accumulator, eps, weight decay), as in torch.optim.

Each rule is a pure function ``step(param, grad, state, **hyper) -> (new_param, new_state)`` on one
parameter array; ``state`` is a dict (empty before the first step), never modified in place.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from reference._validation import as_float

State = dict[str, Any]


def _check_hyper(**values: float) -> None:
    for name, value in values.items():
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def _direction(param: np.ndarray, grad: np.ndarray, weight_decay: float, maximize: bool) -> np.ndarray:
    g = -grad if maximize else grad
    return g + weight_decay * param if weight_decay else g


def sgd_step(
    param: Any, grad: Any, state: State, *, lr: float, momentum: float = 0.0, dampening: float = 0.0,
    weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False,
) -> tuple[np.ndarray, State]:
    r"""$d = \pm g + \lambda p$; $b_1 = d$, $b_t = \mu b_{t-1} + (1-\tau) d$;
    $p \leftarrow p - \eta\,(d + \mu b_t$ if Nesterov else $b_t)$ (just $p - \eta d$ without momentum).

    The notebooks' ``weight - lr * weight.grad`` is the case $\mu = \lambda = 0$.
    """
    _check_hyper(lr=lr, momentum=momentum, weight_decay=weight_decay)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("nesterov requires momentum > 0 and dampening = 0")
    p, g = as_float(param, "param"), as_float(grad, "grad")
    d = _direction(p, g, weight_decay, maximize)
    if not momentum:
        return p - lr * d, dict(state)
    # The first step starts the buffer at d itself: no dampening yet (torch does the same).
    buf = d.copy() if "momentum_buffer" not in state else momentum * state["momentum_buffer"] + (1 - dampening) * d
    update = d + momentum * buf if nesterov else buf
    return p - lr * update, {**state, "momentum_buffer": buf}


def adam_step(
    param: Any, grad: Any, state: State, *, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False,
    decoupled_weight_decay: bool = False,
) -> tuple[np.ndarray, State]:
    r"""$m_t = \beta_1 m_{t-1} + (1-\beta_1) g$, $v_t = \beta_2 v_{t-1} + (1-\beta_2) g^2$;
    $p \leftarrow p - \frac{\eta}{1-\beta_1^t}\, m_t / (\sqrt{\hat v_t}/\sqrt{1-\beta_2^t} + \epsilon)$,
    $\hat v_t = v_t$, or $\max_{s \le t} v_s$ with AMSGrad. L2 weight decay adds $\lambda p$ to g;
    decoupled (AdamW) decay first shrinks $p \leftarrow p(1 - \eta\lambda)$."""
    b1, b2 = betas
    _check_hyper(lr=lr, eps=eps, weight_decay=weight_decay)
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"betas must be in [0, 1), got {betas}")
    p, g = as_float(param, "param"), as_float(grad, "grad")
    if decoupled_weight_decay:
        p, d = p * (1 - lr * weight_decay), _direction(p, g, 0.0, maximize)
    else:
        d = _direction(p, g, weight_decay, maximize)
    t = state.get("step", 0) + 1
    m = b1 * state.get("exp_avg", 0.0) + (1 - b1) * d
    v = b2 * state.get("exp_avg_sq", 0.0) + (1 - b2) * d * d
    new_state = {"step": t, "exp_avg": m, "exp_avg_sq": v}
    v_hat = v
    if amsgrad:
        v_hat = np.maximum(state.get("max_exp_avg_sq", 0.0), v)
        new_state["max_exp_avg_sq"] = v_hat
    denom = np.sqrt(v_hat) / np.sqrt(1 - b2**t) + eps
    return p - lr / (1 - b1**t) * m / denom, new_state


def adamw_step(param: Any, grad: Any, state: State, *, lr: float = 1e-3, weight_decay: float = 1e-2, **kwargs: Any) -> tuple[np.ndarray, State]:
    r"""Adam with decoupled weight decay: $p \leftarrow p(1 - \eta\lambda)$, then the Adam step on g."""
    return adam_step(param, grad, state, lr=lr, weight_decay=weight_decay, decoupled_weight_decay=True, **kwargs)


def rmsprop_step(
    param: Any, grad: Any, state: State, *, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
    momentum: float = 0.0, centered: bool = False, maximize: bool = False,
) -> tuple[np.ndarray, State]:
    r"""$v_t = \alpha v_{t-1} + (1-\alpha) d^2$; centered: $\bar g_t = \alpha \bar g_{t-1} + (1-\alpha) d$ and
    $v_t - \bar g_t^2$ under the root; $s = \sqrt{\cdot} + \epsilon$; $p \leftarrow p - \eta\,d/s$, or with
    momentum $b_t = \mu b_{t-1} + d/s$, $p \leftarrow p - \eta b_t$."""
    _check_hyper(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum)
    p, g = as_float(param, "param"), as_float(grad, "grad")
    d = _direction(p, g, weight_decay, maximize)
    v = alpha * state.get("square_avg", 0.0) + (1 - alpha) * d * d
    new_state: State = {"step": state.get("step", 0) + 1, "square_avg": v}
    if centered:
        mean = alpha * state.get("grad_avg", 0.0) + (1 - alpha) * d
        new_state["grad_avg"] = mean
        s = np.sqrt(v - mean * mean) + eps
    else:
        s = np.sqrt(v) + eps
    if momentum > 0:
        buf = momentum * state.get("momentum_buffer", 0.0) + d / s
        new_state["momentum_buffer"] = buf
        return p - lr * buf, new_state
    return p - lr * d / s, new_state


def adagrad_step(
    param: Any, grad: Any, state: State, *, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
    initial_accumulator_value: float = 0.0, eps: float = 1e-10, maximize: bool = False,
) -> tuple[np.ndarray, State]:
    r"""$G_t = G_{t-1} + d^2$ ($G_0$ = initial_accumulator_value); $p \leftarrow p - \frac{\eta}{1 + (t-1)\delta}\,d/(\sqrt{G_t} + \epsilon)$."""
    _check_hyper(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, initial_accumulator_value=initial_accumulator_value, eps=eps)
    p, g = as_float(param, "param"), as_float(grad, "grad")
    d = _direction(p, g, weight_decay, maximize)
    t = state.get("step", 0) + 1
    total = state.get("sum", np.full(p.shape, float(initial_accumulator_value))) + d * d
    clr = lr / (1 + (t - 1) * lr_decay)
    return p - clr * d / (np.sqrt(total) + eps), {"step": t, "sum": total}
