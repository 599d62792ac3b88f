"""The smallest relative error the tolerance policy detects, per op and dtype.

For each registry op and dtype: take the correctly rounded output on a few normal-regime cases,
inject a relative error r (the output times 1 + r, rounded to the dtype) and binary-search the
smallest r that some case's comparison rejects. Prints r per op and the median and worst over ops.

    python benchmarks/detection.py
"""
from __future__ import annotations

import statistics
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hypothesis import find

from checks import dtypes
from checks.compare import Context, compare
from checks.registry import REGISTRY
from checks.runner import build_case
from checks.spec import FLOAT_DTYPES, Recipe
from checks.tolerance import k_for


def detected(spec, dtype: str, relative: float, seeds=range(4)) -> bool:
    info = dtypes.get(dtype)
    knobs = find(spec.knobs, lambda _: True)
    for seed in seeds:
        case = build_case(spec, Recipe(seed=seed, regime="normal", shape=(4, 6), knobs=knobs), info)
        expected = spec.forward(*case.inputs.values(), **case.params)
        honest = dtypes.round_to(expected, info)
        perturbed = dtypes.round_to(expected * (1 + relative), info) if dtype != "float64" else expected * (1 + relative)
        context = Context(spec.name, "forward", "injected", "cpu", dtype, np.shape(expected))
        kw = dict(scale=spec.scale(case, expected), info=info, k=k_for("forward", dtype), context=context)
        if compare(honest, expected, **kw).passed and not compare(perturbed, expected, **kw).passed:
            return True
    return False


def smallest(spec, dtype: str) -> float:
    eps = dtypes.get(dtype).eps
    low, high = 0.0, 1000 * eps
    if not detected(spec, dtype, high):
        return float("inf")
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (low, mid) if detected(spec, dtype, mid) else (mid, high)
    return high


def main() -> None:
    warnings.simplefilter("ignore")
    for dtype in FLOAT_DTYPES:
        eps = dtypes.get(dtype).eps
        found = {spec.name: smallest(spec, dtype) for spec in REGISTRY if spec.name != "one_hot"}
        print(f"{dtype}: median {statistics.median(found.values()) / eps:.1f} eps, worst {max(found.values()) / eps:.1f} eps "
              f"({max(found, key=found.get)}); 1 eps = {eps:.3g}")
        print("   " + ", ".join(f"{op} {r / eps:.1f}" for op, r in found.items()))


if __name__ == "__main__":
    main()
