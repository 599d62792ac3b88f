"""Hypothesis strategies: the recipe of a case, and the shapes and knobs registry entries use."""
from __future__ import annotations

import zlib
from typing import Any, Callable

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

from checks.spec import OpSpec, Recipe, per_object

REDUCTIONS = ("mean", "sum", "none")


def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 0, max_side: int = 8) -> st.SearchStrategy[tuple[int, ...]]:
    """Array shapes, empty ones included (min_side 0) unless an op needs elements."""
    return array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def reductions() -> st.SearchStrategy[str]:
    return st.sampled_from(REDUCTIONS)


def unit_floats(low: float, high: float, *special: float) -> st.SearchStrategy[float]:
    """A float parameter: one of the given special values (defaults, boundaries, exactly 0) or any
    in [max(low, 1e-3), high]. No tiny values: torch rounds scalar parameters to the op's dtype,
    where a 1e-269 becomes 0 (and 0 * inf = NaN), which is a property of the draw, not of the op."""
    ranged = st.floats(max(low, 1e-3), high)
    return st.one_of(st.sampled_from(special), ranged) if special else ranged


def knobs(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(fields)


@per_object
def recipes(spec: OpSpec) -> st.SearchStrategy[Recipe]:
    """The recipe of one case of ``spec``: shrinks toward seed 0, the first regime, small shapes.
    One strategy per spec object: a test that draws it in every example would otherwise have
    hypothesis inspect Recipe's signature and its strategies' properties anew each time."""
    return st.builds(Recipe, seed=st.integers(0, 2**32 - 1), regime=st.sampled_from(spec.regimes), shape=spec.shapes, knobs=spec.knobs)


def cell_seed(name: str) -> int:
    """A derandomized run's seed for one cell (``softmax-cpu-float64``), the same in every process.
    hypothesis' own derandomize seeds from the test function's source, which is one function for
    every cell: each dtype of an op would see the same draws."""
    return zlib.crc32(name.encode())


# Generate and shrink, without hypothesis' explain phase: the record of the shrunk failure is the
# verdict, and explaining which parts of a failing draw matter costs 2.3 s a failing cell.
SEARCH = tuple(phase for phase in Phase if phase is not Phase.explain)


def search(strategy: st.SearchStrategy[Any], step: Callable[[Any], None], *, examples: int, name: str, **options: Any) -> None:
    """``step`` on ``examples`` draws of ``strategy``; the first draw it raises on is shrunk and
    raised again. Seeded by ``name`` (:func:`cell_seed`: the same draws every run, others for each
    name), no example database, deadline, health checks or explain phase; ``options``: more settings.
    The test hypothesis runs is the one-line function below: hypothesis reads and hashes a test's
    source on every run (its database key), 4 ms for a body as long as verify's."""
    @seed(cell_seed(name))
    @settings(max_examples=examples, database=None, deadline=None, suppress_health_check=list(HealthCheck), phases=SEARCH, **options)
    @given(strategy)
    def run(drawn: Any) -> None:
        step(drawn)

    run()
