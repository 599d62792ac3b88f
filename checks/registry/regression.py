"""Registry entries for the regression losses."""
from __future__ import annotations

import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

from checks.spec import Case, OpSpec
from checks.strategies import knobs, reductions, shapes, unit_floats
from checks.values import reals, special_reals


def _make(rng, recipe, info) -> Case:
    specials = special_reals(info, huge=False)
    x = reals(rng, recipe.shape, recipe.regime, info, specials=specials)
    if rng.random() < 0.5:
        y = reals(rng, recipe.shape, recipe.regime, info, specials=specials)
    else:  # targets near the inputs, so |x - y| crosses delta, beta and exactly 0
        y = x + reals(rng, recipe.shape, "normal", info) * rng.choice([0.0, 0.1, 1.0], recipe.shape)
    params = dict(recipe.knobs)
    if params.pop("weighted", False):  # sample weights: non-negative, zeros included
        params["weight"] = rng.uniform(0.0, 2.0, recipe.shape) * (rng.random(recipe.shape) < 0.9)
    return Case({"input": x, "target": y}, params)


def _module(module: type[nn.Module]):
    """nn.<module>(...)(input, target); the modules take no weight, so a weighted case has no module path."""
    def call(input, target, weight=None, **kw):
        return None if weight is not None else module(**kw)(input, target)

    return call


def _exact_gradient(case: Case, g) -> dict:
    return {"input": 0.0}


def _loss(name: str, module: type[nn.Module], **extra_knobs) -> OpSpec:
    """A regression loss: F.<name>(input, target, reduction, **extra) against nn.<module>(...)."""
    return OpSpec(
        name=name,
        functional=getattr(F, name),
        module=_module(module),
        make=_make,
        shapes=shapes(),
        knobs=knobs(reduction=reductions(), **extra_knobs),
        # Each term is computed from one difference d = x - y: relative accuracy, no cancellation.
        grad_scale=_exact_gradient,
    )


SPECS = (
    _loss("mse_loss", nn.MSELoss, weighted=st.booleans()),
    _loss("l1_loss", nn.L1Loss, weighted=st.booleans()),
    _loss("huber_loss", nn.HuberLoss, delta=unit_floats(0.01, 5.0, 1.0), weighted=st.booleans()),
    _loss("smooth_l1_loss", nn.SmoothL1Loss, beta=unit_floats(0.01, 5.0, 1.0, 0.0)),
)
