//! Source files, positions and diagnostics rendered as `file:line:col`.
//!
//! Every problem found in a rule set is a [`Diagnostic`]. They are collected, never thrown one
//! at a time, so a maintainer sees all of them at once.

use serde::Serialize;
use std::fmt::Write as _;

/// One file of a rule set, as read by the loader: its display path and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path shown in diagnostics, e.g. `rules/selection.yaml`.
    pub path: String,
    /// Full text of the file.
    pub text: String,
}

impl SourceFile {
    /// Creates a source file from a display path and its text.
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
        }
    }
}

/// A position in a file: 1-based line and column, and the length of the marked text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
    /// Number of characters to underline (at least 1 when rendered).
    #[serde(skip)]
    pub len: usize,
}

impl Pos {
    /// A position with an underline length.
    pub fn new(line: usize, col: usize, len: usize) -> Self {
        Self { line, col, len }
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The rule set is invalid and is not served.
    Error,
    /// Worth a look; the rule set is still valid.
    Warning,
}

/// A problem with a file (or a rule set as a whole), with an optional position and advice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Lower-case message without a trailing period; user input in backticks.
    pub message: String,
    /// The file the problem is in, when it is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Position in `file`.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub pos: Option<Pos>,
    /// Advice, such as a "did you mean" suggestion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error not tied to a file.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            message: message.into(),
            file: None,
            pos: None,
            help: None,
        }
    }

    /// A warning not tied to a file.
    pub fn warning(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(message)
        }
    }

    /// Attaches a file and position.
    pub fn at(mut self, file: impl Into<String>, pos: Option<Pos>) -> Self {
        self.file = Some(file.into());
        self.pos = pos;
        self
    }

    /// Attaches a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Attaches a help line when there is one.
    pub fn with_help_opt(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    /// `file:line:col`, `file` or nothing.
    pub fn location(&self) -> Option<String> {
        let file = self.file.as_ref()?;
        Some(match self.pos {
            Some(p) => format!("{file}:{}:{}", p.line, p.col),
            None => file.clone(),
        })
    }

    /// Renders the diagnostic for a terminal, quoting the source line when `files` has it.
    pub fn render(&self, files: &[SourceFile]) -> String {
        let mut out = String::new();
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{label}: {}", self.message);
        if let Some(loc) = self.location() {
            let source_line = match (&self.file, self.pos) {
                (Some(f), Some(p)) => files
                    .iter()
                    .find(|s| &s.path == f)
                    .and_then(|s| s.text.lines().nth(p.line.saturating_sub(1))),
                _ => None,
            };
            match (source_line, self.pos) {
                (Some(text), Some(p)) => {
                    let num = p.line.to_string();
                    let pad = " ".repeat(num.len());
                    let _ = writeln!(out, "{pad}--> {loc}");
                    let _ = writeln!(out, "{pad} |");
                    let _ = writeln!(out, "{num} | {text}");
                    let indent: String = text
                        .chars()
                        .take(p.col.saturating_sub(1))
                        .map(|c| if c == '\t' { '\t' } else { ' ' })
                        .collect();
                    let _ = writeln!(out, "{pad} | {indent}{}", "^".repeat(p.len.max(1)));
                    if let Some(help) = &self.help {
                        let _ = writeln!(out, "{pad} = help: {help}");
                    }
                    return out;
                }
                _ => {
                    let _ = writeln!(out, " --> {loc}");
                }
            }
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "  = help: {help}");
        }
        out
    }
}

/// True when any diagnostic is an error.
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(|d| d.severity == Severity::Error)
}

/// Renders all diagnostics for a terminal, separated by blank lines.
pub fn render_all(diags: &[Diagnostic], files: &[SourceFile]) -> String {
    diags
        .iter()
        .map(|d| d.render(files))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Edit distance between two strings (Levenshtein, by characters).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate to `word`, when it is close enough to be a likely typo.
pub fn suggest<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let word_l = word.to_lowercase();
    let n = word_l.chars().count();
    candidates
        .into_iter()
        .map(|c| {
            let c_l = c.to_lowercase();
            // A typo in a prefix (`budjet` for `budget_usd`) counts as close too.
            let head: String = c_l.chars().take(n).collect();
            let d = distance(&word_l, &c_l).min(distance(&word_l, &head) + 1);
            (d, c)
        })
        .filter(|(d, _)| *d <= (n / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// `did you mean `x`?` for the closest candidate, when there is one.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    suggest(word, candidates).map(|s| format!("did you mean `{s}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["miprov2", "gepa", "bootstrap_fewshot"];
        assert_eq!(suggest("miprov3", names), Some("miprov2".into()));
        assert_eq!(
            suggest("bootstrap_fewshoot", names),
            Some("bootstrap_fewshot".into())
        );
        assert_eq!(suggest("zzzzzz", names), None);
        assert_eq!(
            suggest("budjet", ["budget_usd", "domain"]),
            Some("budget_usd".into())
        );
        assert_eq!(suggest("x", ["budget_usd", "domain"]), None);
    }

    #[test]
    fn renders_source_line_with_caret() {
        let files = [SourceFile::new("r.yaml", "a: 1\nb: oops\n")];
        let d = Diagnostic::error("bad value `oops`")
            .at("r.yaml", Some(Pos::new(2, 4, 4)))
            .with_help("use a number");
        let text = d.render(&files);
        assert_eq!(
            text,
            "error: bad value `oops`\n --> r.yaml:2:4\n  |\n2 | b: oops\n  |    ^^^^\n  = help: use a number\n"
        );
    }

    #[test]
    fn renders_without_position() {
        let d = Diagnostic::error("rules directory `x` does not exist").with_help("pass --rules");
        assert_eq!(
            d.render(&[]),
            "error: rules directory `x` does not exist\n  = help: pass --rules\n"
        );
    }
}
