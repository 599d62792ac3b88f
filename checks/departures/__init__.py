"""torch's known departures from exact math, declared once each, as data.

Two kinds, one declaration (:class:`Departure`):

- a **convention** is documented semantics that holds on every machine (BCE's −100 clamp, the two
  meanings of label smoothing, gradients at kinks). The references follow it; tests assert it
  unconditionally. It never excuses an element.
- a **quirk** is what a kernel does on some machines, versions, flags or devices (oneDNN's emulated
  bf16 GEMM, a vectorised loop's NaN handling, TF32). It declares the ops, phases, dtypes and devices
  it concerns, the input ``region`` it affects (element by element), what torch returns there
  (``rule``), its upstream reference, the tests that pin it, and a ``probe``: a tiny witness
  computation that says whether *this* torch, on *this* machine, with *these* flags, shows it now.

Judging (checks.compare) uses only the quirks active here: an element inside an active quirk's region
that behaves as its rule says is a *known deviation*, counted and named; any other disagreement is a
failure; where a quirk is absent its region is judged against the math like everything else.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from checks.dtypes import DTYPE_NAMES
from checks.spec import Case, Recipe



@dataclass(frozen=True)
class Where:
    """What a region or a rule may look at: the case, the phase compared ("forward", "grad[input]"),
    the upstream gradient (gradient phases) and the op's natural size there (checks.tolerance)."""

    case: Case
    phase: str
    grad_output: np.ndarray | None
    scale: np.ndarray
    op: str = ""  # the op compared, for a quirk shared by several (weighted-loss-overflows-in-the-dtype)


# Element masks, broadcastable to the compared array: ``region(where)``, and
# ``rule(actual, expected, limit, where)`` with ``limit`` the policy's bound element by element.
Region = Callable[[Where], np.ndarray]
Rule = Callable[[np.ndarray, np.ndarray, np.ndarray, Where], np.ndarray]
# device -> shows here and now; a quirk with ``probe_per`` is also asked per op, phase and/or dtype
# (``probe(device, op=..., phase=...)``): routing differs by op, size and dtype, so each path has its witness.
Probe = Callable[..., bool]
PROBE_AXES = ("op", "phase", "dtype")

# The test that runs every quirk's example both ways (where it shows, and where it does not).
BOTH_WAYS = "tests/test_departures.py::test_a_quirk_behaves_as_declared_where_it_shows_and_as_the_math_where_it_does_not"
# How byhand treats every quirk (a convention states its own handling).
QUIRK_HANDLING = ("Probed: where it shows, elements in its region that behave as declared are known deviations, "
                  "counted per cell; elsewhere they are judged against the math.")


def returns_nan(actual: np.ndarray, expected: np.ndarray, limit: np.ndarray, where: Where) -> np.ndarray:
    """The rule of a quirk where torch returns NaN."""
    return np.isnan(actual)


def returns_inf(actual: np.ndarray, expected: np.ndarray, limit: np.ndarray, where: Where) -> np.ndarray:
    """The rule of a quirk where torch returns ±inf."""
    return np.isinf(actual)


@dataclass(frozen=True)
class Map:
    """One measured error map for the report: x values, named series over them, and a finding."""

    x: list[float]
    series: dict[str, list[float]]
    xlabel: str
    ylabel: str
    finding: str
    xscale: str = "linear"
    yscale: str = "linear"


@dataclass(frozen=True)
class Departure:
    id: str
    kind: str  # "convention" or "quirk"
    title: str
    ops: tuple[str, ...]
    what: str  # torch's behaviour against the math, in a sentence or two
    returns: str  # what torch returns in the region instead of the math
    upstream: str  # issue, PR or documentation ("pytorch/pytorch#NNNN", a URL, a source path)
    tests: tuple[str, ...]  # the tests that pin it ("path::name")
    handling: str = ""  # how byhand treats it (conventions: the reference follows it)
    phases: tuple[str, ...] = ("forward",)
    dtypes: tuple[str, ...] = DTYPE_NAMES
    devices: tuple[str, ...] = ("cpu", "cuda", "mps")
    region: Region | None = field(default=None, repr=False)
    rule: Rule | None = field(default=None, repr=False)
    probe: Probe | None = field(default=None, repr=False)
    probe_per: tuple[str, ...] = ()  # of PROBE_AXES: what the probe's answer depends on besides the device
    # A recipe of ``ops[0]`` in ``example_dtype`` whose case reaches the region: the tests judge it
    # with the quirk in force, lifted, and on machines where it is absent.
    example: Recipe | None = None
    example_dtype: str = "float32"
    # Whether the example always shows the quirk where the probe says it shows; False for a setting
    # that only allows a wider result (cuBLAS may or may not split a small GEMM).
    always: bool = True
    measure: Callable[[], Map] | None = field(default=None, repr=False)
    # The ways of differentiating it concerns (checks/modes.py); "reverse" is autograd and the forward.
    modes: tuple[str, ...] = ("reverse",)
    # A mode that raises where the math is defined: the error's text (a regex on "Type: message");
    # its region is the whole result, which torch does not return.
    raises: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("convention", "quirk"):
            raise ValueError(f"departure {self.id}: kind must be 'convention' or 'quirk', got {self.kind!r}")
        needed = (self.probe, self.example) if self.raises else (self.region, self.rule, self.probe, self.example)
        if self.kind == "quirk" and None in needed:
            raise ValueError(f"quirk {self.id}: a quirk needs a probe and an example, and a region and a rule unless it raises")
        if not self.tests:
            raise ValueError(f"departure {self.id}: name the tests that pin it")
        if not set(self.probe_per) <= set(PROBE_AXES):
            raise ValueError(f"quirk {self.id}: probe_per must name some of {PROBE_AXES}, got {self.probe_per!r}")

    @property
    def quirk(self) -> bool:
        return self.kind == "quirk"

    def concerns(self, op: str, phase: str, dtype: str, device: str, mode: str = "reverse") -> bool:
        return op in self.ops and phase in self.phases and dtype in self.dtypes and device in self.devices and mode in self.modes

    def probe_keys(self) -> list[tuple[tuple[str, str], ...]]:
        """Every question its probe answers: one per combination of the ``probe_per`` axes
        (``((), )`` for a probe asked once per device)."""
        import itertools

        declared = {"op": self.ops, "phase": self.phases, "dtype": self.dtypes}
        return [tuple(zip(self.probe_per, values)) for values in itertools.product(*(declared[axis] for axis in self.probe_per))]

    def excused(self, actual: np.ndarray, expected: np.ndarray, limit: np.ndarray, where: Where) -> np.ndarray:
        """The elements this quirk accounts for: inside its region, and as its rule says."""
        assert self.region is not None and self.rule is not None
        with np.errstate(all="ignore"):
            inside = np.broadcast_to(self.region(where), expected.shape)
            return inside & np.broadcast_to(self.rule(actual, expected, limit, where), expected.shape)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "title": self.title, "ops": list(self.ops), "phases": list(self.phases), "modes": list(self.modes),
                "raises": self.raises,
                "dtypes": list(self.dtypes), "devices": list(self.devices), "what": self.what, "returns": self.returns,
                "upstream": self.upstream, "handling": self.handling or (QUIRK_HANDLING if self.quirk else ""), "tests": list(self.tests)}


def _declarations() -> tuple[Departure, ...]:
    from checks.departures import autograd, conventions, cpu, gpu, implementation, onednn

    return (*conventions.DECLARED, *cpu.DECLARED, *onednn.DECLARED, *implementation.DECLARED, *gpu.DECLARED, *autograd.DECLARED)


DEPARTURES: tuple[Departure, ...] = _declarations()
BY_ID: dict[str, Departure] = {d.id: d for d in DEPARTURES}
if len(BY_ID) != len(DEPARTURES):
    raise ValueError("two departures share an id")
QUIRKS: tuple[Departure, ...] = tuple(d for d in DEPARTURES if d.quirk)

_LIFTED: set[str] = set()
_FORCED: set[str] = set()  # tests only: judge as on a machine where these quirks show


def get(departure_id: str) -> Departure:
    try:
        return BY_ID[departure_id]
    except KeyError:
        raise ValueError(f"unknown departure {departure_id!r}; declared: {', '.join(BY_ID)}") from None


def _settings_key() -> str:
    """What a probe's answer can depend on inside one process: the numerics settings a user may
    flip at run time. (Not the thread count: no declared quirk depends on it, and a key that did
    would re-run probes under an injected fault, which could then switch a quirk on.)"""
    from checks.environment import knobs

    return repr(knobs())


@functools.lru_cache(maxsize=None)
def _probe(departure_id: str, device: str, question: tuple[tuple[str, str], ...], key: str) -> bool:
    """A probe's answer; one that cannot run here (a dtype the device lacks) says the quirk does
    not show, so its region is judged against the math."""
    probe = get(departure_id).probe
    assert probe is not None
    try:
        return bool(probe(device, **dict(question)))
    except Exception:  # noqa: BLE001 - a failing probe must not stop a verification
        return False


def key_text(question: tuple[tuple[str, str], ...]) -> str:
    """A probe question as recordings write it: 'op=conv1d phase=forward', or '' for the device alone."""
    return " ".join(f"{axis}={value}" for axis, value in question)


# Recorded probe answers standing in for live probes (checks.recording: judging another machine's
# outputs as on that machine): quirk id -> device -> question text -> answer.
_ANSWERED: list[dict[str, dict[str, dict[str, bool]]]] = []


def answer(departure: Departure, device: str, question: tuple[tuple[str, str], ...]) -> bool:
    """One probe question, live or (inside :func:`answered`) as recorded; a quirk a recording does
    not know (declared since) did not show there."""
    if _ANSWERED:
        return bool(_ANSWERED[-1].get(departure.id, {}).get(device, {}).get(key_text(question), False))
    from checks import devices

    if devices.unavailable_reason(device):
        return False
    return _probe(departure.id, device, question, _settings_key())


def shows(departure: Departure, device: str, op: str | None = None, phase: str | None = None, dtype: str | None = None) -> bool:
    """Whether the quirk shows on ``device`` here and now, for this op, phase and dtype where its
    probe asks them (an axis left None: for any of its declared values)."""
    if not departure.quirk or device not in departure.devices:
        return False
    if departure.id in _FORCED:
        return True
    asked = {"op": op, "phase": phase, "dtype": dtype}
    questions = [q for q in departure.probe_keys() if all(asked[axis] in (None, value) for axis, value in q)]
    return any(answer(departure, device, q) for q in questions)


def answers(device_names: tuple[str, ...]) -> dict[str, dict[str, dict[str, bool]]]:
    """Every probe's every answer on these devices: what a recording stores for its judge."""
    return {d.id: {device: {key_text(q): answer(d, device, q) for q in d.probe_keys()} for device in device_names if device in d.devices}
            for d in QUIRKS}


@contextlib.contextmanager
def answered(recorded: dict[str, dict[str, dict[str, bool]]]) -> Iterator[None]:
    """Judge as on the machine that recorded these probe answers."""
    _ANSWERED.append(recorded)
    try:
        yield
    finally:
        _ANSWERED.pop()


def active(op: str, phase: str, dtype: str, device: str, mode: str = "reverse") -> tuple[Departure, ...]:
    """The quirks that excuse elements of this comparison: declared for it, shown by their probe,
    and not lifted."""
    return tuple(d for d in QUIRKS if d.id not in _LIFTED and not d.raises and d.concerns(op, phase, dtype, device, mode)
                 and shows(d, device, op, phase, dtype))


def raised(op: str, phase: str, dtype: str, device: str, mode: str, error: BaseException) -> Departure | None:
    """The active quirk that declares this error of this mode, or None (then it is a failure)."""
    import re

    text = f"{type(error).__name__}: {error}"
    return next((d for d in QUIRKS if d.id not in _LIFTED and d.raises and d.concerns(op, phase, dtype, device, mode)
                 and re.search(d.raises, text) and shows(d, device, op, phase, dtype)), None)


def in_active_regions(op: str, dtype: str, device: str, where: Where, shape: tuple[int, ...]) -> np.ndarray:
    """Elements inside the region of any quirk active for this comparison: accuracy statistics
    leave them out (what torch returns there is declared, not a rounding error)."""
    mask = np.zeros(shape, bool)
    for quirk in active(op, where.phase, dtype, device):
        assert quirk.region is not None
        with np.errstate(all="ignore"):
            mask |= np.broadcast_to(quirk.region(where), shape)
    return mask


def shown_where(departure: Departure, device: str) -> list[str]:
    """The probe questions this quirk answers yes to on ``device`` ('op=conv1d phase=forward'; '' for one asked per device)."""
    return [key_text(q) for q in departure.probe_keys() if answer(departure, device, q)] if device in departure.devices else []


def active_here(device_names: tuple[str, ...], modes: tuple[str, ...] | None = None) -> list[tuple[Departure, str]]:
    """Every (quirk, device) pair whose probe says it shows now: verify's header (the quirks of the
    modes it checks), the fingerprint (``modes`` None: every quirk)."""
    return [(d, device) for d in QUIRKS if modes is None or set(d.modes) & set(modes) for device in device_names if shows(d, device)]


@contextlib.contextmanager
def _with(ids: set[str], departure_ids: tuple[str, ...]) -> Iterator[None]:
    for departure_id in departure_ids:
        get(departure_id)
    before = set(ids)
    ids.update(departure_ids)
    try:
        yield
    finally:
        ids.clear()
        ids.update(before)


def lifted(*departure_ids: str) -> contextlib.AbstractContextManager[None]:
    """Judge as if these quirks were not declared (meta-tests: every declaration is load-bearing)."""
    return _with(_LIFTED, departure_ids)


def forced(*departure_ids: str) -> contextlib.AbstractContextManager[None]:
    """Judge as on a machine where these quirks show (meta-tests of a region's narrowness on a CPU
    that lacks the quirk); torch's own results are unchanged."""
    return _with(_FORCED, departure_ids)
