//! The decision log, outcomes, live confidence, selector metrics, export, calibrate, rules diff
//! and rollback.

use crate::support::*;
use serde_json::{json, Value};
use skill_fleet::outcome::{NewOutcome, RunContext, RunReport};
use skill_fleet::store::decisions::{DecisionTexts, NewDecision};
use skill_fleet::store::Store;
use std::path::Path;
use std::time::Duration;

fn approx(v: &Value, want: f64) {
    let got = v.as_f64().unwrap_or(f64::NAN);
    assert!((got - want).abs() < 1e-9, "{got} != {want}");
}

fn recommend(srv: &TestServer, body: Value) -> Value {
    let r = srv.post_json("/api/v1/optimization/recommend", &body.to_string());
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

/// Seeds the decision log directly: one entry per input, with the recommended optimizer given.
fn seed_decisions(store: &Store, rows: &[(Value, &str, &str, f64)]) -> Vec<i64> {
    let first = store.reserve_decision_ids(rows.len() as i64).expect("ids");
    let entries: Vec<NewDecision> = rows
        .iter()
        .enumerate()
        .map(|(i, (input, optimizer, rule, cost))| {
            let input = input.to_string();
            let request_id = format!("seed-{i}");
            NewDecision::new(
                first + i as i64,
                store.now_ms(),
                "http",
                (*cost, 10.0),
                DecisionTexts {
                    request_id: Some(&request_id),
                    revision: "rev-a",
                    rule,
                    optimizer,
                    variant: None,
                    input: input.as_bytes(),
                },
                |out| {
                    let v = json!({"recommended": optimizer, "estimated_cost": cost, "alternatives": []});
                    out.extend_from_slice(v.to_string().as_bytes());
                },
            )
        })
        .collect();
    store.log_decisions(entries).expect("log");
    (first..first + rows.len() as i64).collect()
}

fn outcome(
    decision: Option<i64>,
    used: &str,
    q: f64,
    cost: f64,
    minutes: f64,
    t: i64,
) -> NewOutcome {
    NewOutcome {
        report: RunReport {
            optimizer_used: used.into(),
            quality: q,
            actual_cost: Some(cost),
            actual_time_minutes: Some(minutes),
        },
        decision_id: decision,
        job_id: None,
        context: RunContext {
            trainset_size: Some(t),
            quality_target: Some(0.85),
            ..RunContext::default()
        },
    }
}

#[test]
fn recommend_logs_decisions_and_a_job_outcome_links_back_and_moves_confidence() {
    let t = TempDir::new("outcome-job");
    let db = t.path().join("o.db");
    let srv = TestServer::start(test_config(&shipped_rules()), Some(&db));
    let input =
        json!({"trainset_size": 50, "budget_usd": 3, "domain": "web", "quality_target": 0.8});
    let d = recommend(&srv, input.clone());
    let id = d["decision_id"].as_i64().expect("decision_id");
    assert_eq!(d["recommended"], "gepa");
    assert_eq!(d["confidence"], 0.75);
    // A dry run is not logged and has no id.
    let dry = srv
        .post_json("/api/v1/rules/evaluate", &input.to_string())
        .json();
    assert!(dry.get("decision_id").is_none(), "{dry}");
    let second = recommend(&srv, json!({"trainset_size": 800, "budget_usd": 50}));
    assert!(second["decision_id"].as_i64().expect("id") > id);

    // The job carries the decision; its worker completes it with the outcome fields.
    let job = srv.post_json(
        "/api/v1/jobs",
        &json!({"job_type": "optimization", "payload": {"decision_id": id, "optimizer": "gepa"}})
            .to_string(),
    );
    assert_eq!(job.status, 201, "{job:?}");
    let claim = srv
        .post_json(
            "/api/v1/jobs/claim",
            &json!({"worker": "w", "types": ["optimization"]}).to_string(),
        )
        .json();
    let jid = claim["job"]["id"].as_str().expect("job id").to_string();
    let token = claim["lease_token"].as_str().expect("token").to_string();
    let bad = srv.post_json(
        &format!("/api/v1/jobs/{jid}/complete"),
        &json!({"lease_token": token, "result": {"optimizer_used": "gepa", "quality": 1.7}})
            .to_string(),
    );
    assert_eq!(bad.status, 422, "{bad:?}");
    assert_eq!(bad.json()["details"][0]["field"], "result.quality");
    let done = srv.post_json(
        &format!("/api/v1/jobs/{jid}/complete"),
        &json!({"lease_token": token, "result": {
            "optimizer_used": "gepa", "actual_cost": 0.2, "actual_time_minutes": 4, "quality": 0.9
        }})
        .to_string(),
    );
    assert_eq!(done.status, 200, "{done:?}");

    // The outcome is linked: acceptance and estimate errors come from the decision.
    let m = srv.get("/api/v1/optimization/metrics?since=all").json();
    assert_eq!(m["decisions"]["total"], 2, "{m}");
    assert_eq!(m["decisions"]["by_optimizer"]["gepa"], 1);
    assert_eq!(m["decisions"]["by_rule"]["small_trainset_low_budget"], 1);
    assert_eq!(m["outcomes"], 1);
    assert_eq!(m["auto_selected"], 1);
    assert_eq!(m["acceptance"]["rate"], 1.0);
    assert_eq!(
        m["target_hit"]["count"], 1,
        "quality 0.9 ≥ target 0.8 of the decision's input"
    );
    // estimate 0.25 vs actual 0.2 → 25 %; 2 minutes vs 4 → 50 %
    approx(&m["accuracy"]["gepa"]["cost_mape"], 25.0);
    approx(&m["accuracy"]["gepa"]["time_mape"], 50.0);

    // The live confidence model now has one success for (web, gepa): 0.75 + 0.1 × 1.
    let again = recommend(&srv, input.clone());
    assert_eq!(again["confidence"], 0.85, "{again}");
    // Other domains are untouched.
    let other = recommend(&srv, json!({"trainset_size": 50, "budget_usd": 3}));
    assert_eq!(other["confidence"], 0.75);
}

#[test]
fn outcomes_endpoint_validates_and_links() {
    let t = TempDir::new("outcome-post");
    let db = t.path().join("o.db");
    let srv = TestServer::start(test_config(&shipped_rules()), Some(&db));
    let d = recommend(&srv, json!({"trainset_size": 200, "budget_usd": 10}));
    let id = d["decision_id"].as_i64().expect("id");
    let post = |body: Value| srv.post_json("/api/v1/optimization/outcomes", &body.to_string());
    let r = post(json!({"decision_id": id + 1000, "optimizer_used": "gepa", "quality": 0.9}));
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.json()["details"][0]["field"], "decision_id");
    let r = post(json!({"optimizer_used": "gepa", "quality": -0.1}));
    assert_eq!(r.json()["details"][0]["field"], "quality");
    let r = post(json!({"quality": 0.5}));
    assert_eq!(r.json()["details"][0]["field"], "optimizer_used");
    let r = post(json!({"optimizer_used": "gepa", "quality": 0.5, "qualty_target": 1}));
    assert_eq!(r.status, 422, "{r:?}");
    // Taking an alternative instead: its own estimate is the one compared.
    let r = post(
        json!({"decision_id": id, "optimizer_used": "bootstrap_fewshot", "quality": 0.7, "actual_cost": 0.4}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let rec = r.json();
    assert_eq!(rec["recommended"], "miprov2");
    assert_eq!(rec["estimated_cost"], 0.2, "{rec}");
    assert_eq!(rec["trainset_size"], 200);
    assert_eq!(rec["auto_selected"], true);
    let m = srv.get("/api/v1/optimization/metrics?since=all").json();
    assert_eq!(m["acceptance"]["rate"], 0.0);
    approx(&m["accuracy"]["bootstrap_fewshot"]["cost_mape"], 50.0);
    let bad = srv.get("/api/v1/optimization/metrics?since=yesterday");
    assert_eq!(bad.status, 400, "{bad:?}");
}

#[test]
fn queued_decisions_are_written_before_the_log_closes() {
    let t = TempDir::new("outcome-close");
    let db = t.path().join("o.db");
    let mut cfg = test_config(&shipped_rules());
    cfg.decisions.flush_interval_ms = 500;
    let srv = TestServer::start(cfg, Some(&db));
    let ids: Vec<i64> = (0..20)
        .map(|i| {
            recommend(&srv, json!({"trainset_size": 100 + i, "budget_usd": 10}))["decision_id"]
                .as_i64()
                .expect("id")
        })
        .collect();
    srv.close_log();
    let store = srv.state.store.clone().expect("store");
    for id in &ids {
        let d = store.decision(*id).expect("read").expect("logged");
        assert_eq!(d.source, "http");
        assert_eq!(d.optimizer, "miprov2");
        assert_eq!(d.variant.as_deref(), Some("light"));
        assert_eq!(d.output["decision_id"], *id);
        assert!(d.request_id.is_some());
    }
}

#[test]
fn a_full_queue_makes_requests_wait_and_drops_nothing() {
    let t = TempDir::new("outcome-full");
    let db = t.path().join("o.db");
    let mut cfg = test_config(&shipped_rules());
    cfg.decisions.queue_capacity = 1;
    cfg.decisions.flush_interval_ms = 20;
    let srv = TestServer::start(cfg, Some(&db));
    let addr = srv.addr;
    let ids: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|k| {
                s.spawn(move || {
                    (0..10)
                        .map(|i| {
                            let body = json!({"trainset_size": 10 + k * 10 + i, "budget_usd": 10})
                                .to_string();
                            let r = request(
                                addr,
                                "POST",
                                "/api/v1/optimization/recommend",
                                &[("Content-Type", "application/json")],
                                Some(body.as_bytes()),
                            );
                            assert_eq!(r.status, 200, "{r:?}");
                            r.json()["decision_id"].as_i64().expect("id")
                        })
                        .collect::<Vec<i64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client"))
            .collect()
    });
    srv.close_log();
    let store = srv.state.store.clone().expect("store");
    let logged = store.each_decision_since(i64::MIN, |_| {}).expect("read");
    assert_eq!(logged, 80);
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 80, "every decision has its own id");
    for id in ids {
        assert!(
            store.decision(id).expect("read").is_some(),
            "decision {id} missing"
        );
    }
}

#[test]
fn metrics_cli_export_and_history_round_trip() {
    let t = TempDir::new("outcome-cli");
    let db = t.path().join("m.db");
    {
        let store = Store::open(&db, true).expect("db");
        let ids = seed_decisions(
            &store,
            &[
                (
                    json!({"trainset_size": 50, "budget_usd": 3}),
                    "gepa",
                    "small",
                    0.25,
                ),
                (
                    json!({"trainset_size": 60, "budget_usd": 3}),
                    "gepa",
                    "small",
                    0.3,
                ),
                (
                    json!({"trainset_size": 300, "budget_usd": 10}),
                    "miprov2",
                    "moderate",
                    3.75,
                ),
            ],
        );
        for o in [
            outcome(Some(ids[0]), "gepa", 0.9, 0.5, 3.0, 50),
            outcome(Some(ids[1]), "gepa", 0.7, 0.3, 3.0, 60),
            outcome(Some(ids[2]), "gepa", 0.95, 1.5, 10.0, 300),
            outcome(None, "bootstrap_fewshot", 0.6, 0.1, 1.0, 100),
        ] {
            store.record_outcome(o).expect("outcome");
        }
        store.close().expect("close");
    }
    let dbs = db.display().to_string();
    let r = run(&[
        "metrics", "--db", &dbs, "--since", "all", "--format", "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(m["decisions"]["total"], 3);
    assert_eq!(m["decisions"]["by_optimizer"]["gepa"], 2);
    assert_eq!(m["decisions"]["by_revision"]["rev-a"], 3);
    assert_eq!(
        (m["auto_selected"].clone(), m["manual"].clone()),
        (json!(3), json!(1))
    );
    assert_eq!(
        (
            m["acceptance"]["count"].clone(),
            m["acceptance"]["of"].clone()
        ),
        (json!(2), json!(3))
    );
    // Ratios are printed with 4 decimals (the stored values keep full precision).
    assert_eq!(m["acceptance"]["rate"], json!(0.6667));
    assert_eq!(m["target_hit"], json!({"count": 2, "of": 4, "rate": 0.5}));
    // gepa cost: |0.25-0.5|/0.5 = 50 %, |0.3-0.3|/0.3 = 0 % (the third run used gepa against a
    // miprov2 decision without a gepa alternative: no estimate)
    assert_eq!(m["accuracy"]["gepa"]["cost_samples"], 2);
    approx(&m["accuracy"]["gepa"]["cost_mape"], 25.0);
    let human = run(&["metrics", "--db", &dbs, "--since", "all"]);
    assert!(
        human.stdout.contains("acceptance    66.7% (2 of 3"),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains("outcomes      4 (3 auto-selected, 1 manual)"),
        "{}",
        human.stdout
    );
    let bad = run(&["metrics", "--db", &dbs, "--since", "soon"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("invalid --since"), "{}", bad.stderr);

    // Export, then feed the file back as --history: 2 of 3 (general, gepa) outcomes ≥ 0.8.
    let file = t.path().join("selector_metrics.jsonl");
    let r = run(&[
        "metrics",
        "export",
        "--db",
        &dbs,
        "--since",
        "all",
        "--jsonl",
        &file.display().to_string(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("wrote 4 outcomes"), "{}", r.stdout);
    let text = std::fs::read_to_string(&file).expect("export");
    let first: Value = serde_json::from_str(text.lines().next().expect("line")).expect("record");
    for key in [
        "timestamp",
        "trainset_size",
        "quality_target",
        "domain",
        "optimizer",
        "actual_cost",
        "actual_time",
        "quality",
    ] {
        assert!(first.get(key).is_some(), "missing {key}: {first}");
    }
    let r = run(&[
        "--rules",
        &shipped_rules().display().to_string(),
        "rules",
        "test",
        "--set",
        "trainset_size=50",
        "--set",
        "budget_usd=3",
        "--history",
        &file.display().to_string(),
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(d["confidence"], 0.82, "0.75 + 0.1 × 2/3, rounded: {d}");
}

#[test]
fn calibrate_proposes_medians_as_a_patch() {
    let t = TempDir::new("outcome-calibrate");
    let db = t.path().join("c.db");
    {
        let store = Store::open(&db, true).expect("db");
        for (cost, minutes) in [(1.2, 12.0), (1.4, 14.0), (2.0, 10.0)] {
            store
                .record_outcome(outcome(None, "gepa", 0.9, cost, minutes, 200))
                .expect("o");
        }
        store
            .record_outcome(outcome(None, "bootstrap_finetune", 0.9, 50.0, 100.0, 100))
            .expect("o");
        store.close().expect("close");
    }
    let dbs = db.display().to_string();
    let rules = shipped_rules().display().to_string();
    let r = run(&[
        "--rules",
        &rules,
        "rules",
        "calibrate",
        "--db",
        &dbs,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).expect("json");
    let gepa = v["proposals"]
        .as_array()
        .expect("proposals")
        .iter()
        .find(|p| p["optimizer"] == "gepa")
        .expect("gepa")
        .clone();
    // implied usd_per_100: 0.6, 0.7, 1.0 → median 0.7; minutes: 6, 7, 5 → 6
    assert_eq!(
        gepa["usd_per_100"],
        json!({"current": 0.5, "proposed": 0.7, "samples": 3})
    );
    assert_eq!(
        gepa["minutes_per_100"],
        json!({"current": 5.0, "proposed": 6.0, "samples": 3})
    );
    let patch = v["patch"].as_str().expect("patch");
    assert!(patch.contains("-    gepa: {usd_per_100: 0.50, minutes_per_100: 5}\n+    gepa: {usd_per_100: 0.7, minutes_per_100: 6}\n"), "{patch}");
    // One finetune outcome is under --min-samples 3: listed, not patched.
    assert!(!patch.contains("bootstrap_finetune"), "{patch}");
    let human = run(&["--rules", &rules, "rules", "calibrate", "--db", &dbs]);
    assert!(
        human.stdout.contains("below --min-samples 3"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("nothing is applied"),
        "{}",
        human.stdout
    );
    // The patch applies to the rules it was made from.
    let copy = rules_copy("calibrate-apply");
    let only = run(&[
        "--rules",
        &rules,
        "rules",
        "calibrate",
        "--db",
        &dbs,
        "--patch-only",
    ]);
    let applied = std::process::Command::new("git")
        .args(["apply", "--check"])
        .current_dir(copy.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            let patch = only
                .stdout
                .replace(&format!("a/{rules}/"), "a/rules/")
                .replace(&format!("b/{rules}/"), "b/rules/");
            c.stdin.take().expect("stdin").write_all(patch.as_bytes())?;
            c.wait()
        });
    if let Ok(status) = applied {
        assert!(
            status.success(),
            "the patch does not apply:\n{}",
            only.stdout
        );
    }
}

fn write_threshold(rules: &Path, from: &str, to: &str) {
    let p = rules.join("selection.yaml");
    let text = std::fs::read_to_string(&p).expect("read");
    assert!(text.contains(from));
    std::fs::write(&p, text.replacen(from, to, 1)).expect("write");
}

#[test]
fn diff_reports_exactly_the_decisions_that_move() {
    let t = TempDir::new("outcome-diff");
    let db = t.path().join("d.db");
    // Rule 4 (moderate_trainset_budget) ends at budget 20; the candidate ends it at 15.
    let candidate = rules_copy("diff-candidate");
    write_threshold(
        &candidate.path().join("rules"),
        "- {field: budget_usd, lt: 20.0}",
        "- {field: budget_usd, lt: 15.0}",
    );
    let moving = [(200, 16.0), (450, 19.5), (120, 15.0)];
    let staying = [(200, 10.0), (800, 16.0), (50, 3.0), (300, 25.0)];
    let ids = {
        let store = Store::open(&db, true).expect("db");
        let rows: Vec<(Value, &str, &str, f64)> = moving
            .iter()
            .chain(staying.iter())
            .map(|(t, b)| (json!({"trainset_size": t, "budget_usd": b}), "x", "x", 0.0))
            .collect();
        let ids = seed_decisions(&store, &rows);
        store.close().expect("close");
        ids
    };
    let (live, against, db_arg) = (
        shipped_rules().display().to_string(),
        candidate.path().join("rules").display().to_string(),
        db.display().to_string(),
    );
    let diff = |extra: &[&str]| {
        let mut args = vec![
            "--rules",
            &live,
            "rules",
            "diff",
            "--against",
            &against,
            "--db",
            &db_arg,
            "--since",
            "all",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let r = diff(&["--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(v["decisions"], 7);
    assert_eq!(v["changed_decisions"], 3, "{v}");
    let group = v["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["from"] == "miprov2 (light)" && g["to"] == "bootstrap_fewshot")
        .expect("light → fewshot group")
        .clone();
    let sources: Vec<String> = group["examples"]
        .as_array()
        .expect("examples")
        .iter()
        .map(|e| e["source"].as_str().unwrap_or_default().to_string())
        .filter(|s| s.starts_with("decision"))
        .collect();
    for s in &sources {
        let id: i64 = s.trim_start_matches("decision ").parse().expect("id");
        assert!(ids[..3].contains(&id), "{s} did not move a threshold");
    }
    // T=200 at $16: light 2.5 → fewshot 0.2.
    assert!(group["cost_delta"].as_f64().expect("delta") < 0.0);
    let human = diff(&[]);
    assert!(
        human
            .stdout
            .contains("miprov2 (light) -> bootstrap_fewshot"),
        "{}",
        human.stdout
    );
    // The same rules: nothing moves.
    let same = run(&[
        "--rules",
        &shipped_rules().display().to_string(),
        "rules",
        "diff",
        "--against",
        &shipped_rules().display().to_string(),
        "--db",
        &db.display().to_string(),
        "--since",
        "all",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&same.stdout).expect("json");
    assert_eq!(v["changed"], 0, "{v}");
}

#[test]
fn rollback_reactivates_a_kept_revision_until_the_files_change() {
    let dir = rules_copy("rollback");
    let rules = dir.path().join("rules");
    let mut cfg = test_config(&rules);
    cfg.rules.watch = true;
    // The moved threshold breaks boundary fixtures; this test is about the swap, not them.
    cfg.rules.run_fixtures_on_reload = false;
    cfg.rules.debounce_ms = 50;
    cfg.rules.poll_interval_ms = 100;
    let srv = TestServer::start(cfg, None);
    let first = srv.get("/api/v1/rules/status").json()["revision"]
        .as_str()
        .expect("rev")
        .to_string();
    write_threshold(
        &rules,
        "- {field: budget_usd, lt: 20.0}",
        "- {field: budget_usd, lt: 15.0}",
    );
    let second = wait_for(DEADLINE, "the change to load", || {
        let r = srv.get("/api/v1/rules/status").json()["revision"]
            .as_str()?
            .to_string();
        (r != first).then_some(r)
    });
    let input = json!({"trainset_size": 200, "budget_usd": 16}).to_string();
    let eval = |srv: &TestServer| {
        srv.post_json("/api/v1/rules/evaluate", &input).json()["recommended"].clone()
    };
    assert_eq!(eval(&srv), "bootstrap_fewshot");
    let unknown = srv.post_json("/api/v1/rules/rollback", r#"{"revision": "nope"}"#);
    assert_eq!(unknown.status, 422, "{unknown:?}");
    assert!(unknown.json()["details"][0]["help"]
        .as_str()
        .unwrap_or_default()
        .contains(&first));
    let r = srv.post_json(
        "/api/v1/rules/rollback",
        &json!({"revision": &first[..8]}).to_string(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let body = r.json();
    assert_eq!(body["result"], "rolled_back");
    assert_eq!(body["status"]["revision"], first.as_str());
    assert_eq!(body["status"]["rolled_back_from"], second.as_str());
    assert_eq!(eval(&srv), "miprov2");
    // The watcher's poll must not undo it while the files stay as they are.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        srv.get("/api/v1/rules/status").json()["revision"],
        first.as_str()
    );
    // A new change to the files wins again.
    write_threshold(
        &rules,
        "- {field: budget_usd, lt: 15.0}",
        "- {field: budget_usd, lt: 12.0}",
    );
    wait_for(DEADLINE, "the next change to load", || {
        let s = srv.get("/api/v1/rules/status").json();
        (s["revision"] != first.as_str()
            && s["revision"] != second.as_str()
            && s["rolled_back_from"].is_null())
        .then_some(())
    });
    assert_eq!(eval(&srv), "bootstrap_fewshot");
}
