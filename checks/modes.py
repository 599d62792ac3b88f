"""The ways torch differentiates, as a dimension of the matrix: a cell is op × device × dtype × mode.

Each mode is one of torch's routes to a derivative along random directions, and is judged against
its own truth, never against another of torch's routes:

==================== ===== ======================================= ===========================================
mode                 order torch's route                           truth
==================== ===== ======================================= ===========================================
reverse              1     autograd (``.backward()``)              the hand backward (checks/runner.py)
forward              1     ``torch.func.jvp``                      the hand JVP ``reference.<op>_jvp``
forward_ad           1     ``torch.autograd.forward_ad`` duals     the hand JVP
jacfwd, jacrev       1     the full Jacobian, times t              the hand JVP; jacrev's rows from the hand backward
fwd_over_rev         2     ``jvp`` of ``vjp``: H_u v               the oracle: d/dv of the 50-digit backward
rev_over_rev         2     ``autograd.grad`` twice: H_u v          the oracle, likewise
hessian              2     ``torch.func.hessian`` of <u, f>, · v   the oracle, likewise
fwd_over_fwd         2     nested ``jvp``: f''[t, t]               the oracle: d²/dt² of the 50-digit forward
rev3                 3     ``autograd.grad`` thrice: φ'''[v, w, ·] the oracle: d²/dv dw of the backward
fwd3                 3     ``jvp`` thrice: f'''[t, t, t]           the oracle: d³/dt³ of the forward
==================== ===== ======================================= ===========================================

φ = <u, f(x)> for an upstream gradient u. An op without a hand JVP yet takes the oracle's
directional derivative as its first-order truth too. Directions are drawn for every differentiable
input the case has (an absent bias gets none), rounded to the dtype; results are judged with the
policy's normwise derivative scale (checks/tolerance.derivative_scale) at the gradient's k.
Modes are judged at ordinary values (the "normal" regime): torch's conventions at kinks,
infinities and NaN are reverse mode's, checked there.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import hypothesis
from hypothesis.control import currently_in_test_context
import numpy as np
import torch

import reference
from checks import departures, dtypes
from checks.compare import Comparison, Context, compare
from checks.runner import Runner, _describe_params, _precision, build_case, to_numpy, to_tensor
from checks.spec import Case, OpSpec, Recipe
from checks.tolerance import derivative_scale, k_for
from reference import facts, oracle


@dataclass(frozen=True)
class Mode:
    name: str
    route: str  # torch's route, in words (the record's path); the truth each is judged against: the module's table
    phase: str  # "jvp" (output-shaped) or "hvp" / "d3" (one per differentiable input: hvp[input])
    run: Callable[["Problem"], Any]  # torch's result: an array, or a tuple per differentiable input


@dataclass
class Problem:
    """One case made differentiable: ``f(*xs)`` is the op in the named differentiable inputs
    ``names`` (torch tensors ``xs``), the rest of the case fixed; t, v, w directions and u the
    upstream gradient, as tensors and as the float64 arrays the truth uses."""

    f: Callable[..., torch.Tensor]
    names: tuple[str, ...]
    xs: tuple[torch.Tensor, ...]
    t: tuple[torch.Tensor, ...]
    v: tuple[torch.Tensor, ...]
    w: tuple[torch.Tensor, ...]
    u: torch.Tensor


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum()


def _phi(p: Problem) -> Callable[..., torch.Tensor]:
    return lambda *xs: _dot(p.f(*xs), p.u)


def _grad(scalar: torch.Tensor, xs: tuple[torch.Tensor, ...], create_graph: bool) -> tuple[torch.Tensor, ...]:
    """autograd.grad of ``scalar``; zeros when it does not depend on ``xs`` at all (the gradient of a
    linear op's gradient has no graph: autograd's documented refusal, the derivative being 0)."""
    if not scalar.requires_grad:
        return tuple(torch.zeros_like(x) for x in xs)
    return torch.autograd.grad(scalar, xs, create_graph=create_graph, allow_unused=True, materialize_grads=True)


def _grads(p: Problem, xs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return _grad(_phi(p)(*xs), xs, True)


def _forward(p: Problem) -> torch.Tensor:
    return torch.func.jvp(p.f, p.xs, p.t)[1]


def _forward_ad(p: Problem) -> torch.Tensor:
    import torch.autograd.forward_ad as fwad

    with fwad.dual_level():
        duals = tuple(fwad.make_dual(x, t) for x, t in zip(p.xs, p.t))
        return fwad.unpack_dual(p.f(*duals)).tangent.clone()


def _contracted(jacobian: Any, p: Problem) -> torch.Tensor:
    """sum_j J_j · t_j, each J_j of shape out + x_j.shape: in float64, the contraction being
    byhand's arithmetic (torch's answer is the Jacobian)."""
    return sum(torch.tensordot(j.double(), t.double(), dims=t.dim()) for j, t in zip(jacobian, p.t))


def _jacfwd(p: Problem) -> torch.Tensor:
    return _contracted(torch.func.jacfwd(p.f, argnums=tuple(range(len(p.xs))))(*p.xs), p)


def _jacrev(p: Problem) -> torch.Tensor:
    return _contracted(torch.func.jacrev(p.f, argnums=tuple(range(len(p.xs))))(*p.xs), p)


def _fwd_over_rev(p: Problem) -> tuple[torch.Tensor, ...]:
    def vjp(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.func.vjp(p.f, *xs)[1](p.u)

    return torch.func.jvp(vjp, p.xs, p.v)[1]


def _rev_over_rev(p: Problem) -> tuple[torch.Tensor, ...]:
    xs = tuple(x.detach().requires_grad_(True) for x in p.xs)
    g = _grads(p, xs)
    return _grad(sum(_dot(a, b) for a, b in zip(g, p.v)), xs, False)


def _hessian(p: Problem) -> tuple[torch.Tensor, ...]:
    n = len(p.xs)
    h = torch.func.hessian(_phi(p), argnums=tuple(range(n)))(*p.xs)
    return tuple(sum(torch.tensordot(h[i][j].double(), p.v[j].double(), dims=p.v[j].dim()) for j in range(n)) for i in range(n))


def _fwd_over_fwd(p: Problem) -> torch.Tensor:
    return torch.func.jvp(lambda *xs: torch.func.jvp(p.f, xs, p.t)[1], p.xs, p.t)[1]


def _rev3(p: Problem) -> tuple[torch.Tensor, ...]:
    xs = tuple(x.detach().requires_grad_(True) for x in p.xs)
    g = _grads(p, xs)
    hv = _grad(sum(_dot(a, b) for a, b in zip(g, p.v)), xs, True)
    return _grad(sum(_dot(a, b) for a, b in zip(hv, p.w)), xs, False)


def _fwd3(p: Problem) -> torch.Tensor:
    def d1(*xs: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(p.f, xs, p.t)[1]

    def d2(*xs: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(d1, xs, p.t)[1]

    return torch.func.jvp(d2, p.xs, p.t)[1]


MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("forward", "torch.func.jvp", "jvp", _forward),
    Mode("forward_ad", "forward_ad dual numbers", "jvp", _forward_ad),
    Mode("jacfwd", "torch.func.jacfwd · t", "jvp", _jacfwd),
    Mode("jacrev", "torch.func.jacrev · t", "jvp", _jacrev),
    Mode("fwd_over_rev", "jvp of vjp", "hvp", _fwd_over_rev),
    Mode("rev_over_rev", "autograd.grad twice", "hvp", _rev_over_rev),
    Mode("hessian", "torch.func.hessian · v", "hvp", _hessian),
    Mode("fwd_over_fwd", "jvp of jvp", "jvp2", _fwd_over_fwd),
    Mode("rev3", "autograd.grad thrice", "d3", _rev3),
    Mode("fwd3", "jvp thrice", "jvp3", _fwd3),
)}
ALL = ("reverse", *MODES)
NEEDED = {"jvp": "t", "jvp2": "t", "jvp3": "t", "hvp": "v", "d3": "vw"}  # the directions each kind of derivative takes
# verify's default stays reverse: the CPU kernel quirks (checks/departures/cpu.py, onednn.py) are
# declared for reverse mode's phases, and a forward cell on an AVX-512 machine would meet them undeclared.
DEFAULT = ("reverse",)


def parse(option: str | None) -> tuple[str, ...]:
    """``--modes``: a comma-separated list, 'all', or the default (reverse)."""
    if option is None or option == "":
        return DEFAULT
    if option == "all":
        return ALL
    chosen = tuple(m.strip() for m in option.split(",") if m.strip())
    unknown = [m for m in chosen if m not in ALL]
    if unknown or not chosen:
        raise ValueError(f"--modes: unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(ALL)} or all")
    return chosen


_ORDINARY: dict[int, tuple[OpSpec, OpSpec]] = {}


def ordinary(spec: OpSpec) -> OpSpec:
    """The spec whose draws a mode is judged on: ordinary values only (see the module's docstring).
    One per spec object, so that its recipes strategy is built once (checks.strategies.recipes)."""
    import dataclasses

    kept = _ORDINARY.get(id(spec))
    if kept is None or kept[0] is not spec:
        kept = _ORDINARY[id(spec)] = (spec, dataclasses.replace(spec, regimes=("normal",)) if "normal" in spec.regimes else spec)
    return kept[1]


def away_from_kinks(name: str, case: Case) -> Case:
    """Finite differences must not straddle a kink (a regression loss's |x - y| at 0, Huber's at delta):
    targets within 1e-3 of one are moved off it (test_gradcheck's step is 1e-6; the oracle's far less)."""
    kinks_of = facts.of(name).kinks  # where |x - y| has a kink (L1 at 0, Huber at delta, ...)
    if kinks_of is None:
        return case
    inputs, kinks = dict(case.inputs), kinks_of(case.params)

    def near_a_kink(target):
        gap = np.abs(inputs["input"] - target)
        return np.any([np.abs(gap - kink) < 1e-3 for kink in kinks], axis=0)

    for shift in (0.3183, 0.5772, 1.4142):  # incommensurate, so one of them clears every kink
        close = near_a_kink(inputs["target"])
        if not close.any():
            break
        inputs["target"] = np.where(close, inputs["target"] + shift, inputs["target"])
    assert not near_a_kink(inputs["target"]).any()
    return Case(inputs, case.params, case.info, case.torch)


def judged(spec: OpSpec, case: Case) -> bool:
    """Whether a case is one a mode is judged on. Ordinary values: non-empty (an empty input has no
    derivative to judge), the op finite there (not an all-ignored mean's 0/0), and no in-place
    update that autograd does not see (embedding's max_norm renormalises the weight outside the
    graph: torch's documented convention, not a derivative)."""
    if spec.name == "embedding" and case.params.get("max_norm") is not None:
        return False
    if not all(np.size(v) for v in case.inputs.values() if isinstance(v, np.ndarray)):
        return False
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(np.isfinite(np.asarray(spec.forward(*case.fresh().inputs.values(), **case.fresh().params), dtype=np.float64)).all())


def _directions(case: Case, names: tuple[str, ...], info: Any, seed: int, needed: str = "tvw") -> dict[str, dict[str, np.ndarray]]:
    """The directions t, v and w by input name (those a mode does not use are zero: drawn only if needed)."""
    rng = np.random.default_rng([seed, 2])  # a stream of its own: seed alone drew the inputs (t would be x)
    values = {**case.inputs, **case.params}
    return {d: {n: dtypes.round_to(rng.normal(size=np.shape(values[n])), info) if d in needed else np.zeros(np.shape(values[n])) for n in names}
            for d in "tvw"}


def _problem(runner: Runner, case: Case, seed: int, needed: str = "tvw") -> tuple[Problem, dict[str, dict[str, np.ndarray]], np.ndarray, torch.Tensor]:
    spec, info, device = runner.spec, runner.info, runner.device
    values = {**case.inputs, **case.params}
    names = tuple(n for n in spec.grad_inputs if isinstance(values.get(n), np.ndarray))
    inputs = {k: to_tensor(v, info, device) for k, v in case.inputs.items()}
    params = {k: to_tensor(v, info, device) for k, v in case.params.items()} | case.torch
    updated = set(spec.updates(case)) if spec.updates else set()

    def f(*xs: torch.Tensor) -> torch.Tensor:
        chosen = dict(zip(names, xs))
        # a buffer torch updates in place (batch_norm's running statistics) is fresh on each call
        fresh = {k: (t.clone() if k in updated else t) for k, t in {**inputs, **params}.items()}
        return spec.functional(*(chosen.get(k, fresh[k]) for k in inputs), **{k: chosen.get(k, fresh[k]) for k in params})

    xs = tuple(to_tensor(values[n], info, device) for n in names)
    with torch.no_grad():
        out = f(*xs)
    directions = _directions(case, names, info, seed, needed)
    u = dtypes.round_to(np.random.default_rng([seed, 3]).normal(size=tuple(out.shape)), info)
    as_t = {d: tuple(to_tensor(directions[d][n], info, device) for n in names) for d in "tvw"}
    return Problem(f, names, xs, as_t["t"], as_t["v"], as_t["w"], to_tensor(u, info, device)), directions, u, out


def truth(spec: OpSpec, mode: Mode, case: Case, directions: dict[str, dict[str, np.ndarray]], u: np.ndarray) -> Any:
    """The mode's truth from the hand math: an array, or one per differentiable input (by name)."""
    fresh = case.fresh()
    args, params = tuple(fresh.inputs.values()), fresh.params
    t = directions["t"]
    if mode.name == "jacrev":
        return _rows_of_the_backward(spec, case, t)
    if mode.phase == "jvp":
        jvp = getattr(reference, f"{spec.name}_jvp", None)
        if jvp is not None:
            tangent = t.get(spec.grad_inputs[0]) if len(spec.grad_inputs) == 1 else tuple(t.get(n) for n in spec.grad_inputs)
            return np.asarray(jvp(tangent, *args, **params), dtype=np.float64)
        return oracle.directional(spec.name, [t], *args, **params)
    if mode.phase == "jvp2":
        return oracle.directional(spec.name, [t, t], *args, **params)
    if mode.phase == "jvp3":
        return oracle.directional(spec.name, [t, t, t], *args, **params)
    steps = [directions["v"]] if mode.phase == "hvp" else [directions["v"], directions["w"]]
    result = oracle.directional(spec.name, steps, *args, grad_output=u, **params)
    result = result if isinstance(result, tuple) else (result,)
    return {n: r for n, r in zip(spec.grad_inputs, result) if n in t}


def _rows_of_the_backward(spec: OpSpec, case: Case, t: dict[str, np.ndarray]) -> np.ndarray:
    """J t with J's rows from the hand backward (one upstream one-hot per output element): jacrev's
    truth, because jacrev is a reverse-mode route and keeps reverse mode's conventions (embedding's
    padding row and scale_grad_by_freq belong to the gradient, not to the forward's derivative)."""
    fresh = case.fresh()
    out = np.asarray(spec.forward(*fresh.inputs.values(), **fresh.params), dtype=np.float64)
    result = np.zeros(out.shape)
    for o in np.ndindex(out.shape):
        e = np.zeros(out.shape)
        e[o] = 1.0
        row = case.fresh()
        grads = spec.backward(e, *row.inputs.values(), **row.params)
        grads = dict(zip(spec.grad_inputs, grads if isinstance(grads, tuple) else (grads,)))
        result[o] = sum(float(np.sum(np.asarray(grads[n], dtype=np.float64) * d)) for n, d in t.items() if grads.get(n) is not None)
    return result


def run(runner: Runner, mode_name: str, recipe: Recipe) -> list[Comparison]:
    """One example of a mode cell: torch's derivative along the case's directions against the truth."""
    mode, spec = MODES[mode_name], runner.spec
    case = away_from_kinks(spec.name, build_case(spec, recipe, runner.info))
    if not judged(spec, case):
        if currently_in_test_context():  # a draw of a search: hypothesis draws another
            hypothesis.reject()
        return []  # a probe's or a repro's case: nothing to judge
    problem, directions, u, out = _problem(runner, case, recipe.seed, NEEDED[mode.phase])
    info = _precision(runner.info, out)  # the dtype torch computes in (softmax's dtype= may ask for a coarser one)
    shape = tuple(np.shape(next(iter(case.inputs.values()))))

    def context(phase: str) -> Context:
        return Context(spec.name, phase, mode.route, runner.device, runner.dtype, shape, _describe_params(case),
                       f"checks.modes.reproduce({spec.name!r}, {recipe!r}, {runner.device!r}, {runner.dtype!r}, {mode_name!r})")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = mode.run(problem)
    except Exception as error:  # noqa: BLE001 - a mode that raises is a failure, unless declared
        quirk = departures.raised(spec.name, mode.phase, runner.dtype, runner.device, mode_name, error)
        if quirk is None:
            raise
        return [_raised_as_declared(context(mode.phase), quirk.id, error)]
    with np.errstate(all="ignore"):
        expected = truth(spec, mode, case, directions, u)
    terms = sum(np.size(d) for d in directions["t"].values())
    k = k_for("gradient", info.name)

    size = _natural_size(spec, case, mode.phase, directions, u)

    def judge(actual: torch.Tensor, true: np.ndarray, phase: str) -> Comparison:
        scale = derivative_scale(true, terms, info.name, size)
        quirks = departures.active(spec.name, phase, runner.dtype, runner.device, mode_name)
        where = {"quirks": quirks, "where": departures.Where(case, phase, None, np.asarray(scale), spec.name)} if quirks else {}
        return compare(_materialized(actual), true, scale=scale, info=info, k=k, context=context(phase), **where)

    if mode.phase in ("jvp", "jvp2", "jvp3"):
        return [judge(theirs, expected, mode.phase)]
    theirs = dict(zip(problem.names, theirs))
    return [judge(theirs[n], expected[n], f"{mode.phase}[{n}]") for n in problem.names]


def _raised_as_declared(context: Context, quirk_id: str, error: BaseException) -> Comparison:
    """The record of a mode that raised as an active quirk declares: no result to compare, one
    known deviation (the cell counts it, and baseline compare sees it go the day torch fixes it)."""
    return Comparison(context, 0, 0, 0.0, 0.0, 0.0, 0.0, (), float("nan"), float("nan"), 0.0, True,
                      notes=(f"raised as declared: {type(error).__name__}: {str(error).splitlines()[0][:120]}",), deviations=((quirk_id, 1),))


def _natural_size(spec: OpSpec, case: Case, phase: str, directions: dict[str, dict[str, np.ndarray]], u: np.ndarray) -> float:
    """The least scale of a mode's derivative: the size of the terms it is computed from. The
    registry's gradient scale (the natural size of each gradient element's terms, by input; for an
    upstream of ones where the mode has no upstream gradient) times the directions' sizes, as a
    gradient is judged at its upstream gradient's size: so that a derivative that cancels far
    below its terms (a two-element layer_norm's, a saturated sigmoid's) is not judged by relative
    error, while one wrong by a fraction of its terms fails."""
    upstream = np.ones_like(u) if phase.startswith("jvp") else u
    with np.errstate(all="ignore"):
        scales = spec.grad_scale(case, upstream)
    terms = max((float(np.nanmax(np.abs(np.asarray(v, dtype=np.float64)), initial=0.0)) for v in scales.values() if v is not None), default=0.0)
    terms = max(terms, float(np.abs(upstream).max(initial=0.0)))
    t, v, w = (_largest(directions[d]) for d in "tvw")
    return terms * {"jvp": t, "jvp2": t * t, "jvp3": t ** 3, "hvp": v, "d3": v * w}[phase]


def _largest(directions: dict[str, np.ndarray]) -> float:
    return max((float(np.abs(d).max(initial=0.0)) for d in directions.values()), default=0.0)


def _materialized(tensor: torch.Tensor) -> np.ndarray:
    """A result as float64 numpy; torch returns some zero derivatives as ZeroTensors (l1_loss's
    second derivative), which refuse .numpy(): their value is 0."""
    if tensor._is_zerotensor():
        return np.zeros(tuple(tensor.shape))
    return to_numpy(tensor)


def reproduce(name: str, recipe: Recipe, device: str = "cpu", dtype: str = "float64", mode: str = "forward") -> list[Comparison]:
    """Re-run one example of a mode cell, e.g. from a failure's repro line."""
    from checks.registry import get

    return run(Runner(get(name), device, dtype), mode, recipe)
