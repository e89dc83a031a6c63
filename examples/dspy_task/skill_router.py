"""A complete skill-fleet task: route a skill request to its category.

Copy this file (and the two JSONL files) as the template for your own task. It gives the
worker everything it needs (see ``skill_fleet.task``):

* ``program()``   a ``dspy.Predict`` over the :class:`RouteSkill` signature;
* ``metric()``    exact match of the category;
* ``trainset()``  ``train.jsonl`` — 16 requests whose ``example_id`` are examples of
                  skill-fleet's shipped training store, so a run updates their quality;
* ``devset()``    ``dev.jsonl`` — 8 more, to score the program before and after;
* ``lm()``        ``dspy.LM("openai/gpt-4o-mini")`` (``SKILL_FLEET_MODEL`` to change it;
                  the key comes from ``OPENAI_API_KEY``), or, with
                  ``SKILL_FLEET_OFFLINE_LM=1``, a deterministic offline LM with a known
                  price per token (what the tests use).

Run it:

    skill-fleet-worker --url http://127.0.0.1:8000 --task examples/dspy_task/skill_router.py:task --once
    # or, from this directory:  skill-fleet-worker --task skill_router:task --once
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import dspy
from skill_fleet.task import Task

HERE = Path(__file__).resolve().parent
CATEGORIES = ["python", "web", "cli", "database", "devops", "testing", "api", "dspy"]


class RouteSkill(dspy.Signature):
    """Route a skill request to its category."""

    request: str = dspy.InputField(desc="what the user wants a skill for")
    category: str = dspy.OutputField(desc="one of: " + ", ".join(CATEGORIES))


def program() -> dspy.Module:
    """A fresh, uncompiled program (the worker calls this once per job)."""
    return dspy.Predict(RouteSkill)


def metric(example: dspy.Example, pred: Any, trace: Any = None) -> float:
    """1.0 when the predicted category is the labelled one."""
    got = str(getattr(pred, "category", "") or "").strip().lower().strip(".`'\" ")
    return 1.0 if got == example.category else 0.0


def _load(name: str) -> list[dspy.Example]:
    rows = [json.loads(line) for line in (HERE / name).read_text().splitlines() if line.strip()]
    return [dspy.Example(**row).with_inputs("request") for row in rows]


def trainset() -> list[dspy.Example]:
    """The training examples; each keeps its ``example_id``."""
    return _load("train.jsonl")


def devset() -> list[dspy.Example]:
    """The examples scored before and after optimization."""
    return _load("dev.jsonl")


def lm() -> dspy.BaseLM:
    """The task LM: a real one by default, the offline one with ``SKILL_FLEET_OFFLINE_LM=1``."""
    if os.environ.get("SKILL_FLEET_OFFLINE_LM") == "1":
        return offline_lm()
    return dspy.LM(os.environ.get("SKILL_FLEET_MODEL", "openai/gpt-4o-mini"), temperature=0.0, max_tokens=1000)


task = Task(name="skill_router", program=program, metric=metric, trainset=trainset, devset=devset, lm=lm)


# ---------------------------------------------------------------------------------------------
# The offline LM: deterministic, priced like gpt-4o-mini, and just smart enough that optimizing
# helps. Zero-shot it knows a few keywords; given demonstrations (few-shot) or an instruction
# that lists the categories (what MIPROv2 and GEPA propose), it knows many more.
# ---------------------------------------------------------------------------------------------

_ZERO_SHOT = [
    (r"sql", "database"),
    (r"docker", "devops"),
    (r"test", "testing"),
    (r"api|rest\b|endpoint", "api"),
    (r"\bcli\b", "cli"),
    (r"css|react|html", "web"),
]
_FEW_SHOT = [
    (r"dspy", "dspy"),
    (r"flask|nginx|\bweb\b|javascript|accessib|service worker|next\.js", "web"),
    (r"argparse|typer|clap|terminal|tqdm|progress bar|command-line", "cli"),
    (r"kubernetes|github actions|terraform|canary|rollout|logrotate|dockerfile", "devops"),
    (r"hypothesis|vcrpy|freezegun|mutmut|mock|pytest", "testing"),
    (r"pagination|fastapi|idempotent|rate-limit|\bhttp\b", "api"),
    (r"sqlalchemy|\bquery\b|\bjoin\b", "database"),
]
INSTRUCTION = (
    "Route the skill request to exactly one category. Categories: " + ", ".join(CATEGORIES) + ". "
    "Pick the tool or domain the request is about, not the language it is written in."
)


def route_offline(request: str, expert: bool) -> str:
    """The offline LM's answer for one request."""
    text = request.lower()
    for pattern, category in (_FEW_SHOT if expert else []) + _ZERO_SHOT:
        if re.search(pattern, text):
            return category
    return "python"


def _answer(messages: list[dict[str, Any]], fields: list[str]) -> Any:
    from skill_fleet.testing import demo_pairs, input_fields

    if "category" in fields:
        system = next((str(m.get("content") or "") for m in messages if m.get("role") == "system"), "")
        expert = bool(demo_pairs(messages)) or "Categories:" in system
        request = input_fields(str(messages[-1].get("content") or "")).get("request", "")
        return {"category": route_offline(request, expert)}
    if fields:  # MIPROv2's proposer and GEPA's reflection ask for texts: propose the instruction
        return {f: INSTRUCTION for f in fields}
    return "```\n" + INSTRUCTION + "\n```"


def offline_lm() -> dspy.BaseLM:
    """A :class:`skill_fleet.testing.PricedDummyLM` answering this task deterministically."""
    from skill_fleet.testing import PricedDummyLM

    return PricedDummyLM(_answer, model="offline/skill-router")
