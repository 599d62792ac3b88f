"""A learner checks their own math: ``pytest --impl my_module.py`` runs the first test below for
each function the module defines; the rest test the machinery on examples/my_math.py, which has one
deliberate mistake."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from checks import cli, learner
from checks.registry import get
from checks.spec import Case

EXAMPLE = str(Path(__file__).resolve().parent.parent / "examples" / "my_math.py")


def test_your_function_matches_torch(learner_module, learner_function):
    """Runs only with --impl: your function against torch, on byhand's random cases."""
    spec, name = learner_function
    verdict = learner.check(learner_module, spec, name)
    assert verdict.passed, verdict.explanation


@pytest.fixture(scope="module")
def verdicts():
    return {v.function: v for v in learner.check_all(learner.load(EXAMPLE), examples=25)}


def test_the_deliberate_mistake_is_caught_with_a_counterexample(verdicts):
    """The example's softmax forgets to subtract the maximum: exp overflows for large scores."""
    softmax = verdicts["softmax"]
    assert not softmax.passed
    assert "your function gives nan" in softmax.explanation and "torch gives" in softmax.explanation
    assert "input =" in softmax.explanation and "dim =" in softmax.explanation


def test_the_correct_functions_pass(verdicts):
    assert {name for name, v in verdicts.items() if v.passed} == {"sigmoid", "sigmoid_backward", "relu", "relu_backward", "mse_loss", "mse_loss_backward"}
    assert all(v.examples >= 25 for v in verdicts.values() if v.passed)


def test_a_function_without_an_argument_only_gets_cases_that_do_not_need_it():
    def cross_entropy(input, target):
        return None

    spec = get("cross_entropy")
    plain = Case({"input": np.zeros((2, 3)), "target": np.array([0, 1])}, {"weight": None, "ignore_index": -100, "reduction": "mean", "label_smoothing": 0.0})
    assert learner.fits(spec, plain, cross_entropy)
    for change in ({"weight": np.ones(3)}, {"reduction": "sum"}, {"label_smoothing": 0.1}):
        assert not learner.fits(spec, Case(plain.inputs, {**plain.params, **change}), cross_entropy)
    ignoring = Case({"input": np.zeros((2, 3)), "target": np.array([0, -100])}, plain.params)
    assert not learner.fits(spec, ignoring, cross_entropy)


def test_an_exception_in_the_learners_code_is_explained():
    module = type(learner)("broken")
    module.relu = lambda input: input.clip(min=0) if input.ndim else 1 / 0
    verdict = learner.check(module, get("relu"), "relu", examples=30)
    assert not verdict.passed and "your function raised ZeroDivisionError" in verdict.explanation


def test_verify_impl_reports_per_function_and_fails(capsys):
    assert cli.main(["verify", "--impl", EXAMPLE, "--examples", "30"]) == 1
    printed = capsys.readouterr().out
    assert "softmax" in printed and "does not match torch" in printed and "mse_loss: agrees" in printed


def test_bad_impl_paths_are_clear_errors(capsys):
    assert cli.main(["verify", "--impl", "no/such/file.py"]) == 2
    assert "no such file" in capsys.readouterr().out
