"""The notebook's own functions (seed 002, 'Practice: Activation Function'), copied as written."""
import numpy as np


# Binary Classification
def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# Multi-class classification
def softmax(x):
    e_x = np.exp(x - np.max(x))  # subtract max for numerical stability
    return e_x / e_x.sum(axis=-1, keepdims=True)
