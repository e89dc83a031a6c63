//! What every handler shares: reading a JSON body into a type with the bad field named (422),
//! the 422 error itself, running a blocking store read, and mapping store errors to HTTP.
//! Handlers import these from here, never from each other.

use super::reply::{self, ApiError};
use super::AppState;
use crate::store::{Store, StoreError};
use crate::util::schema_check::{self, At, Checker};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Reads a JSON object body and deserializes it; field problems are 422 naming the field.
pub(super) async fn body<T: DeserializeOwned + JsonSchema + 'static>(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    let map = reply::json_object(
        req,
        state.config.server.body_limit_bytes,
        std::time::Duration::from_millis(state.config.server.body_read_timeout_ms),
    )
    .await?;
    parse(map)
}

/// The checker of `T`'s JSON Schema, compiled once per type.
fn checker<T: JsonSchema + 'static>() -> Result<Arc<Checker>, ApiError> {
    Checker::cached::<T>().map_err(|e| {
        tracing::error!("the schema of a request body does not compile: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "request body schema error",
        )
    })
}

/// Checks `map` against `T`'s JSON Schema (`util::schema_check`, the one validator), then
/// deserializes it. The first problem is a 422 naming its field as a dotted path
/// (`progress.percent`), with a help line where there is one.
pub(super) fn parse<T: DeserializeOwned + JsonSchema + 'static>(
    map: Map<String, Value>,
) -> Result<T, ApiError> {
    let whole = Value::Object(map);
    if let Some(p) = checker::<T>()?
        .problems(&whole, &schema_check::JSON)
        .into_iter()
        .next()
    {
        let field = schema_check::dotted(&p.pointer);
        let message = match p.at {
            At::Key => format!("unknown field `{field}`"),
            At::Missing => format!("missing field `{field}`"),
            At::Value => format!("invalid `{field}`: {}", p.message),
        };
        return Err(invalid(&field, message, p.help));
    }
    // The schema describes what serde accepts; what it cannot say (a number too large for
    // its type) is refused here.
    T::deserialize(whole).map_err(|e| invalid("", format!("invalid request body: {e}"), None))
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
        StoreError::Postgres { .. } => {
            // Unreachable, restarting, or a failed statement: nothing was acknowledged, and a
            // create is safe to send again with its idempotency key.
            tracing::warn!("job store unavailable: {e}");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable: retry; a create sent again with its idempotency key never makes a second job",
            )
        }
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
