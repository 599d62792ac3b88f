"""byhand in a notebook: ``import byhand; byhand.check(softmax, conv2d_backward)`` or ``byhand.check(globals())``
checks your functions against torch with the verdicts of ``byhand verify --impl`` (HTML in Jupyter)."""
from checks.learner.notebook import Checked, check

__all__ = ["Checked", "check"]
