"""The worker's own cost per job (claim + heartbeats + complete) beside the optimizer's.

Run with ``-s`` to see the figures:  python -m pytest -q -s python/tests/test_overhead.py
"""

from __future__ import annotations

import statistics
from pathlib import Path

from conftest import EXAMPLE_TASK, Server, job_payload, train_ids

from skill_fleet.task import load_task
from skill_fleet.worker import Worker

RUNS = {"bootstrap_fewshot": 5, "reflection_metrics": 3, "miprov2": 3, "gepa": 3}


def test_worker_overhead_per_job(server: Server, tmp_path: Path) -> None:
    api = server.client()
    ids = train_ids()
    decision = api.recommend(trainset_size=len(ids), budget_usd=10)
    worker = Worker(api, load_task(EXAMPLE_TASK), worker_id="w-overhead", output_dir=tmp_path)  # default lease 60 s
    rows = []
    for optimizer, n in RUNS.items():
        for _ in range(n):
            api.create_job("optimization", payload=job_payload(decision, optimizer, ids=ids, num_threads=1))
            o = worker.run_once()
            assert o is not None and o.status == "completed", o
            assert o.report is not None
            rows.append((optimizer, o.overhead, o.report))
    print()
    head = ["jobs", "claim ms", "beats", "beats ms", "complete ms", "worker ms", "compile ms", "run ms"]
    widths = [5, 10, 7, 10, 13, 11, 12, 9]
    print(f"{'optimizer':<20}" + "".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True)))
    for optimizer in RUNS:
        mine = [(o, r) for name, o, r in rows if name == optimizer]
        med = lambda xs: statistics.median(xs) * 1000  # noqa: E731
        print(
            f"{optimizer:<20}{len(mine):>5}"
            f"{med([o.claim_seconds for o, _ in mine]):>10.1f}"
            f"{statistics.median([o.heartbeats for o, _ in mine]):>7.0f}"
            f"{med([o.heartbeat_seconds for o, _ in mine]):>10.1f}"
            f"{med([o.finish_seconds for o, _ in mine]):>13.1f}"
            f"{med([o.total_seconds for o, _ in mine]):>11.1f}"
            f"{med([r.compile_seconds for _, r in mine]):>12.1f}"
            f"{med([o.run_seconds for o, _ in mine]):>9.1f}"
        )
    # Claim + heartbeats + complete stay small: well under a second per job on a local server.
    for _, o, _ in rows:
        assert o.total_seconds < 1.0, o
        assert o.heartbeats >= 5  # one per phase at least
