//! The domain's plain values, shared by every stage: calendars and seasons.
//! Touches nothing: no files, no database, no clock.

pub mod seasons;
