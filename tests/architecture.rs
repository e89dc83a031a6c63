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

/// The paths a use tree at the start of `s` names, each as its segments: `a::{b, c::{d, e}}`
/// names `a::b`, `a::c::d` and `a::c::e`; a group's `self` or `*` names the group's own path,
/// an `as` rename is skipped. Reading stops where the tree ends (`a::b(x)` names `a::b`).
fn use_tree(s: &str) -> Vec<Vec<String>> {
    fn skip_space(s: &[u8], i: &mut usize) {
        while s.get(*i).is_some_and(|c| c.is_ascii_whitespace()) {
            *i += 1;
        }
    }
    fn word(s: &[u8], i: &mut usize) -> String {
        let start = *i;
        while s
            .get(*i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            *i += 1;
        }
        String::from_utf8_lossy(&s[start..*i]).into_owned()
    }
    fn tree(s: &[u8], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        loop {
            if s.get(*i) == Some(&b'{') {
                *i += 1;
                loop {
                    skip_space(s, i);
                    match s.get(*i) {
                        None => return,
                        Some(b'}') => {
                            *i += 1;
                            return;
                        }
                        Some(b',') => *i += 1,
                        Some(_) => {
                            let before = *i;
                            tree(s, i, &path, out);
                            if *i == before {
                                *i += 1;
                            }
                        }
                    }
                }
            }
            if s.get(*i) == Some(&b'*') {
                *i += 1;
                out.push(path);
                return;
            }
            let name = word(s, i);
            if name.is_empty() {
                out.push(path);
                return;
            }
            if name != "self" {
                path.push(name);
            }
            if s[*i..].starts_with(b"::") {
                *i += 2;
                continue;
            }
            let mut j = *i;
            skip_space(s, &mut j);
            if s[j..].starts_with(b"as") && s.get(j + 2).is_some_and(|c| c.is_ascii_whitespace()) {
                j += 2;
                skip_space(s, &mut j);
                word(s, &mut j);
                *i = j;
            }
            out.push(path);
            return;
        }
    }
    let mut out = Vec::new();
    tree(s.as_bytes(), &mut 0, &[], &mut out);
    out
}

/// Every `crate::name` the code refers to, grouped imports (`crate::{a, b::c}`) included.
fn crate_refs(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let before = rest[..i].chars().last();
        // `skill_fleet_crate::` or `$crate::` are not this crate's paths.
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            out.extend(
                use_tree(after)
                    .into_iter()
                    .filter_map(|p| p.into_iter().next()),
            );
        }
        rest = after;
    }
    out
}

/// What a file may not name, by its module.
fn forbidden_words(module: &str) -> Vec<&'static str> {
    let mut words = Vec::new();
    if module != "store" {
        words.extend(["rusqlite::", "postgres::", "tokio_postgres::"]);
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
    let mut targets = crate_refs(&code);
    targets.sort();
    targets.dedup();
    for target in targets {
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
            "rules/template.rs",
            "use crate::{\n    diagnostic::Pos,\n    engine::{json, round as r},\n};",
        ),
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

// ---------------------------------------------------------------------------------------------
// No import loop between files
// ---------------------------------------------------------------------------------------------

/// The module path of a file under `src/` (`http/routes.rs` → `["http", "routes"]`,
/// `http/mod.rs` → `["http"]`, `lib.rs` → `[]`).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    if parts
        .last()
        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
    {
        parts.pop();
    }
    parts
}

/// The code before the first `#[cfg(test)]` (tests may use anything).
fn non_test(code: &str) -> &str {
    code.find("#[cfg(test)]").map_or(code, |i| &code[..i])
}

/// The paths a file names: `crate::a::b::c` and `super::…::x` (resolved from `module`),
/// grouped imports expanded, each as a list of segments.
fn named_paths(module: &[String], is_dir_module: bool, code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for (i, _) in code.match_indices("crate::") {
        let before = i.checked_sub(1).map(|k| bytes[k] as char);
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == ':') {
            continue;
        }
        out.extend(use_tree(&code[i + "crate::".len()..]));
    }
    let mut i = 0;
    while let Some(k) = code[i..].find("super::") {
        let start = i + k;
        let before = start.checked_sub(1).map(|k| bytes[k] as char);
        let mut rest = &code[start..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            ups += 1;
            rest = r;
        }
        i = code.len() - rest.len();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        // `super` of a file `a/b.rs` is `a`; of a directory module `a/b/mod.rs` it is `a`
        // too, one level more.
        let own = if is_dir_module {
            module.len()
        } else {
            module.len().saturating_sub(1)
        };
        let depth = if is_dir_module {
            own.saturating_sub(ups)
        } else {
            (own + 1).saturating_sub(ups)
        };
        let base = &module[..depth.min(module.len())];
        for tail in use_tree(rest) {
            let mut p = base.to_vec();
            p.extend(tail);
            out.push(p);
        }
    }
    out
}

/// Loops among `files` (module path → non-test code, directory modules marked), each as the
/// files in it. A module and the modules inside it do not count as a loop (a parent declares
/// its children and they use its types).
fn import_loops(files: &[(Vec<String>, bool, String)]) -> Vec<Vec<String>> {
    let index = |path: &[String]| -> Option<usize> {
        (0..=path.len()).rev().find_map(|n| {
            files
                .iter()
                .position(|(m, _, _)| m.as_slice() == &path[..n])
        })
    };
    let inside = |a: &[String], b: &[String]| a.len() <= b.len() && b[..a.len()] == *a;
    let edges: Vec<Vec<usize>> = files
        .iter()
        .map(|(m, dir, code)| {
            let mut to: Vec<usize> = named_paths(m, *dir, code)
                .iter()
                .filter_map(|p| index(p))
                .filter(|&t| !inside(&files[t].0, m) && !inside(m, &files[t].0))
                .collect();
            to.sort_unstable();
            to.dedup();
            to
        })
        .collect();
    // Which file reaches which (files are few: a closure by search is enough).
    let reach = |from: usize| -> Vec<bool> {
        let mut seen = vec![false; files.len()];
        let mut stack = edges[from].clone();
        while let Some(v) = stack.pop() {
            if !seen[v] {
                seen[v] = true;
                stack.extend(&edges[v]);
            }
        }
        seen
    };
    let all: Vec<Vec<bool>> = (0..files.len()).map(reach).collect();
    let mut loops: Vec<Vec<String>> = Vec::new();
    let mut placed = vec![false; files.len()];
    for a in 0..files.len() {
        if placed[a] || !all[a][a] {
            continue;
        }
        let group: Vec<usize> = (0..files.len())
            .filter(|&b| all[a][b] && all[b][a])
            .collect();
        for &b in &group {
            placed[b] = true;
        }
        loops.push(group.iter().map(|&b| files[b].0.join("/")).collect());
    }
    loops
}

#[test]
fn no_import_loop_between_files() {
    let src = root().join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    paths.sort();
    let files: Vec<(Vec<String>, bool, String)> = paths
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).expect("under src");
            let dir = rel.file_name().is_some_and(|n| n == "mod.rs");
            let text = std::fs::read_to_string(p).expect("read");
            (module_path(rel), dir, code(non_test(&text)))
        })
        .collect();
    let loops = import_loops(&files);
    assert!(
        loops.is_empty(),
        "files that import each other (directly or round a circle):\n{}",
        loops
            .iter()
            .map(|l| l.join(" <-> "))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_loop_check_finds_a_loop() {
    let f = |m: &str, dir: bool, code: &str| {
        (
            m.split('/').map(str::to_string).collect::<Vec<_>>(),
            dir,
            code.to_string(),
        )
    };
    // rules/script.rs and rules/instrument.rs once did this.
    let files = vec![
        f("rules", true, "pub mod script; pub mod instrument;"),
        f("rules/script", false, "use super::instrument::Recorder;"),
        f("rules/instrument", false, "use super::script::Origin;"),
        f("http/routes", false, "use crate::http::openapi::text;"),
        f("http/openapi", false, "use crate::rules::script::Origin;"),
    ];
    assert_eq!(
        import_loops(&files),
        vec![vec!["rules/script", "rules/instrument"]]
    );
    // A circle of three, through `crate::` and `super::super::`.
    let files = vec![
        f("a", true, ""),
        f("a/b", true, "use crate::c::d;"),
        f("a/b/x", false, "use super::super::b::y;"),
        f("c", true, ""),
        f("c/d", false, "use crate::e::f;"),
        f("e", true, ""),
        f("e/f", false, "use crate::a::b::Thing;"),
    ];
    assert_eq!(import_loops(&files), vec![vec!["a/b", "c/d", "e/f"]]);
    // Through grouped imports, as `store/open.rs` and `store/migrations.rs` once did.
    let files = vec![
        f("store", true, "mod open; mod migrations;"),
        f(
            "store/open",
            false,
            "use super::{file, migrations::{self, version_at as v}, Store};",
        ),
        f(
            "store/migrations",
            false,
            "use super::{open::open_conn, StoreError};",
        ),
    ];
    assert_eq!(
        import_loops(&files),
        vec![vec!["store/open", "store/migrations"]]
    );
    // A parent and its children are not a loop.
    let files = vec![
        f("rules", true, "use script::Origin; mod script;"),
        f(
            "rules/script",
            false,
            "use super::RuleSet; use crate::rules::Rule;",
        ),
    ];
    assert!(import_loops(&files).is_empty());
}
