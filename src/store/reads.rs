//! Reads that list or sum up: a page of jobs with filters and a cursor, and the database's
//! status for `db status`.

use super::job::{Job, Status};
use super::{sql, Store, StoreError, MIGRATIONS};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A page of jobs, newest first.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Page {
    /// The jobs.
    pub jobs: Vec<Job>,
    /// Pass as `cursor` to get the next page; none on the last page.
    pub next_cursor: Option<String>,
}

/// Filters of a job listing.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this type.
    pub job_type: Option<String>,
    /// Only this user.
    pub user_id: Option<String>,
    /// Page size (1..=500).
    pub limit: usize,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// What `db status` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DbStatus {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// File, or PostgreSQL URL with its password redacted.
    pub path: String,
    /// Schema version in the database.
    pub schema_version: i64,
    /// Latest version this build knows.
    pub latest_version: i64,
    /// SQLite library version (SQLite only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlite_version: Option<String>,
    /// PostgreSQL server version (PostgreSQL only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_version: Option<String>,
    /// Jobs per status.
    pub jobs: BTreeMap<String, i64>,
    /// Size of the database file in bytes (SQLite only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_bytes: Option<u64>,
    /// Size of the WAL file in bytes (SQLite only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_bytes: Option<u64>,
}

/// Every status with a count of 0, for the counts to fill in.
fn zero_counts() -> BTreeMap<String, i64> {
    Status::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect()
}

/// A cursor (`<created_at ms>_<id>`, as [`Page::next_cursor`] gives it) as its two parts (one
/// with a NUL character is none: PostgreSQL cannot take it).
pub(super) fn parse_cursor(c: &str) -> Result<(i64, String), StoreError> {
    c.split_once('_')
        .filter(|_| !c.contains('\0'))
        .and_then(|(t, i)| t.parse::<i64>().ok().map(|t| (t, i.to_string())))
        .ok_or_else(|| StoreError::Field {
            field: "cursor".into(),
            message: format!("invalid cursor `{c}`"),
        })
}

/// A page from up to `limit + 1` rows (job, `created_at` in ms), newest first: the extra row
/// only says there is a next page.
pub(super) fn page(rows: Vec<(Job, i64)>, limit: usize) -> Page {
    let (mut jobs, raw): (Vec<Job>, Vec<i64>) = rows.into_iter().unzip();
    let next_cursor = if jobs.len() > limit {
        jobs.truncate(limit);
        jobs.last().map(|j| format!("{}_{}", raw[limit - 1], j.id))
    } else {
        None
    };
    Page { jobs, next_cursor }
}

impl Store {
    /// Lists jobs, newest first, with filters and a cursor.
    pub fn list(&self, f: &Filter) -> Result<Page, StoreError> {
        if let Some(backend) = &self.pg {
            self.check_open()?;
            return backend.read(|c, _| backend.jobs().list(c, f));
        }
        let limit = f.limit.clamp(1, 500);
        let mut sql = format!("SELECT {} FROM jobs WHERE 1 = 1", sql::COLUMNS);
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(s) = f.status {
            values.push(s.as_str().to_string().into());
            sql.push_str(&format!(" AND status = ?{}", values.len()));
        }
        if let Some(t) = &f.job_type {
            values.push(t.clone().into());
            sql.push_str(&format!(" AND job_type = ?{}", values.len()));
        }
        if let Some(u) = &f.user_id {
            values.push(u.clone().into());
            sql.push_str(&format!(" AND user_id = ?{}", values.len()));
        }
        if let Some(c) = &f.cursor {
            let (ts, id) = parse_cursor(c)?;
            values.push(ts.into());
            values.push(id.into());
            sql.push_str(&format!(
                " AND (created_at, id) < (?{}, ?{})",
                values.len() - 1,
                values.len()
            ));
        }
        sql.push_str(&format!(
            " ORDER BY created_at DESC, id DESC LIMIT {}",
            limit + 1
        ));
        let rows: Vec<(Job, i64)> = self.read(|c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
                Ok((sql::row_to_job(r)?, r.get::<_, i64>(20)?))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })?;
        Ok(page(rows, limit))
    }

    /// Jobs per status, file sizes and versions.
    pub fn status(&self) -> Result<DbStatus, StoreError> {
        if let Some(backend) = &self.pg {
            self.check_open()?;
            return backend.read(|c, url| {
                let schema_version = super::pg::schema_version(c, url)?;
                let err = |e| url.error(e);
                let version: String = c.query_one("SHOW server_version", &[]).map_err(err)?.get(0);
                let mut jobs = zero_counts();
                for r in c
                    .query("SELECT status, COUNT(*) FROM jobs GROUP BY status", &[])
                    .map_err(err)?
                {
                    jobs.insert(r.get(0), r.get(1));
                }
                Ok(DbStatus {
                    backend: "postgres",
                    path: url.redacted().to_string(),
                    schema_version,
                    latest_version: MIGRATIONS.len() as i64,
                    sqlite_version: None,
                    postgres_version: Some(version),
                    jobs,
                    file_bytes: None,
                    wal_bytes: None,
                })
            });
        }
        let (schema_version, sqlite_version, jobs) = self.read(|c| {
            let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
            let sv: String = c.query_row("SELECT sqlite_version()", [], |r| r.get(0))?;
            let mut jobs = zero_counts();
            let mut stmt = c.prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (s, n) = row?;
                jobs.insert(s, n);
            }
            Ok((v, sv, jobs))
        })?;
        let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        Ok(DbStatus {
            backend: "sqlite",
            path: self.path.display().to_string(),
            schema_version,
            latest_version: MIGRATIONS.len() as i64,
            sqlite_version: Some(sqlite_version),
            postgres_version: None,
            jobs,
            file_bytes: Some(size(self.path.clone())),
            wal_bytes: Some(size(PathBuf::from(wal))),
        })
    }
}
