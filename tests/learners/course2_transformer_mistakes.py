"""A student whose attention forgets the 1/sqrt(d) scale, and whose embedding gradient uses
grad[idx] += g."""
import numpy as np


def softmax_lastdim(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def scaled_dot_product_attention(query, key, value):
    scores = query @ key.swapaxes(-1, -2)  # no division by sqrt(d)
    return softmax_lastdim(scores) @ value


def embedding(input, weight):
    return weight[input]


def embedding_backward(grad_output, input, weight):
    grad = np.zeros_like(weight)
    grad[input] += grad_output  # a repeated index is added once only
    return grad
