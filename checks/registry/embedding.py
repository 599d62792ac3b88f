"""Registry entry for embedding: integer indices into a weight, with padding_idx, max_norm (the
weight renormalised in place), norm_type and scale_grad_by_freq; the weight's gradient a scatter-add."""
from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

from checks.spec import Case, KnownMistake, OpSpec, loaded
from checks.strategies import knobs, shapes
from checks.values import class_targets, reals


def _make(rng, recipe, info) -> Case:
    rows, dim = recipe.knobs["num_embeddings"], recipe.knobs["embedding_dim"]
    t = class_targets(rng, recipe.shape, rows)
    w = reals(rng, (rows, dim), recipe.regime, info)
    padding = recipe.knobs["padding_idx"]  # None, a row, or -1 (torch counts it from the end)
    params = {"padding_idx": None if padding is None else padding if padding < 0 else min(padding, rows - 1),
              "max_norm": recipe.knobs["max_norm"], "norm_type": recipe.knobs["norm_type"], "scale_grad_by_freq": recipe.knobs["scale_grad_by_freq"]}
    return Case({"input": t, "weight": w}, params)


def _module(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq):
    layer = nn.Embedding(weight.shape[0], weight.shape[1], padding_idx=padding_idx, max_norm=max_norm, norm_type=norm_type,
                         scale_grad_by_freq=scale_grad_by_freq, device=weight.device, dtype=weight.dtype)
    return loaded(layer, weight=weight)(input)


def _grad_scale(case: Case, g: np.ndarray) -> dict:
    """Each row's gradient sums the upstream gradients that looked it up: judged at the sum of their sizes."""
    t, w = case.inputs["input"].reshape(-1), case.inputs["weight"]
    size = np.zeros(w.shape)
    np.add.at(size, t, np.abs(np.asarray(g)).reshape(t.size, w.shape[1]))
    return {"weight": size}


def _last_write_wins(case: Case, g: np.ndarray | None) -> np.ndarray | None:
    """The weight's gradient by grad[idx] += g: numpy's buffered fancy indexing keeps one addition per repeated index."""
    t, w, p = case.inputs["input"].reshape(-1), case.inputs["weight"], case.params
    if len(np.unique(t)) == t.size or p.get("scale_grad_by_freq") or p.get("max_norm") is not None:
        return None
    grad = np.zeros(w.shape)
    grad[t] += np.asarray(g).reshape(t.size, w.shape[1])
    if p.get("padding_idx") is not None:
        grad[p["padding_idx"]] = 0.0
    return grad


MISTAKES = (KnownMistake("repeated indices lost", "grad[weight]", _last_write_wins,
                         "Your gradient counts a repeated index once: grad[idx] += g keeps only one of the additions for an index "
                         "that appears twice (numpy buffers fancy indexing). np.add.at(grad, idx, g) adds every one."),)


KNOBS = dict(num_embeddings=st.integers(1, 10), embedding_dim=st.integers(1, 6), padding_idx=st.sampled_from([None, 0, 1, -1]),
             max_norm=st.sampled_from([None, None, 1.0, 0.5, 3.0]), norm_type=st.sampled_from([2.0, 1.0]), scale_grad_by_freq=st.booleans())

SPECS = (
    OpSpec(
        name="embedding",
        functional=F.embedding,
        module=_module,
        make=_make,
        shapes=shapes(max_dims=3),
        knobs=knobs(**KNOBS),
        # a course's lookups: a batch of index sequences into a small table, so indices repeat
        course_shapes=st.tuples(st.integers(1, 3), st.integers(3, 8)),
        course_knobs=knobs(**{**KNOBS, "num_embeddings": st.integers(2, 5)}),
        mistakes=MISTAKES,
        # By torch's design the gradient skips max_norm's renormalisation, the padding row and (with
        # scale_grad_by_freq) the count of each index: finite differences of the forward see all three,
        # so gradcheck draws none of them.
        gradcheck_knobs=knobs(**{**KNOBS, "max_norm": st.just(None), "padding_idx": st.just(None), "scale_grad_by_freq": st.just(False)}),
        # A looked-up row is a copy; with max_norm it is scaled by max_norm / (‖W_i‖ + 1e-7), one rounding in the dtype.
        scale=lambda case, expected: np.abs(expected),
        grad_scale=_grad_scale,
        grad_inputs=("weight",),
        large_shape=(384, 300),
        notes="The indices are integers: only the weight has a gradient. max_norm renormalises the weight in place before the lookup.",
    ),
)
