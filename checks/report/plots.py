"""The report's figures, drawn by matplotlib as SVG: each op's function and hand-derived
derivative, and torch's measured error (in ULPs, floored at the op's scale) across input magnitude.

The curves come from the numpy reference (the forward and its hand-derived ``_backward``); the
error sweep runs torch against the reference through :class:`checks.runner.Runner`, the same path
the tests take, on inputs of one magnitude at a time.
"""
from __future__ import annotations

import dataclasses
import io
import numpy as np

from checks import dtypes
from reference import facts
from checks.runner import Runner, build_case, simplest_knobs, unsupported
from checks.spec import OpSpec, Recipe
from checks.tolerance import k_for

def svg(figure) -> str:
    """The figure as an SVG document (and closed: figures are not kept)."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(figure)
    return buffer.getvalue()


def _figure(width: float = 5.2, height: float = 2.9, ncols: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "byhand", "svg.fonttype": "none", "font.size": 9})  # the same bytes every run
    figure, axes = plt.subplots(1, ncols, figsize=(width, height))
    # Fixed margins: a layout engine measures every label first and costs about 0.4 s a figure.
    figure.subplots_adjust(left=0.09 if ncols == 1 else 0.06, right=0.98, bottom=0.16, top=0.9, wspace=0.2)
    return figure, axes


def scale(ax, which: str, kind: str) -> None:
    """Set an axis' scale; a log axis labels its decades 0.001 ... 1e+20 as plain text: the default
    draws each as mathtext, which takes longer to parse than the rest of the figure to draw."""
    from matplotlib import ticker

    getattr(ax, f"set_{which}scale")(kind)
    axis = getattr(ax, f"{which}axis")
    if kind in ("log", "symlog"):
        axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(ticker.NullFormatter())


def function_plot(name: str) -> str | None:
    """f and its hand-derived derivative over the range its facts declare (reference/facts.py), or
    None for an op without a curve."""
    curve = facts.of(name).curve
    if curve is None:
        return None
    t = np.linspace(curve.low, curve.high, 801)
    xlabel, label = curve.xlabel, curve.label
    with np.errstate(all="ignore"):
        f, df = curve.values(t)
    figure, ax = _figure()
    ax.plot(t, f, label=label, color="#1f4e99", linewidth=1.8)
    ax.plot(t, df, label="derivative (hand-derived _backward)", color="#c2410c", linewidth=1.4, linestyle="--")
    ax.axhline(0, color="#999", linewidth=0.6)
    ax.set_xlabel(xlabel)
    ax.legend(frameon=False, loc="best")
    ax.grid(alpha=0.25)
    return svg(figure)


MAGNITUDES = np.logspace(-3, 3, 19)  # three per decade
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
    # the first real-valued input is swept (embedding's first input is integer indices)
    first = next(k for k, v in build_case(spec, Recipe(0, "normal", (4, 6), knobs), info).inputs.items() if isinstance(v, np.ndarray) and v.dtype.kind == "f")
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
        scale(ax, "x", "log")
        ax.set_xlabel("input magnitude" + (" (p)" if name in _PROBABILITY_INPUTS else " |x|"))
        ax.set_title(f"{phase}: worst error, ULPs (floored)", fontsize=9)
        ax.grid(alpha=0.25)
    for ax in axes:
        ax.set_ylim(-0.3, top * 1.15)
    axes[0].legend(frameon=False, fontsize=7, loc="upper left")
    return svg(figure)
