//! Property tests of the shipped rules: for any input inside the context bounds, evaluation
//! returns a decision with sane numbers; with the guard on, the estimate fits the budget
//! whenever any optimizer does; with the guard off, the decision equals the hand-written port
//! of the original selector (`engine::reference`).

use proptest::prelude::*;
use proptest::sample::select;
use skill_fleet::engine::estimate::estimate;
use skill_fleet::engine::{recommend, reference, Options};
use skill_fleet::rules::spec::{HistoryRecord, Scalar};
use skill_fleet::rules::RuleSet;
use std::sync::OnceLock;

fn shipped() -> &'static RuleSet {
    static RS: OnceLock<RuleSet> = OnceLock::new();
    RS.get_or_init(|| {
        let files = skill_fleet::loader::read_dir(&super::support::shipped_rules())
            .expect("read shipped rules");
        skill_fleet::rules::build(&files).expect("shipped rules are valid")
    })
}

#[derive(Debug, Clone)]
struct Input {
    trainset_size: i64,
    budget_usd: f64,
    quality_target: f64,
    complexity_score: f64,
    time_limit: Option<f64>,
    domain: &'static str,
    history: Vec<HistoryRecord>,
}

impl Input {
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("trainset_size".into(), self.trainset_size.into());
        m.insert("budget_usd".into(), self.budget_usd.into());
        m.insert("quality_target".into(), self.quality_target.into());
        m.insert("complexity_score".into(), self.complexity_score.into());
        m.insert("domain".into(), self.domain.into());
        if let Some(l) = self.time_limit {
            m.insert("time_constraint_minutes".into(), l.into());
        }
        m
    }
}

const OPTIMIZERS: [&str; 5] = [
    "reflection_metrics",
    "gepa",
    "miprov2",
    "bootstrap_fewshot",
    "bootstrap_finetune",
];

fn history() -> impl Strategy<Value = Vec<HistoryRecord>> {
    prop::collection::vec(
        (
            select(vec!["general", "web"]),
            select(OPTIMIZERS.to_vec()),
            0.0..=1.0f64,
        )
            .prop_map(|(d, o, q)| HistoryRecord {
                timestamp: None,
                trainset_size: None,
                budget: None,
                quality_target: None,
                domain: d.to_string(),
                optimizer: o.to_string(),
                actual_cost: None,
                actual_time: None,
                quality: q,
            }),
        0..6,
    )
}

fn input() -> impl Strategy<Value = Input> {
    // Thresholds of the rules on both sides, mixed with the whole range.
    let t = prop_oneof![
        select(vec![
            1i64, 10, 19, 20, 50, 99, 100, 101, 499, 500, 501, 1000, 10_000
        ]),
        1i64..200_000,
    ];
    let b = prop_oneof![
        select(vec![
            0.0, 0.5, 0.99, 1.0, 4.99, 5.0, 19.99, 20.0, 99.99, 100.0, 500.0
        ]),
        0.0..20_000.0f64,
    ];
    let q = prop_oneof![select(vec![0.0, 0.85, 0.94, 0.95, 1.0]), 0.0..=1.0f64];
    let l = prop_oneof![
        Just(None),
        select(vec![Some(0.0), Some(1.0), Some(1.99), Some(2.0)]),
        (0.0..600.0f64).prop_map(Some),
    ];
    (
        t,
        b,
        q,
        0.0..=1.0f64,
        l,
        select(vec!["general", "web"]),
        history(),
    )
        .prop_map(|(t, b, q, c, l, d, h)| Input {
            trainset_size: t,
            budget_usd: b,
            quality_target: q,
            complexity_score: c,
            time_limit: l,
            domain: d,
            history: h,
        })
}

fn config_of(r: &reference::Config) -> Vec<(String, Scalar)> {
    vec![
        ("auto".into(), Scalar::Str(r.auto.into())),
        (
            "max_bootstrapped_demos".into(),
            Scalar::Int(r.max_bootstrapped_demos),
        ),
        ("max_labeled_demos".into(), Scalar::Int(r.max_labeled_demos)),
        ("num_candidates".into(), Scalar::Int(r.num_candidates)),
        ("num_iters".into(), Scalar::Int(r.num_iters)),
        ("num_threads".into(), Scalar::Int(r.num_threads)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_input_in_bounds_gets_a_sane_decision(i in input()) {
        let rs = shipped();
        let ctx = rs.check_input(&i.json()).expect("input inside the bounds is accepted");
        let d = recommend(rs, &ctx, &i.history, Options::default()).expect("evaluation succeeds");
        prop_assert!(d.estimated_cost >= 0.0);
        prop_assert!(d.estimated_time_minutes >= 1);
        prop_assert!((0.0..=1.0).contains(&d.confidence));
        prop_assert_eq!(d.config.len(), 6, "all six config keys appear");
        for a in &d.alternatives {
            prop_assert!(a.estimated_cost >= 0.0 && a.estimated_time_minutes >= 1);
        }
        // With the guard on, the estimate fits whenever any downgrade step fits.
        let model = rs.model_for(&ctx);
        let any_fits = rs.guard.steps.iter().any(|s| {
            estimate(rs, s, &ctx, model).map(|e| e.cost <= i.budget_usd).unwrap_or(false)
        });
        if any_fits {
            prop_assert!(
                d.estimated_cost <= i.budget_usd,
                "cost {} over budget {} though an optimizer fits ({})",
                d.estimated_cost, i.budget_usd, d.reasoning
            );
        }
    }

    #[test]
    fn guard_off_equals_the_original_selector(i in input()) {
        let rs = shipped();
        let ctx = rs.check_input(&i.json()).expect("accepted");
        let opts = Options { explain: false, guard: Some(false) };
        let d = recommend(rs, &ctx, &i.history, opts).expect("evaluation succeeds");
        let r = reference::recommend(
            &reference::Input {
                trainset_size: i.trainset_size,
                budget_usd: i.budget_usd,
                quality_target: i.quality_target,
                time_constraint_minutes: i.time_limit,
                domain: i.domain,
            },
            &i.history,
        );
        prop_assert_eq!(&*d.recommended, r.optimizer);
        let got: Vec<(String, Scalar)> = d.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        prop_assert_eq!(got, config_of(&r.config));
        prop_assert_eq!(d.estimated_cost, r.estimated_cost);
        prop_assert_eq!(d.estimated_time_minutes, r.estimated_time_minutes);
        prop_assert_eq!(d.confidence, r.confidence);
        prop_assert_eq!(d.alternatives.len(), r.alternatives.len());
        for (a, b) in d.alternatives.iter().zip(&r.alternatives) {
            prop_assert_eq!(&*a.optimizer, b.optimizer);
            prop_assert_eq!(a.estimated_cost, b.estimated_cost);
            prop_assert_eq!(a.estimated_time_minutes, b.estimated_time_minutes);
            prop_assert_eq!(a.quality_risk, b.quality_risk);
        }
    }

    #[test]
    fn one_pass_json_check_equals_the_map_check(i in input()) {
        let rs = shipped();
        let map = i.json();
        let bytes = serde_json::to_vec(&map).expect("json");
        let via_map = rs.check_input(&map).expect("accepted");
        let via_json = rs.check_input_json(&bytes).expect("accepted");
        prop_assert_eq!(via_map, via_json);
    }

    #[test]
    fn direct_json_equals_serde(i in input(), explain in any::<bool>()) {
        let rs = shipped();
        let ctx = rs.check_input(&i.json()).expect("accepted");
        let outcome = skill_fleet::engine::evaluate(rs, &ctx, &i.history, Options { explain, guard: None }).expect("ok");
        let mut direct = Vec::new();
        outcome.write_json(&mut direct);
        let serde = serde_json::to_vec(&outcome.into_decision()).expect("serialize");
        prop_assert_eq!(String::from_utf8_lossy(&direct), String::from_utf8_lossy(&serde));
    }

    #[test]
    fn logged_json_equals_the_decision_log_form(i in input(), id in proptest::option::of(1i64..1_000_000)) {
        let rs = shipped();
        let ctx = rs.check_input(&i.json()).expect("accepted");
        let mut outcome = skill_fleet::engine::evaluate(rs, &ctx, &i.history, Options::default()).expect("ok");
        outcome.decision_id = id;
        let mut direct = Vec::new();
        outcome.write_log_json(&mut direct);
        let parsed: serde_json::Value = serde_json::from_slice(&direct).expect("valid json");
        prop_assert_eq!(parsed, outcome.into_decision().log_json());
    }

    #[test]
    fn explain_does_not_change_the_decision(i in input()) {
        let rs = shipped();
        let ctx = rs.check_input(&i.json()).expect("accepted");
        let plain = recommend(rs, &ctx, &i.history, Options::default()).expect("ok");
        let mut explained = recommend(rs, &ctx, &i.history, Options { explain: true, guard: None }).expect("ok");
        let trace = explained.trace.take().expect("trace present");
        prop_assert_eq!(plain, explained);
        prop_assert_eq!(trace.rules.last().map(|r| r.matched), Some(true));
    }
}

#[test]
fn out_of_bounds_inputs_are_rejected_with_the_field() {
    let rs = shipped();
    for (field, value, needle) in [
        ("trainset_size", serde_json::json!(0), "below the minimum 1"),
        ("budget_usd", serde_json::json!(-1), "below the minimum 0"),
        (
            "quality_target",
            serde_json::json!(1.5),
            "above the maximum 1",
        ),
        (
            "complexity_score",
            serde_json::json!("extreme"),
            "not a number nor one of the labels",
        ),
        ("trainset_size", serde_json::json!(2.5), "whole number"),
        ("domain", serde_json::json!(7), "must be a string"),
    ] {
        let mut m = serde_json::Map::new();
        m.insert("trainset_size".into(), 10.into());
        m.insert(field.into(), value);
        let errs = rs.check_input(&m).expect_err("rejected");
        assert_eq!(errs.len(), 1, "{errs:?}");
        let bytes = serde_json::to_vec(&m).expect("json");
        match rs.check_input_json(&bytes) {
            Err(skill_fleet::rules::context::JsonCheckError::Input(e)) => assert_eq!(e, errs),
            other => panic!("expected the same input errors, got {other:?}"),
        }
        assert_eq!(errs[0].field, field);
        assert!(errs[0].message.contains(needle), "{}", errs[0].message);
    }
}
