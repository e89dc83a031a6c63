"""Failures are honest: the reason is on the job, and a retry only where it can help; a fenced
worker stops writing; Ctrl-C fails the running job with ``retry``."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import TASKS, Server, job_payload, train_ids, wait_for, worker_cmd

from skill_fleet.client import Client
from skill_fleet.task import load_task
from skill_fleet.worker import Worker


def _job(server: Server, optimizer: str = "bootstrap_fewshot", **payload: Any) -> tuple[Client, str]:
    api = server.client()
    decision = api.recommend(trainset_size=16, budget_usd=10)
    body = job_payload(decision, optimizer, ids=train_ids(), num_threads=1)
    body.update(payload)
    return api, api.create_job("optimization", payload=body, max_attempts=3)["id"]


def _run(server: Server, tmp_path: Path, task: str) -> Any:
    worker = Worker(server.client(), load_task(f"{TASKS}:{task}"), worker_id="w-fail", output_dir=tmp_path)
    return worker.run_once()


@pytest.mark.parametrize(
    "task,expected",
    [
        ("broken_metric", "ValueError: the metric exploded on purpose (at tasks.py:"),
        ("broken_program", "KeyError: 'missing_feature' (at tasks.py:"),
        ("no_key", "the LM refused the request"),
    ],
)
def test_errors_in_the_task_fail_the_job_without_retry(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: str, expected: str
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    api, job_id = _job(server)
    outcome = _run(server, tmp_path, task)
    assert outcome.status == "failed", outcome
    job = api.get_job(job_id)
    assert job["status"] == "failed", job
    assert expected in job["error"], job["error"]
    if task == "no_key":
        assert "OPENAI_API_KEY" in job["error"]
    else:
        assert "exception in the task's code" in job["error"]


def test_a_transient_lm_error_is_retried(server: Server, tmp_path: Path) -> None:
    api, job_id = _job(server)
    outcome = _run(server, tmp_path, "flaky_lm")
    assert outcome.status == "retry", outcome
    job = api.get_job(job_id)
    assert (job["status"], job["attempt"]) == ("pending", 1), job
    assert "transient error" in job["error"] and "TimeoutError" in job["error"]


@pytest.mark.parametrize(
    "optimizer,expected",
    [("simba", "unknown optimizer `simba`"), ("bootstrap_finetune", "does not support fine-tuning")],
)
def test_optimizers_that_cannot_run_fail_without_retry(
    server: Server, tmp_path: Path, optimizer: str, expected: str
) -> None:
    api, job_id = _job(server, optimizer)
    outcome = _run(server, tmp_path, "RouterTask")
    assert outcome.status == "failed"
    job = api.get_job(job_id)
    assert job["status"] == "failed" and expected in job["error"], job


class SpyClient(Client):
    """Records every write after ``fenced`` is set."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.fenced = threading.Event()
        self.writes_after: list[str] = []

    def request(self, method: str, path: str, body: Any = None, query: Any = None) -> Any:
        if self.fenced.is_set() and method == "POST" and not path.endswith("/heartbeat"):
            self.writes_after.append(path)
        try:
            return super().request(method, path, body, query)
        except Exception:
            if path.endswith("/heartbeat"):
                self.fenced.set()
            raise


def test_a_fenced_worker_stops_and_never_writes_again(server: Server, tmp_path: Path) -> None:
    api, job_id = _job(server)
    spy = SpyClient(server.url)
    # Lease 1 s, heartbeats every 3 s: the lease expires, the sweeper returns the job, another
    # worker takes it, and the first worker's next heartbeat is refused.
    slow = Worker(
        spy, load_task(f"{TASKS}:slow"), worker_id="w-slow", lease_seconds=1, heartbeat_seconds=3, output_dir=tmp_path
    )
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(slow.run_once()))
    t.start()
    wait_for(lambda: api.get_job(job_id)["status"] == "running", timeout=20)
    wait_for(lambda: api.get_job(job_id)["status"] == "pending", timeout=20)  # lease expired, swept
    other = wait_for(lambda: api.claim("w-other", ["optimization"], lease_seconds=60), timeout=30, step=0.2)
    assert other.id == job_id
    t.join(timeout=60)
    assert not t.is_alive()
    outcome = result[0]
    assert outcome.status == "fenced", outcome
    assert "lease lost" in (outcome.error or "")
    assert spy.writes_after == []
    # The job is the other worker's: it can still complete it.
    api.complete(job_id, other.lease_token, {"done_by": "w-other"})
    job = api.get_job(job_id)
    assert job["status"] == "completed" and job["result"] == {"done_by": "w-other"}


def test_a_cancelled_job_stops_its_run(server: Server, tmp_path: Path) -> None:
    api, job_id = _job(server)
    worker = Worker(api, load_task(f"{TASKS}:slow"), worker_id="w-cancel", heartbeat_seconds=0.2, output_dir=tmp_path)
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(worker.run_once()))
    t.start()
    wait_for(lambda: api.get_job(job_id)["status"] == "running")
    api.cancel(job_id)
    t.join(timeout=60)
    assert result[0].status == "fenced", result
    assert api.get_job(job_id)["status"] == "cancelled"


def test_ctrl_c_fails_the_running_job_with_retry(server: Server, tmp_path: Path) -> None:
    api, job_id = _job(server)
    proc = subprocess.Popen(
        worker_cmd() + ["--url", server.url, "--task", f"{TASKS}:slow", "--quiet", "--worker-id", "w-ctrl-c"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(
            lambda: (api.get_job(job_id).get("progress") or {}).get("phase") in ("evaluating_before", "compiling"),
            timeout=60,
        )
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    job = api.get_job(job_id)
    assert (job["status"], job["attempt"]) == ("pending", 1), job
    assert "interrupted" in job["error"]
    assert "failed with retry" in out
