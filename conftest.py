"""pytest setup: hypothesis profiles, the --device/--dtype/--ops options, the version header, and
the registry × device × dtype parametrisation every matrix test uses."""
from __future__ import annotations

pytest_plugins = ["pytester"]  # tests/test_learner.py runs `pytest --impl` in a folder of its own

import multiprocessing
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import hypothesis
import numpy
import pytest
import sympy
import torch
from hypothesis import settings

from checks import devices, matrix, profiles
from checks.runner import unsupported

ROOT = Path(__file__).resolve().parent
# Small tensors gain nothing from torch's thread pool, and on a 2-core machine its spinning threads
# contend with the background checks (3.5 s of the suite's wall time). The suite runs torch on one
# thread; tests of multi-threaded kernels ask for the machine's threads (the `all_threads` fixture),
# and `byhand verify --matrix` checks 1, 2 and 4 threads.
MACHINE_THREADS = torch.get_num_threads()
torch.set_num_threads(1)
# The learners' corpus, the sympy proofs, gradcheck and the accuracy measurements run in a worker
# process beside the suite (the `beside` marker, below).

profiles.load()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("byhand")
    group.addoption("--device", default="auto", help="comma-separated devices (cpu,cuda,mps); default: all found here")
    group.addoption("--dtype", default="all", help="comma-separated float dtypes (float16,bfloat16,float32,float64)")
    group.addoption("--ops", default="all", help="comma-separated registry ops; default: all")
    group.addoption("--fault", default=None, help="run the whole suite with one fault of checks/faults.py injected into torch (it should fail)")
    try:  # declared by the pytest11 plugin (checks/pytest_plugin.py) where byhand is installed
        group.addoption("--impl", default=None, help="check your own module of functions (a file path or module name) against torch; runs only those checks")
    except ValueError:
        pass


_FAULT_CONTEXT = []


def pytest_sessionstart(session: pytest.Session) -> None:
    """--fault NAME: inject the fault into torch for the whole session (every worker too). The
    worker beside the suite starts now, so its imports overlap the collection."""
    name = session.config.getoption("--fault")
    if name:
        from checks import faults

        try:
            context = faults.get(name).active()
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        context.__enter__()
        _FAULT_CONTEXT.append(context)
    if all(Path(arg).is_dir() for arg in session.config.args):  # a whole-suite run: its beside jobs are sure to come
        _start_pool(session.config)


def pytest_sessionfinish(session: pytest.Session) -> None:
    while _FAULT_CONTEXT:
        _FAULT_CONTEXT.pop().__exit__(None, None, None)
    _stop_background()  # a background check whose test did not run is stopped
    if _POOL is not None:
        _POOL.shutdown(wait=True, cancel_futures=True)  # a job under way finishes; its pipes close cleanly


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"byhand: torch {torch.__version__}, numpy {numpy.__version__}, sympy {sympy.__version__}, hypothesis {hypothesis.__version__}",
        f"byhand: devices found: {devices.describe()}; CPU capability {torch.backends.cpu.get_cpu_capability()}; "
        f"torch on 1 thread ({MACHINE_THREADS} for the multi-threaded kernel tests)",
        f"byhand: hypothesis profile {settings.get_current_profile_name()!r}",
    ] + ([f"byhand: FAULT INJECTED: {config.getoption('--fault')} (this run should fail)"] if config.getoption("--fault") else [])


def _cells(config: pytest.Config) -> list[matrix.Cell]:
    try:
        return matrix.cells(config.getoption("--device"), config.getoption("--dtype"), config.getoption("--ops"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def _devices(config: pytest.Config) -> tuple[str, ...]:
    try:
        return matrix.parse_list(config.getoption("--device"), devices.DEVICES, "--device") or devices.available()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.fixture(autouse=True)
def _skip_absent_device(request: pytest.FixtureRequest) -> None:
    """A test parametrised over a device that is not here (named with --device) is skipped."""
    device = request.node.callspec.params.get("device") if hasattr(request.node, "callspec") else None
    reason = device and devices.unavailable_reason(device)
    if reason:
        pytest.skip(reason)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" in metafunc.fixturenames:
        found = _cells(metafunc.config)
        metafunc.parametrize("cell", found, ids=[c.id for c in found])
    if "device" in metafunc.fixturenames:
        chosen = _devices(metafunc.config)
        metafunc.parametrize("device", chosen, ids=chosen)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Background checks run last, so their subprocesses have the whole suite's time to finish.
    (With --impl, byhand's pytest plugin keeps only the learner's functions: checks/pytest_plugin.py.)"""
    # stable: order kept otherwise
    items.sort(key=lambda item: item.get_closest_marker("background") is not None or item.get_closest_marker("beside") is not None)


# --- subprocess checks, started in the background ---------------------------------------------------
# A test marked background(command, env=...) needs a separate Python process (another CPU capability,
# a nested pytest run). Each starts as soon as collection ends, on the core the single-threaded
# suite leaves idle; the test waits for it through the `background` fixture. "{tmp}" in the command
# is a fresh temporary folder.
_BACKGROUND: dict[str, tuple[subprocess.Popen, str]] = {}


def _start(item: pytest.Item) -> None:
    marker = item.get_closest_marker("background")
    tmp = tempfile.mkdtemp(prefix="byhand-bg-")
    command = [part.replace("{tmp}", tmp) for part in marker.args[0]]
    # One torch thread and a lower priority: the check fills the core the suite leaves idle instead
    # of contending with it (measured: 7 s of the suite's wall time otherwise).
    env = {**os.environ, "OMP_NUM_THREADS": "1", **marker.kwargs.get("env", {})}
    nice = (lambda: os.nice(10)) if hasattr(os, "nice") else None
    _BACKGROUND[item.nodeid] = (subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=nice), tmp)


def pytest_collection_finish(session: pytest.Session) -> None:
    # An xdist worker collects every test but runs only some: there the check starts when its test runs.
    if hasattr(session.config, "workerinput"):
        return
    for item in session.items:
        if item.get_closest_marker("background") is not None and item.nodeid not in _BACKGROUND:
            _start(item)
    _submit_beside(session.items)


# --- computations done beside the suite: one worker process on the idle core ------------------------
# A test marked beside(function, *args) asserts on function(*args), a slow computation (a sympy proof,
# an accuracy measurement against the 50-digit oracle, gradcheck). Without xdist every such call is
# submitted when collection ends to one niced worker process, which works while the single-threaded
# suite runs; the tests run last and read the results through the `beside` fixture. The worker takes
# the calls in the reverse of the tests' order, and a test whose call is still queued (not yet handed
# to the worker's pipe, which holds one call ahead) takes it back and computes it here: the two
# processes meet in the middle. Under xdist (or when a test is run alone after the pool is gone) the
# call runs in the test's own process.
_BESIDE: dict[tuple, Future] = {}
_POOL: ProcessPoolExecutor | None = None


def _quiet_worker(profile: str, fault: str | None, seed: int | None) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    profiles.load(profile)  # a hypothesis test run beside the suite runs under the suite's profile
    hypothesis.core.global_force_seed = seed  # and its --hypothesis-seed (where hypothesis' plugin keeps it)
    if fault:  # --fault: the worker's torch is as broken as the suite's
        from checks import faults

        faults.keep_active(fault)
    if hasattr(os, "nice"):
        os.nice(10)


def _job(item: pytest.Item) -> tuple | None:
    marker = item.get_closest_marker("beside")
    return None if marker is None else tuple(marker.args)


def _warm() -> None:
    """The worker's imports, done while the main process collects."""
    import checks.registry  # noqa: F401  (torch, numpy, sympy and every reference module)
    import reference.oracle  # noqa: F401


def _start_pool(config: pytest.Config) -> None:
    global _POOL
    distributing = bool(getattr(config.option, "numprocesses", None))  # xdist's controller runs no test: no worker here
    if _POOL is None and not distributing and not hasattr(config, "workerinput") and not os.environ.get("PYTEST_XDIST_WORKER"):
        _POOL = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_quiet_worker, initargs=(settings.get_current_profile_name(), config.getoption("--fault"), hypothesis.core.global_force_seed))
        _POOL.submit(_warm)


def _submit_beside(items: list[pytest.Item]) -> None:
    jobs = list(dict.fromkeys(job for job in map(_job, items) if job is not None))
    if not jobs:
        return
    _start_pool(items[0].config)
    for job in reversed(jobs):
        _BESIDE[job] = _POOL.submit(*job)


@pytest.fixture
def beside(request: pytest.FixtureRequest):
    """The result of this test's beside(function, *args) computation."""
    job = _job(request.node)
    future = _BESIDE.get(job)
    if future is None or future.cancel():  # not started in the worker: computed here (and kept for a second test)
        future = _BESIDE[job] = _computed_here(job)
    try:
        return future.result(timeout=900)
    except BrokenProcessPool:  # a machine that cannot start the worker
        _BESIDE[job] = _computed_here(job)
        return _BESIDE[job].result()


def _computed_here(job: tuple) -> Future:
    future: Future = Future()
    try:
        future.set_result(job[0](*job[1:]))
    except Exception as exc:  # raised again by each test that reads it
        future.set_exception(exc)
    return future


@pytest.fixture
def background(request: pytest.FixtureRequest):
    """The finished background command of this test: returncode and output (stdout + stderr)."""
    if request.node.nodeid not in _BACKGROUND:
        _start(request.node)
    process, tmp = _BACKGROUND[request.node.nodeid]
    output, _ = process.communicate(timeout=600)
    yield subprocess.CompletedProcess(process.args, process.returncode, output, "")  # its files in tmp, for the test to read
    shutil.rmtree(tmp, ignore_errors=True)


def _stop_background() -> None:
    for process, tmp in _BACKGROUND.values():
        if process.poll() is None:
            process.kill()
        process.communicate()  # reaped, its pipe closed
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def all_threads():
    """torch with the machine's threads, for tests of its multi-threaded kernels."""
    torch.set_num_threads(MACHINE_THREADS)
    yield MACHINE_THREADS
    torch.set_num_threads(1)


def _skip_unsupported(c: matrix.Cell) -> matrix.Cell:
    reason = unsupported(c.spec.name, c.device, c.dtype)
    if reason:
        pytest.skip(reason)
    return c


@pytest.fixture
def checked_cell(cell: matrix.Cell) -> matrix.Cell:
    """The matrix cell, skipped with torch's reason where torch cannot run it."""
    return _skip_unsupported(cell)
