//! Schedule: when the daemon's scheduled evaluations fall. `slots` is pure:
//! given the zone, the times of day and an instant "now" (never the wall
//! clock: the caller's timer decides), it names the last slot at or before
//! it and the next one after. Reads and writes nothing.

use chrono::{DateTime, NaiveDateTime, NaiveTime, TimeZone, Utc};

use crate::config::Zone;

/// The latest scheduled time at or before `now` (today's or yesterday's
/// in `zone`), and the earliest after it, as instants. A time of day that
/// does not exist on a day (skipped by a DST change) has no slot that day;
/// one that exists twice (the hour repeated in autumn) counts once, at
/// its earlier instant.
pub fn slots(
    zone: Zone,
    times: &[NaiveTime],
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    // The day around which to look is `now`'s date in the zone.
    let today = zone.naive_at(now).date();
    let mut candidates: Vec<DateTime<Utc>> = Vec::new();
    for day in [today.pred_opt(), Some(today), today.succ_opt()]
        .into_iter()
        .flatten()
    {
        for t in times {
            if let Some(at) = to_utc(zone, day.and_time(*t)) {
                candidates.push(at);
            }
        }
    }
    candidates.sort();
    let last = candidates.iter().rev().find(|t| **t <= now).copied();
    let next = candidates.iter().find(|t| **t > now).copied();
    (last, next)
}

fn to_utc(zone: Zone, t: NaiveDateTime) -> Option<DateTime<Utc>> {
    match zone {
        Zone::Local => chrono::Local
            .from_local_datetime(&t)
            .earliest()
            .map(|d| d.with_timezone(&Utc)),
        Zone::Named(tz) => tz
            .from_local_datetime(&t)
            .earliest()
            .map(|d| d.with_timezone(&Utc)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn zone(name: &str) -> Zone {
        Zone::Named(name.parse().unwrap())
    }

    #[test]
    fn slots_follow_now_not_the_wall_clock() {
        // 2031-02-28 23:30 UTC is already 07:30 on 1 March in Shanghai:
        // the slot at that very instant is the last one, the next is 18:00
        // on 1 March, whatever the machine's clock says.
        let now = at(2031, 2, 28, 23, 30);
        let (last, next) = slots(zone("Asia/Shanghai"), &[hm(7, 30), hm(18, 0)], now);
        assert_eq!(last, Some(now));
        assert_eq!(next, Some(at(2031, 3, 1, 10, 0)));
    }

    #[test]
    fn slots_around_now_in_the_zone() {
        // 2026-11-28 00:00 UTC is 08:00 in Shanghai: the last slot was
        // 07:30 Shanghai (23:30 UTC the day before), the next is 18:00.
        let now = at(2026, 11, 28, 0, 0);
        let (last, next) = slots(zone("Asia/Shanghai"), &[hm(7, 30), hm(18, 0)], now);
        assert_eq!(last, Some(at(2026, 11, 27, 23, 30)));
        assert_eq!(next, Some(at(2026, 11, 28, 10, 0)));
    }

    /// Across midnight in the zone (Shanghai, UTC+8, no DST): a minute
    /// before and after local midnight, the last slot is yesterday's 18:00
    /// and the next today's 07:30; the new year changes nothing.
    #[test]
    fn across_midnight_in_the_zone() {
        let times = [hm(7, 30), hm(18, 0)];
        for now in [at(2026, 12, 31, 15, 59), at(2026, 12, 31, 16, 1)] {
            let (last, next) = slots(zone("Asia/Shanghai"), &times, now);
            assert_eq!(last, Some(at(2026, 12, 31, 10, 0)), "{now}");
            assert_eq!(next, Some(at(2026, 12, 31, 23, 30)), "{now}");
        }
        // A slot at 00:00 local is today's, not tomorrow's, at midnight.
        let midnight = at(2026, 12, 31, 16, 0);
        let (last, next) = slots(zone("Asia/Shanghai"), &[hm(0, 0)], midnight);
        assert_eq!(last, Some(midnight));
        assert_eq!(next, Some(at(2027, 1, 1, 16, 0)));
    }

    /// In UTC (no DST) the slots are the times of day themselves, and an
    /// instant between two slots of different days finds both.
    #[test]
    fn in_utc_across_midnight() {
        let times = [hm(23, 45), hm(0, 15)];
        let (last, next) = slots(zone("UTC"), &times, at(2027, 2, 28, 23, 59));
        assert_eq!(last, Some(at(2027, 2, 28, 23, 45)));
        assert_eq!(next, Some(at(2027, 3, 1, 0, 15)));
    }

    /// Where the clock skips an hour (Berlin, last Sunday of March 2027,
    /// 02:00 -> 03:00) a slot at 02:30 has no instant that day: the next
    /// slot is the following day's; where it repeats an hour (October),
    /// the slot counts once, at the earlier instant.
    #[test]
    fn dst_skips_and_repeats() {
        let berlin = zone("Europe/Berlin");
        let times = [hm(2, 30)];
        // 2027-03-28 00:00 UTC = 01:00 CET, before the skipped hour.
        let (_, next) = slots(berlin, &times, at(2027, 3, 28, 0, 0));
        assert_eq!(next, Some(at(2027, 3, 29, 0, 30)));
        // 2027-10-31: 02:30 happens at 00:30 UTC (CEST) and 01:30 UTC (CET).
        let (last, next) = slots(berlin, &times, at(2027, 10, 31, 1, 0));
        assert_eq!(last, Some(at(2027, 10, 31, 0, 30)));
        assert_eq!(next, Some(at(2027, 11, 1, 1, 30)));
    }
}
