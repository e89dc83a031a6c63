//! The pre-commit hooks of `.pre-commit-hooks.yaml` do what they say: each hook's command
//! (entry + args, as pre-commit runs it with `pass_filenames: false`) passes on a good rules
//! directory and fails on a broken one.

use super::support::{bin, root, rules_copy};
use std::process::Command;

struct Hook {
    id: String,
    entry: Vec<String>,
    args: Vec<String>,
}

fn hooks() -> Vec<Hook> {
    let text = std::fs::read_to_string(root().join(".pre-commit-hooks.yaml")).unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let list = v.as_sequence().expect("a list of hooks");
    list.iter()
        .map(|h| {
            let s = |k: &str| h[k].as_str().unwrap_or_default().to_string();
            assert_eq!(h["pass_filenames"].as_bool(), Some(false), "{}", s("id"));
            assert_eq!(s("language"), "rust", "{}", s("id"));
            let args = h["args"]
                .as_sequence()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            Hook {
                id: s("id"),
                entry: s("entry").split_whitespace().map(String::from).collect(),
                args,
            }
        })
        .collect()
}

fn run_hook(h: &Hook, cwd: &std::path::Path) -> std::process::Output {
    assert_eq!(
        h.entry[0], "skill-fleet",
        "{}: the entry runs the binary",
        h.id
    );
    Command::new(bin())
        .args(&h.entry[1..])
        .args(&h.args)
        .current_dir(cwd)
        .env_remove("SKILL_FLEET_RULES")
        .output()
        .expect("run hook")
}

#[test]
fn each_hook_passes_on_good_rules_and_fails_on_broken_ones() {
    let hooks = hooks();
    let ids: Vec<&str> = hooks.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["skill-fleet-rules-check", "skill-fleet-rules-test"]);

    let good = rules_copy("hook-good");
    for h in &hooks {
        let out = run_hook(h, good.path());
        assert!(out.status.success(), "{} on good rules: {out:?}", h.id);
    }

    // Broken for `check`: a threshold that is not a number.
    let syntax = rules_copy("hook-syntax");
    let sel = syntax.path().join("rules/selection.yaml");
    let text = std::fs::read_to_string(&sel).unwrap();
    std::fs::write(&sel, text.replacen("lt: 1.0", "lt: oops", 1)).unwrap();
    // Broken for `test` only: a valid rule set whose fixture no longer holds.
    let fixture = rules_copy("hook-fixture");
    let sel = fixture.path().join("rules/selection.yaml");
    let text = std::fs::read_to_string(&sel).unwrap();
    let changed = text.replacen("lt: 1.0", "lt: 0.5", 1);
    assert_ne!(changed, text);
    std::fs::write(&sel, changed).unwrap();

    for h in &hooks {
        let out = run_hook(h, syntax.path());
        assert!(
            !out.status.success(),
            "{} on a broken rule set passed",
            h.id
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("rules/selection.yaml:"), "{}: {err}", h.id);
    }
    let test_hook = &hooks[1];
    let out = run_hook(test_hook, fixture.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("failed"));
}
