//! The Python worker of `examples/worker.py` against a real server: claim, ask a human, resume
//! after the answer, heartbeat, complete.

use super::support::{root, shipped_rules, test_config, TempDir, TestServer};
use std::process::Command;

/// The Python interpreter: a machine without one fails this test (never a skip).
fn python() -> &'static str {
    ["python3", "python"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("python3 must be installed for the worker tests")
}

/// Runs the worker once; it must exit 0. Returns what it printed.
fn worker(py: &str, url: &str) -> String {
    let out = Command::new(py)
        .current_dir(root())
        .args([
            "examples/worker.py",
            "--url",
            url,
            "--once",
            "--max-jobs",
            "1",
            "--steps",
            "2",
            "--step-seconds",
            "0.05",
        ])
        .output()
        .expect("run the worker");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn python_worker_runs_the_whole_loop() {
    let py = python();
    let dir = TempDir::new("worker");
    let db = dir.path().join("w.db");
    let server = TestServer::start(test_config(&shipped_rules()), Some(&db));
    let url = format!("http://{}", server.addr);
    let created = server.post_json(
        "/api/v1/jobs",
        r#"{"job_type": "optimization", "task": "tune", "payload": {"optimizer": "gepa", "config": {"num_candidates": 5}, "trainset_size": 50, "decision": {"estimated_cost": 0.25, "estimated_time_minutes": 2}}}"#,
    );
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.json()["id"].as_str().expect("id").to_string();

    // First pass: the worker claims the job and parks it with a question.
    let stdout = worker(py, &url);
    assert!(stdout.contains("waiting for a human"), "{stdout}");
    let job = server.get(&format!("/api/v1/jobs/{id}")).json();
    assert_eq!(job["status"], "pending_hitl");
    assert_eq!(job["hitl"]["type"], "approve_config");
    let hitl = server.get(&format!("/api/v1/jobs/{id}/hitl")).json();
    assert_eq!(hitl["data"]["optimizer"], "gepa");

    // A human answers; the job is claimable again and the worker sees the answer.
    let answered = server.post_json(
        &format!("/api/v1/jobs/{id}/hitl/response"),
        r#"{"response": {"approved": true}}"#,
    );
    assert_eq!(answered.status, 200, "{:?}", answered.body);
    let stdout = worker(py, &url);
    assert!(stdout.contains("completed with"), "{stdout}");
    let job = server.get(&format!("/api/v1/jobs/{id}")).json();
    assert_eq!(job["status"], "completed");
    assert_eq!(job["result"]["optimizer_used"], "gepa");
    assert_eq!(job["result"]["actual_cost"], 0.25);
    assert_eq!(job["progress"]["percent"], 100.0);

    // Nothing left: the worker says so and exits 0.
    assert!(worker(py, &url).contains("nothing to claim"));
}
