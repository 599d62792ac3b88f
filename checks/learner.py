"""Check a learner's own module of functions against torch, with byhand's registry, strategies and
tolerance policy, and explain any mismatch in a learner's words.

The module may define any subset of the reference names (``softmax``, ``mse_loss_backward``, ...),
with the same arguments or fewer: a function without ``weight`` is only given cases without weights,
one without ``ignore_index`` only targets that ignore nothing. Each function is checked in float64
on the CPU by default, so the only differences are the learner's math and torch's, and on finite
inputs (the normal, small, large and ties regimes): the extremal table's infinities, NaNs and
subnormals test torch's conventions, which a learner's formula need not reproduce.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from hypothesis import HealthCheck, assume, given, settings

from checks.registry import REGISTRY
from checks.runner import Runner, accepted, build_case, info_for
from checks.spec import Case, OpSpec, Recipe
from checks.strategies import recipes

LEARNER_REGIMES = ("normal", "small", "large", "ties")


def load(name_or_path: str) -> ModuleType:
    """A module by dotted name (``my_math``) or by file path (``examples/my_math.py``)."""
    path = Path(name_or_path)
    if path.suffix == ".py":
        if not path.is_file():
            raise ValueError(f"--impl: no such file {name_or_path}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module
    try:
        return importlib.import_module(name_or_path)
    except ImportError as exc:
        raise ValueError(f"--impl: cannot import {name_or_path!r}: {exc}") from None


def functions(module: ModuleType) -> list[tuple[OpSpec, str]]:
    """(op, function name) for each reference name the module defines, in registry order."""
    found = []
    for spec in REGISTRY:
        for name in (spec.name, f"{spec.name}_backward"):
            if callable(getattr(module, name, None)):
                found.append((spec, name))
    return found


def _defaults(spec: OpSpec) -> dict[str, Any]:
    return {n: p.default for n, p in inspect.signature(spec.forward).parameters.items() if p.default is not inspect.Parameter.empty}


def _uses(case: Case, name: str, value: Any, default: Any) -> bool:
    """Whether a case needs argument ``name``: it differs from torch's default, or (ignore_index)
    some target is actually ignored."""
    if name == "ignore_index":
        target = case.inputs.get("target")
        return target is not None and target.dtype.kind in "iu" and bool((target == value).any())
    if isinstance(value, np.ndarray) or isinstance(default, np.ndarray):
        return value is not None
    return value != default


def fits(spec: OpSpec, case: Case, fn: Any) -> bool:
    """The case only needs arguments ``fn`` declares."""
    names = accepted(fn)
    if names is None:
        return True
    defaults = _defaults(spec)
    return not any(_uses(case, k, v, defaults.get(k)) for k, v in case.params.items() if k not in names)


@dataclass(frozen=True)
class Verdict:
    function: str
    passed: bool
    examples: int
    explanation: str


def _show(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return np.array2string(value, precision=6, threshold=24, separator=", ")
    return repr(value)


def _explain(function: str, case: Case, record: Any = None, error: BaseException | None = None) -> str:
    lines = [f"{function}: does not match torch on these inputs:"]
    lines += [f"    {k} = {_show(v)}" for k, v in {**case.inputs, **case.params}.items() if v is not None]
    if error is not None:
        lines.append(f"  your function raised {type(error).__name__}: {error}")
        return "\n".join(lines)
    where = f"[{', '.join(map(str, record.worst_index))}]" if record.worst_index else ""
    what = "the result" if record.context.phase == "forward" else f"the gradient with respect to {record.context.phase[5:-1]}"
    at = f" at index {where}" if where else ""
    lines.append(f"  {what}{at}: torch gives {record.worst_actual!r}, your function gives {record.worst_expected!r}")
    lines.append(f"  ({record.n_bad} of {record.n} values differ by more than byhand's tolerance for {record.context.dtype}: {record.k:g} units in the last place)")
    return "\n".join(lines)


def check(module: ModuleType, spec: OpSpec, function: str, *, examples: int = 100, device: str = "cpu", dtype: str = "float64") -> Verdict:
    """Hypothesis-search for a case where ``module.<function>`` and torch disagree; shrunk if found."""
    spec = dataclasses.replace(spec, regimes=tuple(r for r in spec.regimes if r in LEARNER_REGIMES))
    runner = Runner(spec, device, dtype, hand=_only(module, function))
    fn, info = getattr(module, function), info_for(dtype)
    ran, failures = [0], []

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(recipes(spec))
    def search(recipe: Recipe) -> None:
        case = build_case(spec, recipe, info)
        assume(fits(spec, case, fn))
        ran[0] += 1
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # overflow in the learner's code: its values are judged instead
                records = runner.run(recipe)
        except Exception as exc:  # noqa: BLE001 - the learner's code may raise anything
            failures.append(_explain(function, case, error=exc))
            raise AssertionError from exc
        bad = next((r for r in records if not r.passed), None)
        if bad is not None:
            failures.append(_explain(function, case, bad))
            raise AssertionError

    try:
        search()
    except AssertionError:
        return Verdict(function, False, ran[0], failures[-1])
    return Verdict(function, True, ran[0], f"{function}: agrees with torch on {ran[0]} random cases")


def _only(module: ModuleType, function: str) -> ModuleType:
    """A view of the module with just one function, so its forward and backward are judged apart."""
    view = ModuleType(module.__name__)
    setattr(view, function, getattr(module, function))
    return view


def check_all(module: ModuleType, *, examples: int = 100) -> list[Verdict]:
    return [check(module, spec, name, examples=examples) for spec, name in functions(module)]
