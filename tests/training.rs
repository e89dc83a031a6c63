//! `skill-fleet training …` run as a user would, on a temp database seeded by `db init`.

use super::support::{root, run_in, Run, TempDir};
use serde_json::{json, Value};

struct Db {
    dir: TempDir,
}

impl Db {
    /// A fresh database with the shipped examples.
    fn init(tag: &str) -> Self {
        let db = Db {
            dir: TempDir::new(tag),
        };
        let r = db.run(&["db", "init"]);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(
            r.stdout.contains("imported 50 shipped training example(s)"),
            "{}",
            r.stdout
        );
        db
    }

    fn path(&self) -> String {
        self.dir.path().join("t.db").display().to_string()
    }

    fn file(&self, name: &str, v: &Value) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, serde_json::to_string_pretty(v).expect("json")).expect("write");
        p.display().to_string()
    }

    fn run(&self, args: &[&str]) -> Run {
        let db = self.path();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--db", db.as_str()]);
        run_in(&root(), &all, None)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--format", "json"]);
        let r = self.run(&all);
        assert_eq!(r.code, 0, "{r:?}");
        serde_json::from_str(&r.stdout).expect("json output")
    }

    fn export(&self) -> Vec<Value> {
        let p = self.dir.path().join("export.json").display().to_string();
        let r = self.run(&["training", "export", &p]);
        assert_eq!(r.code, 0, "{r:?}");
        let text = std::fs::read_to_string(&p).expect("read export");
        serde_json::from_str(&text).expect("export is json")
    }
}

fn record(id: &str, category: &str, q: f64) -> Value {
    json!({
        "example_id": id,
        "task_description": format!("task {id}"),
        "category": category,
        "style": "technical",
        "created_at": "2025-03-01T10:00:00Z",
        "quality_score": q,
        "structure_completeness": q,
        "pattern_clarity": q,
        "practical_value": q,
        "success_rate": null,
        "usage_count": 0,
        "tags": []
    })
}

#[test]
fn db_init_imports_the_shipped_examples_once() {
    let db = Db::init("train-init");
    let again = db.run(&["db", "init"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(!again.stdout.contains("imported"), "{}", again.stdout);
    assert_eq!(db.export().len(), 50);
}

#[test]
fn analytics_on_the_shipped_data() {
    let db = Db::init("train-analytics");
    let a = db.json(&["training", "analytics"]);
    assert_eq!(a["total_examples"], 50);
    assert_eq!(
        a["quality_distribution"],
        json!({"high": 25, "medium": 20, "low": 5})
    );
    let top = a["top_performers"].as_array().expect("top");
    assert_eq!(top.len(), 5);
    assert_eq!(top[0]["name"], "python-007");
    assert_eq!(top[0]["success_rate"], 0.92);
    assert_eq!(a["underrepresented"], json!(["database", "dspy"]));
    assert_eq!(a["category_breakdown"]["python"], 10);
    assert_eq!(a["style_breakdown"]["navigation_hub"], 1);
    assert_eq!(a["recommendations"].as_array().map(Vec::len), Some(2));
    let human = db.run(&["training", "analytics"]);
    assert_eq!(human.code, 0);
    assert!(human.stdout.contains("high   ≥ 0.8"), "{}", human.stdout);
    assert!(human.stdout.contains('█'));
}

#[test]
fn select_scores_filters_and_explains_without_changing_anything() {
    let db = Db::init("train-select");
    let before = db.export();
    let s = db.json(&["training", "select", "--max", "3", "--explain"]);
    let sel = s["selected"].as_array().expect("selected");
    assert_eq!(sel.len(), 3);
    // python-007: quality 0.95, success 0.92 → 0.6 × 0.95 + 0.4 × 0.92.
    assert_eq!(sel[0]["example_id"], "python-007");
    let score = sel[0]["score"].as_f64().unwrap_or(0.0);
    assert!((score - (0.6 * 0.95 + 0.4 * 0.92)).abs() < 1e-9, "{score}");
    assert_eq!(sel[0]["parts"]["quality"], 0.95);
    assert_eq!(s["excluded"].as_array().map(Vec::len), Some(47));
    let all = db.json(&["training", "select"]);
    assert_eq!(all["min_score"], 0.7);
    assert_eq!(all["max_examples"], 50);
    assert!(all["selected"]
        .as_array()
        .expect("selected")
        .iter()
        .all(|x| x["score"].as_f64().unwrap_or(0.0) >= 0.7));
    let cat = db.json(&[
        "training",
        "select",
        "--category",
        "dspy",
        "--min-quality",
        "0",
    ]);
    assert_eq!(cat["selected"].as_array().map(Vec::len), Some(1));
    // The shipped relevance weight (0.2) applies when a style is asked for:
    // cli-007 (navigation_hub, 0.84 / 0.79) → (0.6 × 0.84 + 0.4 × 0.79 + 0.2) / 1.2.
    let styled = db.json(&[
        "training",
        "select",
        "--style",
        "navigation_hub",
        "--max",
        "1",
    ]);
    assert_eq!(styled["selected"][0]["example_id"], "cli-007");
    assert_eq!(styled["selected"][0]["parts"]["relevance"], 1.0);
    let score = styled["selected"][0]["score"].as_f64().unwrap_or(0.0);
    assert!(
        (score - (0.6 * 0.84 + 0.4 * 0.79 + 0.2) / 1.2).abs() < 1e-9,
        "{score}"
    );
    assert_eq!(db.export(), before);
    let bad = db.run(&["training", "select", "--style", "fancy"]);
    assert_eq!(bad.code, 4, "{bad:?}");
    assert!(
        bad.stderr.contains("unknown style `fancy`"),
        "{}",
        bad.stderr
    );
}

#[test]
fn update_applies_the_moving_averages_and_reports_unknown_ids() {
    let db = Db::init("train-update");
    let f = db.file("new.json", &json!([record("x-1", "python", 0.5)]));
    assert_eq!(db.run(&["training", "import", &f]).code, 0);
    let pass = db.file(
        "pass.json",
        &json!([{"example_id": "x-1", "score": 1.0, "passed": true}, {"example_id": "ghost", "score": 0.3, "passed": false}]),
    );
    let r = db.run(&["training", "update", "--results", &pass]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("`ghost`"), "{}", r.stderr);
    let fail = db.file(
        "fail.json",
        &json!([{"example_id": "x-1", "score": 0.0, "passed": false}]),
    );
    let out = db.json(&["training", "update", "--results", &fail]);
    let e = &out["updated"][0];
    assert!((e["quality_score"].as_f64().unwrap_or(0.0) - 0.48).abs() < 1e-9);
    assert!((e["success_rate"].as_f64().unwrap_or(0.0) - 0.495).abs() < 1e-9);
    assert_eq!(e["usage_count"], 2);
    assert!(e["last_used"].is_string());
    let stored = db.export();
    let x = stored
        .iter()
        .find(|r| r["example_id"] == "x-1")
        .expect("x-1");
    assert_eq!(x["usage_count"], 2);
}

#[test]
fn import_merges_by_id_and_a_bad_record_imports_nothing() {
    let db = Db::init("train-import");
    let good = db.file(
        "good.json",
        &json!([
            record("python-001", "python", 0.4),
            record("new-1", "security", 0.9)
        ]),
    );
    let r = db.json(&["training", "import", &good]);
    assert_eq!(r, json!({"inserted": 1, "updated": 1}));
    let mut bad_rec = record("new-2", "security", 0.9);
    bad_rec["pattern_clarity"] = json!("clear");
    let bad = db.file("bad.json", &json!([record("new-3", "web", 0.9), bad_rec]));
    let r = db.run(&["training", "import", &bad]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr.contains("record 1, field `pattern_clarity`"),
        "{}",
        r.stderr
    );
    let all = db.export();
    assert_eq!(all.len(), 51);
    assert!(!all.iter().any(|r| r["example_id"] == "new-3"));
    let p = all
        .iter()
        .find(|r| r["example_id"] == "python-001")
        .expect("python-001");
    assert_eq!(p["quality_score"], 0.4);
    let not_array = db.file("obj.json", &json!({"examples": []}));
    let r = db.run(&["training", "import", &not_array]);
    assert_eq!(r.code, 4);
    assert!(r.stderr.contains("JSON array"), "{}", r.stderr);
}

#[test]
fn export_round_trips() {
    let db = Db::init("train-export");
    let first = db.export();
    let p = db.dir.path().join("export.json").display().to_string();
    let r = db.json(&["training", "import", &p]);
    assert_eq!(r, json!({"inserted": 0, "updated": 50}));
    assert_eq!(db.export(), first);
}

#[test]
fn select_follows_changed_weights_in_the_rules() {
    let db = Db::init("train-weights");
    let rules = super::support::rules_copy("train-weights-rules");
    let file = rules.path().join("rules/training.yaml");
    let text = std::fs::read_to_string(&file).expect("read training.yaml");
    let changed = text
        .replace("    quality: 0.6", "    quality: 1.0")
        .replace("    success_rate: 0.4", "    success_rate: 0.0")
        .replace("  category_weights: {}", "  category_weights: {dspy: 2.0}");
    assert_ne!(changed, text);
    std::fs::write(&file, changed).expect("write training.yaml");
    let dir = rules.path().join("rules").display().to_string();
    let s = db.json(&["--rules", &dir, "training", "select", "--max", "2"]);
    // dspy-001: quality 0.87 × 2.0; then python-007: quality 0.95.
    assert_eq!(s["selected"][0]["example_id"], "dspy-001");
    assert!((s["selected"][0]["score"].as_f64().unwrap_or(0.0) - 1.74).abs() < 1e-9);
    assert_eq!(s["selected"][0]["parts"]["category_weight"], 2.0);
    assert_eq!(s["selected"][1]["example_id"], "python-007");
    assert!((s["selected"][1]["score"].as_f64().unwrap_or(0.0) - 0.95).abs() < 1e-9);
}

#[test]
fn an_unknown_quality_part_is_a_rule_error() {
    let rules = super::support::rules_copy("train-parts");
    let file = rules.path().join("rules/training.yaml");
    let text = std::fs::read_to_string(&file).expect("read training.yaml");
    std::fs::write(
        &file,
        text.replace(
            "  quality_parts: {}",
            "  quality_parts: {pattern_clarty: 0.5}",
        ),
    )
    .expect("write training.yaml");
    let r = run_in(rules.path(), &["--rules", "rules", "rules", "check"], None);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("unknown quality part `pattern_clarty`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("did you mean `pattern_clarity`"),
        "{}",
        r.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP: /api/v2/training/…
// ---------------------------------------------------------------------------------------------

fn seeded_server(dir: &TempDir) -> super::support::TestServer {
    use skill_fleet::engine::training::{parse_records, SHIPPED_EXAMPLES};
    use skill_fleet::store::Store;
    let path = dir.path().join("api.db");
    let store = Store::open(&path, true).expect("open db");
    store
        .import_examples(parse_records(SHIPPED_EXAMPLES).expect("shipped examples"))
        .expect("import");
    store.close().expect("close");
    let config = super::support::test_config(&super::support::shipped_rules());
    super::support::TestServer::start(config, Some(path.as_path()))
}

#[test]
fn http_analytics_select_and_results() {
    let dir = TempDir::new("train-http");
    let srv = seeded_server(&dir);
    let a = srv.get("/api/v2/training/analytics");
    assert_eq!(a.status, 200, "{a:?}");
    let a = a.json();
    assert_eq!(a["total_examples"], 50);
    assert_eq!(a["underrepresented"], json!(["database", "dspy"]));

    let s = srv.post_json(
        "/api/v2/training/select",
        r#"{"max": 2, "categories": ["dspy", "database"], "explain": true}"#,
    );
    assert_eq!(s.status, 200, "{s:?}");
    let s = s.json();
    assert_eq!(s["selected"][0]["example_id"], "dspy-001");
    assert_eq!(s["excluded"].as_array().map(Vec::len), Some(48));

    let bad = srv.post_json("/api/v2/training/select", r#"{"style": "fancy"}"#);
    assert_eq!(bad.status, 422, "{bad:?}");
    assert_eq!(bad.json()["details"][0]["field"], "style");

    let r = srv.post_json(
        "/api/v2/training/results",
        r#"{"results": [{"example_id": "dspy-001", "score": 1.0, "passed": true}, {"example_id": "ghost", "score": 0.5, "passed": false}]}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = r.json();
    assert_eq!(r["updated"][0]["usage_count"], 5);
    assert_eq!(r["unknown"], json!(["ghost"]));

    let bad = srv.post_json(
        "/api/v2/training/results",
        r#"{"results": [{"example_id": "dspy-001", "score": 2.0, "passed": true}]}"#,
    );
    assert_eq!(bad.status, 422, "{bad:?}");
    assert_eq!(bad.json()["details"][0]["field"], "results[0].score");

    let wrong = srv.get("/api/v2/training/select");
    assert_eq!(wrong.status, 405, "{wrong:?}");

    // `min_quality` is the original's name for `min_score`; both are checked by the schema.
    let select = |body: &str| srv.post_json("/api/v2/training/select", body);
    let by_score = select(r#"{"min_score": 0.9, "max": 100}"#).json();
    let by_quality = select(r#"{"min_quality": 0.9, "max": 100}"#).json();
    assert_eq!(by_score["selected"], by_quality["selected"]);
    for (body, field) in [
        (r#"{"min_quality": 1.5}"#, "min_quality"),
        (r#"{"min_score": -0.1}"#, "min_score"),
        (r#"{"min_score": 0.5, "min_quality": 0.5}"#, "min_quality"),
        (r#"{"min_scor": 0.5}"#, "min_scor"),
    ] {
        let r = select(body);
        assert_eq!(r.status, 422, "{body}: {r:?}");
        assert_eq!(r.json()["details"][0]["field"], field, "{body}");
    }
}

#[test]
fn completing_an_optimization_job_with_example_results_updates_the_examples() {
    let dir = TempDir::new("train-complete");
    let srv = seeded_server(&dir);
    let example = |id: &str| -> Value {
        let all = srv.post_json(
            "/api/v2/training/select",
            r#"{"min_score": 0.0, "max": 100, "explain": true}"#,
        );
        let all = all.json();
        all["selected"]
            .as_array()
            .expect("selected")
            .iter()
            .find(|e| e["example_id"] == id)
            .cloned()
            .expect("example selected")
    };
    let before = example("python-007");
    assert_eq!(before["parts"]["quality"], 0.95);
    assert_eq!(before["parts"]["success_rate"], 0.92);

    // Another job type carries results too: they are not applied.
    for (job_type, expect_quality) in [("skill_creation", 0.95), ("optimization", 0.96)] {
        let created = srv.post_json("/api/v1/jobs", &json!({"job_type": job_type}).to_string());
        assert_eq!(created.status, 201, "{created:?}");
        let claim = srv.post_json(
            "/api/v1/jobs/claim",
            &json!({"worker": "w", "types": [job_type]}).to_string(),
        );
        assert_eq!(claim.status, 200, "{claim:?}");
        let claim = claim.json();
        let id = claim["job"]["id"].as_str().expect("id").to_string();
        let token = claim["lease_token"].as_str().expect("token").to_string();
        let bad = srv.post_json(
            &format!("/api/v1/jobs/{id}/complete"),
            &json!({"lease_token": token, "result": {"example_results": [{"example_id": "python-007", "score": 3}]}}).to_string(),
        );
        assert_eq!(bad.status, 422, "{bad:?}");
        assert_eq!(bad.json()["details"][0]["field"], "result.example_results");
        let done = srv.post_json(
            &format!("/api/v1/jobs/{id}/complete"),
            &json!({"lease_token": token, "result": {"quality": 0.9, "example_results": [
                {"example_id": "python-007", "score": 1.0, "passed": true}
            ]}})
            .to_string(),
        );
        assert_eq!(done.status, 200, "{done:?}");
        let after = example("python-007");
        let q = after["parts"]["quality"].as_f64().expect("quality");
        assert!((q - expect_quality).abs() < 1e-9, "{job_type}: quality {q}");
    }
    // 0.9 × 0.92 + 0.1 × 1 = 0.928
    let s = example("python-007")["parts"]["success_rate"]
        .as_f64()
        .expect("success");
    assert!((s - 0.928).abs() < 1e-9, "{s}");
}

#[test]
fn optimize_recommends_from_the_filtered_trainset_and_carries_the_selected_ids() {
    use skill_fleet::engine::training::{parse_records, select, SelectRequest, SHIPPED_EXAMPLES};
    let dir = TempDir::new("train-optimize");
    let db = dir.path().join("o.db");
    let db_s = db.display().to_string();
    let init = run_in(&root(), &["db", "init", "--db", &db_s], None);
    assert_eq!(init.code, 0, "{init:?}");
    // The trainset: every shipped example by id, plus two the store does not know.
    let shipped = parse_records(SHIPPED_EXAMPLES).expect("shipped");
    let mut lines: Vec<String> = shipped
        .iter()
        .map(|e| json!({"example_id": e.example_id, "input": "x"}).to_string())
        .collect();
    lines.push(json!({"example_id": "unknown-1"}).to_string());
    lines.push(json!({"example_id": "unknown-2"}).to_string());
    let ts = dir.path().join("train.jsonl");
    std::fs::write(&ts, lines.join("\n")).expect("write");
    let ts_s = ts.display().to_string();

    let rules = skill_fleet::rules::build(
        &skill_fleet::loader::read_dir(&super::support::shipped_rules()).expect("rules"),
    )
    .expect("valid");
    let expected: Vec<String> = select(&rules.training, &shipped, &SelectRequest::default())
        .selected
        .into_iter()
        .map(|s| s.example_id)
        .collect();
    assert!(!expected.is_empty() && expected.len() < shipped.len());

    let made = run_in(
        &root(),
        &[
            "optimize",
            "--auto-select",
            "--trainset",
            &ts_s,
            "--budget",
            "4",
            "--yes",
            "--format",
            "json",
            "--db",
            &db_s,
        ],
        None,
    );
    assert_eq!(made.code, 0, "{made:?}");
    let job: Value = serde_json::from_str(&made.stdout).expect("json");
    assert_eq!(job["payload"]["trainset_records"], 52);
    assert_eq!(job["payload"]["trainset_size"], expected.len());
    assert_eq!(job["payload"]["decision"]["trace"], Value::Null);
    let ids: Vec<String> =
        serde_json::from_value(job["payload"]["selected_example_ids"].clone()).expect("ids");
    assert_eq!(ids, expected);

    let raw = run_in(
        &root(),
        &[
            "optimize",
            "--auto-select",
            "--trainset",
            &ts_s,
            "--budget",
            "4",
            "--no-filter",
            "--dry-run",
            "--format",
            "json",
            "--db",
            &db_s,
        ],
        None,
    );
    assert_eq!(raw.code, 0, "{raw:?}");
    let v: Value = serde_json::from_str(&raw.stdout).expect("json");
    assert_eq!(v["payload"]["trainset_size"], 52);
    assert_eq!(v["payload"]["selected_example_ids"], Value::Null);
}
