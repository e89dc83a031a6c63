//! The server's log on standard error: `log.format: human` (one readable line per event) or
//! `json` (one JSON object per line with `time`, `level`, `node`, `message` and the event's
//! fields, so a log stack can merge several nodes' logs and follow one request id across
//! them). With `log.requests`, the server logs one line per request (request id, method,
//! route, status, duration).

use super::CliError;
use crate::config::{Config, LogFormat};
use serde_json::{Map, Value};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the subscriber for the configured level and format.
pub fn init(config: &Config) -> Result<(), CliError> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level).map_err(|e| {
        CliError::config(format!(
            "invalid config: `log.level` = `{}`: {e}",
            config.log.level
        ))
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Human => builder
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .event_format(JsonLines {
                node: config.log.node.clone().unwrap_or_else(host_name),
            })
            .try_init(),
    };
    Ok(())
}

/// This machine's name: `HOSTNAME`, else the kernel's, else `skill-fleet`.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "skill-fleet".into())
}

/// One JSON object per event.
struct JsonLines {
    node: String,
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        line.insert("time".into(), Value::String(crate::timefmt::now()));
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        line.insert("level".into(), Value::String(level));
        line.insert("node".into(), Value::String(self.node.clone()));
        line.insert(
            "target".into(),
            Value::String(event.metadata().target().to_string()),
        );
        event.record(&mut Fields(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Collects an event's fields into the line (`message` for the text).
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::Bool(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}
