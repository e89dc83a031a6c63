"""The task protocol: what a user gives the worker so it can optimize their DSPy program.

A task provides five things (two are optional):

========================== =================================================================
``program()``              a fresh, uncompiled ``dspy.Module`` (called once per job)
``metric(example, pred,    the score of one prediction: ``float`` in 0..1 or ``bool``
trace=None)``
``trainset()``             ``list[dspy.Example]`` with the inputs marked (``with_inputs``);
                           give each an ``example_id`` field to tie it to skill-fleet's
                           training store (the job's ``selected_example_ids`` pick from them,
                           and the per-example results update their quality scores)
``devset()``               ``list[dspy.Example]`` to score the program before and after
                           (optional: the trainset is used when absent)
``lm()``                   the task LM, e.g. ``dspy.LM("openai/gpt-4o-mini")``; return a new
                           instance on each call (the worker meters each run's LMs)
``reflection_lm()``        optional: GEPA's reflection LM (default: ``lm()``)
``prompt_model()``         optional: MIPROv2's proposer LM (default: the task LM)
========================== =================================================================

Write it any of three ways; ``skill-fleet-worker --task mypkg.tasks:NAME`` accepts each:

1. a :class:`Task` value (plain callables / lists)::

       task = Task(name="qa", program=lambda: dspy.Predict("question -> answer"),
                   metric=exact_match, trainset=load_train, devset=load_dev,
                   lm=lambda: dspy.LM("openai/gpt-4o-mini"))

2. a subclass of :class:`BaseTask` (an instance, or the class: it is instantiated without
   arguments), overriding the methods;

3. a zero-argument function returning either of the above (decorate it with
   :func:`task_factory` to document that intent).

:func:`load_task` resolves ``module.path:attr`` (or ``path/to/file.py:attr``) and
:func:`as_task` turns any of the three into a :class:`ResolvedTask`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import dspy

__all__ = ["BaseTask", "ResolvedTask", "Task", "TaskError", "TaskProtocol", "as_task", "load_task", "task_factory"]

Metric = Callable[..., Any]
Examples = Sequence[Any] | Callable[[], Sequence[Any]]


class TaskError(Exception):
    """The task cannot be loaded or does not follow the protocol."""


@runtime_checkable
class TaskProtocol(Protocol):
    """What the worker needs from a task (``devset``, ``reflection_lm``, ``prompt_model`` optional)."""

    def program(self) -> dspy.Module: ...

    def metric(self, example: dspy.Example, pred: Any, trace: Any = None) -> float | bool: ...

    def trainset(self) -> list[dspy.Example]: ...

    def lm(self) -> Any: ...


class BaseTask:
    """A base class to subclass; override ``program``, ``metric``, ``trainset`` and ``lm``."""

    #: Name reported in job results (default: the class name).
    name: str = ""
    #: A per-example score at or above this counts as passed in ``example_results``.
    pass_threshold: float = 0.5

    def program(self) -> dspy.Module:
        raise NotImplementedError("program() must return a dspy.Module")

    def metric(self, example: dspy.Example, pred: Any, trace: Any = None) -> float | bool:
        raise NotImplementedError("metric(example, pred, trace=None) must return a score")

    def trainset(self) -> list[dspy.Example]:
        raise NotImplementedError("trainset() must return a list of dspy.Example")

    def devset(self) -> list[dspy.Example] | None:
        return None

    def lm(self) -> Any:
        raise NotImplementedError("lm() must return a dspy.LM")

    def reflection_lm(self) -> Any:
        return None

    def prompt_model(self) -> Any:
        return None


@dataclass
class Task:
    """A task as plain values: callables for the LMs and the program, lists or loaders for data."""

    program: Callable[[], Any]
    metric: Metric
    trainset: Examples
    lm: Callable[[], Any]
    devset: Examples | None = None
    reflection_lm: Callable[[], Any] | None = None
    prompt_model: Callable[[], Any] | None = None
    name: str = ""
    pass_threshold: float = 0.5


def task_factory(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Marks a zero-argument function that builds a task (a :class:`Task` or a task object)."""
    fn.__skill_fleet_task_factory__ = True  # type: ignore[attr-defined]
    return fn


@dataclass
class ResolvedTask:
    """A task in one shape, whatever way it was written."""

    name: str
    program: Callable[[], Any]
    metric: Metric
    trainset: Callable[[], list[Any]]
    devset: Callable[[], list[Any] | None]
    lm: Callable[[], Any]
    reflection_lm: Callable[[], Any]
    prompt_model: Callable[[], Any]
    pass_threshold: float = 0.5


def _loader(value: Any) -> Callable[[], Any]:
    if value is None:
        return lambda: None
    if callable(value):
        return value
    return lambda: list(value)


def as_task(obj: Any, name: str | None = None) -> ResolvedTask:
    """Turns a :class:`Task`, a task object or class, or a factory into a :class:`ResolvedTask`."""
    if isinstance(obj, ResolvedTask):
        return obj
    if inspect.isclass(obj):
        obj = obj()
    elif callable(obj) and not isinstance(obj, Task) and not _looks_like_task(obj):
        obj = obj()
        if isinstance(obj, ResolvedTask):
            return obj
    if isinstance(obj, Task):
        return ResolvedTask(
            name=name or obj.name,
            program=obj.program,
            metric=obj.metric,
            trainset=_loader(obj.trainset),
            devset=_loader(obj.devset),
            lm=obj.lm,
            reflection_lm=_loader(obj.reflection_lm) if obj.reflection_lm else (lambda: None),
            prompt_model=_loader(obj.prompt_model) if obj.prompt_model else (lambda: None),
            pass_threshold=obj.pass_threshold,
        )
    missing = [m for m in ("program", "metric", "trainset", "lm") if not callable(getattr(obj, m, None))]
    if missing:
        raise TaskError(
            f"{type(obj).__name__} is not a task: it has no {', '.join(m + '()' for m in missing)} "
            "(see skill_fleet.task for the protocol)"
        )
    none = lambda: None  # noqa: E731
    return ResolvedTask(
        name=name or getattr(obj, "name", "") or type(obj).__name__,
        program=obj.program,
        metric=obj.metric,
        trainset=obj.trainset,
        devset=getattr(obj, "devset", none),
        lm=obj.lm,
        reflection_lm=getattr(obj, "reflection_lm", none),
        prompt_model=getattr(obj, "prompt_model", none),
        pass_threshold=float(getattr(obj, "pass_threshold", 0.5)),
    )


def _looks_like_task(obj: Any) -> bool:
    return all(callable(getattr(obj, m, None)) for m in ("program", "metric", "trainset", "lm"))


def load_task(spec: str) -> ResolvedTask:
    """Loads ``module.path:attr`` (or ``path/to/file.py:attr``; ``attr`` defaults to ``task``).

    The current directory is put on ``sys.path`` first, like ``python -m`` does.
    """
    module_part, _, attr = spec.partition(":")
    attr = attr or "task"
    if not module_part:
        raise TaskError(f"`{spec}` names no module; write module.path:attr")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
        path = Path(module_part).resolve()
        if not path.is_file():
            raise TaskError(f"no file `{module_part}`")
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        mod_spec = importlib.util.spec_from_file_location(path.stem, path)
        if mod_spec is None or mod_spec.loader is None:
            raise TaskError(f"cannot import `{module_part}`")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[path.stem] = module
        mod_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_part)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise TaskError(f"module `{module_part}` has no attribute `{attr}`") from None
    resolved = as_task(obj)
    if not resolved.name:
        resolved.name = spec
    return resolved
