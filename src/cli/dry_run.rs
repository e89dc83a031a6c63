//! `skill-fleet rules test --set … / --input …`: dry runs of the recommendation. Each input
//! goes through the server's own parser and checks, so the CLI accepts and refuses exactly what
//! the API does; `--set` values replace the input's own.

use super::render;
use super::rules_args::{Format, TestArgs};
use super::{CliError, Exit};
use crate::decision::Decision;
use crate::diagnostic::{render_all, Diagnostic, Pos, SourceFile};
use crate::engine::{self, history, Options};
use crate::rules::{context::InputError, RuleSet};
use std::io::{Read, Write};
use std::path::Path;

/// The checked inputs of a dry run, and whether `--input` held an array; the problems of an
/// invalid input are the error (as JSON on `out` with `--format json`).
fn checked_inputs(
    rs: &RuleSet,
    a: &TestArgs,
    out: &mut dyn Write,
) -> Result<(Vec<crate::rules::context::Context>, bool), CliError> {
    let invalid = |errors: Vec<InputError>, index, out: &mut dyn Write| {
        input_errors(errors, index, a.format, out)
    };
    let Some(p) = &a.input else {
        let mut m = serde_json::Map::new();
        for (k, v) in &a.set {
            m.insert(k.clone(), v.clone());
        }
        return match rs.check_input(&m) {
            Ok(c) => Ok((vec![c], false)),
            Err(errors) => Err(invalid(errors, None, out)),
        };
    };
    let text = read_input(p).map_err(CliError::io)?;
    let (value, duplicate) = crate::util::unique_json::parse(text.as_bytes()).map_err(|e| {
        // A position without the source line: ` --> file:line:col` under the message.
        let d = Diagnostic::error(format!("invalid json in `{}`: {e}", p.display())).at(
            p.display().to_string(),
            Some(Pos::new(e.line(), e.column(), 1)),
        );
        CliError::diagnostics(Exit::InvalidInput, vec![d], Vec::new())
    })?;
    let not_object = |i: usize| {
        CliError::input(format!(
            "item {i} of `{}` is not a JSON object",
            p.display()
        ))
    };
    let is_array = match &value {
        serde_json::Value::Object(_) => false,
        serde_json::Value::Array(_) => true,
        _ => {
            return Err(CliError::input(format!(
                "`{}` must hold a JSON object or an array of objects",
                p.display()
            )));
        }
    };
    if a.set.is_empty() {
        // The server's path, item by item, on the bytes as written.
        let items: Vec<&serde_json::value::RawValue> = if is_array {
            serde_json::from_str(&text).unwrap_or_default()
        } else {
            serde_json::from_str(&text)
                .map(|r| vec![r])
                .unwrap_or_default()
        };
        let mut out_ctx = Vec::with_capacity(items.len());
        for (i, raw) in items.iter().enumerate() {
            match rs.check_input_json(raw.get().as_bytes()) {
                Ok(c) => out_ctx.push(c),
                Err(crate::rules::context::JsonCheckError::Input(errors)) => {
                    return Err(invalid(errors, is_array.then_some(i), out))
                }
                Err(_) => return Err(not_object(i)),
            }
        }
        return Ok((out_ctx, is_array));
    }
    // With --set: the values as a map, each --set replacing the input's own.
    if let Some(path) = duplicate {
        let (index, key) = split_item_path(&path);
        let e = rs.context.given_twice(key).unwrap_or_else(|| InputError {
            field: key.to_string(),
            message: format!("field `{key}` is given twice"),
            help: Some("send the field under one name only".into()),
        });
        return Err(invalid(vec![e], index.filter(|_| is_array), out));
    }
    let objects = match value {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    let mut out_ctx = Vec::with_capacity(objects.len());
    for (i, item) in objects.into_iter().enumerate() {
        let serde_json::Value::Object(mut m) = item else {
            return Err(not_object(i));
        };
        for (k, v) in &a.set {
            m.insert(k.clone(), v.clone());
        }
        match rs.check_input(&m) {
            Ok(c) => out_ctx.push(c),
            Err(errors) => return Err(invalid(errors, is_array.then_some(i), out)),
        }
    }
    Ok((out_ctx, is_array))
}

/// The problems of one input (item `index` of an array): the error for a terminal, or printed
/// as JSON on `out`.
fn input_errors(
    errors: Vec<InputError>,
    index: Option<usize>,
    format: Format,
    out: &mut dyn Write,
) -> CliError {
    if format == Format::Json {
        let body = input_error_body(&errors, index);
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
        return CliError::reported(Exit::InvalidInput);
    }
    CliError::invalid_input(errors, index)
}

/// `[2].budget_usd.x` → (Some(2), `budget_usd`); `budget_usd` → (None, `budget_usd`).
fn split_item_path(path: &str) -> (Option<usize>, &str) {
    let (index, rest) = match path.strip_prefix('[').and_then(|p| p.split_once("].")) {
        Some((i, rest)) => (i.parse().ok(), rest),
        None => (None, path),
    };
    let end = rest.find(['.', '[']).unwrap_or(rest.len());
    (index, &rest[..end])
}

fn read_input(path: &Path) -> Result<String, String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))
    }
}

fn input_error_body(errors: &[InputError], index: Option<usize>) -> serde_json::Value {
    let mut body = serde_json::json!({
        "error": "invalid input",
        "details": errors,
    });
    if let Some(i) = index {
        body["index"] = i.into();
    }
    body
}

/// Runs a dry run: checks the inputs, decides, prints the decisions (an array for an array).
pub fn dry(
    rs: &RuleSet,
    a: &TestArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    let mut history_records = Vec::new();
    if let Some(p) = &a.history {
        let text = std::fs::read_to_string(p)
            .map_err(|e| CliError::io(format!("cannot read history `{}`: {e}", p.display())))?;
        let shown = p.display().to_string();
        let (recs, warns) = history::parse_jsonl(&shown, &text);
        let src = [SourceFile::new(shown, text.clone())];
        if !warns.is_empty() {
            let _ = write!(err, "{}", render_all(&warns, &src));
        }
        history_records = recs;
    }
    // Inputs: the --input file (object or array), or one empty object; --set applies to each.
    // Without --set, each object goes through the server's own parser and checks
    // (`check_input_json`, in document order): the CLI accepts and refuses exactly what
    // `POST /api/v1/optimization/recommend` does, duplicate keys included.
    let opts = Options {
        explain: a.explain,
        guard: None,
    };
    let (contexts, is_array) = checked_inputs(rs, a, out)?;
    let mut decisions: Vec<Decision> = Vec::with_capacity(contexts.len());
    for ctx in &contexts {
        let d = engine::recommend(rs, ctx, &history_records, opts)
            .map_err(|e| CliError::rules(vec![e.to_diagnostic()], Vec::new()))?;
        decisions.push(d);
    }
    if a.format == Format::Json {
        let text = if is_array {
            serde_json::to_string_pretty(&decisions)
        } else {
            serde_json::to_string_pretty(&decisions[0])
        };
        let _ = writeln!(out, "{}", text.unwrap_or_default());
    } else {
        for (i, d) in decisions.iter().enumerate() {
            if i > 0 {
                let _ = writeln!(out);
            }
            let _ = write!(out, "{}", render::decision(d));
        }
    }
    Ok(Exit::Ok)
}
