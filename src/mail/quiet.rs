//! Quiet windows: whether mail is held on a day, by the windows the config
//! parsed from `mail.quiet` (weekdays, a date range once, or a range every
//! year). Pure.

use chrono::NaiveDate;

use crate::config::MailConfig;

/// A quiet window, parsed from the config when it is loaded.
pub use crate::config::Quiet;

/// The quiet window covering `as_of`, if any.
pub fn quiet_on(cfg: &MailConfig, as_of: NaiveDate) -> Option<String> {
    cfg.quiet
        .iter()
        .find(|q| q.covers(as_of))
        .map(|q| q.name.clone())
}
