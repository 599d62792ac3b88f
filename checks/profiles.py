"""The hypothesis profiles of byhand's suite: ``default`` (15 examples a test), ``ci`` (the same,
derandomized and without an example database, so a CI run is reproducible) and ``thorough`` (500).

Registered here rather than in conftest.py because the worker process beside the suite
(conftest.py's ``beside`` marker) runs hypothesis tests too, and must run them under the profile
the suite runs under.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# The matrix fixtures hold immutable cells, so sharing one across examples is safe.
_COMMON = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
settings.register_profile("default", max_examples=15, **_COMMON)
settings.register_profile("ci", max_examples=15, derandomize=True, database=None, **_COMMON)
settings.register_profile("thorough", max_examples=500, **_COMMON)


def chosen() -> str:
    """The profile the environment asks for: $HYPOTHESIS_PROFILE, else ``ci`` where $CI is set."""
    return os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default")


def load(name: str | None = None) -> None:
    settings.load_profile(name or chosen())
