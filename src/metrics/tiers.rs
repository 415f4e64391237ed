//! Tiers: ranking the book into A/B/C by cumulative share of trailing-
//! 12-month revenue, gross profit, or both (`tiers.by`), and
//! `TierHistory`, the tiers of the days before a snapshot's, ranked on
//! first use. Only the master's active accounts are ranked, and the
//! shares are of their own totals: order lines of accounts missing from
//! the master (or inactive in it) move nobody's tier (the snapshot counts
//! them, and the evaluation warns). Touches nothing but the series it is
//! given.
//!
//! The conventions, one place for all three bases: largest first, equal
//! values in account order; an account is A while the accounts ranked
//! above it hold less than `a_share` of the total, so the account that
//! crosses the line is still A; B the same up to `b_share`; the rest C.
//! The total the shares are of is the sum over the accounts with a
//! positive value ([`ranking_total`]): an account whose value is zero or
//! negative (no sales in the 12 months, more returned than sold, selling
//! at a loss) is C, ranked below every account with a positive value, with
//! the whole book (1.0) above it, and does not lower the total, so the
//! cumulative shares of the others end at exactly 100%, never past it. A
//! book with no positive account ranks nobody into A or B. `both` is the lower of the two tiers (A only if A by revenue and
//! by gross profit), with the larger of the two shares above, so the pair
//! still reads "A while the share above is below the line".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use super::series::{Measure, Series};
use crate::config::{TierBasis, TierConfig};
use crate::model::Tier;
use crate::model::dates::Day;

/// How many days back the previous tier is computed.
pub const PREV_TIER_DAYS: i32 = 30;

/// How far back [`TierHistory`] answers, in days.
pub const TIER_HISTORY_DAYS: usize = 731;

/// An account's trailing-12-month gross profit (revenue - cost) up to `end`.
pub fn gross_profit_12m(s: &Series, end: Day) -> f64 {
    let (revenue, cost) = s.revenue_cost(end, 365);
    revenue - cost
}

/// The gross profit an account is ranked by: an account without revenue
/// in the 12 months is no key account, whatever a cost credit makes its
/// gross profit: it counts as none.
pub fn ranked_gross_profit(revenue_12m: f64, gross_profit_12m: f64) -> f64 {
    if revenue_12m > 0.0 {
        gross_profit_12m
    } else {
        0.0
    }
}

/// The book ranked on one day by the configured basis.
#[derive(Debug)]
pub struct Ranked {
    /// (trailing-12-month revenue, account index) in rank order: by the
    /// basis, largest first; ties by account index (the accounts are in id
    /// order, and the sorts are stable). For `both`, by the larger of the
    /// two shares above, ties in revenue order.
    pub order: Vec<(f64, usize)>,
    /// (tier, share above) of each place of `order`, by the basis, before
    /// the master's tier column.
    pub places: Vec<(Tier, f64)>,
    /// The ranked accounts' trailing-12-month revenue: the sum over those
    /// with positive revenue ([`ranking_total`]).
    pub total: f64,
    /// The 12-month revenue of the smallest account the revenue ranking
    /// puts in A, and in B (0 when the tier is empty), whatever the basis.
    pub floors: (f64, f64),
}

impl Ranked {
    /// Ranks the accounts with these revenues (by account index) and,
    /// for a basis other than revenue, these gross profits (the same
    /// length; a missing one counts as none).
    pub fn new(revenue: &[f64], gross_profit: Option<&[f64]>, tiers: &TierConfig) -> Ranked {
        let (rev_order, by_rev) = rank_one(revenue, tiers);
        let mut floors = (0.0, 0.0);
        for &i in &rev_order {
            match by_rev[i].0 {
                Tier::A => floors.0 = revenue[i],
                Tier::B => floors.1 = revenue[i],
                Tier::C => {}
            }
        }
        let gp = |gp: Option<&[f64]>| {
            let mut v = vec![0.0; revenue.len()];
            for ((x, g), r) in v.iter_mut().zip(gp.unwrap_or_default()).zip(revenue) {
                *x = ranked_gross_profit(*r, *g);
            }
            rank_one(&v, tiers)
        };
        let (order, by_index) = match tiers.by {
            TierBasis::Revenue => (rev_order, by_rev),
            TierBasis::GrossProfit => gp(gross_profit),
            TierBasis::Both => {
                let (_, by_gp) = gp(gross_profit);
                let both: Vec<(Tier, f64)> = by_rev
                    .iter()
                    .zip(&by_gp)
                    .map(|(r, g)| (r.0.max(g.0), r.1.max(g.1)))
                    .collect();
                let mut order = rev_order;
                order.sort_by(|a, b| both[*a].1.total_cmp(&both[*b].1));
                (order, both)
            }
        };
        let total = ranking_total(revenue);
        Ranked {
            places: order.iter().map(|&i| by_index[i]).collect(),
            order: order.into_iter().map(|i| (revenue[i], i)).collect(),
            total,
            floors,
        }
    }

    /// (tier, share above) of each of `n` accounts, by account index,
    /// before the master's tier column.
    pub fn by_index(&self, n: usize) -> Vec<(Tier, f64)> {
        let mut out = vec![(Tier::C, 1.0); n];
        for (p, (_, i)) in self.places.iter().zip(&self.order) {
            if let Some(slot) = out.get_mut(*i) {
                *slot = *p;
            }
        }
        out
    }
}

/// A total as a number to divide by: one that is not finite (the loads
/// hold only finite, bounded amounts) ranks nobody rather than making
/// every share NaN; -0.0 becomes 0.0.
fn finite(t: f64) -> f64 {
    if t.is_finite() { t + 0.0 } else { 0.0 }
}

/// The total a ranking's shares are of: the sum of the positive values
/// (an account at zero or below is C and lowers nobody's share), as a
/// number to divide by ([`finite`]).
pub fn ranking_total(values: &[f64]) -> f64 {
    finite(values.iter().filter(|v| **v > 0.0).sum())
}

/// One measure ranked: the account indexes in rank order, and (tier,
/// share above) by account index. An account at zero or below has the
/// whole book (1.0) above it.
fn rank_one(values: &[f64], tiers: &TierConfig) -> (Vec<usize>, Vec<(Tier, f64)>) {
    let total = ranking_total(values);
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|a, b| values[*b].total_cmp(&values[*a]));
    let sorted: Vec<f64> = order.iter().map(|&i| values[i]).collect();
    let assigned = assign_tiers(&sorted, total, tiers);
    let mut out = vec![(Tier::C, 1.0); values.len()];
    let mut above = 0.0;
    for ((&i, t), v) in order.iter().zip(assigned).zip(&sorted) {
        if total > 0.0 && *v > 0.0 {
            out[i] = (t, above);
            above += v / total;
        }
    }
    (order, out)
}

/// The tier and share above of every active account on the days before a
/// snapshot's, by the configured basis, each day ranked on first use from
/// the same series (at most once per snapshot: rules on every thread
/// share it); and the end day ranked by revenue and by gross profit alone.
/// Accounts are by their index in the timeline (id order).
pub struct TierHistory {
    end: Day,
    tiers: TierConfig,
    series: Vec<Series>,
    overrides: Vec<Option<Tier>>,
    /// By days ago: (tier, share above) by account index, the master's
    /// tier column applied.
    days: Days,
    /// By days ago, the book ranked by trailing-12-month revenue alone
    /// ([0]) and by gross profit alone ([1]), whatever the basis, on first
    /// use (no tier column).
    alone: [Days; 2],
    /// The end day's book by each measure alone ([`TierHistory::book_alone`]),
    /// on first use.
    alone_book: [std::sync::OnceLock<AloneBook>; 2],
}

/// The end day's book ranked by one measure alone: the ranked accounts'
/// total of that measure and the value of the smallest account in A and
/// in B (0 when the tier is empty).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AloneBook {
    pub total: f64,
    pub floor_a: f64,
    pub floor_b: f64,
}

/// One day's (tier, share above) by account index, shared with
/// `metrics::ranks` (which keeps it for the next snapshot).
pub(super) type DayRanks = Arc<Vec<(Tier, f64)>>;

/// One day of the history: ranked on first use (or set from the days kept
/// by `metrics::ranks`), and whether a rule read it.
#[derive(Default)]
struct Slot {
    ranked: OnceLock<DayRanks>,
    read: AtomicBool,
}

impl Slot {
    /// The day's ranking, made by `rank` on first use; marks it read.
    fn get(&self, rank: impl FnOnce() -> Vec<(Tier, f64)>) -> &DayRanks {
        // A load first: the flag's cache line stays shared between threads.
        if !self.read.load(Ordering::Relaxed) {
            self.read.store(true, Ordering::Relaxed);
        }
        self.ranked.get_or_init(|| Arc::new(rank()))
    }
}

/// By days ago: each day's slot.
type Days = Vec<Slot>;

/// The kinds of ranking a [`TierHistory`] holds, as `metrics::ranks`
/// keeps them: by the basis with the tier column, by revenue alone, by
/// gross profit alone.
pub(super) const KINDS: usize = 3;

impl std::fmt::Debug for TierHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TierHistory(end {}, {} accounts)",
            self.end,
            self.series.len()
        )
    }
}

impl TierHistory {
    /// A history ending at `end`, for accounts with these series and tier
    /// overrides (by account index).
    pub fn new(
        end: Day,
        tiers: &TierConfig,
        series: Vec<Series>,
        overrides: Vec<Option<Tier>>,
    ) -> TierHistory {
        let days = || (0..TIER_HISTORY_DAYS).map(|_| Slot::default()).collect();
        TierHistory {
            end,
            tiers: tiers.clone(),
            series,
            overrides,
            days: days(),
            alone: [days(), days()],
            alone_book: Default::default(),
        }
    }

    /// Account `i`'s (tier, share above) `days_ago` days before the end
    /// with the book ranked by one measure alone (`Revenue` or
    /// `GrossProfit`), with the same lines and no tier column; None beyond
    /// [`TIER_HISTORY_DAYS`] or for an unknown account.
    pub fn alone_at(&self, by: TierBasis, i: usize, days_ago: i64) -> Option<(Tier, f64)> {
        let k = usize::try_from(days_ago).ok()?;
        self.alone_day(by, k)?.get(i).copied()
    }

    /// Every account's (tier, share above) `k` days before the end with
    /// the book ranked by one measure alone, ranked on first use.
    fn alone_day(&self, by: TierBasis, k: usize) -> Option<&Vec<(Tier, f64)>> {
        let slot = self.alone[usize::from(by != TierBasis::Revenue)].get(k)?;
        let by = alone_measure(by);
        Some(slot.get(|| {
            let tiers = TierConfig {
                by,
                ..self.tiers.clone()
            };
            let (revenue, gp) = self.values(self.end - k as i32, by);
            Ranked::new(&revenue, gp.as_deref(), &tiers).by_index(self.series.len())
        }))
    }

    /// The end day's book ranked by revenue alone (`Revenue`) or gross
    /// profit alone (the others): the ranked accounts' total of that
    /// measure, as the shares are of it, and the value of the smallest
    /// account that ranking puts in A and in B. An account with more than
    /// a floor ranks into its tier, the others held as they are.
    pub fn book_alone(&self, by: TierBasis) -> AloneBook {
        let slot = &self.alone_book[usize::from(by != TierBasis::Revenue)];
        *slot.get_or_init(|| {
            let by = alone_measure(by);
            let Some(tiers) = self.alone_day(by, 0) else {
                return AloneBook::default();
            };
            let (revenue, gp) = self.values(self.end, by);
            let values: Vec<f64> = match gp {
                Some(gp) => gp
                    .iter()
                    .zip(&revenue)
                    .map(|(g, r)| ranked_gross_profit(*r, *g))
                    .collect(),
                None => revenue,
            };
            let mut book = AloneBook {
                total: ranking_total(&values),
                floor_a: f64::INFINITY,
                floor_b: f64::INFINITY,
            };
            for ((t, _), v) in tiers.iter().zip(&values) {
                match t {
                    Tier::A => book.floor_a = book.floor_a.min(*v),
                    Tier::B => book.floor_b = book.floor_b.min(*v),
                    Tier::C => {}
                }
            }
            for f in [&mut book.floor_a, &mut book.floor_b] {
                if !f.is_finite() {
                    *f = 0.0;
                }
            }
            book
        })
    }

    /// Each account's trailing-12-month revenue on `day`, and its gross
    /// profit when `by` needs it.
    fn values(&self, day: Day, by: TierBasis) -> (Vec<f64>, Option<Vec<f64>>) {
        let revenue = self
            .series
            .iter()
            .map(|s| s.sum(Measure::Revenue, day, 365))
            .collect();
        let gp = (by != TierBasis::Revenue).then(|| {
            self.series
                .iter()
                .map(|s| gross_profit_12m(s, day))
                .collect()
        });
        (revenue, gp)
    }

    /// Account `i`'s (tier, share above) at the end day with the book
    /// ranked by trailing-12-month revenue alone, the master's tier column
    /// not applied. None for an unknown account.
    pub fn by_revenue(&self, i: usize) -> Option<(Tier, f64)> {
        self.alone_at(TierBasis::Revenue, i, 0)
    }

    /// Account `i`'s (tier, share above) at the end day with the book
    /// ranked by trailing-12-month gross profit (revenue - cost) alone; an
    /// account without gross profit is C. The master's tier column does
    /// not apply. None for an unknown account.
    pub fn by_gross_profit(&self, i: usize) -> Option<(Tier, f64)> {
        self.alone_at(TierBasis::GrossProfit, i, 0)
    }

    /// Sets a day already ranked (`days_ago`: (tier, share above) by
    /// account index); a day already set keeps its value.
    pub fn seed(&self, days_ago: usize, ranked: Vec<(Tier, f64)>) {
        if let Some(slot) = self.days.get(days_ago) {
            let _ = slot.ranked.set(Arc::new(ranked));
        }
    }

    /// The last day of the history.
    pub(super) fn end(&self) -> Day {
        self.end
    }

    /// Sets day `day`'s ranking of `kind` (see [`KINDS`]) to one kept from
    /// an earlier snapshot of the same accounts, ranked the same way; a
    /// day outside the history, or already set, is left as it is.
    pub(super) fn offer(&self, kind: usize, day: Day, ranked: DayRanks) {
        let slot = usize::try_from(self.end - day)
            .ok()
            .and_then(|k| self.slots(kind)?.get(k));
        if let Some(slot) = slot {
            let _ = slot.ranked.set(ranked);
        }
    }

    /// The days of each kind a rule read, ranked: (kind, day, ranking).
    pub(super) fn read_days(&self) -> Vec<(usize, Day, DayRanks)> {
        let mut out = Vec::new();
        for kind in 0..KINDS {
            for (k, slot) in self.slots(kind).into_iter().flatten().enumerate() {
                if let Some(r) = slot.ranked.get()
                    && slot.read.load(Ordering::Relaxed)
                {
                    out.push((kind, self.end - k as i32, r.clone()));
                }
            }
        }
        out
    }

    fn slots(&self, kind: usize) -> Option<&Days> {
        match kind {
            0 => Some(&self.days),
            k => self.alone.get(k - 1),
        }
    }

    /// Account `i`'s (tier, share above) `days_ago` days before the end,
    /// by the configured basis; None beyond [`TIER_HISTORY_DAYS`] or for
    /// an unknown account.
    pub fn at(&self, i: usize, days_ago: i64) -> Option<(Tier, f64)> {
        let k = usize::try_from(days_ago).ok()?;
        let slot = self.days.get(k)?;
        let day = self.end - k as i32;
        slot.get(|| {
            let (revenue, gp) = self.values(day, self.tiers.by);
            let mut out =
                Ranked::new(&revenue, gp.as_deref(), &self.tiers).by_index(self.series.len());
            for (t, o) in out.iter_mut().zip(&self.overrides) {
                if let Some(o) = o {
                    t.0 = *o;
                }
            }
            out
        })
        .get(i)
        .copied()
    }
}

/// The measure a ranking "alone" is by: `Both` is gross profit (revenue
/// is asked for as `Revenue`).
fn alone_measure(by: TierBasis) -> TierBasis {
    if by == TierBasis::Both {
        TierBasis::GrossProfit
    } else {
        by
    }
}

/// Tiers and shares above by account, from each account's trailing-12-
/// month value (revenue or gross profit, in account order): largest
/// first, ties in account order, as the snapshot ranks.
pub fn rank_tiers(values: &[f64], tiers: &TierConfig) -> Vec<(Tier, f64)> {
    rank_one(values, tiers).1
}

/// Tiers for accounts sorted by value, largest first: cumulative share up
/// to `a_share` is A, up to `b_share` B, the rest (and anyone whose value
/// is zero or negative) C. The account that crosses a threshold still
/// belongs to the tier. `total` is [`ranking_total`] of the values (the
/// positive ones): a value at zero or below adds nothing to the share
/// above the next. A `total` that is not positive (no account sold
/// anything, or every one returned or lost more than it earned) ranks
/// everyone C: shares of it mean nothing.
pub fn assign_tiers(values: &[f64], total: f64, tiers: &TierConfig) -> Vec<Tier> {
    let mut cumulative = 0.0;
    values
        .iter()
        .map(|v| {
            if *v <= 0.0 || total <= 0.0 {
                return Tier::C;
            }
            let tier = if cumulative < tiers.a_share {
                Tier::A
            } else if cumulative < tiers.b_share {
                Tier::B
            } else {
                Tier::C
            };
            cumulative += v / total;
            tier
        })
        .collect()
}

/// How many ids of accounts missing from the master a snapshot names.
pub const UNLISTED_EXAMPLES: usize = 3;

/// The accounts with order lines that the customer master does not list:
/// their lines are kept (and in the book's daily totals), but they are not
/// ranked and their revenue is in no share, so they move nobody's tier.
/// By first order day, then id.
#[derive(Debug, Default)]
pub struct Unlisted {
    accounts: Vec<(Day, String, Series)>,
}

/// What a snapshot's day sees of [`Unlisted`].
#[derive(Debug, Default)]
pub struct UnlistedSeen {
    /// Accounts with an order on or before the day.
    pub accounts: usize,
    /// The first [`UNLISTED_EXAMPLES`] of them to order.
    pub examples: Vec<String>,
    /// Their trailing-12-month revenue.
    pub revenue_12m: f64,
}

impl Unlisted {
    /// From (id, order series) of the accounts missing from the master.
    pub fn of<'a>(orders: impl Iterator<Item = (&'a String, &'a Series)>) -> Unlisted {
        let mut accounts: Vec<(Day, String, Series)> = orders
            .filter_map(|(id, s)| Some((s.first_day()?, id.clone(), s.clone())))
            .collect();
        accounts.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Unlisted { accounts }
    }

    /// Those with an order on or before `end`.
    pub fn seen(&self, end: Day) -> UnlistedSeen {
        let n = self.accounts.partition_point(|a| a.0 <= end);
        let seen = &self.accounts[..n];
        UnlistedSeen {
            accounts: n,
            examples: seen
                .iter()
                .take(UNLISTED_EXAMPLES)
                .map(|a| a.1.clone())
                .collect(),
            revenue_12m: finite(
                seen.iter()
                    .map(|a| a.2.sum(Measure::Revenue, end, 365))
                    .sum(),
            ),
        }
    }
}

/// The master's tier column as stored: A, B or C in any case, spaces
/// around; anything else is no override.
pub(super) fn parse_tier(t: &str) -> Option<Tier> {
    Tier::parse(&t.trim().to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::dates::day;
    use crate::store::OrderDay;
    use chrono::NaiveDate;

    fn cfg(by: TierBasis) -> TierConfig {
        TierConfig {
            by,
            ..TierConfig::default()
        }
    }

    /// Tiers by account index, as letters.
    fn letters(r: &Ranked, n: usize) -> String {
        r.by_index(n).iter().map(|t| t.0.as_str()).collect()
    }

    /// (revenue, gross profit) of three accounts: by gross profit 0 is
    /// first, holding `gp0_cents` of 10,000 (so 1 sits exactly at the 80%
    /// line at 800,000 cents); by revenue 1 is first, holding exactly 80%
    /// (0 is B), and 2 is C either way.
    fn book(gp0_cents: i64) -> (Vec<f64>, Vec<f64>) {
        let gp0 = gp0_cents as f64 / 100.0;
        (
            vec![2_000.0, 10_000.0, 500.0],
            vec![gp0, 10_000.0 - gp0 - 500.0, 500.0],
        )
    }

    #[test]
    fn revenue_exactly_at_the_line_and_a_cent_either_side() {
        let tiers = cfg(TierBasis::Revenue);
        // X holds exactly 80% of 10,000: Y (above it: 80%) is B.
        for (x, y, want) in [
            (8_000.0, 1_500.0, "ABC"),
            (7_999.99, 1_500.01, "AAC"),
            (8_000.01, 1_499.99, "ABC"),
        ] {
            let r = Ranked::new(&[x, y, 500.0], None, &tiers);
            assert_eq!(letters(&r, 3), want, "X {x}, Y {y}");
            let above = r.by_index(3)[1].1;
            assert_eq!(above < 0.8, want == "AAC", "Y's share above {above}");
            assert_eq!(r.floors.0, if want == "AAC" { y } else { x });
        }
    }

    #[test]
    fn gross_profit_ranks_by_gross_profit_at_the_line() {
        let tiers = cfg(TierBasis::GrossProfit);
        for (cents, want) in [(800_000, "ABC"), (799_999, "AAC"), (800_001, "ABC")] {
            let (rev, gp) = book(cents);
            let r = Ranked::new(&rev, Some(&gp), &tiers);
            assert_eq!(letters(&r, 3), want, "gross profit of 0: {cents} cents");
            // The order is by gross profit, the revenue floor by revenue.
            assert_eq!(r.order.iter().map(|o| o.1).collect::<Vec<_>>(), [0, 1, 2]);
            assert_eq!(r.order[0].0, 2_000.0);
            assert_eq!(r.floors, (10_000.0, 2_000.0));
            // By revenue alone the same book is B, A, C.
            let by_rev = Ranked::new(&rev, Some(&gp), &cfg(TierBasis::Revenue));
            assert_eq!(letters(&by_rev, 3), "BAC");
        }
    }

    #[test]
    fn both_is_the_lower_tier_with_the_larger_share_above() {
        let (rev, gp) = book(800_000);
        let r = Ranked::new(&rev, Some(&gp), &cfg(TierBasis::Both));
        // 0: B by revenue, A by gross profit; 1: A by revenue, B by gross
        // profit (each exactly at the line); 2: C by both.
        assert_eq!(letters(&r, 3), "BBC");
        let by = r.by_index(3);
        assert_eq!(by[0].1, 0.8); // its revenue share above
        assert_eq!(by[1].1, 0.8); // its gross-profit share above
        // Listed by the larger share above, equal ones in revenue order.
        assert_eq!(r.order.iter().map(|o| o.1).collect::<Vec<_>>(), [1, 0, 2]);
        // A cent less gross profit above 1: A by both.
        let (rev, gp) = book(799_999);
        let r = Ranked::new(&rev, Some(&gp), &cfg(TierBasis::Both));
        assert_eq!(letters(&r, 3), "BAC");
        assert_eq!(r.order.iter().map(|o| o.1).collect::<Vec<_>>(), [1, 0, 2]);
    }

    #[test]
    fn no_revenue_zero_or_negative_gross_profit_is_c_below_everyone() {
        // 3 sold nothing in the 12 months, 2 sold at a loss, 1 at cost.
        let rev = [5_000.0, 4_000.0, 3_000.0, 0.0];
        let gp = [1_000.0, 0.0, -200.0, 0.0];
        for by in [TierBasis::Revenue, TierBasis::GrossProfit, TierBasis::Both] {
            let r = Ranked::new(&rev, Some(&gp), &cfg(by));
            let t = r.by_index(4);
            assert_eq!(t[3].0, Tier::C, "{by}");
            assert!(t[3].1 >= 0.8 + 0.02, "{by}: {t:?}");
            // Nothing positive ranks below an account without sales.
            let place = |i| r.order.iter().position(|o| o.1 == i);
            assert!(place(3) > place(0) && place(3) > place(1), "{by}");
            if by != TierBasis::Revenue {
                assert!(place(2) > place(0), "{by}: at a loss below a profit");
                assert_eq!(letters(&r, 4), "ACCC", "{by}");
                // Zero or negative: still at least the whole book above.
                assert!(t[1].1 >= 1.0 && t[2].1 >= 1.0, "{by}: {t:?}");
            }
        }
        // A book with no account at a positive gross profit ranks nobody
        // into A.
        let r = Ranked::new(
            &rev,
            Some(&[-100.0, -300.0, 0.0, 0.0]),
            &cfg(TierBasis::GrossProfit),
        );
        assert_eq!(letters(&r, 4), "CCCC");
        assert!(r.by_index(4).iter().all(|t| t.1 == 1.0));
        // One positive account in a book that lost money overall is A:
        // the losses are not in the total.
        let r = Ranked::new(
            &rev,
            Some(&[100.0, -300.0, 0.0, 0.0]),
            &cfg(TierBasis::GrossProfit),
        );
        assert_eq!(letters(&r, 4), "ACCC");
        let r = Ranked::new(&[0.0, 0.0], None, &cfg(TierBasis::Revenue));
        assert_eq!(letters(&r, 2), "CC");
        assert_eq!(r.floors, (0.0, 0.0));
    }

    /// A net-negative account (more returned than sold) is C and not in
    /// the total: the others' shares are of the positive accounts alone,
    /// so they add up to exactly 100% and the line falls where it would
    /// without the returns (with them in the total, 0.79 + 0.21 of 1,000
    /// would be 0.878 of 900, and the second account B).
    #[test]
    fn a_net_negative_account_does_not_lower_the_total() {
        for by in [TierBasis::Revenue, TierBasis::GrossProfit, TierBasis::Both] {
            let rev = [790.0, 210.0, -100.0, 0.0];
            let gp = [790.0, 210.0, -100.0, 0.0];
            let r = Ranked::new(&rev, Some(&gp), &cfg(by));
            assert_eq!(letters(&r, 4), "AACC", "{by}");
            assert_eq!(r.total, 1_000.0, "{by}");
            let t = r.by_index(4);
            assert_eq!((t[0].1, t[1].1), (0.0, 0.79), "{by}: {t:?}");
            assert_eq!((t[2].1, t[3].1), (1.0, 1.0), "{by}: the whole book above");
            assert_eq!(r.floors, (210.0, 0.0), "{by}");
        }
        // Only the gross profit is negative: revenue ranks as before, the
        // gross-profit total leaves the loss out.
        let rev = [790.0, 210.0, 100.0];
        let gp = [79.0, 21.0, -50.0];
        let r = Ranked::new(&rev, Some(&gp), &cfg(TierBasis::GrossProfit));
        assert_eq!(letters(&r, 3), "AAC");
        assert_eq!(r.by_index(3)[1].1, 0.79);
        assert_eq!(ranking_total(&gp), 100.0);
        assert_eq!(ranking_total(&[-1.0, 0.0, -0.0]), 0.0);
    }

    /// A cost credit with no sales (revenue 0, cost -20,000) is gross
    /// profit on paper: it must not make an account A by gross profit and
    /// push the real customers down.
    #[test]
    fn gross_profit_without_revenue_ranks_nobody() {
        let rev = [10_000.0, 0.0, 2_000.0];
        let gp = [3_000.0, 20_000.0, 500.0];
        for by in [TierBasis::GrossProfit, TierBasis::Both] {
            let r = Ranked::new(&rev, Some(&gp), &cfg(by));
            let t = r.by_index(3);
            assert_eq!(t[0].0, Tier::A, "{by}: {t:?}");
            assert_eq!(t[1].0, Tier::C, "{by}: {t:?}");
            assert_eq!(t[0].1, 0.0, "{by}: nobody above the real customer");
        }
    }

    #[test]
    fn equal_values_rank_in_account_order() {
        let r = Ranked::new(
            &[100.0, 300.0, 300.0, 300.0],
            None,
            &cfg(TierBasis::Revenue),
        );
        assert_eq!(
            r.order.iter().map(|o| o.1).collect::<Vec<_>>(),
            [1, 2, 3, 0]
        );
        assert_eq!(letters(&r, 4), "BAAA");
    }

    fn series(lines: &[(&str, f64, f64)]) -> Series {
        let mut s = Series::default();
        for (date, revenue, cost) in lines {
            s.push(&OrderDay {
                date: NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap(),
                revenue: *revenue,
                cost: *cost,
                qty: 1.0,
                orders: 1,
            });
        }
        s
    }

    /// The history ranks each day by the basis, from the series' last 365
    /// days; the rankings by one measure alone ignore the tier column.
    #[test]
    fn the_book_alone_gives_each_measures_total_and_floors() {
        let end = day(NaiveDate::from_ymd_opt(2026, 6, 30).unwrap());
        // Gross profit 8,000, 1,000, 500, and a cost credit without
        // revenue (counts none); revenue 10,000, 5,000, 3,000, 0.
        let s = vec![
            series(&[("2026-03-01", 10_000.0, 2_000.0)]),
            series(&[("2026-03-01", 5_000.0, 4_000.0)]),
            series(&[("2026-03-01", 3_000.0, 2_500.0)]),
            series(&[("2026-03-01", 0.0, -300.0)]),
            // A loss lowers neither total (the ranking's, of positive values).
            series(&[("2026-03-01", -100.0, 400.0)]),
        ];
        for by in [TierBasis::Revenue, TierBasis::GrossProfit, TierBasis::Both] {
            // The master's tier column changes neither.
            let h = TierHistory::new(end, &cfg(by), s.clone(), vec![Some(Tier::C); 5]);
            let gp = h.book_alone(TierBasis::GrossProfit);
            // 8,000 of 9,500 crosses 80%: A; then 84% and 95% above: B.
            assert_eq!(
                (gp.total, gp.floor_a, gp.floor_b),
                (9_500.0, 8_000.0, 500.0),
                "{by}"
            );
            assert_eq!(h.book_alone(TierBasis::Both), gp, "{by}");
            let rev = h.book_alone(TierBasis::Revenue);
            assert_eq!(
                (rev.total, rev.floor_a, rev.floor_b),
                (18_000.0, 5_000.0, 3_000.0),
                "{by}"
            );
            let ranked = Ranked::new(
                &[10_000.0, 5_000.0, 3_000.0, 0.0],
                None,
                &cfg(TierBasis::Revenue),
            );
            assert_eq!(ranked.floors, (rev.floor_a, rev.floor_b));
        }
        // A tier nobody is in has the floor 0.
        let h = TierHistory::new(end, &cfg(TierBasis::Revenue), vec![series(&[])], vec![None]);
        assert_eq!(h.book_alone(TierBasis::GrossProfit), AloneBook::default());
    }

    #[test]
    fn history_ranks_each_day_by_the_basis() {
        let end = day(NaiveDate::from_ymd_opt(2026, 6, 30).unwrap());
        // 0 big and thin; 1 smaller with the profit; 2's order is 366
        // days old on the end day, 364 days old 2 days before.
        let s = vec![
            series(&[("2026-03-01", 10_000.0, 9_500.0)]),
            series(&[("2026-03-01", 2_000.0, 0.0)]),
            series(&[("2025-06-29", 50_000.0, 0.0)]),
        ];
        let overrides = vec![None, None, Some(Tier::B)];
        for (by, now, two_days_ago) in [
            (TierBasis::Revenue, "ABB", "BCB"),
            (TierBasis::GrossProfit, "BAB", "CCB"),
            (TierBasis::Both, "BBB", "CCB"),
        ] {
            let h = TierHistory::new(end, &cfg(by), s.clone(), overrides.clone());
            let at = |k| {
                (0..3)
                    .map(|i| h.at(i, k).unwrap().0.as_str())
                    .collect::<String>()
            };
            assert_eq!(at(0), now, "{by}");
            assert_eq!(at(2), two_days_ago, "{by}");
            assert_eq!(h.by_revenue(0).map(|t| t.0), Some(Tier::A), "{by}");
            assert_eq!(h.by_revenue(2).map(|t| t.0), Some(Tier::C), "{by}");
            assert_eq!(h.by_gross_profit(0).map(|t| t.0), Some(Tier::B), "{by}");
            assert_eq!(h.by_gross_profit(1).map(|t| t.0), Some(Tier::A), "{by}");
            // Two days ago 2's order was in the window: A by revenue alone.
            assert_eq!(
                h.alone_at(TierBasis::Revenue, 2, 2).map(|t| t.0),
                Some(Tier::A)
            );
            assert_eq!(
                h.alone_at(TierBasis::GrossProfit, 2, 2).map(|t| t.0),
                Some(Tier::A)
            );
            assert_eq!(
                h.alone_at(TierBasis::GrossProfit, 0, 2).map(|t| t.0),
                Some(Tier::C)
            );
            assert_eq!(h.at(3, 0), None);
            assert_eq!(h.at(0, TIER_HISTORY_DAYS as i64), None);
        }
    }

    #[test]
    fn unlisted_accounts_are_counted_from_their_first_order() {
        let a = series(&[("2026-03-01", 100.0, 0.0), ("2026-05-01", 50.0, 0.0)]);
        let b = series(&[("2026-04-01", 30.0, 0.0)]);
        let ids = ["KH9".to_string(), "KH8".to_string()];
        let u = Unlisted::of([(&ids[0], &a), (&ids[1], &b)].into_iter());
        let at = |s: &str| u.seen(day(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()));
        assert_eq!(at("2026-02-28").accounts, 0);
        let march = at("2026-03-31");
        assert_eq!(
            (march.accounts, march.examples.clone()),
            (1, vec!["KH9".into()])
        );
        assert_eq!(march.revenue_12m, 100.0);
        let june = at("2026-06-30");
        assert_eq!(june.examples, ["KH9", "KH8"]);
        assert_eq!(june.revenue_12m, 180.0);
    }
}
