"""Write a :class:`checks.report.Report` as files, through Jinja2 templates, atomically.

Everything is rendered into a hidden staging folder beside the target and swapped in only when
every file is complete: an interrupted run leaves the previous report (or nothing) in place,
never a half-written one. A target that exists and is not a byhand report is refused, so
``--out .`` cannot wipe a working tree.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import jinja2
from markupsafe import Markup, escape

from checks.compare import jsonable
from checks.environment import settings_on
from checks.report import SCHEMA, SCHEMA_VERSION, Report
from checks.report.formulas import mathml, segments, split_math
from checks.tolerance import k_for

FORMATS = ("html", "md", "json", "tex")
MARKER = ".byhand-report"
FILES = {"html": "index.html", "md": "report.md", "json": "report.json", "tex": "report.tex"}


def parse_formats(value: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    unknown = [v for v in chosen if v not in FORMATS]
    if unknown or not chosen:
        raise ValueError(f"--format: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(FORMATS)}")
    return chosen


# --- views: what the templates show, computed here so templates stay declarative ----------------


def _worst(cell: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    records = [r for phase, r in cell["worst"].items() if phase.startswith(prefix)]
    if not records:
        return None
    def size(r):
        v = r["max_ulp_err"]
        return float("inf") if isinstance(v, str) else v
    worst = max(records, key=size)
    return {"ulp": worst["max_ulp_err"], "k": worst["k"], "passed": worst["passed"]}


def matrix(op: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per device × dtype: worst floored ULP error forward and gradient against k."""
    return [{"device": c["device"], "dtype": c["dtype"], "status": c["status"], "examples": c["examples"], "skip_reason": c["skip_reason"],
             "forward": _worst(c, "forward"), "gradient": _worst(c, "grad"), "message": c["message"],
             "known": ", ".join(f"{d['quirk']} ×{d['elements']}" for d in c.get("known_deviations", []))} for c in op["cells"]]


def _ulp(value: Any) -> str:
    return value if isinstance(value, str) else f"{value:.2f}"


def _environment_rows(env: dict[str, Any]) -> list[tuple[str, str]]:
    keys = ("torch", "numpy", "sympy", "python", "platform", "cpu_model", "devices", "cpu_capability", "threads", "cuda")
    rows = [(k, str(env[k])) for k in keys if env.get(k) is not None]
    if env.get("cpu_features") is not None:
        rows.append(("cpu features", ", ".join(env["cpu_features"]) or "none of note"))
    if env.get("quirks") is not None:
        rows.append(("quirks that show here", ", ".join(env["quirks"]) or "none"))
    if env.get("knobs") is not None:
        rows.append(("settings that change numerics", "; ".join(settings_on(env["knobs"])) or "none (torch's defaults)"))
    if "cuda_device" in env:
        rows.append(("cuda device", ", ".join(f"{k} {v}" for k, v in env["cuda_device"].items())))
    return rows


# --- filters --------------------------------------------------------------------------------------


def _prose_html(text: str | None) -> Markup:
    """Docstring prose: text escaped, each $...$ drawn as an SVG image with its TeX as alt text."""
    if not text:
        return Markup("")
    parts = []
    for kind, piece in segments(text):
        if kind == "text":
            parts.append(escape(piece))
        else:
            parts.append(Markup('<img class="formula" src="{}" alt="{}" style="width:{:.1f}pt;height:{:.1f}pt;vertical-align:-{:.1f}pt">').format(
                piece.uri, piece.tex, piece.width, piece.height, piece.depth))
    return Markup("").join(parts)


_TEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                 "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "−": "-", "·": r"$\cdot$", "×": r"$\times$", "—": "---",
                 "–": "--", "≤": r"$\leq$", "≥": r"$\geq$", "≪": r"$\ll$", "→": r"$\to$", "σ": r"$\sigma$", "ε": r"$\varepsilon$",
                 "Σ": r"$\Sigma$", "δ": r"$\delta$", "α": r"$\alpha$", "β": r"$\beta$", "′": "'", "±": r"$\pm$", "’": "'"}


def tex_escape(text: Any) -> str:
    return "".join(_TEX_SPECIALS.get(ch, ch) for ch in str(text))


def _prose_tex(text: str | None) -> str:
    """Docstring prose for LaTeX: text escaped, $...$ kept as math."""
    if not text:
        return ""
    return "".join(f"${piece}$" if kind == "math" else tex_escape(piece) for kind, piece in split_math(text))


def _data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _environment(kind: str) -> jinja2.Environment:
    loader = jinja2.PackageLoader("checks.report", "templates")
    if kind == "tex":  # LaTeX braces and percent signs would clash with Jinja2's defaults
        env = jinja2.Environment(loader=loader, block_start_string="((*", block_end_string="*))", variable_start_string="(((",
                                 variable_end_string=")))", comment_start_string="((=", comment_end_string="=))",
                                 trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
        env.filters["e"] = tex_escape
        env.filters["prose"] = _prose_tex
    else:
        env = jinja2.Environment(loader=loader, autoescape=jinja2.select_autoescape(["html"]) if kind == "html" else False,
                                 trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
        env.filters["prose"] = _prose_html
    env.filters["ulp"] = _ulp
    return env


def _context(report: Report) -> dict[str, Any]:
    data = report.data
    return {"r": data, "summary": data["summary"], "env_rows": _environment_rows(data["environment"]), "matrix": matrix,
            "mathml": lambda op, i: Markup(mathml(report.derivations[op].steps[i].expr, display=False)), "figure_uri": lambda path: _data_uri(report.figures[path]),
            "k_for": k_for}


# --- writers --------------------------------------------------------------------------------------


def _write_html(report: Report, folder: Path) -> None:
    (folder / FILES["html"]).write_text(_environment("html").get_template("index.html.j2").render(**_context(report)), encoding="utf-8")


def _write_md(report: Report, folder: Path) -> None:
    for path, svg in report.figures.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(svg, encoding="utf-8")
    (folder / FILES["md"]).write_text(_environment("md").get_template("report.md.j2").render(**_context(report)), encoding="utf-8")


def _write_json(report: Report, folder: Path) -> None:
    (folder / FILES["json"]).write_text(json.dumps(jsonable(report.data), indent=1, allow_nan=False) + "\n", encoding="utf-8")


def _write_tex(report: Report, folder: Path) -> None:
    (folder / FILES["tex"]).write_text(_environment("tex").get_template("report.tex.j2").render(**_context(report)), encoding="utf-8")


WRITERS: dict[str, Callable[[Report, Path], None]] = {"html": _write_html, "md": _write_md, "json": _write_json, "tex": _write_tex}


def check_target(out: Path) -> None:
    """Refuse a target that exists and is not a byhand report (its files would be replaced)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise ValueError(f"--out {out}: exists and is not a byhand report folder; refusing to replace it (choose a new or empty folder)")


def write(report: Report, out: str | Path, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Render ``formats`` into ``out``, all or nothing; returns the files written."""
    out = Path(out).absolute()
    check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the report is an ordinary folder
    try:
        for kind in formats:
            WRITERS[kind](report, staging)
        (staging / MARKER).write_text(json.dumps({"schema": SCHEMA, "schema_version": SCHEMA_VERSION}) + "\n")
        _swap(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out / FILES[kind] for kind in formats]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _swap(staging: Path, out: Path) -> None:
    """Replace ``out`` by the finished ``staging`` folder with renames only."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / "report")
    try:
        os.rename(staging, out)
    except BaseException:
        if old is not None:  # put the previous report back where it was
            os.rename(old / "report", out)
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
