"""``byhand report``: the verification, the derivations and the documented deviations as a page.

:func:`build` runs everything once and returns a :class:`Report`, whose ``data`` is exactly what
``report.json`` holds (schema in ``report.schema.json`` beside this file) and whose ``figures``
are the SVG plots; :func:`checks.report.render.write` turns it into ``index.html`` (self-contained),
``report.md`` (+ ``plots/``), ``report.json`` and ``report.tex``, atomically.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import inspect
import multiprocessing
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import sympy as sp

from checks import baseline, departures, devices
from checks.matrix import Cell
from checks.report import chains, deviations, plots
from checks.spec import FLOAT_DTYPES, OpSpec
from checks.verify import CellResult, verify
from reference import symbolic

SCHEMA = "byhand-report"
SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("report.schema.json")

Progress = Callable[[str], None]  # called once per finished step with a description


@dataclass
class Report:
    data: dict[str, Any]  # report.json, exactly
    figures: dict[str, str] = field(default_factory=dict)  # "plots/<name>.svg" -> SVG text
    derivations: dict[str, symbolic.Derivation] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.data["summary"]["passed"])


def environment() -> dict[str, Any]:
    """The baseline's fingerprint (checks.baseline.environment) plus what draws the report."""
    import matplotlib

    return baseline.environment() | {"matplotlib": matplotlib.__version__, "processor": platform.processor()}


def plan(cells: list[Cell]) -> tuple[list[OpSpec], list[departures.Departure]]:
    """The ops (registry order) and the declared departures a report of these cells covers."""
    ops = list({c.spec.name: c.spec for c in cells}.values())
    names = {s.name for s in ops}
    return ops, [d for d in departures.DEPARTURES if set(d.ops) & names]


def total_steps(cells: list[Cell]) -> int:
    ops, devs = plan(cells)
    return len(cells) + len(ops) + len(devs) + len(chains.covered([s.name for s in ops]))


def build(cells: list[Cell], *, examples: int = 20, magnitudes: np.ndarray = plots.MAGNITUDES, progress: Progress | None = None,
          networks: list[chains.Chain] | None = None) -> Report:
    """Verify every cell, derive and prove every op, plot (torch's error sampled at
    ``magnitudes``), measure the deviations, and derive and measure each network link by link
    (``networks``: by default those whose every op the cells cover)."""
    started = time.perf_counter()
    tick = progress or (lambda description: None)
    ops, devs = plan(cells)
    with _Proofs([spec.name for spec in ops]) as proofs:  # sympy proves on the other core while torch is verified here
        results = verify(cells, examples=examples, on_cell=lambda result: tick(f"verified {result.cell.id}"))
        report = Report({})
        op_data = []
        for spec in ops:
            op_data.append(_op(report, spec, [r for r in results if r.cell.spec is spec], magnitudes, proofs))
            tick(f"derived and plotted {spec.name}")
    dev_data = []
    for dev in devs:
        dev_data.append(_deviation(report, dev))
        tick(f"measured {dev.id}")
    net_data = []
    for chain in chains.covered([s.name for s in ops]) if networks is None else networks:
        net_data.append(chains.measure(chain, _network_devices(cells), [d for d in FLOAT_DTYPES if d in {c.dtype for c in cells}]))
        tick(f"derived and measured the {chain.title.lower()}")
    report.data = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
        "settings": {"examples_per_cell": examples, "devices": sorted({c.device for c in cells}),
                     "dtypes": sorted({c.dtype for c in cells}), "ops": [s.name for s in ops]},
        "summary": _summary(results, op_data, net_data, time.perf_counter() - started),
        "ops": op_data,
        "deviations": dev_data,
        "networks": net_data,
    }
    return report


def _first_paragraph(function: Callable | None) -> str | None:
    return None if function is None else " ".join(inspect.getdoc(function).split("\n\n")[0].split())


def _source(function: Callable | None) -> str | None:
    return None if function is None else inspect.getsource(function)


WORKER_FROM = 8  # ops in a report


class _Proofs:
    """Every op's sympy proof, computed in one worker process started first (pure: sympy, no torch),
    or here when no worker can start."""

    def __init__(self, names: list[str]) -> None:
        self.names, self.pool, self.futures = names, None, {}

    def __enter__(self) -> "_Proofs":
        if len(self.names) < WORKER_FROM:  # a worker costs a second to start: worth it for the whole registry only
            return self
        try:
            self.pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            self.futures = {name: self.pool.submit(symbolic.proof, name) for name in self.names if symbolic.derive(name).differentiable}
        except (OSError, RuntimeError):
            self.pool = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)  # every proof was read by now: nothing to wait for

    def of(self, name: str) -> symbolic.Proof:
        future = self.futures.get(name)
        try:
            return future.result() if future is not None else symbolic.proof(name)
        except concurrent.futures.process.BrokenProcessPool:
            return symbolic.proof(name)


def _op(report: Report, spec: OpSpec, results: list[CellResult], magnitudes: np.ndarray, proofs: _Proofs) -> dict[str, Any]:
    derivation = symbolic.derive(spec.name)
    proof = proofs.of(spec.name) if derivation.differentiable else None
    report.derivations[spec.name] = derivation
    figures = {}
    function = plots.function_plot(spec.name)
    if function is not None:
        figures["function"] = _figure(report, f"{spec.name}-function", function)
    ran = sorted({(r.cell.device, r.cell.dtype) for r in results if not r.skipped})
    sweeps = [s for s in (plots.sweep(spec, device, dtype, magnitudes) for device, dtype in ran) if s is not None]
    error = plots.error_plot(spec.name, sweeps)
    if error is not None:
        figures["error"] = _figure(report, f"{spec.name}-error", error)
    cells = [_cell(r) for r in results]
    statuses = [c["status"] for c in cells]
    return {
        "name": spec.name,
        "module": spec.forward.__module__,
        "definition": _first_paragraph(spec.forward),
        "gradient": _first_paragraph(spec.backward),
        "derivation": {
            "steps": [{"title": s.title, "latex": sp.latex(s.expr)} for s in derivation.steps],
            "variables": [sp.latex(v) for v in derivation.wrt],
            "hand": [sp.latex(h) for h in derivation.hand],
            "size": derivation.size,
            "note": derivation.note or None,
            "proof": None if proof is None else {"proven": proof.proven, "method": proof.method, "seconds": round(proof.seconds, 3)},
        },
        "source": {"forward": _source(spec.forward), "backward": _source(spec.backward)},
        "departures": [{"id": d.id, "title": d.title, "kind": d.kind} for d in departures.DEPARTURES if spec.name in d.ops],
        "status": "fail" if "fail" in statuses or (proof is not None and not proof.proven) else ("pass" if "pass" in statuses else "skipped"),
        "cells": cells,
        "error_by_magnitude": [dataclasses.asdict(s) for s in sweeps],
        "figures": figures,
    }


def _cell(result: CellResult) -> dict[str, Any]:
    data = result.to_dict()
    data["message"] = result.failure.message() if result.failure else result.error
    return data


def _figure(report: Report, name: str, svg: str) -> str:
    path = f"plots/{name}.svg"
    report.figures[path] = svg
    return path


def _deviation(report: Report, dev: departures.Departure) -> dict[str, Any]:
    """A declaration as the report shows it: for a quirk, where its probe says it shows now; the
    error map where it has one, measured now."""
    data = dev.to_dict()
    data["shows_on"] = [device for device in devices.available() if departures.shows(dev, device)] if dev.quirk else None
    data.update(finding=None, map=None, figure=None)
    if dev.measure is not None:
        measured = dev.measure()
        data["finding"] = measured.finding
        data["map"] = {"x": measured.x, "series": measured.series, "xlabel": measured.xlabel, "ylabel": measured.ylabel}
        data["figure"] = _figure(report, f"deviation-{dev.id}", deviations.plot(measured))
    return data


def _network_devices(cells: list[Cell]) -> list[str]:
    """The report's devices that have float64 (the end-to-end check's dtype): not MPS."""
    return [d for d in sorted({c.device for c in cells}) if d != "mps"]


def _summary(results: list[CellResult], ops: list[dict[str, Any]], networks: list[dict[str, Any]], elapsed: float) -> dict[str, Any]:
    failed = [r for r in results if not r.passed]
    unproven = [o["name"] for o in ops if o["derivation"]["proof"] and not o["derivation"]["proof"]["proven"]]
    network_failures = [{"network": n["name"], "title": n["title"], "link": link["name"], "device": c["device"], "dtype": c["dtype"], "message": message}
                        for n in networks for link in [*n["links"], {"name": "every .grad end to end", "checks": n["end_to_end"]}]
                        for c in link["checks"] for message in c["failures"]]
    return {
        "passed": not failed and not unproven and not network_failures,
        "network_failures": network_failures,
        "ops": len(ops),
        "cells": len(results),
        "cells_passed": sum(r.passed and not r.skipped for r in results),
        "cells_failed": len(failed),
        "cells_skipped": sum(bool(r.skipped) for r in results),
        "examples": sum(r.examples for r in results),
        "proofs": sum(o["derivation"]["proof"] is not None for o in ops),
        "unproven": unproven,
        "failures": [{"cell": r.cell.id, "op": r.cell.spec.name, "device": r.cell.device, "dtype": r.cell.dtype,
                      "message": r.failure.message() if r.failure else r.error} for r in failed],
        # The magnitude sweep's inputs are not the registry's draws: shown beside the verdict, not
        # counted in it.
        "sweep_failures": [{"op": o["name"], "device": s["device"], "dtype": s["dtype"],
                            "magnitudes": [m for m, bad in zip(s["magnitudes"], s["failed"]) if bad]}
                           for o in ops for s in o["error_by_magnitude"] if any(s["failed"])],
        "elapsed_s": round(elapsed, 2),
    }
