r"""The machinery of the sympy proofs; each op's derivation lives beside its numpy functions.

An op's module in reference/ builds a :class:`Derivation` (a symbolic definition, scalar or over C
symbolic classes / a small Linear layer; the gradient obtained with ``sympy.diff``; the closed form
the numpy ``<op>_backward`` uses; the reasoning as steps for the reports) and attaches it to its
forward with ``@facts.derivation(op)``. :meth:`Derivation.prove` shows ``derived == hand``: by
``cancel(expand(derived - hand)) == 0`` (the difference over one denominator, with exp, log and the
like as its variables: a canonical form, so 0 there is an identity), else by
``simplify(derived - hand) == 0``, or, where neither settles it (piecewise losses, a whole layer), by
50-digit evaluation at random points of the domain, and says which.

Vector ops are proved in vector-Jacobian form, the form ``_backward`` computes: with a symbolic
upstream gradient g, $L = \sum_i g_i f_i(z)$ and $\partial L/\partial z_j$.

A *pointwise* derivation (elementwise activations, the per-element terms of regression and binary
losses) also says which symbols are torch's positional inputs and keyword parameters: the 50-digit
oracle (reference/oracle.py) evaluates its definition and ``sympy.diff`` of it through
``lambdify(..., modules="mpmath")``, so the truth comes from the same definition the proof starts from.
"""
from __future__ import annotations

import functools
import inspect
import random
import time
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p
from sympy.printing.pycode import MpmathPrinter

DIGITS = 50


@dataclass(frozen=True)
class Step:
    title: str
    expr: sp.Basic


CANCELLED = "cancel (the difference, expanded over one denominator, is 0)"


@dataclass(frozen=True)
class Proof:
    proven: bool
    method: str  # CANCELLED, "simplify" or "50-digit evaluation at N random points"
    seconds: float


@dataclass(frozen=True)
class Example:
    """One float64 example of a vector op for the third path (tests/test_derivations.py): the
    numpy call's arguments, its upstream gradient, the value of each symbol, and how the sympy
    gradient (one value per ``wrt`` symbol) becomes the numpy ``_backward``'s arrays."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    grad_output: np.ndarray
    values: dict[str, Any]
    assemble: Callable[[list[Any]], tuple[np.ndarray, ...]]


@dataclass(frozen=True, eq=False)
class Derivation:
    op: str
    definition: sp.Expr  # the scalar whose gradient is taken (L = sum g_i f_i for vector ops)
    wrt: tuple[sp.Symbol, ...]  # the variables of the gradient
    hand: tuple[sp.Expr, ...]  # the closed form of each partial derivative, as _backward computes it
    steps: tuple[Step, ...]
    domain: dict[sp.Symbol, tuple[float, float]] = field(default_factory=dict)  # sampling ranges for the fallback
    size: int | None = None  # C classes, or Linear's in/out features
    note: str = ""
    # A pointwise op: f per element as a function of torch's positional inputs and keyword
    # parameters (the gradient is taken in the first input); ``absent`` is a parameter's value
    # when torch's argument is None (weight=None weighs 1).
    pointwise: sp.Expr | None = None
    inputs: tuple[sp.Symbol, ...] = ()
    params: dict[str, sp.Symbol] = field(default_factory=dict)
    absent: dict[str, float] = field(default_factory=dict)
    # How many of the leading inputs are differentiated (kl_div: input and target).
    differentiated: int = 1
    # A vector op: one example for the third path, drawn from a numpy Generator.
    example: Callable[[np.random.Generator], Example] | None = None
    # False where sympy cannot settle the differences symbolically (a layer of many symbols, where
    # simplify cannot finish; piecewise differences, where it gives up after a second): they go
    # straight to the 50-digit evaluation, compiled once with common subexpressions shared.
    simplify: bool = True

    @property
    def differentiable(self) -> bool:
        return bool(self.wrt)

    @functools.cached_property
    def derived(self) -> tuple[sp.Expr, ...]:
        return tuple(sp.diff(self.definition, v) for v in self.wrt)

    def prove(self, points: int = 12, seed: int = 0) -> Proof:
        started = time.perf_counter()
        differences = [d - h for d, h in zip(self.derived, self.hand)]
        method = _settled(differences) if self.simplify else None
        if method:
            return Proof(True, method, time.perf_counter() - started)
        return Proof(self._all_vanish(differences, points, seed), f"{DIGITS}-digit evaluation at {points} random points", time.perf_counter() - started)

    def _all_vanish(self, differences: list[sp.Expr], points: int, seed: int) -> bool:
        """Whether every difference is 0 at 50 digits at ``points`` random points: lambdified for
        mpmath once, their common subexpressions shared (an attention layer's 28 are pages long)."""
        import mpmath

        free = sorted(set().union(*(diff.free_symbols for diff in differences)), key=str)
        evaluate = sp.lambdify(free, differences, "mpmath", cse=True)
        with mpmath.workdps(DIGITS):
            return not any(abs(v) > mpmath.mpf(10) ** (8 - DIGITS)
                           for point in self._points(free, points, seed) for v in evaluate(*(mpmath.mpf(n) / 1000 for n in point)))

    def _points(self, free: list[sp.Symbol], points: int, seed: int) -> Iterator[list[int]]:
        """``points`` random points, each symbol's value drawn from its domain (default [-3, 3]) in
        thousandths."""
        rng = random.Random(seed)
        bounds = [self.domain.get(s, (-3.0, 3.0)) for s in free]
        for _ in range(points):
            yield [round(rng.uniform(*b) * 1000) for b in bounds]

    def gradient_at(self, values: dict[str, object], modules: str = "numpy") -> list:
        """The sympy-derived gradient evaluated through ``sympy.lambdify`` (a third path to the
        numbers, independent of the numpy code), with each symbol's value given by name."""
        args = sorted(self.definition.free_symbols | set(self.wrt), key=str)
        fn = _lambdified(self, tuple(args), modules)
        return fn(*(values[str(s)] for s in args))


    def local(self, modules: str = "numpy") -> tuple[Callable, ...]:
        """A pointwise op's f, then df/d(input) for each differentiated input, each a function of
        (*inputs, *params) in that order, from the definition and ``sympy.diff`` of it."""
        if self.pointwise is None:
            raise ValueError(f"{self.op}: not a pointwise derivation")
        return _local(self, modules)


def _settled(differences: list[sp.Expr]) -> str | None:
    """How sympy shows every difference is 0, if it can (None at the first it cannot): cancel
    first, a tenth of simplify's time on every op it settles (measured: the registry's proofs in
    0.8 s against 8.3 s), then simplify."""
    method = CANCELLED
    for difference in differences:
        try:
            if sp.cancel(sp.expand(difference)) == 0:
                continue
        except sp.PolynomialError:  # a form cancel cannot take: simplify's turn
            pass
        if sp.simplify(difference) != 0:
            return None
        method = "simplify"
    return method


@functools.lru_cache(maxsize=None)
def _lambdified(derivation: Derivation, args: tuple[sp.Symbol, ...], modules: str) -> Callable:
    return sp.lambdify(args, list(derivation.derived), modules, cse=not derivation.simplify)


def _erfc(u):
    """mpmath's erfc, which overflows a float inside its asymptotic series past about 1e150: beyond
    |u| = 1e4 the answer is 0 or 2 to within 10**-40000000, far below any float64 it multiplies."""
    import mpmath

    if abs(u) > 10_000:
        return mpmath.mpf(0) if u > 0 else mpmath.mpf(2)
    return mpmath.erfc(u)


class _Mpmath(MpmathPrinter):
    """mpmath's own expm1 and log1p: sympy's printer writes log(x + 1), which cancels for tiny x;
    erfc guarded against mpmath's overflow at huge arguments."""

    def _print_erfc(self, e):
        return f"_erfc({self._print(e.args[0])})"

    def _print_expm1(self, e):
        return f"{self._module_format('mpmath.expm1')}({self._print(e.args[0])})"

    def _print_log1p(self, e):
        return f"{self._module_format('mpmath.log1p')}({self._print(e.args[0])})"


def stable(expr: sp.Expr) -> sp.Expr:
    """``exp(u) - 1`` as ``expm1(u)`` and ``log(1 + u)`` as ``log1p(u)``: the textbook forms cancel
    where u is tiny, even at 50 digits (a subnormal u needs 330). sympy's own rewriting turns
    log(1 + exp(-z)) into -z + log1p(exp(z)), which cancels for large z, so this is done here."""
    expr = expr.replace(lambda e: isinstance(e, sp.log) and e.args[0].is_Add and sp.S.One in e.args[0].args,
                        lambda e: log1p(e.args[0] - 1))
    return expr.replace(lambda e: e.is_Add and sp.S.NegativeOne in e.args and len(e.args) == 2 and any(isinstance(t, sp.exp) for t in e.args),
                        lambda e: expm1(next(t for t in e.args if isinstance(t, sp.exp)).args[0]))


@functools.lru_cache(maxsize=None)
def _local(derivation: Derivation, modules: str) -> tuple[Callable, ...]:
    args = (*derivation.inputs, *derivation.params.values())
    f = derivation.pointwise
    exprs = (f, *(sp.diff(f, v) for v in derivation.inputs[: derivation.differentiated]))
    if modules == "mpmath":
        printer = _Mpmath({"fully_qualified_modules": False, "inline": True, "allow_unknown_functions": True, "user_functions": {}})
        return tuple(sp.lambdify(args, stable(e), modules=[{"_erfc": _erfc}, "mpmath"], printer=printer) for e in exprs)
    return tuple(sp.lambdify(args, e, modules) for e in exprs)



x, y, z, g, a, alpha, delta, beta, w, pw, p = sp.symbols("x y z g a alpha delta beta w p_w p", real=True)
i, j, c, k = sp.symbols("i j c k", integer=True)
P, Z, G, A, Q = (sp.IndexedBase(n) for n in ("p", "z", "g", "a", "q"))
L = sp.Symbol("L")
C = sp.Symbol("C")


def named(name: str) -> type[sp.Function]:
    """An undefined function printed as its whole name: sympy's LaTeX printer would read the
    underscore of ``leaky_relu`` as a subscript."""
    def _latex(self, printer, exp=None):
        escaped = name.replace("_", r"\_")
        args = ", ".join(printer._print(a) for a in self.args)
        return rf"\operatorname{{{escaped}}}\left({args}\right)"

    return type(name, (sp.Function,), {"_latex": _latex})


SIGMA = sp.Function("sigma")  # the logistic function as a name: sigma(x) in the steps


def logistic(t: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-t))


def elementwise(op: str, f: sp.Expr, hand: sp.Expr, steps: tuple[Step, ...] = (), params: dict[str, sp.Symbol] | None = None,
                **domain: tuple[float, float]) -> Derivation:
    """A scalar op f(x): L = g f(x), so dL/dx = g f'(x). ``params`` maps torch's keywords to symbols."""
    lhs = named(op)(x)
    base = (Step("definition", sp.Eq(lhs, f)), *steps, Step("derivative (hand)", sp.Eq(sp.Derivative(lhs, x), hand)))
    return Derivation(op, g * f, (x,), (g * hand,), base, {sp.Symbol(k, real=True): v for k, v in domain.items()},
                      pointwise=f, inputs=(x,), params=dict(params or {}))


def classes(n: int) -> tuple[tuple[sp.Symbol, ...], tuple[sp.Symbol, ...], list[sp.Expr]]:
    """C symbolic logits, C upstream gradients and the softmax of the logits."""
    zs = sp.symbols(f"z_1:{n + 1}", real=True)
    gs = sp.symbols(f"g_1:{n + 1}", real=True)
    denominator = sum(sp.exp(t) for t in zs)
    return zs, gs, [sp.exp(t) / denominator for t in zs]


SOFTMAX_STEPS = (
    Step("softmax", sp.Eq(P[i], sp.exp(Z[i]) / sp.Sum(sp.exp(Z[k]), (k, 1, C)))),
    Step("its Jacobian", sp.Eq(sp.Derivative(P[i], Z[j]), P[i] * (sp.KroneckerDelta(i, j) - P[j]))),
)


def columns(array: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    """The columns of an (N, C) array as the values of the symbols prefix_1 ... prefix_C."""
    return {f"{prefix}_{n + 1}": array[:, n] for n in range(array.shape[1])}


def stacked(grads: list[Any], rows: int) -> tuple[np.ndarray]:
    """One sympy value per class (scalars where a gradient does not depend on the row) as (N, C)."""
    return (np.stack([np.broadcast_to(np.asarray(v, dtype=float), (rows,)) for v in grads], axis=1),)


def _builder(op: str) -> Callable[..., Derivation]:
    from reference import facts

    found = facts.of(op).derivation
    if found is None:
        raise ValueError(f"reference.{op} declares no derivation: add one with @facts.derivation({op})")
    return found


def sized(op: str) -> bool:
    """Whether the op's derivation takes a size (C classes, or Linear's in_features)."""
    return any(p.kind is p.POSITIONAL_OR_KEYWORD for p in inspect.signature(_builder(op)).parameters.values())


def choices(op: str) -> tuple[str, ...]:
    """The keyword arguments that choose between an op's formulas (gelu's ``approximate``)."""
    return tuple(n for n, p in inspect.signature(_builder(op)).parameters.items() if p.kind is p.KEYWORD_ONLY)


def variants(op: str) -> list[dict[str, Any]]:
    """Every combination of an op's choices, read from their ``Literal`` annotations: ``[{}]`` for
    an op with one formula, ``[{"approximate": "none"}, {"approximate": "tanh"}]`` for gelu."""
    hints = typing.get_type_hints(_builder(op))
    combos: list[dict[str, Any]] = [{}]
    for name in choices(op):
        combos = [{**c, name: v} for c in combos for v in typing.get_args(hints[name])]
    return combos


@functools.lru_cache(maxsize=None)
def _derive(op: str, size: int | None, chosen: tuple[tuple[str, Any], ...]) -> Derivation:
    from reference import facts

    try:
        builder = _builder(op)
    except (AttributeError, ValueError):
        raise ValueError(f"no derivation for {op!r}; known: {', '.join(facts.derived())}") from None
    if size is not None and sized(op):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        return builder(size, **dict(chosen))
    return builder(**dict(chosen))


def derive(op: str, size: int | None = None, **chosen: Any) -> Derivation:
    """The derivation of ``op``; ``size`` is C classes (or Linear's in_features) for the sized ops,
    ``chosen`` picks between formulas (``approximate="tanh"``)."""
    return _derive(op, size, tuple(sorted(chosen.items())))


@functools.lru_cache(maxsize=None)
def proof(op: str, size: int | None = None, chosen: tuple[tuple[str, Any], ...] = ()) -> Proof:
    """The proof of ``derive(op, size, **dict(chosen))`` (arguments a worker process can take)."""
    return derive(op, size, **dict(chosen)).prove()
