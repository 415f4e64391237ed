//! Values as exports write them: dates and numbers in the formats ERPs and
//! spreadsheets produce. Pure functions; they touch nothing.

use chrono::NaiveDate;

/// Parses a date: `2026-11-28`, `2026/11/28`, `2026/9/1`, `2026.11.28`,
/// `2026年11月28日`, `20261128`, optionally followed by a time of day.
pub fn parse_date(raw: &str) -> Result<NaiveDate, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("is empty".into());
    }
    // Drop a time part: "2026-11-28 00:00:00" or "2026-11-28T08:00".
    let s = s.split([' ', 'T']).next().unwrap_or(s);
    let bad = || {
        format!(
            "{raw:?} is not a date (expected e.g. 2026-11-28, 2026/11/28, 2026年11月28日 or 20261128)"
        )
    };
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        let y = s[0..4].parse().map_err(|_| bad())?;
        let m = s[4..6].parse().map_err(|_| bad())?;
        let d = s[6..8].parse().map_err(|_| bad())?;
        return NaiveDate::from_ymd_opt(y, m, d).ok_or_else(bad);
    }
    let mut parts = s
        .split(['-', '/', '.', '年', '月', '日'])
        .filter(|p| !p.is_empty());
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if y.len() != 4 {
        return Err(bad());
    }
    let y: i32 = y.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    let d: u32 = d.parse().map_err(|_| bad())?;
    if !(1900..=2200).contains(&y) {
        return Err(format!("{raw:?}: the year {y} is out of range (1900-2200)"));
    }
    NaiveDate::from_ymd_opt(y, m, d).ok_or_else(|| format!("{raw:?} is not a day of the calendar"))
}

/// Parses an amount: `1234.5`, `1,234.50`, `¥1,234.50`, `$12`, `(12.00)`
/// (negative), `-12`. Empty is `Ok(None)`.
pub fn parse_number(raw: &str) -> Result<Option<f64>, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let (neg, s) = match s.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        Some(inner) => (true, inner.trim()),
        None => (false, s),
    };
    let cleaned: String = s
        .chars()
        .filter(|c| !matches!(c, ',' | '¥' | '￥' | '$' | ' ' | '\u{a0}'))
        .collect();
    let v: f64 = cleaned
        .parse()
        .map_err(|_| format!("{raw:?} is not a number"))?;
    if !v.is_finite() {
        return Err(format!("{raw:?} is not a finite number"));
    }
    Ok(Some(if neg { -v } else { v }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("2026-11-28"), Ok(d(2026, 11, 28)));
        assert_eq!(parse_date("2026/9/1"), Ok(d(2026, 9, 1)));
        assert_eq!(parse_date("2026年11月28日"), Ok(d(2026, 11, 28)));
        assert_eq!(parse_date("20261128"), Ok(d(2026, 11, 28)));
        assert_eq!(parse_date(" 2026-11-28 00:00:00 "), Ok(d(2026, 11, 28)));
        assert!(parse_date("2026-02-30").unwrap_err().contains("calendar"));
        assert!(parse_date("yesterday").unwrap_err().contains("not a date"));
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
        assert!(parse_number("abc").unwrap_err().contains("not a number"));
        assert!(parse_number("inf").is_err());
    }
}
