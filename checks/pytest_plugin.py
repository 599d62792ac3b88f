"""byhand's pytest plugin, registered as a pytest11 entry point: it declares ``--impl`` before pytest
reads its arguments, so ``pytest --impl /any/where/mine.py`` parses the path as the option's value
(not as a test path that would move pytest's rootdir away from byhand's conftest)."""
from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("byhand").addoption(
        "--impl", default=None,
        help="check your own module of functions (a file path or module name) against torch; runs only those checks")
