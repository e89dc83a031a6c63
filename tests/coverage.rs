//! `rules test --coverage [--threshold P]` run through the real binary: the shipped rules, and
//! `tests/data/coverage/partial/` (a copy of the shipped rules with an `expr:` rule and a Rhai
//! file, whose few fixtures leave rules, guard steps and a function unreached; golden output
//! `tests/data/coverage/partial.out`).

use super::support::{assert_golden, line, render_run, root, run};
use serde_json::Value;

const PARTIAL: &str = "tests/data/coverage/partial";

#[test]
fn shipped_fixtures_reach_everything() {
    let r = run(&["rules", "test", "--coverage", "--threshold", "100"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let report = r
        .stdout
        .split_once(" failed\n")
        .map(|(_, rest)| rest)
        .expect("summary line");
    assert!(
        report.starts_with("coverage: 17 of 17 reached (100.0%) by "),
        "{report}"
    );
    assert!(report.contains("\n  guard        7 of 7\n"), "{report}");
    assert!(!report.contains("never reached"), "{report}");
}

#[test]
fn a_rule_never_reached_is_listed_with_its_line() {
    let args = ["--rules", PARTIAL, "rules", "test", "--coverage"];
    let r = run(&args);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let sel = format!("{PARTIAL}/selection.yaml");
    let mid = line(&sel, "- id: large_trainset_mid_budget");
    assert!(
        r.stdout.contains(&format!(
            "\n  rule `large_trainset_mid_budget` ({sel}:{mid})\n"
        )),
        "{}",
        r.stdout
    );
    // The function the expression calls ran; the other one never did.
    assert!(r.stdout.contains("  rhai         2 of 3\n"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!(
            "\n  rhai function `never_called/1` ({PARTIAL}/helpers.rhai:8)\n"
        )),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("usd_per_example/2"), "{}", r.stdout);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    assert_golden(
        &root().join("tests/data/coverage/partial.out"),
        &render_run(&args, &r),
    );
}

#[test]
fn below_the_threshold_fails_with_the_test_failure_code() {
    let r = run(&[
        "--rules",
        PARTIAL,
        "rules",
        "test",
        "--coverage",
        "--threshold",
        "50",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("4 passed, 0 failed\n"), "{}", r.stdout);
    assert_eq!(
        r.stderr,
        "error: coverage 38.0% is below the threshold of 50%\n  \
         = help: add fixtures that reach what is listed as never reached\n"
    );
    let ok = run(&[
        "--rules",
        PARTIAL,
        "rules",
        "test",
        "--coverage",
        "--threshold",
        "38",
    ]);
    assert_eq!(ok.code, 0, "{ok:?}");
}

#[test]
fn json_report_carries_the_coverage() {
    let r = run(&[
        "--rules",
        PARTIAL,
        "rules",
        "test",
        "--coverage",
        "--threshold",
        "50",
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    let v: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(v["passed"], 4);
    let c = &v["coverage"];
    assert_eq!(c["covered"], 8);
    assert_eq!(c["total"], 21);
    assert_eq!(c["threshold"], 50.0);
    assert_eq!(c["meets_threshold"], false);
    assert_eq!(
        c["groups"]["rhai"],
        serde_json::json!({"covered": 2, "total": 3})
    );
    let items = c["items"].as_array().expect("items");
    let expr = items
        .iter()
        .find(|i| i["kind"] == "rhai_expr")
        .expect("the expr condition");
    assert_eq!(expr["hit"], true);
    assert_eq!(
        expr["at"],
        format!(
            "{PARTIAL}/selection.yaml:{}",
            line(&format!("{PARTIAL}/selection.yaml"), "- id: thin_budget") + 2
        )
    );
    let fallback = items
        .iter()
        .find(|i| i["kind"] == "fallback")
        .expect("fallback");
    assert_eq!(fallback["hit"], false);
}

#[test]
fn coverage_options_are_for_fixture_runs() {
    let dry = run(&["rules", "test", "--coverage", "--set", "trainset_size=5"]);
    assert_eq!(dry.code, 2);
    assert!(
        dry.stderr.contains("`--coverage` is for fixture runs"),
        "{}",
        dry.stderr
    );
    let alone = run(&["rules", "test", "--threshold", "50"]);
    assert_eq!(alone.code, 2);
    assert!(alone.stderr.contains("--coverage"), "{}", alone.stderr);
    let bad = run(&["rules", "test", "--coverage", "--threshold", "120"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("a percentage from 0 to 100"),
        "{}",
        bad.stderr
    );
}
