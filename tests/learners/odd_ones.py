"""Less common shapes of a learner's module: no bias, a gradient tuple short by one, an exit."""
import sys

import numpy as np


def linear(input, weight):
    return input @ weight.T  # a Linear layer without bias: torch's bias=None


def linear_backward(grad_output, input, weight, bias):
    return grad_output @ weight, grad_output.T @ input  # forgets grad_bias


def relu(x):
    if x.size == 0:
        sys.exit("empty!")
    return np.maximum(x, 0)


def sigmoid(x):
    return np.array(["%.3f" % v for v in np.ravel(1 / (1 + np.exp(-x)))])  # strings, not numbers
