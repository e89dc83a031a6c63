"""The optimizer a job names, built with the job's config.

A job's payload carries ``optimizer``, ``config`` (every key of the rules' default config:
``auto``, ``max_bootstrapped_demos``, ``max_labeled_demos``, ``num_threads``,
``num_candidates``, ``num_iters``) and ``variant`` (MIPROv2's ``auto`` level). Each name maps
to one DSPy optimizer:

``gepa``
    ``dspy.GEPA`` with ``max_metric_calls`` derived from the config: GEPA proposes up to
    ``num_candidates × num_iters`` candidates; each costs two reflection minibatches (2 × 3
    metric calls) and, when it improves, a full validation pass, so the budget is
    ``len(valset) + num_candidates × num_iters × (6 + len(valset))``. ``auto`` is MIPROv2's
    variant key and is not used for GEPA. The reflection LM is the task's ``reflection_lm()``,
    else the task LM. The user's 3-argument metric is wrapped into GEPA's 5-argument form
    ``(gold, pred, trace, pred_name, pred_trace)`` (a metric that already takes five, e.g.
    one returning ``dspy.Prediction(score=…, feedback=…)``, is passed as it is).
``miprov2``
    ``dspy.MIPROv2(auto=light|medium|heavy)`` (the payload's ``variant``, else ``config.auto``,
    else ``light``) with ``max_bootstrapped_demos``, ``max_labeled_demos`` and ``num_threads``;
    the proposer LM is the task's ``prompt_model()``, else the task LM. Minibatches are used
    only when the valset is larger than the minibatch (35).
``bootstrap_fewshot``
    ``dspy.BootstrapFewShot(max_bootstrapped_demos, max_labeled_demos, max_rounds=1)``.
``bootstrap_finetune``
    ``dspy.BootstrapFinetune``: needs a ``dspy.LM`` whose provider can fine-tune (e.g.
    ``openai/…``); any other LM fails the job at once, without retry, saying so.
``reflection_metrics``
    No search: the program is compiled with ``dspy.LabeledFewShot(k=max_labeled_demos)`` (the
    labeled training examples become demos, with no LM call), and the run's value is its
    measurement — the metric on every devset example before and after and on every training
    example (``example_results``), which is what the training store reflects on. The cheapest
    and fastest option, as the rules describe it.

Anything else fails the job without retry (:class:`UnknownOptimizer`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CAN_RUN",
    "OptimizerPlan",
    "OptimizerUnavailable",
    "UnknownOptimizer",
    "build_optimizer",
    "canonical_name",
    "gepa_budget",
    "gepa_metric",
]

#: The optimizers this package runs, by the names the rules use.
CAN_RUN = ("gepa", "miprov2", "bootstrap_fewshot", "bootstrap_finetune", "reflection_metrics")

_ALIASES = {
    "gepa": "gepa",
    "miprov2": "miprov2",
    "mipro": "miprov2",
    "bootstrapfewshot": "bootstrap_fewshot",
    "bootstrapfinetune": "bootstrap_finetune",
    "reflectionmetrics": "reflection_metrics",
}

GEPA_MINIBATCH = 3
MIPRO_MINIBATCH = 35


class UnknownOptimizer(ValueError):
    """The job names an optimizer this worker cannot run (not retryable)."""


class OptimizerUnavailable(RuntimeError):
    """The optimizer cannot run with the task's LM (not retryable)."""


def canonical_name(name: str) -> str:
    """``MIPROv2`` → ``miprov2``, ``bootstrap-fewshot`` → ``bootstrap_fewshot``; unknown → :class:`UnknownOptimizer`."""
    key = "".join(ch for ch in str(name).lower() if ch.isalnum())
    try:
        return _ALIASES[key]
    except KeyError:
        raise UnknownOptimizer(f"unknown optimizer `{name}`; this worker runs {', '.join(CAN_RUN)}") from None


def gepa_budget(num_candidates: int, num_iters: int, valset_size: int) -> int:
    """GEPA's ``max_metric_calls`` for a config (see the module docs)."""
    proposals = max(1, num_candidates) * max(1, num_iters)
    return valset_size + proposals * (2 * GEPA_MINIBATCH + valset_size)


def gepa_metric(metric: Callable[..., Any]) -> Callable[..., Any]:
    """The metric in GEPA's five-argument form."""
    try:
        inspect.signature(metric).bind(None, None, None, None, None)
        return metric
    except TypeError:
        pass
    except ValueError:  # no signature (a builtin): assume three arguments
        pass

    def five(gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> Any:
        return metric(gold, pred, trace)

    return five


def _int(config: Mapping[str, Any], key: str, default: int) -> int:
    v = config.get(key)
    if v is None:
        return default
    try:
        return int(v)
    except (TypeError, ValueError):
        raise ValueError(f"config `{key}` is {v!r}, not a whole number") from None


@dataclass
class OptimizerPlan:
    """An optimizer ready to compile, and what the worker reports about it."""

    name: str
    variant: str | None
    config: dict[str, Any]
    compile: Callable[[Any, list[Any], list[Any]], Any]
    #: Metric calls the compile is expected to make (for progress), when known.
    expected_metric_calls: int | None = None
    #: The DSPy optimizer object.
    optimizer: Any = None
    notes: list[str] = field(default_factory=list)


def _finetunable(lm: Any) -> bool:
    provider = getattr(lm, "provider", None)
    return bool(getattr(provider, "finetunable", False)) and callable(getattr(lm, "finetune", None))


def build_optimizer(
    name: str,
    config: Mapping[str, Any] | None,
    variant: str | None = None,
    *,
    metric: Callable[..., Any],
    task_lm: Any = None,
    reflection_lm: Any = None,
    prompt_model: Any = None,
    trainset_size: int = 0,
    valset_size: int = 0,
    max_threads: int | None = None,
) -> OptimizerPlan:
    """Builds the optimizer ``name`` with ``config``; raises :class:`UnknownOptimizer` or
    :class:`OptimizerUnavailable` (both mean: do not retry)."""
    import dspy

    canonical = canonical_name(name)
    config = dict(config or {})
    demos = _int(config, "max_bootstrapped_demos", 4)
    labeled = _int(config, "max_labeled_demos", 4)
    threads = max(1, _int(config, "num_threads", 1))
    if max_threads:
        threads = min(threads, max_threads)
    used: dict[str, Any] = {"num_threads": threads}

    if canonical == "gepa":
        n_cand = _int(config, "num_candidates", 10)
        n_iter = _int(config, "num_iters", 3)
        budget = gepa_budget(n_cand, n_iter, valset_size or trainset_size)
        reflection = reflection_lm or task_lm
        if reflection is None:
            raise OptimizerUnavailable("GEPA needs a reflection LM: the task gives neither reflection_lm() nor lm()")
        opt = dspy.GEPA(
            metric=gepa_metric(metric),
            max_metric_calls=budget,
            reflection_lm=reflection,
            reflection_minibatch_size=GEPA_MINIBATCH,
            num_threads=threads,
            track_stats=False,
            seed=0,
        )
        used.update(num_candidates=n_cand, num_iters=n_iter, max_metric_calls=budget)

        def compile_gepa(program: Any, trainset: list[Any], valset: list[Any]) -> Any:
            return opt.compile(program, trainset=trainset, valset=valset)

        return OptimizerPlan(canonical, None, used, compile_gepa, budget, opt)

    if canonical == "miprov2":
        level = str(variant or config.get("auto") or "light").lower()
        if level not in ("light", "medium", "heavy"):
            raise ValueError(f"MIPROv2 variant `{level}` is not light, medium or heavy")
        opt = dspy.MIPROv2(
            metric=metric,
            prompt_model=prompt_model or task_lm,
            task_model=task_lm,
            auto=level,
            max_bootstrapped_demos=demos,
            max_labeled_demos=labeled,
            num_threads=threads,
            verbose=False,
            track_stats=False,
        )
        used.update(auto=level, max_bootstrapped_demos=demos, max_labeled_demos=labeled)
        params = inspect.signature(opt.compile).parameters

        def compile_mipro(program: Any, trainset: list[Any], valset: list[Any]) -> Any:
            kwargs: dict[str, Any] = {"trainset": trainset, "valset": valset}
            if len(valset) <= MIPRO_MINIBATCH:
                kwargs["minibatch"] = False
            # DSPy 3.0 asks for confirmation on a terminal unless told not to; later versions
            # removed the question (and deprecate the argument).
            p = params.get("requires_permission_to_run")
            if p is not None and p.default is True:
                kwargs["requires_permission_to_run"] = False
            return opt.compile(program, **kwargs)

        return OptimizerPlan(canonical, level, used, compile_mipro, None, opt)

    if canonical == "bootstrap_fewshot":
        opt = dspy.BootstrapFewShot(
            metric=metric, max_bootstrapped_demos=demos, max_labeled_demos=labeled, max_rounds=1
        )
        used.update(max_bootstrapped_demos=demos, max_labeled_demos=labeled, max_rounds=1)
        used.pop("num_threads")
        return OptimizerPlan(
            canonical,
            None,
            used,
            lambda program, trainset, valset: opt.compile(program, trainset=trainset),
            trainset_size,
            opt,
        )

    if canonical == "bootstrap_finetune":
        if not _finetunable(task_lm):
            model = getattr(task_lm, "model", None) or type(task_lm).__name__
            raise OptimizerUnavailable(
                f"bootstrap_finetune cannot run with the task LM `{model}` ({type(task_lm).__name__}): "
                "it does not support fine-tuning. Use a dspy.LM whose provider can fine-tune "
                "(e.g. dspy.LM('openai/gpt-4o-mini-2024-07-18')), or run another optimizer."
            )
        opt = dspy.BootstrapFinetune(metric=metric, num_threads=threads)

        def compile_finetune(program: Any, trainset: list[Any], valset: list[Any]) -> Any:
            program.set_lm(task_lm)
            return opt.compile(program, trainset=trainset)

        return OptimizerPlan(canonical, None, used, compile_finetune, trainset_size, opt)

    # reflection_metrics
    k = labeled
    opt = dspy.LabeledFewShot(k=k)
    return OptimizerPlan(
        canonical,
        None,
        {"max_labeled_demos": k, "compile": "LabeledFewShot"},
        lambda program, trainset, valset: opt.compile(program, trainset=trainset),
        0,
        opt,
    )
