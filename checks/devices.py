"""Which devices exist here and which device × dtype pairs torch can run.

Devices are detected, never assumed. byhand leaves torch's numerics settings as it finds them (TF32,
float32 matmul precision, reduced-precision reductions): a setting that changes results is a declared,
probed quirk (checks/departures), named in verify's header and reported per cell where it shows.
"""
from __future__ import annotations

import torch

DEVICES = ("cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def unavailable_reason(device: str) -> str | None:
    """Why ``device`` cannot be used on this machine, or None when it can."""
    if device == "cpu":
        return None
    if device == "cuda":
        return None if torch.cuda.is_available() else "no CUDA device (torch.cuda.is_available() is False)"
    if device == "mps":
        return None if _mps_available() else "no MPS device (torch.backends.mps.is_available() is False)"
    raise ValueError(f"device must be one of {DEVICES}, got {device!r}")


def unsupported_reason(device: str, dtype: str) -> str | None:
    """Why torch cannot run ``dtype`` on ``device`` at all, or None."""
    if device == "mps" and dtype == "float64":
        return "MPS has no float64 support"
    return None


def available() -> tuple[str, ...]:
    return tuple(d for d in DEVICES if unavailable_reason(d) is None)


def describe() -> str:
    """One line for headers and reports: the devices found and their models."""
    parts = ["cpu"]
    if torch.cuda.is_available():
        parts.append(f"cuda ({torch.cuda.get_device_name(0)})")
    if _mps_available():
        parts.append("mps")
    return ", ".join(parts)
