r"""Every hand-derived gradient, proved with sympy.

For each op: a symbolic definition (scalar, or over C symbolic classes / a small Linear layer), the
gradient obtained with ``sympy.diff``, and the closed form the numpy ``<op>_backward`` uses. A
:class:`Derivation` keeps the reasoning as steps (definition, chain-rule factors, result) for the
reports, and :meth:`Derivation.prove` shows ``derived == hand``: by ``simplify(derived - hand) == 0``,
or, where simplify is inconclusive (piecewise losses), by 50-digit evaluation at random rational
points of the domain, and says which.

Vector ops are proved in vector-Jacobian form, the form ``_backward`` computes: with a symbolic
upstream gradient g, $L = \sum_i g_i f_i(z)$ and $\partial L/\partial z_j$.
"""
from __future__ import annotations

import functools
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import sympy as sp

DIGITS = 50


@dataclass(frozen=True)
class Step:
    title: str
    expr: sp.Basic


@dataclass(frozen=True)
class Proof:
    proven: bool
    method: str  # "simplify" or "50-digit evaluation at N random points"
    seconds: float


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

    @property
    def differentiable(self) -> bool:
        return bool(self.wrt)

    @functools.cached_property
    def derived(self) -> tuple[sp.Expr, ...]:
        return tuple(sp.diff(self.definition, v) for v in self.wrt)

    def prove(self, points: int = 12, seed: int = 0) -> Proof:
        started = time.perf_counter()
        differences = [d - h for d, h in zip(self.derived, self.hand)]
        if all(sp.simplify(diff) == 0 for diff in differences):
            return Proof(True, "simplify", time.perf_counter() - started)
        ok = all(self._vanishes(diff, points, seed) for diff in differences)
        return Proof(ok, f"{DIGITS}-digit evaluation at {points} random points", time.perf_counter() - started)

    def _vanishes(self, expr: sp.Expr, points: int, seed: int) -> bool:
        rng = random.Random(seed)
        free = sorted(expr.free_symbols, key=str)
        for _ in range(points):
            values = {s: sp.Rational(round(rng.uniform(*self.domain.get(s, (-3.0, 3.0))) * 1000), 1000) for s in free}
            if abs(sp.N(expr.subs(values), DIGITS)) > sp.Float(10) ** (8 - DIGITS):
                return False
        return True

    def gradient_at(self, values: dict[str, object], modules: str = "numpy") -> list:
        """The sympy-derived gradient evaluated through ``sympy.lambdify`` (a third path to the
        numbers, independent of the numpy code), with each symbol's value given by name."""
        args = sorted(self.definition.free_symbols | set(self.wrt), key=str)
        fn = _lambdified(self, tuple(args), modules)
        return fn(*(values[str(s)] for s in args))


@functools.lru_cache(maxsize=None)
def _lambdified(derivation: Derivation, args: tuple[sp.Symbol, ...], modules: str) -> Callable:
    return sp.lambdify(args, list(derivation.derived), modules)


x, y, z, g, a, alpha, delta, beta, w, pw, p = sp.symbols("x y z g a alpha delta beta w p_w p", real=True)
i, j, c, k = sp.symbols("i j c k", integer=True)
P, Z, G, A, Q = (sp.IndexedBase(n) for n in ("p", "z", "g", "a", "q"))
L = sp.Symbol("L")


def _named(name: str) -> type[sp.Function]:
    """An undefined function printed as its whole name: sympy's LaTeX printer would read the
    underscore of ``leaky_relu`` as a subscript."""
    def _latex(self, printer, exp=None):
        escaped = name.replace("_", r"\_")
        args = ", ".join(printer._print(a) for a in self.args)
        return rf"\operatorname{{{escaped}}}\left({args}\right)"

    return type(name, (sp.Function,), {"_latex": _latex})


SIGMA = sp.Function("sigma")  # the logistic function as a name: sigma(x) in the steps


def _sigma(t: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-t))


def _elementwise(op: str, f: sp.Expr, hand: sp.Expr, steps: tuple[Step, ...] = (), **domain: tuple[float, float]) -> Derivation:
    """A scalar op f(x): L = g f(x), so dL/dx = g f'(x)."""
    lhs = _named(op)(x)
    base = (Step("definition", sp.Eq(lhs, f)), *steps, Step("derivative (hand)", sp.Eq(sp.Derivative(lhs, x), hand)))
    return Derivation(op, g * f, (x,), (g * hand,), base, {sp.Symbol(k, real=True): v for k, v in domain.items()})


def sigmoid() -> Derivation:
    s = _sigma(x)
    steps = (Step("quotient rule", sp.Eq(sp.Derivative(s, x), sp.exp(-x) / (1 + sp.exp(-x)) ** 2)),
             Step("as outputs", sp.Eq(sp.exp(-x) / (1 + sp.exp(-x)) ** 2, SIGMA(x) * SIGMA(-x))))
    return _elementwise("sigmoid", s, s * _sigma(-x), steps)


def relu() -> Derivation:
    return _elementwise("relu", sp.Piecewise((x, x > 0), (0, True)), sp.Piecewise((1, x > 0), (0, True)))


def leaky_relu() -> Derivation:
    d = _elementwise("leaky_relu", sp.Piecewise((x, x > 0), (a * x, True)), sp.Piecewise((1, x > 0), (a, True)), a=(0.0, 1.0))
    return d


def elu() -> Derivation:
    return _elementwise("elu", sp.Piecewise((x, x > 0), (alpha * (sp.exp(x) - 1), True)), sp.Piecewise((1, x > 0), (alpha * sp.exp(x), True)), alpha=(0.1, 3.0))


def _classes(n: int) -> tuple[tuple[sp.Symbol, ...], tuple[sp.Symbol, ...], list[sp.Expr]]:
    zs = sp.symbols(f"z_1:{n + 1}", real=True)
    gs = sp.symbols(f"g_1:{n + 1}", real=True)
    denominator = sum(sp.exp(t) for t in zs)
    return zs, gs, [sp.exp(t) / denominator for t in zs]


SOFTMAX_STEPS = (
    Step("softmax", sp.Eq(P[i], sp.exp(Z[i]) / sp.Sum(sp.exp(Z[k]), (k, 1, sp.Symbol("C"))))),
    Step("its Jacobian", sp.Eq(sp.Derivative(P[i], Z[j]), P[i] * (sp.KroneckerDelta(i, j) - P[j]))),
)


def softmax(n: int = 3) -> Derivation:
    zs, gs, ps = _classes(n)
    total = sum(gi * pi for gi, pi in zip(gs, ps))
    hand = tuple(ps[jj] * (gs[jj] - total) for jj in range(n))
    steps = (Step("definition", SOFTMAX_STEPS[0].expr), SOFTMAX_STEPS[1],
             Step("vector-Jacobian product", sp.Eq(sp.Derivative(L, Z[j]), P[j] * (G[j] - sp.Sum(G[i] * P[i], (i, 1, sp.Symbol("C")))))))
    return Derivation("softmax", total, zs, hand, steps, size=n)


def log_softmax(n: int = 3) -> Derivation:
    zs, gs, ps = _classes(n)
    logp = [t - sp.log(sum(sp.exp(u) for u in zs)) for t in zs]
    hand = tuple(gs[jj] - ps[jj] * sum(gs) for jj in range(n))
    steps = (Step("definition", sp.Eq(sp.log(P[i]), Z[i] - sp.log(sp.Sum(sp.exp(Z[k]), (k, 1, sp.Symbol("C")))))),
             Step("its Jacobian", sp.Eq(sp.Derivative(sp.log(P[i]), Z[j]), sp.KroneckerDelta(i, j) - P[j])),
             Step("vector-Jacobian product", sp.Eq(sp.Derivative(L, Z[j]), G[j] - P[j] * sp.Sum(G[i], (i, 1, sp.Symbol("C"))))))
    return Derivation("log_softmax", sum(gi * li for gi, li in zip(gs, logp)), zs, hand, steps, size=n)


def cross_entropy(n: int = 3) -> Derivation:
    """One sample, any coefficients a_c: class index t gives a = w_t(1-eps) e_t + w eps/C,
    probabilities q give a = w((1-eps) q + eps/C); reductions only scale the result."""
    zs, _, ps = _classes(n)
    coeffs = sp.symbols(f"a_1:{n + 1}", real=True)
    loss = -sum(ac * sp.log(pc) for ac, pc in zip(coeffs, ps))
    hand = tuple(ps[jj] * sum(coeffs) - coeffs[jj] for jj in range(n))
    C = sp.Symbol("C")
    steps = (Step("definition", sp.Eq(L, -sp.Sum(A[c] * sp.log(P[c]), (c, 1, C)))), *SOFTMAX_STEPS,
             Step("chain rule", sp.Eq(sp.Derivative(L, Z[j]), sp.Sum(-A[c] / P[c] * P[c] * (sp.KroneckerDelta(c, j) - P[j]), (c, 1, C)))),
             Step("result", sp.Eq(sp.Derivative(L, Z[j]), P[j] * sp.Sum(A[c], (c, 1, C)) - A[j])),
             Step("one-hot target t, no weights", sp.Eq(sp.Derivative(L, Z[j]), P[j] - sp.KroneckerDelta(j, sp.Symbol("t")))))
    return Derivation("cross_entropy", loss, zs, hand, steps, size=n)


def nll_loss(n: int = 3) -> Derivation:
    xs = sp.symbols(f"x_1:{n + 1}", real=True)
    coeffs = sp.symbols(f"a_1:{n + 1}", real=True)  # a = w_t e_t
    steps = (Step("definition", sp.Eq(L, -sp.Sum(A[c] * sp.IndexedBase("x")[c], (c, 1, sp.Symbol("C"))))),
             Step("result", sp.Eq(sp.Derivative(L, sp.IndexedBase("x")[j]), -A[j])))
    return Derivation("nll_loss", -sum(ac * xc for ac, xc in zip(coeffs, xs)), xs, tuple(-ac for ac in coeffs), steps, size=n)


def binary_cross_entropy() -> Derivation:
    loss = -w * (y * sp.log(p) + (1 - y) * sp.log(1 - p))
    steps = (Step("definition", sp.Eq(L, loss)),
             Step("derivative", sp.Eq(sp.Derivative(L, p), -w * (y / p - (1 - y) / (1 - p)))),
             Step("one fraction", sp.Eq(sp.Derivative(L, p), w * (p - y) / (p * (1 - p)))))
    return Derivation("binary_cross_entropy", loss, (p,), (w * (p - y) / (p * (1 - p)),), steps, {p: (0.01, 0.99), y: (0.0, 1.0), w: (0.1, 3.0)},
                      note="torch clamps each log at -100 and floors p(1-p) at 1e-12; both are conventions at p = 0, 1, outside this proof.")


def binary_cross_entropy_with_logits() -> Derivation:
    loss = w * (pw * y * sp.log(1 + sp.exp(-z)) + (1 - y) * sp.log(1 + sp.exp(z)))
    hand = w * ((1 - y) * _sigma(z) - pw * y * _sigma(-z))
    steps = (Step("definition", sp.Eq(L, loss)),
             Step("softplus derivative", sp.Eq(sp.Derivative(sp.log(1 + sp.exp(z)), z), SIGMA(z))),
             Step("result", sp.Eq(sp.Derivative(L, z), hand)))
    return Derivation("binary_cross_entropy_with_logits", loss, (z,), (hand,), steps, {y: (0.0, 1.0), w: (0.1, 3.0), pw: (0.1, 3.0)})


def _regression(op: str, term: sp.Expr, hand: sp.Expr, **domain: tuple[float, float]) -> Derivation:
    d = x - y
    steps = (Step("definition", sp.Eq(L, term)), Step("derivative (hand)", sp.Eq(sp.Derivative(L, x), hand)))
    return Derivation(op, term, (x,), (hand,), steps, {sp.Symbol(k, real=True): v for k, v in domain.items()}, note="" if op == "mse_loss" else "d = x - y")


def mse_loss() -> Derivation:
    return _regression("mse_loss", (x - y) ** 2, 2 * (x - y))


def l1_loss() -> Derivation:
    return _regression("l1_loss", sp.Abs(x - y), sp.sign(x - y))


def huber_loss() -> Derivation:
    d = x - y
    term = sp.Piecewise((d**2 / 2, sp.Abs(d) < delta), (delta * (sp.Abs(d) - delta / 2), True))
    hand = sp.Piecewise((-delta, d < -delta), (delta, d > delta), (d, True))
    return _regression("huber_loss", term, hand, delta=(0.1, 3.0))


def smooth_l1_loss() -> Derivation:
    d = x - y
    term = sp.Piecewise((d**2 / (2 * beta), sp.Abs(d) < beta), (sp.Abs(d) - beta / 2, True))
    hand = sp.Piecewise((d / beta, sp.Abs(d) < beta), (sp.sign(d), True))
    return _regression("smooth_l1_loss", term, hand, beta=(0.1, 3.0))


def linear(n_in: int = 2, n_out: int = 2) -> Derivation:
    xs = sp.symbols(f"x_1:{n_in + 1}", real=True)
    W = sp.Matrix(n_out, n_in, lambda r, s: sp.Symbol(f"W_{r + 1}{s + 1}", real=True))
    bs = sp.symbols(f"b_1:{n_out + 1}", real=True)
    gs = sp.symbols(f"g_1:{n_out + 1}", real=True)
    ys = [sum(W[r, s] * xs[s] for s in range(n_in)) + bs[r] for r in range(n_out)]
    wrt = (*xs, *W, *bs)
    hand = (*(sum(gs[r] * W[r, s] for r in range(n_out)) for s in range(n_in)), *(gs[r] * xs[s] for r in range(n_out) for s in range(n_in)), *gs)
    Wb, Xb, Bb = sp.IndexedBase("W"), sp.IndexedBase("x"), sp.IndexedBase("b")
    steps = (Step("definition", sp.Eq(sp.IndexedBase("y")[k], sp.Sum(Wb[k, i] * Xb[i], (i, 1, sp.Symbol("n"))) + Bb[k])),
             Step("input", sp.Eq(sp.Derivative(L, Xb[i]), sp.Sum(G[k] * Wb[k, i], (k, 1, sp.Symbol("m"))))),
             Step("weight", sp.Eq(sp.Derivative(L, Wb[k, i]), G[k] * Xb[i])),
             Step("bias", sp.Eq(sp.Derivative(L, Bb[k]), G[k])))
    return Derivation("linear", sum(gr * yr for gr, yr in zip(gs, ys)), wrt, hand, steps, size=n_in)


def one_hot() -> Derivation:
    t = sp.Symbol("t", integer=True)
    steps = (Step("definition", sp.Eq(sp.Indexed(sp.IndexedBase(_named("one_hot")(t)), c), sp.KroneckerDelta(t, c))),)
    return Derivation("one_hot", sp.KroneckerDelta(t, c), (), (), steps, note="integer in, integer out: not differentiable")


BUILDERS: dict[str, Callable[..., Derivation]] = {
    f.__name__: f
    for f in (sigmoid, relu, leaky_relu, elu, softmax, log_softmax, linear, one_hot, cross_entropy, nll_loss,
              binary_cross_entropy, binary_cross_entropy_with_logits, mse_loss, l1_loss, huber_loss, smooth_l1_loss)
}


SIZED = ("softmax", "log_softmax", "cross_entropy", "nll_loss", "linear")  # take C (or in_features)


@functools.lru_cache(maxsize=None)
def derive(op: str, size: int | None = None) -> Derivation:
    """The derivation of ``op``; ``size`` is C classes (or Linear's in_features) for the ops in SIZED."""
    if op not in BUILDERS:
        raise ValueError(f"no derivation for {op!r}; known: {', '.join(BUILDERS)}")
    if size is not None and op in SIZED:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        return BUILDERS[op](size)
    return BUILDERS[op]()


@functools.lru_cache(maxsize=None)
def proof(op: str, size: int | None = None) -> Proof:
    return derive(op, size).prove()
