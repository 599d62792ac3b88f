"""Floating-point formats by name, and rounding a float64 array to one, without torch.

softmax's ``dtype`` casts its input before computing: the reference rounds to the same format.
numpy has no bfloat16, so every format is rounded by one rule: to nearest, ties to even, at the
format's precision and exponent range, subnormals included, overflow to ±inf.

torch's own cast from float64 to float16 or bfloat16 goes through float32 and so rounds twice:
-0x1.32dfff84850a7p-2 becomes -0.2998046875 in torch, where the nearest float16 is -0.2995605469.
byhand's cases are rounded by torch's casts (checks/dtypes.py), so both sides see the same values.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class Format(NamedTuple):
    digits: int  # significand bits, the implicit one included
    min_exponent: int  # exponent of the smallest normal number
    max: float  # largest finite number


FORMATS = {
    "float16": Format(11, -14, 65504.0),
    "bfloat16": Format(8, -126, float.fromhex("0x1.fep127")),
    "float32": Format(24, -126, float.fromhex("0x1.fffffep127")),
    "float64": Format(53, -1022, float.fromhex("0x1.fffffffffffffp1023")),
}


def dtype_name(dtype: Any, name: str = "dtype") -> str | None:
    """A floating dtype's name from a torch dtype (read as ``str``, so no torch import), a numpy
    dtype or type, or a string such as ``"float32"`` or ``"torch.bfloat16"``; None stays None."""
    if dtype is None:
        return None
    text = str(dtype).removeprefix("torch.")
    if not isinstance(dtype, str) and text not in FORMATS:
        try:
            text = np.dtype(dtype).name
        except TypeError:
            pass
    if text not in FORMATS:
        raise ValueError(f"{name} must be a floating dtype ({', '.join(FORMATS)}), got {dtype!r}")
    return text


def cast(x: np.ndarray, dtype: Any) -> np.ndarray:
    """``x`` as torch's ``dtype=`` argument casts it before an op: rounded to that format, or as it is for None."""
    name = dtype_name(dtype)
    return x if name is None else round_to(x, name)


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` (float64) rounded to the named format, returned as float64."""
    f = FORMATS[dtype]
    x = np.asarray(x, dtype=np.float64)
    if dtype == "float64":
        return x
    with np.errstate(all="ignore"):
        _, e = np.frexp(x)  # |x| = m 2**e with m in [0.5, 1)
        quantum = np.maximum(e - 1, f.min_exponent) - (f.digits - 1)  # log2 of the spacing at x
        rounded = np.ldexp(np.rint(np.ldexp(x, -quantum)), quantum)  # rint: ties to even
        return np.where(np.abs(rounded) > f.max, np.copysign(np.inf, x), rounded)
