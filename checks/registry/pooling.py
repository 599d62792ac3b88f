"""Registry entries for max_pool2d, avg_pool2d and adaptive_avg_pool2d.

A recipe's shape is (N, C, H, W), padded with 1s when shorter (the support probe's and the report's
generic shapes); H and W are grown where needed so the (dilated) window fits the padded input.
Max pooling picks an element, so its output is exact (scale 0); its gradient and the averages sum
terms, judged at the size of those terms.
"""
from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

import reference
from checks.spec import Case, KnownMistake, OpSpec
from checks.tolerance import sum_growth
from checks.values import reals, special_reals


@st.composite
def _window(draw: st.DrawFn, dilation: bool) -> dict:
    kernel = draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    dil = draw(st.tuples(st.integers(1, 2), st.integers(1, 2))) if dilation else (1, 1)
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    knobs = {"kernel_size": kernel, "stride": stride, "padding": padding, "ceil_mode": draw(st.booleans()), "batched": draw(st.booleans())}
    return {**knobs, "dilation": dil} if dilation else knobs


@st.composite
def _avg_knobs(draw: st.DrawFn) -> dict:
    return {**draw(_window(False)), "count_include_pad": draw(st.booleans()),
            "divisor_override": draw(st.one_of(st.none(), st.integers(1, 5)))}


@st.composite
def _adaptive_knobs(draw: st.DrawFn) -> dict:
    side = st.one_of(st.integers(1, 7), st.none())
    return {"output_size": draw(st.one_of(st.integers(1, 7), st.tuples(side, side))), "batched": draw(st.booleans())}


@st.composite
def _course_window(draw: st.DrawFn, dilation: bool, average: bool = False) -> dict:
    """A course's pooling: batched, a square kernel as an int (or a rectangular pair), stride an int
    or None, padding within half the kernel; the rest where the learner's signature declares it."""
    kernel = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    smallest = min(kernel) if isinstance(kernel, tuple) else kernel
    knobs = {"kernel_size": kernel, "stride": draw(st.one_of(st.none(), st.integers(1, 3))), "padding": draw(st.integers(0, smallest // 2)),
             "ceil_mode": draw(st.booleans()), "batched": True}
    if dilation:
        knobs["dilation"] = draw(st.integers(1, 2))
    if average:
        knobs |= {"count_include_pad": draw(st.booleans()), "divisor_override": draw(st.one_of(st.none(), st.integers(1, 5)))}
    return knobs


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _input(rng, recipe, info, kn: dict, summing: bool) -> np.ndarray:
    n, c, h, w = (tuple(recipe.shape) + (1,) * 4)[:4]
    if "kernel_size" in kn:
        dil = _pair(kn.get("dilation", 1))
        # the (dilated) window fits the padded input, and no window falls between its taps entirely
        # into the padding (torch's -inf and out-of-range index, pytorch/pytorch#114216): at least d wide
        h, w = (max(side, d * (k - 1) + 1 - 2 * p, d) for side, k, d, p in zip((h, w), _pair(kn["kernel_size"]), dil, _pair(kn["padding"])))
    shape = ((n,) if kn["batched"] else ()) + (c, h, w)
    # Averages sum their window: drawn without the dtype's largest values, whose sum overflows the
    # dtype though the mean fits (IEEE arithmetic, as for every summing op: checks/values.py).
    # Max pooling only selects, so it gets them.
    return reals(rng, shape, recipe.regime, info, specials=special_reals(info, huge=not summing))


def _make(summing: bool):
    def make(rng, recipe, info) -> Case:
        kn = dict(recipe.knobs)
        x = _input(rng, recipe, info, kn, summing)
        kn.pop("batched")
        return Case({"input": x}, kn)

    return make


def _terms(forward, backward, window_terms):
    """Scales: the op on |x| (the sum of |terms| each output averages) and the gradient of |g|,
    grown for sums longer than 2k (checks.tolerance.sum_growth)."""
    def scale(case: Case, expected: np.ndarray) -> np.ndarray:
        return 0.0 if forward is None else forward(np.abs(case.inputs["input"]), **case.params) * sum_growth(window_terms(case), case.info.name)

    def grad_scale(case: Case, g: np.ndarray) -> dict:
        # routed by x itself: max pooling sends each window's |g| where x's maximum is
        return {"input": backward(np.abs(g), case.inputs["input"], **case.params) * sum_growth(window_terms(case), case.info.name)}

    return scale, grad_scale


def _window_terms(case: Case) -> int:
    """The most terms one window sums: its kernel, or for adaptive pooling at most ceil(L/n) + 1 per side."""
    kernel = case.params.get("kernel_size")
    if kernel is None:
        sizes = case.params["output_size"]
        sizes = sizes if isinstance(sizes, (tuple, list)) else (sizes, sizes)  # a baseline's JSON gives a list
        sides = case.inputs["input"].shape[-2:]
        return int(np.prod([min(side, -(-side // (n or side)) + 1) for side, n in zip(sides, sizes)]))
    return int(np.prod(kernel))


_max_scale, _max_grad_scale = _terms(None, reference.max_pool2d_backward, _window_terms)
_avg_scale, _avg_grad_scale = _terms(reference.avg_pool2d, reference.avg_pool2d_backward, _window_terms)
_adaptive_scale, _adaptive_grad_scale = _terms(reference.adaptive_avg_pool2d, reference.adaptive_avg_pool2d_backward, _window_terms)


def _other_divisor(backward: bool):
    """avg_pool2d with count_include_pad the other way round (the padding counted, or not)."""
    def model(case: Case, g: np.ndarray | None) -> np.ndarray | None:
        p = case.params
        if not any(_pair(p["padding"])) or p.get("divisor_override") is not None:
            return None
        other = {**p, "count_include_pad": not p.get("count_include_pad", True)}
        x = case.inputs["input"]
        return reference.avg_pool2d_backward(g, x, **other) if backward else reference.avg_pool2d(x, **other)

    return model


def _spread_like_average(case: Case, g: np.ndarray | None) -> np.ndarray | None:
    """max_pool2d's gradient spread over each window like average pooling's (padding counted)."""
    p = case.params
    if any(d != 1 for d in _pair(p.get("dilation", 1))):
        return None
    return reference.avg_pool2d_backward(g, case.inputs["input"], p["kernel_size"], p["stride"], p["padding"], p["ceil_mode"], True)


_DIVISOR_LESSON = ("Yours divides the windows that reach into the padding by another count: with count_include_pad=True (torch's "
                   "default) the padded zeros count and every window divides by the kernel's area; with False only the real elements count.")
AVG_MISTAKES = (KnownMistake("count_include_pad", "forward", _other_divisor(False), _DIVISOR_LESSON),
                KnownMistake("count_include_pad", "grad[input]", _other_divisor(True), _DIVISOR_LESSON))
MAX_MISTAKES = (KnownMistake("gradient spread like an average", "grad[input]", _spread_like_average,
                             "Your gradient spreads each window's grad_output evenly, as average pooling would: max pooling's forward "
                             "picks one element, so all of grad_output goes to that maximum (np.argmax over the window) and the rest get 0."),)


SHAPES = st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 7), st.integers(1, 7))
COURSE_SHAPES = st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(2, 7), st.integers(2, 7))

SPECS = (
    OpSpec(
        name="max_pool2d",
        functional=F.max_pool2d,
        module=lambda input, kernel_size, stride, padding, dilation, ceil_mode: nn.MaxPool2d(kernel_size, stride, padding, dilation, ceil_mode=ceil_mode)(input),
        make=_make(summing=False),
        shapes=SHAPES,
        knobs=_window(True),
        course_shapes=COURSE_SHAPES,
        course_knobs=_course_window(True),
        mistakes=MAX_MISTAKES,
        scale=_max_scale,
        grad_scale=_max_grad_scale,
        large_shape=(4, 8, 64, 64),
        lessons={"kink": "torch routes a window's gradient to its first maximum in row-major order (np.argmax over the "
                         "flattened window does the same); with a NaN in the window, to its last NaN.",
                 "nonfinite": "A NaN is the maximum of its window for torch: the forward returns it, and the gradient goes to the "
                              "window's last NaN (np.argmax finds the first); ±inf are ordinary maxima and minima."},
    ),
    OpSpec(
        name="avg_pool2d",
        functional=F.avg_pool2d,
        module=lambda input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override: nn.AvgPool2d(
            kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)(input),
        make=_make(summing=True),
        shapes=SHAPES,
        knobs=_avg_knobs(),
        course_shapes=COURSE_SHAPES,
        course_knobs=_course_window(False, average=True),
        mistakes=AVG_MISTAKES,
        scale=_avg_scale,
        grad_scale=_avg_grad_scale,
        large_shape=(4, 8, 64, 64),
    ),
    OpSpec(
        name="adaptive_avg_pool2d",
        functional=F.adaptive_avg_pool2d,
        module=lambda input, output_size: nn.AdaptiveAvgPool2d(output_size)(input),
        make=_make(summing=True),
        shapes=SHAPES,
        knobs=_adaptive_knobs(),
        course_shapes=COURSE_SHAPES,
        course_knobs=_adaptive_knobs().map(lambda kn: {**kn, "batched": True}),
        scale=_adaptive_scale,
        grad_scale=_adaptive_grad_scale,
        large_shape=(4, 8, 64, 64),
    ),
)
