#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! skill-fleet: a rules-driven engine that decides which DSPy optimizer to run, what it will
//! cost, and why.
//!
//! # Layout
//!
//! - [`diagnostic`]: source files, positions, `file:line:col` diagnostics.
//! - [`util`]: rounding, hand-written JSON, time as text: the leaf every layer may use.
//! - [`rules`]: the rule file format, its parsing and validation, compilation into an immutable
//!   [`rules::RuleSet`], the Rhai sandbox and its time limits. Pure: no I/O.
//! - [`engine`]: the decision (selection, cost, time, confidence, alternatives, budget guard).
//!   Pure: no I/O, no clock.
//! - [`decision`]: the decision and trace types returned by the CLI and the API.
//! - [`check`]: what runs a rule set above the engine: fixtures, coverage, rule analysis, the
//!   impact of a change. Pure.
//! - [`schemas`]: the documents committed under `schemas/`.
//! - [`outcome`]: outcomes of optimization runs as plain data (reports, recorded outcomes).
//! - [`loader`]: reads a rules directory into source files (the only filesystem access of the
//!   rule pipeline), keeps the live rule set and hot-reloads it (the only module that knows
//!   notify).
//! - [`config`]: configuration layers (defaults < file < environment < flags).
//! - [`store`]: the SQLite database (the only module that knows rusqlite).
//! - [`http`]: the HTTP API on hyper and tokio (the only module that knows hyper).
//! - [`timefmt`]: the clock, read at the edges.
//!
//! The layers point one way (util, diagnostic < rules, decision < engine, outcome < check <
//! the edges); `tests/architecture.rs` enforces it.
//! - [`cli`]: the `skill-fleet` command line.

pub mod check;
pub mod cli;
pub mod config;
pub mod decision;
pub mod diagnostic;
pub mod engine;
pub mod http;
pub mod loader;
pub mod outcome;
pub mod rules;
pub mod schemas;
pub mod store;
pub mod timefmt;
pub mod util;
