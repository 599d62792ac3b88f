"""Recordings: what torch computed on one machine, judged anywhere by today's references.

``record`` runs every cell's verify draws (the same derandomized examples as ``byhand verify``) and
the large strided extremal case, and keeps, exactly, the inputs as torch received them, torch's
outputs (functional and module) and gradients, the upstream gradient, the machine's fingerprint and
every probe's answer (checks.departures.answers). ``judge`` rebuilds each case from those arrays,
runs today's reference on them and judges torch's recorded numbers under the tolerance policy and
the declarations, with the recorded probe answers standing in for live probes: as on the recording
machine, from any machine and any torch. Nothing is re-run in torch.

Arrays are stored in the narrowest dtype that holds them exactly (a bfloat16 case's values in two
bytes) in one numpy .npz file, beside its JSON manifest. A raw capture (``byhand-raw-capture-1``, ../shared/recordings) is read too: it has no probe
answers, so a quirk counts as shown there where its declared behaviour is seen in the capture.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from checks import departures, devices, dtypes
from checks.baseline import inputs_hash
from checks.compare import Comparison
from checks.matrix import Cell
from checks.registry import BY_NAME
from checks.runner import Evaluation, Runner, build_case, info_for, simplest_knobs, unsupported
from checks.spec import Case, Recipe
from checks.strategies import recipes, search

FORMAT = "byhand-recording"
VERSION = 1
RAW_FORMAT = "byhand-raw-capture-1"
# Encodings tried in order: the first that gives back every value (NaN included) is kept.
_NARROW = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


class RecordingError(ValueError):
    """A file that is not a recording byhand can read."""


# --- arrays, exactly and compactly ---------------------------------------------------------------


def _as(values: np.ndarray, kind: str) -> np.ndarray:
    if kind == "bfloat16":  # the top half of float32's bits; exact for values that are bfloat16
        return (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    return values.astype(kind)


def _from(raw: np.ndarray, kind: str) -> np.ndarray:
    if kind == "bfloat16":
        return (raw.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return raw.astype(np.float64) if raw.dtype.kind == "f" else raw


def _exact(values: np.ndarray, kind: str) -> bool:
    with np.errstate(all="ignore"):
        back = _from(_as(values, kind), kind)
    return bool(np.array_equal(back, values, equal_nan=True) and np.array_equal(np.signbit(back), np.signbit(values)))


class Arrays:
    """The arrays of one recording, by key: written with numpy's own .npz (zip, deflated), read lazily."""

    def __init__(self, stored: Any = None, base: "Arrays | None" = None, base_probes: dict | None = None) -> None:
        self.stored = {} if stored is None else stored
        self.base = base  # another recording of the same draws: the arrays this one does not hold are its
        self.base_probes = base_probes  # and the probe answers it was recorded under

    def put(self, value: Any, dtype: str) -> dict[str, Any]:
        """An array's entry: kept in ``dtype`` where that holds every value exactly, else as it is."""
        value = np.asarray(value)
        kind = value.dtype.name
        if value.dtype.kind == "f" and dtype in _NARROW and _exact(value.astype(np.float64), _NARROW[dtype]):
            kind = _NARROW[dtype]
        key = f"a{len(self.stored)}"
        self.stored[key] = _as(value.astype(np.float64), kind) if kind == "bfloat16" else np.array(value, dtype=kind, order="C")
        return {"dtype": kind, "numpy": value.dtype.name, "key": key}

    def get(self, entry: dict[str, Any], keep: bool = False) -> np.ndarray:
        """The array back: floats as float64, or (``keep``) in their own numpy dtype (rms_norm's float16 input)."""
        key = entry["key"]
        raw = np.asarray(self.stored[key] if key in self.stored or self.base is None else self.base.stored[key])
        value = _from(raw, entry["dtype"])
        return value.astype(entry["numpy"]) if keep and entry["numpy"] in ("float16", "float32") else value

    def value(self, value: Any, dtype: str) -> Any:
        """A case argument as JSON: arrays stored, tuples and non-finite floats tagged, so they come back as they were."""
        if isinstance(value, np.generic):
            value = np.asarray(value)
        if isinstance(value, np.ndarray):
            return {"array": self.put(value, dtype)}
        if isinstance(value, tuple):
            return {"tuple": [self.value(v, dtype) for v in value]}
        if isinstance(value, list):
            return [self.value(v, dtype) for v in value]
        if isinstance(value, dict):
            return {"dict": {k: self.value(v, dtype) for k, v in value.items()}}
        if isinstance(value, float) and not np.isfinite(value):
            return {"float": repr(value)}
        return value

    def unvalue(self, stored: Any) -> Any:
        if isinstance(stored, dict):
            if "array" in stored:
                return self.get(stored["array"], keep=True)
            if "tuple" in stored:
                return tuple(self.unvalue(v) for v in stored["tuple"])
            if "dict" in stored:
                return {k: self.unvalue(v) for k, v in stored["dict"].items()}
            if "float" in stored:
                return float(stored["float"])
        if isinstance(stored, list):
            return [self.unvalue(v) for v in stored]
        return stored


# --- recording -----------------------------------------------------------------------------------


def _draws(cell: Cell, examples: int) -> list[Recipe]:
    """The recipes ``byhand verify`` checks for this cell (derandomized by the cell's name)."""
    found: list[Recipe] = []
    search(recipes(cell.spec), found.append, examples=examples, name=cell.id)
    return found


def large_recipe(cell: Cell) -> Recipe:
    """The large strided extremal case, cut along its first axis to just over ATen's GRAIN_SIZE
    (32,768 elements), past which at::parallel_for splits the work across threads: the vectorised,
    threaded kernels, at a third of the suite's 100k elements (recordings stay under 20 MB)."""
    spec = cell.spec
    shape = list(spec.large_shape)
    rest = int(np.prod(shape[1:]))
    shape[0] = max(1, -(-LARGE_ELEMENTS // rest)) if shape[0] * rest > LARGE_ELEMENTS else shape[0]
    return Recipe(seed=0, regime="extremal" if "extremal" in spec.regimes else spec.regimes[0], shape=tuple(shape), knobs=simplest_knobs(spec))


LARGE_ELEMENTS = 32_768 + 1


def _case_record(arrays: Arrays, runner: Runner, recipe: Recipe, layout: str) -> dict[str, Any]:
    gradient = runner.spec.differentiable and layout == "contiguous"
    ev = runner.evaluate(recipe, gradient=gradient, layout=layout)
    dtype, case = runner.dtype, ev.case
    out: dict[str, Any] = {
        "recipe": {"seed": recipe.seed, "regime": recipe.regime, "shape": list(recipe.shape), "knobs": arrays.value(recipe.knobs, dtype)},
        "layout": layout,
        "inputs_sha256": inputs_hash(case),
        "torch_kwargs": case.torch,
        "forward": arrays.put(ev.forward, dtype),
    }
    if layout == "contiguous":  # the large case's inputs are its recipe's, checked by their hash (half the file)
        out["inputs"] = {name: arrays.value(v, dtype) for name, v in case.inputs.items()}
        out["params"] = {name: arrays.value(v, dtype) for name, v in case.params.items()}
    if ev.precision is not None and ev.precision.name != dtype:
        out["precision"] = ev.precision.name
    if ev.module is not None:  # the module path's output, unless it is the functional's bit for bit (nearly always)
        same = np.array_equal(ev.module, ev.forward, equal_nan=True) and np.array_equal(np.signbit(ev.module), np.signbit(ev.forward))
        out["module"] = "forward" if same else arrays.put(ev.module, dtype)
    if ev.updated:
        out["updated"] = {name: arrays.put(v, dtype) for name, v in ev.updated.items()}
    if ev.grad_output is not None:
        out["grad_output"] = arrays.put(ev.grad_output, dtype)
        out["grads"] = {name: arrays.put(v, dtype) for name, v in ev.grads.items()}
    return out


def record(cells: Iterable[Cell], *, examples: int, large: bool = True) -> tuple[dict[str, Any], Arrays]:
    """Every cell's verify draws and its large strided case, with the fingerprint and probe answers."""
    from checks.environment import fingerprint

    env = fingerprint()
    env.pop("build", None)  # torch's build configuration: 2 kB of text that names no kernel choice
    arrays = Arrays()
    data: dict[str, Any] = {"format": FORMAT, "version": VERSION, "machine": env,
                            "probes": departures.answers(devices.available()), "examples": examples, "cells": {}}
    for cell in cells:
        reason = unsupported(cell.spec.name, cell.device, cell.dtype)
        entry: dict[str, Any] = {"op": cell.spec.name, "device": cell.device, "dtype": cell.dtype}
        if reason:
            data["cells"][cell.id] = entry | {"skipped": reason}
            continue
        runner = Runner(cell.spec, cell.device, cell.dtype)
        cases = [_case_record(arrays, runner, r, "contiguous") for r in _draws(cell, examples)]
        if large:
            cases.append(_case_record(arrays, runner, large_recipe(cell), "strided"))
        data["cells"][cell.id] = entry | {"cases": cases}
    return data, arrays


def write(path: str | Path, data: dict[str, Any], arrays: Arrays, base: str | Path | None = None) -> int:
    """One .npz file (numpy's zip of arrays, deflated): the arrays and the JSON manifest beside
    them. With ``base``, a recording of the same draws in the same folder (another configuration of
    this machine), only the arrays that differ from it bit for bit are kept. Written beside the
    target and renamed; returns its size in bytes."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp.npz")
    stored = {k: v for k, v in arrays.stored.items() if k != "manifest"}  # an Arrays loaded from a file holds its manifest too
    if base is not None:
        _, theirs = load(base)
        same = lambda k, v: k in theirs.stored and theirs.stored[k].dtype == v.dtype and theirs.stored[k].tobytes() == v.tobytes()  # noqa: E731
        stored = {k: v for k, v in stored.items() if not same(k, v)}
        data = {**data, "base": Path(base).name}
    manifest = np.frombuffer(json.dumps(data, separators=(",", ":")).encode(), dtype=np.uint8)
    np.savez_compressed(tmp, manifest=manifest, **stored)
    tmp.replace(target)
    return target.stat().st_size


def load(path: str | Path) -> tuple[dict[str, Any], Arrays]:
    """A recording (or a raw capture's JSON) as data and arrays; nothing is executed (no pickles)."""
    path = Path(path)
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
        else:
            stored = np.load(path, allow_pickle=False)
            data = json.loads(stored["manifest"].tobytes())
    except FileNotFoundError:
        raise RecordingError(f"{path}: no such recording") from None
    except (OSError, EOFError, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise RecordingError(f"{path}: not a readable byhand recording ({exc})") from None
    if path.suffix == ".json":
        if not isinstance(data, dict) or data.get("format") != RAW_FORMAT:
            raise RecordingError(f"{path}: a .json recording must be a raw capture (format {RAW_FORMAT!r})")
        return from_capture(data)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RecordingError(f"{path}: not a byhand recording (format {FORMAT!r})")
    if data.get("version") != VERSION:
        raise RecordingError(f"{path}: recording version {data.get('version')!r}, this byhand reads {VERSION}")
    if data.get("base"):
        base_data, base = load(path.parent / data["base"])
        return data, Arrays(stored, base, base_data.get("probes"))
    return data, Arrays(stored)


# --- judging -------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """One recording judged: what a row of ``byhand judge`` shows."""

    source: str
    machine: dict[str, Any]
    cells: int = 0
    cases: int = 0
    skipped: int = 0
    deviations: dict[str, int] = field(default_factory=dict)
    failures: list[Comparison] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unknown_ops: list[str] = field(default_factory=list)
    unreproducible: int = 0  # large cases whose recipe draws other inputs under this numpy: not judged
    inherited: int = 0  # cases bit for bit those of the recording's base, under its probe answers: judged there

    @property
    def passed(self) -> bool:
        return not self.failures and not self.errors


class Unreproducible(Exception):
    """A case recorded by its recipe whose inputs this numpy draws otherwise (their hash differs)."""


def _evaluation(arrays: Arrays, stored: dict[str, Any], spec: Any, dtype: str) -> tuple[Evaluation, Recipe]:
    info = info_for(dtype)
    r = stored.get("recipe") or {}
    recipe = Recipe(int(r.get("seed", -1)), str(r.get("regime", "recorded")), tuple(r.get("shape", ())), arrays.unvalue(r.get("knobs", {})))
    if "inputs" in stored:
        inputs = {name: arrays.unvalue(v) for name, v in stored["inputs"].items()}
        params = {name: arrays.unvalue(v) for name, v in stored["params"].items()}
        case = Case(inputs, params, info, dict(stored.get("torch_kwargs") or {}))
    else:
        case = build_case(spec, recipe, info)
        if inputs_hash(case) != stored["inputs_sha256"]:
            raise Unreproducible(recipe)
    forward = arrays.get(stored["forward"])
    module = stored.get("module")
    ev = Evaluation(case, forward, forward if module == "forward" else None if module is None else arrays.get(module),
                    arrays.get(stored["grad_output"]) if "grad_output" in stored else None,
                    {name: arrays.get(v) for name, v in stored.get("grads", {}).items()},
                    dtypes.get(stored["precision"]) if "precision" in stored else None,
                    {name: arrays.get(v) for name, v in stored.get("updated", {}).items()})
    return ev, recipe


def judged(data: dict[str, Any], arrays: Arrays, part: int = 0, parts: int = 1) -> Iterator[tuple[str, list[Comparison] | None]]:
    """(cell id, records) for every recorded case, judged by today's references and declarations as
    on the recording machine; records None for a case whose inputs this numpy cannot draw again.
    ``part`` of ``parts``: every parts-th cell from the part-th (a sample that rotates over files)."""
    inherited = arrays.base is not None and arrays.base_probes == data.get("probes")
    with departures.answered(data.get("probes", {})):
        for index, (cell_id, cell) in enumerate(data["cells"].items()):
            spec = BY_NAME.get(cell["op"])
            if spec is None or "cases" not in cell or index % parts != part:
                continue
            runner = Runner(spec, cell["device"], cell["dtype"])
            for stored in cell["cases"]:
                if inherited and not any(key in arrays.stored for key in _keys(stored)):
                    yield cell_id, INHERITED  # every array is its base's, under the same probe answers: its base's verdict
                    continue
                try:
                    ev, recipe = _evaluation(arrays, stored, spec, cell["dtype"])
                except Unreproducible:
                    yield cell_id, None
                    continue
                yield cell_id, runner.judge(ev, recipe, stored.get("layout", "contiguous"))


INHERITED: list[Comparison] = []  # judged() gives this for a case that is its base's bit for bit


def _keys(stored: Any) -> Iterator[str]:
    """The array keys a recorded case refers to."""
    if isinstance(stored, dict):
        if "key" in stored and "dtype" in stored:
            yield stored["key"]
        for value in stored.values():
            yield from _keys(value)
    elif isinstance(stored, list):
        for value in stored:
            yield from _keys(value)


def judge(data: dict[str, Any], arrays: Arrays, source: str = "", part: int = 0, parts: int = 1) -> Verdict:
    verdict = Verdict(source, data.get("machine", {}))
    verdict.unknown_ops = sorted({c["op"] for c in data["cells"].values() if c["op"] not in BY_NAME})
    verdict.cells = sum(1 for c in data["cells"].values() if "cases" in c and c["op"] in BY_NAME)
    verdict.skipped = sum(1 for c in data["cells"].values() if "skipped" in c)
    try:
        for _, records in judged(data, arrays, part, parts):
            if records is None:
                verdict.unreproducible += 1
                continue
            if records is INHERITED:
                verdict.inherited += 1
                continue
            verdict.cases += 1
            for record in records:
                for quirk, count in record.deviations:
                    verdict.deviations[quirk] = verdict.deviations.get(quirk, 0) + count
                if not record.passed:
                    verdict.failures.append(record)
    except Exception as exc:  # noqa: BLE001 - a case byhand cannot rebuild is byhand's error, reported as such
        verdict.errors.append(f"byhand could not rebuild a recorded case: {type(exc).__name__}: {exc}".splitlines()[0])
    return verdict


def judge_file(path: str | Path, part: int = 0, parts: int = 1, lifted: tuple[str, ...] = ()) -> Verdict:
    """:func:`judge` of one file, with these declarations lifted (the suite's worker calls this)."""
    with departures.lifted(*lifted):
        return judge(*load(path), source=str(path), part=part, parts=parts)


# --- raw captures (../shared/recordings) -----------------------------------------------------------


def _unhex(stored: dict[str, Any]) -> np.ndarray:
    return np.array([float.fromhex(v) for v in stored["hex"]], dtype=np.float64).reshape(stored["shape"])


def _recipe_of(text: str | None, arrays: Arrays) -> dict[str, Any] | None:
    """A capture's ``Recipe(seed=..., ...)`` as a dict, read as literals (never evaluated)."""
    if not text:
        return None
    call = ast.parse(text, mode="eval").body
    if not isinstance(call, ast.Call):
        return None
    fields = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    return {"seed": fields.get("seed", -1), "regime": fields.get("regime", "recorded"), "shape": list(fields.get("shape", ())),
            "knobs": arrays.value(fields.get("knobs", {}), "float64")}


def from_capture(raw: dict[str, Any]) -> tuple[dict[str, Any], Arrays]:
    """A raw capture in the recording format. It has no probe answers: a quirk counts as shown for
    an op, phase and dtype where judging the capture with every quirk in force finds elements that
    it accounts for (the capture's minimal witnesses are there for that)."""
    arrays = Arrays()
    cells: dict[str, dict[str, Any]] = {}
    for i, rec in enumerate(raw.get("records", [])):
        dtype = rec["dtype"]
        cell = cells.setdefault(f"{rec['op']}-cpu-{dtype}", {"op": rec["op"], "device": "cpu", "dtype": dtype, "cases": []})
        cell["cases"].append({"recipe": _recipe_of(rec.get("recipe"), arrays) or {"seed": -1, "regime": f"capture record {i}", "shape": [], "knobs": {}},
                              "layout": rec.get("layout", "contiguous"), "what": rec.get("what", ""),
                              "inputs": {name: None if v is None else {"array": arrays.put(_unhex(v), dtype)} for name, v in rec["inputs"].items()},
                              "params": {k: arrays.value(tuple(v) if isinstance(v, list) else v, dtype) for k, v in rec.get("params", {}).items()},
                              "forward": arrays.put(_unhex(rec["torch"]), dtype)})
    data = {"format": FORMAT, "version": VERSION, "machine": dict(raw.get("machine", {})), "cells": cells, "examples": None,
            "note": "converted from a raw capture (byhand-raw-capture-1); its probe answers are inferred from what it shows"}
    data["probes"] = _inferred_probes(data, arrays)
    return data, arrays


def _inferred_probes(data: dict[str, Any], arrays: Arrays) -> dict[str, dict[str, dict[str, bool]]]:
    seen: set[tuple[str, str, str, str]] = set()  # (quirk, op, phase, dtype) with an element only it accounts for
    with departures.forced(*(q.id for q in departures.QUIRKS)):
        for cell_id, records in judged({**data, "probes": {}}, arrays):
            cell = data["cells"][cell_id]
            seen |= {(quirk, cell["op"], r.context.phase, cell["dtype"]) for r in records or () for quirk, _ in r.deviations}  # a capture has no base

    def shown(quirk: str, question: tuple[tuple[str, str], ...]) -> bool:
        return any(q == quirk and all({"op": op, "phase": ph, "dtype": dt}[axis] == value for axis, value in question) for q, op, ph, dt in seen)

    return {q.id: {"cpu": {departures.key_text(question): shown(q.id, question) for question in q.probe_keys()}}
            for q in departures.QUIRKS if "cpu" in q.devices}
