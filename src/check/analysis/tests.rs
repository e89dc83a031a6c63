use super::analyze;
use crate::diagnostic::{Diagnostic, Severity, SourceFile};
use crate::rules::{build, RuleSet};

const SELECTION: &str = include_str!("../../../rules/selection.yaml");
const GUARD: &str = include_str!("../../../rules/guard.yaml");

/// The shipped sections (no fixtures), with some files replaced or added.
fn rule_set(changes: &[(&str, &str)]) -> RuleSet {
    let mut files = vec![
        SourceFile::new(
            "rules/context.yaml",
            include_str!("../../../rules/context.yaml"),
        ),
        SourceFile::new(
            "rules/optimizers.yaml",
            include_str!("../../../rules/optimizers.yaml"),
        ),
        SourceFile::new("rules/selection.yaml", SELECTION),
        SourceFile::new("rules/cost.yaml", include_str!("../../../rules/cost.yaml")),
        SourceFile::new(
            "rules/confidence.yaml",
            include_str!("../../../rules/confidence.yaml"),
        ),
        SourceFile::new("rules/guard.yaml", GUARD),
        SourceFile::new(
            "rules/training.yaml",
            include_str!("../../../rules/training.yaml"),
        ),
    ];
    for (path, text) in changes {
        files.retain(|f| f.path != *path);
        files.push(SourceFile::new(*path, *text));
    }
    build(&files).unwrap_or_else(|d| panic!("invalid rule set: {d:?}"))
}

/// The shipped selection with `extra` (indented rule items) inserted before `before_id`.
fn selection_with(extra: &str, before_id: &str) -> String {
    let marker = format!("    - id: {before_id}\n");
    assert!(SELECTION.contains(&marker), "{before_id}");
    SELECTION.replace(&marker, &format!("{extra}\n{marker}"))
}

fn messages<'a>(d: &'a [Diagnostic], prefix: &str) -> Vec<&'a Diagnostic> {
    d.iter().filter(|d| d.message.starts_with(prefix)).collect()
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no `{needle}`"))
}

#[test]
fn shipped_rules_have_exactly_the_two_known_regions() {
    let rs = rule_set(&[]);
    let found = analyze(&rs);
    assert!(found.iter().all(|d| d.severity == Severity::Warning));
    let regions = messages(&found, "a larger");
    assert_eq!(regions.len(), 2, "{regions:#?}");
    let fallback = line_of(SELECTION, "id: fallback");
    let light = line_of(SELECTION, "id: moderate_trainset_budget");
    assert_eq!(
        regions[0].message,
        format!(
            "a larger `budget_usd` gets a weaker optimizer where trainset_size < 500 and \
             20 ≤ budget_usd < 100: bootstrap_fewshot from `fallback` (rules/selection.yaml:{fallback}), \
             while a smaller `budget_usd` gets miprov2 (light) from `moderate_trainset_budget` \
             (rules/selection.yaml:{light})"
        )
    );
    assert_eq!(
        regions[1].message,
        format!(
            "a larger `trainset_size` gets a weaker optimizer where 1 ≤ budget_usd < 20 and \
             trainset_size ≥ 500: bootstrap_fewshot from `fallback` (rules/selection.yaml:{fallback}), \
             while a smaller `trainset_size` gets miprov2 (light) from `moderate_trainset_budget` \
             (rules/selection.yaml:{light})"
        )
    );
    for r in &regions {
        assert_eq!(r.file.as_deref(), Some("rules/selection.yaml"));
        assert_eq!(r.pos.map(|p| p.line), Some(fallback));
    }
    // Examples with every other field at its default, and the inputs really decide so.
    assert_eq!(
        regions[0].help.as_deref(),
        Some(
            "e.g. trainset_size=50 budget_usd=20 gets bootstrap_fewshot, budget_usd=10 gets \
             miprov2 (light); strength is the order of `guard.downgrade`"
        )
    );
    assert_eq!(
        regions[1].help.as_deref(),
        Some(
            "e.g. budget_usd=3 trainset_size=500 gets bootstrap_fewshot, trainset_size=300 gets \
             miprov2 (light); strength is the order of `guard.downgrade`"
        )
    );
    // Nothing in the shipped rules is unreachable.
    assert!(messages(&found, "rule `")
        .iter()
        .all(|d| !d.message.contains("never fire")));
}

#[test]
fn without_a_guard_list_strength_is_the_estimated_cost() {
    let guard = GUARD.replace("enabled: true", "enabled: false");
    let start = guard.find("  downgrade:").expect("downgrade");
    let end = guard.find("  reasoning:").expect("reasoning");
    let guard = format!("{}  downgrade: []\n{}", &guard[..start], &guard[end..]);
    let rs = rule_set(&[("rules/guard.yaml", &guard)]);
    let found = analyze(&rs);
    let regions = messages(&found, "a larger");
    assert_eq!(regions.len(), 2, "{regions:#?}");
    assert!(regions[0]
        .message
        .contains("where trainset_size < 500 and 20 ≤ budget_usd < 100"));
    assert!(regions[1]
        .message
        .contains("where 1 ≤ budget_usd < 20 and trainset_size ≥ 500"));
    assert!(regions[0]
        .help
        .as_deref()
        .is_some_and(|h| h.ends_with("strength is the estimated cost")));
    // With the guard off, the advice is to turn it on.
    let heavy = messages(&found, "rule `high_budget` can cost more");
    assert!(heavy[0]
        .help
        .as_deref()
        .is_some_and(|h| h.starts_with("turn the budget guard on")));
}

#[test]
fn monotone_fields_are_declared_in_the_rules() {
    let none = rule_set(&[("rules/analysis.yaml", "analysis:\n  monotone_in: []\n")]);
    assert!(messages(&analyze(&none), "a larger").is_empty());
    let budget = rule_set(&[(
        "rules/analysis.yaml",
        "analysis:\n  monotone_in: [budget_dollars]\n",
    )]);
    let regions = analyze(&budget);
    let regions = messages(&regions, "a larger");
    assert_eq!(regions.len(), 1);
    assert!(regions[0].message.starts_with("a larger `budget_usd`"));
}

#[test]
fn monotone_in_must_name_number_fields() {
    let mut files = vec![SourceFile::new(
        "rules/analysis.yaml",
        "analysis:\n  monotone_in: [budget_usd, domain, trainset]\n",
    )];
    for (p, t) in [
        (
            "rules/context.yaml",
            include_str!("../../../rules/context.yaml"),
        ),
        (
            "rules/optimizers.yaml",
            include_str!("../../../rules/optimizers.yaml"),
        ),
        ("rules/selection.yaml", SELECTION),
        ("rules/cost.yaml", include_str!("../../../rules/cost.yaml")),
        (
            "rules/confidence.yaml",
            include_str!("../../../rules/confidence.yaml"),
        ),
        ("rules/guard.yaml", GUARD),
        (
            "rules/training.yaml",
            include_str!("../../../rules/training.yaml"),
        ),
    ] {
        files.push(SourceFile::new(p, t));
    }
    let errs = build(&files).expect_err("invalid");
    let text: Vec<String> = errs
        .iter()
        .map(|d| format!("{} {}", d.location().unwrap_or_default(), d.message))
        .collect();
    assert_eq!(
        text,
        [
            "rules/analysis.yaml:2:29 `monotone_in` needs number fields; `domain` is a string field",
            "rules/analysis.yaml:2:37 `monotone_in` names unknown field `trainset`",
        ]
    );
    assert_eq!(
        errs[1].help.as_deref(),
        Some("did you mean `trainset_size`?")
    );
}

#[test]
fn a_rule_covered_by_earlier_rules_is_reported_with_its_line_and_theirs() {
    // Every input with T < 300 and B < 10 is taken by tight_time_limit (0 < L < 2),
    // tiny_budget (B < 1), small_trainset_low_budget (T < 100, B < 5) or
    // moderate_trainset_budget.
    let planted = "    - id: planted_covered\n      when:\n        all:\n          - {field: trainset_size, lt: 300}\n          - {field: budget_usd, lt: 10}\n      then: {optimizer: gepa}\n      reasoning: never\n";
    let text = selection_with(planted, "large_trainset_mid_budget");
    let rs = rule_set(&[("rules/selection.yaml", &text)]);
    let found = analyze(&rs);
    let never: Vec<&Diagnostic> = found
        .iter()
        .filter(|d| d.message.contains("can never fire"))
        .collect();
    assert_eq!(never.len(), 1, "{never:#?}");
    let line = line_of(&text, "id: planted_covered");
    assert_eq!(never[0].pos.map(|p| p.line), Some(line));
    let at = |id: &str| {
        format!(
            "`{id}` (rules/selection.yaml:{})",
            line_of(&text, &format!("id: {id}"))
        )
    };
    assert_eq!(
        never[0].message,
        format!(
            "rule `planted_covered` can never fire: every input it matches is taken first by {}, {}, {}, {}",
            at("tight_time_limit"),
            at("tiny_budget"),
            at("small_trainset_low_budget"),
            at("moderate_trainset_budget")
        )
    );
}

#[test]
fn a_condition_that_holds_for_no_input_is_reported() {
    let planted = "    - id: planted_empty\n      when:\n        any:\n          - all:\n              - {field: budget_usd, lt: 5}\n              - {field: budget_usd, ge: 5}\n          - {field: quality_target, gt: 1}\n      then: {optimizer: gepa}\n      reasoning: never\n";
    let text = selection_with(planted, "tight_time_limit");
    let rs = rule_set(&[("rules/selection.yaml", &text)]);
    let found = analyze(&rs);
    let never: Vec<&Diagnostic> = found
        .iter()
        .filter(|d| d.message.contains("can never fire"))
        .collect();
    assert_eq!(never.len(), 1, "{never:#?}");
    assert_eq!(
        never[0].message,
        "rule `planted_empty` can never fire: its condition holds for no input"
    );
}

#[test]
fn rules_with_rhai_expressions_are_not_claimed_unreachable() {
    // An expression rule after a rule that covers it, and one first that holds everywhere in
    // practice: neither it nor the rules after it may be reported.
    let always = "    - id: planted_always\n      when: {expr: \"trainset_size > 0 && budget_usd > 1000000.0\"}\n      then: {optimizer: gepa}\n      reasoning: r\n";
    let covered = "    - id: planted_expr_covered\n      when: {expr: \"budget_usd >= 200.0\"}\n      then: {optimizer: gepa}\n      reasoning: r\n";
    let text = selection_with(always, "tight_time_limit");
    let marker = "  fallback:\n";
    let text = text.replace(marker, &format!("{covered}\n{marker}"));
    let rs = rule_set(&[("rules/selection.yaml", &text)]);
    let found = analyze(&rs);
    assert!(
        found.iter().all(|d| !d.message.contains("can never fire")),
        "{found:#?}"
    );
    // The regions are still found (the expressions are sampled).
    let regions = messages(&found, "a larger");
    assert_eq!(regions.len(), 2, "{regions:#?}");
    assert!(regions[0]
        .help
        .as_deref()
        .is_some_and(|h| h.contains("`expr:` conditions are only sampled")));
}

#[test]
fn a_structured_part_decides_even_beside_an_expression() {
    // `any` with a true comparison holds whatever the expression says, so it takes T < 100:
    // the planted rule below it, and the shipped GEPA rule (T < 100, B < 5).
    let first = "    - id: planted_small\n      when:\n        any:\n          - {field: trainset_size, lt: 100}\n          - {expr: \"budget_usd > 1.0e9\"}\n      then: {optimizer: gepa}\n      reasoning: r\n    - id: planted_smaller\n      when: {field: trainset_size, lt: 50}\n      then: {optimizer: gepa}\n      reasoning: r\n";
    let text = selection_with(first, "tight_time_limit");
    let rs = rule_set(&[("rules/selection.yaml", &text)]);
    let found = analyze(&rs);
    let never: Vec<&Diagnostic> = found
        .iter()
        .filter(|d| d.message.contains("can never fire"))
        .collect();
    let at = line_of(&text, "id: planted_small");
    let ids: Vec<&str> = never
        .iter()
        .map(|d| {
            let rest = d.message.strip_prefix("rule `").unwrap_or_default();
            &rest[..rest.find('`').unwrap_or(0)]
        })
        .collect();
    assert_eq!(ids, ["planted_smaller", "small_trainset_low_budget"]);
    for d in &never {
        assert!(
            d.message.ends_with(&format!(
                "is taken first by `planted_small` (rules/selection.yaml:{at})"
            )),
            "{}",
            d.message
        );
    }
}

#[test]
fn estimates_above_the_budget_give_one_example_per_rule() {
    let rs = rule_set(&[]);
    let found = analyze(&rs);
    let over = messages(&found, "");
    let over: Vec<&&Diagnostic> = over
        .iter()
        .filter(|d| d.message.contains("can cost more than the budget"))
        .collect();
    // Every rule and the fallback: the trainset size has no upper bound.
    assert_eq!(over.len(), rs.rules.len() + 1, "{over:#?}");
    let heavy = over
        .iter()
        .find(|d| d.message.starts_with("rule `high_budget` "))
        .expect("high_budget");
    assert_eq!(
        heavy.message,
        "rule `high_budget` can cost more than the budget with the guard off: 10000 examples at $500 → miprov2 (heavy) at $625"
    );
    let line = SELECTION
        .lines()
        .position(|l| l.trim() == "- id: high_budget")
        .map(|i| i + 1);
    assert_eq!(heavy.pos.map(|p| p.line), line);
    // GEPA's small trainsets fit any budget of $1 or more on the default model; the pricier
    // model does not.
    let gepa = over
        .iter()
        .find(|d| d.message.starts_with("rule `small_trainset_low_budget` "))
        .expect("gepa");
    assert!(
        gepa.message
            .ends_with("99 examples at $1 (model=gemini-3-pro-preview) → gepa at $1.98"),
        "{}",
        gepa.message
    );
    let fallback = over
        .iter()
        .find(|d| d.message.starts_with("fallback `fallback` "))
        .expect("fallback");
    assert!(
        fallback.message.ends_with("→ bootstrap_fewshot at $100"),
        "{}",
        fallback.message
    );
}

#[test]
fn a_rule_that_always_fits_gets_no_budget_warning() {
    let planted = "    - id: planted_cheap\n      when:\n        all:\n          - {field: trainset_size, le: 500}\n          - {field: budget_usd, ge: 1}\n      then: {optimizer: reflection_metrics}\n      reasoning: r\n";
    let text = selection_with(planted, "tight_time_limit");
    let rs = rule_set(&[("rules/selection.yaml", &text)]);
    let found = analyze(&rs);
    // 500 examples of reflection metrics cost $0.25, $1 on the priciest model (x4): never
    // above a budget of $1 or more.
    assert!(
        found
            .iter()
            .all(|d| !d.message.contains("`planted_cheap` can cost")),
        "{found:#?}"
    );
}

#[test]
fn too_many_cells_skip_the_analysis_with_a_warning() {
    let values: Vec<String> = (1..=700).map(|i| i.to_string()).collect();
    let planted = format!(
        "    - id: planted_many\n      when: {{field: trainset_size, in: [{}]}}\n      then: {{optimizer: gepa}}\n      reasoning: r\n",
        values.join(", ")
    );
    let text = selection_with(&planted, "tight_time_limit");
    let rs = rule_set(&[("rules/selection.yaml", &text)]);
    let found = analyze(&rs);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0]
            .message
            .starts_with("rule analysis skipped: the conditions cut the inputs into "),
        "{}",
        found[0].message
    );
}
