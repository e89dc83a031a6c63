//! Jobs: the record, its statuses and the only legal transitions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a job is in its life.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for a worker.
    Pending,
    /// Claimed by a worker holding a lease.
    Running,
    /// Waiting for a human to answer.
    PendingHitl,
    /// Finished with a result (terminal).
    Completed,
    /// Failed for good (terminal).
    Failed,
    /// Cancelled (terminal).
    Cancelled,
}

impl Status {
    /// Every status, in display order.
    pub const ALL: [Status; 6] = [
        Status::Pending,
        Status::Running,
        Status::PendingHitl,
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::PendingHitl => "pending_hitl",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// Parses a stored or requested name.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Terminal statuses never change.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }

    /// Whether `self → to` is a legal transition.
    pub fn can_become(self, to: Status) -> bool {
        use Status::*;
        match (self, to) {
            (Pending, Running) => true,
            (Running, Completed | Failed | Pending | PendingHitl) => true,
            (PendingHitl, Pending) => true,
            (from, Cancelled) => !from.is_terminal(),
            _ => false,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Progress reported by a worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Progress {
    /// Percent done, 0..100.
    pub percent: f64,
    /// What is happening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// The lease a worker holds on a running job (the token is only given to the claimer).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct LeaseInfo {
    /// Worker that holds it.
    pub owner: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
}

/// A human-in-the-loop prompt and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Hitl {
    /// Kind of question (e.g. `approve_config`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The question's data.
    pub data: serde_json::Value,
    /// The human's answer, once given.
    pub response: Option<serde_json::Value>,
}

/// A job as stored and returned.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Job {
    /// UUID.
    pub id: String,
    /// Kind of work, e.g. `optimization`, `skill_creation`.
    pub job_type: String,
    /// Status.
    pub status: Status,
    /// Who asked for it.
    pub user_id: Option<String>,
    /// What to do, in words.
    pub task: String,
    /// Input of the work (e.g. the optimizer and config).
    pub payload: serde_json::Value,
    /// Output, when completed.
    pub result: Option<serde_json::Value>,
    /// Last error.
    pub error: Option<String>,
    /// Last progress report.
    pub progress: Progress,
    /// Failed attempts so far.
    pub attempt: i64,
    /// Attempts allowed before the job fails for good.
    pub max_attempts: i64,
    /// The current lease, while running.
    pub lease: Option<LeaseInfo>,
    /// Human-in-the-loop prompt, when one was asked.
    pub hitl: Option<Hitl>,
    /// Idempotency key given at creation.
    pub idempotency_key: Option<String>,
    /// Not claimable before this time (retry backoff).
    pub not_before: Option<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last changed.
    pub updated_at: String,
    /// First claimed.
    pub started_at: Option<String>,
    /// Reached a terminal status.
    pub completed_at: Option<String>,
    /// Increments on every change.
    pub version: i64,
}

/// What a client sends to create a job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    /// Kind of work.
    pub job_type: String,
    /// Who asks.
    #[serde(default)]
    pub user_id: Option<String>,
    /// What to do, in words.
    #[serde(default)]
    pub task: String,
    /// Input of the work.
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
    /// Attempts allowed (default 3).
    #[serde(default)]
    pub max_attempts: Option<i64>,
    /// The same key returns the same job.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// Longest `job_type`, in bytes.
pub const MAX_JOB_TYPE: usize = 100;
/// Longest `user_id`, in bytes.
pub const MAX_USER_ID: usize = 200;
/// Longest `task`, in bytes.
pub const MAX_TASK: usize = 10_000;
/// Longest `idempotency_key`, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;
/// Longest worker name, in bytes.
pub const MAX_WORKER: usize = 200;
/// Longest failure message, in bytes.
pub const MAX_ERROR: usize = 10_000;
/// Longest HITL question type, in bytes.
pub const MAX_HITL_TYPE: usize = 100;

/// Checks that a text holds no NUL character: PostgreSQL cannot store one in a text column
/// (SQLite can), so every backend refuses it alike. The message quotes the field first.
pub fn check_text(field: &str, value: &str) -> Result<(), super::StoreError> {
    if !value.contains('\0') {
        return Ok(());
    }
    Err(super::StoreError::Field {
        field: field.to_string(),
        message: format!("`{field}` contains a NUL character"),
    })
}

/// Checks that a number is finite: SQLite stores NaN as NULL (refused by a `NOT NULL`
/// column, read back as nothing by the others) where PostgreSQL keeps it, so every backend
/// refuses it alike. The message quotes the field first.
pub fn check_finite(field: &str, value: f64) -> Result<(), super::StoreError> {
    if value.is_finite() {
        return Ok(());
    }
    Err(super::StoreError::Field {
        field: field.to_string(),
        message: format!("`{field}` is {value}; it must be a finite number"),
    })
}

/// Checks a text field: `min..=max` bytes, and no NUL character ([`check_text`]). The message
/// quotes the field first (the HTTP layer names the field from it).
pub fn check_len(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
) -> Result<(), super::StoreError> {
    if (min..=max).contains(&value.len()) {
        return check_text(field, value);
    }
    let message = if min == 0 {
        format!(
            "`{field}` is {} bytes; it may be at most {max}",
            value.len()
        )
    } else {
        format!(
            "`{field}` is {} bytes; it must be {min} to {max}",
            value.len()
        )
    };
    Err(super::StoreError::Field {
        field: field.to_string(),
        message,
    })
}

impl NewJob {
    /// Checks the text fields: their lengths, and no NUL character.
    pub fn check(&self) -> Result<(), super::StoreError> {
        check_len("job_type", self.job_type.trim(), 1, MAX_JOB_TYPE)?;
        if let Some(u) = &self.user_id {
            check_len("user_id", u, 0, MAX_USER_ID)?;
        }
        check_len("task", &self.task, 0, MAX_TASK)?;
        if let Some(k) = &self.idempotency_key {
            check_len("idempotency_key", k, 1, MAX_IDEMPOTENCY_KEY)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Status::{self, *};

    #[test]
    fn text_fields_have_limits_named_in_the_message() {
        let mut j = super::NewJob {
            job_type: "optimization".into(),
            ..Default::default()
        };
        let named = |r: Result<(), crate::store::StoreError>| match r {
            Ok(()) => None,
            Err(crate::store::StoreError::Field { field, message }) => Some((field, message)),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(named(j.check()), None);
        j.task = "x".repeat(super::MAX_TASK + 1);
        assert_eq!(
            named(j.check()),
            Some((
                "task".into(),
                "`task` is 10001 bytes; it may be at most 10000".into()
            ))
        );
        j.task.clear();
        j.job_type = " ".into();
        assert_eq!(
            named(j.check()),
            Some((
                "job_type".into(),
                "`job_type` is 0 bytes; it must be 1 to 100".into()
            ))
        );
    }

    #[test]
    fn only_the_documented_transitions_are_legal() {
        let legal = [
            (Pending, Running),
            (Running, Completed),
            (Running, Failed),
            (Running, Pending),
            (Running, PendingHitl),
            (PendingHitl, Pending),
            (Pending, Cancelled),
            (Running, Cancelled),
            (PendingHitl, Cancelled),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(
                    from.can_become(to),
                    legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }
}
