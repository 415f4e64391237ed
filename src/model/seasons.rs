//! Seasons: the peaks distributors plan around, and the Chinese lunisolar
//! calendar that places those that follow the moon.
//!
//! The config's `seasons:` names each peak with a `from` and a `to` date,
//! each either a month-day of the Gregorian calendar (`"11-01"`) or a
//! lunar festival (`春节`, `元宵`, `端午`, `七夕`, `中秋`, `重阳`, `除夕`) or a
//! lunar month-day (`农历08-15`), optionally shifted by whole days
//! (`"春节 - 30"`, `"春节 minus 30 days"`, `"中秋 + 3天"`); `"02-29"` is the
//! last day of February in every year (02-28 in a common one). [`Seasons::around`]
//! resolves them for any as-of date from 1990 to 2100. Lunar dates come
//! from [`LUNAR_YEARS`], one word per lunar year: its new year's day and
//! the length of each of its months, so nothing is computed from the moon
//! at run time. Pure functions; reads and writes nothing.

use chrono::{Datelike, NaiveDate};

/// One word per lunar year 1989..=2101: bits 0-12 month lengths in order
/// (1 = 30 days, 0 = 29; a leap month follows the month it repeats), bits
/// 13-16 the leap month (0: none), bits 17-23 the day of the Gregorian year
/// (0-based) of its new year's day. Generated with the astronomical
/// calendar of the Python package sxtwl and checked month by month against
/// the table-based package lunardate for 1989-2099 (they agree on every
/// month start); `tests::known_dates` pins published dates.
const LUNAR_YEARS: [u32; 113] = [
    0x0480ea9, 0x034be92, 0x05a0e92, 0x0440d26, 0x02c6a56, 0x0500a57, 0x03d14d6,
    0x062035a, // 1989-1996
    0x04a06d5, 0x036b6c9, 0x05c0749, 0x0460693, 0x02e952b, 0x054052b, 0x03e0a5b,
    0x02a555a, // 1997-2004
    0x04e056a, 0x038fb55, 0x0600ba4, 0x04a0b49, 0x032ba93, 0x0580a95, 0x042052d,
    0x02c8aad, // 2005-2012
    0x0500ab5, 0x03d35aa, 0x06205d2, 0x04c0da5, 0x036dd4a, 0x05c0d4a, 0x0460c95,
    0x030952e, // 2013-2020
    0x0540556, 0x03e0ab5, 0x02a55b2, 0x05006d2, 0x038cea5, 0x05e0725, 0x048064b,
    0x032ac97, // 2021-2028
    0x0560cab, 0x042055a, 0x02c6ad6, 0x0520b69, 0x03d7752, 0x0620b52, 0x04c0b25,
    0x036da4b, // 2029-2036
    0x05a0a4b, 0x04404ab, 0x02ea55b, 0x05405ad, 0x03e0b6a, 0x02a5b52, 0x0500d92,
    0x03afd25, // 2037-2044
    0x05e0d25, 0x0480a55, 0x032b4ad, 0x05804b6, 0x04005b5, 0x02c6daa, 0x0520ec9,
    0x03f1e92, // 2045-2052
    0x0620e92, 0x04c0d26, 0x036ca56, 0x05a0a57, 0x0440556, 0x02e86d5, 0x0540755,
    0x0400749, // 2053-2060
    0x0286e93, 0x04e0693, 0x038f52b, 0x05e052b, 0x0460a5b, 0x032b55a, 0x058056a,
    0x0420b65, // 2061-2068
    0x02c974a, 0x0520b4a, 0x03d1a95, 0x0620a95, 0x04a052d, 0x034caad, 0x05a0ab5,
    0x04605aa, // 2069-2076
    0x02e8ba5, 0x0540da5, 0x0400d4a, 0x02a7c95, 0x04e0c96, 0x038f94e, 0x05e0556,
    0x0480ab5, // 2077-2084
    0x032b5b2, 0x05806d2, 0x0420ea5, 0x02e8e4a, 0x050068b, 0x03b0c97, 0x06004ab,
    0x04a055b, // 2085-2092
    0x034cad6, 0x05a0b6a, 0x0460752, 0x0309725, 0x0540b45, 0x03e0a8b, 0x028549b,
    0x04e04ab, // 2093-2100
    0x038e95b, // 2101-2101
];

/// The first lunar year in [`LUNAR_YEARS`].
const FIRST_YEAR: i32 = 1989;

/// The years a season can be resolved in.
pub const YEARS: std::ops::RangeInclusive<i32> = 1990..=2100;

/// A lunar year: its new year's day and its months as (number, leap, length).
struct LunarYear {
    new_year: NaiveDate,
    months: Vec<(u32, bool, i64)>,
}

fn lunar_year(y: i32) -> Option<LunarYear> {
    let i = usize::try_from(y - FIRST_YEAR).ok()?;
    let w = *LUNAR_YEARS.get(i)?;
    let leap = (w >> 13) & 0xf;
    let new_year = NaiveDate::from_ymd_opt(y, 1, 1)? + chrono::Days::new(u64::from(w >> 17));
    let mut months = Vec::with_capacity(13);
    let mut bit = 0;
    for m in 1..=12 {
        for is_leap in [false, true] {
            if is_leap && m != leap {
                continue;
            }
            let len = if w & (1 << bit) != 0 { 30 } else { 29 };
            months.push((m, is_leap, len));
            bit += 1;
        }
    }
    Some(LunarYear { new_year, months })
}

/// The Gregorian date of lunar `month`/`day` (not the leap month) of lunar
/// year `y`; None outside the table or for a day the month does not have.
pub fn from_lunar(y: i32, month: u32, day: u32) -> Option<NaiveDate> {
    let ly = lunar_year(y)?;
    let mut offset = 0i64;
    for (m, leap, len) in &ly.months {
        if *m == month && !leap {
            if i64::from(day) < 1 || i64::from(day) > *len {
                return None;
            }
            return ly
                .new_year
                .checked_add_signed(chrono::Duration::days(offset + i64::from(day) - 1));
        }
        offset += len;
    }
    None
}

/// The lunar festivals a season may be anchored on, as (name, month, day);
/// 除夕 is the day before 春节.
const FESTIVALS: [(&str, u32, u32); 6] = [
    ("春节", 1, 1),
    ("元宵", 1, 15),
    ("端午", 5, 5),
    ("七夕", 7, 7),
    ("中秋", 8, 15),
    ("重阳", 9, 9),
];

/// Where a season's `from` or `to` falls in a year.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Anchor {
    /// A Gregorian month and day.
    Solar(u32, u32),
    /// A lunar month and day, of the lunar year that starts in the year.
    Lunar(u32, u32),
    /// The day before 春节.
    Eve,
}

/// Why a season's dates cannot be read; each says what to write instead.
#[derive(Debug, thiserror::Error)]
pub enum SeasonError {
    #[error(
        "{0:?} is not a season date; write a month-day like \"11-01\", a lunar festival ({festivals}, 除夕) or \"农历08-15\", optionally with \"+ N\" or \"- N\" days, e.g. \"春节 - 30\"",
        festivals = FESTIVALS.map(|f| f.0).join(", ")
    )]
    NotADate(String),
    #[error("{0:?}: a season date may be shifted by at most 366 days")]
    ShiftTooLarge(String),
    /// The season's `from` or `to` is no date.
    #[error("seasons.{name}.{key}: {source}")]
    Bound {
        name: String,
        key: &'static str,
        source: Box<SeasonError>,
    },
    #[error("seasons.{name}: no date in {year}; the calendar covers 1990-2100")]
    NoDateIn { name: String, year: i32 },
    #[error("seasons.{name}: from {from:?} to {to:?} is longer than a year")]
    LongerThanAYear {
        name: String,
        from: String,
        to: String,
    },
}

/// A date rule: an anchor shifted by whole days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateRule {
    anchor: Anchor,
    shift: i64,
}

impl DateRule {
    /// Reads `"11-01"`, `"春节 - 30"`, `"春节 minus 30 days"`, `"农历08-15"`,
    /// `"中秋 + 3天"`; errors say what is expected.
    pub fn parse(text: &str) -> Result<DateRule, SeasonError> {
        let t = text.trim();
        let bad = || SeasonError::NotADate(text.to_string());
        let md = |s: &str| -> Option<(u32, u32, usize)> {
            let b = s.as_bytes();
            if b.len() >= 5
                && b[..2].iter().all(u8::is_ascii_digit)
                && b[2] == b'-'
                && b[3..5].iter().all(u8::is_ascii_digit)
            {
                Some((s[..2].parse().ok()?, s[3..5].parse().ok()?, 5))
            } else {
                None
            }
        };
        let (anchor, rest) = if let Some((m, d, n)) = md(t) {
            NaiveDate::from_ymd_opt(2024, m, d).ok_or_else(bad)?;
            (Anchor::Solar(m, d), &t[n..])
        } else if let Some(r) = t.strip_prefix("农历") {
            let (m, d, n) = md(r.trim_start()).ok_or_else(bad)?;
            if !(1..=12).contains(&m) || !(1..=30).contains(&d) {
                return Err(bad());
            }
            (Anchor::Lunar(m, d), &r.trim_start()[n..])
        } else if let Some(r) = t.strip_prefix("除夕") {
            (Anchor::Eve, r)
        } else {
            let (name, m, d) = FESTIVALS
                .iter()
                .find(|f| t.starts_with(f.0))
                .ok_or_else(bad)?;
            (Anchor::Lunar(*m, *d), &t[name.len()..])
        };
        let rest = rest.trim();
        let shift = if rest.is_empty() {
            0
        } else {
            let (sign, num) = if let Some(r) = rest.strip_prefix('+') {
                (1, r)
            } else if let Some(r) = rest.strip_prefix('-') {
                (-1, r)
            } else if let Some(r) = rest.strip_prefix("plus") {
                (1, r)
            } else if let Some(r) = rest.strip_prefix("minus") {
                (-1, r)
            } else {
                return Err(bad());
            };
            let num = num.trim();
            let digits: String = num.chars().take_while(char::is_ascii_digit).collect();
            let unit = num[digits.len()..].trim();
            if digits.is_empty() || !matches!(unit, "" | "d" | "day" | "days" | "天") {
                return Err(bad());
            }
            let n: i64 = digits.parse().map_err(|_| bad())?;
            if n > 366 {
                return Err(SeasonError::ShiftTooLarge(text.to_string()));
            }
            sign * n
        };
        Ok(DateRule { anchor, shift })
    }

    /// The date in Gregorian year `y`; None outside 1989..=2101.
    pub fn in_year(&self, y: i32) -> Option<NaiveDate> {
        let base = match self.anchor {
            // 02-29 is the last day of February: 02-28 in a common year,
            // so "12-01" to "02-29" ends with February and "03-01" to
            // "02-29" is a whole year in every year.
            Anchor::Solar(m, d) => {
                NaiveDate::from_ymd_opt(y, m, d).or_else(|| NaiveDate::from_ymd_opt(y, m, d - 1))?
            }
            Anchor::Lunar(m, d) => from_lunar(y, m, d)?,
            Anchor::Eve => from_lunar(y, 1, 1)?.pred_opt()?,
        };
        base.checked_add_signed(chrono::Duration::days(self.shift))
    }
}

/// One configured season.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Season {
    pub name: String,
    from: DateRule,
    to: DateRule,
}

/// One occurrence of a season: its first and last day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peak {
    pub name: String,
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl Peak {
    /// Days from `as_of` to the start; 0 while it runs.
    pub fn days_until(&self, as_of: NaiveDate) -> i64 {
        (self.start - as_of).num_days().max(0)
    }

    /// Whether `as_of` falls in it.
    pub fn contains(&self, as_of: NaiveDate) -> bool {
        self.start <= as_of && as_of <= self.end
    }

    /// Days left from `as_of` to the end, both included, while it runs; 0
    /// otherwise.
    pub fn days_left(&self, as_of: NaiveDate) -> i64 {
        if self.contains(as_of) {
            (self.end - as_of).num_days() + 1
        } else {
            0
        }
    }

    /// Its length in days.
    pub fn length(&self) -> i64 {
        (self.end - self.start).num_days() + 1
    }
}

/// The configured seasons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seasons {
    pub list: Vec<Season>,
}

impl Season {
    /// A season from its config; errors name the season and the date.
    pub fn parse(name: &str, from: &str, to: &str) -> Result<Season, SeasonError> {
        let bound = |key: &'static str, text: &str| {
            DateRule::parse(text).map_err(|e| SeasonError::Bound {
                name: name.to_string(),
                key,
                source: Box::new(e),
            })
        };
        let s = Season {
            name: name.to_string(),
            from: bound("from", from)?,
            to: bound("to", to)?,
        };
        // Every year must give a period of at most a year.
        for y in YEARS {
            let p = s.in_year(y).ok_or_else(|| SeasonError::NoDateIn {
                name: name.to_string(),
                year: y,
            })?;
            if p.length() > 366 {
                return Err(SeasonError::LongerThanAYear {
                    name: name.to_string(),
                    from: from.to_string(),
                    to: to.to_string(),
                });
            }
        }
        Ok(s)
    }

    /// The occurrence that starts in Gregorian year `y` (its end may fall
    /// in the next year, as for "12-20" to "01-10").
    pub fn in_year(&self, y: i32) -> Option<Peak> {
        let start = self.from.in_year(y)?;
        let mut end = self.to.in_year(y)?;
        if end < start {
            end = self.to.in_year(y + 1)?;
        }
        Some(Peak {
            name: self.name.clone(),
            start,
            end,
        })
    }

    /// The occurrence running at `as_of` or the next to start; None
    /// outside the calendar's years.
    pub fn around(&self, as_of: NaiveDate) -> Option<Peak> {
        let y = as_of.year();
        (y - 1..=y + 1)
            .filter_map(|y| self.in_year(y))
            .filter(|p| p.end >= as_of)
            .min_by_key(|p| p.start)
    }
}

impl Seasons {
    /// The shipped seasons: 春节 (the 30 days before it to 元宵), 中秋 (the
    /// 30 days before it), 618 (06-01 to 06-18) and 双11 (11-01 to 11-11).
    pub fn shipped() -> Seasons {
        let mut list = Vec::new();
        for (name, from, to) in SHIPPED {
            if let Ok(s) = Season::parse(name, from, to) {
                list.push(s);
            }
        }
        Seasons { list }
    }

    /// The season named `name`.
    pub fn get(&self, name: &str) -> Option<&Season> {
        self.list.iter().find(|s| s.name == name)
    }

    /// The names, in config order.
    pub fn names(&self) -> Vec<&str> {
        self.list.iter().map(|s| s.name.as_str()).collect()
    }

    /// Pairs of seasons (in their order here) that fall on the same days in
    /// every year: a rule checking each season open (stock_cover) would
    /// raise each alert twice.
    pub fn same_dates(&self) -> Vec<(&str, &str)> {
        let mut out = Vec::new();
        for (i, a) in self.list.iter().enumerate() {
            for b in &self.list[i + 1..] {
                let dates = |s: &Season, y| s.in_year(y).map(|p| (p.start, p.end));
                if YEARS.into_iter().all(|y| dates(a, y) == dates(b, y)) {
                    out.push((a.name.as_str(), b.name.as_str()));
                }
            }
        }
        out
    }

    /// The occurrence of any season running at `as_of` or starting next
    /// (ties: the one ending first).
    pub fn next(&self, as_of: NaiveDate) -> Option<Peak> {
        self.list
            .iter()
            .filter_map(|s| s.around(as_of))
            .min_by_key(|p| (p.days_until(as_of), p.end))
    }

    /// Every season's occurrence running at `as_of` or starting within
    /// `days` days of it (0: only those running), one per season, the
    /// soonest first (ties: the one ending first, then config order).
    pub fn within(&self, as_of: NaiveDate, days: i64) -> Vec<Peak> {
        let mut v: Vec<Peak> = self
            .list
            .iter()
            .filter_map(|s| s.around(as_of))
            .filter(|p| p.days_until(as_of) <= days)
            .collect();
        v.sort_by_key(|p| (p.days_until(as_of), p.end));
        v
    }
}

/// The seasons shipped in config/kamwatch.yaml (and used when a config or
/// a rule test names none).
pub const SHIPPED: [(&str, &str, &str); 4] = [
    ("春节", "春节 - 30", "元宵"),
    ("618", "06-01", "06-18"),
    ("中秋", "中秋 - 30", "中秋"),
    ("双11", "11-01", "11-11"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn same_dates_are_found_every_year_or_not_at_all() {
        let two = |a: (&str, &str), b: (&str, &str)| Seasons {
            list: vec![
                Season::parse("x", a.0, a.1).unwrap(),
                Season::parse("y", b.0, b.1).unwrap(),
            ],
        };
        assert_eq!(
            two(("11-01", "11-11"), ("11-01", "11-11")).same_dates(),
            vec![("x", "y")]
        );
        // 春节 is the first day of the first lunar month.
        assert_eq!(
            two(("春节 - 30", "春节"), ("春节 - 30", "农历01-01")).same_dates(),
            vec![("x", "y")]
        );
        assert!(
            two(("11-01", "11-11"), ("11-01", "11-12"))
                .same_dates()
                .is_empty()
        );
        // The same days in some years only (02-28 and the last day of
        // February): not the same season.
        assert!(
            two(("02-01", "02-28"), ("02-01", "02-29"))
                .same_dates()
                .is_empty()
        );
    }

    #[test]
    fn known_dates() {
        // Spring Festival, as published (e.g. the State Council's holiday
        // notices and Hong Kong Observatory's calendar).
        for (y, date) in [
            (1990, "1990-01-27"),
            (2000, "2000-02-05"),
            (2008, "2008-02-07"),
            (2020, "2020-01-25"),
            (2023, "2023-01-22"),
            (2024, "2024-02-10"),
            (2025, "2025-01-29"),
            (2026, "2026-02-17"),
            (2027, "2027-02-06"),
            (2028, "2028-01-26"),
            (2033, "2033-01-31"),
            (2100, "2100-02-09"),
        ] {
            assert_eq!(from_lunar(y, 1, 1), Some(d(date)), "春节 {y}");
        }
        // Mid-Autumn (8/15), across years with a leap month before it
        // (2020: leap 4; 2023: leap 2; 2025: leap 6).
        for (y, date) in [
            (2019, "2019-09-13"),
            (2020, "2020-10-01"),
            (2021, "2021-09-21"),
            (2022, "2022-09-10"),
            (2023, "2023-09-29"),
            (2024, "2024-09-17"),
            (2025, "2025-10-06"),
            (2026, "2026-09-25"),
        ] {
            assert_eq!(from_lunar(y, 8, 15), Some(d(date)), "中秋 {y}");
        }
        // 端午 2025 was 05-31.
        assert_eq!(from_lunar(2025, 5, 5), Some(d("2025-05-31")));
    }

    #[test]
    fn the_table_is_consistent() {
        // Each lunar year's months add up to the days until the next new
        // year; a leap year has 13 months; new year falls from 01-21 to 02-20.
        for y in FIRST_YEAR..FIRST_YEAR + LUNAR_YEARS.len() as i32 - 1 {
            let this = lunar_year(y).unwrap();
            let next = lunar_year(y + 1).unwrap();
            let days: i64 = this.months.iter().map(|m| m.2).sum();
            assert_eq!(
                this.new_year + chrono::Duration::days(days),
                next.new_year,
                "{y}"
            );
            let leap = this.months.iter().filter(|m| m.1).count();
            assert_eq!(this.months.len(), 12 + leap, "{y}");
            assert!(leap <= 1);
            assert!(
                d(&format!("{y}-01-21")) <= this.new_year
                    && this.new_year <= d(&format!("{y}-02-20")),
                "{y}"
            );
        }
        assert!(from_lunar(1988, 1, 1).is_none());
        assert!(from_lunar(2102, 1, 1).is_none());
        assert!(
            from_lunar(2024, 1, 31).is_none(),
            "no 30th... of a 29-day month, no 31st ever"
        );
    }

    #[test]
    fn errors_say_what_to_write_and_name_the_season() {
        let e = |from: &str, to: &str| Season::parse("店庆", from, to).unwrap_err().to_string();
        assert_eq!(
            e("中元 - 30", "12-07"),
            "seasons.店庆.from: \"中元 - 30\" is not a season date; write a month-day like \"11-01\", a lunar festival (春节, 元宵, 端午, 七夕, 中秋, 重阳, 除夕) or \"农历08-15\", optionally with \"+ N\" or \"- N\" days, e.g. \"春节 - 30\""
        );
        assert_eq!(
            e("12-01", "春节 + 400"),
            "seasons.店庆.to: \"春节 + 400\": a season date may be shifted by at most 366 days"
        );
        assert_eq!(
            e("01-01 - 5", "12-31 + 5"),
            "seasons.店庆: from \"01-01 - 5\" to \"12-31 + 5\" is longer than a year"
        );
    }

    #[test]
    fn date_rules_parse_and_resolve() {
        let r = |s: &str, y| DateRule::parse(s).unwrap().in_year(y).unwrap();
        assert_eq!(r("春节 - 30", 2025), d("2024-12-30"));
        assert_eq!(r("春节 minus 30 days", 2025), d("2024-12-30"));
        assert_eq!(r("春节-30", 2026), d("2026-01-18"));
        assert_eq!(r("中秋 + 3天", 2024), d("2024-09-20"));
        assert_eq!(r("农历08-15", 2026), d("2026-09-25"));
        assert_eq!(r("除夕", 2026), d("2026-02-16"));
        assert_eq!(r("元宵", 2026), d("2026-03-03"));
        assert_eq!(r("11-01", 2026), d("2026-11-01"));
        assert_eq!(r("02-29", 2027), d("2027-02-28"));
        assert_eq!(r("02-29", 2028), d("2028-02-29"));
        assert_eq!(r("02-29 + 1", 2027), d("2027-03-01"));
        assert_eq!(r("02-29 + 1", 2028), d("2028-03-01"));
        for bad in [
            "",
            "11/01",
            "13-01",
            "春节 * 3",
            "春节 - x",
            "圣诞",
            "春节 - 400",
            "农历13-01",
        ] {
            assert!(DateRule::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_season_ending_02_29_ends_with_february_in_every_year() {
        // Winter: December to the end of February. A March-February year
        // is a whole year, common or leap. The leap day alone: the last
        // day of February.
        for (from, to, y, start, end, days) in [
            ("12-01", "02-29", 2026, "2026-12-01", "2027-02-28", 90),
            ("12-01", "02-29", 2027, "2027-12-01", "2028-02-29", 91),
            ("03-01", "02-29", 2027, "2027-03-01", "2028-02-29", 366),
            ("03-01", "02-29", 2028, "2028-03-01", "2029-02-28", 365),
            ("02-29", "02-29", 2027, "2027-02-28", "2027-02-28", 1),
            ("02-29", "02-29", 2028, "2028-02-29", "2028-02-29", 1),
        ] {
            let p = Season::parse("季", from, to).unwrap().in_year(y).unwrap();
            assert_eq!(
                (p.start, p.end, p.length()),
                (d(start), d(end), days),
                "{from}..{to} in {y}"
            );
        }
        // Around a common year's 03-01 the March-February year has begun.
        let fy = Season::parse("财年", "03-01", "02-29").unwrap();
        let p = fy.around(d("2027-03-01")).unwrap();
        assert_eq!((p.start, p.end), (d("2027-03-01"), d("2028-02-29")));
        let p = fy.around(d("2027-02-28")).unwrap();
        assert_eq!((p.start, p.end), (d("2026-03-01"), d("2027-02-28")));
    }

    #[test]
    fn around_finds_the_running_or_next_occurrence() {
        let s = Seasons::shipped();
        assert_eq!(s.names(), ["春节", "618", "中秋", "双11"]);
        let spring = s.get("春节").unwrap();
        // 2026-01-17 is the day before the 30 days before 春节 (02-17).
        let p = spring.around(d("2026-01-17")).unwrap();
        assert_eq!((p.start, p.end), (d("2026-01-18"), d("2026-03-03")));
        assert_eq!(p.days_until(d("2026-01-17")), 1);
        assert!(p.contains(d("2026-01-18")) && p.contains(d("2026-03-03")));
        assert_eq!(p.days_left(d("2026-03-03")), 1);
        // The day after it ends, the next year's.
        let p = spring.around(d("2026-03-04")).unwrap();
        assert_eq!(p.start, d("2027-01-07"));
        // A season across the new year.
        let x = Season::parse("年货", "12-20", "01-10").unwrap();
        let p = x.around(d("2027-01-05")).unwrap();
        assert_eq!((p.start, p.end), (d("2026-12-20"), d("2027-01-10")));
        // The next of all: on 2026-10-26 双11 starts in 6 days.
        let n = s.next(d("2026-10-26")).unwrap();
        assert_eq!(
            (n.name.as_str(), n.days_until(d("2026-10-26"))),
            ("双11", 6)
        );
        // In the calendar's last year the next 春节 (2101) is still known.
        assert!(spring.around(d("2100-12-31")).is_some());
    }

    #[test]
    fn within_lists_every_season_running_or_starting_soon() {
        let s = Seasons::shipped();
        let names = |as_of: &str, days: i64| -> Vec<(String, i64)> {
            let as_of = d(as_of);
            s.within(as_of, days)
                .into_iter()
                .map(|p| {
                    let n = p.days_until(as_of);
                    (p.name, n)
                })
                .collect()
        };
        // 双11 2026 runs 11-01..11-11; 春节 2027 (02-06) is stocked from
        // 2027-01-07, 60 days after 2026-11-08: the running one first.
        assert_eq!(
            names("2026-11-08", 60),
            [("双11".to_string(), 0), ("春节".to_string(), 60)]
        );
        assert_eq!(names("2026-11-07", 60), [("双11".to_string(), 0)]);
        assert_eq!(names("2026-11-08", 59), [("双11".to_string(), 0)]);
        // 0 days: only what runs; between peaks, nothing.
        assert_eq!(names("2026-11-08", 0), [("双11".to_string(), 0)]);
        assert!(names("2026-07-01", 0).is_empty());
        // 春节 2025 (01-29) is stocked from 2024-12-30: across the new year.
        assert_eq!(names("2025-01-02", 0), [("春节".to_string(), 0)]);
        // A year ahead sees each season once.
        assert_eq!(names("2026-07-01", 366).len(), 4);
        assert!(Seasons::default().within(d("2026-11-08"), 366).is_empty());
        // Ties on the start: the one ending first, then config order.
        let t = Seasons {
            list: vec![
                Season::parse("长", "05-01", "05-10").unwrap(),
                Season::parse("短", "05-01", "05-03").unwrap(),
                Season::parse("短2", "05-01", "05-03").unwrap(),
            ],
        };
        let got: Vec<String> = t
            .within(d("2026-04-20"), 30)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(got, ["短", "短2", "长"]);
    }
}
