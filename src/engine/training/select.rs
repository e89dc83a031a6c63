//! Selecting a trainset: filter, score, minimum score, diversity bonus, at most `max`.

use super::*;

/// What a selection asks for.
#[derive(Debug, Clone, Default)]
pub struct SelectRequest {
    /// Prefer this style (relevance).
    pub style: Option<Style>,
    /// At most this many; default from the rules.
    pub max: Option<usize>,
    /// Minimum score; default from the rules.
    pub min_score: Option<f64>,
    /// Only these categories (all when empty).
    pub categories: Vec<String>,
    /// Add the diversity bonus.
    pub diversity: bool,
    /// List the excluded examples and why (costs time and memory on large sets).
    pub explain: bool,
}

/// A scored example.
#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    /// Example id.
    pub example_id: String,
    /// Category.
    pub category: String,
    /// Style.
    pub style: Style,
    /// Score.
    #[serde(serialize_with = "round::four")]
    pub score: f64,
    /// Its parts.
    pub parts: ScoreParts,
}

/// An example left out of a selection, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Excluded {
    /// Example id.
    pub example_id: String,
    /// Score, when it was scored.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "round::four_opt"
    )]
    pub score: Option<f64>,
    /// Why (shared text: the score is in `score`).
    pub reason: std::sync::Arc<str>,
}

/// A selected trainset.
#[derive(Debug, Clone, Serialize)]
pub struct Selection {
    /// Minimum score applied.
    #[serde(serialize_with = "round::four")]
    pub min_score: f64,
    /// Maximum size applied.
    pub max_examples: usize,
    /// Selected examples, best first.
    pub selected: Vec<Scored>,
    /// Examples left out, with the reason.
    pub excluded: Vec<Excluded>,
}

/// Selects a trainset: filters by category, scores, keeps those at or above the minimum score,
/// best first, at most `max`. With diversity, examples are picked one by one and each pick
/// lowers the bonus of its category. Never changes the examples.
pub fn select(spec: &TrainingSpec, examples: &[Example], req: &SelectRequest) -> Selection {
    let min_score = req.min_score.unwrap_or(spec.filter.min_score);
    let max = req
        .max
        .unwrap_or(usize::try_from(spec.filter.max_examples).unwrap_or(usize::MAX));
    let mut excluded = Vec::new();
    // Within one category every example gets the same diversity bonus and category weight, so
    // its order does not change as picks are made: sort each category once, then pick the best
    // head among the categories. O(n log n), not O(max × n).
    // Ties break by example id; rank the ids once so the sorts compare numbers, not strings.
    let mut by_id: Vec<u32> = (0..examples.len() as u32).collect();
    by_id.sort_unstable_by(|&a, &b| {
        examples[a as usize]
            .example_id
            .cmp(&examples[b as usize].example_id)
    });
    let mut rank = vec![0u32; examples.len()];
    for (r, &i) in by_id.iter().enumerate() {
        rank[i as usize] = r as u32;
    }
    let mut by_category: BTreeMap<&str, Vec<(f64, usize)>> = BTreeMap::new();
    for (i, ex) in examples.iter().enumerate() {
        if !req.categories.is_empty() && !req.categories.contains(&ex.category) {
            if !req.explain {
                continue;
            }
            excluded.push(Excluded {
                example_id: ex.example_id.clone(),
                score: None,
                reason: format!("category `{}` was not asked for", ex.category).into(),
            });
        } else {
            let key = score_parts(spec, ex, req.style, req.diversity.then_some(0.0)).0;
            by_category
                .entry(ex.category.as_str())
                .or_default()
                .push((key, i));
        }
    }
    // (category, its examples as (sort key, index) best first, how many are picked)
    type Lane<'e> = (&'e str, Vec<(f64, usize)>, usize);
    let mut lists: Vec<Lane<'_>> = by_category
        .into_iter()
        .map(|(c, mut v)| {
            v.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(rank[a.1].cmp(&rank[b.1])));
            (c, v, 0)
        })
        .collect();
    let scored = |ex: &Example, picked: usize| {
        let d = req.diversity.then(|| diversity_bonus(picked));
        let (score, parts) = score_parts(spec, ex, req.style, d);
        (score, parts)
    };
    let mut selected: Vec<Scored> = Vec::new();
    while selected.len() < max {
        let mut best: Option<(usize, f64)> = None;
        for (li, (_, list, picked)) in lists.iter().enumerate() {
            let Some(&(_, idx)) = list.get(*picked) else {
                continue;
            };
            let (score, _) = scored(&examples[idx], *picked);
            let better = match best {
                None => true,
                Some((bl, bs)) => {
                    let b = &lists[bl];
                    score > bs || (score == bs && rank[idx] < rank[b.1[b.2].1])
                }
            };
            if better {
                best = Some((li, score));
            }
        }
        let Some((li, score)) = best else { break };
        if score < min_score {
            break;
        }
        let (_, list, picked) = &mut lists[li];
        let ex = &examples[list[*picked].1];
        let (score, parts) = scored(ex, *picked);
        *picked += 1;
        selected.push(Scored {
            example_id: ex.example_id.clone(),
            category: ex.category.clone(),
            style: ex.style,
            score,
            parts,
        });
    }
    let mut rest: Vec<(f64, usize)> = if !req.explain {
        Vec::new()
    } else {
        lists
            .iter()
            .flat_map(|(_, list, picked)| {
                list[*picked..]
                    .iter()
                    .map(move |&(_, idx)| (scored(&examples[idx], *picked).0, idx))
            })
            .collect()
    };
    rest.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(rank[a.1].cmp(&rank[b.1])));
    excluded.reserve(rest.len());
    let below: std::sync::Arc<str> = format!("score is below the minimum {min_score}").into();
    let beyond: std::sync::Arc<str> = format!("beyond the maximum of {max} examples").into();
    for (score, idx) in rest {
        excluded.push(Excluded {
            example_id: examples[idx].example_id.clone(),
            score: Some(score),
            reason: if score < min_score {
                below.clone()
            } else {
                beyond.clone()
            },
        });
    }
    selected.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.example_id.cmp(&b.example_id))
    });
    Selection {
        min_score,
        max_examples: max,
        selected,
        excluded,
    }
}

/// The plain greedy selection (one full scan per pick): the oracle of `select`'s test.
#[cfg(test)]
pub(crate) fn select_greedy(
    spec: &TrainingSpec,
    examples: &[Example],
    req: &SelectRequest,
) -> Selection {
    let min_score = req.min_score.unwrap_or(spec.filter.min_score);
    let max = req
        .max
        .unwrap_or(usize::try_from(spec.filter.max_examples).unwrap_or(usize::MAX));
    let mut excluded = Vec::new();
    let mut pool: Vec<&Example> = Vec::new();
    for ex in examples {
        if !req.categories.is_empty() && !req.categories.contains(&ex.category) {
            excluded.push(Excluded {
                example_id: ex.example_id.clone(),
                score: None,
                reason: format!("category `{}` was not asked for", ex.category).into(),
            });
        } else {
            pool.push(ex);
        }
    }
    let mut selected: Vec<Scored> = Vec::new();
    let mut per_category: BTreeMap<&str, usize> = BTreeMap::new();
    let scored = |ex: &Example, per: &BTreeMap<&str, usize>| {
        let d = req
            .diversity
            .then(|| diversity_bonus(per.get(ex.category.as_str()).copied().unwrap_or(0)));
        let (score, parts) = score_parts(spec, ex, req.style, d);
        Scored {
            example_id: ex.example_id.clone(),
            category: ex.category.clone(),
            style: ex.style,
            score,
            parts,
        }
    };
    let better = |a: &Scored, b: &Scored| {
        a.score > b.score || (a.score == b.score && a.example_id < b.example_id)
    };
    while !pool.is_empty() {
        let mut best: Option<(usize, Scored)> = None;
        for (i, ex) in pool.iter().enumerate() {
            let s = scored(ex, &per_category);
            if best.as_ref().is_none_or(|(_, b)| better(&s, b)) {
                best = Some((i, s));
            }
        }
        let Some((i, s)) = best else { break };
        if s.score < min_score || selected.len() >= max {
            break;
        }
        let ex = pool.remove(i);
        *per_category.entry(ex.category.as_str()).or_insert(0) += 1;
        selected.push(s);
    }
    let mut rest: Vec<Scored> = pool.iter().map(|ex| scored(ex, &per_category)).collect();
    rest.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.example_id.cmp(&b.example_id))
    });
    for s in rest {
        let reason = if s.score < min_score {
            format!("score is below the minimum {min_score}").into()
        } else {
            format!("beyond the maximum of {max} examples").into()
        };
        excluded.push(Excluded {
            example_id: s.example_id,
            score: Some(s.score),
            reason,
        });
    }
    selected.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.example_id.cmp(&b.example_id))
    });
    Selection {
        min_score,
        max_examples: max,
        selected,
        excluded,
    }
}
