"""byhand's pytest plugin, registered as a pytest11 entry point: the ``--impl`` option, and the
path given to it as a separate argument.

pytest picks its root folder (and so its configuration and byhand's markers) from the paths on the
command line before any plugin can declare an option, so in ``pytest --impl /any/where/mine.py`` the
path would be taken for a test path and the root would move to /any/where. When that is the
command, this module restarts pytest, before it has read anything, as ``pytest --impl=/any/where/mine.py``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_RESTARTED = "BYHAND_IMPL_RESTARTED"


def _joined(argv: list[str]) -> list[str] | None:
    """``argv`` with ``--impl PATH`` written as ``--impl=PATH``, or None when there is nothing to join."""
    if "--impl" not in argv[:-1]:
        return None
    i = argv.index("--impl")
    return [*argv[:i], f"--impl={argv[i + 1]}", *argv[i + 2:]]


def _is_pytest_command() -> bool:
    first = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    return first.stem in ("pytest", "py.test") or (first.name == "__main__.py" and first.parent.name == "pytest")


def _restart_if_needed() -> None:
    if os.environ.get(_RESTARTED) or not _is_pytest_command():
        return
    joined = _joined(sys.argv[1:])
    if joined is None:
        return
    os.environ[_RESTARTED] = "1"
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "pytest", *joined])


_restart_if_needed()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("byhand").addoption(
        "--impl", default=None,
        help="check your own module of functions (a file path or module name) against torch; runs only those checks")


# --- the learner's module as tests: one per function --------------------------------------------------


def _impl_path(impl: str) -> Path | None:
    """The file of the --impl module: a path, or a module name found on sys.path."""
    if impl.endswith(".py"):
        return Path(impl).resolve()
    import importlib.util

    try:
        found = importlib.util.find_spec(impl)
    except (ImportError, ValueError):
        return None
    return Path(found.origin).resolve() if found is not None and found.origin and found.origin.endswith(".py") else None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """``pytest --impl mine.py`` from any folder collects mine.py itself (and, with --impl, nothing else)."""
    impl = next((a.split("=", 1)[1] for a in args if a.startswith("--impl=")), None)
    if impl is None and "--impl" in args[:-1]:
        impl = args[args.index("--impl") + 1]
    path = _impl_path(impl) if impl else None
    if path is not None and path.is_file() and str(path) not in args:
        args.append(str(path))


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """The --impl file is not a test module: byhand collects it as one test per function (its own
    import, never pytest's), so a learner's module needs no test_ name, no conftest and no repository."""
    impl = parent.config.getoption("--impl", default=None)
    if impl and _impl_path(impl) == Path(module_path).resolve():
        return ImplFile.from_parent(parent, path=Path(module_path))
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With --impl, only the learner's functions run."""
    if config.getoption("--impl", default=None):
        keep = [item for item in items if isinstance(item, ImplItem)]
        config.hook.pytest_deselected(items=[item for item in items if not isinstance(item, ImplItem)])
        items[:] = keep


class Wrong(Exception):
    """A function byhand found wrong on the course's inputs: its verdict is the whole failure text."""


class ImplFile(pytest.File):
    def collect(self):
        from checks import learner

        try:
            module = learner.load(str(self.path))
        except ValueError as exc:
            yield ImplItem.from_parent(self, name="load", problem=str(exc))
            return
        found = learner.functions(module)
        read = learner.names(module)
        if not found:
            hint = "".join(f" `{n}` is not an op byhand knows: did you mean `{op}`?" for n, op in read.misspelled.items())
            yield ImplItem.from_parent(self, name="names", problem=f"{self.path.name} defines none of byhand's function names.{hint} "
                                                                   f"byhand knows: {', '.join(learner.known_names())}")
            return
        self.notes = read.lines()  # said once, by the first function's test
        self.module, self.found, self.checks = module, found, None
        for spec, name in found:
            yield ImplItem.from_parent(self, name=name, module=module, spec=spec)

    def verdict(self, item: ImplItem):
        """The verdict on ``item``'s function. The first asks for all of this file's selected
        functions at once, checked side by side (checks/learner/parallel.py)."""
        from checks import learner
        from checks.learner.parallel import Checks

        if self.checks is None:
            selected = {i.name for i in self.session.items if i.parent is self}
            self.checks = Checks(self.module, [(s, n) for s, n in self.found if n in selected], examples=learner.DEFAULT_EXAMPLES)
        return self.checks.verdict(item.name)

    def teardown(self) -> None:
        if getattr(self, "checks", None) is not None:
            self.checks.close()


class ImplItem(pytest.Item):
    def __init__(self, *, module=None, spec=None, problem: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.module, self.spec, self.problem = module, spec, problem

    def runtest(self) -> None:
        import warnings

        from checks import learner

        if self.problem is not None:
            raise Wrong(self.problem)
        for line in getattr(self.parent, "notes", ()):
            warnings.warn(line, UserWarning, stacklevel=1)
        if getattr(self.parent, "notes", None):
            self.parent.notes = []
        verdict = self.parent.verdict(self)
        for note in verdict.notes:
            warnings.warn(note, UserWarning, stacklevel=1)
        if verdict.status == learner.NOT_CHECKED:
            pytest.skip(verdict.explanation)
        if verdict.status == learner.FRAGILE:
            warnings.warn(f"⚠ {verdict.explanation}", UserWarning, stacklevel=1)
        if verdict.status == learner.WRONG:
            raise Wrong(f"✗ {verdict.explanation}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, Wrong):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"{self.path.name}::{self.name}"
