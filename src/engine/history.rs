//! Past outcomes as JSON Lines (the original `selector_metrics.jsonl` record format).

use crate::diagnostic::Diagnostic;
use crate::rules::spec::HistoryRecord;

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
