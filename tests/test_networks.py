"""Whole networks by hand: random nn.Sequential stacks against reference.network (see
checks/networks.py for why links are compared in every dtype and the end-to-end chain in float64)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
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


NETWORK_EXAMPLES = 200 if settings.get_current_profile_name() == "thorough" else 5  # a CNN or a transformer block: 25-40 ms a draw


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@settings(max_examples=NETWORK_EXAMPLES)
@given(arch=networks.conv_nets())
def test_every_link_of_a_cnn_matches_torch(device, dtype, arch):
    """conv2d > relu > max_pool2d > flatten > linear > cross-entropy, one link at a time, every .grad included."""
    model = networks.build_conv_net(arch, dtypes.get(dtype), device)
    for record in networks.check_links(model, arch, dtype, device):
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




@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@settings(max_examples=NETWORK_EXAMPLES)
@given(arch=networks.transformer_blocks())
def test_every_link_of_a_transformer_block_matches_torch(device, dtype, arch):
    """nn.TransformerEncoderLayer(norm_first=True): layer_norm > nn.MultiheadAttention > + x > layer_norm >
    Linear > GELU > Linear > + x1, one link at a time, every .grad included; the attention also step by
    step through F.linear, the heads split, F.scaled_dot_product_attention, the heads merged, F.linear."""
    block = networks.build_transformer(arch, dtypes.get(dtype), device)
    records = networks.check_transformer_links(block, arch, dtype, device)
    assert len(records) == 42  # 6 modules' forwards and 18 gradients, 2 sums; 3 ops' forwards and 9 gradients, 4 reshapes
    for record in records:
        assert_agrees(record)


# Each network: its architectures, how torch builds it, and its end-to-end comparisons: the loss, x.grad
# and each parameter's (the CNN's conv and linear weight and bias; the transformer's 2 layer norms, the
# attention's 4 and the MLP's 4).
END_TO_END = {"cnn": (networks.conv_nets(), networks.build_conv_net, 6), "transformer": (networks.transformer_blocks(), networks.build_transformer, 14)}


@pytest.mark.parametrize("name", END_TO_END)
@settings(max_examples=NETWORK_EXAMPLES)
@given(data=st.data())
def test_hand_cnn_and_transformer_end_to_end_equal_model_loss_and_every_grad(device, name, data):
    if device == "mps":
        pytest.skip("MPS has no float64")
    strategy, build, comparisons = END_TO_END[name]
    arch = data.draw(strategy, label="arch")
    records = networks.check_end_to_end(build(arch, dtypes.get("float64"), device), arch, device)
    assert len(records) == comparisons
    for record in records:
        assert_agrees(record)


def _interleaved_heads(x, num_heads):
    """A plausible mistake: head h takes features h, h + H, h + 2H, ... instead of a contiguous block."""
    a = np.asarray(x, dtype=float)
    return np.swapaxes(a.reshape(a.shape[:-1] + (a.shape[-1] // num_heads, num_heads)), -1, -2).swapaxes(-2, -3)


@pytest.mark.parametrize("mistake", ["heads interleaved", "skip gradient dropped", "mask inverted"])
def test_a_transformer_block_with_a_plausible_mistake_is_caught(monkeypatch, mistake):
    """Meta-test: each mistake must fail end to end, and the attention's mistakes in the float32 links
    too. A residual's rule is the hand network's, which only the end-to-end check runs; the first
    residual's skip reaches no parameter, only x.grad."""
    from reference import attention, network

    arch = networks.TransformerBlock(heads=2, head_dim=3, hidden=4, length=4, batch=2, causal=True, approximate="none", seed=3)
    if mistake == "heads interleaved":
        monkeypatch.setattr(attention, "split_heads", _interleaved_heads)
        monkeypatch.setattr(attention, "merge_heads", lambda x: np.swapaxes(np.swapaxes(np.asarray(x), -2, -3), -1, -2).reshape(np.shape(x)[:-3] + (np.shape(x)[-2], -1)))
    elif mistake == "mask inverted":
        keep = attention._SelfAttention._mask  # sdpa's convention (True keeps) taken for nn.MultiheadAttention's (True forbids)
        monkeypatch.setattr(attention._SelfAttention, "_mask", lambda self, mask, x: ~keep(self, mask, x))
    else:
        backward = network.backward

        def no_skip(layers, tape, grad_output):  # the attention's residual: its stack returns x̄ less the ȳ its sum will add
            g, grads = backward(layers, tape, grad_output)
            return (g - grad_output if layers and layers[-1][0] == "multi_head_attention" else g), grads

        monkeypatch.setattr(network, "backward", no_skip)
    for dtype in ("float64",) if mistake == "skip gradient dropped" else ("float64", "float32"):
        block = networks.build_transformer(arch, dtypes.get(dtype), "cpu")
        records = networks.check_end_to_end(block, arch, "cpu") if dtype == "float64" else networks.check_transformer_links(block, arch, dtype, "cpu")
        assert not all(r.passed for r in records), f"{mistake} passed in {dtype}"


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
    assert len(records) == 6  # the loss, x.grad and four parameter gradients


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
