//! The single writer: every change goes through one thread that owns the write connection and
//! batches whatever requests are waiting into one transaction (group commit), so many clients
//! share one fsync. Replies are sent only after the commit, so an acknowledged change is
//! durable.
//!
//! Every operation checks everything it can refuse (unknown job, illegal transition, stale
//! lease, bad input) *before* it writes, so a refused request leaves no trace and needs no
//! savepoint; the others in the batch go on. A database error in the middle of an operation
//! aborts the whole batch: every request in it gets the error, and none was acknowledged.

use super::cache::Cache;
use super::job::{Job, NewJob, Progress, Status};
use super::sql::{self, head, Head};
use super::{Clock, StoreError, StoreOptions};
use rusqlite::{params, Connection, TransactionBehavior};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

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

/// Counters of the writer: how many changes shared how many commits.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Changes committed (acknowledged or refused) in them.
    pub ops: AtomicU64,
}

/// A request to the writer.
pub struct Request {
    /// The change.
    pub op: Op,
    /// Where the outcome goes, after the commit.
    pub reply: Reply,
}

/// Where the writer sends the outcome of a change.
#[derive(Debug)]
pub enum Reply {
    /// A thread that blocks until the answer is in (the CLI, the decision log's thread).
    Blocking(std::sync::mpsc::Sender<Result<Done, StoreError>>),
    /// A future that awaits it: no thread waits (the HTTP handlers).
    Async(tokio::sync::oneshot::Sender<Result<Done, StoreError>>),
}

impl Reply {
    /// Delivers the outcome; a caller that went away is ignored.
    pub fn send(self, r: Result<Done, StoreError>) {
        let _ = match self {
            Reply::Blocking(tx) => tx.send(r).map_err(|_| ()),
            Reply::Async(tx) => tx.send(r).map_err(|_| ()),
        };
    }
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

struct Ctx<'a> {
    conn: &'a Connection,
    now: i64,
    opts: &'a StoreOptions,
}

impl Ctx<'_> {
    fn job(&self, id: &str) -> Result<Job, StoreError> {
        sql::get(self.conn, id)?.ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    fn head(&self, id: &str) -> Result<Head, StoreError> {
        head(self.conn, id)?.ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    fn transition(&self, id: &str, h: &Head, to: Status) -> Result<(), StoreError> {
        if h.status.can_become(to) {
            Ok(())
        } else {
            Err(StoreError::IllegalTransition {
                id: id.to_string(),
                from: h.status,
                to,
            })
        }
    }

    /// The job must be running under this token with an unexpired lease.
    fn leased(&self, id: &str, token: &str, to: Status) -> Result<Head, StoreError> {
        let h = self.head(id)?;
        if h.status != Status::Running {
            return Err(StoreError::IllegalTransition {
                id: id.to_string(),
                from: h.status,
                to,
            });
        }
        let valid =
            h.token.as_deref() == Some(token) && h.lease_expires_at.is_some_and(|e| e > self.now);
        if !valid {
            return Err(StoreError::StaleLease {
                id: id.to_string(),
                status: h.status,
            });
        }
        Ok(h)
    }

    fn backoff(&self, attempt: i64) -> i64 {
        let exp = attempt.clamp(1, 30) - 1;
        self.opts
            .backoff_base_ms
            .saturating_mul(1i64 << exp)
            .min(self.opts.backoff_max_ms)
    }

    fn apply(&self, op: &Op) -> Result<Done, StoreError> {
        let now = self.now;
        let c = self.conn;
        match op {
            Op::Create(new) => self.create(new),
            Op::Claim {
                worker,
                types,
                lease_ms,
                job,
            } => {
                let mut sql = String::from(
                    "SELECT id FROM jobs WHERE status = 'pending' AND (not_before IS NULL OR not_before <= ?1)",
                );
                if !types.is_empty() {
                    let marks: Vec<String> =
                        (0..types.len()).map(|i| format!("?{}", i + 2)).collect();
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
                    values.push(rusqlite::types::Value::from(id.clone()));
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
            Op::Heartbeat {
                id,
                token,
                lease_ms,
                progress,
            } => {
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
            Op::Complete {
                id,
                token,
                result,
                training,
            } => {
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
            Op::Fail {
                id,
                token,
                error,
                retry,
            } => {
                let h = self.leased(id, token, Status::Failed)?;
                let attempt = h.attempt + 1;
                if *retry && attempt < h.max_attempts {
                    c.prepare_cached(
                        "UPDATE jobs SET status = 'pending', error = ?2, attempt = ?3, not_before = ?4, \
                         lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = ?5, \
                         version = version + 1 WHERE id = ?1",
                    )?
                    .execute(params![id, error, attempt, now + self.backoff(attempt), now])?;
                } else {
                    c.prepare_cached(
                        "UPDATE jobs SET status = 'failed', error = ?2, attempt = ?3, lease_owner = NULL, \
                         lease_token = NULL, lease_expires_at = NULL, completed_at = ?4, updated_at = ?4, \
                         version = version + 1 WHERE id = ?1",
                    )?
                    .execute(params![id, error, attempt, now])?;
                }
                Ok(Done::Job(self.job(id)?))
            }
            Op::RequestHitl {
                id,
                token,
                kind,
                data,
            } => {
                self.leased(id, token, Status::PendingHitl)?;
                c.prepare_cached(
                    "UPDATE jobs SET status = 'pending_hitl', hitl_type = ?2, hitl_data = ?3, hitl_response = NULL, \
                     lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = ?4, \
                     version = version + 1 WHERE id = ?1",
                )?
                .execute(params![id, kind, data.to_string(), now])?;
                Ok(Done::Job(self.job(id)?))
            }
            Op::RespondHitl { id, response } => {
                let h = self.head(id)?;
                self.transition(id, &h, Status::Pending)?;
                if h.status != Status::PendingHitl {
                    return Err(StoreError::IllegalTransition {
                        id: id.clone(),
                        from: h.status,
                        to: Status::Pending,
                    });
                }
                c.prepare_cached(
                    "UPDATE jobs SET status = 'pending', hitl_response = ?2, updated_at = ?3, \
                     version = version + 1 WHERE id = ?1",
                )?
                .execute(params![id, response.to_string(), now])?;
                Ok(Done::Job(self.job(id)?))
            }
            Op::Cancel { id } => {
                let h = self.head(id)?;
                self.transition(id, &h, Status::Cancelled)?;
                c.prepare_cached(
                    "UPDATE jobs SET status = 'cancelled', lease_owner = NULL, lease_token = NULL, \
                     lease_expires_at = NULL, completed_at = ?2, updated_at = ?2, version = version + 1 WHERE id = ?1",
                )?
                .execute(params![id, now])?;
                Ok(Done::Job(self.job(id)?))
            }
            Op::Sweep => {
                let expired: Vec<(String, i64, i64, Option<String>)> = {
                    let mut stmt = c.prepare_cached(
                        "SELECT id, attempt, max_attempts, lease_owner FROM jobs \
                         WHERE status = 'running' AND lease_expires_at <= ?1",
                    )?;
                    let rows = stmt
                        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                    rows.collect::<Result<_, _>>()?
                };
                let mut changed = Vec::with_capacity(expired.len());
                for (id, attempt, max, owner) in expired {
                    let attempt = attempt + 1;
                    let owner = owner.unwrap_or_else(|| "?".into());
                    if attempt >= max {
                        c.prepare_cached(
                            "UPDATE jobs SET status = 'failed', attempt = ?2, error = ?3, lease_owner = NULL, \
                             lease_token = NULL, lease_expires_at = NULL, completed_at = ?4, updated_at = ?4, \
                             version = version + 1 WHERE id = ?1",
                        )?
                        .execute(params![
                            id,
                            attempt,
                            format!("lease of worker `{owner}` expired; {attempt} of {max} attempts used"),
                            now
                        ])?;
                    } else {
                        c.prepare_cached(
                            "UPDATE jobs SET status = 'pending', attempt = ?2, error = ?3, not_before = ?4, \
                             lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = ?5, \
                             version = version + 1 WHERE id = ?1",
                        )?
                        .execute(params![
                            id,
                            attempt,
                            format!("lease of worker `{owner}` expired; retrying ({attempt} of {max} attempts used)"),
                            now + self.backoff(attempt),
                            now
                        ])?;
                    }
                    changed.push(self.job(&id)?);
                }
                Ok(Done::Swept(changed))
            }
            Op::Prune { before_ms } => {
                // In chunks, so one prune never holds the writer for long.
                let mut stmt = c.prepare_cached(
                    "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
                     WHERE completed_at IS NOT NULL AND completed_at < ?1 \
                     AND status IN ('completed', 'failed', 'cancelled') LIMIT ?2) RETURNING id",
                )?;
                let ids = stmt
                    .query_map(params![before_ms, PRUNE_CHUNK], |r| r.get(0))?
                    .collect::<Result<Vec<String>, _>>()?;
                Ok(Done::Pruned(ids))
            }
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

    /// Records the outcome a completed `optimization` job reports in its result, linked to the
    /// decision its payload names (`decision_id`, or `decision.decision_id`) when that decision
    /// is in the log. A result without outcome fields, or with bad ones, records nothing.
    fn job_outcome(
        &self,
        id: &str,
        payload: &str,
        result: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let Ok(Some(report)) = super::outcomes::parse_report(result) else {
            return Ok(());
        };
        let payload: serde_json::Value =
            serde_json::from_str(payload).unwrap_or(serde_json::Value::Null);
        let decision_id = payload
            .get("decision_id")
            .and_then(serde_json::Value::as_i64)
            .or_else(|| {
                payload
                    .get("decision")
                    .and_then(|d| d.get("decision_id"))
                    .and_then(serde_json::Value::as_i64)
            });
        let decision_id = match decision_id {
            Some(d) if super::decisions::get(self.conn, d)?.is_some() => Some(d),
            _ => None,
        };
        let mut context = super::outcomes::RunContext::from_json(&payload);
        let planned = payload.get("optimizer").and_then(serde_json::Value::as_str);
        if planned.is_some_and(|p| p != report.optimizer_used) {
            // The run used another optimizer than the job planned: the plan's variant and
            // estimates are not its own.
            context.variant = None;
            context.estimated_cost = None;
            context.estimated_time = None;
        }
        if let Some(v) = result.get("variant").and_then(serde_json::Value::as_str) {
            context.variant = Some(v.to_string());
        }
        let new = super::outcomes::NewOutcome {
            report,
            decision_id,
            job_id: Some(id.to_string()),
            context,
        };
        super::outcomes::record(self.conn, &new, self.now).map(|_| ())
    }

    fn create(&self, new: &NewJob) -> Result<Done, StoreError> {
        let c = self.conn;
        // Lengths were checked by `Store::create` (`NewJob::check`).
        let job_type = new.job_type.trim();
        let max_attempts = new.max_attempts.unwrap_or(self.opts.default_max_attempts);
        if !(1..=100).contains(&max_attempts) {
            return Err(StoreError::Field {
                field: "max_attempts".into(),
                message: format!("`max_attempts` is {max_attempts}; it must be between 1 and 100"),
            });
        }
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

/// Runs the writer until every sender is gone; then checkpoints and closes.
pub fn run(
    mut conn: Connection,
    rx: Receiver<Request>,
    cache: Arc<Mutex<Cache>>,
    clock: Clock,
    opts: StoreOptions,
    stats: Arc<WriterStats>,
    watch: Arc<super::file::FileWatch>,
) {
    let path = watch.path().to_path_buf();
    loop {
        let first = match rx.recv_timeout(std::time::Duration::from_secs(1)) {
            Ok(r) => r,
            // Idle: look at the file anyway, so a deleted database is logged at once.
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = watch.check();
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        while batch.len() < opts.max_batch {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        // A file that is no longer at its path would take the commits with it: refuse.
        let results = match watch.check() {
            Ok(()) => run_batch(&mut conn, &batch, &clock, &opts, &path, &stats),
            Err(e) => Err(e),
        };
        match results {
            Ok(results) => {
                // Committed: now the cache may learn the new states, then the clients.
                {
                    let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
                    for r in results.iter().flatten() {
                        match r {
                            Done::Job(j) | Done::Created(j, _) => c.put(j.clone()),
                            Done::Claimed(Some((j, _))) => c.put(j.clone()),
                            Done::Claimed(None) => {}
                            Done::Swept(js) => js.iter().for_each(|j| c.put(j.clone())),
                            Done::Pruned(ids) => ids.iter().for_each(|id| c.remove(id)),
                            Done::Imported(_)
                            | Done::ExamplesUpdated(_)
                            | Done::Logged(_)
                            | Done::Reserved(_)
                            | Done::Outcome(_) => {}
                        }
                    }
                }
                for (req, r) in batch.into_iter().zip(results) {
                    req.reply.send(r);
                }
            }
            Err(e) => {
                for req in batch {
                    req.reply.send(Err(e.clone_shallow()));
                }
            }
        }
    }
    let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
    let _ = conn.close();
}

fn run_batch(
    conn: &mut Connection,
    batch: &[Request],
    clock: &Clock,
    opts: &StoreOptions,
    path: &std::path::Path,
    stats: &WriterStats,
) -> Result<Vec<Result<Done, StoreError>>, StoreError> {
    let wrap = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(wrap)?;
    let ctx = Ctx {
        conn: &tx,
        now: clock(),
        opts,
    };
    let mut results = Vec::with_capacity(batch.len());
    for req in batch {
        match ctx.apply(&req.op) {
            // A database error may have left a half-done change: drop the whole batch.
            Err(StoreError::Db(e)) => return Err(wrap(e)),
            r => results.push(r),
        }
    }
    tx.commit().map_err(wrap)?;
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats.ops.fetch_add(batch.len() as u64, Ordering::Relaxed);
    Ok(results)
}
