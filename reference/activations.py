"""Elementwise activations: sigmoid, ReLU, LeakyReLU, ELU, and their hand-derived gradients.

Conventions where the derivative is undefined follow torch (measured in TORCH_NUMERICS.md):
at exactly 0, ReLU's gradient is 0, LeakyReLU's is the negative slope and ELU's is alpha; at NaN,
ReLU's and ELU's gradient is the upstream gradient and LeakyReLU's is ``slope * g`` (torch tests
``x > 0`` / ``x <= 0`` and NaN fails both comparisons). Hardtanh's gradient is 0 at both ends
(``x <= min_val or x >= max_val``) and g at NaN.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp

from reference import facts
from reference import symbolic as S
from reference._validation import as_float, check_grad_shape, symmetric_jvp, quiet, write_back


__all__ = ["elu", "elu_backward", "elu_jvp", "hardtanh", "hardtanh_backward", "hardtanh_jvp", "leaky_relu", "leaky_relu_backward",
           "leaky_relu_jvp", "relu", "relu_backward", "relu_jvp", "sigmoid", "sigmoid_backward", "sigmoid_jvp"]


def check_inplace(inplace: Any) -> None:
    """A JVP takes its forward's ``inplace`` and writes nothing (the derivative is the same); a
    non-bool is refused as the forward refuses it."""
    if not isinstance(inplace, (bool, np.bool_)):
        raise TypeError(f"inplace must be a bool, got {inplace!r}")


@quiet
@facts.declare(curve=facts.elementwise("sigmoid", -6, 6, "σ(x)"), accuracy=2, sums=False, lipschitz=lambda p: 0.25)
def sigmoid(input: Any) -> np.ndarray:
    r"""$\sigma(x) = 1/(1 + e^{-x})$, $\sigma'(x) = \sigma(x)\,\sigma(-x)$.

    Two branches so ``exp`` never overflows: $1/(1+e^{-x})$ for $x \ge 0$ and $e^{x}/(1+e^{x})$ below,
    which keeps the true (possibly subnormal) value for very negative x.
    """
    x = as_float(input, "input")
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@quiet
def sigmoid_backward(grad_output: Any, input: Any) -> np.ndarray:
    r"""$\partial L/\partial x = g\,\sigma(x)(1-\sigma(x)) = g\,\sigma(x)\sigma(-x)$.

    Written with $\sigma(-x)$ instead of $1-\sigma(x)$ so the tail does not cancel to 0.
    """
    x = as_float(input, "input")
    g = check_grad_shape(grad_output, x.shape)
    return g * sigmoid(x) * sigmoid(-x)


@quiet
def sigmoid_jvp(tangent: Any, input: Any) -> np.ndarray:
    r"""$\dot y = \sigma(x)\sigma(-x)\,\dot x$: J is diagonal, so J t is the backward's Jᵀ t."""
    return symmetric_jvp(sigmoid_backward, tangent, input)


@facts.derivation(sigmoid)
def _sigmoid() -> S.Derivation:
    x = S.x
    s = S.logistic(x)
    steps = (S.Step("quotient rule", sp.Eq(sp.Derivative(s, x), sp.exp(-x) / (1 + sp.exp(-x)) ** 2)),
             S.Step("as outputs", sp.Eq(sp.exp(-x) / (1 + sp.exp(-x)) ** 2, S.SIGMA(x) * S.SIGMA(-x))))
    return S.elementwise("sigmoid", s, s * S.logistic(-x), steps)


@quiet
@facts.declare(curve=facts.elementwise("relu", -3, 3, "relu(x)"), accuracy=0, sums=False, libm=0, lipschitz=lambda p: 1.0)
def relu(input: Any, inplace: bool = False) -> np.ndarray:
    r"""$\mathrm{relu}(x) = \max(x, 0)$, $\mathrm{relu}'(x) = [x > 0]$.

    ``where(x < 0, 0, x)`` keeps -0.0 and NaN as they are, like torch's ``clamp_min``.
    """
    x = as_float(input, "input")
    return write_back(input, np.where(x < 0, 0.0, x), inplace)


@quiet
def relu_backward(grad_output: Any, input: Any) -> np.ndarray:
    r"""$\partial L/\partial x = g\,[x > 0]$; torch's convention: 0 at $x = 0$, $g$ at NaN."""
    x = as_float(input, "input")
    g = check_grad_shape(grad_output, x.shape)
    return np.where(x <= 0, 0.0, g)


@quiet
def relu_jvp(tangent: Any, input: Any, inplace: bool = False) -> np.ndarray:
    r"""$\dot y = [x > 0]\,\dot x$: J is diagonal, so J t = Jᵀ t, the backward's (0 at $x = 0$, $\dot x$ at NaN)."""
    check_inplace(inplace)
    return symmetric_jvp(relu_backward, tangent, input)


@facts.derivation(relu)
def _relu() -> S.Derivation:
    x = S.x
    return S.elementwise("relu", sp.Piecewise((x, x > 0), (0, True)), sp.Piecewise((1, x > 0), (0, True)))


@quiet
@facts.declare(curve=facts.elementwise("leaky_relu", -3, 3, "leaky_relu(x), slope 0.1", negative_slope=0.1), accuracy=0, sums=False, libm=0,
               lipschitz=lambda p: max(1.0, abs(p.get("negative_slope", 0.01))))
def leaky_relu(input: Any, negative_slope: float = 0.01, inplace: bool = False) -> np.ndarray:
    r"""$f(x) = x$ for $x > 0$, $a x$ otherwise; $f'(x) = 1$ for $x > 0$, $a$ otherwise."""
    x = as_float(input, "input")
    return write_back(input, np.where(x > 0, x, x * float(negative_slope)), inplace)


@quiet
def leaky_relu_backward(grad_output: Any, input: Any, negative_slope: float = 0.01) -> np.ndarray:
    r"""$\partial L/\partial x = g$ for $x > 0$, $a\,g$ otherwise (so $a\,g$ at 0 and at NaN, as torch)."""
    x = as_float(input, "input")
    g = check_grad_shape(grad_output, x.shape)
    return np.where(x > 0, g, g * float(negative_slope))


@quiet
def leaky_relu_jvp(tangent: Any, input: Any, negative_slope: float = 0.01, inplace: bool = False) -> np.ndarray:
    r"""$\dot y = \dot x$ for $x > 0$, $a\,\dot x$ otherwise: J is diagonal, so J t = Jᵀ t, the backward's."""
    check_inplace(inplace)
    return symmetric_jvp(leaky_relu_backward, tangent, input, negative_slope)


@facts.derivation(leaky_relu)
def _leaky_relu() -> S.Derivation:
    x, a = S.x, S.a
    return S.elementwise("leaky_relu", sp.Piecewise((x, x > 0), (a * x, True)), sp.Piecewise((1, x > 0), (a, True)),
                         params={"negative_slope": a}, a=(0.0, 1.0))


@quiet
@facts.declare(curve=facts.elementwise("elu", -4, 3, "elu(x), α = 1", alpha=1.0), accuracy=2, sums=False,
               lipschitz=lambda p: max(1.0, abs(p.get("alpha", 1.0))))
def elu(input: Any, alpha: float = 1.0, inplace: bool = False) -> np.ndarray:
    r"""$f(x) = x$ for $x > 0$, $\alpha(e^{x} - 1)$ otherwise; $f'(x) = 1$, resp. $\alpha e^{x}$.

    ``expm1`` keeps full relative precision for small negative x.
    """
    x = as_float(input, "input")
    return write_back(input, np.where(x > 0, x, float(alpha) * np.expm1(np.minimum(x, 0.0))), inplace)


@quiet
def elu_backward(grad_output: Any, input: Any, alpha: float = 1.0) -> np.ndarray:
    r"""$\partial L/\partial x = g$ for $x > 0$, $\alpha e^{x} g$ for $x \leq 0$ (torch: $\alpha g$ at 0, $g$ at NaN)."""
    x = as_float(input, "input")
    g = check_grad_shape(grad_output, x.shape)
    return np.where(x <= 0, g * float(alpha) * np.exp(np.minimum(x, 0.0)), g)


@quiet
def elu_jvp(tangent: Any, input: Any, alpha: float = 1.0, inplace: bool = False) -> np.ndarray:
    r"""$\dot y = \dot x$ for $x > 0$, $\alpha e^{x}\dot x$ for $x \leq 0$: J is diagonal, so J t = Jᵀ t, the backward's."""
    check_inplace(inplace)
    return symmetric_jvp(elu_backward, tangent, input, alpha)


@facts.derivation(elu)
def _elu() -> S.Derivation:
    x, alpha = S.x, S.alpha
    return S.elementwise("elu", sp.Piecewise((x, x > 0), (alpha * (sp.exp(x) - 1), True)), sp.Piecewise((1, x > 0), (alpha * sp.exp(x), True)),
                         params={"alpha": alpha}, alpha=(0.1, 3.0))


@quiet
@facts.declare(curve=facts.elementwise("hardtanh", -2.5, 2.5, "hardtanh(x), [−1, 1]"), accuracy=0, sums=False, libm=0, lipschitz=lambda p: 1.0)
def hardtanh(input: Any, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> np.ndarray:
    r"""$\min(\max(x, a), b)$ for $[a, b]$ = [min_val, max_val]; derivative 1 inside, 0 outside."""
    x = as_float(input, "input")
    low, high = _bounds(min_val, max_val)
    return write_back(input, np.where(x < low, low, np.where(x > high, high, x)), inplace)  # NaN stays NaN, like torch's clamp


@quiet
def hardtanh_backward(grad_output: Any, input: Any, min_val: float = -1.0, max_val: float = 1.0) -> np.ndarray:
    r"""$\partial L/\partial x = g$ for $a < x < b$, else 0 (torch: 0 at both ends, g at NaN)."""
    x = as_float(input, "input")
    g = check_grad_shape(grad_output, x.shape)
    low, high = _bounds(min_val, max_val)
    return np.where((x <= low) | (x >= high), 0.0, g)


@quiet
def hardtanh_jvp(tangent: Any, input: Any, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> np.ndarray:
    r"""$\dot y = \dot x$ for $a < x < b$, else 0: J is diagonal, so J t = Jᵀ t, the backward's."""
    _bounds(min_val, max_val)
    check_inplace(inplace)
    return symmetric_jvp(hardtanh_backward, tangent, input, min_val, max_val)


def _bounds(min_val: Any, max_val: Any) -> tuple[float, float]:
    low, high = float(min_val), float(max_val)
    if low > high:  # torch's own check; equal bounds are allowed and make a constant (gradient 0)
        raise ValueError(f"min_val cannot be greater than max_val, got min_val={low}, max_val={high}")
    return low, high


@facts.derivation(hardtanh)
def _hardtanh() -> S.Derivation:
    x, a, b = S.x, sp.Symbol("a", real=True), sp.Symbol("b", real=True)
    f = sp.Piecewise((a, x <= a), (b, x >= b), (x, True))
    hand = sp.Piecewise((0, x <= a), (0, x >= b), (1, True))
    return S.elementwise("hardtanh", f, hand, params={"min_val": a, "max_val": b}, a=(-2.0, -0.1), b=(0.1, 2.0))
