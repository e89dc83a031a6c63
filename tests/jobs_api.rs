//! The job API (`/api/v1/jobs…`) against a real server on port 0, and the lease sweeper of
//! `serve`: every test with a database runs twice, on a SQLite file (`sqlite::…`) and on a
//! PostgreSQL database (`postgres::…`).

use super::support::{
    request, shipped_rules, test_config, wait_for, Backend, Resp, TempDir, TestServer,
};
use serde_json::{json, Value};
use skill_fleet::cli::serve::{run_sweeper, sweep_once, SweepReport};
use skill_fleet::store::{Store, StoreOptions};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "0123456789abcdef-test-token";

crate::tests_on_both_backends!(
    a_worker_runs_a_job_through_a_human_question_to_completion,
    unknown_jobs_are_404_and_wrong_methods_405,
    stale_leases_and_illegal_transitions_are_409_with_the_current_status,
    claims_respect_types_and_answer_204_when_nothing_waits,
    failing_retries_while_attempts_remain_or_fails_for_good,
    the_same_idempotency_key_returns_the_same_job,
    listing_pages_newest_first_and_filters,
    every_job_endpoint_requires_the_token_reads_included,
    bad_fields_are_422_naming_the_field,
    a_sweep_returns_or_fails_expired_leases_and_prunes_old_jobs,
    the_periodic_sweeper_runs_until_stopped,
    the_serve_binary_sweeps_expired_leases_logs_it_and_still_shuts_down,
);

/// A server with a fresh database, and a client that sends the API token when it has one.
struct Api {
    srv: TestServer,
    token: Option<&'static str>,
    _dir: TempDir,
}

impl Api {
    /// A server with a fresh database of `backend`.
    fn start(backend: Backend, tag: &str) -> Api {
        Api::start_with(Some(backend), tag, None)
    }

    /// A server with a fresh database of `backend` (none without one) and the API token.
    fn start_with(backend: Option<Backend>, tag: &str, token: Option<&'static str>) -> Api {
        let mut config = test_config(&shipped_rules());
        config.server.api_token = token.map(str::to_string);
        let (db, dir) = match backend {
            Some(b) => {
                let (db, dir) = b.fresh(tag);
                (Some(db), dir)
            }
            None => (None, TempDir::new(tag)),
        };
        let srv = TestServer::start(config, db.as_deref());
        Api {
            srv,
            token,
            _dir: dir,
        }
    }

    fn send(&self, method: &str, path: &str, body: Option<&Value>, auth: bool) -> Resp {
        let bearer = self.token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let (true, Some(b)) = (auth, bearer.as_deref()) {
            headers.push(("Authorization", b));
        }
        let text = body.map(Value::to_string);
        if text.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        request(
            self.srv.addr,
            method,
            path,
            &headers,
            text.as_deref().map(str::as_bytes),
        )
    }

    fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None, true)
    }

    fn post(&self, path: &str, body: Value) -> Resp {
        self.send("POST", path, Some(&body), true)
    }

    /// Creates a job and returns it (asserting 201).
    fn create(&self, body: Value) -> Value {
        let r = self.post("/api/v1/jobs", body);
        assert_eq!(r.status, 201, "{r:?}");
        r.json()
    }

    /// Claims and returns (job, lease token), asserting 200.
    fn claim(&self, worker: &str, types: &[&str]) -> (Value, String) {
        let r = self.post(
            "/api/v1/jobs/claim",
            json!({"worker": worker, "types": types, "lease_seconds": 60}),
        );
        assert_eq!(r.status, 200, "{r:?}");
        let v = r.json();
        let token = v["lease_token"].as_str().expect("lease_token").to_string();
        (v["job"].clone(), token)
    }
}

fn id_of(job: &Value) -> String {
    job["id"].as_str().expect("job id").to_string()
}

/// Asserts a JSON error with this status, and returns its body.
fn error(r: &Resp, status: u16) -> Value {
    assert_eq!(r.status, status, "{r:?}");
    let v = r.json();
    assert!(v["error"].is_string(), "{v}");
    assert!(v["request_id"].is_string(), "{v}");
    v
}

fn a_worker_runs_a_job_through_a_human_question_to_completion(backend: Backend) {
    let api = Api::start(backend, "jobs_loop");
    let created = api.post(
        "/api/v1/jobs",
        json!({
            "job_type": "optimization",
            "user_id": "ada",
            "task": "tune the summarizer",
            "payload": {"optimizer": "gepa", "trainset_size": 80},
        }),
    );
    assert_eq!(created.status, 201, "{created:?}");
    let job = created.json();
    let id = id_of(&job);
    assert_eq!(
        created.header("location"),
        Some(format!("/api/v1/jobs/{id}").as_str())
    );
    assert_eq!(job["status"], "pending");
    assert_eq!(job["payload"]["optimizer"], "gepa");

    let (claimed, token) = api.claim("worker-1", &["optimization"]);
    assert_eq!(id_of(&claimed), id);
    assert_eq!(claimed["status"], "running");
    assert_eq!(claimed["lease"]["owner"], "worker-1");

    let r = api.post(
        &format!("/api/v1/jobs/{id}/heartbeat"),
        json!({"lease_token": token, "lease_seconds": 120,
               "progress": {"percent": 40, "message": "bootstrapping demos", "phase": "bootstrap"}}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let hb = r.json();
    assert_eq!(
        hb["progress"],
        json!({"percent": 40.0, "message": "bootstrapping demos", "phase": "bootstrap"})
    );
    assert_eq!(
        api.get(&format!("/api/v1/jobs/{id}")).json()["progress"]["percent"],
        40.0
    );

    // Never asked yet: 404.
    error(&api.get(&format!("/api/v1/jobs/{id}/hitl")), 404);

    let r = api.post(
        &format!("/api/v1/jobs/{id}/hitl"),
        json!({"lease_token": token, "type": "approve_config", "data": {"num_candidates": 10}}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["status"], "pending_hitl");
    let h = api.get(&format!("/api/v1/jobs/{id}/hitl"));
    assert_eq!(h.status, 200, "{h:?}");
    assert_eq!(
        h.json(),
        json!({"status": "pending_hitl", "type": "approve_config",
               "data": {"num_candidates": 10}, "response": null})
    );
    // Parked: nobody can claim it, and the old lease is gone.
    let r = api.post("/api/v1/jobs/claim", json!({"worker": "worker-2"}));
    assert_eq!(r.status, 204, "{r:?}");
    let v = error(
        &api.post(
            &format!("/api/v1/jobs/{id}/heartbeat"),
            json!({"lease_token": token}),
        ),
        409,
    );
    assert_eq!(v["details"][0]["current_status"], "pending_hitl");

    let r = api.post(
        &format!("/api/v1/jobs/{id}/hitl/response"),
        json!({"response": {"approved": true, "num_candidates": 6}}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["status"], "pending");
    let h = api.get(&format!("/api/v1/jobs/{id}/hitl")).json();
    assert_eq!(h["status"], "pending");
    assert_eq!(
        h["response"],
        json!({"approved": true, "num_candidates": 6})
    );

    let (again, token2) = api.claim("worker-2", &["optimization"]);
    assert_eq!(id_of(&again), id);
    assert_ne!(token2, token);
    assert_eq!(again["hitl"]["response"]["num_candidates"], 6);
    assert_eq!(again["lease"]["owner"], "worker-2");

    let r = api.post(
        &format!("/api/v1/jobs/{id}/complete"),
        json!({"lease_token": token2, "result": {"score": 0.91}}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let done = api.get(&format!("/api/v1/jobs/{id}")).json();
    assert_eq!(done["status"], "completed");
    assert_eq!(done["result"], json!({"score": 0.91}));
    assert_eq!(done["progress"]["percent"], 100.0);
    assert!(done["completed_at"].is_string(), "{done}");
    assert!(done["lease"].is_null(), "{done}");

    // The route label is in the metrics.
    let m = api.get("/metrics").body;
    assert!(
        m.contains(
            r#"skill_fleet_http_requests_total{route="/api/v1/jobs/{id}/complete",status="200"} 1"#
        ),
        "{m}"
    );
    assert!(
        m.contains(r#"route="/api/v1/jobs/claim",status="204"} 1"#),
        "{m}"
    );
}

fn unknown_jobs_are_404_and_wrong_methods_405(backend: Backend) {
    let api = Api::start(backend, "jobs_404");
    let missing = "00000000-0000-0000-0000-000000000000";
    let v = error(&api.get(&format!("/api/v1/jobs/{missing}")), 404);
    assert!(v["error"].as_str().unwrap().contains(missing), "{v}");
    error(&api.get(&format!("/api/v1/jobs/{missing}/hitl")), 404);
    for action in ["heartbeat", "complete"] {
        error(
            &api.post(
                &format!("/api/v1/jobs/{missing}/{action}"),
                json!({"lease_token": "t"}),
            ),
            404,
        );
    }
    error(
        &api.post(
            &format!("/api/v1/jobs/{missing}/fail"),
            json!({"lease_token": "t", "error": "x"}),
        ),
        404,
    );
    error(
        &api.post(
            &format!("/api/v1/jobs/{missing}/hitl/response"),
            json!({"response": 1}),
        ),
        404,
    );
    error(
        &api.send(
            "POST",
            &format!("/api/v1/jobs/{missing}/cancel"),
            None,
            true,
        ),
        404,
    );
    error(&api.get(&format!("/api/v1/jobs/{missing}/restart")), 404);

    let r = api.send("DELETE", &format!("/api/v1/jobs/{missing}"), None, true);
    error(&r, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = api.get("/api/v1/jobs/claim");
    error(&r, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    let r = api.send("PUT", "/api/v1/jobs", None, true);
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST"), "{r:?}");
    let r = api.get(&format!("/api/v1/jobs/{missing}/complete"));
    error(&r, 405);
    assert_eq!(r.header("allow"), Some("POST"));
}

fn stale_leases_and_illegal_transitions_are_409_with_the_current_status(backend: Backend) {
    let api = Api::start(backend, "jobs_409");
    let id = id_of(&api.create(json!({"job_type": "optimization"})));

    // Not running yet: completing is an illegal transition.
    let v = error(
        &api.post(
            &format!("/api/v1/jobs/{id}/complete"),
            json!({"lease_token": "nope", "result": 1}),
        ),
        409,
    );
    assert_eq!(v["details"], json!([{"current_status": "pending"}]));
    // Answering a question nobody asked.
    let v = error(
        &api.post(
            &format!("/api/v1/jobs/{id}/hitl/response"),
            json!({"response": "yes"}),
        ),
        409,
    );
    assert_eq!(v["details"][0]["current_status"], "pending");

    let (_, token) = api.claim("w", &[]);
    let v = error(
        &api.post(
            &format!("/api/v1/jobs/{id}/heartbeat"),
            json!({"lease_token": "not-the-token"}),
        ),
        409,
    );
    assert!(v["error"].as_str().unwrap().contains("stale lease"), "{v}");
    assert_eq!(v["details"][0]["current_status"], "running");
    let v = error(
        &api.post(
            &format!("/api/v1/jobs/{id}/complete"),
            json!({"lease_token": format!("{token}x"), "result": null}),
        ),
        409,
    );
    assert!(v["error"].as_str().unwrap().contains("stale lease"), "{v}");

    // Cancelled while running: the worker's next call learns it.
    let r = api.send("POST", &format!("/api/v1/jobs/{id}/cancel"), None, true);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["status"], "cancelled");
    let v = error(
        &api.post(
            &format!("/api/v1/jobs/{id}/heartbeat"),
            json!({"lease_token": token}),
        ),
        409,
    );
    assert_eq!(v["details"][0]["current_status"], "cancelled");
    let v = error(
        &api.post(&format!("/api/v1/jobs/{id}/cancel"), json!({})),
        409,
    );
    assert_eq!(v["details"], json!([{"current_status": "cancelled"}]));
    assert!(v["error"].as_str().unwrap().contains("cancelled"), "{v}");
}

fn claims_respect_types_and_answer_204_when_nothing_waits(backend: Backend) {
    let api = Api::start(backend, "jobs_claim");
    let r = api.post("/api/v1/jobs/claim", json!({"worker": "w"}));
    assert_eq!(r.status, 204, "{r:?}");
    assert!(r.body.is_empty(), "{r:?}");

    let first = id_of(&api.create(json!({"job_type": "skill_creation"})));
    let second = id_of(&api.create(json!({"job_type": "optimization"})));
    let r = api.post(
        "/api/v1/jobs/claim",
        json!({"worker": "w", "types": ["evaluation"]}),
    );
    assert_eq!(r.status, 204, "{r:?}");
    let (job, _) = api.claim("w", &["optimization"]);
    assert_eq!(id_of(&job), second);
    // Default lease comes from the config (60 s); any type when `types` is absent.
    let r = api.post("/api/v1/jobs/claim", json!({"worker": "w"}));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(id_of(&r.json()["job"]), first);
    let r = api.post("/api/v1/jobs/claim", json!({"worker": "w", "types": []}));
    assert_eq!(r.status, 204, "{r:?}");
}

fn failing_retries_while_attempts_remain_or_fails_for_good(backend: Backend) {
    let api = Api::start(backend, "jobs_fail");
    let retried = id_of(&api.create(json!({"job_type": "t", "max_attempts": 2})));
    let (_, token) = api.claim("w", &[]);
    let r = api.post(
        &format!("/api/v1/jobs/{retried}/fail"),
        json!({"lease_token": token, "error": "rate limited", "retry": true}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    assert_eq!(j["status"], "pending");
    assert_eq!(j["attempt"], 1);
    assert_eq!(j["error"], "rate limited");
    assert!(j["not_before"].is_string(), "{j}");

    let final_ = id_of(&api.create(json!({"job_type": "t"})));
    let (job, token) = api.claim("w", &[]);
    assert_eq!(id_of(&job), final_, "the retried job waits for its backoff");
    let r = api.post(
        &format!("/api/v1/jobs/{final_}/fail"),
        json!({"lease_token": token, "error": "bad config"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["status"], "failed");
}

fn the_same_idempotency_key_returns_the_same_job(backend: Backend) {
    let api = Api::start(backend, "jobs_idem");
    let body = json!({"job_type": "optimization", "idempotency_key": "run-42"});
    let first = api.post("/api/v1/jobs", body.clone());
    assert_eq!(first.status, 201, "{first:?}");
    let again = api.post("/api/v1/jobs", body);
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.json(), first.json());
    let other = api.post(
        "/api/v1/jobs",
        json!({"job_type": "optimization", "idempotency_key": "run-43"}),
    );
    assert_eq!(other.status, 201, "{other:?}");
    assert_ne!(id_of(&other.json()), id_of(&first.json()));
    assert_eq!(
        api.get("/api/v1/jobs").json()["jobs"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

fn listing_pages_newest_first_and_filters(backend: Backend) {
    let api = Api::start(backend, "jobs_list");
    let mut ids = Vec::new();
    for i in 0..7 {
        let user = if i % 2 == 0 { "ada" } else { "bob" };
        let kind = if i < 5 { "optimization" } else { "evaluation" };
        ids.push(id_of(
            &api.create(json!({"job_type": kind, "user_id": user})),
        ));
        std::thread::sleep(Duration::from_millis(3));
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut path = "/api/v1/jobs?limit=3".to_string();
    loop {
        let r = api.get(&path);
        assert_eq!(r.status, 200, "{r:?}");
        let v = r.json();
        let page: Vec<String> = v["jobs"].as_array().unwrap().iter().map(id_of).collect();
        pages.push(page.len());
        seen.extend(page);
        match v["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/jobs?limit=3&cursor={c}"),
            None => {
                assert!(v["next_cursor"].is_null(), "{v}");
                break;
            }
        }
        assert!(pages.len() < 10, "pagination does not end");
    }
    assert_eq!(pages, vec![3, 3, 1]);
    assert_eq!(seen, newest_first);

    let ids_of = |q: &str| -> Vec<String> {
        let r = api.get(&format!("/api/v1/jobs?{q}"));
        assert_eq!(r.status, 200, "{q}: {r:?}");
        r.json()["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(id_of)
            .collect()
    };
    assert_eq!(
        ids_of("type=evaluation"),
        vec![ids[6].clone(), ids[5].clone()]
    );
    assert_eq!(
        ids_of("user_id=ada&type=optimization"),
        vec![ids[4].clone(), ids[2].clone(), ids[0].clone()]
    );
    let (claimed, _) = api.claim("w", &["optimization"]);
    assert_eq!(id_of(&claimed), ids[0], "claims take the oldest first");
    assert_eq!(ids_of("status=running"), vec![ids[0].clone()]);
    assert_eq!(ids_of("status=pending").len(), 6);
    assert!(ids_of("status=completed").is_empty());
    assert_eq!(ids_of("user_id=nobody"), Vec::<String>::new());

    for (q, param) in [
        ("status=done", "status"),
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("limit=100000", "limit"),
        ("cursor=garbage", "cursor"),
        ("colour=red", "colour"),
    ] {
        let v = error(&api.get(&format!("/api/v1/jobs?{q}")), 400);
        assert!(
            v["error"].as_str().unwrap().contains(&format!("`{param}`")),
            "{q}: {v}"
        );
        assert_eq!(v["details"][0]["parameter"], param, "{q}: {v}");
    }
}

fn every_job_endpoint_requires_the_token_reads_included(backend: Backend) {
    let api = Api::start_with(Some(backend), "jobs_auth", Some(TOKEN));
    let r = api.send(
        "POST",
        "/api/v1/jobs",
        Some(&json!({"job_type": "t"})),
        false,
    );
    error(&r, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let id = id_of(&api.create(json!({"job_type": "t"})));
    // Reads need it too (job payloads and results are private), and work with it.
    for path in [
        "/api/v1/jobs".to_string(),
        format!("/api/v1/jobs/{id}"),
        format!("/api/v1/jobs/{id}/hitl"),
    ] {
        error(&api.send("GET", &path, None, false), 401);
        // 404 for the question of a job that has none: past the token check.
        let with = api.send("GET", &path, None, true).status;
        assert!(with == 200 || with == 404, "{path}: {with}");
    }
    for (path, body) in [
        ("/api/v1/jobs/claim".to_string(), json!({"worker": "w"})),
        (
            format!("/api/v1/jobs/{id}/heartbeat"),
            json!({"lease_token": "t"}),
        ),
        (
            format!("/api/v1/jobs/{id}/complete"),
            json!({"lease_token": "t"}),
        ),
        (
            format!("/api/v1/jobs/{id}/fail"),
            json!({"lease_token": "t", "error": "e"}),
        ),
        (
            format!("/api/v1/jobs/{id}/hitl"),
            json!({"lease_token": "t", "type": "q"}),
        ),
        (
            format!("/api/v1/jobs/{id}/hitl/response"),
            json!({"response": 1}),
        ),
        (format!("/api/v1/jobs/{id}/cancel"), json!({})),
    ] {
        error(&api.send("POST", &path, Some(&body), false), 401);
    }
    // Nothing changed.
    assert_eq!(
        api.get(&format!("/api/v1/jobs/{id}")).json()["status"],
        "pending"
    );
    let (job, _) = api.claim("w", &[]);
    assert_eq!(id_of(&job), id);
}

fn bad_fields_are_422_naming_the_field(backend: Backend) {
    let api = Api::start(backend, "jobs_422");
    let cases = [
        (
            "/api/v1/jobs",
            json!({"job_type": "t", "colour": "red"}),
            "colour",
        ),
        ("/api/v1/jobs", json!({"task": "x"}), "job_type"),
        ("/api/v1/jobs", json!({"job_type": ""}), "job_type"),
        (
            "/api/v1/jobs",
            json!({"job_type": "t", "max_attempts": 0}),
            "max_attempts",
        ),
        (
            "/api/v1/jobs",
            json!({"job_type": "t", "max_attempts": "3"}),
            "max_attempts",
        ),
        ("/api/v1/jobs", json!({"job_type": 7}), "job_type"),
        ("/api/v1/jobs/claim", json!({"worker": ""}), "worker"),
        // No database stores a NUL character alike (PostgreSQL none at all): refused.
        (
            "/api/v1/jobs",
            json!({"job_type": "t", "task": "a\u{0}b"}),
            "task",
        ),
        ("/api/v1/jobs/claim", json!({"worker": "w\u{0}"}), "worker"),
        (
            "/api/v1/jobs/claim",
            json!({"worker": "w", "lease_seconds": 0}),
            "lease_seconds",
        ),
        (
            "/api/v1/jobs/claim",
            json!({"worker": "w", "lease_seconds": -5}),
            "lease_seconds",
        ),
        (
            "/api/v1/jobs/claim",
            json!({"worker": "w", "types": "optimization"}),
            "types",
        ),
        (
            "/api/v1/jobs/claim",
            json!({"worker": "w", "lease": 60}),
            "lease",
        ),
    ];
    for (path, body, field) in cases {
        let v = error(&api.post(path, body.clone()), 422);
        assert_eq!(v["details"][0]["field"], field, "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains(&format!("`{field}`")),
            "{body}: {v}"
        );
    }
    let v = error(
        &api.post(
            "/api/v1/jobs/claim",
            json!({"worker": "w", "lease_second": 5}),
        ),
        422,
    );
    assert_eq!(v["details"][0]["help"], "did you mean `lease_seconds`?");

    let id = id_of(&api.create(json!({"job_type": "t"})));
    let (_, token) = api.claim("w", &[]);
    let hb = format!("/api/v1/jobs/{id}/heartbeat");
    for (body, field) in [
        (
            json!({"lease_token": token, "progress": {"percent": 5, "stage": "x"}}),
            "progress.stage",
        ),
        (
            json!({"lease_token": token, "progress": {"percent": 101}}),
            "progress.percent",
        ),
        (
            json!({"lease_token": token, "progress": {"message": "m"}}),
            "progress.percent",
        ),
        (json!({"lease_token": token, "progress": 5}), "progress"),
        (
            json!({"lease_token": token, "lease_seconds": 86401}),
            "lease_seconds",
        ),
        (json!({"token": token}), "token"),
    ] {
        let v = error(&api.post(&hb, body.clone()), 422);
        assert_eq!(v["details"][0]["field"], field, "{body}: {v}");
    }
    let v = error(
        &api.post(
            &format!("/api/v1/jobs/{id}/hitl"),
            json!({"lease_token": token, "type": " "}),
        ),
        422,
    );
    assert_eq!(v["details"][0]["field"], "type");
    let v = error(
        &api.post(
            &format!("/api/v1/jobs/{id}/fail"),
            json!({"lease_token": token, "retry": "yes", "error": "e"}),
        ),
        422,
    );
    assert_eq!(v["details"][0]["field"], "retry");
    let v = error(
        &api.post(&format!("/api/v1/jobs/{id}/cancel"), json!({"reason": "x"})),
        422,
    );
    assert_eq!(v["details"][0]["field"], "reason");
    // None of that touched the job.
    let j = api.get(&format!("/api/v1/jobs/{id}")).json();
    assert_eq!(j["status"], "running");
    assert_eq!(j["version"], 2);

    // Body problems keep their own statuses.
    error(&api.send("POST", "/api/v1/jobs", None, true), 415);
    let r = request(
        api.srv.addr,
        "POST",
        "/api/v1/jobs",
        &[("Content-Type", "application/json")],
        Some(b"{\"job_type\": "),
    );
    error(&r, 400);
}

#[test]
fn without_a_database_the_job_api_is_503() {
    let api = Api::start_with(None, "jobs-503", None);
    error(&api.get("/api/v1/jobs"), 503);
    error(&api.post("/api/v1/jobs", json!({"job_type": "t"})), 503);
}

// ---------------------------------------------------------------------------------------------
// The sweeper of `serve`
// ---------------------------------------------------------------------------------------------

const DAY_MS: i64 = 86_400_000;

/// A fresh store of `backend` on a manual clock (with the directory its files live in).
fn manual_store(backend: Backend, tag: &str) -> (Arc<Store>, Arc<AtomicI64>, TempDir) {
    let now = Arc::new(AtomicI64::new(1_700_000_000_000));
    let clock = {
        let now = Arc::clone(&now);
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let (db, dir) = backend.fresh(tag);
    let store = Store::open_with(&db, true, StoreOptions::default(), clock).expect("open store");
    (Arc::new(store), now, dir)
}

fn new_job(store: &Store, max_attempts: i64) -> String {
    let (job, _) = store
        .create(skill_fleet::store::job::NewJob {
            job_type: "t".into(),
            max_attempts: Some(max_attempts),
            ..Default::default()
        })
        .expect("create");
    job.id
}

fn a_sweep_returns_or_fails_expired_leases_and_prunes_old_jobs(backend: Backend) {
    let (store, now, _dir) = manual_store(backend, "jobs_sweep");
    let retried = new_job(&store, 3);
    let exhausted = new_job(&store, 1);
    let done = new_job(&store, 3);
    let mut tokens = std::collections::HashMap::new();
    for _ in 0..3 {
        let (job, token) = store.claim("w", &[], 1_000).expect("claim").expect("a job");
        tokens.insert(job.id, token);
    }
    // Completed before its lease expires: the sweep leaves it alone.
    store
        .complete(&done, &tokens[&done], json!("ok"))
        .expect("complete");
    assert_eq!(sweep_once(&store, 30).unwrap(), SweepReport::default());

    now.fetch_add(2_000, Ordering::SeqCst);
    let r = sweep_once(&store, 30).unwrap();
    assert_eq!(
        r,
        SweepReport {
            returned: 1,
            failed: 1,
            pruned: 0
        }
    );
    assert_eq!(sweep_once(&store, 30).unwrap(), SweepReport::default());
    assert_eq!(
        store.get(&retried).unwrap().unwrap().status.as_str(),
        "pending"
    );
    assert_eq!(
        store.get(&exhausted).unwrap().unwrap().status.as_str(),
        "failed"
    );

    // Retention: 0 keeps everything; otherwise terminal jobs older than the retention go.
    now.fetch_add(31 * DAY_MS, Ordering::SeqCst);
    assert_eq!(sweep_once(&store, 0).unwrap().pruned, 0);
    assert!(store.get(&exhausted).unwrap().is_some());
    assert_eq!(sweep_once(&store, 60).unwrap().pruned, 0);
    assert_eq!(sweep_once(&store, 30).unwrap().pruned, 2);
    assert!(store.get(&exhausted).unwrap().is_none());
    assert!(store.get(&done).unwrap().is_none());
    assert!(
        store.get(&retried).unwrap().is_some(),
        "pending jobs are never pruned"
    );
}

fn the_periodic_sweeper_runs_until_stopped(backend: Backend) {
    let (store, now, _dir) = manual_store(backend, "jobs_sweeper");
    let id = new_job(&store, 3);
    store.claim("w", &[], 1_000).expect("claim").expect("a job");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = rt.spawn(run_sweeper(
        Arc::clone(&store),
        Duration::from_millis(20),
        30,
        stop_rx,
    ));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        store.get(&id).unwrap().unwrap().status.as_str(),
        "running",
        "the lease has not expired yet"
    );
    now.fetch_add(1_500, Ordering::SeqCst);
    wait_for(
        Duration::from_secs(10),
        "the sweeper to return the job",
        || (store.get(&id).unwrap().unwrap().status.as_str() == "pending").then_some(()),
    );
    let _ = stop.send(true);
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await })
        .expect("the sweeper stops when told")
        .expect("the sweeper does not panic");
}

fn the_serve_binary_sweeps_expired_leases_logs_it_and_still_shuts_down(backend: Backend) {
    use super::support::{bin, free_port, root};
    use std::process::{Command, Stdio};
    let (db, dir) = backend.fresh("jobs_serve");
    let log = dir.path().join("stderr.log");
    let port = free_port();
    /// Kills the server when the test fails before it exits.
    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            if let Ok(None) = self.0.try_wait() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
    let mut child = Guard(
        Command::new(bin())
            .current_dir(root())
            .args(["serve", "--no-watch", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--db")
            .arg(&db)
            .env_remove("SKILL_FLEET_RULES")
            .env_remove("SKILL_FLEET_API_TOKEN")
            .env("SKILL_FLEET_JOBS_SWEEP_INTERVAL_MS", "100")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn serve"),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let logged = |what: &str| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(what)
    };
    wait_for(Duration::from_secs(30), "the server to listen", || {
        logged("listening on").then_some(())
    });
    let json_post = |path: &str, body: Value| {
        request(
            addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        )
    };
    let r = json_post("/api/v1/jobs", json!({"job_type": "t"}));
    assert_eq!(r.status, 201, "{r:?}");
    let id = id_of(&r.json());
    let r = json_post(
        "/api/v1/jobs/claim",
        json!({"worker": "gone", "lease_seconds": 1}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    wait_for(
        Duration::from_secs(10),
        "the sweep to return the job",
        || {
            let j = request(addr, "GET", &format!("/api/v1/jobs/{id}"), &[], None).json();
            (j["status"] == "pending").then_some(())
        },
    );
    // Logged from a runtime thread, not the main one: that must not block it.
    wait_for(Duration::from_secs(10), "the sweep to be logged", || {
        logged("job sweep: 1 expired leases returned to pending").then_some(())
    });
    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let exited = wait_for(
        Duration::from_secs(15),
        "serve to exit after SIGTERM",
        || child.0.try_wait().expect("try_wait"),
    );
    assert!(
        exited.success(),
        "{exited:?}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("database closed"), "{text}");
    assert!(
        !text.contains("hunter2secret"),
        "a password in the log: {text}"
    );
}
