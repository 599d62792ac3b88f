"""Measure the learner's check where its budget is stated: a module of 8 functions checked by
`byhand verify --impl` in under 10 s on the 2-core machine (issue 22), and the slowest module of the
corpus (tests/learners/).

    python benchmarks/learner_speed.py               # textbook.py (8 functions) and the slowest modules
    python benchmarks/learner_speed.py --all         # every module of the corpus
    python benchmarks/learner_speed.py --jobs 1      # one process, for the floor of CPU time

Each command runs 3 times; the best and the median wall times are printed, with CPU time (the host's
speed swings from run to run; CPU time moves less). Not a timed test.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "learners"
DEFAULT = ("textbook.py", "course2_loops_pool.py", "course2_einsum_conv.py", "course2_loops_conv.py")


def timed(path: Path, jobs: int | None) -> tuple[float, float]:
    command = [sys.executable, "-m", "checks.cli", "verify", "--impl", str(path), "--quiet"] + (["--jobs", str(jobs)] if jobs else [])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, capture_output=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="every module of tests/learners/")
    parser.add_argument("--jobs", type=int, default=None, help="passed to byhand verify --impl")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    files = sorted(CORPUS.glob("*.py")) if args.all else [CORPUS / name for name in DEFAULT]
    for path in files:
        functions = sum(line.startswith("def ") for line in path.read_text().splitlines())
        runs = [timed(path, args.jobs) for _ in range(args.runs)]
        walls = sorted(w for w, _ in runs)
        print(f"{path.name:34s} {functions} functions  wall best {walls[0]:5.1f} s, median {statistics.median(walls):5.1f} s;"
              f"  CPU {statistics.median(c for _, c in runs):5.1f} s", flush=True)


if __name__ == "__main__":
    main()
