#!/usr/bin/env python3
"""A skill-fleet worker in plain Python (standard library only).

It claims `optimization` jobs from a running `skill-fleet serve`, asks a human to approve the
recommended optimizer (the job parks in `pending_hitl`), resumes once the answer is in,
heartbeats with progress while it "optimizes", and completes the job with a result.

The optimization itself is simulated: replace `run_optimizer` with your DSPy code.

    python3 examples/worker.py --url http://127.0.0.1:8000 --once
    skill-fleet jobs respond JOB_ID --data '{"approved": true}'   # the human's answer
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request


class Api:
    def __init__(self, url, token=None, timeout=10.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, {"error": raw.decode(errors="replace")}


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def run_optimizer(api, job, token, lease, steps, step_seconds):
    """Simulates an optimization run, heartbeating with progress. Returns the result."""
    payload = job.get("payload") or {}
    optimizer = payload.get("optimizer", "bootstrap_fewshot")
    for i in range(1, steps + 1):
        time.sleep(step_seconds)
        pct = round(100.0 * i / (steps + 1), 1)
        status, body = api.call(
            "POST",
            f"/api/v1/jobs/{job['id']}/heartbeat",
            {
                "lease_token": token,
                "lease_seconds": lease,
                "progress": {"percent": pct, "phase": "optimizing", "message": f"{optimizer} round {i}/{steps}"},
            },
        )
        if status != 200:
            raise RuntimeError(f"heartbeat refused ({status}): {body}")
        log(f"job {job['id']}: {pct}%")
    decision = payload.get("decision") or {}
    return {
        "optimizer_used": optimizer,
        "actual_cost": decision.get("estimated_cost", 0.0),
        "actual_time_minutes": decision.get("estimated_time_minutes", 1),
        "quality": 0.87,
    }


def handle(api, job, token, args):
    jid = job["id"]
    hitl = job.get("hitl")
    if hitl is None:
        # First time: ask a human to approve the optimizer and its config.
        payload = job.get("payload") or {}
        question = {
            "question": f"Run {payload.get('optimizer')} on {payload.get('trainset_size')} examples?",
            "optimizer": payload.get("optimizer"),
            "config": payload.get("config"),
            "estimated_cost": (payload.get("decision") or {}).get("estimated_cost"),
        }
        status, body = api.call(
            "POST",
            f"/api/v1/jobs/{jid}/hitl",
            {"lease_token": token, "type": "approve_config", "data": question},
        )
        if status != 200:
            raise RuntimeError(f"could not ask for approval ({status}): {body}")
        log(f"job {jid}: waiting for a human; answer with")
        log(f"  skill-fleet jobs respond {jid} --data '{{\"approved\": true}}'")
        return
    answer = hitl.get("response") or {}
    if not answer.get("approved", False):
        status, body = api.call(
            "POST",
            f"/api/v1/jobs/{jid}/fail",
            {"lease_token": token, "error": "rejected by a human", "retry": False},
        )
        log(f"job {jid}: rejected, failed ({status})")
        return
    try:
        result = run_optimizer(api, job, token, args.lease, args.steps, args.step_seconds)
    except Exception as e:  # report and let the job retry
        api.call("POST", f"/api/v1/jobs/{jid}/fail", {"lease_token": token, "error": str(e), "retry": True})
        log(f"job {jid}: failed ({e}); it will be retried")
        return
    status, body = api.call("POST", f"/api/v1/jobs/{jid}/complete", {"lease_token": token, "result": result})
    if status != 200:
        raise RuntimeError(f"complete refused ({status}): {body}")
    log(f"job {jid}: completed with {json.dumps(result)}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--token", default=None, help="API token (SKILL_FLEET_API_TOKEN of the server)")
    p.add_argument("--worker", default="python-worker-1")
    p.add_argument("--lease", type=int, default=30, help="lease in seconds")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--step-seconds", type=float, default=0.5)
    p.add_argument("--poll", type=float, default=1.0, help="seconds between claims when idle")
    p.add_argument("--once", action="store_true", help="exit when there is nothing to claim")
    p.add_argument("--max-jobs", type=int, default=0, help="stop after handling this many claims (0: no limit)")
    args = p.parse_args()
    api = Api(args.url, args.token)
    handled = 0
    while True:
        status, body = api.call(
            "POST",
            "/api/v1/jobs/claim",
            {"worker": args.worker, "types": ["optimization"], "lease_seconds": args.lease},
        )
        if status == 204:
            if args.once:
                log("nothing to claim")
                return 0
            time.sleep(args.poll)
            continue
        if status != 200:
            log(f"claim failed ({status}): {body}")
            return 1
        handle(api, body["job"], body["lease_token"], args)
        handled += 1
        if args.max_jobs and handled >= args.max_jobs:
            return 0


if __name__ == "__main__":
    sys.exit(main())
