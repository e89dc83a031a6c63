//! The arguments of `skill-fleet rules check|test|schema|bench|calibrate|diff` (clap types),
//! read by `rules.rs` and by the dry run of `rules test` (`dry_run.rs`).

use super::coverage;
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Human,
    /// For machines.
    Json,
    /// JUnit XML (fixture runs only).
    Junit,
}

/// `rules` subcommands.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate the whole rule set; list every problem with file:line:col.
    Check(CheckArgs),
    /// Run the rule set's fixtures, or dry-run an input with --set/--input.
    Test(TestArgs),
    /// Write the JSON Schemas generated from the code, or check the committed ones.
    Schema(SchemaArgs),
    /// Measure in-process evaluations per second for one input.
    Bench(BenchArgs),
    /// Propose cost and time constants from recorded outcomes, as a patch (not applied).
    Calibrate(super::calibrate::CalibrateArgs),
    /// Replay logged decisions and fixtures through these rules and a candidate; show what moves.
    Diff(super::rules_diff::DiffArgs),
}

/// Arguments of `rules check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Output format (human or json).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Also show the notes the configuration makes moot (estimates above the budget with the
    /// guard off, while the guard is on).
    #[arg(long)]
    pub all: bool,
    /// Time budget of the rule analysis in seconds; past it, Rhai scripts stop and the
    /// analysis reports what it covered.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub analysis_timeout: u64,
}

/// Arguments of `rules test`.
#[derive(Debug, Args)]
#[command(
    after_help = "Without --set or --input, runs the fixtures under `tests:` in the rule files and ends \
with `N passed, M failed`.\nWith them, dry-runs the recommendation; nothing is written.\n\nExamples:\n  \
skill-fleet rules test\n  skill-fleet rules test --filter guard --format junit > rules-junit.xml\n  \
skill-fleet rules test --coverage --threshold 90\n  \
skill-fleet rules test --set trainset_size=50 --set budget_usd=4 --explain\n  \
echo '[{\"trainset_size\": 800, \"budget_usd\": 50}]' | skill-fleet rules test --input - --format json"
)]
pub struct TestArgs {
    /// Output format: human, json (the exact API body), or junit (fixture runs).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Run only the fixtures whose name contains this text.
    #[arg(long, value_name = "NAME")]
    pub filter: Option<String>,
    /// Set an input field for a dry run (repeatable); the value is JSON, or text.
    #[arg(long = "set", value_name = "FIELD=VALUE", value_parser = parse_set)]
    pub set: Vec<(String, serde_json::Value)>,
    /// Dry-run the JSON object (or array of objects) in FILE, or `-` for standard input.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Add the trace to a dry run: rules tried, conditions with actual values, formulas.
    #[arg(long)]
    pub explain: bool,
    /// Past outcomes (JSON Lines) for the confidence model of a dry run.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// After the fixtures, report which rules, guard steps, alternatives, Rhai functions and
    /// `expr:` conditions they reached, and list the ones never reached.
    #[arg(long)]
    pub coverage: bool,
    /// With --coverage: exit 1 when less than P percent is reached (0 to 100; 0 never fails).
    #[arg(long, value_name = "P", requires = "coverage", default_value_t = 0.0, value_parser = coverage::parse_percent)]
    pub threshold: f64,
}

/// Arguments of `rules schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Directory of the schemas.
    #[arg(long, value_name = "DIR", default_value = "schemas")]
    pub out: PathBuf,
    /// Do not write; exit 1 when the files in DIR differ from what the code generates.
    #[arg(long)]
    pub check: bool,
}

/// Arguments of `rules bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Set an input field (repeatable); default input is trainset_size=200, budget_usd=10.
    #[arg(long = "set", value_name = "FIELD=VALUE", value_parser = parse_set)]
    pub set: Vec<(String, serde_json::Value)>,
    /// Number of timed evaluations.
    #[arg(short = 'n', long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub n: u64,
}

/// A `--set FIELD=VALUE`: the value as JSON, or else as text.
fn parse_set(s: &str) -> Result<(String, serde_json::Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected FIELD=VALUE, found `{s}`"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("missing field name in `{s}`"));
    }
    let value =
        serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
    Ok((k.to_string(), value))
}
