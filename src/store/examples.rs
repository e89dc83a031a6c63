//! The `examples` table: training-example metadata, one row per `example_id`, the whole record
//! kept as JSON next to the columns used for counting and filtering.

use super::StoreError;
use crate::engine::training::{apply_results, Example, RunResult, UpdateOutcome};
use crate::rules::spec::TrainingSpec;
use rusqlite::{params, Connection};

/// How many records an import added and replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportCount {
    /// New example ids.
    pub inserted: usize,
    /// Existing example ids whose record was replaced.
    pub updated: usize,
}

/// Every record as the JSON stored beside its columns, encoded before the first write of an
/// import so that a refusal leaves no trace (every backend). The columns' texts may hold no
/// NUL character (PostgreSQL cannot store one) and their numbers must be finite (SQLite stores
/// NaN as NULL), alike on every backend.
pub(super) fn encode_all(records: &[Example]) -> Result<Vec<String>, StoreError> {
    records
        .iter()
        .map(|ex| {
            check(ex).map_err(|e| match e {
                StoreError::Field { field, message } => StoreError::Field {
                    field,
                    message: format!("example `{}`: {message}", ex.example_id.escape_debug()),
                },
                other => other,
            })?;
            serde_json::to_string(ex).map_err(|e| {
                StoreError::Internal(format!("cannot encode example `{}`: {e}", ex.example_id))
            })
        })
        .collect()
}

/// The checks of one record's columns.
fn check(ex: &Example) -> Result<(), StoreError> {
    super::job::check_text("example_id", &ex.example_id)?;
    super::job::check_text("category", &ex.category)?;
    super::job::check_finite("quality_score", ex.quality_score)?;
    if let Some(rate) = ex.success_rate {
        super::job::check_finite("success_rate", rate)?;
    }
    Ok(())
}

/// Inserts or replaces records by `example_id` (inside the caller's transaction).
pub fn put(conn: &Connection, records: &[Example], now_ms: i64) -> Result<ImportCount, StoreError> {
    let encoded = encode_all(records)?;
    let mut count = ImportCount::default();
    for (ex, record) in records.iter().zip(encoded) {
        let exists: bool = conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM examples WHERE example_id = ?1)")?
            .query_row([&ex.example_id], |r| r.get(0))?;
        conn.prepare_cached(
            "INSERT INTO examples (example_id, category, style, quality_score, success_rate, \
             usage_count, last_used, record, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             ON CONFLICT (example_id) DO UPDATE SET category = excluded.category, \
             style = excluded.style, quality_score = excluded.quality_score, \
             success_rate = excluded.success_rate, usage_count = excluded.usage_count, \
             last_used = excluded.last_used, record = excluded.record, updated_at = excluded.updated_at",
        )?
        .execute(params![
            ex.example_id,
            ex.category,
            ex.style.as_str(),
            ex.quality_score,
            ex.success_rate,
            i64::try_from(ex.usage_count).unwrap_or(i64::MAX),
            ex.last_used,
            record,
            now_ms
        ])?;
        if exists {
            count.updated += 1;
        } else {
            count.inserted += 1;
        }
    }
    Ok(count)
}

/// Every record, by `example_id`.
pub fn all(conn: &Connection) -> Result<Vec<Example>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT example_id, record FROM examples ORDER BY example_id")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, text) = row?;
        let ex = serde_json::from_str(&text).map_err(|e| {
            StoreError::Invalid(format!("stored example `{id}` is unreadable: {e}"))
        })?;
        out.push(ex);
    }
    Ok(out)
}

/// Number of records.
pub fn count(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM examples", [], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Applies run results to the current records (inside the caller's transaction).
pub fn update(
    conn: &Connection,
    spec: &TrainingSpec,
    results: &[RunResult],
    now_ms: i64,
) -> Result<UpdateOutcome, StoreError> {
    let current = all(conn)?;
    let now = super::sql::ms_to_rfc3339(now_ms);
    let outcome = apply_results(spec, &current, results, &now);
    put(conn, &outcome.updated, now_ms)?;
    Ok(outcome)
}
