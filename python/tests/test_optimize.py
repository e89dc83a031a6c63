"""``skill_fleet.optimize()``: recommend, job, run in-process, complete — one call."""

from __future__ import annotations

from pathlib import Path

import dspy
import pytest
from conftest import Server
from tasks import skill_router

import skill_fleet
from skill_fleet.client import InvalidRequest


def _claim_by_id_supported(server: Server) -> bool:
    try:
        server.client().claim("probe", ["no-such-type"], job_id="00000000-0000-0000-0000-000000000000")
        return True
    except InvalidRequest as e:
        return "id" not in e.fields
    except Exception:
        return True


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
    other = api.create_job("optimization", payload={"optimizer": "gepa"}, task="someone else's")
    kwargs = dict(
        url=server.url, lm=skill_router.offline_lm(), optimizer="reflection_metrics", output_dir=str(tmp_path)
    )
    if _claim_by_id_supported(server):
        _, report = skill_fleet.optimize(skill_router.program(), skill_router.trainset(), skill_router.metric, **kwargs)
        assert report.job_id != other["id"]
    else:
        with pytest.raises(skill_fleet.OptimizeError, match="cannot claim a job by id"):
            skill_fleet.optimize(skill_router.program(), skill_router.trainset(), skill_router.metric, **kwargs)
    assert api.get_job(other["id"])["status"] == "pending"
    assert api.get_job(other["id"])["attempt"] == 0


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
