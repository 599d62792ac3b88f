"""A learner checks their own math: ``pytest --impl my_module.py`` runs one test per function the
module defines (byhand's pytest plugin, checks/pytest_plugin.py); these test the machinery on
examples/my_math.py, which has one deliberate mistake."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from checks import cli, learner
from checks.registry import get
from checks.learner.stages import patched
from checks.spec import Case

EXAMPLE = str(Path(__file__).resolve().parent.parent / "examples" / "my_math.py")


@pytest.fixture(scope="module")
def verdicts():
    return {v.function: v for v in learner.check_all(learner.load(EXAMPLE), examples=15)}


def test_the_deliberate_mistake_is_fragile_with_its_lesson(verdicts):
    """The example's softmax forgets to subtract the maximum: right on the course's ordinary scores,
    but exp overflows for large ones. ⚠ with the counterexample and the lesson, not ✗."""
    softmax = verdicts["softmax"]
    assert softmax.status == learner.FRAGILE
    assert "your function gives nan" in softmax.explanation and "torch gives" in softmax.explanation
    assert "input =" in softmax.explanation and "subtract each row's maximum" in softmax.explanation


def test_the_correct_functions_agree(verdicts):
    assert {name for name, v in verdicts.items() if v.status == learner.AGREES} == {"sigmoid", "sigmoid_backward", "relu", "relu_backward", "mse_loss", "mse_loss_backward"}
    assert all(v.examples >= 15 for v in verdicts.values())


def test_arguments_a_function_does_not_take_stay_at_torchs_defaults():
    def cross_entropy(input, target):
        return None

    spec = get("cross_entropy")
    adapted = learner.adapt(cross_entropy, spec, "cross_entropy")
    case = Case({"input": np.zeros((2, 3)), "target": np.array([0, 7])}, {"weight": np.ones(3), "ignore_index": 7, "reduction": "sum", "label_smoothing": 0.1})
    plain = patched(spec, case, adapted.declared, adapted.last_axis)
    assert plain.params == {"weight": None, "ignore_index": -100, "reduction": "mean", "label_smoothing": 0.0}
    assert plain.inputs["target"].tolist() == [0, 0], "no target is left pointing at an ignored class"


def test_axis_is_read_as_dim_and_a_missing_dim_as_the_last_axis():
    def softmax(x, axis):
        return x * 0 + axis

    spec = get("softmax")
    renamed = learner.adapt(softmax, spec, "softmax")
    assert renamed.call(np.zeros(2), dim=1).tolist() == [1, 1] and "torch calls your `axis` argument `dim`" in renamed.notes[0]
    no_dim = learner.adapt(lambda x: x, spec, "softmax")
    assert no_dim.last_axis and no_dim.call(np.ones(2), dim=0).tolist() == [1, 1]
    assert patched(spec, Case({"input": np.zeros((2, 2))}, {"dim": 0}), no_dim.declared, no_dim.last_axis).params["dim"] == -1


def test_an_exception_in_the_learners_code_is_explained_without_a_traceback():
    module = type(learner)("broken")
    module.relu = lambda input: input.clip(min=0) if input.ndim else 1 / 0
    verdict = learner.check(module, get("relu"), "relu", examples=30)
    assert verdict.status == learner.FRAGILE and "your function raised ZeroDivisionError" in verdict.explanation
    assert "a single number (a 0-d array)" in verdict.explanation and "Traceback" not in verdict.explanation


def test_a_gradient_of_a_function_without_one_is_not_checked_with_the_reason():
    module = type(learner)("labels")
    module.one_hot_backward = lambda grad_output, tensor: grad_output
    (verdict,) = learner.check_all(module)
    assert verdict.status == learner.NOT_CHECKED and "not differentiable" in verdict.explanation


def test_verify_impl_reports_per_function(capsys):
    assert cli.main(["verify", "--impl", EXAMPLE, "--examples", "15", "--quiet", "--ops", "softmax,mse_loss"]) == 0
    printed = capsys.readouterr().out
    assert "⚠ softmax" in printed and "✓ mse_loss: agrees" in printed and "3 functions checked: 2 agree, 0 wrong, 1 fragile" in printed  # --ops mse_loss takes its backward too


def test_functions_checked_side_by_side_get_the_verdicts_of_one_process(verdicts):
    """Each function's check is seeded by its name: two worker processes give, word for word, what
    one process gives (the fixture's, checked in process one after another)."""
    from checks.learner.parallel import Checks

    module = learner.load(EXAMPLE)
    side_by_side = list(Checks(module, learner.functions(module), examples=15, jobs=2))
    assert [v.function for v in side_by_side] == list(verdicts)
    assert side_by_side == list(verdicts.values())


def test_jobs_below_one_are_refused_by_name(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["verify", "--impl", EXAMPLE, "--jobs", "0"])
    assert exit_.value.code == 2 and "--jobs must be at least 1" in capsys.readouterr().err


def test_bad_impl_paths_are_clear_errors(capsys):
    assert cli.main(["verify", "--impl", "no/such/file.py"]) == 2
    assert "no such file" in capsys.readouterr().out


MINE = '''import numpy as np

def relu(input):
    return np.maximum(input, 0)

def sigmoid(input):
    return 1 / (1 + np.exp(input))

def stable_softmax(x):
    return x
'''


def test_pytest_impl_runs_from_a_folder_outside_the_repository(pytester):
    """A learner's own folder, no tests and no conftest: one test per function, a ✗ as its verdict's
    words (no source dump, no byhand internals), the helper named as ignored. (In process: the
    plugin is the one installed; a subprocess would import torch again.)"""
    pytester.makepyfile(mine=MINE)
    result = pytester.runpytest_inprocess("--impl", "mine.py", "-p", "no:cacheprovider", "-rA", "-W", "default")
    out = result.stdout.str()
    assert result.ret == 1, out[-3000:]
    assert "collected 2 items" in out and "PASSED" in out and "::relu" in out and "FAILED" in out and "::sigmoid" in out
    assert "✗ sigmoid: wrong on the course's inputs" in out and "ignored as helpers (not torch's names): stable_softmax" in out
    assert "def sigmoid" not in out and "OpSpec(" not in out and "Traceback" not in out
