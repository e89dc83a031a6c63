"""Cost and tokens come from the LMs' own history, summed over every LM a run used."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import dspy
import pytest
import tasks

from skill_fleet.accounting import UsageMeter, usage_of_history
from skill_fleet.runner import run_job
from skill_fleet.task import as_task
from skill_fleet.testing import PricedDummyLM


def test_history_entries_are_summed_and_cache_hits_are_free() -> None:
    entries = [
        {"model": "a", "usage": {"prompt_tokens": 100, "completion_tokens": 10}, "cost": 0.002},
        {"model": "a", "usage": {"prompt_tokens": 50, "completion_tokens": 5}, "cost": None},  # price unknown
        {"model": "b", "usage": {}, "cost": 0.5},  # a cache hit keeps the old cost: not spent now
        {"model": "b", "usage": {"input_tokens": 7, "output_tokens": 3}, "cost": 0.001},
    ]
    u = usage_of_history(entries)
    assert (u.calls, u.cached_calls, u.unpriced_calls) == (4, 1, 1)
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (157, 18, 175)
    assert u.cost_usd == pytest.approx(0.003)
    assert u.by_model["b"]["calls"] == 2 and u.by_model["b"]["cost_usd"] == pytest.approx(0.001)


def test_the_priced_lm_reports_usage_and_cost_into_history() -> None:
    lm = PricedDummyLM(lambda messages, fields: {"answer": "blue"}, input_usd_per_mtok=1.0, output_usd_per_mtok=2.0)
    with dspy.context(lm=lm):
        pred = dspy.Predict("question -> answer")(question="Which colour is the sky?")
    assert pred.answer == "blue"
    entry = lm.history[-1]
    charged = lm.ledger[-1]
    assert entry["usage"]["prompt_tokens"] == charged.prompt_tokens > 0
    assert entry["usage"]["completion_tokens"] == charged.completion_tokens > 0
    assert entry["cost"] == pytest.approx((charged.prompt_tokens * 1.0 + charged.completion_tokens * 2.0) / 1e6)


def test_the_meter_counts_copies_deep_copies_and_threads_once() -> None:
    lm = PricedDummyLM(lambda messages, fields: {"answer": "x"})
    with dspy.context(lm=lm):
        dspy.Predict("q -> answer")(q="before the meter")  # not counted
    meter = UsageMeter()
    meter.attach(lm)
    predict = dspy.Predict("q -> answer")

    def call(which: Any, i: int) -> None:
        with dspy.context(lm=which):
            predict(q=f"question {i}")

    copies = [lm, lm.copy(temperature=1.0), lm.copy(rollout_id=2)]
    import copy

    copies.append(copy.deepcopy(lm))
    threads = [threading.Thread(target=call, args=(copies[i % 4], i)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    usage = meter.sweep()
    meter.detach()
    assert usage.calls == 20
    assert usage.cost_usd == pytest.approx(sum(e.cost for e in lm.ledger[1:]))
    assert meter not in lm.callbacks


def test_a_run_reports_what_its_lms_charged(tmp_path: Path) -> None:
    task = tasks.RouterTask()
    for optimizer in ("bootstrap_fewshot", "miprov2"):
        payload = {
            "optimizer": optimizer,
            "variant": "light",
            "config": {"max_bootstrapped_demos": 2, "max_labeled_demos": 2, "num_threads": 2},
        }
        _, report = run_job(as_task(task), payload, output_dir=tmp_path, job_id=optimizer)
        lm = task.lms[-1]
        assert report.actual_cost > 0
        assert report.actual_cost == pytest.approx(lm.charged_usd, rel=1e-9)
        assert report.tokens["prompt"] == sum(e.prompt_tokens for e in lm.ledger)
        assert report.tokens["completion"] == sum(e.completion_tokens for e in lm.ledger)
        assert report.lm_calls == len(lm.ledger)
        assert report.tokens["total"] == report.tokens["prompt"] + report.tokens["completion"]
