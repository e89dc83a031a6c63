//! SQL shared by the writer and the readers: the jobs table's columns and row mapping, and
//! [`Columns`], through which the row mappings of jobs, decisions and outcomes read both backends.

use super::job::{Hitl, Job, LeaseInfo, Progress, Status};
use super::lifecycle::Head;
use rusqlite::{Connection, OptionalExtension, Row};

/// Columns of `jobs`, in the order [`row_to_job`] reads them.
pub const COLUMNS: &str = "id, job_type, status, user_id, task, payload, result, error, \
     progress_percent, progress_message, progress_phase, attempt, max_attempts, \
     lease_owner, lease_expires_at, hitl_type, hitl_data, hitl_response, idempotency_key, \
     not_before, created_at, updated_at, started_at, completed_at, version";

/// Milliseconds since the epoch as RFC 3339.
pub fn ms_to_rfc3339(ms: i64) -> String {
    crate::util::time::rfc3339_ms(ms)
}

/// A JSON text column as a value (text that is not JSON stays a string), for every backend.
pub(super) fn json(text: Option<String>) -> Option<serde_json::Value> {
    text.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
}

/// A row as either backend returns it: the column types our tables are read from, so one
/// mapping per table ([`job_from`], `decisions::decision_from`, `outcomes::outcome_from`) reads
/// the rows of both backends the same way.
pub(super) trait Columns {
    /// The backend's error for a column it cannot read.
    type Error;
    /// A text column that is never NULL.
    fn text(&self, i: usize) -> Result<String, Self::Error>;
    /// A text column that may be NULL.
    fn opt_text(&self, i: usize) -> Result<Option<String>, Self::Error>;
    /// An integer column that is never NULL.
    fn int(&self, i: usize) -> Result<i64, Self::Error>;
    /// An integer column that may be NULL.
    fn opt_int(&self, i: usize) -> Result<Option<i64>, Self::Error>;
    /// A real column that is never NULL.
    fn real(&self, i: usize) -> Result<f64, Self::Error>;
    /// A real column that may be NULL.
    fn opt_real(&self, i: usize) -> Result<Option<f64>, Self::Error>;
}

impl Columns for Row<'_> {
    type Error = rusqlite::Error;
    fn text(&self, i: usize) -> rusqlite::Result<String> {
        self.get(i)
    }
    fn opt_text(&self, i: usize) -> rusqlite::Result<Option<String>> {
        self.get(i)
    }
    fn int(&self, i: usize) -> rusqlite::Result<i64> {
        self.get(i)
    }
    fn opt_int(&self, i: usize) -> rusqlite::Result<Option<i64>> {
        self.get(i)
    }
    fn real(&self, i: usize) -> rusqlite::Result<f64> {
        self.get(i)
    }
    fn opt_real(&self, i: usize) -> rusqlite::Result<Option<f64>> {
        self.get(i)
    }
}

/// Maps a row selected with [`COLUMNS`], on either backend.
pub(super) fn job_from<R: Columns>(r: &R) -> Result<Job, R::Error> {
    let status = r.text(2)?;
    let lease_owner = r.opt_text(13)?;
    let lease_expires = r.opt_int(14)?;
    let hitl_type = r.opt_text(15)?;
    Ok(Job {
        id: r.text(0)?,
        job_type: r.text(1)?,
        status: Status::parse(&status).unwrap_or(Status::Failed),
        user_id: r.opt_text(3)?,
        task: r.text(4)?,
        payload: json(r.opt_text(5)?).unwrap_or(serde_json::Value::Null),
        result: json(r.opt_text(6)?),
        error: r.opt_text(7)?,
        progress: Progress {
            percent: r.real(8)?,
            message: r.opt_text(9)?,
            phase: r.opt_text(10)?,
        },
        attempt: r.int(11)?,
        max_attempts: r.int(12)?,
        lease: match (lease_owner, lease_expires) {
            (Some(owner), Some(exp)) => Some(LeaseInfo {
                owner,
                expires_at: ms_to_rfc3339(exp),
            }),
            _ => None,
        },
        hitl: hitl_type.map(|kind| Hitl {
            kind,
            data: json(r.opt_text(16).ok().flatten()).unwrap_or(serde_json::Value::Null),
            response: json(r.opt_text(17).ok().flatten()),
        }),
        idempotency_key: r.opt_text(18)?,
        not_before: r.opt_int(19)?.map(ms_to_rfc3339),
        created_at: ms_to_rfc3339(r.int(20)?),
        updated_at: ms_to_rfc3339(r.int(21)?),
        started_at: r.opt_int(22)?.map(ms_to_rfc3339),
        completed_at: r.opt_int(23)?.map(ms_to_rfc3339),
        version: r.int(24)?,
    })
}

/// Maps a SQLite row selected with [`COLUMNS`].
pub fn row_to_job(r: &Row<'_>) -> rusqlite::Result<Job> {
    job_from(r)
}

/// One job by id.
pub fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<Job>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"))?
        .query_row([id], row_to_job)
        .optional()
}

/// Status, lease and attempts of one job.
pub fn head(conn: &Connection, id: &str) -> rusqlite::Result<Option<Head>> {
    conn.prepare_cached(
        "SELECT status, lease_token, lease_expires_at, attempt, max_attempts FROM jobs WHERE id = ?1",
    )?
    .query_row([id], |r| {
        let s: String = r.get(0)?;
        Ok(Head {
            status: Status::parse(&s).unwrap_or(Status::Failed),
            token: r.get(1)?,
            lease_expires_at: r.get(2)?,
            attempt: r.get(3)?,
            max_attempts: r.get(4)?,
        })
    })
    .optional()
}
