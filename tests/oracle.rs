//! The independent oracle: `tests/oracle/original.py` transcribes the original selector's
//! expressions in Python (its own floats and `round`) and compares them with the real binary's
//! `rules test --input - --format json` on 10,000 seeded random inputs, guard off.

use super::support::{bin, copy_dir, root, shipped_rules, TempDir};
use std::process::Command;

/// The shipped rules with the budget guard off: the rule set that promises the original.
fn rules_with_guard_off(dir: &TempDir) -> std::path::PathBuf {
    let rules = dir.path().join("rules");
    copy_dir(&shipped_rules(), &rules);
    let guard = rules.join("guard.yaml");
    let text = std::fs::read_to_string(&guard).expect("read guard.yaml");
    let off = text.replacen("\n  enabled: true\n", "\n  enabled: false\n", 1);
    assert_ne!(
        off, text,
        "guard.yaml no longer has `enabled: true` where expected"
    );
    std::fs::write(&guard, off).expect("write guard.yaml");
    rules
}

/// Runs the oracle on `n` seeded inputs against `rules`.
fn oracle(rules: &std::path::Path, n: u32) -> std::process::Output {
    Command::new("python3")
        .arg(root().join("tests/oracle/original.py"))
        .arg("--bin")
        .arg(bin())
        .arg("--rules")
        .arg(rules)
        .args(["--n", &n.to_string(), "--seed", "7"])
        .output()
        .expect("run python3 tests/oracle/original.py (python3 must be on the PATH)")
}

#[test]
fn the_shipped_rules_with_the_guard_off_equal_the_original_on_10000_random_inputs() {
    let dir = TempDir::new("oracle");
    let out = oracle(&rules_with_guard_off(&dir), 10_000);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the oracle found differences:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("oracle: 10000 passed, 0 failed"),
        "unexpected oracle summary:\n{stdout}\n{stderr}"
    );
}

#[test]
fn the_oracle_sees_a_cent() {
    // The oracle must be able to fail: a rule set whose MIPROv2 light multiplier is off by a
    // hair gives other cents on some inputs.
    let dir = TempDir::new("oracle-fails");
    let rules = rules_with_guard_off(&dir);
    let cost = rules.join("cost.yaml");
    let text = std::fs::read_to_string(&cost).expect("read cost.yaml");
    let changed = text.replacen("light: 0.5", "light: 0.5000001", 1);
    assert_ne!(changed, text, "cost.yaml no longer has `light: 0.5`");
    std::fs::write(&cost, changed).expect("write cost.yaml");
    let out = oracle(&rules, 2_000);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("estimated_cost: original"), "{stdout}");
}
