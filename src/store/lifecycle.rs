//! The job lifecycle's checks, the same for every backend: what a change needs of the job's
//! current state (its [`Head`]) before it may write, the retry backoff and the attempts a new
//! job gets. Pure: the backends read the head and the clock.

use super::job::{NewJob, Status};
use super::{StoreError, StoreOptions};

/// The state a change is checked against.
#[derive(Debug, Clone)]
pub struct Head {
    /// Status.
    pub status: Status,
    /// Lease token.
    pub token: Option<String>,
    /// Lease expiry (ms).
    pub lease_expires_at: Option<i64>,
    /// Failed attempts.
    pub attempt: i64,
    /// Allowed attempts.
    pub max_attempts: i64,
}

/// The job may go from its status to `to`.
pub fn transition(id: &str, h: &Head, to: Status) -> Result<(), StoreError> {
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

/// The job must be running under `token` with a lease that has not expired at `now`.
pub fn leased(id: &str, h: &Head, token: &str, now: i64, to: Status) -> Result<(), StoreError> {
    if h.status != Status::Running {
        return Err(StoreError::IllegalTransition {
            id: id.to_string(),
            from: h.status,
            to,
        });
    }
    let valid = h.token.as_deref() == Some(token) && h.lease_expires_at.is_some_and(|e| e > now);
    if valid {
        Ok(())
    } else {
        Err(StoreError::StaleLease {
            id: id.to_string(),
            status: h.status,
        })
    }
}

/// The delay before retry number `attempt`: doubling from the base, capped.
pub fn backoff(opts: &StoreOptions, attempt: i64) -> i64 {
    let exp = attempt.clamp(1, 30) - 1;
    opts.backoff_base_ms
        .saturating_mul(1i64 << exp)
        .min(opts.backoff_max_ms)
}

/// The attempts a new job gets: its own, or the store's default; 1 to 100.
pub fn max_attempts(new: &NewJob, opts: &StoreOptions) -> Result<i64, StoreError> {
    let n = new.max_attempts.unwrap_or(opts.default_max_attempts);
    if (1..=100).contains(&n) {
        Ok(n)
    } else {
        Err(StoreError::Field {
            field: "max_attempts".into(),
            message: format!("`max_attempts` is {n}; it must be between 1 and 100"),
        })
    }
}

/// A fresh job id or lease token.
pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
