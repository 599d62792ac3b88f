"""The control: torch's own functionals under every registry name, forward and backward, with torch's
signatures. Torch is always right about itself, so every function here must get ✓: where one does
not, byhand's learner check is wrong (tests/test_learner_corpus.py).

Each forward converts its arrays to float64 tensors (integer arrays to int64), calls the functional
and returns numpy; each ``_backward`` runs autograd for the upstream gradient and returns the
gradients of the op's differentiable inputs (a tuple where it has several).
"""
import inspect

import numpy as np
import torch

from checks.registry import REGISTRY


def _tensor(value, grad=False):
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype.kind == "b":
        return torch.from_numpy(value.copy())
    if value.dtype.kind in "iu":
        return torch.from_numpy(value.astype(np.int64))
    # a float32 or float16 array keeps its dtype: rms_norm's eps=None is the input dtype's epsilon
    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16}.get(value.dtype, torch.float64)
    return torch.tensor(value, dtype=dtype, requires_grad=grad)


def _bound(spec, args, kwargs):
    signature = inspect.signature(spec.forward)
    bound = signature.bind(*args, **kwargs)
    return {name: bound.arguments.get(name, p.default) for name, p in signature.parameters.items()}


def _call(spec, arguments, grads=()):
    """The functional on the arguments: the required ones by position, the others by the keywords it takes."""
    tensors = {name: _tensor(v, grad=name in grads) for name, v in arguments.items()}
    required = [n for n, p in inspect.signature(spec.forward).parameters.items() if p.default is p.empty]
    try:
        takes = set(inspect.signature(spec.functional).parameters)
    except (TypeError, ValueError):  # a builtin: it takes torch's names
        takes = set(tensors)
    keywords = {k: v for k, v in tensors.items() if k not in required and (k in takes or "kwargs" in takes)}
    return spec.functional(*(tensors[n] for n in required), **keywords), tensors


def _forward(spec):
    def forward(*args, **kwargs):
        arguments = _bound(spec, args, kwargs)
        out, tensors = _call(spec, arguments)
        for name, value in arguments.items():  # torch updates running statistics in place: so must we
            if isinstance(value, np.ndarray) and value.dtype.kind == "f" and isinstance(tensors.get(name), torch.Tensor):
                value[...] = tensors[name].detach().numpy()
        return out.detach().double().numpy()

    forward.__signature__ = inspect.signature(spec.forward)
    forward.__name__ = spec.name
    return forward


def _backward(spec):
    def backward(grad_output, *args, **kwargs):
        arguments = _bound(spec, args, kwargs)
        present = [n for n in spec.grad_inputs if arguments.get(n) is not None]
        out, tensors = _call(spec, arguments, grads=present)
        out.backward(torch.as_tensor(np.asarray(grad_output, dtype=np.float64)).to(out.dtype).reshape(out.shape))
        grads = [None if arguments.get(n) is None else (torch.zeros_like(tensors[n]) if tensors[n].grad is None else tensors[n].grad).double().numpy()
                 for n in spec.grad_inputs]
        return tuple(grads) if len(grads) > 1 else grads[0]

    backward.__signature__ = inspect.signature(spec.backward)
    backward.__name__ = f"{spec.name}_backward"
    return backward


for _spec in REGISTRY:
    globals()[_spec.name] = _forward(_spec)
    if _spec.differentiable:
        globals()[f"{_spec.name}_backward"] = _backward(_spec)
