"""Functions byhand does not know."""


def swiglu(x):
    return x


def my_softmax(x):
    return x
