"""Registry entries for layer_norm and rms_norm: the input normalised over its last one or two
dimensions, with or without weight (and bias), and the gradient of each.

Natural scales: x − μ is formed in the dtype from x and a mean of terms of size mean|x| (an absolute
error of eps times |x| + mean|x|, multiplied by r = 1/σ), and the input's gradient subtracts row means of ĝ = g·w and
ĝ·x̂ from ĝ: each is judged at the size of the terms it sums. The row's mean and variance add M
rounded terms: like any such sum (checks.tolerance.k_for_sum) their error may grow by half an ULP a
term, so a row longer than 2k is judged at M/(2k) times its size.
"""
from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

from checks.spec import Case, KnownMistake, OpSpec, loaded
from checks.strategies import knobs, shapes
from checks.tolerance import sum_growth
from checks.values import reals, special_reals

NUMPY = {"float16": np.float16, "float32": np.float32, "float64": np.float64}


def _make(rng, recipe, info, centre: bool) -> Case:
    shape = recipe.shape
    dims = min(recipe.knobs["dims"], len(shape))
    normalized = tuple(shape[len(shape) - dims:])
    x = reals(rng, shape, recipe.regime, info, specials=special_reals(info, huge=False))
    affine = recipe.knobs["affine"]
    params = {"normalized_shape": normalized, "weight": rng.normal(1.0, 0.5, normalized) if affine else None}
    if centre:
        params["bias"] = rng.normal(0.0, 1.0, normalized) if affine else None
    eps = recipe.knobs["eps"]
    if eps is None and info.name in NUMPY:
        x = x.astype(NUMPY[info.name])  # eps=None: the input dtype's eps, which the array's dtype carries
    elif eps is None:
        eps = info.eps  # bfloat16 has no numpy dtype to carry it: its eps, 2**-7, passed explicitly
    params["eps"] = eps
    return Case({"input": x}, params)


def _rows(case: Case) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    x = np.asarray(case.inputs["input"], dtype=np.float64)
    axes = tuple(range(x.ndim - len(case.params["normalized_shape"]), x.ndim))
    eps = case.params["eps"] if case.params["eps"] is not None else float(np.finfo(case.inputs["input"].dtype).eps)
    return axes, x, eps


def _r(case: Case, centre: bool) -> tuple[tuple[int, ...], np.ndarray, np.ndarray, np.ndarray]:
    """The normalised axes, |x| + mean|x| (the size of x − μ's terms: μ sums the row), r = 1/sqrt(var + eps)
    per row, and |x̂|."""
    axes, x, eps = _rows(case)
    with np.errstate(all="ignore"):
        mu = np.mean(x, axis=axes, keepdims=True) if centre else 0.0
        r = 1.0 / np.sqrt(np.mean((x - mu) ** 2, axis=axes, keepdims=True) + eps)
        size = np.abs(x) + (np.mean(np.abs(x), axis=axes, keepdims=True) if centre else 0.0)
        return axes, size, r, np.abs(x - mu) * r


def _summed(case: Case, axes: tuple[int, ...]) -> float:
    """How much longer than 2k the row's sums are (at least 1): their error grows with the row."""
    return sum_growth(int(np.prod([case.inputs["input"].shape[a] for a in axes])), case.info.name)


def _scale(centre: bool):
    def scale(case: Case, expected: np.ndarray) -> np.ndarray:
        axes, size, r, xhat = _r(case, centre)
        w, b = case.params["weight"], case.params.get("bias")
        # x̂ to within eps·(|x| + |μ|)·r absolutely, and r itself to within eps relatively
        return (size * r + xhat) * _summed(case, axes) * (1.0 if w is None else np.abs(w)) + (0.0 if b is None else np.abs(b))

    return scale


def _grad_scale(centre: bool):
    def grad_scale(case: Case, g: np.ndarray) -> dict:
        axes, size, r, xhat = _r(case, centre)
        w = case.params["weight"]
        gw = np.abs(g) * (1.0 if w is None else np.abs(w))
        with np.errstate(all="ignore"):
            terms = gw + np.mean(gw, axis=axes, keepdims=True) + (size * r + xhat) * np.mean(gw * (size * r + xhat), axis=axes, keepdims=True)
            batch = tuple(range(np.ndim(g) - len(axes)))
            return {"input": r * terms * _summed(case, axes), "weight": np.sum(np.abs(g) * (size * r + xhat), axis=batch), "bias": np.sum(np.abs(g), axis=batch)}

    return grad_scale


def _make_group(rng, recipe, info) -> Case:
    shape = recipe.shape
    channels = shape[1]
    positions = int(np.prod(shape[2:]))
    # torch refuses a group of one value (nothing to normalise): every group holds two or more
    divisors = [d for d in range(1, channels + 1) if channels % d == 0 and channels // d * positions >= 2]
    groups = int(rng.choice(divisors))
    x = reals(rng, shape, recipe.regime, info, specials=special_reals(info, huge=False))
    affine = recipe.knobs["affine"]
    return Case({"input": x}, {"num_groups": groups, "weight": rng.normal(1.0, 0.5, channels) if affine else None,
                               "bias": rng.normal(0.0, 1.0, channels) if affine else None, "eps": recipe.knobs["eps"]})


def _group_rows(case: Case) -> Case:
    """The case as layer_norm sees each group: (N, G, C/G · positions), weight and bias spread per element."""
    x = case.inputs["input"]
    rows = x.reshape(x.shape[0], case.params["num_groups"], -1)
    spread = lambda v: None if v is None else np.broadcast_to(v.reshape((1, -1) + (1,) * (x.ndim - 2)), x.shape).reshape(rows.shape)  # noqa: E731
    return Case({"input": rows}, {"normalized_shape": rows.shape[2:], "weight": spread(case.params["weight"]),
                                  "bias": spread(case.params["bias"]), "eps": case.params["eps"]}, case.info)


def _group_scale(case: Case, expected: np.ndarray) -> np.ndarray:
    x = case.inputs["input"]
    return np.broadcast_to(_scale(True)(_group_rows(case), expected), x.reshape(x.shape[0], case.params["num_groups"], -1).shape).reshape(x.shape)


def _group_grad_scale(case: Case, g: np.ndarray) -> dict:
    x = case.inputs["input"]
    rows = _group_rows(case)
    per_element = _grad_scale(True)(rows, np.reshape(g, rows.inputs["input"].shape))
    others = (0,) + tuple(range(2, x.ndim))
    _, size, r, xhat = _r(rows, True)
    terms = np.abs(np.reshape(g, rows.inputs["input"].shape)) * (size * r + xhat)
    return {"input": np.reshape(per_element["input"], x.shape), "weight": np.sum(terms.reshape(x.shape), axis=others),
            "bias": np.sum(np.abs(g), axis=others)}


def _group_norm_module(input, num_groups, weight, bias, eps):
    layer = nn.GroupNorm(num_groups, input.shape[1], eps=eps, affine=weight is not None, device=input.device, dtype=input.dtype)
    return loaded(layer, weight=weight, bias=bias)(input)


def _row_variant(how: str):
    """layer_norm as students get it wrong: the unbiased variance (ddof=1), or eps outside the root."""
    def model(case: Case, g: np.ndarray | None) -> np.ndarray | None:
        x, p = np.asarray(case.inputs["input"], dtype=np.float64), case.params
        shape = tuple(p["normalized_shape"]) if isinstance(p["normalized_shape"], (tuple, list)) else (p["normalized_shape"],)
        axes = tuple(range(x.ndim - len(shape), x.ndim))
        n = int(np.prod(shape))
        mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
        eps = 1e-5 if p.get("eps") is None else p["eps"]
        if how == "unbiased":  # one element: 0/0, NaN, as np.var(ddof=1) gives
            xhat = (x - mean) / np.sqrt(var * n / max(n - 1, 0.0) + eps) if n > 1 else np.full(x.shape, np.nan)
        else:
            xhat = (x - mean) / (np.sqrt(var) + eps)
        w, b = p.get("weight"), p.get("bias")
        return xhat * (1.0 if w is None else w) + (0.0 if b is None else b)

    return model


def _weight_gradient_of_x(case: Case, g: np.ndarray | None) -> np.ndarray | None:
    """layer_norm's weight gradient summed with the raw input, Σ g·x, instead of the normalised x̂."""
    x, p = case.inputs["input"], case.params
    if p.get("weight") is None:
        return None
    shape = tuple(p["normalized_shape"]) if isinstance(p["normalized_shape"], (tuple, list)) else (p["normalized_shape"],)
    return np.sum(np.asarray(g) * x, axis=tuple(range(x.ndim - len(shape))))


ROW_MISTAKES = (
    KnownMistake("x for x-hat", "grad[weight]", _weight_gradient_of_x,
                 "Your weight gradient sums grad_output · x: the forward multiplies the weight by the normalised x̂ = (x - mean) / "
                 "sqrt(var + eps), so the weight's gradient is the sum of grad_output · x̂ over the batch."),
    KnownMistake("unbiased variance", "forward", _row_variant("unbiased"),
                 "Your output uses the unbiased variance (ddof=1, dividing by n - 1): layer_norm normalises with the biased one, "
                 "np.var(x, axis=...) dividing by n."),
    KnownMistake("eps outside the square root", "forward", _row_variant("eps outside"),
                 "Your output divides by sqrt(var) + eps: torch adds eps inside the square root, (x - mean) / sqrt(var + eps)."),
)


def _batch_per_sample(case: Case, g: np.ndarray | None) -> np.ndarray | None:
    """batch_norm's statistics taken over each sample's features (like layer_norm) instead of over the batch."""
    x, p = np.asarray(case.inputs["input"], dtype=np.float64), case.params
    if not p["training"] or x.ndim < 2:
        return None
    axes = tuple(range(1, x.ndim))
    xhat = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + p["eps"])
    per_channel = lambda v, d: d if v is None else np.reshape(v, (1, -1) + (1,) * (x.ndim - 2))  # noqa: E731
    return xhat * per_channel(p["weight"], 1.0) + per_channel(p["bias"], 0.0)


BATCH_MISTAKES = (KnownMistake("statistics per sample", "forward", _batch_per_sample,
                               "Your output normalises each sample over its features: batch_norm takes each channel's mean and variance "
                               "over the batch (and positions), axis=(0, 2, ...), one statistic per channel."),)


def _running_sizes(case: Case) -> dict[str, np.ndarray]:
    """The running statistics a training step updates, and the size of each new value's terms:
    (1 - m)|running| + m·(the batch statistic's terms), the statistic's sum growing by half an ULP a
    term past 2k terms (checks.tolerance)."""
    p = case.params
    if not p["training"] or p["running_mean"] is None:
        return {}
    from checks.tolerance import k_for

    x, m = case.inputs["input"], p["momentum"]
    rows = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)
    n = rows.shape[1]
    grow = max(1.0, n / (2 * k_for("forward", case.info.name)))
    with np.errstate(all="ignore"):  # inf and NaN draws: their size is NaN, and the policy reads |expected|
        size = np.abs(rows) + np.mean(np.abs(rows), axis=1, keepdims=True)
        return {"running_mean": (1 - m) * np.abs(p["running_mean"]) + m * np.mean(np.abs(rows), axis=1) * grow,
                "running_var": (1 - m) * np.abs(p["running_var"]) + m * n / (n - 1) * np.mean(size**2, axis=1) * grow}


def _make_batch(rng, recipe, info) -> Case:
    x = reals(rng, recipe.shape, recipe.regime, info, specials=special_reals(info, huge=False))
    channels = recipe.shape[1]
    training, affine = recipe.knobs["training"], recipe.knobs["affine"]
    running = not training or recipe.knobs["running"]  # evaluation needs running statistics
    return Case({"input": x}, {
        "running_mean": rng.normal(0.0, 1.0, channels) if running else None,
        "running_var": rng.uniform(0.25, 4.0, channels) if running else None,
        "weight": rng.normal(1.0, 0.5, channels) if affine else None,
        "bias": rng.normal(0.0, 1.0, channels) if affine else None,
        "training": training, "momentum": recipe.knobs["momentum"], "eps": recipe.knobs["eps"]})


def _batch_rows(case: Case) -> Case:
    """The training-mode case as layer_norm sees each channel: (C, N · positions)."""
    x = case.inputs["input"]
    rows = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)
    spread = lambda v: None if v is None else np.broadcast_to(v[:, None], rows.shape)  # noqa: E731
    return Case({"input": rows}, {"normalized_shape": rows.shape[1:], "weight": spread(case.params["weight"]),
                                  "bias": spread(case.params["bias"]), "eps": case.params["eps"]}, case.info)


def _channels_back(rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.moveaxis(np.broadcast_to(rows, (shape[1], int(np.prod(shape)) // shape[1])).reshape((shape[1], shape[0]) + shape[2:]), 0, 1)


def _eval_terms(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation mode: |x| + |running mean| (the terms of x − mean) times r, per element, and r."""
    x = case.inputs["input"]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    with np.errstate(all="ignore"):
        r = 1.0 / np.sqrt(case.params["running_var"].reshape(shape) + case.params["eps"])
        return (np.abs(x) + np.abs(case.params["running_mean"].reshape(shape))) * r, r


def _batch_scale(case: Case, expected: np.ndarray) -> np.ndarray:
    x, w, b = case.inputs["input"], case.params["weight"], case.params["bias"]
    if case.params["training"]:
        return _channels_back(_scale(True)(_batch_rows(case), expected), x.shape)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    terms, _ = _eval_terms(case)
    return terms * (1.0 if w is None else np.abs(w).reshape(shape)) + (0.0 if b is None else np.abs(b).reshape(shape))


def _batch_grad_scale(case: Case, g: np.ndarray) -> dict:
    x, w = case.inputs["input"], case.params["weight"]
    others = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if case.params["training"]:
        rows = _batch_rows(case)
        g_rows = np.moveaxis(np.asarray(g), 1, 0).reshape(rows.inputs["input"].shape)
        _, size, r, xhat = _r(rows, True)
        return {"input": _channels_back(_grad_scale(True)(rows, g_rows)["input"], x.shape),
                "weight": np.sum(np.abs(g_rows) * (size * r + xhat), axis=1), "bias": np.sum(np.abs(g), axis=others)}
    terms, r = _eval_terms(case)
    return {"input": np.abs(g) * r * (1.0 if w is None else np.abs(w).reshape(shape)),
            "weight": np.sum(np.abs(g) * terms, axis=others), "bias": np.sum(np.abs(g), axis=others)}


def _batch_norm_module(input, running_mean, running_var, weight, bias, training, momentum, eps):
    kind = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}[input.dim()]
    layer = kind(input.shape[1], eps=eps, momentum=momentum, affine=weight is not None, track_running_stats=running_mean is not None,
                 device=input.device, dtype=input.dtype)
    return loaded(layer, weight=weight, bias=bias, running_mean=running_mean, running_var=running_var).train(training)(input)


def _layer_norm_module(input, normalized_shape, weight, bias, eps):
    layer = nn.LayerNorm(normalized_shape, eps=eps, elementwise_affine=weight is not None, device=input.device, dtype=input.dtype)
    return loaded(layer, weight=weight, bias=bias)(input)


def _rms_norm_module(input, normalized_shape, weight, eps):
    layer = nn.RMSNorm(normalized_shape, eps=eps, elementwise_affine=weight is not None, device=input.device, dtype=input.dtype)
    return loaded(layer, weight=weight)(input)


SPECS = (
    OpSpec(
        name="layer_norm",
        functional=F.layer_norm,
        module=_layer_norm_module,
        make=lambda rng, recipe, info: _make(rng, recipe, info, centre=True),
        shapes=shapes(min_dims=1, max_dims=3, min_side=1),
        knobs=knobs(dims=st.sampled_from([1, 2]), affine=st.booleans(), eps=st.sampled_from([1e-5, 1e-3, 0.1])),
        mistakes=ROW_MISTAKES,
        scale=_scale(True),
        grad_scale=_grad_scale(True),
        grad_inputs=("input", "weight", "bias"),
    ),
    OpSpec(
        name="rms_norm",
        functional=F.rms_norm,
        module=_rms_norm_module,
        make=lambda rng, recipe, info: _make(rng, recipe, info, centre=False),
        shapes=shapes(min_dims=1, max_dims=3, min_side=1),
        knobs=knobs(dims=st.sampled_from([1, 2]), affine=st.booleans(), eps=st.sampled_from([None, 1e-6, 1e-3])),
        scale=_scale(False),
        grad_scale=_grad_scale(False),
        grad_inputs=("input", "weight"),
        notes="eps=None is the input dtype's machine epsilon (bfloat16 cells pass its value, 2**-7, explicitly).",
    ),
    OpSpec(
        name="group_norm",
        functional=F.group_norm,
        module=_group_norm_module,
        make=_make_group,
        shapes=shapes(min_dims=2, max_dims=4, min_side=1, max_side=6).filter(lambda shape: np.prod(shape[1:]) >= 2),
        knobs=knobs(affine=st.booleans(), eps=st.sampled_from([1e-5, 1e-3, 0.1])),
        course_shapes=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(2, 5)),  # (N, C, L): each group holds two or more
        scale=_group_scale,
        grad_scale=_group_grad_scale,
        grad_inputs=("input", "weight", "bias"),
        large_shape=(16, 24, 20, 16),
    ),
    OpSpec(
        name="batch_norm",
        functional=F.batch_norm,
        module=_batch_norm_module,
        make=_make_batch,
        # (N, C, *) up to 3-D batches (BatchNorm1d/2d/3d); training needs two or more values per channel
        shapes=shapes(min_dims=2, max_dims=5, min_side=1, max_side=5).filter(lambda shape: shape[0] * np.prod(shape[2:]) >= 2),
        knobs=knobs(training=st.booleans(), running=st.booleans(), affine=st.booleans(), momentum=st.sampled_from([0.1, 0.5, 1.0, 0.0]),
                    eps=st.sampled_from([1e-5, 1e-3])),
        # a course's BatchNorm1d: (N, C) and (N, C, L), training and evaluation
        course_shapes=st.one_of(st.tuples(st.integers(2, 6), st.integers(1, 4)), st.tuples(st.integers(2, 4), st.integers(1, 3), st.integers(1, 5))),
        mistakes=BATCH_MISTAKES,
        updates=_running_sizes,
        scale=_batch_scale,
        grad_scale=_batch_grad_scale,
        grad_inputs=("input", "weight", "bias"),
        large_shape=(16, 24, 20, 16),
        notes="Training updates running_mean and running_var in place (the unbiased variance); tests/test_normalization.py compares them after the call.",
    ),
)
