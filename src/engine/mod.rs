//! The pure decision engine: selection, cost and time, confidence, alternatives, budget guard.
//!
//! Functions here take a [`RuleSet`](crate::rules::RuleSet), a checked
//! [`Context`](crate::rules::context::Context) and past outcomes, and return a
//! [`Decision`](crate::decision::Decision). No I/O, no clock: time and history come in as
//! arguments.

pub mod calibrate;
pub mod confidence;
pub mod estimate;
pub mod history;
pub mod metrics;
pub mod recommend;
pub mod reference;
pub mod training;

use crate::diagnostic::Diagnostic;
use crate::rules::script::ScriptError;

pub use recommend::{choose, evaluate, evaluate_with, recommend, Evaluation, Options};

/// An evaluation failed (only scripts can fail; structured rules cannot).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// A Rhai script failed or exceeded its limits.
    #[error("{rule}: {}", error.message)]
    Script {
        /// The rule (or model part) whose script failed.
        rule: String,
        /// What happened and where.
        error: ScriptError,
    },
}

impl EvalError {
    /// As a diagnostic with the script's `file:line:col`.
    pub fn to_diagnostic(&self) -> Diagnostic {
        match self {
            EvalError::Script { rule, error } => {
                let mut d = error.to_diagnostic();
                d.message = format!("{} (in {rule})", d.message);
                d
            }
        }
    }
}
