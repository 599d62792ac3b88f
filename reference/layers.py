"""The Linear layer and one-hot encoding.

``linear`` follows ``torch.nn.functional.linear``: input (*, in_features), weight (out_features,
in_features), bias (out_features,), output (*, out_features).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp

from reference import facts
from reference import symbolic as S
from reference._validation import as_float, as_index, as_optional_float, check_grad_shape, quiet, tangents


__all__ = ["linear", "linear_backward", "linear_jvp", "one_hot"]  # and linear_init_bound: not an op


def _ext(a: np.ndarray) -> np.ndarray:
    return a.astype(np.longdouble)


def _check_linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> None:
    if w.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {w.shape}")
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"input shape {x.shape} does not end in in_features={w.shape[1]} (weight shape {w.shape})")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"bias shape {b.shape} must be (out_features,) = ({w.shape[0]},)")


def _linear_curve(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y = 1.5 x + 0.5 for a 1x1 layer, and dy/dx from the hand-derived backward."""
    weight, bias, x = np.array([[1.5]]), np.array([0.5]), t[:, None]
    return linear(x, weight, bias)[:, 0], linear_backward(np.ones((len(t), 1)), x, weight, bias)[0][:, 0]


@quiet
@facts.declare(curve=facts.Curve(-3, 3, "x", "y = 1.5 x + 0.5", lambda t: _linear_curve(t)), accuracy=3)
def linear(input: Any, weight: Any, bias: Any = None) -> np.ndarray:
    r"""$y = x W^\top + b$; $\partial y_k/\partial x_i = W_{ki}$, $\partial y_k/\partial W_{ki} = x_i$, $\partial y_k/\partial b_k = 1$."""
    x, w, b = as_float(input, "input"), as_float(weight, "weight"), as_optional_float(bias, "bias")
    _check_linear(x, w, b)
    # Dot products accumulate in np.longdouble and round once, so the reference stays more
    # accurate than a float64 BLAS (tests/test_accuracy.py).
    y = _ext(x) @ _ext(w).T
    return (y if b is None else y + b).astype(np.float64)


@quiet
def linear_backward(
    grad_output: Any, input: Any, weight: Any, bias: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    r"""$\bar x = G W$, $\bar W = G^\top X$, $\bar b = \sum_n G_n$ (batch dimensions flattened into n).

    Returns ``(grad_input, grad_weight, grad_bias)``; ``grad_bias`` is None without a bias.
    """
    x, w, b = as_float(input, "input"), as_float(weight, "weight"), as_optional_float(bias, "bias")
    _check_linear(x, w, b)
    g = check_grad_shape(grad_output, x.shape[:-1] + (w.shape[0],))
    g2, x2 = _ext(g).reshape(-1, w.shape[0]), _ext(x).reshape(-1, w.shape[1])
    grad_bias = None if b is None else g2.sum(axis=0).astype(np.float64)
    return (_ext(g) @ _ext(w)).astype(np.float64), (g2.T @ x2).astype(np.float64), grad_bias


@quiet
def linear_jvp(tangent: Any, input: Any, weight: Any, bias: Any = None) -> np.ndarray:
    r"""$\dot y = \dot x W^\top + x \dot W^\top + \dot b$, ``tangent`` = (ẋ, Ẇ, ḃ), each may be None."""
    x, w, b = as_float(input, "input"), as_float(weight, "weight"), as_optional_float(bias, "bias")
    _check_linear(x, w, b)
    tx, tw, tb = tangents(tangent, {"input": x.shape, "weight": w.shape, "bias": None if b is None else b.shape})
    y = np.zeros(x.shape[:-1] + (w.shape[0],), dtype=np.longdouble)
    y = y if tx is None else y + _ext(tx) @ _ext(w).T
    y = y if tw is None else y + _ext(x) @ _ext(tw).T
    return (y if tb is None else y + tb).astype(np.float64)


@facts.declare(curve=None)
def one_hot(tensor: Any, num_classes: int = -1) -> np.ndarray:
    r"""$\mathrm{one\_hot}(t)_{\dots,c} = [t_{\dots} = c]$, int64, shape (*, num_classes); not differentiable.

    ``num_classes=-1`` infers ``max(t) + 1``, which an empty tensor cannot do.
    """
    t = as_index(tensor, "tensor")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
    if num_classes < -1:
        raise ValueError(f"num_classes must be -1 (infer) or >= 0, got {num_classes}")
    if t.size and t.min() < 0:
        raise ValueError(f"tensor: class values must be non-negative, got {int(t.min())}")
    if num_classes == -1:
        if t.size == 0:
            raise ValueError("num_classes=-1 cannot infer the number of classes from an empty tensor")
        num_classes = int(t.max()) + 1
    if t.size and t.max() >= num_classes:
        raise ValueError(f"tensor: class values must be smaller than num_classes={num_classes}, got {int(t.max())}")
    return (t[..., None] == np.arange(num_classes)).astype(np.int64)


def _linear_example(n_in: int, n_out: int):
    def example(rng: np.random.Generator) -> S.Example:
        x, W, b, g = rng.normal(size=n_in), rng.normal(size=(n_out, n_in)), rng.normal(size=n_out), rng.normal(size=n_out)
        values = {**{f"x_{s + 1}": x[s] for s in range(n_in)}, **{f"b_{r + 1}": b[r] for r in range(n_out)}, **{f"g_{r + 1}": g[r] for r in range(n_out)},
                  **{f"W_{r + 1}{s + 1}": W[r, s] for r in range(n_out) for s in range(n_in)}}

        def assemble(grads: list) -> tuple[np.ndarray, ...]:
            flat = np.array(grads, dtype=float)
            return flat[:n_in], flat[n_in:n_in + n_in * n_out].reshape(n_out, n_in), flat[n_in + n_in * n_out:]

        return S.Example((x, W, b), {}, g, values, assemble)

    return example


@facts.derivation(linear)
def _linear(n_in: int = 2, n_out: int = 2) -> S.Derivation:
    xs = sp.symbols(f"x_1:{n_in + 1}", real=True)
    W = sp.Matrix(n_out, n_in, lambda r, s: sp.Symbol(f"W_{r + 1}{s + 1}", real=True))
    bs = sp.symbols(f"b_1:{n_out + 1}", real=True)
    gs = sp.symbols(f"g_1:{n_out + 1}", real=True)
    ys = [sum(W[r, s] * xs[s] for s in range(n_in)) + bs[r] for r in range(n_out)]
    wrt = (*xs, *W, *bs)
    hand = (*(sum(gs[r] * W[r, s] for r in range(n_out)) for s in range(n_in)), *(gs[r] * xs[s] for r in range(n_out) for s in range(n_in)), *gs)
    Wb, Xb, Bb, G, i, k = sp.IndexedBase("W"), sp.IndexedBase("x"), sp.IndexedBase("b"), S.G, S.i, S.k
    steps = (S.Step("definition", sp.Eq(sp.IndexedBase("y")[k], sp.Sum(Wb[k, i] * Xb[i], (i, 1, sp.Symbol("n"))) + Bb[k])),
             S.Step("input", sp.Eq(sp.Derivative(S.L, Xb[i]), sp.Sum(G[k] * Wb[k, i], (k, 1, sp.Symbol("m"))))),
             S.Step("weight", sp.Eq(sp.Derivative(S.L, Wb[k, i]), G[k] * Xb[i])),
             S.Step("bias", sp.Eq(sp.Derivative(S.L, Bb[k]), G[k])))
    return S.Derivation("linear", sum(gr * yr for gr, yr in zip(gs, ys)), wrt, hand, steps, size=n_in, example=_linear_example(n_in, n_out))


@facts.derivation(one_hot)
def _one_hot() -> S.Derivation:
    t = sp.Symbol("t", integer=True)
    steps = (S.Step("definition", sp.Eq(sp.Indexed(sp.IndexedBase(S.named("one_hot")(t)), S.c), sp.KroneckerDelta(t, S.c))),)
    return S.Derivation("one_hot", sp.KroneckerDelta(t, S.c), (), (), steps, note="integer in, integer out: not differentiable")


def linear_init_bound(fan_in: int) -> float:
    r"""nn.Linear's default initialisation, by hand: kaiming_uniform with $a = \sqrt5$ draws from
    $U(-b, b)$ with $b = \sqrt3\,\mathrm{gain}/\sqrt{n}$, $\mathrm{gain} = \sqrt{2/(1 + a^2)} = \sqrt{1/3}$,
    so $b = 1/\sqrt{n}$ for the weight; the bias draws from the same $U(-1/\sqrt n, 1/\sqrt n)$."""
    if int(fan_in) != fan_in or fan_in < 1:
        raise ValueError(f"fan_in must be a positive integer, got {fan_in}")
    a = np.sqrt(5.0)
    gain = np.sqrt(2.0 / (1 + a**2))
    return float(np.sqrt(3.0) * gain / np.sqrt(fan_in))
