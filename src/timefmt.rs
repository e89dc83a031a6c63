//! The clock, read at the edges (loader, http, store, cli): the current time as RFC 3339 text,
//! and the monotonic clock handed to `rules::deadline`. Formatting itself is pure
//! (`util::time`).

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Monotonic nanoseconds since the first call: the clock the edges hand to
/// `rules::deadline` (`install_clock`).
pub fn monotonic_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Installs [`monotonic_ns`] as the clock of the Rhai time limits.
pub fn install_deadline_clock() {
    crate::rules::deadline::install_clock(monotonic_ns);
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The current time, formatted.
pub fn now() -> String {
    crate::util::time::rfc3339_ms(now_ms())
}
