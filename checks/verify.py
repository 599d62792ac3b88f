"""The registry matrix outside pytest: run hypothesis over every cell and summarise the records.

One :class:`CellResult` per (op, device, dtype): the worst record of each phase, the number of
examples, and the first failure. ``byhand verify`` prints these; reports and baselines read them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from hypothesis import HealthCheck, given, settings

from checks import departures
from checks.compare import Comparison
from checks.matrix import Cell
from checks.runner import Runner, unsupported
from checks.spec import Recipe
from checks.strategies import recipes


@dataclass
class CellResult:
    cell: Cell
    skipped: str | None = None
    examples: int = 0
    worst: dict[str, Comparison] = field(default_factory=dict)  # phase -> record with the largest ULP error
    failure: Comparison | None = None
    error: str | None = None
    deviations: dict[str, int] = field(default_factory=dict)  # quirk id -> elements it accounted for

    @property
    def passed(self) -> bool:
        return self.skipped is not None or (self.failure is None and self.error is None)

    def to_dict(self) -> dict:
        return {
            "op": self.cell.spec.name,
            "device": self.cell.device,
            "dtype": self.cell.dtype,
            "status": "skipped" if self.skipped else ("pass" if self.passed else "fail"),
            "skip_reason": self.skipped,
            "examples": self.examples,
            "worst": {phase: record.to_dict() for phase, record in self.worst.items()},
            "failure": self.failure.to_dict() if self.failure else None,
            "error": self.error,
            "known_deviations": [{"quirk": quirk, "elements": count, "upstream": departures.get(quirk).upstream}
                                 for quirk, count in sorted(self.deviations.items())],
        }


def _keep_worst(result: CellResult, record: Comparison) -> None:
    for quirk, count in record.deviations:
        result.deviations[quirk] = result.deviations.get(quirk, 0) + count
    phase = record.context.phase
    current = result.worst.get(phase)
    if current is None or record.max_ulp_err > current.max_ulp_err:
        result.worst[phase] = record


def verify_cell(cell: Cell, *, examples: int, derandomize: bool = True) -> CellResult:
    """Run ``examples`` hypothesis examples of one cell; stop at the first failure (shrunk)."""
    result = CellResult(cell)
    result.skipped = unsupported(cell.spec.name, cell.device, cell.dtype)
    if result.skipped:
        return result
    runner = Runner(cell.spec, cell.device, cell.dtype)
    failures: list[Comparison] = []

    @settings(max_examples=examples, derandomize=derandomize, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(recipes(cell.spec))
    def check(recipe: Recipe) -> None:
        result.examples += 1
        bad = None
        for record in runner.run(recipe):
            _keep_worst(result, record)
            if not record.passed and bad is None:
                bad = record
        if bad is not None:
            failures.append(bad)  # the last one appended is hypothesis' shrunk counterexample
            raise AssertionError(bad.message())

    try:
        check()
    except AssertionError:
        result.failure = failures[-1]
    except Exception as exc:  # a crash is a finding too: report it, keep going
        result.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return result


def verify(cells: list[Cell], *, examples: int, on_cell: Callable[[CellResult], None] | None = None) -> list[CellResult]:
    results = []
    for cell in cells:
        results.append(verify_cell(cell, examples=examples))
        if on_cell:
            on_cell(results[-1])
    return results
