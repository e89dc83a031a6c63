"""Every call the client makes is in the OpenAPI document generated from the Rust types
(``schemas/openapi.json``, also served at ``/openapi.json``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import ROOT, Server

from skill_fleet.client import CALLS, Client

DOC = ROOT / "schemas" / "openapi.json"


def _doc() -> dict[str, Any]:
    if not DOC.is_file():
        pytest.fail(f"{DOC} is missing: generate it with the Rust side (skill-fleet rules schema)")
    return json.loads(DOC.read_text())


def test_every_client_call_is_in_the_openapi_document() -> None:
    doc = _doc()
    assert str(doc.get("openapi", "")).startswith("3.1"), doc.get("openapi")
    paths = doc["paths"]
    missing = [f"{m} {p}" for m, p in CALLS if m.lower() not in paths.get(p, {})]
    assert not missing, f"not in {DOC.name}: {missing}"


def test_the_server_serves_the_committed_document(server: Server) -> None:
    served = server.client().request("GET", "/openapi.json")
    assert served["paths"].keys() == _doc()["paths"].keys()


def test_the_claim_and_heartbeat_bodies_match_the_document() -> None:
    """Every field the client sends (``id`` included) is a property of the documented body."""
    sent: dict[str, Any] = {}

    class Recorder(Client):
        def request(self, method: str, path: str, body: Any = None, query: Any = None) -> Any:
            sent[path] = body
            return None

    c = Recorder("http://unused")
    c.claim("w", ["optimization"], lease_seconds=30, job_id="j1")
    c.heartbeat("j1", "t", lease_seconds=30, percent=100, phase="completed", message="done")
    schemas = _doc()["components"]["schemas"]
    claim = sent["/api/v1/jobs/claim"]
    assert claim.keys() == {"worker", "types", "lease_seconds", "id"}
    assert claim.keys() <= schemas["ClaimBody"]["properties"].keys()
    beat = sent["/api/v1/jobs/j1/heartbeat"]
    assert beat.keys() <= schemas["HeartbeatBody"]["properties"].keys()
    assert beat["progress"].keys() <= schemas["ProgressBody"]["properties"].keys()
