"""The fault catalogue: realistic torch faults, injected through TorchFunctionMode/TorchDispatchMode.
The full kill-rate run is `byhand faults` (about a minute and a half); here, that the machinery works."""
from __future__ import annotations

import sys

import pytest
from hypothesis import settings

from checks import faults, matrix
from checks.verify import verify_cell


def test_the_catalogue_has_at_least_20_named_faults():
    assert len(faults.CATALOGUE) >= 20
    assert len(faults.BY_NAME) == len(faults.CATALOGUE)
    assert all(len(f.description) > 20 for f in faults.CATALOGUE)


def test_a_functional_fault_is_judged_by_its_own_op_first_and_never_by_l1_loss_blindness():
    """Under any TorchFunctionMode a weighted l1_loss fails (pytorch/pytorch#193003): its cells
    would 'catch' every functional fault. They judge only l1_loss's own faults and kernel faults."""
    cells = matrix.cells("cpu", "float32")
    judged = [c.spec.name for c in faults.get("kl-div-batchmean-as-mean").judges(cells)]
    assert judged[0] == "kl_div" and "l1_loss" not in judged and len(judged) == len(cells) - 1
    assert [c.spec.name for c in faults.get("l1-mean-over-n-plus-1").judges(cells)][0] == "l1_loss"
    assert len(faults.get("softmax-1e-10-float64").judges(cells)) == len(cells)  # a kernel fault: TorchDispatchMode


def caught_and_gone(name: str, cell_id: str) -> tuple[bool, bool]:
    """Whether verify fails the cell under the fault, and passes it once the fault is gone."""
    target = next(c for c in matrix.cells() if c.id == cell_id)
    with faults.get(name).active():
        caught = not verify_cell(target, examples=12).passed
    return caught, verify_cell(target, examples=3).passed


@pytest.mark.parametrize("name, cell_id", [pytest.param(*args, marks=pytest.mark.beside(caught_and_gone, *args)) for args in [
    ("softmax-1e-10-float64", "softmax-cpu-float64"),
    ("relu-gradient-1-at-0", "relu-cpu-float32"),
]])
def test_a_fault_is_caught_and_gone_after(name, cell_id, beside):
    """Run in the worker beside the suite (conftest.py)."""
    caught, gone = beside
    assert caught
    assert gone, "the fault must not outlive its context"


OPTIMIZER_FAULTS = [("l2-weight-decay-doubled", "adam"), ("sgd-dampening-ignored", "sgd"), ("adam-beta1-swapped", "adamw")]


# Shrinking each counterexample costs seconds: the default run checks one, thorough all three
# (`byhand faults` runs the whole optimizer test file under each).
def optimizer_fault_caught(name: str, rule: str) -> tuple[bool, bool]:
    """Whether the update-rule test fails under the fault, and passes without it."""
    from tests import test_optimizers

    def passes() -> bool:
        try:
            test_optimizers.test_update_rule_matches_torch_optim_at_every_step(device="cpu", rule=rule, dtype="float64")
        except AssertionError:
            return False
        return True

    with faults.get(name).active():
        caught = not passes()
    return caught, passes()


@pytest.mark.parametrize("name, rule", [pytest.param(*args, marks=pytest.mark.beside(optimizer_fault_caught, *args))
                                        for args in (OPTIMIZER_FAULTS if settings.get_current_profile_name() == "thorough" else OPTIMIZER_FAULTS[:1])])
def test_an_optimizer_fault_is_caught_by_the_update_rule_test(name, rule, beside):
    """Hyper-parameters misapplied inside torch.optim's step (Tensor methods, seen by
    TorchFunctionMode) fail the step-by-step comparison with the hand rule (in the worker beside
    the suite, conftest.py: shrinking the counterexample takes seconds)."""
    assert faults.get(name).tests == ("tests/test_optimizers.py",)
    caught, passes_without = beside
    assert caught and passes_without


def test_unknown_faults_are_clear_errors():
    with pytest.raises(ValueError, match="unknown fault"):
        faults.get("softmax-is-fine")


# One weighted cross-entropy test is enough to show the option reaches torch (the matrix under every
# fault is `byhand faults`).
@pytest.mark.background([sys.executable, "-m", "pytest", "-x", "-p", "no:cacheprovider", "--fault", "ce-weight-ignored",
                         "tests/test_conventions.py::test_label_smoothing_with_weights_differs_between_index_and_probability_targets"])
def test_pytest_fault_option_fails_the_suite(background):
    assert background.returncode == 1 and "FAULT INJECTED: ce-weight-ignored" in background.stdout
