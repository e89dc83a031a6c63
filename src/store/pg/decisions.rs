//! The decision log on PostgreSQL: blocks of
//! ids reserved under the `meta` row's lock, so nodes never hand out the same id, and batches
//! written as multi-row inserts, so a busy node keeps up.

use super::super::decisions::{
    decision_from, DecisionCounts, DecisionRecord, NewDecision, COLUMNS, NEXT_ID_KEY,
};
use super::super::StoreError;
use super::{unreadable, PgUrl};
use postgres::types::ToSql;
use postgres::Client;
use std::collections::BTreeMap;

/// Rows per `INSERT` (12 parameters each, far below PostgreSQL's 65,535).
const ROWS_PER_INSERT: usize = 500;

/// Reserves `n` decision ids; returns the first. The `meta` row is locked for the transaction,
/// so concurrent reservations (on any node) get disjoint blocks; ids already in the log are
/// never handed out again.
pub fn reserve(client: &mut Client, url: &PgUrl, n: i64) -> Result<i64, StoreError> {
    if n < 1 {
        return Err(StoreError::Invalid(format!(
            "cannot reserve {n} decision ids"
        )));
    }
    let err = |e| url.error(e);
    let mut tx = client.transaction().map_err(err)?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ($1, '1') ON CONFLICT (key) DO NOTHING",
        &[&NEXT_ID_KEY],
    )
    .map_err(err)?;
    let stored: String = tx
        .query_one(
            "SELECT value FROM meta WHERE key = $1 FOR UPDATE",
            &[&NEXT_ID_KEY],
        )
        .map_err(err)?
        .try_get(0)
        .map_err(unreadable("meta"))?;
    let max: Option<i64> = tx
        .query_one("SELECT MAX(id) FROM decisions", &[])
        .map_err(err)?
        .try_get(0)
        .map_err(unreadable("decisions"))?;
    let start = stored.parse::<i64>().unwrap_or(1).max(max.unwrap_or(0) + 1);
    tx.execute(
        "UPDATE meta SET value = $2 WHERE key = $1",
        &[&NEXT_ID_KEY, &(start + n).to_string()],
    )
    .map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(start)
}

/// Writes a batch of decisions in one transaction, `ROWS_PER_INSERT` rows per statement.
pub fn insert(client: &mut Client, url: &PgUrl, rows: &[NewDecision]) -> Result<usize, StoreError> {
    let texts = rows
        .iter()
        .map(NewDecision::row)
        .collect::<Result<Vec<_>, _>>()?;
    let err = |e| url.error(e);
    let mut tx = client.transaction().map_err(err)?;
    for (chunk, texts) in rows
        .chunks(ROWS_PER_INSERT)
        .zip(texts.chunks(ROWS_PER_INSERT))
    {
        let mut sql = String::from(
            "INSERT INTO decisions (id, created_at, request_id, source, revision, rule, \
             optimizer, variant, estimated_cost, estimated_time, input, output) VALUES ",
        );
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(chunk.len() * 12);
        for (i, (d, t)) in chunk.iter().zip(texts).enumerate() {
            let b = i * 12;
            let marks: Vec<String> = (1..=12).map(|k| format!("${}", b + k)).collect();
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("({})", marks.join(", ")));
            params.extend_from_slice(&[
                &d.id,
                &d.at_ms,
                &t.request_id,
                &d.source,
                &t.revision,
                &t.rule,
                &t.optimizer,
                &t.variant,
                &d.estimated_cost,
                &d.estimated_time,
                &t.input,
                &t.output,
            ]);
        }
        tx.execute(&sql, &params).map_err(err)?;
    }
    tx.commit().map_err(err)?;
    Ok(rows.len())
}

/// One decision by id.
pub fn get(
    client: &mut impl postgres::GenericClient,
    url: &PgUrl,
    id: i64,
) -> Result<Option<DecisionRecord>, StoreError> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM decisions WHERE id = $1"),
            &[&id],
        )
        .map_err(|e| url.error(e))?;
    row.as_ref()
        .map(decision_from)
        .transpose()
        .map_err(unreadable("decisions"))
}

/// Calls `f` with every decision made at or after `since_ms`, oldest first; how many.
pub fn each_since(
    client: &mut Client,
    url: &PgUrl,
    since_ms: i64,
    mut f: impl FnMut(DecisionRecord),
) -> Result<u64, StoreError> {
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM decisions WHERE created_at >= $1 ORDER BY id"),
            &[&since_ms],
        )
        .map_err(|e| url.error(e))?;
    for r in &rows {
        f(decision_from(r).map_err(unreadable("decisions"))?);
    }
    Ok(rows.len() as u64)
}

/// Counts per optimizer, rule and revision of the decisions made at or after `since_ms`.
pub fn counts(
    client: &mut Client,
    url: &PgUrl,
    since_ms: i64,
) -> Result<DecisionCounts, StoreError> {
    let rows = client
        .query(
            "SELECT optimizer, rule, revision, COUNT(*) FROM decisions WHERE created_at >= $1 \
             GROUP BY optimizer, rule, revision",
            &[&since_ms],
        )
        .map_err(|e| url.error(e))?;
    let mut out = DecisionCounts::default();
    let mut add = |r: &postgres::Row| -> Result<(), postgres::Error> {
        let n = r.try_get::<_, i64>(3)?.max(0) as u64;
        out.total += n;
        *out.by_optimizer.entry(r.try_get(0)?).or_default() += n;
        *out.by_rule.entry(r.try_get(1)?).or_default() += n;
        *out.by_revision.entry(r.try_get(2)?).or_default() += n;
        Ok(())
    };
    for r in &rows {
        add(r).map_err(unreadable("decisions"))?;
    }
    Ok(out)
}

/// Decisions per optimizer in `buckets` intervals of `bucket_ms` from `since_ms` (the same
/// answer as SQLite's `decisions::timeline`).
pub fn timeline(
    client: &mut Client,
    url: &PgUrl,
    since_ms: i64,
    bucket_ms: i64,
    buckets: usize,
) -> Result<Vec<BTreeMap<String, u64>>, StoreError> {
    let mut out = vec![BTreeMap::new(); buckets];
    let rows = client
        .query(
            "SELECT (created_at - $1) / $2, optimizer, COUNT(*) FROM decisions \
             WHERE created_at >= $1 GROUP BY 1, 2",
            &[&since_ms, &bucket_ms.max(1)],
        )
        .map_err(|e| url.error(e))?;
    let mut add = |r: &postgres::Row| -> Result<(), postgres::Error> {
        let k: i64 = r.try_get(0)?;
        if let Some(slot) = usize::try_from(k).ok().and_then(|k| out.get_mut(k)) {
            slot.insert(r.try_get(1)?, r.try_get::<_, i64>(2)?.max(0) as u64);
        }
        Ok(())
    };
    for r in &rows {
        add(r).map_err(unreadable("decisions"))?;
    }
    Ok(out)
}
