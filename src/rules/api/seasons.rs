//! The rule API's seasons: the configured peaks of the year (春节, 618,
//! 中秋, 双11, ...) around the as-of date — one by name, the nearest, or
//! every one running or starting within a number of days — and lunar
//! dates. The as-of date and the seasons are held per thread while rules
//! run. Registers into the engine it is given.

use std::cell::RefCell;
use std::sync::Arc;

use rhai::{Array, Dynamic, EvalAltResult, Map};

use super::registry::{Api, f, seen};
use crate::model::seasons::{Peak, Seasons};

thread_local! {
    /// The as-of date of the snapshot the rules on this thread run at,
    /// whether they are explained, and the seasons they see.
    static CALENDAR: RefCell<(Option<chrono::NaiveDate>, bool, Arc<Seasons>)> =
        RefCell::new((None, false, Arc::new(Seasons::default())));
}

/// Sets the seasons rules on this thread see.
pub fn set_seasons(s: &Arc<Seasons>) {
    CALENDAR.with(|c| {
        if !Arc::ptr_eq(&c.borrow().2, s) {
            c.borrow_mut().2 = s.clone();
        }
    });
}

/// Sets the as-of date rules on this thread run at, and whether they are
/// explained (so the calendar functions trace what they return).
pub fn set_as_of(d: chrono::NaiveDate, explain: bool) {
    CALENDAR.with(|c| {
        let mut c = c.borrow_mut();
        c.0 = Some(d);
        c.1 = explain;
    });
}

/// The as-of date, whether explained, and the seasons, for a calendar
/// function; an error outside an evaluation.
fn calendar() -> Result<(chrono::NaiveDate, bool, Arc<Seasons>), Box<EvalAltResult>> {
    CALENDAR.with(|c| {
        let c = c.borrow();
        match c.0 {
            Some(d) => Ok((d, c.1, c.2.clone())),
            None => Err("the season functions work only while rules are evaluated".into()),
        }
    })
}

/// A season's occurrence as a rule sees it.
fn peak_map(p: &Peak, as_of: chrono::NaiveDate) -> Map {
    let mut m = Map::new();
    m.insert("name".into(), p.name.clone().into());
    m.insert(
        "start".into(),
        p.start.format("%Y-%m-%d").to_string().into(),
    );
    m.insert("end".into(), p.end.format("%Y-%m-%d").to_string().into());
    m.insert("days_until".into(), p.days_until(as_of).into());
    m.insert("in_peak".into(), p.contains(as_of).into());
    m.insert("days_left".into(), p.days_left(as_of).into());
    m.insert("length".into(), p.length().into());
    m
}

fn peak_text(p: &Peak, as_of: chrono::NaiveDate) -> String {
    format!(
        "{} {}..{} ({})",
        p.name,
        p.start,
        p.end,
        if p.contains(as_of) {
            format!("in it, {} days left", p.days_left(as_of))
        } else {
            format!("in {} days", p.days_until(as_of))
        }
    )
}

/// Furthest ahead `seasons_within` looks, in days: a season's next
/// occurrence is never further than a year away.
const MAX_SEASON_DAYS: i64 = 366;

/// `season(name)`, `next_season()`, `seasons_within(days)`,
/// `days_until_peak()`, `from_lunar()`.
pub(super) fn seasons(api: &mut Api) {
    api.section = "seasons: the peaks of the year";
    f!(
        api,
        "season",
        "season(name)",
        "the configured season `name` (config `seasons:`, e.g. season(\"春节\")) running at the as-of date or the next to start: #{ name, start, end (YYYY-MM-DD), days_until (0 while it runs), in_peak, days_left (days to its end, both included, while it runs; else 0), length }; lunar dates (春节, 中秋, ...) are placed by the Chinese calendar for 1990-2100",
        |name: &str| -> Result<Map, Box<EvalAltResult>> {
            let (as_of, explain, seasons) = calendar()?;
            let s = seasons.get(name).ok_or_else(|| {
                format!(
                    "season({name:?}): no such season; the config's seasons are {}",
                    seasons.names().join(", ")
                )
            })?;
            let p = s.around(as_of).ok_or_else(|| {
                format!("season({name:?}): the calendar covers 1990-2100, not {as_of}")
            })?;
            seen(
                explain,
                || format!("season({name:?})"),
                peak_text(&p, as_of),
            );
            Ok(peak_map(&p, as_of))
        },
    );
    f!(
        api,
        "next_season",
        "next_season()",
        "the season running at the as-of date, or else the next to start, as season() gives it; () when the config has no seasons",
        || -> Result<Dynamic, Box<EvalAltResult>> {
            let (as_of, explain, seasons) = calendar()?;
            Ok(match seasons.next(as_of) {
                Some(p) => {
                    seen(explain, || "next_season()".into(), peak_text(&p, as_of));
                    peak_map(&p, as_of).into()
                }
                None => {
                    seen(explain, || "next_season()".into(), "none configured");
                    Dynamic::UNIT
                }
            })
        },
    );
    f!(
        api,
        "seasons_within",
        "seasons_within(days)",
        "every configured season running at the as-of date or starting within `days` days of it (0 to 366; 0: only those running), as season() gives each, one per season, the soonest first (ties: the one ending first, then config order); [] when none (or the config has no seasons). A rule that prepares for peaks checks each, not only the nearest: 春节 stocking opens while 双11 runs",
        |days: i64| -> Result<Array, Box<EvalAltResult>> {
            let (as_of, explain, seasons) = calendar()?;
            if !(0..=MAX_SEASON_DAYS).contains(&days) {
                return Err(format!(
                    "seasons_within({days}): give 0 (only the seasons running) to {MAX_SEASON_DAYS} days ahead"
                )
                .into());
            }
            let peaks = seasons.within(as_of, days);
            seen(
                explain,
                || format!("seasons_within({days})"),
                if peaks.is_empty() {
                    "none".to_string()
                } else {
                    peaks
                        .iter()
                        .map(|p| peak_text(p, as_of))
                        .collect::<Vec<_>>()
                        .join("; ")
                },
            );
            Ok(peaks
                .iter()
                .map(|p| Dynamic::from_map(peak_map(p, as_of)))
                .collect())
        },
    );
    f!(
        api,
        "days_until_peak",
        "days_until_peak()",
        "days from the as-of date to the start of the next season of any name; 0 while one runs; -1 when the config has no seasons",
        || -> Result<i64, Box<EvalAltResult>> {
            let (as_of, explain, seasons) = calendar()?;
            let v = seasons.next(as_of).map_or(-1, |p| p.days_until(as_of));
            Ok(seen(explain, || "days_until_peak()".into(), v))
        },
    );
    f!(
        api,
        "from_lunar",
        "from_lunar(year, month, day)",
        "the YYYY-MM-DD date of a Chinese lunar date (not a leap month) of lunar year `year` (1989-2101), e.g. from_lunar(2026, 8, 15) is 中秋 2026",
        |y: i64, m: i64, d: i64| -> Result<String, Box<EvalAltResult>> {
            let date = i32::try_from(y)
                .ok()
                .zip(u32::try_from(m).ok().zip(u32::try_from(d).ok()))
                .and_then(|(y, (m, d))| crate::model::seasons::from_lunar(y, m, d))
                .ok_or_else(|| {
                    format!("from_lunar({y}, {m}, {d}): no such lunar date in 1989-2101")
                })?;
            Ok(date.format("%Y-%m-%d").to_string())
        },
    );
}
