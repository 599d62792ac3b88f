"""byhand.check in a real notebook kernel (nbclient + ipykernel): a learner's cell with one right and
one wrong function, checked by the next cell; the verdicts render as HTML there."""
from __future__ import annotations

import pytest

CELLS = [
    "import numpy as np\n\n"
    "def relu(input):\n    return np.maximum(input, 0)\n\n"
    "def sigmoid(input):\n    return 1 / (1 + np.exp(input))  # the sign of the exponent is wrong\n\n"
    "def layernorm(input, normalized_shape):\n    return input",
    "import byhand\nbyhand.check(globals(), examples=5)",
]


def executed() -> list[dict]:
    """The notebook's outputs after running it in a fresh python3 kernel (the worker beside the suite calls this)."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in CELLS])
    NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    return [dict(output) for cell in notebook.cells for output in cell.get("outputs", [])]


@pytest.mark.beside.with_args(executed)  # with_args: a lone callable would be taken for the decorated test
def test_a_notebook_shows_each_functions_verdict_as_html(beside):
    results = [o for o in beside if o.get("output_type") == "execute_result"]
    assert len(results) == 1, beside
    html, text = results[0]["data"]["text/html"], results[0]["data"]["text/plain"]
    for shown in (html, text):
        assert "✓" in shown and "relu: agrees with torch" in shown
        assert "✗" in shown and "sigmoid: wrong on the course" in shown
        assert "did you mean `layer_norm`?" in shown and "2 functions checked: 1 agree, 1 wrong" in shown
    assert html.lstrip().startswith("<") and "<span" in html and "Traceback" not in html
