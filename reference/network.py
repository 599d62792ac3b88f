"""A small network by hand: a stack of layers, then a loss.

Forward runs each layer's reference function and keeps its input on a tape; backward walks the tape
in reverse and applies each layer's hand-derived ``_backward``: the chain rule, one layer at a time,
exactly the notebooks' z0 = X w0 + b0, z1 = z0 w1 + b1, S(z1), loss, and the per-weight gradients.

A layer is ``(name, params)``: ``("linear", {"weight": W, "bias": b})``, ``("relu", {})``,
``("leaky_relu", {"negative_slope": a})``, ``("gelu", {"approximate": "tanh"})``, ``("softmax", {"dim": -1})``:
Linear, or any activation whose reference declares a ``lipschitz`` fact, and for a CNN
``("conv2d", {"weight": W, "bias": b, "stride": 1, ...})``, ``("max_pool2d", {"kernel_size": 2})`` and
``("flatten", {})``, and for a transformer block ``("layer_norm", {"normalized_shape": (E,), "weight": w, "bias": b})``,
``("multi_head_attention", {"in_proj_weight": W, ..., "num_heads": H})`` (``LAYER_NAMES``). A layer's
arrays are its parameters: its ``_backward`` returns the input's gradient first, then theirs in the
order of its signature. ``("residual", {"layers": [...]})`` is a skip connection around a stack:
$y = x + f(x)$, so $\bar x = \bar y + f'(x)^\top \bar y$ (the identity path adds the gradient straight back).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from reference import attention, binary, classification, convolution, layers as linear_layers, normalization, pooling, regression
from reference._validation import as_float

Layer = tuple[str, dict[str, Any]]

def flatten(input: Any, start_dim: int = 1, end_dim: int = -1) -> np.ndarray:
    r"""nn.Flatten: dimensions start_dim..end_dim as one; $\partial y/\partial x$ is the same reshape."""
    x = as_float(input, "input")
    start, end = start_dim % x.ndim, end_dim % x.ndim
    return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:])


def flatten_backward(grad_output: Any, input: Any, start_dim: int = 1, end_dim: int = -1) -> np.ndarray:
    r"""$\bar x$ = $\bar y$ in the input's shape."""
    return as_float(grad_output, "grad_output").reshape(np.shape(input))


def parameter_names(name: str, params: dict[str, Any]) -> list[str]:
    """A layer's parameters, the arrays among its arguments, in its signature's order (weight, bias)."""
    order = list(inspect.signature(_lookup(_LAYERS, name, "layer")[0]).parameters)
    return [k for k in order if isinstance(params.get(k), np.ndarray) and k != "attn_mask"]  # a mask is data, not a parameter


def _layers() -> dict[str, tuple]:
    """Linear, and every reference op that declares itself a layer (a ``lipschitz`` fact: how much
    it can amplify an error in its input), each with its hand-derived gradient."""
    import reference

    found = {"linear": (linear_layers.linear, linear_layers.linear_backward), "conv2d": (convolution.conv2d, convolution.conv2d_backward),
             "max_pool2d": (pooling.max_pool2d, pooling.max_pool2d_backward), "flatten": (flatten, flatten_backward),
             "layer_norm": (normalization.layer_norm, normalization.layer_norm_backward),
             "multi_head_attention": (attention.multi_head_attention, attention.multi_head_attention_backward)}
    for name in reference.__all__:
        function = getattr(reference, name)
        if getattr(getattr(function, "facts", None), "lipschitz", None) is not None:
            found[name] = (function, getattr(reference, f"{name}_backward"))
    return found


_LAYERS = _layers()
_LOSSES = {
    "cross_entropy": (classification.cross_entropy, classification.cross_entropy_backward),
    "binary_cross_entropy": (binary.binary_cross_entropy, binary.binary_cross_entropy_backward),
    "mse_loss": (regression.mse_loss, regression.mse_loss_backward),
    "l1_loss": (regression.l1_loss, regression.l1_loss_backward),
}
LAYER_NAMES, LOSS_NAMES = tuple(_LAYERS) + ("residual",), tuple(_LOSSES)


def _lookup(table: dict[str, Any], name: str, kind: str) -> Any:
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; expected one of {', '.join(table)}") from None


@dataclass(frozen=True)
class Tape:
    """What the backward pass needs: each layer's input, in order, the network's output, and a
    residual layer's own tape of the stack inside it (None for other layers)."""

    inputs: tuple[np.ndarray, ...]
    output: np.ndarray
    inner: tuple[Tape | None, ...] = ()


def forward(layers: Sequence[Layer], x: Any) -> tuple[np.ndarray, Tape]:
    r"""$h_0 = x$, $h_{l+1} = f_l(h_l)$; returns the output and the tape of layer inputs."""
    h = as_float(x, "x")
    inputs, inner = [], []
    for name, params in layers:
        inputs.append(h)
        if name == "residual":  # h + f(h)
            out, tape = forward(params["layers"], h)
            inner.append(tape)
            h = h + out
            continue
        h = _lookup(_LAYERS, name, "layer")[0](h, **params)
        inner.append(None)
    return h, Tape(tuple(inputs), h, tuple(inner))


def backward(layers: Sequence[Layer], tape: Tape, grad_output: Any) -> tuple[np.ndarray, list[dict[str, Any]]]:
    r"""Chain rule from the top: $\bar h_l = f_l'(h_l)^\top \bar h_{l+1}$, and for a Linear layer
    $\bar W = \bar z^\top h$, $\bar b = \sum_n \bar z_n$ (a convolution: the correlation of h with
    $\bar z$); a residual layer adds its stack's $\bar h$ to the $\bar y$ that skips it. Returns
    $\bar x$ and one dict of parameter gradients per layer (empty for activations; a residual
    layer's is ``{"layers": [its stack's dicts]}``)."""
    g = as_float(grad_output, "grad_output")
    grads: list[dict[str, Any]] = []
    inner = tape.inner or (None,) * len(layers)
    for (name, params), h, sub in zip(reversed(layers), reversed(tape.inputs), reversed(inner)):
        if name == "residual":
            through, sub_grads = backward(params["layers"], sub, g)
            g = g + through
            grads.append({"layers": sub_grads})
            continue
        result = _lookup(_LAYERS, name, "layer")[1](g, h, **params)
        if isinstance(result, tuple):  # (input, then each parameter in signature order; None without it)
            g = result[0]
            grads.append({k: v for k, v in zip(parameter_names(name, params), (r for r in result[1:] if r is not None))})
        else:
            g = result
            grads.append({})
    return g, grads[::-1]


def loss_and_gradients(
    layers: Sequence[Layer], x: Any, target: Any, loss: str, **loss_kwargs: Any
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The loss of the network on (x, target), and every parameter's gradient: the whole step the
    notebooks do with ``loss.backward()``."""
    value, _, grads = loss_and_all_gradients(layers, x, target, loss, **loss_kwargs)
    return value, grads


def loss_and_all_gradients(
    layers: Sequence[Layer], x: Any, target: Any, loss: str, **loss_kwargs: Any
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    r"""The loss, $\bar x$ (what ``x.grad`` holds when x requires a gradient) and every parameter's gradient."""
    out, tape = forward(layers, x)
    loss_forward, loss_backward = _lookup(_LOSSES, loss, "loss")
    value = loss_forward(out, target, **loss_kwargs)
    grad_out = loss_backward(np.ones(()), out, target, **loss_kwargs)
    grad_x, grads = backward(layers, tape, grad_out)
    return value, grad_x, grads


def count_parameters(sizes: Sequence[int], bias: bool = True) -> int:
    r"""Parameters of Linear layers of widths ``sizes`` ($n_0 \to n_1 \to \dots$):
    $\sum_l n_l n_{l+1} + n_{l+1}$ (the notebooks' 81 and 138)."""
    if len(sizes) < 2 or any(int(n) < 1 for n in sizes):
        raise ValueError(f"sizes must list at least two positive layer widths, got {list(sizes)}")
    return sum(a * b + (b if bias else 0) for a, b in zip(sizes[:-1], sizes[1:]))
