"""What is known about an op's math, declared beside its numpy functions with :func:`declare`.

Each reference forward carries a :class:`Facts`: its sympy derivation (attached with
:func:`derivation`), the curve the report plots (the function and its hand-derived derivative), where
it has kinks (finite differences must not straddle them), its domain, how accurate the reference
itself is against the 50-digit oracle, and, for a network layer, how much it can amplify an error in
its input. Consumers read ``facts.of(name)``; nothing keeps a table keyed by op name.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

Values = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _ref(name: str) -> Callable[..., Any]:
    return getattr(importlib.import_module("reference"), name)


@dataclass(frozen=True)
class Curve:
    """One input swept over [low, high]: ``values(t)`` gives the function and its derivative."""

    low: float
    high: float
    xlabel: str
    label: str
    values: Values


def elementwise(name: str, low: float, high: float, label: str, **params: Any) -> Curve:
    def values(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _ref(name)(t, **params), _ref(f"{name}_backward")(np.ones_like(t), t, **params)

    return Curve(low, high, "x", label, values)


def first_logit(name: str, low: float, high: float, xlabel: str, label: str) -> Curve:
    """softmax family: z = (t, 0, 0); the output or loss for class 0 and its derivative in z_0."""
    def values(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = np.stack([t, np.zeros_like(t), np.zeros_like(t)], axis=1)
        if name in ("softmax", "log_softmax"):
            upstream = np.zeros_like(z)
            upstream[:, 0] = 1.0
            return _ref(name)(z, dim=1)[:, 0], _ref(f"{name}_backward")(upstream, z, dim=1)[:, 0]
        target = np.zeros(len(t), dtype=np.int64)
        return _ref(name)(z, target, reduction="none"), _ref(f"{name}_backward")(np.ones(len(t)), z, target, reduction="none")[:, 0]

    return Curve(low, high, xlabel, label, values)


def against(name: str, target: float, low: float, high: float, xlabel: str, **params: Any) -> Curve:
    """A loss of x against a fixed target, element by element, and its derivative in x."""
    def values(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = np.full_like(t, target)
        gradient = _ref(f"{name}_backward")(np.ones_like(t), t, y, reduction="none", **params)
        return _ref(name)(t, y, reduction="none", **params), gradient[0] if isinstance(gradient, tuple) else gradient

    return Curve(low, high, xlabel, "loss", values)


@dataclass(frozen=True)
class Facts:
    curve: Curve | None  # None: nothing to plot (one_hot)
    # Where the loss, a function of |x - y|, has no derivative, for the op's parameters.
    kinks: Callable[[dict[str, Any]], list[float]] | None = None
    # The inputs moved inside the domain where a finite-difference step of 1e-6 stays defined.
    domain: Callable[[np.ndarray], np.ndarray] | None = None
    # The reference's own float64 error against the 50-digit oracle, in floored ULPs, and whether it
    # sums terms (then np.longdouble's precision matters, see tests/test_accuracy.py).
    accuracy: float = 2.5
    sums: bool = True
    # How many libm results (exp, log, log1p, expm1, tanh) one output depends on, each with a
    # relative sensitivity of at most 1: ``accuracy`` counts each as correctly rounded (glibc), and
    # numpy's own SIMD kernels may be half an ULP worse per result (tests/test_accuracy.py).
    libm: int = 2
    # The sympy derivation's builder (reference/symbolic.py), attached with @facts.derivation(op).
    derivation: Callable[..., Any] | None = None
    # A network layer: a bound on |f'| for the op's parameters (how much an error in the input can
    # grow), and whether the op mixes its elements along ``dim`` (softmax), so that an error
    # anywhere in a row reaches every output of it.
    lipschitz: Callable[[dict[str, Any]], float] | None = None
    mixes: bool = False
    # A loss with per-element ``weight``: what its weighted 'mean' divides by, "weights" (their sum)
    # or "count" (the number of elements).
    weighted_mean: str = "count"


def declare(**facts: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Attach :class:`Facts` to a reference forward function."""
    def attach(function: Callable[..., Any]) -> Callable[..., Any]:
        function.facts = Facts(**facts)  # type: ignore[attr-defined]
        return function

    return attach


def derivation(forward: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Attach a sympy derivation's builder to a reference forward that already declares its facts."""
    def attach(builder: Callable[..., Any]) -> Callable[..., Any]:
        forward.facts = dataclasses.replace(forward.facts, derivation=builder)  # type: ignore[attr-defined]
        return builder

    return attach


def derived() -> list[str]:
    """Every reference op with a derivation, in reference.__all__ order."""
    module = importlib.import_module("reference")
    return [n for n in module.__all__ if getattr(getattr(getattr(module, n), "facts", None), "derivation", None) is not None]


def of(name: str) -> Facts:
    """The facts declared beside ``reference.<name>``."""
    found = getattr(_ref(name), "facts", None)
    if found is None:
        raise ValueError(f"reference.{name} declares no facts: decorate it with @facts.declare(curve=...)")
    return found
