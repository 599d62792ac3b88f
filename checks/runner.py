"""Run one case of one op on one device and dtype, and return its comparison records.

The recipe becomes arrays (rounded to the dtype under test), the reference runs on exactly those
values in float64, torch runs its functional and its module on the same values as tensors, and
autograd's gradients are compared with the hand-derived ``_backward``.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

import numpy as np
import torch

from checks import departures, devices, dtypes
from checks.compare import Comparison, Context, compare
from checks.dtypes import DtypeInfo
from checks.registry import get
from checks.spec import Case, OpSpec, Recipe, per_object
from checks.tolerance import k_for

LAYOUTS = ("contiguous", "strided")


def info_for(dtype: str) -> DtypeInfo:
    return dtypes.INT64 if dtype == "int64" else dtypes.get(dtype)


def build_case(spec: OpSpec, recipe: Recipe, info: DtypeInfo) -> Case:
    """The recipe's arrays, floats rounded to the dtype under test (the reference sees those values)."""
    case = spec.make(np.random.default_rng(recipe.seed), recipe, info)

    def rounded(value: Any) -> Any:
        if isinstance(value, np.generic):  # numpy draws of shape () come back as scalars
            value = np.asarray(value)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            if info.name == "int64":
                return value
            # A float16/float32 array keeps its numpy dtype (exactly: its values are the dtype's):
            # rms_norm's eps=None means the input dtype's eps, for torch and the reference alike.
            return dtypes.round_to(value, info).astype(value.dtype if value.dtype in (np.float16, np.float32) else np.float64)
        return value

    return Case({k: rounded(v) for k, v in case.inputs.items()}, {k: rounded(v) for k, v in case.params.items()}, info, case.torch)


def _strided(array: np.ndarray, dtype: torch.dtype, device: str) -> torch.Tensor:
    """The same values in a non-contiguous tensor: a transposed buffer, or every other element."""
    if array.ndim >= 2:
        buffer = torch.from_numpy(np.ascontiguousarray(np.swapaxes(array, -1, -2))).to(device=device, dtype=dtype)
        return buffer.transpose(-1, -2)
    if array.ndim == 1:
        return torch.from_numpy(np.repeat(array, 2)).to(device=device, dtype=dtype)[::2]
    return torch.from_numpy(np.array(array)).to(device=device, dtype=dtype)


def to_tensor(value: Any, info: DtypeInfo, device: str, *, layout: str = "contiguous", grad: bool = False) -> Any:
    """Arrays (numpy scalars included) become tensors of ``info``'s dtype, int64 for integers, bool for booleans;
    anything else (None, ints, strings) is passed through as it is."""
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        return value
    dtype = torch.int64 if value.dtype.kind in "iu" else torch.bool if value.dtype.kind == "b" else info.torch
    if layout == "strided":
        tensor = _strided(value, dtype, device)
    else:
        tensor = torch.from_numpy(np.array(value, order="C")).to(device=device, dtype=dtype)
    return tensor.requires_grad_(grad) if grad else tensor


def _describe_params(case: Case) -> str:
    def show(value: Any) -> str:
        return f"array{value.shape}" if isinstance(value, np.ndarray) else repr(value)

    extra = {k: v for k, v in case.inputs.items() if k != next(iter(case.inputs))}
    return ", ".join(f"{k}={show(v)}" for k, v in {**extra, **case.params}.items())


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A tensor's values as a float64 numpy array on the CPU."""
    return tensor.detach().to("cpu", torch.float64).numpy()


class Runner:
    """Runs the cases of one op on one device and dtype.

    ``hand`` replaces the references with someone's own module of functions under the same names
    (a learner's, see checks/learner/); a function it lacks is not checked.
    """

    def __init__(self, spec: OpSpec, device: str, dtype: str, hand: ModuleType | None = None) -> None:
        self.spec, self.device, self.dtype, self.info = spec, device, dtype, info_for(dtype)
        self.hand_forward = spec.forward if hand is None else getattr(hand, spec.name, None)
        self.hand_backward = spec.backward if hand is None else getattr(hand, f"{spec.name}_backward", None)

    def _context(self, case: Case, recipe: Recipe, phase: str, path: str, layout: str) -> Context:
        shape = tuple(next(iter(case.inputs.values())).shape)
        repro = f"checks.runner.reproduce({self.spec.name!r}, {recipe!r}, {self.device!r}, {self.dtype!r}" + (
            f", layout={layout!r})" if layout != "contiguous" else ")"
        )
        return Context(self.spec.name, phase, path, self.device, self.dtype, shape, _describe_params(case), repro)

    def evaluate(self, recipe: Recipe, *, gradient: bool = True, layout: str = "contiguous", module: bool = True, case: Case | None = None) -> Evaluation:
        """What torch computes for the recipe (or for ``case``, prepared from it): functional and
        module outputs and, for a random upstream gradient, autograd's gradient of every
        differentiable input."""
        spec, info = self.spec, self.info
        case = build_case(spec, recipe, info) if case is None else case
        tensors = {name: to_tensor(v, info, self.device, layout=layout, grad=gradient and name in spec.grad_inputs) for name, v in case.inputs.items()}
        # A keyword argument can be differentiable too (layer_norm's weight and bias follow normalized_shape).
        params = {k: to_tensor(v, info, self.device, grad=gradient and k in spec.grad_inputs) for k, v in case.params.items()} | case.torch
        out = spec.functional(*tensors.values(), **params)
        updated = {name: to_numpy({**tensors, **params}[name]) for name in (spec.updates(case) if spec.updates else {})}
        module_out = None
        if module and spec.module is not None:
            with torch.no_grad():  # a module that has no form for these arguments returns None
                module_result = spec.module(*tensors.values(), **params)
            module_out = None if module_result is None else to_numpy(module_result)
        precision = _precision(info, out)
        if not gradient:
            return Evaluation(case, to_numpy(out), module_out, precision=precision, updated=updated)
        grad_output = dtypes.round_to(np.random.default_rng(recipe.seed + 1).normal(0.0, 1.0, tuple(out.shape)), precision)
        out.backward(to_tensor(grad_output, info, self.device))
        grads = {}
        for name in spec.grad_inputs:
            t = tensors.get(name, params.get(name))
            if isinstance(t, torch.Tensor):
                grads[name] = np.zeros(tuple(t.shape)) if t.grad is None else to_numpy(t.grad)
        return Evaluation(case, to_numpy(out), module_out, grad_output, grads, precision, updated)

    def run(self, recipe: Recipe, *, gradient: bool = True, layout: str = "contiguous") -> list[Comparison]:
        ev = self.evaluate(recipe, gradient=gradient and self.hand_backward is not None, layout=layout, module=self.hand_forward is not None)
        return self.judge(ev, recipe, layout)

    def judge(self, ev: Evaluation, recipe: Recipe, layout: str = "contiguous") -> list[Comparison]:
        """Compare an evaluation with the hand functions under the policy: one record per phase and path."""
        spec, info = self.spec, ev.precision or self.info
        checks_forward = self.hand_forward is not None
        case = ev.case
        records: list[Comparison] = []
        if checks_forward:
            ref = case.fresh()
            expected = spec.forward(*ref.inputs.values(), **ref.params)
            mine = ref
            if self.hand_forward is spec.forward:
                hand = expected
            else:
                mine = case.fresh()
                hand = call_accepted(self.hand_forward, *mine.inputs.values(), **mine.params)
            with np.errstate(all="ignore"):  # scales of inf/NaN inputs are inf/NaN, by design
                scale = spec.scale(case, expected)
            k = k_for("forward", info.name)
            # Only an inf from torch can need the overflow allowance: don't re-run the reference otherwise.
            overflow = bool(np.isinf(ev.forward).any() or (ev.module is not None and np.isinf(ev.module).any())) and terms_overflow(spec, case, info)
            judge = functools.partial(compare, expected=hand, scale=scale, info=info, k=k, terms_overflow=overflow, **self._quirks(case, "forward", None, scale))
            records.append(judge(ev.forward, context=self._context(case, recipe, "forward", "functional", layout)))
            if ev.module is not None:
                records.append(judge(ev.module, context=self._context(case, recipe, "forward", "module", layout)))
            records += self._updates(ev, recipe, layout, mine)
        if ev.grad_output is not None:
            records += self._gradients(ev, recipe, layout)
        return records

    def _updates(self, ev: Evaluation, recipe: Recipe, layout: str, hand: Case) -> list[Comparison]:
        """The arguments torch updated in place against the hand function's same arguments after its call."""
        if not ev.updated:
            return []
        info, sizes = ev.precision or self.info, self.spec.updates(ev.case)
        k = k_for("forward", info.name)
        return [compare(theirs, np.asarray({**hand.inputs, **hand.params}[name], dtype=np.float64), scale=sizes[name], info=info, k=k,
                        context=self._context(ev.case, recipe, f"updated[{name}]", "functional", layout))
                for name, theirs in ev.updated.items()]

    def _gradients(self, ev: Evaluation, recipe: Recipe, layout: str) -> list[Comparison]:
        spec, info, case = self.spec, ev.precision or self.info, ev.case
        mine = case.fresh()
        hand = call_accepted(self.hand_backward, ev.grad_output, *mine.inputs.values(), **mine.params)
        hand = dict(zip(spec.grad_inputs, hand if isinstance(hand, tuple) else (hand,)))
        with np.errstate(all="ignore"):
            scales = spec.grad_scale(case, ev.grad_output)
        k = k_for("gradient", info.name)
        return [
            compare(ev.grads[name], expected, scale=scales[name], info=info, k=k, context=self._context(case, recipe, f"grad[{name}]", "autograd", layout),
                    **self._quirks(case, f"grad[{name}]", ev.grad_output, scales[name]))
            for name, expected in hand.items()
            if name in ev.grads
        ]

    def _quirks(self, case: Case, phase: str, grad_output: np.ndarray | None, scale: Any) -> dict[str, Any]:
        """The quirks active for this comparison here and now, and where they are judged."""
        quirks = departures.active(self.spec.name, phase, self.dtype, self.device)
        if not quirks:
            return {}
        return {"quirks": quirks, "where": departures.Where(case, phase, grad_output, np.abs(np.asarray(scale, dtype=np.float64)), self.spec.name)}


@dataclass(frozen=True)
class Evaluation:
    """torch's results for one case, as float64 arrays."""

    case: Case
    forward: np.ndarray
    module: np.ndarray | None = None
    grad_output: np.ndarray | None = None
    grads: dict[str, np.ndarray] = field(default_factory=dict)
    precision: DtypeInfo | None = None  # the coarser of the case's dtype and the one torch computed in
    updated: dict[str, np.ndarray] = field(default_factory=dict)  # the arguments torch updated in place, after the call


def _precision(info: DtypeInfo, out: torch.Tensor) -> DtypeInfo:
    """The dtype a result was computed in, for its tolerance: the case's, unless the op was asked to
    compute in a coarser one (softmax(x, dim, dtype=torch.float32) on float64 input)."""
    if info.name == "int64" or not out.dtype.is_floating_point:
        return info
    computed = dtypes.get(str(out.dtype).removeprefix("torch."))
    return computed if computed.eps > info.eps else info


@functools.lru_cache(maxsize=1024)  # asked on every call of every example: inspect.signature is slow
def accepted(fn: Callable[..., Any]) -> frozenset[str] | None:
    """The keyword arguments ``fn`` takes, or None when it takes any (**kwargs)."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params)


def call_accepted(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with only the keyword arguments it declares (a learner's ``softmax(x, dim)`` is
    not offered ``dtype=``); cases that need a missing argument are filtered out beforehand."""
    names = accepted(fn)
    return fn(*args, **(kwargs if names is None else {k: v for k, v in kwargs.items() if k in names}))


def terms_overflow(spec: OpSpec, case: Case, info: DtypeInfo) -> bool:
    """Whether a reduced loss sums terms that overflow the dtype by themselves (see compare)."""
    if case.params.get("reduction") not in ("mean", "sum"):
        return False
    case = case.fresh()
    terms = spec.forward(*case.inputs.values(), **{**case.params, "reduction": "none"})
    return bool(np.isinf(dtypes.round_to(terms, info)).any()) if info.name != "int64" else False


@functools.lru_cache(maxsize=None)
def unsupported(name: str, device: str, dtype: str) -> str | None:
    """Why torch cannot run op ``name`` in ``dtype`` on ``device`` (found by trying), or None."""
    reason = devices.unavailable_reason(device) or devices.unsupported_reason(device, dtype)
    if reason:
        return reason
    spec = get(name)
    if dtype not in spec.dtypes:
        return f"{name} is not defined for {dtype} (its dtypes: {', '.join(spec.dtypes)})"
    probe = Recipe(seed=0, regime=spec.regimes[0], shape=(2, 3), knobs=simplest_knobs(spec))
    try:
        Runner(spec, device, dtype).run(probe)
    except (RuntimeError, NotImplementedError, TypeError) as exc:
        if "not implemented" in str(exc).lower() or "not supported" in str(exc).lower():
            return f"torch {torch.__version__} cannot run {name} in {dtype} on {device}: {exc}".splitlines()[0]
        raise
    return None


def simplest_knobs(spec: OpSpec) -> dict[str, Any]:
    """The simplest knobs hypothesis can draw for ``spec``: its first generated example is the
    all-zero choice sequence, which is already the shrink target, so no shrinking is needed.
    Found once per knobs strategy (verify asks for every cell of an op)."""
    return dict(_simplest(spec.knobs))


@per_object
def _simplest(knobs: Any) -> dict[str, Any]:
    from hypothesis import Phase, find, settings

    return find(knobs, lambda _: True, settings=settings(database=None, phases=[Phase.generate], max_examples=1))


def reproduce(name: str, recipe: Recipe, device: str = "cpu", dtype: str = "float64", layout: str = "contiguous") -> list[Comparison]:
    """Re-run a case from the 'reproduce:' line of a failure; prints and returns its records."""
    records = Runner(get(name), device, dtype).run(recipe, layout=layout)
    for record in records:
        print(record.message())
    return records
