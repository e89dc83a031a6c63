//! `skill-fleet db init|status|migrate|reset`.

use super::store_args::{open, resolve_path, DbArgs, Format};
use super::{CliError, Exit};
use crate::store::{self, Store, StoreError};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::io::{BufRead, IsTerminal, Write};

/// `db` subcommands.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create the database and its tables (idempotent).
    Init(DbArgs),
    /// Location, schema version, SQLite or PostgreSQL version, jobs per status, file and WAL
    /// size (SQLite).
    Status(DbArgs),
    /// Apply pending migrations and list them.
    Migrate(DbArgs),
    /// Delete every job and training example: remove the file (or PostgreSQL's tables) and
    /// create it afresh (asks for confirmation).
    Reset(ResetArgs),
}

/// Arguments of `db reset`.
#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Database.
    #[command(flatten)]
    pub db: DbArgs,
    /// Do not ask (for scripts). Required when standard input is not a terminal.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// A size for people: B, KiB, MiB, GiB.
fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// Runs a `db` subcommand.
pub fn run(
    cmd: DbCommand,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    match cmd {
        DbCommand::Init(a) => init(a, out),
        DbCommand::Status(a) => status(a, out, err),
        DbCommand::Migrate(a) => migrate(a, out),
        DbCommand::Reset(a) => reset(a, input, out, err),
    }
}

/// `db init`: creates the database (or checks it) and imports the shipped training examples
/// into an empty one.
fn init(a: DbArgs, out: &mut dyn Write) -> Result<Exit, CliError> {
    let path = resolve_path(a.db.as_deref())?;
    let shown = store::display_location(&path);
    let existed = store::exists(&path)?;
    let store = open(&path, true)?;
    let version = store.schema_version().unwrap_or(0);
    let imported = super::training::import_shipped_if_empty(&store);
    let _ = store.close();
    let imported = imported.map_err(CliError::io)?;
    if a.format == Format::Json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::json!({"path": shown, "created": !existed, "schema_version": version, "training_examples_imported": imported})
        );
    } else {
        let _ = writeln!(
            out,
            "{} database `{}` (schema version {version})",
            if existed { "checked" } else { "created" },
            shown
        );
        if imported > 0 {
            let _ = writeln!(out, "imported {imported} shipped training example(s)");
        }
    }
    Ok(Exit::Ok)
}

/// `db status`: read-only, so it works beside a running server; warns about pending migrations.
fn status(a: DbArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<Exit, CliError> {
    let path = resolve_path(a.db.as_deref())?;
    let pending = store::pending_migrations(&path).unwrap_or_default();
    if !pending.is_empty() && store::exists(&path).unwrap_or(false) {
        let _ = writeln!(
            err,
            "warning: {} pending migration(s); run `skill-fleet db migrate`",
            pending.len()
        );
    }
    let store = match Store::open_read_only(&path) {
        Ok(s) => s,
        Err(StoreError::Invalid(msg)) => return Err(CliError::io(msg)),
        Err(e) => {
            let help = (!store::exists(&path).unwrap_or(true)).then(|| {
                format!(
                    "run `skill-fleet db init --db {}`",
                    store::display_location(&path)
                )
            });
            return Err(CliError::from(e).help_opt(help));
        }
    };
    let st = store.status()?;
    let _ = store.close();
    if a.format == Format::Json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&st).unwrap_or_default()
        );
    } else {
        let _ = writeln!(out, "backend         {}", st.backend);
        let _ = writeln!(
            out,
            "{}{}",
            if st.backend == "postgres" {
                "url             "
            } else {
                "path            "
            },
            st.path
        );
        let _ = writeln!(
            out,
            "schema version  {} (latest {})",
            st.schema_version, st.latest_version
        );
        if let Some(v) = &st.sqlite_version {
            let _ = writeln!(out, "sqlite          {v}");
        }
        if let Some(v) = &st.postgres_version {
            let _ = writeln!(out, "postgresql      {v}");
        }
        if let Some(n) = st.file_bytes {
            let _ = writeln!(out, "file            {}", human_bytes(n));
        }
        if let Some(n) = st.wal_bytes {
            let _ = writeln!(out, "wal             {}", human_bytes(n));
        }
        let _ = writeln!(out, "jobs            {}", st.jobs.values().sum::<i64>());
        for s in crate::store::job::Status::ALL {
            let _ = writeln!(
                out,
                "  {:<14}{}",
                s.as_str(),
                st.jobs.get(s.as_str()).copied().unwrap_or(0)
            );
        }
    }
    Ok(Exit::Ok)
}

/// `db migrate`: applies the pending migrations and lists them.
fn migrate(a: DbArgs, out: &mut dyn Write) -> Result<Exit, CliError> {
    let path = resolve_path(a.db.as_deref())?;
    let shown = store::display_location(&path);
    let pending = store::pending_migrations(&path)?;
    let store = open(&path, true)?;
    let version = store.schema_version().unwrap_or(0);
    let _ = store.close();
    if a.format == Format::Json {
        let applied: Vec<Value> = pending
            .iter()
            .map(|(n, name)| serde_json::json!({"version": n, "name": name}))
            .collect();
        let _ = writeln!(
            out,
            "{}",
            serde_json::json!({"applied": applied, "schema_version": version})
        );
    } else if pending.is_empty() {
        let _ = writeln!(
            out,
            "database `{shown}` is up to date (schema version {version})"
        );
    } else {
        for (n, name) in &pending {
            let _ = writeln!(out, "applied migration {n}: {name}");
        }
        let _ = writeln!(out, "database `{shown}` is at schema version {version}");
    }
    Ok(Exit::Ok)
}

/// `db reset`: removes the database files (after a confirmation) and creates it afresh.
fn reset(
    a: ResetArgs,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    let path = resolve_path(a.db.db.as_deref())?;
    let shown = store::display_location(&path);
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::usage(format!(
                "refusing to reset `{shown}` without --yes: standard input is not a terminal"
            )));
        }
        let _ = write!(
            err,
            "This deletes every job and training example in `{shown}`. Type `yes` to continue: "
        );
        let _ = err.flush();
        let mut answer = String::new();
        let _ = input.read_line(&mut answer);
        if answer.trim() != "yes" {
            // The person said no: a result, not an error.
            let _ = writeln!(err, "reset cancelled");
            return Ok(Exit::Failed);
        }
    }
    store::destroy(&path).map_err(|e| match e {
        StoreError::Invalid(m) => CliError::io(m),
        e => CliError::from(e),
    })?;
    let _ = open(&path, true)?.close();
    let _ = writeln!(out, "reset database `{shown}`");
    Ok(Exit::Ok)
}
