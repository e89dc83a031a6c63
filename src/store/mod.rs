//! The SQLite store (rusqlite, bundled SQLite). The only module that knows rusqlite.
//!
//! Migrations are append-only and tracked with `PRAGMA user_version`: a database written by an
//! older version is upgraded on open; a newer one is refused.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};

/// Schema migrations, applied in order; never edit a shipped one, only append.
pub const MIGRATIONS: &[(&str, &str)] = &[(
    "create meta",
    "CREATE TABLE IF NOT EXISTS meta (
         key   TEXT PRIMARY KEY,
         value TEXT NOT NULL
     );
     INSERT OR IGNORE INTO meta (key, value) VALUES ('created_by', 'skill-fleet');",
)];

/// A store problem.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file does not exist and was not to be created.
    #[error("database `{0}` does not exist")]
    Missing(PathBuf),
    /// The database was written by a newer skill-fleet.
    #[error("database `{path}` has schema version {found}, newer than this build's {supported}")]
    TooNew {
        /// File.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Latest version this build knows.
        supported: i64,
    },
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

/// The SQLite store.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens the database. With `init`, creates it when missing and applies pending
    /// migrations; without, the file must exist.
    pub fn open(path: &Path, init: bool) -> Result<Self, StoreError> {
        let wrap = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if !init && !path.exists() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        let flags = if init {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        };
        let conn = Connection::open_with_flags(path, flags).map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(wrap)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(wrap)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(wrap)?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: version,
                supported,
            });
        }
        if init {
            for (i, (_, sql)) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                let tx = conn.unchecked_transaction().map_err(wrap)?;
                tx.execute_batch(sql).map_err(wrap)?;
                tx.pragma_update(None, "user_version", (i + 1) as i64)
                    .map_err(wrap)?;
                tx.commit().map_err(wrap)?;
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks that the database answers.
    pub fn ping(&self) -> Result<(), StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
            .map(|_| ())
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                source,
            })
    }

    /// The schema version in the file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                source,
            })
    }

    /// Checkpoints the WAL and closes the connection cleanly.
    pub fn close(self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let conn = self.conn.into_inner().unwrap_or_else(|p| p.into_inner());
        let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
        conn.close()
            .map_err(|(_, source)| StoreError::Sqlite { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "skill-fleet-store-{name}-{}.db",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn init_is_idempotent_and_versioned() {
        let p = tmp("init");
        let s = Store::open(&p, true).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        s.ping().unwrap();
        s.close().unwrap();
        let s = Store::open(&p, true).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        s.close().unwrap();
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn missing_without_init_and_newer_versions_are_refused() {
        let p = tmp("missing");
        assert!(matches!(
            Store::open(&p, false),
            Err(StoreError::Missing(_))
        ));
        let conn = Connection::open(&p).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(
            Store::open(&p, true),
            Err(StoreError::TooNew { found: 99, .. })
        ));
        let _ = std::fs::remove_file(&p);
    }
}
