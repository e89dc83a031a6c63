"""Fixtures: a real ``skill-fleet serve`` on a free port with a temporary database, the example
task on the offline LM, and helpers. No network: the LM is ``PricedDummyLM``."""

from __future__ import annotations

import os

# Before DSPy (and LiteLLM) are imported: no network, the offline LM for the example task.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["SKILL_FLEET_OFFLINE_LM"] = "1"
os.environ.pop("SKILL_FLEET_API_TOKEN", None)

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from skill_fleet import testing
from skill_fleet.client import Client

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("SKILL_FLEET_BIN") or ROOT / "target" / "debug" / "skill-fleet").resolve()
EXAMPLE_TASK = f"{ROOT / 'examples' / 'dspy_task' / 'skill_router.py'}:task"
TASKS = f"{Path(__file__).resolve().parent / 'tasks.py'}"


@dataclass
class Server:
    """A running ``skill-fleet serve``."""

    url: str
    db: Path
    proc: subprocess.Popen[bytes]
    log: list[str] = field(default_factory=list)

    def client(self, **kw: Any) -> Client:
        return Client(self.url, **kw)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Runs ``skill-fleet ARGS`` against this server's database."""
        return subprocess.run([str(BIN), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def start_server(tmp: Path, env: dict[str, str] | None = None) -> Server:
    if not BIN.exists():
        pytest.fail(f"no skill-fleet binary at {BIN}: build it (cargo build) or set SKILL_FLEET_BIN")
    db = tmp / "skill-fleet.db"
    full_env = {"SKILL_FLEET_JOBS_SWEEP_INTERVAL_MS": "200", "SKILL_FLEET_LOG": "info", **(env or {})}
    try:
        s = testing.start_server(BIN, db=db, rules=ROOT / "rules", cwd=tmp, env=full_env)
    except testing.ServerDidNotStart as e:
        pytest.fail(str(e))
    return Server(url=s.url, db=db, proc=s.proc, log=s.log)


def stop_server(server: Server) -> None:
    testing.RunningServer(server.url, server.proc, server.log).stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A fresh server and database for one test."""
    s = start_server(tmp_path)
    yield s
    stop_server(s)


@pytest.fixture
def api(server: Server) -> Client:
    return server.client()


def worker_cmd() -> list[str]:
    """The installed ``skill-fleet-worker`` script (or the module when it is not on disk)."""
    script = Path(sys.executable).parent / "skill-fleet-worker"
    return [str(script)] if script.exists() else [sys.executable, "-m", "skill_fleet.cli"]


def job_payload(
    decision: dict[str, Any], optimizer: str | None = None, *, ids: list[str] | None = None, **config: Any
) -> dict[str, Any]:
    """A payload like ``skill-fleet optimize`` creates, from a decision (optionally for another optimizer)."""
    chosen = optimizer or decision["recommended"]
    cfg = dict(decision["config"])
    cfg.update(config)
    return {
        "optimizer": chosen,
        "config": cfg,
        "variant": cfg.get("auto") if chosen == "miprov2" else None,
        "trainset": "examples/dspy_task/train.jsonl",
        "trainset_size": len(ids) if ids else 16,
        "selected_example_ids": ids,
        "auto_selected": optimizer is None,
        "rules_revision": decision.get("rules_revision"),
        "decision": decision,
        "decision_id": decision["decision_id"],
    }


def train_ids() -> list[str]:
    import json

    path = ROOT / "examples" / "dspy_task" / "train.jsonl"
    return [json.loads(line)["example_id"] for line in path.read_text().splitlines() if line.strip()]


def wait_for(predicate: Any, timeout: float = 30.0, step: float = 0.05) -> Any:
    """Polls until ``predicate()`` is truthy; returns its value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
