"""Every call the client makes is in the OpenAPI document generated from the Rust types
(``schemas/openapi.json``, also served at ``/openapi.json``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import ROOT, Server

from skill_fleet.client import CALLS

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
