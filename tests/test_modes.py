"""The ways torch differentiates, each judged against its own truth (checks/modes.py): the truth of
the higher orders is the oracle's directional derivative, itself checked here against sympy."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import sympy as sp
from hypothesis import settings

from checks import modes
from checks.matrix import Cell, cells
from checks.registry import REGISTRY, get
from checks.runner import Runner
from checks.spec import Recipe
from checks.verify import verify_cell
from reference import oracle

THOROUGH = settings.get_current_profile_name() == "thorough"


def test_the_oracles_second_derivative_is_sympys_exact_one():
    """pytorch/pytorch#196700's example: phi = <layer_norm(x, (3,), w, b, eps=1/4), g>, whose exact
    d²phi[v, v] is -1.9080 (sympy, from the definition); the oracle's, by central differences at 90
    digits, agrees to float64."""
    x0, v0 = [sp.Rational(3, 10), sp.Rational(-6, 5), sp.Rational(1, 2)], [1, sp.Rational(-1, 2), sp.Rational(1, 4)]
    w, b, g = [sp.Rational(3, 2), sp.Rational(-1, 2), 1], [sp.Rational(1, 4), 0, sp.Rational(-1, 3)], [1, 2, -3]
    s = sp.Symbol("s")
    x = [xi + s * vi for xi, vi in zip(x0, v0)]
    mean = sum(x) / 3
    var = sum((xi - mean) ** 2 for xi in x) / 3
    phi = sum(gi * ((xi - mean) / sp.sqrt(var + sp.Rational(1, 4)) * wi + bi) for xi, wi, bi, gi in zip(x, w, b, g))
    exact = float(sp.diff(phi, s, 2).subs(s, 0).evalf(30))
    second = oracle.directional("layer_norm", [{"input": np.array([1, -0.5, 0.25])}] * 2, np.array([0.3, -1.2, 0.5]), (3,),
                                np.array([1.5, -0.5, 1.0]), np.array([0.25, 0.0, -1 / 3]), eps=0.25)
    assert round(exact, 4) == -1.9080
    assert float(second @ np.array([1.0, 2.0, -3.0])) == pytest.approx(exact, rel=1e-14)


@pytest.mark.parametrize("mode", list(modes.MODES))
@pytest.mark.parametrize("op", ["conv2d", "linear", "tanh"] if THOROUGH else ["tanh"])
def test_every_mode_agrees_with_the_math_where_torch_is_right(op, mode):
    result = verify_cell(Cell(get(op), "cpu", "float64", mode), examples=2)
    assert result.passed and result.examples == 2, result.failure.message() if result.failure else result.error


def test_a_mode_cell_is_its_own_cell_in_the_matrix_and_the_json():
    chosen = cells("cpu", "float64", "tanh,one_hot", modes=("reverse", "forward"))
    assert [c.id for c in chosen] == ["tanh-cpu-float64", "tanh-cpu-float64-forward", "one_hot-cpu-int64"]
    assert verify_cell(chosen[1], examples=1).to_dict()["mode"] == "forward"
    with pytest.raises(ValueError, match="--modes: unknown sideways"):
        modes.parse("forward,sideways")
    assert modes.parse("all") == modes.ALL


@pytest.mark.parametrize("mode", ["forward", "fwd_over_rev", "rev3"])
def test_a_derivative_off_by_a_millionth_is_caught(mode, monkeypatch):
    """The fault of each order: torch's derivative scaled by 1 + 1e-6 fails the cell."""
    original = modes.MODES[mode]

    def scaled(problem):
        out = original.run(problem)
        return tuple(o * (1 + 1e-6) for o in out) if isinstance(out, tuple) else out * (1 + 1e-6)

    monkeypatch.setitem(modes.MODES, mode, dataclasses.replace(original, run=scaled))
    records = modes.run(Runner(get("tanh"), "cpu", "float64"), mode, Recipe(3, "normal", (4, 3), {}))
    assert not all(r.passed for r in records)


# Every op in the modes: the default profile one first-order mode per op (rotating through the four
# routes, float64 and float32, 2 examples), the thorough profile every mode at 10. Cells still open
# in docs/autograd-modes.md ("Open") are expected to fail there until they are attributed.
FIRST_ORDER = ("forward", "forward_ad", "jacfwd", "jacrev")
OPEN = {("rms_norm", m) for m in ("fwd_over_rev", "rev_over_rev", "hessian", "fwd_over_fwd", "rev3", "fwd3")} | {
    ("binary_cross_entropy", m) for m in ("jacrev", "rev3", "fwd3")} | {("gelu", "fwd3")}
_DIFFERENTIABLE = [spec.name for spec in REGISTRY if spec.differentiable]
_CELLS = ([(op, mode) for op in _DIFFERENTIABLE for mode in modes.MODES] if THOROUGH
          else [(op, FIRST_ORDER[i % len(FIRST_ORDER)]) for i, op in enumerate(_DIFFERENTIABLE)])


@pytest.mark.parametrize("op, mode", [pytest.param(op, mode, id=f"{op}-{mode}", marks=pytest.mark.xfail(
    reason="open: a rounding-level disagreement not yet attributed (docs/autograd-modes.md)", strict=False) if (op, mode) in OPEN else ())
    for op, mode in _CELLS])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_op_in_the_modes_agrees_with_the_math_or_a_declared_quirk(op, mode, dtype):
    result = verify_cell(Cell(get(op), "cpu", dtype, mode), examples=10 if THOROUGH else 2)
    assert result.passed, result.failure.message() if result.failure else result.error
