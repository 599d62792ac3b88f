"""Every registry op, on every device and dtype: the hand math against torch.

Forward: the reference against torch's functional and its nn.Module; gradient: the hand-derived
``<op>_backward`` against autograd, for a random upstream gradient; both from the same draw. Inputs are drawn by regime
(normal, small, large, extremal) from the op's registry entry.
"""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from checks.compare import assert_agrees
from checks.runner import Runner
from checks.spec import Recipe
from checks.strategies import recipes


@given(data=st.data())
def test_forward_and_hand_gradient_match_torch(checked_cell, data):
    """One draw, every comparison: the functional's and the module's forward, and (for a
    differentiable op) each hand gradient against autograd. Each failure names its phase."""
    c = checked_cell
    recipe = data.draw(recipes(c.spec), label="recipe")
    for record in Runner(c.spec, c.device, c.dtype).run(recipe, gradient=c.spec.differentiable):
        assert_agrees(record)


@settings(max_examples=1)
@given(data=st.data())
def test_large_strided_tensors_with_special_values(checked_cell, data, all_threads):
    """Forward on large non-contiguous tensors (transposed, or every other element) with the
    extremal table's special values embedded, on all the machine's threads: hypothesis' small
    arrays never reach these kernels."""
    spec = checked_cell.spec
    shape = spec.large_shape
    assert np.prod(shape) > 100_000
    recipe = Recipe(seed=data.draw(st.integers(0, 2**32 - 1), label="seed"), regime="extremal" if "extremal" in spec.regimes else spec.regimes[0], shape=shape, knobs=data.draw(spec.knobs, label="knobs"))
    for record in Runner(spec, checked_cell.device, checked_cell.dtype).run(recipe, gradient=False, layout="strided"):
        assert_agrees(record)
