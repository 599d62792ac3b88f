"""The floating dtypes byhand checks, their epsilon and ULP, and rounding to them.

ULP here is the spacing of the dtype's representable numbers at a magnitude:
``ulp(x) = eps * 2**floor(log2 |x|)`` for normal x, and the subnormal spacing below the normal range.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class DtypeInfo:
    name: str
    torch: torch.dtype
    eps: float  # spacing at 1.0: 2**-(mantissa bits)
    tiny: float  # smallest positive normal
    max: float  # largest finite

    @property
    def subnormal(self) -> float:
        return self.eps * self.tiny  # smallest positive subnormal


def _info(dtype: torch.dtype) -> DtypeInfo:
    fi = torch.finfo(dtype)
    return DtypeInfo(str(dtype).removeprefix("torch."), dtype, float(fi.eps), float(fi.tiny), float(fi.max))


DTYPES: dict[str, DtypeInfo] = {
    info.name: info for info in map(_info, (torch.float16, torch.bfloat16, torch.float32, torch.float64))
}
DTYPE_NAMES = tuple(DTYPES)
# Integer results (one_hot) are checked exactly: zero tolerance in the policy's tables.
INT64 = DtypeInfo("int64", torch.int64, eps=1.0, tiny=0.0, max=float(2**63 - 1))


def get(name: str) -> DtypeInfo:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"dtype must be one of {DTYPE_NAMES}, got {name!r}") from None


def ulp(magnitude: np.ndarray | float, info: DtypeInfo) -> np.ndarray:
    """Spacing of ``info``'s numbers at ``|magnitude|`` (inf stays inf, NaN stays NaN)."""
    a = np.abs(np.asarray(magnitude, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        _, exponent = np.frexp(np.maximum(a, info.tiny))  # a = m * 2**e with m in [0.5, 1)
    spacing = info.eps * np.ldexp(1.0, exponent - 1)
    return np.where(np.isfinite(a), spacing, a)


def round_to(array: np.ndarray, info: DtypeInfo) -> np.ndarray:
    """``array`` rounded to ``info`` (round to nearest even, overflow to inf), back as float64."""
    return torch.from_numpy(np.asarray(array, dtype=np.float64)).to(info.torch).to(torch.float64).numpy()
