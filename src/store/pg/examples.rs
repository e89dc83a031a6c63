//! Training examples on PostgreSQL: imported by
//! `example_id`, listed, and updated with run results without losing an update when several
//! nodes apply results at once: the rows a batch touches are locked (in id order) before they
//! are read, and the moving averages are the engine's own (`apply_results`).

use super::super::examples::{encode_all, ImportCount};
use super::super::StoreError;
use super::{key, unreadable, PgUrl};
use crate::engine::training::{apply_results, Example, RunResult, UpdateOutcome};
use crate::rules::spec::TrainingSpec;
use postgres::{Client, GenericClient, Row};

/// A row of `example_id, record` as the record it holds.
fn decode(url: &PgUrl, r: &Row) -> Result<Example, StoreError> {
    let id: &str = r.try_get(0).map_err(unreadable("examples"))?;
    let text: &str = r.try_get(1).map_err(unreadable("examples"))?;
    serde_json::from_str(text).map_err(|e| StoreError::Postgres {
        url: url.redacted().to_string(),
        message: format!("stored example `{id}` is unreadable: {e}"),
    })
}

/// Inserts or replaces records by `example_id`, in the caller's transaction.
fn put_in(
    tx: &mut impl GenericClient,
    url: &PgUrl,
    records: &[Example],
    now_ms: i64,
) -> Result<ImportCount, StoreError> {
    let encoded = encode_all(records)?;
    let mut count = ImportCount::default();
    for (ex, record) in records.iter().zip(encoded) {
        let usage = i64::try_from(ex.usage_count).unwrap_or(i64::MAX);
        // `xmax = 0` only for a row this statement inserted (not one it updated).
        let inserted: bool = tx
            .query_one(
                "INSERT INTO examples (example_id, category, style, quality_score, success_rate, \
                 usage_count, last_used, record, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (example_id) DO UPDATE SET category = excluded.category, \
                 style = excluded.style, quality_score = excluded.quality_score, \
                 success_rate = excluded.success_rate, usage_count = excluded.usage_count, \
                 last_used = excluded.last_used, record = excluded.record, \
                 updated_at = excluded.updated_at \
                 RETURNING (xmax = 0)",
                &[
                    &ex.example_id,
                    &ex.category,
                    &ex.style.as_str(),
                    &ex.quality_score,
                    &ex.success_rate,
                    &usage,
                    &ex.last_used,
                    &record,
                    &now_ms,
                ],
            )
            .map_err(|e| url.error(e))?
            .try_get(0)
            .map_err(unreadable("examples"))?;
        if inserted {
            count.inserted += 1;
        } else {
            count.updated += 1;
        }
    }
    Ok(count)
}

/// Inserts or replaces records by `example_id`, in one transaction.
pub fn put(
    client: &mut Client,
    url: &PgUrl,
    records: &[Example],
    now_ms: i64,
) -> Result<ImportCount, StoreError> {
    let mut tx = client.transaction().map_err(|e| url.error(e))?;
    let count = put_in(&mut tx, url, records, now_ms)?;
    tx.commit().map_err(|e| url.error(e))?;
    Ok(count)
}

/// Every record, by `example_id` in byte order.
pub fn all(client: &mut Client, url: &PgUrl) -> Result<Vec<Example>, StoreError> {
    let rows = client
        .query(
            // Byte order, as SQLite's (and Rust's): the database's collation may sort by a
            // language's rules instead.
            "SELECT example_id, record FROM examples ORDER BY example_id COLLATE \"C\"",
            &[],
        )
        .map_err(|e| url.error(e))?;
    rows.iter().map(|r| decode(url, r)).collect()
}

/// Number of records.
pub fn count(client: &mut Client, url: &PgUrl) -> Result<u64, StoreError> {
    let n: i64 = client
        .query_one("SELECT COUNT(*) FROM examples", &[])
        .map_err(|e| url.error(e))?
        .try_get(0)
        .map_err(unreadable("examples"))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Applies run results: the touched rows are locked before they are read, so two nodes
/// applying results to the same example never lose one of the updates.
pub fn update(
    client: &mut Client,
    url: &PgUrl,
    spec: &TrainingSpec,
    results: &[RunResult],
    now_ms: i64,
) -> Result<UpdateOutcome, StoreError> {
    let mut tx = client.transaction().map_err(|e| url.error(e))?;
    let outcome = update_in(&mut tx, url, spec, results, now_ms)?;
    tx.commit().map_err(|e| url.error(e))?;
    Ok(outcome)
}

/// [`update`] inside the caller's transaction (a job's completion applies its results with it).
pub(super) fn update_in(
    tx: &mut impl GenericClient,
    url: &PgUrl,
    spec: &TrainingSpec,
    results: &[RunResult],
    now_ms: i64,
) -> Result<UpdateOutcome, StoreError> {
    let err = |e| url.error(e);
    // An id with a NUL character names no example: reported unknown, as on SQLite.
    let mut ids: Vec<&str> = results.iter().filter_map(|r| key(&r.example_id)).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = tx
        .query(
            "SELECT example_id, record FROM examples WHERE example_id = ANY($1) \
             ORDER BY example_id FOR UPDATE",
            &[&ids],
        )
        .map_err(err)?;
    let current = rows
        .iter()
        .map(|r| decode(url, r))
        .collect::<Result<Vec<_>, _>>()?;
    let now = super::super::sql::ms_to_rfc3339(now_ms);
    let outcome = apply_results(spec, &current, results, &now);
    put_in(tx, url, &outcome.updated, now_ms)?;
    Ok(outcome)
}
