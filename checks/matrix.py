"""The device × dtype matrix the suite and ``byhand verify`` iterate, chosen once from the options."""
from __future__ import annotations

from dataclasses import dataclass

from checks import devices
from checks.registry import REGISTRY
from checks.spec import FLOAT_DTYPES, OpSpec


@dataclass(frozen=True)
class Cell:
    spec: OpSpec
    device: str
    dtype: str
    mode: str = "reverse"  # how torch differentiates (checks/modes.py); reverse: autograd, the forward too

    @property
    def id(self) -> str:
        return f"{self.spec.name}-{self.device}-{self.dtype}" + ("" if self.mode == "reverse" else f"-{self.mode}")


EVERYTHING = (None, "", "all", "auto")  # option values that choose every device, dtype or op


def parse_list(value: str | None, allowed: tuple[str, ...], option: str) -> tuple[str, ...] | None:
    """A comma-separated option value, validated; None for 'all'."""
    if value in EVERYTHING:
        return None
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise ValueError(f"{option}: unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return items


def cells(
    device_option: str | None = None,
    dtype_option: str | None = None,
    ops_option: str | None = None,
    *,
    differentiable_only: bool = False,
    modes: tuple[str, ...] = ("reverse",),
) -> list[Cell]:
    """Every (op, device, dtype, mode) to check. Devices default to those found here; one named on
    purpose is kept even when absent, so its checks show up as skipped with the reason."""
    chosen_devices = parse_list(device_option, devices.DEVICES, "--device") or devices.available()
    chosen_dtypes = parse_list(dtype_option, FLOAT_DTYPES, "--dtype") or FLOAT_DTYPES
    names = tuple(spec.name for spec in REGISTRY)
    chosen_ops = parse_list(ops_option, names, "--ops") or names
    result = []
    for spec in REGISTRY:
        if spec.name not in chosen_ops or (differentiable_only and not spec.differentiable):
            continue
        # Integer-only ops (one_hot) have no float dtype: they run once per device, at int64.
        op_dtypes = [d for d in spec.dtypes if d in chosen_dtypes] if set(spec.dtypes) & set(FLOAT_DTYPES) else list(spec.dtypes)
        for mode in modes:
            if mode == "reverse" or spec.differentiable:  # a mode other than reverse is a derivative only
                result += [Cell(spec, device, dtype, mode) for device in chosen_devices for dtype in op_dtypes]
    return result
