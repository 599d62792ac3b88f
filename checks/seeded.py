"""The course notebooks' seeded computations, as torch runs them, for baselines.

The notebooks (../shared/seeds/) build small networks under ``torch.manual_seed(11052023)``, run
them on a fixed 4x5 input and train them with SGD and Adam. A torch upgrade that changes the
initialisation, a kernel or an optimizer's arithmetic changes these numbers: the baseline records
them exactly and :mod:`checks.baseline` reports what moved. Also recorded: the default arguments
of every registry functional and optimizer, since a changed default silently changes a notebook.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from checks.registry import REGISTRY

SEED = 11052023
NOTEBOOK_INPUT = np.array(
    [
        [0.7550, 0.2580, -0.0376, -0.5695, 0.0454],
        [-0.6897, 1.4822, 0.7860, -2.0889, -0.4481],
        [0.4464, 0.7335, -0.9837, 1.7818, -0.9048],
        [-0.7997, 1.1157, -0.4644, 1.1144, -0.6903],
    ]
)
REGRESSION_TARGET = np.array([[3.1], [2.3], [1.2], [0.4]])
TRAINING_STEPS = 10
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "sgd": (torch.optim.SGD, {"lr": 0.01, "momentum": 0.9}),
    "adam": (torch.optim.Adam, {"lr": 0.01}),
    "adamw": (torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
}


def seeded_net(*sizes: int) -> nn.Sequential:
    """Linear layers of the given sizes, initialised as the notebooks do (float32)."""
    torch.manual_seed(SEED)
    return nn.Sequential(*(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).numpy().copy()


def _parameters(net: nn.Module) -> dict[str, np.ndarray]:
    return {name: _np(p) for name, p in net.named_parameters()}


def _init() -> dict[str, np.ndarray]:
    return _parameters(seeded_net(5, 4, 3))


def _forward() -> dict[str, np.ndarray]:
    net, x = seeded_net(5, 4, 3), torch.tensor(NOTEBOOK_INPUT, dtype=torch.float32)
    out = net(x)
    return {"pre_activation": _np(out), "softmax": _np(torch.softmax(out, dim=-1))}


def _regression() -> dict[str, np.ndarray]:
    net, x = seeded_net(5, 4, 1), torch.tensor(NOTEBOOK_INPUT, dtype=torch.float32)
    out = net(x)
    return {"output": _np(out), "mse": _np(nn.MSELoss()(out, torch.tensor(REGRESSION_TARGET, dtype=torch.float32)))}


def _trajectory(name: str) -> Callable[[], dict[str, np.ndarray]]:
    def run() -> dict[str, np.ndarray]:
        net = seeded_net(5, 4, 1)
        x, y = torch.tensor(NOTEBOOK_INPUT, dtype=torch.float32), torch.tensor(REGRESSION_TARGET, dtype=torch.float32)
        cls, hyper = OPTIMIZERS[name]
        optimizer = cls(net.parameters(), **hyper)
        losses = []
        for _ in range(TRAINING_STEPS):
            optimizer.zero_grad()
            loss = nn.MSELoss()(net(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return {"losses": np.array(losses), **_parameters(net)}
    return run


# name -> (how many chained steps of rounding it holds, how to compute it)
RECORDS: dict[str, tuple[int, Callable[[], dict[str, np.ndarray]]]] = {
    "init 5-4-3": (1, _init),
    "forward 5-4-3": (2, _forward),
    "regression 5-4-1": (3, _regression),
    **{f"{name} trajectory": (3 * TRAINING_STEPS, _trajectory(name)) for name in OPTIMIZERS},
}


def _default(value: Any) -> Any:
    return value if isinstance(value, (bool, int, float, str, type(None))) else repr(value)


def defaults() -> dict[str, dict[str, Any]]:
    """Every keyword default of the registry's functionals and of the optimizers, JSON-ready.
    (Functionals that are C builtins, like torch.sigmoid, expose no signature: nothing to record.)"""
    found: dict[str, dict[str, Any]] = {}
    for spec in REGISTRY:
        try:
            parameters = inspect.signature(spec.functional).parameters.values()
        except ValueError:
            continue
        found[f"{spec.name}: {spec.functional.__module__}.{spec.functional.__name__}"] = {
            p.name: _default(p.default) for p in parameters if p.default is not inspect.Parameter.empty}
    for name, (cls, _) in OPTIMIZERS.items():
        found[f"torch.optim.{cls.__name__}"] = {k: _default(v) for k, v in cls([nn.Parameter(torch.zeros(1))]).defaults.items()}
    return found
