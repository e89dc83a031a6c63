//! `skill-fleet db init|status|migrate|reset`.

use super::store_args::{open, resolve_path, DbArgs, Format};
use super::{CliError, Exit};
use crate::store::{self, Store, StoreError};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// `db` subcommands.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create the database and its tables (idempotent).
    Init(DbArgs),
    /// Path, schema version, SQLite version, jobs per status, file and WAL size.
    Status(DbArgs),
    /// Apply pending migrations and list them.
    Migrate(DbArgs),
    /// Delete every job and training example: remove the file and create it afresh (asks for
    /// confirmation).
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

/// Removes the database file and its WAL and shared-memory files (missing ones are fine).
fn remove_db_files(path: &Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(PathBuf::from(p)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
    let existed = path.exists();
    let store = open(&path, true)?;
    let version = store.schema_version().unwrap_or(0);
    let imported = super::training::import_shipped_if_empty(&store);
    let _ = store.close();
    let imported = imported.map_err(CliError::io)?;
    if a.format == Format::Json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::json!({"path": path.display().to_string(), "created": !existed, "schema_version": version, "training_examples_imported": imported})
        );
    } else {
        let _ = writeln!(
            out,
            "{} database `{}` (schema version {version})",
            if existed { "checked" } else { "created" },
            path.display()
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
    if !pending.is_empty() && path.exists() {
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
            let help = (!path.exists())
                .then(|| format!("run `skill-fleet db init --db {}`", path.display()));
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
        let _ = writeln!(out, "path            {}", st.path);
        let _ = writeln!(
            out,
            "schema version  {} (latest {})",
            st.schema_version, st.latest_version
        );
        let _ = writeln!(out, "sqlite          {}", st.sqlite_version);
        let _ = writeln!(out, "file            {}", human_bytes(st.file_bytes));
        let _ = writeln!(out, "wal             {}", human_bytes(st.wal_bytes));
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
            "database `{}` is up to date (schema version {version})",
            path.display()
        );
    } else {
        for (n, name) in &pending {
            let _ = writeln!(out, "applied migration {n}: {name}");
        }
        let _ = writeln!(
            out,
            "database `{}` is at schema version {version}",
            path.display()
        );
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
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::usage(format!(
                "refusing to reset `{}` without --yes: standard input is not a terminal",
                path.display()
            )));
        }
        let _ = write!(
            err,
            "This deletes every job and training example in `{}`. Type `yes` to continue: ",
            path.display()
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
    remove_db_files(&path)
        .map_err(|e| CliError::io(format!("cannot remove `{}`: {e}", path.display())))?;
    let _ = open(&path, true)?.close();
    let _ = writeln!(out, "reset database `{}`", path.display());
    Ok(Exit::Ok)
}
