"""Registry entries for softmax and log-softmax."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

from checks.spec import Case, OpSpec
from checks.strategies import knobs, shapes
from checks.values import logits


SOFTMAX_LESSON = ("subtract each row's maximum before exp (np.max(x, axis=dim, keepdims=True)): exp overflows past 709, "
                  "and one global maximum underflows rows far below it to 0/0. log-softmax is then x - max - log(sum(exp(x - max))).")


def _make(rng, recipe, info) -> Case:
    ndim = len(recipe.shape)
    dim = int(rng.integers(-ndim, ndim))
    return Case({"input": logits(rng, recipe.shape, recipe.regime, info)}, {"dim": dim, **recipe.knobs})


def _in_dtype(functional: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """The functional with ``dtype`` given by name (a recipe's knobs are plain data, as the baselines store them)."""
    return lambda input, dim, dtype=None: functional(input, dim, dtype=None if dtype is None else getattr(torch, dtype))


# dtype casts the input before the op: widening from a half dtype, or float64 computed in float32.
DTYPE_KNOB = knobs(dtype=st.sampled_from([None, None, "float32", "float64"]))


def _row_max(case: Case, grad_output: np.ndarray) -> dict:
    return {"input": np.max(np.abs(grad_output), axis=case.params["dim"], keepdims=True, initial=0.0)}


def _row_sum(case: Case, grad_output: np.ndarray) -> dict:
    return {"input": np.sum(np.abs(grad_output), axis=case.params["dim"], keepdims=True)}


SPECS = (
    OpSpec(
        name="softmax",
        layer=nn.Softmax,
        layer_knobs=st.just({"dim": -1}),
        functional=_in_dtype(F.softmax),
        knobs=DTYPE_KNOB,
        gradcheck_knobs=knobs(dtype=st.just(None)),  # gradcheck differentiates in float64 only
        module=lambda input, dim, dtype: None if dtype is not None else nn.Softmax(dim=dim)(input),  # the module has no dtype
        make=_make,
        shapes=shapes(min_dims=1, max_dims=3, max_side=10),
        scale=lambda case, expected: 1.0,  # probabilities
        # p_j (g_j - sum_i g_i p_i): the difference inside is O(max|g|), so is its rounding.
        grad_scale=_row_max,
        lessons={"overflow": SOFTMAX_LESSON},
    ),
    OpSpec(
        name="log_softmax",
        functional=_in_dtype(F.log_softmax),
        knobs=DTYPE_KNOB,
        gradcheck_knobs=knobs(dtype=st.just(None)),  # gradcheck differentiates in float64 only
        module=lambda input, dim, dtype: None if dtype is not None else nn.LogSoftmax(dim=dim)(input),
        make=_make,
        shapes=shapes(min_dims=1, max_dims=3, max_side=10),
        scale=lambda case, expected: 1.0,  # log-probabilities near 0 are differences of O(1) terms
        # g_j - p_j sum_i g_i: the sum is as large as sum|g|, and so is its rounding.
        grad_scale=_row_sum,
        lessons={"overflow": SOFTMAX_LESSON},
    ),
)
