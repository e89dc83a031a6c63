//! Errors of CLI commands as values: the exit code and what to print on standard error.
//!
//! Every command returns `Result<Exit, CliError>` and stops with `?`; `cli::run` renders the
//! error, in one place. `Ok(Exit::Failed)` is not an error: the command ran, found failures
//! (fixtures failed) and printed its own report.

use super::api::ApiCallError;
use super::{read_error_exit, Exit, FileError};
use crate::diagnostic::{Diagnostic, SourceFile};
use crate::loader::ReadError;
use crate::rules::context::InputError;
use crate::store::StoreError;

/// One piece of what a failed command prints on standard error, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// A line `error: {message}`: lower case, user input in backticks.
    Error(String),
    /// A line `  = help: {advice}`, after the error it advises on.
    Help(String),
    /// Diagnostics (rule-file problems at `file:line:col`), rendered with their source files.
    Diagnostics(Vec<Diagnostic>, Vec<SourceFile>),
    /// The problems of one input (item `index` of an array), field by field.
    Input(Vec<InputError>, Option<usize>),
    /// An empty line, between diagnostics and the error line that sums them up.
    Blank,
}

/// Why a command stopped: the exit code and what to print (nothing when the command already
/// reported it, e.g. as JSON on standard output).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.headline())]
pub struct CliError {
    exit: Exit,
    parts: Vec<Part>,
}

impl CliError {
    /// An error line with its exit code.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            parts: vec![Part::Error(message.into())],
        }
    }

    /// Several error lines with one exit code.
    pub fn all(exit: Exit, messages: impl IntoIterator<Item = String>) -> Self {
        Self {
            exit,
            parts: messages.into_iter().map(Part::Error).collect(),
        }
    }

    /// A file, socket or database that cannot be used (exit code 5).
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(Exit::Io, message)
    }

    /// Invalid input (exit code 4).
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(Exit::InvalidInput, message)
    }

    /// Bad command-line usage (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    /// An invalid configuration (exit code 6).
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(Exit::InvalidConfig, message)
    }

    /// A check that failed with a reason to give (exit code 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(Exit::Failed, message)
    }

    /// Diagnostics with the source files they point into, and an exit code.
    pub fn diagnostics(exit: Exit, diags: Vec<Diagnostic>, files: Vec<SourceFile>) -> Self {
        Self {
            exit,
            parts: vec![Part::Diagnostics(diags, files)],
        }
    }

    /// An invalid rule set: its diagnostics and source files (exit code 3).
    pub fn rules(diags: Vec<Diagnostic>, files: Vec<SourceFile>) -> Self {
        Self::diagnostics(Exit::InvalidRules, diags, files)
    }

    /// The problems of one input (item `index` of an array) (exit code 4).
    pub fn invalid_input(errors: Vec<InputError>, index: Option<usize>) -> Self {
        Self {
            exit: Exit::InvalidInput,
            parts: vec![Part::Input(errors, index)],
        }
    }

    /// The command has printed what went wrong itself; only the exit code is left.
    pub fn reported(exit: Exit) -> Self {
        Self {
            exit,
            parts: Vec::new(),
        }
    }

    /// Adds a help line.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.parts.push(Part::Help(help.into()));
        self
    }

    /// Adds a help line when there is one.
    pub fn help_opt(self, help: Option<String>) -> Self {
        match help {
            Some(h) => self.help(h),
            None => self,
        }
    }

    /// Adds another error line.
    pub fn and(mut self, message: impl Into<String>) -> Self {
        self.parts.push(Part::Error(message.into()));
        self
    }

    /// Adds an error line after an empty line: the summary below diagnostics.
    pub fn conclude(mut self, message: impl Into<String>) -> Self {
        self.parts.push(Part::Blank);
        self.parts.push(Part::Error(message.into()));
        self
    }

    /// The exit code.
    pub fn exit(&self) -> Exit {
        self.exit
    }

    /// What to print, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// One line saying what went wrong: the first message there is.
    fn headline(&self) -> String {
        self.parts
            .iter()
            .find_map(|p| match p {
                Part::Error(m) => Some(m.clone()),
                Part::Diagnostics(d, _) => d.first().map(|d| d.message.clone()),
                Part::Input(..) => Some("invalid input".into()),
                Part::Help(_) | Part::Blank => None,
            })
            .unwrap_or_else(|| format!("exit code {} (already reported)", self.exit.code()))
    }
}

impl From<FileError> for CliError {
    /// Exit code 5 for a file that cannot be read, 4 for bad content.
    fn from(e: FileError) -> Self {
        Self::new(e.exit(), e.to_string())
    }
}

impl From<StoreError> for CliError {
    /// Exit code 5: the database cannot be used.
    fn from(e: StoreError) -> Self {
        Self::io(e.to_string())
    }
}

impl From<ApiCallError> for CliError {
    /// Exit code 4 for a request the server refused as invalid, 2 for a bad URL, 5 otherwise.
    fn from(e: ApiCallError) -> Self {
        Self::new(e.exit(), e.to_string())
    }
}

impl From<ReadError> for CliError {
    /// The loader's diagnostic; exit code 5 for an unreadable directory, 3 for no rule set.
    fn from(e: ReadError) -> Self {
        let exit = read_error_exit(&e);
        Self::diagnostics(exit, vec![e.into_diagnostic()], Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_keep_the_order_of_the_parts() {
        let e = CliError::input("unknown style `x`").help("styles: a, b");
        assert_eq!(e.exit(), Exit::InvalidInput);
        assert_eq!(
            e.parts(),
            [
                Part::Error("unknown style `x`".into()),
                Part::Help("styles: a, b".into())
            ]
        );
        assert_eq!(e.to_string(), "unknown style `x`");
        let e = CliError::rules(vec![Diagnostic::error("bad")], Vec::new()).conclude("invalid");
        assert_eq!(e.exit(), Exit::InvalidRules);
        assert_eq!(e.parts().len(), 3);
        assert_eq!(e.to_string(), "bad");
        assert_eq!(
            CliError::reported(Exit::InvalidInput).to_string(),
            "exit code 4 (already reported)"
        );
    }
}
