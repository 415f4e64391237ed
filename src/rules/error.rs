//! The rules stage's errors: what a person gave it that it cannot use —
//! a rules folder it cannot read, a rule test file it cannot run, a rule
//! or account `explain` does not know, a `SETTINGS` map or a text per
//! locale that is wrong. Messages say what, where and what to do. A rule
//! that does not compile is a `CompileError` (file, line, column); a rule
//! failing for an account is a `RunError`: both are findings of the job,
//! not errors of this type.

use std::path::PathBuf;

/// An error of the rules stage. Every one is a usage error: exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The rules folder cannot be read.
    #[error(
        "cannot read the rules folder {}: {error}; create it or set `rules:` in the config",
        folder.display()
    )]
    Folder {
        folder: PathBuf,
        error: std::io::Error,
    },
    /// The paths given to `kamwatch test` hold no test file to run.
    #[error("{0}")]
    TestPaths(String),
    /// A rule test file that cannot be run (bad YAML, missing fixture,
    /// unknown rule, a rule that does not compile).
    #[error("{}: {why}", file.display())]
    TestFile { file: PathBuf, why: String },
    /// `explain` of a rule that is not loaded.
    #[error("no rule {rule:?}; the loaded rules are {loaded}")]
    NoRule { rule: String, loaded: String },
    /// `explain` for an account not in the snapshot.
    #[error("no active account {0:?} in the customer master")]
    NoAccount(String),
    /// A rule's `SETTINGS` map holds a key or value that is wrong.
    #[error("{0}")]
    Settings(String),
    /// A text (title, action, label) that is neither a string nor a map
    /// of locales to strings.
    #[error("{0}")]
    Text(String),
}

impl Error {
    /// The exit code of a command that stops on this error.
    pub fn exit_code(&self) -> u8 {
        2
    }
}

/// A rule's run stops with the error's message (a Rhai run-time error).
impl From<Error> for Box<rhai::EvalAltResult> {
    fn from(e: Error) -> Self {
        e.to_string().into()
    }
}
