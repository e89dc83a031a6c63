"""The client's error mapping and request shape, against a tiny stub server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import BIN, ROOT, Server

from skill_fleet import testing
from skill_fleet.client import (
    ApiError,
    Client,
    Conflict,
    ConnectionFailed,
    InvalidRequest,
    NotFound,
    ServerError,
    Unauthorized,
)


class Stub:
    """Answers every request with ``status`` and ``body``; records what it got."""

    def __init__(self) -> None:
        self.status = 200
        self.body: Any = {}
        self.headers: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                stub.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": json.loads(raw) if raw else None,
                    }
                )
                data = (
                    b""
                    if stub.body is None
                    else (stub.body if isinstance(stub.body, bytes) else json.dumps(stub.body).encode())
                )
                self.send_response(stub.status)
                for k, v in stub.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    yield s
    s.httpd.shutdown()


@pytest.mark.parametrize(
    "status,cls",
    [
        (404, NotFound),
        (409, Conflict),
        (400, InvalidRequest),
        (413, InvalidRequest),
        (415, InvalidRequest),
        (422, InvalidRequest),
        (401, Unauthorized),
        (500, ServerError),
        (503, ServerError),
        (405, ApiError),
    ],
)
def test_errors_map_to_their_class_and_keep_the_error_shape(stub: Stub, status: int, cls: type[ApiError]) -> None:
    stub.status = status
    stub.body = {
        "error": "something is wrong",
        "details": [{"field": "lease_token", "current_status": "completed"}],
        "request_id": "r-123",
    }
    with pytest.raises(ApiError) as info:
        Client(stub.url).get_job("abc")
    e = info.value
    assert type(e) is cls
    assert (e.status, e.error, e.request_id) == (status, "something is wrong", "r-123")
    assert e.details == [{"field": "lease_token", "current_status": "completed"}]
    assert e.fields == ["lease_token"]
    assert "r-123" in str(e)
    if cls is Conflict:
        assert e.current_status == "completed"


def test_request_id_falls_back_to_the_header_and_bodies_may_be_text(stub: Stub) -> None:
    stub.status, stub.body, stub.headers = 502, b"bad gateway", {"X-Request-ID": "from-header"}
    with pytest.raises(ServerError) as info:
        Client(stub.url).health()
    assert info.value.error == "bad gateway"
    assert info.value.request_id == "from-header"


def test_token_comes_from_the_argument_or_the_environment(stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKILL_FLEET_API_TOKEN", "from-env")
    Client(stub.url).health()
    Client(stub.url, token="explicit").health()
    monkeypatch.delenv("SKILL_FLEET_API_TOKEN")
    Client(stub.url).health()
    auth = [r["headers"].get("Authorization") for r in stub.requests]
    assert auth == ["Bearer from-env", "Bearer explicit", None]


def test_bodies_paths_and_queries(stub: Stub) -> None:
    c = Client(stub.url)
    stub.body = {"job": {"id": "j1"}, "lease_token": "t1"}
    claim = c.claim("w1", ["optimization"], lease_seconds=30)
    assert claim is not None and (claim.id, claim.lease_token) == ("j1", "t1")
    c.heartbeat("j1", "t1", lease_seconds=30, percent=150, phase="compiling", message="m")
    c.fail("j1", "t1", "boom", retry=True)
    c.list_jobs(status="pending", job_type="optimization", limit=5)
    c.selector_metrics(since="all")
    c.recommend(trainset_size=10, budget_usd=2, explain=True)
    c.cancel("a b/c")
    c.claim("w1", ["optimization"], job_id="j9")
    got = [(r["method"], r["path"], r["body"]) for r in stub.requests]
    assert got[0] == ("POST", "/api/v1/jobs/claim", {"worker": "w1", "types": ["optimization"], "lease_seconds": 30})
    assert got[1] == (
        "POST",
        "/api/v1/jobs/j1/heartbeat",
        {
            "lease_token": "t1",
            "lease_seconds": 30,
            "progress": {"percent": 100.0, "message": "m", "phase": "compiling"},
        },
    )
    assert got[2] == ("POST", "/api/v1/jobs/j1/fail", {"lease_token": "t1", "error": "boom", "retry": True})
    assert got[3][:2] == ("GET", "/api/v1/jobs?status=pending&type=optimization&limit=5")
    assert got[4][:2] == ("GET", "/api/v1/optimization/metrics?since=all")
    assert got[5] == ("POST", "/api/v1/optimization/recommend?explain=true", {"trainset_size": 10, "budget_usd": 2})
    assert got[6] == ("POST", "/api/v1/jobs/a%20b%2Fc/cancel", {})
    assert got[7] == ("POST", "/api/v1/jobs/claim", {"worker": "w1", "types": ["optimization"], "id": "j9"})
    assert stub.requests[0]["headers"]["Content-Type"] == "application/json"


def test_no_content_is_none(stub: Stub) -> None:
    stub.status, stub.body = 204, None
    assert Client(stub.url).claim("w") is None


def test_transport_errors_are_connection_failed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionFailed):
        Client(f"http://127.0.0.1:{port}", timeout=2).health()


def test_importing_the_client_does_not_import_dspy() -> None:
    import subprocess
    import sys

    code = "import sys, skill_fleet, skill_fleet.client; print('dspy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- against the real server ----------------------------------------------------------------


def test_every_call_against_the_server(server: Server) -> None:
    api = server.client()
    assert api.health() is not None
    assert api.rules_status()["state"] == "loaded"
    dry = api.evaluate(trainset_size=50, budget_usd=4)
    assert dry["recommended"] == "gepa" and "decision_id" not in dry
    decision = api.recommend(trainset_size=50, budget_usd=4, explain=True)
    assert decision["decision_id"] >= 1 and "trace" in decision
    with pytest.raises(InvalidRequest) as bad:
        api.record_outcome(decision_id=decision["decision_id"], optimizer_used="gepa", quality=1.5)
    assert bad.value.status == 422 and "quality" in bad.value.fields
    recorded = api.record_outcome(
        decision_id=decision["decision_id"], optimizer_used="gepa", quality=0.9, actual_cost=0.3
    )
    assert recorded["optimizer_used"] == "gepa"
    assert api.selector_metrics(since="all")["outcomes"] == 1
    updated = api.training_results(
        [
            {"example_id": "python-001", "score": 1.0, "passed": True},
            {"example_id": "nope", "score": 0.5, "passed": False},
        ]
    )
    assert "nope" in json.dumps(updated)
    assert api.training_analytics()["total_examples"] == 50
    assert len(api.training_select(max=3)["selected"]) == 3

    job = api.create_job("optimization", payload={"optimizer": "gepa"}, idempotency_key="k1")
    assert api.create_job("optimization", idempotency_key="k1")["id"] == job["id"]
    assert api.list_jobs(status="pending")["jobs"][0]["id"] == job["id"]
    claim = api.claim("w1", lease_seconds=30)
    assert claim is not None and claim.id == job["id"]
    api.heartbeat(claim.id, claim.lease_token, lease_seconds=30, percent=10, phase="loading")
    with pytest.raises(Conflict) as stale:
        api.heartbeat(claim.id, "not-the-token")
    assert stale.value.current_status == "running"
    api.hitl(claim.id, claim.lease_token, "approval", {"estimated_cost": 1})
    assert api.get_hitl(claim.id)["type"] == "approval"
    api.hitl_response(claim.id, {"approved": False})
    assert api.cancel(claim.id)["status"] == "cancelled"
    with pytest.raises(Conflict):
        api.cancel(claim.id)
    with pytest.raises(NotFound):
        api.get_job("00000000-0000-0000-0000-000000000000")
    with pytest.raises(InvalidRequest) as unknown:
        api.request("POST", "/api/v1/jobs", {"job_type": "x", "colour": "red"})
    assert unknown.value.fields == ["colour"]


def test_claim_by_id_takes_that_job_only(api: Client) -> None:
    older = api.create_job("optimization", payload={"optimizer": "gepa"})
    mine = api.create_job("optimization", payload={"optimizer": "gepa"})
    other_type = api.create_job("skill_creation")
    # Not claimable: another type, an unknown id, a job already taken.
    assert api.claim("w1", ["optimization"], job_id=other_type["id"]) is None
    assert api.claim("w1", ["optimization"], job_id="00000000-0000-0000-0000-000000000000") is None
    claim = api.claim("w1", ["optimization"], lease_seconds=30, job_id=mine["id"])
    assert claim is not None and claim.id == mine["id"]
    assert api.claim("w2", ["optimization"], job_id=mine["id"]) is None
    assert api.get_job(older["id"])["status"] == "pending"  # the oldest pending job was left alone
    assert api.get_job(other_type["id"])["status"] == "pending"


def test_a_token_protected_server(tmp_path: Path) -> None:
    from conftest import start_server, stop_server

    s = start_server(tmp_path, env={"SKILL_FLEET_API_TOKEN": "s3cret-token-0123456789"})
    try:
        with pytest.raises(Unauthorized):
            Client(s.url, token="wrong").create_job("optimization")
        assert Client(s.url, token="s3cret-token-0123456789").create_job("optimization")["status"] == "pending"
    finally:
        stop_server(s)


def test_start_server_reports_a_server_that_cannot_start(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    with pytest.raises(testing.ServerDidNotStart) as e:
        testing.start_server(BIN, db=tmp_path / "x.db", rules=tmp_path / "rules", cwd=tmp_path, timeout=20)
    assert "skill-fleet serve did not start" in str(e.value)
    assert "rules" in str(e.value)


def test_start_server_serves_until_stopped(tmp_path: Path) -> None:
    s = testing.start_server(BIN, db=tmp_path / "x.db", rules=ROOT / "rules", cwd=tmp_path)
    try:
        assert s.url.startswith("http://127.0.0.1:")
        assert Client(s.url).health()["status"] == "ok"
    finally:
        assert s.stop() == 0
    assert any("listening on" in line for line in s.log)
