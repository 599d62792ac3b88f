"""The report's figures, drawn by matplotlib as SVG: each op's function and hand-derived
derivative, and torch's measured error (in ULPs, floored at the op's scale) across input magnitude.

The curves come from the numpy reference (the forward and its hand-derived ``_backward``); the
error sweep runs torch against the reference through :class:`checks.runner.Runner`, the same path
the tests take, on inputs of one magnitude at a time.
"""
from __future__ import annotations

import dataclasses
import io
from typing import Callable

import numpy as np

import reference
from checks import dtypes
from checks.runner import Runner, build_case, simplest_knobs, unsupported
from checks.spec import OpSpec, Recipe
from checks.tolerance import k_for

Curve = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _elementwise(name: str, **params) -> Curve:
    def curve(t):
        return getattr(reference, name)(t, **params), getattr(reference, f"{name}_backward")(np.ones_like(t), t, **params)
    return curve


def _first_logit(name: str) -> Curve:
    """softmax-family: z = (t, 0, 0); output or loss for class 0 and its derivative in z_0."""
    def curve(t):
        z = np.stack([t, np.zeros_like(t), np.zeros_like(t)], axis=1)
        upstream = np.zeros_like(z)
        upstream[:, 0] = 1.0
        if name in ("softmax", "log_softmax"):
            return getattr(reference, name)(z, dim=1)[:, 0], getattr(reference, f"{name}_backward")(upstream, z, dim=1)[:, 0]
        target = np.zeros(len(t), dtype=np.int64)
        loss = getattr(reference, name)(z, target, reduction="none")
        return loss, getattr(reference, f"{name}_backward")(np.ones(len(t)), z, target, reduction="none")[:, 0]
    return curve


def _against(name: str, target: float, **params) -> Curve:
    def curve(t):
        y = np.full_like(t, target)
        return getattr(reference, name)(t, y, reduction="none", **params), getattr(reference, f"{name}_backward")(np.ones_like(t), t, y, reduction="none", **params)
    return curve


def _linear(t):
    weight, bias = np.array([[1.5]]), np.array([0.5])
    x = t[:, None]
    grad_input = reference.linear_backward(np.ones((len(t), 1)), x, weight, bias)[0]
    return reference.linear(x, weight, bias)[:, 0], grad_input[:, 0]


# op -> (x range, x label, what is plotted, the curve)
CURVES: dict[str, tuple[tuple[float, float], str, str, Curve]] = {
    "sigmoid": ((-6, 6), "x", "σ(x)", _elementwise("sigmoid")),
    "relu": ((-3, 3), "x", "relu(x)", _elementwise("relu")),
    "leaky_relu": ((-3, 3), "x", "leaky_relu(x), slope 0.1", _elementwise("leaky_relu", negative_slope=0.1)),
    "elu": ((-4, 3), "x", "elu(x), α = 1", _elementwise("elu", alpha=1.0)),
    "softmax": ((-6, 6), "z₀ (z₁ = z₂ = 0)", "softmax(z)₀", _first_logit("softmax")),
    "log_softmax": ((-6, 6), "z₀ (z₁ = z₂ = 0)", "log_softmax(z)₀", _first_logit("log_softmax")),
    "linear": ((-3, 3), "x", "y = 1.5 x + 0.5", _linear),
    "cross_entropy": ((-6, 6), "z₀, the target's logit (others 0)", "loss", _first_logit("cross_entropy")),
    "nll_loss": ((-6, 0), "x₀, the target's log-probability", "loss", _first_logit("nll_loss")),
    "binary_cross_entropy": ((0.005, 0.995), "p (target y = 0.25)", "loss", _against("binary_cross_entropy", 0.25)),
    "binary_cross_entropy_with_logits": ((-6, 6), "z (target y = 0.25)", "loss", _against("binary_cross_entropy_with_logits", 0.25)),
    "mse_loss": ((-3, 3), "x (target 0)", "loss", _against("mse_loss", 0.0)),
    "l1_loss": ((-3, 3), "x (target 0)", "loss", _against("l1_loss", 0.0)),
    "huber_loss": ((-3, 3), "x (target 0, δ = 1)", "loss", _against("huber_loss", 0.0)),
    "smooth_l1_loss": ((-3, 3), "x (target 0, β = 1)", "loss", _against("smooth_l1_loss", 0.0)),
}


def svg(figure) -> str:
    """The figure as an SVG document (and closed: figures are not kept)."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})  # constrained layout already fits it
    plt.close(figure)
    return buffer.getvalue()


def _figure(width: float = 5.2, height: float = 2.9, ncols: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "byhand", "svg.fonttype": "none", "font.size": 9})  # the same bytes every run
    return plt.subplots(1, ncols, figsize=(width, height), constrained_layout=True)


def function_plot(name: str) -> str | None:
    """f and its hand-derived derivative over a typical range, or None for an op without a curve."""
    if name not in CURVES:
        return None
    (low, high), xlabel, label, curve = CURVES[name]
    t = np.linspace(low, high, 801)
    with np.errstate(all="ignore"):
        f, df = curve(t)
    figure, ax = _figure()
    ax.plot(t, f, label=label, color="#1f4e99", linewidth=1.8)
    ax.plot(t, df, label="derivative (hand-derived _backward)", color="#c2410c", linewidth=1.4, linestyle="--")
    ax.axhline(0, color="#999", linewidth=0.6)
    ax.set_xlabel(xlabel)
    ax.legend(frameon=False, loc="best")
    ax.grid(alpha=0.25)
    return svg(figure)


MAGNITUDES = np.logspace(-3, 3, 25)
SWEEP_SEEDS = 2
_PROBABILITY_INPUTS = ("binary_cross_entropy",)  # p in (0, 1): the sweep is p's distance from 0


@dataclasses.dataclass
class Sweep:
    """Worst floored ULP error of torch against the reference at each input magnitude."""

    device: str
    dtype: str
    magnitudes: list[float]
    forward: list[float | None]  # None where nothing finite was measured
    gradient: list[float | None]
    failed: list[bool]  # some element beyond the policy at that magnitude
    k_forward: float
    k_gradient: float


def _worst(records, prefix: str) -> float | None:
    values = [r.max_ulp_err for r in records if r.context.phase.startswith(prefix) and np.isfinite(r.max_ulp_err)]
    return max(values) if values else None


def sweep(spec: OpSpec, device: str, dtype: str, magnitudes: np.ndarray = MAGNITUDES) -> Sweep | None:
    """Run torch on inputs of each magnitude (random signs, mantissas in [1/2, 1)) and record the
    worst error, forward and gradient; None where the cell does not run here."""
    if not spec.differentiable or unsupported(spec.name, device, dtype):
        return None
    info = dtypes.get(dtype)
    runner = Runner(spec, device, dtype)
    knobs = simplest_knobs(spec)
    result = Sweep(device, dtype, [float(m) for m in magnitudes], [], [], [],
                   k_for("forward", dtype), k_for("gradient", dtype))
    first = next(iter(build_case(spec, Recipe(0, "normal", (4, 6), knobs), info).inputs))
    for m in magnitudes:
        records = []
        for seed in range(SWEEP_SEEDS):
            recipe = Recipe(seed, "normal", (4, 6), knobs)
            case = build_case(spec, recipe, info)
            rng = np.random.default_rng(1000 + seed)
            shape = np.shape(case.inputs[first])
            mantissa = rng.uniform(0.5, 1.0, size=shape)
            if spec.name in _PROBABILITY_INPUTS:
                values = np.minimum(m * mantissa, 0.5)
            else:
                values = m * mantissa * rng.choice([-1.0, 1.0], size=shape)
            case = dataclasses.replace(case, inputs={**case.inputs, first: dtypes.round_to(values, info)})
            with np.errstate(all="ignore"):
                records += runner.judge(runner.evaluate(recipe, module=False, case=case), recipe)
        result.forward.append(_worst(records, "forward"))
        result.gradient.append(_worst(records, "grad"))
        result.failed.append(any(not r.passed for r in records))
    return result


_DTYPE_COLOURS = {"float16": "#c2410c", "bfloat16": "#7c3aed", "float32": "#1f4e99", "float64": "#15803d"}


def error_plot(name: str, sweeps: list[Sweep]) -> str | None:
    """Forward and gradient error against input magnitude, one line per device and dtype, with
    each dtype's tolerance k dotted; magnitudes where the policy failed are marked with a red x."""
    if not sweeps:
        return None
    figure, axes = _figure(width=7.6, height=2.9, ncols=2)
    top = 1.0
    for ax, phase in zip(axes, ("forward", "gradient")):
        for s in sweeps:
            values = np.array([np.nan if v is None else v for v in getattr(s, phase)], dtype=float)
            colour = _DTYPE_COLOURS.get(s.dtype, "#333")
            label = s.dtype if s.device == "cpu" else f"{s.device} {s.dtype}"
            ax.plot(s.magnitudes, values, marker="o", markersize=2.5, linewidth=1.2, color=colour, label=label,
                    linestyle="-" if s.device == "cpu" else "--")
            ax.axhline(s.k_forward if phase == "forward" else s.k_gradient, color=colour, linewidth=0.8, linestyle=":")
            bad = np.array(s.failed)
            if bad.any():
                ax.plot(np.array(s.magnitudes)[bad], np.nan_to_num(values[bad], nan=0.0), "x", color="red", markersize=7)
            top = max(top, np.nanmax(values, initial=0.0), s.k_forward, s.k_gradient)
        ax.set_xscale("log")
        ax.set_xlabel("input magnitude" + (" (p)" if name in _PROBABILITY_INPUTS else " |x|"))
        ax.set_title(f"{phase}: worst error, ULPs (floored)", fontsize=9)
        ax.grid(alpha=0.25)
    for ax in axes:
        ax.set_ylim(-0.3, top * 1.15)
    axes[0].legend(frameon=False, fontsize=7, loc="upper left")
    return svg(figure)
