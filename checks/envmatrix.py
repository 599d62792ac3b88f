"""One CPU standing in for several: ``byhand verify --matrix`` re-runs verify under each configuration.

torch's CPU results depend on ATen's vector capability, oneDNN's instruction set, whether oneDNN runs
at all, and the thread count. Each can be lowered on one machine (never raised: asking ATen for
AVX-512 on a CPU without it dies with an illegal instruction), so one machine can show what users'
machines would. Every configuration runs in a fresh process, since torch reads these at start-up.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from checks.environment import cpu_features


@dataclass(frozen=True)
class Config:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()  # CPU features it cannot run without


CONFIGS = (
    Config("native"),
    Config("ATEN_CPU_CAPABILITY=default", {"ATEN_CPU_CAPABILITY": "default"}),
    Config("ATEN_CPU_CAPABILITY=avx2", {"ATEN_CPU_CAPABILITY": "avx2"}, needs=("avx2",)),
    Config("ATEN_CPU_CAPABILITY=avx512", {"ATEN_CPU_CAPABILITY": "avx512"}, needs=("avx512f", "avx512bw", "avx512vl", "avx512dq")),
    Config("ONEDNN_MAX_CPU_ISA=AVX2", {"ONEDNN_MAX_CPU_ISA": "AVX2"}, needs=("avx2",)),
    Config("ONEDNN_MAX_CPU_ISA=AVX512_CORE", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, needs=("avx512f", "avx512bw", "avx512vl", "avx512dq")),
    Config("mkldnn disabled", args=("--no-mkldnn",)),
    Config("1 thread", args=("--threads", "1")),
    Config("2 threads", args=("--threads", "2")),
    Config("4 threads", args=("--threads", "4")),
)


def unsupported(config: Config, features: list[str] | None = None) -> str | None:
    """Why this machine cannot stand in for ``config``, or None."""
    features = cpu_features() if features is None else features
    missing = [f for f in config.needs if f not in features]
    if missing:
        return f"this CPU lacks {', '.join(missing)}: the configuration can only be lowered, never raised"
    return None


@dataclass
class Outcome:
    config: Config
    skipped: str | None = None
    returncode: int = 0
    data: dict = field(default_factory=dict)  # verify --json
    output: str = ""

    @property
    def passed(self) -> bool:
        return self.skipped is not None or (self.returncode == 0 and bool(self.data.get("passed")))


def run(config: Config, verify_args: list[str]) -> Outcome:
    """``byhand verify`` under one configuration, in a fresh process."""
    reason = unsupported(config)
    if reason:
        return Outcome(config, skipped=reason)
    with tempfile.TemporaryDirectory(prefix="byhand-matrix-") as tmp:
        out = Path(tmp) / "verify.json"
        # One process: each configuration runs torch at its own thread count (torch's default unless
        # it names one), not at the share of the cores that verify's default --jobs would give it.
        command = [sys.executable, "-m", "checks.cli", "verify", "--quiet", "--jobs", "1", "--json", str(out), *config.args, *verify_args]
        done = subprocess.run(command, env={**os.environ, **config.env}, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
        data = json.loads(out.read_text()) if out.exists() else {}
    return Outcome(config, returncode=done.returncode, data=data, output=done.stdout + done.stderr)
