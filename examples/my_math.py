"""A learner's own versions of a few PyTorch functions, written while following the course.

Check them against torch with:

    byhand verify --impl examples/my_math.py
    pytest --impl examples/my_math.py

One of them has a deliberate mistake that byhand finds. (Which one? Run it and see.)
"""
import numpy as np


def sigmoid(input):
    return 1 / (1 + np.exp(-input))


def sigmoid_backward(grad_output, input):
    s = sigmoid(input)
    return grad_output * s * (1 - s)


def relu(input):
    return np.where(input < 0, 0.0, input)


def relu_backward(grad_output, input):
    # torch lets the gradient through where x is NaN (its test is x <= 0), so: zero where x <= 0.
    return np.where(input <= 0, 0.0, grad_output)


def softmax(input, dim):
    e = np.exp(input)
    return e / e.sum(axis=dim, keepdims=True)


def mse_loss(input, target):
    return np.mean((input - target) ** 2)


def mse_loss_backward(grad_output, input, target):
    return 2 * (input - target) * grad_output / np.size(input)
