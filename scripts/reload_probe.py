#!/usr/bin/env python3
"""Hot-reload probe for `skill-fleet serve` (Python 3 standard library only).

Copies `rules/` to a temporary directory, starts the release build on a free port of 127.0.0.1
with that rule set (`--rules`, `--db` in the temporary directory, the repository's
config/skill-fleet.yaml for everything else, so the default debounce), then:

  (a) 20 times (--idle-reloads): rewrites a threshold in the copy's selection.yaml, alternating
      between two valid values (`tight_time_limit`: `lt: 2` / `lt: 1.995`; the rule set's own
      fixtures pass with both), and measures the time from the write to the first
      `recommend` response that carries the new `rules_revision` and the decision that goes
      with it, polling every 2 ms; prints median, p90 and max.
  (b) with a few threads (--threads) sending `recommend` in a loop over keep-alive
      connections, performs 50 such reloads (--load-reloads), each waited for until served,
      and counts failed requests (non-200 or connection errors) among all requests, and
      decisions that do not belong to the revision that claims them.

The probe input `{"trainset_size": 200, "budget_usd": 10, "time_constraint_minutes": 1.997}` is
answered `reflection_metrics` (rule `tight_time_limit`) with `lt: 2` and `miprov2` (rule
`moderate_trainset_budget`) with `lt: 1.995`, so every reload flips the decision.

    cargo build --release --bin skill-fleet
    python3 scripts/reload_probe.py

Exit: 0 when no request failed, every reload was served and every decision matched its
revision; 1 otherwise; 2 when the probe could not be set up.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
RECOMMEND = "/api/v1/optimization/recommend"
PROBE = {"trainset_size": 200, "budget_usd": 10, "time_constraint_minutes": 1.997}
PROBE_BODY = json.dumps(PROBE).encode()
ANCHOR = "field: time_constraint_minutes\n        gt: 0\n        lt: "
# threshold written -> decision expected for PROBE
VARIANTS = {"2": "reflection_metrics", "1.995": "miprov2"}
ORIGINAL, OTHER = "2", "1.995"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SetupError(Exception):
    pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def percentile(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def summary(ms):
    if not ms:
        return "no reload served"
    return "median %.1f ms, p90 %.1f ms, max %.1f ms, min %.1f ms (n=%d)" % (
        statistics.median(ms),
        percentile(ms, 90),
        max(ms),
        min(ms),
        len(ms),
    )


class Client:
    """One keep-alive connection; reconnects after an error."""

    def __init__(self, port, timeout=5.0):
        self.port, self.timeout, self.conn = port, timeout, None

    def request(self, method, path, body=None):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
            return resp.status, data
        except Exception:
            self.close()
            raise

    def recommend(self):
        status, data = self.request("POST", RECOMMEND, PROBE_BODY)
        if status != 200:
            return status, None, None
        d = json.loads(data)
        return status, d.get("rules_revision"), d.get("recommended")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Server:
    def __init__(self, binary, rules, db, log_path, port, config=None, log_level=None):
        self.port = port
        self.log = open(log_path, "wb")
        env = dict(os.environ)
        if log_level:
            env["SKILL_FLEET_LOG"] = log_level
        cmd = [binary, "serve", "--addr", "%s:%d" % (HOST, port), "--db", db, "--rules", rules]
        if config:
            cmd += ["--config", config]
        print("==> starting: %s%s" % ("SKILL_FLEET_LOG=%s " % log_level if log_level else "", " ".join(cmd)), flush=True)
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def wait_ready(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        c = Client(self.port, timeout=1.0)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SetupError("the server exited with code %s during start-up" % self.proc.returncode)
            try:
                status, _ = c.request("GET", "/health")
                if status == 200:
                    c.close()
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise SetupError("the server is not answering on %s:%d after %.0f s" % (HOST, self.port, timeout))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                print("warning: the server did not exit within 15 s of SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


class Rules:
    """The temporary copy of selection.yaml and the threshold it holds."""

    def __init__(self, path, atomic):
        self.path, self.atomic = path, atomic
        with open(path, encoding="utf-8") as f:
            self.text = f.read()
        if self.text.count(ANCHOR + ORIGINAL + "\n") != 1:
            raise SetupError("cannot find `lt: %s` of tight_time_limit in %s" % (ORIGINAL, path))
        self.value = ORIGINAL

    def write(self, value):
        text = self.text.replace(ANCHOR + ORIGINAL + "\n", ANCHOR + value + "\n")
        if self.atomic:
            tmp = self.path + ".probe-tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.path)
        else:
            with open(self.path, "w", encoding="utf-8") as f:
                f.write(text)
        self.value = value

    def flip(self):
        self.write(OTHER if self.value == ORIGINAL else ORIGINAL)
        return self.value


def reload_once(rules, client, revisions, old_rev, timeout, poll_s):
    """Writes the other threshold; returns (ms from the write until served, new revision),
    or (None, None) when not served within `timeout`."""
    t0 = time.perf_counter()
    value = rules.flip()
    expected = VARIANTS[value]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, rev, rec = client.recommend()
        except (OSError, http.client.HTTPException, ValueError):
            status, rev, rec = None, None, None
        if status == 200 and rev != old_rev and rec == expected:
            ms = (time.perf_counter() - t0) * 1000
            known = revisions.setdefault(value, rev)
            if known != rev:
                print("warning: threshold %s served as revision %s, earlier as %s" % (value, rev, known))
            return ms, rev
        time.sleep(poll_s)
    return None, None


class Load:
    """Threads sending `recommend` over keep-alive connections until stopped."""

    def __init__(self, port, threads, revisions, max_seconds):
        self.port, self.revisions = port, revisions
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.ok = self.failed = self.inconsistent = self.unexpected = 0
        self.failures = {}
        self.max_seconds = max_seconds
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def start(self):
        self.started = time.monotonic()
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=10)
        self.elapsed = time.monotonic() - self.started

    def run(self):
        c = Client(self.port)
        ok = failed = inconsistent = unexpected = 0
        failures = {}
        deadline = time.monotonic() + self.max_seconds
        while not self.stop_flag.is_set() and time.monotonic() < deadline:
            try:
                status, rev, rec = c.recommend()
            except (OSError, http.client.HTTPException, ValueError) as e:
                failed += 1
                key = type(e).__name__
                failures[key] = failures.get(key, 0) + 1
                time.sleep(0.001)
                continue
            if status != 200:
                failed += 1
                key = "HTTP %s" % status
                failures[key] = failures.get(key, 0) + 1
                continue
            ok += 1
            # Which threshold does this revision hold? (learned in phase a)
            value = next((v for v, r in self.revisions.items() if r == rev), None)
            if value is None:
                unexpected += 1
            elif VARIANTS[value] != rec:
                inconsistent += 1
        c.close()
        with self.lock:
            self.ok += ok
            self.failed += failed
            self.inconsistent += inconsistent
            self.unexpected += unexpected
            for k, v in failures.items():
                self.failures[k] = self.failures.get(k, 0) + v


def explain_miss(port, log_path):
    """What the server says after a reload that did not show up."""
    try:
        c = Client(port, timeout=2.0)
        status, data = c.request("GET", "/api/v1/rules/status")
        c.close()
        st = json.loads(data)
        print("    server status: state %s, revision %s, reloads ok %s, failed %s, last error %s" % (
            st.get("state"), st.get("revision"), st.get("reloads_ok"), st.get("reloads_failed"),
            json.dumps(st.get("last_error"))[:300]))
    except (OSError, http.client.HTTPException, ValueError) as e:
        print("    server status: unavailable (%s)" % e)
    with open(log_path, encoding="utf-8", errors="replace") as f:
        tail = f.read().splitlines()[-5:]
    print("    server log, last lines:")
    for line in tail:
        print("      " + line[:300])


def server_reload_millis(log_path, since):
    """`millis` of the `rules reloaded` log lines after byte offset `since`."""
    out = []
    with open(log_path, "rb") as f:
        f.seek(since)
        for line in f.read().decode("utf-8", "replace").splitlines():
            if "rules reloaded" in line:
                m = re.search(r'millis="?([0-9.]+)', line)
                if m:
                    out.append(float(m.group(1)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "release", "skill-fleet"))
    ap.add_argument("--config", help="config file of the server (default: config/skill-fleet.yaml)")
    ap.add_argument("--log", help="log level of the server (SKILL_FLEET_LOG; default: the config's)")
    ap.add_argument("--idle-reloads", type=int, default=20)
    ap.add_argument("--load-reloads", type=int, default=50)
    ap.add_argument("--threads", type=int, default=4, help="load threads in phase b")
    ap.add_argument("--poll-ms", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for one reload")
    ap.add_argument("--atomic", action="store_true", help="write via a temporary file and rename")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    for name in ("idle_reloads", "load_reloads", "threads"):
        if not 0 < getattr(args, name) <= 1000:
            ap.error("--%s must be between 1 and 1000" % name.replace("_", "-"))

    if not os.access(args.bin, os.X_OK):
        print("error: %s is missing: cargo build --release --bin skill-fleet" % args.bin, file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="skill-fleet-reload.")
    rules_dir = os.path.join(tmp, "rules")
    shutil.copytree(os.path.join(REPO, "rules"), rules_dir)
    log_path = os.path.join(tmp, "server.log")
    server = None
    try:
        rules = Rules(os.path.join(rules_dir, "selection.yaml"), args.atomic)
        server = Server(args.bin, rules_dir, os.path.join(tmp, "probe.db"), log_path, free_port(),
                        args.config and os.path.abspath(args.config), args.log)
        server.wait_ready()
        client = Client(server.port)
        status, rev, rec = client.recommend()
        if status != 200 or rec != VARIANTS[ORIGINAL]:
            raise SetupError("probe answered %s %s, expected 200 %s" % (status, rec, VARIANTS[ORIGINAL]))
        revisions = {ORIGINAL: rev}
        print("==> serving revision %s; probe decision %s" % (rev, rec))
        print("==> write mode: %s; polling every %.1f ms" % (
            "temporary file + rename" if args.atomic else "rewrite in place", args.poll_ms))
        busy = load_avg_per_core()
        print("==> machine: %d cores, load average %s" % (os.cpu_count(), " ".join("%.2f" % x for x in os.getloadavg())))
        if busy > 0.5:
            print("    (busy machine: the figures include waiting for CPU)")

        # (a) idle reloads
        poll_s = args.poll_ms / 1000
        idle_ms, missed = [], 0
        log_mark = os.path.getsize(log_path)
        for _ in range(args.idle_reloads):
            ms, new = reload_once(rules, client, revisions, rev, args.timeout, poll_s)
            if ms is None:
                missed += 1
                print("error: reload %d was not served within %.0f s; stopping" % (len(idle_ms) + 1, args.timeout))
                explain_miss(server.port, log_path)
                break
            idle_ms.append(ms)
            rev = new
        idle_server = server_reload_millis(log_path, log_mark)
        print()
        print("(a) %d reloads, no load: write -> new revision serving" % args.idle_reloads)
        print("    %s" % summary(idle_ms))
        if idle_server:
            print("    server-side rebuild (read, build, fixtures, swap): median %.1f ms, max %.1f ms"
                  % (statistics.median(idle_server), max(idle_server)))

        if missed:
            print("\n(b) skipped: the server stopped picking up changes")
            return 1

        # (b) reloads under load
        load = Load(server.port, args.threads, revisions, max_seconds=args.load_reloads * (args.timeout + 1) + 10)
        load.start()
        time.sleep(0.5)
        busy_ms = []
        log_mark = os.path.getsize(log_path)
        for _ in range(args.load_reloads):
            ms, new = reload_once(rules, client, revisions, rev, args.timeout, poll_s)
            if ms is None:
                missed += 1
                print("error: reload %d under load was not served within %.0f s; stopping" % (len(busy_ms) + 1, args.timeout))
                explain_miss(server.port, log_path)
                break
            busy_ms.append(ms)
            rev = new
        time.sleep(0.5)
        load.stop()
        busy_server = server_reload_millis(log_path, log_mark)
        total = load.ok + load.failed
        print()
        print("(b) %d reloads under load (%d threads, keep-alive)" % (args.load_reloads, args.threads))
        print("    requests: %d in %.1f s (%.0f/s), failed: %d%s" % (
            total, load.elapsed, total / load.elapsed if load.elapsed else 0, load.failed,
            (" " + json.dumps(load.failures)) if load.failures else ""))
        print("    decisions not matching their revision: %d; from an unknown revision: %d"
              % (load.inconsistent, load.unexpected))
        print("    write -> new revision serving: %s" % summary(busy_ms))
        if busy_server:
            print("    server-side rebuild: median %.1f ms, max %.1f ms"
                  % (statistics.median(busy_server), max(busy_server)))

        c2 = Client(server.port)
        status, data = c2.request("GET", "/api/v1/rules/status")
        c2.close()
        st = json.loads(data) if status == 200 else {}
        print("    server status: state %s, reloads ok %s, failed %s" % (
            st.get("state"), st.get("reloads_ok"), st.get("reloads_failed")))
        client.close()

        bad = load.failed or load.inconsistent or load.unexpected or missed or st.get("reloads_failed")
        print()
        print("failed requests during %d reloads under load: %d (target 0): %s" % (
            args.load_reloads, load.failed, "target met" if not bad else "TARGET MISSED"))
        return 1 if bad else 0
    except SetupError as e:
        print("error: %s" % e, file=sys.stderr)
        if os.path.exists(log_path):
            with open(log_path, encoding="utf-8", errors="replace") as f:
                sys.stderr.write(f.read()[-4000:])
        return 2
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def load_avg_per_core():
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return 0.0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    sys.exit(main())
