"""Pooling's conventions, beyond the registry's value-and-gradient matrix: which element of a window
torch picks (ties, NaN, a window of -inf), the indices ``return_indices`` gives, and the divisor
rules of average pooling, each against values worked out by hand."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from checks import dtypes
from checks.registry import get
from checks.runner import build_case
from checks.strategies import recipes

nan, inf = math.nan, math.inf


def _torch_max(x, **kwargs):
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out, index = F.max_pool2d(t, return_indices=True, **kwargs)
    out.backward(torch.ones_like(out))
    return out.detach().numpy(), index.numpy(), t.grad.numpy()


@pytest.mark.parametrize("row, expected_index", [
    ([1.0, 3.0, 3.0, 0.0], 1),  # a tie: the first maximum
    ([nan, 1.0, nan, 0.0], 2),  # NaNs: the last NaN (torch's scan: `val > max || isnan(val)`)
    ([-inf, -inf, -inf, -inf], 0),  # all -inf: the window's first element
])
def test_max_pool_picks_torchs_element_of_a_window(row, expected_index):
    x = np.array(row).reshape(1, 1, 1, 4)
    value, index = reference.max_pool2d(x, (1, 4), return_indices=True)
    grad = reference.max_pool2d_backward(np.ones((1, 1, 1, 1)), x, (1, 4))
    assert index.item() == expected_index and np.flatnonzero(grad).tolist() == [expected_index]
    theirs, their_index, their_grad = _torch_max(x, kernel_size=(1, 4))
    assert their_index.item() == expected_index and np.flatnonzero(their_grad).tolist() == [expected_index]
    assert np.array_equal(value, theirs, equal_nan=True)


def test_a_dilated_window_that_skips_the_input_is_refused():
    """Width 1, kernel 2 dilated by 2, padding 1: both taps are padding. torch returns -inf with an
    index past the input (pytorch/pytorch#114216), and its backward scatters there, past the
    gradient's buffer (never called here: it corrupts the heap). The reference refuses the arguments."""
    x = np.array([[[[0.37]]]])
    with pytest.raises(ValueError, match="covers no input element"):
        reference.max_pool2d(x, (1, 2), None, (0, 1), (1, 2))
    with torch.no_grad():
        out, index = F.max_pool2d(torch.tensor(x), (1, 2), None, (0, 1), (1, 2), return_indices=True)
    assert out.item() == -inf and index.item() == 1


@settings(max_examples=30, deadline=None)
@given(recipe=recipes(get("max_pool2d")), dtype=st.sampled_from(dtypes.DTYPE_NAMES))
def test_return_indices_are_torchs(recipe, dtype):
    case = build_case(get("max_pool2d"), recipe, dtypes.get(dtype))
    x = case.inputs["input"]
    _, ours = reference.max_pool2d(x, **case.params, return_indices=True)
    _, theirs = F.max_pool2d(torch.tensor(x, dtype=getattr(torch, dtype)), **case.params, return_indices=True)
    assert np.array_equal(ours, theirs.numpy())


@pytest.mark.parametrize("kwargs, expected", [
    # 3 wide, kernel 2, stride 2, padding 1: windows [pad, x0], [x1, x2]
    ({"count_include_pad": True}, [1.0 / 2, (2.0 + 4.0) / 2]),
    ({"count_include_pad": False}, [1.0 / 1, (2.0 + 4.0) / 2]),
    ({"divisor_override": 3}, [1.0 / 3, (2.0 + 4.0) / 3]),
    # ceil_mode adds a window [x2, pad] that starts inside the input; its padding counts only up to the padded edge
    ({"ceil_mode": True, "padding": 0, "stride": 2}, [(1.0 + 2.0) / 2, 4.0 / 1]),
])
def test_average_pooling_divides_as_torch(kwargs, expected):
    x = np.array([1.0, 2.0, 4.0]).reshape(1, 1, 1, 3)
    call = {"kernel_size": (1, 2), "stride": (1, 2), "padding": (0, 1), **kwargs}
    if "padding" in kwargs:
        call["padding"] = (0, kwargs["padding"])
    if "stride" in kwargs:
        call["stride"] = (1, kwargs["stride"])
    assert reference.avg_pool2d(x, **call).ravel().tolist() == expected
    assert F.avg_pool2d(torch.tensor(x), **call).ravel().tolist() == expected


def test_adaptive_windows_overlap_when_the_size_does_not_divide():
    """5 onto 3: windows [0, 2), [1, 4), [3, 5), so x1 and x3 are in two windows each."""
    x = np.arange(5.0).reshape(1, 1, 1, 5)
    assert reference.adaptive_avg_pool2d(x, (1, 3)).ravel().tolist() == [0.5, 2.0, 3.5]
    grad = reference.adaptive_avg_pool2d_backward(np.ones((1, 1, 1, 3)), x, (1, 3)).ravel()
    shares = [Fraction(1, 2), Fraction(1, 2) + Fraction(1, 3), Fraction(1, 3), Fraction(1, 3) + Fraction(1, 2), Fraction(1, 2)]
    assert grad.tolist() == [float(share) for share in shares]  # each sum rounded once
    assert F.adaptive_avg_pool2d(torch.tensor(x), (1, 3)).ravel().tolist() == [0.5, 2.0, 3.5]
