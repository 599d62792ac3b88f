"""The hand-derived gradients, proved symbolically (reference/symbolic.py), and checked numerically
along a third path: sympy's derivative through lambdify, against the numpy ``_backward`` and torch
autograd, in float64."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F
from hypothesis import settings

import reference
from checks.compare import Context, assert_agrees, compare
from checks.dtypes import get
from checks.registry import REGISTRY
from reference import symbolic

F64 = get("float64")
THOROUGH = settings.get_current_profile_name() == "thorough"
SIZES = range(2, 6) if THOROUGH else (2,)  # C = 2..5 takes ~3 s; the default run proves C = 2 here and C = 3 above


def test_every_registry_op_has_a_derivation():
    assert [spec.name for spec in REGISTRY] == [op for op in symbolic.BUILDERS if op in {s.name for s in REGISTRY}]
    assert set(symbolic.BUILDERS) == {spec.name for spec in REGISTRY}


@pytest.mark.parametrize("op", [s.name for s in REGISTRY if s.differentiable])
def test_hand_gradient_is_proven(op):
    derivation = symbolic.derive(op)
    proof = derivation.prove()
    assert proof.proven, f"{op}: sympy.diff of the definition differs from the hand formula ({proof.method})"
    assert derivation.steps[0].title == "definition" and len(derivation.steps) >= 2


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "cross_entropy", "nll_loss", "linear"])
def test_vector_op_proofs_hold_for_several_sizes(op, size):
    assert symbolic.derive(op, size).prove().proven


def test_one_hot_is_not_differentiable():
    assert not symbolic.derive("one_hot").differentiable


@pytest.mark.parametrize("op, wrong", [
    ("sigmoid", lambda d: (d.hand[0] * 2,)),  # a factor 2 too many
    ("cross_entropy", lambda d: tuple(h + d.wrt[0] * 0 + sp.Symbol("a_1", real=True) for h in d.hand)),  # p - a + a_1
    ("huber_loss", lambda d: (sp.sign(sp.Symbol("x", real=True) - sp.Symbol("y", real=True)),)),  # the L1 gradient: only the fallback can tell
])
def test_a_wrong_hand_formula_is_not_proven(op, wrong):
    right = symbolic.derive(op)
    assert not dataclasses.replace(right, hand=wrong(right)).prove().proven


# --- the third path: lambdify(sympy.diff) = numpy _backward = torch autograd -------------------


def _torch_grads(fn, *inputs):
    tensors = [torch.tensor(v, requires_grad=True) for v in inputs]
    out = fn(*tensors)
    return out, tensors


def _elementwise(op, rng, params, symbols):
    x, g = rng.normal(0, 2, 50), rng.normal(0, 1, 50)
    sympy_grad = symbolic.derive(op).gradient_at({"x": x, "g": g, **{symbols[k]: v for k, v in params.items()}})[0]
    xt = torch.tensor(x, requires_grad=True)
    getattr(F, op)(xt, **params).backward(torch.tensor(g))
    return np.broadcast_to(sympy_grad, x.shape), getattr(reference, f"{op}_backward")(g, x, **params), xt.grad.numpy()


def _regression(op, rng, params):
    x, y, g = rng.normal(0, 2, 50), rng.normal(0, 2, 50), rng.normal(0, 1, 50)
    values = {"x": x, "y": y, **params}
    sympy_grad = np.asarray(symbolic.derive(op).gradient_at(values)[0], dtype=float) * g
    xt = torch.tensor(x, requires_grad=True)
    getattr(F, op)(xt, torch.tensor(y), reduction="none", **params).backward(torch.tensor(g))
    return sympy_grad, getattr(reference, f"{op}_backward")(g, x, y, reduction="none", **params), xt.grad.numpy()


def _rows(op, rng):
    x, g = rng.normal(0, 2, (20, 3)), rng.normal(0, 1, (20, 3))
    values = {**{f"z_{c + 1}": x[:, c] for c in range(3)}, **{f"g_{c + 1}": g[:, c] for c in range(3)}}
    sympy_grad = np.stack(symbolic.derive(op, 3).gradient_at(values), axis=1)
    xt = torch.tensor(x, requires_grad=True)
    getattr(F, op)(xt, dim=1).backward(torch.tensor(g))
    return sympy_grad, getattr(reference, f"{op}_backward")(g, x, dim=1), xt.grad.numpy()


def _classification(op, rng):
    x, t = rng.normal(0, 2, (20, 3)), rng.integers(0, 3, 20)
    onehot = np.eye(3)[t]
    values = {**{f"{'z' if op == 'cross_entropy' else 'x'}_{c + 1}": x[:, c] for c in range(3)}, **{f"a_{c + 1}": onehot[:, c] for c in range(3)}}
    sympy_grad = np.stack([np.broadcast_to(v, (20,)) for v in symbolic.derive(op, 3).gradient_at(values)], axis=1)
    xt = torch.tensor(x, requires_grad=True)
    getattr(F, op)(xt, torch.tensor(t), reduction="none").backward(torch.ones(20, dtype=torch.float64))
    return sympy_grad, getattr(reference, f"{op}_backward")(np.ones(20), x, t, reduction="none"), xt.grad.numpy()


def _binary(op, rng):
    y, g = rng.uniform(0, 1, 50), rng.normal(0, 1, 50)
    first = rng.uniform(0.01, 0.99, 50) if op == "binary_cross_entropy" else rng.normal(0, 3, 50)
    name = "p" if op == "binary_cross_entropy" else "z"
    sympy_grad = np.asarray(symbolic.derive(op).gradient_at({name: first, "y": y, "w": 1.0, "p_w": 1.0}, )[0]) * g
    xt = torch.tensor(first, requires_grad=True)
    getattr(F, op)(xt, torch.tensor(y), reduction="none").backward(torch.tensor(g))
    return sympy_grad, getattr(reference, f"{op}_backward")(g, first, y, reduction="none"), xt.grad.numpy()


def _linear(rng):
    x, W, b, g = rng.normal(size=2), rng.normal(size=(2, 2)), rng.normal(size=2), rng.normal(size=2)
    values = {"x_1": x[0], "x_2": x[1], "b_1": b[0], "b_2": b[1], "g_1": g[0], "g_2": g[1], **{f"W_{r + 1}{s + 1}": W[r, s] for r in range(2) for s in range(2)}}
    sympy_grad = np.array(symbolic.derive("linear", 2).gradient_at(values), dtype=float)
    gi, gw, gb = reference.linear_backward(g, x, W, b)
    xt, Wt, bt = (torch.tensor(v, requires_grad=True) for v in (x, W, b))
    F.linear(xt, Wt, bt).backward(torch.tensor(g))
    return sympy_grad, np.concatenate([gi, gw.ravel(), gb]), np.concatenate([xt.grad.numpy(), Wt.grad.numpy().ravel(), bt.grad.numpy()])


PATHS = {
    "sigmoid": lambda rng: _elementwise("sigmoid", rng, {}, {}),
    "relu": lambda rng: _elementwise("relu", rng, {}, {}),
    "leaky_relu": lambda rng: _elementwise("leaky_relu", rng, {"negative_slope": 0.2}, {"negative_slope": "a"}),
    "elu": lambda rng: _elementwise("elu", rng, {"alpha": 1.5}, {"alpha": "alpha"}),
    "softmax": lambda rng: _rows("softmax", rng),
    "log_softmax": lambda rng: _rows("log_softmax", rng),
    "linear": _linear,
    "cross_entropy": lambda rng: _classification("cross_entropy", rng),
    "nll_loss": lambda rng: _classification("nll_loss", rng),
    "binary_cross_entropy": lambda rng: _binary("binary_cross_entropy", rng),
    "binary_cross_entropy_with_logits": lambda rng: _binary("binary_cross_entropy_with_logits", rng),
    "mse_loss": lambda rng: _regression("mse_loss", rng, {}),
    "l1_loss": lambda rng: _regression("l1_loss", rng, {}),
    "huber_loss": lambda rng: _regression("huber_loss", rng, {"delta": 1.5}),
    "smooth_l1_loss": lambda rng: _regression("smooth_l1_loss", rng, {"beta": 0.7}),
}


@pytest.mark.parametrize("op", list(PATHS))
def test_sympy_numpy_and_autograd_gradients_agree(op):
    sympy_grad, numpy_grad, torch_grad = PATHS[op](np.random.default_rng(0))
    scale = np.abs(numpy_grad).max(initial=1e-300)
    for name, value in (("sympy (lambdify)", sympy_grad), ("torch autograd", torch_grad)):
        context = Context(op, "gradient", name, "cpu", "float64", np.shape(numpy_grad))
        assert_agrees(compare(np.asarray(value, dtype=float), numpy_grad, scale=scale, info=F64, k=8, context=context))
