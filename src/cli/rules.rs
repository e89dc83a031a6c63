//! `skill-fleet rules check|test|schema|bench`.

use super::coverage;
use super::render;
use super::rules_args::{BenchArgs, CheckArgs, Format, RulesCommand, SchemaArgs, TestArgs};
use super::{CliError, Exit};
use crate::check::fixtures;
use crate::diagnostic::{render_all, Diagnostic, Severity, SourceFile};
use crate::engine::{self, Options};
use crate::rules::{self, RuleSet};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Runs a `rules` subcommand.
pub fn run(
    dir: &Path,
    cmd: RulesCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    match cmd {
        RulesCommand::Check(a) => check(dir, &a, out, err),
        RulesCommand::Test(a) => test(dir, a, out, err),
        RulesCommand::Schema(a) => schema_cmd(&a, out),
        RulesCommand::Bench(a) => bench(dir, &a, out, err),
        RulesCommand::Calibrate(a) => super::calibrate::run(dir, a, out),
        RulesCommand::Diff(a) => super::rules_diff::run(dir, a, out, err),
    }
}

/// Loads and builds the rule set; warnings are printed, an invalid rule set is the error (as
/// JSON on `out` with `--format json`).
fn load(
    dir: &Path,
    format: Format,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(RuleSet, Vec<SourceFile>), CliError> {
    let files = match crate::loader::read_dir(dir) {
        Ok(f) => f,
        Err(e) => {
            let code = super::read_error_exit(&e);
            if code == Exit::Io && format == Format::Human {
                // Nothing was read, so there is no rule set to call invalid.
                return Err(e.into());
            }
            return Err(invalid(
                vec![e.into_diagnostic()],
                Vec::new(),
                code,
                format,
                dir,
                out,
            ));
        }
    };
    match rules::build(&files) {
        Ok(rs) => {
            if !rs.warnings.is_empty() && format == Format::Human {
                let _ = write!(err, "{}", render_all(&rs.warnings, &files));
            }
            Ok((rs, files))
        }
        Err(diags) => Err(invalid(diags, files, Exit::InvalidRules, format, dir, out)),
    }
}

/// An invalid rule set: its diagnostics and a summary, or the JSON report printed on `out`.
fn invalid(
    diags: Vec<Diagnostic>,
    files: Vec<SourceFile>,
    exit: Exit,
    format: Format,
    dir: &Path,
    out: &mut dyn Write,
) -> CliError {
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diags.len() - errors;
    if format == Format::Json {
        let body = serde_json::json!({
            "valid": false,
            "rules": dir.display().to_string(),
            "errors": errors,
            "warnings": warnings,
            "diagnostics": diags,
        });
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
        return CliError::reported(exit);
    }
    let summary = format!(
        "rule set `{}` is invalid: {}{}",
        dir.display(),
        plural(errors, "error"),
        if warnings > 0 {
            format!(", {}", plural(warnings, "warning"))
        } else {
            String::new()
        }
    );
    CliError::diagnostics(exit, diags, files).conclude(summary)
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn check(
    dir: &Path,
    a: &CheckArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    let (format, all) = (a.format, a.all);
    let (mut rs, files) = load(dir, format, out, err)?;
    // Rule analysis: warnings only, so the exit code stays 0.
    let analysis = {
        let _budget = crate::rules::deadline::overall(a.analysis_timeout.saturating_mul(1000));
        crate::check::analysis::analyze_for_check(&rs)
    };
    let mut findings = analysis.shown;
    let hidden = if all {
        findings.extend(analysis.moot);
        0
    } else {
        analysis.moot.len()
    };
    if format == Format::Human {
        let _ = write!(err, "{}", render_all(&findings, &files));
    }
    rs.warnings.extend(findings);
    if format == Format::Json {
        let body = serde_json::json!({
            "valid": true,
            "rules": dir.display().to_string(),
            "revision": &*rs.revision,
            "files": rs.files,
            "rules_count": rs.rules.len(),
            "fixtures": rs.fixtures.len(),
            "errors": 0,
            "warnings": rs.warnings.len(),
            "hidden": hidden,
            "diagnostics": rs.warnings,
        });
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
    } else {
        let _ = writeln!(
            out,
            "rule set `{}` is valid: revision {}, {}, {} and a fallback, {}{}",
            dir.display(),
            rs.revision,
            plural(rs.files.len(), "file"),
            plural(rs.rules.len(), "rule"),
            plural(rs.fixtures.len(), "fixture"),
            if rs.warnings.is_empty() {
                String::new()
            } else {
                format!(", {}", plural(rs.warnings.len(), "warning"))
            }
        );
        if hidden > 0 {
            let _ = writeln!(
                out,
                "{} hidden: estimates above the budget with the guard off, while `guard.enabled` is true; `rules check --all` shows them",
                plural(hidden, "note")
            );
        }
    }
    Ok(Exit::Ok)
}

fn test(
    dir: &Path,
    a: TestArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    let dry_run = !a.set.is_empty() || a.input.is_some();
    if a.format == Format::Junit && dry_run {
        return Err(CliError::usage("`--format junit` is for fixture runs")
            .help("use `--format json` with --set or --input"));
    }
    if a.coverage && dry_run {
        return Err(CliError::usage("`--coverage` is for fixture runs")
            .help("leave out --set and --input to run the fixtures"));
    }
    let (rs, files) = load(dir, a.format, out, err)?;
    if dry_run {
        super::dry_run::dry(&rs, &a, out, err)
    } else {
        run_fixtures(&rs, &files, &a, out, err)
    }
}

fn run_fixtures(
    rs: &RuleSet,
    files: &[SourceFile],
    a: &TestArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    let results = fixtures::run(rs, a.filter.as_deref());
    let failed = results.iter().filter(|r| !r.passed()).count();
    let passed = results.len() - failed;
    let cov = if a.coverage {
        match crate::check::coverage::run(files, a.filter.as_deref()) {
            Ok(c) => Some(c),
            Err(diags) => return Err(CliError::rules(diags, files.to_vec())),
        }
    } else {
        None
    };
    let below = cov
        .as_ref()
        .is_some_and(|c| !coverage::meets(c, a.threshold));
    match a.format {
        Format::Junit => {
            let _ = write!(out, "{}", render::junit(&results, &rs.revision));
            let _ = writeln!(err, "{passed} passed, {failed} failed");
            if let Some(c) = &cov {
                let _ = write!(err, "{}", coverage::human(c));
            }
        }
        Format::Json => {
            let mut body = serde_json::json!({
                "revision": &*rs.revision,
                "passed": passed,
                "failed": failed,
                "results": results.iter().map(|r| serde_json::json!({
                    "name": r.name,
                    "at": r.at,
                    "passed": r.passed(),
                    "rule": r.rule,
                    "failures": r.failures,
                    "error": r.error,
                })).collect::<Vec<_>>(),
            });
            if let Some(c) = &cov {
                body["coverage"] = coverage::json(c, a.threshold);
            }
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&body).unwrap_or_default()
            );
        }
        Format::Human => {
            let _ = write!(out, "{}", render::fixture_report(&results, files));
            if results.is_empty() {
                if let Some(f) = &a.filter {
                    let _ = writeln!(err, "warning: no fixture name contains `{f}`");
                }
            }
            let _ = writeln!(out, "{passed} passed, {failed} failed");
            if let Some(c) = &cov {
                let _ = write!(out, "{}", coverage::human(c));
            }
        }
    }
    if let (true, Some(c)) = (below, &cov) {
        return Err(CliError::failed(format!(
            "coverage {} is below the threshold of {}%",
            coverage::percent(c),
            coverage::num(a.threshold)
        ))
        .help("add fixtures that reach what is listed as never reached"));
    }
    // Failed fixtures are a result, reported above, not an error.
    Ok(if failed > 0 { Exit::Failed } else { Exit::Ok })
}

fn schema_cmd(a: &SchemaArgs, out: &mut dyn Write) -> Result<Exit, CliError> {
    let docs = crate::schemas::all();
    if a.check {
        let mut stale = Vec::new();
        for d in &docs {
            let path = a.out.join(d.file);
            match std::fs::read_to_string(&path) {
                Ok(t) if t == d.text => {}
                Ok(_) => stale.push(format!(
                    "`{}` differs from the schema generated by the code",
                    path.display()
                )),
                Err(_) => stale.push(format!("`{}` is missing", path.display())),
            }
        }
        if stale.is_empty() {
            let _ = writeln!(
                out,
                "{} schemas in `{}` are up to date",
                docs.len(),
                a.out.display()
            );
            return Ok(Exit::Ok);
        }
        return Err(CliError::all(Exit::Failed, stale).help(format!(
            "run `skill-fleet rules schema --out {}` and commit the result",
            a.out.display()
        )));
    }
    std::fs::create_dir_all(&a.out)
        .map_err(|e| CliError::io(format!("cannot create `{}`: {e}", a.out.display())))?;
    for d in &docs {
        let path = a.out.join(d.file);
        std::fs::write(&path, &d.text)
            .map_err(|e| CliError::io(format!("cannot write `{}`: {e}", path.display())))?;
        let _ = writeln!(out, "wrote {}", path.display());
    }
    Ok(Exit::Ok)
}

fn bench(
    dir: &Path,
    a: &BenchArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    let (rs, _) = load(dir, Format::Human, out, err)?;
    let mut input = serde_json::Map::new();
    if a.set.is_empty() {
        input.insert("trainset_size".into(), 200.into());
        input.insert("budget_usd".into(), 10.into());
    }
    for (k, v) in &a.set {
        input.insert(k.clone(), v.clone());
    }
    let ctx = rs
        .check_input(&input)
        .map_err(|errors| CliError::invalid_input(errors, None))?;
    let opts = Options::default();
    let first = engine::recommend(&rs, &ctx, &[], opts)
        .map_err(|e| CliError::rules(vec![e.to_diagnostic()], Vec::new()))?;
    // Warm up, then time.
    let warm = (a.n / 10).max(1);
    for _ in 0..warm {
        let _ = std::hint::black_box(engine::recommend(
            &rs,
            std::hint::black_box(&ctx),
            &[],
            opts,
        ));
    }
    let start = Instant::now();
    for _ in 0..a.n {
        let _ = std::hint::black_box(engine::recommend(
            &rs,
            std::hint::black_box(&ctx),
            &[],
            opts,
        ));
    }
    let secs = start.elapsed().as_secs_f64();
    let per = secs * 1e9 / a.n as f64;
    let _ = writeln!(
        out,
        "{} evaluations in {:.3} s: {:.0} evaluations/s, {:.0} ns/decision (rule `{}`, {}, revision {})",
        a.n,
        secs,
        a.n as f64 / secs,
        per,
        first.rule,
        first.recommended,
        rs.revision
    );
    if cfg!(debug_assertions) {
        let _ = writeln!(
            err,
            "warning: this is a debug build; use `cargo run --release` for real figures"
        );
    }
    Ok(Exit::Ok)
}
