"""The two stages of a learner's check: hypothesis searches for a case where the learner's function
and torch disagree, and the search's simplest counterexample is explained in words."""
from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from checks import dtypes
from checks.learner import diagnose
from checks.runner import Runner, build_case
from checks.spec import Case, OpSpec, Recipe
from checks.strategies import recipes, search, shapes

if TYPE_CHECKING:
    from checks.learner import Adapted

DEFAULT_EXAMPLES = 60  # the course stage's, for byhand verify --impl and pytest --impl alike; each edge stage draws half


def edge_examples(examples: int) -> int:
    """Each edge stage's examples: half the course's. The edge stages draw from small spaces (a few
    magnitudes, the special values, the unusual shapes) whose simplest members come first, and a
    module of 8 functions is checked in under 10 s on 2 cores (benchmarks/learner_speed.py)."""
    return max(1, examples // 2)
COURSE_SHAPES = shapes(min_dims=1, max_dims=2, min_side=1, max_side=6)


class Stage(enum.Enum):
    """The course stage, then the edge stage in three parts, the most instructive first: the
    magnitudes and exact values a formula must survive, special values, then unusual shapes."""

    COURSE = "course"
    MAGNITUDES = "huge, tiny and exact values"
    SPECIALS = "NaN, ±inf and subnormals"
    SHAPES = "empty, 0-d and unbatched inputs"


EDGES = (Stage.MAGNITUDES, Stage.SPECIALS, Stage.SHAPES)


@dataclass
class StageResult:
    examples: int = 0
    failure: str | None = None
    own: bool = False  # the failure is byhand's (ByhandFailed), not the learner's


def _stage_spec(spec: OpSpec, stage: Stage) -> OpSpec:
    """What a stage draws. The course: ordinary values in the course's shapes and knobs. Magnitudes
    and specials: non-empty arrays with the op's own knobs. Shapes: everything byhand draws."""
    course = {"shapes": COURSE_SHAPES if spec.course_shapes is None else spec.course_shapes,
              "knobs": spec.knobs if spec.course_knobs is None else spec.course_knobs}
    if stage is Stage.COURSE:
        return dataclasses.replace(spec, regimes=("normal",), **course)
    if stage is Stage.MAGNITUDES:
        return dataclasses.replace(spec, regimes=tuple(r for r in ("large", "small", "ties") if r in spec.regimes) or spec.regimes, **course)
    if stage is Stage.SPECIALS:
        return dataclasses.replace(spec, regimes=("extremal",) if "extremal" in spec.regimes else spec.regimes, **course)
    return spec


def _defaults(spec: OpSpec) -> dict[str, Any]:
    return dict(_defaults_of(spec.forward))


@functools.lru_cache(maxsize=None)
def _defaults_of(forward: Any) -> dict[str, Any]:
    params = inspect.signature(forward).parameters.items()
    return {n: (-1 if n == "dim" else p.default) for n, p in params if p.default is not p.empty or n == "dim"}


class ByhandFailed(Exception):
    """byhand's own case builder, its reference or torch raised on a case byhand drew: never the learner's mistake."""


def at_defaults(spec: OpSpec, recipe: Recipe, declared: set[str] | None) -> Recipe:
    """The recipe with every knob that sets an argument the learner does not declare at the value
    that leaves it at torch's default, so that the inputs are drawn for those defaults (conv's
    groups, sdpa's enable_gqa): a knob named like its argument, or one the spec maps."""
    if declared is None:
        return recipe
    defaults = _defaults(spec)
    knobs = dict(recipe.knobs)
    for knob, value in recipe.knobs.items():
        params, default = spec.knob_defaults.get(knob, ((knob,), defaults.get(knob, value)))
        if any(p in defaults and p not in declared for p in params):
            knobs[knob] = default
    return dataclasses.replace(recipe, knobs=knobs)


def patched(spec: OpSpec, case: Case, declared: set[str] | None, last_axis: bool, inputs_taken: int | None = None) -> Case:
    """The case with every argument the learner does not declare at torch's default (``dim``: the
    last axis), no target ignored when it takes no ``ignore_index``, and optional inputs it does
    not take (Linear's bias) set to None."""
    defaults, params, inputs = _defaults(spec), dict(case.params), dict(case.inputs)
    if inputs_taken is not None:
        inputs = {k: (v if i < inputs_taken else None) for i, (k, v) in enumerate(inputs.items())}
    for name in params:
        if (declared is not None and name not in declared) or (last_axis and name == "dim"):
            if name == "ignore_index" and isinstance(inputs.get("target"), np.ndarray) and inputs["target"].dtype.kind in "iu":
                inputs["target"] = np.where(inputs["target"] == params[name], 0, inputs["target"])
            params[name] = defaults.get(name, params[name])
    return Case(inputs, params, case.info, case.torch)


class _Recorder:
    """The learner's function, checked for what it hands back; the last value kept for diagnosis."""

    def __init__(self, call: Any, function: str, spec: OpSpec) -> None:
        self.call, self.function, self.spec, self.last, self.raised = call, function, spec, None, False
        self.case: Case | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.raised = True
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                value = self.call(*args, **kwargs)
            except SystemExit as exc:  # a learner's sys.exit() must not end byhand
                raise diagnose.Mistake(f"Your function called sys.exit({exc.code!r}): return a value instead.") from None
        self.raised = False
        self.last = value
        problem = diagnose.returned_problem(value, self.function)
        if problem is None and self.function.endswith("_backward") and len(self.spec.grad_inputs) > 1:
            present = {} if self.case is None else {**self.case.params, **self.case.inputs}
            wanted = [n for n in self.spec.grad_inputs if self.case is None or present.get(n) is not None]
            if len(wanted) == 1 and not isinstance(value, tuple):  # only one differentiable input here: one array is its gradient
                value = tuple(value if n == wanted[0] else None for n in self.spec.grad_inputs)
                self.last = value
            if not isinstance(value, tuple) or len(value) < len(wanted):
                got = f"{len(value)} values" if isinstance(value, tuple) else "one value"
                problem = (f"torch's {self.spec.name} has {len(wanted)} gradients here: return the tuple "
                           f"({', '.join('grad_' + n for n in wanted)}); you returned {got}.")
            else:
                problem = next((diagnose.returned_problem(v, "grad") for v in value if v is not None), None)
        if problem:
            raise diagnose.Mistake(problem)
        return value


def _shown(case: Case, declared: set[str] | None, grad_output: np.ndarray | None, dtype: str) -> list[str]:
    """The case's arguments the function takes, each as the shortest text that reads back exactly
    in the stage's dtype (the course stage's inputs are float32 numbers)."""
    values = ({"grad_output": grad_output} if grad_output is not None else {}) | case.inputs | case.params
    values = {k: v.astype(np.float32) if dtype == "float32" and isinstance(v, np.ndarray) and v.dtype.kind == "f" else v for k, v in values.items()}
    first = next(iter(case.inputs))
    return [f"    {k} = {diagnose.show(v, f'    {k} = ')}" for k, v in values.items()
            if v is not None and (k in ("grad_output", first) or k in case.inputs or declared is None or k in declared)]


def _yours(recorder: _Recorder, spec: OpSpec, phase: str) -> Any:
    value = recorder.last
    if phase.startswith("grad[") and isinstance(value, tuple):
        names = list(spec.grad_inputs)
        name = phase[5:-1]
        return value[names.index(name)] if name in names and names.index(name) < len(value) else None
    return value


def _torch_value(ev: Any, phase: str) -> np.ndarray:
    return ev.forward if phase == "forward" else ev.grads[phase[5:-1]]


def _explain_record(record: Any, ev: Any, recorder: _Recorder, spec: OpSpec) -> list[str]:
    phase = record.context.phase
    if phase.startswith("updated["):
        name = phase[8:-1]
        at = f" at index [{', '.join(map(str, record.worst_index))}]" if record.worst_index else ""
        unchanged = np.array_equal(np.asarray(ev.case.params.get(name, ev.case.inputs.get(name)), dtype=np.float64).ravel()[:1], [record.worst_expected])
        return [f"  {name} after the call{at}: torch leaves {record.worst_actual!r}, your function leaves {record.worst_expected!r}",
                f"  torch updates {name} in place" + (": yours left it as it was. In training, running = (1 - momentum)·running + "
                                                       "momentum·(the batch's mean, or its unbiased variance), written into the array "
                                                       "(running_mean[...] = ...)." if unchanged else ".")]
    what = "the result" if phase == "forward" else f"the gradient with respect to {phase[5:-1]}"
    yours, theirs = _yours(recorder, spec, phase), _torch_value(ev, phase)
    named = diagnose.known_mistake(spec, phase, ev.case, ev.grad_output, yours, theirs, record.k * dtypes.get(record.context.dtype).eps)
    if named is not None:
        at = f" at index [{', '.join(map(str, record.worst_index))}]" if record.worst_index and np.shape(yours) == np.shape(theirs) else ""
        told = (f"  {what}{at}: torch gives {record.worst_actual!r}, your function gives {record.worst_expected!r}" if at
                else f"  {diagnose.shape_problem(np.shape(yours), np.shape(theirs), ev.case, what).split('.')[0]}.")
        return [told, f"  Diagnosis: {named}"]
    if np.shape(yours) != np.shape(theirs):
        recorder.raised = True  # a shape problem, like an exception, points at an unusual input shape
        return [f"  {diagnose.shape_problem(np.shape(yours), np.shape(theirs), ev.case, what)}"]
    at = f" at index [{', '.join(map(str, record.worst_index))}]" if record.worst_index else ""
    lines = [f"  {what}{at}: torch gives {record.worst_actual!r}, your function gives {record.worst_expected!r}",
             f"  ({record.n_bad} of {record.n} values differ by more than byhand's tolerance for {record.context.dtype}: {record.k:g} units in the last place)"]
    hint = diagnose.ratio_hint(yours, theirs, ev.case, ev.grad_output)
    return lines + ([f"  {hint}"] if hint else [])


@dataclass
class _Attempt:
    """One example of a stage's search: the learner's function on a case, judged and explained."""
    spec: OpSpec
    adapted: Adapted
    stage: Stage
    runner: Runner
    recorder: _Recorder
    backward: bool
    tried: list[str] | None
    result: StageResult = dataclasses.field(default_factory=StageResult)
    failures: list[str] = dataclasses.field(default_factory=list)

    def __call__(self, recipe: Recipe) -> None:
        spec, adapted, backward, recorder, runner = self.spec, self.adapted, self.backward, self.recorder, self.runner
        taken = None if adapted.takes is None else adapted.takes - backward
        recipe = at_defaults(spec, recipe, adapted.declared)
        case, ev = self._prepared(recipe, taken)
        recorder.case = case
        self.result.examples += 1
        explanation = _judge(runner, ev, recipe, recorder, spec)
        if explanation is not None:
            self._reference_runs(case, ev)
        if self.tried is not None:
            self.tried.append(f"{self.stage.value} {recipe.regime} shape {tuple(np.shape(next(iter(case.inputs.values()))))}: {'ok' if explanation is None else 'MISMATCH'}")
        if explanation is not None:
            shown = _shown(case, adapted.declared, ev.grad_output if backward else None, runner.dtype)
            self.failures.append("\n".join(shown + explanation + _lesson(spec, self.stage, case, recipe, recorder.raised)))
            raise AssertionError


    def _prepared(self, recipe: Recipe, taken: int | None) -> tuple[Case, Any]:
        """byhand's side of an example: the case, torch's answer and the reference's; whatever raises
        here is byhand's failure, reported as such."""
        spec, runner, adapted = self.spec, self.runner, self.adapted
        case = None
        try:
            case = patched(spec, build_case(spec, recipe, runner.info), adapted.declared, adapted.last_axis, taken)
            ev = runner.evaluate(recipe, case=case, gradient=self.backward, module=False)
        except Exception as exc:  # noqa: BLE001 - byhand's own code or torch on byhand's own case
            self._own_failure(exc, recipe, case)
        return case, ev

    def _reference_runs(self, case: Case, ev: Any) -> None:
        """byhand's reference on a case where the learner and torch disagree: were it to raise, the
        case is byhand's failure, not the learner's. Run only then; agreement with torch needs no
        reference, and a passing example is the common one."""
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = case.fresh()
                self.spec.forward(*ref.inputs.values(), **ref.params)
                if self.backward:
                    self.spec.backward(ev.grad_output, *case.fresh().inputs.values(), **case.params)
        except Exception as exc:  # noqa: BLE001 - byhand's own reference on byhand's own case
            self._own_failure(exc, None, case)

    def _own_failure(self, exc: Exception, recipe: Recipe | None, case: Case | None) -> None:
        where = f"{recipe}" if case is None else "\n".join(_shown(case, None, None, self.runner.dtype))
        self.failures.append(f"  {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}\n  the case:\n{where}")
        raise ByhandFailed from exc


def check_stage(spec: OpSpec, function: str, adapted: Adapted, stage: Stage, examples: int, tried: list[str] | None) -> StageResult:
    """Search one stage for a disagreement; the simplest one found, explained, or None."""
    staged = _stage_spec(spec, stage)
    recorder = _Recorder(adapted.call, function, spec)
    view = type(inspect)("learner")
    setattr(view, function, recorder)
    backward = function.endswith("_backward")
    # The course stage asks whether the formula is right, at the course's precision: torch in
    # float32 against the learner's float64 on the same float32 inputs, float32's tolerance (so
    # exp(x) - 1 passes). The edge stages ask for torch's float64 accuracy and robustness.
    dtype = "float32" if stage is Stage.COURSE else "float64"
    attempt = _Attempt(spec, adapted, stage, Runner(spec, "cpu", dtype, hand=view), recorder, backward, tried)

    result = attempt.result
    try:
        search(recipes(staged), attempt, examples=examples, name=f"{function} {stage.value}", report_multiple_bugs=False)
    except AssertionError:
        result.failure = attempt.failures[-1]
    except ByhandFailed:
        result.failure, result.own = attempt.failures[-1], True
    except Exception as exc:  # noqa: BLE001 - hypothesis' own verdicts on the learner's function, in words
        flaky = "Flaky" in type(exc).__name__ or any("Flaky" in type(e).__name__ for e in getattr(exc, "exceptions", ()))
        result.failure = ("  Your function gave different answers for the same input: does it keep state between calls or draw random numbers?"
                          if flaky else f"  byhand could not finish checking: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return result


def _judge(runner: Runner, ev: Any, recipe: Recipe, recorder: _Recorder, spec: OpSpec) -> list[str] | None:
    try:
        records = runner.judge(ev, recipe)
    except diagnose.Mistake as mistake:
        return [f"  {mistake}"]
    except Exception as exc:  # noqa: BLE001 - the learner's code may raise anything
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        recorder.raised = True
        # The op's hint for a crash (linear: the weight's shape) only where the error is about shapes.
        shapes = any(word in first for word in ("matmul", "shape", "dimension", "aligned", "broadcast"))
        hint = spec.lessons.get("raised") if shapes else None
        return [f"  your function raised {type(exc).__name__}{': ' + first if first else ''}"] + ([f"  Hint: {hint}"] if hint else [])
    bad = next((r for r in records if not r.passed), None)
    return None if bad is None else _explain_record(bad, ev, recorder, spec)


def _lesson(spec: OpSpec, stage: Stage, case: Case, recipe: Recipe, raised: bool) -> list[str]:
    if stage is Stage.COURSE:
        return []
    text = diagnose.lesson(spec, diagnose.situation(case, recipe, raised))
    return [f"  Lesson: {text}"] if text else []
