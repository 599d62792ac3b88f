"""``byhand report``: every format written, atomically; the page rendered by a real browser; a
failing check impossible to miss; report.json valid against its documented schema."""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import sympy as sp

from checks import cli, faults, matrix
from checks.registry import REGISTRY
from checks.report import SCHEMA_FILE, _first_paragraph, build, formulas
from checks.report import chains, render

ROOT = Path(__file__).resolve().parent.parent
OPS = "sigmoid,softmax,one_hot"
MAGNITUDES = np.logspace(-3, 3, 7)  # the command samples 19; a coarser sweep keeps the suite fast
LATEX_COMMAND = re.compile(r"\\(frac|partial|sigma|mathrm|sum|delta|ell|alpha|beta|log|operatorname|begin)\b")


@pytest.fixture(scope="module")
def passing(tmp_path_factory):
    """A small report over a cross-section of the registry: elementwise (with a deviation), the
    softmax family, an integer op; CPU, float32 and float64; and both networks, link by link.
    (The whole registry is the command's job: about 50 s.)"""
    out = tmp_path_factory.mktemp("report") / "passing"
    report = build(matrix.cells("cpu", "float32,float64", OPS), examples=5, magnitudes=MAGNITUDES, networks=list(chains.CHAINS))
    render.write(report, out)
    _BROWSER["passing"] = _open_in_chromium(out / "index.html", tmp_path_factory.mktemp("browser"))  # it renders while the tests below run
    yield report, out
    if _BROWSER["passing"] is not None and _BROWSER["passing"][0].poll() is None:  # its test was not run
        _BROWSER["passing"][0].kill()
        _BROWSER["passing"][0].communicate()


@pytest.fixture(scope="module")
def failing(tmp_path_factory):
    """The same machinery with a real fault injected into torch: float64 softmax off by 1e-10. Only
    draws that compute in float64 meet it (not an empty tensor, not dtype=float32): 8 examples, so
    that finding it is not the luck of a few draws."""
    out = tmp_path_factory.mktemp("report") / "failing"
    with faults.get("softmax-1e-10-float64").active():
        code = cli.main(["report", "--out", str(out), "--ops", "softmax", "--dtype", "float64", "--examples", "8", "--sweep-points", "7", "--quiet"])
    return code, out


def test_every_format_is_written_into_a_marked_folder(passing):
    report, out = passing
    assert {p.name for p in out.iterdir()} == {"index.html", "report.md", "report.json", "report.tex", "plots", render.MARKER}
    assert report.passed and report.data["summary"]["cells"] == 5 and report.data["summary"]["examples"] > 0
    assert report.data["summary"]["sweep_failures"] == []
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".passing.")], "no staging folder left behind"


def test_report_json_follows_its_documented_schema(passing):
    _, out = passing
    data = json.loads((out / "report.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA_FILE.read_text()))
    env = data["environment"]
    assert data["schema_version"] == 1 and env["torch"] and env["cpu_capability"] and env["threads"] >= 1 and "build" in env
    softmax = next(op for op in data["ops"] if op["name"] == "softmax")
    assert softmax["derivation"]["proof"]["proven"] and [c["dtype"] for c in softmax["cells"]] == ["float32", "float64"]
    assert len(softmax["error_by_magnitude"]) == 2 and all(s["failed"] == [False] * len(s["magnitudes"]) for s in softmax["error_by_magnitude"])


def test_the_page_is_one_self_contained_file(passing):
    report, out = passing
    page = (out / "index.html").read_text()
    assert not re.search(r"""(src|href)=["'](https?:|//)""", page) and "<link" not in page and "<script" not in page
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert sources and all(s.startswith("data:image/svg+xml;base64,") for s in sources)
    steps = sum(len(op["derivation"]["steps"]) for op in report.data["ops"])
    assert page.count("<math") == steps and "kroneckerdelta" not in page and "piecewise" not in page


def test_markdown_has_tex_math_and_its_plot_files(passing):
    _, out = passing
    text = (out / "report.md").read_text()
    assert "$$\n\\operatorname{sigmoid}\\left(x\\right) = \\frac{1}{1 + e^{- x}}\n$$" in text
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert figures and all((out / f).is_file() and (out / f).read_text().lstrip().startswith("<?xml") for f in figures)
    assert text.index("## sigmoid") < text.index("## Documented deviations")


def test_a_failing_check_is_at_the_top_of_every_format(failing):
    code, out = failing
    assert code == 1
    page = (out / "index.html").read_text()
    verdict = page.index('id="verdict" class="verdict fail"')
    assert verdict < page.index('<section class="op"') and page.index("softmax-cpu-float64", verdict) < page.index("<main>")
    assert "DISAGREES" in page[verdict:page.index("<main>")]
    md = (out / "report.md").read_text()
    assert md.index("FAILED: 1 of 1 cells") < md.index("## ")
    data = json.loads((out / "report.json").read_text())
    assert not data["summary"]["passed"] and [f["cell"] for f in data["summary"]["failures"]] == ["softmax-cpu-float64"]
    # The sweep sees the fault at every magnitude, and says so beside the verdict.
    assert [(s["op"], s["dtype"], len(s["magnitudes"])) for s in data["summary"]["sweep_failures"]] == [("softmax", "float64", 7)]
    assert verdict < page.index('id="sweep-warning"') < page.index("<main>")
    assert "FAILED" in (out / "report.tex").read_text()


def test_an_interrupted_write_keeps_the_previous_report(passing, tmp_path, monkeypatch):
    report, _ = passing
    out = tmp_path / "report"
    render.write(report, out, ("json",))
    before = (out / "report.json").read_bytes()

    def interrupted(report, folder):
        (folder / "report.tex").write_text("\\documentclass{article}\n")  # half a file, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setitem(render.WRITERS, "tex", interrupted)
    with pytest.raises(KeyboardInterrupt):
        render.write(report, out, ("md", "json", "tex"))
    assert (out / "report.json").read_bytes() == before and not (out / "report.md").exists() and not (out / "report.tex").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["report"], "the staging folder is removed"


def test_a_folder_that_is_not_a_report_is_never_replaced(passing, tmp_path, capsys):
    report, _ = passing
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a byhand report"):
        render.write(report, tmp_path)
    assert cli.main(["report", "--out", str(tmp_path), "--ops", "relu", "--quiet"]) == 2
    assert "refusing" in capsys.readouterr().out and (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("value, message", [("pdf", "unknown pdf"), ("", "empty"), ("html,docx", "unknown docx")])
def test_unknown_formats_are_clear_errors(value, message):
    with pytest.raises(ValueError, match=message):
        render.parse_formats(value)


def test_mathml_draws_what_sympy_would_name():
    """KroneckerDelta and Piecewise as a mathematician writes them (δ with indices, a brace and a
    table), the derivative as a partial, and the LaTeX kept as an annotation."""
    x, i, j = sp.Symbol("x"), sp.Symbol("i"), sp.Symbol("j")
    out = formulas.mathml(sp.Eq(sp.Derivative(sp.Function("f")(x), x), sp.Piecewise((1, x > 0), (sp.KroneckerDelta(i, j), True))))
    assert "<mtable" in out and "<msub><mi>&#948;</mi>" in out and "&#8706;" in out and "otherwise" in out
    assert 'encoding="application/x-tex"' in out and "kroneckerdelta" not in out


def test_every_op_can_be_swept_across_magnitudes():
    """The report's error sweep runs for every registry op (one magnitude here; the command samples 19):
    an op whose first input is not real-valued (embedding's indices) sweeps its first real one."""
    from checks.registry import REGISTRY
    from checks.report import plots

    for spec in REGISTRY:
        result = plots.sweep(spec, "cpu", "float64", np.array([1.0]))
        assert result is None or (len(result.forward) == 1 and not any(result.failed)), spec.name


def test_the_networks_are_derived_link_by_link_in_every_format(passing):
    """The CNN and the transformer block: each link's forward and chain rule (with math), measured in
    each dtype (a link whose record labels matched nothing would have no checks), in every format."""
    report, out = passing
    nets = report.data["networks"]
    assert [n["name"] for n in nets] == ["cnn", "transformer"] and all(n["status"] == "pass" for n in nets)
    for n in nets:
        for link in n["links"]:
            assert "$" in link["forward"] and "$" in link["backward"], link["name"]
            assert {c["dtype"] for c in link["checks"]} & {"float32", "float64"} or link["checks"][0]["dtype"] == "float64 end to end", link["name"]
            assert all(c["passed"] and c["worst_ulp"] <= c["k"] for c in link["checks"])
        assert n["end_to_end"][0]["comparisons"] == {"cnn": 5, "transformer": 13}[n["name"]]
    page, text, tex = ((out / name).read_text() for name in ("index.html", "report.md", "report.tex"))
    for n in nets:
        assert f'id="network-{n["name"]}"' in page and f"## {n['title']}, link by link" in text and f"\\section{{{n['title']}, link by link}}" in tex
        assert all(f"<th>{html.escape(link['name'])}</th>" in page and f"| {link['name']} |" in text for link in n["links"])
    assert "heads split" in page and "\\bar V_h = P_h^\\top" in text


def test_a_network_link_that_disagrees_fails_the_report(monkeypatch):
    """GELU's derivative taken as the sigmoid's of z: the transformer's gelu link and its gradients
    end to end fail, and the summary names them."""
    from checks import report as report_module
    from reference import network

    monkeypatch.setitem(network._LAYERS, "gelu", (network._LAYERS["gelu"][0], lambda g, x, approximate="none": g / (1 + np.exp(-x))))
    measured = chains.measure(chains.TRANSFORMER, ["cpu"], ["float64"])
    summary = report_module._summary([], [], [measured], 0.0)
    assert measured["status"] == "fail" and not summary["passed"]
    assert {f["link"] for f in summary["network_failures"]} == {"every .grad end to end"}


def test_every_docstring_formula_draws(passing):
    """Each $...$ in every op's definitions mathtext can lay out (the report of that op would fail),
    and those of the report drawn here have a width."""
    undrawable = [(function.__name__, tex) for spec in REGISTRY for function in (spec.forward, spec.backward) if function is not None
                  for kind, tex in formulas.split_math(_first_paragraph(function)) if kind == "math" and not formulas.drawable(tex)]
    assert not undrawable
    for op in passing[0].data["ops"]:
        for text in (op["definition"], op["gradient"]):
            assert all(kind == "text" or piece.width > 0 for kind, piece in formulas.segments(text or ""))


# --- a real browser and a real TeX ----------------------------------------------------------------

CHECKER = """<script>
window.addEventListener("load", () => {
  const box = e => e.getBoundingClientRect();
  const fracs = [...document.querySelectorAll("mfrac")];
  const result = {
    math: document.querySelectorAll("math").length,
    empty_math: [...document.querySelectorAll("math")].filter(m => box(m).width === 0 || box(m).height === 0).length,
    fractions: fracs.length,
    stacked: fracs.filter(f => f.children.length === 2 && box(f.children[0]).bottom <= box(f.children[1]).top + 1).length,
    images: document.images.length,
    broken: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    verdict_top: box(document.getElementById("verdict")).top,
    text: document.body.innerText,
  };
  const out = document.createElement("pre");
  out.id = "byhand-check";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable") if shutil.which(n)), None)


_BROWSER: dict = {}  # the passing page's Chromium process, started as soon as the page is written


def _open_in_chromium(page: Path, folder: Path) -> tuple[subprocess.Popen, Path] | None:
    """Start loading the page in headless Chromium with CHECKER appended (at the bottom, out of the
    screenshot's view), saving a screenshot of the first screen; None without Chromium."""
    chromium = _chromium()
    if chromium is None:
        return None
    probe, screenshot = folder / "probe.html", folder / "report.png"
    probe.write_text(page.read_text().replace("</body>", CHECKER + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000", "--dump-dom",
             "--window-size=1280,1600", f"--screenshot={screenshot}"]
    return subprocess.Popen([chromium, *flags, probe.as_uri()], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True), screenshot


def _rendered(started: tuple[subprocess.Popen, Path]) -> tuple[dict, Path]:
    """What the browser measured, and its screenshot."""
    process, screenshot = started
    dom, _ = process.communicate(timeout=120)
    found = re.search(r'<pre id="byhand-check">(.*?)</pre>', dom, re.S)
    assert found, f"Chromium did not run the page: {dom[-500:]}"
    return json.loads(html.unescape(found.group(1))), screenshot


def test_chromium_renders_the_math_and_the_plots(passing):
    if _BROWSER.get("passing") is None:
        pytest.skip("no headless Chromium here (Debian: apt-get install chromium; .ci/run installs it where apt-get can)")
    result, shot = _rendered(_BROWSER["passing"])
    if os.environ.get("BYHAND_SCREENSHOTS"):  # look at it: BYHAND_SCREENSHOTS=DIR keeps the screenshot
        Path(os.environ["BYHAND_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(os.environ["BYHAND_SCREENSHOTS"]) / "report.png")
    assert result["math"] >= 8 and result["empty_math"] == 0
    assert result["fractions"] > 0 and result["stacked"] == result["fractions"], "MathML laid out: numerators above denominators"
    assert result["images"] >= 6 and result["broken"] == []
    assert not LATEX_COMMAND.search(result["text"]), "raw LaTeX on the page"
    assert result["verdict_top"] < 200, "the verdict (red for a failure, see the test above) is in the first screen"
    assert shot.is_file() and shot.stat().st_size > 20_000


def test_the_latex_document_compiles(passing, tmp_path):
    if not shutil.which("pdflatex"):
        pytest.skip("no pdflatex here (Debian: apt-get install texlive-latex-base texlive-latex-recommended)")
    shutil.copy(passing[1] / "report.tex", tmp_path / "report.tex")
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "report.pdf").stat().st_size > 10_000
