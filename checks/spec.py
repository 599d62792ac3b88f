"""What a registry entry is: an :class:`OpSpec`, the :class:`Recipe` hypothesis draws for it, and the
:class:`Case` (arrays and parameters) a recipe becomes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from hypothesis import strategies as st

import reference
from checks.dtypes import DTYPE_NAMES, DtypeInfo
from checks.values import REGIMES

FLOAT_DTYPES = DTYPE_NAMES


@dataclass(frozen=True)
class Recipe:
    """Everything needed to rebuild a case: hypothesis draws and shrinks this, numpy does the rest."""

    seed: int
    regime: str
    shape: tuple[int, ...]
    knobs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """The arguments of one call, in float64 (floats already rounded to the dtype under test) or int64.

    ``inputs`` are passed positionally in torch's order; ``params`` by keyword. Arrays in either
    become tensors on the device; None stays None.
    """

    inputs: dict[str, np.ndarray | None]
    params: dict[str, Any] = field(default_factory=dict)
    info: DtypeInfo | None = None  # the dtype under test, for scales that depend on it
    # Keyword arguments of the registry's torch callables only, never the reference's: which kernel
    # torch runs (scaled_dot_product_attention's backend), not what it computes.
    torch: dict[str, Any] = field(default_factory=dict)

    def fresh(self) -> "Case":
        """The same case with its arrays copied: a reference that updates an argument in place, as
        torch does (batch_norm's running statistics, embedding's max_norm), leaves this one as drawn."""
        copy = lambda v: v.copy() if isinstance(v, np.ndarray) else v  # noqa: E731
        return Case({k: copy(v) for k, v in self.inputs.items()}, {k: copy(v) for k, v in self.params.items()}, self.info, dict(self.torch))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in {**self.inputs, **self.params}.items() if isinstance(v, np.ndarray)}


def per_case(compute: Callable[[Case], Any]) -> Callable[[Case], Any]:
    """``compute(case)`` kept for the last case asked: a registry entry's scale and grad_scale are
    asked of the same case in turn, and may share an analysis that costs more than the op."""
    last: list = [None, None]

    def kept(case: Case) -> Any:
        if last[0] is not case:
            last[:] = [case, compute(case)]
        return last[1]

    return kept


def per_object(compute: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``compute(x)`` kept for each object x, by identity: registry specs and their strategies hold
    dicts and lambdas, so they cannot be hashed; x is held too, so its id is not reused. Bounded:
    specs made on the fly (a learner's, a test's ``dataclasses.replace``) clear it now and then."""
    kept: dict[int, tuple[Any, Any]] = {}

    def lookup(x: Any) -> Any:
        found = kept.get(id(x))
        if found is None or found[0] is not x:
            if len(kept) >= 4096:
                kept.clear()
            found = kept[id(x)] = (x, compute(x))
        return found[1]

    return lookup


@dataclass(frozen=True)
class KnownMistake:
    """A mistake students make with an op, as a formula: ``model(case, grad_output)`` is what the
    mistaken code returns for ``phase`` on the case (None where the mistake changes nothing there).
    A learner whose wrong answer is the model's is told ``lesson`` (checks/learner/diagnose.py)."""

    name: str
    phase: str
    model: Callable[[Case, "np.ndarray | None"], Any]
    lesson: str


Make = Callable[[np.random.Generator, Recipe, DtypeInfo], Case]
Scale = Callable[[Case, np.ndarray], Any]
GradScale = Callable[[Case, np.ndarray], dict[str, Any]]


def loaded(layer: torch.nn.Module, **tensors: torch.Tensor | None) -> torch.nn.Module:
    """``layer`` with each given tensor copied into its parameter or buffer of the same name (None
    skipped): a registry's module path run on exactly the functional's arguments."""
    with torch.no_grad():
        for name, value in tensors.items():
            if value is not None:
                getattr(layer, name).copy_(value)
    return layer


def _zero_scale(case: Case, expected: np.ndarray) -> float:
    return 0.0


def _upstream_scale(case: Case, grad_output: np.ndarray) -> dict[str, Any]:
    return {"input": np.abs(grad_output)}


@dataclass(frozen=True)
class OpSpec:
    """One op: how to draw its inputs, what to call in torch, and how to judge the answer.

    The reference forward and backward are found by name in :mod:`reference`
    (``reference.<name>`` and ``reference.<name>_backward``), as torch names them.
    """

    name: str
    functional: Callable[..., torch.Tensor]
    module: Callable[..., torch.Tensor] | None  # the nn.Module path, called like the functional
    make: Make
    shapes: st.SearchStrategy[tuple[int, ...]]
    knobs: st.SearchStrategy[dict[str, Any]] = st.just({})
    regimes: tuple[str, ...] = REGIMES
    scale: Scale = _zero_scale  # natural size of the output (see checks.tolerance)
    grad_scale: GradScale = _upstream_scale  # natural size of each gradient, by input name
    grad_inputs: tuple[str, ...] = ("input",)
    dtypes: tuple[str, ...] = FLOAT_DTYPES
    notes: str = ""
    # More than 100k elements, so torch takes its vectorised, multi-threaded paths (the large
    # strided test in tests/test_against_torch.py).
    large_shape: tuple[int, ...] = (384, 300)
    # A learner's check (checks/learner): the course stage draws these shapes and knobs (default:
    # non-empty arrays of 1 or 2 dimensions, the op's knobs) from the normal regime; ``lessons``
    # says, per situation of a failing edge case ("overflow", "tiny", "kink", "endpoints",
    # "empty", "scalar", "nonfinite", "unbatched", "probabilities"), what to do instead.
    course_shapes: st.SearchStrategy[tuple[int, ...]] | None = None
    course_knobs: st.SearchStrategy[dict[str, Any]] | None = None
    # Knobs named otherwise than the arguments they set: knob -> (those arguments, the knob's value
    # that leaves them at torch's defaults). A learner's check draws each argument the function does
    # not declare at its default (a knob named like its argument needs no entry).
    knob_defaults: dict[str, tuple[tuple[str, ...], Any]] = field(default_factory=dict)
    mistakes: tuple[KnownMistake, ...] = ()  # named when a learner's wrong answer is one of them
    # The arguments the op updates in place (batch_norm's running statistics in training), each with
    # the natural size of its new value, for the case as drawn: judged after the call as "updated[name]".
    updates: Callable[[Case], dict[str, Any]] | None = None
    lessons: dict[str, str] = field(default_factory=dict)
    # A network layer (checks/networks.py): the nn.Module class built with the drawn knobs, and the
    # knobs a network draws (default: ``knobs``; softmax's must be dim=-1).
    layer: Callable[..., torch.nn.Module] | None = None
    layer_knobs: st.SearchStrategy[dict[str, Any]] | None = None
    # The knobs under which autograd's gradient is the derivative of the forward (tests/test_gradcheck.py);
    # default: all of them. Embedding's max_norm renormalises outside autograd, by design.
    gradcheck_knobs: st.SearchStrategy[dict[str, Any]] | None = None

    @property
    def forward(self) -> Callable[..., np.ndarray]:
        return getattr(reference, self.name)

    @property
    def backward(self) -> Callable[..., Any] | None:
        return getattr(reference, f"{self.name}_backward", None)

    @property
    def differentiable(self) -> bool:
        return self.backward is not None
