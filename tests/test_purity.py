"""reference/ is the independent side of every comparison: it must never touch torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REFERENCE = Path(__file__).resolve().parent.parent / "reference"


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_reference_module_imports_torch():
    offenders = [p.name for p in sorted(REFERENCE.glob("**/*.py")) if "torch" in _imported_modules(p)]
    assert not offenders, f"reference/ must not import torch, but these do: {offenders}"


def test_importing_reference_does_not_load_torch():
    """Catches indirect imports too (a dependency that pulls torch in)."""
    code = "import sys, reference; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REFERENCE.parent, check=True)
    assert result.stdout.strip() == "False", f"import reference loaded torch: {result.stdout} {result.stderr}"


def test_no_source_file_hides_a_control_character():
    """A TeX \\frac written through a non-raw string becomes a form feed and 'rac': mathtext still
    draws it, so only the source can tell."""
    root = Path(__file__).resolve().parent.parent
    hidden = [f"{p.relative_to(root)}:{n}" for folder in ("reference", "checks", "tests") for p in sorted((root / folder).glob("**/*.py"))
              for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if any(ord(c) < 32 and c != "\t" for c in line)]
    assert not hidden, f"control characters in {hidden}"
