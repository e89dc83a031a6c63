//! The moving-average update after a run, from its per-example results.

use super::*;

/// The outcome of one example in an optimization run (a record of `--results`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunResult {
    /// Example id.
    pub example_id: String,
    /// Score it got, 0..1.
    pub score: f64,
    /// Whether it passed.
    pub passed: bool,
}

/// What an update changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpdateOutcome {
    /// The examples after the update (each once).
    pub updated: Vec<Example>,
    /// Ids of results with no such example, in order, each once.
    pub unknown: Vec<String>,
}

/// Applies run results with the rule's moving averages:
/// `quality = (1 - qa) × quality + qa × score`, `success = (1 - sa) × success + sa × passed`
/// (from the neutral rate without history); usage + 1 and `last_used = now` per result.
pub fn apply_results(
    spec: &TrainingSpec,
    examples: &[Example],
    results: &[RunResult],
    now: &str,
) -> UpdateOutcome {
    let qa = spec.update.quality_alpha;
    let sa = spec.update.success_alpha;
    let mut changed: BTreeMap<&str, Example> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    for r in results {
        let Some(base) = examples.iter().find(|e| e.example_id == r.example_id) else {
            if !unknown.contains(&r.example_id) {
                unknown.push(r.example_id.clone());
            }
            continue;
        };
        let ex = changed.entry(base.example_id.as_str()).or_insert_with(|| {
            order.push(base.example_id.as_str());
            base.clone()
        });
        let passed = if r.passed { 1.0 } else { 0.0 };
        ex.quality_score = (1.0 - qa) * ex.quality_score + qa * r.score;
        let s = ex.success_rate.unwrap_or(spec.neutral_success_rate);
        ex.success_rate = Some((1.0 - sa) * s + sa * passed);
        ex.usage_count += 1;
        ex.last_used = Some(now.to_string());
    }
    let updated = order
        .into_iter()
        .filter_map(|id| changed.remove(id))
        .collect();
    UpdateOutcome { updated, unknown }
}

/// Checks run results: scores within 0..1, ids not empty.
pub fn check_results(results: &[RunResult]) -> Result<(), RecordError> {
    for (i, r) in results.iter().enumerate() {
        if r.example_id.trim().is_empty() {
            return Err(RecordError {
                index: i,
                field: Some("example_id".into()),
                message: "must not be empty".into(),
            });
        }
        if !(0.0..=1.0).contains(&r.score) {
            return Err(RecordError {
                index: i,
                field: Some("score".into()),
                message: format!("{} is outside 0..1", r.score),
            });
        }
    }
    Ok(())
}
