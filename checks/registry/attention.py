"""Registry entry for scaled_dot_product_attention.

A recipe's shape is (N, H, L, S, E), padded with 1s when shorter: N samples of H key/value heads
(times the GQA group for the query's heads), L queries, S keys of E features; values have Ev.
Natural scales: each score is a dot product of E terms times s plus the mask, so its rounding is
relative to s·|q|·|k| + |m|; the exponential of z − max z turns the row's largest such size into a
relative error of each probability of the row, and the output, P·V, sums S of them. The gradients are the same sums with |G|.
"""
from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from hypothesis import strategies as st
from torch.nn.attention import SDPBackend, sdpa_kernel

from checks.spec import Case, KnownMistake, OpSpec, per_case
from checks.tolerance import sum_growth
from checks.values import reals
from reference.attention import attention_weights

MASKS = ("none", "bool", "float", "causal")
# torch.nn.attention.sdpa_kernel's choices on the CPU: its math kernel, and the fused flash kernel
# (_scaled_dot_product_flash_attention_for_cpu), which it takes when E == Ev; "default" lets torch
# choose. The CUDA kernels (flash, memory-efficient, cuDNN; half dtypes only) are left to torch's
# own choice on a GPU: this CPU-only project has not drawn them yet.
# "flash" enables the math kernel too, for what flash cannot take (a strided last dimension): torch
# then runs flash wherever it can. tests/test_attention.py names the kernel each case ran.
BACKENDS = {"math": [SDPBackend.MATH], "flash": [SDPBackend.FLASH_ATTENTION, SDPBackend.MATH]}


@st.composite
def _knobs(draw: st.DrawFn) -> dict:
    return {"ev": draw(st.integers(1, 4)), "groups": draw(st.integers(1, 2)), "gqa": draw(st.booleans()), "mask": draw(st.sampled_from(MASKS)),
            "scale": draw(st.one_of(st.none(), st.floats(0.1, 2.0))), "backend": draw(st.sampled_from(("default", *BACKENDS)))}


@st.composite
def _course_knobs(draw: st.DrawFn) -> dict:
    """A course's attention: no mask or a causal one, torch's own kernel choice; GQA and a scale where
    the learner's signature declares them. Boolean and float masks, which can mask a whole row (torch's
    0 there is a convention), are the edge stage's."""
    return {**draw(_knobs()), "mask": draw(st.sampled_from(("none", "causal"))), "backend": "default"}


def _unscaled(which: int | None):
    """Attention without the 1/sqrt(E) scale (scale 1) where torch's default scale is asked for."""
    import reference

    def model(case: Case, g: np.ndarray | None):
        if case.params.get("scale") is not None or case.inputs["query"].shape[-1] == 1:
            return None
        args, params = case.inputs.values(), {**case.params, "scale": 1.0}
        return reference.scaled_dot_product_attention(*args, **params) if which is None else \
            reference.scaled_dot_product_attention_backward(g, *args, **params)[which]

    return model


_SCALE_LESSON = ("Yours is attention without the scale: torch divides the scores q·k by sqrt(E), E the query's last dimension "
                 "(softmax(q kᵀ / sqrt(E)) v), so that their size does not grow with E.")
MISTAKES = tuple(KnownMistake("no 1/sqrt(E) scale", phase, _unscaled(which), _SCALE_LESSON)
                 for phase, which in (("forward", None), ("grad[query]", 0), ("grad[key]", 1), ("grad[value]", 2)))


def _make(rng, recipe, info) -> Case:
    kn = recipe.knobs
    n, h, length, source, e = (tuple(recipe.shape) + (1,) * 5)[:5]
    groups = kn["groups"] if kn["gqa"] else 1
    ev = e if kn["backend"] == "flash" else kn["ev"]  # the CPU flash kernel takes values as wide as the keys
    q = reals(rng, (n, h * groups, length, e), recipe.regime, info)
    k = reals(rng, (n, h, source, e), recipe.regime, info)
    v = reals(rng, (n, h, source, ev), recipe.regime, info)
    mask = None
    if kn["mask"] == "bool":
        mask = rng.random((length, source)) < 0.6  # with few keys, some rows are wholly masked
    elif kn["mask"] == "float":
        mask = rng.normal(0.0, 2.0, (n, 1, length, source))
        mask[rng.random(mask.shape) < 0.2] = -np.inf
    params = {"attn_mask": mask, "dropout_p": 0.0, "is_causal": kn["mask"] == "causal", "scale": kn["scale"], "enable_gqa": kn["gqa"]}
    return Case({"query": q, "key": k, "value": v}, params, torch={"backend": kn["backend"]})


def _functional(query, key, value, backend="default", **kwargs):
    """F.scaled_dot_product_attention under the drawn backend (on the CPU; elsewhere torch's choice)."""
    if backend == "default" or query.device.type != "cpu":
        return F.scaled_dot_product_attention(query, key, value, **kwargs)
    with sdpa_kernel(BACKENDS[backend]):
        return F.scaled_dot_product_attention(query, key, value, **kwargs)


@per_case  # scale and grad_scale both need them
def _parts(case: Case):
    q, k, v = (case.inputs[name] for name in ("query", "key", "value"))
    with np.errstate(all="ignore"):
        p, k_rep, v_rep, s = attention_weights(q, k, v, **case.params)
        terms = s * np.einsum("...le,...se->...ls", np.abs(q), np.abs(k_rep))  # each score's terms, in size
        mask = case.params["attn_mask"]
        if mask is not None and mask.dtype != bool:
            terms = terms + np.where(np.isfinite(mask), np.abs(mask), 0.0)
        grow = sum_growth(max(q.shape[-1], k.shape[-2], q.shape[-2], v.shape[-1]), case.info.name)
        # Every probability of a row moves with the rounding of the row's largest score too (exp(z - max z)).
        # A score of terms of total size T is rounded to within about E·eps/2·T (a dot product of E
        # terms); a kernel that recomputes P = exp(z - logsumexp) in its backward (the CPU flash
        # kernel) rounds the scores apart from the forward's, so a probability moves by a factor
        # up to e^d, d = E·eps·T: by d·P while d is small (the first-order size, T), by expm1(d)·P
        # beyond. Measured in float32 at T = 5e7 (a score's ULP is 4): flash's P came out e^4 = 55
        # times too large, where the math kernel agreed to 4e-6 ULP.
        largest = np.max(terms, axis=-1, keepdims=True, initial=0.0)
        d = np.minimum(q.shape[-1] * case.info.eps * largest, _NO_DIGITS_LEFT)
        beyond_first_order = np.where(d > 1e-8, np.expm1(d) / np.where(d > 1e-8, d, 1.0), 1.0)
        return p, k_rep, v_rep, s, p * (1.0 + largest * beyond_first_order), grow


# e^40 = 2e17: a probability known to no digit in any dtype; a cap that keeps the scale finite.
_NO_DIGITS_LEFT = 40.0


def _fold(case: Case, grad: np.ndarray) -> np.ndarray:
    heads = case.inputs["key"].shape[-3]
    return grad.reshape(grad.shape[:-3] + (heads, grad.shape[-3] // heads) + grad.shape[-2:]).sum(axis=-3)


def _scale(case: Case, expected: np.ndarray) -> np.ndarray:
    p, _, v_rep, _, weighted, grow = _parts(case)
    return weighted @ np.abs(v_rep) * grow


def _grad_scale(case: Case, g: np.ndarray) -> dict:
    p, k_rep, v_rep, s, weighted, grow = _parts(case)
    q, g = np.abs(case.inputs["query"]), np.abs(g)
    pbar = g @ np.abs(v_rep).swapaxes(-1, -2)
    zbar = weighted * (pbar + np.sum(p * pbar, axis=-1, keepdims=True))
    return {"query": s * zbar @ np.abs(k_rep) * grow, "key": _fold(case, s * zbar.swapaxes(-1, -2) @ q) * grow,
            "value": _fold(case, weighted.swapaxes(-1, -2) @ g) * grow}


SPECS = (
    OpSpec(
        name="scaled_dot_product_attention",
        functional=_functional,
        module=None,
        make=_make,
        shapes=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 5), st.integers(1, 5), st.integers(1, 4)),
        knobs=_knobs(),
        # (N, H, L, S, E) with L, S, E > 1: scores that a missing 1/sqrt(E) changes
        course_shapes=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(2, 5), st.integers(2, 5), st.integers(2, 4)),
        course_knobs=_course_knobs(),
        mistakes=MISTAKES,
        lessons={"masked": "A query whose every key is masked attends to nothing: torch returns 0 there (and no gradient), where a "
                           "plain masked softmax gives 0/0 = NaN. Give such rows zero weights (e.g. np.where(row_all_masked, 0, p))."},
        knob_defaults={"mask": (("attn_mask", "is_causal"), "none"), "gqa": (("enable_gqa",), False), "groups": (("enable_gqa",), 1)},
        # the flash kernel's backward has no derivative of its own: gradgradcheck needs the math kernel
        gradcheck_knobs=_knobs().map(lambda kn: {**kn, "backend": "math"}),
        regimes=("normal", "small", "large", "ties"),
        scale=_scale,
        grad_scale=_grad_scale,
        grad_inputs=("query", "key", "value"),
        large_shape=(4, 4, 128, 64, 16),
        notes="no extremal regime: an inf or NaN query or key makes its scores' row NaN in both (IEEE, not a convention); "
              "the wholly masked row, torch's one convention here, is pinned in tests/test_conventions.py.",
    ),
)
