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

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.widths[0])

    @property
    def outputs(self) -> int:
        return self.widths[-1]


@dataclass(frozen=True)
class ConvNet:
    """The course's CNN: conv2d > relu > max_pool2d > flatten > linear > cross-entropy."""

    channels: int
    size: tuple[int, int]  # the input's H and W
    out_channels: int
    kernel: int
    stride: int
    padding: int
    pool: int
    classes: int
    batch: int
    seed: int
    loss: str = "cross_entropy"
    activations: tuple[str | None, ...] = ("relu",)
    params: tuple[dict[str, Any], ...] = ({},)

    def describe(self) -> str:
        return (f"Conv2d({self.channels}, {self.out_channels}, {self.kernel}, stride {self.stride}, padding {self.padding}) > relu > "
                f"MaxPool2d({self.pool}) > Flatten > Linear(·, {self.classes}) > cross_entropy on {self.size} images (batch {self.batch}, seed {self.seed})")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.channels, *self.size)

    @property
    def outputs(self) -> int:
        return self.classes

    def features(self) -> int:
        side = [(n + 2 * self.padding - self.kernel) // self.stride + 1 for n in self.size]
        return self.out_channels * int(np.prod([s // self.pool for s in side]))


@st.composite
def conv_nets(draw: st.DrawFn) -> ConvNet:
    """Small images (4-9 a side or what the layers need, 1-3 channels), a 1-3 kernel, pooled by 1-2, into 2-5 classes."""
    kernel, stride, padding, pool = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(0, 1)), draw(st.integers(1, 2))
    smallest = max(4, stride * (pool - 1) + kernel - 2 * padding)  # the convolution leaves at least one pooling window
    size = (draw(st.integers(smallest, smallest + 5)), draw(st.integers(smallest, smallest + 5)))
    return ConvNet(draw(st.integers(1, 3)), size, draw(st.integers(1, 4)), kernel, stride, padding, pool, draw(st.integers(2, 5)),
                   draw(st.integers(1, 4)), draw(st.integers(0, 2**31 - 1)))


def build_conv_net(arch: ConvNet, info: dtypes.DtypeInfo, device: str) -> nn.Sequential:
    """torch's own initialisation under ``torch.manual_seed(arch.seed)``, then cast."""
    torch.manual_seed(arch.seed)
    model = nn.Sequential(nn.Conv2d(arch.channels, arch.out_channels, arch.kernel, arch.stride, arch.padding), nn.ReLU(),
                          nn.MaxPool2d(arch.pool), nn.Flatten(), nn.Linear(arch.features(), arch.classes))
    return model.to(device=device, dtype=info.torch)


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
    x = dtypes.round_to(rng.normal(0, 2, arch.input_shape), info)
    out = arch.outputs
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
        elif isinstance(module, nn.Conv2d):
            layers.append(("conv2d", {"weight": to_numpy(module.weight), "bias": to_numpy(module.bias), "stride": module.stride,
                                      "padding": module.padding, "dilation": module.dilation, "groups": module.groups}))
        elif isinstance(module, nn.MaxPool2d):
            layers.append(("max_pool2d", {"kernel_size": module.kernel_size, "stride": module.stride, "padding": module.padding,
                                          "dilation": module.dilation, "ceil_mode": module.ceil_mode}))
        elif isinstance(module, nn.Flatten):
            layers.append(("flatten", {"start_dim": module.start_dim, "end_dim": module.end_dim}))
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
        spec, h = _spec(name), to_numpy(h_in)
        inputs = {"input": h, **{k: v for k, v in params.items() if isinstance(v, np.ndarray)}}
        case = Case(inputs, {k: v for k, v in params.items() if not isinstance(v, np.ndarray)}, info)
        context = Context(f"layer {i} ({name})", "forward", "network", device, dtype, h.shape, arch.describe())
        expected = spec.forward(*case.inputs.values(), **case.params)
        records.append(compare(to_numpy(h_out), expected, scale=spec.scale(case, expected), info=info, k=k_for("forward", dtype), context=context))
        g_out = to_numpy(h_out.grad)
        hand = spec.backward(g_out, *case.inputs.values(), **case.params)
        hand = {k: v for k, v in zip(spec.grad_inputs, hand if isinstance(hand, tuple) else (hand,)) if v is not None}
        actual = {"input": h_in.grad, **{k: getattr(model[i], k).grad for k in network.parameter_names(name, params)}}
        scales = spec.grad_scale(case, g_out)
        for key, value in hand.items():
            ctx = Context(f"layer {i} ({name})", f"grad[{key}]", "network", device, dtype, value.shape, arch.describe())
            records.append(compare(to_numpy(actual[key]), value, scale=scales[key], info=info, k=k_for("gradient", dtype), context=ctx))
    return records


@dataclass(frozen=True)
class _Reshape:
    """nn.Flatten as a link: not a registry op, an exact reshape (scale 0: equal to the last bit)."""

    name: str = "flatten"
    grad_inputs: tuple[str, ...] = ("input",)
    forward = staticmethod(network.flatten)
    backward = staticmethod(network.flatten_backward)

    @staticmethod
    def scale(case: Case, expected: np.ndarray) -> float:
        return 0.0

    @staticmethod
    def grad_scale(case: Case, g: np.ndarray) -> dict:
        return {"input": 0.0}


def _spec(name: str):
    return _Reshape() if name == "flatten" else get(name)


def _activation_facts(name: str) -> facts.Facts | None:
    """An activation's facts (its lipschitz bound, whether it mixes a row); None for a layer that is not one."""
    known = None if name == "flatten" else facts.of(name)
    return known if known is not None and known.lipschitz is not None else None


def forward_magnitudes(layers: list[network.Layer], x: np.ndarray) -> list[np.ndarray]:
    """The size at which each layer's input carries rounding error: |x|, then |W| M + |b| through
    a Linear layer (a sum can cancel to far below its terms), and |f(h)| + L M through an activation
    whose derivative is at most L in size (its ``lipschitz`` fact: 1/4 for sigmoid, 1 for ReLU,
    alpha for ELU); an op that mixes its row (softmax, L = 1/2 in the infinity norm) passes on the
    row's largest M."""
    m, h, sizes = np.abs(x), x, []
    for name, params in layers:
        sizes.append(m)
        forward = network._LAYERS[name][0]
        out = forward(h, **params)
        known = _activation_facts(name)
        if known is not None:  # an activation
            spread = np.max(m, axis=params["dim"], keepdims=True) if known.mixes else m
            m = np.abs(out) + known.lipschitz(params) * spread
        else:  # Linear or a convolution (|W| m + |b|), or a selection (max pooling, flatten: m itself, moved)
            m = forward(m, **{k: np.abs(v) if isinstance(v, np.ndarray) else v for k, v in params.items()})
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
        own = _spec(name).grad_scale(case, g)
        if arrays:  # Linear, a convolution: the backward of |W| against the forward magnitudes
            result = network._LAYERS[name][1](g, m, **{k: arrays.get(k, v) for k, v in params.items()})
            g = np.maximum(result[0], own["input"])
            sizes.append({k: np.maximum(v, own[k]) for k, v in zip(network.parameter_names(name, params), (r for r in result[1:] if r is not None))})
            continue
        known = _activation_facts(name)
        if known is None:  # max pooling, flatten: g routed where the values went
            g = np.maximum(np.abs(network._LAYERS[name][1](g, h, **params)), own["input"])
            sizes.append({})
            continue
        if known.mixes:  # softmax: |p_i (delta_ij - p_j)| summed against g
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
