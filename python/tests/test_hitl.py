"""Approval before spending: a job estimated above the threshold parks in ``pending_hitl``;
approving runs it, refusing cancels it; below the threshold it runs at once."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import EXAMPLE_TASK, Server, job_payload, train_ids, worker_cmd

from skill_fleet.task import load_task
from skill_fleet.worker import Worker


def _setup(server: Server, tmp_path: Path, threshold: float) -> tuple[Worker, str, dict]:
    api = server.client()
    ids = train_ids()
    decision = api.recommend(trainset_size=len(ids), budget_usd=10)
    job = api.create_job("optimization", payload=job_payload(decision, "bootstrap_fewshot", ids=ids))
    worker = Worker(api, load_task(EXAMPLE_TASK), worker_id="w-hitl", approve_above=threshold, output_dir=tmp_path)
    return worker, job["id"], decision


def test_approved_runs(server: Server, tmp_path: Path) -> None:
    worker, job_id, decision = _setup(server, tmp_path, threshold=0.001)
    api = worker.client
    parked = worker.run_once()
    assert parked is not None and parked.status == "parked"
    job = api.get_job(job_id)
    assert job["status"] == "pending_hitl"
    question = api.get_hitl(job_id)
    assert question["type"] == "approval"
    data = question["data"]
    estimate = next(a for a in decision["alternatives"] if a["optimizer"] == "bootstrap_fewshot")
    assert data["optimizer"] == "bootstrap_fewshot"
    assert data["threshold_usd"] == 0.001
    assert data["reasoning"] == decision["reasoning"]
    assert data["estimated_cost"] == estimate["estimated_cost"]  # the alternative's estimate, not MIPROv2's
    assert "approval threshold" in data["question"]
    # Nothing to claim while a human decides.
    assert worker.run_once() is None

    api.hitl_response(job_id, {"approved": True})
    done = worker.run_once()
    assert done is not None and done.status == "completed", done
    job = api.get_job(job_id)
    assert job["status"] == "completed" and job["result"]["optimizer_used"] == "bootstrap_fewshot"
    assert job["hitl"]["response"] == {"approved": True}


def test_refused_is_cancelled(server: Server, tmp_path: Path) -> None:
    worker, job_id, _ = _setup(server, tmp_path, threshold=0.001)
    api = worker.client
    assert worker.run_once().status == "parked"  # type: ignore[union-attr]
    api.hitl_response(job_id, {"approved": False, "reason": "too expensive"})
    refused = worker.run_once()
    assert refused is not None and refused.status == "cancelled"
    job = api.get_job(job_id)
    assert job["status"] == "cancelled" and job["result"] is None
    assert api.selector_metrics(since="all")["outcomes"] == 0


def test_below_the_threshold_runs_without_asking(server: Server, tmp_path: Path) -> None:
    worker, job_id, _ = _setup(server, tmp_path, threshold=1000.0)
    done = worker.run_once()
    assert done is not None and done.status == "completed"
    assert worker.client.get_job(job_id)["hitl"] is None


def test_a_named_job_parks_exits_4_and_runs_when_rerun_after_approval(server: Server, tmp_path: Path) -> None:
    api = server.client()
    ids = train_ids()
    decision = api.recommend(trainset_size=len(ids), budget_usd=10)
    job_id = api.create_job("optimization", payload=job_payload(decision, "reflection_metrics", ids=ids))["id"]
    cmd = worker_cmd() + ["--url", server.url, "--task", EXAMPLE_TASK, "--job", job_id, "--quiet"]
    cmd += ["--approve-above", "0.000001", "--output-dir", str(tmp_path)]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path)

    parked = run()
    assert parked.returncode == 4, parked.stdout + parked.stderr
    assert f"skill-fleet jobs respond {job_id} --data '{{\"approved\": true}}'" in parked.stdout, parked.stdout
    assert "run this command again" in parked.stdout, parked.stdout
    assert api.get_job(job_id)["status"] == "pending_hitl"

    waiting = run()  # not answered yet: nothing to run, and it says why
    assert waiting.returncode == 1, waiting.stdout + waiting.stderr
    assert f"job {job_id} is pending_hitl: it waits for a human's answer" in waiting.stderr, waiting.stderr

    api.hitl_response(job_id, {"approved": True})
    done = run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "approved by a human, running" in done.stdout
    assert api.get_job(job_id)["status"] == "completed"
