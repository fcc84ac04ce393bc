"""The tasks hitl knows: each one an object that satisfies `Task`, registered beside its code.

A task's folder (hitl/tasks/<name>/) holds what differs between tasks: how it describes an
image, which images are its candidates, its next-image strategies, how it scores suspect
labels, its stats, exports, learners and its page tab. Its class is registered with
`@register_task` (as timm's `register_model`), and everything else asks `get_task(name)`, never
`if task == ...`, so a missed case raises instead of quietly acting as another task.

Importing this package is cheap (numpy, Pillow): learners, predictors and tabs import torch,
timm or Gradio inside the methods that return them.

Before the first label sets a session's task, `current_task(None)` is the task registered with
`default=True` (classification): the one the trainer prepares features for and `next`, `stats`
and the REST API answer for until then. That is a declared choice, made here only.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import pandas as pd

    from hitl.strategies import Strategies


class UnknownTask(ValueError):
    """A task name hitl has no entry for."""


class Task(Protocol):
    """What a task offers; every registered task has each of these (tests/test_tasks.py)."""

    name: str                       # its registry name, stored as the session's task
    demo_classes: tuple[str, ...]   # the generated demo set's classes for this task
    exports: tuple[str, ...]        # the export formats (hitl.export) that hold its labels
    score: str                      # the models column its learning curve plots
    strategies: Strategies          # its next-image strategies, the page's default first

    def candidates(self, store, user: str) -> dict:
        """Its unlabeled, unskipped, readable images nobody else leases, as arrays
        ("ids" first) with the predictions its strategies and review read."""

    def open_pool(self, store, user: str) -> Any | None:
        """What its strategies order (hitl.strategies.Pick.pool); None when no image is
        open for `user`."""

    def describe(self, view: dict, state: dict, classes: list) -> None:
        """Put its label and prediction of one image (Store.image_state) into the view the
        page and the API show."""

    def score_suspects(self, store, cache, class_ids: list[int]) -> pd.DataFrame | None:
        """Out-of-sample scores of its labels from the frozen learner's feature cache (the
        suspects table's columns), or None when there is too little to score."""

    def learner(self, mode: str) -> type:
        """Its learner class for a training mode ('frozen' or 'finetune')."""

    def predictor(self) -> type:
        """The hitl.model_file.Predictor subclass a model file of this task loads into."""

    def stats(self, session, live_window: int = 50) -> dict:
        """The numbers its stats panel and the stats() endpoint show."""

    def board(self, service) -> dict:
        """Build its labeling tab's content (inside the Blocks' gr.Tab); returns the tab's
        {"refresh": (fn, inputs, outputs)}."""


TASKS: dict[str, Task] = {}   # the registry: name -> task object, in registration order
_default: list[str] = []
T = TypeVar("T", bound=type)


def register_task(cls: T | None = None, *, default: bool = False):
    """Class decorator: register one instance of the class under its `name`.
    `default=True` declares the task a session works on before its task is set."""
    def add(cls: T) -> T:
        task = cls()
        if task.name in TASKS:
            raise ValueError(f"Task {task.name!r} is registered twice.")
        if default and _default:
            raise ValueError(f"Two default tasks: {_default[0]!r} and {task.name!r}.")
        TASKS[task.name] = task
        if default:
            _default.append(task.name)
        return cls
    return add if cls is None else add(cls)


def task_names() -> list[str]:
    return list(TASKS)


def get_task(name: str | None) -> Task:
    """The registered task `name`; an unknown (or missing) task raises UnknownTask."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise UnknownTask(f"Unknown task {name!r}; hitl knows: {', '.join(TASKS)}.") from None


def current_task(name: str | None) -> Task:
    """The task a session works on: `name` (Store.task()), or before the first label sets one,
    the task registered with default=True."""
    return get_task(_default[0] if name is None else name)


def of_mode(task: str, mode: str, learners: dict[str, type]) -> type:
    """The learner class of `mode` in a task's {mode: class}; an unknown mode raises."""
    if mode not in learners:
        raise ValueError(f"Unknown training mode {mode!r} for {task}; choose one of: "
                         + ", ".join(learners) + ".")
    return learners[mode]


# The built-in tasks register themselves on import (after the registry above exists).
from hitl.tasks import classification, segmentation  # noqa: E402,F401
