"""Functions byhand does not know."""


def tanh(x):
    return x


def my_softmax(x):
    return x
