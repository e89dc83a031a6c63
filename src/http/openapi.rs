//! The OpenAPI 3.1 document of the HTTP API, generated from the request and response types
//! (schemars, JSON Schema 2020-12 under `components/schemas`). Served at `GET /openapi.json`
//! and committed as `schemas/openapi.json`, where `rules schema --check` keeps it in step with
//! the code. Each operation is keyed by its [`Route`], whose label is the path template, and a
//! test checks that the router sends every documented path and method to that route.

use super::jobs::{
    ClaimBody, Claimed, CompleteBody, FailBody, HeartbeatBody, HitlBody, HitlView, ResponseBody,
};
use super::optimization::OutcomeBody;
use super::reply::ErrorBody;
use super::route::Route;
use super::rules::RollbackBody;
use super::training::{ResultsBody, SelectBody};
use crate::decision::Decision;
use crate::store::job::{Job, NewJob};
use crate::store::Page;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

/// One operation: a method on a route.
struct Operation {
    route: Route,
    method: &'static str,
    summary: &'static str,
    query: &'static [(&'static str, &'static str)],
    request: Option<Value>,
    responses: Vec<(u16, &'static str, Option<Value>)>,
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    serde_json::to_value(g.subschema_for::<T>()).unwrap_or(Value::Bool(true))
}

fn object(description: &str) -> Value {
    json!({"type": "object", "description": description})
}

fn op(route: Route, method: &'static str, summary: &'static str) -> Operation {
    Operation {
        route,
        method,
        summary,
        query: &[],
        request: None,
        responses: Vec::new(),
    }
}

impl Operation {
    fn body(mut self, schema: Value) -> Self {
        self.request = Some(schema);
        self
    }

    fn answers(mut self, status: u16, description: &'static str, schema: Option<Value>) -> Self {
        self.responses.push((status, description, schema));
        self
    }

    fn query(mut self, query: &'static [(&'static str, &'static str)]) -> Self {
        self.query = query;
        self
    }
}

const CONTEXT: &str = "the fields of the served rule set's context model (`rules/context.yaml`; \
    the shipped rules: trainset_size, budget_usd, quality_target, complexity_score, domain, \
    time_constraint_minutes, model, style); aliases accepted, unknown fields refused with 422";

const MAP_QUERY: &[(&str, &str)] = &[
    ("x", "field on the horizontal axis (default trainset_size)"),
    ("y", "field on the vertical axis (default budget_usd)"),
    ("x_min", "start of x (default: the field's min)"),
    (
        "x_max",
        "end of x (default: the field's max, else 10000 or 1000)",
    ),
    ("y_min", "start of y"),
    ("y_max", "end of y"),
    (
        "x_scale",
        "`log` or `linear` (default: linear for a field bounded on both sides)",
    ),
    ("y_scale", "`log` or `linear`"),
    ("nx", "points on x, 2 to 400 (default 100)"),
    ("ny", "points on y, 2 to 400 (default 100)"),
    (
        "guard",
        "`on` or `off`: the budget guard (default: as the rules say)",
    ),
    (
        "compare",
        "a kept revision (or prefix) to draw beside the served one",
    ),
];

fn operations(g: &mut SchemaGenerator) -> Vec<Operation> {
    let job = schema::<Job>(g);
    let decision = schema::<Decision>(g);
    vec![
        op(Route::Health, "get", "liveness").answers(200, "alive", Some(object("`{\"status\": \"ok\"}`"))),
        op(Route::Ready, "get", "readiness: rules loaded and database usable")
            .answers(200, "ready", Some(object("what is ready")))
            .answers(503, "not ready", None),
        op(Route::Metrics, "get", "Prometheus metrics (text exposition format)")
            .answers(200, "metrics", None),
        op(Route::OpenApi, "get", "this document").answers(200, "the OpenAPI document", Some(object("OpenAPI 3.1"))),
        op(Route::Recommend, "post", "recommend an optimizer; the decision is logged")
            .query(&[("explain", "`true` adds the trace")])
            .body(object(CONTEXT))
            .answers(200, "the decision, with `decision_id` when the decision log is on", Some(decision.clone())),
        op(Route::RulesEvaluate, "post", "dry run of a recommendation (never logged)")
            .query(&[("explain", "`true` adds the trace")])
            .body(object(CONTEXT))
            .answers(200, "the decision", Some(decision)),
        op(Route::RulesStatus, "get", "served revision, state, files, last error, kept revisions")
            .answers(200, "the status", Some(object("revision, state, loaded_at, files, error, kept_revisions"))),
        op(Route::RulesReload, "post", "rebuild the rule set from disk now")
            .answers(200, "`reloaded` or `unchanged`", Some(object("outcome and revision")))
            .answers(422, "the rule set on disk is invalid; the old one keeps serving", None),
        op(Route::RulesRollback, "post", "serve a kept revision again")
            .body(schema::<RollbackBody>(g))
            .answers(200, "`rolled_back` or `unchanged`", Some(object("outcome and revision"))),
        op(Route::Outcomes, "post", "record the outcome of a run that is not a job")
            .body(schema::<OutcomeBody>(g))
            .answers(201, "the recorded outcome", Some(object("the outcome with the decision's facts"))),
        op(Route::SelectorMetrics, "get", "selector metrics over a window")
            .query(&[("since", "`30d`, `12h`, `2w`, … or `all`")])
            .answers(200, "the metrics", Some(object("decisions, outcomes, acceptance, target hit rate, accuracy per optimizer"))),
        op(Route::Jobs, "post", "create a job (idempotent with `idempotency_key`)")
            .body(schema::<NewJob>(g))
            .answers(201, "created", Some(job.clone()))
            .answers(200, "the existing job for a known idempotency key", Some(job.clone())),
        op(Route::Jobs, "get", "list jobs, newest first")
            .query(&[
                ("status", "only this status"),
                ("type", "only this job type"),
                ("user_id", "only this user"),
                ("limit", "page size (at most 500)"),
                ("cursor", "`next_cursor` of the previous page"),
            ])
            .answers(200, "a page", Some(schema::<Page>(g))),
        op(Route::JobsClaim, "post", "claim the oldest claimable job with a lease")
            .body(schema::<ClaimBody>(g))
            .answers(200, "claimed", Some(schema::<Claimed<'static>>(g)))
            .answers(204, "nothing to claim", None),
        op(Route::Job, "get", "one job").answers(200, "the job", Some(job.clone())),
        op(Route::JobHeartbeat, "post", "extend the lease and report progress")
            .body(schema::<HeartbeatBody>(g))
            .answers(200, "the job", Some(job.clone())),
        op(Route::JobComplete, "post", "complete with a result")
            .body(schema::<CompleteBody>(g))
            .answers(200, "the job", Some(job.clone())),
        op(Route::JobFail, "post", "fail, or retry later")
            .body(schema::<FailBody>(g))
            .answers(200, "the job", Some(job.clone())),
        op(Route::JobHitl, "post", "park the job in `pending_hitl` with a question")
            .body(schema::<HitlBody>(g))
            .answers(200, "the job", Some(job.clone())),
        op(Route::JobHitl, "get", "the question and the answer, once given")
            .answers(200, "the question", Some(schema::<HitlView<'static>>(g))),
        op(Route::JobHitlResponse, "post", "a human answers; the job goes back to `pending`")
            .body(schema::<ResponseBody>(g))
            .answers(200, "the job", Some(job.clone())),
        op(Route::JobCancel, "post", "cancel a job that is not finished")
            .answers(200, "the job", Some(job)),
        op(Route::TrainingAnalytics, "get", "training data analytics")
            .answers(200, "analytics", Some(object("total_examples, quality_distribution, top_performers, underrepresented, recommendations"))),
        op(Route::TrainingSelect, "post", "select a trainset, best first")
            .body(schema::<SelectBody>(g))
            .answers(200, "the selection", Some(object("selected examples with their scores"))),
        op(Route::TrainingResults, "post", "apply per-example results of a run")
            .body(schema::<ResultsBody>(g))
            .answers(200, "updated and unknown ids", Some(object("what was updated"))),
        op(Route::RulesContext, "get", "the served context model: fields, `monotone_in`, every optimizer label")
            .answers(200, "the context model", Some(object("revision, fields (name, type, required, default, min, max, aliases, labels, enum, description), monotone_in, choices"))),
        op(Route::RulesMap, "get", "the decision map: the optimizer chosen on a grid of two inputs; any other context field given as a query parameter (`domain=math`) is fixed for every cell")
            .query(MAP_QUERY)
            .answers(200, "the map", Some(schema::<super::map::MapAnswer>(g))),
        op(Route::Timeline, "get", "decisions per optimizer in equal intervals up to now")
            .query(&[("since", "an age: `7d` (default), `12h`"), ("buckets", "intervals, 1 to 500 (default 24)")])
            .answers(200, "the intervals", Some(object("since, bucket_seconds, buckets (start, by_optimizer)"))),
        op(Route::Console, "get", "the web console (HTML)")
            .answers(200, "the console's page", None),
        op(Route::ConsoleAsset, "get", "a file of the web console (scripts, styles)")
            .answers(200, "the file", None),
    ]
}

/// The document as a JSON value.
pub fn document() -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let error = schema::<ErrorBody<'static>>(&mut g);
    let mut paths = Map::new();
    for o in operations(&mut g) {
        let mut responses = Map::new();
        for (status, description, schema) in o.responses {
            let mut r = json!({"description": description});
            if let Some(s) = schema {
                r["content"] = json!({"application/json": {"schema": s}});
            }
            responses.insert(status.to_string(), r);
        }
        responses.insert(
            "default".into(),
            json!({"description": "an error: 4xx names the bad field in `details`",
                   "content": {"application/json": {"schema": error}}}),
        );
        let mut operation = json!({
            "operationId": format!("{}_{}", o.method, o.route.label()
                .trim_start_matches('/')
                .replace(['/', '.'], "_")
                .replace(['{', '}'], "")),
            "summary": o.summary,
            "responses": responses,
        });
        let mut parameters: Vec<Value> = o
            .query
            .iter()
            .map(|(name, description)| {
                json!({"name": name, "in": "query", "required": false,
                       "description": description, "schema": {"type": "string"}})
            })
            .collect();
        if o.route.label().contains("{id}") {
            parameters.insert(
                0,
                json!({"name": "id", "in": "path", "required": true,
                       "description": "the job's id", "schema": {"type": "string"}}),
            );
        }
        if o.route.label().contains("{path}") {
            parameters.insert(
                0,
                json!({"name": "path", "in": "path", "required": true,
                       "description": "the file, e.g. `app.js`", "schema": {"type": "string"}}),
            );
        }
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if let Some(body) = o.request {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": body}},
            });
        }
        // With a token configured, every `/api/…` route needs it.
        if o.route.label().starts_with("/api/") {
            operation["security"] = json!([{"bearer": []}]);
        }
        let path = paths
            .entry(o.route.label())
            .or_insert_with(|| Value::Object(Map::new()));
        path[o.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "skill-fleet",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Rules-driven DSPy optimizer selection, cost model and job store. \
                With an API token configured, every `/api/…` operation (marked `bearer`) needs \
                `Authorization: Bearer <token>`; `/health`, `/ready`, `/metrics` and this \
                document stay open.",
        },
        "paths": paths,
        "components": {
            "schemas": g.take_definitions(true),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    })
}

/// The document as committed: pretty JSON with a trailing newline.
pub fn text() -> String {
    let mut s = serde_json::to_string_pretty(&document()).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Method;

    /// Where the server's router sends `path` (`{id}` filled in), with its methods.
    fn routed(path: &str) -> Option<(Route, Vec<Method>)> {
        let path = path
            .replace("{id}", "0b7a1c2e-1111-4222-8333-944455556666")
            .replace("{path}", "app.js");
        super::super::routes::resolve(&path).map(|(r, m, _)| (r, m.to_vec()))
    }

    #[test]
    fn every_route_is_documented_and_every_documented_call_is_routed_there() {
        let doc = document();
        let paths = doc["paths"].as_object().expect("paths");
        for route in Route::ALL {
            if route == Route::Unmatched {
                continue;
            }
            let Some(item) = paths.get(route.label()) else {
                panic!("`{}` is not in the document", route.label());
            };
            let (to, methods) = routed(route.label()).expect("routed");
            assert_eq!(to, route, "{}", route.label());
            let documented: Vec<&String> = item.as_object().expect("path item").keys().collect();
            assert_eq!(
                documented.len(),
                methods.len(),
                "{}: documented {documented:?}, served {methods:?}",
                route.label()
            );
            for m in &methods {
                assert!(
                    item.get(m.as_str().to_ascii_lowercase()).is_some(),
                    "{} {} is served but not documented",
                    m,
                    route.label()
                );
            }
        }
        assert_eq!(paths.len(), Route::ALL.len() - 1);
    }

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_and_bodies_are_typed() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 20, "{all:?}");
        for r in all {
            let pointer = r.strip_prefix('#').expect("local reference");
            assert!(doc.pointer(pointer).is_some(), "`{r}` does not resolve");
        }
        let claim = &doc["components"]["schemas"]["ClaimBody"];
        assert_eq!(claim["required"], json!(["worker"]));
        assert_eq!(claim["additionalProperties"], json!(false));
        let heartbeat = &doc["paths"]["/api/v1/jobs/{id}/heartbeat"]["post"];
        assert_eq!(heartbeat["security"], json!([{"bearer": []}]));
        assert_eq!(heartbeat["parameters"][0]["name"], "id");
    }

    #[test]
    fn the_committed_document_is_this_one() {
        // `rules schema --check` checks it too, from the CLI; this names the file.
        let committed = include_str!("../../schemas/openapi.json");
        assert!(
            committed == text(),
            "schemas/openapi.json is stale: run `skill-fleet rules schema` and commit it"
        );
    }
}
