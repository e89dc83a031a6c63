//! The Rhai sandbox: one function builds the engine with its limits; scripts compile once per
//! rule-set build; a script that exceeds its budget is an evaluation error, never a hang.
//!
//! Scripts cannot touch files, network or the clock: the crate is built with Rhai's
//! `no_module` and `no_time` features, `print`/`debug` are silenced and `eval` is disabled.

use super::context::{ContextModel, Value};
use super::instrument::{self, Recorder};
use super::origin::Origin;
use crate::diagnostic::{did_you_mean, Diagnostic, Pos, SourceFile};
use rhai::{Dynamic, Engine, EvalAltResult, ParseErrorType, Scope, AST};
use std::collections::HashMap;
use std::sync::Arc;

/// Evaluation limits of the sandbox.
pub mod limits {
    /// Operations one evaluation may take before it is stopped.
    pub const MAX_OPERATIONS: u64 = 100_000;
    /// Nested function calls.
    pub const MAX_CALL_LEVELS: usize = 32;
    /// Expression nesting at global level.
    pub const MAX_EXPR_DEPTH: usize = 64;
    /// Expression nesting inside functions.
    pub const MAX_FN_EXPR_DEPTH: usize = 32;
    /// Characters in a string.
    pub const MAX_STRING_SIZE: usize = 10_000;
    /// Items in an array.
    pub const MAX_ARRAY_SIZE: usize = 10_000;
    /// Entries in a map.
    pub const MAX_MAP_SIZE: usize = 1_000;
}

/// Builds the sandboxed Rhai engine used for every script of a rule set.
pub fn sandbox_engine() -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(limits::MAX_OPERATIONS)
        .set_max_call_levels(limits::MAX_CALL_LEVELS)
        .set_max_expr_depths(limits::MAX_EXPR_DEPTH, limits::MAX_FN_EXPR_DEPTH)
        .set_max_string_size(limits::MAX_STRING_SIZE)
        .set_max_array_size(limits::MAX_ARRAY_SIZE)
        .set_max_map_size(limits::MAX_MAP_SIZE)
        .set_strict_variables(true)
        .disable_symbol("eval");
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    // Time limits (see `deadline`): the token says which one stopped the script.
    engine.on_progress(|ops| super::deadline::progress(ops).map(Dynamic::from));
    engine
}

/// An error raised while running a script.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptError {
    /// Lower-case message.
    pub message: String,
    /// Advice.
    pub help: Option<String>,
    /// File of the failing code.
    pub file: String,
    /// Position in `file`.
    pub pos: Pos,
}

impl ScriptError {
    /// As a diagnostic.
    pub fn to_diagnostic(&self) -> Diagnostic {
        Diagnostic::error(self.message.clone())
            .at(&self.file, Some(self.pos))
            .with_help_opt(self.help.clone())
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The compiled scripts of a rule set: the engine and the function library of `.rhai` files.
pub struct ScriptHost {
    engine: Engine,
    lib: AST,
    scope_names: Vec<String>,
    /// The `.rhai` file of each function. Rhai loses a function's source when libraries are
    /// merged, so an error inside a function is placed with this instead.
    fn_files: HashMap<String, String>,
    /// Set in a coverage build only: what ran.
    coverage: Option<Arc<Recorder>>,
}

impl std::fmt::Debug for ScriptHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptHost").finish_non_exhaustive()
    }
}

/// A compiled Rhai expression with its origin.
#[derive(Debug, Clone)]
pub struct CompiledExpr {
    ast: AST,
    /// Where the expression is written.
    pub origin: Origin,
}

impl ScriptHost {
    /// Compiles every `.rhai` file into one function library. Top-level statements are
    /// dropped: a script file defines functions for rules and the cost model to call.
    pub fn new(
        scripts: &[&SourceFile],
        context: &ContextModel,
        diags: &mut Vec<Diagnostic>,
    ) -> Self {
        Self::build(scripts, context, diags, None)
    }

    /// Like [`ScriptHost::new`], for a coverage build: every function body records its
    /// execution in `rec` (see [`super::instrument`]), and so does every `expr` condition
    /// compiled with this host.
    pub fn instrumented(
        scripts: &[&SourceFile],
        context: &ContextModel,
        diags: &mut Vec<Diagnostic>,
        rec: Arc<Recorder>,
    ) -> Self {
        Self::build(scripts, context, diags, Some(rec))
    }

    fn build(
        scripts: &[&SourceFile],
        context: &ContextModel,
        diags: &mut Vec<Diagnostic>,
        coverage: Option<Arc<Recorder>>,
    ) -> Self {
        let mut engine = sandbox_engine();
        if let Some(rec) = &coverage {
            let rec = Arc::clone(rec);
            engine.register_fn(instrument::HIT_FN, move |site: i64| {
                rec.hit(usize::try_from(site).unwrap_or(usize::MAX));
            });
        }
        let mut lib = AST::empty();
        let mut fn_files = HashMap::new();
        for file in scripts {
            match engine.compile(&file.text) {
                Ok(ast) => {
                    let ast = match &coverage {
                        Some(rec) => instrumented_ast(&engine, file, ast, rec),
                        None => ast,
                    };
                    // Only functions are kept; top-level statements would never run.
                    let mut ast = ast.clone_functions_only();
                    ast.set_source(file.path.as_str());
                    for f in ast.iter_functions() {
                        fn_files.insert(f.name.to_string(), file.path.clone());
                    }
                    lib = lib.merge(&ast);
                }
                Err(e) => diags.push(
                    Diagnostic::error(format!(
                        "rhai syntax error: {}",
                        lower_first(&e.err_type().to_string())
                    ))
                    .at(&file.path, Some(Origin::file(&file.path).map(e.position()))),
                ),
            }
        }
        let scope_names = context
            .fields()
            .iter()
            .map(|f| f.name.to_string())
            .collect();
        Self {
            engine,
            lib,
            scope_names,
            fn_files,
            coverage,
        }
    }

    /// The recorder of a coverage build; `None` in a normal build.
    pub fn coverage(&self) -> Option<&Arc<Recorder>> {
        self.coverage.as_ref()
    }

    /// Names and arities of the script functions.
    pub fn functions(&self) -> Vec<(String, usize)> {
        self.lib
            .iter_functions()
            .map(|f| (f.name.to_string(), f.params.len()))
            .collect()
    }

    /// The names of the context fields, for compiling. They must be plain variables, not
    /// constants: Rhai's optimizer would otherwise fold the placeholder `()` into the AST and
    /// every expression would see every field as `()`.
    fn template_scope(&self) -> Scope<'static> {
        let mut scope = Scope::new();
        for n in &self.scope_names {
            scope.push_dynamic(n.clone(), Dynamic::UNIT);
        }
        scope
    }

    /// Compiles an expression over the context fields (unknown variables are errors).
    pub fn compile_expr(&self, code: &str, origin: Origin) -> Result<CompiledExpr, Diagnostic> {
        let scope = self.template_scope();
        match self.engine.compile_expression_with_scope(&scope, code) {
            Ok(ast) => Ok(CompiledExpr {
                ast: self.lib.clone_functions_only().merge(&ast),
                origin,
            }),
            Err(e) => {
                let at = Some(origin.map(e.position()));
                if let ParseErrorType::VariableUndefined(name) = e.err_type() {
                    let fields = || {
                        format!(
                            "expressions can use the context fields: {}",
                            self.scope_names.join(", ")
                        )
                    };
                    return Err(Diagnostic::error(format!(
                        "expression uses unknown variable `{name}`"
                    ))
                    .at(&origin.file, at)
                    .with_help(
                        did_you_mean(name, self.scope_names.iter().map(String::as_str))
                            .unwrap_or_else(fields),
                    ));
                }
                let msg = lower_first(&e.err_type().to_string());
                Err(Diagnostic::error(format!("rhai syntax error: {msg}"))
                    .at(&origin.file, at)
                    .with_help_opt(origin.folded_note()))
            }
        }
    }

    fn scope_for(&self, values: &[Value]) -> Scope<'static> {
        let mut scope = Scope::new();
        for (n, v) in self.scope_names.iter().zip(values) {
            scope.push_constant_dynamic(n.clone(), to_dynamic(v));
        }
        scope
    }

    /// Evaluates a boolean expression against checked input values.
    pub fn eval_bool(&self, expr: &CompiledExpr, values: &[Value]) -> Result<bool, ScriptError> {
        let mut scope = self.scope_for(values);
        let out = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut scope, &expr.ast)
            .map_err(|e| self.error(&e, &expr.origin))?;
        out.as_bool().map_err(|t| ScriptError {
            message: format!("expression must return a boolean, returned {t}"),
            help: Some("use a comparison such as `trainset_size < 100`".into()),
            file: expr.origin.file.clone(),
            pos: expr.origin.start,
        })
    }

    /// Calls a library function with three map arguments and returns its result.
    pub fn call(
        &self,
        name: &str,
        args: (rhai::Map, rhai::Map, rhai::Map),
        origin: &Origin,
    ) -> Result<Dynamic, ScriptError> {
        let mut scope = Scope::new();
        self.engine
            .call_fn::<Dynamic>(&mut scope, &self.lib, name, args)
            .map_err(|e| self.error(&e, origin))
    }

    fn error(&self, err: &EvalAltResult, origin: &Origin) -> ScriptError {
        // Walk into function calls to find where it really failed.
        let mut err = err;
        let mut source: Option<String> = None;
        while let EvalAltResult::ErrorInFunctionCall(name, src, inner, _) = err {
            if let Some(file) = self.fn_files.get(name) {
                source = Some(file.clone());
            } else if !src.is_empty() {
                source = Some(src.clone());
            }
            err = inner;
        }
        let pos = err.position();
        let in_expr = !matches!(&source, Some(src) if *src != origin.file);
        let (file, pos) = match source {
            Some(src) if src != origin.file => {
                let o = Origin::file(&src);
                (src, o.map(pos))
            }
            _ => (origin.file.clone(), origin.map(pos)),
        };
        let (message, help) = match err {
            EvalAltResult::ErrorTooManyOperations(_) => (
                format!(
                    "script exceeded its budget of {} operations",
                    limits::MAX_OPERATIONS
                ),
                Some(
                    "look for a loop that never ends, here or in a script function called from here"
                        .to_string(),
                ),
            ),
            EvalAltResult::ErrorTerminated(token, _)
                if token.clone().into_string().ok().as_deref()
                    == Some(super::deadline::OVERALL_TOKEN) =>
            {
                (
                    "script stopped: the rule analysis ran out of its time budget".to_string(),
                    Some("the findings cover the inputs evaluated before that".to_string()),
                )
            }
            EvalAltResult::ErrorTerminated(_, _) => (
                format!(
                    "script stopped after {} ms, its time limit",
                    super::deadline::budget_ms()
                ),
                Some(
                    "a step over a large array or string is slow even within the operation budget; make the script cheaper (the server's limit is `rules.eval_timeout_ms`, the CLI's 1 s)"
                        .to_string(),
                ),
            ),
            EvalAltResult::ErrorStackOverflow(_) => (
                format!(
                    "script exceeded the call depth limit of {}",
                    limits::MAX_CALL_LEVELS
                ),
                Some(
                    "look for recursion without a base case in the script functions called from here"
                        .to_string(),
                ),
            ),
            other => {
                let text = other.to_string();
                let text = match text.find(" (line ") {
                    Some(i) => text[..i].to_string(),
                    None => text,
                };
                let help = if in_expr { origin.folded_note() } else { None };
                (format!("script error: {}", lower_first(&text)), help)
            }
        };
        ScriptError {
            message,
            help,
            file,
            pos,
        }
    }
}

/// The instrumented copy of a compiled `.rhai` file, with its functions registered in `rec`;
/// the original when the copy does not define exactly the same functions.
fn instrumented_ast(engine: &Engine, file: &SourceFile, original: AST, rec: &Recorder) -> AST {
    let signature = |ast: &AST| {
        let mut v: Vec<(String, usize)> = ast
            .iter_functions()
            .map(|f| (f.name.to_string(), f.params.len()))
            .collect();
        v.sort();
        v
    };
    let wanted = signature(&original);
    let copy = instrument::definitions(&file.text).and_then(|defs| {
        let mut found: Vec<(String, usize)> =
            defs.iter().map(|d| (d.name.clone(), d.arity)).collect();
        found.sort();
        if found != wanted {
            return None;
        }
        // The sites are registered only once the copy is known to be good; the build is
        // single-threaded, so the numbers they will get are the next ones.
        let first = rec.len();
        let ids: Vec<usize> = (first..first + defs.len()).collect();
        let ast = engine
            .compile(instrument::rewrite(&file.text, &defs, &ids))
            .ok()?;
        if signature(&ast) != wanted {
            return None;
        }
        for d in &defs {
            rec.add_fn(&d.name, d.arity, &file.path, d.line, true);
        }
        Some(ast)
    });
    match copy {
        Some(ast) => ast,
        None => {
            for (name, arity) in &wanted {
                rec.add_fn(name, *arity, &file.path, 1, false);
            }
            original
        }
    }
}

/// Converts a context value for Rhai.
pub fn to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Int(i) => Dynamic::from_int(*i),
        Value::Num(n) => Dynamic::from_float(*n),
        Value::Str(s) => Dynamic::from(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runaway_loop_is_stopped() {
        let engine = sandbox_engine();
        let r = engine.eval::<i64>("let x = 0; loop { x += 1; } x");
        assert!(matches!(
            *r.unwrap_err(),
            EvalAltResult::ErrorTooManyOperations(_)
        ));
    }

    #[test]
    fn endless_recursion_is_stopped() {
        let engine = sandbox_engine();
        let r = engine.eval::<i64>("fn f(n) { f(n + 1) } f(0)");
        let e = r.unwrap_err();
        let mut inner = &*e;
        while let EvalAltResult::ErrorInFunctionCall(_, _, i, _) = inner {
            inner = i;
        }
        assert!(
            matches!(inner, EvalAltResult::ErrorStackOverflow(_)),
            "{e:?}"
        );
    }

    #[test]
    fn expressions_see_the_input_values() {
        use crate::rules::context::{Field, WellKnown};
        use crate::rules::spec::{FieldSpec, FieldType};
        let field = |name: &str| Field {
            name: name.into(),
            spec: FieldSpec {
                kind: FieldType::Integer,
                required: false,
                default: None,
                min: None,
                max: None,
                aliases: Vec::new(),
                labels: Default::default(),
                one_of: None,
                description: None,
            },
            default: Value::Null,
        };
        let known = WellKnown {
            trainset_size: 0,
            budget_usd: 0,
            domain: 0,
            model: 0,
        };
        let ctx = ContextModel::new(vec![field("t"), field("u")], known);
        let lib = SourceFile::new("h.rhai", "fn big(n) { n >= 1000 }");
        let mut diags = Vec::new();
        let host = ScriptHost::new(&[&lib], &ctx, &mut diags);
        assert!(diags.is_empty(), "{diags:?}");
        let expr = host
            .compile_expr("big(t) && u == ()", Origin::file("x.yaml"))
            .unwrap();
        assert!(host
            .eval_bool(&expr, &[Value::Int(5000), Value::Null])
            .unwrap());
        assert!(!host
            .eval_bool(&expr, &[Value::Int(10), Value::Null])
            .unwrap());
        assert!(!host
            .eval_bool(&expr, &[Value::Int(5000), Value::Int(1)])
            .unwrap());
    }

    #[test]
    fn no_clock_and_no_eval() {
        let engine = sandbox_engine();
        assert!(engine.eval::<Dynamic>("timestamp()").is_err());
        assert!(engine.compile("eval(\"1\")").is_err());
    }
}
