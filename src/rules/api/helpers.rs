//! The rule API's plain helpers: percentages, rounding, means and trends
//! over arrays, and date arithmetic on `YYYY-MM-DD` texts. Registers into
//! the engine it is given.

use std::fmt::Write as _;

use rhai::{Array, EvalAltResult};

use super::registry::{Api, f};
use crate::metrics::quarter_start;
use crate::model::dates::date_of;

fn all_pct(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

/// Percentage change from `before` to `now`; 0 when `before` is 0.
pub fn pct_change(now: f64, before: f64) -> f64 {
    if before.abs() < f64::EPSILON {
        0.0
    } else {
        all_pct((now - before) / before.abs() * 100.0)
    }
}

pub(super) fn round_to(x: f64, digits: i64) -> f64 {
    let p = 10f64.powi(digits.clamp(0, 10) as i32);
    (x * p).round() / p
}

fn parse_date(s: &str) -> Result<chrono::NaiveDate, Box<EvalAltResult>> {
    crate::model::dates::parse_ymd(s)
        .or_else(|| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .ok_or_else(|| format!("{s:?} is not a date like 2026-11-28").into())
}

fn to_f64s(a: &Array) -> Vec<f64> {
    a.iter()
        .filter_map(|v| {
            v.as_float()
                .ok()
                .or_else(|| v.as_int().ok().map(|i| i as f64))
        })
        .collect()
}

/// Percentages and rounding.
pub(super) fn numbers(api: &mut Api) {
    api.section = "helpers";
    f!(
        api,
        "pct_change",
        "pct_change(now, before)",
        "percentage change from `before` to `now` ((now - before) / |before| x 100); 0 when `before` is 0",
        pct_change,
    );
    f!(
        api,
        "pct_change",
        "pct_change(now, before)",
        "the same for integers",
        |now: i64, before: i64| { pct_change(now as f64, before as f64) }
    );
    f!(
        api,
        "pct_change",
        "pct_change(now, before)",
        "the same with an integer `before`",
        |now: f64, before: i64| { pct_change(now, before as f64) }
    );
    f!(
        api,
        "pct_change",
        "pct_change(now, before)",
        "the same with an integer `now`",
        |now: i64, before: f64| { pct_change(now as f64, before) }
    );
    f!(
        api,
        "pct",
        "pct(part, whole)",
        "part as % of whole; 0 when whole is 0",
        |part: f64, whole: f64| {
            if whole.abs() < f64::EPSILON {
                0.0
            } else {
                all_pct(part / whole * 100.0)
            }
        }
    );
    f!(
        api,
        "round",
        "round(x, digits)",
        "x rounded to `digits` decimals (0..10)",
        round_to
    );
    f!(
        api,
        "round",
        "round(x, digits)",
        "integers stay as they are, as floats",
        |x: i64, _d: i64| { x as f64 }
    );
}

/// Means and trends over arrays of numbers.
pub(super) fn series(api: &mut Api) {
    f!(
        api,
        "mean",
        "mean(array)",
        "the mean of the numbers in an array; 0 when empty",
        |a: Array| {
            let v = to_f64s(&a);
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        }
    );
    f!(
        api,
        "trend_pct",
        "trend_pct(array)",
        "the least-squares slope of a series per step, as % of its mean (e.g. -5.0: falling 5% of the average each month); 0 with fewer than 2 points or a zero mean",
        |a: Array| {
            let v = to_f64s(&a);
            let n = v.len() as f64;
            if v.len() < 2 {
                return 0.0;
            }
            let mx = (n - 1.0) / 2.0;
            let my = v.iter().sum::<f64>() / n;
            let (mut sxy, mut sxx) = (0.0, 0.0);
            for (i, y) in v.iter().enumerate() {
                let dx = i as f64 - mx;
                sxy += dx * (y - my);
                sxx += dx * dx;
            }
            if my.abs() < f64::EPSILON {
                0.0
            } else {
                all_pct(sxy / sxx / my * 100.0)
            }
        },
    );
}

/// Date arithmetic on YYYY-MM-DD texts.
pub(super) fn dates(api: &mut Api) {
    f!(
        api,
        "format_date",
        "format_date(date, format)",
        "reformats a YYYY-MM-DD date with a strftime format, e.g. format_date(as_of, \"%Y年%m月%d日\")",
        |d: &str, fmt: &str| -> Result<String, Box<EvalAltResult>> {
            let d = parse_date(d)?;
            let mut out = String::new();
            write!(out, "{}", d.format(fmt))
                .map_err(|_| format!("format_date(): {fmt:?} is not a valid date format"))?;
            Ok(out)
        },
    );
    f!(
        api,
        "add_days",
        "add_days(date, n)",
        "the YYYY-MM-DD date `n` days after `date` (n may be negative)",
        |d: &str, n: i64| -> Result<String, Box<EvalAltResult>> {
            let d = parse_date(d)?;
            let n = n.clamp(-100_000, 100_000);
            Ok(date_of(crate::model::dates::day(d) + n as i32)
                .format("%Y-%m-%d")
                .to_string())
        },
    );
    f!(
        api,
        "days_between",
        "days_between(from, to)",
        "days from one YYYY-MM-DD date to another (negative when `to` is earlier)",
        |a: &str, b: &str| -> Result<i64, Box<EvalAltResult>> {
            Ok((parse_date(b)? - parse_date(a)?).num_days())
        },
    );
    f!(
        api,
        "month",
        "month(date)",
        "the month (1..12) of a YYYY-MM-DD date",
        |d: &str| -> Result<i64, Box<EvalAltResult>> {
            use chrono::Datelike;
            Ok(i64::from(parse_date(d)?.month()))
        }
    );
    f!(
        api,
        "quarter",
        "quarter(date)",
        "the calendar quarter (1..4) of a YYYY-MM-DD date",
        |d: &str| -> Result<i64, Box<EvalAltResult>> {
            use chrono::Datelike;
            Ok(i64::from(parse_date(d)?.month0() / 3 + 1))
        }
    );
    f!(
        api,
        "year",
        "year(date)",
        "the year of a YYYY-MM-DD date",
        |d: &str| -> Result<i64, Box<EvalAltResult>> {
            use chrono::Datelike;
            Ok(i64::from(parse_date(d)?.year()))
        }
    );
    f!(
        api,
        "day_of_quarter",
        "day_of_quarter(date)",
        "the day within its calendar quarter (1 on 1 January, 1 April, 1 July, 1 October)",
        |d: &str| -> Result<i64, Box<EvalAltResult>> {
            let d = crate::model::dates::day(parse_date(d)?);
            Ok(i64::from(d - quarter_start(d) + 1))
        }
    );
}
