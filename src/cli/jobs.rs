//! `skill-fleet jobs list|show|cancel|respond`.

use super::store_args::{open, resolve_path, DbArgs, Format};
use super::{CliError, Exit};
use crate::store::job::{Job, Status};
use crate::store::{Filter, Store, StoreError};
use clap::{Args, Subcommand};
use std::io::Write;

/// `jobs` subcommands.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List(ListArgs),
    /// Show one job.
    Show(IdArgs),
    /// Cancel a job that is not finished.
    Cancel(ChangeArgs),
    /// Answer a job waiting for a human (pending_hitl); it goes back to pending.
    Respond(RespondArgs),
}

/// Arguments of `jobs list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this status (pending, running, pending_hitl, completed, failed, cancelled).
    #[arg(long)]
    pub status: Option<String>,
    /// Only this job type.
    #[arg(long = "type", value_name = "TYPE")]
    pub job_type: Option<String>,
    /// Only this user.
    #[arg(long)]
    pub user: Option<String>,
    /// At most this many (1..=500).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=500))]
    pub limit: u64,
    /// Continue after a previous page (its `next_cursor`).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Database and format.
    #[command(flatten)]
    pub db: DbArgs,
}

/// A job id.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// Job id.
    pub id: String,
    /// Database and format.
    #[command(flatten)]
    pub db: DbArgs,
}

/// Arguments of `jobs cancel`.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// Job id.
    pub id: String,
    /// Make the change through the running server at this URL instead of writing the
    /// database (one SQLite file has one writer: use this while `serve` runs).
    #[arg(long, value_name = "URL", env = "SKILL_FLEET_URL")]
    pub url: Option<String>,
    /// Database and format.
    #[command(flatten)]
    pub db: DbArgs,
}

/// Arguments of `jobs respond`.
#[derive(Debug, Args)]
pub struct RespondArgs {
    /// Job id.
    pub id: String,
    /// The answer, as JSON (plain text is taken as a string).
    #[arg(long, value_name = "JSON")]
    pub data: String,
    /// Make the change through the running server at this URL instead of writing the
    /// database (one SQLite file has one writer: use this while `serve` runs).
    #[arg(long, value_name = "URL", env = "SKILL_FLEET_URL")]
    pub url: Option<String>,
    /// Database and format.
    #[command(flatten)]
    pub db: DbArgs,
}

/// Posts a change to the server at `url`; prints the job it answers with.
fn through_server(
    url: &str,
    path: &str,
    body: &serde_json::Value,
    format: Format,
    out: &mut dyn Write,
) -> Result<Exit, CliError> {
    let job = super::api::Api::new(url).and_then(|api| api.post(path, body))?;
    if format == Format::Json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&job).unwrap_or_default()
        );
    } else {
        let _ = writeln!(
            out,
            "job {} is {} (through {url})",
            job["id"].as_str().unwrap_or("?"),
            job["status"].as_str().unwrap_or("?")
        );
    }
    Ok(Exit::Ok)
}

/// A store error about a job: 1 for no such job or a change its state forbids, 4 for bad
/// data, 5 otherwise.
fn job_error(e: StoreError) -> CliError {
    let exit = match &e {
        StoreError::NotFound(_) => {
            return CliError::failed(e.to_string()).help("`skill-fleet jobs list` shows the jobs")
        }
        StoreError::IllegalTransition { .. } | StoreError::StaleLease { .. } => Exit::Failed,
        StoreError::Invalid(_) | StoreError::Field { .. } => Exit::InvalidInput,
        _ => Exit::Io,
    };
    CliError::new(exit, e.to_string())
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    } else {
        s.to_string()
    }
}

/// A job for a terminal, field per line.
pub fn render_job(j: &Job) -> String {
    let mut o = String::new();
    let mut line = |k: &str, v: String| o.push_str(&format!("{k:<14}{v}\n"));
    line("id", j.id.clone());
    line("type", j.job_type.clone());
    line("status", j.status.to_string());
    if let Some(u) = &j.user_id {
        line("user", u.clone());
    }
    if !j.task.is_empty() {
        line("task", j.task.clone());
    }
    line(
        "progress",
        format!(
            "{:.0}%{}{}",
            j.progress.percent,
            j.progress
                .phase
                .as_ref()
                .map(|p| format!(" [{p}]"))
                .unwrap_or_default(),
            j.progress
                .message
                .as_ref()
                .map(|m| format!(" {m}"))
                .unwrap_or_default()
        ),
    );
    line(
        "attempts",
        format!("{} failed of {}", j.attempt, j.max_attempts),
    );
    if let Some(l) = &j.lease {
        line("lease", format!("{} until {}", l.owner, l.expires_at));
    }
    if let Some(h) = &j.hitl {
        line("question", format!("{} {}", h.kind, h.data));
        line(
            "answer",
            h.response
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "(waiting)".into()),
        );
    }
    line("payload", j.payload.to_string());
    if let Some(r) = &j.result {
        line("result", r.to_string());
    }
    if let Some(e) = &j.error {
        line("error", e.clone());
    }
    line("created", j.created_at.clone());
    line("updated", j.updated_at.clone());
    if let Some(t) = &j.completed_at {
        line("finished", t.clone());
    }
    o
}

fn print_job(j: &Job, format: Format, out: &mut dyn Write) {
    if format == Format::Json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(j).unwrap_or_default()
        );
    } else {
        let _ = write!(out, "{}", render_job(j));
    }
}

fn with_store(db: &DbArgs) -> Result<Store, CliError> {
    let path = resolve_path(db.db.as_deref())?;
    open(&path, false)
}

fn with_store_read(db: &DbArgs) -> Result<Store, CliError> {
    let path = resolve_path(db.db.as_deref())?;
    super::store_args::open_read(&path)
}

/// Runs a `jobs` subcommand.
pub fn run(cmd: JobsCommand, out: &mut dyn Write) -> Result<Exit, CliError> {
    match cmd {
        JobsCommand::List(a) => {
            let status = match a.status.as_deref().map(|s| (s, Status::parse(s))) {
                Some((s, None)) => {
                    let names: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
                    return Err(CliError::usage(format!("unknown status `{s}`")).help(
                        crate::diagnostic::did_you_mean(s, names.iter().copied())
                            .unwrap_or_else(|| format!("statuses: {}", names.join(", "))),
                    ));
                }
                Some((_, st)) => st,
                None => None,
            };
            let store = with_store_read(&a.db)?;
            let page = store.list(&Filter {
                status,
                job_type: a.job_type.clone(),
                user_id: a.user.clone(),
                limit: a.limit as usize,
                cursor: a.cursor.clone(),
            });
            let _ = store.close();
            let page = page.map_err(job_error)?;
            if a.db.format == Format::Json {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&page).unwrap_or_default()
                );
                return Ok(Exit::Ok);
            }
            if page.jobs.is_empty() {
                let _ = writeln!(out, "no jobs");
                return Ok(Exit::Ok);
            }
            let _ = writeln!(
                out,
                "{:<36}  {:<14}  {:<12}  {:>5}  {:<24}  TASK",
                "ID", "TYPE", "STATUS", "DONE", "UPDATED"
            );
            for j in &page.jobs {
                let _ = writeln!(
                    out,
                    "{:<36}  {:<14}  {:<12}  {:>4.0}%  {:<24}  {}",
                    j.id,
                    short(&j.job_type, 14),
                    j.status.as_str(),
                    j.progress.percent,
                    j.updated_at,
                    short(&j.task, 40)
                );
            }
            if let Some(c) = &page.next_cursor {
                let _ = writeln!(out, "more: --cursor {c}");
            }
            Ok(Exit::Ok)
        }
        JobsCommand::Show(a) => {
            let store = with_store_read(&a.db)?;
            let r = store.get(&a.id);
            let _ = store.close();
            let j = r
                .and_then(|j| j.ok_or(StoreError::NotFound(a.id)))
                .map_err(job_error)?;
            print_job(&j, a.db.format, out);
            Ok(Exit::Ok)
        }
        JobsCommand::Cancel(a) => {
            if let Some(url) = &a.url {
                let path = format!("/api/v1/jobs/{}/cancel", a.id);
                return through_server(url, &path, &serde_json::json!({}), a.db.format, out);
            }
            let store = with_store(&a.db)?;
            let r = store.cancel(&a.id);
            let _ = store.close();
            print_job(&r.map_err(job_error)?, a.db.format, out);
            Ok(Exit::Ok)
        }
        JobsCommand::Respond(a) => {
            let data =
                serde_json::from_str(&a.data).unwrap_or(serde_json::Value::String(a.data.clone()));
            if let Some(url) = &a.url {
                let path = format!("/api/v1/jobs/{}/hitl/response", a.id);
                let body = serde_json::json!({ "response": data });
                return through_server(url, &path, &body, a.db.format, out);
            }
            let store = with_store(&a.db)?;
            let r = store.respond_hitl(&a.id, data);
            let _ = store.close();
            print_job(&r.map_err(job_error)?, a.db.format, out);
            Ok(Exit::Ok)
        }
    }
}
