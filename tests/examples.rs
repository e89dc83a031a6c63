//! The rule sets under `examples/`: each must be valid and pass its own fixtures with the real
//! binary, and the token-cost set must price a dry run as computed by hand.

use super::support::{root, run, Run};
use std::path::{Path, PathBuf};

fn is_rule_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "rhai")
    )
}

fn has_rule_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .expect("read example dir")
        .map(|e| e.expect("entry").path())
        .any(|p| {
            if p.is_dir() {
                has_rule_files(&p)
            } else {
                is_rule_file(&p)
            }
        })
}

/// Every directory directly under `examples/` that holds rule files (at any depth).
fn example_sets() -> Vec<PathBuf> {
    let mut sets: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .expect("read examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir() && has_rule_files(p))
        .collect();
    sets.sort();
    sets
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// The `N passed, M failed` line of a fixture run, as (N, M).
fn summary(r: &Run) -> Option<(usize, usize)> {
    r.stdout.lines().find_map(|l| {
        let (p, f) = l.trim().split_once(" passed, ")?;
        let f = f.strip_suffix(" failed")?;
        Some((p.parse().ok()?, f.parse().ok()?))
    })
}

#[test]
fn examples_directory_has_rule_sets() {
    let sets = example_sets();
    assert!(
        sets.iter().any(|p| p.ends_with("token-cost")),
        "examples/token-cost is missing: {sets:?}"
    );
}

#[test]
fn every_example_rule_set_is_valid() {
    for dir in example_sets() {
        let d = rel(&dir);
        let r = run(&["--rules", &d, "rules", "check"]);
        assert_eq!(
            r.code, 0,
            "`rules check` of {d} failed:\n{}{}",
            r.stdout, r.stderr
        );
        assert!(r.stdout.contains("is valid"), "{d}: {}", r.stdout);
    }
}

#[test]
fn every_example_rule_set_passes_its_fixtures() {
    for dir in example_sets() {
        let d = rel(&dir);
        let r = run(&["--rules", &d, "rules", "test"]);
        assert_eq!(
            r.code, 0,
            "`rules test` of {d} failed:\n{}{}",
            r.stdout, r.stderr
        );
        match summary(&r) {
            Some((passed, 0)) if passed > 0 => {}
            other => panic!(
                "{d}: expected `N passed, 0 failed` with N > 0, got {other:?}:\n{}",
                r.stdout
            ),
        }
    }
}

#[test]
fn token_cost_dry_run_prices_tokens() {
    let r = run(&[
        "--rules",
        "examples/token-cost",
        "rules",
        "test",
        "--set",
        "trainset_size=800",
        "--set",
        "budget_usd=100",
        "--set",
        "domain=code",
        "--set",
        "model=gemini-3-pro-preview",
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let d: serde_json::Value = serde_json::from_str(&r.stdout).expect("json decision");
    // $0.125 per example, domain code, normal priority, 800 examples: no rule matches, the
    // fallback picks miprov2 light. calls = 800 x 10 x 0.5 = 4000;
    // input 4000 x 2000 / 1e6 = 8 Mtok x $2.00 = 16.00; output 4000 x 500 / 1e6 = 2 Mtok x
    // $12.00 = 24.00; cost 40.00, within the $100 budget.
    // minutes = 800 / 100 x 15 x 0.5 x 1.5 (time multiplier of the pro model) = 90.
    assert_eq!(d["recommended"], "miprov2", "{d}");
    assert_eq!(d["rule"], "fallback", "{d}");
    assert_eq!(d["config"]["auto"], "light", "{d}");
    assert_eq!(d["estimated_cost"].as_f64(), Some(40.0), "{d}");
    assert_eq!(d["estimated_time_minutes"].as_u64(), Some(90), "{d}");
}

#[test]
fn only_rule_sets_with_rhai_are_evaluated_off_the_request_threads() {
    let build = |dir: &Path| {
        let files = skill_fleet::loader::read_dir(dir).expect("read");
        skill_fleet::rules::build(&files).expect("valid")
    };
    assert!(!build(&root().join("rules")).runs_rhai);
    assert!(build(&root().join("examples/token-cost")).runs_rhai);
}
