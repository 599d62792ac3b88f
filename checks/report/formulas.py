"""Math for the report pages: sympy expressions as MathML (browsers render it natively) and the
reference docstrings' ``$...$`` formulas as SVG drawn by matplotlib's mathtext.

sympy's presentation-MathML printer names a few objects instead of drawing them (``kroneckerdelta``,
``piecewise``) and uses the double-struck differential and exponential; the printer below draws
them as a person writes them. No MathML or SVG is written by hand here: sympy and matplotlib
produce it, these overrides only choose the symbols.
"""
from __future__ import annotations

import base64
import functools
import io
import re
from dataclasses import dataclass

import sympy as sp
from sympy.printing.mathml import MathMLPresentationPrinter

_GREEK = {"sigma": "σ", "delta": "δ", "alpha": "α", "beta": "β"}


class _Printer(MathMLPresentationPrinter):
    def _element(self, tag: str, *children, text: str | None = None):
        node = self.dom.createElement(tag)
        if text is not None:
            node.appendChild(self.dom.createTextNode(text))
        for child in children:
            node.appendChild(child)
        return node

    def mathml_tag(self, e):
        # Every derivative here is one partial derivative of a function of many variables.
        return "∂" if isinstance(e, sp.Derivative) else super().mathml_tag(e)

    def _print_Exp1(self, e):
        return self._element("mi", text="e")

    def _print_Function(self, e):
        name = type(e).__name__
        if name in _GREEK:
            return self._element("mrow", self._element("mi", text=_GREEK[name]), self._paren_comma_separated(*e.args))
        return super()._print_Function(e)

    def _print_KroneckerDelta(self, e):
        indices = self._element("mrow", *(self._print(a) for a in e.args))
        return self._element("msub", self._element("mi", text="δ"), indices)

    def _print_Piecewise(self, e):
        rows = []
        for value, cond in e.args:
            when = self._element("mtext", text="otherwise") if cond is sp.true else self._element(
                "mrow", self._element("mtext", text="if\u00a0"), self._print(cond))
            rows.append(self._element("mtr", self._element("mtd", self._print(value)), self._element("mtd", when)))
        table = self._element("mtable", *rows)
        table.setAttribute("columnalign", "left left")
        return self._element("mrow", self._element("mo", text="{"), table)


_PRINTER = _Printer()


def mathml(expr: sp.Basic, *, display: bool = True) -> str:
    """``expr`` as a ``<math>`` element, with its LaTeX kept as an annotation (copyable)."""
    body = _PRINTER.doprint(expr)
    tex = sp.latex(expr).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    mode = ' display="block"' if display else ""
    return f'<math{mode}><semantics><mrow>{body}</mrow><annotation encoding="application/x-tex">{tex}</annotation></semantics></math>'


@dataclass(frozen=True)
class Formula:
    """One ``$...$`` segment drawn as SVG: its data URI, size in pt and depth below the baseline."""

    tex: str
    uri: str
    width: float
    height: float
    depth: float


_MATH = re.compile(r"\$(.+?)\$", re.S)


@functools.lru_cache(maxsize=None)
def formula(tex: str, size: float = 11.0) -> Formula:
    """Draw ``tex`` (mathtext's subset of TeX) as SVG outlines of its glyphs, so the page needs no
    font to show it; raises ValueError where mathtext cannot lay it out.

    matplotlib lays the formula out once, and its SVG renderer draws the glyphs' path: a third of
    the cost of ``mathtext.math_to_image``, whose figure lays it out three times."""
    from matplotlib.backends.backend_svg import RendererSVG
    from matplotlib.font_manager import FontProperties
    from matplotlib.path import Path
    from matplotlib.transforms import Affine2D

    text_to_path, math = _text_to_path(), f"${tex}$"
    prop = FontProperties(size=size)
    # get_text_path lays the formula out at FONT_SCALE; its box comes from that same layout.
    layout = prop.copy()
    layout.set_size(text_to_path.FONT_SCALE)
    width, height, depth, _, _ = text_to_path.mathtext_parser.parse(math, text_to_path.DPI, layout)
    to_pt = size / text_to_path.FONT_SCALE
    vertices, codes = text_to_path.get_text_path(prop, math, ismath=True)
    width, height, depth = (float(v) * to_pt for v in (width, height, depth))
    buffer = io.StringIO()
    renderer = RendererSVG(width, height, buffer, metadata={"Date": None})  # the same bytes every run
    gc = renderer.new_gc()
    gc.set_linewidth(0)
    renderer.draw_path(gc, Path(vertices, codes), Affine2D().scale(to_pt).translate(0, depth), (0, 0, 0, 1))
    gc.restore()
    renderer.finalize()
    svg = buffer.getvalue().encode()
    return Formula(tex, "data:image/svg+xml;base64," + base64.b64encode(svg).decode(), width, height, depth)


@functools.lru_cache(maxsize=1)
def _text_to_path():
    from matplotlib.textpath import TextToPath

    return TextToPath()


def drawable(tex: str, size: float = 11.0) -> bool:
    """Whether mathtext can lay ``tex`` out: what :func:`formula` needs, without drawing it."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.mathtext import MathTextParser

    try:
        MathTextParser("path").parse(f"${tex}$", dpi=72, prop=FontProperties(size=size))
    except ValueError:
        return False
    return True


def split_math(text: str) -> list[tuple[str, str]]:
    """Prose with ``$...$`` math as ("text", str) and ("math", TeX) pieces, in order."""
    return [("math" if odd else "text", piece) for odd, piece in ((i % 2, p) for i, p in enumerate(_MATH.split(text))) if piece]


def segments(text: str) -> list[tuple[str, Formula | str]]:
    """Split prose with ``$...$`` math into ("text", str) and ("math", Formula) pieces."""
    return [(kind, formula(piece) if kind == "math" else piece) for kind, piece in split_math(text)]
