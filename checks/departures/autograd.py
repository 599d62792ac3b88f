"""Quirks of torch's derivative formulas in the modes other than reverse (checks/modes.py): a second
or third derivative that is wrong, or a mode that raises where the math is defined.

Each names its modes and phases, its upstream report (or, where none was found, says so: its
standalone repro is in docs/autograd-modes.md), and a probe. The probe is its example judged
against the math with every quirk of this file lifted: it shows while torch's answer there is
wrong (or while torch raises as declared), so the day torch fixes it the probe says so and
``byhand baseline compare`` reports the quirk gone.
"""
from __future__ import annotations

import re

import numpy as np

from checks.departures import Departure, Where
from checks.spec import Recipe

TESTS = ("tests/test_departures.py::test_a_quirk_behaves_as_declared_where_it_shows_and_as_the_math_where_it_does_not",
         "tests/test_modes.py::test_every_mode_agrees_with_the_math_where_torch_is_right")
FLOATS = ("float16", "bfloat16", "float32", "float64")


def everywhere(where: Where) -> np.ndarray:
    return np.asarray(True)


def in_training(where: Where) -> np.ndarray:
    """batch_norm's batch statistics: the wrong formulas are those of training mode."""
    return np.asarray(bool(where.case.params.get("training")))


def finite(actual: np.ndarray, expected: np.ndarray, limit: np.ndarray, where: Where) -> np.ndarray:
    """The rule of a wrong derivative formula: torch returns a finite number (not the math's)."""
    return np.isfinite(actual)


def _own_ids() -> tuple[str, ...]:
    return tuple(d.id for d in DECLARED)


def _example_fails(quirk_id: str, device: str) -> bool:
    """Whether the quirk's example disagrees with the math (or raises as declared) on ``device``,
    judged with every quirk of this file lifted (so that no probe asks another)."""
    from checks import departures, modes
    from checks.registry import get
    from checks.runner import Runner

    quirk = departures.get(quirk_id)
    assert quirk.example is not None
    with departures.lifted(*_own_ids()):
        try:
            records = modes.run(Runner(get(quirk.ops[0]), device, quirk.example_dtype), quirk.modes[0], quirk.example)
        except Exception as error:  # noqa: BLE001 - raising as declared is what a raising quirk's probe looks for
            return bool(quirk.raises) and re.search(quirk.raises, f"{type(error).__name__}: {error}") is not None
    return not quirk.raises and not all(r.passed for r in records)


def _probe(quirk_id: str):
    return lambda device, **_: _example_fails(quirk_id, device)


def _wrong(id: str, op: str | tuple[str, ...], title: str, modes: tuple[str, ...], phases: tuple[str, ...], what: str, upstream: str,
           example: Recipe, region=everywhere, rule=finite, dtypes: tuple[str, ...] = FLOATS, example_dtype: str = "float64",
           returns: str = "a finite value that is not the derivative") -> Departure:
    return Departure(
        id=id, kind="quirk", title=title, ops=op if isinstance(op, tuple) else (op,), what=what, upstream=upstream, tests=TESTS,
        modes=modes, phases=phases, dtypes=dtypes, devices=("cpu",), returns=returns, region=region, rule=rule, probe=_probe(id), example=example,
        example_dtype=example_dtype)


def _rstd_cubed_overflows_half(where: Where) -> np.ndarray:
    """The rows (layer_norm's normalized dims, group_norm's groups) whose 1/σ³ exceeds float16's
    largest value (65504): σ² = var + eps < 6.2e-4."""
    x = np.asarray(where.case.inputs["input"], dtype=np.float64)
    eps = where.case.params.get("eps", 1e-5)
    if where.op == "group_norm":
        groups = x.reshape(x.shape[0], where.case.params["num_groups"], -1)
        rstd = 1 / np.sqrt(groups.var(axis=-1, keepdims=True) + eps)
        return np.broadcast_to(rstd ** 3 > 65504.0, groups.shape).reshape(x.shape)
    dims = len(where.case.params["normalized_shape"])
    rstd = 1 / np.sqrt(x.var(axis=tuple(range(x.ndim - dims, x.ndim)), keepdims=True) + eps)
    return np.broadcast_to(rstd ** 3 > 65504.0, x.shape)


def _non_finite(actual: np.ndarray, expected: np.ndarray, limit: np.ndarray, where: Where) -> np.ndarray:
    return ~np.isfinite(actual)


def _raising(id: str, ops: tuple[str, ...], title: str, modes: tuple[str, ...], phases: tuple[str, ...], raises: str, what: str,
             upstream: str, example: Recipe) -> Departure:
    return Departure(
        id=id, kind="quirk", title=title, ops=ops, what=what, upstream=upstream, tests=TESTS, modes=modes, phases=phases,
        dtypes=FLOATS, devices=("cpu",), returns="no value: it raises", raises=raises, probe=_probe(id), example=example,
        example_dtype="float64")


LAYER_NORM = Recipe(0, "normal", (2,), {"dims": 1, "affine": False, "eps": 1e-05})
LAYER_NORM_AFFINE = Recipe(0, "normal", (5,), {"affine": True, "dims": 2, "eps": 0.1})
SDPA = Recipe(0, "normal", (1, 1, 1, 1, 1), {"ev": 1, "groups": 1, "gqa": False, "mask": "none", "scale": None, "backend": "default"})
BATCH_NORM = Recipe(0, "normal", (3, 4), {"training": True, "running": False, "affine": True, "momentum": 0.1, "eps": 1e-05})

def _bce_eps(actual: np.ndarray, expected: np.ndarray, limit: np.ndarray, where: Where) -> np.ndarray:
    """torch's BCE derivatives of order 2 and 3 divide by (p(1-p) + 1e-12)^2 where the math (and
    its first derivative, which clamps) has p(1-p): a relative error up to order * 1e-12 / p(1-p)."""
    p = np.asarray(where.case.inputs["input"], dtype=np.float64)
    shift = 3 * 1e-12 / float(np.min(p * (1 - p), initial=np.inf))
    return np.abs(actual - expected) <= limit + shift * np.abs(expected) + shift * where.scale


DECLARED: tuple[Departure, ...] = (
    _wrong("layer-norm-nested-jvp-wrong", "layer_norm", "layer_norm's second and third derivatives by nested jvp are wrong",
           ("fwd_over_fwd", "fwd3"), ("jvp2", "jvp3"),
           "torch.func.jvp of jvp (and of that again) through layer_norm returns values off by the size of the answer: on "
           "pytorch/pytorch#196700's example, -0.5333 where the exact d²φ[v, v] is -1.9080; on two elements 0.2249 where it is 2.2e-5.",
           "pytorch/pytorch#196700 (umbrella pytorch/pytorch#198017)", LAYER_NORM),
    _wrong("layer-norm-triple-backward-wrong", "layer_norm", "layer_norm's third derivative by autograd.grad thrice is wrong",
           ("rev3",), ("d3[input]",),
           "autograd.grad of autograd.grad of autograd.grad through layer_norm: the input's third derivative φ'''[v, w, ·] is "
           "wrong by far more than its size (-3.82 where it is -4.0e-4 on two elements); the weight's and bias's are right.",
           "pytorch/pytorch#175754 (umbrella pytorch/pytorch#198017)", LAYER_NORM),
    _wrong("layer-norm-hessian-weight-wrong", "layer_norm", "torch.func.hessian of a layer_norm loss is wrong in its weight rows",
           ("hessian",), ("hvp[weight]",),
           "torch.func.hessian (jacfwd of jacrev) of <u, layer_norm(x, w, b)>: the weight rows times v are wrong, while jvp of vjp "
           "and autograd.grad twice give the right Hessian-vector product. Not reported upstream on its own (searched "
           "pytorch/pytorch for layer_norm hessian); repro in docs/autograd-modes.md.",
           "pytorch/pytorch#198017 (umbrella of layer_norm's higher-order bugs)", LAYER_NORM_AFFINE),
    _wrong("layer-norm-float16-jvp-overflows", ("layer_norm", "group_norm"),
           "layer_norm's and group_norm's forward-mode derivatives in float16 overflow on rows of small variance",
           ("forward", "forward_ad", "jacfwd"), ("jvp",),
           "torch's forward-AD formula for layer_norm is composed of float16 operations and forms 1/σ³, which overflows float16 "
           "where σ² = var + eps < 6.2e-4: the JVP is ±inf or NaN where the math is finite (0 on a one-element row; 0.686 where "
           "torch gives -inf for x = 0.3 ∓ 0.022); group_norm's, per group, likewise. The backward computes in float32 and is right. Not reported upstream "
           "(searched); repro in docs/autograd-modes.md.",
           "not reported upstream (derivatives.yaml: layer_norm_jvp)", Recipe(0, "normal", (1,), {"dims": 1, "affine": False, "eps": 1e-05}),
           region=_rstd_cubed_overflows_half, rule=_non_finite, dtypes=("float16",), example_dtype="float16", returns="±inf or NaN"),
    _wrong("batch-norm-nested-jvp-wrong", "batch_norm", "batch_norm's (training) second and third derivatives by nested jvp are wrong",
           ("fwd_over_fwd", "fwd3"), ("jvp2", "jvp3"),
           "torch.func.jvp of jvp through batch_norm in training mode (batch statistics) returns wrong values; eval mode is right.",
           "pytorch/pytorch#196699 (umbrella pytorch/pytorch#198017)", BATCH_NORM, in_training),
    _wrong("batch-norm-triple-backward-wrong", "batch_norm", "batch_norm's (training) third derivative by autograd.grad thrice is wrong",
           ("rev3",), ("d3[input]",),
           "autograd.grad thrice through batch_norm in training mode: the input's third derivative is wrong; pytorch/pytorch#186256 "
           "is closed upstream, but torch 2.13.0 still computes it wrong.",
           "pytorch/pytorch#186256 (umbrella pytorch/pytorch#198017)", BATCH_NORM, in_training),
    _wrong("batch-norm-hessian-weight-wrong", "batch_norm", "torch.func.hessian of a batch_norm loss (training) is wrong in its weight rows",
           ("hessian",), ("hvp[weight]",),
           "torch.func.hessian of <u, batch_norm(x, training=True, weight=w, bias=b)>: the weight rows times v are wrong; jvp of vjp "
           "and autograd.grad twice are right. Not reported upstream on its own; repro in docs/autograd-modes.md.",
           "pytorch/pytorch#198017 (umbrella)", BATCH_NORM, in_training),
    Departure(
        id="bce-double-backward-adds-eps", kind="quirk", title="binary_cross_entropy's second and third derivatives add 1e-12 to p(1-p)",
        ops=("binary_cross_entropy",), tests=TESTS, dtypes=FLOATS, devices=("cpu",),
        modes=("fwd_over_rev", "rev_over_rev", "hessian", "fwd_over_fwd", "rev3", "fwd3"), phases=("hvp[input]", "jvp2", "d3[input]", "jvp3"),
        what="torch's double backward of binary_cross_entropy (binary_cross_entropy_double_backward) divides by "
             "(p(1-p) + EPSILON)^2 with EPSILON = 1e-12, where its backward clamps p(1-p) at EPSILON: away from p = 0 and 1 the "
             "second derivative is the math's times about 1 - 2e-12/p(1-p) (9.297052154106472 for 9.297052154195013 at p = 0.3, "
             "y = 0.8). Not reported upstream (searched); repro in docs/autograd-modes.md.",
        returns="the derivative with p(1-p) + 1e-12 for p(1-p): relatively off by up to 3e-12/p(1-p)",
        upstream="not reported upstream (torch/csrc/autograd/FunctionsManual.cpp, binary_cross_entropy_double_backward)",
        region=everywhere, rule=_bce_eps, probe=_probe("bce-double-backward-adds-eps"),
        example=Recipe(0, "normal", (), {"reduction": "mean", "soft": False, "weight": "none"}), example_dtype="float64"),
    _raising("mse-loss-jvp-of-grad-raises", ("mse_loss",), "mse_loss under jvp of vjp raises (ZeroTensors are immutable)",
             ("fwd_over_rev",), ("hvp",), r"RuntimeError: ZeroTensors are immutable",
             "torch.func.jvp of the vjp of mse_loss with reduction='mean' raises: the target's zero tangent is a ZeroTensor, and "
             "mse_loss_double_backward divides it in place.",
             "pytorch/pytorch#123996 (fix: pytorch/pytorch#197723, open)", Recipe(0, "normal", (3,), {"reduction": "mean", "weighted": False})),
    _raising("huber-loss-backward-no-forward-ad", ("huber_loss",), "huber_loss's backward has no forward-mode derivative",
             ("fwd_over_rev", "fwd_over_fwd", "fwd3"), ("hvp", "jvp2", "jvp3"), r"NotImplementedError: Trying to use forward AD with huber_loss_backward",
             "jvp of vjp, and jvp of jvp, through huber_loss raise NotImplementedError: huber_loss_backward has no forward-AD "
             "formula (smooth_l1_loss, the same function for delta = 1, has one). Not reported upstream (searched); repro in "
             "docs/autograd-modes.md.",
             "not reported upstream (derivatives.yaml has no result: entry for huber_loss_backward)", Recipe(0, "normal", (3,), {"weighted": False, "reduction": "mean", "delta": 1.0})),
    _raising("bce-with-logits-nested-jvp-raises", ("binary_cross_entropy_with_logits",),
             "binary_cross_entropy_with_logits under nested jvp raises (ZeroTensors are immutable)",
             ("fwd_over_fwd", "fwd3"), ("jvp2", "jvp3"), r"RuntimeError: ZeroTensors are immutable",
             "jvp of jvp through binary_cross_entropy_with_logits raises when the target carries no tangent: the first-order "
             "fix (pytorch/pytorch#76322) made binary_cross_entropy_with_logits_jvp out of place, but its own derivative still "
             "writes a ZeroTensor in place. Not reported upstream (searched); repro in docs/autograd-modes.md.",
             "not reported upstream; the first-order fix: pytorch/pytorch#76322",
             Recipe(0, "normal", (), {"pos_weight": False, "reduction": "mean", "soft": False, "weight": "none"})),
    _raising("sdpa-cpu-flash-no-forward-ad", ("scaled_dot_product_attention",), "CPU flash attention has no forward-mode derivative",
             ("forward", "forward_ad", "jacfwd", "fwd_over_rev", "hessian", "fwd_over_fwd", "fwd3"), ("jvp", "hvp", "jvp2", "jvp3"),
             r"NotImplementedError: Trying to use forward AD with _scaled_dot_product_flash_attention_for_cpu",
             "Every forward-mode route through F.scaled_dot_product_attention raises on the CPU where it dispatches to the flash "
             "kernel (it does for some shapes only: one query of one element does), which has no forward-AD formula; the math "
             "backend has one.",
             "pytorch/pytorch#128971", SDPA),
    _raising("sdpa-cpu-flash-no-double-backward", ("scaled_dot_product_attention",), "CPU flash attention has no double backward",
             ("rev_over_rev", "rev3"), ("hvp", "d3"), r"derivative for aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented",
             "autograd.grad twice through F.scaled_dot_product_attention on the CPU raises: the flash kernel's backward has no derivative.",
             "pytorch/pytorch#128971", SDPA),
)
