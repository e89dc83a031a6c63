//! Reads a rules directory into [`SourceFile`]s (the only filesystem access of the rule
//! pipeline; building and validating happens in [`crate::rules`]), keeps the live rule set
//! ([`live`]) and watches the directory for changes ([`watch`], the only user of notify).

pub mod live;
pub mod watch;

use crate::diagnostic::{Diagnostic, SourceFile};
use std::path::{Path, PathBuf};

/// Largest rule file accepted, to keep a stray data file from stalling a reload.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

fn is_rule_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "rhai")
    )
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> std::io::Result<()> {
    if depth > 8 {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden {
            continue;
        }
        let ty = entry.file_type()?;
        if ty.is_dir() {
            walk(&path, out, depth + 1)?;
        } else if is_rule_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads every `.yaml`, `.yml` and `.rhai` file under `dir` (recursively, hidden entries
/// skipped), sorted by path.
pub fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, Diagnostic> {
    let shown = dir.display().to_string();
    if !dir.exists() {
        return Err(
            Diagnostic::error(format!("rules directory `{shown}` does not exist"))
                .with_help("pass --rules DIR, or run from the repository root where `rules/` is"),
        );
    }
    if !dir.is_dir() {
        return Err(Diagnostic::error(format!("`{shown}` is not a directory"))
            .with_help("--rules takes the directory that holds the rule files"));
    }
    let mut paths = Vec::new();
    walk(dir, &mut paths, 0)
        .map_err(|e| Diagnostic::error(format!("cannot read rules directory `{shown}`: {e}")))?;
    paths.sort();
    if paths.is_empty() {
        return Err(
            Diagnostic::error(format!("rules directory `{shown}` has no rule files")).with_help(
                "a rule set is .yaml files (and optional .rhai scripts); see rules/README.md",
            ),
        );
    }
    let mut files = Vec::with_capacity(paths.len());
    for p in paths {
        let display = p.display().to_string();
        let meta = std::fs::metadata(&p)
            .map_err(|e| Diagnostic::error(format!("cannot read `{display}`: {e}")))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(Diagnostic::error(format!(
                "`{display}` is {} bytes, over the limit of {MAX_FILE_BYTES}",
                meta.len()
            ))
            .with_help("rule files are small; move data elsewhere"));
        }
        let text = std::fs::read_to_string(&p)
            .map_err(|e| Diagnostic::error(format!("cannot read `{display}`: {e}")))?;
        files.push(SourceFile::new(display, text));
    }
    Ok(files)
}
