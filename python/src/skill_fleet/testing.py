"""Helpers for tests: an offline LM with deterministic answers, real usage and a known price
per call, and :func:`start_server`, a real ``skill-fleet serve`` on a free port.

:class:`PricedDummyLM` is a ``dspy.utils.DummyLM`` that also reports ``usage`` (tokens counted
as ``ceil(characters / 4)`` of the messages and of the answer) and ``cost`` (those tokens at
the prices given, gpt-4o-mini's by default) for every call, through DSPy's own response path:
the numbers land in ``lm.history`` exactly where a real ``dspy.LM`` puts LiteLLM's, so a run's
cost accounting is exercised with real figures. Every call is also appended to
:attr:`PricedDummyLM.ledger`, which copies of the LM share, so a test can compare a run's
reported cost with what was actually charged.

Answers come from, in order of preference:

* a callable ``answers(messages, output_fields) -> dict | str`` (a dict is formatted for the
  adapter; a string is returned as it is);
* a dict ``{substring of the last message: {field: value}}`` or a list of ``{field: value}``
  (DummyLM's own modes);
* otherwise a generic text per requested output field.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dspy.utils import DummyLM

__all__ = ["Ledger", "LedgerEntry", "PricedDummyLM", "output_fields", "input_fields", "demo_pairs", "wants_json"]

# DSPy 3.4 deprecates LMs that implement forward(); it still supports them in 3.x, and this is
# the one interface through which a test LM can report its own cost on every DSPy 3 release.
warnings.filterwarnings(
    "ignore", message=r"Implementing custom LMs through BaseLM\.forward", category=DeprecationWarning
)

_FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]")


class _Obj(dict):
    """An OpenAI-shaped response object: a dict whose keys are also attributes."""

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        return self.get(key)


@dataclass(frozen=True)
class LedgerEntry:
    """One call as charged."""

    prompt_tokens: int
    completion_tokens: int
    cost: float


class Ledger(list):  # type: ignore[type-arg]
    """The calls an LM and all its copies (shallow or deep) were charged for."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def __copy__(self) -> Ledger:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Ledger:
        return self

    def charge(self, entry: LedgerEntry) -> None:
        """Records one call."""
        with self.lock:
            self.append(entry)

    @property
    def total_usd(self) -> float:
        """Sum of the costs."""
        with self.lock:
            return sum(e.cost for e in self)


_CHAT_ASK = "Respond with the corresponding output fields"
_JSON_ASK = "Respond with a JSON object in the following order of fields:"


def output_fields(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """The output fields the last (user) message asks for, in order (ChatAdapter or JSONAdapter)."""
    if not messages:
        return []
    last = str(messages[-1].get("content") or "")
    marker = last.rfind(_CHAT_ASK)
    if marker >= 0:
        return [f for f in _FIELD.findall(last[marker:]) if f != "completed"]
    marker = last.rfind(_JSON_ASK)
    if marker >= 0:
        return re.findall(r"`(\w+)`", last[marker:])
    return []


def wants_json(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the prompt asks for a JSON object (DSPy's JSONAdapter)."""
    return bool(messages) and _JSON_ASK in str(messages[-1].get("content") or "")


def input_fields(content: str) -> dict[str, str]:
    """The ``[[ ## name ## ]]`` sections of one message, as ``{name: text}``."""
    parts = _FIELD.split(content)
    out: dict[str, str] = {}
    for i in range(1, len(parts) - 1, 2):
        text = parts[i + 1]
        for ask in (_CHAT_ASK, _JSON_ASK):
            cut = text.find(ask)
            if cut >= 0:
                text = text[:cut]
        out[parts[i]] = text.strip()
    return out


def demo_pairs(messages: Sequence[Mapping[str, Any]]) -> list[tuple[dict[str, str], dict[str, str]]]:
    """The few-shot demonstrations in a ChatAdapter prompt: ``(inputs, outputs)`` per demo."""
    out = []
    body = [m for m in messages if m.get("role") != "system"][:-1]
    for user, assistant in zip(body[::2], body[1::2], strict=False):
        if user.get("role") == "user" and assistant.get("role") == "assistant":
            out.append(
                (input_fields(str(user.get("content") or "")), input_fields(str(assistant.get("content") or "")))
            )
    return out


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


class PricedDummyLM(DummyLM):
    """A deterministic LM that charges a known price per token.

    Args:
        answers: a callable ``(messages, output_fields) -> dict | str``, or DummyLM's list /
            dict of answers; ``None`` answers every field with a generic text.
        input_usd_per_mtok: price of a million prompt tokens (gpt-4o-mini: 0.15).
        output_usd_per_mtok: price of a million completion tokens (gpt-4o-mini: 0.60).
        model: the model name recorded in history.
        fail_with: an exception to raise on every call (to test failure handling).
    """

    def __init__(
        self,
        answers: Callable[[list[dict[str, Any]], list[str]], Any]
        | Sequence[Mapping[str, Any]]
        | Mapping[str, Mapping[str, Any]]
        | None = None,
        *,
        input_usd_per_mtok: float = 0.15,
        output_usd_per_mtok: float = 0.60,
        model: str = "priced-dummy",
        fail_with: BaseException | None = None,
    ):
        fn = answers if callable(answers) else None
        super().__init__([] if fn is not None or answers is None else answers)  # type: ignore[arg-type]
        self.model = model
        self.answer_fn = fn
        self.input_usd_per_mtok = input_usd_per_mtok
        self.output_usd_per_mtok = output_usd_per_mtok
        self.fail_with = fail_with
        #: Every call charged, shared by all copies of this LM (they are the same "account").
        self.ledger = Ledger()

    @property
    def charged_usd(self) -> float:
        """Sum of the ledger's costs."""
        return self.ledger.total_usd

    def _answer(self, messages: list[dict[str, Any]]) -> str:
        fields = output_fields(messages)
        if self.answer_fn is not None:
            got = self.answer_fn(messages, fields)
        elif isinstance(self.answers, dict):
            last = str(messages[-1].get("content") or "")
            got = next((v for k, v in self.answers.items() if k in last), None)
        elif self.answers is not None and not isinstance(self.answers, (list, tuple)):
            got = next(self.answers, None)  # DummyLM keeps list answers as an iterator
        else:
            got = None
        if got is None:
            got = {f: f"{f} (offline answer)" for f in fields} if fields else "```\nNo answer.\n```"
        if isinstance(got, str):
            return got
        if wants_json(messages):
            return json.dumps(dict(got))
        return self._format(dict(got))

    def _format(self, values: dict[str, Any]) -> str:
        try:
            return self._format_answer_fields(values)
        except Exception:  # older DummyLM without the helper: ChatAdapter's format by hand
            text = "".join(f"[[ ## {k} ## ]]\n{v}\n\n" for k, v in values.items())
            return text + "[[ ## completed ## ]]\n"

    def forward(self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> Any:
        """Answers one call and reports its usage and cost (OpenAI response shape)."""
        if self.fail_with is not None:
            raise self.fail_with
        messages = list(messages or [{"role": "user", "content": prompt or ""}])
        text = self._answer(messages)
        prompt_tokens = sum(_tokens(str(m.get("content") or "")) for m in messages)
        completion_tokens = _tokens(text)
        cost = (prompt_tokens * self.input_usd_per_mtok + completion_tokens * self.output_usd_per_mtok) / 1e6
        self.ledger.charge(LedgerEntry(prompt_tokens, completion_tokens, cost))
        return _Obj(
            id="priced-dummy",
            model=self.model,
            choices=[_Obj(index=0, finish_reason="stop", message=_Obj(role="assistant", content=text))],
            usage={
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            _hidden_params={"response_cost": cost},
        )

    async def aforward(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> Any:  # noqa: D102
        return self.forward(prompt=prompt, messages=messages, **kwargs)


@dataclass
class RunningServer:
    """A ``skill-fleet serve`` started by :func:`start_server`."""

    url: str
    proc: "subprocess.Popen[bytes]"
    log: list[str]

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; the exit code."""
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class ServerDidNotStart(RuntimeError):
    """``skill-fleet serve`` exited or said nothing of listening in time; the message has its
    output."""


def start_server(
    binary: str | os.PathLike[str],
    *,
    db: str | os.PathLike[str],
    rules: str | os.PathLike[str],
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    timeout: float = 30,
) -> RunningServer:
    """Starts a real ``skill-fleet serve`` on a free loopback port (``--addr 127.0.0.1:0``)
    with the database ``db`` and the rules directory ``rules`` (not watched), for tests of
    your own tasks and clients. The server's ``SKILL_FLEET_*`` environment is only ``env``
    (nothing inherited); its output is collected in :attr:`RunningServer.log`. Returns once it
    listens; stop it with :meth:`RunningServer.stop`.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SKILL_FLEET_")}
    full_env.update(env or {})
    command = [str(binary), "serve", "--addr", "127.0.0.1:0", "--db", str(db), "--rules", str(rules), "--no-watch", *args]
    proc = subprocess.Popen(command, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            m = re.search(r"listening on (http://[0-9.:]+)", line)
            if m and not found:
                found.append(m.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(timeout) or not found:
        proc.kill()
        raise ServerDidNotStart("skill-fleet serve did not start:\n" + "\n".join(lines))
    return RunningServer(url=found[0], proc=proc, log=lines)
