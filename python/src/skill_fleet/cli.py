"""``skill-fleet-worker``: run the optimizers skill-fleet recommends on your DSPy task.

    skill-fleet-worker --url http://127.0.0.1:8000 --task mypkg.tasks:summarizer
    skill-fleet-worker --task tasks.py:task --once --approve-above 5
    skill-fleet-worker --task tasks.py:task --job JOB_ID      # just that job (e.g. the one optimize created)

The task (``module.path:attr`` or ``file.py:attr``) provides the program, metric, data and LM;
see ``skill_fleet.task``.

With ``--job ID`` the worker claims that job only (never another one), runs it and exits:
0 it completed; 1 it failed, was refused or cancelled, or is not claimable (the message says
its current status: unknown, running elsewhere, finished, waiting for a human or a retry
backoff); 4 it was parked for approval (``--approve-above``): answer with
``skill-fleet jobs respond ID --data '{"approved": true}'`` and run the same command again.

Exit codes: 0 done, 1 a job failed (with ``--once`` or ``--job``), 2 usage, 3 the task cannot
be loaded, 4 the ``--job`` waits for a human's approval, 5 the server cannot be reached,
130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence

from .client import ApiError, Client, ConnectionFailed, Unauthorized
from .task import TaskError, load_task
from .worker import Worker, default_worker_id, unclaimable_reason


def _echo(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="skill-fleet-worker", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--url",
        default=os.environ.get("SKILL_FLEET_URL", "http://127.0.0.1:8000"),
        help="the skill-fleet server (SKILL_FLEET_URL)",
    )
    p.add_argument("--task", required=True, help="module.path:attr (or file.py:attr) naming the task")
    p.add_argument("--token", default=None, help="API token (default: SKILL_FLEET_API_TOKEN)")
    p.add_argument("--once", action="store_true", help="exit when there is nothing left to claim")
    p.add_argument(
        "--job",
        default=None,
        metavar="ID",
        help="claim and run this job only, then exit (--once, --concurrency and --max-jobs do not apply)",
    )
    p.add_argument("--concurrency", type=int, default=1, help="jobs run at the same time (threads)")
    p.add_argument("--worker-id", default=None, help="name the leases are held under (default: host-pid)")
    p.add_argument(
        "--lease-seconds", type=int, default=60, help="lease per claim and heartbeat (heartbeats every third of it)"
    )
    p.add_argument(
        "--approve-above",
        type=float,
        default=None,
        metavar="USD",
        help="ask a human before running a job estimated above USD",
    )
    p.add_argument("--output-dir", default="skill-fleet-runs", help="compiled programs go to DIR/JOB_ID/program.json")
    p.add_argument("--max-threads", type=int, default=None, help="cap the config's num_threads")
    p.add_argument("--max-jobs", type=int, default=0, help="stop after claiming this many jobs (0: no limit)")
    p.add_argument("--poll-seconds", type=float, default=2.0, help="wait between claims when idle")
    p.add_argument("--quiet", action="store_true", help="hide DSPy's own log")
    return p


def _run_one(client: Client, worker: Worker, job_id: str) -> int:
    """``--job ID``: claims that job (and no other), handles it and says how it ended."""
    try:
        claim = client.claim(worker.worker_id, worker.types, worker.lease_seconds, job_id=job_id)
        if claim is None:
            reason = unclaimable_reason(client, job_id, worker.types)
            print(f"error: {reason}", file=sys.stderr)
            return 1
    except Unauthorized as e:
        print(f"error: the server wants an API token (--token or SKILL_FLEET_API_TOKEN): {e}", file=sys.stderr)
        return 2
    except ConnectionFailed as e:
        print(f"error: lost the server: {e}", file=sys.stderr)
        return 5
    except ApiError as e:
        print(f"error: the server refused to claim job {job_id}: {e} {e.details or ''}".rstrip(), file=sys.stderr)
        return 1
    optimizer = (claim.job.get("payload") or {}).get("optimizer")
    _echo(f"job {claim.id}: claimed ({optimizer}, attempt {claim.job.get('attempt')})")
    try:
        outcome = worker.handle(claim)
    except KeyboardInterrupt:
        _echo("interrupted")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)  # DSPy's threads may still be busy; the job is already failed with retry
    except ConnectionFailed as e:
        print(f"error: lost the server: {e}", file=sys.stderr)
        return 5
    if outcome.status == "completed":
        return 0
    if outcome.status == "parked":
        _echo(
            f"job {job_id}: parked in pending_hitl; once a human answered, run this command again "
            f"(--job {job_id}): approved, it runs; refused, it is cancelled"
        )
        return 4
    if outcome.status == "cancelled":
        return 1  # refused by a human: the job is cancelled, nothing ran (the worker said so)
    said = {
        "retry": "failed and went back to pending for a retry (run this command again later)",
        "fenced": "lost its lease (expired, or the job was cancelled); nothing more was written to it",
    }.get(outcome.status, "failed")
    print(f"error: job {job_id} {said}: {outcome.error}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``skill-fleet-worker``."""
    args = parser().parse_args(argv)
    if args.concurrency < 1:
        print("error: --concurrency must be at least 1", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.quiet:
        logging.getLogger("dspy").setLevel(logging.WARNING)
    try:
        task = load_task(args.task)
    except TaskError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except Exception as e:  # the task module itself raised
        print(f"error: cannot load the task `{args.task}`: {type(e).__name__}: {e}", file=sys.stderr)
        return 3
    client = Client(args.url, token=args.token)
    try:
        client.health()
    except ConnectionFailed as e:
        print(f"error: cannot reach the server: {e}", file=sys.stderr)
        return 5
    worker = Worker(
        client,
        task,
        worker_id=args.worker_id or default_worker_id(),
        lease_seconds=args.lease_seconds,
        approve_above=args.approve_above,
        output_dir=args.output_dir,
        max_threads=args.max_threads,
        echo=_echo,
    )
    _echo(f"worker {worker.worker_id}: task {task.name}, server {args.url}")
    if args.job:
        return _run_one(client, worker, args.job)
    try:
        outcomes = worker.serve(
            concurrency=args.concurrency, once=args.once, poll_seconds=args.poll_seconds, max_jobs=args.max_jobs
        )
    except KeyboardInterrupt:
        _echo("interrupted")
        sys.stdout.flush()
        sys.stderr.flush()
        # DSPy's evaluation threads may still be busy; the jobs are already failed with retry.
        os._exit(130)
    except Unauthorized as e:
        print(f"error: the server wants an API token (--token or SKILL_FLEET_API_TOKEN): {e}", file=sys.stderr)
        return 2
    except ConnectionFailed as e:
        print(f"error: lost the server: {e}", file=sys.stderr)
        return 5
    if args.once and any(o.status in ("failed",) for o in outcomes):
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
