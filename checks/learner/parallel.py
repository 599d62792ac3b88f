"""A module's functions checked side by side, one worker process per core.

Each function's check is seeded by its name alone, so a verdict is the same in a worker as in
process (``byhand verify --impl`` and ``pytest --impl`` agree, whatever the core count). Workers
are forked (Linux), so they share the learner's module as it was loaded, with no re-import of
torch; a forked worker runs torch on one thread, because GNU OpenMP hangs a child whose parent
had its thread pool running (seen here: a 2-thread matmul in the parent, then one in the child).
Elsewhere, with one core or one function, the checks run in process, one after another.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys
from concurrent.futures.process import BrokenProcessPool
from types import ModuleType
from typing import Iterator

from checks.spec import OpSpec

# The modules being checked, by key, read by the forked workers (a module does not pickle).
_MODULES: dict[int, ModuleType] = {}


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _worker_start() -> None:
    import torch

    torch.set_num_threads(1)


def _check_in_worker(key: int, op: str, function: str, examples: int, verbose: bool):
    from checks import learner
    from checks.registry import get

    return learner.check(_MODULES[key], get(op), function, examples=examples, verbose=verbose)


class Checks:
    """The verdicts on ``found`` (spec, function name) of ``module``, computed in ``jobs`` workers
    (default: one per core, at most one per function) and read in order or by name."""

    def __init__(self, module: ModuleType, found: list[tuple[OpSpec, str]], *, examples: int, verbose: bool = False, jobs: int | None = None) -> None:
        if jobs is not None and jobs < 1:
            raise ValueError(f"jobs must be at least 1, not {jobs}")
        self.module, self.found, self.examples, self.verbose = module, list(found), examples, verbose
        wanted = min(jobs or cores(), len(self.found))
        self.jobs = wanted if sys.platform.startswith("linux") else 1
        self._futures: dict[str, concurrent.futures.Future] = {}
        self._pool = None
        if self.jobs > 1:
            key = id(self)
            _MODULES[key] = module
            self._pool = concurrent.futures.ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("fork"), initializer=_worker_start)
            self._futures = {name: self._pool.submit(_check_in_worker, key, spec.name, name, examples, verbose) for spec, name in self.found}

    def verdict(self, function: str):
        """The verdict on ``function``; in process if there are no workers, or if the worker
        checking it died (its check is then run here, as without workers)."""
        from checks import learner

        future = self._futures.get(function)
        if future is not None:
            try:
                return future.result()
            except BrokenProcessPool:
                pass
        spec = next(s for s, name in self.found if name == function)
        return learner.check(self.module, spec, function, examples=self.examples, verbose=self.verbose)

    def __iter__(self) -> Iterator:
        try:
            for _, name in self.found:
                yield self.verdict(name)
        finally:
            self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            _MODULES.pop(id(self), None)
