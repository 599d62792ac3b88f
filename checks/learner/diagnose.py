"""What a learner's mismatch means, in a learner's words: the return value, the shape, a constant
factor, the situation of an edge case and its lesson."""
from __future__ import annotations

from typing import Any

import numpy as np

from checks.spec import Case, OpSpec, Recipe


class Mistake(Exception):
    """A learner's function handed back something byhand cannot compare, said in plain words."""


def returned_problem(value: Any, function: str) -> str | None:
    """Why a return value is not an array of numbers, or None."""
    if value is None:
        return "You returned None: missing `return`?"
    if type(value).__module__.startswith("torch"):
        dtype = str(getattr(value, "dtype", "")).removeprefix("torch.")
        return (f"You returned a {dtype} torch tensor. byhand compares your own numpy math with torch's: "
                "compute with numpy and return a numpy array.")
    if isinstance(value, list):
        return "You returned a Python list: return a numpy array (np.array(...)) so the result keeps its shape."
    if isinstance(value, tuple) and not function.endswith("_backward"):
        return f"You returned a tuple of {len(value)}: {function} returns one array."
    if not isinstance(value, (np.ndarray, np.generic, float, int, tuple)):
        return f"You returned a {type(value).__name__}, not a numpy array."
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind not in "biufc":
        return f"You returned an array of {value.dtype} values, not numbers."
    return None


def known_mistake(spec: OpSpec, phase: str, case: Case, grad_output: np.ndarray | None, yours: Any, theirs: np.ndarray,
                  rtol: float) -> str | None:
    """The lesson of the op's known mistake (OpSpec.mistakes) whose formula gives the learner's answer
    on this case, where that answer is not torch's (``rtol``: the stage's tolerance, k units of its
    dtype): correct code is never diagnosed."""
    try:
        mine = np.asarray(yours, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    for mistake in spec.mistakes:
        if mistake.phase != phase:
            continue
        try:
            with np.errstate(all="ignore"):
                model = mistake.model(case.fresh(), grad_output)
        except Exception:  # noqa: BLE001 - a model that does not apply to this case says nothing
            continue
        if model is None or np.shape(model) != mine.shape:
            continue
        model = np.asarray(model, dtype=np.float64)
        scale = float(np.max(np.abs(theirs), initial=0.0, where=np.isfinite(theirs))) if np.size(theirs) else 0.0
        if np.allclose(mine, model, rtol=1e-6, atol=1e-12, equal_nan=True) and not (
                model.shape == np.shape(theirs) and np.allclose(theirs, model, rtol=rtol, atol=rtol * scale, equal_nan=True)):
            return mistake.lesson
    return None


def _describe_shape(shape: tuple[int, ...]) -> str:
    return "a single number" if shape == () else f"shape {shape}"


def shape_problem(yours: tuple[int, ...], theirs: tuple[int, ...], case: Case, what: str) -> str:
    """A sentence for a shape mismatch, with the likely cause."""
    line = f"You returned {_describe_shape(yours)} for {what}, torch {_describe_shape(theirs)}."
    first = next(iter(case.inputs.values()))
    reduction = case.params.get("reduction", "mean")
    if theirs == () and yours == np.shape(first):
        line += f" Did you forget the {'sum' if reduction == 'sum' else 'mean'}? torch reduces with reduction={reduction!r} by default."
    elif yours == () and theirs == np.shape(first):
        line += " torch keeps one value per element here (reduction='none', or an elementwise gradient)."
    elif theirs == np.shape(first) and int(np.prod(yours)) > int(np.prod(theirs)):
        line += " A sum or max lost its axis and broadcasting spread it: keepdims=True keeps the axis."
    return line


def _constant(ratio: np.ndarray) -> float | None:
    ratio = ratio[np.isfinite(ratio)]
    if ratio.size < 2 or not np.allclose(ratio, ratio[0], rtol=1e-6):
        return None
    return float(ratio[0])


def ratio_hint(yours: np.ndarray, theirs: np.ndarray, case: Case, grad_output: np.ndarray | None) -> str | None:
    """A missing factor, when yours and torch's differ by one: 1/N, 2, or grad_output."""
    yours, theirs = np.asarray(yours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if yours.shape != theirs.shape or yours.size == 0:
        return None
    with np.errstate(all="ignore"):
        nonzero = (theirs != 0) & np.isfinite(theirs) & np.isfinite(yours)
        if grad_output is not None and np.size(grad_output) > 1 and np.shape(grad_output) == theirs.shape:
            if nonzero.sum() > 1 and np.allclose((yours * grad_output)[nonzero], theirs[nonzero], rtol=1e-6):
                return "Yours times grad_output is torch's: multiply by grad_output (the chain rule's upstream gradient)."
        c = _constant(np.where(nonzero, yours / theirs, np.nan).ravel()) if nonzero.sum() > 1 or yours.size == 1 else None
        if c is None and yours.size == 1 and nonzero.all():
            c = float(yours.ravel()[0] / theirs.ravel()[0])
    if c is None or np.isclose(c, 1.0):
        return None
    if c == 0:
        return "Your function gives 0 where torch does not: a term (or the whole sum) is missing."
    first = next(iter(case.inputs.values()))
    sizes = {int(np.shape(first)[0]) if np.ndim(first) > 1 else 1: "the batch", int(np.size(first)): "every element"}
    for n, what in sizes.items():
        if n > 1 and np.isclose(c, n):
            return f"Yours is {n} × torch's: torch averages over {what} (reduction='mean'): divide by N = {n}."
        if n > 1 and np.isclose(c, 1 / n):
            return f"Yours is torch's divided by {n}: you divide by N = {n} where torch does not (or twice)."
    if np.isclose(c, -1.0):
        return "Yours has the opposite sign of torch's: a sign (or an absolute value) is missing."
    if grad_output is not None and np.size(grad_output) == 1 and np.isclose(c, 1 / float(np.ravel(grad_output)[0])):
        return "Yours times grad_output is torch's: multiply by grad_output (the chain rule's upstream gradient)."
    if yours.size < 2:
        return None  # one number differing by a factor says nothing about a constant
    return f"Yours is {c:.6g} × torch's everywhere: a constant factor is missing or extra."


GENERIC_LESSONS = {
    "empty": "torch accepts an empty input (size 0): it returns an empty result, or NaN for the mean of nothing. "
             "Reductions like np.max need initial=... on empty arrays.",
    "optional": "torch lets this input be None (Linear without a bias): handle it, e.g. `if bias is not None`.",
    "scalar": "torch also takes a single number (a 0-d array): avoid indexing or axes that need a dimension.",
    "nonfinite": "torch carries NaN and ±inf through (NaN in, NaN out; inf where the math gives inf).",
    "unbatched": "torch also takes one unbatched sample, without the batch dimension: (C, H, W) for conv2d and pooling, (C, L) for "
                 "conv1d, a (C,) input with a 0-d target for losses, a 1-D input for linear.",
    "probabilities": "torch also takes class probabilities as the target (a float array shaped like the input).",
    "endpoints": "At p = 0 or 1 the log is -inf: torch clamps each log at -100, so each term is at most 100 "
                 "(clipping p at some eps instead gives another number near 0 and 1).",
    "kink": "At exactly the kink (x = 0) the function has no derivative: torch picks one value there (ReLU: 0).",
    "overflow": "np.exp overflows past x ≈ 709 and underflows below -745: rearrange so no large positive number is exponentiated.",
    "tiny": "For tiny inputs exp(x) - 1 and log(1 + x) lose all their digits: use np.expm1 and np.log1p.",
}


def situation(case: Case, recipe: Recipe, raised: bool) -> str:
    """What is special about an edge case. A function that raised most likely met an unusual shape;
    one that returned a wrong value, an unusual value."""
    arrays = [np.asarray(v) for v in case.inputs.values() if isinstance(v, np.ndarray)]
    first, target = arrays[0], case.inputs.get("target")
    mask = case.params.get("attn_mask")
    if isinstance(mask, np.ndarray) and mask.size and ((~mask).all(axis=-1).any() if mask.dtype == bool else np.isneginf(mask).all(axis=-1).any()):
        return "masked"
    if raised or any(a.size == 0 for a in arrays):
        if any(a.size == 0 for a in arrays):
            return "empty"
        if first.ndim == 0:
            return "scalar"
        if recipe.knobs.get("batched") is False:  # conv and pooling drew one sample without its batch dimension
            return "unbatched"
        if first.ndim == 1 and ("ignore_index" in case.params or np.ndim(case.inputs.get("weight")) == 2):
            return "unbatched"
        if isinstance(target, np.ndarray) and target.dtype.kind == "f" and target.shape == first.shape and "label_smoothing" in case.params:
            return "probabilities"
        if any(v is None for v in case.inputs.values()):
            return "optional"
    if any(a.dtype.kind == "f" and not np.isfinite(a).all() for a in arrays) or recipe.regime == "extremal":
        return "nonfinite"
    if "target" in case.inputs and first.dtype.kind == "f" and first.min() >= 0 and first.max() <= 1 and (np.minimum(first, 1 - first) < 1e-6).any():
        return "endpoints"
    return {"ties": "kink", "small": "tiny"}.get(recipe.regime, "overflow")


def lesson(spec: OpSpec, where: str) -> str:
    return spec.lessons.get(where) or GENERIC_LESSONS.get(where, "")


def show(value: Any, prefix: str = "") -> str:
    """A value as the explanation prints it after ``prefix`` (continuation lines aligned under it)."""
    if isinstance(value, np.ndarray):
        # floatmode 'unique': each value printed as the shortest string that reads back exactly, so a
        # case can be pasted into torch (1 - 2e-9 is not shown as 1.).
        return np.array2string(value, floatmode="unique", threshold=24, separator=", ", prefix=prefix)
    return repr(value)
