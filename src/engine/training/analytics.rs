//! Analytics of a set of examples: quality bands, top performers, gaps, breakdowns,
//! recommendations.

use super::*;

/// One under-represented category or style.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    /// `category` or `style`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// Examples it has.
    pub count: u64,
    /// Examples it should have at least.
    pub minimum: u64,
    /// True for an expected category with no example at all.
    pub missing: bool,
}

pub(super) fn count_by<'a>(
    examples: &'a [Example],
    key: impl Fn(&'a Example) -> String,
) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for ex in examples {
        *m.entry(key(ex)).or_insert(0) += 1;
    }
    m
}

/// Categories and styles below the thresholds, and expected categories with no example.
/// Categories first (by name), then styles (in [`Style::ALL`] order).
pub fn gaps(spec: &TrainingSpec, examples: &[Example]) -> Vec<Gap> {
    let g = &spec.gaps;
    let cats = count_by(examples, |e| e.category.clone());
    let mut names: Vec<&String> = cats.keys().collect();
    for c in &g.expected_categories {
        if !cats.contains_key(c) {
            names.push(c);
        }
    }
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let count = cats.get(name).copied().unwrap_or(0);
        if count < g.min_per_category {
            out.push(Gap {
                kind: "category",
                name: name.clone(),
                count,
                minimum: g.min_per_category,
                missing: count == 0,
            });
        }
    }
    let styles = count_by(examples, |e| e.style.as_str().to_string());
    for st in Style::ALL {
        let count = styles.get(st.as_str()).copied().unwrap_or(0);
        if count < g.min_per_style {
            out.push(Gap {
                kind: "style",
                name: st.as_str().to_string(),
                count,
                minimum: g.min_per_style,
                missing: count == 0,
            });
        }
    }
    out
}

/// Examples per quality band.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Distribution {
    /// Quality ≥ `bands.high`.
    pub high: u64,
    /// `bands.medium` ≤ quality < `bands.high`.
    pub medium: u64,
    /// Quality < `bands.medium`.
    pub low: u64,
}

/// A top performer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Performer {
    /// Example id.
    pub name: String,
    /// Score with nothing asked.
    #[serde(serialize_with = "round::four")]
    pub score: f64,
    /// Success rate (neutral without history).
    #[serde(serialize_with = "round::four")]
    pub success_rate: f64,
}

/// What `training analytics` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Analytics {
    /// Examples in the store.
    pub total_examples: u64,
    /// Examples per quality band.
    pub quality_distribution: Distribution,
    /// The five best by score.
    pub top_performers: Vec<Performer>,
    /// Under-represented (or missing) categories.
    pub underrepresented: Vec<String>,
    /// Every gap, categories and styles.
    pub gaps: Vec<Gap>,
    /// Examples per category.
    pub category_breakdown: BTreeMap<String, u64>,
    /// Examples per style.
    pub style_breakdown: BTreeMap<String, u64>,
    /// What to do about it.
    pub recommendations: Vec<String>,
}

/// The analytics of a set of examples.
pub fn analytics(spec: &TrainingSpec, examples: &[Example]) -> Analytics {
    let mut dist = Distribution::default();
    for ex in examples {
        let q = quality(spec, ex);
        if q >= spec.bands.high {
            dist.high += 1;
        } else if q >= spec.bands.medium {
            dist.medium += 1;
        } else {
            dist.low += 1;
        }
    }
    let mut ranked: Vec<(f64, &Example)> = examples.iter().map(|e| (score(spec, e), e)).collect();
    ranked.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| a.1.example_id.cmp(&b.1.example_id))
    });
    let top_performers = ranked
        .iter()
        .take(5)
        .map(|(s, e)| Performer {
            name: e.example_id.clone(),
            score: *s,
            success_rate: success(spec, e),
        })
        .collect();
    let gaps = gaps(spec, examples);
    let underrepresented: Vec<String> = gaps
        .iter()
        .filter(|g| g.kind == "category")
        .map(|g| g.name.clone())
        .collect();
    let category_breakdown = count_by(examples, |e| e.category.clone());
    let style_breakdown = count_by(examples, |e| e.style.as_str().to_string());
    let mut recommendations = Vec::new();
    for g in gaps.iter().filter(|g| g.kind == "category") {
        recommendations.push(format!(
            "add {} `{}` example(s): it has {}, the minimum is {}",
            g.minimum - g.count,
            g.name,
            g.count,
            g.minimum
        ));
    }
    let total = examples.len() as u64;
    if total > 0 {
        let share = dist.low as f64 / total as f64;
        if share > spec.recommendations.prune_low_share {
            recommendations.push(format!(
                "prune or improve low-quality examples: {} of {total} ({:.0}%) are below {}",
                dist.low,
                share * 100.0,
                spec.bands.medium
            ));
        }
    }
    if (category_breakdown.len() as u64) < spec.recommendations.min_categories {
        recommendations.push(format!(
            "add categories: only {} have examples, at least {} are recommended",
            category_breakdown.len(),
            spec.recommendations.min_categories
        ));
    }
    Analytics {
        total_examples: total,
        quality_distribution: dist,
        top_performers,
        underrepresented,
        gaps,
        category_breakdown,
        style_breakdown,
        recommendations,
    }
}
