"""``byhand record`` and ``byhand judge``: torch's numbers from one machine, judged on any other."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from checks import matrix, recording
from checks.baseline import write_atomically


def add_parsers(commands: argparse._SubParsersAction) -> None:
    from checks.cli import add_selection

    r = commands.add_parser("record", help="record torch's exact outputs and gradients of every cell here, to judge anywhere later")
    r.add_argument("file", help="the recording to write (.npz)")
    add_selection(r)
    r.add_argument("--examples", type=int, default=20, help="verify's draws per cell (default 20, as byhand verify)")
    r.add_argument("--no-large", action="store_true", help="leave out each cell's large strided extremal case")
    r.add_argument("--from-capture", metavar="RAW", help="convert a raw capture (byhand-raw-capture-1 JSON) instead of recording here")
    r.add_argument("--threads", type=int, default=None, help="torch's intra-op thread count for this run")
    r.add_argument("--no-mkldnn", action="store_true", help="run with torch.backends.mkldnn.enabled = False")
    r.add_argument("--base", metavar="FILE", help="keep only the arrays that differ from FILE, a recording of the same draws beside this one")
    r.add_argument("--matrix", action="store_true", help="FILE is a folder: one recording per CPU configuration this machine can stand in "
                   "for (as verify --matrix), each in a fresh process")
    r.set_defaults(run=cmd_record)
    j = commands.add_parser("judge", help="judge recorded outputs against today's references, as on the machines that recorded them")
    j.add_argument("files", nargs="+", help="recordings (.npz) or raw captures (.json)")
    j.add_argument("--json", metavar="FILE", help="also write the verdicts as JSON")
    j.set_defaults(run=cmd_judge)


def cmd_record(args: argparse.Namespace) -> int:
    from checks.cli import _apply_settings, _console, _error

    console = _console()
    if args.matrix:
        return _record_matrix(console, args)
    _apply_settings(args)
    started = time.perf_counter()
    try:
        if args.from_capture:
            data, arrays = recording.load(args.from_capture)
        else:
            cells = matrix.cells(args.device, args.dtype, args.ops)
            data, arrays = recording.record(cells, examples=args.examples, large=not args.no_large)
    except ValueError as exc:
        _error(console, "record", exc)
        return 2
    size = recording.write(args.file, data, arrays, base=args.base)
    cases = sum(len(c.get("cases", [])) for c in data["cells"].values())
    console.print(f"wrote {args.file}: {len(data['cells'])} cells, {cases} cases, {size / 1e6:.1f} MB, in {time.perf_counter() - started:.1f} s",
                  highlight=False, soft_wrap=True)
    return 0


def _record_matrix(console, args: argparse.Namespace) -> int:
    """One recording per configuration of checks.envmatrix, named after it, in the folder FILE."""
    import os
    import re
    import subprocess
    import sys

    from checks import envmatrix

    folder = Path(args.file)
    folder.mkdir(parents=True, exist_ok=True)
    passed = ["--examples", str(args.examples), "--device", args.device, "--dtype", args.dtype, "--ops", args.ops] + (["--no-large"] if args.no_large else [])
    failed, base = 0, None
    for config in envmatrix.CONFIGS:
        reason = envmatrix.unsupported(config)
        if reason:
            console.print(f"skipped {config.name}: {reason}", highlight=False)
            continue
        target = folder / (re.sub(r"[^A-Za-z0-9]+", "-", config.name).strip("-").lower() + ".npz")
        against = ["--base", str(base)] if base else []  # the first (native) holds every array; the others what differs from it
        done = subprocess.run([sys.executable, "-m", "checks.cli", "record", str(target), *config.args, *passed, *against],
                              env={**os.environ, **config.env}, capture_output=True, text=True)
        failed += done.returncode != 0
        base = base or (target if done.returncode == 0 else None)
        console.print(f"{config.name}: {(done.stdout + done.stderr).strip()}", highlight=False, soft_wrap=True)
    return 1 if failed else 0


def setting(machine: dict) -> str:
    """The configuration a recording ran under, in a few words."""
    knobs = machine.get("knobs", {})
    env = dict(knobs.get("env", {}))
    for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA"):  # a raw capture names them at the top level
        if machine.get(name) not in (None, "native"):
            env.setdefault(name, machine[name])
    words = [f"{k}={v}" for k, v in sorted(env.items()) if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")]
    if knobs.get("mkldnn_enabled", machine.get("mkldnn", True)) is False:
        words.append("mkldnn off")
    words.append(f"{machine.get('threads', '?')} threads")
    return ", ".join(words) if words else "native"


def cmd_judge(args: argparse.Namespace) -> int:
    from checks.cli import _console, _error

    console = _console()
    verdicts = []
    started = time.perf_counter()
    for path in args.files:
        try:
            data, arrays = recording.load(path)
        except recording.RecordingError as exc:
            _error(console, "judge", exc)
            return 2
        verdicts.append(recording.judge(data, arrays, source=path))
    table = Table(title="byhand judge: recorded torch outputs against today's references, as on each machine")
    for column in ("recording", "CPU", "features", "torch", "setting", "cells", "cases", "known deviations", "failed", "result"):
        table.add_column(column, overflow="fold")
    for v in verdicts:
        m = v.machine
        known = ", ".join(f"{q} ×{n}" for q, n in sorted(v.deviations.items())) or "none"
        result = "[green]pass[/]" if v.passed else "[bold red]FAIL[/]"
        table.add_row(escape(Path(v.source).name), escape(str(m.get("cpu_model", "?"))), ", ".join(m.get("cpu_features", [])), str(m.get("torch", "?")),
                      escape(setting(m)), str(v.cells), str(v.cases) + (f" (+{v.inherited} as its base)" if v.inherited else "") + (f" ({v.unreproducible} not reproducible)" if v.unreproducible else ""),
                      known, str(len(v.failures) + len(v.errors)), result)
    console.print(table)
    for v in verdicts:
        for failure in v.failures:
            console.print(f"[bold red]FAIL[/] {escape(v.source)}\n{escape(failure.message())}", highlight=False)
        for error in v.errors:
            console.print(f"[bold red]ERROR[/] {escape(v.source)}: {escape(error)}", highlight=False)
        if v.unknown_ops:
            console.print(f"{escape(v.source)}: ops this byhand does not know, not judged: {', '.join(v.unknown_ops)}", highlight=False)
        if v.unreproducible:
            console.print(f"{escape(v.source)}: {v.unreproducible} large cases not judged: this numpy draws other inputs from their recipes "
                          "than the recording's (their hashes differ)", highlight=False)
    failed = [v for v in verdicts if not v.passed]
    console.print(f"{len(verdicts)} recordings, {sum(v.cases for v in verdicts)} cases, {len(failed)} failed, in {time.perf_counter() - started:.1f} s")
    if args.json:
        payload = [{"source": v.source, "machine": v.machine, "setting": setting(v.machine), "cells": v.cells, "cases": v.cases,
                    "unreproducible": v.unreproducible, "known_deviations": v.deviations, "passed": v.passed,
                    "failures": [f.to_dict() for f in v.failures], "errors": v.errors} for v in verdicts]
        write_atomically(args.json, json.dumps(payload, indent=2, default=str))
    return 1 if failed else 0
