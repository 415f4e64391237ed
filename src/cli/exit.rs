//! CLI exit codes: which exit a failed command ends with, derived from the
//! type of its error, in this one place (README "Exit codes"): 2 for a
//! usage or configuration error, 1 for a failure of the job, 0 when the
//! reader of our output went away (a broken pipe, `kamwatch ... | head`).
//! Reads errors only.

use std::error::Error;

use crate::alerts::Error as AlertsError;
use crate::config::ConfigError;
use crate::rules::LoadError;
use crate::rules::testing::TestFileError;

/// Usage or configuration error: the command cannot run as given.
pub const USAGE: u8 = 2;
/// The job failed, or found what it looks for (`check` found an error).
pub const FAILED: u8 = 1;

/// A usage error found by a command itself (an argument that does not fit
/// what is on record): exit 2, the text as it is.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// The exit code for a command that failed with `e`: the chain is walked
/// once, outermost first, and the first error whose type says what it is
/// decides; a broken pipe anywhere means the reader went away, which is no
/// failure of ours.
pub fn code(e: &anyhow::Error) -> u8 {
    if e.chain().any(is_broken_pipe) {
        return 0;
    }
    e.chain().find_map(code_of).unwrap_or(FAILED)
}

/// What one error's type says about the exit, if anything. Each stage's
/// error type that has a say is listed here, and nowhere else.
fn code_of(e: &(dyn Error + 'static)) -> Option<u8> {
    if e.is::<Usage>() || e.is::<ConfigError>() || e.is::<LoadError>() || e.is::<TestFileError>() {
        return Some(USAGE);
    }
    if let Some(e) = e.downcast_ref::<AlertsError>() {
        // A silence refused as given is usage; one that is not there (or
        // already ended) and the database failing fail the job.
        return Some(match e {
            AlertsError::EmptyRule | AlertsError::EmptyReason | AlertsError::KeyWithoutRule => {
                USAGE
            }
            AlertsError::NoSilence(_) | AlertsError::AlreadyExpired { .. } => FAILED,
            AlertsError::Store(_) => FAILED,
        });
    }
    None
}

fn is_broken_pipe(e: &(dyn Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_are_usage_errors_however_deep() {
        let e = anyhow::Error::from(ConfigError::invalid("x.yaml".into(), "bad".into()))
            .context("loading")
            .context("starting");
        assert_eq!(code(&e), USAGE);
    }

    #[test]
    fn other_errors_fail_the_job() {
        let e = anyhow::anyhow!("the disk is full").context("writing");
        assert_eq!(code(&e), FAILED);
        let io = std::io::Error::other("no such table");
        assert_eq!(code(&anyhow::Error::from(io)), FAILED);
    }

    #[test]
    fn a_refused_silence_is_usage_a_missing_one_a_failure() {
        assert_eq!(code(&AlertsError::EmptyReason.into()), USAGE);
        assert_eq!(code(&AlertsError::NoSilence(7).into()), FAILED);
        let db = rusqlite::Error::QueryReturnedNoRows;
        assert_eq!(code(&AlertsError::Store(db).into()), FAILED);
    }

    #[test]
    fn a_broken_pipe_is_no_failure() {
        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let e = anyhow::Error::from(io).context("writing the table");
        assert_eq!(code(&e), 0);
    }
}
