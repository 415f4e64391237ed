//! Values as exports write them: identifiers, dates and numbers in the
//! formats ERPs and spreadsheets produce (a value that is none is a
//! `BadValue`, saying why), and how messages quote what a file holds.
//! Pure functions; they touch nothing.

use chrono::{Datelike, NaiveDate};

/// Why a cell's value cannot be read: what is wrong with it (the value
/// quoted) and, where it helps, what to do. Rows report it at their line
/// and column.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct BadValue(pub String);

impl From<BadValue> for String {
    fn from(e: BadValue) -> String {
        e.0
    }
}

/// At most this many characters of a cell (or a name) are quoted in a
/// message, a log line, the ledger or a reason file.
pub const EXCERPT_CHARS: usize = 80;

/// `raw` as a message quotes it: in double quotes, with quotes, backslashes
/// and control characters escaped, at most [`EXCERPT_CHARS`] characters
/// (then `…` and the full length). Files are never copied into logs or
/// reasons beyond this.
pub fn excerpt(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(EXCERPT_CHARS * 4) + 2);
    out.push('"');
    for (n, c) in raw.chars().enumerate() {
        if n == EXCERPT_CHARS {
            out.push_str(&format!("…\" ({} bytes)", raw.len()));
            return out;
        }
        match c {
            '\'' => out.push(c),
            c => out.extend(c.escape_debug()),
        }
    }
    out.push('"');
    out
}

pub use crate::config::DateOrder;

/// Characters that show as nothing and are copied along by accident
/// (zero-width space, non-joiner, joiner, word joiner, byte order mark,
/// soft hyphen).
const INVISIBLE: [char; 6] = [
    '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{AD}',
];

/// A column name as a person reads it: trimmed, invisible characters
/// dropped (see [`INVISIBLE`]).
pub fn header_name(raw: &str) -> String {
    raw.chars()
        .filter(|c| !INVISIBLE.contains(c))
        .collect::<String>()
        .trim()
        .to_string()
}

/// An identifier (account, order, SKU, invoice) as one account or line is
/// known by, whatever the keyboard that typed it: trimmed, invisible
/// characters dropped, full-width letters, digits and signs (`ＫＨ１００１`,
/// as a Chinese input method writes them) read as their ASCII ones. A
/// control character (NUL, a tab inside) makes it no identifier: the error
/// says which. Empty after that: `Ok("")`. Plain ASCII costs no copy.
pub fn identifier(raw: &str) -> Result<std::borrow::Cow<'_, str>, BadValue> {
    let t = raw.trim();
    if t.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(std::borrow::Cow::Borrowed(t));
    }
    let mut out = String::with_capacity(t.len());
    for c in t.chars() {
        match c {
            c if INVISIBLE.contains(&c) => {}
            '\u{FF01}'..='\u{FF5E}' => {
                out.push(char::from_u32(c as u32 - 0xFEE0).unwrap_or(c));
            }
            '\u{3000}' => out.push(' '),
            c if c.is_control() => {
                return Err(BadValue(format!(
                    "{} holds the control character U+{:04X}, which no identifier has; fix the export (an ID is text a person can read and type)",
                    excerpt(raw),
                    c as u32
                )));
            }
            c => out.push(c),
        }
    }
    Ok(std::borrow::Cow::Owned(out.trim().to_string()))
}

/// At most this many characters of a message from a library (a parser's
/// error, a list of names from the file) are kept.
pub const BOUNDED_CHARS: usize = 240;

/// `text` cut to [`BOUNDED_CHARS`] characters (then `…`), control
/// characters escaped: for library errors and lists that may echo a file.
pub fn bounded(text: impl std::fmt::Display) -> String {
    let text = text.to_string();
    let mut out = String::with_capacity(text.len().min(BOUNDED_CHARS * 4));
    for (n, c) in text.chars().enumerate() {
        if n == BOUNDED_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses a date written year first: `2026-11-28`, `2026/11/28`,
/// `2026/9/1`, `2026.11.28`, `2026年11月28日`, `20261128`, or an Excel serial
/// number (`46354`), optionally followed by a time of day.
pub fn parse_date(raw: &str) -> Result<NaiveDate, BadValue> {
    parse_date_in(raw, DateOrder::Ymd)
}

/// The instant of a date and time written with an offset
/// (`2026-11-28T20:00:00Z`, `2026-11-28 20:00:00+08:00`), as JSON exports
/// and APIs write UTC times; None for anything else, which is read as a
/// date in the business zone ([`parse_date_in`]). The caller takes the
/// date of the instant in the business zone.
pub fn instant_with_offset(raw: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let s = zoned_form(raw.trim())?;
    let at = chrono::DateTime::parse_from_rfc3339(&s)
        .or_else(|_| chrono::DateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.f%:z"))
        .or_else(|_| chrono::DateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .or_else(|_| chrono::DateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.f%z"))
        .or_else(|_| chrono::DateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M%:z"))
        .or_else(|_| chrono::DateTime::parse_from_str(&s, "%Y-%m-%d %H:%M%:z"))
        .ok()?;
    (1900..=2200)
        .contains(&at.year())
        .then(|| at.with_timezone(&chrono::Utc))
}

/// A date and time with a zone, rewritten into one of the forms
/// [`instant_with_offset`] parses: `2026/11/28` → `2026-11-28`, a trailing
/// `Z`, ` UTC` or ` GMT` → `+00:00`, an hour-only offset `+08` → `+08:00`.
/// None when the text has no zone after its time (a local time or a date).
fn zoned_form(s: &str) -> Option<String> {
    let date = s.get(..10)?;
    let time = s.get(10..)?;
    let b = date.as_bytes();
    if !(b[..4].iter().all(u8::is_ascii_digit) && b[4] == b[7] && matches!(b[4], b'-' | b'/')) {
        return None;
    }
    let mut time = time.to_string();
    for zone in ["UTC", "GMT", "utc", "gmt", "Z", "z"] {
        if let Some(t) = time.strip_suffix(zone) {
            time = format!("{}+00:00", t.trim_end());
            break;
        }
    }
    let sign = time.rfind(['+', '-'])?;
    let offset = &time[sign + 1..];
    if offset.len() == 2 && offset.bytes().all(|c| c.is_ascii_digit()) {
        time.push_str(":00");
    }
    Some(format!("{}{time}", date.replace('/', "-")))
}

/// Like [`parse_date`], reading dates that do not start with a 4-digit
/// year (`28/11/2026`, `11/28/2026`) in the given order. A 4-digit year
/// first is always year-month-day, whatever the order.
pub fn parse_date_in(raw: &str, order: DateOrder) -> Result<NaiveDate, BadValue> {
    date_in(raw, order).map_err(BadValue)
}

/// [`parse_date_in`], its error as text.
fn date_in(raw: &str, order: DateOrder) -> Result<NaiveDate, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("is empty".into());
    }
    // A time part ("2026-11-28 00:00:00", "2026-11-28T08:00") must be a
    // time of day; the date alone is kept.
    // The date first: a day-first date with a time says what is wrong
    // with the date, not with the time.
    let (s, time) = match s.split_once([' ', 'T']) {
        Some((date, time)) => (date, Some(time.trim())),
        None => (s, None),
    };
    let date = day_in(s, raw, order)?;
    match time {
        Some(time) if !is_time_of_day(time) => Err(time_error(raw, date, time)),
        _ => Ok(date),
    }
}

/// The day written `s` (the date part of `raw`, its time dropped).
fn day_in(s: &str, raw: &str, order: DateOrder) -> Result<NaiveDate, String> {
    let bad = || {
        let example = match order {
            DateOrder::Ymd => "2026-11-28, 2026/11/28, 2026年11月28日, 20261128",
            DateOrder::Dmy => "28/11/2026, 28.11.2026, 2026-11-28",
            DateOrder::Mdy => "11/28/2026, 2026-11-28",
        };
        format!(
            "{} is not a date (expected e.g. {example} or an Excel serial number)",
            excerpt(raw)
        )
    };
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        let y = s[0..4].parse().map_err(|_| bad())?;
        let m = s[4..6].parse().map_err(|_| bad())?;
        let d = s[6..8].parse().map_err(|_| bad())?;
        return NaiveDate::from_ymd_opt(y, m, d).ok_or_else(bad);
    }
    // An Excel serial number: five digits (1927-2173), maybe a fraction.
    let int_part = s.split('.').next().unwrap_or(s);
    if int_part.len() == 5
        && s.len() <= 16
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && let Ok(serial) = s.parse::<f64>()
    {
        return excel_serial_date(serial).ok_or_else(|| {
            format!(
                "{} is not a date: as an Excel serial number it is outside 1900-2200",
                excerpt(raw)
            )
        });
    }
    let mut parts = s
        .split(['-', '/', '.', '年', '月', '日'])
        .filter(|p| !p.is_empty());
    let (Some(a), Some(b), Some(c), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if ![a, b, c]
        .iter()
        .all(|p| p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    let (y, m, d) = if a.len() == 4 {
        (a, b, c)
    } else if c.len() == 4 {
        match order {
            DateOrder::Dmy => (c, b, a),
            DateOrder::Mdy => (c, a, b),
            // Year last with year-first order: ambiguous, so refused.
            DateOrder::Ymd => {
                return Err(format!(
                    "{} has the year last; set `date_order: dmy` or `date_order: mdy` for this dataset in the config",
                    excerpt(raw),
                ));
            }
        }
    } else {
        return Err(bad());
    };
    let y: i32 = y.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    let d: u32 = d.parse().map_err(|_| bad())?;
    if !(1900..=2200).contains(&y) {
        return Err(format!(
            "{}: the year {y} is out of range (1900-2200)",
            excerpt(raw)
        ));
    }
    NaiveDate::from_ymd_opt(y, m, d)
        .ok_or_else(|| format!("{} is not a day of the calendar", excerpt(raw)))
}

/// True for a time of day as exports write it after a date: `8:00`,
/// `08:00:00`, `23:59:59.999`, `12:00:00 AM`, `下午 3:00` is not one.
fn is_time_of_day(time: &str) -> bool {
    use chrono::NaiveTime;
    [
        "%H:%M:%S%.f",
        "%H:%M",
        "%I:%M:%S %p",
        "%I:%M %p",
        "%I:%M:%S%.f %p",
    ]
    .iter()
    .any(|f| NaiveTime::parse_from_str(time, f).is_ok())
}

/// Why the text after a date is refused: a zone kamwatch could not read,
/// or no time of day at all.
fn time_error(raw: &str, date: NaiveDate, time: &str) -> String {
    let zoned = time.ends_with(['Z', 'z'])
        || ["UTC", "GMT", "utc", "gmt"]
            .iter()
            .any(|z| time.contains(z))
        || time.get(1..).is_some_and(|t| t.contains(['+', '-']));
    if zoned {
        format!(
            "{} has a time zone kamwatch cannot read: write it with an offset, such as {date}T08:30:00+08:00 (or Z for UTC), or leave the time out",
            excerpt(raw)
        )
    } else {
        format!(
            "{} is not a date: {} after the date is not a time of day (expected e.g. 08:30 or 08:30:00)",
            excerpt(raw),
            excerpt(time)
        )
    }
}

/// The day of an Excel serial date number (1900 date system, the time of
/// day dropped), if it lies between 1900 and 2200. Serial 60 is the
/// 1900-02-29 that Lotus 1-2-3 invented and Excel kept; it is no day.
pub fn excel_serial_date(serial: f64) -> Option<NaiveDate> {
    if !serial.is_finite() || !(1.0..110_000.0).contains(&serial) {
        return None;
    }
    let days = serial.floor() as i64;
    let (base, days) = match days {
        ..60 => (NaiveDate::from_ymd_opt(1899, 12, 31)?, days),
        60 => return None,
        _ => (NaiveDate::from_ymd_opt(1899, 12, 30)?, days),
    };
    let d = base.checked_add_days(chrono::Days::new(days as u64))?;
    (d.year_ce().1 <= 2200).then_some(d)
}

/// Parses an amount: `1234.5`, `1,234.50`, `¥1,234.50`, `$12`, `(12.00)`
/// (negative), `-12`. Empty is `Ok(None)`.
pub fn parse_number(raw: &str) -> Result<Option<f64>, BadValue> {
    number(raw).map_err(BadValue)
}

/// [`parse_number`], its error as text.
fn number(raw: &str) -> Result<Option<f64>, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let (neg, s) = match s.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        Some(inner) => (true, inner.trim()),
        None => (false, s),
    };
    let plain = |b: u8| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E');
    let cleaned: String;
    let s = if s.bytes().all(plain) {
        // Nothing to clean (the usual case): parsed without a copy.
        s
    } else {
        if !thousands_ok(s) {
            return Err(format!(
                "{} is not a number: commas may only group thousands before the decimal point (1,234.50)",
                excerpt(raw),
            ));
        }
        cleaned = s
            .chars()
            .filter(|c| {
                !matches!(
                    c,
                    ',' | '¥' | '￥' | '$' | '€' | '£' | '元' | ' ' | '\u{a0}'
                )
            })
            .map(|c| if c == '−' { '-' } else { c })
            .collect();
        cleaned.as_str()
    };
    // Rust also accepts "inf" and "nan"; exports do not write them (Excel
    // does write big numbers as 1.23E+11).
    if !s.bytes().all(plain) {
        return Err(format!("{} is not a number", excerpt(raw)));
    }
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{} is not a number", excerpt(raw)))?;
    if !v.is_finite() {
        return Err(format!("{} is not a finite number", excerpt(raw)));
    }
    Ok(Some(if neg { -v } else { v }))
}

/// Whether the commas of a number group thousands: only before the
/// decimal point, each followed by exactly three digits ("1,234.5" yes;
/// "1.234,5" and "12,34" no: those are other conventions, not guesses).
fn thousands_ok(s: &str) -> bool {
    if !s.contains(',') {
        return true;
    }
    let int_part = s.split('.').next().unwrap_or(s);
    if s.len() > int_part.len() && s[int_part.len()..].contains(',') {
        return false;
    }
    let mut groups = int_part.split(',');
    let first = groups.next().unwrap_or("");
    first.chars().any(|c| c.is_ascii_digit())
        && groups.all(|g| {
            let digits: String = g.chars().take_while(char::is_ascii_digit).collect();
            digits.len() == 3 && (g.len() == 3 || !g[3..].chars().any(|c| c.is_ascii_digit()))
        })
}

#[cfg(test)]
mod tests {

    #[test]
    fn times_with_an_offset_are_instants() {
        let at = |s| instant_with_offset(s).map(|t| t.to_rfc3339());
        assert_eq!(
            at("2026-11-28T20:00:00Z").as_deref(),
            Some("2026-11-28T20:00:00+00:00")
        );
        assert_eq!(
            at(" 2026-11-29 04:00:00+08:00 ").as_deref(),
            Some("2026-11-28T20:00:00+00:00")
        );
        assert_eq!(
            at("2026-11-28T20:00:00.5-0500").as_deref(),
            Some("2026-11-29T01:00:00.500+00:00")
        );
        for local in [
            "2026-11-28",
            "2026-11-28 20:00:00",
            "2026-11-28T08:00",
            "2026/11/28",
            "46354",
            "1850-01-01T00:00:00Z",
        ] {
            assert_eq!(at(local), None, "{local}");
        }
    }

    #[test]
    fn zones_written_other_ways_are_the_same_instant() {
        let at = |s| instant_with_offset(s).map(|t| t.to_rfc3339());
        let utc8pm = Some("2026-11-28T20:00:00+00:00".to_string());
        for s in [
            "2026-11-28 20:00:00 UTC",
            "2026-11-28 20:00:00 GMT",
            "2026-11-28T20:00:00UTC",
            "2026-11-28T20:00:00+00",
            "2026-11-29T04:00:00+08",
            "2026/11/28 20:00:00Z",
            "2026/11/29 04:00+08:00",
        ] {
            assert_eq!(at(s), utc8pm, "{s}");
        }
    }

    #[test]
    fn the_text_after_a_date_must_be_a_time_of_day() {
        for ok in [
            "2026-11-28 0:00",
            "2026/11/28 08:30",
            "2026-11-28T23:59:59.999",
            "11/28/2026 12:00:00 AM",
        ] {
            let order = if ok.starts_with("11/") {
                DateOrder::Mdy
            } else {
                DateOrder::Ymd
            };
            assert_eq!(parse_date_in(ok, order), Ok(d(2026, 11, 28)), "{ok}");
        }
        for (bad, says) in [
            ("2026-11-28 25:00", "not a time of day"),
            ("2026-11-28 08:00 garbage", "not a time of day"),
            ("2026-11-28 tomorrow", "not a time of day"),
            ("2026-11-28 20:00 CET", "not a time of day"),
            (
                "2026-11-28 20:00:00 UTC+8",
                "time zone kamwatch cannot read",
            ),
            ("2026-11-28T20:00:00+8", "time zone kamwatch cannot read"),
        ] {
            let e = parse_date(bad).unwrap_err().0;
            assert!(e.contains(says), "{bad}: {e}");
            assert!(e.contains(bad.split(' ').next().unwrap()), "{bad}: {e}");
        }
        // What is wrong first: the date (a JSON object, a day-first date
        // given a zone), then the time; the example is the row's own day.
        for (bad, says) in [
            (r#"{"d":"2026-11-27"}"#, "is not a date (expected"),
            (r#"["2026-11-27"]"#, "is not a date (expected"),
            ("27/11/2026 08:30 UTC", "has the year last"),
            (
                "2026-11-27 20:00 UTC+8",
                "such as 2026-11-27T08:30:00+08:00",
            ),
        ] {
            let e = parse_date(bad).unwrap_err().0;
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn identifiers_are_one_whatever_the_keyboard() {
        for raw in [
            "KH1001",
            " KH1001 ",
            "ＫＨ１００１",
            "\u{200B}KH1001\u{FEFF}",
            "KH\u{AD}1001　",
        ] {
            assert_eq!(identifier(raw).unwrap(), "KH1001", "{raw:?}");
        }
        assert_eq!(identifier("华联-０１").unwrap(), "华联-01");
        assert_eq!(identifier("　").unwrap(), "");
        assert!(matches!(
            identifier("KH1"),
            Ok(std::borrow::Cow::Borrowed(_))
        ));
        let e = identifier("KH\u{0}1").unwrap_err();
        assert!(e.0.contains("U+0000"), "{e}");
        assert!(identifier("K\tH").unwrap_err().0.contains("U+0009"));
    }

    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn excerpts_are_bounded_and_escaped() {
        assert_eq!(excerpt("一百六"), "\"一百六\"");
        assert_eq!(excerpt("a\nb\"c\u{1b}[31m"), "\"a\\nb\\\"c\\u{1b}[31m\"");
        let long = "x".repeat(1 << 20);
        let e = excerpt(&long);
        assert!(e.len() < 120, "{e}");
        assert!(e.ends_with("…\" (1048576 bytes)"), "{e}");
        assert_eq!(bounded("a\nb"), "a\\nb");
        assert!(bounded("y".repeat(10_000)).chars().count() <= BOUNDED_CHARS + 1);
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("2026-11-28"), Ok(d(2026, 11, 28)));
        assert_eq!(parse_date("2026/9/1"), Ok(d(2026, 9, 1)));
        assert_eq!(parse_date("2026年11月28日"), Ok(d(2026, 11, 28)));
        assert_eq!(parse_date("20261128"), Ok(d(2026, 11, 28)));
        assert_eq!(parse_date(" 2026-11-28 00:00:00 "), Ok(d(2026, 11, 28)));
        assert!(parse_date("2026-02-30").unwrap_err().0.contains("calendar"));
        assert!(
            parse_date("yesterday")
                .unwrap_err()
                .0
                .contains("not a date")
        );
        assert!(parse_date("").is_err());
        assert!(parse_date("0026-01-01").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("1,234.50"), Ok(Some(1234.5)));
        assert_eq!(parse_number("¥1,234.50"), Ok(Some(1234.5)));
        assert_eq!(parse_number("(12.00)"), Ok(Some(-12.0)));
        assert_eq!(parse_number("-3"), Ok(Some(-3.0)));
        assert_eq!(parse_number(""), Ok(None));
        assert!(parse_number("abc").unwrap_err().0.contains("not a number"));
        assert!(parse_number("inf").is_err());
        assert!(parse_number("nan").is_err());
        assert_eq!(parse_number("1.5E+3"), Ok(Some(1500.0)));
        assert_eq!(parse_number("1 200元"), Ok(Some(1200.0)));
        assert_eq!(parse_number("−7"), Ok(Some(-7.0)));
        assert!(parse_number("=1+2").unwrap_err().0.contains("not a number"));
        assert!(parse_number("1.234,5").unwrap_err().0.contains("thousands"));
        assert!(parse_number("12,34").is_err());
        assert_eq!(parse_number("1,234元"), Ok(Some(1234.0)));
        assert_eq!(parse_number("¥12,345,678.90"), Ok(Some(12345678.9)));
    }

    #[test]
    fn day_and_month_first() {
        assert_eq!(
            parse_date_in("03/11/2026", DateOrder::Dmy),
            Ok(d(2026, 11, 3))
        );
        assert_eq!(
            parse_date_in("03/11/2026", DateOrder::Mdy),
            Ok(d(2026, 3, 11))
        );
        assert_eq!(
            parse_date_in("28.11.2026", DateOrder::Dmy),
            Ok(d(2026, 11, 28))
        );
        // A 4-digit year first is year-month-day whatever the order.
        assert_eq!(
            parse_date_in("2026-11-03", DateOrder::Mdy),
            Ok(d(2026, 11, 3))
        );
        assert!(
            parse_date_in("03/11/2026", DateOrder::Ymd)
                .unwrap_err()
                .0
                .contains("date_order")
        );
        assert!(
            parse_date_in("11/28/2026", DateOrder::Dmy)
                .unwrap_err()
                .0
                .contains("calendar")
        );
    }

    #[test]
    fn excel_serials() {
        assert_eq!(parse_date("46266"), Ok(d(2026, 9, 1)));
        assert_eq!(parse_date("46266.75"), Ok(d(2026, 9, 1)));
        assert_eq!(excel_serial_date(61.0), Some(d(1900, 3, 1)));
        assert_eq!(excel_serial_date(59.0), Some(d(1900, 2, 28)));
        assert_eq!(excel_serial_date(60.0), None);
        assert_eq!(excel_serial_date(1.0), Some(d(1900, 1, 1)));
        // Four digits are no serial and no date.
        assert!(parse_date("2026").is_err());
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        fn any_date() -> impl Strategy<Value = NaiveDate> {
            (1901i32..2199, 1u32..=12, 1u32..=31)
                .prop_filter_map("a day of the calendar", |(y, m, d)| {
                    NaiveDate::from_ymd_opt(y, m, d)
                })
        }

        proptest! {
            #[test]
            fn dates_round_trip_in_every_export_format(date in any_date()) {
                let (y, m, d) = (date.year(), date.month(), date.day());
                for text in [
                    format!("{y}-{m:02}-{d:02}"),
                    format!("{y}/{m}/{d}"),
                    format!("{y}年{m}月{d}日"),
                    format!("{y}{m:02}{d:02}"),
                    format!("{y}-{m:02}-{d:02} 13:45:00"),
                ] {
                    prop_assert_eq!(parse_date(&text), Ok(date), "{}", text);
                }
                prop_assert_eq!(parse_date_in(&format!("{d}/{m}/{y}"), DateOrder::Dmy), Ok(date));
                prop_assert_eq!(parse_date_in(&format!("{m}/{d}/{y}"), DateOrder::Mdy), Ok(date));
                let serial = (date - NaiveDate::from_ymd_opt(1899, 12, 30).unwrap()).num_days();
                if (10_000..100_000).contains(&serial) {
                    prop_assert_eq!(parse_date(&serial.to_string()), Ok(date));
                }
            }

            #[test]
            fn date_parser_never_panics_and_errors_quote_the_input(s in "\\PC{0,24}") {
                if let Err(e) = parse_date_in(&s, DateOrder::Dmy) {
                    prop_assert!(s.trim().is_empty() || e.0.contains(&format!("{s:?}")), "{}", e);
                }
            }

            #[test]
            fn amounts_round_trip(cents in -1_000_000_000_000i64..1_000_000_000_000i64) {
                let v = cents as f64 / 100.0;
                let abs = cents.unsigned_abs();
                let (units, frac) = (abs / 100, abs % 100);
                // Thousands separators as exports write them.
                let digits = units.to_string();
                let mut grouped = String::new();
                for (i, c) in digits.chars().enumerate() {
                    if i > 0 && (digits.len() - i) % 3 == 0 {
                        grouped.push(',');
                    }
                    grouped.push(c);
                }
                let body = format!("{grouped}.{frac:02}");
                let neg = cents < 0;
                for text in [
                    format!("{}{body}", if neg { "-" } else { "" }),
                    format!("{}¥{body}", if neg { "-" } else { "" }),
                    if neg { format!("(${body})") } else { format!("${body}") },
                    format!("{}{}", if neg { "-" } else { "" }, body.replace(',', "")),
                ] {
                    let got = parse_number(&text);
                    prop_assert!(matches!(got, Ok(Some(x)) if (x - v).abs() < 1e-6), "{} -> {:?}", text, got);
                }
            }

            #[test]
            fn number_parser_never_panics_and_is_finite(s in "\\PC{0,24}") {
                match parse_number(&s) {
                    Ok(Some(x)) => prop_assert!(x.is_finite()),
                    Ok(None) => prop_assert!(s.trim().is_empty()),
                    Err(e) => prop_assert!(e.0.contains(&format!("{s:?}")), "{}", e),
                }
            }
        }
    }
}
