//! Series: one account's (or the book's) daily order sums as prefix arrays,
//! so any window is two searches, shared between the snapshots of
//! different days as views ending at their day; `seek_by`, the search
//! from a nearby place the views use; and `ahead`, a pass over many
//! accounts' series that asks each into the processor's cache a few
//! accounts before its turn. Touches nothing but the memory it is given.

use super::compact::{Column, Table, Values};
use crate::model::dates::{Day, day};
use crate::store;

/// The prefix sum of amount column `c` before day `i` (0..=n): 0 before
/// the first.
#[inline]
fn before(c: &Column<'_>, i: usize) -> f64 {
    match i {
        0 => 0.0,
        _ => c.amount(i - 1),
    }
}

/// What a windowed metric sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Revenue,
    Cost,
    Qty,
    Orders,
}

/// One day's sums, as [`Series::of`] takes them.
#[derive(Debug, Clone, Copy)]
pub struct DaySums {
    pub day: Day,
    pub revenue: f64,
    pub cost: f64,
    pub qty: f64,
    pub orders: u32,
}

impl From<&store::OrderDay> for DaySums {
    fn from(d: &store::OrderDay) -> DaySums {
        DaySums {
            day: day(d.date),
            revenue: d.revenue,
            cost: d.cost,
            qty: d.qty,
            orders: d.orders,
        }
    }
}

/// The columns of a series' table: the day, then the prefix sums after it.
const DAY: usize = 0;
const REVENUE: usize = 1;
const COST: usize = 2;
const QTY: usize = 3;
const ORDERS: usize = 4;

/// One account's series: each order day and the prefix sums up to and
/// including it (revenue, cost and quantity as the `f64` sums in day
/// order, distinct orders as whole numbers), packed (`compact::Table`):
/// two years of days in 2 bytes each, a prefix sum that is whole units or
/// hundredths in 4 or fewer, the others as their 8. The sum before the
/// first day is 0.
///
/// The table is shared: `as_of` gives a view of the same series that
/// ends at an earlier day without copying it (the backtest derives every
/// day's snapshot from one load), and every query sees only that prefix.
#[derive(Debug, Default, Clone)]
pub struct Series {
    table: Table,
    /// How many of the table's days this view sees.
    n: usize,
}

impl Series {
    /// The series of `days` (in increasing order): each prefix sum is the
    /// one before plus the day's, in `f64`, as the days come.
    pub fn of(days: &[DaySums]) -> Series {
        Series::default().continued(0, days)
    }

    /// The series whose first `keep` days (at most those this view sees)
    /// and their prefix sums are this one's, followed by `days` (in
    /// increasing order, all after those kept), each prefix sum the one
    /// before plus the day's: [`Series::of`] of the kept days' sums and
    /// `days`, to the bit (the kept prefix sums are the ones it would
    /// compute again). The daemon reads again only an account's days from
    /// the first one a file wrote (`metrics::reread`).
    pub fn continued(&self, keep: usize, days: &[DaySums]) -> Series {
        let keep = keep.min(self.n);
        let len = keep + days.len();
        let t = &self.table;
        let mut d: Vec<i64> = Vec::with_capacity(len);
        let mut p = [
            Vec::with_capacity(len),
            Vec::with_capacity(len),
            Vec::with_capacity(len),
        ];
        let mut o: Vec<i64> = Vec::with_capacity(len);
        d.extend((0..keep).map(|k| t.int(DAY, k)));
        for (v, c) in p.iter_mut().zip([REVENUE, COST, QTY]) {
            v.extend((0..keep).map(|k| t.amount(c, k)));
        }
        o.extend((0..keep).map(|k| t.int(ORDERS, k)));
        let mut sums = p.each_ref().map(|v| v.last().copied().unwrap_or(0.0));
        // A kept count is one this function summed: within u32.
        let mut orders = o.last().map_or(0u32, |x| *x as u32);
        for x in days {
            for (s, add) in sums.iter_mut().zip([x.revenue, x.cost, x.qty]) {
                *s += add;
            }
            // Saturating where the f64 sum would be exact to 2^53: beyond
            // four billion orders, more than any table here could hold.
            orders = orders.saturating_add(x.orders);
            d.push(i64::from(x.day));
            for (v, s) in p.iter_mut().zip(sums) {
                v.push(s);
            }
            o.push(i64::from(orders));
        }
        Series {
            table: Table::new(&[
                Values::Ints(&d),
                Values::Amounts(&p[0]),
                Values::Amounts(&p[1]),
                Values::Amounts(&p[2]),
                Values::Ints(&o),
            ]),
            n: len,
        }
    }

    /// How many of the days this view sees come before day `d`.
    pub fn days_before(&self, d: Day) -> usize {
        self.upto(d.saturating_sub(1))
    }

    /// Appends a day (after the days this view sees, which it forks from
    /// the shared table: a view that ended earlier forgets what it did not
    /// see). Copies the series: for tests and synthetic books; a read
    /// builds each series at once with [`Series::of`].
    pub fn push(&mut self, d: &store::OrderDay) {
        let (n, t) = (self.n, &self.table);
        let cols = |c: usize| -> Vec<i64> { (0..n).map(|k| t.int(c, k)).collect() };
        let sums = |c: usize| -> Vec<f64> { (0..n).map(|k| t.amount(c, k)).collect() };
        let (mut days, mut orders) = (cols(DAY), cols(ORDERS));
        let mut p = [sums(REVENUE), sums(COST), sums(QTY)];
        let x = DaySums::from(d);
        days.push(i64::from(x.day));
        for (v, add) in p.iter_mut().zip([x.revenue, x.cost, x.qty]) {
            let last = v.last().copied().unwrap_or(0.0);
            v.push(last + add);
        }
        let last = orders.last().map_or(0, |o| *o as u32);
        orders.push(i64::from(last.saturating_add(x.orders)));
        self.table = Table::new(&[
            Values::Ints(&days),
            Values::Amounts(&p[0]),
            Values::Amounts(&p[1]),
            Values::Amounts(&p[2]),
            Values::Ints(&orders),
        ]);
        self.n = n + 1;
    }

    /// The same series as it stood at the end of day `end`: nothing after
    /// it is visible. Shares the table.
    pub fn as_of(&self, end: Day) -> Series {
        Series {
            table: self.table.clone(),
            n: self.upto(end),
        }
    }

    /// [`Series::as_of`], searched from `near`, a view of the same table
    /// at a nearby day: a step or two instead of a search over the whole
    /// history (the backtest moves each account one day at a time).
    pub fn as_of_near(&self, end: Day, near: &Series) -> Series {
        if !self.table.same(&near.table) {
            return self.as_of(end);
        }
        Series {
            table: near.table.clone(),
            n: self.seek(near.n, end),
        }
    }

    /// The `k`th order day.
    #[inline]
    fn day(&self, k: usize) -> Day {
        self.table.int(DAY, k) as Day
    }

    /// How many of the days this view sees are on or before `end`,
    /// searched from `hint`.
    #[inline]
    fn seek(&self, hint: usize, end: Day) -> usize {
        let days = self.table.column(DAY);
        seek_by(self.n, hint, |k| days.int(k) as Day <= end)
    }

    /// How many of the days this view sees are on or before `end`.
    fn upto(&self, end: Day) -> usize {
        self.seek(self.n, end)
    }

    /// The prefix sum of column `c` before day `i` (0..=n): 0 before the first.
    #[inline]
    fn prefix(&self, c: usize, i: usize) -> f64 {
        match i {
            0 => 0.0,
            _ if c == ORDERS => self.table.int(c, i - 1) as f64,
            _ => before(&self.table.column(c), i),
        }
    }

    /// The bytes its table takes on the heap.
    pub(super) fn heap_bytes(&self) -> usize {
        self.table.heap_bytes()
    }

    /// Its columns' widths in bytes, for tests.
    #[cfg(test)]
    pub(super) fn widths(&self) -> Vec<u8> {
        self.table.widths()
    }

    /// The days this view sees and their prefix sums, one line each.
    pub(super) fn dump(&self, name: &str, o: &mut String) {
        use std::fmt::Write as _;
        for i in 0..self.n {
            let p = |c| self.prefix(c, i + 1);
            let _ = writeln!(
                o,
                "{name} {} {:?} {:?} {:?} {:?}",
                self.day(i),
                p(REVENUE),
                p(COST),
                p(QTY),
                p(ORDERS)
            );
        }
    }

    /// Each day this view sees, with its (revenue, cost, quantity, orders)
    /// as the differences of the prefix sums.
    pub fn each_day(&self, mut f: impl FnMut(Day, [f64; 4])) {
        let t = &self.table;
        let (days, orders) = (t.column(DAY), t.column(ORDERS));
        let sums = [t.column(REVENUE), t.column(COST), t.column(QTY)];
        // The sums before the day: 0 before the first.
        let (mut before, mut orders_before) = ([0.0f64; 3], 0i64);
        for i in 0..self.n {
            let now = sums.map(|c| c.amount(i));
            let o = orders.int(i);
            f(
                days.int(i) as Day,
                [
                    now[0] - before[0],
                    now[1] - before[1],
                    now[2] - before[2],
                    (o - orders_before) as f64,
                ],
            );
            (before, orders_before) = (now, o);
        }
    }

    /// Sum of `m` over the days in `(end - len, end]`.
    pub fn sum(&self, m: Measure, end: Day, len: i32) -> f64 {
        self.window(end, len).map_or(0.0, |(lo, hi)| match m {
            Measure::Orders => {
                let o = |i: usize| {
                    if i == 0 {
                        0
                    } else {
                        self.table.int(ORDERS, i - 1)
                    }
                };
                (o(hi) - o(lo)) as f64
            }
            _ => {
                let c = column(m);
                self.prefix(c, hi) - self.prefix(c, lo)
            }
        })
    }

    /// Revenue over `(end - len, end]`, as [`Series::sum`] gives it, its
    /// two searches started from `hint`: the bounds where the searches for
    /// a nearby window ended, updated to this window's.
    pub fn revenue_near(&self, end: Day, len: i32, hint: &mut [usize; 2]) -> f64 {
        if self.n == 0 || len <= 0 {
            return 0.0;
        }
        let days = self.table.column(DAY);
        self.near(&days, end, len, hint).map_or(0.0, |(lo, hi)| {
            self.prefix(REVENUE, hi) - self.prefix(REVENUE, lo)
        })
    }

    /// Revenue and, with `cost`, cost (else 0.0) over `(end - len, end]`
    /// for each of `ends` in turn, each as [`Series::revenue_cost`] gives
    /// it: the columns read once and each search started where the last
    /// one ended, so ends near each other (the days a ranking of the tier
    /// history sums together) take a probe or two each, not a search.
    pub fn revenue_cost_each(
        &self,
        ends: &[Day],
        len: i32,
        cost: bool,
        mut put: impl FnMut(f64, f64),
    ) {
        if self.n == 0 || len <= 0 {
            ends.iter().for_each(|_| put(0.0, 0.0));
            return;
        }
        let days = self.table.column(DAY);
        let (revenue, costs) = (self.table.column(REVENUE), self.table.column(COST));
        let mut hint = [self.n; 2];
        for &end in ends {
            match self.near(&days, end, len, &mut hint) {
                Some((lo, hi)) => {
                    let d = |c: &Column<'_>| before(c, hi) - before(c, lo);
                    put(d(&revenue), if cost { d(&costs) } else { 0.0 });
                }
                None => put(0.0, 0.0),
            }
        }
    }

    /// The prefix bounds of the days in `(end - len, end]`, if any, the two
    /// searches started from `hint` (where those of a nearby window ended:
    /// [lo, hi]), which is set to this window's.
    fn near(
        &self,
        days: &Column<'_>,
        end: Day,
        len: i32,
        hint: &mut [usize; 2],
    ) -> Option<(usize, usize)> {
        let hi = seek_by(self.n, hint[1], |k| days.int(k) as Day <= end);
        let lo = seek_by(hi, hint[0], |k| days.int(k) as Day <= end - len);
        *hint = [lo, hi];
        (hi > lo).then_some((lo, hi))
    }

    /// Revenue and cost over `(end - len, end]`, with one search.
    pub fn revenue_cost(&self, end: Day, len: i32) -> (f64, f64) {
        self.window(end, len).map_or((0.0, 0.0), |(lo, hi)| {
            let d = |c| self.prefix(c, hi) - self.prefix(c, lo);
            (d(REVENUE), d(COST))
        })
    }

    /// The prefix bounds of the days in `(end - len, end]`, if any.
    fn window(&self, end: Day, len: i32) -> Option<(usize, usize)> {
        if self.n == 0 || len <= 0 {
            return None;
        }
        // Windows end at or near the newest day, and start a few months
        // before it: both searches go back from the end, where the cache
        // lines just read are.
        let hi = self.upto(end);
        let days = self.table.column(DAY);
        let lo = seek_by(hi, hi, |k| days.int(k) as Day <= end - len);
        (hi > lo).then_some((lo, hi))
    }

    /// The last day with an order on or before `end`.
    pub fn last_day(&self, end: Day) -> Option<Day> {
        self.upto(end).checked_sub(1).map(|i| self.day(i))
    }

    /// The first day with an order, if any.
    pub fn first_day(&self) -> Option<Day> {
        (self.n > 0).then(|| self.day(0))
    }

    /// Number of distinct order days on or before `end`.
    pub fn order_days(&self, end: Day) -> usize {
        self.upto(end)
    }

    /// Median gap in days between consecutive order days up to `end`.
    pub fn median_gap(&self, end: Day) -> Option<f64> {
        median_of_gaps(self, 0..self.order_days(end))
    }

    /// Median gap between consecutive order days among those in the `len`
    /// days ending at the last order day on or before `end`: the rhythm
    /// the account kept in its last `len` days of ordering, however long
    /// it has been silent since. None with fewer than two such days.
    pub fn recent_median_gap(&self, end: Day, len: i32) -> Option<f64> {
        median_of_gaps(self, self.recent_order_days(end, len))
    }

    /// The order days in the `len` days ending at the last order day on or
    /// before `end` (empty when it never ordered), as their places.
    pub fn recent_order_days(&self, end: Day, len: i32) -> std::ops::Range<usize> {
        let n = self.order_days(end);
        let Some(last) = n.checked_sub(1).map(|i| self.day(i)) else {
            return 0..0;
        };
        let lo = seek_by(n, n, |k| self.day(k) <= last - len.max(1));
        lo..n
    }
}

/// The table column of a measure summed as `f64`.
fn column(m: Measure) -> usize {
    match m {
        Measure::Revenue => REVENUE,
        Measure::Cost => COST,
        Measure::Qty => QTY,
        Measure::Orders => ORDERS,
    }
}

/// The median of the gaps between consecutive days; None with fewer than
/// two days.
fn median_of_gaps(s: &Series, places: std::ops::Range<usize>) -> Option<f64> {
    if places.len() < 2 {
        return None;
    }
    let mut gaps: Vec<i32> = (places.start + 1..places.end)
        .map(|k| s.day(k) - s.day(k - 1))
        .collect();
    // The middle one (or two) without sorting them all.
    let (half, odd) = (gaps.len() / 2, gaps.len() % 2 == 1);
    let (below, mid, _) = gaps.select_nth_unstable(half);
    let mid = *mid;
    Some(if odd {
        f64::from(mid)
    } else {
        let lower = below.iter().copied().max().unwrap_or(mid);
        f64::from(lower + mid) / 2.0
    })
}

/// How many items ahead [`ahead`] asks for a series' table.
const AHEAD: usize = 4;

/// How many of a table's cache lines [`ahead`] asks for: 2 KiB, a series
/// of about a hundred order days whole.
const AHEAD_LINES: usize = 32;

/// `items` in turn, the table of the series `of` gives for each asked
/// into the processor's cache [`AHEAD`] items before its turn. Each series
/// is a heap buffer of its own, and a pass over a book's series otherwise
/// waits on memory at each: the days' 12-month sums after a re-export
/// (100,000 accounts, 160 days) took 310-330 ms so, 175-210 ms asked
/// ahead. A hint: what is read is the same.
pub fn ahead<'a, T>(
    items: &'a [T],
    of: impl Fn(&'a T) -> &'a Series + 'a,
) -> impl Iterator<Item = &'a T> + 'a {
    items.iter().enumerate().map(move |(j, item)| {
        if let Some(next) = items.get(j + AHEAD) {
            of(next).table.prefetch(AHEAD_LINES);
        }
        item
    })
}

/// The first of the places `0..len` whose `pred` is false (`pred` true
/// for a prefix of them: `partition_point`), searched from `hint`,
/// galloping forward or back. Near the answer it reads a cache line or
/// two, where a binary search over a long history misses the cache at
/// every step.
pub(crate) fn seek_by(len: usize, hint: usize, pred: impl Fn(usize) -> bool) -> usize {
    // The first place in `lo..hi` whose `pred` is false.
    let bisect = |mut lo: usize, mut hi: usize| {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    };
    let hint = hint.min(len);
    if hint > 0 && !pred(hint - 1) {
        // Galloping back: everything from `hi` on fails `pred`.
        let (mut hi, mut step) = (hint - 1, 1);
        loop {
            if hi == 0 {
                return 0;
            }
            let probe = hi.saturating_sub(step);
            if pred(probe) {
                return bisect(probe + 1, hi);
            }
            hi = probe;
            step *= 2;
        }
    }
    // Everything before `lo` satisfies `pred`.
    let (mut lo, mut step) = (hint, 1);
    loop {
        let probe = lo + step;
        if probe > len || !pred(probe - 1) {
            let hi = if probe > len { len } else { probe - 1 };
            return bisect(lo, hi);
        }
        lo = probe;
        step *= 2;
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::super::account::Visit;
    use super::super::daylog::DayLog;
    use super::*;

    #[test]
    fn seek_finds_the_partition_point_from_any_hint() {
        // Repeated days, gaps, empty: every end day and every hint.
        for days in [vec![], vec![5], vec![1, 2, 2, 2, 7, 9, 9, 30, 31, 32, 60]] {
            for end in -1..=70 {
                let want = days.partition_point(|d| *d <= end);
                for hint in 0..=days.len() + 2 {
                    assert_eq!(
                        seek_by(days.len(), hint, |k| days[k] <= end),
                        want,
                        "days {days:?} end {end} hint {hint}"
                    );
                }
            }
        }
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn series(days: &[(&str, f64)]) -> Series {
        let mut s = Series::default();
        for (date, rev) in days {
            s.push(&store::OrderDay {
                date: d(date),
                revenue: *rev,
                cost: rev * 0.8,
                qty: 1.0,
                orders: 1,
            });
        }
        s
    }

    #[test]
    fn windows_are_half_open_on_the_left() {
        let s = series(&[
            ("2026-01-01", 10.0),
            ("2026-01-10", 20.0),
            ("2026-01-20", 40.0),
        ]);
        let end = day(d("2026-01-20"));
        assert_eq!(s.sum(Measure::Revenue, end, 10), 40.0); // (01-10, 01-20]
        assert_eq!(s.sum(Measure::Revenue, end, 11), 60.0);
        assert_eq!(s.sum(Measure::Revenue, end, 1000), 70.0);
        assert_eq!(s.sum(Measure::Revenue, end - 10, 10), 30.0); // (12-31, 01-10]
        assert_eq!(s.sum(Measure::Revenue, end - 10, 9), 20.0); // (01-01, 01-10]
        assert_eq!(s.sum(Measure::Orders, end, 1000), 3.0);
        assert_eq!(s.sum(Measure::Revenue, day(d("2025-12-31")), 30), 0.0);
        assert_eq!(s.last_day(end - 1), Some(day(d("2026-01-10"))));
        assert_eq!(s.median_gap(end), Some(9.5));
    }

    #[test]
    fn median_gap_is_the_middle_of_the_sorted_gaps() {
        // Odd and even numbers of gaps, repeated gaps, gaps out of order.
        let mut x: u32 = 7;
        for n in 2..40 {
            let mut date = d("2025-01-01");
            let mut days = Vec::new();
            for _ in 0..n {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                date += chrono::Duration::days(i64::from(1 + (x >> 16) % 20));
                days.push((date.format("%Y-%m-%d").to_string(), 1.0));
            }
            let refs: Vec<(&str, f64)> = days.iter().map(|(d, r)| (d.as_str(), *r)).collect();
            let s = series(&refs);
            let mut gaps: Vec<i32> = (1..s.n).map(|k| s.day(k) - s.day(k - 1)).collect();
            gaps.sort_unstable();
            let m = gaps.len() / 2;
            let want = if gaps.len() % 2 == 1 {
                f64::from(gaps[m])
            } else {
                f64::from(gaps[m - 1] + gaps[m]) / 2.0
            };
            assert_eq!(s.median_gap(i32::MAX), Some(want), "gaps {gaps:?}");
        }
    }

    #[test]
    fn earlier_views_see_nothing_after_their_day() {
        let s = series(&[
            ("2026-01-01", 10.0),
            ("2026-01-10", 20.0),
            ("2026-01-20", 40.0),
        ]);
        let cut = day(d("2026-01-15"));
        let mut v = s.as_of(cut);
        let far = day(d("2027-01-01"));
        assert_eq!(v.sum(Measure::Revenue, far, 1000), 30.0);
        assert_eq!(v.order_days(i32::MAX), 2);
        assert_eq!(v.last_day(i32::MAX), Some(day(d("2026-01-10"))));
        assert_eq!(v.median_gap(far), Some(9.0));
        assert_eq!(s.as_of(day(d("2025-12-31"))).order_days(i32::MAX), 0);
        // Appending to a view forks it; the full series is unchanged.
        v.push(&store::OrderDay {
            date: d("2026-01-16"),
            revenue: 1.0,
            cost: 0.0,
            qty: 1.0,
            orders: 1,
        });
        assert_eq!(v.sum(Measure::Revenue, far, 1000), 31.0);
        assert_eq!(s.sum(Measure::Revenue, far, 1000), 70.0);

        let mut log: DayLog<Visit> = DayLog::default();
        for (k, date) in ["2026-01-01", "2026-01-10", "2026-01-20"]
            .iter()
            .enumerate()
        {
            log.push(Visit {
                day: day(d(date)),
                role: k as u32,
            });
        }
        let early = log.as_of(cut);
        assert_eq!(early.len(), 2);
        assert!(early.iter().all(|x| x.day <= cut));
        assert!(log.as_of(cut - 100).is_empty());
        assert_eq!(log.as_of(i32::MAX).len(), 3);
    }
}

/// The packed series and logs against the plain arrays they replaced.
#[cfg(test)]
mod exact;
