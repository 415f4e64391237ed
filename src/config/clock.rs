//! The one clock: the instant now (`now`, which `KAMWATCH_NOW` can pin)
//! and the time zone "today" is counted in (`Zone`, from
//! `schedule.timezone`). Nothing else under src/ reads the wall clock for
//! a date. Reads the environment once; touches no file.

use std::fmt;

/// A time zone from the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    Local,
    Named(chrono_tz::Tz),
}

/// The one clock: the instant now. Everything under src/ that needs the
/// date or a timestamp asks here (the daemon's timers use `Instant`, which
/// is no date). `KAMWATCH_NOW` (RFC 3339, e.g. `2031-02-28T20:00:00Z`)
/// starts the clock at that instant instead of the wall clock, and it runs
/// on from there: tests and reproductions use it to pin "today".
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use std::sync::OnceLock;
    static START: OnceLock<Option<(chrono::DateTime<chrono::Utc>, std::time::Instant)>> =
        OnceLock::new();
    let start = START.get_or_init(|| {
        let text = std::env::var("KAMWATCH_NOW").ok()?;
        match chrono::DateTime::parse_from_rfc3339(text.trim()) {
            Ok(t) => Some((t.with_timezone(&chrono::Utc), std::time::Instant::now())),
            Err(_) => {
                eprintln!(
                    "kamwatch: warning: KAMWATCH_NOW={text:?} is not a time like 2031-02-28T20:00:00Z; using the system clock"
                );
                None
            }
        }
    });
    match start {
        Some((at, since)) => *at + chrono::Duration::from_std(since.elapsed()).unwrap_or_default(),
        None => chrono::Utc::now(),
    }
}

impl Zone {
    /// Today's date in this zone: the business date every command uses.
    pub fn today(self) -> chrono::NaiveDate {
        self.naive_now().date()
    }

    /// The wall-clock time now in this zone.
    pub fn naive_now(self) -> chrono::NaiveDateTime {
        self.naive_at(now())
    }

    /// The instant `at` as a mail Date header in this zone
    /// ("Mon, 30 Nov 2026 12:31:48 +0800").
    pub fn rfc2822(self, at: chrono::DateTime<chrono::Utc>) -> String {
        match self {
            Zone::Local => at.with_timezone(&chrono::Local).to_rfc2822(),
            Zone::Named(tz) => at.with_timezone(&tz).to_rfc2822(),
        }
    }

    /// The wall-clock time in this zone at the instant `at`.
    pub fn naive_at(self, at: chrono::DateTime<chrono::Utc>) -> chrono::NaiveDateTime {
        match self {
            Zone::Local => at.with_timezone(&chrono::Local).naive_local(),
            Zone::Named(tz) => at.with_timezone(&tz).naive_local(),
        }
    }
}

impl Zone {
    /// `local`, or an IANA name such as `Asia/Shanghai`; `None` for
    /// anything else.
    pub fn parse(s: &str) -> Option<Zone> {
        if s == "local" {
            Some(Zone::Local)
        } else {
            s.parse::<chrono_tz::Tz>().ok().map(Zone::Named)
        }
    }
}

/// As the config writes it: `local` or the IANA name.
impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Local => f.write_str("local"),
            Zone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages name the zone as the config wrote it.
    #[test]
    fn zones_read_back_as_written() {
        for name in [
            "local",
            "Asia/Shanghai",
            "Asia/Chongqing",
            "UTC",
            "US/Eastern",
        ] {
            assert_eq!(Zone::parse(name).unwrap().to_string(), name);
        }
        for bad in [
            "",
            "Local",
            "asia/shanghai",
            " Asia/Shanghai",
            "Mars/Olympus",
        ] {
            assert_eq!(Zone::parse(bad), None, "{bad:?}");
        }
    }
}
