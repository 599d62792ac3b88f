"""Registry entries for the regression losses."""
from __future__ import annotations

import torch.nn.functional as F
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
    return Case({"input": x, "target": y}, dict(recipe.knobs))


def _exact_gradient(case: Case, g) -> dict:
    return {"input": 0.0}


SPECS = (
    OpSpec(
        name="mse_loss",
        functional=F.mse_loss,
        module=lambda input, target, reduction: nn.MSELoss(reduction=reduction)(input, target),
        make=_make,
        shapes=shapes(),
        knobs=knobs(reduction=reductions()),
        grad_scale=_exact_gradient,
    ),
    OpSpec(
        name="l1_loss",
        functional=F.l1_loss,
        module=lambda input, target, reduction: nn.L1Loss(reduction=reduction)(input, target),
        make=_make,
        shapes=shapes(),
        knobs=knobs(reduction=reductions()),
        grad_scale=_exact_gradient,
    ),
    OpSpec(
        name="huber_loss",
        functional=F.huber_loss,
        module=lambda input, target, reduction, delta: nn.HuberLoss(reduction=reduction, delta=delta)(input, target),
        make=_make,
        shapes=shapes(),
        knobs=knobs(reduction=reductions(), delta=unit_floats(0.01, 5.0, 1.0)),
        grad_scale=_exact_gradient,
    ),
    OpSpec(
        name="smooth_l1_loss",
        functional=F.smooth_l1_loss,
        module=lambda input, target, reduction, beta: nn.SmoothL1Loss(reduction=reduction, beta=beta)(input, target),
        make=_make,
        shapes=shapes(),
        knobs=knobs(reduction=reductions(), beta=unit_floats(0.01, 5.0, 1.0, 0.0)),
        grad_scale=_exact_gradient,
    ),
)
