//! `skill-fleet optimize`: recommend (or take) an optimizer for a trainset, confirm, and create a
//! pending `optimization` job carrying the optimizer and its config.

use super::store_args::{open, resolve_path, DbArgs, Format};
use super::trainset::{filtered, read_trainset};
use super::{render, CliError, Exit};
use crate::diagnostic::did_you_mean;
use crate::engine::{self, Options};
use crate::store::job::NewJob;
use clap::Args;
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Arguments of `optimize`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  skill-fleet optimize --auto-select --trainset data/train.jsonl --budget 10 --dry-run\n  \
skill-fleet optimize --auto-select --trainset data/train.json --budget 50 --quality-target 0.9 --yes\n  \
skill-fleet optimize --optimizer gepa --trainset data/train.jsonl --yes"
)]
pub struct OptimizeArgs {
    /// Let the rules choose the optimizer.
    #[arg(long, conflicts_with = "optimizer")]
    pub auto_select: bool,
    /// Use this optimizer (from the rules' catalog) instead of auto-selecting.
    #[arg(long, value_name = "NAME", required_unless_present = "auto_select")]
    pub optimizer: Option<String>,
    /// Training examples: a JSON array, an object with `examples`, or JSON Lines.
    #[arg(long, value_name = "FILE")]
    pub trainset: PathBuf,
    /// Budget in USD.
    #[arg(long, value_name = "USD")]
    pub budget: Option<f64>,
    /// Quality target, 0..1.
    #[arg(long, value_name = "Q")]
    pub quality_target: Option<f64>,
    /// Time limit in minutes.
    #[arg(long, value_name = "MINUTES")]
    pub time_limit: Option<f64>,
    /// Model the optimizer will call (a row of the rules' price table).
    #[arg(long)]
    pub model: Option<String>,
    /// Task domain.
    #[arg(long)]
    pub domain: Option<String>,
    /// Who asks.
    #[arg(long)]
    pub user: Option<String>,
    /// Use every record of the trainset, not only those the training rules select.
    #[arg(long)]
    pub no_filter: bool,
    /// Create the job without asking.
    #[arg(long, short = 'y', conflicts_with = "dry_run")]
    pub yes: bool,
    /// Show the recommendation only; create nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Create the job through the running server at this URL (it logs the decision and owns
    /// the database) instead of writing the database: use this while `serve` runs.
    #[arg(long, value_name = "URL", env = "SKILL_FLEET_URL")]
    pub url: Option<String>,
    /// Then run the job at once: start `skill-fleet-worker --task TASK --job ID` (the Python
    /// worker of `python/`, on the PATH) against the server of --url, and wait for it. TASK
    /// names the DSPy task, e.g. `examples/dspy_task/skill_router.py:task`.
    #[arg(
        long,
        value_name = "TASK",
        requires = "url",
        conflicts_with = "dry_run"
    )]
    pub run: Option<String>,
    /// Database and format.
    #[command(flatten)]
    pub db: DbArgs,
}

/// The optimizer a job runs and what the payload says about how it was chosen.
struct Choice {
    /// The optimizer's name.
    optimizer: String,
    /// Its config.
    config: Value,
    /// The decision as JSON, for an auto-selection.
    decision: Option<Value>,
    /// The request and decision of an auto-selection, logged when the job is created.
    logged: Option<(Value, crate::decision::Decision)>,
}

/// Runs `optimize`: from the trainset to the created job.
pub fn run(
    a: OptimizeArgs,
    rules_dir: &Path,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    let records = read_records(&a.trainset)?;
    let (files, rs) = build_rules(rules_dir)?;
    let selected_ids = if a.no_filter {
        None
    } else {
        let db = Some(resolve_path(a.db.db.as_deref())?);
        filtered(&records, db.as_deref(), &rs.training, err)
    };
    let size = selected_size(&a.trainset, &rs, selected_ids.as_deref(), records.len())?;
    let trainset_line = format!(
        "trainset      {} ({size} examples{})",
        a.trainset.display(),
        if selected_ids.is_some() {
            format!(" selected of {}", records.len())
        } else {
            String::new()
        }
    );
    let mut choice = if a.auto_select {
        auto_select(&a, &rs, &files, size, &trainset_line, out)?
    } else {
        by_hand(&a, &rs, &trainset_line, out)?
    };
    let optimizer = choice.optimizer.clone();
    // The variant (e.g. MIPROv2's `auto` level) only for optimizers that have variants.
    let variant = rs
        .catalog
        .get(&optimizer)
        .filter(|spec| !spec.variants.is_empty())
        .and_then(|_| choice.config.get(&rs.variant_key))
        .and_then(Value::as_str)
        .map(str::to_string);
    let payload = json!({
        "optimizer": optimizer,
        "config": choice.config,
        "trainset": a.trainset.display().to_string(),
        "trainset_size": size,
        "trainset_records": records.len(),
        "selected_example_ids": selected_ids,
        "auto_selected": a.auto_select,
        "variant": variant,
        "rules_revision": &*rs.revision,
        "decision": choice.decision,
    });
    if a.dry_run {
        print_dry_run(&payload, a.db.format, out);
        return Ok(Exit::Ok);
    }
    if !a.yes && !confirmed(&optimizer, input, err)? {
        return Ok(Exit::Ok);
    }
    let task = format!(
        "optimize with {optimizer} on {} ({size} examples)",
        a.trainset.display()
    );
    if let Some(url) = &a.url {
        let input = choice.logged.as_ref().map(|(input, _)| input.clone());
        let job = create_through_server(url, input, payload, task, &a, out, err)?;
        return match &a.run {
            Some(task) => run_worker(url, task, job["id"].as_str().unwrap_or_default(), err),
            None => Ok(Exit::Ok),
        };
    }
    let logged = choice.logged.as_mut();
    create_in_db(&a, logged, payload, task, variant.as_deref(), out)
}

/// The records of the trainset; an empty one is refused.
fn read_records(trainset: &Path) -> Result<Vec<Value>, CliError> {
    let records = read_trainset(trainset)?;
    if records.is_empty() {
        return Err(CliError::input(format!(
            "trainset `{}` has no examples",
            trainset.display()
        )));
    }
    Ok(records)
}

/// Reads and builds the rule set, with its source files for the diagnostics.
fn build_rules(
    rules_dir: &Path,
) -> Result<(Vec<crate::diagnostic::SourceFile>, crate::rules::RuleSet), CliError> {
    let files = crate::loader::read_dir(rules_dir)?;
    match crate::rules::build(&files) {
        Ok(rs) => Ok((files, rs)),
        Err(d) => Err(CliError::rules(d, files)),
    }
}

/// The number of examples the job trains on; a filter that keeps none is refused.
fn selected_size(
    trainset: &Path,
    rs: &crate::rules::RuleSet,
    selected_ids: Option<&[String]>,
    records: usize,
) -> Result<usize, CliError> {
    match selected_ids {
        Some([]) => Err(CliError::input(format!(
            "no example of `{}` passes the training filter (minimum score {})",
            trainset.display(),
            rs.training.filter.min_score
        ))
        .help("improve the examples, or pass --no-filter to use them all")),
        Some(ids) => Ok(ids.len()),
        None => Ok(records),
    }
}

/// `--auto-select`: the rules recommend the optimizer for the request the flags describe.
fn auto_select(
    a: &OptimizeArgs,
    rs: &crate::rules::RuleSet,
    files: &[crate::diagnostic::SourceFile],
    size: usize,
    trainset_line: &str,
    out: &mut dyn Write,
) -> Result<Choice, CliError> {
    let mut m = serde_json::Map::new();
    m.insert("trainset_size".into(), size.into());
    if let Some(b) = a.budget {
        m.insert("budget_usd".into(), b.into());
    }
    if let Some(q) = a.quality_target {
        m.insert("quality_target".into(), q.into());
    }
    if let Some(l) = a.time_limit {
        m.insert("time_constraint_minutes".into(), l.into());
    }
    if let Some(model) = &a.model {
        m.insert("model".into(), model.clone().into());
    }
    if let Some(d) = &a.domain {
        m.insert("domain".into(), d.clone().into());
    }
    let ctx = rs
        .check_input(&m)
        .map_err(|errors| CliError::invalid_input(errors, None))?;
    let d = engine::recommend(rs, &ctx, &[], Options::default())
        .map_err(|e| CliError::rules(vec![e.to_diagnostic()], files.to_vec()))?;
    if a.db.format == Format::Human {
        let _ = writeln!(out, "{trainset_line}");
        let _ = write!(out, "{}", render::decision(&d));
    }
    Ok(Choice {
        optimizer: d.recommended.to_string(),
        config: serde_json::to_value(&*d.config).unwrap_or(Value::Null),
        decision: Some(serde_json::to_value(&d).unwrap_or(Value::Null)),
        logged: Some((Value::Object(m), d)),
    })
}

/// `--optimizer NAME`: the named optimizer (it must be in the catalog) with the default config.
fn by_hand(
    a: &OptimizeArgs,
    rs: &crate::rules::RuleSet,
    trainset_line: &str,
    out: &mut dyn Write,
) -> Result<Choice, CliError> {
    let name = a.optimizer.clone().unwrap_or_default();
    if !rs.catalog.contains_key(&name) {
        let help =
            did_you_mean(&name, rs.catalog.keys().map(String::as_str)).unwrap_or_else(|| {
                format!(
                    "optimizers: {}",
                    rs.catalog.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            });
        return Err(CliError::input(format!("unknown optimizer `{name}`")).help(help));
    }
    if a.db.format == Format::Human {
        let _ = writeln!(out, "{trainset_line}");
        let _ = writeln!(out, "optimizer     {name} (chosen by hand)");
    }
    Ok(Choice {
        optimizer: name,
        config: serde_json::to_value(&*rs.default_config).unwrap_or(Value::Null),
        decision: None,
        logged: None,
    })
}

/// `--dry-run`: the payload the job would carry (JSON), or a line saying nothing was created.
fn print_dry_run(payload: &Value, format: Format, out: &mut dyn Write) {
    if format == Format::Json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({"dry_run": true, "payload": payload}))
                .unwrap_or_default()
        );
    } else {
        let _ = writeln!(out, "dry run: no job created");
    }
}

/// Asks on a terminal whether to create the job; without a terminal (and no `--yes`) refuses.
fn confirmed(
    optimizer: &str,
    input: &mut dyn BufRead,
    err: &mut dyn Write,
) -> Result<bool, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(
            "refusing to create the job without --yes: standard input is not a terminal",
        )
        .help("pass --yes to create it, or --dry-run to stop after the recommendation"));
    }
    let _ = write!(err, "Create the optimization job with {optimizer}? [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    let _ = input.read_line(&mut answer);
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        let _ = writeln!(err, "no job created");
        return Ok(false);
    }
    Ok(true)
}

/// Creates the job in the database (after logging an auto-selected decision, whose id the
/// payload then carries).
fn create_in_db(
    a: &OptimizeArgs,
    logged: Option<&mut (Value, crate::decision::Decision)>,
    mut payload: Value,
    task: String,
    variant: Option<&str>,
    out: &mut dyn Write,
) -> Result<Exit, CliError> {
    let path = resolve_path(a.db.db.as_deref())?;
    let store = open(&path, true)?;
    if let Some((input, d)) = logged {
        match log_decision(&store, input, d, variant) {
            Ok(id) => {
                payload["decision_id"] = id.into();
                payload["decision"]["decision_id"] = id.into();
            }
            Err(e) => {
                let _ = store.close();
                return Err(CliError::io(format!("cannot log the decision: {e}")));
            }
        }
    }
    let created = store.create(NewJob {
        job_type: "optimization".into(),
        user_id: a.user.clone(),
        task,
        payload: Some(payload),
        ..NewJob::default()
    });
    let _ = store.close();
    let (job, _) = created?;
    let job = serde_json::to_value(&job).unwrap_or_default();
    print_created(
        &job,
        a.db.format,
        &format!("in `{}`", crate::store::display_location(&path)),
        out,
    );
    Ok(Exit::Ok)
}

/// Prints a created job: its JSON, or one line saying where it was created.
fn print_created(job: &Value, format: Format, place: &str, out: &mut dyn Write) {
    if format == Format::Json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(job).unwrap_or_default()
        );
    } else {
        let _ = writeln!(
            out,
            "created job {} (pending) {place}",
            job["id"].as_str().unwrap_or("?")
        );
    }
}

/// `optimize --url`: the server logs the decision (its `recommend`, with the same input) and
/// creates the job; nothing here writes the database.
fn create_through_server(
    url: &str,
    input: Option<Value>,
    mut payload: Value,
    task: String,
    a: &OptimizeArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Value, CliError> {
    let api = super::api::Api::new(url)?;
    if let Some(input) = input {
        let d = api.post("/api/v1/optimization/recommend", &input)?;
        payload["decision_id"] = d["decision_id"].clone();
        payload["decision"]["decision_id"] = d["decision_id"].clone();
        if d["recommended"] != payload["optimizer"] {
            let _ = writeln!(
                err,
                "note: the server's rules recommend {} (revision {}); the job runs {} as shown",
                d["recommended"], d["rules_revision"], payload["optimizer"]
            );
        }
    }
    let body = json!({
        "job_type": "optimization",
        "user_id": a.user,
        "task": task,
        "payload": payload,
    });
    let job = api.post("/api/v1/jobs", &body)?;
    print_created(&job, a.db.format, &format!("through {}", api.url()), out);
    Ok(job)
}

/// `optimize --run TASK`: the Python worker runs the job just created; its exit code is ours
/// (0 completed, 1 failed, …; see `skill-fleet-worker --help`).
fn run_worker(url: &str, task: &str, job: &str, err: &mut dyn Write) -> Result<Exit, CliError> {
    let _ = writeln!(
        err,
        "running job {job} with skill-fleet-worker --task {task}"
    );
    let status = std::process::Command::new("skill-fleet-worker")
        .args(["--url", url, "--task", task, "--job", job])
        .status();
    match status {
        Ok(s) if s.success() => Ok(Exit::Ok),
        Ok(s) => Err(CliError::failed(format!(
            "skill-fleet-worker exited with {}; the job keeps its state (`skill-fleet jobs show {job}`)",
            s.code().map_or("a signal".to_string(), |c| format!("code {c}"))
        ))),
        Err(e) => Err(CliError::io(format!("cannot start `skill-fleet-worker`: {e}")).help(format!(
            "install the worker with `pip install ./python` (see \"Use it from DSPy\" in the README); job {job} stays pending for any worker"
        ))),
    }
}

/// Logs an auto-selected decision (source `cli`) and returns its id, which the job's payload
/// carries so the run's outcome links back to it.
fn log_decision(
    store: &crate::store::Store,
    input: &Value,
    d: &mut crate::decision::Decision,
    variant: Option<&str>,
) -> Result<i64, crate::store::StoreError> {
    let id = store.reserve_decision_ids(1)?;
    d.decision_id = Some(id);
    let output = serde_json::to_vec(&d.log_json()).unwrap_or_default();
    let input = serde_json::to_vec(input).unwrap_or_default();
    let entry = crate::store::decisions::NewDecision::new(
        id,
        store.now_ms(),
        "cli",
        (d.estimated_cost, d.estimated_time_minutes as f64),
        crate::store::decisions::DecisionTexts {
            request_id: None,
            revision: &d.rules_revision,
            rule: &d.rule,
            optimizer: &d.recommended,
            variant,
            input: &input,
        },
        |out| out.extend_from_slice(&output),
    );
    store.log_decisions(vec![entry])?;
    Ok(id)
}
