#!/usr/bin/env python3
"""The skill-fleet worker, from a checkout, with or without DSPy.

With ``--task``, this is ``skill-fleet-worker`` (the package in ``python/``; needs
``pip install ./python``): it runs the optimizer each job names on your DSPy task for real.

    python3 examples/worker.py --task examples/dspy_task/skill_router.py:task --once

Without ``--task`` it is a standard-library-only demo of the job protocol (no DSPy needed): it
claims ``optimization`` jobs, asks a human to approve each one (the job parks in
``pending_hitl``), resumes once the answer is in (a refusal cancels the job), heartbeats while
it pretends to optimize, and completes the job with the decision's estimates as its result.

    python3 examples/worker.py --url http://127.0.0.1:8000 --once
    skill-fleet jobs respond JOB_ID --data '{"approved": true}'   # the human's answer
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# The package's client is standard library only: use it from the checkout when the package is
# not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python" / "src"))

from skill_fleet.client import ApiError, Client  # noqa: E402


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def simulate(api: Client, job: dict, token: str, lease: int, steps: int, step_seconds: float) -> dict:
    """Pretends to optimize, heartbeating with progress; returns the result."""
    payload = job.get("payload") or {}
    optimizer = payload.get("optimizer", "bootstrap_fewshot")
    for i in range(1, steps + 1):
        time.sleep(step_seconds)
        pct = round(100.0 * i / (steps + 1), 1)
        api.heartbeat(
            job["id"],
            token,
            lease_seconds=lease,
            percent=pct,
            phase="optimizing",
            message=f"{optimizer} round {i}/{steps}",
        )
        log(f"job {job['id']}: {pct}%")
    decision = payload.get("decision") or {}
    return {
        "optimizer_used": optimizer,
        "actual_cost": decision.get("estimated_cost", 0.0),
        "actual_time_minutes": decision.get("estimated_time_minutes", 1),
        "quality": 0.87,
        "simulated": True,
    }


def handle(api: Client, job: dict, token: str, args: argparse.Namespace) -> None:
    jid = job["id"]
    hitl = job.get("hitl")
    payload = job.get("payload") or {}
    if hitl is None:
        question = {
            "question": f"Run {payload.get('optimizer')} on {payload.get('trainset_size')} examples?",
            "optimizer": payload.get("optimizer"),
            "config": payload.get("config"),
            "estimated_cost": (payload.get("decision") or {}).get("estimated_cost"),
        }
        api.hitl(jid, token, "approve_config", question)
        log(f"job {jid}: waiting for a human; answer with")
        log(f"  skill-fleet jobs respond {jid} --data '{{\"approved\": true}}'")
        return
    answer = hitl.get("response") or {}
    if not (isinstance(answer, dict) and answer.get("approved") is True):
        api.cancel(jid)
        log(f"job {jid}: refused by a human, cancelled")
        return
    try:
        result = simulate(api, job, token, args.lease, args.steps, args.step_seconds)
    except ApiError as e:
        log(f"job {jid}: stopped ({e}); nothing more written")
        return
    api.complete(jid, token, result)
    log(f"job {jid}: completed with {json.dumps(result)}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a == "--task" or a.startswith("--task=") for a in argv):
        from skill_fleet.cli import main as real_worker  # needs dspy: pip install ./python

        return real_worker(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--token", default=None, help="API token (default: SKILL_FLEET_API_TOKEN)")
    p.add_argument("--worker", default="python-worker-1")
    p.add_argument("--lease", type=int, default=30, help="lease in seconds")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--step-seconds", type=float, default=0.5)
    p.add_argument("--poll", type=float, default=1.0, help="seconds between claims when idle")
    p.add_argument("--once", action="store_true", help="exit when there is nothing to claim")
    p.add_argument("--max-jobs", type=int, default=0, help="stop after handling this many claims (0: no limit)")
    args = p.parse_args(argv)
    api = Client(args.url, token=args.token, timeout=10.0)
    handled = 0
    while True:
        try:
            claim = api.claim(args.worker, ["optimization"], args.lease)
        except ApiError as e:
            log(f"claim failed ({e})")
            return 1
        if claim is None:
            if args.once:
                log("nothing to claim")
                return 0
            time.sleep(args.poll)
            continue
        handle(api, claim.job, claim.lease_token, args)
        handled += 1
        if args.max_jobs and handled >= args.max_jobs:
            return 0


if __name__ == "__main__":
    sys.exit(main())
