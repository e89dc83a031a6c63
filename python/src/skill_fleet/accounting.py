"""What a run spent, from the LMs' own accounting.

Every ``dspy`` LM appends an entry to ``lm.history`` per call, with ``usage``
(``prompt_tokens``, ``completion_tokens``) and ``cost`` in USD (LiteLLM's price for the
call; ``None`` when the provider's price is unknown). Optimizers also call *copies* of the
LMs (``lm.copy(temperature=1.0, rollout_id=…)`` in BootstrapFewShot rounds and MIPROv2's
proposer), and each copy keeps its own history. :class:`UsageMeter` therefore registers itself
as a DSPy callback, both on the LMs the run is given (copies inherit instance callbacks) and
in the run's ``dspy.context`` (LMs the program creates itself), and after each LM call reads
the calling LM's new history entries. Each entry is counted once (by its ``uuid``).

A cache hit (an entry with empty ``usage``) cost nothing now: it counts as a call, not as
spend, even though DSPy keeps the original call's ``cost`` on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

try:  # dspy is a dependency of the package, but the client works without it.
    from dspy.utils.callback import BaseCallback as _Callback
except Exception:  # pragma: no cover
    _Callback = object  # type: ignore[assignment,misc]

__all__ = ["Usage", "UsageMeter", "usage_of_history"]


@dataclass
class Usage:
    """Calls, tokens and USD summed over LM history entries."""

    calls: int = 0
    cached_calls: int = 0
    unpriced_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    by_model: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def add_entry(self, entry: Mapping[str, Any]) -> None:
        """Adds one ``lm.history`` entry."""
        usage = entry.get("usage") or {}
        if not isinstance(usage, Mapping):
            usage = dict(usage)
        self.calls += 1
        model = str(entry.get("model") or "unknown")
        row = self.by_model.setdefault(model, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0})
        row["calls"] += 1
        if not usage:
            self.cached_calls += 1
            return
        prompt = int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0)
        completion = int(usage.get("completion_tokens") or usage.get("output_tokens") or 0)
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        row["prompt_tokens"] += prompt
        row["completion_tokens"] += completion
        cost = entry.get("cost")
        if cost is None:
            self.unpriced_calls += 1
        else:
            self.cost_usd += float(cost)
            row["cost_usd"] += float(cost)

    def as_tokens(self) -> dict[str, int]:
        """``{"prompt", "completion", "total"}``."""
        return {"prompt": self.prompt_tokens, "completion": self.completion_tokens, "total": self.total_tokens}


def usage_of_history(entries: Iterable[Mapping[str, Any]]) -> Usage:
    """Sums a list of ``lm.history`` entries."""
    u = Usage()
    for e in entries:
        u.add_entry(e)
    return u


def _key(entry: Mapping[str, Any]) -> Any:
    return entry.get("uuid") or id(entry)


class UsageMeter(_Callback):  # type: ignore[misc,valid-type]
    """Counts every LM call of a run once, across LM copies and threads.

    Args:
        on_call: called (without the lock) after each LM call with the running :class:`Usage`.
    """

    def __init__(self, on_call: Callable[[Usage], None] | None = None):
        self._lock = threading.Lock()
        self._seen: set[Any] = set()
        self._lms: dict[int, Any] = {}
        self._attached: list[Any] = []
        self._calls: dict[str, Any] = {}
        self.usage = Usage()
        self.on_call = on_call

    # -- registration ----------------------------------------------------------------------

    def attach(self, lm: Any) -> None:
        """Meters ``lm`` (and the copies it makes from now on); its past history is not counted."""
        if lm is None:
            return
        with self._lock:
            if id(lm) in self._lms:
                return
            self._lms[id(lm)] = lm
            for entry in list(getattr(lm, "history", None) or []):
                self._seen.add(_key(entry))
        callbacks = getattr(lm, "callbacks", None)
        if isinstance(callbacks, list) and self not in callbacks:
            callbacks.append(self)
            self._attached.append(lm)

    def detach(self) -> None:
        """Takes the meter off the LMs :meth:`attach` put it on (after a final sweep)."""
        self.sweep()
        for lm in self._attached:
            try:
                lm.callbacks.remove(self)
            except (AttributeError, ValueError):
                pass
        self._attached.clear()

    # -- DSPy callback hooks ---------------------------------------------------------------

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:  # noqa: D102
        with self._lock:
            self._calls[call_id] = instance
            if id(instance) not in self._lms:
                # A copy made during the run (or an LM the program built): its history is new.
                self._lms[id(instance)] = instance

    def on_lm_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:  # noqa: D102
        with self._lock:
            lm = self._calls.pop(call_id, None)
        if lm is not None:
            self._sweep_one(lm)
        if self.on_call is not None:
            self.on_call(self.usage)

    # -- reading history -------------------------------------------------------------------

    def _sweep_one(self, lm: Any) -> None:
        history = getattr(lm, "history", None)
        if not history:
            return
        with self._lock:
            new = []
            # Entries are appended in order, and every sweep takes all unseen entries at the
            # end, so the seen ones form a prefix: stop at the first one met from the end.
            for entry in reversed(list(history)):
                k = _key(entry)
                if k in self._seen:
                    break
                self._seen.add(k)
                new.append(entry)
            for entry in reversed(new):
                self.usage.add_entry(entry)

    def sweep(self) -> Usage:
        """Reads every known LM's history for entries not counted yet; returns the total."""
        with self._lock:
            lms = list(self._lms.values())
        for lm in lms:
            self._sweep_one(lm)
        return self.usage

    def __deepcopy__(self, memo: dict[int, Any]) -> UsageMeter:
        # LMs are deep-copied with programs (``program.deepcopy()``); the copy must keep
        # reporting to this run's meter, not to a private clone.
        return self
