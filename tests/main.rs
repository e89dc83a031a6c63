//! Integration tests: one test binary, one module per area. They run the real `skill-fleet`
//! binary; fixtures live under `tests/data/`.

mod support;
mod temp;

mod analysis;
mod architecture;
mod browser;
mod cli_jobs;
mod cli_rules;
mod console_api;
mod coverage;
mod crash;
mod diagnostics;
mod examples;
mod exit_codes;
mod hardening;
mod jobs_api;
mod logging;
mod multi_node;
mod oracle;
mod outcomes;
mod pg_cluster;
mod pg_nodes;
mod postgres;
mod pre_commit;
mod properties;
mod python;
mod readme;
mod server;
mod store_conformance;
mod training;
mod worker;
