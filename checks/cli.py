"""The ``byhand`` command.

- ``byhand verify`` runs the registry matrix (op × device × dtype) outside pytest, shows progress,
  prints a table of worst errors against the tolerance, optionally writes JSON, and exits 1 on any
  failure (``--impl`` checks a learner's own module instead);
- ``byhand derive OP`` prints an op's derivation and its symbolic proof;
- ``byhand report`` writes the derivations and the measured agreement as HTML, Markdown, JSON, LaTeX;
- ``byhand baseline save|compare`` records what this torch computes and sorts what moved since;
- ``byhand faults`` injects the fault catalogue into torch and prints the kill rate;
- ``byhand record FILE`` keeps torch's exact numbers of every cell here, and ``byhand judge FILE...``
  judges recorded numbers, from any machine, against today's references (checks/cli_recording.py).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from checks import baseline, departures, devices, environment, learner, matrix, modes, registry
from checks.learner.parallel import Checks
from checks.verify import CellResult, verify, verify_cell

JSON_SCHEMA_VERSION = 1
# byhand verify's default processes: one per core, but each starts by importing torch (about 3 s on
# a slow machine), so beyond a few the registry's 137 CPU cells gain less than the imports cost.
MAX_JOBS = 4


def _fmt_ulp(result: CellResult, phase_prefix: str | tuple[str, ...]) -> str:
    records = [r for phase, r in result.worst.items() if phase.startswith(phase_prefix)]
    if not records:
        return "—"
    worst = max(records, key=lambda r: r.max_ulp_err)
    return f"{worst.max_ulp_err:.2f} / {worst.k:g}"


DERIVATIVES = ("grad", "jvp", "hvp", "d3")  # the phases of a gradient and of the other modes' derivatives


def _table(results: list[CellResult]) -> Table:
    table = Table(title="byhand verify: worst error in ULPs (floored) / tolerance k")
    table.add_column("op", no_wrap=True)
    table.add_column("device", no_wrap=True)
    table.add_column("dtype", no_wrap=True)
    table.add_column("mode", no_wrap=True)
    for column in ("examples", "forward", "gradient", "result", "known deviations"):
        table.add_column(column, justify="right" if column in ("examples", "forward", "gradient") else "left")
    for r in results:
        if r.skipped:
            status = f"[yellow]skipped[/]: {r.skipped}"
        elif r.passed:
            status = "[green]pass[/]"
        else:
            status = "[bold red]FAIL[/]"
        known = ", ".join(f"{quirk} ×{count}" for quirk, count in sorted(r.deviations.items()))
        table.add_row(r.cell.spec.name, r.cell.device, r.cell.dtype, r.cell.mode, str(r.examples), _fmt_ulp(r, "forward"), _fmt_ulp(r, DERIVATIVES), status, known)
    return table


def _header(console: Console, jobs: int = 1, modes: tuple[str, ...] = ("reverse",)) -> None:
    """The machine, the quirks whose probes show here, and any setting that changes numerics."""
    import torch

    features = ", ".join(environment.cpu_features()) or "none of note"
    processes = f"{jobs} processes × " if jobs > 1 else ""
    threads = torch.get_num_threads()
    console.print(f"byhand verify: torch {torch.__version__} on {environment.cpu_model()} ({features}); "
                  f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {processes}{threads} thread{'s' * (threads != 1)}", highlight=False, soft_wrap=True)
    shown = departures.active_here(devices.available(), modes)

    def where(d: departures.Departure, device: str) -> str:
        paths = [text.replace("op=", "").replace("phase=", "").replace("dtype=", "") for text in departures.shown_where(d, device) if text]
        return f"{device}: {', '.join(paths)}" if paths else device

    console.print("quirks that show here (checks/departures): " + (", ".join(f"{d.id} ({where(d, device)})" for d, device in shown) if shown else "none"),
                  highlight=False, soft_wrap=True)
    settings = environment.settings_on()
    if settings:
        console.print("[yellow]settings that change numerics are on:[/] " + escape("; ".join(settings)), highlight=False, soft_wrap=True)


def _report_failures(console: Console, results: list[CellResult]) -> None:
    for r in results:
        if r.failure is not None:
            console.print(f"[bold red]FAIL[/] {r.cell.id}\n{r.failure.message()}", highlight=False)
        if r.error is not None:
            console.print(f"[bold red]ERROR[/] {r.cell.id}: {r.error}", highlight=False)


def _error(console: Console, command: str, message: object) -> None:
    """An error line as written: no markup, no hard wrap (a path must stay copyable)."""
    console.print(f"byhand {command}: {escape(str(message))}", soft_wrap=True, highlight=False)


def _progress(console: Console, quiet: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True, disable=quiet)


def _console() -> Console:
    # A terminal sets its own width; piped into a file or a CI log, 80 columns would wrap the table.
    return Console() if sys.stdout.isatty() else Console(width=120)


MARK_STYLE = {learner.AGREES: "green", learner.WRONG: "bold red", learner.FRAGILE: "yellow", learner.NOT_CHECKED: "dim"}


def _given(args: argparse.Namespace, option: str) -> bool:
    """Whether a list option (--device, --dtype, --ops) names something rather than everything."""
    return getattr(args, option) not in matrix.EVERYTHING


def _impl_refusal(args: argparse.Namespace) -> str | None:
    for option in ("device", "dtype"):
        if _given(args, option):
            return (f"--{option} does not apply with --impl: your functions are checked on the CPU, the course stage against "
                    "torch in float32 and the edge stages in float64")
    if args.matrix or args.accuracy:
        return "--matrix and --accuracy check byhand's own references; leave out --impl"
    if args.modes != "reverse":
        return "--modes checks torch's ways of differentiating; leave out --impl (a learner's module is checked in reverse mode)"
    return None


def cmd_verify_impl(args: argparse.Namespace) -> int:
    """A learner's own functions against torch: one verdict per function, in plain words."""
    console = _console()
    refusal = _impl_refusal(args)
    try:
        if refusal:
            raise ValueError(refusal)
        module = learner.load(args.impl)
        chosen = matrix.parse_list(args.ops, tuple(registry.BY_NAME), "--ops")
    except ValueError as exc:
        _error(console, "verify", exc)
        return 2
    found = [(spec, name) for spec, name in learner.functions(module) if chosen is None or spec.name in chosen]
    read = learner.names(module)
    if not found:
        hint = "".join(f" `{n}` is not an op byhand knows: did you mean `{op}`?" for n, op in read.misspelled.items())
        _error(console, "verify", f"{args.impl} defines none of byhand's function names{' among --ops' if chosen else ''}.{hint} "
                                  f"byhand knows: {', '.join(learner.known_names())}")
        return 2
    for line in read.lines():
        console.print(f"note: {escape(line)}", highlight=False, soft_wrap=True)
    verdicts = []
    with _progress(console, args.quiet) as progress:
        task = progress.add_task("checking", total=len(found))
        checks = Checks(module, found, examples=args.examples or learner.DEFAULT_EXAMPLES, verbose=args.verbose, jobs=args.jobs)
        for verdict in checks:
            verdicts.append(verdict)
            progress.update(task, advance=1, description=f"checked {verdict.function}")
    for v in verdicts:
        console.print(f"[{MARK_STYLE[v.status]}]{v.mark}[/] {escape(v.explanation)}", highlight=False, soft_wrap=True)
        for note in v.notes:
            console.print(f"  note: {escape(note)}", highlight=False, soft_wrap=True)
        for case in v.cases if args.verbose else ():
            console.print(f"    tried: {case}", highlight=False)
    counts = {status: sum(v.status == status for v in verdicts) for status in MARK_STYLE}
    console.print(f"{len(verdicts)} functions checked: {counts[learner.AGREES]} agree, {counts[learner.WRONG]} wrong, "
                  f"{counts[learner.FRAGILE]} fragile at an edge" + (" (failing: --strict)" if args.strict else ""))
    if args.json:
        payload = {"schema_version": JSON_SCHEMA_VERSION, "module": args.impl,
                   "verdicts": [{"function": v.function, "status": v.status, "examples": v.examples, "explanation": v.explanation, "notes": list(v.notes)}
                                for v in verdicts]}
        baseline.write_atomically(args.json, json.dumps(payload, indent=2))
    return 1 if any(v.failed(args.strict) for v in verdicts) else 0


def _accuracy_table(console: Console, cells: list, examples: int) -> list:
    """Worst errors of torch and of the reference against the 50-digit oracle, per op and dtype."""
    from checks.accuracy import measure

    chosen = [c for c in cells if c.spec.differentiable and c.device == "cpu"]
    results = [measure(c.spec, c.dtype, examples=examples) for c in chosen]
    table = Table(title="accuracy against the 50-digit truth: worst ULPs of the dtype (floored at the op's scale; pure)")
    for column in ("op", "dtype", "cases", "torch fwd", "torch grad", "reference fwd", "reference grad", "reference (float64 ULPs)"):
        table.add_column(column, no_wrap=column in ("op", "dtype"))
    for a in results:
        t, r = a.torch, a.reference
        table.add_row(a.op, a.dtype, str(a.cases), f"{t['forward'].floored:.2f}; {t['forward'].pure:.3g}", f"{t['gradient'].floored:.2f}; {t['gradient'].pure:.3g}",
                      f"{r['forward'].floored:.2f}", f"{r['gradient'].floored:.2f}", f"{a.reference_f64['forward'].floored:.2f} / {a.reference_f64['gradient'].floored:.2f}")
    console.print(table)
    return results


def _apply_settings(args: argparse.Namespace) -> None:
    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if getattr(args, "no_mkldnn", False):
        torch.backends.mkldnn.enabled = False


def cmd_verify(args: argparse.Namespace) -> int:
    import torch

    cores = torch.get_num_threads()  # torch's default: the cores it may use
    _apply_settings(args)
    if args.impl:
        return cmd_verify_impl(args)
    args.examples = args.examples or 20
    if args.matrix:
        return cmd_verify_matrix(args)
    console = _console()
    try:
        cells = matrix.cells(args.device, args.dtype, args.ops, modes=modes.parse(args.modes))
    except ValueError as exc:
        _error(console, "verify", exc)
        return 2
    # By default the cores are shared out: as many processes as fit at --threads each (1 unless given),
    # no more than there are cells.
    args.jobs = min(args.jobs or max(1, min(cores // (args.threads or 1), MAX_JOBS)), max(1, len(cells)))
    if not args.threads:  # each process its share: small tensors gain nothing from threads that contend
        torch.set_num_threads(max(1, cores // args.jobs))
    _header(console, args.jobs, tuple(sorted({c.mode for c in cells})) or ("reverse",))
    started = time.perf_counter()
    with _progress(console, args.quiet) as progress:
        task = progress.add_task("verifying", total=len(cells))

        def advance(result: CellResult) -> None:
            progress.update(task, advance=1, description=f"verifying {result.cell.id}")

        mode_examples = args.mode_examples or args.examples
        results = verify(cells, examples=lambda cell: args.examples if cell.mode == "reverse" else mode_examples, on_cell=advance, jobs=args.jobs)
    elapsed = time.perf_counter() - started
    console.print(_table(results))
    _report_failures(console, results)
    accuracy = _accuracy_table(console, cells, args.examples) if args.accuracy else None
    failed = [r for r in results if not r.passed]
    checked = sum(r.examples for r in results)
    console.print(f"{len(cells)} cells, {checked} examples, {len(failed)} failed, in {elapsed:.1f} s")
    if args.json:
        payload = {
            "schema_version": JSON_SCHEMA_VERSION,
            "environment": baseline.environment(),
            "examples_per_cell": args.examples,
            "elapsed_s": round(elapsed, 3),
            "passed": not failed,
            "cells": [r.to_dict() for r in results],
        }
        if accuracy is not None:
            payload["accuracy"] = [a.to_dict() for a in accuracy]
        baseline.write_atomically(args.json, json.dumps(payload, indent=2))
        console.print(f"wrote {args.json}")
    return 1 if failed else 0


def _passed_on(args: argparse.Namespace) -> list[str]:
    """The verify options a matrix run passes on to each configuration."""
    passed = ["--examples", str(args.examples)] + (["--modes", args.modes] if args.modes != "reverse" else [])
    for option in ("device", "dtype", "ops"):
        if _given(args, option):
            passed += [f"--{option}", getattr(args, option)]
    return passed


def cmd_verify_matrix(args: argparse.Namespace) -> int:
    """byhand verify under every CPU configuration this machine can stand in for."""
    from checks import envmatrix

    console = _console()
    table = Table(title="byhand verify --matrix: one CPU standing in for several")
    for column in ("configuration", "capability", "quirks that show", "cells", "known deviations", "failed", "time", "result"):
        table.add_column(column, no_wrap=column in ("configuration", "result"))
    outcomes = []
    with _progress(console, args.quiet) as progress:
        task = progress.add_task("configurations", total=len(envmatrix.CONFIGS))
        for config in envmatrix.CONFIGS:
            progress.update(task, description=f"verify under {config.name}")
            outcomes.append(envmatrix.run(config, _passed_on(args)))
            progress.update(task, advance=1)
    for o in outcomes:
        if o.skipped:
            table.add_row(o.config.name, "", "", "", "", "", "", "[yellow]skipped[/] (below)")
            continue
        env, cells = o.data.get("environment", {}), o.data.get("cells", [])
        known = sum(d["elements"] for c in cells for d in c.get("known_deviations", []))
        failed = [c for c in cells if c["status"] == "fail"]
        result = "[green]pass[/]" if o.passed else "[bold red]FAIL[/]"
        table.add_row(o.config.name, str(env.get("cpu_capability", "?")), str(len(env.get("quirks", []))), str(len(cells)), str(known),
                      str(len(failed)), f"{o.data.get('elapsed_s', 0):.1f} s", result)
    console.print(table)
    shown: dict[tuple[str, ...], list[str]] = {}
    for o in outcomes:
        if not o.skipped:
            shown.setdefault(tuple(o.data.get("environment", {}).get("quirks", [])), []).append(o.config.name)
    for quirks, names in shown.items():
        where = "every configuration run" if len(shown) == 1 else ", ".join(names)
        console.print(f"quirks that show under {where}: {', '.join(quirks) or 'none'}", highlight=False, soft_wrap=True)
    for o in outcomes:
        if o.skipped:
            console.print(f"skipped {o.config.name}: {o.skipped}", highlight=False)
        elif not o.passed:
            console.print(f"[bold red]FAIL[/] under {o.config.name} (exit {o.returncode}):\n{escape(o.output.strip()[-3000:])}", highlight=False)
    failed = [o for o in outcomes if not o.passed]
    ran = sum(o.skipped is None for o in outcomes)
    console.print(f"{ran} configurations run, {len(outcomes) - ran} skipped, {len(failed)} failed")
    if args.json:
        payload = {"schema_version": JSON_SCHEMA_VERSION, "passed": not failed,
                   "configurations": [{"name": o.config.name, "env": o.config.env, "args": list(o.config.args), "skipped": o.skipped,
                                       "passed": o.passed, "verify": o.data} for o in outcomes]}
        baseline.write_atomically(args.json, json.dumps(payload, indent=2))
        console.print(f"wrote {args.json}")
    return 1 if failed else 0


PRINTABLE_OPS = 5000  # sympy operations in all the hand formulas together: sdpa 1,336, the attention layer 12,600


def cmd_derive(args: argparse.Namespace) -> int:
    """Print an op's derivation: its steps, sympy's derivative, the hand formula and the proof."""
    import sympy

    from reference import symbolic

    try:
        derivation = symbolic.derive(args.op, args.size)
    except ValueError as exc:
        print(f"byhand derive: {exc}")
        return 2
    show = sympy.latex if args.latex else (lambda e: sympy.pretty(e, use_unicode=True))
    print(f"{derivation.op}" + (f" (size {derivation.size})" if derivation.size else ""))
    for step in derivation.steps:
        print(f"\n{step.title}:\n{show(step.expr)}")
    if not derivation.differentiable:
        print(f"\n{derivation.note}")
        return 0
    if sum(sympy.count_ops(hand) for hand in derivation.hand) < PRINTABLE_OPS:
        for variable, derived, hand in zip(derivation.wrt, derivation.derived, derivation.hand):
            shown = sympy.simplify(derived) if derivation.simplify else derived
            print(f"\nd/d{variable} by sympy.diff:\n{show(shown)}\nhand formula (as {derivation.op}_backward computes it):\n{show(hand)}")
    else:  # a layer: pages of exponentials per partial derivative, which simplify cannot shorten
        print(f"\n{len(derivation.wrt)} partial derivatives, with respect to {', '.join(map(str, derivation.wrt))}: each hand formula is "
              f"{derivation.op}_backward's steps above written out, and too long to print")
    proof = derivation.prove()
    print(f"\nproof: {'PROVEN' if proof.proven else 'NOT PROVEN'} by {proof.method} ({proof.seconds:.2f} s)")
    if derivation.note:
        print(f"note: {derivation.note}")
    return 0 if proof.proven else 1


def cmd_baseline(args: argparse.Namespace) -> int:
    console = _console()
    if args.action == "save":
        try:
            cells = matrix.cells(args.device, args.dtype, args.ops)
        except ValueError as exc:
            _error(console, "baseline", exc)
            return 2
        data = baseline.save(args.file, cells, cases=args.cases)
        console.print(f"saved {sum(len(c['cases']) for c in data['cells'].values())} cases of {len(data['cells'])} cells to {args.file}")
        return 0
    try:
        data = baseline.load(args.file)
    except baseline.BaselineError as exc:
        _error(console, "baseline", exc)
        return 2
    result = baseline.compare_with(data)
    table = Table(title=f"byhand baseline compare: {result.cases} recorded cases re-run")
    table.add_column("kind")
    table.add_column("count", justify="right")
    table.add_column("example")
    for kind in baseline.KINDS:
        found = [f for f in result.findings if f.kind == kind]
        style = "bold red" if kind in baseline.FAILING and found else ""
        table.add_row(f"[{style}]{kind}[/]" if style else kind, str(len(found)), escape(found[0].detail) if found else "")
    console.print(table)
    for key, (then, now) in result.environment.items():
        console.print(f"environment: {key} changed: {baseline._short(then)} -> {baseline._short(now)}", highlight=False)
    if result.count("bitwise"):
        console.print(f"bitwise changes within tolerance; likely cause: {result.likely_cause()}")
    if args.markdown:
        Path(args.markdown).write_text(baseline.markdown(result))
    if args.json:
        payload = {"failed": result.failed, "cases": result.cases, "environment": {k: list(v) for k, v in result.environment.items()},
                   "findings": [vars(f) for f in result.findings]}
        Path(args.json).write_text(json.dumps(payload, indent=1, default=str))
    return 1 if result.failed else 0


def _killed_by_verify(fault_name: str | None, cells: list, examples: int) -> str | None:
    """A fault that names test files (the optimizers', outside the registry: no cell can catch them)
    is caught by their first failing test; any other by the first cell whose verification fails
    with it active. None: survived."""
    from checks import faults

    if fault_name is None:
        clean = next((c.id for c in cells if not verify_cell(c, examples=examples).passed), None)
        return clean or _killed_by_suite(None, sorted({t for f in faults.CATALOGUE for t in f.tests}))
    fault = faults.get(fault_name)
    if fault.tests:
        return _killed_by_suite(fault_name, list(fault.tests))
    with fault.active():
        for cell in fault.judges(cells):
            if not verify_cell(cell, examples=examples).passed:
                return cell.id
    return None


def _killed_by_suite(fault_name: str | None, paths: list[str] | None = None) -> str | None:
    """Run the pytest suite (or ``paths``) with the fault, stopping at the first failure."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *(paths or [])] + (["--fault", fault_name] if fault_name else [])
    result = subprocess.run(command, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    return None if result.returncode == 0 else (failed[0].split(" - ")[0].removeprefix("FAILED ") if failed else f"exit {result.returncode}")


def cmd_faults(args: argparse.Namespace) -> int:
    """Inject each fault of the catalogue and check that byhand notices; print the kill rate."""
    from checks import faults

    console = _console()
    chosen = faults.CATALOGUE if args.names == "all" else [faults.get(n.strip()) for n in args.names.split(",")]
    cells = matrix.cells()
    killed_by = (lambda name: _killed_by_suite(name)) if args.suite else (lambda name: _killed_by_verify(name, cells, args.examples))
    clean = killed_by(None)
    if clean is not None:
        console.print(f"[bold red]the unfaulted run fails already ({clean}): fix that first[/]")
        return 1
    table = Table(title=f"byhand faults: each injected into torch, then {'the pytest suite' if args.suite else 'byhand verify'} (the unfaulted run passes)")
    for column in ("fault", "what it breaks", "caught by"):
        table.add_column(column, no_wrap=column == "fault")
    survivors = []
    for fault in chosen:
        caught = killed_by(fault.name)
        if caught is None:
            survivors.append(fault.name)
        table.add_row(fault.name, fault.description, escape(caught) if caught else "[bold red]SURVIVED[/]")
    console.print(table)
    console.print(f"kill rate: {len(chosen) - len(survivors)}/{len(chosen)}" + (f"; survived: {', '.join(survivors)}" if survivors else ""))
    return 1 if survivors else 0


def cmd_report(args: argparse.Namespace) -> int:
    """Verify, derive, plot and measure, then write the report files atomically."""
    from checks import report
    from checks.report import render

    console = _console()
    try:
        cells = matrix.cells(args.device, args.dtype, args.ops)
        formats = render.parse_formats(args.format)
        render.check_target(Path(args.out).absolute())
    except ValueError as exc:
        _error(console, "report", exc)
        return 2
    with _progress(console, args.quiet) as progress:
        task = progress.add_task("building the report", total=report.total_steps(cells))
        built = report.build(cells, examples=args.examples, magnitudes=numpy.logspace(-3, 3, args.sweep_points),
                             progress=lambda description: progress.update(task, advance=1, description=description))
    written = render.write(built, args.out, formats)
    summary = built.data["summary"]
    verdict = "[green]all checks pass[/]" if built.passed else (f"[bold red]FAILED[/]: {summary['cells_failed']} cells, {len(summary['unproven'])} proofs, "
                                                                f"{len(summary['network_failures'])} network links")
    console.print(f"{verdict}; {summary['ops']} ops, {summary['cells']} cells, {summary['examples']} examples, {len(built.data['deviations'])} deviations, in {summary['elapsed_s']:.1f} s")
    if summary["sweep_failures"]:
        swept = ", ".join(f"{s['op']} {s['device']} {s['dtype']}" for s in summary["sweep_failures"])
        console.print(f"[yellow]beyond the policy in the magnitude sweep[/] (informational, see the report): {escape(swept)}")
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    return 0 if built.passed else 1


def add_selection(parser: argparse.ArgumentParser) -> None:
    """--device, --dtype and --ops: which cells of the registry matrix a command runs."""
    parser.add_argument("--device", default="auto", help="comma-separated devices (cpu,cuda,mps); default: all found here")
    parser.add_argument("--dtype", default="all", help="comma-separated float dtypes; default: all four")
    parser.add_argument("--ops", default="all", help="comma-separated op names; default: the whole registry")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="byhand", description="Prove the math you write by hand is the math PyTorch runs.")
    commands = parser.add_subparsers(dest="command", required=True)
    v = commands.add_parser("verify", help="check every registry op against torch on every device and dtype")
    add_selection(v)
    v.add_argument("--examples", type=int, default=None, help="hypothesis examples per cell (default 20); with --impl, per function "
                   "in the course stage and in each of the three edge stages (default 60)")
    v.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.add_argument("--accuracy", action="store_true", help="also measure torch and the reference against the 50-digit mpmath truth")
    v.add_argument("--impl", metavar="MODULE", help="check your own numpy functions (a .py file or module name) against torch instead. "
                   "Name them as torch does (softmax(input, dim), mse_loss(input, target), ...); a gradient is <name>_backward(grad_output, "
                   "<the same arguments>), and linear_backward returns the tuple (grad_input, grad_weight, grad_bias). "
                   "Verdicts: ✓ agrees, ✗ wrong on the course's inputs (exit 1), ⚠ right but fragile at an edge")
    v.add_argument("--strict", action="store_true", help="with --impl: ⚠ (fragile at an edge) fails too")
    v.add_argument("--verbose", action="store_true", help="with --impl: list the cases tried")
    v.add_argument("--threads", type=int, default=None, help="torch's intra-op thread count for this run")
    v.add_argument("--jobs", type=int, default=None, help="processes verifying cells side by side (default: as many as the cores "
                   "hold at --threads each, at most 4; each runs torch on its share of the cores unless --threads is given); "
                   "with --impl, processes checking functions side by side (default: one per core)")
    v.add_argument("--modes", default="reverse", help="ways torch differentiates, each a cell of its own (comma-separated, "
                   "or all): " + ", ".join(modes.ALL) + "; default reverse. reverse (autograd) against the hand backward, the "
                   "first-order forward modes against the hand JVP, second and third orders against the 50-digit oracle's directional derivatives")
    v.add_argument("--mode-examples", type=int, default=None, help="hypothesis examples per cell of a mode other than reverse "
                   "(default: --examples; a mode's cell costs more: torch.func's first call per op and dtype, the oracle's 90 digits)")
    v.add_argument("--no-mkldnn", action="store_true", help="run with torch.backends.mkldnn.enabled = False (native GEMMs)")
    v.add_argument("--matrix", action="store_true", help="run verify under every CPU configuration this machine can emulate "
                   "(ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, mkldnn off, 1/2/4 threads), each in a fresh process")
    v.set_defaults(run=cmd_verify)
    d = commands.add_parser("derive", help="print an op's derivation and its symbolic proof")
    d.add_argument("op", help="a registry op, e.g. cross_entropy")
    d.add_argument("--latex", action="store_true", help="LaTeX instead of pretty-printed math")
    d.add_argument("--size", type=int, default=None, help="classes C (softmax, log_softmax, cross_entropy, nll_loss) or Linear in_features")
    d.set_defaults(run=cmd_derive)
    b = commands.add_parser("baseline", help="record what this torch computes, or compare with a recording")
    b.add_argument("action", choices=("save", "compare"))
    b.add_argument("file", help="the baseline JSON file")
    add_selection(b)
    b.add_argument("--cases", type=int, default=3, help="recipes recorded per cell (save)")
    b.add_argument("--json", metavar="FILE", help="compare: write the findings as JSON")
    b.add_argument("--markdown", metavar="FILE", help="compare: write the findings as Markdown")
    b.set_defaults(run=cmd_baseline)
    r = commands.add_parser("report", help="write the derivations and measured agreement as HTML, Markdown, JSON and LaTeX")
    r.add_argument("--out", required=True, metavar="DIR", help="folder to write (created; an earlier byhand report there is replaced)")
    r.add_argument("--format", default="html,md,json,tex", help="comma-separated: html, md, json, tex (default: all four)")
    add_selection(r)
    r.add_argument("--examples", type=int, default=20, help="hypothesis examples per cell (default 20)")
    r.add_argument("--sweep-points", type=int, default=19, help="input magnitudes (1e-3 to 1e3) in the error plots (default 19, three per decade)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(run=cmd_report)
    f = commands.add_parser("faults", help="inject realistic torch faults and check that byhand catches every one")
    f.add_argument("--names", default="all", help="comma-separated fault names (default: the whole catalogue)")
    f.add_argument("--examples", type=int, default=15, help="hypothesis examples per cell for the verify run")
    f.add_argument("--suite", action="store_true", help="run the whole pytest suite per fault instead of byhand verify (slow)")
    f.set_defaults(run=cmd_faults)
    from checks import cli_recording

    cli_recording.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "examples", None) is not None and args.examples < 1:
        build_parser().error("--examples must be at least 1")
    if getattr(args, "threads", None) is not None and args.threads < 1:
        build_parser().error("--threads must be at least 1")
    if getattr(args, "jobs", None) is not None and args.jobs < 1:
        build_parser().error("--jobs must be at least 1")
    if getattr(args, "sweep_points", 2) < 2:
        build_parser().error("--sweep-points must be at least 2")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
