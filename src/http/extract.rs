//! What every handler shares: reading a JSON body into a type with the bad field named (422),
//! the 422 error itself, running a blocking store read, and mapping store errors to HTTP.
//! Handlers import these from here, never from each other.

use super::reply::{self, ApiError};
use super::AppState;
use crate::diagnostic::did_you_mean;
use crate::store::{Store, StoreError};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Reads a JSON object body and deserializes it; field problems are 422 naming the field.
pub(super) async fn body<T: DeserializeOwned>(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    let map = reply::json_object(
        req,
        state.config.server.body_limit_bytes,
        std::time::Duration::from_millis(state.config.server.body_read_timeout_ms),
    )
    .await?;
    parse(&map, "")
}

/// Deserializes `map` into `T`, naming the offending field (with `prefix`, e.g. `progress.`)
/// when it does not fit: unknown and missing fields come from serde's message; for a value of
/// the wrong type or range, each field is tried alone to find the one serde refuses.
pub(super) fn parse<T: DeserializeOwned>(
    map: &Map<String, Value>,
    prefix: &str,
) -> Result<T, ApiError> {
    let whole = Value::Object(map.clone());
    let err = match T::deserialize(&whole) {
        Ok(v) => return Ok(v),
        Err(e) => e.to_string(),
    };
    let quoted = |after: &str| {
        err.strip_prefix(after)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string)
    };
    if let Some(name) = quoted("unknown field `") {
        let expected: Vec<&str> = err
            .split_once("expected")
            .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let help = did_you_mean(&name, expected.iter().copied()).or_else(|| {
            (!expected.is_empty()).then(|| {
                let known: Vec<String> =
                    expected.iter().map(|f| format!("`{prefix}{f}`")).collect();
                format!("known fields: {}", known.join(", "))
            })
        });
        let field = format!("{prefix}{name}");
        return Err(invalid(&field, format!("unknown field `{field}`"), help));
    }
    if let Some(name) = quoted("missing field `") {
        let field = format!("{prefix}{name}");
        return Err(invalid(&field, format!("missing field `{field}`"), None));
    }
    for (k, v) in map {
        let alone = Value::Object(Map::from_iter([(k.clone(), v.clone())]));
        if let Err(e) = T::deserialize(&alone) {
            let e = e.to_string();
            if !e.starts_with("missing field") {
                let field = format!("{prefix}{k}");
                return Err(invalid(&field, format!("invalid `{field}`: {e}"), None));
            }
        }
    }
    let field = prefix.trim_end_matches('.');
    Err(invalid(field, format!("invalid request body: {err}"), None))
}

/// 422 naming a field.
pub(super) fn invalid(field: &str, message: String, help: Option<String>) -> ApiError {
    let mut detail = json!({"field": field, "message": message});
    if let Some(h) = help {
        detail["help"] = Value::String(h);
    }
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message).details(vec![detail])
}

/// A 400 naming a query parameter.
pub(super) fn bad_parameter(name: &str, message: String, help: Option<String>) -> ApiError {
    let mut detail = json!({"parameter": name, "message": message});
    if let Some(h) = help {
        detail["help"] = Value::String(h);
    }
    ApiError::new(StatusCode::BAD_REQUEST, message).details(vec![detail])
}

/// Percent-decodes a query component (`+` is a space).
fn decode(raw: &str) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            format!("malformed percent-encoding in query `{raw}`"),
                        )
                    })?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("query `{raw}` is not UTF-8 once decoded"),
        )
    })
}

/// A query string's pairs (`req.uri().query()`), percent-decoded, in order (`k` alone is `k=""`; empty pairs are
/// skipped). The one query parser of the handlers.
pub(super) fn query(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for pair in raw.unwrap_or("").split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((decode(k)?, decode(v)?));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Store calls and their errors
// ---------------------------------------------------------------------------------------------

/// Runs a store call on the blocking pool.
pub(super) async fn blocking<T, F>(store: Arc<Store>, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
{
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(r) => r.map_err(store_error),
        Err(e) => {
            tracing::error!("job store task failed: {e}");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the job store task failed; the server log has the details",
            ))
        }
    }
}

pub(super) fn not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no job `{id}`"))
}

pub(super) fn store_error(e: StoreError) -> ApiError {
    match &e {
        StoreError::NotFound(id) => not_found(id),
        StoreError::StaleLease { status, .. } => ApiError::new(StatusCode::CONFLICT, e.to_string())
            .details(vec![json!({"current_status": status})]),
        StoreError::IllegalTransition { from, .. } => {
            ApiError::new(StatusCode::CONFLICT, e.to_string())
                .details(vec![json!({"current_status": from})])
        }
        StoreError::Lost(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        StoreError::Field { field, message } => invalid(field, message.clone(), None),
        StoreError::Invalid(msg) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, msg.clone()),
        _ => {
            tracing::error!("job store error: {e}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the job store failed; the server log has the details",
            )
        }
    }
}
