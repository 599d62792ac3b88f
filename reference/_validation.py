"""Argument checks and reductions shared by the references.

Every public reference converts its inputs here, so a bad argument fails at the door with a
``ValueError``/``TypeError`` that names it, never deep inside numpy.
"""
from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, TypeVar

import numpy as np

REDUCTIONS = ("none", "mean", "sum")
F = TypeVar("F", bound=Callable[..., Any])


def quiet(fn: F) -> F:
    """Silence numpy's floating-point warnings: NaN and inf propagate by design, as in torch."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _describe(value: Any) -> str:
    return f"dtype {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__


def as_float(value: Any, name: str) -> np.ndarray:
    """``value`` as a float64 array; real numbers only (bool, complex and objects are refused)."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real-valued array, got {type(value).__name__}") from exc
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real-valued array, got {_describe(array)}")
    return array.astype(np.float64)


def as_optional_float(value: Any, name: str) -> np.ndarray | None:
    return None if value is None else as_float(value, name)


def as_index(value: Any, name: str) -> np.ndarray:
    """``value`` as an int64 array of class indices; floats and bools are refused."""
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class indices, got {_describe(array)}")
    return array.astype(np.int64)


def check_reduction(reduction: Any) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def check_dim(dim: Any, ndim: int, name: str = "dim") -> int:
    """Normalise a possibly negative dimension index, as torch does (a 0-d tensor has dim 0 or -1)."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(dim).__name__}")
    rank = max(ndim, 1)
    if not -rank <= dim < rank:
        raise ValueError(f"{name}={dim} is out of range for an input with {ndim} dimensions")
    return int(dim) % rank


def check_same_shape(input: np.ndarray, target: np.ndarray, name: str = "target") -> None:
    if input.shape != target.shape:
        raise ValueError(f"{name} shape {target.shape} must equal the input shape {input.shape}")


def check_broadcastable(value: np.ndarray | None, shape: tuple[int, ...], name: str) -> None:
    if value is None:
        return
    try:
        if np.broadcast_shapes(value.shape, shape) != shape:
            raise ValueError
    except ValueError:
        raise ValueError(f"{name} of shape {value.shape} does not broadcast to the input shape {shape}") from None


def reduce(loss: np.ndarray, reduction: str, divisor: float | None = None) -> np.ndarray:
    """Apply ``reduction``; 'mean' divides the sum by ``divisor`` (default: the element count).

    The sum is taken in np.longdouble and rounded to float64 once, so a mean is as accurate as
    its terms (tests/test_accuracy.py measures it against a 50-digit truth)."""
    if reduction == "none":
        return np.asarray(loss, dtype=np.float64)
    total = np.asarray(loss, dtype=np.longdouble).sum()
    if reduction == "sum":
        return np.asarray(total, dtype=np.float64)
    return np.asarray(total / (loss.size if divisor is None else divisor), dtype=np.float64)


def reduce_backward(grad_output: Any, shape: tuple[int, ...], reduction: str, divisor: float | None = None) -> np.ndarray:
    """Spread the upstream gradient of a reduction back over the ``shape`` of the unreduced loss.

    d sum/d l_i = 1 and d mean/d l_i = 1/divisor, so each element receives g (or g/divisor).
    """
    g = as_float(grad_output, "grad_output")
    if reduction == "none":
        if g.shape != shape:
            raise ValueError(f"grad_output shape {g.shape} must equal the loss shape {shape}")
        return g
    if g.size != 1:
        raise ValueError(f"grad_output of a reduced loss must be a scalar, got shape {g.shape}")
    g = np.broadcast_to(g.reshape(()), shape)
    if reduction == "sum":
        return g
    count = int(np.prod(shape)) if divisor is None else divisor
    return g / count


def check_grad_shape(grad_output: Any, shape: tuple[int, ...]) -> np.ndarray:
    g = as_float(grad_output, "grad_output")
    if g.shape != shape:
        raise ValueError(f"grad_output shape {g.shape} must equal the output shape {shape}")
    return g


def tangents(tangent: Any, shapes: dict[str, tuple[int, ...] | None]) -> tuple[np.ndarray | None, ...]:
    """A JVP's ``tangent`` argument as one float64 array (or None: that input held fixed) per
    differentiable input, in ``shapes``' order (the backward's); an input that is absent (None
    shape, Linear without a bias) takes no tangent. One array stands for an op with one input."""
    names = list(shapes)
    given = (tangent,) if len(names) == 1 else tangent
    if not isinstance(given, (tuple, list)) or len(given) != len(names):
        raise TypeError(f"tangent must be a tuple of {len(names)} arrays or None ({', '.join(names)}), got {type(tangent).__name__}")
    result = []
    for name, t in zip(names, given):
        if t is None:
            result.append(None)
            continue
        if shapes[name] is None:
            raise ValueError(f"tangent for {name} given, but {name} is None")
        t = as_float(t, f"tangent for {name}")
        if t.shape != shapes[name]:
            raise ValueError(f"tangent for {name} has shape {t.shape}, {name} has {shapes[name]}")
        result.append(t)
    return tuple(result)


def symmetric_jvp(backward: Callable[..., np.ndarray], tangent: Any, input: Any, *params: Any) -> np.ndarray:
    """J t of an op of one input whose Jacobian is symmetric (an elementwise op's is diagonal,
    softmax's is diag(p) - p pᵀ), so that J t = Jᵀ t: its backward with the tangent as the
    upstream gradient (zeros for no tangent)."""
    x = as_float(input, "input")
    (t,) = tangents(tangent, {"input": x.shape})
    return np.zeros(x.shape) if t is None else backward(t, x, *params)


def _flag(value: Any, name: str) -> bool | None:
    if value is None or isinstance(value, (bool, np.bool_)):
        return value
    raise TypeError(f"{name} must be a bool or None, got {value!r} "
                    "(reduction comes after size_average and reduce in torch's signature: pass it by keyword)")


def legacy_reduction(size_average: Any, reduce: Any, reduction: Any) -> str:
    """The reduction a loss applies: ``reduction``, unless either deprecated flag is given, which then
    decides as torch's ``_Reduction.legacy_get_string`` does (a None flag counts as True):
    both true is 'mean', ``reduce`` alone true is 'sum', ``reduce=False`` is 'none'.

    Unlike torch, which takes any truthy value, a flag that is not a bool is a ``TypeError``: in
    ``loss(x, y, "sum")`` the string lands in ``size_average`` and torch silently takes the mean.
    """
    size_average, reduce = _flag(size_average, "size_average"), _flag(reduce, "reduce")
    if size_average is None and reduce is None:
        return reduction
    reduce, size_average = reduce is not False, size_average is not False
    chosen = "mean" if size_average and reduce else "sum" if reduce else "none"
    warnings.warn(f"size_average and reduce args will be deprecated, please use reduction='{chosen}' instead.", stacklevel=4)
    return chosen


def write_back(input: Any, result: np.ndarray, inplace: Any) -> np.ndarray:
    """torch's ``inplace=True``: the result is written into ``input`` (rounded to its dtype), which is
    returned; otherwise ``result`` itself."""
    if not isinstance(inplace, (bool, np.bool_)):
        raise TypeError(f"inplace must be a bool, got {inplace!r}")
    if not inplace:
        return result
    if not (isinstance(input, np.ndarray) and input.dtype.kind == "f" and input.flags.writeable):
        raise TypeError(f"inplace=True writes into input, which must be a writable float array, got {_describe(input)}")
    np.copyto(input, result, casting="same_kind")
    return input
