//! The `outcomes` table: what an optimization run actually cost, took and reached, linked to the decision
//! that recommended it when there was one. They feed the live confidence model, the selector
//! metrics, `metrics export` and `rules calibrate`.

use super::decisions;
use super::sql::Columns;
use super::StoreError;
pub use crate::outcome::{
    parse_report, FieldError, NewOutcome, OutcomeRecord, RunContext, RunReport,
};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

/// Fills what the linked decision knows: its input (domain, size, budget, target, model), its
/// recommendation, and the estimate of the optimizer used (the primary's, or an alternative's).
fn from_decision(
    d: &decisions::DecisionRecord,
    used: &str,
    ctx: &mut RunContext,
) -> Option<String> {
    let input = RunContext::from_json(&d.input);
    ctx.domain = input.domain.or(ctx.domain.take());
    ctx.trainset_size = input.trainset_size.or(ctx.trainset_size);
    ctx.budget = input.budget.or(ctx.budget);
    ctx.quality_target = input.quality_target.or(ctx.quality_target);
    ctx.model = input.model.or(ctx.model.take());
    ctx.auto_selected = true;
    if d.optimizer == used {
        ctx.estimated_cost = Some(d.estimated_cost);
        ctx.estimated_time = Some(d.estimated_time);
        if ctx.variant.is_none() {
            ctx.variant = d.variant.clone();
        }
    } else if let Some(alt) = d
        .output
        .get("alternatives")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|x| x.get("optimizer").and_then(Value::as_str) == Some(used))
        })
    {
        ctx.estimated_cost = alt.get("estimated_cost").and_then(Value::as_f64);
        ctx.estimated_time = alt.get("estimated_time_minutes").and_then(Value::as_f64);
    } else {
        ctx.estimated_cost = None;
        ctx.estimated_time = None;
    }
    Some(d.optimizer.clone())
}

/// What an outcome takes from the decision it names: the run's context filled from it, the
/// recommended optimizer, the rule and the revision (all `None` without a decision id).
pub(super) struct Linked {
    /// The context: the report's, with what the decision knows.
    pub ctx: RunContext,
    /// The optimizer the decision recommended.
    pub recommended: Option<String>,
    /// The rule that decided.
    pub rule: Option<String>,
    /// The rules revision that decided.
    pub revision: Option<String>,
}

/// Links `new` to its decision, read with `decision`; an id the log does not hold is refused,
/// naming `decision_id`, before anything is written. The same for every backend.
pub(super) fn link(
    new: &NewOutcome,
    decision: impl FnOnce(i64) -> Result<Option<decisions::DecisionRecord>, StoreError>,
) -> Result<Linked, StoreError> {
    let mut ctx = new.context.clone();
    let Some(id) = new.decision_id else {
        return Ok(Linked {
            ctx,
            recommended: None,
            rule: None,
            revision: None,
        });
    };
    let d = decision(id)?.ok_or_else(|| StoreError::Field {
        field: "decision_id".into(),
        message: format!("no decision `{id}` in the decision log"),
    })?;
    let recommended = from_decision(&d, &new.report.optimizer_used, &mut ctx);
    Ok(Linked {
        ctx,
        recommended,
        rule: Some(d.rule),
        revision: Some(d.revision),
    })
}

/// The outcome a completed `optimization` job reports in its result, for every backend: none
/// when the result has no outcome fields (or bad ones, [`check`] included). Its `decision_id` is the one the
/// payload names (`decision_id`, or `decision.decision_id`), unchecked: the backend drops it
/// when the decision is not in its log.
pub(super) fn from_job(id: &str, payload: &str, result: &Value) -> Option<NewOutcome> {
    let Ok(Some(report)) = parse_report(result) else {
        return None;
    };
    let payload: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    let decision_id = payload
        .get("decision_id")
        .and_then(Value::as_i64)
        .or_else(|| {
            payload
                .get("decision")
                .and_then(|d| d.get("decision_id"))
                .and_then(Value::as_i64)
        });
    let mut context = RunContext::from_json(&payload);
    let planned = payload.get("optimizer").and_then(Value::as_str);
    if planned.is_some_and(|p| p != report.optimizer_used) {
        // The run used another optimizer than the job planned: the plan's variant and
        // estimates are not its own.
        context.variant = None;
        context.estimated_cost = None;
        context.estimated_time = None;
    }
    if let Some(v) = result.get("variant").and_then(Value::as_str) {
        context.variant = Some(v.to_string());
    }
    let new = NewOutcome {
        report,
        decision_id,
        job_id: Some(id.to_string()),
        context,
    };
    check(&new).ok()?;
    Some(new)
}

/// Checks what no backend may store differently (every backend, before anything is written):
/// texts without a NUL character, which PostgreSQL cannot store, and finite numbers, since
/// SQLite stores NaN as NULL where PostgreSQL keeps it.
pub fn check(new: &NewOutcome) -> Result<(), StoreError> {
    let (r, c) = (&new.report, &new.context);
    let texts = [
        ("optimizer_used", Some(&r.optimizer_used)),
        ("job_id", new.job_id.as_ref()),
        ("domain", c.domain.as_ref()),
        ("model", c.model.as_ref()),
        ("variant", c.variant.as_ref()),
    ];
    for (field, text) in texts {
        if let Some(t) = text {
            super::job::check_text(field, t)?;
        }
    }
    let numbers = [
        ("quality", Some(r.quality)),
        ("actual_cost", r.actual_cost),
        ("actual_time_minutes", r.actual_time_minutes),
        ("budget", c.budget),
        ("quality_target", c.quality_target),
        ("estimated_cost", c.estimated_cost),
        ("estimated_time_minutes", c.estimated_time),
    ];
    for (field, number) in numbers {
        if let Some(x) = number {
            super::job::check_finite(field, x)?;
        }
    }
    Ok(())
}

/// Records an outcome (inside the writer's transaction). An unknown decision id is refused
/// before anything is written; a job already recorded keeps its first outcome.
pub fn record(
    conn: &Connection,
    new: &NewOutcome,
    now_ms: i64,
) -> Result<OutcomeRecord, StoreError> {
    let Linked {
        ctx,
        recommended,
        rule,
        revision,
    } = link(new, |id| decisions::get(conn, id))?;
    if let Some(job) = &new.job_id {
        let existing: Option<i64> = conn
            .prepare_cached("SELECT id FROM outcomes WHERE job_id = ?1")?
            .query_row([job], |r| r.get(0))
            .optional()?;
        if let Some(id) = existing {
            return get(conn, id)?.ok_or_else(|| StoreError::Internal("outcome vanished".into()));
        }
    }
    let r = &new.report;
    let domain = ctx.domain.clone().unwrap_or_else(|| "general".into());
    conn.prepare_cached(
        "INSERT INTO outcomes (decision_id, job_id, created_at, domain, optimizer_used, recommended, \
         rule, revision, trainset_size, budget, quality_target, model, variant, estimated_cost, \
         estimated_time, actual_cost, actual_time, quality, auto_selected) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    )?
    .execute(params![
        new.decision_id,
        new.job_id,
        now_ms,
        domain,
        r.optimizer_used,
        recommended,
        rule,
        revision,
        ctx.trainset_size,
        ctx.budget,
        ctx.quality_target,
        ctx.model,
        ctx.variant,
        ctx.estimated_cost,
        ctx.estimated_time,
        r.actual_cost,
        r.actual_time_minutes,
        r.quality,
        ctx.auto_selected,
    ])?;
    let id = conn.last_insert_rowid();
    get(conn, id)?.ok_or_else(|| StoreError::Internal("outcome vanished".into()))
}

/// Columns of `outcomes`, in the order the row mappers read them.
pub(super) const COLUMNS: &str =
    "id, created_at, decision_id, job_id, domain, optimizer_used, recommended, \
     rule, revision, trainset_size, budget, quality_target, model, variant, estimated_cost, \
     estimated_time, actual_cost, actual_time, quality, auto_selected";

/// Maps a row selected with [`COLUMNS`], on either backend.
pub(super) fn outcome_from<R: Columns>(r: &R) -> Result<OutcomeRecord, R::Error> {
    Ok(OutcomeRecord {
        id: r.int(0)?,
        at_ms: r.int(1)?,
        decision_id: r.opt_int(2)?,
        job_id: r.opt_text(3)?,
        domain: r.text(4)?,
        optimizer_used: r.text(5)?,
        recommended: r.opt_text(6)?,
        rule: r.opt_text(7)?,
        revision: r.opt_text(8)?,
        trainset_size: r.opt_int(9)?,
        budget: r.opt_real(10)?,
        quality_target: r.opt_real(11)?,
        model: r.opt_text(12)?,
        variant: r.opt_text(13)?,
        estimated_cost: r.opt_real(14)?,
        estimated_time: r.opt_real(15)?,
        actual_cost: r.opt_real(16)?,
        actual_time: r.opt_real(17)?,
        quality: r.real(18)?,
        auto_selected: r.int(19)? != 0,
    })
}

/// One outcome by id.
pub fn get(conn: &Connection, id: i64) -> Result<Option<OutcomeRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM outcomes WHERE id = ?1"))?
        .query_row([id], |r| outcome_from(r))
        .optional()?)
}

/// Outcomes recorded at or after `since_ms`, oldest first.
pub fn since(conn: &Connection, since_ms: i64) -> Result<Vec<OutcomeRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM outcomes WHERE created_at >= ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([since_ms], |r| outcome_from(r))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
