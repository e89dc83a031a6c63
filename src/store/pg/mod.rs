//! PostgreSQL, the store several `serve` nodes share: the database location as a
//! `postgres://` URL whose password never shows (`PgUrl::redacted`), a connection made within a
//! bounded time, the schema's append-only migrations (tracked in `skill_fleet_migrations`,
//! applied under an advisory lock so that nodes that start together do not race), the job
//! operations, decision log, outcomes and training examples on it, and [`PgBackend`], which
//! puts them behind `Store`.

mod backend;
pub mod decisions;
pub mod examples;
mod jobs;
mod migrations;
pub mod outcomes;

pub use backend::{PgBackend, CONNECT_TIMEOUT, WORKERS};
pub use jobs::{PgJobs, CLAIM_PLAN, CLAIM_SELECT};
pub use migrations::{drop_all, migrate, schema_version, MIGRATIONS};

use super::sql::Columns;
use super::StoreError;
use std::time::Duration;

/// A text to look up as a key: `None` when it holds a NUL character, which PostgreSQL cannot
/// take as a parameter and no stored text holds (the store refuses them), so the lookup
/// matches nothing, as it does on SQLite.
fn key(text: &str) -> Option<&str> {
    (!text.contains('\0')).then_some(text)
}

/// A PostgreSQL database location.
#[derive(Clone)]
pub struct PgUrl {
    raw: String,
    redacted: String,
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PgUrl").field(&self.redacted).finish()
    }
}

impl std::fmt::Display for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl PgUrl {
    /// Whether a database location names PostgreSQL (`postgres://` or `postgresql://`); any
    /// other location is a SQLite file.
    pub fn is_url(location: &str) -> bool {
        let l = location.trim_start();
        l.starts_with("postgres://") || l.starts_with("postgresql://")
    }

    /// Parses a `postgres://user:password@host:port/name?…` URL.
    pub fn parse(location: &str) -> Result<PgUrl, StoreError> {
        let raw = location.trim().to_string();
        let redacted = redact(&raw);
        if !Self::is_url(&raw) {
            return Err(StoreError::Postgres {
                url: redacted,
                message: "not a PostgreSQL URL: it starts with `postgres://` or `postgresql://`"
                    .into(),
            });
        }
        raw.parse::<postgres::Config>()
            .map_err(|e| StoreError::Postgres {
                url: redacted.clone(),
                message: format!("invalid URL: {e}"),
            })?;
        Ok(PgUrl { raw, redacted })
    }

    /// `location` with any password replaced by `***`, for a location that does not parse.
    pub fn redact_text(location: &str) -> String {
        redact(location)
    }

    /// The URL with its password replaced by `***`: what logs, `db status` and errors show.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// Connects, giving up after `timeout` (an unreachable host is an error, not a hang).
    pub fn connect(&self, timeout: Duration) -> Result<postgres::Client, StoreError> {
        let mut config = self
            .raw
            .parse::<postgres::Config>()
            .map_err(|e| self.error(e))?;
        config.connect_timeout(timeout);
        config.connect(postgres::NoTls).map_err(|e| self.error(e))
    }

    /// A PostgreSQL error of this database, with the URL redacted.
    pub fn error(&self, e: postgres::Error) -> StoreError {
        StoreError::Postgres {
            url: self.redacted.clone(),
            message: redact_in(&describe(&e), &self.raw),
        }
    }
}

/// PostgreSQL rows read through the shared row mappings (`sql::Columns`).
impl Columns for postgres::Row {
    type Error = postgres::Error;
    fn text(&self, i: usize) -> Result<String, postgres::Error> {
        self.try_get(i)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, postgres::Error> {
        self.try_get(i)
    }
    fn int(&self, i: usize) -> Result<i64, postgres::Error> {
        self.try_get(i)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, postgres::Error> {
        self.try_get(i)
    }
    fn real(&self, i: usize) -> Result<f64, postgres::Error> {
        self.try_get(i)
    }
    fn opt_real(&self, i: usize) -> Result<Option<f64>, postgres::Error> {
        self.try_get(i)
    }
}

/// The error for a row of `table` that does not decode into its Rust type (a column whose type
/// was changed by hand, say): not an outage to retry, but an internal error (HTTP 500).
pub(super) fn unreadable(table: &'static str) -> impl Fn(postgres::Error) -> StoreError {
    move |e| StoreError::Internal(format!("a `{table}` row cannot be read: {e}"))
}

/// What went wrong, in lower case: the server's message (with its SQLSTATE code), or the
/// client's error with its cause (`error connecting to server: connection refused`).
fn describe(e: &postgres::Error) -> String {
    if e.is_closed() {
        return "the connection to the database was closed".into();
    }
    if let Some(db) = e.as_db_error() {
        return format!("{} (sqlstate {})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        source = s.source();
    }
    text
}

/// `scheme://user:password@rest` → `scheme://user:***@rest`; also a `password=` query
/// parameter.
fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let start = scheme_end + 3;
        // The userinfo ends at the last `@` before the path (a password may contain `@`).
        let authority_end = out[start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..authority_end].rfind('@') {
            let userinfo = &out[start..start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(start + colon + 1..start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

/// A message with any occurrence of the full URL (or its password) redacted.
fn redact_in(message: &str, raw: &str) -> String {
    let mut m = message.replace(raw, &redact(raw));
    if let Some(password) = password_of(raw) {
        if password.len() >= 3 {
            m = m.replace(&password, "***");
        }
    }
    m
}

fn password_of(raw: &str) -> Option<String> {
    let config = raw.parse::<postgres::Config>().ok()?;
    let p = config.get_password()?;
    String::from_utf8(p.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        for (url, shown) in [
            (
                "postgres://fleet:s3cret@db.example:5432/fleet",
                "postgres://fleet:***@db.example:5432/fleet",
            ),
            (
                "postgresql://fleet:p@ss@10.0.0.5/fleet?sslmode=disable",
                "postgresql://fleet:***@10.0.0.5/fleet?sslmode=disable",
            ),
            (
                "postgres://fleet@localhost/fleet?password=s3cret&application_name=x",
                "postgres://fleet@localhost/fleet?password=***&application_name=x",
            ),
            ("postgres://localhost/fleet", "postgres://localhost/fleet"),
        ] {
            let u = PgUrl::parse(url).unwrap();
            assert_eq!(u.redacted(), shown);
            assert_eq!(u.to_string(), shown);
            assert_eq!(format!("{u:?}"), format!("PgUrl({shown:?})"));
        }
        let e = redact_in(
            "error connecting to postgres://fleet:s3cret@h/db: s3cret refused",
            "postgres://fleet:s3cret@h/db",
        );
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn only_postgres_urls_are_postgres() {
        assert!(PgUrl::is_url("postgres://h/db"));
        assert!(PgUrl::is_url("postgresql://h/db"));
        for path in [
            "skill-fleet.db",
            "/var/lib/fleet.db",
            "postgres.db",
            "./postgres://x",
        ] {
            assert!(!PgUrl::is_url(path), "{path}");
        }
        let e = PgUrl::parse("postgres://u:pw@h:notaport/db").unwrap_err();
        assert!(e.to_string().contains("invalid URL"), "{e}");
        assert!(!e.to_string().contains(":pw@"), "{e}");
    }
}
