//! Hardening, against the real `serve` binary: each probe of the hardening issue (a body of
//! thousands of unknown keys, a slow Rhai script, a FIFO, a device and a symlink out of the
//! rules directory, duplicate keys and oversized job fields, a deleted database file, a second
//! server on one file, a client that sends a too-large body before it reads).

use super::support::{request, rules_copy, wait_for, Resp, ServeProc, TempDir, DEADLINE};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;

const JSON: (&str, &str) = ("content-type", "application/json");

fn post(addr: SocketAddr, path: &str, body: &str) -> Resp {
    request(addr, "POST", path, &[JSON], Some(body.as_bytes()))
}

fn serve(dir: &Path) -> (ServeProc, SocketAddr) {
    ServeProc::on_free_port(dir, &["--rules", "rules", "--db", "sf.db"], &[])
}

fn status(addr: SocketAddr) -> Value {
    request(addr, "GET", "/api/v1/rules/status", &[], None).json()
}

fn wait_state(addr: SocketAddr, state: &str) -> Value {
    wait_for(DEADLINE, &format!("rules state `{state}`"), || {
        let s = status(addr);
        (s["state"] == state).then_some(s)
    })
}

fn stop(mut proc: ServeProc) -> String {
    proc.terminate();
    let (code, log) = proc.wait(DEADLINE);
    assert_eq!(code, 0, "{log}");
    log
}

#[test]
fn a_body_of_95000_unknown_keys_gets_a_short_answer() {
    let t = rules_copy("hard-keys");
    let (proc, addr) = serve(t.path());
    let mut body = String::from("{");
    let mut n = 0;
    while body.len() < 1_000_000 {
        body.push_str(&format!("\"k{n}\":1,"));
        n += 1;
    }
    body.push_str("\"trainset_size\":5}");
    assert!(n > 90_000, "{n}");
    for path in ["/api/v1/optimization/recommend", "/api/v1/rules/evaluate"] {
        let r = post(addr, path, &body);
        assert_eq!(r.status, 422, "{}", &r.body[..r.body.len().min(500)]);
        assert!(r.body.len() < 10_000, "answer of {} bytes", r.body.len());
        let v = r.json();
        let details = v["details"].as_array().unwrap();
        assert_eq!(details.len(), 21);
        assert_eq!(
            details[20]["message"],
            format!("{} more problems not listed (at most 20 are)", n - 20)
        );
    }
    // The server is fine afterwards.
    let ok = post(addr, "/api/v1/rules/evaluate", r#"{"trainset_size": 5}"#);
    assert_eq!(ok.status, 200, "{ok:?}");
    stop(proc);
}

#[test]
fn a_slow_rhai_script_is_stopped_at_its_time_limit_and_the_server_answers() {
    let t = rules_copy("hard-slow");
    let rules = t.path().join("rules");
    // Inside the operation budget, but each step scans 9,999 items: seconds without a deadline.
    std::fs::write(
        rules.join("slow.rhai"),
        "fn slow(n) {\n    if n <= 50000 { return false; }\n    let a = [];\n    a.pad(9999, 0);\n    let hits = 0;\n    for i in 0..30000 { if a.contains(1) { hits += 1; } }\n    hits > 0\n}\n",
    )
    .unwrap();
    let sel = rules.join("selection.yaml");
    let text = std::fs::read_to_string(&sel).unwrap();
    let slow_rule = "  rules:\n    - id: huge_and_slow\n      when: {expr: \"slow(trainset_size)\"}\n      then:\n        optimizer: bootstrap_fewshot\n      reasoning: \"slow\"\n";
    std::fs::write(&sel, text.replacen("  rules:\n", slow_rule, 1)).unwrap();

    // Its fixtures pass (they never reach the slow branch), so it serves.
    let (proc, addr) = serve(t.path());
    let threads: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                post(
                    addr,
                    "/api/v1/optimization/recommend",
                    r#"{"trainset_size": 60000, "budget_usd": 50}"#,
                )
            })
        })
        .collect();
    assert_eq!(request(addr, "GET", "/health", &[], None).status, 200);
    for th in threads {
        let r = th.join().unwrap();
        assert_eq!(r.status, 500, "{r:?}");
        let v = r.json();
        assert_eq!(v["error"], "rule evaluation failed");
        let d = &v["details"][0];
        assert!(
            d["message"]
                .as_str()
                .unwrap()
                .starts_with("script stopped after 50 ms, its time limit"),
            "{d}"
        );
        assert!(
            d["file"].as_str().unwrap().ends_with("selection.yaml"),
            "{d}"
        );
        assert!(v["request_id"].is_string());
    }
    // Small inputs never run the slow part.
    let ok = post(
        addr,
        "/api/v1/optimization/recommend",
        r#"{"trainset_size": 200}"#,
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    stop(proc);

    // `rules check` gives its analysis a time budget and says what it covered.
    let r = super::support::run_in(
        t.path(),
        &["rules", "check", "--analysis-timeout", "1"],
        None,
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("rule analysis stopped at its time budget"),
        "{}",
        r.stderr
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_in_the_rules_directory_fails_the_reload_and_never_stalls_the_server() {
    let t = rules_copy("hard-fifo");
    let (proc, addr) = serve(t.path());
    let before = wait_state(addr, "loaded")["revision"].clone();
    let fifo = t.path().join("rules/fifo.yaml");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let st = wait_state(addr, "degraded");
    let err = st["last_error"].to_string();
    assert!(
        err.contains("fifo.yaml` is not a regular file (a FIFO)"),
        "{st}"
    );
    assert_eq!(st["revision"], before, "the old rules keep serving");
    // A forced reload answers at once, with the same diagnostic.
    let r = request(addr, "POST", "/api/v1/rules/reload", &[], None);
    assert_eq!(r.status, 422, "{r:?}");
    assert!(r.body.contains("a FIFO"), "{r:?}");
    // Later edits are seen: remove the FIFO and change a description.
    std::fs::remove_file(&fifo).unwrap();
    let sel = t.path().join("rules/selection.yaml");
    let text = std::fs::read_to_string(&sel).unwrap();
    let edited = text.replacen("room for reflection only", "room for reflection", 1);
    assert_ne!(edited, text);
    std::fs::write(&sel, edited).unwrap();
    let st = wait_for(DEADLINE, "a new revision", || {
        let s = status(addr);
        (s["state"] == "loaded" && s["revision"] != before).then_some(s)
    });
    assert_eq!(st["last_error"], Value::Null);
    // And SIGTERM stops it.
    stop(proc);
}

#[cfg(unix)]
#[test]
fn symlinks_out_of_the_rules_directory_are_refused_unread() {
    let t = rules_copy("hard-links");
    let (proc, addr) = serve(t.path());
    let before = wait_state(addr, "loaded")["revision"].clone();
    for (name, target) in [("zero.yaml", "/dev/zero"), ("passwd.yaml", "/etc/passwd")] {
        let link = t.path().join("rules").join(name);
        std::os::unix::fs::symlink(target, &link).unwrap();
        let st = wait_state(addr, "degraded");
        let text = st.to_string();
        assert!(text.contains("outside the rules directory"), "{st}");
        assert!(!text.contains("root:"), "{st}");
        assert_eq!(st["revision"], before);
        std::fs::remove_file(&link).unwrap();
        wait_state(addr, "loaded");
    }
    let log = stop(proc);
    assert!(!log.contains("root:x"), "{log}");
}

#[test]
fn jobs_refuse_duplicate_keys_and_oversized_fields_by_name() {
    let t = TempDir::new("hard-jobs");
    std::fs::create_dir(t.path().join("rules")).unwrap();
    super::support::copy_dir(&super::support::shipped_rules(), &t.path().join("rules"));
    let (proc, addr) = serve(t.path());
    let r = post(
        addr,
        "/api/v1/jobs",
        r#"{"job_type": "t", "task": "a", "task": "b"}"#,
    );
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.json()["details"][0]["field"], "task");
    let r = post(
        addr,
        "/api/v1/jobs",
        r#"{"job_type": "t", "payload": {"a": {"b": 1, "b": 2}}}"#,
    );
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.json()["details"][0]["field"], "payload.a.b");
    for (field, len) in [("task", 10_001), ("user_id", 201), ("idempotency_key", 201)] {
        let body = json!({"job_type": "t", field: "x".repeat(len)}).to_string();
        let r = post(addr, "/api/v1/jobs", &body);
        assert_eq!(r.status, 422, "{field}: {r:?}");
        assert_eq!(r.json()["details"][0]["field"], field, "{r:?}");
    }
    let claim = post(
        addr,
        "/api/v1/jobs/claim",
        &json!({"worker": "w".repeat(201)}).to_string(),
    );
    assert_eq!(claim.status, 422, "{claim:?}");
    assert_eq!(claim.json()["details"][0]["field"], "worker");
    // Nothing was created by the refused requests.
    let list = request(addr, "GET", "/api/v1/jobs", &[], None).json();
    assert_eq!(list["jobs"], json!([]));
    stop(proc);
}

#[test]
fn a_deleted_database_file_is_noticed_and_nothing_more_is_acknowledged() {
    let t = rules_copy("hard-deleted");
    let (proc, addr) = serve(t.path());
    let created = post(addr, "/api/v1/jobs", r#"{"job_type": "t"}"#);
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(request(addr, "GET", "/ready", &[], None).status, 200);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(t.path().join(format!("sf.db{suffix}")));
    }
    let ready = wait_for(DEADLINE, "/ready to say 503", || {
        let r = request(addr, "GET", "/ready", &[], None);
        (r.status == 503).then_some(r)
    });
    assert!(ready.body.contains("deleted or replaced"), "{ready:?}");
    let r = post(addr, "/api/v1/jobs", r#"{"job_type": "t"}"#);
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("was deleted or replaced"));
    let log = stop(proc);
    assert!(
        log.contains("was deleted or replaced while in use"),
        "{log}"
    );
}

#[test]
fn one_sqlite_file_has_one_writer_and_readers_work_beside_it() {
    let t = rules_copy("hard-two");
    let (proc, addr) = serve(t.path());
    let created = post(
        addr,
        "/api/v1/jobs",
        r#"{"job_type": "t", "task": "first"}"#,
    );
    assert_eq!(created.status, 201, "{created:?}");
    // A second server on the same file stops at start-up, naming the first.
    let (code, log) = ServeProc::spawn(
        t.path(),
        &["--rules", "rules", "--db", "sf.db", "--addr", "127.0.0.1:0"],
        &[],
    )
    .wait(DEADLINE);
    assert_eq!(code, 5, "{log}");
    let first = proc.child.id().to_string();
    assert!(log.contains("is in use by pid"), "{log}");
    assert!(log.contains(&first), "{log}");
    assert!(log.contains("skill-fleet serve on http://"), "{log}");
    assert!(log.contains("one SQLite database, one server"), "{log}");
    // Other writers are refused too; readers work.
    let w = super::support::run_in(t.path(), &["db", "init", "--db", "sf.db"], None);
    assert_eq!(w.code, 5, "{w:?}");
    assert!(w.stderr.contains("is in use by pid"), "{w:?}");
    for args in [
        &["db", "status", "--db", "sf.db"][..],
        &["jobs", "list", "--db", "sf.db"],
        &["training", "analytics", "--db", "sf.db"],
        &["metrics", "--db", "sf.db"],
    ] {
        let r = super::support::run_in(t.path(), args, None);
        assert_eq!(r.code, 0, "{args:?}: {r:?}");
    }
    let list = super::support::run_in(
        t.path(),
        &["jobs", "list", "--db", "sf.db", "--format", "json"],
        None,
    );
    assert!(list.stdout.contains("\"first\""), "{list:?}");
    // Changes go through the server with --url, which the refusal names.
    std::fs::write(t.path().join("train.jsonl"), "{\"q\": 1}\n{\"q\": 2}\n").unwrap();
    let optimize = [
        "optimize",
        "--auto-select",
        "--trainset",
        "train.jsonl",
        "--yes",
    ];
    let refused = super::support::run_in(
        t.path(),
        &[&optimize[..], &["--db", "sf.db"]].concat(),
        None,
    );
    assert_eq!(refused.code, 5, "{refused:?}");
    let url = format!("http://{addr}");
    let hint = format!("pass `--url {url}`");
    assert!(refused.stderr.contains(&hint), "{}", refused.stderr);
    let made = super::support::run_in(
        t.path(),
        &[&optimize[..], &["--url", &url, "--format", "json"]].concat(),
        None,
    );
    assert_eq!(made.code, 0, "{made:?}");
    let job: Value = serde_json::from_str(&made.stdout).unwrap();
    assert!(job["payload"]["decision_id"].is_i64(), "{job}");
    let id = job["id"].as_str().unwrap();
    let cancel = super::support::run_in(t.path(), &["jobs", "cancel", id, "--url", &url], None);
    assert_eq!(cancel.code, 0, "{cancel:?}");
    let got = request(addr, "GET", &format!("/api/v1/jobs/{id}"), &[], None).json();
    assert_eq!(got["status"], "cancelled");
    stop(proc);
    // Once it stopped, the file is free again.
    let w = super::support::run_in(t.path(), &["db", "init", "--db", "sf.db"], None);
    assert_eq!(w.code, 0, "{w:?}");
}

/// Sends the whole request (head and body) before reading anything, as Python's `urllib` does.
fn send_all_then_read(addr: SocketAddr, head: &str, body: &[u8]) -> Resp {
    use std::io::Write;
    let mut s = super::support::connect(addr);
    s.write_all(head.as_bytes()).expect("write head");
    s.write_all(body)
        .expect("the server kept reading the body (no reset while sending)");
    super::support::read_response(&mut s)
}

#[test]
fn a_client_that_sends_a_body_over_the_limit_before_reading_gets_the_413() {
    let t = rules_copy("hard-linger");
    let (proc, addr) = serve(t.path());
    let body = vec![b' '; 2 * 1024 * 1024];
    for path in ["/api/v1/optimization/recommend", "/api/v1/jobs"] {
        // Declared length over the limit.
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        for _ in 0..3 {
            let r = send_all_then_read(addr, &head, &body);
            assert_eq!(r.status, 413, "{path}: {r:?}");
            assert_eq!(r.header("connection"), Some("close"), "{r:?}");
            assert!(r.json()["error"]
                .as_str()
                .unwrap()
                .contains("larger than the limit"));
        }
        // Chunked: the limit is found while reading.
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let mut chunked = Vec::new();
        for piece in body.chunks(256 * 1024) {
            chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let r = send_all_then_read(addr, &head, &chunked);
        assert_eq!(r.status, 413, "{path} chunked: {r:?}");
    }
    stop(proc);
}
