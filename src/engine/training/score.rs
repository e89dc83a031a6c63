//! Scoring an example: quality (overall or weighted sub-scores), success rate, category
//! weight, and their weighted sum.

use super::*;

/// The parts of an example's score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreParts {
    /// Quality (the overall score, or the weighted sub-scores).
    #[serde(serialize_with = "round::four")]
    pub quality: f64,
    /// Success rate (the neutral one without history).
    #[serde(serialize_with = "round::four")]
    pub success_rate: f64,
    /// Style match with the request (1 or 0); only when a style was asked.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "round::four_opt"
    )]
    pub relevance: Option<f64>,
    /// Bonus for a category under-represented in the selection; only when diversity was asked.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "round::four_opt"
    )]
    pub diversity: Option<f64>,
    /// Factor of the example's category.
    #[serde(serialize_with = "round::four")]
    pub category_weight: f64,
}

/// The quality of an example: the overall score, or the weighted sub-scores when the rules
/// give `quality_parts`.
pub fn quality(spec: &TrainingSpec, ex: &Example) -> f64 {
    let mut sum = 0.0;
    let mut weight = 0.0;
    for (name, w) in &spec.quality_parts {
        if let Some(x) = ex.sub_score(name) {
            sum += w * x;
            weight += w;
        }
    }
    if weight > 0.0 {
        sum / weight
    } else {
        ex.quality_score
    }
}

/// The success rate of an example; one without history gets the neutral rate, whatever its
/// usage count.
pub fn success(spec: &TrainingSpec, ex: &Example) -> f64 {
    ex.success_rate.unwrap_or(spec.neutral_success_rate)
}

/// The factor of a category.
pub fn category_weight(spec: &TrainingSpec, category: &str) -> f64 {
    spec.category_weights
        .get(category)
        .copied()
        .unwrap_or(spec.default_category_weight)
}

/// Scores one example. The weighted parts are divided by the sum of the weights in use
/// (quality and success always; relevance when a style is asked; diversity when asked), then
/// multiplied by the category weight. With the default weights (0.6, 0.4) and nothing asked:
/// `(0.6 × quality + 0.4 × success_rate) × category weight`.
pub fn score_parts(
    spec: &TrainingSpec,
    ex: &Example,
    style: Option<Style>,
    diversity: Option<f64>,
) -> (f64, ScoreParts) {
    let w = &spec.weights;
    let q = quality(spec, ex);
    let s = success(spec, ex);
    let relevance = style.map(|st| if st == ex.style { 1.0 } else { 0.0 });
    let mut sum = w.quality * q + w.success_rate * s;
    let mut total = w.quality + w.success_rate;
    if let Some(r) = relevance {
        sum += w.relevance * r;
        total += w.relevance;
    }
    if let Some(d) = diversity {
        sum += w.diversity * d;
        total += w.diversity;
    }
    let base = if total > 0.0 { sum / total } else { 0.0 };
    let cw = category_weight(spec, &ex.category);
    let parts = ScoreParts {
        quality: q,
        success_rate: s,
        relevance,
        diversity,
        category_weight: cw,
    };
    (base * cw, parts)
}

/// The score with nothing asked (what analytics ranks by).
pub fn score(spec: &TrainingSpec, ex: &Example) -> f64 {
    score_parts(spec, ex, None, None).0
}

/// The diversity bonus of a category: 1 when the selection has none of it yet, less as it
/// fills up.
pub(super) fn diversity_bonus(count_in_selection: usize) -> f64 {
    1.0 / (1.0 + count_in_selection as f64)
}
