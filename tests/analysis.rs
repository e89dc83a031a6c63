//! Rule analysis as `rules check` reports it, run through the real binary: the shipped rules
//! (the two known regions, budget overruns, exit 0) and a planted rule that can never fire
//! (`tests/data/analysis/shadowed/`, golden output `tests/data/analysis/shadowed.out`).

use super::support::{assert_golden, line, render_run, root, run};
use serde_json::Value;

#[test]
fn shipped_rules_check_warns_about_the_two_regions_and_still_exits_0() {
    let r = run(&["rules", "check"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(" warnings\n"), "{}", r.stdout);
    let fallback = line("rules/selection.yaml", "id: fallback");
    let light = line("rules/selection.yaml", "- id: moderate_trainset_budget");
    let regions: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning: a larger"))
        .collect();
    assert_eq!(
        regions,
        [
            format!(
                "warning: a larger `budget_usd` gets a weaker optimizer where trainset_size < 500 and 20 ≤ budget_usd < 100: bootstrap_fewshot from `fallback` (rules/selection.yaml:{fallback}), while a smaller `budget_usd` gets miprov2 (light) from `moderate_trainset_budget` (rules/selection.yaml:{light})"
            ),
            format!(
                "warning: a larger `trainset_size` gets a weaker optimizer where 1 ≤ budget_usd < 20 and trainset_size ≥ 500: bootstrap_fewshot from `fallback` (rules/selection.yaml:{fallback}), while a smaller `trainset_size` gets miprov2 (light) from `moderate_trainset_budget` (rules/selection.yaml:{light})"
            ),
        ]
    );
    // The guard is on: its overruns are moot, hidden, and counted; `--all` shows them.
    assert!(!r.stderr.contains("with the guard off"), "{}", r.stderr);
    assert!(
        r.stdout.ends_with(
            "2 warnings\n8 notes hidden: estimates above the budget with the guard off, while `guard.enabled` is true; `rules check --all` shows them\n"
        ),
        "{}",
        r.stdout
    );
    assert!(!r.stderr.contains("never fire"), "{}", r.stderr);
    let all = run(&["rules", "check", "--all"]);
    assert_eq!(all.code, 0, "{all:?}");
    assert!(
        all.stderr.contains(
            "warning: rule `high_budget` can cost more than the budget with the guard off: 10000 examples at $500 → miprov2 (heavy) at $625"
        ),
        "{}",
        all.stderr
    );
    assert!(all.stdout.ends_with(", 10 warnings\n"), "{}", all.stdout);
}

#[test]
fn shipped_rules_check_json_lists_the_warnings() {
    let r = run(&["rules", "check", "--format", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stderr, "");
    let v: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(v["valid"], true);
    let diags = v["diagnostics"].as_array().expect("diagnostics");
    assert_eq!(v["warnings"].as_u64(), Some(diags.len() as u64));
    assert!(
        diags.iter().all(|d| d["severity"] == "warning"),
        "{diags:#?}"
    );
    let regions: Vec<&Value> = diags
        .iter()
        .filter(|d| {
            d["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("a larger"))
        })
        .collect();
    assert_eq!(regions.len(), 2);
    assert_eq!(v["warnings"], 2);
    assert_eq!(v["hidden"], 8);
    for d in regions {
        assert_eq!(d["file"], "rules/selection.yaml");
        assert_eq!(
            d["line"].as_u64(),
            Some(line("rules/selection.yaml", "id: fallback") as u64)
        );
        assert!(d["help"].as_str().is_some_and(|h| h.starts_with("e.g. ")));
    }
}

#[test]
fn a_planted_rule_that_can_never_fire_is_reported_at_its_line() {
    let dir = "tests/data/analysis/shadowed";
    let args = ["--rules", dir, "rules", "check"];
    let r = run(&args);
    assert_eq!(r.code, 0, "{r:?}");
    let planted = line(&format!("{dir}/selection.yaml"), "- id: small_and_cheap");
    assert!(
        r.stderr.contains(&format!(
            "warning: rule `small_and_cheap` can never fire: every input it matches is taken first by `tight_time_limit` ({dir}/selection.yaml:"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("--> {dir}/selection.yaml:{planted}:")),
        "{}",
        r.stderr
    );
    // Exactly one rule can never fire; the rest of the output is pinned by the golden file.
    assert_eq!(r.stderr.matches("can never fire").count(), 1);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    assert_golden(
        &root().join("tests/data/analysis/shadowed.out"),
        &render_run(&args, &r),
    );
}
