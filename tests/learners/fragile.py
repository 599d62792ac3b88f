"""Right formulas, written without the numerical care torch takes."""
import numpy as np


def softmax(x, dim):
    e = np.exp(x)  # no max shift: overflows for large scores
    return e / e.sum(axis=dim, keepdims=True)


def elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * (np.exp(x) - 1))  # exp(x) - 1 loses digits for tiny x


def binary_cross_entropy(input, target):
    return -np.mean(target * np.log(input) + (1 - target) * np.log(1 - input))  # no clamp at -100


def relu_backward(grad_output, x):
    return grad_output * (x >= 0)  # 1 at exactly 0; torch uses 0
