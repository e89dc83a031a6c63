//! `skill-fleet rules …` run as a user would: fixtures, dry runs, formats, schemas, bench.

use super::support::{root, rules_copy, run, run_in, TempDir};
use serde_json::Value;

fn summary_line(out: &str) -> (usize, usize) {
    let line = out.lines().last().unwrap_or_default();
    let mut parts = line.split(", ");
    let passed = parts
        .next()
        .and_then(|p| p.strip_suffix(" passed"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary line in {out}"));
    let failed = parts
        .next()
        .and_then(|p| p.strip_suffix(" failed"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary line in {out}"));
    (passed, failed)
}

#[test]
fn check_accepts_the_shipped_rules() {
    let r = run(&["rules", "check"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.starts_with("rule set `rules` is valid: revision "),
        "{}",
        r.stdout
    );
    let j = run(&["rules", "check", "--format", "json"]);
    let v: Value = serde_json::from_str(&j.stdout).expect("json");
    assert_eq!(v["valid"], true);
    let rev = v["revision"].as_str().expect("revision");
    assert_eq!(rev.len(), 12);
    assert!(rev.chars().all(|c| c.is_ascii_hexdigit()));
}

#[test]
fn shipped_fixtures_all_pass() {
    let r = run(&["rules", "test"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let (passed, failed) = summary_line(&r.stdout);
    assert!(passed >= 40, "{passed}");
    assert_eq!(failed, 0);
}

#[test]
fn filter_runs_a_subset() {
    let r = run(&["rules", "test", "--filter", "rounding"]);
    assert_eq!(r.code, 0);
    assert_eq!(summary_line(&r.stdout), (2, 0));
    let none = run(&["rules", "test", "--filter", "no-such-fixture"]);
    assert_eq!(summary_line(&none.stdout), (0, 0));
    assert!(none
        .stderr
        .contains("no fixture name contains `no-such-fixture`"));
}

const FAILING: &str = "tests:\n  - name: wrong_on_purpose\n    input: {trainset_size: 50, budget_usd: 10}\n    expect:\n      recommended: gepa\n      estimated_cost: 0.63\n";

#[test]
fn a_failing_fixture_shows_expected_actual_and_the_rule() {
    let t = rules_copy("failing");
    std::fs::write(t.path().join("rules/tests/zz.yaml"), FAILING).expect("write");
    let r = run_in(
        t.path(),
        &["--rules", "rules", "rules", "test", "--filter", "wrong"],
        None,
    );
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stdout,
        "FAILED wrong_on_purpose (rules/tests/zz.yaml:2:11)\n  \
         rule that fired: `moderate_trainset_budget`\n  \
         recommended: expected `gepa`, got `miprov2`\n  \
         estimated_cost: expected 0.63, got 0.62\n\
         0 passed, 1 failed\n"
    );
}

#[test]
fn junit_report_lists_every_fixture_and_failure() {
    let t = rules_copy("junit");
    std::fs::write(t.path().join("rules/tests/zz.yaml"), FAILING).expect("write");
    let r = run_in(
        t.path(),
        &["--rules", "rules", "rules", "test", "--format", "junit"],
        None,
    );
    assert_eq!(r.code, 1);
    assert!(r
        .stdout
        .starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"));
    let cases = r.stdout.matches("<testcase ").count();
    let (passed, failed) = summary_line(&r.stderr);
    assert_eq!(cases, passed + failed);
    assert_eq!(failed, 1);
    assert!(r.stdout.contains("failures=\"1\""));
    assert!(r
        .stdout
        .contains("<failure message=\"recommended: expected `gepa`, got `miprov2`\">"));
    assert!(r.stdout.trim_end().ends_with("</testsuites>"));
}

fn dry_json(args: &[&str]) -> Value {
    let mut all = vec!["rules", "test", "--format", "json"];
    all.extend_from_slice(args);
    let r = run(&all);
    assert_eq!(r.code, 0, "{r:?}");
    serde_json::from_str(&r.stdout).expect("json body")
}

#[test]
fn dry_run_json_is_the_decision_body() {
    let v = dry_json(&["--set", "trainset_size=50", "--set", "budget_usd=4"]);
    let keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "alternatives",
            "confidence",
            "config",
            "estimated_cost",
            "estimated_time_minutes",
            "reasoning",
            "recommended",
            "rule",
            "rules_revision"
        ]
    );
    assert_eq!(v["recommended"], "gepa");
    assert_eq!(v["rule"], "small_trainset_low_budget");
    assert_eq!(v["estimated_cost"], 0.25);
    assert_eq!(v["estimated_time_minutes"], 2);
    assert_eq!(v["confidence"], 0.75);
    assert_eq!(
        v["config"],
        serde_json::json!({"auto": "medium", "max_bootstrapped_demos": 4, "max_labeled_demos": 4,
            "num_candidates": 5, "num_iters": 2, "num_threads": 8})
    );
    assert_eq!(v["alternatives"][0]["optimizer"], "reflection_metrics");
    assert_eq!(v["alternatives"][0]["quality_risk"], 0.15);
    assert_eq!(v["alternatives"][1]["optimizer"], "bootstrap_fewshot");
    // The revision is the one `rules check` reports.
    let check: Value =
        serde_json::from_str(&run(&["rules", "check", "--format", "json"]).stdout).expect("json");
    assert_eq!(v["rules_revision"], check["revision"]);
}

#[test]
fn explain_adds_the_trace() {
    let v = dry_json(&[
        "--set",
        "trainset_size=50",
        "--set",
        "budget_usd=10",
        "--explain",
    ]);
    let trace = &v["trace"];
    let rules = trace["rules"].as_array().expect("rules tried");
    assert_eq!(
        rules.last().expect("last")["id"],
        "moderate_trainset_budget"
    );
    assert_eq!(rules.last().expect("last")["matched"], true);
    let gepa = rules
        .iter()
        .find(|r| r["id"] == "small_trainset_low_budget")
        .expect("tried");
    let failed = gepa["conditions"]
        .as_array()
        .expect("conditions")
        .last()
        .expect("cond")
        .clone();
    assert_eq!(failed["field"], "budget_usd");
    assert_eq!(failed["actual"], 10.0);
    assert_eq!(failed["result"], false);
    assert_eq!(trace["estimate"]["raw_cost"], 0.625);
    assert_eq!(trace["estimate"]["cost"], 0.62);
    let human = run(&[
        "rules",
        "test",
        "--set",
        "trainset_size=50",
        "--set",
        "budget_usd=10",
        "--explain",
    ]);
    assert!(
        human
            .stdout
            .contains("skipped small_trainset_low_budget (rules/selection.yaml:"),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains("budget_usd lt 5.0: actual 10.0 → false"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("= 0.625 → $0.62"), "{}", human.stdout);
}

#[test]
fn input_file_object_gives_object_and_array_gives_array() {
    let t = TempDir::new("input");
    let obj = t.path().join("one.json");
    std::fs::write(&obj, r#"{"trainset_size": 10000, "budget_usd": 500}"#).expect("write");
    let v = dry_json(&["--input", obj.to_str().expect("path")]);
    assert_eq!(v["estimated_cost"], 250.0);
    let r = run_in(
        &root(),
        &[
            "rules",
            "test",
            "--format",
            "json",
            "--input",
            "-",
            "--set",
            "budget_usd=4",
        ],
        Some(r#"[{"trainset_size": 50}, {"trainset_size": 150}]"#),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let arr: Value = serde_json::from_str(&r.stdout).expect("json");
    let arr = arr.as_array().expect("array");
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["recommended"], "gepa");
    assert_eq!(arr[1]["recommended"], "miprov2");
}

#[test]
fn invalid_input_in_an_array_names_the_item() {
    let r = run_in(
        &root(),
        &["rules", "test", "--format", "json", "--input", "-"],
        Some(r#"[{"trainset_size": 50}, {"trainset_size": 0}]"#),
    );
    assert_eq!(r.code, 4);
    let v: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(v["error"], "invalid input");
    assert_eq!(v["index"], 1);
    assert_eq!(v["details"][0]["field"], "trainset_size");
    let bad = run_in(
        &root(),
        &["rules", "test", "--input", "-"],
        Some("{\"trainset_size\": 5,"),
    );
    assert_eq!(bad.code, 4);
    assert!(
        bad.stderr.starts_with("error: invalid json in `-`"),
        "{}",
        bad.stderr
    );
}

#[test]
fn history_file_feeds_confidence_and_reports_bad_lines() {
    let t = TempDir::new("history");
    let h = t.path().join("h.jsonl");
    std::fs::write(
        &h,
        concat!(
            r#"{"timestamp":"2026-01-20T10:00:00","trainset_size":50,"budget":4,"quality_target":0.85,"domain":"general","optimizer":"gepa","actual_cost":0.2,"actual_time":2,"quality":0.9}"#,
            "\n{not json\n",
            r#"{"timestamp":"2026-01-21T10:00:00","trainset_size":60,"budget":4,"quality_target":0.85,"domain":"general","optimizer":"gepa","actual_cost":0.3,"actual_time":3,"quality":0.7}"#,
            "\n"
        ),
    )
    .expect("write");
    let hp = h.to_str().expect("path");
    let r = run(&[
        "rules",
        "test",
        "--format",
        "json",
        "--set",
        "trainset_size=50",
        "--set",
        "budget_usd=4",
        "--history",
        hp,
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("warning: skipped malformed record"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("h.jsonl:2:"), "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).expect("json");
    // one success out of two: 0.75 + 0.1 * 0.5
    assert_eq!(v["confidence"], 0.8);
}

#[test]
fn bad_set_syntax_is_a_usage_error() {
    let r = run(&["rules", "test", "--set", "trainset_size"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("expected FIELD=VALUE"), "{}", r.stderr);
}

#[test]
fn junit_is_refused_for_dry_runs() {
    let r = run(&[
        "rules",
        "test",
        "--format",
        "junit",
        "--set",
        "trainset_size=5",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("`--format junit` is for fixture runs"));
}

#[test]
fn rules_dir_comes_from_the_environment_too() {
    let t = rules_copy("env");
    let out = std::process::Command::new(super::support::bin())
        .current_dir(t.path())
        .args(["rules", "check"])
        .env("SKILL_FLEET_RULES", t.path().join("rules"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn committed_schemas_match_the_code() {
    let r = run(&["rules", "schema", "--check"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let t = TempDir::new("schemas");
    let out = t.path().join("schemas");
    let w = run(&["rules", "schema", "--out", out.to_str().expect("path")]);
    assert_eq!(w.code, 0);
    let file = out.join("decision.schema.json");
    let text = std::fs::read_to_string(&file).expect("written");
    for name in [
        "rule-file.schema.json",
        "decision.schema.json",
        "history-record.schema.json",
    ] {
        let committed =
            std::fs::read_to_string(root().join("schemas").join(name)).expect("committed");
        let written = std::fs::read_to_string(out.join(name)).expect("written");
        assert_eq!(committed, written, "{name}");
    }
    std::fs::write(&file, text.replace("\"recommended\"", "\"recomended\"")).expect("write");
    let drift = run(&[
        "rules",
        "schema",
        "--check",
        "--out",
        out.to_str().expect("path"),
    ]);
    assert_eq!(drift.code, 1);
    assert!(
        drift.stderr.contains("decision.schema.json` differs"),
        "{}",
        drift.stderr
    );
    assert!(
        drift.stderr.contains("help: run `skill-fleet rules schema"),
        "{}",
        drift.stderr
    );
}

#[test]
fn bench_reports_a_rate() {
    let r = run(&[
        "rules",
        "bench",
        "-n",
        "2000",
        "--set",
        "trainset_size=800",
        "--set",
        "budget_usd=50",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("2000 evaluations in "), "{}", r.stdout);
    assert!(r.stdout.contains("evaluations/s"));
    assert!(
        r.stdout.contains("rule `large_trainset_mid_budget`"),
        "{}",
        r.stdout
    );
}

#[test]
fn help_lists_the_commands() {
    let r = run(&["rules", "--help"]);
    assert_eq!(r.code, 0);
    for cmd in ["check", "test", "schema", "bench"] {
        assert!(r.stdout.contains(cmd), "{}", r.stdout);
    }
    let t = run(&["rules", "test", "--help"]);
    assert!(
        t.stdout.contains("N passed, M failed") || t.stdout.contains("passed, M failed"),
        "{}",
        t.stdout
    );
}

#[test]
fn the_cli_and_the_server_accept_and_refuse_the_same_decision_inputs() {
    use super::support::{shipped_rules, test_config, TestServer};
    let srv = TestServer::start(test_config(&shipped_rules()), None);
    let bodies = [
        r#"{"trainset_size": 200, "budget_usd": 10}"#,
        r#"{"trainset_size": 200, "budget_dollars": 3}"#,
        r#"{"trainset_size": 5, "trainset_size": 6}"#,
        r#"{"trainset_size": 50, "budget_usd": 1, "budget_dollars": 2}"#,
        r#"{"trainset_size": 0}"#,
        r#"{"trainset_size": "many", "colour": "red"}"#,
        r#"{"budget_usd": 10}"#,
        r#"{"trainset_size": 50, "model": "no-such-model"}"#,
    ];
    for body in bodies {
        let http = srv.post_json("/api/v1/rules/evaluate", body);
        let cli = super::support::run_in(
            &super::support::root(),
            &["rules", "test", "--input", "-", "--format", "json"],
            Some(body),
        );
        let cli_json: Value = serde_json::from_str(&cli.stdout)
            .unwrap_or_else(|e| panic!("{body}: cli printed no JSON ({e}): {cli:?}"));
        if http.status == 200 {
            assert_eq!(
                cli.code, 0,
                "{body}: the server accepts it, the CLI does not: {cli:?}"
            );
            // The revision hashes the files with their paths as given (absolute here, relative
            // for the CLI); everything else must be equal.
            let (mut h, mut c) = (http.json(), cli_json);
            h["rules_revision"] = Value::Null;
            c["rules_revision"] = Value::Null;
            assert_eq!(h, c, "{body}");
        } else {
            assert_eq!(http.status, 422, "{body}: {http:?}");
            assert_eq!(
                cli.code, 4,
                "{body}: the server refuses it, the CLI does not: {cli:?}"
            );
            assert_eq!(http.json()["details"], cli_json["details"], "{body}");
        }
    }
}
