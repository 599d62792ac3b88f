"""A student who writes the transformer activations elementwise, GELU with math.erf through np.vectorize."""
import math

import numpy as np

erf = np.vectorize(math.erf, otypes=[float])  # otypes: np.vectorize cannot guess them on an empty array


def gelu(input):
    return 0.5 * input * (1 + erf(input / math.sqrt(2)))


def gelu_backward(grad_output, input):
    cdf = 0.5 * (1 + erf(input / math.sqrt(2)))
    pdf = np.exp(-0.5 * input ** 2) / math.sqrt(2 * math.pi)
    return grad_output * (cdf + input * pdf)


def silu(input):
    return input / (1 + np.exp(-input))


def silu_backward(grad_output, input):
    s = 1 / (1 + np.exp(-input))
    return grad_output * (s + input * s * (1 - s))
