//! The `skill-fleet` command line: argument types (clap) and dispatch. One file per command
//! group; output goes to the writers handed in, so tests can capture it. Commands return
//! `Result<Exit, CliError>`; [`run`] renders the error, the one place that does.

pub mod api;
pub mod calibrate;
pub mod coverage;
pub mod db;
pub mod dry_run;
pub mod error;
pub mod follow;
pub mod jobs;
pub mod logging;
pub mod metrics;
pub mod optimize;
pub mod render;
pub mod rules;
pub mod rules_args;
pub mod rules_diff;
pub mod serve;
pub mod store_args;
pub mod training;
pub mod trainset;

pub use error::CliError;

use clap::{Parser, Subcommand};
use error::Part;
use std::io::Write;
use std::path::PathBuf;

/// Exit codes of `skill-fleet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// A check found failures (fixtures failed, schemas drifted).
    Failed = 1,
    /// Bad command-line usage (clap's own code).
    Usage = 2,
    /// The rule set is invalid.
    InvalidRules = 3,
    /// The input of a dry run is invalid.
    InvalidInput = 4,
    /// A file, socket or database could not be used.
    Io = 5,
    /// The configuration is invalid.
    InvalidConfig = 6,
}

/// Why an input file (trainset, training records, results) gives nothing to work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The file cannot be read (exit code 5).
    #[error("{0}")]
    Unreadable(String),
    /// The file is read but is not a trainset (exit code 4).
    #[error("{0}")]
    Invalid(String),
}

impl FileError {
    /// The exit code of the table: 5 for a file that cannot be read, 4 for bad content.
    pub fn exit(&self) -> Exit {
        match self {
            FileError::Unreadable(_) => Exit::Io,
            FileError::Invalid(_) => Exit::InvalidInput,
        }
    }
}

/// The exit code for a rules directory that cannot be read (5) or holds no rule set (3).
pub fn read_error_exit(e: &crate::loader::ReadError) -> Exit {
    match e {
        crate::loader::ReadError::Unreadable(_) => Exit::Io,
        crate::loader::ReadError::Invalid(_) => Exit::InvalidRules,
    }
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// skill-fleet: decide which DSPy optimizer to run, what it costs, and why.
#[derive(Debug, Parser)]
#[command(name = "skill-fleet", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 ok, 1 checks failed, 2 usage error, 3 invalid rules, 4 invalid input, \
5 file, socket or database error, 6 invalid configuration"
)]
pub struct Cli {
    /// Directory of the rule set [default: `rules`, or SKILL_FLEET_RULES]
    #[arg(long, global = true, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check, test, dry-run and benchmark the rule set; write its JSON Schemas.
    #[command(subcommand)]
    Rules(rules_args::RulesCommand),
    /// Serve the HTTP API with hot-reloaded rules.
    Serve(serve::ServeArgs),
    /// Create, inspect, migrate or reset the SQLite database.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// List, show, cancel jobs; answer a job waiting for a human.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Recommend an optimizer for a trainset and create an optimization job.
    Optimize(optimize::OptimizeArgs),
    /// Import, export, select, update and analyse training-example metadata.
    #[command(subcommand)]
    Training(training::TrainingCommand),
    /// Selector metrics from the decision log and recorded outcomes; export outcomes as JSONL.
    Metrics(metrics::MetricsArgs),
}

/// Runs a parsed command line, reading answers from `input`, writing to `out` and `err`.
pub fn run(
    cli: Cli,
    input: &mut dyn std::io::BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    crate::timefmt::install_deadline_clock();
    // `serve` sets the server's own limit (`rules.eval_timeout_ms`) when it starts.
    crate::rules::deadline::set_budget_ms(crate::rules::deadline::CLI_BUDGET_MS);
    let rules_dir = || {
        cli.rules
            .clone()
            .or_else(|| std::env::var_os("SKILL_FLEET_RULES").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("rules"))
    };
    let result = match cli.command {
        Command::Rules(cmd) => rules::run(&rules_dir(), cmd, out, err),
        Command::Serve(args) => serve::run(args, cli.rules.as_ref()),
        Command::Db(cmd) => db::run(cmd, input, out, err),
        Command::Jobs(cmd) => jobs::run(cmd, out),
        Command::Optimize(args) => optimize::run(args, &rules_dir(), input, out, err),
        Command::Training(cmd) => training::run(cmd, &rules_dir(), out, err),
        Command::Metrics(args) => metrics::run(args, out),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            render_error(&e, err);
            e.exit()
        }
    }
}

/// Writes a command's error to standard error: the one place errors are rendered.
fn render_error(e: &CliError, err: &mut dyn Write) {
    for part in e.parts() {
        let _ = match part {
            Part::Error(message) => writeln!(err, "error: {message}"),
            Part::Help(help) => writeln!(err, "  = help: {help}"),
            Part::Diagnostics(diags, files) => {
                write!(err, "{}", crate::diagnostic::render_all(diags, files))
            }
            Part::Input(errors, index) => write!(err, "{}", render::input_errors(errors, *index)),
            Part::Blank => writeln!(err),
        };
    }
}
