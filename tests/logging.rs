//! The server's log as several nodes share it: `log.format: json` writes one JSON object per
//! line (time, level, node, message, fields) and `log.requests` adds one line per request
//! (request id, method, route, status, duration), against the real binary.

use super::support::{request, rules_copy, ServeProc, DEADLINE};
use serde_json::Value;

#[test]
fn json_lines_carry_node_and_request_fields() {
    let t = rules_copy("log-json");
    let rules = t.path().join("rules").display().to_string();
    let db = t.path().join("db.sqlite").display().to_string();
    let (mut proc, addr) = ServeProc::on_free_port(
        t.path(),
        &["--rules", &rules, "--db", &db, "--no-watch"],
        &[
            ("SKILL_FLEET_LOG_FORMAT", "json"),
            ("SKILL_FLEET_LOG_REQUESTS", "true"),
            ("SKILL_FLEET_LOG_NODE", "node-a"),
        ],
    );
    let r = request(
        addr,
        "GET",
        "/health",
        &[("X-Request-ID", "trace-me-42")],
        None,
    );
    assert_eq!(r.status, 200);
    let body = br#"{"trainset_size": 200, "budget_usd": 3}"#;
    let r = request(
        addr,
        "POST",
        "/api/v1/optimization/recommend",
        &[("Content-Type", "application/json")],
        Some(body),
    );
    assert_eq!(r.status, 200);
    let own_id = r.header("x-request-id").expect("a request id").to_string();
    let r = request(addr, "GET", "/api/v1/jobs/nope", &[], None);
    assert_eq!(r.status, 404);
    proc.terminate();
    let (code, log) = proc.wait(DEADLINE);
    assert_eq!(code, 0, "{log}");
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 5, "{log}");
    for l in &lines {
        assert_eq!(l["node"], "node-a", "{l}");
        assert!(l["level"].is_string() && l["message"].is_string(), "{l}");
        let time = l["time"].as_str().expect("time");
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.contains('T'),
            "{time}"
        );
    }
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .unwrap()
            .starts_with("listening on http://")),
        "{log}"
    );
    let request = |id: &str| {
        lines
            .iter()
            .find(|l| l["message"] == "request" && l["request_id"] == id)
            .unwrap_or_else(|| panic!("no request line for {id}:\n{log}"))
            .clone()
    };
    let health = request("trace-me-42");
    assert_eq!(health["method"], "GET");
    assert_eq!(health["route"], "/health");
    assert_eq!(health["status"], 200);
    assert!(
        health["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
        "{health}"
    );
    let decided = request(&own_id);
    assert_eq!(decided["route"], "/api/v1/optimization/recommend");
    assert_eq!(decided["method"], "POST");
    // A route pattern, never the path with its id.
    let missing = lines
        .iter()
        .find(|l| l["message"] == "request" && l["status"] == 404)
        .expect("the 404's line");
    assert_eq!(missing["route"], "/api/v1/jobs/{id}");
}

#[test]
fn request_lines_are_off_by_default_and_bad_formats_are_refused() {
    let t = rules_copy("log-human");
    let rules = t.path().join("rules").display().to_string();
    let db = t.path().join("db.sqlite").display().to_string();
    let (mut proc, addr) = ServeProc::on_free_port(
        t.path(),
        &["--rules", &rules, "--db", &db, "--no-watch"],
        &[],
    );
    assert_eq!(request(addr, "GET", "/health", &[], None).status, 200);
    proc.terminate();
    let (code, log) = proc.wait(DEADLINE);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("listening on http://"), "{log}");
    assert!(!log.contains("request_id"), "{log}");
    assert!(!log.trim_start().starts_with('{'), "{log}");

    // A format it does not know stops the start with the key and where the value came from.
    let mut bad = ServeProc::spawn(
        t.path(),
        &[
            "--rules",
            &rules,
            "--db",
            &db,
            "--no-watch",
            "--addr",
            "127.0.0.1:0",
        ],
        &[("SKILL_FLEET_LOG_FORMAT", "xml")],
    );
    let (code, log) = bad.wait(DEADLINE);
    assert_eq!(code, 6, "{log}");
    assert!(log.contains("`log.format`"), "{log}");
    assert!(log.contains("SKILL_FLEET_LOG_FORMAT"), "{log}");
}
