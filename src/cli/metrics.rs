//! `skill-fleet metrics [--since 30d] [--format json]` and `metrics export --jsonl FILE`.

use super::store_args::{resolve_path, DbArgs, Format};
use super::{CliError, Exit};
use crate::engine::metrics::{Rate, SelectorMetrics};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `metrics`.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  skill-fleet metrics\n  skill-fleet metrics --since 7d --format json\n  \
skill-fleet metrics export --jsonl selector_metrics.jsonl\n  \
skill-fleet rules test --set trainset_size=200 --history selector_metrics.jsonl"
)]
pub struct MetricsArgs {
    /// Export instead of reporting.
    #[command(subcommand)]
    pub command: Option<MetricsCommand>,
    /// Window: an age such as 30d, 12h, 2w, or `all`.
    #[arg(long, value_name = "AGE", default_value = "30d", global = true)]
    pub since: String,
    /// Database and output format.
    #[command(flatten)]
    pub db: DbArgs,
}

/// `metrics` subcommands.
#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Write the recorded outcomes as `selector_metrics.jsonl` records (the format `--history`
    /// reads).
    Export(ExportArgs),
}

/// Arguments of `metrics export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// File to write, or `-` for standard output.
    #[arg(long, value_name = "FILE")]
    pub jsonl: PathBuf,
}

/// Runs `metrics`.
pub fn run(a: MetricsArgs, out: &mut dyn Write) -> Result<Exit, CliError> {
    let age = crate::util::time::parse_age(&a.since)
        .map_err(|m| CliError::usage(format!("invalid --since: {m}")))?;
    let path = resolve_path(a.db.db.as_deref())?;
    let store = super::store_args::open_read(&path)?;
    let since_ms = age.map_or(i64::MIN, |a| store.now_ms().saturating_sub(a));
    let result = match a.command {
        Some(MetricsCommand::Export(e)) => export(&store, since_ms, &e, out),
        None => report(&store, since_ms, &a.since, a.db.format, out),
    };
    let _ = store.close();
    result
}

fn export(
    store: &crate::store::Store,
    since_ms: i64,
    e: &ExportArgs,
    out: &mut dyn Write,
) -> Result<Exit, CliError> {
    let outcomes = store.outcomes_since(since_ms)?;
    let mut text = String::new();
    for o in &outcomes {
        text.push_str(&serde_json::to_string(&o.to_history()).unwrap_or_default());
        text.push('\n');
    }
    if e.jsonl.as_os_str() == "-" {
        let _ = out.write_all(text.as_bytes());
        return Ok(Exit::Ok);
    }
    std::fs::write(&e.jsonl, text)
        .map_err(|x| CliError::io(format!("cannot write `{}`: {x}", e.jsonl.display())))?;
    let _ = writeln!(
        out,
        "wrote {} outcome{} to `{}`",
        outcomes.len(),
        if outcomes.len() == 1 { "" } else { "s" },
        e.jsonl.display()
    );
    Ok(Exit::Ok)
}

fn report(
    store: &crate::store::Store,
    since_ms: i64,
    window: &str,
    format: Format,
    out: &mut dyn Write,
) -> Result<Exit, CliError> {
    let m = store.selector_metrics(since_ms)?;
    match format {
        Format::Json => {
            let mut v = serde_json::to_value(&m).unwrap_or_default();
            v["window"] = window.into();
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            );
        }
        Format::Human => {
            let _ = write!(
                out,
                "{}",
                render(&m, window, &store.path().display().to_string())
            );
        }
    }
    Ok(Exit::Ok)
}

fn spread(map: &BTreeMap<String, u64>) -> String {
    let mut v: Vec<(&String, &u64)> = map.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    if v.is_empty() {
        return "-".into();
    }
    v.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A rate with what it counts, or what is missing when there is nothing to count.
fn rate(r: &Option<Rate>, what: &str, none: &str) -> String {
    match r {
        Some(r) => format!("{:.1}% ({} of {} {what})", r.rate * 100.0, r.count, r.of),
        None => format!("- ({none})"),
    }
}

fn pct(x: Option<f64>, n: u64) -> String {
    match x {
        Some(x) => format!("{x:.1}% (n={n})"),
        None => "-".into(),
    }
}

/// The human report.
pub fn render(m: &SelectorMetrics, window: &str, db: &str) -> String {
    let mut s = String::new();
    let since = if window.eq_ignore_ascii_case("all") {
        "all time".to_string()
    } else {
        format!("last {window}")
    };
    s.push_str(&format!("selector metrics, {since} (database `{db}`)\n\n"));
    s.push_str(&format!("decisions     {}\n", m.decisions.total));
    s.push_str(&format!(
        "  optimizer   {}\n",
        spread(&m.decisions.by_optimizer)
    ));
    s.push_str(&format!("  rule        {}\n", spread(&m.decisions.by_rule)));
    s.push_str(&format!(
        "  revision    {}\n",
        spread(&m.decisions.by_revision)
    ));
    s.push_str(&format!(
        "outcomes      {} ({} auto-selected, {} manual)\n",
        m.outcomes, m.auto_selected, m.manual
    ));
    s.push_str(&format!(
        "acceptance    {}\n",
        rate(
            &m.acceptance,
            "auto-selected runs used the recommended optimizer",
            "no auto-selected run yet"
        )
    ));
    s.push_str(&format!(
        "target hit    {}\n",
        rate(
            &m.target_hit,
            "runs with a quality target reached it",
            "no run had a quality target"
        )
    ));
    if !m.accuracy.is_empty() {
        s.push_str(&format!(
            "\n{:<20} {:>5} {:>13} {:>18} {:>18}\n",
            "optimizer", "runs", "mean quality", "cost MAPE", "time MAPE"
        ));
        for (name, a) in &m.accuracy {
            s.push_str(&format!(
                "{:<20} {:>5} {:>13.3} {:>18} {:>18}\n",
                name,
                a.outcomes,
                a.mean_quality,
                pct(a.cost_mape, a.cost_samples),
                pct(a.time_mape, a.time_samples)
            ));
        }
    }
    s
}
