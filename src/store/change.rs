//! The changes the store's typed methods hand to the writer: each checked before it is
//! submitted (so a refused change never reaches a shared batch), and the writer's answer
//! turned back into the method's result.

use super::apply::{Done, Op};
use super::job::{self, Job, NewJob, Progress};
use super::outcomes;
use super::StoreError;

pub(super) fn unexpected() -> StoreError {
    StoreError::Internal("unexpected writer answer".into())
}

pub(super) fn job_of(d: Done) -> Result<Job, StoreError> {
    match d {
        Done::Job(j) | Done::Created(j, _) => Ok(j),
        _ => Err(unexpected()),
    }
}

pub(super) fn create_op(new: NewJob) -> Result<Op, StoreError> {
    new.check()?;
    Ok(Op::Create(new))
}

pub(super) fn created(d: Done) -> Result<(Job, bool), StoreError> {
    match d {
        Done::Created(j, created) => Ok((j, created)),
        _ => Err(unexpected()),
    }
}

pub(super) fn check_lease(lease_ms: i64) -> Result<(), StoreError> {
    if (1_000..=86_400_000).contains(&lease_ms) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "lease of {lease_ms} ms is outside 1000..=86400000"
        )))
    }
}

pub(super) fn claim_op(
    worker: &str,
    types: &[String],
    lease_ms: i64,
    id: Option<&str>,
) -> Result<Op, StoreError> {
    if worker.trim().is_empty() {
        return Err(StoreError::Field {
            field: "worker".into(),
            message: "`worker` must not be empty".into(),
        });
    }
    job::check_len("worker", worker, 1, job::MAX_WORKER)?;
    check_lease(lease_ms)?;
    Ok(Op::Claim {
        worker: worker.to_string(),
        types: types.to_vec(),
        lease_ms,
        job: id.map(str::to_string),
    })
}

pub(super) fn claimed(d: Done) -> Result<Option<(Job, String)>, StoreError> {
    match d {
        Done::Claimed(c) => Ok(c),
        _ => Err(unexpected()),
    }
}

/// The operation recording an outcome, after [`outcomes::check`].
pub(super) fn record_op(new: outcomes::NewOutcome) -> Result<Op, StoreError> {
    outcomes::check(&new)?;
    Ok(Op::RecordOutcome(Box::new(new)))
}

/// A job id as the operations take it. Ids are the store's own UUIDs: one with a NUL
/// character (which PostgreSQL cannot take as a parameter) names no job, on every backend.
fn job_id(id: &str) -> Result<String, StoreError> {
    if id.contains('\0') {
        return Err(StoreError::NotFound(id.to_string()));
    }
    Ok(id.to_string())
}

/// A progress report's checks: a finite percentage (clamped to 0..100 when stored), texts
/// without a NUL character.
fn check_progress(p: &Progress) -> Result<(), StoreError> {
    job::check_finite("progress.percent", p.percent)?;
    for (field, text) in [
        ("progress.message", &p.message),
        ("progress.phase", &p.phase),
    ] {
        if let Some(t) = text {
            job::check_text(field, t)?;
        }
    }
    Ok(())
}

pub(super) fn outcome_of(d: Done) -> Result<outcomes::OutcomeRecord, StoreError> {
    match d {
        Done::Outcome(o) => Ok(*o),
        _ => Err(unexpected()),
    }
}

pub(super) fn update_op(
    spec: &crate::rules::spec::TrainingSpec,
    results: Vec<crate::engine::training::RunResult>,
) -> Op {
    Op::UpdateExamples {
        spec: Box::new(spec.clone()),
        results,
    }
}

pub(super) fn updated(d: Done) -> Result<crate::engine::training::UpdateOutcome, StoreError> {
    match d {
        Done::ExamplesUpdated(o) => Ok(o),
        _ => Err(unexpected()),
    }
}

/// A change to one job, by a worker holding its lease or by a human.
#[derive(Debug)]
pub enum JobChange<'a> {
    /// Extend the lease and record progress.
    Heartbeat {
        /// Job.
        id: &'a str,
        /// Lease token.
        token: &'a str,
        /// New lease length.
        lease_ms: i64,
        /// Progress to record.
        progress: Option<Progress>,
    },
    /// Complete a running job; for an `optimization` job, `training` (the rules and the
    /// per-example results of the run) updates the training examples in the same transaction.
    Complete {
        /// Job.
        id: &'a str,
        /// Lease token.
        token: &'a str,
        /// The result.
        result: serde_json::Value,
        /// The training rules and the per-example results.
        training: Option<(
            &'a crate::rules::spec::TrainingSpec,
            Vec<crate::engine::training::RunResult>,
        )>,
    },
    /// Fail a running job; with `retry`, back to pending while attempts remain.
    Fail {
        /// Job.
        id: &'a str,
        /// Lease token.
        token: &'a str,
        /// What went wrong.
        error: &'a str,
        /// Retry later.
        retry: bool,
    },
    /// Park a running job in `pending_hitl` with a question.
    RequestHitl {
        /// Job.
        id: &'a str,
        /// Lease token.
        token: &'a str,
        /// Kind of question.
        kind: &'a str,
        /// The question's data.
        data: serde_json::Value,
    },
    /// A human's answer; the job goes back to pending.
    RespondHitl {
        /// Job.
        id: &'a str,
        /// The answer.
        response: serde_json::Value,
    },
    /// Cancel a job that is not terminal.
    Cancel {
        /// Job.
        id: &'a str,
    },
}

impl JobChange<'_> {
    /// The writer's operation, after the checks that need no database.
    pub(super) fn into_op(self) -> Result<Op, StoreError> {
        Ok(match self {
            JobChange::Heartbeat {
                id,
                token,
                lease_ms,
                progress,
            } => {
                check_lease(lease_ms)?;
                if let Some(p) = &progress {
                    check_progress(p)?;
                }
                Op::Heartbeat {
                    id: job_id(id)?,
                    token: token.to_string(),
                    lease_ms,
                    progress,
                }
            }
            JobChange::Complete {
                id,
                token,
                result,
                training,
            } => Op::Complete {
                id: job_id(id)?,
                token: token.to_string(),
                result,
                training: training.map(|(spec, r)| (Box::new(spec.clone()), r)),
            },
            JobChange::Fail {
                id,
                token,
                error,
                retry,
            } => {
                job::check_len("error", error, 0, job::MAX_ERROR)?;
                Op::Fail {
                    id: job_id(id)?,
                    token: token.to_string(),
                    error: error.to_string(),
                    retry,
                }
            }
            JobChange::RequestHitl {
                id,
                token,
                kind,
                data,
            } => {
                job::check_text("type", kind)?;
                Op::RequestHitl {
                    id: job_id(id)?,
                    token: token.to_string(),
                    kind: kind.to_string(),
                    data,
                }
            }
            JobChange::RespondHitl { id, response } => Op::RespondHitl {
                id: job_id(id)?,
                response,
            },
            JobChange::Cancel { id } => Op::Cancel { id: job_id(id)? },
        })
    }
}
