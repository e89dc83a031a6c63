//! Past outcomes as JSON Lines (the original `selector_metrics.jsonl` record format).

use crate::diagnostic::Diagnostic;
use crate::rules::spec::HistoryRecord;
use std::collections::HashMap;

/// Past outcomes as the confidence model asks for them.
pub trait History: Sync {
    /// Of the outcomes with this domain and optimizer: how many there are, and how many
    /// reached `success_quality`.
    fn tally(&self, domain: &str, optimizer: &str, success_quality: f64) -> (usize, usize);
}

/// A plain list of records, scanned on every tally (dry runs and fixtures).
#[derive(Debug, Clone, Copy)]
pub struct Records<'a>(pub &'a [HistoryRecord]);

impl History for Records<'_> {
    fn tally(&self, domain: &str, optimizer: &str, success_quality: f64) -> (usize, usize) {
        let mut matches = 0usize;
        let mut successes = 0usize;
        for r in self.0 {
            if r.domain == domain && r.optimizer == optimizer {
                matches += 1;
                if r.quality >= success_quality {
                    successes += 1;
                }
            }
        }
        (matches, successes)
    }
}

/// Outcomes indexed by domain and optimizer, qualities sorted: a tally is two hash lookups and
/// a binary search, whatever the number of outcomes (the server's live history).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryIndex {
    map: HashMap<String, HashMap<String, Vec<f64>>>,
    len: usize,
}

impl HistoryIndex {
    /// Indexes the records.
    pub fn new<'a>(records: impl IntoIterator<Item = &'a HistoryRecord>) -> Self {
        let mut ix = HistoryIndex::default();
        for r in records {
            ix.push(r);
        }
        ix
    }

    /// Adds one record.
    pub fn push(&mut self, r: &HistoryRecord) {
        let v = self
            .map
            .entry(r.domain.clone())
            .or_default()
            .entry(r.optimizer.clone())
            .or_default();
        let at = v.partition_point(|q| *q < r.quality);
        v.insert(at, r.quality);
        self.len += 1;
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl History for HistoryIndex {
    fn tally(&self, domain: &str, optimizer: &str, success_quality: f64) -> (usize, usize) {
        match self.map.get(domain).and_then(|m| m.get(optimizer)) {
            None => (0, 0),
            Some(v) => (
                v.len(),
                v.len() - v.partition_point(|q| *q < success_quality),
            ),
        }
    }
}

/// Parses JSON Lines; a malformed line becomes a warning with its line number and is skipped.
pub fn parse_jsonl(path: &str, text: &str) -> (Vec<HistoryRecord>, Vec<Diagnostic>) {
    let mut records = Vec::new();
    let mut warnings = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        match serde_json::from_str::<HistoryRecord>(trimmed) {
            Ok(r) if (0.0..=1.0).contains(&r.quality) => records.push(r),
            Ok(r) => warnings.push(
                Diagnostic::warning(format!(
                    "skipped record: quality {} is outside 0..1",
                    r.quality
                ))
                .at(path, Some(crate::diagnostic::Pos::new(i + 1, 1, 1))),
            ),
            Err(e) => warnings.push(
                Diagnostic::warning(format!("skipped malformed record: {e}"))
                    .at(
                        path,
                        Some(crate::diagnostic::Pos::new(i + 1, e.column().max(1), 1)),
                    )
                    .with_help(
                        "each line is one JSON object with at least domain, optimizer and quality",
                    ),
            ),
        }
    }
    (records, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(domain: &str, optimizer: &str, quality: f64) -> HistoryRecord {
        HistoryRecord {
            timestamp: None,
            trainset_size: None,
            budget: None,
            quality_target: None,
            domain: domain.into(),
            optimizer: optimizer.into(),
            actual_cost: None,
            actual_time: None,
            quality,
        }
    }

    #[test]
    fn index_tallies_like_a_scan() {
        let recs: Vec<HistoryRecord> = (0..200)
            .map(|i| {
                rec(
                    ["general", "web"][i % 2],
                    ["gepa", "miprov2", "bootstrap_fewshot"][i % 3],
                    (i * 37 % 101) as f64 / 100.0,
                )
            })
            .collect();
        let ix = HistoryIndex::new(&recs);
        assert_eq!(ix.len(), 200);
        for d in ["general", "web", "other"] {
            for o in ["gepa", "miprov2", "bootstrap_fewshot", "x"] {
                for q in [0.0, 0.5, 0.8, 0.81, 1.0] {
                    assert_eq!(
                        ix.tally(d, o, q),
                        Records(&recs).tally(d, o, q),
                        "{d} {o} {q}"
                    );
                }
            }
        }
        assert_eq!(
            HistoryIndex::default().tally("general", "gepa", 0.8),
            (0, 0)
        );
    }

    #[test]
    fn malformed_lines_are_reported_and_skipped() {
        let text = r#"{"timestamp":"2026-01-01T00:00:00","trainset_size":50,"budget":10,"quality_target":0.85,"domain":"general","optimizer":"gepa","actual_cost":0.2,"actual_time":3,"quality":0.9}
not json
{"domain":"general","optimizer":"gepa"}

{"domain":"web","optimizer":"miprov2","quality":0.7}
"#;
        let (recs, warns) = parse_jsonl("h.jsonl", text);
        assert_eq!(recs.len(), 2);
        assert_eq!(warns.len(), 2);
        assert_eq!(warns[0].pos.map(|p| p.line), Some(2));
        assert_eq!(warns[1].pos.map(|p| p.line), Some(3));
        assert!(warns[1].message.contains("quality"), "{}", warns[1].message);
    }
}
