"""A catalogue of realistic torch faults, injected through torch's own interception points, to prove
that the suite would catch a regression.

Each :class:`Fault` is a context manager: a ``TorchFunctionMode`` that changes what a functional
computes (a wrong reduction, an ignored weight, a perturbed result) or a ``TorchDispatchMode`` that
perturbs an aten kernel (a backward off by a relative 1e-10 in float64 only, a gradient convention
changed at 0). ``pytest --fault NAME`` runs the whole suite with one fault active; ``byhand faults``
runs the suite under every fault and reports the kill rate (a fault is killed when the suite fails).
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


class _Functional(TorchFunctionMode):
    """Calls ``rewrite(func, args, kwargs)`` for the targeted functionals instead of the real one.

    While a mode is active every functional dispatches through it, and torch 2.13's F.l1_loss then
    drops its ``weight`` (its handle_torch_function call omits it; pytorch/pytorch#193003), so a
    weighted l1_loss cell fails under any such fault: :meth:`Fault.judges` checks the targeted ops'
    cells first and leaves l1_loss's out unless the fault targets it, so a fault is reported as caught
    by its own op.
    """

    def __init__(self, targets: tuple[Callable, ...], rewrite: Callable[..., Any]) -> None:
        super().__init__()
        self.targets, self.rewrite = targets, rewrite

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func in self.targets:  # the mode is off inside this method, so rewrites call torch freely
            return self.rewrite(func, args, kwargs)
        return func(*args, **kwargs)


class _Kernel(TorchDispatchMode):
    """Applies ``change(out, args)`` to the result of the targeted aten overloads."""

    def __init__(self, targets: tuple[Any, ...], change: Callable[..., Any]) -> None:
        super().__init__()
        self.targets, self.change = targets, change

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in self.targets:
            return self.change(out, args)
        return out


# The faults injected in this process now, innermost last: a worker process that checks on this
# process' behalf (byhand verify --jobs) injects them too.
ACTIVE: list[str] = []


_FOR_GOOD: list = []  # the contexts keep_active entered: held for the process' life


def keep_active(name: str) -> None:
    """Inject fault ``name`` for the rest of this process' life: a worker that checks on behalf of
    a process with the fault injected (the suite's beside worker, byhand verify --jobs)."""
    _FOR_GOOD.append(get(name).active())
    _FOR_GOOD[-1].__enter__()


@dataclass(frozen=True)
class Fault:
    name: str
    description: str
    make: Callable[[], Any]  # a fresh mode (context manager)
    tests: tuple[str, ...] = ()  # test files that judge it instead of the registry matrix (optimizers)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        # The quirks' probes run first, on unfaulted torch: a fault must never be able to switch on
        # a quirk and so excuse itself as a known deviation.
        from checks import departures, devices

        departures.active_here(devices.available())
        active = ACTIVE  # held here: a worker's fault is closed only as the interpreter exits, its globals gone
        with self.make():
            active.append(self.name)
            try:
                yield
            finally:
                active.remove(self.name)

    def judges(self, cells: list) -> list:
        """The ``cells`` that can judge the fault, the ones of the ops it changes first (the same
        order otherwise). Under a TorchFunctionMode every weighted l1_loss fails, whatever the mode
        does (pytorch/pytorch#193003): l1_loss judges only a functional fault of its own."""
        mode = self.make()
        names = {getattr(target, "__name__", None) for target in getattr(mode, "targets", ())}
        blind = {"l1_loss"} - names if isinstance(mode, TorchFunctionMode) else set()
        return sorted((cell for cell in cells if cell.spec.name not in blind), key=lambda cell: cell.spec.name not in names)


def _with(**changes: Any) -> Callable[..., Any]:
    """A rewrite that calls the functional with some keyword arguments changed."""
    def rewrite(func, args, kwargs):
        return func(*args, **{**kwargs, **{k: (v(kwargs) if callable(v) else v) for k, v in changes.items()}})
    return rewrite


def _scaled(factor: float, dtypes: tuple[torch.dtype, ...] | None = None) -> Callable[..., Any]:
    """A change multiplying a kernel's result by ``factor`` (only for ``dtypes`` when given)."""
    def change(out, args):
        if isinstance(out, torch.Tensor) and out.is_floating_point() and (dtypes is None or out.dtype in dtypes):
            return out * factor
        return out
    return change


def _relu_gradient_one_at_zero(out, args):
    grad, result = args[0], args[1]
    return torch.where(result == 0, grad, out)


def _mean_over_n_plus_one(func, args, kwargs):
    if kwargs.get("reduction", "mean") != "mean":
        return func(*args, **kwargs)
    total = func(*args, **{**kwargs, "reduction": "sum"})
    return total / (args[0].numel() + 1)


def _layer_norm_unbiased(func, args, kwargs):
    """layer_norm normalising by the unbiased variance (n - 1), a textbook slip."""
    x, shape = args[0], kwargs.get("normalized_shape", args[1] if len(args) > 1 else None)
    dims = tuple(range(-len(shape), 0))
    centred = x - x.mean(dims, keepdim=True)
    with warnings.catch_warnings():  # one element: n - 1 = 0 degrees of freedom, NaN, as the slip gives
        warnings.simplefilter("ignore", UserWarning)
        variance = x.var(dims, unbiased=True, keepdim=True)
    y = centred / torch.sqrt(variance + kwargs.get("eps", 1e-5))
    weight, bias = kwargs.get("weight"), kwargs.get("bias")
    return (y if weight is None else y * weight) + (0 if bias is None else bias)


def _bce_clamped_at_50(func, args, kwargs):
    """BCE whose log terms are clamped at -50 instead of torch's -100: only p < e^-50 (or exactly
    0 or 1, where the gradient convention changes too) can tell."""
    p, y = args[0], args[1]
    loss = -(y * torch.clamp(torch.log(p), min=-50) + (1 - y) * torch.clamp(torch.log1p(-p), min=-50))
    if kwargs.get("weight") is not None:
        loss = loss * kwargs["weight"]
    reduction = kwargs.get("reduction", "mean")
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()


def _half_accumulating_softmax(func, args, kwargs):
    x = args[0]
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if x.dtype not in (torch.float16, torch.bfloat16):
        return func(*args, **kwargs)
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    total = torch.zeros_like(e.narrow(dim, 0, 1))
    for i in range(e.shape[dim]):  # sequential low-precision accumulation, no float32 accumulator
        total = total + e.narrow(dim, i, 1)
    return e / total


def _flipped_kernel(func, args, kwargs):
    """A true convolution (the kernel flipped) where torch correlates: the textbook's definition."""
    weight = args[1]
    return func(args[0], weight.flip(tuple(range(2, weight.dim()))), *args[2:], **kwargs)


def _same_padding_larger_half_first(func, args, kwargs):
    """padding='same' with the odd pixel of an even kernel's padding on the left, not the right."""
    padding = kwargs.get("padding", args[4] if len(args) > 4 else 0)
    if padding != "same":
        return func(*args, **kwargs)
    x, weight = args[0], args[1]
    dilation = kwargs.get("dilation", args[5] if len(args) > 5 else 1)
    nd = weight.dim() - 2
    dilation = (dilation,) * nd if isinstance(dilation, int) else tuple(dilation)
    pads = []
    for d, k in zip(reversed(dilation), reversed(weight.shape[2:])):  # F.pad lists the last axis first
        total = d * (k - 1)
        pads += [total - total // 2, total // 2]
    rest = {k: v for k, v in kwargs.items() if k not in ("padding", "stride")}
    return func(F.pad(x, pads), weight, *args[2:3], 1, 0, *args[5:], **rest)


def _attention_scale_over_e(func, args, kwargs):
    """The default scale as 1/E, a slip for 1/sqrt(E) (the same at E = 1)."""
    if kwargs.get("scale") is None:
        kwargs = {**kwargs, "scale": 1.0 / args[0].shape[-1]}
    return func(*args, **kwargs)


def _method(name: str) -> tuple[Callable, ...]:
    """A Tensor method as TorchFunctionMode sees it: torch.optim's Python code calls these."""
    return (getattr(torch.Tensor, name),)


def _dampening_ignored(func, args, kwargs):
    # SGD's momentum update is buf.mul_(momentum).add_(grad, alpha=1 - dampening): the only
    # in-place add with 0 < alpha < 1 in a step.
    alpha = kwargs.get("alpha")
    return func(*args, **({**kwargs, "alpha": 1.0} if isinstance(alpha, float) and 0 < alpha < 1 else kwargs))


def _l2_doubled(func, args, kwargs):
    # L2 weight decay is grad.add(param, alpha=weight_decay) in SGD and Adam.
    return func(*args, **({**kwargs, "alpha": 2 * kwargs["alpha"]} if "alpha" in kwargs else kwargs))


def _lerp_weight_swapped(func, args, kwargs):
    # Adam's first moment is exp_avg.lerp_(grad, 1 - beta1): the fault uses beta1.
    tensor, end, weight = args
    return func(tensor, end, 1 - weight, **kwargs) if isinstance(weight, float) else func(*args, **kwargs)


F64, LOW = (torch.float64,), (torch.float16, torch.bfloat16)
OPTIMIZER_TESTS = ("tests/test_optimizers.py",)


def _low_precision_scaled(eps_count: float) -> Callable[..., Any]:
    def change(out, args):
        if isinstance(out, torch.Tensor) and out.dtype in LOW:
            return out * (1 + eps_count * torch.finfo(out.dtype).eps)
        return out
    return change

CATALOGUE: tuple[Fault, ...] = (
    Fault("softmax-1e-10-float64", "softmax forward off by a relative 1e-10, float64 only", lambda: _Kernel((aten._softmax,), _scaled(1 + 1e-10, F64))),
    Fault("log-softmax-backward-1e-10-float64", "log_softmax backward off by 1e-10 relative, float64 only", lambda: _Kernel((aten._log_softmax_backward_data,), _scaled(1 + 1e-10, F64))),
    Fault("sigmoid-backward-low-precision", "sigmoid backward 32 eps high, in float16 and bfloat16 only", lambda: _Kernel((aten.sigmoid_backward,), _low_precision_scaled(32))),
    Fault("bce-clamp-at-50", "BCE clamps its logs at -50 instead of -100 (extremal inputs only)", lambda: _Functional((F.binary_cross_entropy,), _bce_clamped_at_50)),
    Fault("sigmoid-forward-1e-6", "sigmoid forward off by a relative 1e-6 (every dtype)", lambda: _Kernel((aten.sigmoid,), _scaled(1 + 1e-6))),
    Fault("relu-gradient-1-at-0", "ReLU's gradient at exactly 0 becomes 1 instead of torch's 0", lambda: _Kernel((aten.threshold_backward,), _relu_gradient_one_at_zero)),
    Fault("leaky-relu-slope-ignored", "LeakyReLU uses the default slope whatever it is given", lambda: _Functional((F.leaky_relu,), _with(negative_slope=0.01))),
    Fault("elu-alpha-ignored", "ELU uses alpha = 1 whatever it is given", lambda: _Functional((F.elu,), _with(alpha=1.0))),
    Fault("gelu-tanh-approximation-ignored", "gelu computes the exact erf form when asked for approximate='tanh'", lambda: _Functional((F.gelu,), _with(approximate="none"))),
    Fault("tanh-backward-1e-10-float64", "tanh backward off by 1e-10 relative, float64 only", lambda: _Kernel((aten.tanh_backward,), _scaled(1 + 1e-10, F64))),
    Fault("hardtanh-max-val-ignored", "hardtanh clamps at 1 whatever max_val it is given", lambda: _Functional((F.hardtanh,), _with(max_val=1.0))),
    Fault("kl-div-batchmean-as-mean", "kl_div's batchmean divides by every element, as 'mean' does", lambda: _Functional((F.kl_div,), _with(reduction=lambda kw: "mean" if kw.get("reduction") == "batchmean" else kw.get("reduction", "mean")))),
    Fault("layer-norm-unbiased-variance", "layer_norm normalises by the unbiased variance", lambda: _Functional((F.layer_norm,), _layer_norm_unbiased)),
    Fault("embedding-padding-gets-gradient", "embedding's padding row receives gradient", lambda: _Functional((F.embedding,), _with(padding_idx=None))),
    Fault("ce-weight-ignored", "cross_entropy ignores class weights", lambda: _Functional((F.cross_entropy,), _with(weight=None))),
    Fault("ce-ignore-index-off", "cross_entropy stops ignoring ignore_index", lambda: _Functional((F.cross_entropy,), _with(ignore_index=-12345))),
    Fault("ce-label-smoothing-off", "cross_entropy drops label smoothing", lambda: _Functional((F.cross_entropy,), _with(label_smoothing=0.0))),
    Fault("ce-mean-over-n-plus-1", "cross_entropy's mean divides by N + 1", lambda: _Functional((F.cross_entropy,), _mean_over_n_plus_one)),
    Fault("nll-weight-ignored", "nll_loss ignores class weights", lambda: _Functional((F.nll_loss,), _with(weight=None))),
    Fault("bce-weight-ignored", "binary_cross_entropy ignores its weight", lambda: _Functional((F.binary_cross_entropy,), _with(weight=None))),
    Fault("bce-logits-pos-weight-ignored", "BCE-with-logits ignores pos_weight", lambda: _Functional((F.binary_cross_entropy_with_logits,), _with(pos_weight=None))),
    Fault("mse-sum-for-mean", "mse_loss sums where it should average", lambda: _Functional((F.mse_loss,), _with(reduction=lambda kw: "sum" if kw.get("reduction", "mean") == "mean" else kw.get("reduction")))),
    Fault("l1-mean-over-n-plus-1", "l1_loss's mean divides by N + 1", lambda: _Functional((F.l1_loss,), _mean_over_n_plus_one)),
    Fault("huber-delta-doubled", "huber_loss uses twice its delta", lambda: _Functional((F.huber_loss,), _with(delta=lambda kw: 2 * kw.get("delta", 1.0)))),
    Fault("smooth-l1-beta-halved", "smooth_l1_loss uses half its beta", lambda: _Functional((F.smooth_l1_loss,), _with(beta=lambda kw: kw.get("beta", 1.0) / 2))),
    Fault("linear-bias-dropped", "linear drops its bias", lambda: _Functional((F.linear,), lambda func, args, kwargs: func(args[0], args[1], None))),
    Fault("softmax-half-accumulation", "softmax accumulates float16/bfloat16 sums in their own precision", lambda: _Functional((F.softmax,), _half_accumulating_softmax)),
    Fault("conv-kernel-flipped", "conv1d/conv2d flip the kernel (a true convolution, not torch's correlation)", lambda: _Functional((F.conv1d, F.conv2d), _flipped_kernel)),
    Fault("conv-same-padding-off-by-one", "padding='same' puts an even kernel's odd padding pixel on the left", lambda: _Functional((F.conv1d, F.conv2d), _same_padding_larger_half_first)),
    Fault("max-pool-dilation-ignored", "max_pool2d pools adjacent elements whatever dilation it is given", lambda: _Functional((F.max_pool2d,), _with(dilation=1))),
    Fault("avg-pool-padding-counted", "avg_pool2d counts the padding in its divisor even with count_include_pad=False", lambda: _Functional((F.avg_pool2d,), _with(count_include_pad=True))),
    Fault("attention-scale-one-over-e", "scaled_dot_product_attention scales by 1/E instead of 1/sqrt(E)", lambda: _Functional((F.scaled_dot_product_attention,), _attention_scale_over_e)),
    Fault("attention-causal-mask-dropped", "scaled_dot_product_attention ignores is_causal", lambda: _Functional((F.scaled_dot_product_attention,), _with(is_causal=False))),
    Fault("mse-backward-1e-10-float64", "mse_loss backward off by 1e-10 relative, float64 only", lambda: _Kernel((aten.mse_loss_backward,), _scaled(1 + 1e-10, F64))),
    Fault("sgd-dampening-ignored", "SGD's momentum ignores dampening", lambda: _Functional(_method("add_"), _dampening_ignored), OPTIMIZER_TESTS),
    Fault("l2-weight-decay-doubled", "SGD's and Adam's L2 weight decay add 2·wd·p to the gradient", lambda: _Functional(_method("add"), _l2_doubled), OPTIMIZER_TESTS),
    Fault("adam-beta1-swapped", "Adam's first moment weighs the new gradient by beta1 instead of 1 - beta1", lambda: _Functional(_method("lerp_"), _lerp_weight_swapped), OPTIMIZER_TESTS),
)
BY_NAME = {fault.name: fault for fault in CATALOGUE}


def get(name: str) -> Fault:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown fault {name!r}; the catalogue has {', '.join(BY_NAME)}") from None
