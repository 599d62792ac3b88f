"""byhand's references: the math, in numpy, under torch.nn.functional's names.

Each forward ``f(...)`` has its hand-derived gradient ``f_backward(grad_output, ...)`` beside it, and
its facts and sympy derivation declared beside both (reference/facts.py, reference/symbolic.py).
Everything is computed in float64 from whatever dtype it is given. This package never imports torch:
it is the independent side of every comparison.

One module per math family; each lists its public functions in ``__all__``, and they are all
re-exported here. A new op in an existing family needs no change to this file.
"""
from importlib import import_module

FAMILIES = ("activations", "smooth", "softmaxes", "layers", "classification", "binary", "regression", "divergence", "normalization", "embedding", "convolution", "pooling", "attention")

__all__: list[str] = []
for _family in FAMILIES:
    _module = import_module(f"reference.{_family}")
    for _name in _module.__all__:
        globals()[_name] = getattr(_module, _name)
    __all__ += _module.__all__
__all__.sort()
del _family, _module, _name

from reference import network, optim  # noqa: E402  networks and optimizers by hand (submodules)
# A layer of the transformer block, not an F op (so not in __all__), with its derivation as the ops have.
from reference.attention import multi_head_attention, multi_head_attention_backward  # noqa: E402,F401
