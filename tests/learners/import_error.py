import numpy as np
import my_helpers  # not installed


def relu(x):
    return np.maximum(x, 0)
