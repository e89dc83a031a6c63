//! Builds a [`RuleSet`] from source files: parse, schema-validate, merge sections, check
//! semantics, compile conditions, templates and scripts. Every problem is collected.

use super::condition::child;
use super::context::{ContextModel, Field, Value, WellKnown};
use super::instrument::Recorder;
use super::schema;
use super::script::ScriptHost;
use super::spec::{
    AnalysisSpec, ConfidenceSpec, ContextSpec, CostSpec, FieldType, GuardSpec, OptimizersSpec,
    RuleFile, Scalar, SelectionSpec, TrainingSpec,
};
use super::template::Template;
use super::yaml::{self, Parsed, ScalarStyle};
use super::{Located, RuleSet};
use crate::diagnostic::{did_you_mean, has_errors, Diagnostic, Pos, SourceFile};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

mod resolve;
mod sections;

use resolve::Resolver;

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

    let resolver = sections::catalog(s, diags);
    let cost_model = sections::cost(s, resolver.as_ref(), &script_fns, diags);
    let (rules, fallback) =
        sections::selection(s, ctx.as_ref(), resolver.as_ref(), &scripts, diags);
    let confidence = sections::confidence(s, resolver.as_ref(), diags);
    let guard = sections::guard(s, resolver.as_ref(), ctx.as_ref(), diags);
    sections::training(s, diags);
    let fixture_defs = sections::fixtures(fixtures, s, ctx.as_ref(), resolver.as_ref(), diags);

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
