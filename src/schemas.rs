//! Every document the project commits under `schemas/`, generated from the Rust types: the rule
//! file, the decision, the configuration, a history record, the training examples and the
//! OpenAPI document of the HTTP API. `rules schema` writes them and `--check` compares them.

use crate::rules::schema::{generate, rule_file_schema};

/// A generated document: its file name under `schemas/` and its JSON text.
#[derive(Debug, Clone)]
pub struct SchemaDoc {
    /// File name, e.g. `rule-file.schema.json`.
    pub file: &'static str,
    /// Pretty-printed JSON with a trailing newline.
    pub text: String,
}

fn pretty(v: &impl serde::Serialize) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// Every document, in a fixed order.
pub fn all() -> Vec<SchemaDoc> {
    vec![
        SchemaDoc {
            file: "rule-file.schema.json",
            text: pretty(&rule_file_schema()),
        },
        SchemaDoc {
            file: "decision.schema.json",
            text: pretty(&generate::<crate::decision::Decision>()),
        },
        SchemaDoc {
            file: "config.schema.json",
            text: pretty(&generate::<crate::config::Config>()),
        },
        SchemaDoc {
            file: "history-record.schema.json",
            text: pretty(&generate::<crate::rules::spec::HistoryRecord>()),
        },
        SchemaDoc {
            file: "training-examples.schema.json",
            text: pretty(&generate::<Vec<crate::engine::training::Example>>()),
        },
        SchemaDoc {
            file: "openapi.json",
            text: crate::http::openapi::text(),
        },
    ]
}
