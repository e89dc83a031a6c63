"""The worker: claims ``optimization`` jobs and runs them on a task.

For each claimed job:

1. **Approval.** With ``approve_above`` set, a job whose estimate
   (``payload.decision.estimated_cost``; unknown counts as above) exceeds it and that has no
   human answer yet is parked with ``hitl`` (type ``approval``, data: the estimate, optimizer,
   config and reasoning) and the worker moves on. Once answered, the job is claimable again:
   ``{"approved": true}`` runs it, any other answer cancels it.
2. **Run.** :func:`skill_fleet.runner.run_job`, while a background thread heartbeats with the
   phase and percent (at once on each phase change, else every third of the lease).
3. **Report.** A last heartbeat with phase ``completed`` (100 %), then complete with the
   run's result; or fail with the reason and ``retry`` only where a retry can help (a
   transient LM or network error).

A heartbeat answered 409 means the lease is gone (expired and taken by another worker, or
the job was cancelled): the run is stopped and the worker never writes to that job again.
On Ctrl-C the worker fails its running jobs with ``retry: true`` (they go back to pending)
and exits; if even that fails, their leases expire and the server's sweeper returns them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import ApiError, Claim, Client, Conflict, ConnectionFailed, InvalidRequest, NotFound, ServerError
from .runner import Fenced, Progress, RunFailed, RunReport, classify_error, run_job
from .task import ResolvedTask

__all__ = [
    "Heartbeat",
    "JobOutcome",
    "Overhead",
    "Worker",
    "approval_question",
    "estimate_of",
    "is_approved",
    "respond_command",
    "unclaimable_reason",
]

log = logging.getLogger("skill_fleet.worker")


def _clip(text: str, limit: int = 4000) -> str:
    """Errors stay well inside the server's limit (10,000 characters)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def default_worker_id() -> str:
    """``host-pid``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _estimate(payload: Mapping[str, Any], key: str) -> float | None:
    decision = payload.get("decision")
    v: Any = None
    if isinstance(decision, Mapping):
        optimizer = payload.get("optimizer")
        if optimizer is None or optimizer == decision.get("recommended"):
            v = decision.get(key)
        else:
            alts = decision.get("alternatives") or []
            v = next((a.get(key) for a in alts if isinstance(a, Mapping) and a.get("optimizer") == optimizer), None)
    if v is None:
        v = payload.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def estimate_of(payload: Mapping[str, Any]) -> float | None:
    """The job's estimated cost in USD, when known: the decision's estimate for the optimizer
    the job runs (the recommended one's, or an alternative's), else ``payload.estimated_cost``."""
    return _estimate(payload, "estimated_cost")


def is_approved(answer: Any) -> bool:
    """``{"approved": true}`` (or ``true``, ``"yes"``, ``"approved"``) approves; anything else refuses."""
    if isinstance(answer, Mapping):
        return answer.get("approved") is True
    if isinstance(answer, bool):
        return answer
    if isinstance(answer, str):
        return answer.strip().lower() in ("yes", "y", "approve", "approved", "ok")
    return False


def approval_question(payload: Mapping[str, Any], threshold: float) -> dict[str, Any]:
    """The ``hitl`` data of an approval request."""
    decision = payload.get("decision") if isinstance(payload.get("decision"), Mapping) else {}
    estimate = estimate_of(payload)
    optimizer = payload.get("optimizer")
    shown = "an unknown cost" if estimate is None else f"${estimate:.2f}"
    return {
        "question": f"Run {optimizer} on {payload.get('trainset_size', '?')} examples for about {shown} "
        f"(above the ${threshold:.2f} approval threshold)?",
        "estimated_cost": estimate,
        "estimated_time_minutes": _estimate(payload, "estimated_time_minutes"),
        "threshold_usd": threshold,
        "optimizer": optimizer,
        "variant": payload.get("variant"),
        "config": payload.get("config"),
        "reasoning": (decision or {}).get("reasoning"),
        "decision_id": payload.get("decision_id"),
        "answer_with": {"approved": True},
    }


def respond_command(job_id: str) -> str:
    """The command a human answers an approval request with."""
    return f"skill-fleet jobs respond {job_id} --data '{{\"approved\": true}}'"


def unclaimable_reason(client: Client, job_id: str, types: Sequence[str] = ("optimization",)) -> str:
    """Why claiming ``job_id`` returned nothing, from its current state
    (``GET /api/v1/jobs/{id}``): the sentence names the job's status."""
    try:
        job = client.get_job(job_id)
    except NotFound:
        return f"job {job_id} does not exist"
    status = job.get("status")
    if status == "running":
        lease = job.get("lease") or {}
        return (
            f"job {job_id} is running: worker {lease.get('owner', '?')} holds it "
            f"(lease until {lease.get('expires_at', '?')})"
        )
    if status == "pending_hitl":
        return (
            f"job {job_id} is pending_hitl: it waits for a human's answer "
            f"({respond_command(job_id)}); run it again once answered"
        )
    if status == "pending":
        if job.get("job_type") not in types:
            return f"job {job_id} is pending but is a `{job.get('job_type')}` job; this worker runs {', '.join(types)}"
        if job.get("not_before"):
            return (
                f"job {job_id} is pending, in its retry backoff after attempt {job.get('attempt')} "
                f"(claimable after {job['not_before']}; last error: {job.get('error')})"
            )
        return f"job {job_id} is pending but was not claimable just now; try again"
    if status == "failed":
        return f"job {job_id} is failed (error: {job.get('error')})"
    return f"job {job_id} is {status}" + (f" (since {job['completed_at']})" if job.get("completed_at") else "")


@dataclass
class Overhead:
    """Time the worker spent talking to the server for one job, beside the run itself.

    ``heartbeat_seconds`` counts every heartbeat, most of them sent from a background thread
    while the optimizer runs; ``final_beat_seconds`` is the last one, which the job waits for.
    """

    claim_seconds: float = 0.0
    heartbeats: int = 0
    heartbeat_seconds: float = 0.0
    final_beat_seconds: float = 0.0
    finish_seconds: float = 0.0
    run_seconds: float = 0.0

    @property
    def total_seconds(self) -> float:
        """Claim + heartbeats + complete/fail."""
        return self.claim_seconds + self.heartbeat_seconds + self.finish_seconds

    @property
    def waited_seconds(self) -> float:
        """What the job waited for the server: claim + the final heartbeat + complete/fail."""
        return self.claim_seconds + self.final_beat_seconds + self.finish_seconds


@dataclass
class JobOutcome:
    """What the worker did with one claimed job.

    ``status``: ``completed``, ``failed``, ``retry`` (failed, back to pending), ``parked``
    (waiting for a human), ``cancelled`` (refused), ``fenced`` (lease lost: nothing written),
    ``interrupted`` (Ctrl-C: failed with retry).
    """

    job_id: str
    status: str
    report: RunReport | None = None
    error: str | None = None
    program: Any = None
    overhead: Overhead = field(default_factory=Overhead)


class Heartbeat:
    """Sends heartbeats with the run's progress until stopped; fences the run on 409."""

    def __init__(
        self,
        client: Client,
        claim: Claim,
        progress: Progress,
        lease_seconds: int,
        interval: float | None = None,
        on_fenced: Callable[[str], None] | None = None,
    ):
        self.client = client
        self.claim = claim
        self.progress = progress
        self.lease_seconds = lease_seconds
        self.interval = interval if interval is not None else max(0.5, lease_seconds / 3.0)
        self.on_fenced = on_fenced
        self.sent = 0
        self.seconds = 0.0
        self.fenced = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{claim.id[:8]}", daemon=True)

    def start(self) -> Heartbeat:
        """Starts the thread (the first heartbeat goes at once)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops the thread after it reported the phases entered so far (nothing is sent
        after this returns)."""
        self._done.set()
        self.progress.changed.set()
        self._thread.join(timeout=self.client.timeout + 5)

    def _loop(self) -> None:
        first = True
        while True:
            woken = first or self.progress.changed.wait(self.interval)
            first = False
            self.progress.changed.clear()
            # Every phase entered is reported once, however short; otherwise the current
            # progress goes every `interval`.
            sent = False
            for snap in self.progress.entered():
                self.beat(snap)
                sent = True
            if self._done.is_set():
                for snap in self.progress.entered():  # phases entered while we were sending
                    self.beat(snap)
                return
            if self.fenced:
                return
            if not sent or not woken:
                self.beat()

    def beat(self, snapshot: tuple[float, str, str] | None = None) -> None:
        """Sends one heartbeat with ``snapshot`` (default: the current progress)."""
        if self.fenced or self.progress.stopped:
            return
        percent, phase, message = snapshot or self.progress.snapshot()
        t0 = time.monotonic()
        try:
            self.client.heartbeat(
                self.claim.id,
                self.claim.lease_token,
                lease_seconds=self.lease_seconds,
                percent=percent,
                phase=phase,
                message=message[:500],
            )
            self.sent += 1
        except (Conflict, NotFound) as e:
            self.fenced = True
            reason = f"lease lost ({e.status}: {e.error})"
            self.progress.stop(reason)
            if self.on_fenced:
                self.on_fenced(reason)
        except (ConnectionFailed, ApiError) as e:
            log.warning("job %s: heartbeat failed (%s); retrying", self.claim.id, e)
        finally:
            self.seconds += time.monotonic() - t0


class Worker:
    """Claims and runs ``optimization`` jobs for one task.

    Args:
        client: the API client.
        task: the task (see :mod:`skill_fleet.task`).
        worker_id: name the leases are held under.
        lease_seconds: lease asked on claim and each heartbeat.
        approve_above: ask a human before running a job estimated above this many USD.
        output_dir: compiled programs go to ``output_dir/JOB_ID/program.json``.
        heartbeat_seconds: heartbeat period (default: a third of the lease).
        max_threads: cap on the config's ``num_threads``.
        types: job types to claim.
    """

    def __init__(
        self,
        client: Client,
        task: ResolvedTask,
        *,
        worker_id: str | None = None,
        lease_seconds: int = 60,
        approve_above: float | None = None,
        output_dir: str | os.PathLike[str] = "skill-fleet-runs",
        heartbeat_seconds: float | None = None,
        max_threads: int | None = None,
        types: tuple[str, ...] = ("optimization",),
        echo: Callable[[str], None] | None = None,
    ):
        self.client = client
        self.task = task
        self.worker_id = worker_id or default_worker_id()
        self.lease_seconds = int(lease_seconds)
        self.approve_above = approve_above
        self.output_dir = Path(output_dir)
        self.heartbeat_seconds = heartbeat_seconds
        self.max_threads = max_threads
        self.types = types
        self.echo = echo or (lambda msg: log.info("%s", msg))
        self._active: dict[str, tuple[Claim, Progress]] = {}
        self._lock = threading.Lock()

    # -- one job ---------------------------------------------------------------------------

    def claim_one(self) -> tuple[Claim | None, float]:
        """Claims the next job; ``(claim or None, seconds the claim took)``."""
        t0 = time.monotonic()
        claim = self.client.claim(self.worker_id, self.types, self.lease_seconds)
        return claim, time.monotonic() - t0

    def run_once(self) -> JobOutcome | None:
        """Claims one job and handles it; ``None`` when nothing is claimable."""
        claim, took = self.claim_one()
        if claim is None:
            return None
        outcome = self.handle(claim)
        outcome.overhead.claim_seconds = took
        return outcome

    def handle(self, claim: Claim) -> JobOutcome:
        """Handles a claimed job: approval, run, report."""
        job = claim.job
        raw = job.get("payload")
        payload: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        hitl = job.get("hitl") if isinstance(job.get("hitl"), Mapping) else None
        answer = hitl.get("response") if hitl else None
        if hitl is not None and answer is not None:
            if not is_approved(answer):
                return self._cancel(claim, answer)
            self.echo(f"job {claim.id}: approved by a human, running")
        elif self.approve_above is not None:
            estimate = estimate_of(payload)
            if estimate is None or estimate > self.approve_above:
                return self._ask(claim, payload)
        return self._run(claim, payload)

    def _ask(self, claim: Claim, payload: Mapping[str, Any]) -> JobOutcome:
        t0 = time.monotonic()
        try:
            self.client.hitl(
                claim.id, claim.lease_token, "approval", approval_question(payload, float(self.approve_above or 0))
            )
        except Conflict as e:
            return JobOutcome(claim.id, "fenced", error=str(e))
        self.echo(f"job {claim.id}: estimate above ${self.approve_above:.2f}, waiting for a human; answer with")
        self.echo(f"  {respond_command(claim.id)}")
        return JobOutcome(claim.id, "parked", overhead=Overhead(finish_seconds=time.monotonic() - t0))

    def _cancel(self, claim: Claim, answer: Any) -> JobOutcome:
        t0 = time.monotonic()
        try:
            self.client.cancel(claim.id)
        except Conflict as e:
            return JobOutcome(claim.id, "fenced", error=str(e))
        self.echo(f"job {claim.id}: refused by a human ({answer!r}), cancelled")
        return JobOutcome(
            claim.id, "cancelled", error=f"refused: {answer!r}", overhead=Overhead(finish_seconds=time.monotonic() - t0)
        )

    def _run(self, claim: Claim, payload: Mapping[str, Any]) -> JobOutcome:
        progress = Progress()
        with self._lock:
            self._active[claim.id] = (claim, progress)
        beat = Heartbeat(self.client, claim, progress, self.lease_seconds, self.heartbeat_seconds).start()
        outcome = JobOutcome(claim.id, "failed")
        t0 = time.monotonic()
        try:
            program, report = run_job(
                self.task,
                payload,
                progress=progress,
                output_dir=self.output_dir,
                job_id=claim.id,
                max_threads=self.max_threads,
            )
            outcome.program, outcome.report = program, report
        except Fenced as e:
            outcome.status, outcome.error = (
                ("interrupted" if progress.stop_reason == "interrupted" else "fenced"),
                str(e),
            )
        except RunFailed as e:
            outcome.error = e.reason
            outcome.status = "retry" if e.retry else "failed"
        except KeyboardInterrupt:
            progress.stop("interrupted")
            beat.stop()
            outcome.overhead.run_seconds = time.monotonic() - t0
            self._interrupt(claim)
            raise
        except Exception as e:  # a bug here or in DSPy: report it rather than vanish
            failure = classify_error(e, "running the job")
            outcome.error = failure.reason + "\n" + "".join(traceback.format_exception_only(type(e), e)).strip()
            outcome.status = "retry" if failure.retry else "failed"
        finally:
            outcome.overhead.run_seconds = time.monotonic() - t0
            beat.stop()
            with self._lock:
                self._active.pop(claim.id, None)
        outcome.overhead.heartbeats = beat.sent
        outcome.overhead.heartbeat_seconds = beat.seconds
        if outcome.status in ("fenced", "interrupted") or progress.stopped:
            if outcome.status not in ("fenced", "interrupted"):
                outcome.status = "fenced"
            self.echo(f"job {claim.id}: stopped, nothing more written ({progress.stop_reason or outcome.error})")
            return outcome
        t1 = time.monotonic()
        try:
            if outcome.report is not None:
                self._final_beat(claim, outcome)
                t1 = time.monotonic()
                self._finish(lambda: self.client.complete(claim.id, claim.lease_token, outcome.report.to_result()))  # type: ignore[union-attr]
                outcome.status = "completed"
                r = outcome.report
                self.echo(
                    f"job {claim.id}: completed: {r.optimizer} {r.score_before:.3f} -> {r.score_after:.3f}, "
                    f"${r.actual_cost:.6f}, {r.tokens['total']} tokens, {r.wall_seconds:.1f}s"
                )
            else:
                retry = outcome.status == "retry"
                self._finish(
                    lambda: self.client.fail(claim.id, claim.lease_token, _clip(outcome.error or "failed"), retry=retry)
                )
                self.echo(f"job {claim.id}: failed{' (will be retried)' if retry else ''}: {outcome.error}")
        except (Conflict, NotFound) as e:
            outcome.status, outcome.error = "fenced", f"lease lost before the result was written: {e}"
            self.echo(f"job {claim.id}: {outcome.error}")
        except InvalidRequest as e:
            # The server refused the result (e.g. a bad field): say so on the job.
            reason = f"the server refused the result: {e.error} {e.details}"
            try:
                self._finish(lambda: self.client.fail(claim.id, claim.lease_token, _clip(reason), retry=False))
            except ApiError:
                pass
            outcome.status, outcome.error = "failed", reason
        outcome.overhead.finish_seconds = time.monotonic() - t1
        return outcome

    def _final_beat(self, claim: Claim, outcome: JobOutcome) -> None:
        """The last heartbeat, just before ``complete``: phase ``completed`` at 100 %, so the
        job's progress ends there (``complete`` itself carries no progress). Raises
        :class:`Conflict` when the lease is gone; any other error only skips it."""
        r = outcome.report
        assert r is not None
        message = f"completed: {r.optimizer} {r.score_before:.3f} -> {r.score_after:.3f}"
        t0 = time.monotonic()
        try:
            self.client.heartbeat(
                claim.id,
                claim.lease_token,
                lease_seconds=self.lease_seconds,
                percent=100.0,
                phase="completed",
                message=message,
            )
            outcome.overhead.heartbeats += 1
        except (ConnectionFailed, ServerError, InvalidRequest) as e:
            log.warning("job %s: the final heartbeat failed (%s); completing anyway", claim.id, e)
        finally:
            outcome.overhead.final_beat_seconds = time.monotonic() - t0
            outcome.overhead.heartbeat_seconds += outcome.overhead.final_beat_seconds

    @staticmethod
    def _finish(call: Callable[[], Any], attempts: int = 5) -> Any:
        """Writes the result, retrying while the server cannot be reached."""
        for i in range(attempts):
            try:
                return call()
            except (ConnectionFailed, ApiError) as e:
                if isinstance(e, ApiError) and e.status < 500:
                    raise
                if i == attempts - 1:
                    raise
                time.sleep(min(2**i, 10))
        return None

    def _interrupt(self, claim: Claim) -> None:
        try:
            self.client.fail(
                claim.id, claim.lease_token, "interrupted (Ctrl-C) on worker " + self.worker_id, retry=True
            )
            self.echo(f"job {claim.id}: interrupted, failed with retry (back to pending)")
        except (ApiError, ConnectionFailed) as e:
            self.echo(f"job {claim.id}: interrupted; could not fail it ({e}); its lease will expire")

    def interrupt_all(self) -> None:
        """Stops every running job and fails it with ``retry`` (Ctrl-C)."""
        with self._lock:
            active = list(self._active.values())
        for claim, progress in active:
            progress.stop("interrupted")
            self._interrupt(claim)

    # -- the loop --------------------------------------------------------------------------

    def serve(
        self, *, concurrency: int = 1, once: bool = False, poll_seconds: float = 2.0, max_jobs: int = 0
    ) -> list[JobOutcome]:
        """Claims and runs jobs until interrupted (or, with ``once``, until nothing is claimable).

        Jobs run on ``concurrency`` threads; Ctrl-C fails the running ones with ``retry``
        and re-raises ``KeyboardInterrupt``.
        """
        outcomes: list[JobOutcome] = []
        running: list[threading.Thread] = []
        claimed = 0
        errors: list[BaseException] = []

        def work(c: Claim, took: float) -> None:
            try:
                o = self.handle(c)
                o.overhead.claim_seconds = took
                outcomes.append(o)
            except BaseException as e:  # noqa: BLE001 - reported by the loop
                errors.append(e)

        try:
            while True:
                running = [t for t in running if t.is_alive()]
                if errors:
                    raise errors[0]
                if max_jobs and claimed >= max_jobs:
                    break
                if len(running) >= max(1, concurrency):
                    running[0].join(timeout=0.2)
                    continue
                try:
                    claim, took = self.claim_one()
                except ConnectionFailed as e:
                    self.echo(f"claim failed ({e}); retrying in {poll_seconds}s")
                    time.sleep(poll_seconds)
                    continue
                if claim is None:
                    if once:
                        for t in running:
                            while t.is_alive():
                                t.join(timeout=0.2)
                        running = []
                        if errors:
                            raise errors[0]
                        # Jobs finished meanwhile may have freed others (e.g. a retry): look once more.
                        claim, took = self.claim_one()
                        if claim is None:
                            self.echo("nothing to claim")
                            break
                    else:
                        time.sleep(poll_seconds)
                        continue
                claimed += 1
                optimizer = (claim.job.get("payload") or {}).get("optimizer")
                self.echo(f"job {claim.id}: claimed ({optimizer}, attempt {claim.job.get('attempt')})")
                t = threading.Thread(target=work, args=(claim, took), name=f"job-{claim.id[:8]}", daemon=True)
                t.start()
                running.append(t)
            for t in running:
                while t.is_alive():
                    t.join(timeout=0.2)
            if errors:
                raise errors[0]
        except KeyboardInterrupt:
            self.interrupt_all()
            raise
        return outcomes
