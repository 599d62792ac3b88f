"""The arguments of torch's signatures that the registry does not draw mean what they mean in torch:
the deprecated reduction flags, ``inplace``, softmax's implicit dim and its ``dtype``'s rounding.
(That the references take all of torch's arguments, in its order, is
tests/test_machinery.py::test_reference_mirrors_the_torch_signature.)
"""
from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reference
from checks import dtypes
from checks.registry import REGISTRY, get
from checks.runner import build_case, simplest_knobs
from checks.spec import Recipe
from reference._formats import FORMATS, dtype_name, round_to

LOSSES_WITH_FLAGS = ("cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits", "mse_loss", "l1_loss", "smooth_l1_loss", "kl_div")
IN_PLACE = ("relu", "leaky_relu", "elu", "hardtanh", "silu", "mish")


# torch's documented table (torch/nn/_reduction.py): a None flag counts as True.
LEGACY = {(None, False): "none", (True, False): "none", (False, False): "none", (False, None): "sum", (False, True): "sum",
          (True, None): "mean", (None, True): "mean", (True, True): "mean"}


def _loss_case(name: str):
    spec = get(name)
    case = build_case(spec, Recipe(seed=3, regime="normal", shape=(4, 3), knobs=simplest_knobs(spec)), dtypes.get("float64"))
    params = {k: v for k, v in case.params.items() if k not in ("reduction", "size_average", "reduce")}
    return case.inputs, params


@pytest.mark.parametrize("name", LOSSES_WITH_FLAGS)
def test_deprecated_size_average_and_reduce_choose_the_reduction_as_in_torch(name: str) -> None:
    inputs, params = _loss_case(name)
    tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()}
    torch_params = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in params.items()}
    ours, theirs = getattr(reference, name), getattr(F, name)
    for (size_average, reduce), chosen in LEGACY.items():
        with pytest.warns(UserWarning, match=f"reduction='{chosen}'"):
            flagged = ours(*inputs.values(), size_average=size_average, reduce=reduce, reduction="sum", **params)
        assert np.array_equal(flagged, ours(*inputs.values(), reduction=chosen, **params), equal_nan=True)
        with warnings.catch_warnings():  # the flags' deprecation, and kl_div's advice to use 'batchmean'
            warnings.simplefilter("ignore")
            torch_flagged = theirs(*tensors.values(), size_average=size_average, reduce=reduce, reduction="sum", **torch_params)
            torch_chosen = theirs(*tensors.values(), reduction=chosen, **torch_params)
        assert torch.equal(torch_flagged, torch_chosen), "torch's table changed"


@pytest.mark.parametrize("name", LOSSES_WITH_FLAGS)
def test_a_reduction_given_by_position_is_refused_where_torch_takes_the_mean(name: str) -> None:
    """``F.mse_loss(x, y, "sum")`` puts "sum" into size_average; torch takes it as True: the mean."""
    inputs, params = _loss_case(name)
    position = list(inspect.signature(getattr(reference, name)).parameters).index("size_average")
    args = [*inputs.values(), *[params.get(p) for p in list(inspect.signature(getattr(reference, name)).parameters)[len(inputs):position]]]
    with pytest.raises(TypeError, match="size_average must be a bool or None"):
        getattr(reference, name)(*args, "sum")


@pytest.mark.parametrize("name", IN_PLACE)
def test_inplace_writes_the_result_into_the_input_and_returns_it(name: str) -> None:
    x = np.array([-3.0, -0.5, 0.0, 0.25, 2.0, np.nan])
    expected = getattr(reference, name)(x.copy())
    out = getattr(reference, name)(x, inplace=True)
    assert out is x and np.array_equal(x, expected, equal_nan=True)
    single = np.array(x, dtype=np.float32)
    getattr(reference, name)(single, inplace=True)  # rounded into the input's own dtype, as torch's in-place ops
    assert single.dtype == np.float32
    t = torch.tensor([-3.0, -0.5, 0.0, 0.25, 2.0, np.nan], dtype=torch.float64)
    assert getattr(F, name)(t, inplace=True) is t, "torch's inplace returns its input"


@pytest.mark.parametrize("name", IN_PLACE)
def test_inplace_refuses_an_input_it_cannot_write(name: str) -> None:
    with pytest.raises(TypeError, match="inplace=True writes into input"):
        getattr(reference, name)([1.0, -1.0], inplace=True)
    with pytest.raises(TypeError, match="inplace must be a bool"):
        getattr(reference, name)(np.ones(2), inplace="yes")


@pytest.mark.parametrize("ndim", range(5))
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_without_dim_takes_torchs_deprecated_implicit_dim(name: str, ndim: int) -> None:
    x = np.random.default_rng(ndim).normal(size=(2, 3, 4, 5)[:ndim])
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        ours = getattr(reference, name)(x)
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        theirs = getattr(F, name)(torch.from_numpy(x))
    chosen = 0 if ndim in (0, 1, 3) else 1  # torch/nn/functional.py _get_softmax_dim
    assert np.array_equal(ours, getattr(reference, name)(x, dim=chosen))
    assert torch.equal(theirs, getattr(F, name)(torch.from_numpy(x), dim=chosen))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_softmax_dtype_rounds_the_input_first(dtype: str) -> None:
    x = np.random.default_rng(0).normal(0, 30, (3, 7))
    assert np.array_equal(reference.softmax(x, 1, dtype=getattr(torch, dtype)), reference.softmax(round_to(x, dtype), 1))
    assert np.array_equal(reference.log_softmax_backward(np.ones_like(x), x, 1, dtype=dtype), reference.log_softmax_backward(np.ones_like(x), round_to(x, dtype), 1))


def test_softmax_dtype_must_be_a_floating_dtype() -> None:
    for bad in ("int64", torch.int32, np.int8, "float8"):
        with pytest.raises(ValueError, match="dtype must be a floating dtype"):
            reference.softmax(np.ones(3), 0, dtype=bad)


def test_dtype_names_read_torch_numpy_and_strings() -> None:
    assert [dtype_name(d) for d in (torch.bfloat16, np.float16, np.dtype("float32"), "torch.float64", None)] == ["bfloat16", "float16", "float32", "float64", None]


def test_rounding_to_a_format_is_ieee_round_to_nearest_even() -> None:
    """Against numpy's casts (correctly rounded from float64) for float16 and float32, and for
    bfloat16 against torch's cast on float32 values (one rounding, so the same rule), plus ties."""
    rng = np.random.default_rng(1)
    wide = rng.normal(size=20_000) * np.exp2(rng.integers(-160, 140, 20_000))
    with np.errstate(over="ignore"):
        assert np.array_equal(round_to(wide, "float16"), wide.astype(np.float16).astype(np.float64))
        assert np.array_equal(round_to(wide, "float32"), wide.astype(np.float32).astype(np.float64))
        single = wide.astype(np.float32).astype(np.float64)
    assert np.array_equal(round_to(single, "bfloat16"), torch.from_numpy(single).bfloat16().double().numpy())
    ties = np.array([1 + 2.0**-8, 1 + 3 * 2.0**-8, 2.0**-133 * 1.5, -(1 + 2.0**-8), float.fromhex("0x1.ffp127"), np.inf, -0.0])
    assert round_to(ties, "bfloat16").tolist()[:6] == [1.0, 1 + 2.0**-6, 2.0**-132, -1.0, np.inf, np.inf]
    assert np.signbit(round_to(ties, "bfloat16")[-1])
    assert set(FORMATS) == {"float16", "bfloat16", "float32", "float64"}
