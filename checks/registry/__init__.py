"""The op registry: one :class:`~checks.spec.OpSpec` per op, in the order reports list them.

Adding an op is adding its reference functions under reference/ and one entry in the module of its
family here; tests, ``byhand verify`` and reports pick it up from :data:`REGISTRY`.
"""
from __future__ import annotations

import inspect

import numpy as np

import reference
from reference import facts
from checks.registry import activations, attention, binary, classification, convolution, divergence, embedding, layers, normalization, pooling, regression, smooth, softmaxes
from checks.spec import OpSpec

SITUATIONS = ("overflow", "tiny", "kink", "endpoints", "empty", "scalar", "nonfinite", "unbatched", "probabilities", "optional", "raised", "masked")


def validate(spec: OpSpec) -> OpSpec:
    """An entry, checked once when the registry is built: its reference functions exist under its
    name, the backward takes grad_output and then the forward's arguments (``inplace`` excepted: the
    gradient does not depend on where the output was written), its gradient inputs are
    forward arguments, its large shape is large, and its lessons name known situations."""
    forward = getattr(reference, spec.name, None)
    if forward is None:
        raise ValueError(f"registry entry {spec.name!r}: no reference.{spec.name} (write it under reference/ and export it)")
    arguments = list(inspect.signature(forward).parameters)
    if spec.backward is not None:
        backward = list(inspect.signature(spec.backward).parameters)
        if backward != ["grad_output", *(a for a in arguments if a != "inplace")]:
            raise ValueError(f"registry entry {spec.name!r}: {spec.name}_backward takes {backward}, not grad_output then {arguments}")
    if spec.differentiable and not set(spec.grad_inputs) <= set(arguments):
        raise ValueError(f"registry entry {spec.name!r}: grad_inputs {spec.grad_inputs} are not all arguments of reference.{spec.name}")
    if int(np.prod(spec.large_shape)) <= 100_000:
        raise ValueError(f"registry entry {spec.name!r}: large_shape {spec.large_shape} has <= 100k elements")
    try:
        math = facts.of(spec.name)
    except ValueError as error:
        raise ValueError(f"registry entry {spec.name!r}: {error}") from None
    if math.derivation is None:
        raise ValueError(f"registry entry {spec.name!r}: reference.{spec.name} has no sympy derivation (add one with @facts.derivation)")
    if (spec.layer is None) != (math.lipschitz is None):
        raise ValueError(f"registry entry {spec.name!r}: a network layer needs both an nn.Module (layer=) and reference facts' lipschitz bound")
    if not set(spec.lessons) <= set(SITUATIONS):
        raise ValueError(f"registry entry {spec.name!r}: lessons for unknown situations {sorted(set(spec.lessons) - set(SITUATIONS))}")
    return spec


REGISTRY: tuple[OpSpec, ...] = tuple(map(validate, (
    *activations.SPECS,
    *smooth.SPECS,
    *softmaxes.SPECS,
    *layers.SPECS,
    *classification.SPECS,
    *binary.SPECS,
    *regression.SPECS,
    *divergence.SPECS,
    *normalization.SPECS,
    *embedding.SPECS,
    *convolution.SPECS,
    *pooling.SPECS,
    *attention.SPECS,
)))
BY_NAME: dict[str, OpSpec] = {spec.name: spec for spec in REGISTRY}
if len(BY_NAME) != len(REGISTRY):
    raise ValueError("two registry entries share a name")


def get(name: str) -> OpSpec:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}; the registry has {', '.join(BY_NAME)}") from None
