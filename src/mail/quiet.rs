//! Quiet windows: days on which mail is held (weekdays, a date range
//! once, or a range every year), parsed from `mail.quiet`. Pure.

use chrono::NaiveDate;

use crate::config::MailConfig;

/// A quiet window, parsed from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Quiet {
    pub name: String,
    weekdays: Vec<chrono::Weekday>,
    range: Option<(DateSpec, DateSpec)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum DateSpec {
    Once(NaiveDate),
    /// (month, day), every year.
    Yearly(u32, u32),
}

impl DateSpec {
    fn parse(s: &str) -> Result<DateSpec, String> {
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(DateSpec::Once(d));
        }
        let md = s.split_once('-').and_then(|(m, d)| {
            let (m, d) = (m.parse::<u32>().ok()?, d.parse::<u32>().ok()?);
            NaiveDate::from_ymd_opt(2000, m, d).map(|_| DateSpec::Yearly(m, d))
        });
        md.ok_or_else(|| {
            format!("{s:?} is not a date: write YYYY-MM-DD for one year or MM-DD for every year")
        })
    }
}

impl Quiet {
    pub fn parse(q: &crate::config::QuietWindow) -> Result<Quiet, String> {
        let weekdays = q
            .weekdays
            .iter()
            .map(|w| {
                w.parse::<chrono::Weekday>().map_err(|_| {
                    format!("weekdays: {w:?} is not a weekday; write mon, tue, wed, thu, fri, sat or sun")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let range = match (&q.from, &q.to) {
            (None, None) => None,
            (Some(f), Some(t)) => {
                let (f, t) = (DateSpec::parse(f)?, DateSpec::parse(t)?);
                match (f, t) {
                    (DateSpec::Once(a), DateSpec::Once(b)) if a > b => {
                        return Err(format!("from {a} is after to {b}"));
                    }
                    (DateSpec::Once(_), DateSpec::Yearly(..))
                    | (DateSpec::Yearly(..), DateSpec::Once(_)) => {
                        return Err(
                            "give `from` and `to` both as YYYY-MM-DD or both as MM-DD".into()
                        );
                    }
                    _ => {}
                }
                Some((f, t))
            }
            _ => return Err("give both `from` and `to`, or neither".into()),
        };
        if weekdays.is_empty() && range.is_none() {
            return Err("a quiet window needs `weekdays` or `from` and `to`".into());
        }
        Ok(Quiet {
            name: q.name.clone().unwrap_or_else(|| "quiet window".into()),
            weekdays,
            range,
        })
    }

    /// Whether mail is held on this day.
    pub fn covers(&self, d: NaiveDate) -> bool {
        use chrono::Datelike;
        if self.weekdays.contains(&d.weekday()) {
            return true;
        }
        match self.range {
            Some((DateSpec::Once(a), DateSpec::Once(b))) => a <= d && d <= b,
            Some((DateSpec::Yearly(m1, d1), DateSpec::Yearly(m2, d2))) => {
                let x = (d.month(), d.day());
                if (m1, d1) <= (m2, d2) {
                    (m1, d1) <= x && x <= (m2, d2)
                } else {
                    x >= (m1, d1) || x <= (m2, d2) // across New Year
                }
            }
            _ => false,
        }
    }
}

/// The quiet window covering `as_of`, if any.
pub fn quiet_on(cfg: &MailConfig, as_of: NaiveDate) -> Option<String> {
    cfg.quiet
        .iter()
        .filter_map(|q| Quiet::parse(q).ok())
        .find(|q| q.covers(as_of))
        .map(|q| q.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_windows() {
        let q = |w: &[&str], f: Option<&str>, t: Option<&str>| {
            Quiet::parse(&crate::config::QuietWindow {
                name: None,
                weekdays: w.iter().map(|s| s.to_string()).collect(),
                from: f.map(str::to_string),
                to: t.map(str::to_string),
            })
        };
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let weekend = q(&["sat", "sun"], None, None).unwrap();
        assert!(weekend.covers(d("2026-11-28"))); // a Saturday
        assert!(!weekend.covers(d("2026-11-27")));
        let year_end = q(&[], Some("12-30"), Some("01-02")).unwrap();
        assert!(year_end.covers(d("2026-12-31")) && year_end.covers(d("2027-01-02")));
        assert!(!year_end.covers(d("2027-01-03")));
        let once = q(&[], Some("2027-02-05"), Some("2027-02-13")).unwrap();
        assert!(once.covers(d("2027-02-13")) && !once.covers(d("2028-02-06")));
        assert!(q(&[], Some("2027-02-05"), None).is_err());
        assert!(q(&[], None, None).is_err());
        assert!(q(&[], Some("13-01"), Some("12-01")).is_err());
    }
}
