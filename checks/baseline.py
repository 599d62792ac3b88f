"""Baselines: what this torch computes, recorded exactly, and what moved since.

``save`` runs a few fixed recipes per registry cell (op × device × dtype) and records torch's
outputs and gradients as ``float.hex`` strings (exact, readable, diffable), each record's worst
error against the reference, and the environment (checks.environment: versions, build, CPU model
and features, capability, threads, numerics settings, the quirks that show). ``compare`` re-runs exactly the recorded recipes and sorts every difference:

- ``newly failing``: passed the policy then, fails it now (exit 1);
- ``moved``: an output or gradient moved beyond the tolerance policy from its recorded value (exit 1);
- ``accuracy``: the worst ULP error against the reference grew by more than 1 ULP (exit 1);
- ``quirks``: a declared quirk (checks/departures) shows now and did not when recorded, or the
  reverse: what a torch upgrade or a new machine looks like (informational);
- ``bitwise``: values changed within the tolerance (informational; the CPU, its capability and the
  threads are the usual cause, and the environment diff names them);
- ``new`` / ``missing``: cells or cases on one side only;
- ``inputs``: the recorded recipe now draws different inputs (numpy's generators changed, as between
  numpy 1.26 and 2.4, or the registry's draws did), so that case's outputs are not compared;
  informational;
- ``defaults``: a default argument of a registry functional or an optimizer changed, appeared or
  went away (informational, but it changes what a notebook computes).

Besides the registry cells, a baseline records the course notebooks' seeded computations
(:mod:`checks.seeded`: the initialisation under ``torch.manual_seed(11052023)``, the forward
passes, and SGD/Adam/AdamW trajectories), judged like the cells: bitwise, or moved beyond the
policy with k scaled by the number of chained roundings.

A baseline is plain JSON with a schema version; loading never executes anything, and a corrupt or
foreign file is a clear error.
"""
from __future__ import annotations

import hashlib
import json
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings

from checks import departures, devices, seeded
from checks.environment import fingerprint
from checks.compare import Context, compare
from checks.matrix import Cell
from checks.registry import BY_NAME
from checks.runner import Runner, build_case, info_for
from checks.spec import Case, Recipe
from checks.strategies import recipes
from checks.tolerance import k_for

SCHEMA = "byhand-baseline"
SCHEMA_VERSION = 1
ACCURACY_SLACK = 1.0  # ULPs the worst error may grow before it counts as a regression
FAILING = ("newly failing", "moved", "accuracy")
KINDS = (*FAILING, "quirks", "bitwise", "inputs", "defaults", "new", "missing")
# Environment keys that can explain bitwise changes, in the order likely_cause names them.
CAUSES = (("torch", "the torch version"), ("cpu_model", "the CPU model"), ("cpu_features", "the CPU's features (ISA)"),
          ("cpu_capability", "the CPU vector capability (ATEN_CPU_CAPABILITY)"), ("knobs", "a numerics setting or start-up variable"),
          ("threads", "the thread count"), ("build", "the build configuration"), ("machine", "the machine"))


class BaselineError(ValueError):
    """A baseline file that cannot be used: unreadable, not byhand's, or of another schema."""


def environment() -> dict[str, Any]:
    """The one fingerprint (checks.environment.fingerprint) that `byhand verify --json`, baselines
    and reports record."""
    return fingerprint()


def fixed_recipes(cell: Cell, count: int) -> list[Recipe]:
    """``count`` recipes hypothesis draws for the cell, derandomized: the same on every run of the
    same hypothesis version. The baseline stores them, so a comparison never depends on that."""
    found: list[Recipe] = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(recipes(cell.spec))
    def collect(recipe: Recipe) -> None:
        found.append(recipe)

    collect()
    return found[:count]


def _hex(values: np.ndarray) -> list[str]:
    return [float(v).hex() for v in np.ravel(values)]


def _unhex(values: list[str], shape: list[int]) -> np.ndarray:
    return np.array([float.fromhex(v) for v in values], dtype=np.float64).reshape(shape)


def record_case(runner: Runner, recipe: Recipe) -> dict[str, Any]:
    """One recipe's exact outputs and gradients, and how far each is from the reference."""
    return _record_with_scales(runner, recipe)[0]


def inputs_hash(case: Case, *, canonical_nan: bool = True) -> str:
    """A fingerprint of the exact input values, so a change of inputs is not taken for torch's.
    Every NaN hashes as one: torch 2.13's float64 -> bfloat16 conversion sets a NaN's sign bit in
    its AVX2 loop and keeps it under ATEN_CPU_CAPABILITY=default, the same values otherwise
    (``canonical_nan=False``: the hash baselines recorded before this was found)."""
    digest = hashlib.sha256()
    for name, value in sorted(case.arrays().items()):
        if canonical_nan and value.dtype.kind == "f" and np.isnan(value).any():
            value = np.where(np.isnan(value), np.nan, value).astype(value.dtype)
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def _record_with_scales(runner: Runner, recipe: Recipe) -> tuple[dict[str, Any], dict[str, Any]]:
    """The record, and each value's natural scale (for judging a move under the policy)."""
    spec = runner.spec
    ev = runner.evaluate(recipe, module=False, gradient=spec.differentiable)
    records = {r.context.phase: r for r in runner.judge(ev, recipe)}  # the same torch run, judged once
    values = {"forward": ev.forward, **{f"grad[{k}]": v for k, v in ev.grads.items()}}
    case = ev.case
    with np.errstate(all="ignore"):
        scales = {"forward": spec.scale(case, spec.forward(*case.inputs.values(), **case.params))}
        if ev.grad_output is not None:
            scales |= {f"grad[{k}]": v for k, v in spec.grad_scale(case, ev.grad_output).items()}
    return {
        "recipe": {"seed": recipe.seed, "regime": recipe.regime, "shape": list(recipe.shape), "knobs": recipe.knobs},
        "inputs_sha256": inputs_hash(case),
        "values": {phase: {"shape": list(np.shape(v)), "hex": _hex(v)} for phase, v in values.items()},
        "worst_ulp": {phase: r.max_ulp_err for phase, r in records.items()},
        "passed": {phase: r.passed for phase, r in records.items()},
    }, scales


def save(path: str | Path, cells: Iterable[Cell], *, cases: int = 3) -> dict[str, Any]:
    data = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "environment": environment(), "cases_per_cell": cases, "cells": {}}
    for cell in cells:
        runner = Runner(cell.spec, cell.device, cell.dtype)
        data["cells"][cell.id] = {"op": cell.spec.name, "device": cell.device, "dtype": cell.dtype,
                                  "cases": [record_case(runner, r) for r in fixed_recipes(cell, cases)]}
    data["notebooks"] = {name: {"roundings": roundings, "values": {k: {"shape": list(np.shape(v)), "hex": _hex(v)} for k, v in compute().items()}}
                         for name, (roundings, compute) in seeded.RECORDS.items()}
    data["defaults"] = seeded.defaults()
    write_atomically(path, json.dumps(data, indent=1, default=_json_default))
    return data


def write_atomically(path: str | Path, text: str) -> None:
    """Write beside the target, then rename: a reader never sees half a file."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(target)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def load(path: str | Path) -> dict[str, Any]:
    """Read a baseline as data (json only: nothing is executed) and check it is one of ours."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BaselineError(f"{path}: no such baseline file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path}: not a readable JSON baseline ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise BaselineError(f"{path}: not a byhand baseline (no schema {SCHEMA!r})")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise BaselineError(f"{path}: baseline schema version {data.get('schema_version')!r}, this byhand reads {SCHEMA_VERSION}")
    if not isinstance(data.get("cells"), dict):
        raise BaselineError(f"{path}: baseline has no cells")
    return data


@dataclass
class Finding:
    kind: str  # one of: newly failing, moved, accuracy, bitwise, new, missing
    cell: str
    detail: str


@dataclass
class Comparison:
    environment: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # key -> (then, now), changed keys only
    findings: list[Finding] = field(default_factory=list)
    cases: int = 0

    @property
    def failed(self) -> bool:
        return any(f.kind in FAILING for f in self.findings)

    def count(self, kind: str) -> int:
        return sum(f.kind == kind for f in self.findings)

    def likely_cause(self) -> str:
        changed = set(self.environment)
        causes = [name for key, name in CAUSES if key in changed]
        return ", ".join(causes) if causes else "nothing recorded changed (nondeterminism?)"


def as_drawn(knobs: Any) -> Any:
    """Knobs read back from JSON as hypothesis drew them: its lists were tuples (a kernel size, an
    output size), and a registry may tell a pair from a number by that."""
    if isinstance(knobs, dict):
        return {k: as_drawn(v) for k, v in knobs.items()}
    if isinstance(knobs, list):
        return tuple(as_drawn(v) for v in knobs)
    return knobs


def _compare_case(runner: Runner, cell_id: str, old: dict[str, Any], result: Comparison) -> None:
    r = old["recipe"]
    recipe = Recipe(seed=r["seed"], regime=r["regime"], shape=tuple(r["shape"]), knobs=as_drawn(r["knobs"]))
    result.cases += 1
    info, spec = info_for(runner.dtype), runner.spec
    where = f"{cell_id} seed={recipe.seed} {recipe.regime} {recipe.shape}"
    try:
        new, scales = _record_with_scales(runner, recipe)
    except Exception as exc:  # noqa: BLE001 - an error torch did not raise before is a finding
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        frames = traceback.extract_tb(exc.__traceback__)
        who = "torch now raises" if frames and f"{os.sep}torch{os.sep}" in frames[-1].filename else f"byhand raised (in {Path(frames[-1].filename).name}, not torch)" if frames else "raised"
        result.findings.append(Finding("newly failing", cell_id, f"{where}: {who} {type(exc).__name__}: {first_line}"))
        return
    if old.get("inputs_sha256") not in (None, new["inputs_sha256"], inputs_hash(build_case(spec, recipe, info), canonical_nan=False)):
        result.findings.append(Finding("inputs", cell_id, f"{where}: the recipe draws different inputs now (numpy's generators or the registry's draws changed); not compared"))
        return
    for phase, was in old["passed"].items():
        if was and not new["passed"].get(phase, True):
            result.findings.append(Finding("newly failing", cell_id, f"{where} {phase}"))
        grew = new["worst_ulp"].get(phase, 0.0) - old["worst_ulp"].get(phase, 0.0)
        if grew > ACCURACY_SLACK:
            result.findings.append(Finding("accuracy", cell_id, f"{where} {phase}: worst error {old['worst_ulp'][phase]:.2f} -> {new['worst_ulp'][phase]:.2f} ULP"))
    for phase, then in old["values"].items():
        now = new["values"].get(phase)
        if now is None:
            result.findings.append(Finding("missing", cell_id, f"{where} {phase} no longer computed"))
            continue
        if now["hex"] == then["hex"]:
            continue
        before, after = _unhex(then["hex"], then["shape"]), _unhex(now["hex"], now["shape"])
        kind = "forward" if phase == "forward" else "gradient"
        record = compare(after, before, scale=scales.get(phase, 0.0), info=info, k=k_for(kind, runner.dtype),
                         context=Context(spec.name, phase, "baseline", runner.device, runner.dtype, tuple(then["shape"])))
        changed = int(np.sum(~((before == after) | (np.isnan(before) & np.isnan(after)))))
        if record.passed:
            result.findings.append(Finding("bitwise", cell_id, f"{where} {phase}: {changed} values changed, max {record.max_ulp_err:.2g} ULP"))
        else:
            result.findings.append(Finding("moved", cell_id, f"{where} {phase}: {record.n_bad} values moved beyond the policy, e.g. [{','.join(map(str, record.worst_index))}] {record.worst_expected!r} -> {record.worst_actual!r}"))


def compare_with(data: dict[str, Any]) -> Comparison:
    """Re-run every recorded case now and classify what changed."""
    result = Comparison()
    now_env = environment()
    result.environment = {k: (v, now_env.get(k)) for k, v in data["environment"].items() if now_env.get(k) != v}
    _compare_quirks(data["environment"].get("quirks"), now_env["quirks"], result)
    for cell_id, cell in data["cells"].items():
        spec = BY_NAME.get(cell.get("op"))
        if spec is None:
            result.findings.append(Finding("missing", cell_id, f"op {cell.get('op')!r} is no longer in the registry"))
            continue
        reason = devices.unavailable_reason(cell["device"])
        if reason:
            result.findings.append(Finding("missing", cell_id, f"not run here: {reason}"))
            continue
        runner = Runner(spec, cell["device"], cell["dtype"])
        for case in cell["cases"]:
            _compare_case(runner, cell_id, case, result)
    _compare_notebooks(data.get("notebooks"), result)
    _compare_defaults(data.get("defaults"), result)
    return result


def _compare_quirks(then: list[str] | None, now: list[str], result: Comparison) -> None:
    """A quirk that appeared or disappeared: what a torch upgrade or a new machine looks like."""
    if then is None:
        return  # a baseline from before quirks were probed
    for entry in sorted(set(now) - set(then)):
        quirk, _, device = entry.partition("@")
        result.findings.append(Finding("quirks", quirk, f"appeared on {device}: shows now, did not when recorded ({departures.get(quirk).upstream})"))
    for entry in sorted(set(then) - set(now)):
        quirk, _, device = entry.partition("@")
        result.findings.append(Finding("quirks", quirk, f"disappeared on {device}: showed when recorded, does not now"))


NOTEBOOK_INFO = info_for("float32")  # the notebooks run in float32


def _compare_notebooks(recorded: dict[str, Any] | None, result: Comparison) -> None:
    if recorded is None:
        result.findings.append(Finding("missing", "notebooks", "the baseline has no notebook records (saved by an older byhand)"))
        return
    for name, then in recorded.items():
        if name not in seeded.RECORDS:
            result.findings.append(Finding("missing", f"notebook: {name}", "no longer computed"))
            continue
        now = seeded.RECORDS[name][1]()
        k = k_for("forward", "float32") * then["roundings"]
        for key, old in then["values"].items():
            result.cases += 1
            before, after = _unhex(old["hex"], old["shape"]), np.asarray(now[key], dtype=np.float64)
            if _hex(after) == old["hex"]:
                continue
            record = compare(after, before, scale=np.abs(before), info=NOTEBOOK_INFO, k=k,
                             context=Context(name, key, "baseline", "cpu", "float32", tuple(old["shape"])))
            where = f"notebook: {name}"
            if record.passed:
                result.findings.append(Finding("bitwise", where, f"{where} {key}: values changed, max {record.max_ulp_err:.2g} ULP (k = {k:g} for {then['roundings']} roundings)"))
            else:
                result.findings.append(Finding("moved", where, f"{where} {key}: {record.n_bad} values moved beyond the policy, e.g. {record.worst_expected!r} -> {record.worst_actual!r}"))


def _compare_defaults(recorded: dict[str, Any] | None, result: Comparison) -> None:
    if recorded is None:
        return
    now = seeded.defaults()
    for function in sorted(set(recorded) | set(now)):
        then_args, now_args = recorded.get(function, {}), now.get(function, {})
        for arg in sorted(set(then_args) | set(now_args)):
            if arg not in now_args:
                result.findings.append(Finding("defaults", function, f"{function}: {arg}={then_args[arg]!r} is gone"))
            elif arg not in then_args:
                result.findings.append(Finding("defaults", function, f"{function}: {arg}={now_args[arg]!r} is new"))
            elif then_args[arg] != now_args[arg]:
                result.findings.append(Finding("defaults", function, f"{function}: {arg} default {then_args[arg]!r} -> {now_args[arg]!r}"))


def new_cells(data: dict[str, Any], cells: Iterable[Cell]) -> list[Finding]:
    return [Finding("new", c.id, "not in the baseline") for c in cells if c.id not in data["cells"]]


def markdown(result: Comparison) -> str:
    lines = ["# byhand baseline comparison", "", f"{result.cases} recorded cases re-run.", ""]
    if result.environment:
        lines += ["## Environment changes", "", "| key | baseline | now |", "| --- | --- | --- |"]
        lines += [f"| {k} | {_short(v[0])} | {_short(v[1])} |" for k, v in result.environment.items()]
        lines.append("")
        if result.count("bitwise"):
            lines += [f"Likely cause of the bitwise changes: {result.likely_cause()}.", ""]
    lines += ["## Findings", "", "| kind | count |", "| --- | --- |"]
    lines += [f"| {kind} | {result.count(kind)} |" for kind in KINDS]
    for kind in KINDS:
        found = [f for f in result.findings if f.kind == kind]
        if found:
            lines += ["", f"### {kind}", ""] + [f"- {f.detail}" for f in found[:50]]
            if len(found) > 50:
                lines.append(f"- ... and {len(found) - 50} more")
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    text = str(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."
