"""``skill-fleet-worker --job ID``: claims that job and no other (``id`` in the claim body),
runs it and exits 0 when it completed, 1 when it failed or cannot be claimed (saying the job's
status), 4 when it parked it for a human's approval."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from conftest import EXAMPLE_TASK, TASKS, Server, job_payload, train_ids, worker_cmd


def _worker(server: Server, tmp_path: Path, job_id: str, *extra: str, task: str = EXAMPLE_TASK) -> Any:
    return subprocess.run(
        worker_cmd()
        + ["--url", server.url, "--task", task, "--job", job_id, "--quiet", "--output-dir", str(tmp_path / "runs")]
        + list(extra),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )


def _jobs(server: Server, n: int, optimizer: str = "reflection_metrics") -> list[dict[str, Any]]:
    api = server.client()
    ids = train_ids()
    decision = api.recommend(trainset_size=len(ids), budget_usd=10)
    return [api.create_job("optimization", payload=job_payload(decision, optimizer, ids=ids)) for _ in range(n)]


def test_job_b_runs_b_and_never_the_older_pending_a(server: Server, tmp_path: Path) -> None:
    api = server.client()
    a, b = _jobs(server, 2)  # A is older: a plain claim would take it first
    out = _worker(server, tmp_path, b["id"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"job {b['id']}: claimed" in out.stdout and f"job {b['id']}: completed" in out.stdout, out.stdout
    assert a["id"] not in out.stdout + out.stderr
    done = api.get_job(b["id"])
    assert done["status"] == "completed" and done["result"]["optimizer_used"] == "reflection_metrics"
    assert (done["progress"]["phase"], done["progress"]["percent"]) == ("completed", 100.0)
    untouched = api.get_job(a["id"])
    assert (untouched["status"], untouched["attempt"], untouched["started_at"]) == ("pending", 0, None), untouched
    assert untouched["version"] == a["version"]  # never claimed, never written


def test_job_that_cannot_be_claimed_exits_1_with_its_status(server: Server, tmp_path: Path) -> None:
    api = server.client()
    finished, running = _jobs(server, 2)
    claim = api.claim("w-elsewhere", ["optimization"], lease_seconds=60, job_id=finished["id"])
    assert claim is not None
    api.complete(claim.id, claim.lease_token, {"done_by": "w-elsewhere"})
    held = api.claim("w-elsewhere", ["optimization"], lease_seconds=60, job_id=running["id"])
    assert held is not None
    unknown = "00000000-0000-0000-0000-000000000000"
    cases = [
        (finished["id"], f"job {finished['id']} is completed"),
        (running["id"], f"job {running['id']} is running: worker w-elsewhere holds it"),
        (unknown, f"job {unknown} does not exist"),
    ]
    for job_id, said in cases:
        out = _worker(server, tmp_path, job_id)
        assert out.returncode == 1, (job_id, out.stdout, out.stderr)
        assert f"error: {said}" in out.stderr, out.stderr
    # Nothing changed: the finished job keeps its result, the running one its lease.
    assert api.get_job(finished["id"])["result"] == {"done_by": "w-elsewhere"}
    assert api.get_job(running["id"])["lease"]["owner"] == "w-elsewhere"


def test_a_job_that_fails_exits_1(server: Server, tmp_path: Path) -> None:
    (job,) = _jobs(server, 1, "bootstrap_fewshot")
    out = _worker(server, tmp_path, job["id"], task=f"{TASKS}:broken_metric")
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"error: job {job['id']} failed: " in out.stderr and "the metric exploded" in out.stderr, out.stderr
    assert server.client().get_job(job["id"])["status"] == "failed"
