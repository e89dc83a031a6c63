//! Opening a store: a SQLite file (the writer thread, migrations, the lock) or a PostgreSQL
//! database (its workers), chosen by the location; and what a location names (whether a
//! database is there, deleting it, showing it with its password redacted).

use super::cache::Cache;
use super::writer::{self, WriterStats};
use super::{file, migrations, pg, system_clock, Clock, Store, StoreError, MIGRATIONS};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// Tuning of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Jobs kept in the read cache.
    pub cache_capacity: usize,
    /// Most requests committed in one transaction.
    pub max_batch: usize,
    /// First retry delay; doubles per attempt.
    pub backoff_base_ms: i64,
    /// Longest retry delay.
    pub backoff_max_ms: i64,
    /// Attempts when a job does not say.
    pub default_max_attempts: i64,
    /// Who holds the writer lock, for the message another process gets (e.g. `serve on
    /// http://127.0.0.1:8000`).
    pub owner: String,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_capacity: 10_000,
            max_batch: 512,
            backoff_base_ms: 1_000,
            backoff_max_ms: 60_000,
            default_max_attempts: 3,
            owner: "skill-fleet".into(),
        }
    }
}

pub(super) fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let wrap = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    // A connection is used by one thread at a time (rusqlite's `Connection` is not `Sync`), so
    // SQLite's own per-connection mutex only costs: every call locked and unlocked it.
    let conn =
        Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(wrap)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(wrap)?;
    Ok(conn)
}

impl Store {
    /// Opens the database. With `init`, creates it when missing and applies pending
    /// migrations; without, the file must exist (and is still checked for its version).
    pub fn open(path: &Path, init: bool) -> Result<Self, StoreError> {
        Self::open_with(path, init, StoreOptions::default(), system_clock())
    }

    /// Opens with options and a clock (tests use a manual clock). A `postgres://` or
    /// `postgresql://` location opens PostgreSQL; anything else is a SQLite file.
    pub fn open_with(
        path: &Path,
        init: bool,
        opts: StoreOptions,
        clock: Clock,
    ) -> Result<Self, StoreError> {
        if let Some(url) = postgres_url(path)? {
            return Self::open_postgres(url, init, false, opts, clock);
        }
        let wrap = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if !init && !path.exists() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        // One writer per file: taken before SQLite opens it, held until the store is closed.
        let lock = file::WriterLock::acquire(path, &opts.owner)?;
        let flags = if init {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        };
        let conn = open_conn(path, flags)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(wrap)?;
        // Room for a large batch (the decision log writes thousands of rows per transaction)
        // without spilling dirty pages to the WAL before the commit.
        conn.pragma_update(None, "cache_size", -16_384)
            .map_err(wrap)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(wrap)?;
        migrations::check_version(path, version, init)?;
        for (i, (_, sql)) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.unchecked_transaction().map_err(wrap)?;
            tx.execute_batch(sql).map_err(wrap)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(wrap)?;
            tx.commit().map_err(wrap)?;
        }
        let cache = Arc::new(Mutex::new(Cache::new(opts.cache_capacity)));
        let stats = Arc::new(WriterStats::default());
        let watch = Arc::new(file::FileWatch::new(path));
        let (tx, rx) = mpsc::channel();
        let writer = {
            let cache = Arc::clone(&cache);
            let clock = Arc::clone(&clock);
            let stats = Arc::clone(&stats);
            let watch = Arc::clone(&watch);
            std::thread::Builder::new()
                .name("skill-fleet-writer".into())
                .spawn(move || writer::run(conn, rx, cache, clock, opts, stats, watch))
                .map_err(|e| StoreError::Internal(format!("cannot start the writer thread: {e}")))?
        };
        Ok(Self {
            path: path.to_path_buf(),
            tx,
            threads: Mutex::new(vec![writer]),
            pg: None,
            lock: Mutex::new(Some(lock)),
            read_only: false,
            closed: AtomicBool::new(false),
            watch,
            readers: Mutex::new(Vec::new()),
            cache,
            clock,
            stats,
        })
    }

    /// Opens an existing database for reading only: no lock, no writer, no cache, so it works
    /// beside a running server (`db status`, `jobs list`, `training export`, …). Every change
    /// is refused with [`StoreError::ReadOnly`].
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        if let Some(url) = postgres_url(path)? {
            return Self::open_postgres(url, false, true, StoreOptions::default(), system_clock());
        }
        if !path.exists() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        let conn = open_conn(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        migrations::check_version(path, version, false)?;
        let (tx, _) = mpsc::channel();
        Ok(Self {
            path: path.to_path_buf(),
            tx,
            threads: Mutex::new(Vec::new()),
            pg: None,
            lock: Mutex::new(None),
            read_only: true,
            closed: AtomicBool::new(false),
            watch: Arc::new(file::FileWatch::new(path)),
            readers: Mutex::new(vec![conn]),
            cache: Arc::new(Mutex::new(Cache::new(0))),
            clock: system_clock(),
            stats: Arc::new(WriterStats::default()),
        })
    }

    /// PostgreSQL: workers (none when read-only) and read connections, no cache, no lock.
    fn open_postgres(
        url: pg::PgUrl,
        init: bool,
        read_only: bool,
        opts: StoreOptions,
        clock: Clock,
    ) -> Result<Self, StoreError> {
        let backend = Arc::new(pg::PgBackend::open(url, init, opts, clock())?);
        let path = PathBuf::from(backend.url().redacted());
        let stats = Arc::new(WriterStats::default());
        let (tx, rx) = mpsc::channel();
        let threads = if read_only {
            Vec::new()
        } else {
            backend.spawn_workers(rx, Arc::clone(&clock), Arc::clone(&stats))?
        };
        Ok(Self {
            watch: Arc::new(file::FileWatch::new(&path)),
            path,
            tx,
            threads: Mutex::new(threads),
            pg: Some(backend),
            lock: Mutex::new(None),
            read_only,
            closed: AtomicBool::new(false),
            readers: Mutex::new(Vec::new()),
            cache: Arc::new(Mutex::new(Cache::new(0))),
            clock,
            stats,
        })
    }
}

/// The PostgreSQL URL a database location names, if it names one.
pub(super) fn postgres_url(location: &Path) -> Result<Option<pg::PgUrl>, StoreError> {
    match location.to_str() {
        Some(l) if pg::PgUrl::is_url(l) => pg::PgUrl::parse(l).map(Some),
        _ => Ok(None),
    }
}

/// Whether a database exists at `location`: the file, or PostgreSQL's skill-fleet tables.
pub fn exists(location: &Path) -> Result<bool, StoreError> {
    if postgres_url(location)?.is_some() {
        return Ok(version_at(location)? > 0);
    }
    Ok(location.exists())
}

/// Deletes the database at `location` and everything in it: the SQLite file with its WAL and
/// shared-memory files, or PostgreSQL's skill-fleet tables. A missing database is fine.
pub fn destroy(location: &Path) -> Result<(), StoreError> {
    if let Some(url) = postgres_url(location)? {
        let mut client = url.connect(pg::CONNECT_TIMEOUT)?;
        return pg::drop_all(&mut client, &url);
    }
    file::remove_all(location)
}

/// A database location as messages show it: the path, or the URL with its password redacted.
pub fn display_location(location: &Path) -> String {
    match postgres_url(location) {
        Ok(Some(url)) => url.redacted().to_string(),
        Ok(None) => location.display().to_string(),
        Err(_) => match location.to_str() {
            Some(l) => pg::PgUrl::redact_text(l),
            None => location.display().to_string(),
        },
    }
}

/// Pending migrations of the database at `path` (a file, or a PostgreSQL URL): (number,
/// name), without applying them.
pub fn pending_migrations(path: &Path) -> Result<Vec<(usize, &'static str)>, StoreError> {
    let version = version_at(path)?;
    Ok(MIGRATIONS
        .iter()
        .enumerate()
        .skip(version.max(0) as usize)
        .map(|(i, (n, _))| (i + 1, *n))
        .collect())
}

/// The schema version of the database at `location`; 0 when there is none yet.
fn version_at(location: &Path) -> Result<i64, StoreError> {
    if let Some(url) = postgres_url(location)? {
        let mut client = url.connect(pg::CONNECT_TIMEOUT)?;
        return pg::schema_version(&mut client, &url);
    }
    if !location.exists() {
        return Ok(0);
    }
    let conn = open_conn(location, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}
