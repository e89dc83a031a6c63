"""One optimization run: load the task, measure, compile, measure again, save, report.

:func:`run_job` is shared by the worker (``skill-fleet-worker``) and :func:`skill_fleet.optimize`.
It never talks to the server: it reports progress into a :class:`Progress` (the worker's
heartbeat thread sends it) and raises :class:`RunFailed` (with whether a retry can help) or
:class:`Fenced` (stop: the lease is gone, write nothing more).

Phases and their share of the percent: ``loading`` 0–5, ``evaluating_before`` 5–15,
``compiling`` 15–85, ``evaluating_after`` 85–95 (the devset, then every training example for
``example_results``), ``saving`` 95–99. Inside a phase the percent follows the metric calls
made against the number expected; during a MIPROv2 compile it follows DSPy's own trial
counter (``Trial k / N`` in its log) and during GEPA the metric calls against GEPA's
``max_metric_calls`` (with GEPA's iteration number in the message).
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .accounting import Usage, UsageMeter
from .optimizers import OptimizerUnavailable, UnknownOptimizer, build_optimizer, canonical_name
from .task import ResolvedTask

__all__ = [
    "PHASES",
    "ExampleResult",
    "Fenced",
    "Progress",
    "RunFailed",
    "RunReport",
    "classify_error",
    "run_job",
]

log = logging.getLogger("skill_fleet")

#: Each phase's range of the job's percent.
PHASES: dict[str, tuple[float, float]] = {
    "loading": (0.0, 5.0),
    "evaluating_before": (5.0, 15.0),
    "compiling": (15.0, 85.0),
    "evaluating_after": (85.0, 95.0),
    "saving": (95.0, 99.0),
}


class Fenced(Exception):
    """The run must stop and never write to its job again (lease lost, job cancelled, Ctrl-C)."""


class RunFailed(Exception):
    """The run failed; ``retry`` says whether running it again can help."""

    def __init__(self, reason: str, retry: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


class Progress:
    """The run's current phase, percent and message, shared with the heartbeat thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.phase = "loading"
        self.percent = 0.0
        self.message = "loading the task"
        self.trials: dict[str, Any] = {}
        self._stop = threading.Event()
        self.stop_reason: str | None = None
        #: Set on every phase change (the heartbeat thread sends at once).
        self.changed = threading.Event()
        self._entered: list[tuple[float, str, str]] = []

    def set_phase(self, phase: str, message: str) -> None:
        """Enters ``phase`` at its lower bound."""
        self.check()
        with self._lock:
            self.phase = phase
            self.percent = PHASES[phase][0]
            self.message = message
            self._entered.append((self.percent, phase, message))
        self.changed.set()

    def entered(self) -> list[tuple[float, str, str]]:
        """The phases entered since the last call, as ``(percent, phase, message)``: the
        heartbeat thread reports each one, however short it was."""
        with self._lock:
            out, self._entered = self._entered, []
        return out

    def advance(self, fraction: float, message: str | None = None) -> None:
        """Moves within the phase (``fraction`` 0..1; never backwards)."""
        lo, hi = PHASES.get(self.phase, (0.0, 99.0))
        pct = lo + (hi - lo) * max(0.0, min(0.99, fraction))
        with self._lock:
            self.percent = round(max(self.percent, pct), 1)
            if message:
                self.message = message

    def snapshot(self) -> tuple[float, str, str]:
        """``(percent, phase, message)``."""
        with self._lock:
            return self.percent, self.phase, self.message

    def stop(self, reason: str) -> None:
        """Asks the run to stop (it raises :class:`Fenced` at its next check)."""
        if not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()
        self.changed.set()

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def check(self) -> None:
        """Raises :class:`Fenced` once the run was asked to stop."""
        if self._stop.is_set():
            raise Fenced(self.stop_reason or "stopped")


@dataclass
class ExampleResult:
    """The compiled program's metric on one training example."""

    example_id: str
    score: float
    passed: bool


@dataclass
class RunReport:
    """What a run did, cost and reached. :meth:`to_result` is the job's result."""

    optimizer: str
    variant: str | None
    config: dict[str, Any]
    task: str
    score_before: float
    score_after: float
    actual_cost: float
    tokens: dict[str, int]
    lm_calls: int
    wall_seconds: float
    compile_seconds: float
    program_path: str | None
    example_results: list[ExampleResult] = field(default_factory=list)
    trainset_size: int = 0
    devset_size: int = 0
    evaluated_on: str = "devset"
    search: dict[str, Any] = field(default_factory=dict)
    missing_example_ids: list[str] = field(default_factory=list)
    unpriced_lm_calls: int = 0
    cached_lm_calls: int = 0
    cost_by_model: dict[str, dict[str, float]] = field(default_factory=dict)
    job_id: str | None = None
    decision_id: int | None = None

    @property
    def quality(self) -> float:
        """The score after optimization, 0..1."""
        return self.score_after

    @property
    def actual_time_minutes(self) -> float:
        """Wall time in minutes."""
        return self.wall_seconds / 60.0

    def to_result(self) -> dict[str, Any]:
        """The job result the server turns into an outcome and training updates."""
        out: dict[str, Any] = {
            "optimizer_used": self.optimizer,
            "config": self.config,
            "quality": round(self.score_after, 6),
            "score_before": round(self.score_before, 6),
            "score_after": round(self.score_after, 6),
            "actual_cost": round(self.actual_cost, 8),
            "tokens": self.tokens,
            "lm_calls": self.lm_calls,
            "actual_time_minutes": round(self.actual_time_minutes, 4),
            "wall_seconds": round(self.wall_seconds, 3),
            "compile_seconds": round(self.compile_seconds, 3),
            "program_path": self.program_path,
            "example_results": [asdict(r) for r in self.example_results],
            "task": self.task,
            "trainset_size": self.trainset_size,
            "devset_size": self.devset_size,
            "evaluated_on": self.evaluated_on,
            "search": self.search,
            "cost_by_model": self.cost_by_model,
        }
        if self.variant:
            out["variant"] = self.variant
        if self.missing_example_ids:
            out["missing_example_ids"] = self.missing_example_ids
        if self.unpriced_lm_calls:
            out["unpriced_lm_calls"] = self.unpriced_lm_calls
        if self.cached_lm_calls:
            out["cached_lm_calls"] = self.cached_lm_calls
        return out


# -------------------------------------------------------------------------------------------
# Failure classification
# -------------------------------------------------------------------------------------------

# Exception class names (anywhere in the cause chain) that say what a retry can do.
_LM_CONFIG = (
    "AuthError",
    "AuthenticationError",
    "PermissionDenied",
    "BillingError",
    "NotConfigured",
    "ConfigurationError",
    "UnsupportedModel",
    "UnsupportedFeature",
    "ContextWindowExceeded",
    "NotFoundError",
    "BadRequestError",
    "InvalidRequestError",
)
_TRANSIENT = (
    "RateLimit",
    "Timeout",
    "ServerError",
    "ServiceUnavailable",
    "InternalServerError",
    "APIConnectionError",
    "TransportError",
    "ConnectionFailed",
    "ConnectionError",
    "LockTimeout",
)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 10:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _names(exc: BaseException) -> list[str]:
    return [c.__name__ for c in type(exc).__mro__]


def _where(exc: BaseException) -> str:
    """The innermost frame outside DSPy and the libraries, as ``file:line in function``."""
    frames = traceback.extract_tb(exc.__traceback__)
    lib = ("site-packages", "dist-packages", f"{os.sep}dspy{os.sep}", f"{os.sep}skill_fleet{os.sep}", "<frozen")
    user = [f for f in frames if not any(p in f.filename for p in lib)]
    pick = user or list(frames)
    if not pick:
        return ""
    f = pick[-1]
    return f" (at {os.path.basename(f.filename)}:{f.lineno} in {f.name})"


def classify_error(exc: BaseException, during: str = "") -> RunFailed:
    """Turns an exception from a run into a :class:`RunFailed` with an honest ``retry``.

    * the LM refused the configuration (no or bad API key, unknown model, no fine-tuning,
      context too long) → not retryable, with the LM's message;
    * a transient LM or network error (rate limit, timeout, 5xx, connection) → retryable;
    * anything else is an exception in the task's code (program, metric, loaders) → not
      retryable, with the exception and the line it came from.
    """
    if isinstance(exc, RunFailed):
        return exc
    if isinstance(exc, (UnknownOptimizer, OptimizerUnavailable)):
        return RunFailed(str(exc), retry=False)
    where = f" while {during}" if during else ""
    for e in _chain(exc):
        names = _names(e)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if any(any(k in n for k in _LM_CONFIG) for n in names):
            return RunFailed(f"the LM refused the request{where}: {type(e).__name__}: {msg}", retry=False)
        if any(any(k in n for k in _TRANSIENT) for n in names) or isinstance(e, (ConnectionError, TimeoutError)):
            return RunFailed(f"transient error{where}: {type(e).__name__}: {msg}", retry=True)
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return RunFailed(f"exception in the task's code{where}: {type(exc).__name__}: {msg}{_where(exc)}", retry=False)


# -------------------------------------------------------------------------------------------
# Metric counting and DSPy's own progress
# -------------------------------------------------------------------------------------------


def _score(value: Any) -> float:
    """A metric's value as 0..1 (``bool``, number, or a ``Prediction``/dict with ``score``)."""
    if hasattr(value, "score") and not isinstance(value, (int, float)):
        value = value.score
    elif isinstance(value, Mapping) and "score" in value:
        value = value["score"]
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    try:
        f = float(value)
    except (TypeError, ValueError):
        return 0.0
    if math.isnan(f):
        return 0.0
    return max(0.0, min(1.0, f))


class CountingMetric:
    """The task's metric, counting calls for progress and stopping a fenced run."""

    def __init__(self, metric: Callable[..., Any], progress: Progress):
        self.metric = metric
        self.progress = progress
        self.calls = 0
        self.phase_calls = 0
        self.expected: int | None = None
        self.label = ""
        self._lock = threading.Lock()
        self._five = _takes_five(metric)

    def begin(self, expected: int | None, label: str) -> None:
        """Starts counting for a phase."""
        with self._lock:
            self.phase_calls = 0
            self.expected = expected
            self.label = label

    def __call__(self, example: Any, pred: Any, trace: Any = None, *rest: Any) -> Any:
        self.progress.check()
        value = self.metric(example, pred, trace, *rest) if (self._five and rest) else self.metric(example, pred, trace)
        with self._lock:
            self.calls += 1
            self.phase_calls += 1
            n, expected, label = self.phase_calls, self.expected, self.label
        if expected:
            self.progress.advance(n / expected, f"{label}: {n}/{expected} metric calls" if label else None)
        return value


def _takes_five(metric: Callable[..., Any]) -> bool:
    import inspect

    try:
        inspect.signature(metric).bind(None, None, None, None, None)
        return True
    except (TypeError, ValueError):
        return False


class _SearchLog(logging.Handler):
    """Reads MIPROv2's ``Trial k / N`` and GEPA's ``Iteration k`` from DSPy's log."""

    _TRIAL = re.compile(r"Trial (\d+) / (\d+)")
    _ITER = re.compile(r"^Iteration (\d+)\b")
    _STEP = re.compile(r"STEP (\d): ([A-Z ]+)")

    def __init__(self, optimizer: str, progress: Progress, counter: CountingMetric):
        super().__init__(logging.INFO)
        self.optimizer = optimizer
        self.progress = progress
        self.counter = counter
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:  # noqa: D102
        if record.thread != self.thread:
            return
        try:
            msg = record.getMessage()
        except Exception:
            return
        t = self.progress.trials
        if self.optimizer == "miprov2":
            if m := self._STEP.search(msg):
                step = int(m.group(1))
                t["step"] = step
                frac = {1: 0.0, 2: 0.15, 3: 0.25}.get(step, 0.0)
                self.progress.advance(frac, f"miprov2 {t.get('auto', '')}: step {step}, {m.group(2).strip().lower()}")
            elif m := self._TRIAL.search(msg):
                k, n = int(m.group(1)), int(m.group(2))
                t["trials"] = max(k, int(t.get("trials", 0)))
                t["trials_planned"] = n
                self.progress.advance(0.25 + 0.75 * (k - 1) / max(n, 1), f"miprov2 {t.get('auto', '')}: trial {k}/{n}")
        elif self.optimizer == "gepa":
            if m := self._ITER.search(msg):
                t["iterations"] = max(int(m.group(1)), int(t.get("iterations", 0)))
                budget = t.get("max_metric_calls")
                calls = self.counter.phase_calls
                self.progress.advance(
                    calls / budget if budget else 0.0,
                    f"gepa: iteration {t['iterations']}, {calls}/{budget} metric calls",
                )


# The optimizers' loggers. Their INFO records are read even when the user quietened DSPy's
# log: the loggers are opened to INFO while a compile listens, without printing what the
# user's levels would hide.
_SEARCH_LOGGERS = ("dspy.teleprompt.mipro_optimizer_v2", "dspy.teleprompt.gepa.gepa")
_listen_lock = threading.Lock()
_listeners: list[logging.Handler] = []
_saved: dict[str, tuple[int, bool]] = {}


def _listen(handler: logging.Handler) -> None:
    with _listen_lock:
        if not _listeners:
            for name in _SEARCH_LOGGERS:
                lg = logging.getLogger(name)
                _saved[name] = (lg.level, lg.propagate)
                quiet = not lg.isEnabledFor(logging.INFO)
                lg.setLevel(logging.INFO)
                if quiet:
                    lg.propagate = False
        _listeners.append(handler)
        for name in _SEARCH_LOGGERS:
            logging.getLogger(name).addHandler(handler)


def _unlisten(handler: logging.Handler) -> None:
    with _listen_lock:
        for name in _SEARCH_LOGGERS:
            logging.getLogger(name).removeHandler(handler)
        if handler in _listeners:
            _listeners.remove(handler)
        if not _listeners:
            for name, (level, propagate) in _saved.items():
                lg = logging.getLogger(name)
                lg.setLevel(level)
                lg.propagate = propagate
            _saved.clear()


# -------------------------------------------------------------------------------------------
# The run
# -------------------------------------------------------------------------------------------


def _call_user(what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (Fenced, RunFailed, KeyboardInterrupt):
        raise
    except Exception as e:
        raise classify_error(e, what) from e


def _evaluate(
    program: Any, examples: list[Any], metric: CountingMetric, threads: int, label: str
) -> list[tuple[Any, float]]:
    """Scores ``program`` on ``examples`` with ``dspy.Evaluate``; ``[(example, score)]`` in order."""
    import dspy

    metric.begin(len(examples), label)
    ev = dspy.Evaluate(devset=examples, metric=metric, num_threads=threads, display_progress=False, display_table=False)
    got = ev(program)
    results = getattr(got, "results", None)
    if results is None:  # pragma: no cover - DSPy 3 always returns an EvaluationResult
        raise RuntimeError("dspy.Evaluate returned no per-example results")
    return [(r[0], _score(r[2])) for r in results]


def _mean(scores: list[float]) -> float:
    return sum(scores) / len(scores) if scores else 0.0


def _example_id(example: Any) -> str | None:
    try:
        v = example.get("example_id") if hasattr(example, "get") else getattr(example, "example_id", None)
    except Exception:
        v = None
    return None if v is None else str(v)


def _select(trainset: list[Any], ids: Any) -> tuple[list[Any], list[str]]:
    """The examples whose ``example_id`` the job selected, and the selected ids not found."""
    if not isinstance(ids, list) or not ids:
        return trainset, []
    wanted = [str(i) for i in ids]
    by_id = {_example_id(e): e for e in trainset}
    picked = [by_id[i] for i in wanted if i in by_id]
    missing = [i for i in wanted if i not in by_id]
    if not picked:
        raise RunFailed(
            f"none of the job's {len(wanted)} selected example ids (e.g. `{wanted[0]}`) is an `example_id` "
            "of the task's trainset: the job was made for another trainset",
            retry=False,
        )
    return picked, missing


def _smoke(program: Any, example: Any, metric: Callable[..., Any]) -> None:
    """Runs the program and the metric once, outside DSPy's error handling, so a broken
    program, metric or LM fails the job with its own exception."""
    pred = program(**example.inputs())
    metric(example, pred, None)


def run_job(
    task: ResolvedTask,
    payload: Mapping[str, Any],
    *,
    progress: Progress | None = None,
    output_dir: str | os.PathLike[str] = "skill-fleet-runs",
    job_id: str | None = None,
    max_threads: int | None = None,
) -> tuple[Any, RunReport]:
    """Runs the optimization a job's ``payload`` describes on ``task``.

    Returns the compiled program and its :class:`RunReport`. Raises :class:`RunFailed` (with
    ``retry``) or :class:`Fenced`; ``KeyboardInterrupt`` passes through.
    """
    import dspy

    progress = progress or Progress()
    started = time.monotonic()
    optimizer_name = str(payload.get("optimizer") or "")
    try:
        name = canonical_name(optimizer_name)
    except UnknownOptimizer as e:
        raise RunFailed(str(e), retry=False) from None
    config = dict(payload.get("config") or {})
    variant = payload.get("variant")

    # -- loading ---------------------------------------------------------------------------
    progress.set_phase("loading", f"loading task {task.name}")
    program = _call_user("building the program (task.program())", task.program)
    full_train = list(_call_user("loading the trainset (task.trainset())", task.trainset) or [])
    devset = _call_user("loading the devset (task.devset())", task.devset)
    if not full_train:
        raise RunFailed("the task's trainset is empty", retry=False)
    trainset, missing = _select(full_train, payload.get("selected_example_ids"))
    evaluated_on = "devset"
    if not devset:
        devset, evaluated_on = trainset, "trainset (the task has no devset)"
    devset = list(devset)
    task_lm = _call_user("building the task LM (task.lm())", task.lm)
    if task_lm is None:
        task_lm = dspy.settings.lm
    if task_lm is None:
        raise RunFailed("the task gives no LM: task.lm() returned None and dspy has none configured", retry=False)
    reflection_lm = _call_user("building the reflection LM (task.reflection_lm())", task.reflection_lm)
    prompt_model = _call_user("building the prompt model (task.prompt_model())", task.prompt_model)

    meter = UsageMeter()
    for lm in (task_lm, reflection_lm, prompt_model):
        meter.attach(lm)
    counter = CountingMetric(task.metric, progress)
    threads = max(1, int(config.get("num_threads") or 1))
    if max_threads:
        threads = min(threads, max_threads)
    callbacks = list(dspy.settings.get("callbacks", None) or []) + [meter]
    try:
        with dspy.context(lm=task_lm, callbacks=callbacks):
            try:
                for ex in trainset[:1] + devset[:1]:
                    ex.inputs()
            except Exception as e:
                raise RunFailed(
                    f"the task's examples do not mark their inputs: {e} (use dspy.Example(...).with_inputs(...))",
                    retry=False,
                ) from e
            _call_user(
                "running the program and metric on a first example", lambda: _smoke(program, devset[0], task.metric)
            )
            try:
                plan = build_optimizer(
                    name,
                    config,
                    variant,
                    metric=counter,
                    task_lm=task_lm,
                    reflection_lm=reflection_lm,
                    prompt_model=prompt_model,
                    trainset_size=len(trainset),
                    valset_size=len(devset),
                    max_threads=max_threads,
                )
            except (UnknownOptimizer, OptimizerUnavailable, ValueError) as e:
                raise RunFailed(str(e), retry=False) from e
            if plan.expected_metric_calls is None and name == "miprov2":
                plan.expected_metric_calls = _mipro_expected(plan.variant or "light", len(trainset), len(devset))
            progress.trials.update({k: v for k, v in plan.config.items() if k in ("auto", "max_metric_calls")})

            # -- evaluating_before ---------------------------------------------------------
            progress.set_phase("evaluating_before", f"scoring the program on {len(devset)} examples")
            before = _guarded(
                progress,
                "scoring the program before optimization",
                program,
                devset[0],
                task.metric,
                lambda: _evaluate(program, devset, counter, threads, "before"),
            )
            score_before = _mean([s for _, s in before])

            # -- compiling -------------------------------------------------------------------
            progress.set_phase(
                "compiling", f"{name}{' ' + plan.variant if plan.variant else ''} on {len(trainset)} examples"
            )
            counter.begin(plan.expected_metric_calls, name)
            handler = _SearchLog(name, progress, counter)
            t0 = time.monotonic()
            try:
                _listen(handler)
                compiled = _guarded(
                    progress,
                    f"compiling with {name}",
                    program,
                    trainset[0],
                    task.metric,
                    lambda: plan.compile(program, trainset, devset),
                )
            finally:
                _unlisten(handler)
            compile_seconds = time.monotonic() - t0
            progress.check()
            search = {"metric_calls": counter.phase_calls}
            search.update({k: v for k, v in progress.trials.items() if k != "step"})

            # -- evaluating_after ------------------------------------------------------------
            with_ids = [e for e in trainset if _example_id(e) is not None]
            progress.set_phase(
                "evaluating_after", f"scoring the compiled program on {len(devset)} + {len(with_ids)} examples"
            )
            after = _guarded(
                progress,
                "scoring the compiled program",
                compiled,
                devset[0],
                task.metric,
                lambda: _evaluate(compiled, devset, counter, threads, "after"),
            )
            score_after = _mean([s for _, s in after])
            per_example: list[ExampleResult] = []
            if with_ids:
                scored = _guarded(
                    progress,
                    "scoring the training examples",
                    compiled,
                    with_ids[0],
                    task.metric,
                    lambda: _evaluate(compiled, with_ids, counter, threads, "training examples"),
                )
                per_example = [
                    ExampleResult(example_id=str(_example_id(ex)), score=round(s, 6), passed=s >= task.pass_threshold)
                    for ex, s in scored
                ]

            # -- saving --------------------------------------------------------------------
            progress.set_phase("saving", "saving the compiled program")
            path = Path(output_dir) / (job_id or time.strftime("run-%Y%m%d-%H%M%S")) / "program.json"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                compiled.save(str(path))
                program_path: str | None = str(path.resolve())
            except OSError as e:
                raise RunFailed(f"could not save the compiled program to {path}: {e}", retry=True) from e
    finally:
        meter.detach()
    usage: Usage = meter.sweep()
    report = RunReport(
        optimizer=name,
        variant=plan.variant,
        config=plan.config,
        task=task.name or "task",
        score_before=score_before,
        score_after=score_after,
        actual_cost=usage.cost_usd,
        tokens=usage.as_tokens(),
        lm_calls=usage.calls,
        wall_seconds=time.monotonic() - started,
        compile_seconds=compile_seconds,
        program_path=program_path,
        example_results=per_example,
        trainset_size=len(trainset),
        devset_size=len(devset),
        evaluated_on=evaluated_on,
        search=search,
        missing_example_ids=missing,
        unpriced_lm_calls=usage.unpriced_calls,
        cached_lm_calls=usage.cached_calls,
        cost_by_model={k: {kk: round(vv, 8) for kk, vv in v.items()} for k, v in usage.by_model.items()},
        job_id=job_id,
        decision_id=payload.get("decision_id") if isinstance(payload.get("decision_id"), int) else None,
    )
    return compiled, report


def _guarded(
    progress: Progress, what: str, program: Any, example: Any, metric: Callable[..., Any], fn: Callable[[], Any]
) -> Any:
    """Runs a DSPy step; when it fails, finds the real cause by running the program once."""
    try:
        return fn()
    except (Fenced, RunFailed, KeyboardInterrupt):
        raise
    except Exception as e:
        progress.check()  # a fenced run's metric raised inside DSPy: stop, do not diagnose
        # DSPy's parallel executor replaces the cause by "Execution cancelled due to errors";
        # a direct call brings the first real exception back.
        cause: BaseException = e
        try:
            _smoke(program, example, metric)
        except (Fenced, KeyboardInterrupt):
            raise
        except Exception as direct:
            cause = direct
        raise classify_error(cause, what) from e


def _mipro_expected(level: str, trainset: int, valset: int) -> int:
    """Rough metric calls of a MIPROv2 run (used only when its log is silent)."""
    n = {"light": 6, "medium": 12, "heavy": 18}.get(level, 6)
    trials = int(max(2 * 2 * math.log2(n), 1.5 * n))
    return n * trainset + (trials + 1) * min(valset, 100 if level == "light" else 300)
