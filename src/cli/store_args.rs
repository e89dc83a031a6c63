//! What the commands that touch the database share: the `--db` and `--format` arguments,
//! resolving the database path, and opening the database (to write, or read-only beside a
//! running server) with the errors printed.

use super::Exit;
use crate::config;
use crate::store::{Store, StoreError};
use clap::Args;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `--db` and `--format`, shared by the commands that touch the database.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// SQLite file [default: database.path from the config file, or SKILL_FLEET_DB, or skill-fleet.db]
    #[arg(long, value_name = "PATH", global = true)]
    pub db: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human, global = true)]
    pub format: Format,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Human,
    /// For machines.
    Json,
}

/// The database path: flag > SKILL_FLEET_DB > config file > default.
pub fn resolve_path(flag: Option<&Path>, err: &mut dyn Write) -> Result<PathBuf, Exit> {
    let flags = flag
        .map(|p| {
            vec![(
                "database.path".to_string(),
                Value::from(p.display().to_string()),
                "--db".to_string(),
            )]
        })
        .unwrap_or_default();
    match config::load(None, flags) {
        Ok(c) => Ok(c.database.path),
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            if let Some(h) = &e.help {
                let _ = writeln!(err, "  = help: {h}");
            }
            Err(Exit::InvalidConfig)
        }
    }
}

/// Opens an existing database (`init` false) or creates it, to write; errors are printed.
pub fn open(path: &Path, init: bool, err: &mut dyn Write) -> Result<Store, Exit> {
    let opts = crate::store::StoreOptions {
        owner: format!(
            "skill-fleet {}",
            std::env::args().nth(1).unwrap_or_default()
        ),
        ..Default::default()
    };
    Store::open_with(path, init, opts, crate::store::system_clock())
        .map_err(|e| open_error(path, e, err))
}

/// Opens an existing database to read only: works beside a running server.
pub fn open_read(path: &Path, err: &mut dyn Write) -> Result<Store, Exit> {
    Store::open_read_only(path).map_err(|e| open_error(path, e, err))
}

/// Prints why the database cannot be opened, with a hint; the exit code.
fn open_error(path: &Path, e: StoreError, err: &mut dyn Write) -> Exit {
    let _ = writeln!(err, "error: {e}");
    match e {
        StoreError::Missing(_) => {
            let _ = writeln!(
                err,
                "  = help: run `skill-fleet db init --db {}` first",
                path.display()
            );
        }
        StoreError::Locked { holder, .. } => {
            let _ = match super::api::url_in(&holder) {
                Some(url) => writeln!(
                    err,
                    "  = help: one SQLite database has one writer; pass `--url {url}` to make the change through that server, or stop it first"
                ),
                None => writeln!(
                    err,
                    "  = help: one SQLite database has one writer; wait for that process to finish"
                ),
            };
        }
        _ => {}
    }
    Exit::Io
}
