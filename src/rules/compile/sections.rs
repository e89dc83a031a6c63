//! The sections of a rule set after the context, each checked against the others and
//! compiled: the optimizer catalog, the cost model, the selection rules, confidence and
//! alternatives, the budget guard, the training rules and the fixtures. Every problem goes to
//! `diags`; a section with errors compiles to `None`.

use super::super::condition::{self, child};
use super::super::context::ContextModel;
use super::super::origin::Origin;
use super::super::script::ScriptHost;
use super::super::spec::{Choice, Fixture};
use super::super::{
    AltModel, ConfidenceModel, CostModel, FixtureDef, GuardModel, Located, ModelInfo, Resolved,
    Rule, GUARD_PLACEHOLDERS,
};
use super::{json_text, template, Resolver, Sections};
use crate::diagnostic::{did_you_mean, Diagnostic};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// The optimizer catalog and default config, as a resolver of choices.
pub(super) fn catalog<'s>(
    s: &'s Sections<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Resolver<'s>> {
    s.optimizers.as_ref().map(|o| {
        let opts = &o.value;
        let at = o.at;
        if opts.catalog.is_empty() {
            diags.push(at.key(
                Diagnostic::error("the optimizer catalog is empty"),
                "/optimizers/catalog",
            ));
        }
        if opts.catalog.values().any(|e| !e.variants.is_empty())
            && !opts.default_config.contains_key(&opts.variant_key)
        {
            diags.push(
                at.key(
                    Diagnostic::error(format!(
                        "`default_config` has no `{}` key for variants",
                        opts.variant_key
                    )),
                    "/optimizers/default_config",
                )
                .with_help("variants are stored under `variant_key` in the config"),
            );
        }
        Resolver {
            opts,
            cost: s.cost.as_ref().map(|c| &c.value),
            default_config: Arc::new(opts.default_config.clone().into_iter().collect()),
        }
    })
}

/// The cost model: parameters for every optimizer of the catalog, the price table, the script.
pub(super) fn cost(
    s: &Sections<'_>,
    resolver: Option<&Resolver<'_>>,
    script_fns: &[(String, usize)],
    diags: &mut Vec<Diagnostic>,
) -> Option<CostModel> {
    s.cost.as_ref().map(|c| {
        let spec = &c.value;
        let at = c.at;
        if let Some(r) = &resolver {
            for name in r.opts.catalog.keys() {
                if !spec.optimizers.contains_key(name) {
                    diags.push(
                        at.key(Diagnostic::error(format!("optimizer `{name}` has no cost parameters")), "/cost/optimizers")
                            .with_help(format!("add `{name}: {{usd_per_100: …, minutes_per_100: …}}` under `cost.optimizers`")),
                    );
                }
            }
            for (name, oc) in &spec.optimizers {
                let ptr = child("/cost/optimizers", name);
                match r.opts.catalog.get(name) {
                    None => diags.push(
                        at.key(Diagnostic::error(format!("cost parameters for unknown optimizer `{name}`")), &ptr)
                            .with_help_opt(did_you_mean(name, r.opts.catalog.keys().map(String::as_str))),
                    ),
                    Some(entry) => {
                        for v in oc.variant_multipliers.keys() {
                            if !entry.variants.contains(v) {
                                diags.push(
                                    at.key(
                                        Diagnostic::error(format!("optimizer `{name}` has no variant `{v}`")),
                                        &child(&format!("{ptr}/variant_multipliers"), v),
                                    )
                                    .with_help_opt(did_you_mean(v, entry.variants.iter().map(String::as_str))),
                                );
                            }
                        }
                    }
                }
            }
        }
        if !spec.models.contains_key(&spec.default_model) {
            diags.push(
                at.value(Diagnostic::error(format!("default model `{}` is not in the price table", spec.default_model)), "/cost/default_model")
                    .with_help_opt(did_you_mean(&spec.default_model, spec.models.keys().map(String::as_str))),
            );
        }
        let script = spec.script.as_ref().and_then(|name| {
            let span = at.spans.exact("/cost/script")?;
            if !script_fns.iter().any(|(n, arity)| n == name && *arity == 3) {
                diags.push(
                    at.value(Diagnostic::error(format!("no script function `{name}` with 3 parameters")), "/cost/script")
                        .with_help_opt(did_you_mean(name, script_fns.iter().map(|(n, _)| n.as_str())).or_else(|| {
                            Some("define `fn NAME(input, optimizer, model)` in a .rhai file of the rule set".into())
                        })),
                );
            }
            Some((name.clone(), Origin::scalar(at.file, span)))
        });
        let models: HashMap<String, ModelInfo> = spec
            .models
            .iter()
            .map(|(n, m)| {
                (
                    n.clone(),
                    ModelInfo {
                        name: n.as_str().into(),
                        cost_multiplier: m.cost_multiplier,
                        time_multiplier: m.time_multiplier,
                        input_usd_per_mtok: m.input_usd_per_mtok,
                        output_usd_per_mtok: m.output_usd_per_mtok,
                    },
                )
            })
            .collect();
        let default = models.get(&spec.default_model).cloned().unwrap_or(ModelInfo {
            name: spec.default_model.as_str().into(),
            cost_multiplier: 1.0,
            time_multiplier: 1.0,
            input_usd_per_mtok: None,
            output_usd_per_mtok: None,
        });
        CostModel {
            default,
            decimals: spec.decimals,
            min_minutes: spec.min_minutes,
            default_model: spec.default_model.as_str().into(),
            models,
            script,
        }
    })
}

/// The selection rules and the fallback.
pub(super) fn selection(
    s: &Sections<'_>,
    ctx: Option<&ContextModel>,
    resolver: Option<&Resolver<'_>>,
    scripts: &Arc<ScriptHost>,
    diags: &mut Vec<Diagnostic>,
) -> (Vec<Rule>, Option<Rule>) {
    let mut rules = Vec::new();
    let mut fallback = None;
    if let (Some(sel), Some(ctx), Some(r)) = (&s.selection, &ctx, &resolver) {
        let at = sel.at;
        let mut seen: HashMap<&str, String> = HashMap::new();
        for (i, rule) in sel.value.rules.iter().enumerate() {
            let ptr = format!("/selection/rules/{i}");
            let id_ptr = format!("{ptr}/id");
            if let Some(first) = seen.get(rule.id.as_str()) {
                diags.push(
                    at.value(
                        Diagnostic::error(format!("duplicate rule id `{}`", rule.id)),
                        &id_ptr,
                    )
                    .with_help(format!("first used at {first}; rule ids must be unique")),
                );
            } else {
                let p = at.spans.value(&id_ptr).unwrap_or_default();
                seen.insert(&rule.id, format!("{}:{}:{}", at.file.path, p.line, p.col));
            }
            let cond =
                condition::compile(&rule.when, &format!("{ptr}/when"), &at, ctx, scripts, diags);
            let choice = r.resolve(&rule.then, &format!("{ptr}/then"), at, diags);
            let tpl = template(
                &rule.reasoning,
                &format!("{ptr}/reasoning"),
                at,
                ctx,
                &[],
                diags,
            );
            if let (Some(cond), Some(choice), Some(reasoning)) = (cond, choice, tpl) {
                rules.push(Rule {
                    id: rule.id.as_str().into(),
                    json_id: json_text(&rule.id),
                    cond: Some(cond.eval),
                    pred: Some(cond.pred),
                    choice,
                    reasoning,
                    at: at.line_of(&ptr),
                    file: at.file.path.clone(),
                    pos: at.spans.value(&ptr),
                });
            }
        }
        let fb = &sel.value.fallback;
        if seen.contains_key(fb.id.as_str()) {
            diags.push(at.value(
                Diagnostic::error(format!("fallback id `{}` is also a rule id", fb.id)),
                "/selection/fallback/id",
            ));
        }
        let choice = r.resolve(&fb.then, "/selection/fallback/then", at, diags);
        let tpl = template(
            &fb.reasoning,
            "/selection/fallback/reasoning",
            at,
            ctx,
            &[],
            diags,
        );
        if let (Some(choice), Some(reasoning)) = (choice, tpl) {
            fallback = Some(Rule {
                id: fb.id.as_str().into(),
                json_id: json_text(&fb.id),
                cond: None,
                pred: None,
                choice,
                reasoning,
                at: at.line_of("/selection/fallback"),
                file: at.file.path.clone(),
                pos: at.spans.value("/selection/fallback"),
            });
        }
    }
    (rules, fallback)
}

/// The confidence model and the alternatives.
pub(super) fn confidence(
    s: &Sections<'_>,
    resolver: Option<&Resolver<'_>>,
    diags: &mut Vec<Diagnostic>,
) -> Option<ConfidenceModel> {
    match (&s.confidence, &resolver) {
        (Some(c), Some(r)) => {
            let spec = &c.value;
            let alternatives = spec
                .alternatives
                .iter()
                .enumerate()
                .filter_map(|(i, a)| {
                    let choice = Choice {
                        optimizer: a.optimizer.clone(),
                        variant: None,
                        config: BTreeMap::new(),
                    };
                    r.resolve(
                        &choice,
                        &format!("/confidence/alternatives/{i}"),
                        c.at,
                        diags,
                    )
                    .map(|choice| AltModel {
                        choice,
                        quality_risk: a.quality_risk,
                        note: a.note.as_str().into(),
                        json_note: json_text(&a.note),
                        at: c.at.line_of(&format!("/confidence/alternatives/{i}")),
                    })
                })
                .collect();
            Some(ConfidenceModel {
                base: spec.base,
                success_quality: spec.history.success_quality,
                weight: spec.history.weight,
                cap: spec.history.cap,
                small_below: spec.small_trainset.below,
                small_factor: spec.small_trainset.factor,
                decimals: spec.decimals,
                alternatives,
            })
        }
        _ => None,
    }
}

/// The budget guard: its downgrade steps and reasoning templates.
pub(super) fn guard(
    s: &Sections<'_>,
    resolver: Option<&Resolver<'_>>,
    ctx: Option<&ContextModel>,
    diags: &mut Vec<Diagnostic>,
) -> Option<GuardModel> {
    match (&s.guard, &resolver, &ctx) {
        (Some(g), Some(r), Some(ctx)) => {
            let spec = &g.value;
            let (steps, steps_at): (Vec<Arc<Resolved>>, Vec<String>) = spec
                .downgrade
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let ptr = format!("/guard/downgrade/{i}");
                    let step = r.resolve(c, &ptr, g.at, diags)?;
                    Some((step, g.at.line_of(&ptr)))
                })
                .unzip();
            if spec.enabled && spec.downgrade.is_empty() {
                diags.push(g.at.key(
                    Diagnostic::warning("the guard is on but has no downgrade steps"),
                    "/guard/downgrade",
                ));
            }
            let t1 = template(
                &spec.reasoning,
                "/guard/reasoning",
                g.at,
                ctx,
                &GUARD_PLACEHOLDERS,
                diags,
            );
            let t2 = template(
                &spec.no_fit_reasoning,
                "/guard/no_fit_reasoning",
                g.at,
                ctx,
                &GUARD_PLACEHOLDERS,
                diags,
            );
            match (t1, t2) {
                (Some(reasoning), Some(no_fit_reasoning)) => Some(GuardModel {
                    enabled: spec.enabled,
                    steps,
                    reasoning,
                    no_fit_reasoning,
                    steps_at,
                    no_fit_at: g.at.line_of("/guard/no_fit_reasoning"),
                }),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The training rules' own consistency (the schema checked the rest).
pub(super) fn training(s: &Sections<'_>, diags: &mut Vec<Diagnostic>) {
    if let Some(t) = &s.training {
        if t.value.bands.medium > t.value.bands.high {
            diags.push(t.at.value(
                Diagnostic::error("the medium band starts above the high band"),
                "/training/bands/medium",
            ));
        }
        for name in t.value.quality_parts.keys() {
            if !super::super::spec::SUB_SCORES.contains(&name.as_str()) {
                let mut d = Diagnostic::error(format!("unknown quality part `{name}`"));
                d.help = crate::diagnostic::did_you_mean(
                    name,
                    super::super::spec::SUB_SCORES.iter().copied(),
                )
                .or_else(|| {
                    Some(format!(
                        "quality parts: {}",
                        super::super::spec::SUB_SCORES.join(", ")
                    ))
                });
                diags.push(t.at.key(d, &format!("/training/quality_parts/{name}")));
            }
        }
    }
}

/// The fixtures: unique names, known fields, optimizers, config keys and rules.
pub(super) fn fixtures(
    fixtures: &[(Located<'_>, usize, Fixture)],
    s: &Sections<'_>,
    ctx: Option<&ContextModel>,
    resolver: Option<&Resolver<'_>>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<FixtureDef> {
    let mut fixture_defs = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    for (at, k, fx) in fixtures {
        let ptr = format!("/tests/{k}");
        let name_pos = at.spans.value(&format!("{ptr}/name")).unwrap_or_default();
        if !names.insert(fx.name.clone()) {
            diags.push(at.value(
                Diagnostic::error(format!("duplicate fixture name `{}`", fx.name)),
                &format!("{ptr}/name"),
            ));
        }
        if let Some(ctx) = &ctx {
            if fx.expect.error.is_none() {
                for key in fx.input.keys() {
                    if ctx.index_of(key).is_none() {
                        diags.push(
                            at.key(
                                Diagnostic::error(format!(
                                    "fixture input names unknown field `{key}`"
                                )),
                                &child(&format!("{ptr}/input"), key),
                            )
                            .with_help_opt(did_you_mean(
                                key,
                                ctx.fields().iter().map(|f| f.name.as_ref()),
                            )),
                        );
                    }
                }
            }
        }
        if let Some(r) = &resolver {
            let known_opt = |name: &str, p: String, diags: &mut Vec<Diagnostic>| {
                if !r.opts.catalog.contains_key(name) {
                    diags.push(
                        at.value(
                            Diagnostic::error(format!(
                                "fixture expects unknown optimizer `{name}`"
                            )),
                            &p,
                        )
                        .with_help_opt(
                            did_you_mean(name, r.opts.catalog.keys().map(String::as_str)).or_else(
                                || {
                                    let names: Vec<&str> =
                                        r.opts.catalog.keys().map(String::as_str).collect();
                                    Some(format!("optimizers in the catalog: {}", names.join(", ")))
                                },
                            ),
                        ),
                    );
                }
            };
            if let Some(o) = &fx.expect.recommended {
                known_opt(o, format!("{ptr}/expect/recommended"), diags);
            }
            for (i, o) in fx.expect.alternatives.iter().flatten().enumerate() {
                known_opt(o, format!("{ptr}/expect/alternatives/{i}"), diags);
            }
            for key in fx.expect.config.iter().flat_map(|c| c.keys()) {
                if !r.default_config.contains_key(key) {
                    diags.push(
                        at.key(
                            Diagnostic::error(format!(
                                "fixture expects unknown config key `{key}`"
                            )),
                            &child(&format!("{ptr}/expect/config"), key),
                        )
                        .with_help_opt(did_you_mean(
                            key,
                            r.default_config.keys().map(String::as_str),
                        )),
                    );
                }
            }
        }
        if let Some(rule) = &fx.expect.rule {
            let known = s.selection.as_ref().is_some_and(|sel| {
                sel.value.rules.iter().any(|r| &r.id == rule) || &sel.value.fallback.id == rule
            });
            if s.selection.is_some() && !known {
                let ids: Vec<&str> = s
                    .selection
                    .iter()
                    .flat_map(|sel| {
                        sel.value.rules.iter().map(|r| r.id.as_str()).chain([sel
                            .value
                            .fallback
                            .id
                            .as_str()])
                    })
                    .collect();
                diags.push(
                    at.value(
                        Diagnostic::error(format!("fixture expects unknown rule `{rule}`")),
                        &format!("{ptr}/expect/rule"),
                    )
                    .with_help_opt(did_you_mean(rule, ids)),
                );
            }
        }
        fixture_defs.push(FixtureDef {
            spec: fx.clone(),
            file: at.file.path.clone(),
            at: format!("{}:{}:{}", at.file.path, name_pos.line, name_pos.col),
        });
    }
    fixture_defs
}
