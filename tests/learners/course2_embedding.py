"""A student who writes the embedding lookup as fancy indexing and its gradient as a scatter-add."""
import numpy as np


def embedding(input, weight, padding_idx=None):
    return weight[input]


def embedding_backward(grad_output, input, weight, padding_idx=None):
    grad = np.zeros_like(weight)
    np.add.at(grad, input.reshape(-1), grad_output.reshape(-1, weight.shape[1]))
    if padding_idx is not None:
        grad[padding_idx] = 0  # the padding row is never trained
    return grad
