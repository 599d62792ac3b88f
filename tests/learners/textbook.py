"""Textbook-correct versions, written the way the course writes them."""
import numpy as np


def softmax(x, dim=-1):
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


def relu(x):
    return np.maximum(x, 0)


def relu_backward(grad_output, x):
    return grad_output * (x > 0)


def mse_loss(input, target):
    return np.mean((input - target) ** 2)


def mse_loss_backward(grad_output, input, target):
    return grad_output * 2 * (input - target) / input.size


def cross_entropy(input, target):
    shifted = input - input.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(target)), target].mean()


def linear(input, weight, bias):
    return input @ weight.T + bias


def linear_backward(grad_output, input, weight, bias):
    return grad_output @ weight, grad_output.T @ input, grad_output.sum(axis=0)
