//! `skill-fleet training import|export|select|update|analytics`: training-example metadata in
//! the database, scored and analysed with the training rules.

use super::store_args::{open, resolve_path, DbArgs, Format};
use super::{CliError, Exit, FileError};
use crate::engine::training::{
    self, Analytics, Example, RunResult, SelectRequest, Selection, Style,
};
use crate::rules::spec::TrainingSpec;
use crate::store::Store;
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `training` subcommands.
#[derive(Debug, Subcommand)]
pub enum TrainingCommand {
    /// Merge a metadata file into the database by `example_id` (all records or none).
    Import(FileArgs),
    /// Write the live examples to a file, in the import format.
    Export(FileArgs),
    /// Select a trainset: filtered, scored with the training rules, best first.
    Select(SelectArgs),
    /// Apply optimization results (moving averages of quality and success rate).
    Update(UpdateArgs),
    /// Counts, quality bands, top performers, gaps and recommendations.
    Analytics(DbArgs),
}

/// A file and the database.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// JSON file: an array of example records (see `schemas/training-examples.schema.json`).
    pub file: PathBuf,
    /// Database and format.
    #[command(flatten)]
    pub db: DbArgs,
}

/// Arguments of `training select`.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Prefer this style (technical, beginner, comprehensive, navigation_hub, minimal).
    #[arg(long)]
    pub style: Option<String>,
    /// At most this many examples [default: filter.max_examples of the rules].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max: Option<u64>,
    /// Minimum score, 0..1 [default: filter.min_score of the rules].
    #[arg(long, value_name = "Q")]
    pub min_quality: Option<f64>,
    /// Only these categories (repeat or separate with commas).
    #[arg(long = "category", value_name = "C", num_args = 1.., value_delimiter = ',')]
    pub categories: Vec<String>,
    /// Add the bonus for categories under-represented in the selection.
    #[arg(long)]
    pub diverse: bool,
    /// Also list the excluded examples and why.
    #[arg(long)]
    pub explain: bool,
    /// Database and format.
    #[command(flatten)]
    pub db: DbArgs,
}

/// Arguments of `training update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// JSON file: `[{"example_id": …, "score": 0..1, "passed": true|false}]`.
    #[arg(long, value_name = "FILE")]
    pub results: PathBuf,
    /// Database and format.
    #[command(flatten)]
    pub db: DbArgs,
}

fn load_spec(rules_dir: &Path) -> Result<TrainingSpec, CliError> {
    let files = crate::loader::read_dir(rules_dir)?;
    match crate::rules::build(&files) {
        Ok(rs) => Ok(rs.training.clone()),
        Err(d) => Err(CliError::rules(d, files)),
    }
}

fn open_db(a: &DbArgs) -> Result<Store, CliError> {
    let path = resolve_path(a.db.as_deref())?;
    open(&path, false)
}

fn open_db_read(a: &DbArgs) -> Result<Store, CliError> {
    let path = resolve_path(a.db.as_deref())?;
    super::store_args::open_read(&path)
}

fn json_out(out: &mut dyn Write, v: &impl serde::Serialize) {
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_default()
    );
}

/// Reads and checks a metadata file; errors name the record and the field.
pub fn read_records(file: &Path) -> Result<Vec<Example>, FileError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| FileError::Unreadable(format!("cannot read `{}`: {e}", file.display())))?;
    training::parse_records(&text)
        .map_err(|e| FileError::Invalid(format!("`{}`: {e}; nothing was imported", file.display())))
}

/// Imports the shipped examples when the table is empty; returns how many were imported.
pub fn import_shipped_if_empty(store: &Store) -> Result<usize, String> {
    if store.example_count().map_err(|e| e.to_string())? > 0 {
        return Ok(0);
    }
    let records = training::parse_records(training::SHIPPED_EXAMPLES)
        .map_err(|e| format!("the shipped training examples are invalid: {e}"))?;
    let c = store.import_examples(records).map_err(|e| e.to_string())?;
    Ok(c.inserted)
}

fn bar(n: u64, max: u64, width: usize) -> String {
    if max == 0 {
        return String::new();
    }
    let len = ((n as f64 / max as f64) * width as f64).round() as usize;
    "█".repeat(len)
}

/// Analytics for a terminal, with the quality bands as a bar chart.
pub fn render_analytics(a: &Analytics, spec: &TrainingSpec) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "total examples  {}\n\nquality\n",
        a.total_examples
    ));
    let d = &a.quality_distribution;
    let max = d.high.max(d.medium).max(d.low);
    let total = a.total_examples.max(1) as f64;
    for (name, range, n) in [
        ("high", format!("≥ {}", spec.bands.high), d.high),
        (
            "medium",
            format!("{}–{}", spec.bands.medium, spec.bands.high),
            d.medium,
        ),
        ("low", format!("< {}", spec.bands.medium), d.low),
    ] {
        o.push_str(&format!(
            "  {name:<7}{range:<10}{:<30} {n:>4} ({:.0}%)\n",
            bar(n, max, 30),
            n as f64 / total * 100.0
        ));
    }
    o.push_str("\ntop performers\n");
    for p in &a.top_performers {
        o.push_str(&format!(
            "  {:<16} score {:.4}  success {:.4}\n",
            p.name, p.score, p.success_rate
        ));
    }
    o.push_str("\ncategories\n");
    for (c, n) in &a.category_breakdown {
        o.push_str(&format!("  {c:<16}{n:>4}\n"));
    }
    o.push_str("\nstyles\n");
    for (s, n) in &a.style_breakdown {
        o.push_str(&format!("  {s:<16}{n:>4}\n"));
    }
    if !a.gaps.is_empty() {
        o.push_str("\ngaps\n");
        for g in &a.gaps {
            o.push_str(&format!(
                "  {} `{}`: {} of at least {}{}\n",
                g.kind,
                g.name,
                g.count,
                g.minimum,
                if g.missing { " (missing)" } else { "" }
            ));
        }
    }
    if !a.recommendations.is_empty() {
        o.push_str("\nrecommendations\n");
        for r in &a.recommendations {
            o.push_str(&format!("  - {r}\n"));
        }
    }
    o
}

fn render_selection(s: &Selection, explain: bool) -> String {
    let mut o = format!(
        "selected {} example(s) (min score {}, at most {})\n",
        s.selected.len(),
        s.min_score,
        s.max_examples
    );
    for x in &s.selected {
        let mut parts = format!(
            "quality {:.4}, success {:.4}",
            x.parts.quality, x.parts.success_rate
        );
        if let Some(r) = x.parts.relevance {
            parts.push_str(&format!(", relevance {r:.0}"));
        }
        if let Some(d) = x.parts.diversity {
            parts.push_str(&format!(", diversity {d:.4}"));
        }
        if x.parts.category_weight != 1.0 {
            parts.push_str(&format!(", × {}", x.parts.category_weight));
        }
        o.push_str(&format!(
            "  {:.4}  {:<16} {:<10} {:<15} {parts}\n",
            x.score, x.example_id, x.category, x.style
        ));
    }
    if explain && !s.excluded.is_empty() {
        o.push_str(&format!("excluded {}\n", s.excluded.len()));
        for x in &s.excluded {
            let score = x
                .score
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "  -  ".into());
            o.push_str(&format!("  {score}  {:<16} {}\n", x.example_id, x.reason));
        }
    }
    o
}

/// Runs a `training` subcommand.
pub fn run(
    cmd: TrainingCommand,
    rules_dir: &Path,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    match cmd {
        TrainingCommand::Import(a) => import(a, out),
        TrainingCommand::Export(a) => export(a, out),
        TrainingCommand::Select(a) => select(a, rules_dir, out),
        TrainingCommand::Update(a) => update(a, rules_dir, out, err),
        TrainingCommand::Analytics(a) => analytics(a, rules_dir, out),
    }
}

/// `training import`: merges a metadata file into the database (all records or none).
fn import(a: FileArgs, out: &mut dyn Write) -> Result<Exit, CliError> {
    let records = read_records(&a.file)?;
    let store = open_db(&a.db)?;
    let c = store.import_examples(records)?;
    let _ = store.close();
    if a.db.format == Format::Json {
        json_out(out, &c);
    } else {
        let _ = writeln!(
            out,
            "imported `{}`: {} new, {} updated",
            a.file.display(),
            c.inserted,
            c.updated
        );
    }
    Ok(Exit::Ok)
}

/// `training export`: writes the live examples to a file, in the import format.
fn export(a: FileArgs, out: &mut dyn Write) -> Result<Exit, CliError> {
    let store = open_db_read(&a.db)?;
    let all = store.examples()?;
    let _ = store.close();
    let mut text = serde_json::to_string_pretty(&all).unwrap_or_default();
    text.push('\n');
    std::fs::write(&a.file, text)
        .map_err(|e| CliError::io(format!("cannot write `{}`: {e}", a.file.display())))?;
    if a.db.format == Format::Json {
        json_out(
            out,
            &serde_json::json!({"file": a.file.display().to_string(), "exported": all.len()}),
        );
    } else {
        let _ = writeln!(
            out,
            "exported {} example(s) to `{}`",
            all.len(),
            a.file.display()
        );
    }
    Ok(Exit::Ok)
}

/// `training select`: the trainset the training rules select, best first.
fn select(a: SelectArgs, rules_dir: &Path, out: &mut dyn Write) -> Result<Exit, CliError> {
    let style = match &a.style {
        None => None,
        Some(s) => Some(Style::parse(s).ok_or_else(|| {
            CliError::input(format!("unknown style `{s}`")).help(format!(
                "styles: {}",
                Style::ALL.map(|x| x.as_str()).join(", ")
            ))
        })?),
    };
    if let Some(q) = a.min_quality {
        if !(0.0..=1.0).contains(&q) {
            return Err(CliError::input(format!(
                "`--min-quality` {q} is outside 0..1"
            )));
        }
    }
    let spec = load_spec(rules_dir)?;
    let store = open_db_read(&a.db)?;
    let all = store.examples()?;
    let _ = store.close();
    let req = SelectRequest {
        style,
        max: a.max.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
        min_score: a.min_quality,
        categories: a.categories.clone(),
        diversity: a.diverse,
        explain: a.explain,
    };
    let sel = training::select(&spec, &all, &req);
    if a.db.format == Format::Json {
        json_out(out, &sel);
    } else {
        let _ = write!(out, "{}", render_selection(&sel, a.explain));
    }
    Ok(Exit::Ok)
}

/// `training update`: applies optimization results to the examples; unknown ids are
/// reported and ignored.
fn update(
    a: UpdateArgs,
    rules_dir: &Path,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    let text = std::fs::read_to_string(&a.results)
        .map_err(|e| CliError::io(format!("cannot read `{}`: {e}", a.results.display())))?;
    let results: Vec<RunResult> = serde_json::from_str(&text).map_err(|e| {
        CliError::input(format!(
            "`{}` is not a list of {{example_id, score, passed}}: {e}",
            a.results.display()
        ))
    })?;
    training::check_results(&results)
        .map_err(|e| CliError::input(format!("`{}`: {e}", a.results.display())))?;
    let spec = load_spec(rules_dir)?;
    let store = open_db(&a.db)?;
    let outcome = store.apply_example_results(&spec, results)?;
    let _ = store.close();
    if a.db.format == Format::Json {
        json_out(out, &outcome);
    } else {
        let _ = writeln!(out, "updated {} example(s)", outcome.updated.len());
        for e in &outcome.updated {
            let _ = writeln!(
                out,
                "  {:<16} quality {:.4}  success {:.4}  used {}",
                e.example_id,
                e.quality_score,
                e.success_rate.unwrap_or(spec.neutral_success_rate),
                e.usage_count
            );
        }
    }
    if !outcome.unknown.is_empty() {
        let _ = writeln!(
            err,
            "warning: {} unknown example id(s), ignored: {}",
            outcome.unknown.len(),
            outcome
                .unknown
                .iter()
                .map(|u| format!("`{u}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(Exit::Ok)
}

/// `training analytics`: counts, quality bands, top performers, gaps and recommendations.
fn analytics(a: DbArgs, rules_dir: &Path, out: &mut dyn Write) -> Result<Exit, CliError> {
    let spec = load_spec(rules_dir)?;
    let store = open_db_read(&a)?;
    let all = store.examples()?;
    let _ = store.close();
    let an = training::analytics(&spec, &all);
    if a.format == Format::Json {
        json_out(out, &an);
    } else {
        let _ = write!(out, "{}", render_analytics(&an, &spec));
    }
    Ok(Exit::Ok)
}
