"""Functions that compute the right thing but hand it back wrongly."""
import numpy as np
import torch


def relu(x):
    np.maximum(x, 0)  # forgot return


def sigmoid(x):
    return [1 / (1 + np.exp(-v)) for v in np.ravel(x)]  # a Python list


def leaky_relu(x, negative_slope=0.01):
    return torch.nn.functional.leaky_relu(torch.tensor(x, dtype=torch.float32), negative_slope)  # a float32 torch tensor


def mse_loss(x):
    return np.mean(x ** 2)  # one argument; torch's takes input and target
