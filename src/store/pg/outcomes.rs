//! Outcomes on PostgreSQL: recorded linked to
//! their decision (filled from it as on SQLite, by `outcomes::link`), one per job
//! whatever node records it, and read back for the live confidence model and the metrics.

use super::super::outcomes::{link, outcome_from, Linked, NewOutcome, OutcomeRecord, COLUMNS};
use super::super::StoreError;
use super::{unreadable, PgUrl};
use postgres::{Client, GenericClient};

fn get(client: &mut impl GenericClient, url: &PgUrl, id: i64) -> Result<OutcomeRecord, StoreError> {
    client
        .query_one(
            &format!("SELECT {COLUMNS} FROM outcomes WHERE id = $1"),
            &[&id],
        )
        .map_err(|e| url.error(e))
        .and_then(|r| outcome_from(&r).map_err(unreadable("outcomes")))
}

/// Records an outcome. An unknown decision id is refused before anything is written; a job
/// already recorded (by this node or another) keeps its first outcome.
pub fn record(
    client: &mut Client,
    url: &PgUrl,
    new: &NewOutcome,
    now_ms: i64,
) -> Result<OutcomeRecord, StoreError> {
    let mut tx = client.transaction().map_err(|e| url.error(e))?;
    let out = record_in(&mut tx, url, new, now_ms)?;
    tx.commit().map_err(|e| url.error(e))?;
    Ok(out)
}

/// [`record`] inside the caller's transaction (a job's completion records its outcome with it).
pub(super) fn record_in(
    tx: &mut impl GenericClient,
    url: &PgUrl,
    new: &NewOutcome,
    now_ms: i64,
) -> Result<OutcomeRecord, StoreError> {
    let err = |e| url.error(e);
    let Linked {
        ctx,
        recommended,
        rule,
        revision,
    } = link(new, |id| super::decisions::get(tx, url, id))?;
    let r = &new.report;
    let domain = ctx.domain.clone().unwrap_or_else(|| "general".into());
    let auto_selected = i64::from(ctx.auto_selected);
    let inserted = tx
        .query_opt(
            "INSERT INTO outcomes (decision_id, job_id, created_at, domain, optimizer_used, \
             recommended, rule, revision, trainset_size, budget, quality_target, model, variant, \
             estimated_cost, estimated_time, actual_cost, actual_time, quality, auto_selected) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19) ON CONFLICT (job_id) DO NOTHING RETURNING id",
            &[
                &new.decision_id,
                &new.job_id,
                &now_ms,
                &domain,
                &r.optimizer_used,
                &recommended,
                &rule,
                &revision,
                &ctx.trainset_size,
                &ctx.budget,
                &ctx.quality_target,
                &ctx.model,
                &ctx.variant,
                &ctx.estimated_cost,
                &ctx.estimated_time,
                &r.actual_cost,
                &r.actual_time_minutes,
                &r.quality,
                &auto_selected,
            ],
        )
        .map_err(err)?;
    let id: i64 = match inserted {
        Some(row) => {
            // Delivered to every listening node when the transaction commits.
            tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL])
                .map_err(err)?;
            row.try_get(0).map_err(unreadable("outcomes"))?
        }
        // The job's outcome was recorded first elsewhere: that one stands.
        None => tx
            .query_one("SELECT id FROM outcomes WHERE job_id = $1", &[&new.job_id])
            .map_err(err)?
            .try_get(0)
            .map_err(unreadable("outcomes"))?,
    };
    get(tx, url, id)
}

/// The channel on which a recorded outcome is announced (`LISTEN skill_fleet_outcomes`).
pub const CHANNEL: &str = "skill_fleet_outcomes";

/// Outcomes recorded so far: their number and the highest id, which change with every record
/// (the polling side of [`CHANNEL`]).
pub fn mark(client: &mut Client, url: &PgUrl) -> Result<(i64, i64), StoreError> {
    let r = client
        .query_one("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM outcomes", &[])
        .map_err(|e| url.error(e))?;
    let read = || Ok((r.try_get(0)?, r.try_get(1)?));
    read().map_err(unreadable("outcomes"))
}

/// Outcomes recorded at or after `since_ms`, oldest first.
pub fn since(
    client: &mut Client,
    url: &PgUrl,
    since_ms: i64,
) -> Result<Vec<OutcomeRecord>, StoreError> {
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM outcomes WHERE created_at >= $1 ORDER BY id"),
            &[&since_ms],
        )
        .map_err(|e| url.error(e))?;
    rows.iter()
        .map(outcome_from)
        .collect::<Result<_, _>>()
        .map_err(unreadable("outcomes"))
}
