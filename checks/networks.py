"""Whole small networks: a random nn.Sequential against reference.network, link by link.

A stack of Linear layers and activations is a chain of registry ops, so it is checked as one:
forward hooks capture each layer's input and output in torch, retained gradients capture what flows
back into it, and each link is compared with its reference (forward, ``_backward``, parameter
gradients) under that op's own registry scale and tolerance, on torch's own inputs to the link.
That proves every step of the chain rule in every dtype, without charging torch for the rounding
it was handed by earlier layers.

End to end (the hand network run from x alone against the model's loss and every .grad) is
compared in float64. Two float64 computations of a composition differ by its rounding times its
condition, so each gradient is judged at its natural scale from gradient_magnitudes (a forward and
backward error analysis in magnitudes), with k times the chain length. Measured over 300 random
networks: the scale is a median 149x the gradient itself; a 1e-10 relative error in a parameter
gradient is caught in 95% of gradient tensors, 1e-12 in 64%. The tight proof is the link check.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st
from torch import nn

import reference
from reference import facts, network
from checks import dtypes
from checks.compare import Comparison, Context, compare
from checks.registry import REGISTRY, get
from checks.runner import to_numpy
from checks.spec import Case
from checks.tolerance import k_for

ACTIVATIONS = (*(spec.name for spec in REGISTRY if spec.layer is not None), None)  # the registry's layers, or none
LOSSES = ("cross_entropy", "binary_cross_entropy", "mse_loss", "l1_loss")


@dataclass(frozen=True)
class Architecture:
    widths: tuple[int, ...]  # input width, then each Linear layer's output width
    activations: tuple[str | None, ...]  # after each Linear layer
    params: tuple[dict[str, Any], ...]
    loss: str
    batch: int
    seed: int

    def describe(self) -> str:
        parts = []
        for (a, b), act in zip(zip(self.widths[:-1], self.widths[1:]), self.activations):
            parts.append(f"Linear({a}, {b})" + (f" > {act}" if act else ""))
        return " > ".join(parts) + f" > {self.loss} (batch {self.batch}, seed {self.seed})"


@st.composite
def architectures(draw: st.DrawFn) -> Architecture:
    """Depth 1-4, widths 1-16, any activation after each layer, CE / BCE / MSE / L1 at the end
    (BCE needs probabilities: its last activation is a sigmoid)."""
    depth = draw(st.integers(1, 4), label="depth")
    widths = tuple(draw(st.lists(st.integers(1, 16), min_size=depth + 1, max_size=depth + 1), label="widths"))
    activations = list(draw(st.lists(st.sampled_from(ACTIVATIONS), min_size=depth, max_size=depth), label="activations"))
    loss = draw(st.sampled_from(LOSSES), label="loss")
    if loss == "binary_cross_entropy":
        activations[-1] = "sigmoid"
    params = tuple(_layer_params(act, draw) for act in activations)
    return Architecture(widths, tuple(activations), params, loss, draw(st.integers(1, 8), label="batch"), draw(st.integers(0, 2**31 - 1), label="seed"))


def _layer_params(activation: str | None, draw: st.DrawFn) -> dict[str, Any]:
    if activation is None:
        return {}
    spec = get(activation)
    return draw(spec.layer_knobs if spec.layer_knobs is not None else spec.knobs)


def build_model(arch: Architecture, info: dtypes.DtypeInfo, device: str) -> nn.Sequential:
    """torch's own initialisation under ``torch.manual_seed(arch.seed)``, then cast."""
    torch.manual_seed(arch.seed)
    modules: list[nn.Module] = []
    for (a, b), act, params in zip(zip(arch.widths[:-1], arch.widths[1:]), arch.activations, arch.params):
        modules.append(nn.Linear(a, b))
        if act:
            modules.append(get(act).layer(**params))
    return nn.Sequential(*modules).to(device=device, dtype=info.torch)


def draw_data(arch: Architecture, info: dtypes.DtypeInfo) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets for the loss, rounded to the dtype (targets of CE are class indices)."""
    rng = np.random.default_rng(arch.seed)
    x = dtypes.round_to(rng.normal(0, 2, (arch.batch, arch.widths[0])), info)
    out = arch.widths[-1]
    if arch.loss == "cross_entropy":
        return x, rng.integers(0, out, arch.batch)
    if arch.loss == "binary_cross_entropy":
        return x, dtypes.round_to(rng.integers(0, 2, (arch.batch, out)).astype(float), info)
    return x, dtypes.round_to(rng.normal(0, 1, (arch.batch, out)), info)


def reference_layers(model: nn.Sequential, arch: Architecture) -> list[network.Layer]:
    """The same stack for reference.network, with the model's parameters as float64 arrays."""
    layers: list[network.Layer] = []
    activations = iter(zip(arch.activations, arch.params))
    for module in model:
        if isinstance(module, nn.Linear):
            layers.append(("linear", {"weight": to_numpy(module.weight), "bias": to_numpy(module.bias)}))
        else:
            act, params = next(a for a in activations if a[0])
            layers.append((act, params))
    return layers


@dataclass
class Trace:
    """What torch computed: each module's input and output, and the gradients that reached them."""

    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor]
    loss: torch.Tensor


def run_torch(model: nn.Sequential, x: np.ndarray, target: np.ndarray, arch: Architecture, info: dtypes.DtypeInfo, device: str) -> Trace:
    trace = Trace([], [], torch.empty(()))

    def hook(module: nn.Module, args: tuple[torch.Tensor], output: torch.Tensor) -> None:
        args[0].retain_grad()
        output.retain_grad()
        trace.inputs.append(args[0])
        trace.outputs.append(output)

    handles = [m.register_forward_hook(hook) for m in model]
    try:
        xt = torch.tensor(x, dtype=info.torch, device=device, requires_grad=True)
        tt = torch.tensor(target, device=device, dtype=torch.int64 if arch.loss == "cross_entropy" else info.torch)
        trace.loss = getattr(nn.functional, arch.loss)(model(xt), tt)
        trace.loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    return trace


def check_links(model: nn.Sequential, arch: Architecture, dtype: str, device: str) -> list[Comparison]:
    """Every layer's forward, input gradient and parameter gradients, on torch's own inputs."""
    info = dtypes.get(dtype)
    x, target = draw_data(arch, info)
    trace = run_torch(model, x, target, arch, info, device)
    layers = reference_layers(model, arch)
    records = []
    for i, ((name, params), h_in, h_out) in enumerate(zip(layers, trace.inputs, trace.outputs)):
        spec, h = get(name), to_numpy(h_in)
        inputs = {"input": h, **{k: v for k, v in params.items() if isinstance(v, np.ndarray)}}
        case = Case(inputs, {k: v for k, v in params.items() if not isinstance(v, np.ndarray)}, info)
        context = Context(f"layer {i} ({name})", "forward", "network", device, dtype, h.shape, arch.describe())
        expected = spec.forward(*case.inputs.values(), **case.params)
        records.append(compare(to_numpy(h_out), expected, scale=spec.scale(case, expected), info=info, k=k_for("forward", dtype), context=context))
        g_out = to_numpy(h_out.grad)
        hand = spec.backward(g_out, *case.inputs.values(), **case.params)
        hand = dict(zip(spec.grad_inputs, hand if isinstance(hand, tuple) else (hand,)))
        actual = {"input": h_in.grad, **({"weight": model[i].weight.grad, "bias": model[i].bias.grad} if name == "linear" else {})}
        scales = spec.grad_scale(case, g_out)
        for key, value in hand.items():
            ctx = Context(f"layer {i} ({name})", f"grad[{key}]", "network", device, dtype, value.shape, arch.describe())
            records.append(compare(to_numpy(actual[key]), value, scale=scales[key], info=info, k=k_for("gradient", dtype), context=ctx))
    return records


def forward_magnitudes(layers: list[network.Layer], x: np.ndarray) -> list[np.ndarray]:
    """The size at which each layer's input carries rounding error: |x|, then |W| M + |b| through
    a Linear layer (a sum can cancel to far below its terms), and |f(h)| + L M through an activation
    whose derivative is at most L in size (its ``lipschitz`` fact: 1/4 for sigmoid, 1 for ReLU,
    alpha for ELU); an op that mixes its row (softmax, L = 1/2 in the infinity norm) passes on the
    row's largest M."""
    m, h, sizes = np.abs(x), x, []
    for name, params in layers:
        sizes.append(m)
        out = network._LAYERS[name][0](h, **params)
        if name == "linear":
            m = reference.linear(m, np.abs(params["weight"]), None if params.get("bias") is None else np.abs(params["bias"]))
        else:
            known = facts.of(name)
            spread = np.max(m, axis=params["dim"], keepdims=True) if known.mixes else m
            m = np.abs(out) + known.lipschitz(params) * spread
        h = out
    return sizes + [m]


def _loss_gradient_magnitude(loss: str, out: np.ndarray, size: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The size of dLoss/dout's terms (mean reduction), plus its sensitivity to the error the
    network's output carries (at the scale ``size``)."""
    n = out.shape[0] if loss == "cross_entropy" else out.size
    if loss == "cross_entropy":  # (p - onehot) / N; p moves by at most 2 p max|dz|
        p = reference.softmax(out, -1)
        return (p + reference.one_hot(target, out.shape[-1]) + 2 * p * np.max(size, axis=-1, keepdims=True)) / n
    if loss == "binary_cross_entropy":  # (p - y) / (p (1 - p)) / N, whose p-derivative is <= 2 / (p (1 - p))^2
        q = np.maximum(out * (1 - out), 1e-12)
        return ((np.abs(out) + np.abs(target)) / q + 2 * size / q**2) / n
    if loss == "mse_loss":
        return 2 * (np.abs(out) + np.abs(target) + size) / n
    return np.full(out.shape, 1.0 / n)  # l1: sign / N


def gradient_magnitudes(layers: list[network.Layer], x: np.ndarray, loss: str, target: np.ndarray, info: dtypes.DtypeInfo) -> list[dict[str, np.ndarray]]:
    """The natural scale of every parameter gradient: the chain rule run in magnitudes. Forward
    values enter at their forward magnitudes (see forward_magnitudes), weights as |W|, local
    derivatives in absolute value (softmax's Jacobian as |p_i (delta_ij - p_j)|), and each link is at
    least that op's own registry gradient scale: sigmoid's is |g|, not |g| s (1 - s), because 1 - s
    is only accurate to eps absolutely."""
    out, tape = network.forward(layers, x)
    sizes_fwd = forward_magnitudes(layers, x)
    g = _loss_gradient_magnitude(loss, out, sizes_fwd[-1], target)
    sizes: list[dict[str, np.ndarray]] = []
    for (name, params), h, m in zip(reversed(layers), reversed(tape.inputs), reversed(sizes_fwd[:-1])):
        arrays = {k: np.abs(v) for k, v in params.items() if isinstance(v, np.ndarray)}
        case = Case({"input": h, **arrays}, {k: v for k, v in params.items() if not isinstance(v, np.ndarray)}, info)
        own = get(name).grad_scale(case, g)
        if name == "linear":
            g, gw, gb = reference.linear_backward(g, m, arrays["weight"], arrays.get("bias"))
            sizes.append({"weight": np.maximum(gw, own["weight"])} | ({} if gb is None else {"bias": np.maximum(gb, own["bias"])}))
            continue
        if facts.of(name).mixes:  # softmax: |p_i (delta_ij - p_j)| summed against g
            p = reference.softmax(h, params["dim"])
            chain = p * (g + np.sum(g * p, axis=params["dim"], keepdims=True))
        else:  # elementwise: |f'(h)| g
            chain = np.abs(network._LAYERS[name][1](g, h, **params))
        g = np.maximum(chain, own["input"])
        sizes.append({})
    return sizes[::-1]


def check_end_to_end(model: nn.Sequential, arch: Architecture, device: str) -> list[Comparison]:
    """float64 only: the hand network from x alone against the model's loss and every .grad, with
    k multiplied by the number of ops in the chain (each may add its own k ULPs)."""
    info = dtypes.get("float64")
    x, target = draw_data(arch, info)
    trace = run_torch(model, x, target, arch, info, device)
    layers = reference_layers(model, arch)
    loss, grads = network.loss_and_gradients(layers, x, target, arch.loss)
    sizes = gradient_magnitudes(layers, x, arch.loss, target, info)
    chain = len(layers) + 1
    k_fwd, k_grad = k_for("forward", "float64") * chain, k_for("gradient", "float64") * chain
    records = [compare(to_numpy(trace.loss), loss, scale=1.0, info=info, k=k_fwd, context=Context("network loss", "forward", "end-to-end", device, "float64", (), arch.describe()))]
    for i, (module, layer_grads, layer_sizes) in enumerate(zip(model, grads, sizes)):
        for key, expected in layer_grads.items():
            actual = to_numpy(getattr(module, key).grad)
            ctx = Context(f"layer {i} {key}.grad", "gradient", "end-to-end", device, "float64", expected.shape, arch.describe())
            records.append(compare(actual, expected, scale=layer_sizes[key], info=info, k=k_grad, context=ctx))
    return records
