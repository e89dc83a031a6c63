//! SQL shared by the writer and the readers: the jobs table's columns and row mapping.

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

/// Maps a row selected with [`COLUMNS`].
pub fn row_to_job(r: &Row<'_>) -> rusqlite::Result<Job> {
    let status: String = r.get(2)?;
    let lease_owner: Option<String> = r.get(13)?;
    let lease_expires: Option<i64> = r.get(14)?;
    let hitl_type: Option<String> = r.get(15)?;
    Ok(Job {
        id: r.get(0)?,
        job_type: r.get(1)?,
        status: Status::parse(&status).unwrap_or(Status::Failed),
        user_id: r.get(3)?,
        task: r.get(4)?,
        payload: json(r.get(5)?).unwrap_or(serde_json::Value::Null),
        result: json(r.get(6)?),
        error: r.get(7)?,
        progress: Progress {
            percent: r.get(8)?,
            message: r.get(9)?,
            phase: r.get(10)?,
        },
        attempt: r.get(11)?,
        max_attempts: r.get(12)?,
        lease: match (lease_owner, lease_expires) {
            (Some(owner), Some(exp)) => Some(LeaseInfo {
                owner,
                expires_at: ms_to_rfc3339(exp),
            }),
            _ => None,
        },
        hitl: hitl_type.map(|kind| Hitl {
            kind,
            data: json(r.get(16).ok().flatten()).unwrap_or(serde_json::Value::Null),
            response: json(r.get(17).ok().flatten()),
        }),
        idempotency_key: r.get(18)?,
        not_before: r.get::<_, Option<i64>>(19)?.map(ms_to_rfc3339),
        created_at: ms_to_rfc3339(r.get(20)?),
        updated_at: ms_to_rfc3339(r.get(21)?),
        started_at: r.get::<_, Option<i64>>(22)?.map(ms_to_rfc3339),
        completed_at: r.get::<_, Option<i64>>(23)?.map(ms_to_rfc3339),
        version: r.get(24)?,
    })
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
