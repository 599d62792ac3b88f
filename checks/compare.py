"""Comparison of a torch result against the reference, as a frozen record.

Every check in byhand ends in a :class:`Comparison`: tests assert on it, ``byhand verify`` tabulates
it, reports and baselines store it. Non-finite values agree only with themselves (NaN with NaN, inf
with the same inf), except that a torch inf is right where the reference's value overflows the dtype.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from checks.dtypes import DtypeInfo, ulp
from checks.tolerance import bound, ulp_error, unit

if TYPE_CHECKING:
    from checks.departures import Departure, Where


@dataclass(frozen=True)
class Context:
    """What was compared: enough to name a failure and to reproduce it."""

    op: str
    phase: str  # "forward", "grad[input]", "grad[weight]", ...
    path: str  # "functional", "module", "autograd"
    device: str
    dtype: str
    shape: tuple[int, ...]
    params: str = ""
    repro: str = ""


@dataclass(frozen=True)
class Comparison:
    context: Context
    n: int
    n_bad: int
    max_abs_err: float
    max_rel_err: float
    max_ulp_err: float  # floored ULP error, see checks.tolerance.ulp_error
    k: float
    worst_index: tuple[int, ...]
    worst_actual: float
    worst_expected: float
    worst_bound: float
    passed: bool
    notes: tuple[str, ...] = field(default=())
    # Known deviations: (quirk id, elements) that an active quirk accounts for; not failures.
    deviations: tuple[tuple[str, int], ...] = field(default=())

    def message(self) -> str:
        c = self.context
        idx = ",".join(map(str, self.worst_index))
        verdict = "agrees" if self.passed else "DISAGREES"
        lines = [
            f"{c.op} {c.phase} via {c.path} {verdict} with the reference [{c.device} {c.dtype}, shape {c.shape}{', ' + c.params if c.params else ''}]",
            f"  worst element [{idx}]: torch gave {self.worst_actual!r}, but should be {self.worst_expected!r}"
            f" (|diff| {abs(self.worst_actual - self.worst_expected):.3g} > allowed {self.worst_bound:.3g})"
            if not self.passed
            else f"  worst element [{idx}]: torch {self.worst_actual!r}, reference {self.worst_expected!r}",
            f"  {self.n_bad} of {self.n} elements off; max error {self.max_ulp_err:.3g} ULP (floored) against k = {self.k:g};"
            f" max abs {self.max_abs_err:.3g}, max rel {self.max_rel_err:.3g}",
        ]
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  known deviation: {count} element{'s' if count > 1 else ''} as quirk {quirk} declares ({_upstream(quirk)})" for quirk, count in self.deviations]
        if c.repro:
            lines.append(f"  reproduce: {c.repro}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: non-finite floats become the strings 'nan', 'inf', '-inf' (strict JSON)."""
        return jsonable(asdict(self))


def _upstream(quirk_id: str) -> str:
    from checks import departures

    return departures.get(quirk_id).upstream


def jsonable(value: Any) -> Any:
    """Strict JSON: non-finite floats become "nan", "inf" or "-inf"; numpy scalars become Python
    numbers. Comparison records and report.json are written through it."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


@functools.lru_cache(maxsize=None)
def _overflow_threshold(info: DtypeInfo) -> float:
    """Values at or beyond this round to inf in the dtype."""
    return float(info.max + ulp(info.max, info) / 2)


def _nonfinite_agreement(actual: np.ndarray, expected: np.ndarray, limit: np.ndarray, info: DtypeInfo, terms_overflow: bool) -> np.ndarray:
    """Where non-finite values are right: NaN = NaN, same-signed infs, or a correct overflow to inf:
    the value itself overflows the dtype, or (``terms_overflow``) it reduces terms that do."""
    both_nan = np.isnan(actual) & np.isnan(expected)
    same_inf = np.isinf(actual) & (actual == expected)
    overflow_threshold = _overflow_threshold(info)
    overflow = np.isinf(actual) & np.isfinite(expected) & (np.sign(actual) == np.sign(expected)) & (
        terms_overflow | (np.abs(expected) + limit >= overflow_threshold)
    )
    return both_nan | same_inf | overflow


def compare(
    actual: Any, expected: Any, *, scale: Any, info: DtypeInfo, k: float, context: Context, notes: tuple[str, ...] = (),
    terms_overflow: bool = False, quirks: Sequence[Departure] = (), where: Where | None = None,
) -> Comparison:
    """Compare element by element under the tolerance policy and summarise as a record.

    ``terms_overflow``: the result reduces terms that overflow the dtype on their own, so torch,
    which rounds each term to the dtype before reducing, may rightly return inf.
    ``quirks``: the quirks active for this comparison (checks.departures); an element outside the
    policy that one of them accounts for (its region, its rule, judged at ``where``) is a known
    deviation, counted under the quirk's id; anything else outside the policy is a failure."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return _shape_mismatch(a, e, k, context)
    s = np.broadcast_to(np.abs(np.asarray(scale, dtype=np.float64)), e.shape)
    units = unit(e, s, info)
    limit = bound(e, s, info, k, units)
    known: list[tuple[str, int]] = []
    if not quirks and e.size and np.isfinite(a).all() and np.isfinite(e).all():
        abs_err, score, rel_err, max_ulp, ok = _finite_errors(a, e, units, limit, info)
    else:
        with np.errstate(all="ignore"):
            agreed = _nonfinite_agreement(a, e, limit, info, terms_overflow)
            abs_err = np.where(agreed, 0.0, np.abs(a - e))
            abs_err = np.where(np.isnan(abs_err), np.inf, abs_err)  # NaN against a number is maximally wrong
            # The numeric test only applies where the reference is finite (its bound is inf otherwise).
            ok = agreed | ((abs_err <= limit) & np.isfinite(e))
            for quirk in quirks:
                excused = ~ok & quirk.excused(a, e, limit, where) if e.size else np.zeros(e.shape, bool)
                if excused.any():
                    known.append((quirk.id, int(excused.sum())))
                    agreed = agreed | excused
                    ok = ok | excused
            abs_err = np.where(agreed, 0.0, abs_err)
            score = np.where(agreed, 0.0, abs_err / limit)  # > 1 fails; the largest is the worst element
            rel_err = np.where(abs_err == 0, 0.0, abs_err / np.abs(e))
            max_ulp = float(np.where(agreed, 0.0, ulp_error(a, e, s, info, units)).max(initial=0.0))
    if e.size == 0:
        return Comparison(context, 0, 0, 0.0, 0.0, 0.0, k, (), float("nan"), float("nan"), 0.0, True, notes)
    worst = np.unravel_index(int(np.argmax(score)), e.shape)
    return Comparison(
        context=context,
        n=int(e.size),
        n_bad=int((~ok).sum()),
        max_abs_err=float(abs_err.max()),
        max_rel_err=_largest(rel_err),
        max_ulp_err=max_ulp,
        k=k,
        worst_index=tuple(int(i) for i in worst),
        worst_actual=float(a[worst]),
        worst_expected=float(e[worst]),
        worst_bound=float(limit[worst]),
        passed=bool(ok.all()),
        notes=notes,
        deviations=tuple(known),
    )


_LARGEST = float(np.finfo(np.float64).max)


def _largest(errors: np.ndarray) -> float:
    """The largest error, written as nan_to_num(nan=inf) would leave it: a NaN as inf, an inf as the largest float."""
    worst = float(np.max(errors))
    return np.inf if np.isnan(worst) else min(worst, _LARGEST)


def _finite_errors(a: np.ndarray, e: np.ndarray, units: np.ndarray, limit: np.ndarray, info: DtypeInfo) -> tuple:
    """compare()'s common case, every value finite and no quirk: no non-finite agreement to look
    for, so the general path's errors (the largest floored ULP error as ulp_error's would be) in a
    third of the time."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # an infinite scale, a difference past float64's range
        abs_err = np.abs(a - e)
        ulps = np.maximum(abs_err - info.tiny, 0.0) / units
        return abs_err, abs_err / limit, np.where(abs_err == 0, 0.0, abs_err / np.abs(e)), _largest(ulps), abs_err <= limit


def _shape_mismatch(a: np.ndarray, e: np.ndarray, k: float, context: Context) -> Comparison:
    note = f"torch returned shape {a.shape}, the reference {e.shape}"
    nan = float("nan")
    return Comparison(context, int(e.size), int(e.size), nan, nan, float("inf"), k, (), nan, nan, 0.0, False, (note,))


def assert_agrees(comparison: Comparison) -> None:
    """Fail with the record's full explanation; hidden from pytest tracebacks."""
    __tracebackhide__ = True
    if not comparison.passed:
        raise AssertionError(comparison.message())
