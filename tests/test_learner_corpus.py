"""A corpus of learners' modules (tests/learners/) and the verdict a fair teacher gives each function.

✓ agrees; ✗ wrong on the course's inputs, with the mistake named; ⚠ right on the course's inputs but
fragile or of another convention at an edge, with the lesson. Every verdict comes with words, never a
traceback, and `byhand verify --impl` and `pytest --impl` give the same ones.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from checks import cli, learner

CORPUS = Path(__file__).resolve().parent / "learners"
A, W, F = learner.AGREES, learner.WRONG, learner.FRAGILE

# (file, function): (verdict, words the explanation must contain)
FAIR = {
    ("textbook", "relu"): (A, "agrees"),
    ("textbook", "relu_backward"): (F, "for NaN that test is false"),
    ("textbook", "softmax"): (F, "empty input"),
    ("textbook", "linear"): (F, "bias=None"),
    ("textbook", "linear_backward"): (F, "one unbatched sample (a 1-D input)"),
    ("textbook", "cross_entropy"): (F, "torch also takes"),
    ("textbook", "mse_loss"): (A, "agrees"),
    ("textbook", "mse_loss_backward"): (A, "agrees"),
    ("notebook_002", "sigmoid"): (A, "agrees"),
    ("notebook_002", "softmax"): (F, "one global maximum underflows rows far below it"),
    ("softmax_axis", "softmax"): (F, "empty input"),
    ("fragile", "softmax"): (F, "subtract each row's maximum"),
    ("fragile", "elu"): (F, "np.expm1"),
    ("fragile", "binary_cross_entropy"): (F, "clamps each log at -100"),
    ("fragile", "relu_backward"): (F, "torch uses 0 there"),
    ("mistakes", "cross_entropy"): (W, "divide by N"),
    ("mistakes", "cross_entropy_backward"): (W, "divide by N"),
    ("mistakes", "mse_loss"): (W, "Did you forget the mean?"),
    ("mistakes", "sigmoid_backward"): (W, "multiply by grad_output"),
    ("mistakes", "l1_loss"): (W, "opposite sign"),
    ("mistakes", "linear"): (W, "your function raised ValueError"),
    ("returns", "relu"): (W, "You returned None: missing `return`?"),
    ("returns", "sigmoid"): (W, "You returned a Python list"),
    ("returns", "leaky_relu"): (W, "You returned a float32 torch tensor"),
    ("returns", "mse_loss"): (W, "Your function takes 1 argument (x); torch's mse_loss takes input, target"),
    ("raises", "l1_loss"): (W, "your function raised NotImplementedError: only vectors"),
    ("odd_ones", "linear"): (A, "agrees"),
    ("odd_ones", "linear_backward"): (W, "return the tuple (grad_input, grad_weight, grad_bias); you returned 2 values"),
    ("odd_ones", "relu"): (F, "Your function called sys.exit('empty!')"),
    ("odd_ones", "sigmoid"): (W, "You returned an array of <U5 values, not numbers"),
}
NOTES = {("softmax_axis", "softmax"): "torch calls your `axis` argument `dim`", ("notebook_002", "softmax"): "takes no `dim`"}


@pytest.fixture(scope="module")
def verdicts():
    found = {}
    for file in sorted({f for f, _ in FAIR}):
        module = learner.load(str(CORPUS / f"{file}.py"))
        found |= {(file, v.function): v for v in learner.check_all(module)}
    return found


@pytest.mark.parametrize("key", list(FAIR), ids=[f"{f}-{n}" for f, n in FAIR])
def test_each_function_gets_its_fair_verdict_in_words(verdicts, key):
    status, words = FAIR[key]
    verdict = verdicts[key]
    assert verdict.status == status, verdict.explanation
    assert words in verdict.explanation, verdict.explanation
    assert "Traceback" not in verdict.explanation and 'File "' not in verdict.explanation
    if key in NOTES:
        assert any(NOTES[key] in note for note in verdict.notes)


def test_every_function_of_the_corpus_has_a_verdict_in_the_table(verdicts):
    assert set(verdicts) == set(FAIR)


@pytest.mark.parametrize("file, words", [
    ("syntax_error", "syntax_error.py:4: syntax error"),
    ("import_error", "could not be imported: No module named 'my_helpers'"),
    ("empty", "defines none of byhand's function names. byhand knows: sigmoid, sigmoid_backward, relu"),
    ("unrelated", "defines none of byhand's function names"),
])
def test_a_broken_or_empty_module_is_one_clear_line(file, words, capsys):
    assert cli.main(["verify", "--impl", str(CORPUS / f"{file}.py")]) == 2
    out = capsys.readouterr().out
    assert words in out and "Traceback" not in out and len(out.strip().splitlines()) == 1


def test_only_a_wrong_function_fails_unless_strict(capsys):
    fragile = str(CORPUS / "fragile.py")
    assert cli.main(["verify", "--impl", fragile, "--quiet"]) == 0
    assert "⚠ softmax" in capsys.readouterr().out
    assert cli.main(["verify", "--impl", fragile, "--quiet", "--strict"]) == 1
    assert cli.main(["verify", "--impl", str(CORPUS / "mistakes.py"), "--quiet", "--ops", "mse_loss"]) == 1


def test_options_that_do_not_apply_are_refused_clearly(capsys):
    assert cli.main(["verify", "--impl", str(CORPUS / "fragile.py"), "--dtype", "float16"]) == 2
    assert "--dtype does not apply with --impl" in capsys.readouterr().out
