r"""The report's networks, derived link by link: the CNN and the transformer block.

Each link states its forward and the chain rule at that link (what reaches its input and its
parameters from the gradient $\bar y$ that reached its output), so a learner reads the backward
pass one layer at a time, from the loss down. Each link is then measured on one drawn network in
every dtype of the report (checks/networks.py's link checks, on torch's own inputs to the link),
and the whole chain end to end in float64, every .grad included.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from checks import dtypes, networks
from checks.compare import Comparison


@dataclass(frozen=True)
class Link:
    name: str
    forward: str  # prose, $...$ as math (mathtext's TeX)
    backward: str
    labels: tuple[str, ...]  # the checks.networks records that measure this link


@dataclass(frozen=True)
class Chain:
    name: str
    title: str
    intro: str
    ops: tuple[str, ...]  # the registry ops its links are: a report of other ops leaves it out
    links: tuple[Link, ...]
    example: Any
    build: Callable[..., Any]
    check_links: Callable[..., list[Comparison]]


_LINEAR = r"$\bar W = \bar z^\top h,\ \bar b = \sum_n \bar z_n,\ \bar h = \bar z W$"
_NORM = (r"$\bar\gamma = \sum_n \bar u \odot \hat x,\ \bar\beta = \sum_n \bar u$; with $\hat g = \bar u \odot \gamma\ \mathrm{and}\ r = 1/\sqrt{\sigma^2 + \epsilon}$, "
         r"the input gains $r(\hat g - \mathrm{mean}(\hat g) - \hat x\,\mathrm{mean}(\hat g \odot \hat x))$")

CNN = Chain(
    "cnn", "A CNN",
    "conv2d, relu, max_pool2d, flatten, Linear, cross-entropy: the course's first image classifier.",
    ("conv2d", "relu", "max_pool2d", "linear", "cross_entropy"),
    (
        Link("conv2d", r"$z_{o,i,j} = c_o + \sum_{k,p,q} K_{o,k,p,q}\, x_{k,\,si+p,\,sj+q}$ (a correlation, stride s, zero padding)",
             r"$\bar K_{o,k,p,q} = \sum_{n,i,j} \bar z_{n,o,i,j}\, x_{n,k,\,si+p,\,sj+q}$ (x correlated with $\bar z$), $\bar c_o = \sum_{n,i,j} \bar z_{n,o,i,j}$; "
             r"$\bar x$ is the transposed convolution: each tap's $K_{o,k,p,q}\,\bar z_{n,o,i,j}$ added back where its input came from",
             ("layer 0 (conv2d)",)),
        Link("relu", r"$a = \max(z, 0)$", r"$\bar z = \bar a \odot \mathbf{1}_{z > 0}$ (0 at the kink: torch's convention)", ("layer 1 (relu)",)),
        Link("max_pool2d", r"$p_w = \max_{i \in w} a_i$ for each window w",
             r"$\bar a_i = \sum_{w:\ i = \mathrm{argmax}\ w} \bar p_w$: each window's gradient routed to its first maximum, 0 elsewhere",
             ("layer 2 (max_pool2d)",)),
        Link("flatten", r"$f$ = p reshaped to (N, C H W)", r"$\bar p$ = $\bar f$ reshaped back: exact", ("layer 3 (flatten)",)),
        Link("linear", r"$z = f W^\top + b$", _LINEAR.replace("h", "f"), ("layer 4 (linear)",)),
        Link("cross_entropy", r"$L = -\frac{1}{N}\sum_n \log\,\mathrm{softmax}(z_n)_{y_n}$",
             r"$\bar z = (\mathrm{softmax}(z) - \mathrm{onehot}(y))/N$: where the backward pass starts", ("network loss",)),
    ),
    networks.ConvNet(channels=2, size=(6, 6), out_channels=3, kernel=3, stride=1, padding=1, pool=2, classes=3, batch=2, seed=0),
    networks.build_conv_net,
    networks.check_links,
)

TRANSFORMER = Chain(
    "transformer", "A transformer block",
    "nn.TransformerEncoderLayer with norm_first=True, GELU and no dropout: x1 = x + MHA(LN1(x)), y = x1 + MLP(LN2(x1)). "
    "Its attention is nn.MultiheadAttention with a packed in-projection, checked as one link and step by step through "
    "F.linear and F.scaled_dot_product_attention. Its gradient has a sympy proof of its own, every weight and bias a "
    "symbol: run byhand derive multi_head_attention (the suite proves it in tests/test_derivations.py).",
    ("layer_norm", "linear", "scaled_dot_product_attention", "gelu", "mse_loss"),
    (
        Link("layer_norm 1", r"$u = \gamma_1 \odot \hat x + \beta_1,\ \hat x = (x - \mu)/\sqrt{\sigma^2 + \epsilon}$ per token", _NORM, ("norm1",)),
        Link("in-projection", r"$[Q\ K\ V] = u W_{in}^\top + b_{in}$ (one packed matrix)",
             r"$\bar W_{in} = \overline{QKV}^\top u,\ \bar b_{in} = \sum \overline{QKV},\ \bar u = \overline{QKV}\, W_{in}$: the three paths from u summed",
             ("in-projection",)),
        Link("heads split", r"$Q_h$ = features $[h d, (h + 1) d)$ of Q, $d = E/H$ (K and V alike)",
             r"$\overline{QKV}$ = the heads' gradients side by side again: exact", ("heads split (Q)", "heads split (K)", "heads split (V)")),
        Link("attention, per head", r"$O_h = P_h V_h,\ P_h = \mathrm{softmax}(Q_h K_h^\top/\sqrt{d} + M)$ (M: $-\infty$ above the diagonal when causal)",
             r"$\bar V_h = P_h^\top \bar O_h;\ \bar Z_h = P_h \odot (\bar O_h V_h^\top - \mathrm{rowsum}(P_h \odot \bar O_h V_h^\top))$; "
             r"$\bar Q_h = \bar Z_h K_h/\sqrt{d},\ \bar K_h = \bar Z_h^\top Q_h/\sqrt{d}$", ("scaled_dot_product_attention",)),
        Link("heads merged", r"$O = [O_1 \cdots O_H]$", r"$\bar O_h$ = features $[h d, (h + 1) d)$ of $\bar O$: exact", ("heads merged",)),
        Link("out-projection", r"$a = O W_{out}^\top + b_{out}$", r"$\bar W_{out} = \bar a^\top O,\ \bar b_{out} = \sum \bar a,\ \bar O = \bar a W_{out}$",
             ("out-projection",)),
        Link("nn.MultiheadAttention, whole", r"$a = \mathrm{MHA}(u)$: the five steps above", r"the five steps' gradients in reverse: $\bar u,\ \bar W_{in},\ \bar b_{in},\ \bar W_{out},\ \bar b_{out}$ from $\bar a$", ("self_attn",)),
        Link("residual 1", r"$x_1 = x + a$", r"$\bar a = \bar x_1$, and x gains $\bar x_1$: the skip passes the gradient straight back", ("residual 1",)),
        Link("layer_norm 2", r"$v = \gamma_2 \odot \hat x_1 + \beta_2$", _NORM.replace(r"\bar u", r"\bar v").replace(r"\hat x", r"\hat x_1"), ("norm2",)),
        Link("linear 1", r"$z = v W_1^\top + b_1$", r"$\bar W_1 = \bar z^\top v,\ \bar b_1 = \sum \bar z,\ \bar v = \bar z W_1$", ("linear1",)),
        Link("gelu", r"$g = z\,\Phi(z)$ (or its tanh form)", r"$\bar z = \bar g \odot (\Phi(z) + z\,\varphi(z))$ (the exact form's; the tanh form's is in gelu's own derivation)", ("activation",)),
        Link("linear 2", r"$m = g W_2^\top + b_2$", r"$\bar W_2 = \bar m^\top g,\ \bar b_2 = \sum \bar m,\ \bar g = \bar m W_2$", ("linear2",)),
        Link("residual 2", r"$y = x_1 + m$", r"$\bar m = \bar y$, and $x_1$ gains $\bar y$", ("residual 2",)),
        Link("mse_loss", r"$L = \frac{1}{n}\sum (y - t)^2$", r"$\bar y = 2(y - t)/n$: where the backward pass starts", ("network loss",)),
    ),
    networks.TransformerBlock(heads=2, head_dim=3, hidden=8, length=4, batch=2, causal=True, approximate="none", seed=0),
    networks.build_transformer,
    networks.check_transformer_links,
)

CHAINS = (CNN, TRANSFORMER)


def covered(ops: list[str]) -> list[Chain]:
    """The networks a report of these ops shows: those whose every op it covers."""
    return [chain for chain in CHAINS if set(chain.ops) <= set(ops)]


def measure(chain: Chain, devices: list[str], dtype_names: list[str]) -> dict[str, Any]:
    """The chain's links measured on its example network on each device in each dtype, and end to
    end in float64."""
    measured: dict[str, list[dict[str, Any]]] = {link.name: [] for link in chain.links}
    ends, everything = [], []
    for device in devices:
        runs = [(dtype, chain.check_links(chain.build(chain.example, dtypes.get(dtype), device), chain.example, dtype, device)) for dtype in dtype_names]
        end = networks.check_end_to_end(chain.build(chain.example, dtypes.get("float64"), device), chain.example, device)
        for link in chain.links:
            for dtype, records in [*runs, ("float64 end to end", end)]:
                mine = [r for r in records if r.context.op in link.labels]
                if mine:
                    measured[link.name].append(_summary(device, dtype, mine))
        ends.append(_summary(device, "float64", [r for r in end if r.context.op != "network loss"]))
        everything += [r for _, records in runs for r in records] + end
    return {
        "name": chain.name, "title": chain.title, "intro": chain.intro, "architecture": chain.example.describe(),
        "links": [{"name": link.name, "forward": link.forward, "backward": link.backward, "checks": measured[link.name]} for link in chain.links],
        "end_to_end": ends,
        "status": "pass" if all(r.passed for r in everything) else "fail",
    }


def _summary(device: str, dtype: str, records: list[Comparison]) -> dict[str, Any]:
    """How many comparisons, the worst error in ULPs (floored at each one's scale), its k, and the verdict."""
    worst = max(records, key=lambda r: r.max_ulp_err / r.k if r.k else 0.0)
    return {"device": device, "dtype": dtype, "comparisons": len(records), "worst_ulp": float(worst.max_ulp_err), "k": float(worst.k),
            "passed": all(r.passed for r in records), "failures": [r.message() for r in records if not r.passed]}
