"""A small network by hand: a stack of Linear layers and activations, then a loss.

Forward runs each layer's reference function and keeps its input on a tape; backward walks the tape
in reverse and applies each layer's hand-derived ``_backward``: the chain rule, one layer at a time,
exactly the notebooks' z0 = X w0 + b0, z1 = z0 w1 + b1, S(z1), loss, and the per-weight gradients.

A layer is ``(name, params)``: ``("linear", {"weight": W, "bias": b})``, ``("relu", {})``,
``("leaky_relu", {"negative_slope": a})``, ``("gelu", {"approximate": "tanh"})``, ``("softmax", {"dim": -1})``:
Linear, or any activation whose reference declares a ``lipschitz`` fact (``LAYER_NAMES``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from reference import binary, classification, layers as linear_layers, regression
from reference._validation import as_float

Layer = tuple[str, dict[str, Any]]

def _layers() -> dict[str, tuple]:
    """Linear, and every reference op that declares itself a layer (a ``lipschitz`` fact: how much
    it can amplify an error in its input), each with its hand-derived gradient."""
    import reference

    found = {"linear": (linear_layers.linear, linear_layers.linear_backward)}
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
LAYER_NAMES, LOSS_NAMES = tuple(_LAYERS), tuple(_LOSSES)


def _lookup(table: dict[str, Any], name: str, kind: str) -> Any:
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; expected one of {', '.join(table)}") from None


@dataclass(frozen=True)
class Tape:
    """What the backward pass needs: each layer's input, in order, and the network's output."""

    inputs: tuple[np.ndarray, ...]
    output: np.ndarray


def forward(layers: Sequence[Layer], x: Any) -> tuple[np.ndarray, Tape]:
    r"""$h_0 = x$, $h_{l+1} = f_l(h_l)$; returns the output and the tape of layer inputs."""
    h = as_float(x, "x")
    inputs = []
    for name, params in layers:
        inputs.append(h)
        h = _lookup(_LAYERS, name, "layer")[0](h, **params)
    return h, Tape(tuple(inputs), h)


def backward(layers: Sequence[Layer], tape: Tape, grad_output: Any) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    r"""Chain rule from the top: $\bar h_l = f_l'(h_l)^\top \bar h_{l+1}$, and for a Linear layer
    $\bar W = \bar z^\top h$, $\bar b = \sum_n \bar z_n$. Returns $\bar x$ and one dict of parameter
    gradients per layer (empty for activations)."""
    g = as_float(grad_output, "grad_output")
    grads: list[dict[str, np.ndarray]] = []
    for (name, params), h in zip(reversed(layers), reversed(tape.inputs)):
        layer_backward = _lookup(_LAYERS, name, "layer")[1]
        if name == "linear":
            g, grad_weight, grad_bias = layer_backward(g, h, **params)
            grads.append({"weight": grad_weight} | ({} if grad_bias is None else {"bias": grad_bias}))
        else:
            g = layer_backward(g, h, **params)
            grads.append({})
    return g, grads[::-1]


def loss_and_gradients(
    layers: Sequence[Layer], x: Any, target: Any, loss: str, **loss_kwargs: Any
) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """The loss of the network on (x, target), and every parameter's gradient: the whole step the
    notebooks do with ``loss.backward()``."""
    out, tape = forward(layers, x)
    loss_forward, loss_backward = _lookup(_LOSSES, loss, "loss")
    value = loss_forward(out, target, **loss_kwargs)
    grad_out = loss_backward(np.ones(()), out, target, **loss_kwargs)
    _, grads = backward(layers, tape, grad_out)
    return value, grads


def count_parameters(sizes: Sequence[int], bias: bool = True) -> int:
    r"""Parameters of Linear layers of widths ``sizes`` ($n_0 \to n_1 \to \dots$):
    $\sum_l n_l n_{l+1} + n_{l+1}$ (the notebooks' 81 and 138)."""
    if len(sizes) < 2 or any(int(n) < 1 for n in sizes):
        raise ValueError(f"sizes must list at least two positive layer widths, got {list(sizes)}")
    return sum(a * b + (b if bias else 0) for a, b in zip(sizes[:-1], sizes[1:]))
