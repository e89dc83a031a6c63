"""``skill_fleet.optimize()``: recommend, job, run in-process, complete — one call."""

from __future__ import annotations

from pathlib import Path

import dspy
import pytest
from conftest import Server
from tasks import skill_router

import skill_fleet
from skill_fleet.client import Client


def test_optimize_runs_the_recommendation_and_records_the_outcome(server: Server, tmp_path: Path) -> None:
    lm = skill_router.offline_lm()
    trainset, devset = skill_router.trainset(), skill_router.devset()
    program = skill_router.program()
    compiled, report = skill_fleet.optimize(
        program,
        trainset,
        skill_router.metric,
        devset=devset,
        budget_usd=10,
        quality_target=0.9,
        url=server.url,
        lm=lm,
        output_dir=str(tmp_path),
        max_threads=2,
        domain="routing",
    )
    assert isinstance(report, skill_fleet.RunReport)
    assert report.optimizer == "miprov2" and report.variant == "light"
    assert (report.score_before, report.score_after) == (0.625, 1.0)
    assert report.actual_cost == pytest.approx(lm.charged_usd)
    assert isinstance(compiled, dspy.Module) and compiled is not program
    assert program.demos == []  # the caller's program is not changed
    assert Path(report.program_path or "").is_file()

    api = server.client()
    job = api.get_job(report.job_id or "")
    assert job["status"] == "completed"
    assert job["payload"]["decision_id"] == report.decision_id
    assert job["payload"]["auto_selected"] is True
    assert job["payload"]["selected_example_ids"] == [e.example_id for e in trainset]
    metrics = api.selector_metrics(since="all")
    assert metrics["outcomes"] == 1 and metrics["auto_selected"] == 1
    assert metrics["acceptance"]["rate"] == 1.0


def test_optimize_can_run_another_optimizer(server: Server, tmp_path: Path) -> None:
    compiled, report = skill_fleet.optimize(
        skill_router.program(),
        skill_router.trainset(),
        skill_router.metric,
        url=server.url,
        lm=skill_router.offline_lm(),
        optimizer="bootstrap_fewshot",
        output_dir=str(tmp_path),
    )
    assert report.optimizer == "bootstrap_fewshot"
    assert report.evaluated_on.startswith("trainset")  # no devset given
    job = server.client().get_job(report.job_id or "")
    assert job["payload"]["auto_selected"] is False


def test_optimize_never_takes_another_job(server: Server, tmp_path: Path) -> None:
    api = server.client()
    # Older pending optimization jobs: a plain claim would take the first one.
    others = [api.create_job("optimization", payload={"optimizer": "gepa"}, task="someone else's") for _ in range(2)]
    _, report = skill_fleet.optimize(
        skill_router.program(),
        skill_router.trainset(),
        skill_router.metric,
        url=server.url,
        lm=skill_router.offline_lm(),
        optimizer="reflection_metrics",
        output_dir=str(tmp_path),
    )
    assert report.job_id not in [o["id"] for o in others]
    assert api.get_job(report.job_id or "")["status"] == "completed"
    for other in others:
        job = api.get_job(other["id"])
        assert (job["status"], job["attempt"], job["version"]) == ("pending", 0, other["version"]), job


def test_a_job_taken_before_optimize_claims_it_is_cancelled(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker polling for ``optimization`` jobs may claim the new job first: optimize()
    raises, saying so, and cancels the job (that worker cannot run it right)."""
    claim = Client.claim

    def a_worker_got_there_first(self: Client, worker: str, *a: object, job_id: str | None = None, **kw: object):
        assert job_id is not None  # optimize() always claims by id
        taken = claim(self, "w-poller", ["optimization"], 60, job_id=job_id)
        assert taken is not None
        return claim(self, worker, *a, job_id=job_id, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Client, "claim", a_worker_got_there_first)
    with pytest.raises(skill_fleet.OptimizeError, match=r"is running: worker w-poller holds it .*; it was cancelled"):
        skill_fleet.optimize(
            skill_router.program(),
            skill_router.trainset(),
            skill_router.metric,
            url=server.url,
            lm=skill_router.offline_lm(),
            optimizer="reflection_metrics",
            output_dir=str(tmp_path),
        )
    (job,) = server.client().list_jobs()["jobs"]
    assert job["status"] == "cancelled" and job["result"] is None


def test_a_failed_run_raises_with_the_reason(server: Server, tmp_path: Path) -> None:
    def broken(example: dspy.Example, pred: object, trace: object = None) -> float:
        raise RuntimeError("bad metric")

    with pytest.raises(skill_fleet.OptimizeError, match="RuntimeError: bad metric"):
        skill_fleet.optimize(
            skill_router.program(),
            skill_router.trainset(),
            broken,
            url=server.url,
            lm=skill_router.offline_lm(),
            output_dir=str(tmp_path),
        )
    jobs = server.client().list_jobs(status="failed")["jobs"]
    assert len(jobs) == 1 and "bad metric" in jobs[0]["error"]
