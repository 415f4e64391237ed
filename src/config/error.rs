//! The config's errors: what is wrong, worded for the person who edits the
//! file (what, where, what to do). `ConfigError` names the file and maps
//! to exit code 2; the checks return a [`Problem`], and per-rule settings a
//! [`SettingError`] (a rule script's `SETTINGS` reports it too).

use std::path::PathBuf;

/// A configuration that cannot be used: the file and what is wrong with
/// it. Maps to exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("config {}: {problem}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub problem: Problem,
}

impl ConfigError {
    /// A usage problem found outside the config's own checks (a command
    /// line that contradicts it), reported the same way.
    pub fn invalid(path: PathBuf, message: String) -> ConfigError {
        ConfigError {
            path,
            problem: Problem::Invalid(message),
        }
    }
}

/// What is wrong with a config file or its text.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("cannot read it: {0}; pass another file with --config PATH")]
    Unreadable(#[source] std::io::Error),
    /// Not a FIFO or a device: opening one would wait for a writer.
    #[error("it is not a regular file; pass the config file with --config PATH")]
    NotAFile,
    #[error(
        "it is larger than {limit_kib} KiB, which no kamwatch config needs (the shipped one is about 10 KiB); is it the right file?"
    )]
    TooLarge { limit_kib: u64 },
    /// The offset of the first byte that is not UTF-8.
    #[error("it is not UTF-8 text (invalid byte at offset {0}); save it as UTF-8")]
    NotUtf8(usize),
    #[error(
        "it holds more than {limit} values once its YAML aliases (*name) are expanded, which no kamwatch config needs; write the values out or use fewer aliases"
    )]
    TooManyValues { limit: usize },
    /// The YAML does not fit the schema: the parser's message, with the
    /// line (and a hint for an unknown key).
    #[error("{0}")]
    Yaml(String),
    /// A value is refused: the message starts with its key.
    #[error("{0}")]
    Invalid(String),
    /// A season's dates cannot be read (the message names the season).
    #[error(transparent)]
    Season(#[from] crate::model::seasons::SeasonError),
}

/// Returns [`Problem::Invalid`] with a formatted message from the function.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::config::error::Problem::Invalid(format!($($arg)*)))
    };
}
pub(crate) use invalid;

/// A per-rule setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// A key given under its name and its older name.
    #[error("both `{new}` and its older name `{old}` are given; keep `{new}`")]
    BothNames {
        new: &'static str,
        old: &'static str,
    },
    /// A value the key cannot take, and why.
    #[error("{key}: {why}")]
    Value { key: &'static str, why: String },
}
