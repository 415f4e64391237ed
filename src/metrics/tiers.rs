//! Tiers: ranking the book into A/B/C by cumulative share of trailing-
//! 12-month revenue, gross profit, or both (`tiers.by`), and
//! `TierHistory`, the tiers of the days before a snapshot's, ranked on
//! first use or ahead of it on two threads (`TierHistory::warm`, each
//! day's 12-month values summed once for all its rankings). Only the master's active accounts are ranked, and the
//! shares are of their own totals: order lines of accounts missing from
//! the master (or inactive in it) move nobody's tier and are in no figure
//! of the book (the snapshot counts them, and the evaluation warns). Touches nothing but the series it is
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
use std::time::{Duration, Instant};

use super::series::{Measure, Series, ahead};
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
            rank_one(ranked_gross_profits(revenue, gp, &mut Vec::new()), tiers)
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
    let mut sum = Sum::default();
    for v in values.iter().filter(|v| **v > 0.0) {
        sum.add(*v);
    }
    finite(sum.value())
}

/// A running sum that keeps what each addition rounded away (Neumaier's
/// compensated sum): the sum of amounts in cents comes out as the nearest
/// number to the exact one, so twenty accounts of 0.05 hold exactly 1.0
/// and sixteen of them exactly 0.8 of it. An overflow reads as NaN.
#[derive(Debug, Default, Clone, Copy)]
struct Sum {
    sum: f64,
    lost: f64,
}

impl Sum {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        self.lost += if self.sum.abs() >= x.abs() {
            (self.sum - t) + x
        } else {
            (x - t) + self.sum
        };
        self.sum = t;
    }

    fn value(self) -> f64 {
        self.sum + self.lost
    }
}

/// One measure ranked: the account indexes in rank order, and (tier,
/// share above) by account index. An account at zero or below has the
/// whole book (1.0) above it.
fn rank_one(values: &[f64], tiers: &TierConfig) -> (Vec<usize>, Vec<(Tier, f64)>) {
    let total = ranking_total(values);
    // Largest first by `total_cmp`, ties in index order.
    let mut s = Sorting::default();
    s.keys
        .extend(values.iter().zip(0u32..).map(|(v, i)| sort_key(*v, i)));
    s.sort();
    let order: Vec<usize> = s.keys.iter().map(|k| *k as u32 as usize).collect();
    let sorted: Vec<f64> = order.iter().map(|&i| values[i]).collect();
    let mut out = vec![(Tier::C, 1.0); values.len()];
    for (&i, place) in order.iter().zip(shares_above(&sorted, total)) {
        if let Some(above) = place {
            let above = at_a_line(above, tiers);
            out[i] = (tier_of(above, tiers), above);
        }
    }
    (order, out)
}

/// Buffers one thread reuses from one day's ranking to the next: the sort
/// keys and their buckets (at 100,000 accounts 3.4 MiB) and the gross
/// profits ranked (0.8 MiB). Fresh ones each day were a fresh mapping, its
/// pages faulted in and zeroed again, for each of the 160 or more rankings
/// after a re-export.
#[derive(Default)]
pub(super) struct Scratch {
    sorting: Sorting,
    gp: Vec<f64>,
}

/// [`rank_one`]'s shares above by account index, to the bit, from a sort
/// of the accounts that take a share alone (those above zero, and NaN as
/// `shares_above` counts it) by a packed key: the same order (largest
/// first by `total_cmp`, ties by index), the others at 1.0; and the book of
/// that ranking ([`AloneBook::of`] gives the same, in another pass). The
/// keys are sorted in `s`.
fn shares_by_index(values: &[f64], tiers: &TierConfig, s: &mut Sorting) -> (Vec<f64>, AloneBook) {
    let total = ranking_total(values);
    let mut out = vec![1.0; values.len()];
    let mut book = AloneBook::empty(total);
    if total <= 0.0 {
        return (out, book.finished());
    }
    s.keys.clear();
    s.keys.extend(
        values
            .iter()
            .zip(0u32..)
            .filter(|(v, _)| **v > 0.0 || v.is_nan())
            .map(|(v, i)| sort_key(*v, i)),
    );
    s.sort();
    let lines = [tiers.a_share, tiers.b_share];
    let mut above = Sum::default();
    for k in s.keys.iter() {
        let i = *k as u32 as usize;
        let v = values[i];
        let share = at_a_line(above.value() / total, tiers);
        out[i] = share;
        // The others, at 1.0, are C (b_share is at most 1).
        book.count(tier_at(share, lines), v);
        above.add(v);
    }
    (out, book.finished())
}

/// The sort key of value `v` of account `i`: `f64::total_cmp`'s order as
/// an unsigned number, turned around so the largest value comes first,
/// above the account index. Sorted, the keys are in rank order: largest
/// first, ties in index order.
fn sort_key(v: f64, i: u32) -> u128 {
    let b = v.to_bits() as i64;
    let ordered = (b ^ ((((b >> 63) as u64) >> 1) as i64)) as u64 ^ (1 << 63);
    (u128::from(!ordered) << 32) | u128::from(i)
}

/// Sort keys as [`sort_key`] makes them (a 64-bit key above an
/// account index in the low 32 bits; the top 32 bits 0), and the buffers
/// their sort reuses.
#[derive(Default)]
struct Sorting {
    keys: Vec<u128>,
    into: Vec<u128>,
    ends: Vec<u32>,
}

impl Sorting {
    /// Sorts `keys`: each into a bucket by its key's top 64 bits (about
    /// two keys a bucket, the buckets' ranges of equal width between the
    /// least and the greatest key), in the order of the buckets, then each
    /// bucket of more than one on its own. The same order as sorting them
    /// whole, in 1.2 ms instead of 2.0 (100,000 accounts' 12-month revenue);
    /// keys bunched in one bucket are sorted as a whole would be.
    fn sort(&mut self) {
        let keys = &self.keys;
        let m = keys.len();
        if m < 64 {
            self.keys.sort_unstable();
            return;
        }
        let top = |k: u128| (k >> 32) as u64;
        let (lo, hi) = keys.iter().fold((u64::MAX, 0), |(lo, hi), k| {
            (lo.min(top(*k)), hi.max(top(*k)))
        });
        let bits = (m / 2).next_power_of_two().trailing_zeros();
        let shift = (u64::BITS - (hi - lo).leading_zeros()).saturating_sub(bits);
        let bucket = |k: u128| ((top(k) - lo) >> shift) as usize;
        let buckets = ((hi - lo) >> shift) as usize + 1;
        // ends[b + 1]: how many in bucket b; then where each begins.
        let ends = &mut self.ends;
        ends.clear();
        ends.resize(buckets + 1, 0);
        for k in keys {
            ends[bucket(*k) + 1] += 1;
        }
        for b in 1..=buckets {
            ends[b] += ends[b - 1];
        }
        self.into.clear();
        self.into.resize(m, 0);
        // After this, ends[b] is where bucket b ends.
        for k in keys {
            let at = &mut ends[bucket(*k)];
            self.into[*at as usize] = *k;
            *at += 1;
        }
        let mut start = 0;
        for end in &ends[..buckets] {
            let end = *end as usize;
            if end - start > 1 {
                self.into[start..end].sort_unstable();
            }
            start = end;
        }
        std::mem::swap(&mut self.keys, &mut self.into);
    }
}

/// Each account's gross profit as a ranking takes it
/// ([`ranked_gross_profit`] of its revenue and, where `gp` has one, gross
/// profit; none counts as 0), into `out`, by account index.
fn ranked_gross_profits<'a>(
    revenue: &[f64],
    gp: Option<&[f64]>,
    out: &'a mut Vec<f64>,
) -> &'a [f64] {
    out.clear();
    out.resize(revenue.len(), 0.0);
    for ((x, g), r) in out.iter_mut().zip(gp.unwrap_or_default()).zip(revenue) {
        *x = ranked_gross_profit(*r, *g);
    }
    out
}

/// The share above each of the values sorted largest first: the sum of
/// the values above it ([`Sum`]) divided once by `total` (summing each
/// one's share instead gathers rounding, so ten accounts of 8% would leave
/// the next at 79.99999999999999%, A, where exactly 80% above is B). None
/// for a value at zero or below, or any value when `total` is not
/// positive.
fn shares_above(sorted: &[f64], total: f64) -> impl Iterator<Item = Option<f64>> + '_ {
    let mut above = Sum::default();
    sorted.iter().map(move |v| {
        if *v <= 0.0 || total <= 0.0 {
            return None;
        }
        let share = above.value() / total;
        above.add(*v);
        Some(share)
    })
}

/// How close to a line a share above counts as at it: a trillionth of
/// the book, far below a cent of any book's total under 10 billion and
/// far above binary rounding (three accounts of 33,169.32, 31,079.36 and
/// 16,062.17 put exactly 80% above the third, which divides out as
/// 0.7999999999999999).
const AT_THE_LINE: f64 = 1e-12;

/// A share above within [`AT_THE_LINE`] of a line is the line itself, so
/// a rule comparing `share_above` with `tiers.a_share` sees what the
/// ranking decided (exactly 0.8, not 0.7999999999999999).
fn at_a_line(share_above: f64, tiers: &TierConfig) -> f64 {
    [tiers.a_share, tiers.b_share]
        .into_iter()
        .find(|line| (share_above - line).abs() < AT_THE_LINE)
        .unwrap_or(share_above)
}

/// The tier of an account with `share_above` of the total above it: A
/// while it is below `a_share` (the account that crosses the line is A),
/// B below `b_share`, else C; a share within [`AT_THE_LINE`] of a line is
/// at it.
fn tier_of(share_above: f64, tiers: &TierConfig) -> Tier {
    tier_at(share_above, [tiers.a_share, tiers.b_share])
}

/// [`tier_of`] with the lines `[a_share, b_share]`.
fn tier_at(share_above: f64, [a_share, b_share]: [f64; 2]) -> Tier {
    if share_above < a_share - AT_THE_LINE {
        Tier::A
    } else if share_above < b_share - AT_THE_LINE {
        Tier::B
    } else {
        Tier::C
    }
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
    /// Whether the ranking by revenue alone is the basis's own: the basis
    /// is revenue and no master tier column overrides it (decided once:
    /// every read of a ranking alone asks).
    revenue_is_basis: bool,
    /// By days ago: (tier, share above) by account index, the master's
    /// tier column applied.
    days: Days,
    /// By days ago, the book ranked by trailing-12-month revenue alone
    /// ([0]) and by gross profit alone ([1]), whatever the basis, on first
    /// use (no tier column).
    alone: [Days; 2],
}

/// A day's book ranked by one measure alone: the ranked accounts'
/// total of that measure and the value of the smallest account in A and
/// in B (0 when the tier is empty).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AloneBook {
    pub total: f64,
    pub floor_a: f64,
    pub floor_b: f64,
}

impl AloneBook {
    /// The book of `ranked`, a ranking by one measure alone, from the
    /// values it was ranked from (the 12-month revenue, or the gross
    /// profits [`ranked_gross_profits`] gives), by account index.
    fn of(ranked: &DayRanking, values: &[f64]) -> AloneBook {
        let mut book = AloneBook::empty(ranking_total(values));
        for (t, v) in ranked.tiers().zip(values) {
            book.count(t, *v);
        }
        book.finished()
    }

    /// A book of `total` with no account counted yet.
    fn empty(total: f64) -> AloneBook {
        AloneBook {
            total,
            floor_a: f64::INFINITY,
            floor_b: f64::INFINITY,
        }
    }

    /// Counts an account of tier `t` with value `v` (in any order).
    fn count(&mut self, t: Tier, v: f64) {
        match t {
            Tier::A => self.floor_a = self.floor_a.min(v),
            Tier::B => self.floor_b = self.floor_b.min(v),
            Tier::C => {}
        }
    }

    /// The book once every account is counted: an empty tier's floor 0.
    fn finished(mut self) -> AloneBook {
        for f in [&mut self.floor_a, &mut self.floor_b] {
            if !f.is_finite() {
                *f = 0.0;
            }
        }
        self
    }
}

/// A day a rule will read of a [`TierHistory`] ([`TierHistory::warm`]):
/// `days_ago`; its ranking by the basis (`ranking` None) or by one
/// measure alone (`Revenue`, else gross profit), for one alone, whether
/// its book is read too, and whether a share beyond those held near the
/// line is read (the day is then kept with every share, ranked once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub ranking: Option<TierBasis>,
    pub days_ago: i64,
    pub book: bool,
    pub shares: bool,
}

/// One day's (tier, share above) by account index, shared with
/// `metrics::ranks` (which keeps it for the next snapshot).
pub(super) type DayRanks = Arc<DayRanking>;

/// One day's (tier, share above) by account index, before the master's
/// tier column, held as what the rules read of it: each account's tier
/// (two bits), and the share above only of the accounts just under the A
/// line, where `a_line_state` reads it ([`DayRanking::line_share`]). The
/// whole day's shares (8 bytes an account) are made on the first read of
/// another account's share ([`DayRanking::share`]): ranked again from the
/// same values, to the bit. The daemon keeps the days its rules read, at
/// 100,000 accounts about 150 days: 25 KiB a day instead of 0.8 MiB
/// (tier_movement reads a share of an earlier day only there).
#[derive(Debug)]
pub struct DayRanking {
    /// Each account's tier ([`tier_code`]), four to a byte.
    tiers: Box<[u8]>,
    /// How many accounts.
    len: usize,
    /// By account index, the share above of each account out of A whose
    /// share is below [`DayRanking::near_line`] of the ranking's book
    /// (for a ranking by one measure: its book is known when it is
    /// made); None for a ranking without its book, which reads every
    /// share from `full`.
    near: Option<Box<[(u32, f64)]>>,
    /// Every account's share above, by account index: made on first use
    /// of a share not in `near` (or given, for a day seeded whole).
    full: OnceLock<Box<[f64]>>,
    /// The config's lines (`a_share`, `b_share`) the tiers are of.
    lines: [f64; 2],
    /// For a ranking by one measure alone, that day's book
    /// ([`TierHistory::book_alone`]): made with the ranking, or on first
    /// use for a day kept from an earlier snapshot without it. A function of
    /// the same values as the ranking, so it is kept (`metrics::ranks`) and
    /// dropped with it, and a snapshot after a small drop does not sum
    /// every account's 12 months again for a day its lines did not move.
    book: OnceLock<AloneBook>,
}

/// Where an account's share above puts it for `a_line_state`, out of A
/// ([`DayRanking::line_share`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LineShare {
    /// The share above, to the bit.
    Share(f64),
    /// So far above the A line (at least [`DayRanking::near_line`] of
    /// the ranking's book) that the accounts above could fall under the
    /// line only with the account growing past the floor of A: growth to
    /// the floor is the smaller of the two ways into A, whatever the
    /// share, for an account with a positive value.
    Beyond,
}

/// An account's tier as two bits.
fn tier_code(t: Tier) -> u8 {
    match t {
        Tier::A => 0,
        Tier::B => 1,
        Tier::C => 2,
    }
}

impl PartialEq for DayRanking {
    /// The same tiers and shares under the same lines (the book alone
    /// follows from them and the day's values): compared as held, and by
    /// every share where both hold them all.
    fn eq(&self, other: &Self) -> bool {
        let full = match (self.full.get(), other.full.get()) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.lines == other.lines
            && self.len == other.len
            && self.tiers == other.tiers
            && self.near == other.near
            && full
    }
}

impl DayRanking {
    /// The ranking of `pairs`, (tier, share above) by account index as
    /// [`Ranked::by_index`] gives them under `tiers`' lines, held whole.
    fn of(pairs: Vec<(Tier, f64)>, tiers: &TierConfig) -> DayRanking {
        let lines = [tiers.a_share, tiers.b_share];
        debug_assert!(
            pairs.iter().all(|(t, s)| *t == tier_at(*s, lines)),
            "a tier that is not its share's"
        );
        let shares: Box<[f64]> = pairs.into_iter().map(|p| p.1).collect();
        let day = DayRanking::held(&shares, lines, None);
        let _ = day.full.set(shares);
        day
    }

    /// The book ranked by `tiers` from each account's 12-month revenue
    /// and gross profit (by account index): the shares
    /// [`Ranked::new`]`(..).by_index(..)` gives, to the bit, held as the
    /// tiers and the shares near the A line ([`DayRanking`]), without the
    /// order, places and floors [`Ranked`] keeps beside them (a day of the
    /// tier history is ranked again for each of about 150 days after a
    /// re-export). `s` holds the buffers the ranking reuses; `keep`: every
    /// share is kept too (the rules read them).
    fn ranked(
        revenue: &[f64],
        gp: Option<&[f64]>,
        tiers: &TierConfig,
        s: &mut Scratch,
        keep: bool,
    ) -> DayRanking {
        let (shares, book) = day_shares(revenue, gp, tiers, s);
        let day = DayRanking::held(&shares, [tiers.a_share, tiers.b_share], book);
        if let Some(book) = book {
            let _ = day.book.set(book);
        }
        if keep {
            let _ = day.full.set(shares.into_boxed_slice());
        }
        day
    }

    /// The tiers of `shares` under `lines`, and for a ranking by one
    /// measure with its `book` under an A line above 0, the shares near
    /// the A line.
    fn held(shares: &[f64], lines: [f64; 2], book: Option<AloneBook>) -> DayRanking {
        let mut tiers = vec![0u8; shares.len().div_ceil(4)];
        for (i, s) in shares.iter().enumerate() {
            tiers[i / 4] |= tier_code(tier_at(*s, lines)) << (2 * (i % 4));
        }
        // (A line at 0 divides by nothing: every share is read there.)
        let near = book.filter(|_| lines[0] > 0.0).map(|book| {
            let line = DayRanking::near_line(lines[0], book);
            shares
                .iter()
                .zip(0u32..)
                .filter(|(s, _)| {
                    // Below the line's reach, or incomparable (NaN).
                    use std::cmp::Ordering::{Equal, Greater};
                    let beyond = matches!(s.partial_cmp(&&line), Some(Greater | Equal));
                    tier_at(**s, lines) != Tier::A && !beyond
                })
                .map(|(s, i)| (i, *s))
                .collect()
        });
        DayRanking {
            tiers: tiers.into_boxed_slice(),
            len: shares.len(),
            near,
            full: OnceLock::new(),
            lines,
            book: OnceLock::new(),
        }
    }

    /// The share above from which an account out of A is
    /// [`LineShare::Beyond`] in a ranking by one measure with `book`,
    /// under the A line `a_share`: the accounts above it hold the line
    /// plus the line's part of the floor of A (the growth to the floor of
    /// an account with a positive value is then less than the growth that
    /// makes the accounts above fall under the line, `total x (share -
    /// line) / line`), with a billionth more for rounding. A book without
    /// a positive total: the line itself (every share is 1.0 there, and
    /// no account has a positive value).
    fn near_line(a_share: f64, book: AloneBook) -> f64 {
        let reach = if book.total > 0.0 {
            a_share * book.floor_a / book.total
        } else {
            0.0
        };
        a_share + reach * (1.0 + 1e-9)
    }

    /// Account `i`'s tier, before the master's tier column.
    pub fn tier(&self, i: usize) -> Option<Tier> {
        if i >= self.len {
            return None;
        }
        Some(match (self.tiers[i / 4] >> (2 * (i % 4))) & 3 {
            0 => Tier::A,
            1 => Tier::B,
            _ => Tier::C,
        })
    }

    /// Account `i`'s share above: held near the line, else from every
    /// account's shares, made by `full` on first use (the shares of
    /// [`DayRanking::ranked`] from the same values).
    pub fn share(&self, i: usize, full: impl FnOnce() -> Vec<f64>) -> Option<f64> {
        if i >= self.len {
            return None;
        }
        if let Some(all) = self.full.get() {
            return all.get(i).copied();
        }
        if let Some(s) = self.near_share(i) {
            return Some(s);
        }
        self.full
            .get_or_init(|| full().into_boxed_slice())
            .get(i)
            .copied()
    }

    /// The share above held for account `i` near the line, if any.
    fn near_share(&self, i: usize) -> Option<f64> {
        let near = self.near.as_deref()?;
        let at = near.binary_search_by_key(&i, |n| n.0 as usize).ok()?;
        Some(near[at].1)
    }

    /// Account `i`'s share above as `a_line_state` reads it for an
    /// account out of A under the line `a_share`: the share, or
    /// [`LineShare::Beyond`] for an account this ranking puts out of A
    /// whose share is not held near the line (`full` as for
    /// [`DayRanking::share`]).
    pub fn line_share(
        &self,
        i: usize,
        a_share: f64,
        full: impl FnOnce() -> Vec<f64>,
    ) -> Option<LineShare> {
        let tier = self.tier(i)?;
        let held = self.near.is_some()
            && self.full.get().is_none()
            && a_share.to_bits() == self.lines[0].to_bits()
            && tier != Tier::A;
        if held {
            return Some(match self.near_share(i) {
                Some(s) => LineShare::Share(s),
                None => LineShare::Beyond,
            });
        }
        self.share(i, full).map(LineShare::Share)
    }

    /// Every account's tier, by account index.
    pub fn tiers(&self) -> impl Iterator<Item = Tier> + '_ {
        (0..self.len).map(|i| self.tier(i).unwrap_or(Tier::C))
    }
}

/// The shares above by account index of the book ranked by `tiers` from
/// each account's 12-month revenue and gross profit: the shares
/// [`Ranked::new`]`(..).by_index(..)` gives, to the bit, and for a
/// ranking by one measure its book. `s` holds the buffers the ranking
/// reuses.
fn day_shares(
    revenue: &[f64],
    gp: Option<&[f64]>,
    tiers: &TierConfig,
    s: &mut Scratch,
) -> (Vec<f64>, Option<AloneBook>) {
    let Scratch {
        sorting,
        gp: ranked,
    } = s;
    // A ranking by one measure is that measure's ranking alone: its
    // book comes with it.
    match tiers.by {
        TierBasis::Revenue => {
            let (shares, book) = shares_by_index(revenue, tiers, sorting);
            (shares, Some(book))
        }
        TierBasis::GrossProfit => {
            let gp = ranked_gross_profits(revenue, gp, ranked);
            let (shares, book) = shares_by_index(gp, tiers, sorting);
            (shares, Some(book))
        }
        TierBasis::Both => {
            let (mut both, _) = shares_by_index(revenue, tiers, sorting);
            let gp = ranked_gross_profits(revenue, gp, ranked);
            let (by_gp, _) = shares_by_index(gp, tiers, sorting);
            for (s, g) in both.iter_mut().zip(by_gp) {
                *s = s.max(g);
            }
            (both, None)
        }
    }
}

/// One day of the history: ranked on first use (or set from the days kept
/// by `metrics::ranks`), and whether a rule read it.
#[derive(Default)]
struct Slot {
    ranked: OnceLock<DayRanks>,
    read: AtomicBool,
}

impl Slot {
    /// The day's ranking, made by `rank` on first use; marks it read.
    fn get(&self, rank: impl FnOnce() -> DayRanking) -> &DayRanks {
        // A load first: the flag's cache line stays shared between threads.
        if !self.read.load(Ordering::Relaxed) {
            self.read.store(true, Ordering::Relaxed);
        }
        self.ranked.get_or_init(|| Arc::new(rank()))
    }
}

/// Every account's 12-month revenue on a day and, where a ranking needs
/// it, gross profit (by account index).
type Values = (Vec<f64>, Option<Vec<f64>>);

/// `v`'s gross profits for a ranking by `by` when it reads them.
fn gp_for(by: TierBasis, v: &Values) -> Option<&[f64]> {
    v.1.as_deref().filter(|_| by != TierBasis::Revenue)
}

/// A day [`TierHistory::warm`] ranks: days ago, the kinds wanted (see
/// [`KINDS`]), the books of the rankings alone wanted, and the kinds
/// whose every share is read.
type Warm = (usize, [bool; KINDS], [bool; 2], [bool; KINDS]);

/// Days [`TierHistory::warm`] sums in one pass over the accounts: at
/// 100,000 accounts 0.8 MiB a day and measure.
const WARM_BATCH: usize = 16;

/// `theirs` on a thread of its own beside `mine` on this one; what each
/// gave (`theirs` Err if it panicked).
fn on_two<A: Send, B>(
    theirs: impl FnOnce() -> A + Send,
    mine: impl FnOnce() -> B,
) -> (std::thread::Result<A>, B) {
    std::thread::scope(|s| {
        let other = s.spawn(theirs);
        let mine = mine();
        (other.join(), mine)
    })
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
            revenue_is_basis: tiers.by == TierBasis::Revenue
                && overrides.iter().all(Option::is_none),
            overrides,
            days: days(),
            alone: [days(), days()],
        }
    }

    /// Account `i`'s (tier, share above) `days_ago` days before the end
    /// with the book ranked by one measure alone (`Revenue` or
    /// `GrossProfit`), with the same lines and no tier column; None beyond
    /// [`TIER_HISTORY_DAYS`] or for an unknown account.
    pub fn alone_at(&self, by: TierBasis, i: usize, days_ago: i64) -> Option<(Tier, f64)> {
        let k = usize::try_from(days_ago).ok()?;
        let day = self.alone_day(by, k)?;
        let share = day.share(i, || self.full_shares(k, alone_measure(by)))?;
        Some((day.tier(i)?, share))
    }

    /// Account `i`'s tier of [`TierHistory::alone_at`], without its share.
    pub fn alone_tier(&self, by: TierBasis, i: usize, days_ago: i64) -> Option<Tier> {
        let k = usize::try_from(days_ago).ok()?;
        self.alone_day(by, k)?.tier(i)
    }

    /// Account `i`'s share above of [`TierHistory::alone_at`] as
    /// `a_line_state` reads it for an account out of A under the line
    /// `a_share` ([`DayRanking::line_share`]).
    pub fn alone_line_share(
        &self,
        by: TierBasis,
        i: usize,
        days_ago: i64,
        a_share: f64,
    ) -> Option<LineShare> {
        let k = usize::try_from(days_ago).ok()?;
        self.alone_day(by, k)?
            .line_share(i, a_share, || self.full_shares(k, alone_measure(by)))
    }

    /// Every account's share above `k` days before the end with the book
    /// ranked by `by` (the basis, or a measure [`alone_measure`] gives),
    /// as [`DayRanking::ranked`] ranks it: for a day whose shares are read
    /// beyond those held. Logged (debug): a day so read is 0.8 MiB more
    /// at 100,000 accounts.
    fn full_shares(&self, k: usize, by: TierBasis) -> Vec<f64> {
        let (revenue, gp) = self.values(self.end - k as i32, by);
        let shares = self.shares_by(by, &revenue, gp.as_deref(), &mut Scratch::default());
        tracing::debug!(days_ago = k, by = ?by, "a day of the tier history read for every share");
        shares
    }

    /// Every account's share above with the book ranked by `by` from these
    /// values, as [`DayRanking::ranked`] ranks them.
    fn shares_by(
        &self,
        by: TierBasis,
        revenue: &[f64],
        gp: Option<&[f64]>,
        s: &mut Scratch,
    ) -> Vec<f64> {
        day_shares(revenue, gp, &self.config_by(by), s).0
    }

    /// The tiers config with the basis `by`.
    fn config_by(&self, by: TierBasis) -> TierConfig {
        TierConfig {
            by,
            ..self.tiers.clone()
        }
    }

    /// Every account's (tier, share above) `k` days before the end with
    /// the book ranked by one measure alone, ranked on first use.
    fn alone_day(&self, by: TierBasis, k: usize) -> Option<&DayRanking> {
        let slot = self
            .slots(1 + usize::from(by != TierBasis::Revenue))?
            .get(k)?;
        let by = alone_measure(by);
        Some(slot.get(|| {
            let (revenue, gp) = self.values(self.end - k as i32, by);
            self.rank_alone(by, &revenue, gp.as_deref(), &mut Scratch::default(), false)
        }))
    }

    /// The book ranked by `by` alone (a measure [`alone_measure`] gives)
    /// from each account's 12-month revenue and, for gross profit, its
    /// gross profit ([`TierHistory::values`]).
    fn rank_alone(
        &self,
        by: TierBasis,
        revenue: &[f64],
        gp: Option<&[f64]>,
        s: &mut Scratch,
        keep: bool,
    ) -> DayRanking {
        DayRanking::ranked(revenue, gp, &self.config_by(by), s, keep)
    }

    /// The book ranked by the basis from the same values (the master's
    /// tier column is applied as it is read: [`TierHistory::at`]).
    fn rank_basis(
        &self,
        revenue: &[f64],
        gp: Option<&[f64]>,
        s: &mut Scratch,
        keep: bool,
    ) -> DayRanking {
        DayRanking::ranked(revenue, gp, &self.tiers, s, keep)
    }

    /// The book `days_ago` days before the end ranked by revenue alone
    /// (`Revenue`) or gross profit alone (the others): the ranked
    /// accounts' total of that measure, as the shares are of it, and the
    /// value of the smallest account that ranking puts in A and in B. An
    /// account with more than a floor ranks into its tier, the others held
    /// as they are. Zeros beyond [`TIER_HISTORY_DAYS`].
    pub fn book_alone(&self, by: TierBasis, days_ago: i64) -> AloneBook {
        let k = usize::try_from(days_ago).unwrap_or(usize::MAX);
        let by = alone_measure(by);
        let Some(tiers) = self.alone_day(by, k) else {
            return AloneBook::default();
        };
        *tiers.book.get_or_init(|| {
            let (revenue, gp) = self.values(self.end - k as i32, by);
            AloneBook::of(
                tiers,
                alone_values(by, &revenue, gp.as_deref(), &mut Vec::new()),
            )
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

    /// Sets a day already ranked by the basis (`days_ago`: (tier, share
    /// above) by account index, before the master's tier column); a day
    /// already set keeps its value.
    pub fn seed(&self, days_ago: usize, ranked: Vec<(Tier, f64)>) {
        if let Some(slot) = self.days.get(days_ago) {
            let _ = slot
                .ranked
                .set(Arc::new(DayRanking::of(ranked, &self.tiers)));
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
            // By revenue alone is the basis's own ranking when the basis is
            // revenue and no master tier column overrides it (the same
            // values, the same config): one ranking ranked and kept a day,
            // not two alike (a day tier_movement reads by both).
            1 if self.revenue_is_basis => Some(&self.days),
            k => self.alone.get(k - 1),
        }
    }

    /// Account `i`'s (tier, share above) `days_ago` days before the end,
    /// by the configured basis; None beyond [`TIER_HISTORY_DAYS`] or for
    /// an unknown account.
    pub fn at(&self, i: usize, days_ago: i64) -> Option<(Tier, f64)> {
        let k = usize::try_from(days_ago).ok()?;
        let share = self
            .basis_day(k)?
            .share(i, || self.full_shares(k, self.tiers.by))?;
        Some((self.tier(i, days_ago)?, share))
    }

    /// Account `i`'s tier of [`TierHistory::at`], without its share.
    pub fn tier(&self, i: usize, days_ago: i64) -> Option<Tier> {
        let k = usize::try_from(days_ago).ok()?;
        let tier = self.basis_day(k)?.tier(i)?;
        // The master's tier column over the ranking's.
        let fixed = self.overrides.get(i).copied().flatten();
        Some(fixed.unwrap_or(tier))
    }

    /// The book ranked by the basis `k` days before the end, ranked on
    /// first use.
    fn basis_day(&self, k: usize) -> Option<&DayRanking> {
        let slot = self.days.get(k)?;
        Some(slot.get(|| {
            let (revenue, gp) = self.values(self.end - k as i32, self.tiers.by);
            self.rank_basis(&revenue, gp.as_deref(), &mut Scratch::default(), false)
        }))
    }

    /// Ranks the days `wanted` names ahead of their first use, on two
    /// threads, each day whole on one of them: its accounts' 12-month
    /// values summed once for all its rankings (the basis's, by revenue
    /// alone, by gross profit alone) and, where asked, the book of a
    /// ranking alone. The same values, rankings and books as on first use,
    /// to the bit, and the days are marked read as a use would. A day
    /// already ranked is left as it is; one beyond the history is skipped.
    /// After a re-export every day the rules look back at is ranked again,
    /// and this is where it happens.
    pub fn warm(&self, wanted: impl IntoIterator<Item = Wanted>) {
        // By days ago: the kinds wanted (see [`KINDS`]), the books and the
        // kinds whose every share is read.
        let mut table = vec![([false; KINDS], [false; 2], [false; KINDS]); TIER_HISTORY_DAYS];
        for w in wanted {
            let Some(day) = usize::try_from(w.days_ago)
                .ok()
                .and_then(|k| table.get_mut(k))
            else {
                continue;
            };
            let kind = match w.ranking {
                None => 0,
                Some(by) => {
                    let alone = usize::from(alone_measure(by) != TierBasis::Revenue);
                    day.1[alone] |= w.book;
                    1 + alone
                }
            };
            day.0[kind] = true;
            day.2[kind] |= w.shares;
        }
        let days: Vec<Warm> = table
            .into_iter()
            .enumerate()
            .filter(|(_, (kinds, _, _))| kinds.iter().any(|w| *w))
            .map(|(k, (kinds, books, shares))| (k, kinds, books, shares))
            .collect();
        // Those ranked already are only marked read; the others get their
        // values summed account by account (an account's lines read once
        // for all its days, the accounts shared out between two threads),
        // a batch of days at a time, then are ranked, every other day on
        // the second thread (near days cost alike).
        let (ready, work): (Vec<&Warm>, Vec<&Warm>) = days
            .iter()
            .partition(|(k, kinds, books, shares)| self.ranked(*k, kinds, books, shares));
        for (k, kinds, books, shares) in ready {
            self.warm_day(*k, (kinds, books, shares), None, &mut Scratch::default());
        }
        // The buffers of one batch's values and of each thread's rankings,
        // reused from batch to batch.
        let mut values: Vec<Values> = Vec::new();
        let mut scratch = [Scratch::default(), Scratch::default()];
        let (mut summing, mut ranking) = (Duration::ZERO, Duration::ZERO);
        for batch in work.chunks(WARM_BATCH) {
            let clock = Instant::now();
            self.sums(batch, &mut values);
            summing += clock.elapsed();
            let jobs: Vec<(&Warm, &Values)> = batch.iter().copied().zip(&values).collect();
            let (mine, theirs): (Vec<_>, Vec<_>) =
                jobs.iter().enumerate().partition(|(i, _)| i % 2 == 0);
            let rank = |days: Vec<(usize, &(&Warm, &Values))>, scratch: &mut Scratch| {
                for (_, ((k, kinds, books, shares), v)) in days {
                    self.warm_day(*k, (kinds, books, shares), Some(v), scratch);
                }
            };
            let [a, b] = &mut scratch;
            let clock = Instant::now();
            // A panic there (a bug): its days rank on first use instead.
            let _ = on_two(move || rank(theirs, a), move || rank(mine, b));
            ranking += clock.elapsed();
        }
        if !work.is_empty() {
            // The rankings made: each slot once (by revenue alone may be
            // the basis's own).
            let mut slots: Vec<*const Slot> = work
                .iter()
                .flat_map(|(k, kinds, _, _)| {
                    (0..KINDS)
                        .filter(|kind| kinds[*kind])
                        .filter_map(|kind| self.slots(kind)?.get(*k))
                        .map(|s| s as *const Slot)
                })
                .collect();
            slots.sort();
            slots.dedup();
            tracing::debug!(
                days = work.len(),
                rankings = slots.len(),
                summed_ms = summing.as_millis() as u64,
                ranked_ms = ranking.as_millis() as u64,
                "tier history ranked ahead"
            );
        }
    }

    /// Every account's 12-month values on each of `days`, as
    /// [`TierHistory::values`] sums them (gross profit for the days whose
    /// rankings read it), into `out` (one a day, its buffers reused), each
    /// account's series read once for all of them; the accounts' second
    /// half on another thread.
    fn sums(&self, days: &[&Warm], out: &mut Vec<Values>) {
        let want: Vec<(Day, bool)> = days
            .iter()
            .map(|(k, kinds, _, _)| (self.end - *k as i32, self.with_gp(kinds)))
            .collect();
        let ends: Vec<Day> = want.iter().map(|w| w.0).collect();
        let cost = want.iter().any(|w| w.1);
        let n = self.series.len();
        out.resize_with(want.len(), Default::default);
        for ((revenue, gp), (_, with_gp)) in out.iter_mut().zip(&want) {
            revenue.resize(n, 0.0);
            match with_gp {
                true => gp.get_or_insert_with(Vec::new).resize(n, 0.0),
                false => *gp = None,
            }
        }
        // Account `j` of `series`' values into place `j` of each day's.
        type Into<'a> = Vec<(&'a mut [f64], Option<&'a mut [f64]>)>;
        let part = |series: &[Series], mut into: Into<'_>| {
            for (j, s) in ahead(series, |s| s).enumerate() {
                // The days in turn, each search from the last one's end:
                // the sums `values` and `gross_profit_12m` give.
                let mut days = into.iter_mut();
                s.revenue_cost_each(&ends, 365, cost, |revenue, c| {
                    let Some((r, gp)) = days.next() else { return };
                    r[j] = revenue;
                    if let Some(gp) = gp {
                        gp[j] = revenue - c;
                    }
                });
            }
        };
        let half = n / 2;
        fn split(out: &mut [Values], at: usize) -> (Into<'_>, Into<'_>) {
            out.iter_mut()
                .map(|(r, g)| {
                    let (r1, r2) = r.split_at_mut(at);
                    let (g1, g2) = match g {
                        Some(g) => {
                            let (a, b) = g.split_at_mut(at);
                            (Some(a), Some(b))
                        }
                        None => (None, None),
                    };
                    ((r1, g1), (r2, g2))
                })
                .unzip()
        }
        let (first, second) = split(out, half);
        let (theirs, ()) = on_two(
            || part(&self.series[half..], second),
            || part(&self.series[..half], first),
        );
        if theirs.is_err() {
            // A panic there (a bug): the second half summed here instead.
            let (_, second) = split(out, half);
            part(&self.series[half..], second);
        }
    }

    /// Whether the rankings of `kinds` of a day read gross profit: the
    /// basis's when it is not revenue, the one by gross profit alone.
    fn with_gp(&self, kinds: &[bool; KINDS]) -> bool {
        (kinds[0] && self.tiers.by != TierBasis::Revenue) || kinds[2]
    }

    /// Whether the rankings of `kinds` of the day `k` days back, the
    /// books in `books` and every share of the kinds in `shares`, are made
    /// already (or beyond the history).
    fn ranked(
        &self,
        k: usize,
        kinds: &[bool; KINDS],
        books: &[bool; 2],
        shares: &[bool; KINDS],
    ) -> bool {
        (0..KINDS).filter(|kind| kinds[*kind]).all(|kind| {
            match self
                .slots(kind)
                .and_then(|d| d.get(k))
                .map(|s| s.ranked.get())
            {
                None => true,
                Some(None) => false,
                Some(Some(r)) => {
                    (kind == 0 || !books[kind - 1] || r.book.get().is_some())
                        && (!shares[kind] || r.full.get().is_some())
                }
            }
        })
    }

    /// [`TierHistory::warm`] for the day `k` days back: the rankings of
    /// `kinds` (see [`KINDS`]), the books of the rankings alone in `books`
    /// (by revenue, by gross profit) and every share of the kinds in
    /// `shares`, from the values `summed` for it ([`TierHistory::sums`])
    /// if given.
    fn warm_day(
        &self,
        k: usize,
        (kinds, books, shares): (&[bool; KINDS], &[bool; 2], &[bool; KINDS]),
        summed: Option<&Values>,
        scratch: &mut Scratch,
    ) {
        let day = self.end - k as i32;
        // `summed`, or summed once here when a ranking or book is missing.
        let own: std::cell::OnceCell<Values> = std::cell::OnceCell::new();
        let values = || {
            summed.unwrap_or_else(|| {
                own.get_or_init(|| {
                    let measure = if self.with_gp(kinds) {
                        TierBasis::GrossProfit
                    } else {
                        TierBasis::Revenue
                    };
                    self.values(day, measure)
                })
            })
        };
        for kind in (0..KINDS).filter(|kind| kinds[*kind]) {
            let Some(slot) = self.slots(kind).and_then(|d| d.get(k)) else {
                continue;
            };
            // The basis, or the measure alone, as the first use ranks it.
            let by = match kind {
                0 => self.tiers.by,
                1 => TierBasis::Revenue,
                _ => TierBasis::GrossProfit,
            };
            let keep = shares[kind];
            let ranked = slot.get(|| {
                let v = values();
                match kind {
                    0 => self.rank_basis(&v.0, gp_for(by, v), scratch, keep),
                    _ => self.rank_alone(by, &v.0, gp_for(by, v), scratch, keep),
                }
            });
            if keep {
                // A day ranked before without them.
                ranked.full.get_or_init(|| {
                    let v = values();
                    self.shares_by(by, &v.0, gp_for(by, v), scratch)
                        .into_boxed_slice()
                });
            }
            if kind > 0 && books[kind - 1] {
                ranked.book.get_or_init(|| {
                    let v = values();
                    AloneBook::of(
                        ranked,
                        alone_values(by, &v.0, gp_for(by, v), &mut scratch.gp),
                    )
                });
            }
        }
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

/// The values a ranking by `by` alone (a measure [`alone_measure`] gives)
/// is of: the 12-month revenue, or the gross profits as ranked (in `buf`).
fn alone_values<'a>(
    by: TierBasis,
    revenue: &'a [f64],
    gp: Option<&[f64]>,
    buf: &'a mut Vec<f64>,
) -> &'a [f64] {
    match by {
        TierBasis::Revenue => revenue,
        _ => ranked_gross_profits(revenue, gp, buf),
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
    shares_above(values, total)
        .map(|above| above.map_or(Tier::C, |a| tier_of(a, tiers)))
        .collect()
}

/// How many ids of accounts missing from the master a snapshot names.
pub const UNLISTED_EXAMPLES: usize = 3;

/// The accounts with order lines that the customer master does not list:
/// their lines are kept, but they are not ranked and their revenue is in no
/// share and no figure of the book, so they move nobody's tier.
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
mod tests;
