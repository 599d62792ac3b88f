"""Measure what the speed budget is about: the default `pytest` run (< 60 s on the 2-core machine),
`byhand verify` (< 15 s) and `byhand report` of the whole registry (< 60 s), and count the
hypothesis examples each checks.

    python benchmarks/suite_speed.py            # both
    python benchmarks/suite_speed.py --skip-pytest

Not a timed test: timings belong in a benchmark, correctness in the suite.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(command: list[str], env: dict[str, str]) -> tuple[str, str]:
    """Run ``command``; its wall time and CPU time (user + system, its worker processes included)
    as text, and its stdout. The CPU time moves less than the wall time on a host whose speed
    swings from run to run, and shows how close a run is to the floor of CPU time / cores."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return f"{elapsed:.1f} s wall ({cpu:.0f} s CPU)", result.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-pytest", action="store_true")
    parser.add_argument("--profile", default="default", help="hypothesis profile for the pytest run")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    print(f"machine: {os.cpu_count()} cores")
    if not args.skip_pytest:
        elapsed, out = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--hypothesis-profile={args.profile}", "--hypothesis-show-statistics"], env)
        examples = sum(int(n) for n in re.findall(r"- (\d+) passing", out))  # the main process' tests (not the worker's gradcheck)
        summary = out.strip().splitlines()[-1]
        print(f"pytest ({args.profile} profile): {elapsed}; {summary}; {examples} hypothesis examples")
    with tempfile.TemporaryDirectory() as tmp:
        out_json = Path(tmp) / "verify.json"
        elapsed, _ = run([sys.executable, "-m", "checks.cli", "verify", "--quiet", "--json", str(out_json)], env)
        payload = json.loads(out_json.read_text())
        examples = sum(c["examples"] for c in payload["cells"])
        print(f"byhand verify: {elapsed}; {len(payload['cells'])} cells, {examples} examples, passed={payload['passed']}")
        report_dir = Path(tmp) / "report"
        elapsed, _ = run([sys.executable, "-m", "checks.cli", "report", "--quiet", "--out", str(report_dir)], env)
        summary = json.loads((report_dir / "report.json").read_text())["summary"]
        size = (report_dir / "index.html").stat().st_size / 2**20
        print(f"byhand report: {elapsed}; {summary['ops']} ops, {summary['cells']} cells, {summary['examples']} examples, "
              f"passed={summary['passed']}; index.html {size:.1f} MiB")


if __name__ == "__main__":
    main()
