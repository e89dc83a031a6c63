//! Tests of the training module: records, scores, selection (against the greedy oracle),
//! analytics and the update.

use super::*;

fn spec() -> TrainingSpec {
    let text = include_str!("../../../rules/training.yaml");
    let v: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
    serde_yaml::from_value(v["training"].clone()).unwrap()
}

fn ex(id: &str, cat: &str, style: Style, q: f64, s: Option<f64>) -> Example {
    Example {
        example_id: id.into(),
        task_description: format!("task {id}"),
        category: cat.into(),
        style,
        created_at: "2025-01-01T00:00:00Z".into(),
        quality_score: q,
        structure_completeness: q,
        pattern_clarity: q,
        practical_value: q,
        human_rating: None,
        success_rate: s,
        usage_count: 0,
        last_used: None,
        tags: vec![],
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn shipped() -> Vec<Example> {
    parse_records(SHIPPED_EXAMPLES).unwrap()
}

#[test]
fn fast_selection_equals_the_plain_greedy_one() {
    let mut sp = spec();
    sp.category_weights.insert("web".into(), 1.2);
    sp.category_weights.insert("docs".into(), 0.7);
    let data = synthetic(600, 42);
    let requests = [
        SelectRequest::default(),
        SelectRequest {
            diversity: true,
            ..SelectRequest::default()
        },
        SelectRequest {
            style: Some(Style::Beginner),
            diversity: true,
            max: Some(30),
            ..SelectRequest::default()
        },
        SelectRequest {
            min_score: Some(0.3),
            max: Some(200),
            ..SelectRequest::default()
        },
        SelectRequest {
            categories: vec!["web".into(), "dspy".into()],
            diversity: true,
            min_score: Some(0.2),
            ..SelectRequest::default()
        },
        SelectRequest {
            style: Some(Style::Minimal),
            max: Some(1000),
            min_score: Some(0.0),
            ..SelectRequest::default()
        },
    ];
    for req in &requests {
        let req = &SelectRequest {
            explain: true,
            ..req.clone()
        };
        let fast = select(&sp, &data, req);
        let slow = select_greedy(&sp, &data, req);
        let quiet = select(
            &sp,
            &data,
            &SelectRequest {
                explain: false,
                ..req.clone()
            },
        );
        assert!(quiet.excluded.is_empty());
        assert_eq!(quiet.selected.len(), fast.selected.len());
        let ids = |s: &Selection| {
            s.selected
                .iter()
                .map(|x| (x.example_id.clone(), x.score))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&fast), ids(&slow), "{req:?}");
        let ex = |s: &Selection| {
            s.excluded
                .iter()
                .map(|x| (x.example_id.clone(), x.score, x.reason.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(ex(&fast), ex(&slow), "{req:?}");
    }
}

#[test]
fn default_score_is_weighted_quality_and_success_times_category_weight() {
    let mut sp = spec();
    let e = ex("a", "python", Style::Technical, 0.9, Some(0.6));
    assert!(close(score(&sp, &e), 0.6 * 0.9 + 0.4 * 0.6));
    sp.category_weights.insert("python".into(), 0.5);
    assert!(close(score(&sp, &e), (0.6 * 0.9 + 0.4 * 0.6) * 0.5));
}

#[test]
fn changed_weights_change_the_score() {
    let mut sp = spec();
    sp.weights.quality = 1.0;
    sp.weights.success_rate = 0.0;
    let e = ex("a", "python", Style::Technical, 0.9, Some(0.1));
    assert!(close(score(&sp, &e), 0.9));
    sp.quality_parts.insert("pattern_clarity".into(), 1.0);
    let mut e2 = e.clone();
    e2.pattern_clarity = 0.3;
    assert!(close(score(&sp, &e2), 0.3));
}

#[test]
fn style_relevance_applies_only_when_asked() {
    let mut sp = spec();
    sp.weights.relevance = 0.5;
    let a = ex("a", "web", Style::Beginner, 0.8, Some(0.8));
    let (plain, _) = score_parts(&sp, &a, None, None);
    assert!(close(plain, 0.8));
    let (m, p) = score_parts(&sp, &a, Some(Style::Beginner), None);
    assert!(close(m, (0.8 + 0.5) / 1.5));
    assert_eq!(p.relevance, Some(1.0));
    let (n, _) = score_parts(&sp, &a, Some(Style::Technical), None);
    assert!(close(n, 0.8 / 1.5));
}

#[test]
fn an_example_without_history_is_neutral_and_never_punished_for_use() {
    let sp = spec();
    let fresh = ex("a", "cli", Style::Minimal, 0.9, None);
    let mut used = fresh.clone();
    used.example_id = "b".into();
    used.usage_count = 40;
    used.last_used = Some("2025-06-01T00:00:00Z".into());
    assert!(close(score(&sp, &fresh), 0.6 * 0.9 + 0.4 * 0.5));
    assert!(close(score(&sp, &fresh), score(&sp, &used)));
    let sel = select(&sp, &[fresh, used], &SelectRequest::default());
    assert_eq!(sel.selected.len(), 2);
    assert!(sel.excluded.is_empty());
}

#[test]
fn select_filters_orders_limits_and_explains() {
    let sp = spec();
    let all = vec![
        ex("low", "web", Style::Technical, 0.3, Some(0.2)),
        ex("mid", "web", Style::Technical, 0.8, Some(0.8)),
        ex("top", "api", Style::Beginner, 1.0, Some(1.0)),
        ex("other", "dspy", Style::Beginner, 0.95, Some(0.9)),
    ];
    let sel = select(
        &sp,
        &all,
        &SelectRequest {
            categories: vec!["web".into(), "api".into()],
            max: Some(1),
            explain: true,
            ..Default::default()
        },
    );
    let ids: Vec<&str> = sel.selected.iter().map(|s| s.example_id.as_str()).collect();
    assert_eq!(ids, ["top"]);
    let reasons: BTreeMap<&str, &str> = sel
        .excluded
        .iter()
        .map(|e| (e.example_id.as_str(), &*e.reason))
        .collect();
    assert!(reasons["other"].contains("category `dspy`"));
    assert!(reasons["mid"].contains("beyond the maximum of 1"));
    assert!(reasons["low"].contains("below the minimum 0.7"));
    let before = all.clone();
    let _ = select(&sp, &all, &SelectRequest::default());
    assert_eq!(all, before);
}

#[test]
fn diversity_spreads_categories() {
    let mut sp = spec();
    sp.weights.diversity = 0.5;
    let all = vec![
        ex("a1", "web", Style::Technical, 0.95, Some(0.95)),
        ex("a2", "web", Style::Technical, 0.94, Some(0.94)),
        ex("b1", "cli", Style::Technical, 0.85, Some(0.85)),
    ];
    let req = SelectRequest {
        diversity: true,
        max: Some(2),
        min_score: Some(0.0),
        ..Default::default()
    };
    let sel = select(&sp, &all, &req);
    let ids: Vec<&str> = sel.selected.iter().map(|s| s.example_id.as_str()).collect();
    assert_eq!(ids, ["a1", "b1"]);
    let plain = select(
        &sp,
        &all,
        &SelectRequest {
            diversity: false,
            ..req
        },
    );
    let ids: Vec<&str> = plain
        .selected
        .iter()
        .map(|s| s.example_id.as_str())
        .collect();
    assert_eq!(ids, ["a1", "a2"]);
}

#[test]
fn update_follows_the_moving_averages() {
    let sp = spec();
    let mut e = ex("a", "python", Style::Technical, 0.5, Some(0.5));
    let pass = RunResult {
        example_id: "a".into(),
        score: 1.0,
        passed: true,
    };
    let out = apply_results(&sp, &[e.clone()], &[pass], "2025-02-01T00:00:00Z");
    assert!(out.unknown.is_empty());
    e = out.updated[0].clone();
    assert!(close(e.quality_score, 0.6));
    assert!(close(e.success_rate.unwrap_or(0.0), 0.55));
    assert_eq!(e.usage_count, 1);
    assert_eq!(e.last_used.as_deref(), Some("2025-02-01T00:00:00Z"));
    let fail = RunResult {
        example_id: "a".into(),
        score: 0.0,
        passed: false,
    };
    let ghost = RunResult {
        example_id: "ghost".into(),
        score: 0.5,
        passed: true,
    };
    let out = apply_results(&sp, &[e], &[fail, ghost], "2025-02-02T00:00:00Z");
    let e = &out.updated[0];
    assert!(close(e.quality_score, 0.48));
    assert!(close(e.success_rate.unwrap_or(0.0), 0.495));
    assert_eq!(e.usage_count, 2);
    assert_eq!(out.unknown, ["ghost"]);
}

#[test]
fn update_without_history_starts_from_neutral() {
    let sp = spec();
    let e = ex("a", "python", Style::Technical, 0.5, None);
    let r = RunResult {
        example_id: "a".into(),
        score: 1.0,
        passed: true,
    };
    let out = apply_results(&sp, &[e], &[r], "2025-02-01T00:00:00Z");
    assert!(close(out.updated[0].success_rate.unwrap_or(0.0), 0.55));
}

#[test]
fn shipped_examples_parse_and_cover_eight_categories() {
    let all = shipped();
    assert_eq!(all.len(), 50);
    let cats = count_by(&all, |e| e.category.clone());
    assert!(cats.len() >= 8, "{cats:?}");
}

#[test]
fn gaps_on_the_shipped_data() {
    let sp = spec();
    let g = gaps(&sp, &shipped());
    let cats: Vec<(&str, u64)> = g
        .iter()
        .filter(|g| g.kind == "category")
        .map(|g| (g.name.as_str(), g.count))
        .collect();
    assert_eq!(cats, [("database", 2), ("dspy", 1)]);
    let styles: Vec<(&str, u64)> = g
        .iter()
        .filter(|g| g.kind == "style")
        .map(|g| (g.name.as_str(), g.count))
        .collect();
    assert_eq!(styles, [("navigation_hub", 1)]);
    let mut sp2 = sp.clone();
    sp2.gaps.expected_categories.push("security".into());
    let g = gaps(&sp2, &shipped());
    assert!(g
        .iter()
        .any(|g| g.name == "security" && g.missing && g.count == 0));
}

#[test]
fn analytics_on_the_shipped_data() {
    let sp = spec();
    let a = analytics(&sp, &shipped());
    assert_eq!(a.total_examples, 50);
    let d = &a.quality_distribution;
    assert_eq!(d.high + d.medium + d.low, 50);
    assert_eq!((d.high, d.medium, d.low), (25, 20, 5));
    assert_eq!(a.top_performers.len(), 5);
    assert!(a
        .top_performers
        .windows(2)
        .all(|w| w[0].score >= w[1].score));
    assert_eq!(a.underrepresented, ["database", "dspy"]);
    assert_eq!(a.category_breakdown.values().sum::<u64>(), 50);
    assert_eq!(a.style_breakdown.values().sum::<u64>(), 50);
    assert_eq!(a.recommendations.len(), 2, "{:?}", a.recommendations);
    assert!(a.recommendations[0].contains("`database`"));
}

#[test]
fn analytics_recommends_pruning_and_categories() {
    let sp = spec();
    let all = vec![
        ex("a", "web", Style::Technical, 0.2, None),
        ex("b", "web", Style::Technical, 0.9, None),
    ];
    let a = analytics(&sp, &all);
    assert!(a.recommendations.iter().any(|r| r.starts_with("prune")));
    assert!(a
        .recommendations
        .iter()
        .any(|r| r.starts_with("add categories")));
}

#[test]
fn bad_records_name_their_index_and_field() {
    let good = serde_json::to_value(ex("a", "web", Style::Minimal, 0.5, None)).unwrap();
    let mut bad = good.clone();
    bad["quality_score"] = Value::from("high");
    let text = serde_json::to_string(&vec![good.clone(), bad]).unwrap();
    let e = parse_records(&text).unwrap_err();
    assert_eq!((e.index, e.field.as_deref()), (1, Some("quality_score")));
    let mut bad = good.clone();
    bad["style"] = Value::from("fancy");
    let e = parse_record(3, &bad).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("style"));
    assert!(e.to_string().starts_with("record 3, field `style`"), "{e}");
    assert!(
        e.message
            .starts_with("`fancy` is not one of technical, beginner, comprehensive"),
        "{e}"
    );
    let mut bad = good.clone();
    bad.as_object_mut().unwrap().remove("category");
    assert_eq!(
        parse_record(0, &bad).unwrap_err().field.as_deref(),
        Some("category")
    );
    let mut bad = good.clone();
    bad["success_rate"] = Value::from(1.5);
    assert_eq!(
        parse_record(0, &bad).unwrap_err().field.as_deref(),
        Some("success_rate")
    );
    let mut bad = good.clone();
    bad["quality"] = Value::from(1.0);
    assert_eq!(
        parse_record(0, &bad).unwrap_err().field.as_deref(),
        Some("quality")
    );
    let text = serde_json::to_string(&vec![good.clone(), good]).unwrap();
    assert_eq!(parse_records(&text).unwrap_err().index, 1);
}
