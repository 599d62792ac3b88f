"""The report's drawing of a departure's measured error map (checks/departures declares them)."""
from __future__ import annotations

from checks.departures import Map


def plot(m: Map) -> str:
    """The map as an SVG line plot."""
    from checks.report.plots import _figure, scale, svg

    figure, ax = _figure(width=6.4, height=3.0)
    figure.subplots_adjust(left=0.14)  # room for the y label and its decades
    styles = ["-", "--", ":", "-."]
    for n, (label, values) in enumerate(m.series.items()):
        ax.plot(m.x, values, label=label, linewidth=1.5 if n < 2 else 1.1, linestyle=styles[n % 4])
    scale(ax, "x", m.xscale)
    scale(ax, "y", m.yscale)
    ax.set_xlabel(m.xlabel)
    ax.set_ylabel(m.ylabel)
    ax.grid(alpha=0.25)
    ax.legend(frameon=False, fontsize=7)
    return svg(figure)
