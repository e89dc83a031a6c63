//! What the commands that touch the database share: the `--db` and `--format` arguments,
//! resolving the database path, and opening the database (to write, or read-only beside a
//! running server), with the errors as values.

use super::CliError;
use crate::config;
use crate::store::{Store, StoreError};
use clap::Args;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `--db` and `--format`, shared by the commands that touch the database.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// SQLite file, or a `postgres://user:pass@host:5432/name` URL for a database several
    /// nodes share [default: database.path from the config file, or SKILL_FLEET_DB, or
    /// skill-fleet.db]
    #[arg(long, value_name = "PATH|URL", global = true)]
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

/// The database path: flag > SKILL_FLEET_DB > config file > default; a configuration error
/// has exit code 6 (even for an unreadable config file, which `serve` reports with 5).
pub fn resolve_path(flag: Option<&Path>) -> Result<PathBuf, CliError> {
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
        Err(e) => Err(CliError::config(e.to_string()).help_opt(e.help)),
    }
}

/// Opens an existing database (`init` false) or creates it, to write.
pub fn open(path: &Path, init: bool) -> Result<Store, CliError> {
    let opts = crate::store::StoreOptions {
        owner: format!(
            "skill-fleet {}",
            std::env::args().nth(1).unwrap_or_default()
        ),
        ..Default::default()
    };
    Store::open_with(path, init, opts, crate::store::system_clock())
        .map_err(|e| open_error(path, e))
}

/// Opens an existing database to read only: works beside a running server.
pub fn open_read(path: &Path) -> Result<Store, CliError> {
    Store::open_read_only(path).map_err(|e| open_error(path, e))
}

/// Why the database cannot be opened, with a hint (exit code 5).
fn open_error(path: &Path, e: StoreError) -> CliError {
    let help = match &e {
        StoreError::Missing(_) => Some(format!(
            "run `skill-fleet db init --db {}` first",
            crate::store::display_location(path)
        )),
        StoreError::Locked { holder, .. } => Some(match super::api::url_in(holder) {
            Some(url) => format!(
                "one SQLite database has one writer; pass `--url {url}` to make the change through that server, or stop it first"
            ),
            None => {
                "one SQLite database has one writer; wait for that process to finish".to_string()
            }
        }),
        _ => None,
    };
    CliError::from(e).help_opt(help)
}
