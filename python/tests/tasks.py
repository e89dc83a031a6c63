"""Task variants for the tests, built from the example task (examples/dspy_task)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import dspy

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "dspy_task"))

import skill_router  # noqa: E402

from skill_fleet.task import BaseTask, Task  # noqa: E402
from skill_fleet.testing import PricedDummyLM  # noqa: E402


def _variant(**changes: Any) -> Task:
    base = dict(
        name="skill_router",
        program=skill_router.program,
        metric=skill_router.metric,
        trainset=skill_router.trainset,
        devset=skill_router.devset,
        lm=skill_router.offline_lm,
    )
    base.update(changes)
    return Task(**base)


def _broken_metric(example: dspy.Example, pred: Any, trace: Any = None) -> float:
    raise ValueError("the metric exploded on purpose")


class _BrokenProgram(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.route = dspy.Predict(skill_router.RouteSkill)

    def forward(self, request: str) -> Any:
        raise KeyError("missing_feature")


def _slow_metric(example: dspy.Example, pred: Any, trace: Any = None) -> float:
    time.sleep(0.25)
    return skill_router.metric(example, pred, trace)


#: The metric raises: a user-code error (not retryable).
broken_metric = _variant(name="broken_metric", metric=_broken_metric)
#: The program raises.
broken_program = _variant(name="broken_program", program=_BrokenProgram)
#: Every metric call takes 0.25 s (to interrupt or fence a run in the middle).
slow = _variant(name="slow", metric=_slow_metric)
#: The LM times out: transient, retryable.
flaky_lm = _variant(name="flaky_lm", lm=lambda: PricedDummyLM(fail_with=TimeoutError("the provider timed out")))
#: A real dspy.LM without an API key.
no_key = _variant(name="no_key", lm=lambda: dspy.LM("openai/gpt-4o-mini", num_retries=0))


class RouterTask(BaseTask):
    """The example task written as a BaseTask subclass; keeps the LMs it handed out."""

    name = "router_class"

    def __init__(self) -> None:
        self.lms: list[PricedDummyLM] = []

    def program(self) -> dspy.Module:
        return skill_router.program()

    def metric(self, example: dspy.Example, pred: Any, trace: Any = None) -> float:
        return skill_router.metric(example, pred, trace)

    def trainset(self) -> list[dspy.Example]:
        return skill_router.trainset()

    def devset(self) -> list[dspy.Example]:
        return skill_router.devset()

    def lm(self) -> dspy.BaseLM:
        lm = skill_router.offline_lm()
        self.lms.append(lm)  # type: ignore[arg-type]
        return lm
