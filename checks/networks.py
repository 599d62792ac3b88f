"""Whole small networks (an MLP, a CNN, a transformer block) against reference.network, link by link.

A stack of Linear layers and activations is a chain of registry ops, so it is checked as one:
forward hooks capture each layer's input and output in torch, retained gradients capture what flows
back into it, and each link is compared with its reference (forward, ``_backward``, parameter
gradients) under that op's own registry scale and tolerance, on torch's own inputs to the link.
That proves every step of the chain rule in every dtype, without charging torch for the rounding
it was handed by earlier layers.

The transformer block (nn.TransformerEncoderLayer, pre-norm) is checked the same way: each module
is a link, nn.MultiheadAttention one link judged at the magnitudes its three ops' roundings reach
(checks/magnitudes.py) and again step by step through F.linear and F.scaled_dot_product_attention
under their own registry tolerances; a value that also feeds a residual's identity path is checked
with both paths' gradients summed.

End to end (the hand network run from x alone against the model's loss and every .grad) is
compared in float64. Two float64 computations of a composition differ by their roundings carried
through the chain, so each gradient is judged at the error checks.magnitudes.gradients bounds it by
(a first-order forward and backward error analysis, values and errors kept apart), with k times the
chain length. Measured on random networks (float64, every parameter gradient): the scale is a median
68x the gradient for MLPs (1,001 gradients) and 67x for CNNs; for the transformer block 128x to
4,800x (the in-projection's, whose gradient sums three cancelling paths). A gradient replaced by 0 is
caught in every case; a 1e-10 relative error in 97-100% of gradients; 1e-12 in 86% (MLP), 76% (CNN),
12-65% (transformer). The tight proof is the link check.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st
from torch import nn

import reference
from reference import network
from checks import dtypes, magnitudes
from checks.compare import Comparison, Context, compare
from checks.registry import REGISTRY, get
from checks.runner import to_numpy
from checks.spec import Case, per_case
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

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.batch, self.outputs)


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

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.batch, self.classes)

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


def draw_data(arch: Architecture | ConvNet | TransformerBlock, info: dtypes.DtypeInfo) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets for the loss, rounded to the dtype (targets of CE are class indices)."""
    rng = np.random.default_rng(arch.seed)
    x = dtypes.round_to(rng.normal(0, 2, arch.input_shape), info)
    if arch.loss == "cross_entropy":
        return x, rng.integers(0, arch.output_shape[-1], arch.batch)
    if arch.loss == "binary_cross_entropy":
        return x, dtypes.round_to(rng.integers(0, 2, arch.output_shape).astype(float), info)
    return x, dtypes.round_to(rng.normal(0, 1, arch.output_shape), info)


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
    records = []
    for i, ((name, params), h_in, h_out) in enumerate(zip(reference_layers(model, arch), trace.inputs, trace.outputs)):
        actual = {"input": to_numpy(h_in.grad), **{k: to_numpy(getattr(model[i], k).grad) for k in network.parameter_names(name, params)}}
        records += check_link(f"layer {i} ({name})", name, params, h_in, h_out, actual, info, device, arch.describe())
    return records


def check_link(label: str, name: str, params: dict[str, Any], h_in: torch.Tensor, h_out: torch.Tensor, actual: dict[str, np.ndarray],
               info: dtypes.DtypeInfo, device: str, where: str, skip: torch.Tensor | None = None, k_times: int = 1) -> list[Comparison]:
    """One link: torch's output against the reference on torch's input, and each gradient in
    ``actual`` against the hand backward of the gradient torch sent back into the link. ``skip``: the
    input also feeds a residual's identity path, so its gradient is that path's plus the link's."""
    return _check_case(label, link_spec(name), magnitudes.link_case(name, to_numpy(h_in), params, info), h_out, actual, device, where, skip, k_times)


def _check_case(label: str, spec: Any, case: Case, h_out: torch.Tensor, actual: dict[str, np.ndarray], device: str, where: str,
                skip: torch.Tensor | None = None, k_times: int = 1) -> list[Comparison]:
    info = case.info
    context = lambda kind, shape: Context(label, kind, "network", device, info.name, shape, where)  # noqa: E731
    expected = spec.forward(*case.inputs.values(), **case.params)
    records = [compare(to_numpy(h_out), expected, scale=spec.scale(case, expected), info=info, k=k_for("forward", info.name) * k_times,
                       context=context("forward", expected.shape))]
    g_out = to_numpy(h_out.grad)
    hand = spec.backward(g_out, *case.inputs.values(), **case.params)
    hand = {k: v for k, v in zip(spec.grad_inputs, hand if isinstance(hand, tuple) else (hand,)) if v is not None}
    scales = spec.grad_scale(case, g_out)
    if skip is not None:  # the identity path adds its gradient exactly: the sum is rounded once
        hand["input"] = hand["input"] + to_numpy(skip.grad)
        scales = {**scales, "input": scales["input"] + np.abs(to_numpy(skip.grad))}
    for key, value in hand.items():
        records.append(compare(actual[key], value, scale=scales[key], info=info, k=k_for("gradient", info.name) * k_times,
                               context=context(f"grad[{key}]", value.shape)))
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


ATTENTION_PARAMETERS = ("in_proj_weight", "in_proj_bias", "out_proj_weight", "out_proj_bias")  # reference.attention's order


class _SelfAttentionLink:
    """nn.MultiheadAttention as one link: three ops (in-projection, sdpa, out-projection), judged at
    the error their own roundings reach the output with (checks/magnitudes.py), at k times 3."""

    name = "multi_head_attention"
    grad_inputs = ("input", *ATTENTION_PARAMETERS)
    forward = staticmethod(reference.attention.multi_head_attention)
    backward = staticmethod(reference.attention.multi_head_attention_backward)

    @staticmethod
    @per_case  # scale and grad_scale both need it
    def _forward(case: Case):
        """The link's input and gradient are torch's own, the reference's too: their error is 0."""
        h, params = case.inputs["input"], {k: v for k, v in {**case.inputs, **case.params}.items() if k != "input"}
        return h, params, magnitudes._attention_forward(h, np.zeros(h.shape), params, case.info)

    @classmethod
    def scale(cls, case: Case, expected: np.ndarray) -> np.ndarray:
        return cls._forward(case)[2][1]

    @classmethod
    def grad_scale(cls, case: Case, g: np.ndarray) -> dict:
        h, params, (_, _, memo) = cls._forward(case)
        _, error, found = magnitudes._attention_backward(g, np.zeros(np.shape(g)), h, np.zeros(h.shape), params, memo, case.info)
        return {"input": error, **{k: err for k, (_, err) in found.items()}}


_LINKS = {"flatten": _Reshape(), "multi_head_attention": _SelfAttentionLink()}


def link_spec(name: str):
    """The registry op a layer is, or the link that stands for a layer no registry op is."""
    return _LINKS[name] if name in _LINKS else get(name)


def check_end_to_end(model: nn.Module, arch: Architecture | ConvNet | TransformerBlock, device: str) -> list[Comparison]:
    """float64 only: the hand network from x alone against the model's loss and every .grad (x's
    included: only it sees a residual's skip path around the first layer), with k multiplied by the
    number of ops in the chain (each may add its own k ULPs)."""
    info = dtypes.get("float64")
    x, target = draw_data(arch, info)
    if isinstance(arch, TransformerBlock):
        seen = run_transformer(model, x, target, arch, info, device)
        loss_value, x_grad = seen["loss"], seen["norm1"][0].grad
        layers, modules = transformer_layers(model, arch), [[model.norm1, model.self_attn], [model.norm2, model.linear1, model.activation, model.linear2]]
    else:
        trace = run_torch(model, x, target, arch, info, device)
        loss_value, x_grad = trace.loss, trace.inputs[0].grad
        layers, modules = reference_layers(model, arch), list(model)
    loss, grad_x, grads = network.loss_and_all_gradients(layers, x, target, arch.loss)
    chain = _count_links(layers) + 1
    k_fwd, k_grad = k_for("forward", "float64") * chain, k_for("gradient", "float64") * chain
    x_error, errors = magnitudes.gradients(layers, x, arch.loss, target, info)
    records = [compare(to_numpy(loss_value), loss, scale=1.0, info=info, k=k_fwd, context=Context("network loss", "forward", "end-to-end", device, "float64", (), arch.describe())),
               compare(to_numpy(x_grad), grad_x, scale=x_error, info=info, k=k_grad, context=Context("x.grad", "gradient", "end-to-end", device, "float64", grad_x.shape, arch.describe()))]
    for label, actual, expected, size in _parameter_gradients(modules, grads, errors):
        ctx = Context(f"{label}.grad", "gradient", "end-to-end", device, "float64", expected.shape, arch.describe())
        records.append(compare(to_numpy(actual), expected, scale=size, info=info, k=k_grad, context=ctx))
    return records


def torch_parameter(module: nn.Module, name: str) -> nn.Parameter:
    """The module's parameter a reference argument names: nn.MultiheadAttention keeps out_proj_weight
    as out_proj.weight."""
    return module.get_parameter(name.replace("out_proj_", "out_proj."))


def _count_links(layers: list[network.Layer]) -> int:
    """Ops in the chain: a residual counts its stack and its sum; multi-head attention its three ops."""
    return sum(_count_links(p["layers"]) + 1 if n == "residual" else 3 if n == "multi_head_attention" else 1 for n, p in layers)


def _parameter_gradients(modules: list, grads: list[dict[str, Any]], sizes: list[dict[str, Any]], prefix: str = "layer "):
    """(label, torch's .grad, the hand gradient, its magnitude) for every parameter, residual stacks walked in."""
    for i, (module, layer_grads, layer_sizes) in enumerate(zip(modules, grads, sizes)):
        if "layers" in layer_grads:
            yield from _parameter_gradients(module, layer_grads["layers"], layer_sizes["layers"], f"{prefix}{i}.")
            continue
        for key, expected in layer_grads.items():
            yield f"{prefix}{i} {key}", torch_parameter(module, key).grad, expected, layer_sizes[key]


# -- the transformer block ----------------------------------------------------------------------------

@dataclass(frozen=True)
class TransformerBlock:
    """A pre-norm transformer block, nn.TransformerEncoderLayer(norm_first=True, dropout=0, GELU):
    x1 = x + MHA(LN1(x)), y = x1 + W2 GELU(W1 LN2(x1) + b1) + b2, then MSE against a target."""

    heads: int
    head_dim: int
    hidden: int
    length: int
    batch: int
    causal: bool
    approximate: str
    seed: int
    loss: str = "mse_loss"

    @property
    def embed(self) -> int:
        return self.heads * self.head_dim

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.length, self.embed)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.input_shape

    def describe(self) -> str:
        return (f"x + MultiheadAttention({self.embed}, {self.heads} heads{', causal' if self.causal else ''})(LayerNorm(x)) > "
                f"+ Linear({self.embed}, {self.hidden}) > GELU({self.approximate!r}) > Linear({self.hidden}, {self.embed}) of LayerNorm > "
                f"mse_loss on {self.length} tokens (batch {self.batch}, seed {self.seed})")

    def mask(self) -> np.ndarray | None:
        """nn.MultiheadAttention's causal mask: True forbids a later position."""
        return np.triu(np.ones((self.length, self.length), dtype=bool), 1) if self.causal else None


@st.composite
def transformer_blocks(draw: st.DrawFn) -> TransformerBlock:
    """1-3 heads of 2-4 features, an MLP 1-8 wide, 1-5 tokens, batches of 1-3, causal or not."""
    return TransformerBlock(draw(st.integers(1, 3)), draw(st.integers(2, 4)), draw(st.integers(1, 8)), draw(st.integers(1, 5)),
                            draw(st.integers(1, 3)), draw(st.booleans()), draw(st.sampled_from(("none", "tanh"))), draw(st.integers(0, 2**31 - 1)))


def build_transformer(arch: TransformerBlock, info: dtypes.DtypeInfo, device: str) -> nn.TransformerEncoderLayer:
    """torch's own initialisation under ``torch.manual_seed(arch.seed)``, except that its zero biases
    and unit LayerNorm scales are drawn at random too (a hand block that ignored one would pass)."""
    torch.manual_seed(arch.seed)
    block = nn.TransformerEncoderLayer(arch.embed, arch.heads, arch.hidden, dropout=0.0, activation=nn.GELU(arch.approximate),
                                       batch_first=True, norm_first=True)
    with torch.no_grad():
        for norm in (block.norm1, block.norm2):
            norm.weight.normal_(1.0, 0.5)
            norm.bias.normal_(0.0, 0.5)
        block.self_attn.in_proj_bias.normal_(0.0, 0.5)
        block.self_attn.out_proj.bias.normal_(0.0, 0.5)
    return block.to(device=device, dtype=info.torch)


def transformer_layers(block: nn.TransformerEncoderLayer, arch: TransformerBlock) -> list[network.Layer]:
    """The block for reference.network: two residual stacks."""
    attn = block.self_attn
    norm = lambda m: ("layer_norm", {"normalized_shape": tuple(m.normalized_shape), "weight": to_numpy(m.weight), "bias": to_numpy(m.bias), "eps": m.eps})  # noqa: E731
    linear = lambda m: ("linear", {"weight": to_numpy(m.weight), "bias": to_numpy(m.bias)})  # noqa: E731
    attention = ("multi_head_attention", {**{k: to_numpy(torch_parameter(attn, k)) for k in ATTENTION_PARAMETERS},
                                          "num_heads": attn.num_heads, "attn_mask": arch.mask()})
    return [("residual", {"layers": [norm(block.norm1), attention]}),
            ("residual", {"layers": [norm(block.norm2), linear(block.linear1), ("gelu", {"approximate": arch.approximate}), linear(block.linear2)]})]


_HOOKED = ("norm1", "self_attn", "norm2", "linear1", "activation", "linear2")


def run_transformer(block: nn.TransformerEncoderLayer, x: np.ndarray, target: np.ndarray, arch: TransformerBlock, info: dtypes.DtypeInfo,
                    device: str) -> dict[str, Any]:
    """The block's forward and backward, with each hooked module's (input, output) kept, gradients retained."""
    seen: dict[str, Any] = {}

    def hook(name: str):
        def keep(module: nn.Module, args: tuple, output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            args[0].retain_grad()
            out.retain_grad()
            seen[name] = (args[0], out)

        return keep

    handles = [getattr(block, name).register_forward_hook(hook(name)) for name in _HOOKED]
    try:
        xt = torch.tensor(x, dtype=info.torch, device=device, requires_grad=True)
        mask = arch.mask()
        out = block(xt, src_mask=None if mask is None else torch.tensor(mask, device=device))
        out.retain_grad()
        seen["loss"] = nn.functional.mse_loss(out, torch.tensor(target, dtype=info.torch, device=device))
        seen["loss"].backward()
        seen["output"] = out
    finally:
        for handle in handles:
            handle.remove()
    return seen


def check_transformer_links(block: nn.TransformerEncoderLayer, arch: TransformerBlock, dtype: str, device: str) -> list[Comparison]:
    """Each link of the block on torch's own inputs: both layer norms, the attention (as one link,
    and step by step through F.linear and F.scaled_dot_product_attention), the MLP, and the two
    residual sums. Where a value feeds a residual's identity path too (x and x1), its gradient is
    the sum of both paths."""
    info = dtypes.get(dtype)
    x, target = draw_data(arch, info)
    seen = run_transformer(block, x, target, arch, info, device)
    (ln1, attn), (ln2, fc1, act, fc2) = (stack["layers"] for _, stack in transformer_layers(block, arch))
    where, records = arch.describe(), []
    links = (("norm1", ln1, block.norm1, "x1"), ("self_attn", attn, block.self_attn, None), ("norm2", ln2, block.norm2, "output"),
             ("linear1", fc1, block.linear1, None), ("activation", act, None, None), ("linear2", fc2, block.linear2, None))
    for label, (name, params), module, skip in links:
        h_in, h_out = seen[label]
        keys = network.parameter_names(name, params)
        actual = {"input": to_numpy(h_in.grad), **{k: to_numpy(torch_parameter(module, k).grad) for k in keys}}
        skip_tensor = {"x1": seen["norm2"][0], "output": seen["output"]}.get(skip)
        records += check_link(label, name, params, h_in, h_out, actual, info, device, where, skip=skip_tensor,
                              k_times=3 if name == "multi_head_attention" else 1)
    for label, a, b, total in (("residual 1", seen["norm1"][0], seen["self_attn"][1], seen["norm2"][0]),
                               ("residual 2", seen["norm2"][0], seen["linear2"][1], seen["output"])):
        a, b = to_numpy(a), to_numpy(b)
        records.append(compare(to_numpy(total), a + b, scale=np.abs(a) + np.abs(b), info=info, k=k_for("forward", dtype),
                               context=Context(label, "forward", "network", device, dtype, a.shape, where)))
    return records + check_attention_steps(block.self_attn, *seen["self_attn"], arch, info, device)


def check_attention_steps(attn: nn.MultiheadAttention, h_in: torch.Tensor, h_out: torch.Tensor, arch: TransformerBlock, info: dtypes.DtypeInfo,
                          device: str) -> list[Comparison]:
    """nn.MultiheadAttention as F.linear > heads split > F.scaled_dot_product_attention > heads merged
    > F.linear, run by torch on the attention's own input and sent back the gradient it received:
    each op against its registry reference, the split and merge against the hand reshapes exactly."""
    heads, where = attn.num_heads, arch.describe()
    weights = [torch_parameter(attn, k).detach().clone().requires_grad_() for k in ATTENTION_PARAMETERS]
    x = h_in.detach().clone().requires_grad_()
    mask = arch.mask()
    sdpa_mask = None if mask is None else torch.tensor(~mask, device=x.device)  # sdpa's convention: True keeps
    qkv = nn.functional.linear(x, weights[0], weights[1])
    split = [t.unflatten(-1, (heads, -1)).transpose(-2, -3) for t in qkv.chunk(3, dim=-1)]
    o = nn.functional.scaled_dot_product_attention(*split, attn_mask=sdpa_mask)
    merged = o.transpose(-2, -3).flatten(-2)
    y = nn.functional.linear(merged, weights[2], weights[3])
    for t in (qkv, *split, o, merged, y):
        t.retain_grad()
    y.backward(h_out.grad)
    records = check_link("in-projection", "linear", {"weight": to_numpy(weights[0]), "bias": to_numpy(weights[1])}, x, qkv,
                         {"input": to_numpy(x.grad), "weight": to_numpy(weights[0].grad), "bias": to_numpy(weights[1].grad)}, info, device, where)
    exact = lambda label, actual, expected: compare(actual, expected, scale=0.0, info=info, k=1, context=Context(label, "reshape", "network", device, info.name, expected.shape, where))  # noqa: E731
    for name, t, part in zip("QKV", split, np.split(to_numpy(qkv), 3, axis=-1)):
        records.append(exact(f"heads split ({name})", to_numpy(t), reference.attention.split_heads(part, heads)))
    case = Case({name: to_numpy(t) for name, t in zip(("query", "key", "value"), split)},
                {"attn_mask": None if mask is None else ~mask, "dropout_p": 0.0, "is_causal": False, "scale": None, "enable_gqa": False}, info)
    records += _check_case("scaled_dot_product_attention", get("scaled_dot_product_attention"), case, o,
                           {name: to_numpy(t.grad) for name, t in zip(("query", "key", "value"), split)}, device, where)
    records.append(exact("heads merged", to_numpy(merged), reference.attention.merge_heads(to_numpy(o))))
    records += check_link("out-projection", "linear", {"weight": to_numpy(weights[2]), "bias": to_numpy(weights[3])}, merged, y,
                          {"input": to_numpy(merged.grad), "weight": to_numpy(weights[2].grad), "bias": to_numpy(weights[3].grad)}, info, device, where)
    return records
