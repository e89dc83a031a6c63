//! `skill-fleet serve`: a real server on port 0 (endpoints, error paths, limits, hot reload,
//! timeouts, graceful shutdown), and the binary's start-up errors and SIGTERM.

use super::support::{
    connect, read_response, request, request_head, root, rules_copy, shipped_rules, test_config,
    wait_for, Resp, ServeProc, TempDir, TestServer, DEADLINE,
};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RECOMMEND: &str = "/api/v1/optimization/recommend";
const EVALUATE: &str = "/api/v1/rules/evaluate";
const STATUS: &str = "/api/v1/rules/status";
const RELOAD: &str = "/api/v1/rules/reload";

/// miprov2 with the shipped rules; reflection_metrics once `tiny_budget` is raised to $5.
const INPUT: &str = r#"{"trainset_size": 200, "budget_usd": 3}"#;
const THRESHOLD: &str = "when: {field: budget_usd, lt: 1.0}";
const RAISED: &str = "when: {field: budget_usd, lt: 5.0}";
const BROKEN: &str = "when: {field: budget_usd, lt: oops}";

fn server(tag: &str) -> (TempDir, TestServer) {
    let t = rules_copy(tag);
    let srv = TestServer::start(test_config(&t.path().join("rules")), None);
    (t, srv)
}

/// Replaces `from` (which must be there) with `to` in `file`.
fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).expect("read rule file");
    assert!(text.contains(from), "`{from}` not in {}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).expect("write rule file");
}

/// 1-based line and column of `needle` in `file`.
fn line_col(file: &Path, needle: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(file).expect("read");
    for (i, line) in text.lines().enumerate() {
        if let Some(c) = line.find(needle) {
            return (i as u64 + 1, c as u64 + 1);
        }
    }
    panic!("`{needle}` not in {}", file.display())
}

fn recommended(srv: &TestServer, body: &str) -> String {
    let r = srv.post_json(RECOMMEND, body);
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["recommended"]
        .as_str()
        .expect("recommended")
        .to_string()
}

fn status(srv: &TestServer) -> Value {
    let r = srv.get(STATUS);
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

/// The error shape: `error`, `details` (an array) and `request_id` equal to the header.
fn assert_error_shape(r: &Resp) -> Value {
    let v = r.json();
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{r:?}");
    assert!(v["details"].is_array(), "{r:?}");
    let rid = r.header("x-request-id").expect("x-request-id on an error");
    assert_eq!(v["request_id"], rid, "{r:?}");
    v
}

#[test]
fn health_and_ready_with_a_temp_database() {
    let t = rules_copy("srv-ready");
    let db = t.path().join("ready.db");
    let srv = TestServer::start(test_config(&t.path().join("rules")), Some(&db));
    let h = srv.get("/health");
    assert_eq!(h.status, 200, "{h:?}");
    assert_eq!(h.json()["status"], "ok");
    assert!(h
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let r = srv.get("/ready");
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(v["status"], "ready");
    assert_eq!(v["database"], "ok");
    assert_eq!(v["rules_state"], "loaded");
    assert_eq!(v["rules_revision"], status(&srv)["revision"]);
    assert!(db.exists());

    // Without a database the server is alive but not ready.
    let (_t2, bare) = server("srv-notready");
    assert_eq!(bare.get("/health").status, 200);
    let r = bare.get("/ready");
    assert_eq!(r.status, 503, "{r:?}");
    let v = assert_error_shape(&r);
    assert_eq!(v["details"][0]["component"], "database");
}

#[test]
fn recommend_decides_and_explain_adds_the_trace() {
    let (_t, srv) = server("srv-recommend");
    let r = srv.post_json(RECOMMEND, INPUT);
    assert_eq!(r.status, 200, "{r:?}");
    let d = r.json();
    assert_eq!(d["recommended"], "miprov2");
    assert_eq!(d["rule"], "moderate_trainset_budget");
    assert_eq!(d["rules_revision"], status(&srv)["revision"]);
    assert!(d.get("trace").is_none_or(Value::is_null), "{d}");

    let r = srv.post_json(&format!("{RECOMMEND}?explain=true"), INPUT);
    assert_eq!(r.status, 200, "{r:?}");
    let trace = &r.json()["trace"];
    assert!(
        trace["rules"].as_array().is_some_and(|a| !a.is_empty()),
        "{trace}"
    );
    assert_eq!(trace["input"]["trainset_size"], 200);

    let r = srv.post_json(&format!("{RECOMMEND}?explain=maybe"), INPUT);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(assert_error_shape(&r)["error"]
        .as_str()
        .unwrap()
        .contains("explain"));
}

#[test]
fn evaluate_is_a_dry_run_and_status_reports_the_rule_set() {
    let (t, srv) = server("srv-evaluate");
    let r = srv.post_json(EVALUATE, INPUT);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["recommended"], "miprov2");
    let r = srv.post_json(&format!("{EVALUATE}?explain=1"), INPUT);
    assert!(r.json()["trace"].is_object(), "{r:?}");
    // A dry run is not counted as a decision.
    let m = srv.get("/metrics").body;
    assert!(!m.contains("skill_fleet_decisions_total{"), "{m}");

    let s = status(&srv);
    assert_eq!(s["state"], "loaded");
    let rev = s["revision"].as_str().unwrap();
    assert_eq!(rev.len(), 12, "{s}");
    assert_eq!(s["dir"], t.path().join("rules").display().to_string());
    let files = s["files"].as_array().unwrap();
    assert!(
        files
            .iter()
            .any(|f| f.as_str().unwrap().ends_with("selection.yaml")),
        "{s}"
    );
    assert!(
        s["loaded_at"].as_str().is_some_and(|a| !a.is_empty()),
        "{s}"
    );
    assert_eq!(s["fixtures"]["checked"], true);
    assert_eq!(s["fixtures"]["failed"], 0);
    assert!(s["fixtures"]["passed"].as_u64().unwrap() >= 40, "{s}");
    assert!(s["last_error"].is_null(), "{s}");
}

#[test]
fn invalid_input_is_422_with_field_and_bound() {
    let (_t, srv) = server("srv-422");
    for (body, field, bound) in [
        (
            r#"{"trainset_size": 0}"#,
            "trainset_size",
            "below the minimum 1",
        ),
        (
            r#"{"trainset_size": 10, "quality_target": 1.5}"#,
            "quality_target",
            "above the maximum 1",
        ),
        (
            r#"{"trainset_size": 10, "budget_usd": -1}"#,
            "budget_usd",
            "below the minimum 0",
        ),
        (
            r#"{"budget_usd": 10}"#,
            "trainset_size",
            "missing required field",
        ),
    ] {
        for path in [RECOMMEND, EVALUATE] {
            let r = srv.post_json(path, body);
            assert_eq!(r.status, 422, "{body}: {r:?}");
            let v = assert_error_shape(&r);
            assert_eq!(v["error"], "invalid input");
            let d = &v["details"][0];
            assert_eq!(d["field"], field, "{v}");
            assert!(d["message"].as_str().unwrap().contains(bound), "{v}");
        }
    }
}

#[test]
fn request_id_is_generated_or_echoed() {
    let (_t, srv) = server("srv-rid");
    let a = srv.get("/health");
    let b = srv.get("/health");
    let (ra, rb) = (
        a.header("x-request-id").unwrap(),
        b.header("x-request-id").unwrap(),
    );
    assert_ne!(ra, rb);
    for id in [ra, rb] {
        assert_eq!(id.len(), 16, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
    // A valid id from the client is echoed, on success and on errors.
    let mine = "client-req_42";
    let r = request(srv.addr, "GET", "/health", &[("X-Request-ID", mine)], None);
    assert_eq!(r.header("x-request-id"), Some(mine));
    let r = request(srv.addr, "GET", "/nowhere", &[("X-Request-ID", mine)], None);
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-request-id"), Some(mine));
    assert_eq!(r.json()["request_id"], mine);
    // An invalid one is replaced.
    let long = "x".repeat(65);
    for bad in ["has spaces in it", "semi;colon", long.as_str()] {
        let r = request(srv.addr, "GET", "/health", &[("X-Request-ID", bad)], None);
        let got = r.header("x-request-id").unwrap();
        assert_ne!(got, bad);
        assert_eq!(got.len(), 16, "{got}");
    }
}

#[test]
fn metrics_count_requests_latencies_and_decisions() {
    let (_t, srv) = server("srv-metrics");
    assert_eq!(srv.get("/health").status, 200);
    assert_eq!(recommended(&srv, INPUT), "miprov2");
    assert_eq!(recommended(&srv, INPUT), "miprov2");
    assert_eq!(
        recommended(&srv, r#"{"trainset_size": 50, "budget_usd": 4}"#),
        "gepa"
    );
    assert_eq!(
        srv.post_json(RECOMMEND, r#"{"trainset_size": 0}"#).status,
        422
    );
    assert_eq!(srv.get("/nope").status, 404);
    let r = srv.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{r:?}"
    );
    assert!(r.header("x-request-id").is_some());
    let m = &r.body;
    let rec = "route=\"/api/v1/optimization/recommend\"";
    for line in [
        "# TYPE skill_fleet_http_requests_total counter".to_string(),
        "skill_fleet_http_requests_total{route=\"/health\",status=\"200\"} 1".to_string(),
        format!("skill_fleet_http_requests_total{{{rec},status=\"200\"}} 3"),
        format!("skill_fleet_http_requests_total{{{rec},status=\"422\"}} 1"),
        "skill_fleet_http_requests_total{route=\"unmatched\",status=\"404\"} 1".to_string(),
        "# TYPE skill_fleet_http_request_duration_seconds histogram".to_string(),
        format!("skill_fleet_http_request_duration_seconds_bucket{{{rec},le=\"+Inf\"}} 4"),
        format!("skill_fleet_http_request_duration_seconds_count{{{rec}}} 4"),
        "# TYPE skill_fleet_decisions_total counter".to_string(),
        "skill_fleet_decisions_total{optimizer=\"miprov2\"} 2".to_string(),
        "skill_fleet_decisions_total{optimizer=\"gepa\"} 1".to_string(),
        "skill_fleet_rules_reloads_total{result=\"failed\"} 0".to_string(),
        "skill_fleet_rules_degraded 0".to_string(),
    ] {
        assert!(m.lines().any(|l| l == line), "missing `{line}` in\n{m}");
    }
    assert!(
        m.lines().any(|l| l.starts_with(&format!(
            "skill_fleet_http_request_duration_seconds_bucket{{{rec},le=\"0.0001\"}} "
        ))),
        "{m}"
    );
    assert!(
        m.lines().any(|l| l.starts_with(&format!(
            "skill_fleet_http_request_duration_seconds_sum{{{rec}}} "
        ))),
        "{m}"
    );
    let rev = status(&srv)["revision"].as_str().unwrap().to_string();
    assert!(
        m.contains(&format!("skill_fleet_rules_info{{revision=\"{rev}\"}} 1")),
        "{m}"
    );
    // Histogram buckets are cumulative.
    let buckets: Vec<u64> = m
        .lines()
        .filter(|l| {
            l.starts_with(&format!(
                "skill_fleet_http_request_duration_seconds_bucket{{{rec}"
            ))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
}

#[test]
fn body_over_the_limit_is_413_with_a_declared_length() {
    let (_t, srv) = server("srv-413");
    // The default limit is 1 MiB; the server answers from the header without the body.
    let mut s = connect(srv.addr);
    let head = request_head(
        "POST",
        RECOMMEND,
        &[("Content-Type", "application/json")],
        Some(1024 * 1024 + 1),
    );
    s.write_all(head.as_bytes()).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 413, "{r:?}");
    let v = assert_error_shape(&r);
    assert!(v["error"].as_str().unwrap().contains("1048576"), "{v}");

    // Exactly at the limit is read (and then judged as JSON).
    let mut body = format!(r#"{{"trainset_size": 200, "pad": "{}"#, "");
    body.push_str(&" ".repeat(1024 * 1024 - body.len() - 2));
    body.push_str("\"}");
    assert_eq!(body.len(), 1024 * 1024);
    let r = srv.post_json(RECOMMEND, &body);
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["details"][0]["field"], "pad", "{}", r.body);
}

fn chunked(s: &mut std::net::TcpStream, path: &str, chunks: &[&str]) -> Resp {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let mut raw = head.into_bytes();
    for c in chunks {
        raw.extend_from_slice(format!("{:x}\r\n{c}\r\n", c.len()).as_bytes());
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    // The server may answer (and close) before reading everything: ignore write errors.
    let _ = s.write_all(&raw);
    read_response(s)
}

#[test]
fn chunked_body_over_the_limit_is_413() {
    let t = rules_copy("srv-413-chunked");
    let mut cfg = test_config(&t.path().join("rules"));
    cfg.server.body_limit_bytes = 1000;
    let srv = TestServer::start(cfg, None);
    // Under the limit, chunked is fine.
    let r = chunked(
        &mut connect(srv.addr),
        RECOMMEND,
        &[r#"{"trainset_size":"#, r#" 200, "budget_usd": 3}"#],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["recommended"], "miprov2");
    // Over it, without any Content-Length to go by.
    let pad = "x".repeat(600);
    let first = format!(r#"{{"trainset_size": 200, "pad": "{pad}"#);
    let r = chunked(
        &mut connect(srv.addr),
        RECOMMEND,
        &[&first, &pad, &pad, "\"}"],
    );
    assert_eq!(r.status, 413, "{r:?}");
    let v = assert_error_shape(&r);
    assert!(v["error"].as_str().unwrap().contains("1000 bytes"), "{v}");
}

#[test]
fn malformed_json_is_400_with_line_and_column() {
    let (_t, srv) = server("srv-400");
    let body = "{\n  \"trainset_size\": 10,\n  \"budget_usd\": oops\n}";
    let r = srv.post_json(RECOMMEND, body);
    assert_eq!(r.status, 400, "{r:?}");
    let v = assert_error_shape(&r);
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("malformed json at line 3 column 17"), "{e}");
    assert_eq!(v["details"][0]["line"], 3, "{v}");
    assert_eq!(v["details"][0]["column"], 17, "{v}");
    // Truncated.
    let r = srv.post_json(RECOMMEND, "{\"trainset_size\": 10");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.json()["error"].as_str().unwrap().contains("line 1"),
        "{r:?}"
    );
    // Valid JSON but not an object.
    let r = srv.post_json(RECOMMEND, "[1, 2]");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        assert_error_shape(&r)["error"]
            .as_str()
            .unwrap()
            .contains("must be a JSON object"),
        "{r:?}"
    );
}

/// Requests hyper rejects before any handler runs get hyper's own bare reply (status, no
/// body) and a closed connection; the server goes on serving.
#[test]
fn requests_that_cannot_be_parsed_get_a_bare_status_and_a_closed_connection() {
    let t = rules_copy("srv-unparsed");
    let srv = TestServer::start(test_config(&t.path().join("rules")), None);
    let many_headers: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: [(Vec<u8>, u16); 4] = [
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
        (
            b"GET /health HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n".to_vec(),
            400,
        ),
        (
            format!("GET /health HTTP/1.1\r\nHost: t\r\n{many_headers}\r\n").into_bytes(),
            431,
        ),
        (
            format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(70_000)).into_bytes(),
            414,
        ),
    ];
    for (request, status) in &cases {
        let mut s = connect(srv.addr);
        s.write_all(request).unwrap();
        let r = read_response(&mut s);
        assert_eq!(r.status, *status, "{r:?}");
        expect_closed(&mut s);
    }
    // Behind a pipelined request that was answered: that answer first, then the error.
    let mut s = connect(srv.addr);
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\nGARBAGE\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    let r = read_response(&mut s);
    assert_eq!(r.status, 400, "{r:?}");
    expect_closed(&mut s);
    // The server goes on serving.
    assert_eq!(srv.get("/health").status, 200);
}

#[test]
fn wrong_content_type_is_415() {
    let (_t, srv) = server("srv-415");
    let r = request(
        srv.addr,
        "POST",
        RECOMMEND,
        &[("Content-Type", "text/plain")],
        Some(INPUT.as_bytes()),
    );
    assert_eq!(r.status, 415, "{r:?}");
    let v = assert_error_shape(&r);
    assert!(
        v["error"].as_str().unwrap().contains("application/json"),
        "{v}"
    );
    let r = request(srv.addr, "POST", EVALUATE, &[], Some(INPUT.as_bytes()));
    assert_eq!(r.status, 415, "{r:?}");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("missing content type"),
        "{r:?}"
    );
    // Parameters and case do not matter.
    let r = request(
        srv.addr,
        "POST",
        RECOMMEND,
        &[("Content-Type", "Application/JSON; charset=utf-8")],
        Some(INPUT.as_bytes()),
    );
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn unknown_route_is_404_and_wrong_method_is_405_with_allow() {
    let (_t, srv) = server("srv-404");
    for path in [
        "/index.html",
        "/api/v1/nothing",
        "/healthz",
        "/api/v1/rules",
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, 404, "{path}: {r:?}");
        assert_error_shape(&r);
    }
    for (method, path, allow) in [
        ("GET", RECOMMEND, "POST"),
        ("PUT", EVALUATE, "POST"),
        ("GET", RELOAD, "POST"),
        ("POST", "/health", "GET, HEAD"),
        ("DELETE", STATUS, "GET, HEAD"),
        ("POST", "/metrics", "GET, HEAD"),
    ] {
        let r = request(srv.addr, method, path, &[], None);
        assert_eq!(r.status, 405, "{method} {path}: {r:?}");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}: {r:?}");
        let v = assert_error_shape(&r);
        assert!(v["error"].as_str().unwrap().contains(method), "{v}");
    }
}

/// Everything on the wire for one request on a new connection (`Connection: close`).
fn raw_exchange(addr: std::net::SocketAddr, method: &str, path: &str) -> String {
    let mut s = connect(addr);
    s.write_all(request_head(method, path, &[], None).as_bytes())
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn head_is_get_without_the_body() {
    let (_t, srv) = server("srv-head");
    for path in ["/health", STATUS, "/metrics", "/openapi.json", "/"] {
        let get = raw_exchange(srv.addr, "GET", path);
        let head = raw_exchange(srv.addr, "HEAD", path);
        let (get_head, get_body) = get.split_once("\r\n\r\n").unwrap();
        let (head_head, head_body) = head.split_once("\r\n\r\n").unwrap();
        assert!(
            head_head.starts_with("HTTP/1.1 200 "),
            "{path}: {head_head}"
        );
        assert_eq!(head_body, "", "{path}: HEAD sent a body");
        assert!(!get_body.is_empty(), "{path}");
        // The same headers as GET (the request id and the date aside).
        let same = |h: &str| -> Vec<String> {
            h.lines()
                .skip(1)
                .map(str::to_ascii_lowercase)
                .filter(|l| !l.starts_with("x-request-id") && !l.starts_with("date"))
                .collect()
        };
        let (g, h) = (same(get_head), same(head_head));
        // `/metrics` counts requests, so its length may differ by a digit or two.
        if path == "/metrics" {
            assert!(
                h.iter().any(|l| l.starts_with("content-type: text/plain")),
                "{h:?}"
            );
        } else {
            assert_eq!(g, h, "{path}");
        }
    }
    // A route without GET refuses HEAD as any other method.
    let r = raw_exchange(srv.addr, "HEAD", RECOMMEND);
    assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
    assert!(
        r.to_ascii_lowercase().contains("\r\nallow: post\r\n"),
        "{r}"
    );
    assert!(r.ends_with("\r\n\r\n"), "HEAD sent a body: {r}");
}

#[test]
fn api_token_guards_every_api_route() {
    let t = rules_copy("srv-401");
    let token = "0123456789abcdef-test-token";
    let mut cfg = test_config(&t.path().join("rules"));
    cfg.server.api_token = Some(token.into());
    let srv = TestServer::start(cfg, None);
    let bearer = format!("Bearer {token}");
    let wrong = format!("Bearer {token}x");
    let basic = format!("Basic {token}");
    for auth in [
        None,
        Some(wrong.as_str()),
        Some(basic.as_str()),
        Some("Bearer "),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let r = request(srv.addr, "POST", RELOAD, &headers, None);
        assert_eq!(r.status, 401, "{auth:?}: {r:?}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{r:?}");
        assert_error_shape(&r);
    }
    let r = request(
        srv.addr,
        "POST",
        RELOAD,
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["result"], "unchanged");
    // Every `/api/…` route needs it, reads and recommend included: nothing is logged or shown
    // to anonymous callers.
    for (method, path, body) in [
        ("GET", STATUS, None),
        ("POST", "/api/v1/optimization/recommend", Some(INPUT)),
        ("POST", "/api/v1/rules/evaluate", Some(INPUT)),
        ("GET", "/api/v1/optimization/metrics", None),
        ("GET", "/api/v2/training/analytics", None),
    ] {
        let body = body.map(str::as_bytes);
        let r = request(
            srv.addr,
            method,
            path,
            &[("content-type", "application/json")],
            body,
        );
        assert_eq!(r.status, 401, "{path}: {r:?}");
        let r = request(
            srv.addr,
            method,
            path,
            &[
                ("Authorization", &bearer),
                ("content-type", "application/json"),
            ],
            body,
        );
        assert_ne!(r.status, 401, "{path}: {r:?}");
    }
    // Health, readiness, metrics and the API document stay open.
    for path in ["/health", "/metrics", "/openapi.json"] {
        assert_eq!(srv.get(path).status, 200, "{path}");
    }
    assert_ne!(srv.get("/ready").status, 401);
}

#[test]
fn reload_endpoint_swaps_valid_rules_and_refuses_invalid_ones() {
    // Fixtures on (the default): this edit keeps them passing.
    let (t, srv) = server("srv-reload");
    let file = t.path().join("rules/selection.yaml");
    let cheap = r#"{"trainset_size": 200, "budget_usd": 0.5}"#;
    let before = status(&srv)["revision"].as_str().unwrap().to_string();

    let r = srv.post_json(RELOAD, "");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["result"], "unchanged");

    edit(
        &file,
        "is the only optimizer that fits.",
        "fits, says the edited rule.",
    );
    let r = request(srv.addr, "POST", RELOAD, &[], None);
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(v["result"], "reloaded", "{v}");
    let after = v["status"]["revision"].as_str().unwrap().to_string();
    assert_ne!(after, before);
    assert_eq!(v["status"]["state"], "loaded");
    let d = srv.post_json(RECOMMEND, cheap).json();
    assert!(
        d["reasoning"]
            .as_str()
            .unwrap()
            .contains("says the edited rule"),
        "{d}"
    );
    assert_eq!(d["rules_revision"], after.as_str());

    // Invalid: refused with file:line:col, the previous revision keeps serving.
    edit(&file, THRESHOLD, BROKEN);
    let (line, col) = line_col(&file, "oops");
    let r = request(srv.addr, "POST", RELOAD, &[], None);
    assert_eq!(r.status, 422, "{r:?}");
    let v = assert_error_shape(&r);
    assert!(v["error"].as_str().unwrap().contains(&after), "{v}");
    let d = &v["details"][0];
    assert!(
        d["file"].as_str().unwrap().ends_with("selection.yaml"),
        "{v}"
    );
    assert_eq!(
        (d["line"].as_u64(), d["col"].as_u64()),
        (Some(line), Some(col)),
        "{v}"
    );
    let s = status(&srv);
    assert_eq!(s["state"], "degraded");
    assert_eq!(s["revision"], after.as_str());
    assert_eq!(s["reloads_failed"], 1);
    assert_eq!(s["last_error"]["diagnostics"][0]["line"], line);
    let d = srv.post_json(RECOMMEND, cheap).json();
    assert!(
        d["reasoning"]
            .as_str()
            .unwrap()
            .contains("says the edited rule"),
        "{d}"
    );
    let m = srv.get("/metrics").body;
    assert!(m.contains("skill_fleet_rules_degraded 1"), "{m}");
    assert!(
        m.contains("skill_fleet_rules_reloads_total{result=\"failed\"} 1"),
        "{m}"
    );

    // Fixed again: loaded, error cleared.
    edit(&file, BROKEN, THRESHOLD);
    let r = request(srv.addr, "POST", RELOAD, &[], None);
    assert_eq!(r.status, 200, "{r:?}");
    let s = status(&srv);
    assert_eq!(s["state"], "loaded");
    assert!(s["last_error"].is_null(), "{s}");
}

// ---- hot reload through the watcher ----------------------------------------------------------

/// A server on a copy of the shipped rules, watched with a short debounce and no poll (so
/// only file events can trigger a reload), once the watch is known to be in place.
fn watched(tag: &str, run_fixtures: bool) -> (TempDir, TestServer, PathBuf) {
    let t = rules_copy(tag);
    let dir = t.path().join("rules");
    let mut cfg = test_config(&dir);
    cfg.rules.watch = true;
    cfg.rules.debounce_ms = 50;
    cfg.rules.poll_interval_ms = 0;
    cfg.rules.run_fixtures_on_reload = run_fixtures;
    let srv = TestServer::start(cfg, None);
    // The watch is set up by a spawned task: touch a file until a (no-op) reload shows it.
    let readme = dir.join("README.md");
    let text = std::fs::read(&readme).expect("README");
    wait_for(DEADLINE, "the watcher to see a change", || {
        std::fs::write(&readme, &text).expect("touch");
        let end = Instant::now() + Duration::from_millis(500);
        while Instant::now() < end {
            let s = srv.live.status();
            if s.reloads_ok + s.reloads_failed > 0 {
                return Some(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    });
    assert_eq!(recommended(&srv, INPUT), "miprov2");
    (t, srv, dir)
}

fn wait_state(srv: &TestServer, state: &str) -> Value {
    wait_for(DEADLINE, &format!("rules state `{state}`"), || {
        let s = status(srv);
        (s["state"] == state).then_some(s)
    })
}

fn wait_recommended(srv: &TestServer, optimizer: &str) {
    wait_for(DEADLINE, &format!("a decision for {optimizer}"), || {
        (recommended(srv, INPUT) == optimizer).then_some(())
    });
}

#[test]
fn watcher_swaps_in_an_edited_threshold_after_a_burst_of_writes() {
    let (_t, srv, dir) = watched("srv-watch-edit", false);
    let file = dir.join("selection.yaml");
    let before = status(&srv)["revision"].clone();
    let original = std::fs::read_to_string(&file).unwrap();
    // A burst: intermediate versions, the last one wins.
    for lt in ["1.1", "1.2", "1.3", "1.4"] {
        std::fs::write(
            &file,
            original.replace(THRESHOLD, &RAISED.replace("5.0", lt)),
        )
        .unwrap();
    }
    std::fs::write(&file, original.replace(THRESHOLD, RAISED)).unwrap();
    wait_recommended(&srv, "reflection_metrics");
    let s = wait_state(&srv, "loaded");
    assert_ne!(s["revision"], before);
    assert!(s["last_error"].is_null(), "{s}");
    assert_eq!(
        recommended(&srv, r#"{"trainset_size": 200, "budget_usd": 4.99}"#),
        "reflection_metrics"
    );
    assert_eq!(
        recommended(&srv, r#"{"trainset_size": 200, "budget_usd": 5}"#),
        "miprov2"
    );
}

#[test]
fn watcher_keeps_the_old_rules_on_an_invalid_change() {
    let (_t, srv, dir) = watched("srv-watch-invalid", true);
    let file = dir.join("selection.yaml");
    let before = status(&srv)["revision"].clone();
    edit(&file, THRESHOLD, BROKEN);
    let (line, col) = line_col(&file, "oops");
    let s = wait_state(&srv, "degraded");
    assert_eq!(s["revision"], before);
    let diags = s["last_error"]["diagnostics"]
        .as_array()
        .expect("diagnostics");
    let d = &diags[0];
    assert!(
        d["file"].as_str().unwrap().ends_with("selection.yaml"),
        "{s}"
    );
    assert_eq!(
        (d["line"].as_u64(), d["col"].as_u64()),
        (Some(line), Some(col)),
        "{s}"
    );
    assert!(d["message"].as_str().unwrap().contains("oops"), "{s}");
    assert!(s["last_error"]["at"].as_str().is_some(), "{s}");
    // Still serving the previous revision.
    let r = srv.post_json(RECOMMEND, INPUT);
    assert_eq!(r.json()["rules_revision"], before);
    assert_eq!(r.json()["recommended"], "miprov2");
    let m = srv.get("/metrics").body;
    assert!(m.contains("skill_fleet_rules_degraded 1"), "{m}");
    // Restoring the file brings the state back.
    edit(&file, BROKEN, THRESHOLD);
    let s = wait_state(&srv, "loaded");
    assert_eq!(s["revision"], before);
    assert!(s["last_error"].is_null(), "{s}");
}

#[test]
fn watcher_refuses_a_change_whose_fixtures_fail() {
    let (_t, srv, dir) = watched("srv-watch-fixtures", true);
    let before = status(&srv)["revision"].clone();
    edit(&dir.join("selection.yaml"), THRESHOLD, RAISED);
    let s = wait_state(&srv, "degraded");
    assert_eq!(s["revision"], before);
    let diags = s["last_error"]["diagnostics"]
        .as_array()
        .expect("diagnostics");
    let d = diags
        .iter()
        .find(|d| {
            d["message"]
                .as_str()
                .unwrap()
                .contains("budget_of_one_dollar_is_not_tiny")
        })
        .unwrap_or_else(|| panic!("no diagnostic for the failing fixture: {s}"));
    assert!(d["message"].as_str().unwrap().contains("fixture"), "{d}");
    assert!(
        d["file"].as_str().unwrap().ends_with("selection.yaml"),
        "{d}"
    );
    assert!(d["line"].as_u64().is_some_and(|l| l > 0), "{d}");
    assert_eq!(recommended(&srv, INPUT), "miprov2");
    assert_eq!(s["fixtures"]["failed"], 0, "{s}");
}

#[test]
fn watcher_follows_a_save_by_rename() {
    let (_t, srv, dir) = watched("srv-watch-rename", false);
    let file = dir.join("selection.yaml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(THRESHOLD, RAISED);
    // Like an editor: write a hidden temp file beside it, then rename over the original.
    let tmp = dir.join(".selection.yaml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    wait_recommended(&srv, "reflection_metrics");
    wait_state(&srv, "loaded");
    // And again, to check the watch survived the rename.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(RAISED, THRESHOLD);
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    wait_recommended(&srv, "miprov2");
}

#[test]
fn watcher_follows_a_delete_and_re_create() {
    let (_t, srv, dir) = watched("srv-watch-recreate", false);
    let file = dir.join("selection.yaml");
    let before = status(&srv)["revision"].clone();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    // Without selection rules the set is invalid: the old one keeps serving meanwhile.
    let s = wait_state(&srv, "degraded");
    assert_eq!(s["revision"], before);
    assert!(s["last_error"].to_string().contains("selection"), "{s}");
    assert_eq!(recommended(&srv, INPUT), "miprov2");
    std::fs::write(&file, text.replace(THRESHOLD, RAISED)).unwrap();
    wait_recommended(&srv, "reflection_metrics");
    let s = wait_state(&srv, "loaded");
    assert!(s["last_error"].is_null(), "{s}");
}

// ---- connection handling ---------------------------------------------------------------------

/// Reads until the server closes the connection; panics when it sends anything or keeps it
/// open past the client's read timeout.
fn expect_closed(s: &mut std::net::TcpStream) {
    let mut buf = [0u8; 512];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "expected a close, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close the connection: {e}"),
    }
}

#[test]
fn header_read_timeout_closes_slow_clients() {
    let t = rules_copy("srv-slow");
    let mut cfg = test_config(&t.path().join("rules"));
    cfg.server.header_read_timeout_ms = 300;
    let timeout = Duration::from_millis(300);
    let srv = TestServer::start(cfg, None);

    // Half a request line, then nothing.
    let mut s = connect(srv.addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    s.write_all(b"GET /health HT").unwrap();
    expect_closed(&mut s);
    let took = start.elapsed();
    assert!(
        took >= timeout - Duration::from_millis(20),
        "closed after {took:?}"
    );
    assert!(
        took < timeout + Duration::from_secs(8),
        "closed after {took:?}"
    );

    // Connected, sending nothing at all.
    let mut s = connect(srv.addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    expect_closed(&mut s);
    assert!(start.elapsed() < timeout + Duration::from_secs(8));

    // Headers trickled in slower than the timeout allows.
    let mut s = connect(srv.addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let _ = s.write_all(b"Host: test\r\n");
    std::thread::sleep(Duration::from_millis(250));
    let _ = s.write_all(b"X-Slow: yes\r\n");
    expect_closed(&mut s);

    // Answered, then silent: an idle keep-alive connection is closed the same way.
    let mut s = connect(srv.addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    let start = Instant::now();
    expect_closed(&mut s);
    let took = start.elapsed();
    assert!(
        took >= timeout - Duration::from_millis(20),
        "closed after {took:?}"
    );

    // A prompt client is served.
    assert_eq!(srv.get("/health").status, 200);
}

#[test]
fn a_stalled_body_gets_408_within_the_body_timeout() {
    let t = rules_copy("srv-slow-body");
    let mut cfg = test_config(&t.path().join("rules"));
    cfg.server.body_read_timeout_ms = 300;
    let srv = TestServer::start(cfg, None);
    let mut s = connect(srv.addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    // Headers promise 40 bytes; only part of the body ever comes.
    s.write_all(
        b"POST /api/v1/optimization/recommend HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"trainset_size\": ",
    )
    .unwrap();
    let r = read_response(&mut s);
    let took = start.elapsed();
    assert_eq!(r.status, 408, "{r:?}");
    assert!(
        took >= Duration::from_millis(280),
        "answered after {took:?}"
    );
    assert!(took < Duration::from_secs(8), "answered after {took:?}");
    let v = assert_error_shape(&r);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("not received within 300 ms"),
        "{v}"
    );
    // A prompt client is served.
    assert_eq!(srv.get("/health").status, 200);
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests_and_refuses_new_ones() {
    let t = rules_copy("srv-shutdown");
    let mut cfg = test_config(&t.path().join("rules"));
    cfg.server.shutdown_grace_ms = 60_000;
    // Long enough that only the shutdown can close the idle connection below.
    cfg.server.header_read_timeout_ms = 120_000;
    let mut srv = TestServer::start(cfg, None);
    let addr = srv.addr;

    // A slow upload: `Expect: 100-continue` tells us when the handler is reading the body.
    let mut s = connect(addr);
    let head = request_head(
        "POST",
        RECOMMEND,
        &[
            ("Content-Type", "application/json"),
            ("Expect", "100-continue"),
        ],
        Some(INPUT.len()),
    );
    s.write_all(head.as_bytes()).unwrap();
    let cont = read_response(&mut s);
    assert_eq!(cont.status, 100, "{cont:?}");
    s.write_all(&INPUT.as_bytes()[..10]).unwrap();

    // An idle keep-alive connection, to be closed by the shutdown.
    let mut idle = connect(addr);
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle).status, 200);

    srv.trigger_shutdown();
    // New connections are refused once the listener is closed.
    wait_for(
        DEADLINE,
        "the listener to close",
        || match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        },
    );
    expect_closed(&mut idle);
    // The in-flight request holds the server open…
    assert!(srv.wait_stopped(Duration::from_millis(300)).is_none());
    // …and completes.
    s.write_all(&INPUT.as_bytes()[10..]).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["recommended"], "miprov2");
    assert!(r.header("x-request-id").is_some());
    let done = srv
        .wait_stopped(DEADLINE)
        .expect("serve returns after the last request");
    done.expect("serve ends without error");
}

// ---- the binary ------------------------------------------------------------------------------

/// Runs `serve` that is expected to stop on its own.
fn serve_fails(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    ServeProc::spawn(cwd, args, env).wait(DEADLINE)
}

#[test]
fn serve_reports_config_errors_with_key_and_source() {
    let t = TempDir::new("srv-bin-config");
    let rules = shipped_rules().display().to_string();
    let base = ["--rules", rules.as_str(), "--skip-db-init"];

    let (code, err) = serve_fails(
        t.path(),
        &[&base[..], &["--addr", "localhost-ish"]].concat(),
        &[],
    );
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("`server.addr`"), "{err}");
    assert!(err.contains("the flag --addr"), "{err}");

    let (code, err) = serve_fails(
        t.path(),
        &[&base[..], &["--addr", "0.0.0.0:0"]].concat(),
        &[],
    );
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("`server.addr`"), "{err}");
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(err.contains("the flag --addr"), "{err}");
    assert!(err.contains("API_TOKEN"), "{err}");

    let (code, err) = serve_fails(t.path(), &base, &[("SKILL_FLEET_ADDR", "0.0.0.0:0")]);
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("the environment variable SKILL_FLEET_ADDR"),
        "{err}"
    );

    let cfg = t.path().join("bad.yaml");
    std::fs::write(&cfg, "server:\n  body_limit_bytes: lots\n").unwrap();
    let (code, err) = serve_fails(
        t.path(),
        &[&base[..], &["--config", "bad.yaml"]].concat(),
        &[],
    );
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("`server.body_limit_bytes`"), "{err}");
    assert!(err.contains("bad.yaml:2:21"), "{err}");

    let (code, err) = serve_fails(
        t.path(),
        &base,
        &[("SKILL_FLEET_SERVER_HEADER_READ_TIMEOUT_MS", "0")],
    );
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("`server.header_read_timeout_ms`"), "{err}");
    assert!(
        err.contains("the environment variable SKILL_FLEET_SERVER_HEADER_READ_TIMEOUT_MS"),
        "{err}"
    );
}

#[test]
fn serve_refuses_invalid_rules_with_file_line_col() {
    let t = rules_copy("srv-bin-rules");
    let file = t.path().join("rules/selection.yaml");
    edit(&file, THRESHOLD, BROKEN);
    let (line, col) = line_col(&file, "oops");
    let db = t.path().join("x.db");
    let (code, err) = serve_fails(
        t.path(),
        &[
            "--rules",
            "rules",
            "--db",
            db.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!("rules/selection.yaml:{line}:{col}")),
        "{err}"
    );
    assert!(err.contains("cannot start"), "{err}");
    assert!(
        !db.exists(),
        "the database is not created for an invalid rule set"
    );
}

#[test]
fn serve_skip_db_init_needs_an_existing_database() {
    let t = TempDir::new("srv-bin-db");
    let rules = shipped_rules().display().to_string();
    let (code, err) = serve_fails(
        t.path(),
        &[
            "--rules",
            &rules,
            "--db",
            "missing.db",
            "--skip-db-init",
            "--addr",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("missing.db"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(!t.path().join("missing.db").exists());
}

#[test]
fn serve_binary_answers_and_stops_cleanly_on_sigterm() {
    let t = TempDir::new("srv-bin-sigterm");
    let rules = shipped_rules().display().to_string();
    let (mut proc, addr) =
        ServeProc::on_free_port(t.path(), &["--rules", rules.as_str(), "--db", "sf.db"], &[]);
    let health = request(addr, "GET", "/health", &[], None);
    assert_eq!(health.status, 200, "{health:?}");
    let ready = request(addr, "GET", "/ready", &[], None);
    assert_eq!(ready.status, 200, "{ready:?}");
    assert!(t.path().join("sf.db").exists());
    let r = request(
        addr,
        "POST",
        RECOMMEND,
        &[("Content-Type", "application/json")],
        Some(INPUT.as_bytes()),
    );
    assert_eq!(r.json()["recommended"], "miprov2", "{r:?}");
    // Initialising a fresh database includes the shipped training examples.
    let analytics = request(addr, "GET", "/api/v2/training/analytics", &[], None);
    assert_eq!(analytics.json()["total_examples"], 50, "{analytics:?}");
    proc.assert_running();

    let kill = Command::new("kill")
        .args(["-TERM", &proc.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let (code, log) = proc.wait(DEADLINE);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains(&format!("listening on http://{addr}")),
        "{log}"
    );
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(log.contains("database closed"), "{log}");
}

#[test]
fn the_openapi_document_is_served_and_equals_the_committed_one() {
    let (_t, srv) = server("srv-openapi");
    let r = srv.get("/openapi.json");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let committed = std::fs::read_to_string(root().join("schemas/openapi.json")).unwrap();
    assert_eq!(r.body, committed);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/jobs/{id}/complete"]["post"].is_object());
    // Wrong method: 405 naming what is allowed, like every route.
    let r = srv.post_json("/openapi.json", "{}");
    assert_eq!(r.status, 405, "{r:?}");
}
