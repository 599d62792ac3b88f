"""The registry matrix outside pytest: run hypothesis over every cell and summarise the records.

One :class:`CellResult` per (op, device, dtype): the worst record of each phase, the number of
examples, and the first failure. ``byhand verify`` prints these; reports and baselines read them.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Callable

from checks import departures, modes
from checks.compare import Comparison
from checks.matrix import Cell
from checks.runner import Runner, unsupported
from checks.spec import Recipe
from checks.strategies import recipes, search


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
            "mode": self.cell.mode,
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


def verify_cell(cell: Cell, *, examples: int) -> CellResult:
    """Run ``examples`` hypothesis examples of one cell; stop at the first failure (shrunk)."""
    result = CellResult(cell)
    result.skipped = unsupported(cell.spec.name, cell.device, cell.dtype)
    if result.skipped:
        return result
    runner = Runner(cell.spec, cell.device, cell.dtype)
    failures: list[Comparison] = []
    strategy = recipes(cell.spec) if cell.mode == "reverse" else recipes(modes.ordinary(cell.spec))
    try:
        search(strategy, functools.partial(_check, result, runner, failures, cell.mode), examples=examples, name=cell.id, report_multiple_bugs=False)
    except AssertionError:
        result.failure = failures[-1]
    except Exception as exc:  # a crash is a finding too: report it, keep going
        result.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return result


def _check(result: CellResult, runner: Runner, failures: list[Comparison], mode: str, recipe: Recipe) -> None:
    """One example of :func:`verify_cell`: every comparison of the draw, the worst kept; the first
    failure raised (hypothesis shrinks it)."""
    records = runner.run(recipe) if mode == "reverse" else modes.run(runner, mode, recipe)  # a mode may reject an extraordinary draw
    result.examples += 1
    bad = None
    for record in records:
        _keep_worst(result, record)
        if not record.passed and bad is None:
            bad = record
    if bad is not None:
        failures.append(bad)  # the last one appended is hypothesis' shrunk counterexample
        raise AssertionError(bad.message())


def verify(cells: list[Cell], *, examples: int | Callable[[Cell], int], on_cell: Callable[[CellResult], None] | None = None,
           jobs: int = 1) -> list[CellResult]:
    """Verify each cell, in order. ``jobs`` > 1: this process and ``jobs`` - 1 worker processes take
    cells from one queue side by side. A worker takes this process' thread count, oneDNN switch and
    injected faults (other torch settings, such as the float32 matmul precision, keep their
    defaults there), and is started with spawn, so no thread pool crosses a fork. Only registry ops
    go to a worker, which rebuilds them by name; a spec of the caller's own stays here. ``examples``:
    per cell, or a function of the cell (a mode's cells may draw fewer)."""
    examples = examples if callable(examples) else (lambda _, n=examples: n)
    if jobs <= 1 or len(cells) < 2:
        results = []
        for cell in cells:
            results.append(verify_cell(cell, examples=examples(cell)))
            if on_cell:
                on_cell(results[-1])
        return results
    return _side_by_side(cells, examples, on_cell, jobs)


def _side_by_side(cells: list[Cell], examples: Callable[[Cell], int], on_cell: Callable[[CellResult], None] | None, jobs: int) -> list[CellResult]:
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor

    import torch

    from checks import faults

    results: list[CellResult | None] = [None] * len(cells)
    registered = [_in_registry(cell) for cell in cells]
    mine = [i for i, known in enumerate(registered) if not known]  # a spec of the caller's own stays here
    waiting = [i for i, known in enumerate(registered) if known][::-1]
    lock = threading.Lock()

    def take() -> int | None:
        with lock:
            return waiting.pop() if waiting else None

    def done(index: int, result: CellResult) -> None:
        with lock:
            results[index] = result
            if on_cell:
                on_cell(result)

    def feed(pool: ProcessPoolExecutor) -> None:  # one thread per worker: it hands the worker one cell at a time
        while (index := take()) is not None:
            cell = cells[index]
            try:
                remote = pool.submit(_verify_named, cell.spec.name, cell.device, cell.dtype, cell.mode, examples(cell)).result()
            except Exception:  # noqa: BLE001  a worker that cannot start or answer: this process verifies the rest
                with lock:
                    waiting.append(index)
                return
            done(index, dataclasses.replace(remote, cell=cell))

    state = (torch.get_num_threads(), torch.backends.mkldnn.enabled, tuple(faults.ACTIVE))
    with ProcessPoolExecutor(jobs - 1, mp_context=multiprocessing.get_context("spawn"), initializer=_worker, initargs=state) as pool:
        feeders = [threading.Thread(target=feed, args=(pool,), daemon=True) for _ in range(jobs - 1)]
        for thread in feeders:
            thread.start()
        for index in mine:
            done(index, verify_cell(cells[index], examples=examples(cells[index])))
        for _ in range(2):  # and once more for any cell a failed worker handed back
            while (index := take()) is not None:
                done(index, verify_cell(cells[index], examples=examples(cells[index])))
            for thread in feeders:
                thread.join()
    return results


def _in_registry(cell: Cell) -> bool:
    from checks import registry

    try:
        return registry.get(cell.spec.name) is cell.spec
    except (KeyError, ValueError):
        return False


def _worker(threads: int, mkldnn: bool, fault_names: tuple[str, ...]) -> None:
    import torch

    from checks import faults

    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = mkldnn
    for name in fault_names:
        faults.keep_active(name)


def _verify_named(op: str, device: str, dtype: str, mode: str, examples: int) -> CellResult:
    from checks import registry

    result = verify_cell(Cell(registry.get(op), device, dtype, mode), examples=examples)
    return dataclasses.replace(result, cell=None)  # an op's spec holds lambdas: the caller puts the cell back
