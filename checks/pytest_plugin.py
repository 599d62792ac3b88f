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
