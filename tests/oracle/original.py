#!/usr/bin/env python3
"""An oracle independent of skill-fleet's code: the original selector's expressions,
transcribed in Python (Python's own float arithmetic and `round`), checked against the real
`skill-fleet rules test --input - --format json` on seeded random inputs.

The rule set given with --rules must have its budget guard off (`guard.enabled: false`): then
the shipped rules promise the original's answer for every input.

    python3 tests/oracle/original.py --bin target/debug/skill-fleet --rules DIR [--n 10000] [--seed 7]

Prints each mismatch (the first 20 in full), then `oracle: N passed, M failed`; exit 1 on any
mismatch, 2 when the binary fails.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

# ---------------------------------------------------------------------------------------------
# The original, transcribed. Order of evaluation as written there.

BASE_COSTS = {
    "bootstrap_fewshot": 0.10,
    "reflection_metrics": 0.05,
    "gepa": 0.50,
    "miprov2": 2.50,
    "bootstrap_finetune": 20.00,
}
BASE_TIMES = {
    "bootstrap_fewshot": 1,
    "reflection_metrics": 1,
    "gepa": 5,
    "miprov2": 15,
    "bootstrap_finetune": 60,
}
MIPRO_MULTIPLIERS = {"light": 0.5, "medium": 1.0, "heavy": 2.5}


def default_config():
    return {
        "auto": "medium",
        "max_bootstrapped_demos": 4,
        "max_labeled_demos": 4,
        "num_threads": 8,
        "num_candidates": 10,
        "num_iters": 3,
    }


def estimate_cost(optimizer, config, trainset_size):
    base = BASE_COSTS.get(optimizer, 1.0)
    multiplier = MIPRO_MULTIPLIERS.get(config.get("auto", "medium"), 1.0) if optimizer == "miprov2" else 1
    return round(base * multiplier * (trainset_size / 100), 2)


def estimate_time(optimizer, config, trainset_size):
    base_time = BASE_TIMES.get(optimizer, 5)
    if optimizer == "miprov2":
        base_time = int(base_time * MIPRO_MULTIPLIERS.get(config.get("auto", "medium"), 1.0))
    return max(1, int(base_time * trainset_size / 100))


def select(trainset_size, budget, quality_target, time_constraint):
    config = default_config()
    if time_constraint and time_constraint < 2:
        return "reflection_metrics", config
    if budget < 1.0:
        return "reflection_metrics", config
    if trainset_size < 100 and budget < 5.0:
        config.update(num_candidates=5, num_iters=2)
        return "gepa", config
    if trainset_size < 500 and budget < 20.0:
        config.update(auto="light", max_bootstrapped_demos=2)
        return "miprov2", config
    if trainset_size >= 500 and 20.0 <= budget < 100.0:
        config.update(auto="medium", max_bootstrapped_demos=4)
        return "miprov2", config
    if budget >= 100.0 and quality_target >= 0.95:
        return "bootstrap_finetune", config
    if budget >= 100.0:
        config.update(auto="heavy", max_bootstrapped_demos=6, max_labeled_demos=6)
        return "miprov2", config
    config.update(max_bootstrapped_demos=3)
    return "bootstrap_fewshot", config


def confidence(optimizer, domain, trainset_size, history):
    confidence = 0.75
    if history:
        similar = [h for h in history if h["domain"] == domain and h["optimizer"] == optimizer]
        if similar:
            success_rate = sum(1 for h in similar if h["quality"] >= 0.8) / len(similar)
            confidence = min(0.95, 0.75 + success_rate * 0.1)
    if trainset_size < 20:
        confidence *= 0.8
    return round(confidence, 2)


def recommend(inp, history):
    t = inp["trainset_size"]
    optimizer, config = select(
        t, inp["budget_usd"], inp["quality_target"], inp.get("time_constraint_minutes")
    )
    alternatives = []
    for alt, risk in (("reflection_metrics", 0.15), ("bootstrap_fewshot", 0.10)):
        if alt != optimizer:
            alternatives.append(
                {
                    "optimizer": alt,
                    "estimated_cost": estimate_cost(alt, default_config(), t),
                    "estimated_time_minutes": estimate_time(alt, default_config(), t),
                    "quality_risk": risk,
                }
            )
    return {
        "recommended": optimizer,
        "config": config,
        "estimated_cost": estimate_cost(optimizer, config, t),
        "estimated_time_minutes": estimate_time(optimizer, config, t),
        "confidence": confidence(optimizer, inp["domain"], t, history),
        "alternatives": alternatives,
    }


# ---------------------------------------------------------------------------------------------
# Inputs: integers and two-decimal budgets across every rule's region, edges included.

SIZES_AT_EDGES = [1, 2, 18, 19, 20, 21, 50, 99, 100, 101, 150, 499, 500, 501, 10_000]
BUDGETS_AT_EDGES = [0, 0.01, 0.99, 1, 1.01, 4.99, 5, 5.01, 11.89, 19.99, 20, 20.01, 99.99, 100, 100.01, 500]
DOMAINS = ["general", "web", "math"]
OPTIMIZERS = list(BASE_COSTS)


def two_decimals(rng, lo, hi):
    return round(rng.uniform(lo, hi), 2)


def random_input(rng):
    r = rng.random()
    if r < 0.25:
        t = rng.choice(SIZES_AT_EDGES)
    elif r < 0.7:
        t = rng.randint(1, 1000)
    else:
        t = int(10 ** rng.uniform(0, 5))
    r = rng.random()
    if r < 0.25:
        b = rng.choice(BUDGETS_AT_EDGES)
    elif r < 0.75:
        b = two_decimals(rng, 0, 120)
    else:
        b = two_decimals(rng, 0, 2000)
    q = rng.choice([0.94, 0.95, 0.96, 0.85]) if rng.random() < 0.3 else two_decimals(rng, 0, 1)
    inp = {"trainset_size": t, "budget_usd": b, "quality_target": q, "domain": rng.choice(DOMAINS)}
    r = rng.random()
    if r < 0.2:
        inp["time_constraint_minutes"] = rng.choice([0, 0.5, 1, 1.5, 1.99, 2, 2.01, 30])
    elif r < 0.35:
        inp["time_constraint_minutes"] = two_decimals(rng, 0, 10)
    return inp


def random_history(rng, n):
    return [
        {
            "domain": rng.choice(DOMAINS),
            "optimizer": rng.choice(OPTIMIZERS),
            "quality": rng.choice([0.79, 0.8, 0.81]) if rng.random() < 0.3 else two_decimals(rng, 0, 1),
        }
        for _ in range(n)
    ]


# ---------------------------------------------------------------------------------------------
# The check.

COMPARED = ["recommended", "config", "estimated_cost", "estimated_time_minutes", "confidence"]
COMPARED_ALT = ["optimizer", "estimated_cost", "estimated_time_minutes", "quality_risk"]


def differences(expected, actual):
    out = []
    for k in COMPARED:
        if expected[k] != actual.get(k):
            out.append(f"{k}: original {expected[k]!r}, ours {actual.get(k)!r}")
    alts = actual.get("alternatives", [])
    if len(alts) != len(expected["alternatives"]):
        out.append(f"alternatives: original {len(expected['alternatives'])}, ours {len(alts)}")
    for i, (e, a) in enumerate(zip(expected["alternatives"], alts)):
        for k in COMPARED_ALT:
            if e[k] != a.get(k):
                out.append(f"alternatives[{i}].{k}: original {e[k]!r}, ours {a.get(k)!r}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="the skill-fleet binary")
    ap.add_argument("--rules", required=True, help="a rules directory with the guard off")
    ap.add_argument("--n", type=int, default=10_000, help="number of inputs")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batches", type=int, default=10, help="one history per batch (the first empty)")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    passed = failed = 0
    shown = 0
    per_batch = -(-args.n // args.batches)
    with tempfile.TemporaryDirectory() as tmp:
        for batch in range(args.batches):
            count = min(per_batch, args.n - batch * per_batch)
            if count <= 0:
                break
            history = random_history(rng, 0 if batch == 0 else rng.randint(1, 40))
            inputs = [random_input(rng) for _ in range(count)]
            cmd = [args.bin, "rules", "test", "--rules", args.rules, "--input", "-", "--format", "json"]
            if history:
                path = os.path.join(tmp, f"history-{batch}.jsonl")
                with open(path, "w") as f:
                    f.writelines(json.dumps(h) + "\n" for h in history)
                cmd += ["--history", path]
            run = subprocess.run(cmd, input=json.dumps(inputs), capture_output=True, text=True)
            if run.returncode != 0:
                print(f"skill-fleet exited {run.returncode}:\n{run.stderr}", file=sys.stderr)
                return 2
            decisions = json.loads(run.stdout)
            for inp, actual in zip(inputs, decisions):
                diff = differences(recommend(inp, history), actual)
                if diff:
                    failed += 1
                    if shown < 20:
                        shown += 1
                        print(f"mismatch for {json.dumps(inp)} (history batch {batch}):")
                        for d in diff:
                            print(f"  {d}")
                else:
                    passed += 1
    print(f"oracle: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
