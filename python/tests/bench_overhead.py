"""Benchmark: the worker's own cost per job (claim, heartbeats, complete) beside the optimizer's.

Not a test, and nothing here asserts a time: ``pytest python/tests`` does not collect it. Run it
with the venv that ``cargo test`` builds, after ``cargo build``::

    SKILL_FLEET_OFFLINE_LM=1 target/python-venv/bin/python python/tests/bench_overhead.py

It starts a real ``skill-fleet serve`` on a temporary database and runs each optimizer a few
times on the example task with the offline LM. ``worker ms`` adds up every call the worker made to
the server for a job; the heartbeats go from a background thread while the optimizer runs, so
only ``waited ms`` (claim, the final heartbeat and complete) is time the job spent waiting for the
server, and ``waited %`` is its share of the job's wall time (waited + run). Medians per optimizer.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

from conftest import EXAMPLE_TASK, job_payload, start_server, stop_server, train_ids

from skill_fleet.task import load_task
from skill_fleet.worker import Worker

RUNS = {"bootstrap_fewshot": 5, "reflection_metrics": 3, "miprov2": 3, "gepa": 3}
HEAD = ["jobs", "claim ms", "beats", "beats ms", "complete ms", "worker ms", "waited ms", "run ms", "waited %"]
WIDTHS = [5, 10, 7, 10, 13, 11, 11, 9, 10]


def main() -> int:
    os.environ.setdefault("SKILL_FLEET_OFFLINE_LM", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        server = start_server(Path(tmp))
        try:
            rows = run(server, Path(tmp))
        finally:
            stop_server(server)
    print(f"{'optimizer':<20}" + "".join(f"{h:>{w}}" for h, w in zip(HEAD, WIDTHS, strict=True)))
    for optimizer in RUNS:
        mine = [o for name, o in rows if name == optimizer]

        def ms(xs: list[float]) -> float:
            return statistics.median(xs) * 1000

        waited = [o.waited_seconds / (o.waited_seconds + o.run_seconds) * 100 for o in mine]
        print(
            f"{optimizer:<20}{len(mine):>5}"
            f"{ms([o.claim_seconds for o in mine]):>10.1f}"
            f"{statistics.median([o.heartbeats for o in mine]):>7.0f}"
            f"{ms([o.heartbeat_seconds for o in mine]):>10.1f}"
            f"{ms([o.finish_seconds for o in mine]):>13.1f}"
            f"{ms([o.total_seconds for o in mine]):>11.1f}"
            f"{ms([o.waited_seconds for o in mine]):>11.1f}"
            f"{ms([o.run_seconds for o in mine]):>9.1f}"
            f"{statistics.median(waited):>10.1f}"
        )
    return 0


def run(server, tmp: Path) -> list[tuple[str, object]]:  # type: ignore[no-untyped-def]
    api = server.client()
    ids = train_ids()
    decision = api.recommend(trainset_size=len(ids), budget_usd=10)
    worker = Worker(api, load_task(EXAMPLE_TASK), worker_id="w-overhead", output_dir=tmp, echo=lambda _msg: None)
    rows = []
    for optimizer, n in RUNS.items():
        for i in range(n):
            api.create_job("optimization", payload=job_payload(decision, optimizer, ids=ids, num_threads=1))
            o = worker.run_once()
            if o is None or o.status != "completed":
                print(f"{optimizer} run {i + 1}: the job did not complete: {o}", file=sys.stderr)
                raise SystemExit(1)
            rows.append((optimizer, o.overhead))
            print(f"{optimizer} {i + 1}/{n}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    sys.exit(main())
