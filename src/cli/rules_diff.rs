//! `skill-fleet rules diff --against DIR [--since 7d]`: what a rules change would do, replayed
//! on the logged decisions and the fixtures of both rule sets.

use super::{CliError, Exit};
use crate::check::impact::{Impact, Replay, Source};
use crate::rules::RuleSet;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `rules diff`.
#[derive(Debug, Args)]
#[command(
    after_help = "Replays the decisions in the decision log (within --since) and the fixtures of both \
rule sets through the current rules (--rules, default `rules/`) and the candidate (--against), and \
prints how many decisions change, grouped by old -> new optimizer, with the cost delta and example \
inputs. Exit code 0 whatever changes; use --format json in CI.\n\nExamples:\n  \
git worktree add /tmp/main main && skill-fleet rules diff --rules /tmp/main/rules --against rules\n  \
skill-fleet rules diff --against ../candidate/rules --since 30d --format json"
)]
pub struct DiffArgs {
    /// The candidate rule set.
    #[arg(long, value_name = "DIR")]
    pub against: PathBuf,
    /// Logged decisions made within this age (7d, 12h, 2w) or `all`.
    #[arg(long, value_name = "AGE", default_value = "7d")]
    pub since: String,
    /// SQLite file or `postgres://` URL with the decision log [default: database.path from the
    /// config file, or
    /// SKILL_FLEET_DB]; without one, only the fixtures are replayed.
    #[arg(long, value_name = "PATH|URL")]
    pub db: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = super::store_args::Format::Human)]
    pub format: super::store_args::Format,
}

fn build(dir: &Path, flag: &str) -> Result<RuleSet, CliError> {
    let files = crate::loader::read_dir(dir).map_err(|e| match flag {
        "--against" => e.with_help(
            "--against names the candidate rule set, e.g. `--against ../candidate/rules`",
        ),
        _ => e,
    })?;
    match crate::rules::build(&files) {
        Ok(rs) => Ok(rs),
        Err(diags) => {
            Err(CliError::rules(diags, files)
                .and(format!("rule set `{}` is invalid", dir.display())))
        }
    }
}

/// Runs `rules diff`.
pub fn run(
    dir: &Path,
    a: DiffArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    let age = crate::util::time::parse_age(&a.since)
        .map_err(|m| CliError::usage(format!("invalid --since: {m}")))?;
    let before = build(dir, "--rules")?;
    let after = build(&a.against, "--against")?;
    let mut replay = Replay::new(&before, &after);
    let path = super::store_args::resolve_path(a.db.as_deref())?;
    let mut note = None;
    if crate::store::exists(&path).unwrap_or(false) {
        let store = super::store_args::open_read(&path)?;
        let since_ms = age.map_or(i64::MIN, |x| store.now_ms().saturating_sub(x));
        let r = store.each_decision_since(since_ms, |d| {
            replay.add(Source::Decision(d.id), &d.input);
        });
        let _ = store.close();
        r.map_err(|e| CliError::io(format!("reading the decision log: {e}")))?;
    } else {
        note = Some(format!(
            "no database at `{}`: only the fixtures were replayed",
            crate::store::display_location(&path)
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for f in before.fixtures.iter().chain(after.fixtures.iter()) {
        if seen.insert(f.spec.name.clone()) {
            replay.add(
                Source::Fixture(f.spec.name.clone()),
                &serde_json::Value::Object(f.spec.input.clone()),
            );
        }
    }
    let impact = replay.finish();
    match a.format {
        super::store_args::Format::Json => {
            let mut v = serde_json::to_value(&impact).unwrap_or_default();
            v["window"] = a.since.clone().into();
            v["database"] = crate::store::display_location(&path).into();
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            );
        }
        super::store_args::Format::Human => {
            if let Some(n) = note {
                let _ = writeln!(err, "note: {n}");
            }
            let _ = write!(out, "{}", render(&impact, dir, &a.against, &a.since));
        }
    }
    Ok(Exit::Ok)
}

fn money(x: f64) -> String {
    if x < 0.0 {
        format!("-${:.2}", -x)
    } else {
        format!("+${x:.2}")
    }
}

/// The human report.
pub fn render(i: &Impact, from: &Path, to: &Path, since: &str) -> String {
    let mut s = format!(
        "rules diff: {} ({}) -> {} ({})\n",
        from.display(),
        &i.from_revision,
        to.display(),
        &i.to_revision
    );
    let total = i.decisions + i.fixtures;
    s.push_str(&format!(
        "replayed {} logged decision{} (since {since}) and {} fixture input{}: {} change{}",
        i.decisions,
        if i.decisions == 1 { "" } else { "s" },
        i.fixtures,
        if i.fixtures == 1 { "" } else { "s" },
        i.changed,
        if i.changed == 1 { "s" } else { "" },
    ));
    if total > 0 {
        s.push_str(&format!(
            " ({:.1}%)",
            i.changed as f64 * 100.0 / total as f64
        ));
    }
    s.push('\n');
    for g in &i.groups {
        s.push_str(&format!(
            "\n  {} -> {}: {} input{}, cost {} in all ({} each)\n",
            g.from,
            g.to,
            g.count,
            if g.count == 1 { "" } else { "s" },
            money(g.cost_delta),
            money(g.cost_delta_mean)
        ));
        for e in &g.examples {
            let cost = |c: Option<f64>| c.map_or("-".to_string(), |c| format!("${c:.2}"));
            s.push_str(&format!(
                "    {}: {}  ({} -> {})\n",
                e.source,
                serde_json::to_string(&e.input).unwrap_or_default(),
                cost(e.before.estimated_cost),
                cost(e.after.estimated_cost)
            ));
        }
    }
    s
}
