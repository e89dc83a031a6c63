//! What the store refuses or fails with.

use super::job::Status;
use std::path::PathBuf;

/// A store problem.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No job with this id.
    #[error("no job `{0}`")]
    NotFound(String),
    /// The change is not allowed from the job's current status.
    #[error("job `{id}` is {from}; it cannot become {to}")]
    IllegalTransition {
        /// Job.
        id: String,
        /// Current status.
        from: Status,
        /// Requested status.
        to: Status,
    },
    /// The lease token is not the current one, or the lease expired.
    #[error("stale lease for job `{id}`: the token is not the current one or the lease expired")]
    StaleLease {
        /// Job.
        id: String,
        /// Current status.
        status: Status,
    },
    /// A field of a change is wrong: the field (as the API names it) and what is wrong.
    #[error("{message}")]
    Field {
        /// The field, e.g. `task`.
        field: String,
        /// Lower-case message quoting the field.
        message: String,
    },
    /// Bad input or state that names no field.
    #[error("{0}")]
    Invalid(String),
    /// Something that cannot happen did (a thread that could not start or panicked, an answer
    /// of the wrong kind): a bug or the machine, never the caller's input.
    #[error("internal error of the job store: {0}")]
    Internal(String),
    /// The writer stopped.
    #[error("the store is closed")]
    Closed,
    /// The batch this change was part of could not be committed.
    #[error("database write failed: {0}")]
    Batch(String),
    /// PostgreSQL reported an error, or could not be reached (the URL's password redacted).
    #[error("database `{url}`: {message}")]
    Postgres {
        /// The database, redacted.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// The database does not exist (no SQLite file, or no skill-fleet tables in the
    /// PostgreSQL database) and was not to be created.
    #[error("database `{}` {}", .0.display(), missing(.0))]
    Missing(PathBuf),
    /// The database was written by a newer skill-fleet.
    #[error("database `{path}` has schema version {found}, newer than this build's {supported}")]
    TooNew {
        /// File (or PostgreSQL URL, redacted).
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Latest version this build knows.
        supported: i64,
    },
    /// Another process writes to this database.
    #[error("database `{}` is in use by {holder}", path.display())]
    Locked {
        /// File.
        path: PathBuf,
        /// Who holds the lock, as it wrote it (`pid 12 (serve on http://127.0.0.1:8000)`).
        holder: String,
    },
    /// The file at the path is no longer the one opened (deleted or replaced).
    #[error("the database file `{}` was deleted or replaced while in use; nothing more is accepted: restart the server", .0.display())]
    Lost(PathBuf),
    /// A change was asked of a store opened read-only.
    #[error("the database is open read-only here")]
    ReadOnly,
    /// SQLite reported an error.
    #[error("database `{path}`: {source}")]
    Sqlite {
        /// File.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
}

/// What is missing: the file, or (for a PostgreSQL URL) the skill-fleet tables.
fn missing(location: &std::path::Path) -> &'static str {
    match location.to_str() {
        Some(l) if super::pg::PgUrl::is_url(l) => "has no skill-fleet tables",
        _ => "does not exist",
    }
}

impl StoreError {
    /// A copy for every request of a failed batch (SQLite errors are not `Clone`).
    pub fn clone_shallow(&self) -> StoreError {
        match self {
            StoreError::Lost(p) => StoreError::Lost(p.clone()),
            StoreError::Field { field, message } => StoreError::Field {
                field: field.clone(),
                message: message.clone(),
            },
            _ => StoreError::Batch(self.to_string()),
        }
    }
}
