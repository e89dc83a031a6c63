//! The trainset of `optimize`: reading the file (a JSON array, an object with `examples`, or
//! JSON Lines) and the quality filter of the training rules, with a note on what was left out.

use super::FileError;
use serde_json::Value;
use std::io::Write;
use std::path::Path;

/// Reads the records of a trainset file: a JSON array, an object with `examples`, or JSON Lines.
pub fn read_trainset(path: &Path) -> Result<Vec<Value>, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        FileError::Unreadable(format!("cannot read trainset `{}`: {e}", path.display()))
    })?;
    if let Ok(v) = serde_json::from_str::<Value>(&text) {
        return match v {
            Value::Array(a) => Ok(a),
            Value::Object(mut m) => match m.remove("examples") {
                Some(Value::Array(a)) => Ok(a),
                _ => Ok(vec![Value::Object(m)]),
            },
            _ => Err(FileError::Invalid(format!(
                "trainset `{}` holds no examples",
                path.display()
            ))),
        };
    }
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        records.push(serde_json::from_str::<Value>(line).map_err(|e| {
            FileError::Invalid(format!(
                "{}:{}:{}: line {} is not JSON: {e}",
                path.display(),
                i + 1,
                e.column(),
                i + 1
            ))
        })?);
    }
    Ok(records)
}

/// The trainset after the quality filter of the training rules: the ids of the file's records
/// that the store knows and that `training select` keeps. `None` when there is nothing to
/// filter with (no database, or no record id the store knows); a note says why.
pub(super) fn filtered(
    records: &[Value],
    db: Option<&Path>,
    spec: &crate::rules::spec::TrainingSpec,
    err: &mut dyn Write,
) -> Option<Vec<String>> {
    let ids: std::collections::HashSet<&str> = records
        .iter()
        .filter_map(|r| {
            r.get("example_id")
                .or_else(|| r.get("id"))
                .and_then(Value::as_str)
        })
        .collect();
    let note = |err: &mut dyn Write, why: &str| {
        let _ = writeln!(
            err,
            "note: not filtering the trainset: {why}; using all {} examples",
            records.len()
        );
    };
    if ids.is_empty() {
        note(err, "its records carry no `example_id`");
        return None;
    }
    let Some(path) = db.filter(|p| crate::store::exists(p).unwrap_or(false)) else {
        note(
            err,
            "there is no training database (run `skill-fleet db init`)",
        );
        return None;
    };
    let known = match crate::store::Store::open_read_only(path).and_then(|s| {
        let all = s.examples();
        let _ = s.close();
        all
    }) {
        Ok(all) => all,
        Err(e) => {
            note(err, &format!("the database cannot be read ({e})"));
            return None;
        }
    };
    let subset: Vec<crate::engine::training::Example> = known
        .into_iter()
        .filter(|e| ids.contains(e.example_id.as_str()))
        .collect();
    if subset.is_empty() {
        note(err, "none of its example ids is in the training database");
        return None;
    }
    let sel = crate::engine::training::select(
        spec,
        &subset,
        &crate::engine::training::SelectRequest::default(),
    );
    let selected: Vec<String> = sel.selected.into_iter().map(|s| s.example_id).collect();
    // Say what was left out, and why: the filter is the point of the command.
    let known: std::collections::HashSet<&str> =
        subset.iter().map(|e| e.example_id.as_str()).collect();
    let kept: std::collections::HashSet<&str> = selected.iter().map(String::as_str).collect();
    let mut sorted: Vec<&str> = ids.iter().copied().collect();
    sorted.sort_unstable();
    let low: Vec<&str> = sorted
        .iter()
        .copied()
        .filter(|id| known.contains(id) && !kept.contains(id))
        .collect();
    let unknown: Vec<&str> = sorted
        .iter()
        .copied()
        .filter(|id| !known.contains(id))
        .collect();
    let without = records.len() - ids.len().min(records.len());
    let mut parts = Vec::new();
    if !low.is_empty() {
        parts.push(format!(
            "{} below the training filter (minimum score {}): {}",
            low.len(),
            spec.filter.min_score,
            low.join(", ")
        ));
    }
    if !unknown.is_empty() {
        parts.push(format!(
            "{} not in the training database: {}",
            unknown.len(),
            unknown.join(", ")
        ));
    }
    if without > 0 {
        parts.push(format!("{without} without `example_id`"));
    }
    if !parts.is_empty() {
        let _ = writeln!(
            err,
            "note: {} of {} records left out: {}",
            records.len() - selected.len(),
            records.len(),
            parts.join("; ")
        );
    }
    Some(selected)
}
