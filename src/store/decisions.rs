//! The decision log: every recommendation the server (or `optimize --auto-select`) made, with
//! its input, output, rule, rules revision, time and request id.
//!
//! Decision ids come from blocks reserved in the `meta` table through the writer, so several
//! processes writing to one file never hand out the same id, and the server can answer with an
//! id before the entry is committed (the log is written behind the response, in batches).

use super::sql::{json, Columns};
use super::StoreError;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::collections::BTreeMap;

/// The texts of a decision to log, by name.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecisionTexts<'a> {
    /// The request's `X-Request-ID` (none from the CLI).
    pub request_id: Option<&'a str>,
    /// Rules revision that decided.
    pub revision: &'a str,
    /// Rule that fired.
    pub rule: &'a str,
    /// Recommended optimizer.
    pub optimizer: &'a str,
    /// Its variant (e.g. MIPROv2's `auto` level), when it has variants.
    pub variant: Option<&'a str>,
    /// The request body (JSON).
    pub input: &'a [u8],
}

/// One logged decision, as the server hands it to the writer. Its texts live in one buffer:
/// one allocation per decision, freed by the writer thread in one go.
#[derive(Debug, Clone)]
pub struct NewDecision {
    /// Id reserved with [`super::Store::reserve_decision_ids`].
    pub id: i64,
    /// Milliseconds since the epoch.
    pub at_ms: i64,
    /// `http` or `cli`.
    pub source: &'static str,
    /// Estimated cost in USD.
    pub estimated_cost: f64,
    /// Estimated time in minutes.
    pub estimated_time: f64,
    /// request id, revision, rule, optimizer, variant, input, output, back to back.
    buf: Vec<u8>,
    /// Where each of the seven texts ends in `buf`.
    ends: [u32; 7],
    /// Whether the request id and the variant are present.
    present: (bool, bool),
}

impl NewDecision {
    /// Packs a decision; `write_output` appends the output JSON.
    pub fn new(
        id: i64,
        at_ms: i64,
        source: &'static str,
        (estimated_cost, estimated_time): (f64, f64),
        t: DecisionTexts<'_>,
        write_output: impl FnOnce(&mut Vec<u8>),
    ) -> Self {
        let mut buf = Vec::with_capacity(640);
        let mut ends = [0u32; 7];
        let parts: [&[u8]; 6] = [
            t.request_id.unwrap_or("").as_bytes(),
            t.revision.as_bytes(),
            t.rule.as_bytes(),
            t.optimizer.as_bytes(),
            t.variant.unwrap_or("").as_bytes(),
            t.input,
        ];
        for (k, p) in parts.iter().enumerate() {
            buf.extend_from_slice(p);
            ends[k] = buf.len() as u32;
        }
        write_output(&mut buf);
        ends[6] = buf.len() as u32;
        NewDecision {
            id,
            at_ms,
            source,
            estimated_cost,
            estimated_time,
            buf,
            ends,
            present: (t.request_id.is_some(), t.variant.is_some()),
        }
    }

    fn part(&self, k: usize) -> &[u8] {
        let start = if k == 0 { 0 } else { self.ends[k - 1] as usize };
        self.buf
            .get(start..self.ends[k] as usize)
            .unwrap_or_default()
    }

    fn text(&self, k: usize, what: &str) -> Result<&str, StoreError> {
        std::str::from_utf8(self.part(k))
            .map_err(|_| StoreError::Invalid(format!("decision {}: {what} is not UTF-8", self.id)))
    }

    /// The output JSON.
    pub fn output(&self) -> &[u8] {
        self.part(6)
    }

    /// The row's texts, as every backend writes them. Refused, alike on every backend: a text
    /// that is not UTF-8 or holds a NUL character (PostgreSQL cannot store one), an estimate
    /// that is not finite (SQLite would store NaN as NULL).
    pub(super) fn row(&self) -> Result<DecisionRow<'_>, StoreError> {
        const NAMES: [&str; 7] = [
            "request id",
            "revision",
            "rule",
            "optimizer",
            "variant",
            "input",
            "output",
        ];
        let mut t = [""; 7];
        for (k, name) in NAMES.iter().enumerate() {
            t[k] = self.text(k, name)?;
            if t[k].contains('\0') {
                return Err(StoreError::Invalid(format!(
                    "decision {}: the {name} contains a NUL character",
                    self.id
                )));
            }
        }
        for (name, x) in [
            ("estimated cost", self.estimated_cost),
            ("estimated time", self.estimated_time),
        ] {
            if !x.is_finite() {
                return Err(StoreError::Invalid(format!(
                    "decision {}: the {name} is {x}; it must be a finite number",
                    self.id
                )));
            }
        }
        Ok(DecisionRow {
            request_id: self.present.0.then_some(t[0]),
            revision: t[1],
            rule: t[2],
            optimizer: t[3],
            variant: self.present.1.then_some(t[4]),
            input: t[5],
            output: t[6],
        })
    }
}

/// The text columns of one decision row.
pub(super) struct DecisionRow<'a> {
    pub(super) request_id: Option<&'a str>,
    pub(super) revision: &'a str,
    pub(super) rule: &'a str,
    pub(super) optimizer: &'a str,
    pub(super) variant: Option<&'a str>,
    pub(super) input: &'a str,
    pub(super) output: &'a str,
}

/// A decision read back from the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRecord {
    /// Decision id.
    pub id: i64,
    /// Milliseconds since the epoch.
    pub at_ms: i64,
    /// Request id.
    pub request_id: Option<String>,
    /// `http` or `cli`.
    pub source: String,
    /// Rules revision.
    pub revision: String,
    /// Rule that fired.
    pub rule: String,
    /// Recommended optimizer.
    pub optimizer: String,
    /// Its variant.
    pub variant: Option<String>,
    /// Estimated cost in USD.
    pub estimated_cost: f64,
    /// Estimated time in minutes.
    pub estimated_time: f64,
    /// The request body.
    pub input: serde_json::Value,
    /// The response body.
    pub output: serde_json::Value,
}

pub use crate::engine::metrics::DecisionCounts;

/// The `meta` key of the next unreserved decision id.
pub(super) const NEXT_ID_KEY: &str = "next_decision_id";

/// Reserves `n` ids (inside the writer's transaction); returns the first.
pub fn reserve(conn: &Connection, n: i64) -> Result<i64, StoreError> {
    if n < 1 {
        return Err(StoreError::Invalid(format!(
            "cannot reserve {n} decision ids"
        )));
    }
    let stored: Option<String> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([NEXT_ID_KEY], |r| r.get(0))
        .optional()?;
    let stored = stored.and_then(|s| s.parse::<i64>().ok()).unwrap_or(1);
    let max: Option<i64> = conn
        .prepare_cached("SELECT MAX(id) FROM decisions")?
        .query_row([], |r| r.get(0))?;
    let start = stored.max(max.unwrap_or(0) + 1);
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![NEXT_ID_KEY, (start + n).to_string()])?;
    Ok(start)
}

/// Inserts decisions (inside the writer's transaction). Texts must be UTF-8; a bad entry is
/// refused before anything is written.
pub fn insert(conn: &Connection, rows: &[NewDecision]) -> Result<usize, StoreError> {
    let texts = rows
        .iter()
        .map(NewDecision::row)
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO decisions (id, created_at, request_id, source, revision, rule, optimizer, \
         variant, estimated_cost, estimated_time, input, output) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    for (d, t) in rows.iter().zip(texts) {
        stmt.execute(params![
            d.id,
            d.at_ms,
            t.request_id,
            d.source,
            t.revision,
            t.rule,
            t.optimizer,
            t.variant,
            d.estimated_cost,
            d.estimated_time,
            t.input,
            t.output
        ])?;
    }
    Ok(rows.len())
}

/// Columns of `decisions`, in the order the row mappers read them.
pub(super) const COLUMNS: &str = "id, created_at, request_id, source, revision, rule, optimizer, \
     variant, estimated_cost, estimated_time, input, output";

/// Maps a row selected with [`COLUMNS`], on either backend.
pub(super) fn decision_from<R: Columns>(r: &R) -> Result<DecisionRecord, R::Error> {
    Ok(DecisionRecord {
        id: r.int(0)?,
        at_ms: r.int(1)?,
        request_id: r.opt_text(2)?,
        source: r.text(3)?,
        revision: r.text(4)?,
        rule: r.text(5)?,
        optimizer: r.text(6)?,
        variant: r.opt_text(7)?,
        estimated_cost: r.real(8)?,
        estimated_time: r.real(9)?,
        input: json(r.opt_text(10)?).unwrap_or(serde_json::Value::Null),
        output: json(r.opt_text(11)?).unwrap_or(serde_json::Value::Null),
    })
}

/// One decision by id.
pub fn get(conn: &Connection, id: i64) -> Result<Option<DecisionRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM decisions WHERE id = ?1"))?
        .query_row([id], |r| decision_from(r))
        .optional()?)
}

/// Calls `f` with every decision made at or after `since_ms`, oldest first.
pub fn each_since(
    conn: &Connection,
    since_ms: i64,
    mut f: impl FnMut(DecisionRecord),
) -> Result<u64, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM decisions WHERE created_at >= ?1 ORDER BY id"
    ))?;
    let mut rows = stmt.query([since_ms])?;
    let mut n = 0;
    while let Some(r) = rows.next()? {
        f(decision_from(r)?);
        n += 1;
    }
    Ok(n)
}

/// Counts per optimizer, rule and revision of the decisions made at or after `since_ms`.
pub fn counts(conn: &Connection, since_ms: i64) -> Result<DecisionCounts, StoreError> {
    let mut out = DecisionCounts::default();
    let mut stmt = conn.prepare(
        "SELECT optimizer, rule, revision, COUNT(*) FROM decisions WHERE created_at >= ?1 \
         GROUP BY optimizer, rule, revision",
    )?;
    let mut rows = stmt.query([since_ms])?;
    while let Some(r) = rows.next()? {
        let (opt, rule, rev, n): (String, String, String, i64) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        let n = n.max(0) as u64;
        out.total += n;
        *out.by_optimizer.entry(opt).or_default() += n;
        *out.by_rule.entry(rule).or_default() += n;
        *out.by_revision.entry(rev).or_default() += n;
    }
    Ok(out)
}

/// Decisions per optimizer in `buckets` equal intervals of `bucket_ms` from `since_ms`:
/// one map per interval, oldest first (decisions after the last interval are left out).
pub fn timeline(
    conn: &Connection,
    since_ms: i64,
    bucket_ms: i64,
    buckets: usize,
) -> Result<Vec<BTreeMap<String, u64>>, StoreError> {
    let mut out = vec![BTreeMap::new(); buckets];
    let mut stmt = conn.prepare(
        "SELECT (created_at - ?1) / ?2, optimizer, COUNT(*) FROM decisions \
         WHERE created_at >= ?1 GROUP BY 1, 2",
    )?;
    let mut rows = stmt.query([since_ms, bucket_ms.max(1)])?;
    while let Some(r) = rows.next()? {
        let (k, opt, n): (i64, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        if let Some(slot) = usize::try_from(k).ok().and_then(|k| out.get_mut(k)) {
            slot.insert(opt, n.max(0) as u64);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_pack_and_unpack() {
        let d = NewDecision::new(
            7,
            1,
            "http",
            (2.5, 14.0),
            DecisionTexts {
                request_id: Some("abc"),
                revision: "rev",
                rule: "r1",
                optimizer: "miprov2",
                variant: None,
                input: br#"{"trainset_size":200}"#,
            },
            |out| out.extend_from_slice(b"{}"),
        );
        let t: Vec<&str> = (0..7).map(|k| d.text(k, "x").unwrap()).collect();
        assert_eq!(
            t,
            [
                "abc",
                "rev",
                "r1",
                "miprov2",
                "",
                r#"{"trainset_size":200}"#,
                "{}"
            ]
        );
        assert_eq!(d.present, (true, false));
        assert_eq!(d.output(), b"{}");
    }
}
