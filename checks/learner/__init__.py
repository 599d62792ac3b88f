"""A learner's own functions against torch: one fair verdict per function, never a traceback.

The module may define any subset of the reference names (``softmax``, ``mse_loss_backward``, ...),
with the same arguments or fewer. Each function is checked in float64 on the CPU, in two stages:

- the **course stage** draws what a course feeds it: non-empty arrays of ordinary finite values,
  batched (N, C) logits with class targets for cross-entropy, 2-D inputs for linear, and only the
  arguments the function declares (others stay at torch's defaults). A mismatch here is ✗ wrong.
- the **edge stage** draws everything byhand checks torch on: empty and 0-d arrays, unbatched
  inputs, huge and tiny magnitudes, exact kinks, p ∈ {0, 1}, NaN and inf. A function right in the
  course stage but wrong here is ⚠ fragile, shown with the case and the lesson.

A function that agrees in both is ✓. One byhand cannot call as torch's (a missing input) is ✗ with
what torch takes. ``axis`` is read as torch's ``dim``; a softmax without ``dim`` is checked along the
last axis, and the verdict says so.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from checks.learner.stages import DEFAULT_EXAMPLES, EDGES, Stage, check_stage, edge_examples
from checks.registry import REGISTRY
from checks.runner import accepted, call_accepted
from checks.spec import OpSpec

AGREES, WRONG, FRAGILE, NOT_CHECKED = "agrees", "wrong", "fragile", "not checked"
MARKS = {AGREES: "✓", WRONG: "✗", FRAGILE: "⚠", NOT_CHECKED: "–"}


def load(name_or_path: str) -> ModuleType:
    """A module by file path (``examples/my_math.py``) or dotted name; any failure to load is one
    ValueError line (file and line for a syntax error), never byhand's traceback."""
    path = Path(name_or_path)
    try:
        if path.suffix == ".py":
            if not path.is_file():
                raise ValueError(f"--impl: no such file {name_or_path}")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)  # type: ignore[union-attr]
            return module
        return importlib.import_module(name_or_path)
    except SyntaxError as exc:
        raise ValueError(f"{exc.filename}:{exc.lineno}: syntax error: {exc.msg}: {(exc.text or '').strip()}") from None
    except ImportError as exc:
        raise ValueError(f"{name_or_path}: could not be imported: {exc}") from None
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - the learner's module-level code may raise anything
        raise ValueError(f"{name_or_path}: running the module raised {type(exc).__name__}: {exc}") from None


def known_names() -> list[str]:
    return [n for spec in REGISTRY for n in (spec.name, f"{spec.name}_backward") if n != "one_hot_backward"]


def functions(module: ModuleType) -> list[tuple[OpSpec, str]]:
    """(op, function name) for each reference name the module defines, in registry order."""
    return [(spec, name) for spec in REGISTRY for name in (spec.name, f"{spec.name}_backward") if callable(getattr(module, name, None))]


@dataclass(frozen=True)
class Names:
    """What a module defines, as byhand reads it: the functions it checks, the helpers it ignores, and
    the names that look like a misspelled op (``layernorm`` for ``layer_norm``), with their op."""

    checked: tuple[str, ...]
    helpers: tuple[str, ...]
    misspelled: dict[str, str]

    def lines(self) -> list[str]:
        said = [f"`{name}` is not an op byhand knows: did you mean `{op}`?" for name, op in self.misspelled.items()]
        if self.helpers:
            said.append(f"ignored as helpers (not torch's names): {', '.join(self.helpers)}")
        return said


def names(module: ModuleType, own: list[str] | None = None) -> Names:
    """The module's own functions (those defined in it, not imported; or the names ``own``), sorted
    into checked, helpers and misspelled."""
    import difflib

    known = known_names()
    if own is None:
        own = [n for n, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module.__name__ and not n.startswith("_")]
    checked = tuple(n for n in own if n in known)
    misspelled = {}
    for n in own:
        if n in known:
            continue
        squashed = {k.replace("_", ""): k for k in known}
        close = squashed.get(n.replace("_", "").lower()) or next(iter(difflib.get_close_matches(n, known, n=1, cutoff=0.85)), None)
        if close:
            misspelled[n] = close
    return Names(checked, tuple(n for n in own if n not in checked and n not in misspelled), misspelled)


@dataclass(frozen=True)
class Verdict:
    function: str
    status: str  # agrees, wrong, fragile, not checked
    examples: int
    explanation: str
    notes: tuple[str, ...] = ()
    cases: tuple[str, ...] = field(default=(), repr=False)  # what was tried, for --verbose

    @property
    def passed(self) -> bool:
        """Only ✗ fails; ⚠ fails under --strict (see ``failed``)."""
        return self.status != WRONG

    def failed(self, strict: bool = False) -> bool:
        return self.status == WRONG or (strict and self.status == FRAGILE)

    @property
    def mark(self) -> str:
        return MARKS[self.status]


def _torch_arguments(spec: OpSpec, function: str) -> list[str]:
    reference = spec.backward if function.endswith("_backward") else spec.forward
    return list(inspect.signature(reference).parameters)


def _inputs(spec: OpSpec) -> tuple[list[str], int]:
    """The op's tensor inputs in torch's order, and how many of them are optional (Linear's bias)."""
    params = inspect.signature(spec.forward).parameters.values()
    required = [p.name for p in params if p.default is p.empty and p.name != "dim"]
    optional = [n for n in spec.grad_inputs if n not in required]
    return required + optional, len(optional)


def adapt(fn: Callable[..., Any], spec: OpSpec, function: str) -> Adapted:
    """The learner's function as byhand calls it: ``dim`` passed as ``axis``, or dropped (the last
    axis) where it takes none; keyword arguments it does not declare are never passed."""
    try:
        theirs = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin or a C function: call it as it is
        return Adapted(fn, None)
    torch_args = _torch_arguments(spec, function)
    inputs, optional = _inputs(spec)
    if function.endswith("_backward"):
        inputs = ["grad_output", *inputs]
    positional = [p for p in theirs.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_any = any(p.kind == p.VAR_POSITIONAL for p in theirs.values())
    if len(positional) < len(inputs) - optional and not takes_any:
        n = len(positional)
        return Adapted(fn, None, refusal=f"Your function takes {n} argument{'s' * (n != 1)} ({', '.join(theirs) or 'none'}); "
                                         f"torch's {function} takes {', '.join(torch_args)}.")
    extra = [p.name for p in positional[len(inputs):] if p.default is p.empty and p.name not in torch_args and p.name != "axis"]
    if extra:
        return Adapted(fn, None, refusal=f"Your function needs {', '.join(extra)}, which torch's {function} does not take ({', '.join(torch_args)}).")
    names = accepted(fn)
    # An optional input it does not take (linear(input, weight): no bias) is never passed; the
    # cases give it None, as torch's bias=None.
    takes = None if takes_any else min(len(positional), len(inputs))
    if "dim" in torch_args and "dim" not in theirs:
        if "axis" in theirs:
            return Adapted(_calling(fn, "axis", takes), (names or set()) | {"dim"}, ("torch calls your `axis` argument `dim`: byhand passed dim as axis.",), takes=takes)
        note = f"Your {function} takes no `dim`: checked along the last axis (torch's {spec.name} needs dim=...)."
        return Adapted(_calling(fn, None, takes), (names or set()) | {"dim"}, (note,), last_axis=True, takes=takes)
    return Adapted(_calling(fn, "dim", takes), names, takes=takes)


@dataclass(frozen=True)
class Adapted:
    call: Callable[..., Any]
    declared: set[str] | None  # keyword arguments it takes (None: any)
    notes: tuple[str, ...] = ()
    refusal: str | None = None
    last_axis: bool = False
    takes: int | None = None  # how many positional arguments it takes (None: any)


def _calling(fn: Callable[..., Any], dim_as: str | None, takes: int | None) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        if takes is not None and all(a is None for a in args[takes:]):
            args = args[:takes]
        dim = kwargs.pop("dim", None)
        if dim_as is not None and dim is not None:
            kwargs[dim_as] = dim
        return call_accepted(fn, *args, **kwargs)

    return call


def check(module: ModuleType, spec: OpSpec, function: str, *, examples: int = DEFAULT_EXAMPLES, verbose: bool = False) -> Verdict:
    """The verdict on ``module.<function>``: the course stage first, then the edge stage."""
    if function.endswith("_backward") and not spec.differentiable:
        return Verdict(function, NOT_CHECKED, 0, f"{function}: not checked: {spec.name} is not differentiable (integer output), so torch has no gradient to compare")
    adapted = adapt(getattr(module, function), spec, function)
    notes = adapted.notes
    if adapted.refusal is not None:
        return Verdict(function, WRONG, 0, f"{function}: {adapted.refusal}", notes)
    tried: list[str] = []
    course = check_stage(spec, function, adapted, Stage.COURSE, examples, tried if verbose else None)
    if course.own:
        return _byhands_failure(function, course, notes, tried)
    if course.failure is not None:
        return Verdict(function, WRONG, course.examples, f"{function}: wrong on the course's inputs:\n{course.failure}", notes, tuple(tried))
    total = course.examples
    for stage in EDGES:
        edge = check_stage(spec, function, adapted, stage, edge_examples(examples), tried if verbose else None)
        total += edge.examples
        if edge.own:
            return _byhands_failure(function, edge, notes, tried)
        if edge.failure is not None:
            return Verdict(function, FRAGILE, total, f"{function}: right on the course's inputs ({course.examples} cases), but not on {stage.value}:\n{edge.failure}",
                           notes, tuple(tried))
    return Verdict(function, AGREES, total, f"{function}: agrees with torch on {course.examples} course cases and {total - course.examples} edge cases", notes, tuple(tried))


def _byhands_failure(function: str, result: Any, notes: tuple[str, ...], tried: list[str]) -> Verdict:
    return Verdict(function, NOT_CHECKED, result.examples, f"{function}: not checked: byhand failed on its own case (a bug in byhand; please report it):\n"
                   f"{result.failure}", notes, tuple(tried))


def check_all(module: ModuleType, *, examples: int = DEFAULT_EXAMPLES, ops: tuple[str, ...] | None = None) -> list[Verdict]:
    return [check(module, spec, name, examples=examples) for spec, name in functions(module) if ops is None or spec.name in ops]


def verdicts_of(path: str, examples: int = DEFAULT_EXAMPLES, ops: tuple[str, ...] | None = None) -> dict[str, Verdict]:
    """Every verdict on the module at ``path`` (of ``ops``' functions only, if given), by function name (plain data: picklable)."""
    return {v.function: v for v in check_all(load(path), examples=examples, ops=ops)}


__all__ = ["AGREES", "FRAGILE", "NOT_CHECKED", "WRONG", "Adapted", "Names", "Verdict", "names", "adapt", "check", "check_all", "functions", "known_names", "load", "verdicts_of"]
