"""torch.autograd.gradcheck and gradgradcheck, in float64, for every differentiable registry op: the
third path (finite differences of torch's own forward) next to the hand formula and autograd."""
from __future__ import annotations

import traceback

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from checks import dtypes, registry
from checks.registry import REGISTRY
from checks.runner import build_case, to_tensor
from checks.spec import Case, Recipe
from checks.modes import away_from_kinks
from reference import facts

F64 = dtypes.get("float64")




def _function_and_inputs(spec, recipe):
    case = away_from_kinks(spec.name, build_case(spec, recipe, F64))
    # Finite differences need a finite function: not an all-ignored or zero-weight mean (0/0).
    assume(np.isfinite(spec.forward(*case.inputs.values(), **case.params)).all())
    values = dict(case.inputs)
    domain = facts.of(spec.name).domain  # BCE's [0, 1]: where a 1e-6 step stays inside it
    if domain is not None:
        values["input"] = domain(values["input"])
    tensors = {k: to_tensor(v, F64, "cpu", grad=k in spec.grad_inputs and v is not None) for k, v in values.items()}
    # a keyword argument can be differentiable too (layer_norm's weight and bias)
    params = {k: to_tensor(v, F64, "cpu", grad=k in spec.grad_inputs and v is not None) for k, v in case.params.items()} | case.torch
    names = [k for k in spec.grad_inputs if isinstance(tensors.get(k, params.get(k)), torch.Tensor)]

    def fn(*differentiable):
        chosen = dict(zip(names, differentiable))
        call = {k: chosen.get(k, v) for k, v in tensors.items()}
        return spec.functional(*call.values(), **{k: chosen.get(k, v) for k, v in params.items()})

    return fn, tuple(tensors.get(k, params.get(k)) for k in names)


DIFFERENTIABLE = [s for s in REGISTRY if s.differentiable]


@settings(max_examples=3)
@given(data=st.data())
def _gradcheck_and_gradgradcheck_hold(name: str, checked: list, data) -> None:
    spec = registry.get(name)
    shape = data.draw(spec.shapes.filter(lambda s: 0 < np.prod(s) <= 60), label="shape")
    recipe = Recipe(seed=data.draw(st.integers(0, 2**32 - 1), label="seed"), regime="normal", shape=shape, knobs=data.draw(spec.knobs if spec.gradcheck_knobs is None else spec.gradcheck_knobs, label="knobs"))
    fn, inputs = _function_and_inputs(spec, recipe)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)
    assert torch.autograd.gradgradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)
    checked.append(tuple(shape))


def gradchecked(name: str) -> list[tuple[int, ...]] | str:
    """The shapes at which ``name`` passed gradcheck and gradgradcheck, or the failure (with
    hypothesis's shrunk example) as text. Computed in the worker beside the suite (conftest.py),
    under the suite's hypothesis profile and --fault."""
    checked: list[tuple[int, ...]] = []
    try:
        _gradcheck_and_gradgradcheck_hold(name, checked)
    except Exception as exc:  # returned, so the test fails with it rather than erroring in its fixture
        return "".join(traceback.format_exception(exc))  # every sub-exception of hypothesis' group, with its example
    return checked


@pytest.mark.parametrize("op", [pytest.param(s.name, marks=pytest.mark.beside(gradchecked, s.name)) for s in DIFFERENTIABLE])
def test_gradcheck_and_gradgradcheck(op, beside):
    assert not isinstance(beside, str), beside
    assert beside, f"{op}: no draw reached gradcheck (hypothesis rejected every one)"
