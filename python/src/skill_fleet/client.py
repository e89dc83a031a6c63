"""A typed client for the skill-fleet HTTP API (standard library only).

Every method maps to one endpoint; :data:`CALLS` lists them all (a test checks each is in the
OpenAPI document ``schemas/openapi.json``). Errors come back as :class:`ApiError` subclasses
that carry the server's error shape ``{"error", "details", "request_id"}``::

    from skill_fleet.client import Client, Conflict

    api = Client("http://127.0.0.1:8000")           # token: argument or SKILL_FLEET_API_TOKEN
    decision = api.recommend(trainset_size=200, budget_usd=10)
    job = api.create_job("optimization", payload={"optimizer": decision["recommended"]})
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CALLS",
    "ApiError",
    "Claim",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "InvalidRequest",
    "NotFound",
    "ServerError",
    "SkillFleetError",
    "Unauthorized",
]

#: Every (method, path) this client calls, with ``{id}`` for a job id. A test checks each
#: against the ``paths`` of the OpenAPI document.
CALLS: list[tuple[str, str]] = [
    ("GET", "/health"),
    ("POST", "/api/v1/optimization/recommend"),
    ("POST", "/api/v1/rules/evaluate"),
    ("GET", "/api/v1/rules/status"),
    ("POST", "/api/v1/optimization/outcomes"),
    ("GET", "/api/v1/optimization/metrics"),
    ("POST", "/api/v1/jobs"),
    ("GET", "/api/v1/jobs"),
    ("GET", "/api/v1/jobs/{id}"),
    ("POST", "/api/v1/jobs/claim"),
    ("POST", "/api/v1/jobs/{id}/heartbeat"),
    ("POST", "/api/v1/jobs/{id}/complete"),
    ("POST", "/api/v1/jobs/{id}/fail"),
    ("POST", "/api/v1/jobs/{id}/hitl"),
    ("GET", "/api/v1/jobs/{id}/hitl"),
    ("POST", "/api/v1/jobs/{id}/hitl/response"),
    ("POST", "/api/v1/jobs/{id}/cancel"),
    ("POST", "/api/v2/training/select"),
    ("POST", "/api/v2/training/results"),
    ("GET", "/api/v2/training/analytics"),
]

TOKEN_ENV = "SKILL_FLEET_API_TOKEN"


class SkillFleetError(Exception):
    """Base of every error this package raises about the server."""


class ConnectionFailed(SkillFleetError):
    """The server could not be reached, or the connection broke (a retry may help)."""


@dataclass(eq=False)
class ApiError(SkillFleetError):
    """The server answered with an error status.

    Attributes:
        status: the HTTP status.
        error: the server's message (``error`` of the body).
        details: the server's ``details`` (e.g. ``[{"field": ..., "message": ...}]``).
        request_id: ``request_id`` of the body, or the ``X-Request-ID`` header.
    """

    status: int
    error: str
    details: list[Any] = field(default_factory=list)
    request_id: str | None = None

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        rid = f" [request {self.request_id}]" if self.request_id else ""
        return f"{self.status}: {self.error}{rid}"

    @property
    def fields(self) -> list[str]:
        """The fields the details name (``field`` or ``parameter``)."""
        out: list[str] = []
        for d in self.details:
            if isinstance(d, dict) and (name := d.get("field") or d.get("parameter")):
                out.append(str(name))
        return out


class NotFound(ApiError):
    """404: unknown job, route or decision."""


class Conflict(ApiError):
    """409: the lease token is stale (the worker was fenced) or the transition is illegal."""

    @property
    def current_status(self) -> str | None:
        """The job's status the server reports, when it does."""
        for d in self.details:
            if isinstance(d, dict) and "current_status" in d:
                return d["current_status"]
        return None


class InvalidRequest(ApiError):
    """400, 413, 415 or 422: the request was malformed or a field is invalid."""


class Unauthorized(ApiError):
    """401: the server requires an API token (``Authorization: Bearer``)."""


class ServerError(ApiError):
    """5xx: the server failed; a retry may help."""


def _error_class(status: int) -> type[ApiError]:
    if status == 404:
        return NotFound
    if status == 409:
        return Conflict
    if status == 401:
        return Unauthorized
    if status in (400, 413, 415, 422):
        return InvalidRequest
    if status >= 500:
        return ServerError
    return ApiError


@dataclass
class Claim:
    """A claimed job and the lease token that fences every write to it."""

    job: dict[str, Any]
    lease_token: str

    @property
    def id(self) -> str:
        """The job id."""
        return str(self.job["id"])


class Client:
    """The skill-fleet HTTP API.

    Args:
        url: the server, e.g. ``http://127.0.0.1:8000``.
        token: API token; defaults to the ``SKILL_FLEET_API_TOKEN`` environment variable.
            Sent as ``Authorization: Bearer`` on every request when set.
        timeout: seconds to wait for each answer.
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
        self.timeout = timeout

    # -- transport ------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
    ) -> Any:
        """Sends one request; returns the decoded JSON body (``None`` for 204 or an empty body).

        Raises:
            ApiError: (a subclass of it) when the server answers 4xx/5xx.
            ConnectionFailed: when the server cannot be reached.
        """
        url = self.url + path
        if query:
            pairs = {k: v for k, v in query.items() if v is not None}
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                if resp.status == 204 or not raw:
                    return None
                return json.loads(raw)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                parsed = json.loads(raw) if raw else {}
            except ValueError:
                parsed = {"error": raw.decode(errors="replace")}
            if not isinstance(parsed, dict):
                parsed = {"error": str(parsed)}
            cls = _error_class(e.code)
            raise cls(
                status=e.code,
                error=str(parsed.get("error") or e.reason or "error"),
                details=list(parsed.get("details") or []),
                request_id=parsed.get("request_id") or e.headers.get("X-Request-ID"),
            ) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ConnectionFailed(f"{method} {url}: {reason}") from e

    # -- recommendation and rules ---------------------------------------------------------

    def health(self) -> Any:
        """``GET /health``."""
        return self.request("GET", "/health")

    def recommend(self, explain: bool = False, **inputs: Any) -> dict[str, Any]:
        """``POST /api/v1/optimization/recommend``: the logged decision (with ``decision_id``).

        ``inputs`` are the context fields: ``trainset_size`` (required), ``budget_usd``,
        ``quality_target``, ``domain``, ``model``, ``time_constraint_minutes``, …
        """
        return self.request("POST", "/api/v1/optimization/recommend", inputs, {"explain": "true"} if explain else None)

    def evaluate(self, explain: bool = False, **inputs: Any) -> dict[str, Any]:
        """``POST /api/v1/rules/evaluate``: a dry run (not logged)."""
        return self.request("POST", "/api/v1/rules/evaluate", inputs, {"explain": "true"} if explain else None)

    def rules_status(self) -> dict[str, Any]:
        """``GET /api/v1/rules/status``."""
        return self.request("GET", "/api/v1/rules/status")

    def record_outcome(self, **outcome: Any) -> dict[str, Any]:
        """``POST /api/v1/optimization/outcomes`` for a run not tracked as a job."""
        return self.request("POST", "/api/v1/optimization/outcomes", outcome)

    def selector_metrics(self, since: str = "30d") -> dict[str, Any]:
        """``GET /api/v1/optimization/metrics?since=…``."""
        return self.request("GET", "/api/v1/optimization/metrics", query={"since": since})

    # -- jobs ----------------------------------------------------------------------------------

    def create_job(
        self,
        job_type: str,
        *,
        payload: Mapping[str, Any] | None = None,
        task: str | None = None,
        user_id: str | None = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """``POST /api/v1/jobs``: a new pending job (the existing one for a known idempotency key)."""
        body: dict[str, Any] = {"job_type": job_type}
        for k, v in (
            ("payload", dict(payload) if payload is not None else None),
            ("task", task),
            ("user_id", user_id),
            ("max_attempts", max_attempts),
            ("idempotency_key", idempotency_key),
        ):
            if v is not None:
                body[k] = v
        return self.request("POST", "/api/v1/jobs", body)

    def get_job(self, job_id: str) -> dict[str, Any]:
        """``GET /api/v1/jobs/{id}``."""
        return self.request("GET", f"/api/v1/jobs/{_id(job_id)}")

    def list_jobs(
        self,
        status: str | None = None,
        job_type: str | None = None,
        user_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """``GET /api/v1/jobs``: ``{"jobs": [...], "next_cursor": ...}``, newest first."""
        query = {"status": status, "type": job_type, "user_id": user_id, "limit": limit, "cursor": cursor}
        return self.request("GET", "/api/v1/jobs", query=query)

    def claim(
        self,
        worker: str,
        types: Sequence[str] = ("optimization",),
        lease_seconds: int | None = None,
        job_id: str | None = None,
    ) -> Claim | None:
        """``POST /api/v1/jobs/claim``: the oldest claimable job of ``types``, or ``None``.

        ``job_id`` (sent as ``id``) claims that job only: it is returned when it is claimable
        (``pending``, past its retry backoff, of one of ``types``), else ``None`` — never
        another job. :meth:`get_job` tells why it was not.
        """
        body: dict[str, Any] = {"worker": worker, "types": list(types)}
        if lease_seconds is not None:
            body["lease_seconds"] = int(lease_seconds)
        if job_id is not None:
            body["id"] = job_id
        got = self.request("POST", "/api/v1/jobs/claim", body)
        if got is None:
            return None
        return Claim(job=got["job"], lease_token=got["lease_token"])

    def heartbeat(
        self,
        job_id: str,
        lease_token: str,
        *,
        lease_seconds: int | None = None,
        percent: float | None = None,
        message: str | None = None,
        phase: str | None = None,
    ) -> dict[str, Any]:
        """``POST /api/v1/jobs/{id}/heartbeat``: extend the lease and report progress.

        Raises :class:`Conflict` when the lease is no longer this worker's (fenced).
        """
        body: dict[str, Any] = {"lease_token": lease_token}
        if lease_seconds is not None:
            body["lease_seconds"] = int(lease_seconds)
        if percent is not None:
            progress: dict[str, Any] = {"percent": max(0.0, min(100.0, float(percent)))}
            if message is not None:
                progress["message"] = message
            if phase is not None:
                progress["phase"] = phase
            body["progress"] = progress
        return self.request("POST", f"/api/v1/jobs/{_id(job_id)}/heartbeat", body)

    def complete(self, job_id: str, lease_token: str, result: Any) -> dict[str, Any]:
        """``POST /api/v1/jobs/{id}/complete``."""
        return self.request(
            "POST", f"/api/v1/jobs/{_id(job_id)}/complete", {"lease_token": lease_token, "result": result}
        )

    def fail(self, job_id: str, lease_token: str, error: str, retry: bool = False) -> dict[str, Any]:
        """``POST /api/v1/jobs/{id}/fail``; ``retry`` sends the job back to pending (attempt + 1)."""
        body = {"lease_token": lease_token, "error": error, "retry": bool(retry)}
        return self.request("POST", f"/api/v1/jobs/{_id(job_id)}/fail", body)

    def hitl(self, job_id: str, lease_token: str, type: str, data: Any) -> dict[str, Any]:  # noqa: A002
        """``POST /api/v1/jobs/{id}/hitl``: park the job in ``pending_hitl`` with a question."""
        body = {"lease_token": lease_token, "type": type, "data": data}
        return self.request("POST", f"/api/v1/jobs/{_id(job_id)}/hitl", body)

    def get_hitl(self, job_id: str) -> dict[str, Any]:
        """``GET /api/v1/jobs/{id}/hitl``: the question and the answer, once given."""
        return self.request("GET", f"/api/v1/jobs/{_id(job_id)}/hitl")

    def hitl_response(self, job_id: str, response: Any) -> dict[str, Any]:
        """``POST /api/v1/jobs/{id}/hitl/response``: a human's answer; the job goes back to pending."""
        return self.request("POST", f"/api/v1/jobs/{_id(job_id)}/hitl/response", {"response": response})

    def cancel(self, job_id: str) -> dict[str, Any]:
        """``POST /api/v1/jobs/{id}/cancel``."""
        return self.request("POST", f"/api/v1/jobs/{_id(job_id)}/cancel", {})

    # -- training data -------------------------------------------------------------------

    def training_select(self, **spec: Any) -> dict[str, Any]:
        """``POST /api/v2/training/select``: ``style``, ``max``, ``min_score``, ``categories``, ``diverse``,
        ``explain``."""
        return self.request("POST", "/api/v2/training/select", spec)

    def training_results(self, results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``POST /api/v2/training/results``: ``[{"example_id", "score", "passed"}]``."""
        return self.request("POST", "/api/v2/training/results", {"results": [dict(r) for r in results]})

    def training_analytics(self) -> dict[str, Any]:
        """``GET /api/v2/training/analytics``."""
        return self.request("GET", "/api/v2/training/analytics")


def _id(job_id: str) -> str:
    return urllib.parse.quote(str(job_id), safe="")
