"""The hand-derived gradients, proved symbolically (reference/symbolic.py), and checked numerically
along a third path: sympy's derivative through lambdify, against the numpy ``_backward`` and torch
autograd, in float64."""
from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import settings

from checks.compare import Context, assert_agrees, compare
from checks.dtypes import get
from checks.registry import REGISTRY
from reference import facts, symbolic

F64 = get("float64")
THOROUGH = settings.get_current_profile_name() == "thorough"
SIZES = range(2, 6) if THOROUGH else (2,)  # C = 2..5 takes ~3 s; the default run proves C = 2 here and C = 3 above


def test_every_registry_op_has_a_derivation_beside_its_reference():
    assert {spec.name for spec in REGISTRY} <= set(facts.derived())
    for name in [spec.name for spec in REGISTRY] + ["multi_head_attention"]:
        derivation = symbolic.derive(name)
        assert derivation.op == name
        # a step sympy settled as True or False (an equation of matrices) shows the reader nothing
        assert not [step.title for step in derivation.steps if isinstance(step.expr, sp.logic.boolalg.BooleanAtom)], name


PROOFS = [pytest.param(s.name, chosen, marks=pytest.mark.beside(symbolic.proof, s.name, None, tuple(chosen.items())),
                       id="-".join([s.name, *map(str, chosen.values())]))
          for s in REGISTRY if s.differentiable for chosen in symbolic.variants(s.name)]


@pytest.mark.parametrize("op, chosen", PROOFS)
def test_hand_gradient_is_proven(op, chosen, beside):
    """Every formula of every op (gelu's two, kl_div's two targets), proved in the worker beside
    the suite (conftest.py): a layer's proof takes seconds."""
    derivation, proof = symbolic.derive(op, **chosen), beside
    assert proof.proven, f"{op}: sympy.diff of the definition differs from the hand formula ({proof.method})"
    assert derivation.steps[0].title == "definition" and len(derivation.steps) >= 2


@pytest.mark.parametrize("op, size", [pytest.param(s.name, n, marks=pytest.mark.beside(symbolic.proof, s.name, n))
                                      for s in REGISTRY if s.differentiable and symbolic.sized(s.name) for n in SIZES])
def test_vector_op_proofs_hold_for_several_sizes(op, size, beside):
    assert beside.proven


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


@pytest.mark.parametrize("op", [s.name for s in REGISTRY if s.differentiable and not symbolic.derive(s.name).simplify])
def test_a_proof_by_evaluation_reaches_every_branch_of_the_hand_formula(op):
    """Where the proof is 50-digit evaluation at random points (no symbolic route), the points must
    fall in every branch of each piecewise hand formula, or a wrong branch would go unseen."""
    derivation = symbolic.derive(op)
    differences = [d - h for d, h in zip(derivation.derived, derivation.hand)]
    free = sorted(set().union(*(d.free_symbols for d in differences)), key=str)  # as the proof orders them
    points = [dict(zip(free, (sp.Rational(n, 1000) for n in point))) for point in derivation._points(free, 12, 0)]
    for piecewise in {p for h in derivation.hand for p in h.atoms(sp.Piecewise)}:
        taken = {next(i for i, (_, condition) in enumerate(piecewise.args) if condition.subs(point) == sp.true) for point in points}
        assert taken == set(range(len(piecewise.args))), f"{op}: branches {sorted(taken)} of {piecewise}"


# --- a network layer's own derivation: nn.MultiheadAttention's self-attention -------------------


def _layer_checked(name: str) -> tuple:
    """In the worker beside the suite: the layer's proof; whether a realistic slip (the out-projection's
    weight gradient transposed, O^T G for G^T O) is proven too; and its gradient at a random point by
    sympy (lambdify) and by the numpy backward, flattened in the derivation's order."""
    import reference

    derivation = symbolic.derive(name)
    proof = derivation.prove()
    slipped = list(derivation.hand)
    start = len(slipped) - 6  # W_out's four partials, then b_out's two
    slipped[start + 1], slipped[start + 2] = slipped[start + 2], slipped[start + 1]
    # Only W_out's partials changed (the others are the proof's own): those are evaluated.
    slip_proven = derivation._all_vanish([d - h for d, h in zip(derivation.derived[start:], slipped[start:])], 12, 0)
    rng = np.random.default_rng(0)
    x, w_in, b_in, w_out, b_out, g = (rng.normal(size=shape) for shape in ((2, 2), (6, 2), (6,), (2, 2), (2,), (2, 2)))
    values = {str(v): value for v, value in zip(derivation.wrt, np.concatenate([a.ravel() for a in (x, w_in, b_in, w_out, b_out)]))}
    values |= {f"g_{r + 1}{c + 1}": g[r, c] for r in range(2) for c in range(2)}
    by_sympy = np.array(derivation.gradient_at(values), dtype=float)
    by_numpy = np.concatenate([a.ravel() for a in reference.multi_head_attention_backward(g, x, w_in, b_in, w_out, b_out, 2)])
    return proof, slip_proven, by_sympy, by_numpy


@pytest.mark.parametrize("layer", [pytest.param("multi_head_attention", marks=pytest.mark.beside(_layer_checked, "multi_head_attention"))])
def test_a_layers_hand_gradient_is_proven_and_is_its_numpy_backward(layer, beside):
    """The transformer block's attention layer, every weight and bias a symbol (2 tokens, 2 heads):
    sympy.diff equals the hand steps at 50 digits, a transposed weight gradient does not, and the
    numpy backward gives sympy's numbers."""
    proof, slip_proven, by_sympy, by_numpy = beside
    assert proof.proven and not slip_proven, (proof, slip_proven)
    assert symbolic.derive(layer).steps[0].title == "definition"
    context = Context(layer, "grad[every argument]", "sympy (lambdify)", "cpu", "float64", by_numpy.shape)
    assert_agrees(compare(by_sympy, by_numpy, scale=np.abs(by_numpy).max(), info=F64, k=8, context=context))


# --- the third path: lambdify(sympy.diff) = numpy _backward = torch autograd -------------------


def _pointwise_example(derivation: symbolic.Derivation, rng: np.random.Generator) -> symbolic.Example:
    """Inputs drawn from the derivation's domain (default N(0, 2)), parameters inside theirs, and
    reduction='none' for a loss: the gradient is g times df/dx element by element."""
    def draw(symbol, size=None):
        low, high = derivation.domain.get(symbol, (None, None))
        return rng.normal(0, 2, size) if low is None else rng.uniform(low, high, size)

    first, *others = derivation.inputs
    arrays = [draw(first, 50), *(draw(s, 50) for s in others)]
    params = {name: float(draw(symbol)) for name, symbol in derivation.params.items() if name not in derivation.absent}
    g = rng.normal(0, 1, 50)
    values = {str(s): v for s, v in zip(derivation.inputs, arrays)} | {str(derivation.params[n]): v for n, v in params.items()}
    values |= {str(derivation.params[n]): v for n, v in derivation.absent.items()}
    kwargs = params | ({"reduction": "none"} if others else {})
    _, *derivatives = derivation.local()
    args = [values[str(s)] for s in (*derivation.inputs, *derivation.params.values())]
    return symbolic.Example(tuple(arrays), kwargs, g, values, lambda _: tuple(g * np.vectorize(df)(*args) for df in derivatives))


def _three_paths(spec):
    derivation = symbolic.derive(spec.name)
    rng = np.random.default_rng(0)
    example = derivation.example(rng) if derivation.example else _pointwise_example(derivation, rng)
    sympy_grads = example.assemble(derivation.gradient_at(example.values) if derivation.example else [])
    hand = spec.backward(example.grad_output, *example.args, **example.kwargs)
    hand = hand if isinstance(hand, tuple) else (hand,)
    positional = list(inspect.signature(spec.forward).parameters)
    tensors = [torch.tensor(v, requires_grad=name in spec.grad_inputs) for name, v in zip(positional, example.args)]
    keywords = {k: torch.tensor(v, requires_grad=k in spec.grad_inputs) if isinstance(v, np.ndarray) else v for k, v in example.kwargs.items()}
    spec.functional(*tensors, **keywords).backward(torch.tensor(example.grad_output))
    named = dict(zip(positional, tensors)) | {k: v for k, v in keywords.items() if k in spec.grad_inputs}
    autograd = tuple(named[name].grad.numpy() for name in spec.grad_inputs if name in named)
    return sympy_grads, hand, autograd


def _three_paths_of(op: str) -> tuple:
    """The three gradients of ``op``'s example: computed in the worker beside the suite (conftest.py)."""
    return _three_paths(next(s for s in REGISTRY if s.name == op))


@pytest.mark.parametrize("op", [pytest.param(s.name, marks=pytest.mark.beside(_three_paths_of, s.name)) for s in REGISTRY if s.differentiable])
def test_sympy_numpy_and_autograd_gradients_agree(op, beside):
    spec = next(s for s in REGISTRY if s.name == op)
    sympy_grads, hand, autograd = beside
    for name, expected, via_sympy, via_torch in zip(spec.grad_inputs, hand, sympy_grads, autograd):
        scale = np.abs(expected).max(initial=1e-300)
        for path, value in (("sympy (lambdify)", via_sympy), ("torch autograd", via_torch)):
            context = Context(op, f"grad[{name}]", path, "cpu", "float64", np.shape(expected))
            assert_agrees(compare(np.asarray(value, dtype=float), expected, scale=scale, info=F64, k=8, context=context))
