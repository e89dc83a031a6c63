"""skill-fleet for DSPy: run the optimizer skill-fleet recommends and report what it did.

* :class:`skill_fleet.client.Client`: the HTTP API (standard library only; importing it does
  not import DSPy).
* ``skill-fleet-worker`` (:mod:`skill_fleet.worker`): claims ``optimization`` jobs and runs
  them on a task (:mod:`skill_fleet.task`).
* :func:`optimize`: the whole loop in one call, in-process, for notebooks.
* :class:`skill_fleet.testing.PricedDummyLM`: an offline LM with usage and cost, for tests.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .client import (
    ApiError,
    Client,
    Conflict,
    ConnectionFailed,
    InvalidRequest,
    NotFound,
    ServerError,
    SkillFleetError,
    Unauthorized,
)

if TYPE_CHECKING:  # pragma: no cover
    from .runner import RunReport

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "BaseTask",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "InvalidRequest",
    "NotFound",
    "RunReport",
    "ServerError",
    "SkillFleetError",
    "Task",
    "Unauthorized",
    "OptimizeError",
    "optimize",
]

_LAZY = {
    "RunReport": "runner",
    "RunFailed": "runner",
    "Task": "task",
    "BaseTask": "task",
    "Worker": "worker",
    "PricedDummyLM": "testing",
}


def __getattr__(name: str) -> Any:  # DSPy is imported only when these are used
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'skill_fleet' has no attribute {name!r}")


class OptimizeError(SkillFleetError):
    """:func:`optimize` could not run its job (the job's own error is in the message)."""


def _decision_payload(
    decision: dict[str, Any], optimizer: str | None, trainset: Sequence[Any], context: dict[str, Any]
) -> dict[str, Any]:
    """A job payload shaped like the one ``skill-fleet optimize`` creates."""
    chosen = optimizer or decision.get("recommended")
    config = dict(decision.get("config") or {})
    variant = config.get("auto") if chosen in ("miprov2", "MIPROv2") else None
    ids = []
    for ex in trainset:
        try:
            v = ex.get("example_id") if hasattr(ex, "get") else None
        except Exception:
            v = None
        if v is not None:
            ids.append(str(v))
    payload: dict[str, Any] = {
        "optimizer": chosen,
        "config": config,
        "variant": variant,
        "trainset": "in-process (skill_fleet.optimize)",
        "trainset_size": len(trainset),
        "trainset_records": len(trainset),
        "selected_example_ids": ids if len(ids) == len(trainset) else None,
        "auto_selected": optimizer is None,
        "rules_revision": decision.get("rules_revision"),
        "decision": decision,
        "decision_id": decision.get("decision_id"),
    }
    payload.update({k: v for k, v in context.items() if k in ("domain", "model", "budget_usd", "quality_target")})
    return payload


def _claim_own(client: Client, job_id: str, worker: str, lease_seconds: int) -> Any:
    """Claims exactly the job ``job_id`` (``id`` in the claim body): never another job.

    When the job cannot be claimed (a worker polling for ``optimization`` jobs took it in the
    instant after it was created, or the claim itself failed) this raises, after cancelling
    the job: no worker can run it right, without this process's program and data.
    """
    from .worker import unclaimable_reason

    try:
        claim = client.claim(worker, ["optimization"], lease_seconds, job_id=job_id)
    except (ApiError, ConnectionFailed) as e:
        raise OptimizeError(f"could not claim job {job_id} ({e}){_cancel_quietly(client, job_id)}") from e
    if claim is None:
        reason = unclaimable_reason(client, job_id)
        raise OptimizeError(f"could not claim the job just created: {reason}{_cancel_quietly(client, job_id)}")
    return claim


def _cancel_quietly(client: Client, job_id: str) -> str:
    """Cancels ``job_id`` if it can; returns what to add to the error message."""
    try:
        client.cancel(job_id)
        return "; it was cancelled"
    except (ApiError, ConnectionFailed):
        return ""


def optimize(
    program: Any,
    trainset: Sequence[Any],
    metric: Callable[..., Any],
    devset: Sequence[Any] | None = None,
    budget_usd: float = 10.0,
    quality_target: float = 0.85,
    url: str = "http://127.0.0.1:8000",
    token: str | None = None,
    lm: Any = None,
    *,
    optimizer: str | None = None,
    reflection_lm: Any = None,
    prompt_model: Any = None,
    output_dir: str = "skill-fleet-runs",
    lease_seconds: int = 300,
    max_threads: int | None = None,
    **context: Any,
) -> tuple[Any, RunReport]:
    """Asks skill-fleet which optimizer to run, runs it here, and records the outcome.

    1. ``POST /api/v1/optimization/recommend`` with ``trainset_size=len(trainset)``,
       ``budget_usd``, ``quality_target`` and ``context`` (``domain``, ``model``, …);
    2. creates an ``optimization`` job with the decision (``decision_id``) in its payload;
    3. claims it by id in this process (no other job, whatever else is pending) and runs it
       like the worker does (heartbeats included);
    4. completes it: the outcome lands in the selector metrics, and training examples that
       carry an ``example_id`` get their quality updated.

    Args:
        program: the DSPy module to optimize (it is copied, not changed).
        trainset: ``dspy.Example`` list with inputs marked.
        metric: ``metric(example, pred, trace=None)`` → float or bool.
        devset: examples to score before and after (default: the trainset).
        budget_usd / quality_target: what the recommendation must respect.
        url / token: the server and its API token (default ``SKILL_FLEET_API_TOKEN``).
        lm: the task LM (default: the one ``dspy.configure`` set).
        optimizer: run this optimizer instead of the recommended one (the job is then not
            auto-selected).
        output_dir: the compiled program is saved to ``output_dir/JOB_ID/program.json``.
        context: more recommendation inputs (``domain``, ``model``, ``complexity_score``,
            ``time_constraint_minutes``, …).

    Returns:
        ``(compiled_program, report)``; ``report.job_id`` and ``report.decision_id`` name
        the records on the server.

    Raises:
        OptimizeError: the run failed (the job is failed on the server with the reason), or
            the job could not be claimed (it is cancelled; the message says why).
        ApiError / ConnectionFailed: the server refused or could not be reached.
    """
    import dspy

    from .task import ResolvedTask
    from .worker import Worker

    client = Client(url, token=token)
    inputs: dict[str, Any] = {
        "trainset_size": len(trainset),
        "budget_usd": budget_usd,
        "quality_target": quality_target,
    }
    inputs.update(context)
    decision = client.recommend(**inputs)
    payload = _decision_payload(decision, optimizer, trainset, context)
    worker_id = f"optimize-{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    job = client.create_job(
        "optimization",
        payload=payload,
        task=f"skill_fleet.optimize() {type(program).__name__} at {time.strftime('%Y-%m-%d %H:%M:%S')}",
    )
    claim = _claim_own(client, job["id"], worker_id, lease_seconds)
    task_lm = lm if lm is not None else dspy.settings.lm
    task = ResolvedTask(
        name=f"optimize({type(program).__name__})",
        program=program.deepcopy,
        metric=metric,
        trainset=lambda: list(trainset),
        devset=lambda: list(devset) if devset else None,
        lm=lambda: task_lm,
        reflection_lm=lambda: reflection_lm,
        prompt_model=lambda: prompt_model,
    )
    worker = Worker(
        client, task, worker_id=worker_id, lease_seconds=lease_seconds, output_dir=output_dir, max_threads=max_threads
    )
    outcome = worker.handle(claim)
    if outcome.status != "completed" or outcome.report is None:
        raise OptimizeError(f"job {claim.id} {outcome.status}: {outcome.error}")
    return outcome.program, outcome.report
