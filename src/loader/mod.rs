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
        // The entry's own type: a symlink to a directory is not followed (no loops), a
        // symlink named like a rule file is resolved and checked when it is read.
        let ty = entry.file_type()?;
        if ty.is_dir() {
            walk(&path, out, depth + 1)?;
        } else if is_rule_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Why a rules directory gives no source files.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    /// The directory, or a file in it, cannot be read: missing, not a directory, no
    /// permission, not a regular file, a symlink leading out of the directory (exit code 5).
    #[error("{}", .0.message)]
    Unreadable(Diagnostic),
    /// It reads, but holds no rule set: no rule files, a file over the size limit (exit
    /// code 3, like any invalid rule set).
    #[error("{}", .0.message)]
    Invalid(Diagnostic),
}

impl ReadError {
    /// The diagnostic to show.
    pub fn diagnostic(&self) -> &Diagnostic {
        match self {
            ReadError::Unreadable(d) | ReadError::Invalid(d) => d,
        }
    }

    /// The diagnostic, owned.
    pub fn into_diagnostic(self) -> Diagnostic {
        match self {
            ReadError::Unreadable(d) | ReadError::Invalid(d) => d,
        }
    }

    /// With a help line replacing the one it has.
    pub fn with_help(self, help: &str) -> Self {
        match self {
            ReadError::Unreadable(d) => ReadError::Unreadable(d.with_help(help)),
            ReadError::Invalid(d) => ReadError::Invalid(d.with_help(help)),
        }
    }
}

/// Opens without blocking: opening a FIFO for reading would otherwise wait for a writer.
#[cfg(unix)]
fn open_nonblocking(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK, the same value on every Linux architecture Rust supports and on the BSDs
    // and macOS it is 4; only the FIFO and device case cares, and the type is checked on the
    // open handle right after.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const O_NONBLOCK: i32 = 0o4000;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const O_NONBLOCK: i32 = 4;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(p)
}

#[cfg(not(unix))]
fn open_nonblocking(p: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(p)
}

/// Reads one rule file: a regular file (a symlink is followed only when it resolves to a
/// regular file inside `root`), at most [`MAX_FILE_BYTES`], whatever its metadata says.
fn read_rule_file(p: &Path, root: &Path) -> Result<String, ReadError> {
    use std::io::Read;
    let display = p.display().to_string();
    let unreadable = |what: String| ReadError::Unreadable(Diagnostic::error(what));
    let link = std::fs::symlink_metadata(p)
        .map_err(|e| unreadable(format!("cannot read `{display}`: {e}")))?;
    if link.file_type().is_symlink() {
        let target = std::fs::canonicalize(p)
            .map_err(|e| unreadable(format!("cannot follow the symlink `{display}`: {e}")))?;
        if !target.starts_with(root) {
            return Err(ReadError::Unreadable(
                Diagnostic::error(format!(
                    "`{display}` is a symlink to a file outside the rules directory"
                ))
                .with_help("rule files must live under the rules directory; copy the file in"),
            ));
        }
    }
    let file =
        open_nonblocking(p).map_err(|e| unreadable(format!("cannot read `{display}`: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| unreadable(format!("cannot read `{display}`: {e}")))?;
    if !meta.is_file() {
        return Err(ReadError::Unreadable(
            Diagnostic::error(format!(
                "`{display}` is not a regular file ({})",
                kind(&meta)
            ))
            .with_help("remove it from the rules directory; only regular files are read"),
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(format!("cannot read `{display}`: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::Invalid(
            Diagnostic::error(format!(
                "`{display}` is over the limit of {MAX_FILE_BYTES} bytes"
            ))
            .with_help("rule files are small; move data elsewhere"),
        ));
    }
    String::from_utf8(bytes).map_err(|_| {
        ReadError::Invalid(
            Diagnostic::error(format!("`{display}` is not UTF-8 text"))
                .with_help("rule files are UTF-8 YAML or Rhai"),
        )
    })
}

/// What a non-regular file is, for the diagnostic.
fn kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Reads every `.yaml`, `.yml` and `.rhai` file under `dir` (recursively, hidden entries
/// skipped), sorted by path. Only regular files are read, each capped at [`MAX_FILE_BYTES`];
/// opening never blocks (a FIFO is refused, not waited on).
pub fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, ReadError> {
    let shown = dir.display().to_string();
    if !dir.exists() {
        return Err(ReadError::Unreadable(
            Diagnostic::error(format!("rules directory `{shown}` does not exist"))
                .with_help("pass --rules DIR, or run from the repository root where `rules/` is"),
        ));
    }
    if !dir.is_dir() {
        return Err(ReadError::Unreadable(
            Diagnostic::error(format!("`{shown}` is not a directory"))
                .with_help("--rules takes the directory that holds the rule files"),
        ));
    }
    let root = std::fs::canonicalize(dir).map_err(|e| {
        ReadError::Unreadable(Diagnostic::error(format!(
            "cannot read rules directory `{shown}`: {e}"
        )))
    })?;
    let mut paths = Vec::new();
    walk(dir, &mut paths, 0).map_err(|e| {
        ReadError::Unreadable(Diagnostic::error(format!(
            "cannot read rules directory `{shown}`: {e}"
        )))
    })?;
    paths.sort();
    if paths.is_empty() {
        return Err(ReadError::Invalid(
            Diagnostic::error(format!("rules directory `{shown}` has no rule files")).with_help(
                "a rule set is .yaml files (and optional .rhai scripts); see rules/README.md",
            ),
        ));
    }
    let mut files = Vec::with_capacity(paths.len());
    for p in paths {
        let text = read_rule_file(&p, &root)?;
        files.push(SourceFile::new(p.display().to_string(), text));
    }
    Ok(files)
}
