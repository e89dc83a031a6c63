"""``skill-fleet optimize --auto-select … --url URL --run TASK``: the Rust CLI recommends, creates
the job through the server and starts ``skill-fleet-worker --job ID`` on it, so the seed's
"optimize --auto-select" flow ends in an optimized program, its outcome in the metrics."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import BIN, EXAMPLE_TASK, ROOT, Server


def _optimize(server: Server, tmp_path: Path, *extra: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKILL_FLEET_")}
    env["SKILL_FLEET_OFFLINE_LM"] = "1"
    # The worker script of this virtual environment, as `pip install ./python` puts it on the PATH.
    env["PATH"] = path if path is not None else f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return subprocess.run(
        [
            str(BIN),
            "optimize",
            "--auto-select",
            "--trainset",
            str(ROOT / "examples" / "dspy_task" / "train.jsonl"),
            "--budget",
            "10",
            "--yes",
            "--url",
            server.url,
            "--rules",
            str(ROOT / "rules"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )


def test_optimize_run_creates_the_job_and_runs_it_to_completion(server: Server, tmp_path: Path) -> None:
    out = _optimize(server, tmp_path, "--run", EXAMPLE_TASK)
    assert out.returncode == 0, out.stdout + out.stderr
    m = re.search(r"created job ([0-9a-f-]{36}) \(pending\) through", out.stdout)
    assert m, out.stdout
    job = server.client().get_job(m.group(1))
    assert job["status"] == "completed", job
    assert job["result"]["optimizer_used"] == "miprov2"  # 16 examples, $10: MIPROv2 light
    assert job["payload"]["decision_id"] is not None
    metrics = server.client().selector_metrics(since="all")
    assert metrics["outcomes"] == 1, metrics


def test_optimize_run_without_the_worker_installed_says_how_to_get_it(server: Server, tmp_path: Path) -> None:
    out = _optimize(server, tmp_path, "--run", EXAMPLE_TASK, path="/usr/bin:/bin")
    assert out.returncode == 5, out.stdout + out.stderr
    assert "cannot start `skill-fleet-worker`" in out.stderr
    assert "pip install ./python" in out.stderr
    m = re.search(r"created job ([0-9a-f-]{36})", out.stdout)
    assert m and server.client().get_job(m.group(1))["status"] == "pending"


def test_optimize_run_needs_url(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(BIN), "optimize", "--auto-select", "--trainset", "x.jsonl", "--run", EXAMPLE_TASK],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("SKILL_FLEET_")},
    )
    assert out.returncode == 2, out.stderr
    assert "--url" in out.stderr
