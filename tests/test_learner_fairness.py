"""The learner's check is fair to the learner: byhand's own failures are never the learner's, and the
inputs of the course stage are drawn for the arguments the learner's function declares."""
from __future__ import annotations

import dataclasses
import types

import functools
import warnings

import numpy as np
import pytest

import reference
from checks import learner
from checks.learner.stages import Stage, _stage_spec, at_defaults
from checks.registry import REGISTRY, get
from checks.runner import build_case, info_for
from checks.spec import Recipe
from checks.strategies import recipes, search
from hypothesis import settings

STAGE_EXAMPLES = 60 if settings.get_current_profile_name() == "thorough" else 3


def _module(**functions) -> types.ModuleType:
    module = types.ModuleType("mine")
    for name, fn in functions.items():
        setattr(module, name, fn)
    return module


def test_a_case_byhand_cannot_build_is_not_checked_and_names_byhand():
    spec = get("relu")

    def broken(rng, recipe, info):
        raise IndexError("tuple index out of range")

    verdict = learner.check(_module(relu=reference.relu), dataclasses.replace(spec, make=broken), "relu", examples=3)
    assert verdict.status == learner.NOT_CHECKED and verdict.passed
    assert "byhand failed on its own case (a bug in byhand; please report it)" in verdict.explanation
    assert "IndexError: tuple index out of range" in verdict.explanation and "your function" not in verdict.explanation


def test_a_reference_that_raises_is_byhands_failure_not_the_learners():
    spec = get("relu")

    @functools.wraps(reference.relu)  # torch's signature, which the learner's is read against
    def raising(*args, **kwargs):
        raise ValueError("query and key must share their leading dimensions")

    # the registry finds its reference by name in `reference`: stand a raising one in for this check.
    # The reference runs where the learner and torch disagree (an agreement needs no reference):
    # this learner's relu is off by one.
    original = reference.relu
    try:
        reference.relu = raising
        verdict = learner.check(_module(relu=lambda input: original(input) + 1), spec, "relu", examples=3)
    finally:
        reference.relu = original
    assert verdict.status == learner.NOT_CHECKED and "a bug in byhand" in verdict.explanation, verdict.explanation


@pytest.mark.parametrize("name", [spec.name for spec in REGISTRY])
def test_byhand_answers_every_draw_of_every_stage_of_the_learners_check(name):
    """What a disagreement is explained with, byhand's case and its reference's forward and
    backward, never raises on a draw of the learner's check (the course stage and the three edge
    stages; the default profile the first draws of each, the thorough profile 60)."""
    spec = get(name)
    for stage in Stage:
        dtype = "float32" if stage is Stage.COURSE else "float64"

        def answered(recipe, stage=stage, dtype=dtype):
            case = build_case(spec, recipe, info_for(dtype))
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = spec.forward(*case.fresh().inputs.values(), **case.params)
                if spec.differentiable:
                    spec.backward(np.ones_like(np.asarray(out, dtype=np.float64)), *case.fresh().inputs.values(), **case.params)

        search(recipes(_stage_spec(spec, stage)), answered, examples=STAGE_EXAMPLES, name=f"{name} {stage.value} reference")


def test_undeclared_arguments_are_drawn_at_torchs_defaults_before_the_inputs_are():
    """conv2d(input, weight, bias) declares no groups, stride or padding: the recipe asks for
    groups=1, stride=1, padding=0 (and the input's channels follow); sdpa without enable_gqa or
    attn_mask gets neither."""
    recipe = Recipe(0, "normal", (2, 2, 5, 5), {"out_per_group": 2, "groups": 2, "kernel": (2, 3), "stride": 2, "padding": 1, "dilation": 2,
                                                "bias": True, "batched": True})
    knobs = at_defaults(get("conv2d"), recipe, {"input", "weight", "bias"}).knobs
    assert (knobs["groups"], knobs["stride"], knobs["padding"], knobs["dilation"]) == (1, 1, 0, 1) and knobs["kernel"] == (2, 3)
    assert at_defaults(get("conv2d"), recipe, {"input", "weight", "bias", "groups", "stride", "padding", "dilation"}).knobs == recipe.knobs
    sdpa = Recipe(0, "normal", (1, 1, 3, 3, 2), {"ev": 2, "groups": 2, "gqa": True, "mask": "bool", "scale": 0.5, "backend": "default"})
    knobs = at_defaults(get("scaled_dot_product_attention"), sdpa, {"query", "key", "value"}).knobs
    assert (knobs["gqa"], knobs["mask"], knobs["scale"]) == (False, "none", None)


def test_the_course_stage_of_the_second_course_draws_what_a_course_uses():
    """Batched 4-D images with channels for conv and pools, int or pair kernels; attention with
    L, S, E > 1; batch_norm of (N, C) or (N, C, L); embedding lookups that repeat indices."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from checks.learner.stages import Stage, _stage_spec
    from checks.runner import build_case, info_for
    from checks.strategies import recipes

    seen: dict[str, list] = {name: [] for name in ("conv2d", "max_pool2d", "scaled_dot_product_attention", "batch_norm", "embedding")}

    @settings(max_examples=20, database=None, deadline=None)
    @given(data=st.data())
    def draw(data):
        for name in seen:
            spec = get(name)
            case = build_case(spec, data.draw(recipes(_stage_spec(spec, Stage.COURSE))), info_for("float32"))
            seen[name].append(case)

    draw()
    assert all(c.inputs["input"].ndim == 4 and c.inputs["input"].shape[1] >= 1 for c in seen["conv2d"])
    assert all(c.inputs["input"].ndim == 4 for c in seen["max_pool2d"])
    assert any(isinstance(c.params["kernel_size"], int) for c in seen["max_pool2d"])
    assert all(min(c.inputs["query"].shape[-2], c.inputs["key"].shape[-2], c.inputs["query"].shape[-1]) > 1 for c in seen["scaled_dot_product_attention"])
    assert all(c.inputs["input"].ndim in (2, 3) and c.inputs["input"].shape[0] >= 2 for c in seen["batch_norm"])
    assert {c.params["training"] for c in seen["batch_norm"]} == {True, False}
    assert any(len(np.unique(c.inputs["input"])) < c.inputs["input"].size for c in seen["embedding"])


def test_a_module_says_which_functions_it_checks_ignores_and_suspects_misspelled():
    def layernorm(input, normalized_shape):
        return input

    def stable_softmax(x):
        return x

    def relu(input):
        return reference.relu(input)

    module = _module(layernorm=layernorm, stable_softmax=stable_softmax, relu=relu, sigmoid=reference.sigmoid)  # sigmoid: imported, not its own
    for fn in (layernorm, stable_softmax, relu):
        fn.__module__ = module.__name__
    read = learner.names(module)
    assert read.checked == ("relu",) and read.misspelled == {"layernorm": "layer_norm"} and read.helpers == ("stable_softmax",)
    assert "`layernorm` is not an op byhand knows: did you mean `layer_norm`?" in read.lines()
