//! Dates as every stage counts and writes them: the day number that window
//! arithmetic uses (`Day`, days since 0001-01-01), and the `YYYY-MM-DD`
//! text the database stores and rules see, read and written without
//! strftime machinery (ingest and evaluation handle millions of them).
//! Pure functions; no clock.

use chrono::{Datelike, NaiveDate};

/// Day number used for window arithmetic (days since 0001-01-01).
pub type Day = i32;

/// The day number of a date.
pub fn day(d: NaiveDate) -> Day {
    d.num_days_from_ce()
}

/// The date of a day number (for messages and calendar arithmetic).
pub fn date_of(d: Day) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(d).unwrap_or(NaiveDate::MIN)
}

/// A date as `YYYY-MM-DD`, as stored.
pub fn date_text(d: NaiveDate) -> String {
    // Not `format("%Y-%m-%d")`: this runs once per ingested row, and
    // chrono's strftime parses its pattern every time.
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

/// [`date_text`] without allocating, for the ingest's hot path. Years
/// outside 0..=9999 (which no export date parser yields) are clamped.
pub fn date_bytes(d: NaiveDate) -> [u8; 10] {
    let y = d.year().clamp(0, 9999) as u32;
    let digit = |n: u32| b'0' + (n % 10) as u8;
    let (m, day) = (d.month(), d.day());
    [
        digit(y / 1000),
        digit(y / 100),
        digit(y / 10),
        digit(y),
        b'-',
        digit(m / 10),
        digit(m),
        b'-',
        digit(day / 10),
        digit(day),
    ]
}

/// A `YYYY-MM-DD` date, as stored and as rules see dates, read without
/// strftime machinery: evaluations read millions of them.
pub fn parse_ymd(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_bytes_is_date_text() {
        let mut d = NaiveDate::from_ymd_opt(1999, 12, 25).unwrap();
        for _ in 0..800 {
            assert_eq!(&date_bytes(d)[..], date_text(d).as_bytes());
            assert_eq!(parse_ymd(&date_text(d)), Some(d));
            assert_eq!(date_of(day(d)), d);
            d = d + chrono::Days::new(17);
        }
        let far = NaiveDate::from_ymd_opt(987, 1, 9).unwrap();
        assert_eq!(&date_bytes(far), b"0987-01-09");
    }

    #[test]
    fn parse_ymd_refuses_what_is_not_a_stored_date() {
        for bad in [
            "",
            "2026-1-05",
            "2026-02-30",
            "2026/01/05",
            "２０２６-01-05",
            "+026-01-05",
            "2026-01-05 ",
        ] {
            assert_eq!(parse_ymd(bad), None, "{bad:?}");
        }
    }
}
