//! Builds a [`RuleSet`] from source files: parse, schema-validate, merge sections, check
//! semantics, compile conditions, templates and scripts. Every problem is collected.

use super::condition::{self, child};
use super::context::{ContextModel, Field, Value, WellKnown};
use super::instrument::Recorder;
use super::schema;
use super::script::{Origin, ScriptHost};
use super::spec::{
    AnalysisSpec, Choice, ConfidenceSpec, ContextSpec, CostSpec, FieldType, GuardSpec,
    OptimizersSpec, RuleFile, Scalar, SelectionSpec, TrainingSpec,
};
use super::template::Template;
use super::yaml::{self, Parsed, ScalarStyle};
use super::{
    AltModel, ConfidenceModel, CostModel, FixtureDef, GuardModel, Located, ModelInfo, Resolved,
    Rule, RuleSet, GUARD_PLACEHOLDERS,
};
use crate::decision::Config;
use crate::diagnostic::{did_you_mean, has_errors, Diagnostic, Pos, SourceFile};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// One section found in one file.
struct Section<'a, T> {
    value: T,
    at: Located<'a>,
}

#[derive(Default)]
struct Sections<'a> {
    context: Option<Section<'a, ContextSpec>>,
    optimizers: Option<Section<'a, OptimizersSpec>>,
    selection: Option<Section<'a, SelectionSpec>>,
    cost: Option<Section<'a, CostSpec>>,
    confidence: Option<Section<'a, ConfidenceSpec>>,
    guard: Option<Section<'a, GuardSpec>>,
    training: Option<Section<'a, TrainingSpec>>,
    analysis: Option<Section<'a, AnalysisSpec>>,
}

fn put<'a, T>(
    slot: &mut Option<Section<'a, T>>,
    value: Option<T>,
    name: &str,
    at: Located<'a>,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(value) = value else { return };
    let ptr = format!("/{name}");
    if let Some(first) = slot {
        let loc = first
            .at
            .spans
            .key(&ptr)
            .map(|p| format!("{}:{}:{}", first.at.file.path, p.line, p.col))
            .unwrap_or_else(|| first.at.file.path.clone());
        diags.push(
            at.key(
                Diagnostic::error(format!("section `{name}` is defined twice")),
                &ptr,
            )
            .with_help(format!("it is first defined at {loc}; keep one")),
        );
        return;
    }
    *slot = Some(Section { value, at });
}

fn is_rhai(path: &str) -> bool {
    path.ends_with(".rhai")
}

/// Content hash of a set of files: the first 12 hex digits of SHA-256 over paths and texts.
pub fn revision(files: &[SourceFile]) -> String {
    let mut sorted: Vec<&SourceFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h = Sha256::new();
    for f in sorted {
        h.update(f.path.as_bytes());
        h.update([0]);
        h.update(f.text.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Builds a rule set. On success the set may carry warnings; on failure every problem found
/// is returned (errors and warnings).
pub fn build(files: &[SourceFile]) -> Result<RuleSet, Vec<Diagnostic>> {
    build_with(files, None)
}

/// Builds a coverage copy of a rule set: the same decisions, but every Rhai function and
/// `expr` condition records in `rec` that it ran (see [`super::instrument`]). Only
/// `rules test --coverage` uses it; served rule sets come from [`build`].
pub fn build_instrumented(
    files: &[SourceFile],
    rec: Arc<Recorder>,
) -> Result<RuleSet, Vec<Diagnostic>> {
    build_with(files, Some(rec))
}

fn build_with(
    files: &[SourceFile],
    coverage: Option<Arc<Recorder>>,
) -> Result<RuleSet, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    if files.is_empty() {
        return Err(vec![Diagnostic::error("the rule set has no files")
            .with_help(
                "a rule set is a directory of .yaml rule files and optional .rhai scripts",
            )]);
    }
    let parsed: Vec<(usize, Option<Parsed>)> = files
        .iter()
        .enumerate()
        .filter(|(_, f)| !is_rhai(&f.path))
        .map(|(i, f)| match yaml::parse(f) {
            Ok(p) => (i, Some(p)),
            Err(d) => {
                diags.push(d);
                (i, None)
            }
        })
        .collect();
    let mut sections = Sections::default();
    let mut fixtures: Vec<(Located<'_>, usize, super::spec::Fixture)> = Vec::new();
    let mut structural_failure = diags.len();
    for (i, p) in &parsed {
        let Some(p) = p else { continue };
        let file = &files[*i];
        let at = Located {
            file,
            spans: &p.spans,
        };
        if p.value.is_null() {
            diags.push(
                Diagnostic::warning("rule file is empty")
                    .at(&file.path, None)
                    .with_help("delete it or add a section"),
            );
            continue;
        }
        let errs = schema::validate(file, p);
        if !errs.is_empty() {
            structural_failure += 1;
            diags.extend(errs);
            continue;
        }
        let rf: RuleFile = match serde_json::from_value(p.value.clone()) {
            Ok(rf) => rf,
            Err(e) => {
                structural_failure += 1;
                diags.push(
                    Diagnostic::error(format!("cannot read rule file: {e}")).at(&file.path, None),
                );
                continue;
            }
        };
        put(&mut sections.context, rf.context, "context", at, &mut diags);
        put(
            &mut sections.optimizers,
            rf.optimizers,
            "optimizers",
            at,
            &mut diags,
        );
        put(
            &mut sections.selection,
            rf.selection,
            "selection",
            at,
            &mut diags,
        );
        put(&mut sections.cost, rf.cost, "cost", at, &mut diags);
        put(
            &mut sections.confidence,
            rf.confidence,
            "confidence",
            at,
            &mut diags,
        );
        put(&mut sections.guard, rf.guard, "guard", at, &mut diags);
        put(
            &mut sections.training,
            rf.training,
            "training",
            at,
            &mut diags,
        );
        put(
            &mut sections.analysis,
            rf.analysis,
            "analysis",
            at,
            &mut diags,
        );
        for (k, fx) in rf.tests.unwrap_or_default().into_iter().enumerate() {
            fixtures.push((at, k, fx));
        }
    }
    if structural_failure == 0 {
        for (name, present) in [
            ("context", sections.context.is_some()),
            ("optimizers", sections.optimizers.is_some()),
            ("selection", sections.selection.is_some()),
            ("cost", sections.cost.is_some()),
            ("confidence", sections.confidence.is_some()),
            ("guard", sections.guard.is_some()),
            ("training", sections.training.is_some()),
        ] {
            if !present {
                diags.push(
                    Diagnostic::error(format!("the rule set has no `{name}` section"))
                        .with_help(format!("add `{name}:` to one of the rule files")),
                );
            }
        }
    }
    let compiled = semantic(files, &sections, &fixtures, coverage, &mut diags);
    // Stable order for people and golden tests: by file, then position; file-less last.
    diags.sort_by(|a, b| {
        let key = |d: &Diagnostic| {
            (
                d.file.is_none(),
                d.file.clone(),
                d.pos.map(|p| (p.line, p.col)),
            )
        };
        key(a).cmp(&key(b))
    });
    if has_errors(&diags) {
        return Err(diags);
    }
    match compiled {
        Some(mut rs) => {
            rs.warnings = diags;
            Ok(rs)
        }
        None => Err(diags),
    }
}

fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn scalar_type_ok(kind: FieldType, s: &Scalar) -> bool {
    matches!(
        (kind, s),
        (FieldType::Integer, Scalar::Int(_))
            | (FieldType::Number, Scalar::Int(_) | Scalar::Num(_))
            | (FieldType::String, Scalar::Str(_))
            | (FieldType::Boolean, Scalar::Bool(_))
    )
}

fn compile_context(
    sec: &Section<'_, ContextSpec>,
    diags: &mut Vec<Diagnostic>,
) -> Option<ContextModel> {
    let at = sec.at;
    let before = diags.len();
    let mut fields = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    for (name, spec) in &sec.value.fields {
        let fptr = child("/context/fields", name);
        if !is_identifier(name) {
            diags.push(
                at.key(
                    Diagnostic::error(format!("field name `{name}` is not an identifier")),
                    &fptr,
                )
                .with_help("use letters, digits and `_`, so Rhai expressions can name it"),
            );
        }
        for alias in std::iter::once(name).chain(spec.aliases.iter()) {
            if let Some(owner) = names.insert(alias.clone(), name.clone()) {
                diags.push(
                    at.key(
                        Diagnostic::error(format!(
                            "name `{alias}` is used by `{owner}` and `{name}`"
                        )),
                        &fptr,
                    )
                    .with_help("field names and aliases must be unique"),
                );
            }
        }
        let default = match &spec.default {
            None => Value::Null,
            Some(d) => {
                let dptr = format!("{fptr}/default");
                if !scalar_type_ok(spec.kind, d) {
                    diags.push(at.value(
                        Diagnostic::error(format!(
                            "default of `{name}` is not a {}",
                            spec.kind.name()
                        )),
                        &dptr,
                    ));
                }
                let v = match (spec.kind, d) {
                    (FieldType::Number, Scalar::Int(i)) => Value::Num(*i as f64),
                    _ => Value::from_scalar(d),
                };
                if let Some(x) = v.as_f64() {
                    if spec.min.is_some_and(|m| x < m) || spec.max.is_some_and(|m| x > m) {
                        diags.push(at.value(
                            Diagnostic::error(format!("default of `{name}` is outside its bounds")),
                            &dptr,
                        ));
                    }
                }
                if let (Some(allowed), Value::Str(s)) = (&spec.one_of, &v) {
                    if !allowed.iter().any(|a| a.as_str() == s.as_ref()) {
                        diags.push(at.value(
                            Diagnostic::error(format!(
                                "default of `{name}` is not one of its `enum` values"
                            )),
                            &dptr,
                        ));
                    }
                }
                v
            }
        };
        if let (Some(lo), Some(hi)) = (spec.min, spec.max) {
            if lo > hi {
                diags.push(at.value(
                    Diagnostic::error(format!("`min` of `{name}` is above its `max`")),
                    &format!("{fptr}/min"),
                ));
            }
        }
        if (spec.min.is_some() || spec.max.is_some() || !spec.labels.is_empty())
            && !spec.kind.is_numeric()
        {
            diags.push(at.value(
                Diagnostic::error(format!(
                    "`{name}` is a {} field; min, max and labels are for numbers",
                    spec.kind.name()
                )),
                &fptr,
            ));
        }
        if spec.one_of.is_some() && spec.kind != FieldType::String {
            diags.push(at.value(
                Diagnostic::error(format!(
                    "`enum` is for string fields; `{name}` is a {}",
                    spec.kind.name()
                )),
                &fptr,
            ));
        }
        fields.push(Field {
            name: name.as_str().into(),
            spec: spec.clone(),
            default,
        });
    }
    let mut idx = |n: &str, kind: FieldType| -> usize {
        match fields.iter().position(|f| &*f.name == n) {
            Some(i) if fields[i].spec.kind == kind => i,
            Some(i) => {
                diags.push(at.value(
                    Diagnostic::error(format!("field `{n}` must be of type {}", kind.name())),
                    &format!("{}/type", child("/context/fields", n)),
                ));
                i
            }
            None => {
                diags.push(
                    at.key(
                        Diagnostic::error(format!("the context must declare `{n}`")),
                        "/context/fields",
                    )
                    .with_help(format!(
                        "the engine reads `{n}` ({}); declare it under `context.fields`",
                        kind.name()
                    )),
                );
                0
            }
        }
    };
    let known = WellKnown {
        trainset_size: idx("trainset_size", FieldType::Integer),
        budget_usd: idx("budget_usd", FieldType::Number),
        domain: idx("domain", FieldType::String),
        model: idx("model", FieldType::String),
    };
    (diags.len() == before).then(|| ContextModel::new(fields, known))
}

/// Resolves optimizer names, variants and config against the catalog and cost model.
struct Resolver<'a> {
    opts: &'a OptimizersSpec,
    cost: Option<&'a CostSpec>,
    default_config: Arc<Config>,
}

impl Resolver<'_> {
    fn resolve(
        &self,
        c: &Choice,
        ptr: &str,
        at: Located<'_>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Arc<Resolved>> {
        let before = diags.len();
        let Some(entry) = self.opts.catalog.get(&c.optimizer) else {
            diags.push(
                at.value(
                    Diagnostic::error(format!("unknown optimizer `{}`", c.optimizer)),
                    &format!("{ptr}/optimizer"),
                )
                .with_help_opt(
                    did_you_mean(&c.optimizer, self.opts.catalog.keys().map(String::as_str))
                        .or_else(|| {
                            Some(format!(
                                "optimizers in the catalog: {}",
                                self.opts
                                    .catalog
                                    .keys()
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        }),
                ),
            );
            return None;
        };
        let key = &self.opts.variant_key;
        let mut config: Config = (*self.default_config).clone();
        for (k, v) in &c.config {
            let kptr = child(&format!("{ptr}/config"), k);
            match self.default_config.get(k) {
                None => diags.push(
                    at.key(
                        Diagnostic::error(format!("unknown config key `{k}`")),
                        &kptr,
                    )
                    .with_help_opt(
                        did_you_mean(k, self.default_config.keys().map(String::as_str)).or_else(
                            || {
                                Some(
                                    "config keys are declared in `optimizers.default_config`"
                                        .into(),
                                )
                            },
                        ),
                    ),
                ),
                Some(d)
                    if std::mem::discriminant(d) != std::mem::discriminant(v)
                        && !matches!((d, v), (Scalar::Num(_), Scalar::Int(_))) =>
                {
                    diags.push(at.value(
                        Diagnostic::error(format!(
                            "config `{k}` has a different type than in `default_config`"
                        )),
                        &kptr,
                    ))
                }
                Some(_) => {
                    config.insert(k.clone(), v.clone());
                }
            }
        }
        let variant = if entry.variants.is_empty() {
            if let Some(v) = &c.variant {
                diags.push(
                    at.value(
                        Diagnostic::error(format!(
                            "optimizer `{}` has no variants, but `{v}` is given",
                            c.optimizer
                        )),
                        &format!("{ptr}/variant"),
                    )
                    .with_help("remove `variant`, or declare `variants` for it in the catalog"),
                );
            }
            None
        } else {
            let given = c.variant.clone().or_else(|| match config.get(key) {
                Some(Scalar::Str(s)) => Some(s.clone()),
                _ => None,
            });
            match given {
                Some(v) if entry.variants.contains(&v) => {
                    config.insert(key.clone(), Scalar::Str(v.clone()));
                    Some(v)
                }
                Some(v) => {
                    diags.push(
                        at.value(
                            Diagnostic::error(format!(
                                "optimizer `{}` has no variant `{v}`",
                                c.optimizer
                            )),
                            &format!("{ptr}/variant"),
                        )
                        .with_help_opt(
                            did_you_mean(&v, entry.variants.iter().map(String::as_str)).or_else(
                                || Some(format!("variants: {}", entry.variants.join(", "))),
                            ),
                        ),
                    );
                    None
                }
                None => None,
            }
        };
        let (mut usd, mut min, mut mult, mut params) = (0.0, 0.0, 1.0, BTreeMap::new());
        if let Some(cost) = self.cost {
            match cost.optimizers.get(&c.optimizer) {
                Some(oc) => {
                    usd = oc.usd_per_100;
                    min = oc.minutes_per_100;
                    params = oc.params.clone();
                    if let Some(v) = &variant {
                        mult = oc.variant_multipliers.get(v).copied().unwrap_or(1.0);
                    }
                }
                None => return None, // reported once by the cost checks
            }
        }
        if diags.len() > before {
            return None;
        }
        let label = match &variant {
            Some(v) => format!("{} ({v})", c.optimizer),
            None => c.optimizer.clone(),
        };
        let json_optimizer = serde_json::to_string(&c.optimizer)
            .unwrap_or_default()
            .into();
        let json_config = serde_json::to_string(&config).unwrap_or_default().into();
        Some(Arc::new(Resolved {
            json_optimizer,
            json_config,
            optimizer: c.optimizer.as_str().into(),
            label: label.as_str().into(),
            variant: variant.map(|v| v.as_str().into()),
            config: Arc::new(config),
            cost_factor: usd * mult,
            time_base: (min * mult).trunc(),
            params,
            usd_per_100: usd,
            minutes_per_100: min,
            variant_multiplier: mult,
        }))
    }
}

/// Places a template error inside the template's scalar when the scalar is on one line.
fn template(
    text: &str,
    ptr: &str,
    at: Located<'_>,
    ctx: &ContextModel,
    extras: &[&str],
    diags: &mut Vec<Diagnostic>,
) -> Option<Template> {
    match Template::compile(text, ctx, extras) {
        Ok(t) => Some(t),
        Err(e) => {
            let pos = at.spans.exact(ptr).map(|n| {
                let prefix = &text[..e.offset.min(text.len())];
                match n.style {
                    ScalarStyle::Plain if !prefix.contains('\n') => {
                        Pos::new(n.pos.line, n.pos.col + prefix.chars().count(), 1)
                    }
                    ScalarStyle::Quoted if !prefix.contains('\n') => {
                        Pos::new(n.pos.line, n.pos.col + 1 + prefix.chars().count(), 1)
                    }
                    _ => n.pos,
                }
            });
            diags.push(
                Diagnostic::error(e.message)
                    .at(&at.file.path, pos.or_else(|| at.spans.value(ptr)))
                    .with_help_opt(e.help),
            );
            None
        }
    }
}

#[allow(clippy::too_many_lines)]
fn semantic<'a>(
    files: &'a [SourceFile],
    s: &Sections<'a>,
    fixtures: &[(Located<'a>, usize, super::spec::Fixture)],
    coverage: Option<Arc<Recorder>>,
    diags: &mut Vec<Diagnostic>,
) -> Option<RuleSet> {
    let ctx = s.context.as_ref().and_then(|c| compile_context(c, diags));
    let scripts_files: Vec<&SourceFile> = files.iter().filter(|f| is_rhai(&f.path)).collect();
    let empty_ctx;
    let ctx_for_scripts = match &ctx {
        Some(c) => c,
        None => {
            empty_ctx = ContextModel::new(
                Vec::new(),
                WellKnown {
                    trainset_size: 0,
                    budget_usd: 0,
                    domain: 0,
                    model: 0,
                },
            );
            &empty_ctx
        }
    };
    let scripts = Arc::new(match coverage {
        None => ScriptHost::new(&scripts_files, ctx_for_scripts, diags),
        Some(rec) => ScriptHost::instrumented(&scripts_files, ctx_for_scripts, diags, rec),
    });
    let script_fns = scripts.functions();

    // Catalog and default config.
    let resolver = s.optimizers.as_ref().map(|o| {
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
    });

    // Cost model.
    let cost_model = s.cost.as_ref().map(|c| {
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
    });

    // Selection rules.
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
            let cond = condition::compile(
                &rule.when,
                &format!("{ptr}/when"),
                &at,
                ctx,
                &scripts,
                diags,
            );
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

    // Confidence and alternatives.
    let confidence = match (&s.confidence, &resolver) {
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
    };

    // Budget guard.
    let guard = match (&s.guard, &resolver, &ctx) {
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
    };

    // Training.
    if let Some(t) = &s.training {
        if t.value.bands.medium > t.value.bands.high {
            diags.push(t.at.value(
                Diagnostic::error("the medium band starts above the high band"),
                "/training/bands/medium",
            ));
        }
        for name in t.value.quality_parts.keys() {
            if !super::spec::SUB_SCORES.contains(&name.as_str()) {
                let mut d = Diagnostic::error(format!("unknown quality part `{name}`"));
                d.help =
                    crate::diagnostic::did_you_mean(name, super::spec::SUB_SCORES.iter().copied())
                        .or_else(|| {
                            Some(format!(
                                "quality parts: {}",
                                super::spec::SUB_SCORES.join(", ")
                            ))
                        });
                diags.push(t.at.key(d, &format!("/training/quality_parts/{name}")));
            }
        }
    }

    // Fixtures.
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

    let monotone_in = ctx
        .as_ref()
        .map(|c| monotone_fields(s.analysis.as_ref(), c, diags))
        .unwrap_or_default();

    let mut paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
    paths.sort();
    let (ctx, resolver, cost, confidence, guard, fallback, training) = (
        ctx?,
        resolver?,
        cost_model?,
        confidence?,
        guard?,
        fallback?,
        s.training.as_ref()?,
    );
    let runs_rhai = cost.script.is_some()
        || rules
            .iter()
            .chain(std::iter::once(&fallback))
            .any(|r| r.pred.as_ref().is_some_and(|p| p.has_expr()));
    Some(RuleSet {
        runs_rhai,
        revision: revision(files).into(),
        files: paths,
        context: ctx,
        catalog: resolver.opts.catalog.clone(),
        default_config: resolver.default_config.clone(),
        variant_key: resolver.opts.variant_key.clone(),
        rules,
        fallback,
        cost,
        confidence,
        guard,
        training: training.value.clone(),
        fixtures: fixture_defs,
        scripts,
        warnings: Vec::new(),
        monotone_in,
    })
}

/// The fields of `analysis.monotone_in` (default: budget and trainset size), which must be
/// number fields of the context.
fn monotone_fields(
    sec: Option<&Section<'_, AnalysisSpec>>,
    ctx: &ContextModel,
    diags: &mut Vec<Diagnostic>,
) -> Vec<usize> {
    let Some(sec) = sec else {
        return vec![ctx.known.budget_usd, ctx.known.trainset_size];
    };
    let mut out = Vec::new();
    for (i, name) in sec.value.monotone_in.iter().enumerate() {
        let ptr = format!("/analysis/monotone_in/{i}");
        match ctx.index_of(name) {
            None => diags.push(
                sec.at
                    .value(
                        Diagnostic::error(format!("`monotone_in` names unknown field `{name}`")),
                        &ptr,
                    )
                    .with_help_opt(did_you_mean(
                        name,
                        ctx.fields().iter().map(|f| f.name.as_ref()),
                    )),
            ),
            Some(idx) if !ctx.fields()[idx].spec.kind.is_numeric() => diags.push(
                sec.at
                    .value(
                        Diagnostic::error(format!(
                            "`monotone_in` needs number fields; `{name}` is a {} field",
                            ctx.fields()[idx].spec.kind.name()
                        )),
                        &ptr,
                    )
                    .with_help("list integer or number fields"),
            ),
            Some(idx) if out.contains(&idx) => {}
            Some(idx) => out.push(idx),
        }
    }
    out
}

/// A text as a JSON string literal, escaped once at build time for the hot path.
fn json_text(s: &str) -> Box<str> {
    serde_json::to_string(s).unwrap_or_default().into()
}
