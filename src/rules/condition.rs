//! Conditions compiled to native closures. Structured conditions (field comparisons with
//! all/any/not) never go through Rhai; `expr` conditions call the sandbox.
//!
//! Beside each closure the compiler keeps the condition's structure ([`Pred`]), which rule
//! analysis reads: which fields are compared with which constants. Evaluation never uses it.

use super::context::{Context, ContextModel, Field, Value};
use super::origin::Origin;
use super::script::{CompiledExpr, ScriptError, ScriptHost};
use super::spec::{Condition, FieldType, Scalar};
use super::yaml::escape_segment;
use super::Located;
use crate::decision::CondTrace;
use crate::diagnostic::{did_you_mean, Diagnostic};
use std::sync::Arc;

/// Where comparisons record what they saw, when a trace is asked for.
pub type TraceSink<'a> = Option<&'a mut Vec<CondTrace>>;

/// A compiled condition.
pub type CondFn = Arc<dyn Fn(&Context, TraceSink<'_>) -> Result<bool, ScriptError> + Send + Sync>;

/// A numeric comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumOp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// One comparison of a field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// `lt`, `le`, `gt`, `ge`.
    Num(NumOp, f64),
    /// `eq`.
    Eq(Value),
    /// `ne`.
    Ne(Value),
    /// `in`.
    In(Vec<Value>),
    /// `present`.
    Present(bool),
}

/// The structure of a compiled condition, for rule analysis.
#[derive(Debug, Clone, PartialEq)]
pub enum Pred {
    /// Every part holds.
    All(Vec<Pred>),
    /// At least one part holds.
    Any(Vec<Pred>),
    /// The part does not hold.
    Not(Box<Pred>),
    /// Every test holds for the field at `index` of the context.
    Field {
        /// Index of the field in the context model.
        index: usize,
        /// The comparisons.
        tests: Vec<Test>,
    },
    /// A Rhai expression: opaque to analysis.
    Expr,
}

impl Pred {
    /// Evaluates the structure on one value per context field: `None` when the answer
    /// depends on a Rhai expression (three-valued logic: a part that is false decides `all`,
    /// a part that is true decides `any`, whatever the expressions say).
    pub fn eval3(&self, values: &[Value]) -> Option<bool> {
        match self {
            Pred::All(parts) => {
                let mut known = true;
                for p in parts {
                    match p.eval3(values) {
                        Some(false) => return Some(false),
                        None => known = false,
                        Some(true) => {}
                    }
                }
                known.then_some(true)
            }
            Pred::Any(parts) => {
                let mut known = true;
                for p in parts {
                    match p.eval3(values) {
                        Some(true) => return Some(true),
                        None => known = false,
                        Some(false) => {}
                    }
                }
                known.then_some(false)
            }
            Pred::Not(p) => p.eval3(values).map(|b| !b),
            Pred::Field { index, tests } => {
                let v = values.get(*index).unwrap_or(&Value::Null);
                Some(tests.iter().all(|t| t.eval(v)))
            }
            Pred::Expr => None,
        }
    }

    /// True when a Rhai expression appears anywhere in the condition.
    pub fn has_expr(&self) -> bool {
        match self {
            Pred::All(parts) | Pred::Any(parts) => parts.iter().any(Pred::has_expr),
            Pred::Not(p) => p.has_expr(),
            Pred::Field { .. } => false,
            Pred::Expr => true,
        }
    }

    /// Calls `f(field index)` for every field comparison (once per comparison).
    pub fn fields(&self, f: &mut dyn FnMut(usize)) {
        match self {
            Pred::All(parts) | Pred::Any(parts) => parts.iter().for_each(|p| p.fields(f)),
            Pred::Not(p) => p.fields(f),
            Pred::Field { index, .. } => f(*index),
            Pred::Expr => {}
        }
    }

    /// Calls `f(field index, constant)` for every constant a comparison uses.
    pub fn constants(&self, f: &mut dyn FnMut(usize, &Value)) {
        match self {
            Pred::All(parts) | Pred::Any(parts) => {
                for p in parts {
                    p.constants(f);
                }
            }
            Pred::Not(p) => p.constants(f),
            Pred::Field { index, tests } => {
                for t in tests {
                    match t {
                        Test::Num(_, n) => f(*index, &Value::Num(*n)),
                        Test::Eq(v) | Test::Ne(v) => f(*index, v),
                        Test::In(vs) => vs.iter().for_each(|v| f(*index, v)),
                        Test::Present(_) => {}
                    }
                }
            }
            Pred::Expr => {}
        }
    }
}

/// A compiled condition: the closure that evaluates it and its structure.
#[derive(Clone)]
pub struct Compiled {
    /// Evaluates the condition.
    pub eval: CondFn,
    /// What it compares, for analysis.
    pub pred: Pred,
}

impl Test {
    fn name(&self) -> &'static str {
        match self {
            Test::Num(NumOp::Lt, _) => "lt",
            Test::Num(NumOp::Le, _) => "le",
            Test::Num(NumOp::Gt, _) => "gt",
            Test::Num(NumOp::Ge, _) => "ge",
            Test::Eq(_) => "eq",
            Test::Ne(_) => "ne",
            Test::In(_) => "in",
            Test::Present(_) => "present",
        }
    }

    fn expected(&self) -> serde_json::Value {
        match self {
            Test::Num(_, n) => Value::Num(*n).to_json(),
            Test::Eq(v) | Test::Ne(v) => v.to_json(),
            Test::In(vs) => vs.iter().map(Value::to_json).collect(),
            Test::Present(b) => (*b).into(),
        }
    }

    /// Whether the value passes (a missing value fails every test but `present: false`).
    #[inline]
    pub fn eval(&self, v: &Value) -> bool {
        match self {
            Test::Present(want) => (*v != Value::Null) == *want,
            _ if *v == Value::Null => false,
            Test::Num(op, lit) => match v.as_f64() {
                Some(x) => match op {
                    NumOp::Lt => x < *lit,
                    NumOp::Le => x <= *lit,
                    NumOp::Gt => x > *lit,
                    NumOp::Ge => x >= *lit,
                },
                None => false,
            },
            Test::Eq(lit) => same(v, lit),
            Test::Ne(lit) => !same(v, lit),
            Test::In(lits) => lits.iter().any(|l| same(v, l)),
        }
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Compiles the condition at `ptr`; problems are pushed to `diags` and `None` returned.
pub fn compile(
    cond: &Condition,
    ptr: &str,
    at: &Located<'_>,
    ctx: &ContextModel,
    scripts: &Arc<ScriptHost>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Compiled> {
    Compiler {
        at,
        ctx,
        scripts,
        diags,
    }
    .condition(cond, ptr)
}

/// What compiling the conditions of one file needs: where they are, the context model, the
/// script host, and where problems go.
struct Compiler<'a, 'f> {
    /// The file and its positions.
    at: &'a Located<'f>,
    /// The fields conditions compare.
    ctx: &'a ContextModel,
    /// The sandbox of `expr` conditions.
    scripts: &'a Arc<ScriptHost>,
    /// Problems found.
    diags: &'a mut Vec<Diagnostic>,
}

impl Compiler<'_, '_> {
    /// Compiles one condition of any form.
    fn condition(&mut self, cond: &Condition, ptr: &str) -> Option<Compiled> {
        self.check_form(cond, ptr)?;
        if let Some(items) = &cond.all {
            let (parts, preds) = self.list(items, ptr, "all")?;
            return Some(Compiled {
                eval: all_of(parts),
                pred: Pred::All(preds),
            });
        }
        if let Some(items) = &cond.any {
            let (parts, preds) = self.list(items, ptr, "any")?;
            return Some(Compiled {
                eval: any_of(parts),
                pred: Pred::Any(preds),
            });
        }
        if let Some(inner) = &cond.not {
            let Compiled { eval: inner, pred } = self.condition(inner, &format!("{ptr}/not"))?;
            let eval: CondFn = Arc::new(move |c: &Context, t: TraceSink<'_>| Ok(!inner(c, t)?));
            return Some(Compiled {
                eval,
                pred: Pred::Not(Box::new(pred)),
            });
        }
        if let Some(code) = &cond.expr {
            return self.expr(code, ptr);
        }
        self.field(cond, ptr)
    }

    /// A condition is exactly one form, and comparisons come with a `field`.
    fn check_form(&mut self, cond: &Condition, ptr: &str) -> Option<()> {
        let at = self.at;
        let forms: Vec<&str> = [
            ("all", cond.all.is_some()),
            ("any", cond.any.is_some()),
            ("not", cond.not.is_some()),
            ("field", cond.field.is_some()),
            ("expr", cond.expr.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, set)| set.then_some(n))
        .collect();
        let has_tests = cond.lt.is_some()
            || cond.le.is_some()
            || cond.gt.is_some()
            || cond.ge.is_some()
            || cond.eq.is_some()
            || cond.ne.is_some()
            || cond.one_of.is_some()
            || cond.present.is_some();
        if forms.len() != 1 {
            let msg = if forms.is_empty() {
                "condition is empty".to_string()
            } else {
                format!(
                    "condition mixes {}",
                    forms
                        .iter()
                        .map(|f| format!("`{f}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                )
            };
            self.diags.push(at.value(Diagnostic::error(msg), ptr).with_help(
                "a condition is exactly one of `all`, `any`, `not`, `field` (with lt/le/gt/ge/eq/ne/in/present) or `expr`",
            ));
            return None;
        }
        if has_tests && cond.field.is_none() {
            self.diags.push(
                at.value(Diagnostic::error("comparison without a `field`"), ptr)
                    .with_help("write `field: NAME` beside the comparison"),
            );
            return None;
        }
        Some(())
    }

    /// Compiles every part of an `all` or `any` (all of them, for their diagnostics); `None`
    /// when one failed.
    fn list(
        &mut self,
        items: &[Condition],
        ptr: &str,
        key: &str,
    ) -> Option<(Vec<CondFn>, Vec<Pred>)> {
        let compiled: Vec<Option<Compiled>> = items
            .iter()
            .enumerate()
            .map(|(i, c)| self.condition(c, &format!("{ptr}/{key}/{i}")))
            .collect();
        let parts = compiled.into_iter().collect::<Option<Vec<Compiled>>>()?;
        Some(
            parts
                .into_iter()
                .map(|c| (c.eval, c.pred))
                .unzip::<_, _, Vec<CondFn>, Vec<Pred>>(),
        )
    }

    /// An `expr` condition: a Rhai expression compiled in the sandbox.
    fn expr(&mut self, code: &str, ptr: &str) -> Option<Compiled> {
        let eptr = format!("{ptr}/expr");
        let span = self.at.spans.exact(&eptr)?;
        let origin = Origin::scalar(self.at.file, span);
        match self.scripts.compile_expr(code, origin) {
            Ok(expr) => Some(Compiled {
                eval: expr_closure(self.scripts, expr, code),
                pred: Pred::Expr,
            }),
            Err(d) => {
                self.diags.push(d);
                None
            }
        }
    }

    /// A field comparison: the field must be declared, every literal must fit its type.
    fn field(&mut self, cond: &Condition, ptr: &str) -> Option<Compiled> {
        let at = self.at;
        let name = cond.field.as_deref().unwrap_or_default();
        let fptr = format!("{ptr}/field");
        let Some(idx) = self.ctx.index_of(name) else {
            self.diags.push(
                at.value(
                    Diagnostic::error(format!("condition on unknown field `{name}`")),
                    &fptr,
                )
                .with_help_opt(
                    did_you_mean(name, self.ctx.fields().iter().map(|f| f.name.as_ref())).or_else(
                        || Some("declare the field under `context.fields` first".to_string()),
                    ),
                ),
            );
            return None;
        };
        let field = &self.ctx.fields()[idx];
        let before = self.diags.len();
        let mut tests = self.numeric_tests(cond, ptr, name, field.spec.kind);
        if let Some(l) = &cond.eq {
            tests.push(Test::Eq(self.literal(field, name, l, format!("{ptr}/eq"))));
        }
        if let Some(l) = &cond.ne {
            tests.push(Test::Ne(self.literal(field, name, l, format!("{ptr}/ne"))));
        }
        if let Some(ls) = &cond.one_of {
            let vals = ls
                .iter()
                .enumerate()
                .map(|(i, l)| self.literal(field, name, l, format!("{ptr}/in/{i}")))
                .collect();
            tests.push(Test::In(vals));
        }
        if let Some(p) = cond.present {
            tests.push(Test::Present(p));
        }
        if tests.is_empty() {
            self.diags.push(
                at.value(
                    Diagnostic::error(format!("condition on `{name}` has no comparison")),
                    ptr,
                )
                .with_help("add one of lt, le, gt, ge, eq, ne, in, present"),
            );
        }
        if self.diags.len() > before {
            return None;
        }
        let pred = Pred::Field {
            index: idx,
            tests: tests.clone(),
        };
        Some(Compiled {
            eval: field_closure(idx, field.name.clone(), tests),
            pred,
        })
    }

    /// The `lt`, `le`, `gt`, `ge` tests of a comparison on the field `name` (as written) of
    /// type `kind`, which must be numeric.
    fn numeric_tests(
        &mut self,
        cond: &Condition,
        ptr: &str,
        name: &str,
        kind: FieldType,
    ) -> Vec<Test> {
        let mut tests = Vec::new();
        for (key, lit) in [
            ("lt", cond.lt.map(|n| (NumOp::Lt, n))),
            ("le", cond.le.map(|n| (NumOp::Le, n))),
            ("gt", cond.gt.map(|n| (NumOp::Gt, n))),
            ("ge", cond.ge.map(|n| (NumOp::Ge, n))),
        ] {
            if let Some((op, n)) = lit {
                if !kind.is_numeric() {
                    self.diags.push(
                        self.at
                            .value(
                                Diagnostic::error(format!(
                                    "`{key}` compares numbers but `{name}` is a {} field",
                                    kind.name()
                                )),
                                &format!("{ptr}/{key}"),
                            )
                            .with_help("use `eq`, `ne` or `in` for this field"),
                    );
                }
                tests.push(Test::Num(op, n));
            }
        }
        tests
    }

    /// A literal of `eq`, `ne` or `in` as a value, checked against the type and allowed values
    /// of `field` (named `name` in the condition).
    fn literal(&mut self, field: &Field, name: &str, lit: &Scalar, lptr: String) -> Value {
        let at = self.at;
        let kind = field.spec.kind;
        let ok = matches!(
            (kind, lit),
            (
                FieldType::Integer | FieldType::Number,
                Scalar::Int(_) | Scalar::Num(_)
            ) | (FieldType::String, Scalar::Str(_))
                | (FieldType::Boolean, Scalar::Bool(_))
        );
        if !ok {
            self.diags.push(
                at.value(
                    Diagnostic::error(format!(
                        "comparing {} field `{name}` with {} `{}`",
                        kind.name(),
                        scalar_kind(lit),
                        Value::from_scalar(lit)
                    )),
                    &lptr,
                )
                .with_help(format!("compare `{name}` with a {} value", kind.name())),
            );
        } else if let (Some(allowed), Scalar::Str(s)) = (&field.spec.one_of, lit) {
            if !allowed.contains(s) {
                self.diags.push(
                    at.value(
                        Diagnostic::error(format!("`{name}` can never be `{s}`")),
                        &lptr,
                    )
                    .with_help_opt(
                        did_you_mean(s, allowed.iter().map(String::as_str))
                            .or_else(|| Some(format!("allowed values: {}", allowed.join(", ")))),
                    ),
                );
            }
        }
        Value::from_scalar(lit)
    }
}

/// The closure of `all`: true when every part is (stops at the first false).
fn all_of(parts: Vec<CondFn>) -> CondFn {
    Arc::new(move |c: &Context, mut t: TraceSink<'_>| {
        for p in &parts {
            if !p(c, t.as_deref_mut())? {
                return Ok(false);
            }
        }
        Ok(true)
    })
}

/// The closure of `any`: true when a part is (stops at the first true).
fn any_of(parts: Vec<CondFn>) -> CondFn {
    Arc::new(move |c: &Context, mut t: TraceSink<'_>| {
        for p in &parts {
            if p(c, t.as_deref_mut())? {
                return Ok(true);
            }
        }
        Ok(false)
    })
}

/// The closure of a field comparison: every test on the value of field `idx`, each recorded
/// in the trace when one is asked for.
fn field_closure(idx: usize, fname: Arc<str>, tests: Vec<Test>) -> CondFn {
    Arc::new(move |c: &Context, t: TraceSink<'_>| {
        let v = c.get(idx);
        match t {
            None => Ok(tests.iter().all(|test| test.eval(v))),
            Some(t) => {
                for test in &tests {
                    let r = test.eval(v);
                    t.push(CondTrace {
                        field: Some(fname.to_string()),
                        op: test.name().into(),
                        expected: test.expected(),
                        actual: v.to_json(),
                        result: r,
                    });
                    if !r {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        }
    })
}

/// The closure of an `expr` condition. A coverage build (see [`ScriptHost::coverage`]) gets
/// one that also records that the expression ran; a normal build never checks for it.
fn expr_closure(scripts: &Arc<ScriptHost>, expr: CompiledExpr, code: &str) -> CondFn {
    let site = scripts
        .coverage()
        .map(|rec| (Arc::clone(rec), rec.add_expr(&expr.origin, code)));
    let host = Arc::clone(scripts);
    let code: Arc<str> = code.into();
    let run = move |c: &Context, t: TraceSink<'_>| {
        let r = host.eval_bool(&expr, c.values())?;
        if let Some(t) = t {
            t.push(CondTrace {
                field: None,
                op: "expr".into(),
                expected: serde_json::Value::String(code.to_string()),
                actual: serde_json::Value::Null,
                result: r,
            });
        }
        Ok(r)
    };
    match site {
        None => Arc::new(run),
        Some((rec, site)) => Arc::new(move |c: &Context, t: TraceSink<'_>| {
            rec.hit(site);
            run(c, t)
        }),
    }
}

fn scalar_kind(s: &Scalar) -> &'static str {
    match s {
        Scalar::Bool(_) => "boolean",
        Scalar::Int(_) | Scalar::Num(_) => "number",
        Scalar::Str(_) => "string",
    }
}

/// Pointer of a map entry.
pub fn child(ptr: &str, key: &str) -> String {
    format!("{ptr}/{}", escape_segment(key))
}
