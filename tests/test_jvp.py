"""The hand-derived forward mode: ``reference.<op>_jvp(tangent, *args, **params)`` is J·t, the
derivative of the op along the tangent of its differentiable inputs (an array for an op with one,
a tuple in the backward's order for several, None holding an input fixed).

Two laws tie it down, each against something other than torch:
- the adjoint identity <u, J t> = <Jᵀu, t> with the hand backward, on the registry's draws with
  inputs in every dtype (the references compute in float64);
- J t is the directional derivative of the 50-digit oracle (reference/oracle.py: a central
  difference at 90 digits, exact far below float64), at ordinary values.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings

import reference
from checks import dtypes, modes
from checks.registry import REGISTRY
from checks.runner import build_case
from checks.spec import Case, OpSpec, Recipe
from checks.strategies import recipes
from checks.tolerance import bound, derivative_scale, k_for_sum
from reference import oracle

WITH_JVP = [spec for spec in REGISTRY if hasattr(reference, f"{spec.name}_jvp")]
F64 = dtypes.get("float64")
THOROUGH = settings.get_current_profile_name() == "thorough"


def present(spec: OpSpec, case: Case) -> dict[str, np.ndarray]:
    """The differentiable inputs this case has (an absent bias or weight is None)."""
    values = {**case.inputs, **case.params}
    return {n: np.asarray(values[n], dtype=np.float64) for n in spec.grad_inputs if values.get(n) is not None}


def directions(spec: OpSpec, case: Case, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, 2])  # a stream of its own: seed alone drew the inputs (t would be x)
    return {n: rng.normal(size=v.shape) for n, v in present(spec, case).items()}


def hand_jvp(spec: OpSpec, case: Case, tangent: dict[str, np.ndarray]) -> np.ndarray:
    jvp = getattr(reference, f"{spec.name}_jvp")
    t = tangent.get(spec.grad_inputs[0]) if len(spec.grad_inputs) == 1 else tuple(tangent.get(n) for n in spec.grad_inputs)
    fresh = case.fresh()
    return np.asarray(jvp(t, *fresh.inputs.values(), **fresh.params), dtype=np.float64)


def hand_vjp(spec: OpSpec, case: Case, u: np.ndarray) -> dict[str, np.ndarray]:
    fresh = case.fresh()
    grads = spec.backward(u, *fresh.inputs.values(), **fresh.params)
    return dict(zip(spec.grad_inputs, grads if isinstance(grads, tuple) else (grads,)))


@pytest.mark.parametrize("spec", WITH_JVP, ids=lambda s: s.name)
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_the_hand_jvp_is_the_adjoint_of_the_hand_backward(spec, dtype):
    """<u, J t> = <Jᵀu, t>: each side is a sum of n products, judged at the size of its terms."""
    if dtype not in spec.dtypes:
        pytest.skip(f"{spec.name} is not defined for {dtype}")

    @settings(max_examples=60 if THOROUGH else 3, deadline=None, database=None)
    @given(recipe=recipes(spec))
    def law(recipe: Recipe) -> None:
        case = build_case(spec, recipe, dtypes.get(dtype))
        # embedding's backward drops the padding row and divides by the counts: conventions of the
        # gradient (documented), not the transpose of the forward's derivative, which the JVP is
        if spec.name == "embedding":
            case = Case(case.inputs, {**case.params, "padding_idx": None, "scale_grad_by_freq": False}, case.info, case.torch)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = np.asarray(spec.forward(*case.fresh().inputs.values(), **case.fresh().params), dtype=np.float64)
            t = directions(spec, case, recipe.seed)
            u = np.random.default_rng([recipe.seed, 3]).normal(size=out.shape)
            jt, jtu = hand_jvp(spec, case, t), hand_vjp(spec, case, u)
        assume(np.isfinite(out).all() and np.isfinite(jt).all() and all(np.isfinite(g).all() for g in jtu.values() if g is not None))
        assert jt.shape == out.shape, f"{spec.name}_jvp returned shape {jt.shape}, the output's is {out.shape}"
        left = float(np.sum(u * jt))
        right = sum(float(np.sum(jtu[n] * t[n])) for n in t)
        size = float(np.sum(np.abs(u * jt)) + sum(np.sum(np.abs(jtu[n] * t[n])) for n in t))
        n = out.size + sum(v.size for v in t.values())
        assert abs(left - right) <= bound(np.asarray(0.0), size, F64, k_for_sum("float64", n)), (
            f"{spec.name} ({dtype}, shape {recipe.shape}, {case.params}): <u, J t> = {left!r} but <Jᵀu, t> = {right!r}")

    law()


@pytest.mark.parametrize("spec", WITH_JVP, ids=lambda s: s.name)
def test_the_hand_jvp_is_the_true_directional_derivative(spec):
    """J t against the oracle's 50-digit directional derivative of the forward, at ordinary values."""

    ordinary = dataclasses.replace(spec, regimes=("normal",)) if "normal" in spec.regimes else spec

    @settings(max_examples=20 if THOROUGH else 2, deadline=None, database=None)
    @given(recipe=recipes(ordinary))
    def law(recipe: Recipe) -> None:
        case = build_case(spec, recipe, F64)
        assume(modes.judged(spec, case))  # as the mode cells: not through embedding's max_norm, which autograd does not see
        t = directions(spec, case, recipe.seed)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mine = hand_jvp(spec, case, t)
            truth = np.asarray(oracle.directional(spec.name, [t], *case.fresh().inputs.values(), **case.fresh().params), dtype=np.float64)
        assume(np.isfinite(truth).all())
        terms = sum(v.size for v in t.values())
        scale = derivative_scale(truth, terms, "float64", max((float(np.abs(v).max(initial=0.0)) for v in t.values()), default=0.0))
        worst = np.abs(mine - truth) - bound(truth, scale, F64, 8.0)
        at = np.unravel_index(np.argmax(worst), worst.shape) if worst.size else ()
        assert not (worst > 0).any(), (f"{spec.name}_jvp (shape {recipe.shape}, {case.params}) at {at}: "
                                       f"hand {mine[at]!r}, truth {truth[at]!r}")

    law()
