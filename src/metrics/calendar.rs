//! Calendar windows over day numbers (`model::dates::Day`): complete
//! months and quarters, as rules and reports ask for them.
//! Touches nothing: no database, no clock.

use chrono::{Datelike, NaiveDate};

use crate::model::dates::{Day, date_of, day};

/// The `n` most recent complete calendar months before `end` (the month of
/// `end` counts when `end` is its last day), oldest first, as (last day,
/// length in days).
pub fn complete_months(end: Day, n: usize) -> Vec<(Day, i32)> {
    let d = date_of(end);
    let mut last = if date_of(end + 1).month() != d.month() {
        d
    } else {
        d.with_day(1).unwrap_or(d).pred_opt().unwrap_or(d)
    };
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let first = last.with_day(1).unwrap_or(last);
        out.push((day(last), day(last) - day(first) + 1));
        last = first.pred_opt().unwrap_or(first);
    }
    out.reverse();
    out
}

/// The first day of the calendar quarter that holds `end`.
pub fn quarter_start(end: Day) -> Day {
    let d = date_of(end);
    let month = (d.month0() / 3) * 3 + 1;
    NaiveDate::from_ymd_opt(d.year(), month, 1).map_or(end, day)
}
