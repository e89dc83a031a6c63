//! Time limits for Rhai code. The operation budget of the sandbox bounds the number of steps,
//! not their cost: one step such as `a.contains(x)` on a 10,000-item array scans the array, so a
//! script inside its operation budget can still run for seconds. Two deadlines bound time:
//!
//! - per evaluation ([`evaluation`], armed by every `engine` evaluation): a script stops once the
//!   evaluation has run for the budget ([`set_budget_ms`], `rules.eval_timeout_ms`, default
//!   [`DEFAULT_BUDGET_MS`]);
//! - overall ([`overall`], armed by `rules check` around the rule analysis): every script stops
//!   once it has passed, so the analysis ends and reports what it covered.
//!
//! This module does not read the clock: the edges install one ([`install_clock`]); without one
//! nothing is timed. The sandbox's progress hook ([`progress`]) starts the per-evaluation clock
//! at the first Rhai operation (so evaluations that never enter Rhai never read the clock) and
//! checks both deadlines every [`CHECK_EVERY`] operations.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Default time limit of one evaluation on the server, in milliseconds
/// (`rules.eval_timeout_ms`).
pub const DEFAULT_BUDGET_MS: u64 = 50;

/// Time limit of one evaluation in the CLI's own commands (`rules test`, `rules check`, dry
/// runs): still a bound, but wide enough that the operation budget, not the machine's load,
/// decides how a runaway script is reported.
pub const CLI_BUDGET_MS: u64 = 1_000;

/// Operations between two looks at the clock.
pub const CHECK_EVERY: u64 = 64;

/// Why a script was stopped, as the termination token Rhai carries.
pub const EVALUATION_TOKEN: &str = "evaluation time limit";
/// The overall deadline's token.
pub const OVERALL_TOKEN: &str = "overall time budget";

static CLOCK: OnceLock<fn() -> u64> = OnceLock::new();
static BUDGET_NS: AtomicU64 = AtomicU64::new(DEFAULT_BUDGET_MS * 1_000_000);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Eval {
    /// No evaluation is timed.
    Off,
    /// An evaluation runs; its clock starts at its first Rhai operation.
    Armed,
    /// Its deadline, in clock nanoseconds.
    Running(u64),
}

thread_local! {
    static EVAL: Cell<Eval> = const { Cell::new(Eval::Off) };
    static OVERALL: Cell<u64> = const { Cell::new(u64::MAX) };
}

/// Installs the monotonic clock (nanoseconds) the deadlines are measured with. The first call
/// wins; the binary installs one at start-up.
pub fn install_clock(clock: fn() -> u64) {
    let _ = CLOCK.set(clock);
}

/// Sets the time limit of one evaluation (at least 1 ms).
pub fn set_budget_ms(ms: u64) {
    BUDGET_NS.store(ms.max(1).saturating_mul(1_000_000), Ordering::Relaxed);
}

/// The time limit of one evaluation, in milliseconds.
pub fn budget_ms() -> u64 {
    BUDGET_NS.load(Ordering::Relaxed) / 1_000_000
}

/// Restores the previous state when dropped.
#[must_use = "the deadline holds while this lives"]
#[derive(Debug)]
pub struct EvaluationGuard(Eval);

impl Drop for EvaluationGuard {
    fn drop(&mut self) {
        EVAL.with(|e| e.set(self.0));
    }
}

/// Times the evaluation that runs while the guard lives (nested calls share the outer one).
pub fn evaluation() -> EvaluationGuard {
    EvaluationGuard(EVAL.with(|e| {
        let prev = e.get();
        if prev == Eval::Off {
            e.set(Eval::Armed);
        }
        prev
    }))
}

/// Restores the previous overall deadline when dropped.
#[must_use = "the deadline holds while this lives"]
#[derive(Debug)]
pub struct OverallGuard(u64);

impl Drop for OverallGuard {
    fn drop(&mut self) {
        OVERALL.with(|o| o.set(self.0));
    }
}

/// Stops every script on this thread `ms` milliseconds from now, while the guard lives.
/// Without a clock there is no deadline.
pub fn overall(ms: u64) -> OverallGuard {
    overall_with(CLOCK.get().copied(), ms)
}

fn overall_with(clock: Option<fn() -> u64>, ms: u64) -> OverallGuard {
    let deadline = clock
        .map(|c| c().saturating_add(ms.saturating_mul(1_000_000)))
        .unwrap_or(u64::MAX);
    OverallGuard(OVERALL.with(|o| o.replace(deadline)))
}

/// Whether the overall deadline of this thread has passed.
pub fn overall_expired() -> bool {
    overall_expired_with(CLOCK.get().copied())
}

fn overall_expired_with(clock: Option<fn() -> u64>) -> bool {
    let deadline = OVERALL.with(Cell::get);
    deadline != u64::MAX && clock.is_some_and(|c| c() >= deadline)
}

/// The sandbox's progress hook: the token of the deadline that passed, if one did.
pub fn progress(ops: u64) -> Option<&'static str> {
    progress_with(*CLOCK.get()?, ops)
}

fn progress_with(clock: fn() -> u64, ops: u64) -> Option<&'static str> {
    EVAL.with(|e| {
        let eval = e.get();
        let first = eval == Eval::Armed;
        if !first && !ops.is_multiple_of(CHECK_EVERY) {
            return None;
        }
        let now = clock();
        if first {
            e.set(Eval::Running(
                now.saturating_add(BUDGET_NS.load(Ordering::Relaxed)),
            ));
        }
        if OVERALL.with(Cell::get) <= now {
            return Some(OVERALL_TOKEN);
        }
        match eval {
            Eval::Running(deadline) if now >= deadline => Some(EVALUATION_TOKEN),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    static NOW: AtomicU64 = AtomicU64::new(1_000);

    fn fake() -> u64 {
        NOW.load(Ordering::SeqCst)
    }

    #[test]
    fn the_evaluation_clock_starts_at_the_first_operation_and_stops_past_the_budget() {
        let clock: fn() -> u64 = fake;
        let step = |ops| progress_with(clock, ops);
        assert_eq!(step(1), None, "nothing armed: never stops");
        {
            let _g = evaluation();
            NOW.store(10_000_000_000, Ordering::SeqCst);
            assert_eq!(step(1), None, "starts the clock");
            NOW.fetch_add(budget_ms() * 1_000_000 - 1, Ordering::SeqCst);
            assert_eq!(step(CHECK_EVERY), None);
            NOW.fetch_add(1, Ordering::SeqCst);
            assert_eq!(step(CHECK_EVERY + 1), None, "only every CHECK_EVERY ops");
            assert_eq!(step(2 * CHECK_EVERY), Some(EVALUATION_TOKEN));
        }
        assert_eq!(step(3 * CHECK_EVERY), None, "disarmed by the guard");
        {
            let _g = overall_with(Some(clock), 5);
            assert!(!overall_expired_with(Some(clock)));
            NOW.fetch_add(5_000_000, Ordering::SeqCst);
            assert!(overall_expired_with(Some(clock)));
            assert_eq!(step(4 * CHECK_EVERY), Some(OVERALL_TOKEN));
        }
        assert!(!overall_expired_with(Some(clock)));
    }
}
