//! What each change does to the database, run by the writer inside its transaction: every
//! operation checks everything it can refuse (unknown job, illegal transition, stale lease, bad
//! input) before it writes.

use super::job::{Job, NewJob, Progress, Status};
use super::lifecycle::{self, uuid, Head};
use super::sql::{self, head};
use super::{StoreError, StoreOptions};
use rusqlite::{params, Connection};

/// Most jobs one prune request deletes; `Store::prune` repeats until done.
pub const PRUNE_CHUNK: i64 = 5_000;

/// A change to make.
#[derive(Debug, Clone)]
pub enum Op {
    /// Create (or return the job with the same idempotency key).
    Create(NewJob),
    /// Claim the oldest claimable job of the given types.
    Claim {
        /// Worker name.
        worker: String,
        /// Job types it takes (empty: any).
        types: Vec<String>,
        /// Lease length.
        lease_ms: i64,
        /// Only this job (when it is claimable).
        job: Option<String>,
    },
    /// Extend the lease and report progress.
    Heartbeat {
        /// Job.
        id: String,
        /// Lease token.
        token: String,
        /// New lease length from now.
        lease_ms: i64,
        /// Progress.
        progress: Option<Progress>,
    },
    /// Finish with a result.
    Complete {
        /// Job.
        id: String,
        /// Lease token.
        token: String,
        /// Result.
        result: serde_json::Value,
        /// Per-example results to apply to the training examples in the same transaction
        /// (only for `optimization` jobs), with the training rules.
        training: Option<(
            Box<crate::rules::spec::TrainingSpec>,
            Vec<crate::engine::training::RunResult>,
        )>,
    },
    /// Fail; with `retry`, back to pending while attempts remain.
    Fail {
        /// Job.
        id: String,
        /// Lease token.
        token: String,
        /// What went wrong.
        error: String,
        /// Retry when attempts remain.
        retry: bool,
    },
    /// Park in `pending_hitl` with a question.
    RequestHitl {
        /// Job.
        id: String,
        /// Lease token.
        token: String,
        /// Kind of question.
        kind: String,
        /// Question data.
        data: serde_json::Value,
    },
    /// A human answered: back to pending; the next claim sees the answer.
    RespondHitl {
        /// Job.
        id: String,
        /// The answer.
        response: serde_json::Value,
    },
    /// Cancel a job that is not terminal.
    Cancel {
        /// Job.
        id: String,
    },
    /// Return expired leases to pending (or fail them when attempts are exhausted).
    Sweep,
    /// Delete terminal jobs completed before the given time (ms).
    Prune {
        /// Cut-off.
        before_ms: i64,
    },
    /// Insert or replace training examples by id.
    ImportExamples(Vec<crate::engine::training::Example>),
    /// Append entries to the decision log.
    LogDecisions(Vec<super::decisions::NewDecision>),
    /// Reserve this many decision ids.
    ReserveDecisionIds(i64),
    /// Record the outcome of a run.
    RecordOutcome(Box<super::outcomes::NewOutcome>),
    /// Apply optimization results to the training examples.
    UpdateExamples {
        /// The training rules (update factors, neutral success rate).
        spec: Box<crate::rules::spec::TrainingSpec>,
        /// The results.
        results: Vec<crate::engine::training::RunResult>,
    },
}

/// What a change produced.
#[derive(Debug, Clone)]
pub enum Done {
    /// The job after the change.
    Job(Job),
    /// A created (true) or existing (false) job.
    Created(Job, bool),
    /// A claimed job with its lease token, or nothing to claim.
    Claimed(Option<(Job, String)>),
    /// Jobs the sweep changed.
    Swept(Vec<Job>),
    /// Ids of pruned jobs.
    Pruned(Vec<String>),
    /// Training examples added and replaced.
    Imported(super::examples::ImportCount),
    /// What a training update changed.
    ExamplesUpdated(crate::engine::training::UpdateOutcome),
    /// Decisions logged.
    Logged(usize),
    /// First of the reserved decision ids.
    Reserved(i64),
    /// The recorded outcome.
    Outcome(Box<super::outcomes::OutcomeRecord>),
}

/// The training rules and per-example results a completed `optimization` job applies.
type Training = (
    Box<crate::rules::spec::TrainingSpec>,
    Vec<crate::engine::training::RunResult>,
);

/// One batch's view of the database: its transaction, its time, the store's options.
pub(super) struct Ctx<'a> {
    /// The batch's transaction.
    pub(super) conn: &'a Connection,
    /// The time of the batch, in milliseconds.
    pub(super) now: i64,
    /// The store's options (attempts, backoff).
    pub(super) opts: &'a StoreOptions,
}

impl Ctx<'_> {
    fn job(&self, id: &str) -> Result<Job, StoreError> {
        sql::get(self.conn, id)?.ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    fn head(&self, id: &str) -> Result<Head, StoreError> {
        head(self.conn, id)?.ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    fn transition(&self, id: &str, h: &Head, to: Status) -> Result<(), StoreError> {
        lifecycle::transition(id, h, to)
    }

    /// The job must be running under this token with an unexpired lease.
    fn leased(&self, id: &str, token: &str, to: Status) -> Result<Head, StoreError> {
        let h = self.head(id)?;
        lifecycle::leased(id, &h, token, self.now, to)?;
        Ok(h)
    }

    fn backoff(&self, attempt: i64) -> i64 {
        lifecycle::backoff(self.opts, attempt)
    }

    /// Applies one change inside the writer's transaction: checks what it can refuse, then
    /// writes.
    pub(super) fn apply(&self, op: &Op) -> Result<Done, StoreError> {
        let now = self.now;
        let c = self.conn;
        match op {
            Op::Create(new) => self.create(new),
            Op::Claim {
                worker,
                types,
                lease_ms,
                job,
            } => self.claim(worker, types, *lease_ms, job.as_deref()),
            Op::Heartbeat {
                id,
                token,
                lease_ms,
                progress,
            } => self.heartbeat(id, token, *lease_ms, progress.as_ref()),
            Op::Complete {
                id,
                token,
                result,
                training,
            } => self.complete(id, token, result, training.as_ref()),
            Op::Fail {
                id,
                token,
                error,
                retry,
            } => self.fail(id, token, error, *retry),
            Op::RequestHitl {
                id,
                token,
                kind,
                data,
            } => self.request_hitl(id, token, kind, data),
            Op::RespondHitl { id, response } => self.respond_hitl(id, response),
            Op::Cancel { id } => self.cancel(id),
            Op::Sweep => self.sweep(),
            Op::Prune { before_ms } => self.prune(*before_ms),
            Op::LogDecisions(rows) => Ok(Done::Logged(super::decisions::insert(c, rows)?)),
            Op::ReserveDecisionIds(n) => Ok(Done::Reserved(super::decisions::reserve(c, *n)?)),
            Op::RecordOutcome(new) => Ok(Done::Outcome(Box::new(super::outcomes::record(
                c, new, now,
            )?))),
            Op::ImportExamples(records) => {
                Ok(Done::Imported(super::examples::put(c, records, now)?))
            }
            Op::UpdateExamples { spec, results } => Ok(Done::ExamplesUpdated(
                super::examples::update(c, spec, results, now)?,
            )),
        }
    }

    /// Claims the oldest claimable job of `types` (any when empty), or only `job` when given.
    fn claim(
        &self,
        worker: &str,
        types: &[String],
        lease_ms: i64,
        job: Option<&str>,
    ) -> Result<Done, StoreError> {
        let now = self.now;
        let c = self.conn;
        let mut sql = String::from(
            "SELECT id FROM jobs WHERE status = 'pending' AND (not_before IS NULL OR not_before <= ?1)",
        );
        if !types.is_empty() {
            let marks: Vec<String> = (0..types.len()).map(|i| format!("?{}", i + 2)).collect();
            sql.push_str(&format!(" AND job_type IN ({})", marks.join(", ")));
        }
        if job.is_some() {
            sql.push_str(&format!(" AND id = ?{}", types.len() + 2));
        }
        sql.push_str(" ORDER BY created_at, id LIMIT 1");
        let mut values: Vec<rusqlite::types::Value> = vec![now.into()];
        values.extend(
            types
                .iter()
                .map(|t| rusqlite::types::Value::from(t.clone())),
        );
        if let Some(id) = job {
            values.push(rusqlite::types::Value::from(id.to_string()));
        }
        let id: Option<String> = {
            let mut stmt = c.prepare_cached(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
            match rows.next()? {
                Some(r) => Some(r.get(0)?),
                None => None,
            }
        };
        let Some(id) = id else {
            return Ok(Done::Claimed(None));
        };
        let token = uuid();
        c.prepare_cached(
            "UPDATE jobs SET status = 'running', lease_owner = ?2, lease_token = ?3, \
             lease_expires_at = ?4, started_at = COALESCE(started_at, ?5), not_before = NULL, \
             updated_at = ?5, version = version + 1 WHERE id = ?1",
        )?
        .execute(params![id, worker, token, now + lease_ms, now])?;
        Ok(Done::Claimed(Some((self.job(&id)?, token))))
    }

    /// Extends the lease of a running job and records its progress.
    fn heartbeat(
        &self,
        id: &str,
        token: &str,
        lease_ms: i64,
        progress: Option<&Progress>,
    ) -> Result<Done, StoreError> {
        let now = self.now;
        let c = self.conn;
        self.leased(id, token, Status::Running)?;
        match progress {
            Some(p) => c
                .prepare_cached(
                    "UPDATE jobs SET lease_expires_at = ?2, progress_percent = ?3, progress_message = ?4, \
                     progress_phase = ?5, updated_at = ?6, version = version + 1 WHERE id = ?1",
                )?
                .execute(params![id, now + lease_ms, p.percent.clamp(0.0, 100.0), p.message, p.phase, now])?,
            None => c
                .prepare_cached(
                    "UPDATE jobs SET lease_expires_at = ?2, updated_at = ?3, version = version + 1 WHERE id = ?1",
                )?
                .execute(params![id, now + lease_ms, now])?,
        };
        Ok(Done::Job(self.job(id)?))
    }

    /// Completes a running job; an `optimization` job also updates the training examples and
    /// records its outcome.
    fn complete(
        &self,
        id: &str,
        token: &str,
        result: &serde_json::Value,
        training: Option<&Training>,
    ) -> Result<Done, StoreError> {
        let now = self.now;
        let c = self.conn;
        self.leased(id, token, Status::Completed)?;
        let (job_type, payload): (String, String) = c
            .prepare_cached("SELECT job_type, payload FROM jobs WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if job_type == "optimization" {
            if let Some((spec, results)) = training {
                super::examples::update(c, spec, results, now)?;
            }
            self.job_outcome(id, &payload, result)?;
        }
        c.prepare_cached(
            "UPDATE jobs SET status = 'completed', result = ?2, progress_percent = 100, \
             lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, completed_at = ?3, \
             updated_at = ?3, version = version + 1 WHERE id = ?1",
        )?
        .execute(params![id, result.to_string(), now])?;
        Ok(Done::Job(self.job(id)?))
    }

    /// Fails a running job; with `retry`, back to pending (after a backoff) while attempts
    /// remain.
    fn fail(&self, id: &str, token: &str, error: &str, retry: bool) -> Result<Done, StoreError> {
        let h = self.leased(id, token, Status::Failed)?;
        let attempt = h.attempt + 1;
        if retry && attempt < h.max_attempts {
            self.retry_later(id, attempt, error)?;
        } else {
            self.fail_for_good(id, attempt, error)?;
        }
        Ok(Done::Job(self.job(id)?))
    }

    /// Back to pending after the backoff of `attempt`, the lease released.
    fn retry_later(&self, id: &str, attempt: i64, error: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE jobs SET status = 'pending', error = ?2, attempt = ?3, not_before = ?4, \
                 lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = ?5, \
                 version = version + 1 WHERE id = ?1",
            )?
            .execute(params![
                id,
                error,
                attempt,
                self.now + self.backoff(attempt),
                self.now
            ])?;
        Ok(())
    }

    /// Failed for good (attempts used up, or no retry asked), the lease released.
    fn fail_for_good(&self, id: &str, attempt: i64, error: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE jobs SET status = 'failed', error = ?2, attempt = ?3, lease_owner = NULL, \
                 lease_token = NULL, lease_expires_at = NULL, completed_at = ?4, updated_at = ?4, \
                 version = version + 1 WHERE id = ?1",
            )?
            .execute(params![id, error, attempt, self.now])?;
        Ok(())
    }

    /// Parks a running job in `pending_hitl` with a question.
    fn request_hitl(
        &self,
        id: &str,
        token: &str,
        kind: &str,
        data: &serde_json::Value,
    ) -> Result<Done, StoreError> {
        self.leased(id, token, Status::PendingHitl)?;
        self.conn
            .prepare_cached(
                "UPDATE jobs SET status = 'pending_hitl', hitl_type = ?2, hitl_data = ?3, hitl_response = NULL, \
                 lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = ?4, \
                 version = version + 1 WHERE id = ?1",
            )?
            .execute(params![id, kind, data.to_string(), self.now])?;
        Ok(Done::Job(self.job(id)?))
    }

    /// Records a human's answer to a job in `pending_hitl`: back to pending.
    fn respond_hitl(&self, id: &str, response: &serde_json::Value) -> Result<Done, StoreError> {
        let h = self.head(id)?;
        self.transition(id, &h, Status::Pending)?;
        if h.status != Status::PendingHitl {
            return Err(StoreError::IllegalTransition {
                id: id.to_string(),
                from: h.status,
                to: Status::Pending,
            });
        }
        self.conn
            .prepare_cached(
                "UPDATE jobs SET status = 'pending', hitl_response = ?2, updated_at = ?3, \
                 version = version + 1 WHERE id = ?1",
            )?
            .execute(params![id, response.to_string(), self.now])?;
        Ok(Done::Job(self.job(id)?))
    }

    /// Cancels a job that is not terminal.
    fn cancel(&self, id: &str) -> Result<Done, StoreError> {
        let h = self.head(id)?;
        self.transition(id, &h, Status::Cancelled)?;
        self.conn
            .prepare_cached(
                "UPDATE jobs SET status = 'cancelled', lease_owner = NULL, lease_token = NULL, \
                 lease_expires_at = NULL, completed_at = ?2, updated_at = ?2, version = version + 1 WHERE id = ?1",
            )?
            .execute(params![id, self.now])?;
        Ok(Done::Job(self.job(id)?))
    }

    /// Returns expired leases to pending, or fails them when their attempts are used up; the
    /// jobs in the order their leases ended (then by id), as on every backend.
    fn sweep(&self) -> Result<Done, StoreError> {
        let now = self.now;
        let c = self.conn;
        let expired: Vec<(String, i64, i64, Option<String>)> = {
            let mut stmt = c.prepare_cached(
                "SELECT id, attempt, max_attempts, lease_owner FROM jobs \
                 WHERE status = 'running' AND lease_expires_at <= ?1 \
                 ORDER BY lease_expires_at, id",
            )?;
            let rows =
                stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut changed = Vec::with_capacity(expired.len());
        for (id, attempt, max, owner) in expired {
            let attempt = attempt + 1;
            let owner = owner.unwrap_or_else(|| "?".into());
            if attempt >= max {
                let error =
                    format!("lease of worker `{owner}` expired; {attempt} of {max} attempts used");
                self.fail_for_good(&id, attempt, &error)?;
            } else {
                let error = format!(
                    "lease of worker `{owner}` expired; retrying ({attempt} of {max} attempts used)"
                );
                self.retry_later(&id, attempt, &error)?;
            }
            changed.push(self.job(&id)?);
        }
        Ok(Done::Swept(changed))
    }

    /// Deletes up to [`PRUNE_CHUNK`] terminal jobs completed before `before_ms`.
    fn prune(&self, before_ms: i64) -> Result<Done, StoreError> {
        // In chunks, so one prune never holds the writer for long.
        let mut stmt = self.conn.prepare_cached(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
             WHERE completed_at IS NOT NULL AND completed_at < ?1 \
             AND status IN ('completed', 'failed', 'cancelled') LIMIT ?2) RETURNING id",
        )?;
        let ids = stmt
            .query_map(params![before_ms, PRUNE_CHUNK], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(Done::Pruned(ids))
    }

    /// Records the outcome a completed `optimization` job reports in its result, linked to the
    /// decision its payload names (`decision_id`, or `decision.decision_id`) when that decision
    /// is in the log. A result without outcome fields, or with bad ones, records nothing.
    fn job_outcome(
        &self,
        id: &str,
        payload: &str,
        result: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let Some(mut new) = super::outcomes::from_job(id, payload, result) else {
            return Ok(());
        };
        if let Some(d) = new.decision_id {
            if super::decisions::get(self.conn, d)?.is_none() {
                new.decision_id = None;
            }
        }
        super::outcomes::record(self.conn, &new, self.now).map(|_| ())
    }

    fn create(&self, new: &NewJob) -> Result<Done, StoreError> {
        let c = self.conn;
        // Lengths were checked by `Store::create` (`NewJob::check`).
        let job_type = new.job_type.trim();
        let max_attempts = lifecycle::max_attempts(new, self.opts)?;
        if let Some(key) = &new.idempotency_key {
            let existing: Option<String> = c
                .prepare_cached("SELECT id FROM jobs WHERE idempotency_key = ?1")?
                .query_row([key], |r| r.get(0))
                .ok();
            if let Some(id) = existing {
                return Ok(Done::Created(self.job(&id)?, false));
            }
        }
        let id = uuid();
        let payload = new.payload.clone().unwrap_or(serde_json::json!({}));
        c.prepare_cached(
            "INSERT INTO jobs (id, job_type, status, user_id, task, payload, attempt, max_attempts, \
             idempotency_key, created_at, updated_at, version) \
             VALUES (?1, ?2, 'pending', ?3, ?4, ?5, 0, ?6, ?7, ?8, ?8, 1)",
        )?
        .execute(params![
            id,
            job_type,
            new.user_id,
            new.task,
            payload.to_string(),
            max_attempts,
            new.idempotency_key,
            self.now
        ])?;
        let now = sql::ms_to_rfc3339(self.now);
        Ok(Done::Created(
            Job {
                id,
                job_type: job_type.to_string(),
                status: Status::Pending,
                user_id: new.user_id.clone(),
                task: new.task.clone(),
                payload,
                result: None,
                error: None,
                progress: Progress::default(),
                attempt: 0,
                max_attempts,
                lease: None,
                hitl: None,
                idempotency_key: new.idempotency_key.clone(),
                not_before: None,
                created_at: now.clone(),
                updated_at: now,
                started_at: None,
                completed_at: None,
                version: 1,
            },
            true,
        ))
    }
}
