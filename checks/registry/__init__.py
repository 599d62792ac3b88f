"""The op registry: one :class:`~checks.spec.OpSpec` per op, in the order reports list them.

Adding an op is adding its reference functions under reference/ and one entry in the module of its
family here; tests, ``byhand verify`` and reports pick it up from :data:`REGISTRY`.
"""
from __future__ import annotations

from checks.registry import activations, binary, classification, layers, regression, softmaxes
from checks.spec import OpSpec

REGISTRY: tuple[OpSpec, ...] = (
    *activations.SPECS,
    *softmaxes.SPECS,
    *layers.SPECS,
    *classification.SPECS,
    *binary.SPECS,
    *regression.SPECS,
)
BY_NAME: dict[str, OpSpec] = {spec.name: spec for spec in REGISTRY}


def get(name: str) -> OpSpec:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}; the registry has {', '.join(BY_NAME)}") from None
