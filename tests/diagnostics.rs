//! Golden tests of every rule-set diagnostic a maintainer can see, run through the real binary.
//!
//! # Cases
//!
//! A case is named `[test-][replace-<file>--]<name>` and lives in `tests/data/diagnostics/`:
//! one fixture file `<case>.yaml` or `<case>.rhai` (or both, sharing the case name) and its
//! golden output `<case>.out`. The first line of a fixture file is a comment saying what it
//! plants (`#` in YAML, `//` in Rhai).
//!
//! For each case the harness copies the shipped rules to `<tmp>/rules`
//! ([`support::rules_copy`]) and plants the fixture files in the copy:
//!
//! - `<case>.yaml` whose name (after an optional `test-`) starts with `replace-<file>--`
//!   replaces the shipped `rules/<file>.yaml`: `replace-selection--unknown-optimizer.yaml`
//!   becomes `rules/selection.yaml`;
//! - every other fixture file is added as `rules/<name>.<ext>`, `<name>` being the case name
//!   without its prefixes: `several-problems.rhai` becomes `rules/several-problems.rhai`, and
//!   `test-replace-selection--runaway-loop.rhai` becomes `rules/runaway-loop.rhai`.
//!
//! Then it runs `skill-fleet --rules rules rules check` in `<tmp>`, so paths print as
//! `rules/...`. A `test-` case runs `skill-fleet --rules rules rules test --filter planted`
//! instead: the fixtures it plants are named `planted_…`, and the filter keeps the shipped
//! fixtures out of its golden output.
//!
//! A few cases do not fit the copy-and-plant scheme (a missing or empty rules directory, dry
//! runs with input outside the context bounds); they have no fixture file, set up their own
//! directory and arguments (see [`Setup`]), and have a golden `<case>.out` all the same.
//!
//! # Golden files
//!
//! ```text
//! $ skill-fleet ARGS…
//! exit: CODE
//! --- stdout
//! …
//! --- stderr
//! …
//! ```
//!
//! `UPDATE_GOLDEN=1 cargo test --test main diagnostics` rewrites the `.out` files instead of
//! comparing; review the diff before committing it. A mismatch prints a line diff.
//!
//! Every file in `tests/data/diagnostics/` must belong to a case listed below
//! ([`every_file_in_the_data_directory_has_a_test`]).

use super::support::{assert_golden, render_run, root, rules_copy, run_in, Run, TempDir};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// A run that takes longer than this is a hang: the sandbox limits should stop any script
/// long before.
const TIMEOUT: Duration = Duration::from_secs(120);

/// How a case gets its rules directory and arguments.
#[derive(Debug, Clone, Copy)]
enum Setup {
    /// Copy the shipped rules and plant the case's fixture files (see the module docs).
    Planted,
    /// `--rules rules` where `rules` does not exist; with `--format` when given.
    MissingDir(Option<&'static str>),
    /// `--rules rules` where `rules` is an empty directory.
    EmptyDir,
    /// `rules test ARGS` on an unchanged copy of the shipped rules.
    DryRun(&'static [&'static str]),
}

macro_rules! cases {
    ($($test:ident: $case:literal => $setup:expr;)*) => {
        /// Every case, by name.
        const CASES: &[(&str, Setup)] = &[$(($case, $setup)),*];
        $(
            #[test]
            fn $test() {
                check_case($case, $setup);
            }
        )*
    };
}

cases! {
    // YAML syntax.
    yaml_syntax_unclosed_flow_mapping: "yaml-syntax" => Setup::Planted;
    yaml_syntax_unterminated_quote: "yaml-unterminated-quote" => Setup::Planted;
    // Schema violations.
    schema_wrong_type: "replace-cost--wrong-type" => Setup::Planted;
    schema_unknown_key: "replace-selection--unknown-key" => Setup::Planted;
    schema_out_of_range: "replace-confidence--out-of-range" => Setup::Planted;
    fixture_expect_unknown_field: "expect-unknown-field" => Setup::Planted;
    // Semantic checks of the selection rules.
    unknown_optimizer: "replace-selection--unknown-optimizer" => Setup::Planted;
    duplicate_rule_id: "replace-selection--duplicate-rule-id" => Setup::Planted;
    condition_on_unknown_field: "replace-selection--unknown-field" => Setup::Planted;
    string_field_compared_with_numbers: "replace-selection--string-vs-number" => Setup::Planted;
    // Rhai.
    rhai_syntax_inline_expr: "replace-selection--rhai-syntax-inline" => Setup::Planted;
    rhai_unknown_variable_inline_expr: "replace-selection--rhai-unknown-variable" => Setup::Planted;
    rhai_syntax_script_file: "rhai-syntax-script" => Setup::Planted;
    rhai_runaway_loop: "test-replace-selection--runaway-loop" => Setup::Planted;
    rhai_endless_recursion: "test-replace-selection--endless-recursion" => Setup::Planted;
    rhai_runtime_error_in_script_function: "test-replace-selection--script-runtime-error"
        => Setup::Planted;
    // Everything at once.
    several_problems_in_several_files: "several-problems" => Setup::Planted;
    // The rules directory itself.
    missing_rules_dir: "missing-rules-dir" => Setup::MissingDir(None);
    missing_rules_dir_json: "missing-rules-dir-json" => Setup::MissingDir(Some("json"));
    empty_rules_dir: "empty-rules-dir" => Setup::EmptyDir;
    // Dry-run input outside the context bounds.
    dry_run_trainset_zero: "dry-run-trainset-zero"
        => Setup::DryRun(&["--set", "trainset_size=0"]);
    dry_run_trainset_zero_json: "dry-run-trainset-zero-json"
        => Setup::DryRun(&["--set", "trainset_size=0", "--format", "json"]);
    dry_run_negative_budget: "dry-run-negative-budget"
        => Setup::DryRun(&["--set", "trainset_size=50", "--set", "budget_usd=-1"]);
    dry_run_negative_budget_json: "dry-run-negative-budget-json"
        => Setup::DryRun(&["--set", "trainset_size=50", "--set", "budget_usd=-1", "--format", "json"]);
    dry_run_quality_above_one: "dry-run-quality-above-one"
        => Setup::DryRun(&["--set", "trainset_size=50", "--set", "quality_target=1.5"]);
    dry_run_quality_above_one_json: "dry-run-quality-above-one-json"
        => Setup::DryRun(&["--set", "trainset_size=50", "--set", "quality_target=1.5", "--format", "json"]);
}

fn data_dir() -> PathBuf {
    root().join("tests/data/diagnostics")
}

/// The case a file of the data directory belongs to: its name without the extension.
fn case_of(file_name: &str) -> &str {
    file_name
        .rsplit_once('.')
        .map_or(file_name, |(stem, _)| stem)
}

/// The fixture files of a case (everything named `<case>.*` except the golden output).
fn fixture_files(case: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .expect("read tests/data/diagnostics")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            case_of(name) == case && !name.ends_with(".out")
        })
        .collect();
    files.sort();
    files
}

/// Plants one fixture file into `rules` (see the module docs for the mapping).
fn plant(rules: &Path, fixture: &Path) {
    let name = fixture
        .file_name()
        .and_then(|n| n.to_str())
        .expect("utf-8 file name");
    let (case, ext) = name
        .rsplit_once('.')
        .expect("fixture files have an extension");
    let rest = case.strip_prefix("test-").unwrap_or(case);
    let dest = match rest
        .strip_prefix("replace-")
        .and_then(|r| r.split_once("--"))
    {
        Some((file, _)) if ext == "yaml" => {
            let shipped = rules.join(format!("{file}.yaml"));
            assert!(
                shipped.is_file(),
                "{name} replaces rules/{file}.yaml, which is not a shipped file"
            );
            shipped
        }
        Some((_, short)) => rules.join(format!("{short}.{ext}")),
        None => rules.join(format!("{rest}.{ext}")),
    };
    let text = std::fs::read_to_string(fixture).expect("read fixture");
    let comment = if ext == "rhai" { "//" } else { "#" };
    assert!(
        text.starts_with(comment),
        "the first line of {name} must be a `{comment}` comment saying what it plants"
    );
    std::fs::write(&dest, text).expect("plant fixture");
}

/// Runs the binary, failing the test instead of hanging when it does not finish.
fn run_with_timeout(cwd: &Path, args: &[String]) -> Run {
    let (tx, rx) = mpsc::channel();
    let cwd = cwd.to_path_buf();
    let owned = args.to_vec();
    std::thread::spawn(move || {
        let args: Vec<&str> = owned.iter().map(String::as_str).collect();
        let _ = tx.send(run_in(&cwd, &args, None));
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(run) => run,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!(
            "`skill-fleet {}` did not finish within {TIMEOUT:?}",
            args.join(" ")
        ),
        // The thread panicked (e.g. `run_in` saw a panic of the binary): its message is above.
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("running skill-fleet failed"),
    }
}

/// Sets up the case's directory and runs it; returns the rendered output.
fn run_case(case: &str, setup: Setup) -> String {
    let strs = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (dir, args): (TempDir, Vec<String>) = match setup {
        Setup::Planted => {
            let dir = rules_copy(case);
            let files = fixture_files(case);
            assert!(
                !files.is_empty(),
                "case `{case}` has no fixture file in tests/data/diagnostics"
            );
            for f in &files {
                plant(&dir.path().join("rules"), f);
            }
            let args = if case.starts_with("test-") {
                strs(&["--rules", "rules", "rules", "test", "--filter", "planted"])
            } else {
                strs(&["--rules", "rules", "rules", "check"])
            };
            (dir, args)
        }
        Setup::MissingDir(format) => {
            let mut args = strs(&["--rules", "rules", "rules", "check"]);
            if let Some(f) = format {
                args.extend(strs(&["--format", f]));
            }
            (TempDir::new(case), args)
        }
        Setup::EmptyDir => {
            let dir = TempDir::new(case);
            std::fs::create_dir(dir.path().join("rules")).expect("create empty rules dir");
            (dir, strs(&["--rules", "rules", "rules", "check"]))
        }
        Setup::DryRun(extra) => {
            let mut args = strs(&["--rules", "rules", "rules", "test"]);
            args.extend(strs(extra));
            (rules_copy(case), args)
        }
    };
    let r = run_with_timeout(dir.path(), &args);
    render_run(&args, &r)
}

fn check_case(case: &str, setup: Setup) {
    let actual = run_case(case, setup);
    assert_golden(&data_dir().join(format!("{case}.out")), &actual);
}

#[test]
fn every_file_in_the_data_directory_has_a_test() {
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(data_dir()).expect("read tests/data/diagnostics") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let case = case_of(&name);
        let known = CASES.iter().find(|(c, _)| *c == case);
        let ok = match known {
            // Golden output of any case.
            Some(_) if name.ends_with(".out") => true,
            // Fixture files only for planted cases, and only of the kinds planted.
            Some((_, Setup::Planted)) => name.ends_with(".yaml") || name.ends_with(".rhai"),
            _ => false,
        };
        if !ok {
            orphans.push(name);
        }
    }
    orphans.sort();
    assert!(
        orphans.is_empty(),
        "files in tests/data/diagnostics without a case in tests/diagnostics.rs \
         (add the case to `cases!`): {orphans:?}"
    );
}
