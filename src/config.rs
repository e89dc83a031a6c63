//! Configuration in layers, checked once at start-up into a [`Config`]:
//! built-in defaults < config file (`config/skill-fleet.yaml`) < `SKILL_FLEET_*` environment
//! variables < command-line flags. Every value remembers where it came from, so an invalid
//! value is reported with its key and its source (`file:line:col`, the variable, or the flag).

use crate::diagnostic::{did_you_mean, SourceFile};
use crate::rules::yaml;
use crate::util::schema_check::{self, Checker};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The default config file, relative to the working directory.
pub const DEFAULT_FILE: &str = "config/skill-fleet.yaml";

/// skill-fleet configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP server.
    pub server: ServerConfig,
    /// Rule set and hot reload.
    pub rules: RulesConfig,
    /// The database: a SQLite file, or PostgreSQL for several nodes.
    pub database: DatabaseConfig,
    /// Job queue: leases, lease sweeping, retention.
    pub jobs: JobsConfig,
    /// Decision log of the server.
    pub decisions: DecisionsConfig,
    /// Logging.
    pub log: LogConfig,
}

/// HTTP server settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. A non-loopback address requires `api_token`.
    pub addr: String,
    /// Bearer token required by mutating endpoints (none: open, loopback only).
    pub api_token: Option<String>,
    /// Largest accepted request body; larger bodies get 413.
    #[schemars(range(min = 1))]
    pub body_limit_bytes: u64,
    /// Time a client has to send a request's headers, once connected or answered, before the
    /// connection is closed (checked four times per period: closed within 1.25 times it).
    #[schemars(range(min = 1))]
    pub header_read_timeout_ms: u64,
    /// Time a client has to send its whole request body once the headers are in (408 after).
    #[schemars(range(min = 1))]
    pub body_read_timeout_ms: u64,
    /// Time in-flight requests get to finish after SIGINT/SIGTERM.
    pub shutdown_grace_ms: u64,
}

/// Rule set settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Directory of the rule set.
    pub dir: PathBuf,
    /// Watch the directory and reload on change.
    pub watch: bool,
    /// Refuse a reload whose own fixtures fail.
    pub run_fixtures_on_reload: bool,
    /// Quiet time after the last file event before a reload starts.
    #[schemars(range(min = 1, max = 60000))]
    pub debounce_ms: u64,
    /// Safety-net poll: compare file contents this often even without events (0: off).
    pub poll_interval_ms: u64,
    /// Good revisions kept in memory for `POST /api/v1/rules/rollback` (the live one included).
    #[schemars(range(min = 1, max = 100))]
    pub keep_revisions: usize,
    /// Time limit of one evaluation's Rhai code (a script past it stops with an error naming
    /// it; the request gets a 500). Fixtures run under it too.
    #[schemars(range(min = 1, max = 60000))]
    pub eval_timeout_ms: u64,
}

/// Database settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Path of the SQLite file (created when missing), or a `postgres://` (or `postgresql://`)
    /// URL of a PostgreSQL database that several nodes share.
    pub path: PathBuf,
    /// Jobs kept in the in-memory read cache (0: no cache; PostgreSQL never caches jobs).
    pub cache_capacity: usize,
}

/// Job queue settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// How often expired leases are returned to pending (or failed when their attempts are
    /// used up) and old terminal jobs pruned. Also done once at start-up.
    #[schemars(range(min = 1))]
    pub sweep_interval_ms: u64,
    /// Lease a claim or heartbeat gets when it does not send `lease_seconds`.
    #[schemars(range(min = 1, max = 86400))]
    pub default_lease_seconds: u64,
    /// Completed, failed and cancelled jobs are deleted this many days after they finished
    /// (0: keep them forever).
    pub retention_days: u64,
}

/// Decision log settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionsConfig {
    /// Store every decision `recommend` serves (input, output, rule, revision, time, request id).
    pub log: bool,
    /// Decisions that may wait to be written; when full, requests wait for room.
    #[schemars(range(min = 1, max = 10000000))]
    pub queue_capacity: usize,
    /// A batch of decisions gathers this long before it is written (0: write at once). Longer
    /// means fewer, larger transactions; `metrics`, outcomes and shutdown wait for the batch.
    #[schemars(range(max = 10000))]
    pub flush_interval_ms: u64,
}

impl Default for DecisionsConfig {
    fn default() -> Self {
        Self {
            log: true,
            queue_capacity: 65_536,
            flush_interval_ms: 50,
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Filter in `tracing` syntax: `info`, `debug`, `skill_fleet=debug,hyper=warn`, …
    pub level: String,
    /// `human` (one readable line per event) or `json` (one JSON object per line: `time`,
    /// `level`, `node`, `message` and the event's fields), for a log stack that merges nodes.
    pub format: LogFormat,
    /// One `info` line per request: request id, method, route, status, duration in ms.
    pub requests: bool,
    /// This node's name in JSON lines (default: the host name).
    pub node: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line.
    Json,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8000".into(),
            api_token: None,
            body_limit_bytes: 1024 * 1024,
            header_read_timeout_ms: 5_000,
            body_read_timeout_ms: 10_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("rules"),
            watch: true,
            run_fixtures_on_reload: true,
            debounce_ms: 100,
            poll_interval_ms: 2_000,
            keep_revisions: 5,
            eval_timeout_ms: crate::rules::deadline::DEFAULT_BUDGET_MS,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("skill-fleet.db"),
            cache_capacity: 10_000,
        }
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            sweep_interval_ms: 5_000,
            default_lease_seconds: 60,
            retention_days: 30,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Human,
            requests: false,
            node: None,
        }
    }
}

/// A configuration problem, with the key and where the value came from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid config: {message}")]
pub struct ConfigError {
    /// Lower-case message naming the key and its source.
    pub message: String,
    /// Advice.
    pub help: Option<String>,
    /// The config file could not be read (exit code 5, not 6).
    pub unreadable: bool,
}

impl ConfigError {
    fn new(message: String, help: Option<String>) -> Self {
        Self {
            message,
            help,
            unreadable: false,
        }
    }
}

/// Environment variables with short names, beside the generic `SKILL_FLEET_<SECTION>_<KEY>`.
pub const ENV_ALIASES: [(&str, &str); 5] = [
    ("SKILL_FLEET_ADDR", "server.addr"),
    ("SKILL_FLEET_API_TOKEN", "server.api_token"),
    ("SKILL_FLEET_RULES", "rules.dir"),
    ("SKILL_FLEET_DB", "database.path"),
    ("SKILL_FLEET_LOG", "log.level"),
];

/// Values given on the command line, by dotted key (`server.addr`).
pub type Overrides = Vec<(String, Value)>;

/// The layers to merge.
#[derive(Debug, Default)]
pub struct Layers<'a> {
    /// The config file, when there is one.
    pub file: Option<&'a SourceFile>,
    /// `SKILL_FLEET_*` variables (name, value).
    pub env: Vec<(String, String)>,
    /// Flags (dotted key, value, flag name).
    pub flags: Vec<(String, Value, String)>,
}

fn defaults_value() -> Value {
    serde_json::to_value(Config::default()).unwrap_or(Value::Null)
}

fn keys(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Value::Object(sections) = v {
        for (s, inner) in sections {
            if let Value::Object(m) = inner {
                for k in m.keys() {
                    out.push(format!("{s}.{k}"));
                }
            }
        }
    }
    out
}

fn set(target: &mut Value, dotted: &str, value: Value) {
    if let Some((section, key)) = dotted.split_once('.') {
        if let Some(Value::Object(m)) = target.get_mut(section) {
            m.insert(key.to_string(), value);
        }
    }
}

/// Parses an environment value by the type of its default: numbers and booleans as YAML
/// scalars, everything else as text.
fn env_value(default: &Value, raw: &str) -> Value {
    match default {
        Value::String(_) | Value::Null => Value::String(raw.to_string()),
        _ => {
            serde_yaml::from_str::<serde_json::Value>(raw).unwrap_or(Value::String(raw.to_string()))
        }
    }
}

/// Merges the layers and checks the result. Pure: the caller reads files and environment.
pub fn resolve(layers: &Layers<'_>) -> Result<Config, ConfigError> {
    let defaults = defaults_value();
    let known = keys(&defaults);
    let mut merged = defaults.clone();
    let mut source: BTreeMap<String, String> = known
        .iter()
        .map(|k| (k.clone(), "the built-in default".to_string()))
        .collect();

    if let Some(file) = layers.file {
        let parsed = yaml::parse(file).map_err(|d| {
            ConfigError::new(
                format!(
                    "{} ({})",
                    d.message,
                    d.location().unwrap_or_else(|| file.path.clone())
                ),
                d.help.clone(),
            )
        })?;
        let at = |ptr: &str| match parsed.spans.value(ptr) {
            Some(p) => format!("{}:{}:{}", file.path, p.line, p.col),
            None => file.path.clone(),
        };
        match &parsed.value {
            Value::Null => {}
            Value::Object(sections) => {
                for (s, inner) in sections {
                    let Some(Value::Object(_)) = defaults.get(s) else {
                        let sections: Vec<&str> = defaults
                            .as_object()
                            .map(|m| m.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        return Err(ConfigError::new(
                            format!("unknown section `{s}` in {}", at(&format!("/{s}"))),
                            did_you_mean(s, sections),
                        ));
                    };
                    let Value::Object(entries) = inner else {
                        if inner.is_null() {
                            continue;
                        }
                        return Err(ConfigError::new(
                            format!("section `{s}` must be a mapping ({})", at(&format!("/{s}"))),
                            None,
                        ));
                    };
                    for (k, v) in entries {
                        let dotted = format!("{s}.{k}");
                        if !known.contains(&dotted) {
                            return Err(ConfigError::new(
                                format!("unknown key `{dotted}` in {}", at(&format!("/{s}/{k}"))),
                                did_you_mean(&dotted, known.iter().map(String::as_str)),
                            ));
                        }
                        set(&mut merged, &dotted, v.clone());
                        source.insert(dotted, at(&format!("/{s}/{k}")));
                    }
                }
            }
            _ => {
                return Err(ConfigError::new(
                    format!("`{}` must be a mapping of sections", file.path),
                    Some("see the shipped config/skill-fleet.yaml".into()),
                ))
            }
        }
    }

    for (name, raw) in &layers.env {
        let dotted = ENV_ALIASES
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, k)| k.to_string())
            .or_else(|| {
                let rest = name.strip_prefix("SKILL_FLEET_")?.to_lowercase();
                known
                    .iter()
                    .find(|k| k.replacen('.', "_", 1) == rest)
                    .cloned()
            });
        let Some(dotted) = dotted else { continue };
        let default = defaults
            .pointer(&format!("/{}", dotted.replacen('.', "/", 1)))
            .cloned()
            .unwrap_or(Value::Null);
        set(&mut merged, &dotted, env_value(&default, raw));
        source.insert(dotted, format!("the environment variable {name}"));
    }

    for (dotted, value, flag) in &layers.flags {
        set(&mut merged, dotted, value.clone());
        source.insert(dotted.clone(), format!("the flag {flag}"));
    }

    // The merged values against `Config`'s JSON Schema (`util::schema_check`, the one
    // validator): the first bad value is named with the layer that set it.
    let checker = Checker::cached::<Config>().map_err(|e| {
        ConfigError::new(
            format!("the configuration schema does not compile: {e}"),
            None,
        )
    })?;
    if let Some(p) = checker
        .problems(&merged, &schema_check::YAML)
        .into_iter()
        .next()
    {
        let k = schema_check::dotted(&p.pointer);
        return Err(ConfigError::new(
            format!(
                "`{k}` = {} (from {}): {}",
                merged.pointer(&p.pointer).cloned().unwrap_or(Value::Null),
                source.get(&k).map(String::as_str).unwrap_or("?"),
                p.message
            ),
            p.help,
        ));
    }
    let config: Config = serde_json::from_value(merged).map_err(|e| {
        ConfigError::new(
            format!("the configuration does not fit its schema: {e}"),
            None,
        )
    })?;
    check(&config, &source)?;
    Ok(config)
}

fn check(c: &Config, source: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    let from = |k: &str| source.get(k).map(String::as_str).unwrap_or("?").to_string();
    let addr: SocketAddr = c.server.addr.parse().map_err(|_| {
        ConfigError::new(
            format!(
                "`server.addr` = `{}` (from {}) is not an address",
                c.server.addr,
                from("server.addr")
            ),
            Some("write IP:PORT, e.g. 127.0.0.1:8000 or 0.0.0.0:8000".into()),
        )
    })?;
    if let Some(t) = &c.server.api_token {
        if t.len() < 16 {
            return Err(ConfigError::new(
                format!(
                    "`server.api_token` (from {}) is shorter than 16 characters",
                    from("server.api_token")
                ),
                Some("use a long random token, e.g. `openssl rand -hex 32`".into()),
            ));
        }
    }
    if !addr.ip().is_loopback() && c.server.api_token.is_none() {
        return Err(ConfigError::new(
            format!(
                "`server.addr` = `{}` (from {}) is not a loopback address, and no API token is set",
                c.server.addr,
                from("server.addr")
            ),
            Some(
                "set SKILL_FLEET_API_TOKEN (or server.api_token) so every `/api` route requires it"
                    .into(),
            ),
        ));
    }
    for (k, v) in [
        ("server.body_limit_bytes", c.server.body_limit_bytes),
        (
            "server.header_read_timeout_ms",
            c.server.header_read_timeout_ms,
        ),
        ("rules.debounce_ms", c.rules.debounce_ms),
        ("rules.eval_timeout_ms", c.rules.eval_timeout_ms),
        ("jobs.sweep_interval_ms", c.jobs.sweep_interval_ms),
        ("jobs.default_lease_seconds", c.jobs.default_lease_seconds),
    ] {
        if v == 0 {
            return Err(ConfigError::new(
                format!("`{k}` (from {}) must be above 0", from(k)),
                None,
            ));
        }
    }
    if c.jobs.default_lease_seconds > 86_400 {
        return Err(ConfigError::new(
            format!(
                "`jobs.default_lease_seconds` = {} (from {}) is above 86400 (one day)",
                c.jobs.default_lease_seconds,
                from("jobs.default_lease_seconds")
            ),
            Some("workers that need longer leases extend them with heartbeats".into()),
        ));
    }
    if c.log.level.trim().is_empty() {
        return Err(ConfigError::new(
            format!("`log.level` (from {}) is empty", from("log.level")),
            None,
        ));
    }
    Ok(())
}

/// Reads the layers from disk and the process environment, then resolves them.
/// `explicit` is the `--config` flag: that file must exist; without it the default file is used
/// when present.
pub fn load(
    explicit: Option<&Path>,
    flags: Vec<(String, Value, String)>,
) -> Result<Config, ConfigError> {
    let path = explicit.map(Path::to_path_buf).or_else(|| {
        let p = PathBuf::from(DEFAULT_FILE);
        p.exists().then_some(p)
    });
    let file = match &path {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map(|t| SourceFile::new(p.display().to_string(), t))
                .map_err(|e| ConfigError {
                    unreadable: true,
                    ..ConfigError::new(
                        format!("cannot read config file `{}`: {e}", p.display()),
                        Some("pass --config PATH, or run from the repository root".into()),
                    )
                })?,
        ),
        None => None,
    };
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("SKILL_FLEET_"))
        .collect();
    resolve(&Layers {
        file: file.as_ref(),
        env,
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        let file = SourceFile::new(
            "c.yaml",
            "server:\n  addr: 127.0.0.1:9000\n  body_limit_bytes: 2048\nrules:\n  watch: false\n",
        );
        let c = resolve(&Layers {
            file: Some(&file),
            env: vec![("SKILL_FLEET_SERVER_BODY_LIMIT_BYTES".into(), "4096".into())],
            flags: vec![("server.addr".into(), "127.0.0.1:0".into(), "--addr".into())],
        })
        .unwrap();
        assert_eq!(c.server.addr, "127.0.0.1:0");
        assert_eq!(c.server.body_limit_bytes, 4096);
        assert!(!c.rules.watch);
        assert_eq!(c.database.path, PathBuf::from("skill-fleet.db"));
    }

    #[test]
    fn bad_values_name_key_and_source() {
        let file = SourceFile::new("c.yaml", "server:\n  body_limit_bytes: lots\n");
        let e = resolve(&Layers {
            file: Some(&file),
            ..Layers::default()
        })
        .unwrap_err();
        assert!(
            e.message.contains("`server.body_limit_bytes`"),
            "{}",
            e.message
        );
        assert!(e.message.contains("c.yaml:2:21"), "{}", e.message);
        assert!(
            e.message
                .contains("expected an integer, found a string `lots`"),
            "{}",
            e.message
        );

        let file = SourceFile::new("c.yaml", "log:\n  format: jsn\n");
        let e = resolve(&Layers {
            file: Some(&file),
            ..Layers::default()
        })
        .unwrap_err();
        assert!(
            e.message.contains(
                "`log.format` = \"jsn\" (from c.yaml:2:11): `jsn` is not one of human, json"
            ),
            "{}",
            e.message
        );
        assert_eq!(e.help.as_deref(), Some("did you mean `json`?"));

        let e = resolve(&Layers {
            env: vec![
                ("SKILL_FLEET_DB".into(), "x.db".into()),
                ("SKILL_FLEET_ADDR".into(), "nowhere".into()),
            ],
            ..Layers::default()
        })
        .unwrap_err();
        assert!(
            e.message.contains("environment variable SKILL_FLEET_ADDR"),
            "{}",
            e.message
        );

        let file = SourceFile::new("c.yaml", "server:\n  adr: 1\n");
        let e = resolve(&Layers {
            file: Some(&file),
            ..Layers::default()
        })
        .unwrap_err();
        assert!(
            e.message.contains("unknown key `server.adr` in c.yaml:2:8"),
            "{}",
            e.message
        );
        assert_eq!(e.help.as_deref(), Some("did you mean `server.addr`?"));
    }

    #[test]
    fn jobs_and_cache_settings_layer_and_are_checked() {
        let c = resolve(&Layers::default()).unwrap();
        assert_eq!(c.jobs.sweep_interval_ms, 5_000);
        assert_eq!(c.jobs.default_lease_seconds, 60);
        assert_eq!(c.jobs.retention_days, 30);
        assert_eq!(c.database.cache_capacity, 10_000);

        let file = SourceFile::new(
            "c.yaml",
            "jobs:\n  retention_days: 0\n  sweep_interval_ms: 250\ndatabase:\n  cache_capacity: 5\n",
        );
        let c = resolve(&Layers {
            file: Some(&file),
            env: vec![("SKILL_FLEET_JOBS_SWEEP_INTERVAL_MS".into(), "1000".into())],
            ..Layers::default()
        })
        .unwrap();
        assert_eq!(c.jobs.retention_days, 0);
        assert_eq!(c.jobs.sweep_interval_ms, 1_000);
        assert_eq!(c.database.cache_capacity, 5);

        let e = resolve(&Layers {
            env: vec![("SKILL_FLEET_JOBS_SWEEP_INTERVAL_MS".into(), "0".into())],
            ..Layers::default()
        })
        .unwrap_err();
        assert!(
            e.message.contains("`jobs.sweep_interval_ms`")
                && e.message.contains("SKILL_FLEET_JOBS_SWEEP_INTERVAL_MS"),
            "{}",
            e.message
        );
        let e = resolve(&Layers {
            flags: vec![(
                "jobs.default_lease_seconds".into(),
                Value::from(100_000),
                "--x".into(),
            )],
            ..Layers::default()
        })
        .unwrap_err();
        assert!(
            e.message.contains("`jobs.default_lease_seconds` = 100000"),
            "{}",
            e.message
        );
    }

    #[test]
    fn public_address_needs_a_token() {
        let flags = vec![(
            "server.addr".to_string(),
            Value::from("0.0.0.0:8000"),
            "--addr".to_string(),
        )];
        let e = resolve(&Layers {
            flags: flags.clone(),
            ..Layers::default()
        })
        .unwrap_err();
        assert!(
            e.message.contains("not a loopback address"),
            "{}",
            e.message
        );
        let ok = resolve(&Layers {
            flags,
            env: vec![(
                "SKILL_FLEET_API_TOKEN".into(),
                "0123456789abcdef0123".into(),
            )],
            ..Layers::default()
        });
        assert!(ok.is_ok());
    }
}
