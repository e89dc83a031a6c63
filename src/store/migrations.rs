//! The schema: append-only migrations, tracked with `PRAGMA user_version`.

use super::StoreError;
use std::path::Path;

/// Schema migrations, applied in order; never edit a shipped one, only append.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "create meta",
        "CREATE TABLE IF NOT EXISTS meta (
             key   TEXT PRIMARY KEY,
             value TEXT NOT NULL
         );
         INSERT OR IGNORE INTO meta (key, value) VALUES ('created_by', 'skill-fleet');",
    ),
    (
        "create jobs",
        "CREATE TABLE jobs (
             id               TEXT PRIMARY KEY,
             job_type         TEXT NOT NULL,
             status           TEXT NOT NULL CHECK (status IN
                                ('pending', 'running', 'pending_hitl', 'completed', 'failed', 'cancelled')),
             user_id          TEXT,
             task             TEXT NOT NULL DEFAULT '',
             payload          TEXT NOT NULL DEFAULT '{}',
             result           TEXT,
             error            TEXT,
             progress_percent REAL NOT NULL DEFAULT 0,
             progress_message TEXT,
             progress_phase   TEXT,
             attempt          INTEGER NOT NULL DEFAULT 0,
             max_attempts     INTEGER NOT NULL DEFAULT 3,
             lease_owner      TEXT,
             lease_token      TEXT,
             lease_expires_at INTEGER,
             hitl_type        TEXT,
             hitl_data        TEXT,
             hitl_response    TEXT,
             idempotency_key  TEXT UNIQUE,
             not_before       INTEGER,
             created_at       INTEGER NOT NULL,
             updated_at       INTEGER NOT NULL,
             started_at       INTEGER,
             completed_at     INTEGER,
             version          INTEGER NOT NULL DEFAULT 1
         );
         CREATE INDEX jobs_claim ON jobs (status, created_at) WHERE status = 'pending';
         CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'running';
         CREATE INDEX jobs_newest ON jobs (created_at DESC, id DESC);
         CREATE INDEX jobs_retention ON jobs (completed_at) WHERE completed_at IS NOT NULL;",
    ),
    (
        "create examples",
        "CREATE TABLE examples (
             example_id    TEXT PRIMARY KEY,
             category      TEXT NOT NULL,
             style         TEXT NOT NULL,
             quality_score REAL NOT NULL,
             success_rate  REAL,
             usage_count   INTEGER NOT NULL DEFAULT 0,
             last_used     TEXT,
             record        TEXT NOT NULL,
             updated_at    INTEGER NOT NULL
         );
         CREATE INDEX examples_category ON examples (category);",
    ),
    (
        "create decisions and outcomes",
        "CREATE TABLE decisions (
             id             INTEGER PRIMARY KEY,
             created_at     INTEGER NOT NULL,
             request_id     TEXT,
             source         TEXT NOT NULL,
             revision       TEXT NOT NULL,
             rule           TEXT NOT NULL,
             optimizer      TEXT NOT NULL,
             variant        TEXT,
             estimated_cost REAL NOT NULL,
             estimated_time REAL NOT NULL,
             input          TEXT NOT NULL,
             output         TEXT NOT NULL
         );
         CREATE TABLE outcomes (
             id             INTEGER PRIMARY KEY,
             decision_id    INTEGER,
             job_id         TEXT UNIQUE,
             created_at     INTEGER NOT NULL,
             domain         TEXT NOT NULL,
             optimizer_used TEXT NOT NULL,
             recommended    TEXT,
             rule           TEXT,
             revision       TEXT,
             trainset_size  INTEGER,
             budget         REAL,
             quality_target REAL,
             model          TEXT,
             variant        TEXT,
             estimated_cost REAL,
             estimated_time REAL,
             actual_cost    REAL,
             actual_time    REAL,
             quality        REAL NOT NULL,
             auto_selected  INTEGER NOT NULL
         );
         CREATE INDEX outcomes_decision ON outcomes (decision_id);",
    ),
    (
        // A claim takes the oldest pending job by (created_at, id): this index gives it in
        // that order among the pending jobs alone. (PostgreSQL, without it, walked
        // `jobs_newest` from the oldest job and filtered out every finished one: a claim
        // cost grew with the history.)
        "index pending jobs in claim order",
        "CREATE INDEX jobs_pending ON jobs (created_at, id) WHERE status = 'pending';
         DROP INDEX jobs_claim;",
    ),
];

/// Whether this build can use a database at schema `version`: never a newer one; an older one
/// only when it may migrate it (else the error says to run `skill-fleet db migrate`).
pub(super) fn check_version(
    path: &Path,
    version: i64,
    may_migrate: bool,
) -> Result<(), StoreError> {
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported,
        });
    }
    if version < supported && !may_migrate {
        return Err(StoreError::Invalid(format!(
            "database `{}` has schema version {version}; this build needs {supported}: run `skill-fleet db migrate`",
            path.display()
        )));
    }
    Ok(())
}
