"""Mistakes students really make."""
import numpy as np


def cross_entropy(input, target):
    shifted = input - input.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(target)), target].sum()  # sums instead of averaging


def cross_entropy_backward(grad_output, input, target):
    e = np.exp(input - input.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    p[np.arange(len(target)), target] -= 1
    return grad_output * p  # forgets the 1/N of the mean


def mse_loss(input, target):
    return (input - target) ** 2  # forgets the mean


def sigmoid_backward(grad_output, x):
    s = 1 / (1 + np.exp(-x))
    return s * (1 - s)  # forgets grad_output


def l1_loss(input, target):
    return np.mean(input - target)  # forgets the absolute value


def linear(input, weight, bias):
    return input @ weight + bias  # forgets to transpose the weight
