"""Registry entries for conv1d and conv2d.

A recipe's shape is (N, channels per group, *spatial), padded with 1s when shorter (the report's and
the support probe's generic shapes); the input has ``groups`` times as many
channels, and its spatial sides are grown where needed so the dilated kernel fits the padded input
(the knobs are kept as drawn: the case's params and shape are what the failure message shows).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

import reference
from reference.convolution import convolve, convolve_backward
from checks.spec import Case, KnownMistake, OpSpec, loaded

# torch's performance note for padding='same' with an even kernel (a padded copy is made): not
# about numerics, and printed once per process on every verify, report and suite run.
warnings.filterwarnings("ignore", message="Using padding='same' with even kernel lengths", category=UserWarning)
from checks.tolerance import sum_growth
from checks.values import reals, special_reals


@st.composite
def _knobs(draw: st.DrawFn, nd: int) -> dict:
    side = st.integers(1, 3)
    sides = st.tuples(*[side] * nd)
    padding = draw(st.one_of(st.integers(0, 2), st.sampled_from(["same", "valid"]), st.tuples(*[st.integers(0, 2)] * nd)))
    stride = 1 if padding == "same" else draw(st.one_of(st.integers(1, 2), st.tuples(*[st.integers(1, 3)] * nd)))
    return {"out_per_group": draw(st.integers(1, 3)), "groups": draw(st.integers(1, 2)), "kernel": draw(sides),
            "stride": stride, "padding": padding, "dilation": draw(st.one_of(st.just(1), st.integers(1, 2))),
            "bias": draw(st.booleans()), "batched": draw(st.booleans())}


def _per_axis(value, nd: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * nd


def _make(nd: int):
    def make(rng, recipe, info) -> Case:
        kn = recipe.knobs
        n, per_group, *spatial = (tuple(recipe.shape) + (1,) * (nd + 2))[:nd + 2]  # a shorter shape (a probe's) is padded with 1s
        groups, kernel = kn["groups"], _per_axis(kn["kernel"], nd)
        dilation = _per_axis(kn["dilation"], nd)
        pads = (0,) * nd if isinstance(kn["padding"], str) else _per_axis(kn["padding"], nd)
        spans = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
        spatial = [max(s, span - 2 * p) for s, span, p in zip(spatial, spans, pads)]  # the kernel fits
        shape = ((n,) if kn["batched"] else ()) + (groups * per_group, *spatial)
        fan_in = per_group * int(np.prod(kernel))
        bound = 1.0 / np.sqrt(fan_in)  # nn.Conv's own initialisation range
        out_channels = groups * kn["out_per_group"]
        return Case(
            {"input": reals(rng, shape, recipe.regime, info, specials=special_reals(info, huge=False)),
             "weight": rng.uniform(-bound, bound, (out_channels, per_group, *kernel)) * 3,
             "bias": rng.uniform(-1, 1, out_channels) if kn["bias"] else None},
            {"stride": kn["stride"], "padding": kn["padding"], "dilation": kn["dilation"], "groups": groups},
        )

    return make


def _module(nd: int):
    layer_class = (nn.Conv1d, nn.Conv2d)[nd - 1]

    def call(input, weight, bias, stride, padding, dilation, groups):
        layer = layer_class(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]), stride=stride, padding=padding,
                            dilation=dilation, groups=groups, bias=bias is not None, device=weight.device, dtype=weight.dtype)
        return loaded(layer, weight=weight, bias=bias)(input)

    return call


def _scale(nd: int):
    """sum |w x| + |b| per output, the size of the terms each output sums (as for Linear), grown for
    a window of more than 2k taps (checks.tolerance.sum_growth)."""
    forward = (reference.conv1d, reference.conv2d)[nd - 1]

    def scale(case: Case, expected: np.ndarray) -> np.ndarray:
        x, w, b = case.inputs["input"], case.inputs["weight"], case.inputs["bias"]
        window = int(np.prod(w.shape[1:]))
        return forward(np.abs(x), np.abs(w), None if b is None else np.abs(b), **case.params) * sum_growth(window, case.info.name)

    return scale


def _grad_scale(nd: int):
    """Each gradient's terms in absolute value: the same sums with |g|, |x| and |w|, grown by their
    length: every output position of every sample for the weight and bias, the taps of every output
    channel of the group for the input."""
    backward = (reference.conv1d_backward, reference.conv2d_backward)[nd - 1]

    def grad_scale(case: Case, g: np.ndarray) -> dict:
        x, w, b = case.inputs["input"], case.inputs["weight"], case.inputs["bias"]
        gx, gw, gb = backward(np.abs(g), np.abs(x), np.abs(w), b, **case.params)
        positions = sum_growth(g.size // w.shape[0], case.info.name)
        taps = sum_growth(w.shape[0] // case.params["groups"] * int(np.prod(w.shape[2:])), case.info.name)
        return {"input": gx * taps, "weight": gw * positions, "bias": None if gb is None else gb * positions}

    return grad_scale


def _flipped(nd: int):
    """A true convolution: the kernel flipped along its spatial axes (torch's layer correlates)."""
    def model(case: Case, g: np.ndarray | None) -> np.ndarray:
        x, w, b = case.inputs["input"], case.inputs["weight"], case.inputs["bias"]
        return convolve(nd, x, np.flip(w, axis=tuple(range(2, 2 + nd))), b, **case.params)

    return model


def _one_side(nd: int, side: int):
    """The padding applied before (side 0) or after (side 1) each spatial axis only."""
    def model(case: Case, g: np.ndarray | None) -> np.ndarray | None:
        x, w, b = case.inputs["input"], case.inputs["weight"], case.inputs["bias"]
        padding = case.params["padding"]
        if isinstance(padding, str) or not any(_per_axis(padding, nd)):
            return None
        widths = [(0, 0)] * (x.ndim - nd) + [(p, 0) if side == 0 else (0, p) for p in _per_axis(padding, nd)]
        return convolve(nd, np.pad(x, widths), w, b, **{**case.params, "padding": 0})

    return model


def _stride_ignored(nd: int, which: int):
    """A backward that scatters as if the stride were 1: output position j read input j, not stride·j."""
    def model(case: Case, g: np.ndarray | None) -> np.ndarray | None:
        x, w, b = case.inputs["input"], case.inputs["weight"], case.inputs["bias"]
        params = case.params
        if all(s == 1 for s in _per_axis(params["stride"], nd)) or isinstance(params["padding"], str):
            return None
        ones = convolve(nd, np.zeros_like(x), w, None, **{**params, "stride": 1})  # the output shape at stride 1
        g1 = np.zeros(ones.shape)
        g1[(...,) + tuple(slice(0, n) for n in g.shape[-nd:])] = g
        return convolve_backward(nd, g1, x, w, b, **{**params, "stride": 1})[which]

    return model


def _mistakes(nd: int) -> tuple[KnownMistake, ...]:
    pad = ("Your output is torch's with the padding on one side only: torch pads padding zeros on both sides of each "
           "spatial axis (np.pad(x, ((0, 0), (0, 0), (p, p), ...))).")
    stride = ("Your gradient is the one for stride 1: in the forward output position t reads input stride·t + dilation·j − padding, "
              "so the backward must send grad_output[t] back to exactly those positions.")
    return (KnownMistake("flipped kernel", "forward", _flipped(nd),
                         "Your output is a true convolution (the kernel flipped): torch's conv layers compute a cross-correlation, "
                         "y[t] = Σ_j w[j] x[t + j], with no flip."),
            KnownMistake("padding before only", "forward", _one_side(nd, 0), pad),
            KnownMistake("padding after only", "forward", _one_side(nd, 1), pad),
            KnownMistake("stride ignored", "grad[input]", _stride_ignored(nd, 0), stride),
            KnownMistake("stride ignored", "grad[weight]", _stride_ignored(nd, 1), stride))


def _shapes(nd: int):
    return st.tuples(st.integers(1, 3), st.integers(1, 3), *[st.integers(1, 8 if nd == 1 else 6)] * nd)


def _course_shapes(nd: int):
    """A course's convolutions: a batch of multi-channel signals or images, wider than the kernel."""
    return st.tuples(st.integers(1, 2), st.integers(1, 3), *[st.integers(3, 8 if nd == 1 else 6)] * nd)


@st.composite
def _course_knobs(draw: st.DrawFn, nd: int) -> dict:
    """Batched, square or rectangular kernels; an int stride, padding and dilation where the learner's
    signature declares them (otherwise torch's defaults, checks.learner). Tuples and 'same' are the edge stage's."""
    return {"out_per_group": draw(st.integers(1, 3)), "groups": draw(st.integers(1, 2)), "kernel": draw(st.tuples(*[st.integers(1, 3)] * nd)),
            "stride": draw(st.integers(1, 2)), "padding": draw(st.integers(0, 2)), "dilation": draw(st.integers(1, 2)),
            "bias": draw(st.booleans()), "batched": True}


def _conv(nd: int) -> OpSpec:
    return OpSpec(
        name=f"conv{nd}d",
        functional=getattr(F, f"conv{nd}d"),
        module=_module(nd),
        make=_make(nd),
        shapes=_shapes(nd),
        knobs=_knobs(nd),
        scale=_scale(nd),
        grad_scale=_grad_scale(nd),
        grad_inputs=("input", "weight", "bias"),
        large_shape=(2, 2, 26_000) if nd == 1 else (2, 4, 120, 120),  # just over 100k input elements
        course_shapes=_course_shapes(nd),
        course_knobs=_course_knobs(nd),
        mistakes=_mistakes(nd),
        lessons={"raised": f"torch's weight has shape (out_channels, in_channels/groups, *kernel), its input (N, C_in, *spatial) "
                           f"or one unbatched sample (C_in, *spatial): y[o, t] = b[o] + sum over c, j of w[o, c, j] x[c, stride*t + dilation*j - padding]."},
    )


SPECS = (_conv(1), _conv(2))
