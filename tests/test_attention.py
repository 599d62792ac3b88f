"""Attention beyond the registry's matrix: each CPU kernel torch can choose, forced and named; the
wholly masked row, torch's one convention here; and the arguments torch refuses."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch.nn.attention import SDPBackend, sdpa_kernel

import reference
from checks import devices, dtypes
from checks.compare import assert_agrees
from checks.networks import ATTENTION_PARAMETERS, torch_parameter
from checks.registry import get
from checks.registry.attention import MASKS
from checks.spec import Recipe
from checks.runner import Runner, build_case
from checks.strategies import recipes

SPEC = get("scaled_dot_product_attention")


def _ran(case, dtype: str, device: str = "cpu") -> SDPBackend:
    """The kernel torch's dispatcher picks for the case's tensors (under the kernels enabled now)."""
    q, k, v = (torch.tensor(case.inputs[n], dtype=getattr(torch, dtype), device=device) for n in ("query", "key", "value"))
    mask = case.params["attn_mask"]
    mask = None if mask is None else torch.tensor(mask, device=device) if mask.dtype == bool else torch.tensor(mask, dtype=q.dtype, device=device)
    params = {**case.params, "attn_mask": mask}
    return SDPBackend(torch._fused_sdp_choice(q, k, v, **params))


KERNELS = [SDPBackend.MATH, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]


def _unavailable(backend: SDPBackend, device: str, dtype: str) -> str | None:
    """Why torch cannot run ``backend`` here at all: its dispatcher's choice for a plain 4-D case
    with head dimension 8 (every fused kernel takes it) when only that kernel is enabled."""
    q = torch.ones((1, 1, 4, 8), dtype=getattr(torch, dtype), device=device)
    with sdpa_kernel([backend]):
        try:
            choice = SDPBackend(torch._fused_sdp_choice(q, q, q)).name
        except RuntimeError as exc:  # "No viable backend ...": the kernel is not built for this device
            choice = str(exc).split(".")[0]
    return None if choice == backend.name else f"torch has no {backend.name} kernel for {dtype} on {device} (its dispatcher: {choice})"


@pytest.mark.parametrize("dtype", dtypes.DTYPE_NAMES)
@pytest.mark.parametrize("backend", KERNELS, ids=lambda b: b.name)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_each_kernel_agrees_with_the_hand_attention(device, backend, dtype, data):
    """Forced with sdpa_kernel, and named: each kernel this torch has on this device (the CPU's: math,
    and the fused flash kernel when values are as wide as keys; CUDA's: flash, memory-efficient and
    cuDNN too, at head dimension 8), on draws the dispatcher sends to it."""
    if reason := devices.unsupported_reason(device, dtype) or _unavailable(backend, device, dtype):
        pytest.skip(reason)
    recipe = data.draw(recipes(SPEC), label="recipe")
    shape = (tuple(recipe.shape) + (1,) * 5)[:5]
    if device != "cpu" and backend != SDPBackend.MATH:
        shape = shape[:4] + (8,)  # the CUDA kernels' head dimensions are multiples of 8
    fused = backend != SDPBackend.MATH
    knobs = {**recipe.knobs, "backend": "default", "ev": shape[4] if fused else recipe.knobs["ev"]}
    recipe = type(recipe)(recipe.seed, recipe.regime, shape, knobs)
    with sdpa_kernel([backend]):
        case = build_case(SPEC, recipe, dtypes.get(dtype))
        assume(not fused or _ran(case, dtype, device) == backend)  # a draw this kernel refuses (a mask, GQA) tests nothing
        records = Runner(SPEC, device, dtype).run(recipe)
    failed = [r for r in records if not r.passed]
    assert not failed, f"under {backend.name}: " + failed[0].message()


def test_the_cpu_flash_kernel_takes_the_registrys_draws():
    """The CPU's fused flash kernel runs whenever values are as wide as keys, masks and GQA included:
    the test above filters none of its draws there (a dispatcher that changed would show here)."""
    for seed in range(20):
        recipe = Recipe(seed, "normal", (2, 2, 3, 4, 4), {"ev": 4, "groups": 2, "gqa": seed % 2 == 0, "mask": MASKS[seed % 4], "scale": None,
                                                          "backend": "default"})
        case = build_case(SPEC, recipe, dtypes.get("float32"))
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            assert _ran(case, "float32") == SDPBackend.FLASH_ATTENTION, recipe


# Found by the default profile about once in 20 runs: scores of size 5e7 in float32 (a score's ULP
# is 4), two of them close. The flash kernel's backward recomputes P = exp(z - logsumexp) from
# scores rounded apart from its forward's, so its value gradient came out e^4 = 55 times the math
# kernel's; the first-order error analysis allowed 45 times. A perturbed score moves P by a factor
# e^d, so the registry judges P beyond first order by expm1(d) (checks/registry/attention.py).
ILL_CONDITIONED = Recipe(3765527, "large", (2, 2, 2, 3, 2), {"ev": 2, "groups": 2, "gqa": True, "mask": "float", "scale": 1.5, "backend": "default"})


@pytest.mark.parametrize("backend", ["math", "flash"])
def test_scores_rounded_by_units_are_judged_beyond_first_order(backend):
    recipe = dataclasses.replace(ILL_CONDITIONED, knobs={**ILL_CONDITIONED.knobs, "backend": backend})
    case = build_case(SPEC, recipe, dtypes.get("float32"))
    largest = np.max(np.abs(case.inputs["query"])) * np.max(np.abs(case.inputs["key"])) * 1.5
    assert largest * dtypes.get("float32").eps > 1, "the draw still has scores beyond first order"
    for record in Runner(SPEC, "cpu", "float32").run(recipe, gradient=True):
        assert_agrees(record)


@pytest.mark.parametrize("dtype", dtypes.DTYPE_NAMES)
def test_a_wholly_masked_query_attends_to_nothing_and_passes_no_gradient(dtype):
    """Row 1 masks every key: torch's safe softmax gives 0 there, not 0/0 = NaN, in every kernel."""
    rng = np.random.default_rng(0)
    q, k, v = rng.normal(size=(1, 1, 3, 4)), rng.normal(size=(1, 1, 5, 4)), rng.normal(size=(1, 1, 5, 4))  # 4-D: flash takes no other
    mask = np.ones((3, 5), dtype=bool)
    mask[1] = False
    assert reference.scaled_dot_product_attention(q, k, v, mask)[0, 0, 1].tolist() == [0.0] * 4
    grads = reference.scaled_dot_product_attention_backward(np.ones((1, 1, 3, 4)), q, k, v, mask)
    assert grads[0][0, 0, 1].tolist() == [0.0] * 4
    for backend in (SDPBackend.MATH, SDPBackend.FLASH_ATTENTION):
        tq, tk, tv = (torch.tensor(a, dtype=getattr(torch, dtype), requires_grad=True) for a in (q, k, v))
        with sdpa_kernel([backend]):
            out = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.tensor(mask))
        out.backward(torch.ones_like(out))
        assert out[0, 0, 1].tolist() == [0.0] * 4 and tq.grad[0, 0, 1].tolist() == [0.0] * 4, backend.name


def test_arguments_torch_refuses_are_refused_by_name():
    q = np.zeros((1, 2, 4))
    with pytest.raises(ValueError, match="attn_mask and is_causal"):
        reference.scaled_dot_product_attention(q, q, q, np.ones((2, 2), dtype=bool), is_causal=True)
    with pytest.raises(ValueError, match="dropout_p"):
        reference.scaled_dot_product_attention(q, q, q, dropout_p=0.1)
    with pytest.raises(ValueError, match="enable_gqa"):
        reference.scaled_dot_product_attention(np.zeros((3, 2, 4)), np.zeros((2, 2, 4)), np.zeros((2, 2, 4)), enable_gqa=True)
    with pytest.raises(ValueError, match="key's last dimension"):
        reference.scaled_dot_product_attention(q, np.zeros((1, 2, 3)), q)


def _identity_attention(e: int) -> dict:
    """nn.MultiheadAttention's parameters with every projection the identity and no bias: Q = K = V = x."""
    eye = np.eye(e)
    return {"in_proj_weight": np.vstack([eye, eye, eye]), "in_proj_bias": np.zeros(3 * e), "out_proj_weight": eye, "out_proj_bias": np.zeros(e)}


def test_multi_head_attention_mask_true_forbids_a_position():
    """nn.MultiheadAttention's convention, the opposite of sdpa's: True (or -inf) forbids. With identity
    projections and x = [[1, 0], [0, 1]] under a causal mask, token 0 sees only itself (y0 = x0) and token 1
    weighs the scores (x1·x0, x1·x1)/√2 = (0, 1/√2): y1 = (1 - p, p), p = 1/(1 + e^(-1/√2))."""
    x, mask = np.eye(2), np.array([[False, True], [False, False]])
    p = 1 / (1 + np.exp(-1 / np.sqrt(2)))
    expected = np.array([[1.0, 0.0], [1 - p, p]])
    params = _identity_attention(2)
    assert reference.attention.multi_head_attention(x, **params, num_heads=1, attn_mask=mask) == pytest.approx(expected, abs=1e-15)
    module = torch.nn.MultiheadAttention(2, 1, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        for name, value in params.items():
            torch_parameter(module, name).copy_(torch.tensor(value))
        y = module(*(torch.tensor(x)[None],) * 3, attn_mask=torch.tensor(mask), need_weights=False)[0][0]
    assert y.numpy() == pytest.approx(expected, abs=1e-15)


def test_multi_head_attention_heads_are_contiguous_blocks_of_features():
    """Head h takes features [h d, (h + 1) d), as nn.MultiheadAttention splits them: with 3 heads of 2,
    head 1 is features 2 and 3. Split and merge are each other's inverse."""
    x = np.random.default_rng(0).normal(size=(3, 4, 6))
    heads = reference.attention.split_heads(x, 3)
    assert heads.shape == (3, 3, 4, 2) and np.array_equal(heads[:, 1], x[..., 2:4])
    assert np.array_equal(reference.attention.merge_heads(heads), x)


@pytest.mark.parametrize("change, error, match", [
    ({"num_heads": 4}, ValueError, "divisible by num_heads"),
    ({"num_heads": True}, TypeError, "num_heads"),
    ({"num_heads": 0}, ValueError, "num_heads"),
    ({"in_proj_bias": np.zeros(5)}, ValueError, "in_proj_bias"),
    ({"attn_mask": np.zeros((2, 2), dtype=int)}, TypeError, "attn_mask"),
    ({"attn_mask": [[0.0, 1.0], [0.0]]}, ValueError, "attn_mask"),
    ({"input": np.zeros((0, 6))}, ValueError, "input"),
    ({"in_proj_weight": np.zeros((6, 2))}, ValueError, "in_proj_weight"),
    ({"attn_mask": np.zeros((3, 3), dtype=bool)}, ValueError, "attn_mask"),
    ({"input": np.zeros(6)}, ValueError, "input"),
])
def test_multi_head_attention_refuses_bad_arguments_by_name(change, error, match):
    args = {"input": np.zeros((2, 6)), **_identity_attention(6), "num_heads": 2, "attn_mask": None, **change}
    with pytest.raises(error, match=match):
        reference.attention.multi_head_attention(**args)


def test_multi_head_attention_takes_one_mask_per_head_unbatched_too():
    """A (num_heads, L, S) mask for an unbatched (L, E) input, as torch takes it: head 0 sees only
    itself (an identity mask), head 1 everything; against nn.MultiheadAttention in float64."""
    rng = np.random.default_rng(1)
    x, heads = rng.normal(size=(3, 4)), 2
    mask = np.stack([~np.eye(3, dtype=bool), np.zeros((3, 3), dtype=bool)])
    module = torch.nn.MultiheadAttention(4, heads, batch_first=True, dtype=torch.float64)
    params = {name: torch_parameter(module, name).detach().numpy() for name in ATTENTION_PARAMETERS}
    with torch.no_grad():
        theirs = module(*(torch.tensor(x),) * 3, attn_mask=torch.tensor(mask), need_weights=False)[0].numpy()
    assert reference.attention.multi_head_attention(x, **params, num_heads=heads, attn_mask=mask) == pytest.approx(theirs, abs=1e-14)
