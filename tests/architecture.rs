//! The layers point one way, read from the `crate::…` paths of every file under `src/`
//! (comments aside):
//!
//! ```text
//! 0 leaf      util, diagnostic
//! 1 format    rules, decision               the rule format and compiler, the decision types
//! 2 engine    engine, outcome               the pure decision
//! 3 checks    check                         fixtures, coverage, analysis, impact
//! 4 edges     loader, store, http, cli, config, timefmt, schemas, lib, main
//! ```
//!
//! A file may use its own layer and those below. Only `store` names rusqlite, only `http` hyper
//! (and hyper-util, http-body-util), only `loader` notify; the layers below the edges touch no
//! file, network, environment or clock.

use super::support::root;
use std::path::{Path, PathBuf};

/// The layer of a top-level module of the crate.
fn layer(module: &str) -> Option<u8> {
    Some(match module {
        "util" | "diagnostic" => 0,
        "rules" | "decision" => 1,
        "engine" | "outcome" => 2,
        "check" => 3,
        "loader" | "store" | "http" | "cli" | "config" | "timefmt" | "schemas" | "lib" | "main" => {
            4
        }
        _ => return None,
    })
}

/// The top-level module a file under `src/` belongs to.
fn module_of(rel: &Path) -> String {
    let first = rel.components().next().expect("a path under src");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// The code of a file without its comments (line comments, doc comments).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            // Not inside a string: good enough for this code base, which keeps `//` in strings
            // rare; a false hit only hides part of a line from the check.
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::name` the code refers to.
fn crate_refs(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let before = rest[..i].chars().last();
        // `skill_fleet_crate::` or `$crate::` are not this crate's paths.
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            out.push(name);
        }
        rest = after;
    }
    out
}

/// What a file may not name, by its module.
fn forbidden_words(module: &str) -> Vec<&'static str> {
    let mut words = Vec::new();
    if module != "store" {
        words.push("rusqlite::");
    }
    if module != "http" {
        words.extend(["hyper::", "hyper_util::", "http_body_util::"]);
    }
    if module != "loader" {
        words.push("notify::");
    }
    if layer(module).is_some_and(|l| l < 4) {
        words.extend([
            "std::fs",
            "std::net",
            "std::env::var",
            "Instant::now",
            "SystemTime",
            "tokio::",
        ]);
    }
    words
}

/// The violations of one file (`rel` under `src/`).
fn violations(rel: &Path, text: &str) -> Vec<String> {
    let module = module_of(rel);
    let Some(own) = layer(&module) else {
        return vec![format!(
            "src/{}: module `{module}` has no layer",
            rel.display()
        )];
    };
    let code = code(text);
    let mut out = Vec::new();
    for target in crate_refs(&code) {
        match layer(&target) {
            Some(l) if l > own => out.push(format!(
                "src/{}: `{module}` (layer {own}) uses `crate::{target}` (layer {l})",
                rel.display()
            )),
            _ => {}
        }
    }
    for word in forbidden_words(&module) {
        if code.contains(word) {
            out.push(format!("src/{}: `{module}` names `{word}`", rel.display()));
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn layers_point_one_way_and_edges_keep_their_crates() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 50, "{}", files.len());
    let mut all = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        all.extend(violations(f.strip_prefix(&src).expect("under src"), &text));
    }
    assert!(all.is_empty(), "layer violations:\n{}", all.join("\n"));
}

#[test]
fn the_check_finds_a_forbidden_import() {
    // What `rules/template.rs` once did, and a few more the check must see.
    let cases = [
        ("rules/template.rs", "use crate::engine::json::digits;\n"),
        (
            "engine/estimate.rs",
            "let x = crate::check::fixtures::run(rs);",
        ),
        ("check/impact.rs", "use crate::store::Store;"),
        ("cli/db.rs", "use rusqlite::Connection;"),
        ("rules/mod.rs", "let t = std::time::Instant::now();"),
        ("engine/mod.rs", "let f = std::fs::read(p);"),
    ];
    for (file, text) in cases {
        let v = violations(Path::new(file), text);
        assert_eq!(v.len(), 1, "{file}: {v:?}");
    }
    // Downward and sideways uses are fine; comments do not count.
    for (file, text) in [
        (
            "engine/estimate.rs",
            "use crate::rules::RuleSet;\nuse crate::util::round;",
        ),
        (
            "http/routes.rs",
            "use crate::store::Store;\nuse hyper::Request;",
        ),
        (
            "rules/mod.rs",
            "/// see [`crate::engine::recommend`]\nuse crate::diagnostic::Pos;",
        ),
    ] {
        assert_eq!(
            violations(Path::new(file), text),
            Vec::<String>::new(),
            "{file}"
        );
    }
}
