//! The domain's plain values, shared by every stage: day numbers and
//! stored date text (`dates`), tiers, severities, and calendars and seasons.
//! Touches nothing: no files, no database, no clock; imports no other
//! kamwatch module.

pub mod dates;
pub mod seasons;
pub mod severity;
pub mod tier;

pub use dates::{Day, date_of, date_text, day, parse_ymd};
pub use severity::Severity;
pub use tier::Tier;
