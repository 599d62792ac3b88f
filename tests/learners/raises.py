"""A function that raises on some inputs."""
import numpy as np


def l1_loss(input, target):
    if input.ndim > 1:
        raise NotImplementedError("only vectors")
    return np.mean(np.abs(input - target))
