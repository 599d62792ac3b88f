r"""Smooth activations: tanh, softplus, logsigmoid, GELU (exact and tanh-approximated), SiLU, Mish.

Each is written so the float64 reference keeps full relative precision where torch's own formula
cancels: $1 - \tanh^2 u$ is $\operatorname{sech}^2 u$, $1 + \tanh u$ is $2\sigma(2u)$ and
$\Phi(x) = \frac{1}{2}\operatorname{erfc}(-x/\sqrt{2})$. torch's cancellation is absolute (about eps times
the terms), which the registry's scales say per op.

Conventions (torch's, matched here): softplus is the identity where $\beta x > $ threshold, its
gradient then exactly g; NaN propagates through every forward and gradient.
"""
from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import sympy as sp

from reference import facts
from reference import symbolic as S
from reference._validation import as_float, check_grad_shape, symmetric_jvp, quiet, write_back
from reference.activations import check_inplace

__all__ = ["gelu", "gelu_backward", "gelu_jvp", "logsigmoid", "logsigmoid_backward", "logsigmoid_jvp", "mish", "mish_backward", "mish_jvp",
           "silu", "silu_backward", "silu_jvp", "softplus", "softplus_backward", "softplus_jvp", "tanh", "tanh_backward", "tanh_jvp"]

_erfc_object = np.frompyfunc(math.erfc, 1, 1)


def _erfc(x: np.ndarray) -> np.ndarray:
    """numpy has no erfc; math's (C99's) is accurate to an ulp or two, also in the tail."""
    return np.asarray(_erfc_object(x), dtype=np.float64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _sech2(u: np.ndarray) -> np.ndarray:
    r"""$\operatorname{sech}^2 u = 4 / (e^{u} + e^{-u})^2$, without the cancellation of $1 - \tanh^2 u$."""
    e = np.exp(-2.0 * np.abs(u))
    return 4.0 * e / (1.0 + e) ** 2


def _softplus(x: np.ndarray) -> np.ndarray:
    r"""$\log(1 + e^{x}) = \max(x, 0) + \log(1 + e^{-|x|})$: no overflow, no cancellation."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


# --- tanh ------------------------------------------------------------------------------------------

@quiet
@facts.declare(curve=facts.elementwise("tanh", -4, 4, "tanh(x)"), accuracy=2, sums=False, lipschitz=lambda p: 1.0)
def tanh(input: Any) -> np.ndarray:
    r"""$\tanh x = (e^{x} - e^{-x})/(e^{x} + e^{-x})$, $\tanh' x = 1 - \tanh^2 x = \operatorname{sech}^2 x$."""
    return np.tanh(as_float(input, "input"))


@quiet
def tanh_backward(grad_output: Any, input: Any) -> np.ndarray:
    r"""$\partial L/\partial x = g\,\operatorname{sech}^2 x$ (torch: $g(1 - y^2)$ on the rounded output y)."""
    x = as_float(input, "input")
    return check_grad_shape(grad_output, x.shape) * _sech2(x)


@quiet
def tanh_jvp(tangent: Any, input: Any) -> np.ndarray:
    r"""$\dot y = \operatorname{sech}^2 x\,\dot x$: J is diagonal, so J t = Jᵀ t, the backward's."""
    return symmetric_jvp(tanh_backward, tangent, input)


@facts.derivation(tanh)
def _tanh() -> S.Derivation:
    x = S.x
    quotient = (sp.exp(x) - sp.exp(-x)) / (sp.exp(x) + sp.exp(-x))
    steps = (S.Step("as exponentials", sp.Eq(sp.tanh(x), quotient)),
             S.Step("quotient rule", sp.Eq(sp.Derivative(quotient, x), 4 / (sp.exp(x) + sp.exp(-x)) ** 2)))
    return S.elementwise("tanh", sp.tanh(x), 1 - sp.tanh(x) ** 2, steps)


# --- softplus and logsigmoid -------------------------------------------------------------------------

@quiet
@facts.declare(curve=facts.elementwise("softplus", -4, 4, "softplus(x), β = 1"), accuracy=2, sums=False, lipschitz=lambda p: 1.0)
def softplus(input: Any, beta: float = 1.0, threshold: float = 20.0) -> np.ndarray:
    r"""$\frac{1}{\beta}\log(1 + e^{\beta x})$, and $x$ where $\beta x >$ threshold (torch's convention);
    the derivative is $\sigma(\beta x)$, and 1 past the threshold."""
    x = as_float(input, "input")
    bx = x * float(beta)
    return np.where(bx > float(threshold), x, _softplus(bx) / float(beta))


@quiet
def softplus_backward(grad_output: Any, input: Any, beta: float = 1.0, threshold: float = 20.0) -> np.ndarray:
    r"""$\partial L/\partial x = g\,\sigma(\beta x)$, and $g$ where $\beta x >$ threshold."""
    x = as_float(input, "input")
    g = check_grad_shape(grad_output, x.shape)
    bx = x * float(beta)
    return np.where(bx > float(threshold), g, g * _sigmoid(bx))


@quiet
def softplus_jvp(tangent: Any, input: Any, beta: float = 1.0, threshold: float = 20.0) -> np.ndarray:
    r"""$\dot y = \sigma(\beta x)\,\dot x$, and $\dot x$ where $\beta x >$ threshold: J is diagonal, so J t = Jᵀ t, the backward's."""
    return symmetric_jvp(softplus_backward, tangent, input, beta, threshold)


@facts.derivation(softplus)
def _softplus_derivation() -> S.Derivation:
    x, b, t = S.x, S.beta, sp.Symbol("t", real=True)
    f = sp.Piecewise((x, b * x > t), (sp.log(1 + sp.exp(b * x)) / b, True))
    hand = sp.Piecewise((1, b * x > t), (S.logistic(b * x), True))
    return S.elementwise("softplus", f, hand, params={"beta": b, "threshold": t}, beta=(0.2, 3.0), t=(1.0, 30.0))


@quiet
@facts.declare(curve=facts.elementwise("logsigmoid", -6, 4, "log σ(x)"), accuracy=2, sums=False, lipschitz=lambda p: 1.0)
def logsigmoid(input: Any) -> np.ndarray:
    r"""$\log\sigma(x) = -\log(1 + e^{-x})$, $(\log\sigma)'(x) = 1 - \sigma(x) = \sigma(-x)$."""
    x = as_float(input, "input")
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


@quiet
def logsigmoid_backward(grad_output: Any, input: Any) -> np.ndarray:
    r"""$\partial L/\partial x = g\,\sigma(-x)$."""
    x = as_float(input, "input")
    return check_grad_shape(grad_output, x.shape) * _sigmoid(-x)


@quiet
def logsigmoid_jvp(tangent: Any, input: Any) -> np.ndarray:
    r"""$\dot y = \sigma(-x)\,\dot x$: J is diagonal, so J t = Jᵀ t, the backward's."""
    return symmetric_jvp(logsigmoid_backward, tangent, input)


@facts.derivation(logsigmoid)
def _logsigmoid() -> S.Derivation:
    x = S.x
    return S.elementwise("logsigmoid", -sp.log(1 + sp.exp(-x)), S.logistic(-x))


# --- GELU ---------------------------------------------------------------------------------------------

_K = math.sqrt(2.0 / math.pi)  # the tanh approximation's sqrt(2/pi)
_KAPPA = 0.044715


def _gelu_tanh_inner(x: np.ndarray) -> np.ndarray:
    return _K * (x + _KAPPA * x**3)


@quiet
@facts.declare(curve=facts.elementwise("gelu", -4, 3, "gelu(x)"), accuracy=3, sums=False, lipschitz=lambda p: 1.13)
def gelu(input: Any, approximate: str = "none") -> np.ndarray:
    r"""$x\,\Phi(x) = \frac{x}{2}\operatorname{erfc}(-x/\sqrt{2})$; ``approximate="tanh"``:
    $\frac{x}{2}(1 + \tanh u)$, $u = \sqrt{2/\pi}(x + 0.044715x^3)$."""
    x = as_float(input, "input")
    if _approximation(approximate) == "tanh":
        return x * _sigmoid(2.0 * _gelu_tanh_inner(x))  # x/2 (1 + tanh u) = x sigma(2u)
    return 0.5 * x * _erfc(-x / math.sqrt(2.0))


@quiet
def gelu_backward(grad_output: Any, input: Any, approximate: str = "none") -> np.ndarray:
    r"""$g(\Phi(x) + x\varphi(x))$; tanh: $g(\frac{1}{2}(1 + \tanh u) + \frac{x}{2}\operatorname{sech}^2 u \cdot u')$."""
    x = as_float(input, "input")
    g = check_grad_shape(grad_output, x.shape)
    if _approximation(approximate) == "tanh":
        u = _gelu_tanh_inner(x)
        sech2 = _sech2(u)
        # Where sech²u is 0 the second term is 0: x² may overflow there (|x| > 2**512) and 0·inf is NaN.
        slope = np.where(sech2 == 0, 0.0, 0.5 * x * sech2 * _K * (1.0 + 3.0 * _KAPPA * x**2))
        return g * (_sigmoid(2.0 * u) + slope)
    phi = np.exp(-0.5 * x**2) / math.sqrt(2.0 * math.pi)
    return g * (0.5 * _erfc(-x / math.sqrt(2.0)) + x * phi)


@quiet
def gelu_jvp(tangent: Any, input: Any, approximate: str = "none") -> np.ndarray:
    r"""$\dot y = (\Phi(x) + x\varphi(x))\,\dot x$, tanh: $(\frac{1}{2}(1 + \tanh u) + \frac{x}{2}\operatorname{sech}^2 u \cdot u')\,\dot x$:
    J is diagonal, so J t = Jᵀ t, the backward's."""
    _approximation(approximate)
    return symmetric_jvp(gelu_backward, tangent, input, approximate)


def _approximation(approximate: Any) -> str:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return approximate


@facts.derivation(gelu)
def _gelu(*, approximate: Literal["none", "tanh"] = "none") -> S.Derivation:
    x = S.x
    if _approximation(approximate) == "tanh":
        u = sp.sqrt(2 / sp.pi) * (x + sp.Rational(44715, 10**6) * x**3)
        f = x / 2 * (1 + sp.tanh(u))
        hand = (1 + sp.tanh(u)) / 2 + x / 2 * (1 - sp.tanh(u) ** 2) * sp.diff(u, x)
        return S.elementwise("gelu", f, hand, (S.Step("tanh approximation", sp.Eq(sp.Symbol("u"), u)),))
    Phi = sp.Function("Phi")
    # erfc(-u) unevaluated: sympy would write it 2 - erfc(u), which cancels for x << 0 even at 50 digits
    upper = sp.erfc(-x / sp.sqrt(2), evaluate=False)
    f = x / 2 * upper
    hand = upper / 2 + x * sp.exp(-x**2 / 2) / sp.sqrt(2 * sp.pi)
    steps = (S.Step("Φ, the normal CDF", sp.Eq(Phi(x), (1 + sp.erf(x / sp.sqrt(2))) / 2)),
             S.Step("as erfc, which does not cancel for x < 0", sp.Eq((1 + sp.erf(x / sp.sqrt(2))) / 2, upper / 2, evaluate=False)),
             S.Step("product rule", sp.Eq(sp.Derivative(x * Phi(x), x), Phi(x) + x * sp.Derivative(Phi(x), x))))
    return S.elementwise("gelu", f, hand, steps)


# --- SiLU and Mish ------------------------------------------------------------------------------------

@quiet
@facts.declare(curve=facts.elementwise("silu", -5, 3, "silu(x) = x σ(x)"), accuracy=2, sums=False, lipschitz=lambda p: 1.1)
def silu(input: Any, inplace: bool = False) -> np.ndarray:
    r"""$x\,\sigma(x)$, derivative $\sigma(x)(1 + x\,\sigma(-x))$."""
    x = as_float(input, "input")
    return write_back(input, x * _sigmoid(x), inplace)


@quiet
def silu_backward(grad_output: Any, input: Any) -> np.ndarray:
    r"""$\partial L/\partial x = g\,\sigma(x)(1 + x\,\sigma(-x))$ (torch: $1 - \sigma(x)$, which cancels for large x)."""
    x = as_float(input, "input")
    return check_grad_shape(grad_output, x.shape) * _sigmoid(x) * (1.0 + x * _sigmoid(-x))


@quiet
def silu_jvp(tangent: Any, input: Any, inplace: bool = False) -> np.ndarray:
    r"""$\dot y = \sigma(x)(1 + x\,\sigma(-x))\,\dot x$: J is diagonal, so J t = Jᵀ t, the backward's."""
    check_inplace(inplace)
    return symmetric_jvp(silu_backward, tangent, input)


@facts.derivation(silu)
def _silu() -> S.Derivation:
    x = S.x
    return S.elementwise("silu", x * S.logistic(x), S.logistic(x) * (1 + x * S.logistic(-x)))


@quiet
@facts.declare(curve=facts.elementwise("mish", -5, 3, "mish(x)"), accuracy=3, sums=False, libm=3, lipschitz=lambda p: 1.1)
def mish(input: Any, inplace: bool = False) -> np.ndarray:
    r"""$x\tanh(\operatorname{softplus}(x))$, derivative $\tanh(s) + x\,\sigma(x)\operatorname{sech}^2(s)$, $s = \operatorname{softplus}(x)$."""
    x = as_float(input, "input")
    return write_back(input, x * np.tanh(_softplus(x)), inplace)


@quiet
def mish_backward(grad_output: Any, input: Any) -> np.ndarray:
    r"""$\partial L/\partial x = g(\tanh s + x\,\sigma(x)\operatorname{sech}^2 s)$."""
    x = as_float(input, "input")
    s = _softplus(x)
    return check_grad_shape(grad_output, x.shape) * (np.tanh(s) + x * _sigmoid(x) * _sech2(s))


@quiet
def mish_jvp(tangent: Any, input: Any, inplace: bool = False) -> np.ndarray:
    r"""$\dot y = (\tanh s + x\,\sigma(x)\operatorname{sech}^2 s)\,\dot x$, $s = \operatorname{softplus}(x)$: J is diagonal, so J t = Jᵀ t, the backward's."""
    check_inplace(inplace)
    return symmetric_jvp(mish_backward, tangent, input)


@facts.derivation(mish)
def _mish() -> S.Derivation:
    x = S.x
    s = sp.log(1 + sp.exp(x))
    hand = sp.tanh(s) + x * S.logistic(x) * (1 - sp.tanh(s) ** 2)
    steps = (S.Step("softplus' = σ", sp.Eq(sp.Derivative(s, x), S.SIGMA(x))),)
    return S.elementwise("mish", x * sp.tanh(s), hand, steps)
