//! Series: one account's (or the book's) daily order sums as prefix arrays,
//! so any window is two searches, and `DayLog`, entries in day order; both
//! shared between the snapshots of different days as views ending at their
//! day. Touches nothing but the memory it is given.

use std::sync::Arc;

use crate::model::dates::{Day, day};
use crate::store;

/// What a windowed metric sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Revenue,
    Cost,
    Qty,
    Orders,
}

/// One account's series. Prefix arrays have `days.len() + 1` entries.
///
/// The arrays are shared: `as_of` gives a view of the same series that
/// ends at an earlier day without copying it (the backtest derives every
/// day's snapshot from one load), and every query sees only that prefix.
#[derive(Debug, Default, Clone)]
pub struct Series {
    data: Arc<SeriesData>,
    /// How many of `data.days` this view sees.
    n: usize,
}

#[derive(Debug, Default, Clone)]
struct SeriesData {
    days: Vec<Day>,
    revenue: Vec<f64>,
    cost: Vec<f64>,
    qty: Vec<f64>,
    /// Distinct orders: whole numbers, so a `u32` holds the same sums a
    /// `f64` would (a day's count is a `u32` already), in half the bytes.
    orders: Vec<u32>,
}

impl Series {
    /// An empty series with room for `days` days.
    pub fn with_capacity(days: usize) -> Series {
        let prefix = || Vec::with_capacity(days + 1);
        Series {
            data: Arc::new(SeriesData {
                days: Vec::with_capacity(days),
                revenue: prefix(),
                cost: prefix(),
                qty: prefix(),
                orders: Vec::with_capacity(days + 1),
            }),
            n: 0,
        }
    }

    /// Appends a day; days must come in increasing order.
    pub fn push(&mut self, d: &store::OrderDay) {
        let n = self.n;
        let s = Arc::make_mut(&mut self.data);
        // A view that ended earlier forgets what it did not see.
        s.days.truncate(n);
        for v in [&mut s.revenue, &mut s.cost, &mut s.qty] {
            v.truncate(n + 1);
            if v.is_empty() {
                v.push(0.0);
            }
        }
        s.orders.truncate(n + 1);
        if s.orders.is_empty() {
            s.orders.push(0);
        }
        s.days.push(day(d.date));
        let last = |v: &Vec<f64>| *v.last().unwrap_or(&0.0);
        s.revenue.push(last(&s.revenue) + d.revenue);
        s.cost.push(last(&s.cost) + d.cost);
        s.qty.push(last(&s.qty) + d.qty);
        // Saturating where the f64 sum would be exact to 2^53: beyond four
        // billion orders, more than any table here could hold.
        let orders = s.orders.last().copied().unwrap_or(0);
        s.orders.push(orders.saturating_add(d.orders));
        self.n += 1;
    }

    /// The same series as it stood at the end of day `end`: nothing after
    /// it is visible. Shares the arrays.
    pub fn as_of(&self, end: Day) -> Series {
        Series {
            data: self.data.clone(),
            n: self.days().partition_point(|d| *d <= end),
        }
    }

    /// [`Series::as_of`], searched from `near`, a view of the same arrays
    /// at a nearby day: a step or two instead of a binary search over the
    /// whole history (the backtest moves each account one day at a time).
    pub fn as_of_near(&self, end: Day, near: &Series) -> Series {
        if !Arc::ptr_eq(&self.data, &near.data) {
            return self.as_of(end);
        }
        Series {
            data: near.data.clone(),
            n: seek(self.days(), near.n, |d| *d <= end),
        }
    }

    fn days(&self) -> &[Day] {
        &self.data.days[..self.n]
    }

    /// The bytes its arrays take on the heap (by capacity).
    pub(super) fn heap_bytes(&self) -> usize {
        let s = &self.data;
        s.days.capacity() * size_of::<Day>()
            + (s.revenue.capacity() + s.cost.capacity() + s.qty.capacity()) * size_of::<f64>()
            + s.orders.capacity() * size_of::<u32>()
    }

    /// The days this view sees and their prefix sums, one line each.
    pub(super) fn dump(&self, name: &str, o: &mut String) {
        use std::fmt::Write as _;
        let s = &self.data;
        for (i, d) in self.days().iter().enumerate() {
            let _ = writeln!(
                o,
                "{name} {d} {:?} {:?} {:?} {:?}",
                s.revenue[i + 1],
                s.cost[i + 1],
                s.qty[i + 1],
                f64::from(s.orders[i + 1])
            );
        }
    }

    /// Each day this view sees, with its (revenue, cost, quantity, orders)
    /// as the differences of the prefix sums.
    pub fn each_day(&self, mut f: impl FnMut(Day, [f64; 4])) {
        let s = &self.data;
        for (i, d) in self.days().iter().enumerate() {
            let diff = |v: &Vec<f64>| v[i + 1] - v[i];
            f(
                *d,
                [
                    diff(&s.revenue),
                    diff(&s.cost),
                    diff(&s.qty),
                    f64::from(s.orders[i + 1] - s.orders[i]),
                ],
            );
        }
    }

    /// Sum of `m` over the days in `(end - len, end]`.
    pub fn sum(&self, m: Measure, end: Day, len: i32) -> f64 {
        self.window(end, len)
            .map_or(0.0, |(lo, hi)| match self.prefix(m) {
                Some(p) => p[hi] - p[lo],
                None => f64::from(self.data.orders[hi] - self.data.orders[lo]),
            })
    }

    /// Revenue over `(end - len, end]`, as [`Series::sum`] gives it, its
    /// two searches started from `hint`: the bounds where the searches for
    /// a nearby window ended, updated to this window's.
    pub fn revenue_near(&self, end: Day, len: i32, hint: &mut [usize; 2]) -> f64 {
        let days = self.days();
        if days.is_empty() || len <= 0 {
            return 0.0;
        }
        let hi = seek(days, hint[1], |d| *d <= end);
        let lo = seek(&days[..hi], hint[0], |d| *d <= end - len);
        *hint = [lo, hi];
        if hi > lo {
            let p = &self.data.revenue;
            p[hi] - p[lo]
        } else {
            0.0
        }
    }

    /// Revenue and cost over `(end - len, end]`, with one search.
    pub fn revenue_cost(&self, end: Day, len: i32) -> (f64, f64) {
        self.window(end, len).map_or((0.0, 0.0), |(lo, hi)| {
            let (r, c) = (&self.data.revenue, &self.data.cost);
            (r[hi] - r[lo], c[hi] - c[lo])
        })
    }

    /// The prefix-array bounds of the days in `(end - len, end]`, if any.
    fn window(&self, end: Day, len: i32) -> Option<(usize, usize)> {
        let days = self.days();
        if days.is_empty() || len <= 0 {
            return None;
        }
        // Windows end at or near the newest day, and start a few months
        // before it: both searches go back from the end, where the cache
        // lines just read are.
        let hi = seek(days, days.len(), |d| *d <= end);
        let lo = seek(&days[..hi], hi, |d| *d <= end - len);
        (hi > lo).then_some((lo, hi))
    }

    /// The prefix sums of `m`; None for the orders, which are `u32`.
    fn prefix(&self, m: Measure) -> Option<&[f64]> {
        match m {
            Measure::Revenue => Some(&self.data.revenue),
            Measure::Cost => Some(&self.data.cost),
            Measure::Qty => Some(&self.data.qty),
            Measure::Orders => None,
        }
    }

    /// The last day with an order on or before `end`.
    pub fn last_day(&self, end: Day) -> Option<Day> {
        let days = self.days();
        let hi = days.partition_point(|d| *d <= end);
        hi.checked_sub(1).map(|i| days[i])
    }

    /// The first day with an order, if any.
    pub fn first_day(&self) -> Option<Day> {
        self.days().first().copied()
    }

    /// Number of distinct order days on or before `end`.
    pub fn order_days(&self, end: Day) -> usize {
        self.days().partition_point(|d| *d <= end)
    }

    /// Median gap in days between consecutive order days up to `end`.
    pub fn median_gap(&self, end: Day) -> Option<f64> {
        let n = self.order_days(end);
        median_of_gaps(&self.days()[..n])
    }

    /// Median gap between consecutive order days among those in the `len`
    /// days ending at the last order day on or before `end`: the rhythm
    /// the account kept in its last `len` days of ordering, however long
    /// it has been silent since. None with fewer than two such days.
    pub fn recent_median_gap(&self, end: Day, len: i32) -> Option<f64> {
        let days = self.recent_order_days(end, len);
        median_of_gaps(days)
    }

    /// The order days in the `len` days ending at the last order day on or
    /// before `end` (empty when it never ordered).
    pub fn recent_order_days(&self, end: Day, len: i32) -> &[Day] {
        let n = self.order_days(end);
        let days = &self.days()[..n];
        let Some(&last) = days.last() else {
            return days;
        };
        let lo = days.partition_point(|d| *d <= last - len.max(1));
        &days[lo..]
    }
}

/// The median of the gaps between consecutive days; None with fewer than
/// two days.
fn median_of_gaps(days: &[Day]) -> Option<f64> {
    if days.len() < 2 {
        return None;
    }
    let mut gaps: Vec<i32> = days.windows(2).map(|w| w[1] - w[0]).collect();
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

/// Something that happened on one day (a visit, a SKU ordered).
pub trait OnDay {
    fn on_day(&self) -> Day;
}

/// Entries in day order, shared between the snapshots of different days:
/// it derefs to the entries up to its day, so `iter`, `len` and
/// `is_empty` never see later ones. `as_of` makes an earlier view without
/// copying.
#[derive(Debug, Clone)]
pub struct DayLog<T> {
    items: Arc<Vec<T>>,
    /// How many of `items` this view sees.
    n: usize,
}

impl<T> Default for DayLog<T> {
    fn default() -> Self {
        DayLog {
            items: Arc::new(Vec::new()),
            n: 0,
        }
    }
}

impl<T> From<Vec<T>> for DayLog<T> {
    fn from(items: Vec<T>) -> Self {
        DayLog {
            n: items.len(),
            items: Arc::new(items),
        }
    }
}

impl<T> std::ops::Deref for DayLog<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.items[..self.n]
    }
}

impl<T: OnDay> DayLog<T> {
    /// The entries on or before `end`.
    pub fn as_of(&self, end: Day) -> DayLog<T> {
        DayLog {
            items: self.items.clone(),
            n: self.partition_point(|x| x.on_day() <= end),
        }
    }

    /// [`DayLog::as_of`], searched from `near`, a view of the same entries
    /// at a nearby day (see [`Series::as_of_near`]).
    pub fn as_of_near(&self, end: Day, near: &DayLog<T>) -> DayLog<T> {
        if !Arc::ptr_eq(&self.items, &near.items) {
            return self.as_of(end);
        }
        DayLog {
            items: near.items.clone(),
            n: seek(self, near.n, |x| x.on_day() <= end),
        }
    }
}

/// `items.partition_point(pred)`, searched from `hint`, galloping forward
/// or back.
/// Near the answer it reads a cache line or two, where a binary search over
/// a long history misses the cache at every step.
pub(crate) fn seek<T>(items: &[T], hint: usize, pred: impl Fn(&T) -> bool) -> usize {
    let hint = hint.min(items.len());
    if hint > 0 && !pred(&items[hint - 1]) {
        // Galloping back: everything from `hi` on fails `pred`.
        let (mut hi, mut step) = (hint - 1, 1);
        loop {
            if hi == 0 {
                return 0;
            }
            let probe = hi.saturating_sub(step);
            if pred(&items[probe]) {
                return probe + 1 + items[probe + 1..hi].partition_point(pred);
            }
            hi = probe;
            step *= 2;
        }
    }
    // Everything before `lo` satisfies `pred`.
    let (mut lo, mut step) = (hint, 1);
    loop {
        let probe = lo + step;
        if probe > items.len() || !pred(&items[probe - 1]) {
            let hi = if probe > items.len() {
                items.len()
            } else {
                probe - 1
            };
            return lo + items[lo..hi].partition_point(pred);
        }
        lo = probe;
        step *= 2;
    }
}

impl<T> DayLog<T> {
    /// The bytes its entries take on the heap (by capacity).
    pub(super) fn heap_bytes(&self) -> usize {
        self.items.capacity() * size_of::<T>()
    }
}

impl<T: Clone> DayLog<T> {
    /// Appends an entry; entries must come in day order.
    pub fn push(&mut self, item: T) {
        let items = Arc::make_mut(&mut self.items);
        items.truncate(self.n);
        items.push(item);
        self.n += 1;
    }
}

impl OnDay for (Day, u32) {
    fn on_day(&self) -> Day {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    #[test]
    fn seek_finds_the_partition_point_from_any_hint() {
        // Repeated days, gaps, empty: every end day and every hint.
        for days in [vec![], vec![5], vec![1, 2, 2, 2, 7, 9, 9, 30, 31, 32, 60]] {
            for end in -1..=70 {
                let want = days.partition_point(|d| *d <= end);
                for hint in 0..=days.len() + 2 {
                    assert_eq!(
                        seek(&days, hint, |d| *d <= end),
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
            let mut gaps: Vec<i32> = s.days().windows(2).map(|w| w[1] - w[0]).collect();
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

        let mut log: DayLog<(Day, u32)> = DayLog::default();
        for (k, date) in ["2026-01-01", "2026-01-10", "2026-01-20"]
            .iter()
            .enumerate()
        {
            log.push((day(d(date)), k as u32));
        }
        let early = log.as_of(cut);
        assert_eq!(early.len(), 2);
        assert!(early.iter().all(|x| x.0 <= cut));
        assert!(log.as_of(cut - 100).is_empty());
        assert_eq!(log.as_of(i32::MAX).len(), 3);
    }
}
