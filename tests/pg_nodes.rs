//! The binary on PostgreSQL: every database command with a `postgres://` URL (the password
//! never shown), a start against an unreachable database, a node that keeps serving what needs
//! no database while PostgreSQL is away and recovers by itself, and an outcome recorded on one
//! node reaching another node's live confidence.

use super::pg_cluster::Cluster;
use super::support::{bin, free_port, request, root, run_in, wait_for, ServeProc, TempDir};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SECRET: &str = "hunter2secret";

fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let b = body.to_string();
    let r = request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        Some(b.as_bytes()),
    );
    (r.status, r.json())
}

fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let r = request(addr, "GET", path, &[], None);
    (r.status, r.json())
}

/// A node on `url` with the shipped rules, on a free port.
fn node(dir: &TempDir, url: &str) -> (ServeProc, SocketAddr) {
    let rules = root().join("rules").display().to_string();
    ServeProc::on_free_port(
        dir.path(),
        &["--db", url, "--rules", &rules, "--no-watch"],
        &[("SKILL_FLEET_JOBS_SWEEP_INTERVAL_MS", "200")],
    )
}

#[test]
fn every_database_command_takes_a_postgres_url_and_never_shows_its_password() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.database_url("cli");
    let dir = TempDir::new("pg-cli");
    let cwd = root();
    let sf = |args: &[&str]| {
        let r = run_in(&cwd, args, None);
        assert!(
            !r.stdout.contains(SECRET) && !r.stderr.contains(SECRET),
            "{args:?} showed the password:\n{}{}",
            r.stdout,
            r.stderr
        );
        r
    };
    // Before `db init`: a clear error with the command to run.
    let r = sf(&["db", "status", "--db", &url]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("no skill-fleet tables"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("skill-fleet db init --db postgres://postgres:***@"),
        "{}",
        r.stderr
    );

    let r = sf(&["db", "init", "--db", &url]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("created database `postgres://postgres:***@127.0.0.1"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("imported 50 shipped training example(s)"),
        "{}",
        r.stdout
    );
    let r = sf(&["db", "init", "--db", &url]);
    assert!(r.stdout.contains("checked database"), "{}", r.stdout);

    let r = sf(&["db", "status", "--db", &url, "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(st["backend"], "postgres");
    assert_eq!(st["schema_version"], st["latest_version"]);
    assert!(
        st["postgres_version"]
            .as_str()
            .expect("version")
            .starts_with("15"),
        "{st}"
    );
    assert!(st.get("wal_bytes").is_none(), "{st}");
    let r = sf(&["db", "status", "--db", &url]);
    assert!(r.stdout.contains("postgresql      15"), "{}", r.stdout);

    let r = sf(&["db", "migrate", "--db", &url]);
    assert!(r.stdout.contains("is up to date"), "{}", r.stdout);

    // The job commands, through SKILL_FLEET_DB as well as --db.
    let trainset = root().join("examples/trainset.jsonl").display().to_string();
    let r = sf(&[
        "optimize",
        "--db",
        &url,
        "--trainset",
        &trainset,
        "--budget",
        "5",
        "--auto-select",
        "--yes",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = sf(&["jobs", "list", "--db", &url, "--format", "json"]);
    let jobs: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1), "{jobs}");
    let id = jobs["jobs"][0]["id"].as_str().expect("id").to_string();
    let r = sf(&["jobs", "cancel", &id, "--db", &url]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = sf(&["jobs", "show", &id, "--db", &url, "--format", "json"]);
    assert!(r.stdout.contains("\"cancelled\""), "{}", r.stdout);

    let export = dir.path().join("examples.jsonl").display().to_string();
    let r = sf(&["training", "export", &export, "--db", &url]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let exported: Value =
        serde_json::from_str(&std::fs::read_to_string(&export).expect("export")).expect("json");
    assert_eq!(exported.as_array().map(Vec::len), Some(50));
    let r = sf(&["training", "analytics", "--db", &url]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = sf(&["metrics", "--db", &url]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("postgres://postgres:***@"),
        "{}",
        r.stdout
    );

    // The rules commands that read the decision log and the outcomes.
    let rules = root().join("rules").display().to_string();
    let r = sf(&[
        "rules",
        "diff",
        "--against",
        &rules,
        "--db",
        &url,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let diff: Value = serde_json::from_str(&r.stdout).expect("json");
    assert!(!r.stdout.contains("only the fixtures"), "{}", r.stdout);
    assert!(diff.is_object(), "{diff}");
    let r = sf(&["rules", "calibrate", "--db", &url]);
    assert!(r.code == 0 || r.code == 1, "{}{}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("cannot"), "{}", r.stderr);

    let r = sf(&["db", "reset", "--yes", "--db", &url]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = sf(&["jobs", "list", "--db", &url, "--format", "json"]);
    let jobs: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{jobs}");
}

#[test]
fn an_unreachable_database_stops_the_start_with_a_clear_error() {
    let dir = TempDir::new("pg-down");
    let url = format!("postgres://fleet:{SECRET}@127.0.0.1:{}/fleet", free_port());
    let start = Instant::now();
    let rules = root().join("rules").display().to_string();
    let mut p = ServeProc::spawn(
        dir.path(),
        &["--db", &url, "--rules", &rules, "--addr", "127.0.0.1:0"],
        &[],
    );
    let (code, log) = p.wait(Duration::from_secs(30));
    assert_eq!(code, 5, "{log}");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert!(log.contains("cannot open the database"), "{log}");
    assert!(log.contains("postgres://fleet:***@127.0.0.1"), "{log}");
    assert!(
        log.contains("connection refused") || log.contains("Connection refused"),
        "{log}"
    );
    assert!(!log.contains(SECRET), "{log}");
}

#[test]
fn a_node_answers_503_while_the_database_is_away_and_recovers_by_itself() {
    let Some(cluster) = Cluster::start("pg-away") else {
        return;
    };
    let url = cluster.database_url("away");
    let dir = TempDir::new("pg-away-node");
    let (mut node, addr) = node(&dir, &url);
    let create = |key: &str| {
        post(
            addr,
            "/api/v1/jobs",
            &json!({"job_type": "optimization", "task": "qa", "idempotency_key": key}),
        )
    };
    let (status, first) = create("before");
    assert_eq!(status, 201, "{first}");
    assert_eq!(get(addr, "/ready").0, 200);

    cluster.stop();
    let (status, ready) = get(addr, "/ready");
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["details"][0]["component"], "database", "{ready}");
    assert!(!ready.to_string().contains(SECRET), "{ready}");
    let (status, e) = create("during");
    assert_eq!(status, 503, "{e}");
    assert!(
        e["error"]
            .as_str()
            .expect("error")
            .contains("idempotency key"),
        "{e}"
    );
    assert!(e["request_id"].is_string(), "{e}");
    let (status, _) = get(
        addr,
        &format!("/api/v1/jobs/{}", first["id"].as_str().expect("id")),
    );
    assert_eq!(status, 503);
    // What needs no database goes on: a recommendation from the rules.
    let (status, d) = post(
        addr,
        "/api/v1/optimization/recommend",
        &json!({"trainset_size": 200, "budget_usd": 10}),
    );
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["recommended"], "miprov2");

    cluster.start_again();
    wait_for(
        Duration::from_secs(30),
        "/ready to answer 200 again",
        || (get(addr, "/ready").0 == 200).then_some(()),
    );
    // The create refused while the database was away is sent again with its key: one job.
    let (status, again) = create("during");
    assert_eq!(status, 201, "{again}");
    let (status, same) = create("during");
    assert_eq!(status, 200, "{same}");
    assert_eq!(same["id"], again["id"]);
    // What was acknowledged before is still there.
    let (status, j) = get(
        addr,
        &format!("/api/v1/jobs/{}", first["id"].as_str().expect("id")),
    );
    assert_eq!(status, 200, "{j}");
    node.assert_running();
    let log = node.log();
    assert!(!log.contains(SECRET), "{log}");
}

#[test]
fn an_outcome_recorded_on_one_node_moves_the_confidence_on_another() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.database_url("follow");
    let dir = TempDir::new("pg-follow");
    let (_a, a) = node(&dir, &url);
    let (_b, b) = node(&dir, &url);
    let input =
        json!({"trainset_size": 50, "budget_usd": 3, "domain": "web", "quality_target": 0.8});
    let (_, d) = post(a, "/api/v1/optimization/recommend", &input);
    assert_eq!(d["recommended"], "gepa", "{d}");
    assert_eq!(d["confidence"], 0.75, "{d}");
    let (_, on_b) = post(b, "/api/v1/optimization/recommend", &input);
    assert_eq!(on_b["confidence"], 0.75, "{on_b}");
    // Decision ids are unique across the nodes.
    assert_ne!(d["decision_id"], on_b["decision_id"]);

    let (status, rec) = post(
        a,
        "/api/v1/optimization/outcomes",
        &json!({"decision_id": d["decision_id"], "optimizer_used": "gepa", "quality": 0.9}),
    );
    assert_eq!(status, 201, "{rec}");
    let recorded = Instant::now();
    // Node B learns it from PostgreSQL (a notification, or its check every half second).
    let seen = wait_for(
        Duration::from_secs(10),
        "node B's confidence to move",
        || {
            let (_, r) = post(b, "/api/v1/optimization/recommend", &input);
            (r["confidence"] == 0.85).then(|| recorded.elapsed())
        },
    );
    eprintln!("the outcome reached the other node after {seen:?}");
    let (_, m) = get(b, "/api/v1/optimization/metrics?since=all");
    assert_eq!(m["outcomes"], 1, "{m}");
}

#[test]
fn the_environment_and_the_config_file_name_a_postgres_database_too() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.database_url("located");
    let dir = TempDir::new("pg-located");
    let status = |cwd: &std::path::Path, env: Option<&str>| {
        let mut cmd = std::process::Command::new(bin());
        cmd.current_dir(cwd)
            .args(["db", "status", "--format", "json"])
            .env_remove("SKILL_FLEET_DB");
        if let Some(v) = env {
            cmd.env("SKILL_FLEET_DB", v);
        }
        let out = cmd.output().expect("run skill-fleet");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        assert!(
            !stdout.contains(SECRET) && !stderr.contains(SECRET),
            "{stdout}{stderr}"
        );
        (out.status.code(), stdout, stderr)
    };
    assert_eq!(
        run_in(dir.path(), &["db", "init", "--db", &url], None).code,
        0
    );
    // SKILL_FLEET_DB.
    let (code, stdout, stderr) = status(dir.path(), Some(&url));
    assert_eq!(code, Some(0), "{stderr}");
    let st: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(st["backend"], "postgres", "{st}");
    // `database.path` in the config file of the working directory.
    std::fs::create_dir_all(dir.path().join("config")).expect("config dir");
    std::fs::write(
        dir.path().join("config/skill-fleet.yaml"),
        format!("database:\n  path: \"{url}\"\n"),
    )
    .expect("config file");
    let (code, stdout, stderr) = status(dir.path(), None);
    assert_eq!(code, Some(0), "{stderr}");
    let st: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(st["backend"], "postgres", "{st}");
    assert!(st["path"].as_str().expect("path").contains(":***@"), "{st}");
}
