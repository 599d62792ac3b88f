"""Bad input: the reference raises a ValueError/TypeError naming the argument, and each case also
records what torch does with the same input (most raise too; a few accept silently or only warn,
which is exactly why the reference refuses them)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

import reference
from checks.registry import get

ACCEPTS, WARNS = "accepts", "warns"


@dataclass(frozen=True)
class Bad:
    id: str
    op: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    error: type[Exception] = ValueError
    names: str = "input"  # the argument the message must name
    torch: Any = RuntimeError  # what torch does: an exception type, ACCEPTS or WARNS
    backward: bool = False  # call reference.<op>_backward(grad_output, *args) instead


X23 = np.array([[0.1, 0.2, 0.3], [1.0, -1.0, 0.0]])
P3 = np.array([0.2, 0.5, 0.9])
CASES = [
    Bad("ce-class-too-large", "cross_entropy", (X23, np.array([0, 3])), names="target", torch=IndexError),
    Bad("ce-class-negative", "cross_entropy", (X23, np.array([-1, 0])), names="target", torch=IndexError),
    Bad("ce-batch-mismatch", "cross_entropy", (X23, np.array([0, 1, 2])), names="target", torch=ValueError),
    Bad("ce-target-2d", "cross_entropy", (np.zeros((4, 3)), np.zeros((4, 1), dtype=np.int64)), names="target"),
    Bad("ce-probability-shape", "cross_entropy", (X23, np.full((2, 4), 0.25)), names="target"),
    Bad("ce-float-class-indices", "cross_entropy", (X23, np.array([0.0, 1.0])), names="target"),
    Bad("ce-bool-target", "cross_entropy", (X23, np.array([True, False])), error=TypeError, names="target"),
    Bad("ce-unknown-reduction", "cross_entropy", (X23, np.array([0, 1])), {"reduction": "avg"}, names="reduction", torch=ValueError),
    Bad("ce-smoothing-above-1", "cross_entropy", (X23, np.array([0, 1])), {"label_smoothing": 1.5}, names="label_smoothing"),
    Bad("ce-smoothing-negative", "cross_entropy", (X23, np.array([0, 1])), {"label_smoothing": -0.1}, names="label_smoothing", torch=ACCEPTS),
    Bad("ce-weight-length", "cross_entropy", (X23, np.array([0, 1])), {"weight": np.ones(4)}, names="weight"),
    Bad("ce-ignore-index-with-probabilities", "cross_entropy", (X23, np.full((2, 3), 1 / 3)), {"ignore_index": 1}, names="ignore_index"),
    Bad("ce-scalar-input", "cross_entropy", (np.array(1.0), np.array(0)), names="input"),
    Bad("nll-float-target", "nll_loss", (X23, np.array([0.0, 1.0])), error=TypeError, names="target"),
    Bad("nll-class-too-large", "nll_loss", (X23, np.array([0, 5])), names="target", torch=IndexError),
    Bad("bce-input-above-1", "binary_cross_entropy", (np.array([0.5, 1.5]), np.array([1.0, 0.0]))),
    Bad("bce-input-nan", "binary_cross_entropy", (np.array([np.nan]), np.array([1.0]))),
    Bad("bce-target-outside", "binary_cross_entropy", (np.array([0.5]), np.array([2.0])), names="target"),
    Bad("bce-shape-mismatch", "binary_cross_entropy", (np.full((3, 1), 0.5), np.ones(3)), names="target", torch=ValueError),
    Bad("bce-weight-shape", "binary_cross_entropy", (P3, np.ones(3)), {"weight": np.ones(2)}, names="weight"),
    Bad("bcel-shape-mismatch", "binary_cross_entropy_with_logits", (np.zeros((3, 1)), np.ones(3)), names="target", torch=ValueError),
    Bad("bcel-pos-weight-shape", "binary_cross_entropy_with_logits", (np.zeros((2, 3)), np.ones((2, 3))), {"pos_weight": np.ones(2)}, names="pos_weight"),
    Bad("mse-shape-mismatch", "mse_loss", (np.zeros((3, 1)), np.zeros(3)), names="target", torch=WARNS),
    Bad("l1-shape-mismatch", "l1_loss", (np.zeros((3, 1)), np.zeros(3)), names="target", torch=WARNS),
    Bad("huber-delta-zero", "huber_loss", (np.zeros(3), np.zeros(3)), {"delta": 0.0}, names="delta"),
    Bad("smooth-l1-beta-negative", "smooth_l1_loss", (np.zeros(3), np.zeros(3)), {"beta": -1.0}, names="beta"),
    Bad("one-hot-negative", "one_hot", (np.array([0, -1]),), {"num_classes": 3}, names="tensor"),
    Bad("one-hot-too-few-classes", "one_hot", (np.array([0, 3]),), {"num_classes": 3}, names="num_classes"),
    Bad("one-hot-float-labels", "one_hot", (np.array([0.0, 1.0]),), {"num_classes": 3}, error=TypeError, names="tensor"),
    Bad("one-hot-infer-from-empty", "one_hot", (np.zeros(0, dtype=np.int64),), names="num_classes"),
    Bad("linear-in-features", "linear", (np.zeros((2, 3)), np.zeros((4, 5))), names="input"),
    Bad("linear-bias-shape", "linear", (np.zeros((2, 3)), np.zeros((4, 3)), np.zeros(3)), names="bias"),
    Bad("softmax-dim-out-of-range", "softmax", (X23,), {"dim": 2}, names="dim", torch=IndexError),
    Bad("sigmoid-of-strings", "sigmoid", (np.array(["a", "b"]),), error=TypeError, torch=TypeError),
    Bad("relu-of-complex", "relu", (np.array([1 + 1j]),), error=TypeError),
    Bad("conv1d-integers-with-a-float-bias", "conv1d", (np.ones((1, 1, 4), dtype=np.int64), np.ones((1, 1, 2), dtype=np.int64), np.ones(1)),
        error=TypeError, names="bias"),
    Bad("conv2d-float-input-integer-weight", "conv2d", (np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2), dtype=np.int64)), error=TypeError, names="weight"),
    Bad("hardtanh-min-above-max", "hardtanh", (np.zeros(3),), {"min_val": 1.0, "max_val": 0.5}, names="min_val", torch=ValueError),
    Bad("batch-norm-1d-input", "batch_norm", (np.arange(5.0), np.zeros(0), np.ones(0)), torch=IndexError),
    Bad("batch-norm-one-value-per-channel", "batch_norm", (np.ones((1, 3)), np.zeros(3), np.ones(3)), {"training": True}, torch=ValueError),
    Bad("group-norm-one-value-per-group", "group_norm", (np.ones((1, 4, 1)), 4), names="group", torch=ValueError),
    Bad("softmax-backward-grad-shape", "softmax", (np.ones(2), X23), {"dim": 1}, names="grad_output", backward=True),
    Bad("mse-backward-reduced-grad", "mse_loss", (np.ones(3), np.zeros(3), np.zeros(3)), names="grad_output", backward=True),
]


def _tensor(value: Any) -> Any:
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype.kind == "U":
        return list(value)  # torch refuses strings in its own way: pass them as they are
    return torch.from_numpy(value.astype(np.int64) if value.dtype.kind in "iub" and value.dtype != bool else value)


def _torch_outcome(case: Bad) -> Any:
    args = tuple(_tensor(a) for a in case.args)
    kwargs = {k: _tensor(v) for k, v in case.kwargs.items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            get(case.op).functional(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - recording whatever torch raises is the point
            return type(exc)
    return WARNS if any(issubclass(w.category, UserWarning) for w in caught) else ACCEPTS


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_reference_names_the_bad_argument(case: Bad):
    fn = getattr(reference, f"{case.op}_backward" if case.backward else case.op)
    with pytest.raises(case.error) as raised:
        fn(*case.args, **case.kwargs)
    assert case.names in str(raised.value), f"the message should name {case.names!r}: {raised.value}"
    assert type(raised.value) in (ValueError, TypeError), "never a numpy IndexError/AxisError from deep inside"


@pytest.mark.parametrize("case", [c for c in CASES if not c.backward], ids=[c.id for c in CASES if not c.backward])
def test_what_torch_does_with_the_same_input(case: Bad):
    outcome = _torch_outcome(case)
    if isinstance(case.torch, type):
        assert isinstance(outcome, type) and issubclass(outcome, case.torch), f"torch: {outcome}"
    else:
        assert outcome == case.torch, f"torch: {outcome}"
