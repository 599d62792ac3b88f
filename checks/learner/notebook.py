"""The learner's check where the course happens, in a notebook: ``byhand.check(softmax, conv2d_backward)``
or ``byhand.check(globals())``. The verdicts are the same as ``byhand verify --impl``'s; in Jupyter
they render as HTML (rich's own export of the same text), elsewhere as that text."""
from __future__ import annotations

import inspect
import io
import types
from dataclasses import dataclass
from typing import Any, Callable

from rich.console import Console
from rich.markup import escape

from checks import learner
from checks.learner.parallel import Checks
from checks.learner.stages import DEFAULT_EXAMPLES

_STYLE = {learner.AGREES: "green", learner.WRONG: "bold red", learner.FRAGILE: "yellow", learner.NOT_CHECKED: "dim"}


@dataclass(frozen=True)
class Checked:
    """The verdicts on a notebook's functions, and what byhand made of their names."""

    verdicts: tuple[learner.Verdict, ...]
    names: learner.Names

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    def _console(self) -> Console:
        console = Console(record=True, width=110, file=io.StringIO())  # recorded, exported as text or HTML
        for line in self.names.lines():
            console.print(f"note: {escape(line)}", highlight=False, soft_wrap=True)
        for v in self.verdicts:
            console.print(f"[{_STYLE[v.status]}]{v.mark}[/] {escape(v.explanation)}", highlight=False, soft_wrap=True)
            for note in v.notes:
                console.print(f"  note: {escape(note)}", highlight=False, soft_wrap=True)
        if not self.verdicts:
            console.print(f"none of these is a function byhand knows. byhand knows: {', '.join(learner.known_names())}", highlight=False, soft_wrap=True)
        counts = {status: sum(v.status == status for v in self.verdicts) for status in _STYLE}
        console.print(f"{len(self.verdicts)} functions checked: {counts[learner.AGREES]} agree, {counts[learner.WRONG]} wrong, "
                      f"{counts[learner.FRAGILE]} fragile at an edge", highlight=False)
        return console

    def __str__(self) -> str:
        return self._console().export_text()

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self._console().export_html(inline_styles=True, code_format="<pre style=\"white-space: pre-wrap; font-family: monospace\">{code}</pre>")


def _namespace(items: tuple[Any, ...]) -> types.ModuleType:
    """The functions given (or a namespace's own functions: ``globals()``, a module) as one module."""
    module = types.ModuleType("__main__")
    for item in items:
        if isinstance(item, (dict, types.ModuleType)):
            space = vars(item) if isinstance(item, types.ModuleType) else item
            home = space.get("__name__", "__main__")
            for name, value in space.items():
                if inspect.isfunction(value) and getattr(value, "__module__", None) == home and not name.startswith("_"):
                    setattr(module, name, value)
        elif callable(item):
            setattr(module, getattr(item, "__name__", repr(item)), item)
        else:
            raise TypeError(f"byhand.check takes functions, globals() or a module, got {type(item).__name__}")
    return module


def check(*functions: Callable[..., Any] | dict | types.ModuleType, examples: int = DEFAULT_EXAMPLES, jobs: int | None = None) -> Checked:
    """Check these functions (or ``globals()``) against torch: the verdicts of ``byhand verify --impl``,
    side by side in ``jobs`` processes (default: one per core; see checks/learner/parallel.py)."""
    module = _namespace(functions)
    verdicts = tuple(Checks(module, learner.functions(module), examples=examples, jobs=jobs))
    return Checked(verdicts, learner.names(module, own=[n for n in vars(module) if not n.startswith("__")]))
