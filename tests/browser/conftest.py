"""Fixtures of the console's browser test: a real ``skill-fleet serve`` (embedded assets, a temp
database and a temp copy of ``rules/``), headless Debian Chromium driven by Selenium, and helpers.

Environment:
- ``SKILL_FLEET_BIN``: the binary (default ``target/debug/skill-fleet``).
- ``SKILL_FLEET_CONSOLE_DIR``: serve the console from this directory (``--console-dir``) instead of
  the embedded copy, while developing.
- ``SKILL_FLEET_UPDATE_SCREENSHOTS=1``: also copy the playground and map screenshots to
  ``docs/console-playground.png`` and ``docs/console-map.png`` (otherwise only ``target/console-screenshots/``).
- ``CHROMIUM_BIN`` / ``CHROMEDRIVER_BIN``: default ``/usr/bin/chromium`` / ``/usr/bin/chromedriver``.
Selenium Manager never runs: the driver's path is always given.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from skill_fleet import testing
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("SKILL_FLEET_BIN") or ROOT / "target" / "debug" / "skill-fleet").resolve()
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
TOKEN = "console-test-token-0123456789abcdef"  # the server wants at least 16 characters
SHOTS = ROOT / "target" / "console-screenshots"
DOCS = ROOT / "docs"


@dataclass
class Server:
    """A running ``skill-fleet serve`` with its own rules directory."""

    url: str
    rules: Path
    proc: subprocess.Popen[bytes]
    token: str | None = None
    log: list[str] = field(default_factory=list)

    def api(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> tuple[int, Any]:
        """Calls the API; returns (status, parsed JSON or None). Never raises on an HTTP status."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        tok = token or self.token
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                raw, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        return status, (json.loads(raw) if raw else None)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, data = self.api(method, path, body)
        assert 200 <= status < 300, f"{method} {path}: {status} {data}"
        return data


def start_server(tmp: Path, env: dict[str, str] | None = None) -> Server:
    if not BIN.exists():
        pytest.fail(f"no skill-fleet binary at {BIN}: build it (cargo build) or set SKILL_FLEET_BIN")
    rules = tmp / "rules"
    shutil.copytree(ROOT / "rules", rules)
    full_env = {"SKILL_FLEET_JOBS_SWEEP_INTERVAL_MS": "200", "SKILL_FLEET_LOG": "info", **(env or {})}
    args = ["--console-dir", os.environ["SKILL_FLEET_CONSOLE_DIR"]] if os.environ.get("SKILL_FLEET_CONSOLE_DIR") else []
    try:
        s = testing.start_server(BIN, db=tmp / "sf.db", rules=rules, cwd=tmp, env=full_env, args=args)
    except testing.ServerDidNotStart as e:
        pytest.fail(str(e))
    return Server(url=s.url, rules=rules, proc=s.proc, token=(env or {}).get("SKILL_FLEET_API_TOKEN"), log=s.log)


def stop_server(server: Server) -> None:
    testing.RunningServer(server.url, server.proc, server.log).stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("console"))
    yield s
    stop_server(s)


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("console-token"), {"SKILL_FLEET_API_TOKEN": TOKEN})
    yield s
    stop_server(s)


@pytest.fixture(scope="session")
def driver() -> Iterator[webdriver.Chrome]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing: apt-get install chromium chromium-driver")
    profile = tempfile.mkdtemp(prefix="sf-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(20)
    d.set_script_timeout(10)
    try:
        yield d
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)


def severe_console_entries(driver: webdriver.Chrome, allow: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """SEVERE browser-log entries since the last call, except those matching an `allow` regex
    (e.g. the network line of a 422 the test provoked on purpose)."""
    out = []
    for e in driver.get_log("browser"):
        if e.get("level") != "SEVERE":
            continue
        if any(re.search(a, e.get("message", "")) for a in allow):
            continue
        out.append(e)
    return out


def assert_no_console_errors(driver: webdriver.Chrome, allow: tuple[str, ...] = ()) -> None:
    bad = severe_console_entries(driver, allow)
    assert not bad, "console errors:\n" + "\n".join(f"{e.get('source')}: {e.get('message')}" for e in bad)


def screenshot(driver: webdriver.Chrome, name: str, docs_name: str | None = None) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    if docs_name and os.environ.get("SKILL_FLEET_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS / docs_name)
    return path
