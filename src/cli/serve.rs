//! `skill-fleet serve`: configuration, rules, database, lease sweeper, watcher, HTTP server,
//! shutdown.

use super::{CliError, Exit};
use crate::config::{self, Config};
use crate::http::{serve, AppState};
use crate::loader::live::LiveRules;
use crate::loader::watch::{self, WatchConfig};
use crate::store::job::Status;
use crate::store::{self, Store, StoreError, StoreOptions};
use clap::Args;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What one sweep of the job store did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Running jobs whose lease expired, returned to pending.
    pub returned: usize,
    /// Running jobs whose lease expired with their attempts used up, now failed.
    pub failed: usize,
    /// Terminal jobs deleted for being older than the retention.
    pub pruned: usize,
}

/// One sweep: expired leases go back to pending (or fail when their attempts are used up);
/// with `retention_days` above 0, terminal jobs that finished longer ago are deleted.
pub fn sweep_once(store: &Store, retention_days: u64) -> Result<SweepReport, StoreError> {
    let swept = store.sweep()?;
    let failed = swept.iter().filter(|j| j.status == Status::Failed).count();
    let pruned = if retention_days > 0 {
        let age_ms = i64::try_from(retention_days)
            .ok()
            .and_then(|d| d.checked_mul(86_400_000))
            .unwrap_or(i64::MAX);
        store.prune(age_ms)?
    } else {
        0
    };
    Ok(SweepReport {
        returned: swept.len() - failed,
        failed,
        pruned,
    })
}

/// Sweeps every `every` until `stop` changes (or its sender is dropped). The first sweep
/// happens one interval after the start: `serve` sweeps once itself before listening.
pub async fn run_sweeper(
    store: Arc<Store>,
    every: Duration,
    retention_days: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        let s = Arc::clone(&store);
        match tokio::task::spawn_blocking(move || sweep_once(&s, retention_days)).await {
            Ok(Ok(r)) => {
                if r != SweepReport::default() {
                    tracing::info!(
                        "job sweep: {} expired leases returned to pending, {} jobs failed (attempts used up), {} old jobs pruned",
                        r.returned,
                        r.failed,
                        r.pruned
                    );
                }
            }
            Ok(Err(e)) => tracing::warn!("job sweep failed: {e}"),
            Err(e) => tracing::warn!("job sweep task failed: {e}"),
        }
    }
}

/// Arguments of `serve`.
#[derive(Debug, Args)]
#[command(
    after_help = "Configuration layers: built-in defaults < config/skill-fleet.yaml (or --config) \
< SKILL_FLEET_* environment variables < flags.\nStops on SIGINT/SIGTERM: stops accepting, finishes \
in-flight requests, closes the database."
)]
pub struct ServeArgs {
    /// Address to listen on (server.addr).
    #[arg(long, value_name = "IP:PORT")]
    pub addr: Option<String>,
    /// SQLite file, or a `postgres://` URL shared by several nodes (database.path).
    #[arg(long, value_name = "PATH|URL")]
    pub db: Option<PathBuf>,
    /// Config file (default: config/skill-fleet.yaml when present).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Open the database as it is: do not create it or apply migrations.
    #[arg(long)]
    pub skip_db_init: bool,
    /// Do not watch the rules directory (rules.watch = false).
    #[arg(long)]
    pub no_watch: bool,
    /// Serve the web console's files from this directory (read on each request) instead of
    /// the copy built into the binary: for working on the console without rebuilding.
    #[arg(long, value_name = "DIR")]
    pub console_dir: Option<PathBuf>,
}

fn flags(args: &ServeArgs, rules: Option<&PathBuf>) -> Vec<(String, Value, String)> {
    let mut f = Vec::new();
    if let Some(a) = &args.addr {
        f.push((
            "server.addr".into(),
            Value::from(a.as_str()),
            "--addr".into(),
        ));
    }
    if let Some(d) = &args.db {
        f.push((
            "database.path".into(),
            Value::from(d.display().to_string()),
            "--db".into(),
        ));
    }
    if let Some(r) = rules {
        f.push((
            "rules.dir".into(),
            Value::from(r.display().to_string()),
            "--rules".into(),
        ));
    }
    if args.no_watch {
        f.push((
            "rules.watch".into(),
            Value::Bool(false),
            "--no-watch".into(),
        ));
    }
    f
}

/// The signals that stop the server, registered when this is built so that a signal arriving
/// right after the "listening" line is not lost: SIGINT and SIGTERM (Ctrl-C elsewhere).
struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    /// Registers the handlers now.
    fn register() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Self {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Waits for the first of them.
    async fn recv(self) {
        #[cfg(unix)]
        {
            async fn next(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = next(self.interrupt) => {},
                () = next(self.terminate) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested");
    }
}

/// What runs beside the HTTP server: the rules watcher and the job sweeper.
struct Background {
    /// Whether the rules directory is watched.
    watching: bool,
    /// How it is watched.
    watch: WatchConfig,
    /// Time between two job sweeps.
    sweep_every: Duration,
    /// Age in days past which terminal jobs are pruned (0: never).
    retention_days: u64,
}

/// Runs the server: configuration, rules, database, then the server until a signal, then the
/// shutdown.
pub fn run(args: ServeArgs, rules: Option<&PathBuf>) -> Result<Exit, CliError> {
    let config = load_config(&args, rules)?;
    let console_dir = console_dir(&args)?;
    super::logging::init(&config)?;
    let live = load_rules(&config)?;
    let store = open_store(&config, args.skip_db_init)?;
    prepare_store(&store, !args.skip_db_init);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io(format!("cannot start the async runtime: {e}")))?;
    let background = Background {
        watching: config.rules.watch,
        watch: WatchConfig {
            debounce: Duration::from_millis(config.rules.debounce_ms),
            poll: (config.rules.poll_interval_ms > 0)
                .then(|| Duration::from_millis(config.rules.poll_interval_ms)),
        },
        sweep_every: Duration::from_millis(config.jobs.sweep_interval_ms),
        retention_days: config.jobs.retention_days,
    };
    let addr = config.server.addr.clone();
    let mut state = AppState::new(config, Arc::clone(&live), Some(Arc::clone(&store)))
        .map_err(|e| CliError::io(e.to_string()))?;
    state.console_dir = console_dir;
    let state = Arc::new(state);
    let result = runtime.block_on(serve_until_signal(
        addr,
        live,
        state,
        Arc::clone(&store),
        background,
    ));
    runtime.shutdown_timeout(Duration::from_secs(1));
    // The server, the decision log, the watcher and the sweeper have stopped: close the store
    // explicitly (queued writes committed, WAL checkpointed), whoever still holds a handle.
    let closed = store.close();
    result.map_err(CliError::io)?;
    match closed {
        Ok(()) => tracing::info!("database closed"),
        Err(e) => tracing::warn!("closing the database: {e}"),
    }
    Ok(Exit::Ok)
}

/// The configuration layers with the flags on top; an unreadable config file has exit code 5,
/// an invalid one 6.
fn load_config(args: &ServeArgs, rules: Option<&PathBuf>) -> Result<Config, CliError> {
    config::load(args.config.as_deref(), flags(args, rules)).map_err(|e| {
        let exit = if e.unreadable {
            Exit::Io
        } else {
            Exit::InvalidConfig
        };
        CliError::new(exit, e.to_string()).help_opt(e.help)
    })
}

/// `--console-dir`, which must hold an `index.html`.
fn console_dir(args: &ServeArgs) -> Result<Option<PathBuf>, CliError> {
    if let Some(d) = &args.console_dir {
        if !d.join("index.html").is_file() {
            return Err(CliError::usage(format!(
                "`{}` holds no `index.html`: not a console directory",
                d.display()
            ))
            .help("pass the repository's `console/` directory, or leave `--console-dir` out to serve the built-in console"));
        }
    }
    Ok(args.console_dir.clone())
}

/// Reads and builds the served rule set; an unreadable directory or an invalid rule set stops
/// the start.
fn load_rules(config: &Config) -> Result<Arc<LiveRules>, CliError> {
    if let Err(e @ crate::loader::ReadError::Unreadable(_)) =
        crate::loader::read_dir(&config.rules.dir)
    {
        return Err(CliError::from(e).conclude(format!(
            "cannot start: rules directory `{}` cannot be read",
            config.rules.dir.display()
        )));
    }
    match LiveRules::load(&config.rules.dir, config.rules.run_fixtures_on_reload) {
        Ok(l) => Ok(Arc::new(l.keep_revisions(config.rules.keep_revisions))),
        Err((diags, files)) => Err(CliError::rules(diags, files).conclude(format!(
            "cannot start: rule set `{}` is invalid",
            config.rules.dir.display()
        ))),
    }
}

/// Opens (and, without `--skip-db-init`, creates and migrates) the database.
fn open_store(config: &Config, skip_init: bool) -> Result<Arc<Store>, CliError> {
    let opts = StoreOptions {
        cache_capacity: config.database.cache_capacity,
        owner: format!("skill-fleet serve on http://{}", config.server.addr),
        ..StoreOptions::default()
    };
    match Store::open_with(
        &config.database.path,
        !skip_init,
        opts,
        store::system_clock(),
    ) {
        Ok(s) => Ok(Arc::new(s)),
        Err(e) => {
            let help = match e {
                store::StoreError::Locked { .. } => "one SQLite database, one server: stop the other one, or give this one its own --db PATH; several nodes share a PostgreSQL database instead",
                store::StoreError::Postgres { .. } => "check that PostgreSQL runs at that address and lets this user in (`--db postgres://user:pass@host:5432/name`); the start gives up after 5 s",
                _ => "drop --skip-db-init to create it, or pass --db PATH (SKILL_FLEET_DB)",
            };
            Err(CliError::io(format!("cannot open the database: {e}")).help(help))
        }
    }
}

/// Before serving: the shipped training examples into an empty database (when initialising),
/// and a sweep of the jobs whose worker died while the server was down.
fn prepare_store(store: &Store, init: bool) {
    // Initialising the database includes the shipped training examples, as `db init` does.
    if init {
        match super::training::import_shipped_if_empty(store) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!("imported {n} shipped training examples into the empty database")
            }
            Err(e) => tracing::warn!("could not import the shipped training examples: {e}"),
        }
    }
    // Jobs whose worker died while the server was down: return or fail them before serving.
    // Pruning waits for the periodic sweep, so a large backlog never delays start-up.
    match sweep_once(store, 0) {
        Ok(r) => tracing::info!(
            "start-up job sweep: {} expired leases returned to pending, {} jobs failed (attempts used up), {} old jobs pruned",
            r.returned,
            r.failed,
            r.pruned
        ),
        Err(e) => tracing::warn!("start-up job sweep failed: {e}"),
    }
}

/// Listens, serves with the sweeper and the watcher beside it until a signal, then stops them
/// in order: the server (in-flight requests finish), the decision log (queued entries are
/// written), the watcher and the sweeper.
async fn serve_until_signal(
    addr: String,
    live: Arc<LiveRules>,
    state: Arc<AppState>,
    store: Arc<Store>,
    bg: Background,
) -> Result<(), String> {
    let db_path = store.path().display().to_string();
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => return Err(format!("cannot listen on {addr}: {e}")),
    };
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
    // Before the line that tells clients (and test harnesses) the server is up.
    let signals = ShutdownSignals::register();
    let st = live.status();
    tracing::info!(
        "listening on http://{local}, serving rules revision {} from {} ({} files, {}), database {}",
        st.revision,
        st.dir,
        st.files.len(),
        if bg.watching { "watching for changes" } else { "not watching" },
        db_path
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // On PostgreSQL, other nodes record outcomes too: follow them.
    let follower = store.is_postgres().then(|| {
        tokio::spawn(super::follow::follow_outcomes(
            Arc::clone(&state),
            Arc::clone(&store),
            stop_rx.clone(),
        ))
    });
    let sweeper = tokio::spawn(run_sweeper(
        store,
        bg.sweep_every,
        bg.retention_days,
        stop_rx.clone(),
    ));
    let watcher = bg
        .watching
        .then(|| tokio::spawn(watch::run(Arc::clone(&live), bg.watch, stop_rx)));
    let served = serve(listener, Arc::clone(&state), signals.recv()).await;
    // Every request is done: write the decisions still queued.
    if let Err(e) = state.close().await {
        tracing::warn!("closing the decision log: {e}");
    }
    drop(state);
    let _ = stop_tx.send(true);
    if let Some(w) = watcher {
        let _ = w.await;
    }
    let _ = sweeper.await;
    if let Some(f) = follower {
        let _ = f.await;
    }
    served.map_err(|e| format!("server error: {e}"))
}
