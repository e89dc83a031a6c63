"""The optimizer factory: one DSPy optimizer per name, built with the job's config."""

from __future__ import annotations

from typing import Any

import dspy
import pytest
import tasks

from skill_fleet.optimizers import (
    CAN_RUN,
    OptimizerUnavailable,
    UnknownOptimizer,
    build_optimizer,
    canonical_name,
    gepa_budget,
    gepa_metric,
)
from skill_fleet.runner import RunFailed, run_job
from skill_fleet.task import as_task
from skill_fleet.testing import PricedDummyLM

CONFIG = {
    "auto": "medium",
    "max_bootstrapped_demos": 3,
    "max_labeled_demos": 5,
    "num_threads": 8,
    "num_candidates": 4,
    "num_iters": 2,
}


def metric(example: Any, pred: Any, trace: Any = None) -> float:
    return 1.0


def build(name: str, variant: str | None = None, lm: Any = None, **kw: Any) -> Any:
    lm = lm or PricedDummyLM()
    return build_optimizer(name, CONFIG, variant, metric=metric, task_lm=lm, trainset_size=16, valset_size=8, **kw)


def test_names() -> None:
    assert canonical_name("MIPROv2") == "miprov2"
    assert canonical_name("bootstrap-fewshot") == "bootstrap_fewshot"
    assert canonical_name("BootstrapFinetune") == "bootstrap_finetune"
    assert set(CAN_RUN) == {"gepa", "miprov2", "bootstrap_fewshot", "bootstrap_finetune", "reflection_metrics"}
    with pytest.raises(UnknownOptimizer, match="unknown optimizer `simba`"):
        canonical_name("simba")


def test_gepa_budget_comes_from_candidates_and_iterations() -> None:
    plan = build("gepa", max_threads=2)
    assert isinstance(plan.optimizer, dspy.GEPA)
    assert plan.optimizer.max_metric_calls == gepa_budget(4, 2, 8) == 8 + 8 * (6 + 8)
    assert plan.expected_metric_calls == plan.optimizer.max_metric_calls
    assert plan.config == {"num_threads": 2, "num_candidates": 4, "num_iters": 2, "max_metric_calls": 120}
    assert plan.variant is None
    # The task LM reflects when the task gives no reflection LM.
    assert plan.optimizer.reflection_lm is not None


def test_gepa_metric_takes_five_arguments() -> None:
    calls = []

    def three(gold: Any, pred: Any, trace: Any = None) -> float:
        calls.append((gold, pred, trace))
        return 0.5

    five = gepa_metric(three)
    assert five("g", "p", "t", "name", []) == 0.5 and calls == [("g", "p", "t")]

    def already(gold: Any, pred: Any, trace: Any, pred_name: Any, pred_trace: Any) -> float:
        return 1.0

    assert gepa_metric(already) is already


@pytest.mark.parametrize("variant,expected", [("light", "light"), ("heavy", "heavy"), (None, "medium")])
def test_miprov2_level_from_the_variant_or_the_config(variant: str | None, expected: str) -> None:
    plan = build("miprov2", variant)
    assert isinstance(plan.optimizer, dspy.MIPROv2)
    assert plan.optimizer.auto == expected and plan.variant == expected
    assert plan.optimizer.max_bootstrapped_demos == 3 and plan.optimizer.max_labeled_demos == 5
    assert plan.config["auto"] == expected


def test_miprov2_rejects_an_unknown_level() -> None:
    with pytest.raises(ValueError, match="variant `extreme`"):
        build("miprov2", "extreme")


def test_bootstrap_fewshot_and_reflection_metrics() -> None:
    plan = build("bootstrap_fewshot")
    assert isinstance(plan.optimizer, dspy.BootstrapFewShot)
    assert (plan.optimizer.max_bootstrapped_demos, plan.optimizer.max_labeled_demos, plan.optimizer.max_rounds) == (
        3,
        5,
        1,
    )
    plan = build("reflection_metrics")
    assert isinstance(plan.optimizer, dspy.LabeledFewShot) and plan.optimizer.k == 5
    assert plan.config["compile"] == "LabeledFewShot"


def test_bootstrap_finetune_needs_an_lm_that_can_finetune() -> None:
    with pytest.raises(OptimizerUnavailable, match="does not support fine-tuning"):
        build("bootstrap_finetune")
    plan = build("bootstrap_finetune", lm=dspy.LM("openai/gpt-4o-mini-2024-07-18"))
    assert isinstance(plan.optimizer, dspy.BootstrapFinetune)


def test_unknown_optimizer_fails_the_run_without_retry() -> None:
    with pytest.raises(RunFailed) as info:
        run_job(as_task(tasks.RouterTask), {"optimizer": "simba", "config": {}})
    assert not info.value.retry
    assert "unknown optimizer `simba`" in info.value.reason
