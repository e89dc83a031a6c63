//! The job operations on PostgreSQL, with the
//! guarantees several nodes need: a claim takes its row with `FOR UPDATE SKIP LOCKED`, so no
//! job is ever held by two workers; a change that needs the lease checks token and expiry in
//! the updating statement itself (a fail, which reads the attempts first, under the row's
//! lock); a sweep locks the expired rows it returns, so concurrent
//! sweeps add exactly one attempt per job; a create with a known idempotency key returns the
//! existing job, whichever node it reaches. The checks are `store::lifecycle`'s, as on SQLite.

use super::super::apply::PRUNE_CHUNK;
use super::super::job::{Job, NewJob, Progress, Status};
use super::super::lifecycle::{self, uuid, Head};
use super::super::outcomes;
use super::super::reads::{page, parse_cursor};
use super::super::sql::{job_from, Columns, COLUMNS};
use super::super::{Filter, Page};
use super::super::{StoreError, StoreOptions};
use super::{key, unreadable, PgUrl};
use crate::engine::training::RunResult;
use crate::rules::spec::TrainingSpec;
use postgres::types::Type;
use postgres::{Client, Row, Transaction};

/// The select of a claim: the oldest claimable job (parameters: now, whether any type will
/// do, the types, the one job asked for or NULL), its row locked and the locked ones skipped.
/// It reads the pending jobs' own index (`jobs_pending`) in its order, so its cost does not grow
/// with the finished jobs; public for the test that checks its plan.
pub const CLAIM_SELECT: &str = "SELECT id FROM jobs WHERE status = 'pending' \
     AND (not_before IS NULL OR not_before <= $1) \
     AND ($2 OR job_type = ANY($3)) AND ($4::TEXT IS NULL OR id = $4) \
     ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED";

/// Set in a claim's transaction: no sort, so the claim walks `jobs_pending` in its order and
/// stops at the first free job, whatever the statistics say.
pub const CLAIM_PLAN: &str = "SET LOCAL enable_sort = off";

/// The job operations of one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgJobs {
    url: PgUrl,
    opts: StoreOptions,
}

/// Maps a row selected with [`COLUMNS`] (the same columns as SQLite's, read by the same
/// `sql::job_from`).
fn row_to_job(r: &Row) -> Result<Job, StoreError> {
    job_from(r).map_err(unreadable("jobs"))
}

/// What a fenced change is checked against: the job, the token the caller holds, the time,
/// and the status it asks for.
#[derive(Clone, Copy)]
struct Fence<'a> {
    id: &'a str,
    token: &'a str,
    now: i64,
    to: Status,
}

impl PgJobs {
    /// The operations of the database at `url`, with the store's options.
    pub fn new(url: PgUrl, opts: StoreOptions) -> Self {
        Self { url, opts }
    }

    fn err(&self) -> impl Fn(postgres::Error) -> StoreError + '_ {
        move |e| self.url.error(e)
    }

    /// Runs `f` in a transaction, committed when it succeeds.
    fn in_tx<T>(
        &self,
        client: &mut Client,
        f: impl FnOnce(&Self, &mut Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut tx = client.transaction().map_err(self.err())?;
        let out = f(self, &mut tx)?;
        tx.commit().map_err(self.err())?;
        Ok(out)
    }

    fn get_in(&self, tx: &mut Transaction<'_>, id: &str) -> Result<Job, StoreError> {
        tx.query_opt(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"), &[&id])
            .map_err(self.err())?
            .map(|r| row_to_job(&r))
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?
    }

    /// Status, lease and attempts of one job, its row locked until the transaction ends.
    fn head(&self, tx: &mut Transaction<'_>, id: &str) -> Result<Head, StoreError> {
        let r = tx
            .query_opt(
                "SELECT status, lease_token, lease_expires_at, attempt, max_attempts \
                 FROM jobs WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .map_err(self.err())?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let head = |r: &Row| -> Result<Head, postgres::Error> {
            let status: String = r.try_get(0)?;
            Ok(Head {
                status: Status::parse(&status).unwrap_or(Status::Failed),
                token: r.try_get(1)?,
                lease_expires_at: r.try_get(2)?,
                attempt: r.try_get(3)?,
                max_attempts: r.try_get(4)?,
            })
        };
        head(&r).map_err(unreadable("jobs"))
    }

    /// One job by id.
    pub fn get(&self, client: &mut Client, id: &str) -> Result<Option<Job>, StoreError> {
        let Some(id) = key(id) else {
            return Ok(None);
        };
        client
            .query_opt(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"), &[&id])
            .map_err(self.err())?
            .map(|r| row_to_job(&r))
            .transpose()
    }

    /// Creates a job, or returns the one with the same idempotency key (`false`).
    pub fn create(
        &self,
        client: &mut Client,
        new: &NewJob,
        now: i64,
    ) -> Result<(Job, bool), StoreError> {
        new.check()?;
        let max_attempts = lifecycle::max_attempts(new, &self.opts)?;
        let payload = new
            .payload
            .clone()
            .unwrap_or(serde_json::json!({}))
            .to_string();
        let job_type = new.job_type.trim();
        // One statement, committed on its own (one round trip, parameters typed so nothing is
        // prepared): the insert returns the new row, or nothing when the key exists.
        let insert = format!(
            "INSERT INTO jobs (id, job_type, status, user_id, task, payload, attempt, \
             max_attempts, idempotency_key, created_at, updated_at, version) \
             VALUES ($1, $2, 'pending', $3, $4, $5, 0, $6, $7, $8, $8, 1) \
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING {COLUMNS}"
        );
        let by_key = format!("SELECT {COLUMNS} FROM jobs WHERE idempotency_key = $1");
        // The existing job may be pruned between the two statements: then insert again.
        for _ in 0..3 {
            let id = uuid();
            let inserted = client
                .query_typed_opt(
                    &insert,
                    &[
                        (&id, Type::TEXT),
                        (&job_type, Type::TEXT),
                        (&new.user_id, Type::TEXT),
                        (&new.task, Type::TEXT),
                        (&payload, Type::TEXT),
                        (&max_attempts, Type::INT8),
                        (&new.idempotency_key, Type::TEXT),
                        (&now, Type::INT8),
                    ],
                )
                .map_err(self.err())?;
            if let Some(r) = inserted {
                return Ok((row_to_job(&r)?, true));
            }
            // Another request (on any node) created it first, and committed (an insert that
            // meets an uncommitted row with its key waits for it): its job, as it is now.
            let existing = client
                .query_typed_opt(&by_key, &[(&new.idempotency_key, Type::TEXT)])
                .map_err(self.err())?;
            if let Some(r) = existing {
                return Ok((row_to_job(&r)?, false));
            }
        }
        Err(StoreError::Internal(
            "a job with this idempotency key kept appearing and disappearing".into(),
        ))
    }

    /// Claims the oldest claimable job of `types` (any when empty), or only `job`: the row is
    /// locked and skipped by every other claim until this one commits.
    pub fn claim(
        &self,
        client: &mut Client,
        worker: &str,
        types: &[String],
        lease_ms: i64,
        job: Option<&str>,
        now: i64,
    ) -> Result<Option<(Job, String)>, StoreError> {
        let any_type = types.is_empty();
        let types: Vec<&str> = types.iter().filter_map(|t| key(t)).collect();
        if job.is_some_and(|j| key(j).is_none()) || (!any_type && types.is_empty()) {
            // Only keys that name nothing: nothing to claim.
            return Ok(None);
        }
        self.in_tx(client, |s, tx| {
            tx.batch_execute(CLAIM_PLAN).map_err(s.err())?;
            // The pick and the update in one statement (typed: nothing to prepare).
            let token = uuid();
            let claimed = tx
                .query_typed_opt(
                    &format!(
                        "UPDATE jobs SET status = 'running', lease_owner = $5, \
                         lease_token = $6, lease_expires_at = $7, \
                         started_at = COALESCE(started_at, $1), not_before = NULL, \
                         updated_at = $1, version = version + 1 \
                         WHERE id = ({CLAIM_SELECT}) RETURNING {COLUMNS}"
                    ),
                    &[
                        (&now, Type::INT8),
                        (&any_type, Type::BOOL),
                        (&types, Type::TEXT_ARRAY),
                        (&job, Type::TEXT),
                        (&worker, Type::TEXT),
                        (&token, Type::TEXT),
                        (&(now + lease_ms), Type::INT8),
                    ],
                )
                .map_err(s.err())?;
            claimed.map(|r| Ok((row_to_job(&r)?, token))).transpose()
        })
    }

    /// Runs `update` (whose first three parameters are the id, the token and now) only while
    /// the job runs under `token` with a live lease: checked by the statement itself. When it
    /// changed nothing, the job's head says why (unknown, not running, stale token).
    fn fenced(
        &self,
        tx: &mut Transaction<'_>,
        lease: Fence<'_>,
        update: &str,
        more: &[(&(dyn postgres::types::ToSql + Sync), Type)],
    ) -> Result<Job, StoreError> {
        let Fence { id, token, now, to } = lease;
        let sql = format!(
            "{update} WHERE id = $1 AND status = 'running' AND lease_token = $2 \
             AND lease_expires_at > $3 RETURNING {COLUMNS}"
        );
        // A token with a NUL character is nobody's: it matches no row, and the head says why.
        let token_key = key(token);
        let mut params: Vec<(&(dyn postgres::types::ToSql + Sync), Type)> = vec![
            (&id, Type::TEXT),
            (&token_key, Type::TEXT),
            (&now, Type::INT8),
        ];
        params.extend_from_slice(more);
        // Typed parameters: one round trip, nothing prepared.
        if let Some(r) = tx.query_typed_opt(&sql, &params).map_err(self.err())? {
            return row_to_job(&r);
        }
        let h = self.head(tx, id)?;
        lifecycle::leased(id, &h, token, now, to)?;
        Err(StoreError::StaleLease {
            id: id.to_string(),
            status: h.status,
        })
    }

    /// Extends the lease of a running job and records its progress.
    pub fn heartbeat(
        &self,
        client: &mut Client,
        id: &str,
        token: &str,
        lease_ms: i64,
        progress: Option<&Progress>,
        now: i64,
    ) -> Result<Job, StoreError> {
        self.in_tx(client, |s, tx| {
            let expires = now + lease_ms;
            match progress {
                Some(p) => s.fenced(
                    tx,
                    Fence {
                        id,
                        token,
                        now,
                        to: Status::Running,
                    },
                    "UPDATE jobs SET lease_expires_at = $4, progress_percent = $5, \
                     progress_message = $6, progress_phase = $7, updated_at = $3, \
                     version = version + 1",
                    &[
                        (&expires, Type::INT8),
                        (&p.percent.clamp(0.0, 100.0), Type::FLOAT8),
                        (&p.message, Type::TEXT),
                        (&p.phase, Type::TEXT),
                    ],
                ),
                None => s.fenced(
                    tx,
                    Fence {
                        id,
                        token,
                        now,
                        to: Status::Running,
                    },
                    "UPDATE jobs SET lease_expires_at = $4, updated_at = $3, version = version + 1",
                    &[(&expires, Type::INT8)],
                ),
            }
        })
    }

    /// Completes a running job with its result. An `optimization` job also applies its
    /// per-example results (`training`) and records the outcome its result reports, linked to
    /// the decision its payload names, in the same transaction: as on SQLite.
    pub fn complete(
        &self,
        client: &mut Client,
        id: &str,
        token: &str,
        result: &serde_json::Value,
        training: Option<(&TrainingSpec, &[RunResult])>,
        now: i64,
    ) -> Result<Job, StoreError> {
        let text = result.to_string();
        self.in_tx(client, |s, tx| {
            let job = s.fenced(
                tx,
                Fence {
                    id,
                    token,
                    now,
                    to: Status::Completed,
                },
                "UPDATE jobs SET status = 'completed', result = $4, progress_percent = 100, \
                 lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, \
                 completed_at = $3, updated_at = $3, version = version + 1",
                &[(&text, Type::TEXT)],
            )?;
            if job.job_type == "optimization" {
                let payload = job.payload.to_string();
                if let Some((spec, results)) = training {
                    super::examples::update_in(tx, &s.url, spec, results, now)?;
                }
                if let Some(mut new) = outcomes::from_job(id, &payload, result) {
                    if let Some(d) = new.decision_id {
                        if super::decisions::get(tx, &s.url, d)?.is_none() {
                            new.decision_id = None;
                        }
                    }
                    super::outcomes::record_in(tx, &s.url, &new, now)?;
                }
            }
            // The row as the update left it: the example and outcome writes do not touch it.
            Ok(job)
        })
    }

    /// Fails a running job; with `retry`, back to pending after the backoff while attempts
    /// remain.
    pub fn fail(
        &self,
        client: &mut Client,
        id: &str,
        token: &str,
        error: &str,
        retry: bool,
        now: i64,
    ) -> Result<Job, StoreError> {
        self.in_tx(client, |s, tx| {
            // The head is read with the row locked: the check and the write are one step.
            let h = s.head(tx, id)?;
            lifecycle::leased(id, &h, token, now, Status::Failed)?;
            let attempt = h.attempt + 1;
            if retry && attempt < h.max_attempts {
                s.retry_later(tx, id, attempt, error, now)?;
            } else {
                s.fail_for_good(tx, id, attempt, error, now)?;
            }
            s.get_in(tx, id)
        })
    }

    /// Back to pending after the backoff of `attempt`, the lease released.
    fn retry_later(
        &self,
        tx: &mut Transaction<'_>,
        id: &str,
        attempt: i64,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let not_before = now + lifecycle::backoff(&self.opts, attempt);
        tx.execute(
            "UPDATE jobs SET status = 'pending', error = $2, attempt = $3, not_before = $4, \
             lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = $5, \
             version = version + 1 WHERE id = $1",
            &[&id, &error, &attempt, &not_before, &now],
        )
        .map_err(self.err())?;
        Ok(())
    }

    /// Failed for good (attempts used up, or no retry asked), the lease released.
    fn fail_for_good(
        &self,
        tx: &mut Transaction<'_>,
        id: &str,
        attempt: i64,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        tx.execute(
            "UPDATE jobs SET status = 'failed', error = $2, attempt = $3, lease_owner = NULL, \
             lease_token = NULL, lease_expires_at = NULL, completed_at = $4, updated_at = $4, \
             version = version + 1 WHERE id = $1",
            &[&id, &error, &attempt, &now],
        )
        .map_err(self.err())?;
        Ok(())
    }

    /// Parks a running job in `pending_hitl` with a question.
    pub fn request_hitl(
        &self,
        client: &mut Client,
        id: &str,
        token: &str,
        kind: &str,
        data: &serde_json::Value,
        now: i64,
    ) -> Result<Job, StoreError> {
        let data = data.to_string();
        self.in_tx(client, |s, tx| {
            s.fenced(
                tx,
                Fence {
                    id,
                    token,
                    now,
                    to: Status::PendingHitl,
                },
                "UPDATE jobs SET status = 'pending_hitl', hitl_type = $4, hitl_data = $5, \
                 hitl_response = NULL, lease_owner = NULL, lease_token = NULL, \
                 lease_expires_at = NULL, updated_at = $3, version = version + 1",
                &[(&kind, Type::TEXT), (&data, Type::TEXT)],
            )
        })
    }

    /// A human's answer to a job in `pending_hitl`: back to pending.
    pub fn respond_hitl(
        &self,
        client: &mut Client,
        id: &str,
        response: &serde_json::Value,
        now: i64,
    ) -> Result<Job, StoreError> {
        let response = response.to_string();
        self.in_tx(client, |s, tx| {
            let changed = tx
                .execute(
                    "UPDATE jobs SET status = 'pending', hitl_response = $2, updated_at = $3, \
                     version = version + 1 WHERE id = $1 AND status = 'pending_hitl'",
                    &[&id, &response, &now],
                )
                .map_err(s.err())?;
            if changed == 0 {
                let h = s.head(tx, id)?;
                return Err(StoreError::IllegalTransition {
                    id: id.to_string(),
                    from: h.status,
                    to: Status::Pending,
                });
            }
            s.get_in(tx, id)
        })
    }

    /// Cancels a job that is not terminal.
    pub fn cancel(&self, client: &mut Client, id: &str, now: i64) -> Result<Job, StoreError> {
        self.in_tx(client, |s, tx| {
            let changed = tx
                .execute(
                    "UPDATE jobs SET status = 'cancelled', lease_owner = NULL, lease_token = NULL, \
                     lease_expires_at = NULL, completed_at = $2, updated_at = $2, \
                     version = version + 1 \
                     WHERE id = $1 AND status IN ('pending', 'running', 'pending_hitl')",
                    &[&id, &now],
                )
                .map_err(s.err())?;
            if changed == 0 {
                let h = s.head(tx, id)?;
                lifecycle::transition(id, &h, Status::Cancelled)?;
            }
            s.get_in(tx, id)
        })
    }

    /// Lists jobs, newest first, with filters and a cursor (the same pages as SQLite's).
    pub fn list(&self, client: &mut Client, f: &Filter) -> Result<Page, StoreError> {
        let limit = f.limit.clamp(1, 500);
        let cursor = f.cursor.as_deref().map(parse_cursor).transpose()?;
        let filters = [f.job_type.as_deref(), f.user_id.as_deref()];
        if filters.into_iter().flatten().any(|v| key(v).is_none()) {
            // A filter no job can match.
            return Ok(page(Vec::new(), limit));
        }
        let (ts, id) = match &cursor {
            Some((ts, id)) => (Some(*ts), Some(id.as_str())),
            None => (None, None),
        };
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM jobs WHERE ($1::TEXT IS NULL OR status = $1) \
                     AND ($2::TEXT IS NULL OR job_type = $2) AND ($3::TEXT IS NULL OR user_id = $3) \
                     AND ($4::BIGINT IS NULL OR (created_at, id) < ($4, $5)) \
                     ORDER BY created_at DESC, id DESC LIMIT $6"
                ),
                &[
                    &f.status.map(|s| s.as_str()),
                    &f.job_type,
                    &f.user_id,
                    &ts,
                    &id,
                    &(limit as i64 + 1),
                ],
            )
            .map_err(self.err())?;
        let rows = rows
            .iter()
            .map(|r| Ok((row_to_job(r)?, r.int(20).map_err(unreadable("jobs"))?)))
            .collect::<Result<_, StoreError>>()?;
        Ok(page(rows, limit))
    }

    /// Deletes up to `PRUNE_CHUNK` (5,000) terminal jobs completed before `before_ms`; their ids.
    pub fn prune(&self, client: &mut Client, before_ms: i64) -> Result<Vec<String>, StoreError> {
        let rows = client
            .query(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
                 WHERE completed_at IS NOT NULL AND completed_at < $1 \
                 AND status IN ('completed', 'failed', 'cancelled') LIMIT $2 \
                 FOR UPDATE SKIP LOCKED) RETURNING id",
                &[&before_ms, &PRUNE_CHUNK],
            )
            .map_err(self.err())?;
        rows.iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(unreadable("jobs"))
    }

    /// Returns expired leases to pending, or fails them when their attempts are used up. The
    /// expired rows are locked as they are read, so a concurrent sweep (another node) skips
    /// them: each expiry adds exactly one attempt.
    pub fn sweep(&self, client: &mut Client, now: i64) -> Result<Vec<Job>, StoreError> {
        self.in_tx(client, |s, tx| {
            let expired = tx
                .query(
                    "SELECT id, attempt, max_attempts, lease_owner FROM jobs \
                     WHERE status = 'running' AND lease_expires_at <= $1 \
                     ORDER BY lease_expires_at, id FOR UPDATE SKIP LOCKED",
                    &[&now],
                )
                .map_err(s.err())?;
            let mut changed = Vec::with_capacity(expired.len());
            for r in expired {
                let read = |r: &Row| -> Result<(String, i64, i64, Option<String>), postgres::Error> {
                    Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))
                };
                let (id, attempt, max, owner) = read(&r).map_err(unreadable("jobs"))?;
                let owner = owner.unwrap_or_else(|| "?".into());
                let attempt = attempt + 1;
                if attempt >= max {
                    let error =
                        format!("lease of worker `{owner}` expired; {attempt} of {max} attempts used");
                    s.fail_for_good(tx, &id, attempt, &error, now)?;
                } else {
                    let error = format!(
                        "lease of worker `{owner}` expired; retrying ({attempt} of {max} attempts used)"
                    );
                    s.retry_later(tx, &id, attempt, &error, now)?;
                }
                changed.push(s.get_in(tx, &id)?);
            }
            Ok(changed)
        })
    }
}
