"""End to end against a real ``skill-fleet serve``: recommend → job → the worker claims it → a
real DSPy compile on the example task (offline LM) → complete → the outcome is in the selector
metrics, the training examples' scores moved as the update rule says, and ``rules calibrate``
proposes constants for the optimizers that ran."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE_TASK, ROOT, Server, job_payload, train_ids, worker_cmd

from skill_fleet.client import Client
from skill_fleet.task import load_task
from skill_fleet.worker import Worker

# training.update in rules/training.yaml
QUALITY_ALPHA, SUCCESS_ALPHA, NEUTRAL = 0.2, 0.1, 0.5


class RecordingClient(Client):
    """Keeps every heartbeat's progress."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.beats: list[dict[str, Any]] = []

    def heartbeat(self, job_id: str, lease_token: str, **kw: Any) -> dict[str, Any]:
        self.beats.append(dict(kw))
        return super().heartbeat(job_id, lease_token, **kw)


def parts(api: Client) -> dict[str, dict[str, float]]:
    """Each training example's quality and success rate, as ``training select`` shows them."""
    return {s["example_id"]: s["parts"] for s in api.training_select(max=1000, min_score=0)["selected"]}


def check_completed(job: dict[str, Any], optimizer: str, n_train: int) -> dict[str, Any]:
    assert job["status"] == "completed", job
    r = job["result"]
    assert r["optimizer_used"] == optimizer
    # The offline LM knows few categories zero-shot (5 of 8 on the devset) and all of them
    # with demonstrations or an instruction that lists them: optimizing must find that.
    assert r["score_before"] == pytest.approx(0.625)
    assert r["score_after"] == pytest.approx(1.0) == r["quality"]
    assert r["actual_cost"] > 0
    assert r["tokens"]["total"] == r["tokens"]["prompt"] + r["tokens"]["completion"] > 0
    assert r["lm_calls"] > 0
    assert 0 < r["actual_time_minutes"] < 5
    assert Path(r["program_path"]).is_file()
    assert len(r["example_results"]) == n_train
    assert all(e["passed"] and e["score"] == 1.0 for e in r["example_results"])
    assert job["progress"]["percent"] == 100.0
    assert job["progress"]["phase"] == "completed"  # the worker's last heartbeat, before complete
    return r


def test_miprov2_and_bootstrap_fewshot_close_the_loop(server: Server, tmp_path: Path) -> None:
    api = server.client()
    ids = train_ids()
    before = parts(api)
    decision = api.recommend(trainset_size=len(ids), budget_usd=10, quality_target=0.9)
    assert (decision["recommended"], decision["config"]["auto"]) == ("miprov2", "light")
    assert "bootstrap_fewshot" in [a["optimizer"] for a in decision["alternatives"]]
    # The recommended MIPROv2 light, and the alternative BootstrapFewShot, on the same decision.
    mipro = api.create_job("optimization", payload=job_payload(decision, ids=ids, num_threads=2), task="skill_router")
    boot = api.create_job(
        "optimization", payload=job_payload(decision, "bootstrap_fewshot", ids=ids), task="skill_router"
    )

    out = subprocess.run(
        worker_cmd()
        + ["--url", server.url, "--task", EXAMPLE_TASK, "--once", "--quiet", "--output-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("completed:") == 2, out.stdout

    r = check_completed(api.get_job(mipro["id"]), "miprov2", len(ids))
    assert r["variant"] == "light" and r["config"]["auto"] == "light"
    assert r["search"]["trials_planned"] >= 1 and r["search"]["trials"] >= 1
    b = check_completed(api.get_job(boot["id"]), "bootstrap_fewshot", len(ids))
    # The saved program loads, with the demos BootstrapFewShot found.
    from tasks import skill_router  # examples/dspy_task/skill_router.py

    program = skill_router.program()
    program.load(b["program_path"])
    assert len(program.demos) > 0

    # The outcomes link to the decision and show in the selector metrics.
    metrics = api.selector_metrics(since="all")
    assert metrics["outcomes"] == 2, metrics
    assert metrics["auto_selected"] == 2
    assert {"miprov2", "bootstrap_fewshot"} <= set(metrics["accuracy"]), metrics
    # The live confidence moved: one MIPROv2 outcome in `general`, quality >= 0.8, so
    # min(0.95, 0.75 + 0.1 x 1) = 0.85, x 0.8 for fewer than 20 examples = 0.68 (it was 0.6).
    again = api.recommend(trainset_size=len(ids), budget_usd=10, quality_target=0.9)
    assert (decision["confidence"], again["confidence"]) == (0.6, 0.68), (decision, again)
    assert metrics["decisions"]["total"] == 1

    # Each training example got two results (score 1, passed): the moving averages moved.
    after = parts(api)
    for i in ids:
        q, s = before[i]["quality"], before[i]["success_rate"]
        for _ in range(2):
            q = (1 - QUALITY_ALPHA) * q + QUALITY_ALPHA * 1.0
            s = (1 - SUCCESS_ALPHA) * (NEUTRAL if s is None else s) + SUCCESS_ALPHA * 1.0
        assert after[i]["quality"] == pytest.approx(q, abs=1e-3), i
        assert after[i]["success_rate"] == pytest.approx(s, abs=1e-3), i
    untouched = next(i for i in before if i not in ids)
    assert after[untouched] == before[untouched]

    # rules calibrate proposes constants from these two real runs (it reads the database beside
    # the running server).
    cal = server.cli(
        "rules",
        "calibrate",
        "--db",
        str(server.db),
        "--rules",
        str(ROOT / "rules"),
        "--min-samples",
        "1",
        "--format",
        "json",
    )
    assert cal.returncode == 0, cal.stderr
    text = cal.stdout
    assert "miprov2" in text and "bootstrap_fewshot" in text, text
    human = server.cli(
        "rules", "calibrate", "--db", str(server.db), "--rules", str(ROOT / "rules"), "--min-samples", "1"
    )
    assert human.returncode == 0 and "usd_per_100" in human.stdout, human.stdout + human.stderr


@pytest.mark.parametrize("budget,optimizer", [(4.0, "gepa"), (0.5, "reflection_metrics")])
def test_the_recommended_optimizer_runs_with_progress(
    server: Server, tmp_path: Path, budget: float, optimizer: str
) -> None:
    api = RecordingClient(server.url)
    ids = train_ids()
    decision = api.recommend(trainset_size=len(ids), budget_usd=budget)
    assert decision["recommended"] == optimizer
    job = api.create_job("optimization", payload=job_payload(decision, ids=ids, num_threads=2))
    worker = Worker(api, load_task(EXAMPLE_TASK), worker_id="w-progress", output_dir=tmp_path, heartbeat_seconds=0.2)
    outcome = worker.run_once()
    assert outcome is not None and outcome.status == "completed", outcome
    r = check_completed(api.get_job(job["id"]), optimizer, len(ids))
    if optimizer == "gepa":
        assert r["config"]["max_metric_calls"] == 8 + 5 * 2 * (6 + 8)  # num_candidates 5, num_iters 2 from the rule
        assert r["search"]["iterations"] >= 1 and r["search"]["metric_calls"] > 0
    # Heartbeats carried the phases in order, with a percent that never goes back.
    phases = [b["phase"] for b in api.beats]
    seen = [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p]
    assert seen == ["loading", "evaluating_before", "compiling", "evaluating_after", "saving", "completed"], phases
    percents = [b["percent"] for b in api.beats]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert phases.count("completed") == 1
    metrics = api.selector_metrics(since="all")
    assert metrics["outcomes"] == 1 and metrics["acceptance"]["rate"] == 1.0, metrics
    assert metrics["accuracy"][optimizer]["cost_samples"] == 1
    assert outcome.overhead.heartbeats == len(api.beats)
    assert 0 < outcome.overhead.final_beat_seconds <= outcome.overhead.heartbeat_seconds
    assert outcome.overhead.waited_seconds < outcome.overhead.total_seconds  # the other beats ran beside the job


def test_the_worker_says_nothing_to_claim(server: Server, tmp_path: Path) -> None:
    out = subprocess.run(
        worker_cmd() + ["--url", server.url, "--task", EXAMPLE_TASK, "--once", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0 and "nothing to claim" in out.stdout, out.stdout + out.stderr


def test_a_task_that_cannot_be_loaded_exits_3(server: Server, tmp_path: Path) -> None:
    out = subprocess.run(
        worker_cmd() + ["--url", server.url, "--task", "no_such_module_here:task", "--once"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 3 and "no_such_module_here" in out.stderr, out.stderr


def _dump(x: Any) -> str:  # pragma: no cover - for failure messages
    return json.dumps(x, indent=1)[:3000]
