"""Whole networks by hand: random nn.Sequential stacks against reference.network (see
checks/networks.py for why links are compared in every dtype and the end-to-end chain in float64)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from torch import nn

import reference

from checks import dtypes, networks
from checks.compare import assert_agrees
from checks.spec import FLOAT_DTYPES
from reference.network import count_parameters


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@given(arch=networks.architectures())
def test_every_link_of_the_chain_rule_matches_torch(device, dtype, arch):
    model = networks.build_model(arch, dtypes.get(dtype), device)
    for record in networks.check_links(model, arch, dtype, device):
        assert_agrees(record)


@given(arch=networks.architectures())
def test_hand_network_end_to_end_equals_model_loss_and_every_grad(device, arch):
    if device == "mps":
        pytest.skip("MPS has no float64")
    model = networks.build_model(arch, dtypes.get("float64"), device)
    for record in networks.check_end_to_end(model, arch, device):
        assert_agrees(record)


CNN_EXAMPLES = 200 if settings.get_current_profile_name() == "thorough" else 5  # a CNN costs ~40 ms a draw


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@settings(max_examples=CNN_EXAMPLES)
@given(arch=networks.conv_nets())
def test_every_link_of_a_cnn_matches_torch(device, dtype, arch):
    """conv2d > relu > max_pool2d > flatten > linear > cross-entropy, one link at a time, every .grad included."""
    model = networks.build_conv_net(arch, dtypes.get(dtype), device)
    for record in networks.check_links(model, arch, dtype, device):
        assert_agrees(record)


@settings(max_examples=CNN_EXAMPLES)
@given(arch=networks.conv_nets())
def test_hand_cnn_end_to_end_equals_model_loss_and_every_grad(device, arch):
    if device == "mps":
        pytest.skip("MPS has no float64")
    model = networks.build_conv_net(arch, dtypes.get("float64"), device)
    records = networks.check_end_to_end(model, arch, device)
    assert len(records) == 5  # the loss, conv's weight and bias, linear's weight and bias
    for record in records:
        assert_agrees(record)


def test_a_cnn_whose_pooling_spreads_its_gradient_is_caught(monkeypatch):
    """Meta-test: max pooling's backward taken as average pooling's (every element of the window
    gets g/k²) must fail end to end."""
    from reference import network

    forward, _ = network._LAYERS["max_pool2d"]
    spread = lambda g, x, kernel_size, **kw: reference.avg_pool2d_backward(g, x, kernel_size, kw.get("stride"), kw.get("padding", 0)) * kernel_size**2  # noqa: E731
    monkeypatch.setitem(network._LAYERS, "max_pool2d", (forward, spread))
    arch = networks.ConvNet(2, (6, 6), 3, 3, 1, 1, 2, 3, 2, seed=5)
    records = networks.check_end_to_end(networks.build_conv_net(arch, dtypes.get("float64"), "cpu"), arch, "cpu")
    assert not all(r.passed for r in records)


@given(arch=networks.architectures())
@settings(max_examples=50)
def test_parameter_count_by_hand(arch):
    """sum over layers of fan_in * fan_out + fan_out = sum(p.numel() for p in model.parameters())."""
    model = networks.build_model(arch, dtypes.get("float32"), "cpu")
    assert count_parameters(arch.widths) == sum(p.numel() for p in model.parameters())


def test_parameter_count_rejects_a_single_width():
    with pytest.raises(ValueError, match="sizes"):
        count_parameters([4])


def test_a_forgotten_activation_derivative_is_caught(monkeypatch):
    """Meta-test: a chain rule that skips sigmoid' (passes g through unchanged) must fail."""
    from reference import network

    monkeypatch.setitem(network._LAYERS, "sigmoid", (network._LAYERS["sigmoid"][0], lambda g, x: g))
    arch = networks.Architecture(widths=(3, 4, 2), activations=("sigmoid", None), params=({}, {}), loss="mse_loss", batch=4, seed=1)
    model = networks.build_model(arch, dtypes.get("float64"), "cpu")
    records = networks.check_end_to_end(model, arch, "cpu")
    assert not all(r.passed for r in records)
    assert len(records) == 5  # the loss and four parameter gradients


@pytest.mark.parametrize("fan_in", [1, 3, 64, 1000])
def test_linear_default_initialisation_is_uniform_within_one_over_root_fan_in(fan_in):
    """kaiming_uniform(a = √5) by hand gives U(-1/√fan_in, 1/√fan_in) for weight and bias; torch's
    draws stay inside and, 20,000 of them, come within 0.1% of both ends."""
    bound = reference.layers.linear_init_bound(fan_in)
    assert bound == pytest.approx(1 / np.sqrt(fan_in), rel=1e-15)
    torch.manual_seed(fan_in)
    layer = nn.Linear(fan_in, max(1, 20_000 // fan_in))
    for values in (layer.weight.detach().numpy(), nn.Linear(fan_in, 20_000).bias.detach().numpy()):
        assert values.min() >= -bound and values.max() <= bound
        assert values.min() < -bound * 0.999 and values.max() > bound * 0.999
