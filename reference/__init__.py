"""byhand's references: the math, in numpy, under torch.nn.functional's names.

Each forward ``f(...)`` has its hand-derived gradient ``f_backward(grad_output, ...)`` beside it.
Everything is computed in float64 from whatever dtype it is given. This package never imports torch:
it is the independent side of every comparison.
"""
from reference.activations import (
    elu,
    elu_backward,
    leaky_relu,
    leaky_relu_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
)
from reference.binary import (
    binary_cross_entropy,
    binary_cross_entropy_backward,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_backward,
)
from reference.classification import cross_entropy, cross_entropy_backward, nll_loss, nll_loss_backward
from reference.layers import linear, linear_backward, one_hot
from reference.regression import (
    huber_loss,
    huber_loss_backward,
    l1_loss,
    l1_loss_backward,
    mse_loss,
    mse_loss_backward,
    smooth_l1_loss,
    smooth_l1_loss_backward,
)
from reference import network, optim  # networks and optimizers by hand (submodules)
from reference.softmaxes import log_softmax, log_softmax_backward, softmax, softmax_backward

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_backward",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "elu",
    "elu_backward",
    "huber_loss",
    "huber_loss_backward",
    "l1_loss",
    "l1_loss_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "linear",
    "linear_backward",
    "log_softmax",
    "log_softmax_backward",
    "mse_loss",
    "mse_loss_backward",
    "nll_loss",
    "nll_loss_backward",
    "one_hot",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "smooth_l1_loss",
    "smooth_l1_loss_backward",
    "softmax",
    "softmax_backward",
]
