//! `GET /api/v1/rules/context` (the live context model, for the console's form) and
//! `GET /api/v1/rules/map` (the decision map, computed by `check::map` from the pure engine).

use super::extract::{bad_parameter, invalid, query};
use super::reply::{self, ApiError, Body};
use super::AppState;
use crate::check::map::{self, Axis, AxisSpec, Map, Scale};
use crate::loader::live::Rollback;
use crate::rules::context::Context;
use crate::rules::spec::FieldType;
use crate::rules::RuleSet;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Points per side when `nx` / `ny` are not given.
const DEFAULT_POINTS: usize = 100;
/// Time a map may take with a rule set that runs Rhai; the rest of the cells are left out.
const MAP_BUDGET_MS: u64 = 2_000;

/// `GET /api/v1/rules/context`: the fields (with type, bounds, enum, default, aliases,
/// labels, description), the `monotone_in` fields and every label a decision can carry.
pub(super) fn context(state: &AppState) -> Result<Response<Body>, ApiError> {
    let rs = state.rules.snapshot();
    let fields: Vec<Value> = rs
        .context
        .fields()
        .iter()
        .map(|f| {
            let mut v = serde_json::to_value(&f.spec).unwrap_or_else(|_| json!({}));
            if let Value::Object(o) = &mut v {
                o.insert("name".into(), Value::String(f.name.to_string()));
            }
            v
        })
        .collect();
    let monotone: Vec<&str> = rs
        .monotone_in
        .iter()
        .map(|&i| &*rs.context.fields()[i].name)
        .collect();
    Ok(reply::json(
        StatusCode::OK,
        &json!({
            "revision": &*rs.revision,
            "fields": fields,
            "monotone_in": monotone,
            "choices": map::choices(&rs),
        }),
    ))
}

/// The query of a map request.
struct MapQuery {
    x: AxisSpec,
    y: AxisSpec,
    guard: Option<bool>,
    compare: Option<String>,
    /// The other fields, as given (text), converted per rule set.
    fields: Vec<(String, String)>,
}

fn parse_query(req: &Request<Incoming>) -> Result<MapQuery, ApiError> {
    let axis = |field: &str| AxisSpec {
        field: field.into(),
        points: DEFAULT_POINTS,
        ..AxisSpec::default()
    };
    let mut q = MapQuery {
        x: axis("trainset_size"),
        y: axis("budget_usd"),
        guard: None,
        compare: None,
        fields: Vec::new(),
    };
    for (k, v) in query(req.uri().query())? {
        let number = || -> Result<f64, ApiError> {
            v.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .ok_or_else(|| invalid(&k, format!("`{k}` must be a number, found `{v}`"), None))
        };
        let points = || -> Result<usize, ApiError> {
            v.parse::<usize>().map_err(|_| {
                invalid(
                    &k,
                    format!("`{k}` must be a whole number of points, found `{v}`"),
                    Some(format!("between 2 and {}", map::MAX_SIDE)),
                )
            })
        };
        let scale = || -> Result<Scale, ApiError> {
            Scale::parse(&v).ok_or_else(|| {
                invalid(
                    &k,
                    format!("`{k}` must be `log` or `linear`, found `{v}`"),
                    None,
                )
            })
        };
        match k.as_str() {
            "x" => q.x.field = v,
            "y" => q.y.field = v,
            "x_min" => q.x.min = Some(number()?),
            "x_max" => q.x.max = Some(number()?),
            "y_min" => q.y.min = Some(number()?),
            "y_max" => q.y.max = Some(number()?),
            "x_scale" => q.x.scale = Some(scale()?),
            "y_scale" => q.y.scale = Some(scale()?),
            "nx" => q.x.points = points()?,
            "ny" => q.y.points = points()?,
            "guard" => {
                q.guard = match v.as_str() {
                    "on" | "true" | "1" => Some(true),
                    "off" | "false" | "0" => Some(false),
                    _ => {
                        return Err(bad_parameter(
                            "guard",
                            format!("query parameter `guard` must be on or off, found `{v}`"),
                            None,
                        ))
                    }
                }
            }
            "compare" => q.compare = Some(v).filter(|s| !s.is_empty()),
            _ if v.is_empty() => {}
            _ => q.fields.push((k, v)),
        }
    }
    if q.x.field == q.y.field {
        return Err(invalid(
            "y",
            format!("both axes are `{}`", q.y.field),
            Some("choose two different fields".into()),
        ));
    }
    Ok(q)
}

/// The fixed fields of a map request checked against one rule set (the axis fields start at
/// their axis' lower end: every cell overrides them).
fn base_context(rs: &RuleSet, q: &MapQuery, x: &Axis, y: &Axis) -> Result<Context, ApiError> {
    let axis_fields = [rs.context.index_of(&x.field), rs.context.index_of(&y.field)];
    let mut input = serde_json::Map::new();
    for (k, v) in &q.fields {
        let index = rs.context.index_of(k);
        if index.is_some() && axis_fields.contains(&index) {
            continue;
        }
        let value = match index.map(|i| rs.context.fields()[i].spec.kind) {
            Some(FieldType::Integer) => v.parse::<i64>().map(Value::from).ok(),
            Some(FieldType::Number) => v
                .parse::<f64>()
                .ok()
                .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number)),
            Some(FieldType::Boolean) => v.parse::<bool>().map(Value::Bool).ok(),
            _ => None,
        };
        // Anything else goes as text: labels (`complexity_score=high`) are accepted, and the
        // context check words the rest.
        input.insert(k.clone(), value.unwrap_or_else(|| Value::String(v.clone())));
    }
    for (a, i) in [(x, axis_fields[0]), (y, axis_fields[1])] {
        let integer = i.is_some_and(|i| rs.context.fields()[i].spec.kind == FieldType::Integer);
        let start = if integer {
            json!(a.min as i64)
        } else {
            json!(a.min)
        };
        input.insert(a.field.clone(), start);
    }
    rs.context.check(&input).map_err(|errors| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid input").details(
            errors
                .iter()
                .map(|e| serde_json::to_value(e).unwrap_or_default())
                .collect(),
        )
    })
}

/// A map of another revision, set beside the served one.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Compared {
    /// The kept revision compared with.
    revision: String,
    #[serde(flatten)]
    map: Map,
    /// Cells whose optimizer differs from the served revision's.
    changed: usize,
}

/// The answer of `GET /api/v1/rules/map`.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct MapAnswer {
    /// The served revision the map is drawn for.
    revision: String,
    /// Whether the budget guard was on.
    guard: bool,
    /// The horizontal axis.
    x: Axis,
    /// The vertical axis.
    y: Axis,
    #[serde(flatten)]
    map: Map,
    /// The same map for a kept revision (`compare`), with the count of cells that differ.
    compare: Option<Compared>,
    /// Time taken to draw, in milliseconds.
    elapsed_ms: f64,
}

/// `GET /api/v1/rules/map`: see [`crate::check::map`]; drawn on the blocking pool.
pub(super) async fn map(
    state: &Arc<AppState>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let q = parse_query(req)?;
    let rs = state.rules.snapshot();
    let other = match &q.compare {
        None => None,
        Some(rev) => Some(state.rules.kept(rev).map_err(|e| {
            let (message, list) = match e {
                Rollback::Ambiguous(list) => {
                    (format!("`{rev}` matches more than one kept revision"), list)
                }
                Rollback::Unknown(list) => (format!("no kept revision `{rev}`"), list),
                _ => (format!("no kept revision `{rev}`"), Vec::new()),
            };
            invalid(
                "compare",
                message,
                Some(format!("kept revisions: {}", list.join(", "))),
            )
        })?),
    };
    let answer = tokio::task::spawn_blocking(move || draw(&rs, other.as_deref(), &q))
        .await
        .map_err(|e| {
            tracing::error!("map task failed: {e}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the map could not be drawn",
            )
        })??;
    Ok(reply::json(StatusCode::OK, &answer))
}

fn axis_error(e: map::AxisError) -> ApiError {
    invalid(&e.param, e.message, e.help)
}

fn draw(rs: &RuleSet, other: Option<&RuleSet>, q: &MapQuery) -> Result<MapAnswer, ApiError> {
    let start = std::time::Instant::now();
    let x = map::axis(rs, "x", &q.x).map_err(axis_error)?;
    let y = map::axis(rs, "y", &q.y).map_err(axis_error)?;
    let base = base_context(rs, q, &x, &y)?;
    let _budget = crate::rules::deadline::overall(MAP_BUDGET_MS);
    let drawn = map::draw(rs, &base, &x, &y, q.guard);
    let compare = match other {
        None => None,
        Some(o) => {
            let base = base_context(o, q, &x, &y).map_err(|e| {
                invalid(
                    "compare",
                    format!(
                        "the input does not fit revision {}: {}",
                        o.revision, e.error
                    ),
                    None,
                )
            })?;
            let m = map::draw(o, &base, &x, &y, q.guard);
            let label = |m: &Map, k: usize| {
                usize::try_from(m.cells[k])
                    .ok()
                    .and_then(|i| m.labels.get(i).cloned())
            };
            let changed = (0..m.cells.len())
                .filter(|&k| label(&m, k) != label(&drawn, k))
                .count();
            Some(Compared {
                revision: o.revision.to_string(),
                map: m,
                changed,
            })
        }
    };
    Ok(MapAnswer {
        revision: rs.revision.to_string(),
        guard: q.guard.unwrap_or(rs.guard.enabled),
        x,
        y,
        map: drawn,
        compare,
        elapsed_ms: (start.elapsed().as_secs_f64() * 1e4).round() / 10.0,
    })
}
