//! The book's rankings of earlier days kept from one snapshot to the next
//! (the daemon's metrics in memory, `metrics::live`): the tier-history
//! functions (`tier_ago`, `revenue_tier_ago`, ...) rank the whole book once
//! per day they look at, and without this every evaluation ranked each of
//! those days again.
//!
//! A day's ranking depends only on the tiers config, the accounts ranked
//! (the master's active accounts in id order, with their tier column) and
//! each account's trailing-12-month revenue and cost on that day. So a
//! kept day stays valid while the config and the accounts are the same,
//! and it is dropped when an account whose order lines were read again has
//! another 12-month revenue or cost on that day, to the bit: compared on
//! the old and the new series, not guessed from the lines' dates (a line
//! dated D moves the sums of days D..D+364, and a prefix sum's rounding
//! may move a later one). What is kept is what the rules of the last
//! snapshot read, so it is bounded by the days the rules look back at.
//! Touches nothing but the rankings and series it is given.

use std::collections::HashMap;
use std::sync::Arc;

use super::series::Series;
use super::tiers::{DayRanks, TierHistory};
use crate::config::TierConfig;
use crate::model::dates::Day;

/// What the kept days were ranked with: the tiers config (its lines' bits
/// and basis) and a fingerprint of the accounts ranked.
type MadeWith = (u64, u64, String, u64);

fn made_with(tiers: &TierConfig, accounts: u64) -> MadeWith {
    (
        tiers.a_share.to_bits(),
        tiers.b_share.to_bits(),
        format!("{:?}", tiers.by),
        accounts,
    )
}

/// Rankings of days kept between snapshots; see the module's header.
#[derive(Debug, Default)]
pub struct Kept {
    made_with: Option<MadeWith>,
    /// (kind, day) to the day's ranking (kinds: `tiers::KINDS`).
    days: HashMap<(usize, Day), DayRanks>,
    /// The history of the last snapshot seeded: the days its rules read
    /// are kept when the next change or snapshot comes.
    last: Option<Arc<TierHistory>>,
}

impl Kept {
    /// The days the last snapshot's rules read become the days kept, with
    /// those after its end (kept from a snapshot of a later day); the days
    /// it covered and did not read are dropped, so are those before.
    fn harvest(&mut self) {
        if let Some(h) = self.last.take() {
            let end = h.end();
            self.days.retain(|(_, day), _| *day > end);
            self.days.extend(
                h.read_days()
                    .into_iter()
                    .map(|(kind, day, r)| ((kind, day), r)),
            );
        }
    }

    /// Forgets every day (a new master, everything read again).
    pub fn forget(&mut self) {
        self.last = None;
        self.days.clear();
        self.made_with = None;
    }

    /// Drops the days on which one of these accounts (its order series
    /// before and after they were read again; None: it had no order
    /// lines) has another trailing-12-month revenue or cost.
    pub fn changed<'a>(
        &mut self,
        accounts: impl Iterator<Item = (Option<&'a Series>, Option<&'a Series>)>,
    ) {
        self.harvest();
        let pairs: Vec<_> = accounts.collect();
        let moved = |day: Day| {
            pairs.iter().any(|(old, new)| {
                let sums =
                    |s: &Option<&Series>| s.map_or((0.0f64, 0.0f64), |s| s.revenue_cost(day, 365));
                let (a, b) = (sums(old), sums(new));
                a.0.to_bits() != b.0.to_bits() || a.1.to_bits() != b.1.to_bits()
            })
        };
        let mut verdict: HashMap<Day, bool> = HashMap::new();
        self.days
            .retain(|(_, day), _| !*verdict.entry(*day).or_insert_with(|| moved(*day)));
    }

    /// Hands `history` (of accounts with fingerprint `accounts`, ranked by
    /// `tiers`) the days kept that it covers, and remembers it: what its
    /// rules read is kept for the next snapshot.
    pub fn seed(&mut self, history: &Arc<TierHistory>, tiers: &TierConfig, accounts: u64) {
        self.harvest();
        let now = made_with(tiers, accounts);
        if self.made_with.as_ref() != Some(&now) {
            self.days.clear();
            self.made_with = Some(now);
        }
        for ((kind, day), r) in &self.days {
            if *day <= history.end() {
                history.offer(*kind, *day, r.clone());
            }
        }
        self.last = Some(history.clone());
    }

    /// How many days are kept (after the last snapshot's are taken).
    pub fn days(&mut self) -> usize {
        self.harvest();
        self.days.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tiers::KINDS;
    use super::*;
    use crate::config::TierBasis;
    use crate::model::Tier;
    use crate::model::dates::day;
    use crate::store::OrderDay;
    use chrono::NaiveDate;

    fn d(s: &str) -> Day {
        day(s.parse::<NaiveDate>().unwrap())
    }

    fn series(lines: &[(&str, f64)]) -> Series {
        let mut s = Series::default();
        for (date, revenue) in lines {
            s.push(&OrderDay {
                date: date.parse().unwrap(),
                revenue: *revenue,
                cost: revenue * 0.7,
                qty: 1.0,
                orders: 1,
            });
        }
        s
    }

    fn history(end: Day, s: &[Series]) -> Arc<TierHistory> {
        let tiers = TierConfig::default();
        Arc::new(TierHistory::new(
            end,
            &tiers,
            s.to_vec(),
            vec![None; s.len()],
        ))
    }

    /// Every account's (tier, share above) on `days_ago`, of each kind,
    /// then the book by each measure alone (its total and floors, with
    /// the ranking: kept with it).
    fn read(h: &TierHistory, n: usize, days_ago: i64) -> Vec<(Tier, u64)> {
        let mut out = Vec::new();
        for by in [TierBasis::Revenue, TierBasis::GrossProfit] {
            let b = h.book_alone(by, days_ago);
            for x in [b.total, b.floor_a, b.floor_b] {
                out.push((Tier::C, x.to_bits()));
            }
        }
        for i in 0..n {
            for t in [
                h.at(i, days_ago),
                h.alone_at(TierBasis::Revenue, i, days_ago),
                h.alone_at(TierBasis::GrossProfit, i, days_ago),
            ] {
                let (t, s) = t.unwrap();
                out.push((t, s.to_bits()));
            }
        }
        out
    }

    /// The days read are kept and handed to the next history as they were
    /// ranked (the same arrays); a line moves only the days whose 12-month
    /// sums it moves, and those ranked again equal a fresh ranking.
    #[test]
    fn kept_days_are_reused_until_an_account_moves_them() {
        let tiers = TierConfig::default();
        let end = d("2026-11-28");
        let mut book = vec![
            series(&[("2025-06-01", 900.0), ("2026-11-01", 50.0)]),
            series(&[("2025-12-01", 400.0)]),
            series(&[("2026-03-01", 300.0), ("2026-11-20", 10.0)]),
        ];
        let mut kept = Kept::default();
        let first = history(end, &book);
        kept.seed(&first, &tiers, 7);
        let looked = [1_i64, 60, 200, 400, 600];
        let before: Vec<_> = looked.iter().map(|k| read(&first, 3, *k)).collect();
        drop(first);
        assert_eq!(kept.days(), looked.len() * KINDS);

        // Account 1 gets a line dated 2026-05-01: days 2026-05-01 up to
        // 364 days later move (1, 60 and 200 days back), earlier ones not.
        let old = book[1].clone();
        book[1] = series(&[("2025-12-01", 400.0), ("2026-05-01", 700.0)]);
        kept.changed([(Some(&old), Some(&book[1]))].into_iter());
        let left: Vec<Day> = {
            let mut v: Vec<Day> = kept.days.keys().map(|k| k.1).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        assert_eq!(left, [end - 600, end - 400]);

        let next = history(end, &book);
        kept.seed(&next, &tiers, 7);
        let fresh = history(end, &book);
        for (k, was) in looked.iter().zip(&before) {
            let now = read(&next, 3, *k);
            assert_eq!(now, read(&fresh, 3, *k), "{k} days back");
            assert_eq!(&now == was, *k >= 400, "{k} days back");
        }
        // The day kept is the same array, not ranked again.
        let again: HashMap<_, _> = next
            .read_days()
            .into_iter()
            .map(|(kind, day, r)| ((kind, day), r))
            .collect();
        assert!(Arc::ptr_eq(
            &again[&(0, end - 400)],
            &kept.days[&(0, end - 400)]
        ));

        // Another tiers config (a SIGHUP with a new `tiers:`) keeps
        // nothing: the days ranked by revenue are not handed to a history
        // ranked by gross profit. Nor do other accounts (a new master).
        let by_gp = TierConfig {
            by: TierBasis::GrossProfit,
            ..TierConfig::default()
        };
        let h = Arc::new(TierHistory::new(end, &by_gp, book.clone(), vec![None; 3]));
        kept.seed(&h, &by_gp, 7);
        let fresh = TierHistory::new(end, &by_gp, book.clone(), vec![None; 3]);
        assert!(kept.days.is_empty(), "nothing offered");
        assert_eq!(read(&h, 3, 60), read(&fresh, 3, 60));
        assert_eq!(kept.days(), KINDS);
        kept.seed(&history(end, &book), &by_gp, 8);
        assert_eq!(kept.days(), 0);
    }
}
