//! Confidence: base, adjusted by past outcomes of the same domain and optimizer, capped,
//! penalised for small trainsets, rounded like Python.

use super::history::History;
use crate::decision::ConfidenceTrace;
use crate::rules::ConfidenceModel;
use crate::util::round::round_py;

/// Computes the confidence of recommending `optimizer` for `domain` with `trainset_size`.
pub fn confidence(
    m: &ConfidenceModel,
    trainset_size: i64,
    domain: &str,
    optimizer: &str,
    history: &dyn History,
) -> ConfidenceTrace {
    let (matches, successes) = history.tally(domain, optimizer, m.success_quality);
    let mut c = m.base;
    if matches > 0 {
        let share = successes as f64 / matches as f64;
        c = (m.base + share * m.weight).min(m.cap);
    }
    let after_history = c;
    let factor = if trainset_size < m.small_below {
        m.small_factor
    } else {
        1.0
    };
    if trainset_size < m.small_below {
        c *= m.small_factor;
    }
    ConfidenceTrace {
        base: m.base,
        history_matches: matches,
        history_successes: successes,
        after_history,
        small_trainset_factor: factor,
        value: round_py(c, m.decimals).clamp(0.0, 1.0),
    }
}
