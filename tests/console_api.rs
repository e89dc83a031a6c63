//! The web console's server side against a real server on port 0: the embedded assets and
//! their headers, and the endpoints only the console needed (`rules/context`, `rules/map`,
//! `optimization/timeline`). The console itself is driven in a browser by `tests/browser/`.

use super::support::{rules_copy, test_config, TempDir, TestServer};
use serde_json::{json, Value};

const MAP: &str = "/api/v1/rules/map";

fn server(tag: &str) -> (TempDir, TestServer) {
    let t = rules_copy(tag);
    let srv = TestServer::start(test_config(&t.path().join("rules")), None);
    (t, srv)
}

#[test]
fn the_console_is_served_with_a_strict_policy_and_nothing_else_is() {
    let (_t, srv) = server("console-assets");
    let page = srv.get("/");
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").expect("a policy");
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert!(page.body.contains("/console/app.js"), "{}", page.body);
    for (path, kind) in [
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
        (
            "/console/vendor/echarts.min.js",
            "text/javascript; charset=utf-8",
        ),
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(kind), "{path}");
        assert!(r.header("content-security-policy").is_some(), "{path}");
        assert!(r.body.len() > 100, "{path}");
    }
    for path in [
        "/console/nope.js",
        "/console/../Cargo.toml",
        "/console/vendor/LICENSE-echarts",
        "/console/vendor/README.md",
        "/console/",
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, 404, "{path}: {r:?}");
        assert!(r.json()["error"].is_string(), "{path}");
    }
}

#[test]
fn the_page_is_open_but_its_data_needs_the_token() {
    let t = rules_copy("console-token");
    let mut config = test_config(&t.path().join("rules"));
    config.server.api_token = Some("s3cret".into());
    let srv = TestServer::start(config, None);
    assert_eq!(srv.get("/").status, 200);
    assert_eq!(srv.get("/console/app.js").status, 200);
    for path in [
        MAP,
        "/api/v1/rules/context",
        "/api/v1/optimization/timeline",
    ] {
        assert_eq!(srv.get(path).status, 401, "{path}");
    }
}

#[test]
fn the_context_model_lists_fields_bounds_and_choices() {
    let (_t, srv) = server("console-context");
    let r = srv.get("/api/v1/rules/context");
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    let fields = v["fields"].as_array().expect("fields");
    let field = |name: &str| {
        fields
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no field {name}: {v}"))
    };
    assert_eq!(field("trainset_size")["type"], "integer");
    assert_eq!(field("trainset_size")["required"], true);
    assert_eq!(field("quality_target")["max"], 1.0);
    assert_eq!(field("budget_usd")["aliases"], json!(["budget_dollars"]));
    assert_eq!(field("complexity_score")["labels"]["high"], 0.8);
    assert_eq!(v["monotone_in"], json!(["budget_usd", "trainset_size"]));
    let choices = v["choices"].as_array().expect("choices");
    assert!(choices.contains(&json!("miprov2 (light)")), "{choices:?}");
    assert_eq!(
        v["revision"],
        srv.get("/api/v1/rules/status").json()["revision"]
    );
}

/// The optimizer of a map label (`miprov2 (light)` → `miprov2`).
fn optimizer_of(label: &Value) -> &str {
    let l = label.as_str().expect("a label");
    l.split(" (").next().unwrap_or(l)
}

#[test]
fn map_cells_are_the_decisions_single_requests_get() {
    let (_t, srv) = server("console-map");
    for (query, fixed) in [
        ("nx=40&ny=30", json!({})),
        (
            "nx=25&ny=20&quality_target=0.95&complexity_score=high",
            json!({"quality_target": 0.95, "complexity_score": "high"}),
        ),
        (
            "x=quality_target&y=trainset_size&nx=12&ny=15&budget_usd=2",
            json!({"budget_usd": 2}),
        ),
    ] {
        let r = srv.get(&format!("{MAP}?{query}"));
        assert_eq!(r.status, 200, "{query}: {r:?}");
        let m = r.json();
        let (xs, ys) = (
            m["x"]["values"].as_array().unwrap(),
            m["y"]["values"].as_array().unwrap(),
        );
        let cells = m["cells"].as_array().unwrap();
        assert_eq!(cells.len(), xs.len() * ys.len(), "{query}");
        assert_eq!(m["complete"], true);
        let labels = m["labels"].as_array().unwrap();
        // Every 7th cell, through the public evaluate endpoint.
        for k in (0..cells.len()).step_by(7) {
            let (i, j) = (k % xs.len(), k / xs.len());
            let mut input = fixed.clone();
            input[m["x"]["field"].as_str().unwrap()] = xs[i].clone();
            input[m["y"]["field"].as_str().unwrap()] = ys[j].clone();
            let d = srv.post_json("/api/v1/rules/evaluate", &input.to_string());
            assert_eq!(d.status, 200, "{input}: {d:?}");
            let d = d.json();
            let got = &labels[cells[k].as_u64().expect("a label") as usize];
            assert_eq!(
                optimizer_of(got),
                d["recommended"],
                "{query}: cell {i},{j} {input}"
            );
            if let (Some(variant), Some(auto)) = (
                got.as_str().unwrap().split(" (").nth(1),
                d["config"]["auto"].as_str(),
            ) {
                assert_eq!(variant.trim_end_matches(')'), auto, "{query}: cell {i},{j}");
            }
        }
    }
}

#[test]
fn map_with_the_guard_off_shows_what_the_rules_choose_over_budget() {
    let (_t, srv) = server("console-map-guard");
    let on = srv.get(&format!("{MAP}?nx=30&ny=30")).json();
    let off = srv.get(&format!("{MAP}?nx=30&ny=30&guard=off")).json();
    assert_eq!(
        (on["guard"].clone(), off["guard"].clone()),
        (json!(true), json!(false))
    );
    let name = |m: &Value, k: usize| m["labels"][m["cells"][k].as_u64().unwrap() as usize].clone();
    let differ = (0..900).filter(|&k| name(&on, k) != name(&off, k)).count();
    assert!(differ > 0, "the guard changes nothing on the map");
    // The non-monotonic cells are those `rules check` reports, on this grid.
    assert!(!off["monotone"].as_array().unwrap().is_empty());
}

#[test]
fn map_refuses_bad_grids_naming_the_parameter() {
    let (_t, srv) = server("console-map-bad");
    for (query, field) in [
        ("nx=401", "nx"),
        ("ny=1", "ny"),
        ("nx=ten", "nx"),
        ("x=domain", "x"),
        ("x=nope", "x"),
        ("y=trainset_size", "y"),
        ("x_min=0", "x_min"),
        ("x_min=500&x_max=20", "x_max"),
        ("y_min=0&y_scale=log", "y_min"),
        ("x_scale=cubic", "x_scale"),
        ("x_max=1e999", "x_max"),
        ("compare=zzzz", "compare"),
        ("quality_target=2", "quality_target"),
        ("domain_name=x", "domain_name"),
    ] {
        let r = srv.get(&format!("{MAP}?{query}"));
        assert_eq!(r.status, 422, "{query}: {r:?}");
        let v = r.json();
        assert_eq!(v["details"][0]["field"], field, "{query}: {v}");
    }
    let r = srv.get(&format!("{MAP}?guard=maybe"));
    assert_eq!(r.status, 400, "{r:?}");
}

#[test]
fn map_compares_with_a_kept_revision() {
    let (t, srv) = server("console-map-compare");
    let first = srv.get("/api/v1/rules/status").json()["revision"]
        .as_str()
        .unwrap()
        .to_string();
    // The fixtures pin the old threshold: without them the change loads.
    std::fs::remove_dir_all(t.path().join("rules/tests")).unwrap();
    let file = t.path().join("rules/selection.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let changed = text.replacen("lt: 1.0", "lt: 5.0", 1);
    assert_ne!(
        text, changed,
        "the threshold to change is in selection.yaml"
    );
    std::fs::write(&file, changed).unwrap();
    let r = srv.post_json("/api/v1/rules/reload", "{}");
    assert_eq!(r.status, 200, "{r:?}");
    let r = srv.get(&format!("{MAP}?nx=40&ny=40&compare={}", &first[..8]));
    assert_eq!(r.status, 200, "{r:?}");
    let m = r.json();
    assert_ne!(m["revision"], json!(first));
    assert_eq!(m["compare"]["revision"], json!(first));
    let changed = m["compare"]["changed"].as_u64().unwrap();
    assert!(changed > 0 && changed < 1600, "{changed}");
    // Same revision, same map: nothing changed.
    let rev = m["revision"].as_str().unwrap().to_string();
    let same = srv.get(&format!("{MAP}?nx=40&ny=40&compare={rev}")).json();
    assert_eq!(same["compare"]["changed"], 0);
}

#[test]
fn timeline_counts_decisions_per_optimizer() {
    let t = rules_copy("console-timeline");
    let db = t.path().join("db.sqlite");
    let srv = TestServer::start(test_config(&t.path().join("rules")), Some(&db));
    for body in [
        r#"{"trainset_size": 200, "budget_usd": 3}"#,
        r#"{"trainset_size": 200, "budget_usd": 3}"#,
        r#"{"trainset_size": 5, "budget_usd": 0.5}"#,
    ] {
        assert_eq!(
            srv.post_json("/api/v1/optimization/recommend", body).status,
            200
        );
    }
    let r = srv.get("/api/v1/optimization/timeline?since=1d&buckets=4");
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    let buckets = v["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 4);
    assert_eq!(v["bucket_seconds"], 21_600.0);
    let mut total = std::collections::BTreeMap::<String, u64>::new();
    for b in buckets {
        for (k, n) in b["by_optimizer"].as_object().unwrap() {
            *total.entry(k.clone()).or_default() += n.as_u64().unwrap();
        }
    }
    assert_eq!(total.get("miprov2"), Some(&2), "{v}");
    assert_eq!(total.values().sum::<u64>(), 3, "{v}");
    // The last interval holds them (made just now).
    assert_eq!(
        buckets[3]["by_optimizer"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>(),
        3
    );
    for (query, field) in [
        ("buckets=0", "buckets"),
        ("buckets=501", "buckets"),
        ("since=all", "since"),
        ("since=soon", "since"),
    ] {
        let r = srv.get(&format!("/api/v1/optimization/timeline?{query}"));
        assert_eq!(r.status, 422, "{query}: {r:?}");
        assert_eq!(r.json()["details"][0]["field"], field, "{query}");
    }
    assert_eq!(
        srv.get("/api/v1/optimization/timeline?bucket=3").status,
        400
    );
}
