"""Who is more accurate: the reference and torch, each measured against the 50-digit oracle.

For one op and dtype, run the registry's cases (finite elements of the truth only), and record the
worst error of each side in ULPs of the dtype under test, both pure (at the true value) and floored
at the op's natural scale (see checks.tolerance), for outputs and gradients. The reference computes
in float64, so its error is also reported in float64 ULPs: that is its own accuracy, while torch's
is measured in the dtype it computes in (the coarser of the case's and an op's ``dtype`` argument).
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np

from checks import departures, dtypes
from checks.runner import Runner, build_case, terms_overflow
from checks.spec import Case, OpSpec, Recipe
from checks.strategies import recipes, search
from reference import oracle

F64 = dtypes.get("float64")


@dataclass
class Worst:
    """The largest error seen, in ULPs, pure and floored at the natural scale."""

    pure: float = 0.0
    floored: float = 0.0

    def update(self, value: np.ndarray, truth: np.ndarray, scale: np.ndarray, info: dtypes.DtypeInfo) -> None:
        finite = np.isfinite(truth)
        if not finite.any():
            return
        v, t = np.broadcast_to(value, truth.shape)[finite], truth[finite]
        s = np.broadcast_to(np.nan_to_num(np.abs(scale), nan=0.0, posinf=0.0), truth.shape)[finite]
        err = np.abs(v - t)
        err = np.where(np.isnan(err), np.inf, err)
        with np.errstate(over="ignore"):  # an error in ULPs of a truth near 0 may be past float64's range: inf, rightly
            self.pure = max(self.pure, float(np.max(err / dtypes.ulp(t, info))))
        # Floored as the policy measures it: beyond the smallest-normal allowance (flushes to 0).
        beyond = np.maximum(err - info.tiny, 0.0)
        self.floored = max(self.floored, float(np.max(beyond / dtypes.ulp(np.fmax(np.abs(t), s), info))))


@dataclass
class Accuracy:
    op: str
    dtype: str
    cases: int = 0
    outputs: int = 0
    torch: dict[str, Worst] = field(default_factory=lambda: {"forward": Worst(), "gradient": Worst()})
    reference: dict[str, Worst] = field(default_factory=lambda: {"forward": Worst(), "gradient": Worst()})  # in the dtype's ULPs
    reference_f64: dict[str, Worst] = field(default_factory=lambda: {"forward": Worst(), "gradient": Worst()})  # in float64 ULPs

    def to_dict(self) -> dict:
        return asdict(self)


def measure(spec: OpSpec, dtype: str, *, examples: int = 30, device: str = "cpu") -> Accuracy:
    """Worst errors of torch and of the reference against the oracle over ``examples`` cases."""
    result = Accuracy(spec.name, dtype)
    runner = Runner(spec, device, dtype)

    search(recipes(spec), functools.partial(_sample, result, runner), examples=examples,
           name=f"accuracy {spec.name}-{device}-{dtype}")  # not verify's draws of the cell
    return result


def _sample(result: Accuracy, runner: Runner, recipe: Recipe) -> None:
    """One example of :func:`measure`: torch's and the reference's errors against the oracle."""
    spec, dtype = runner.spec, runner.dtype
    ev = runner.evaluate(recipe, module=False, case=finite(build_case(spec, recipe, dtypes.get(dtype))))
    case, info = ev.case, ev.precision  # softmax(dtype="float32") on float64 is measured in float32's ULPs
    with np.errstate(all="ignore"):
        truth = oracle.forward(spec.name, *case.inputs.values(), **case.params)  # the oracle works on copies
        ours_case = case.fresh()  # a reference may update an argument in place (embedding's max_norm)
        ours = spec.forward(*ours_case.inputs.values(), **ours_case.params)
        scale = spec.scale(case, truth)
        # A reduction whose own terms overflow the dtype may be inf by IEEE rounding (the
        # policy accepts it, see checks.compare): not an accuracy question, so not measured.
        if not (np.isinf(ev.forward).any() and terms_overflow(spec, case, info)):
            theirs = _outside_quirks(ev.forward, dtypes.round_to(truth, info), departures.Where(case, "forward", None, np.abs(scale), spec.name), runner)
            _record(result, "forward", theirs, ours, dtypes.round_to(truth, info), truth, scale, info)
        true_grads = oracle.backward(spec.name, ev.grad_output, *case.inputs.values(), **case.params)
        mine = case.fresh()
        hand = spec.backward(ev.grad_output, *mine.inputs.values(), **mine.params)
        scales = spec.grad_scale(case, ev.grad_output)
    pairs = zip(spec.grad_inputs, *(x if isinstance(x, tuple) else (x,) for x in (true_grads, hand)))
    for name, t, h in pairs:
        if name in ev.grads:
            where = departures.Where(case, f"grad[{name}]", ev.grad_output, np.abs(scales[name]), spec.name)
            theirs = _outside_quirks(ev.grads[name], dtypes.round_to(t, info), where, runner)
            _record(result, "gradient", theirs, h, dtypes.round_to(t, info), t, scales[name], info)
    result.cases += 1
    result.outputs += int(np.size(truth))


def measure_named(op: str, dtype: str, examples: int = 30) -> Accuracy:
    """:func:`measure` for the registry op named ``op``: a plain call a worker process can run."""
    from checks.registry import get

    return measure(get(op), dtype, examples=examples)


def _outside_quirks(theirs: np.ndarray, truth: np.ndarray, where: departures.Where, runner: Runner) -> np.ndarray:
    """torch's values, with those in an active quirk's region replaced by the truth (not measured)."""
    mask = departures.in_active_regions(runner.spec.name, runner.dtype, runner.device, where, np.shape(theirs))
    return np.where(mask, truth, theirs) if mask.any() else theirs


def finite(case: Case) -> Case:
    """Accuracy is about finite numbers: the extremal draws' infinities and NaNs become 0 (their
    handling is a convention, pinned in tests/test_conventions.py); subnormals, overflow thresholds
    and 1e4 stay."""
    def clean(v):
        return np.where(np.isfinite(v), v, 0.0) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v

    return Case({k: clean(v) for k, v in case.inputs.items()}, {k: clean(v) for k, v in case.params.items()}, case.info, case.torch)


def _record(result: Accuracy, phase: str, theirs: np.ndarray, ours: np.ndarray, truth_in_dtype: np.ndarray, truth: np.ndarray, scale, info) -> None:
    result.torch[phase].update(theirs, truth_in_dtype, scale, info)
    result.reference[phase].update(dtypes.round_to(ours, info), truth_in_dtype, scale, info)
    result.reference_f64[phase].update(ours, truth, scale, F64)

