//! The alerts stage's errors: what `silence` refuses, and the database
//! failing under the lifecycle, the silences or the history. Messages say
//! what and what to do; the database's own error is passed on as it is.

/// An error of the alerts stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `silence add` without a rule.
    #[error("--rule is empty; give a rule name (the .rhai file's stem) or '*' for every rule")]
    EmptyRule,
    /// `silence add --key` for every rule.
    #[error("--key names one alert of one rule; give --rule the rule's name, not '*'")]
    KeyWithoutRule,
    /// `silence add` without a reason.
    #[error("--reason is empty; say why, so whoever reads the list later knows")]
    EmptyReason,
    /// `silence expire` of an id that does not exist.
    #[error("there is no silence {0}; `kamwatch silence list` shows them")]
    NoSilence(i64),
    /// `silence expire` of a silence already ended.
    #[error("silence {id} was already expired at {at}")]
    AlreadyExpired { id: i64, at: String },
    /// The database failed: the job failed, not its input.
    #[error(transparent)]
    Store(#[from] rusqlite::Error),
}

impl Error {
    /// Whether the input was refused (a person can fix it), as opposed to
    /// the database failing.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, Error::Store(_))
    }
}
