//! Metrics: per-account time series and windows, built once per evaluation.
//!
//! Reads the store (accounts with their attributes, credit limits and tier
//! overrides, daily order sums, order lines per SKU, visits, receivables,
//! inventory) up to an as-of date and builds an immutable `Snapshot`: per
//! account, prefix sums over daily order totals so any window (`revenue over
//! 90 days, 365 days back`) is two binary searches; the days each SKU was
//! ordered; visit dates and roles; open invoices; the stock cover of its main
//! SKUs; and the A/B/C tier from the trailing-12-month revenue share, now and
//! 30 days earlier. Book-level totals go in `Portfolio`. Rules read it;
//! nothing here writes anything. The extra reads live in `metrics/load.rs`.
//! The store is read into a `Timeline` (`metrics/timeline.rs`), whose
//! arrays the snapshots of any earlier day share as views ending at their
//! day (`Series::as_of`, `DayLog`): `build` derives one day, the backtest
//! every replayed day from one read.

use std::sync::Arc;

use anyhow::Result;
use chrono::{Datelike, NaiveDate};
use rusqlite::Connection;

use crate::config::TierConfig;
use crate::store;

pub mod live;
mod load;
mod timeline;

pub use live::Live;
pub use timeline::{Parts, Reuse, Timeline};

/// Day numbers (days since 0001-01-01) and their dates: plain values of
/// the model.
pub use crate::model::dates::{Day, date_of, day};

/// How many days back the previous tier is computed.
pub const PREV_TIER_DAYS: i32 = 30;
/// How many of an account's SKUs (by trailing-12-month revenue) are "main".
pub const MAIN_SKUS: usize = 3;
/// The window over which daily demand for stock cover is averaged.
pub const DEMAND_DAYS: i32 = 90;

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
    orders: Vec<f64>,
}

impl Series {
    /// Appends a day; days must come in increasing order.
    pub fn push(&mut self, d: &store::OrderDay) {
        let n = self.n;
        let s = Arc::make_mut(&mut self.data);
        // A view that ended earlier forgets what it did not see.
        s.days.truncate(n);
        for v in [&mut s.revenue, &mut s.cost, &mut s.qty, &mut s.orders] {
            v.truncate(n + 1);
            if v.is_empty() {
                v.push(0.0);
            }
        }
        s.days.push(day(d.date));
        let last = |v: &Vec<f64>| *v.last().unwrap_or(&0.0);
        s.revenue.push(last(&s.revenue) + d.revenue);
        s.cost.push(last(&s.cost) + d.cost);
        s.qty.push(last(&s.qty) + d.qty);
        s.orders.push(last(&s.orders) + f64::from(d.orders));
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

    /// The days this view sees and their prefix sums, one line each.
    fn dump(&self, name: &str, o: &mut String) {
        use std::fmt::Write as _;
        let s = &self.data;
        for (i, d) in self.days().iter().enumerate() {
            let _ = writeln!(
                o,
                "{name} {d} {:?} {:?} {:?} {:?}",
                s.revenue[i + 1],
                s.cost[i + 1],
                s.qty[i + 1],
                s.orders[i + 1]
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
                    diff(&s.orders),
                ],
            );
        }
    }

    /// Sum of `m` over the days in `(end - len, end]`.
    pub fn sum(&self, m: Measure, end: Day, len: i32) -> f64 {
        self.window(end, len).map_or(0.0, |(lo, hi)| {
            let p = self.prefix(m);
            p[hi] - p[lo]
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

    fn prefix(&self, m: Measure) -> &[f64] {
        match m {
            Measure::Revenue => &self.data.revenue,
            Measure::Cost => &self.data.cost,
            Measure::Qty => &self.data.qty,
            Measure::Orders => &self.data.orders,
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

impl<T: Clone> DayLog<T> {
    /// Appends an entry; entries must come in day order.
    pub fn push(&mut self, item: T) {
        let items = Arc::make_mut(&mut self.items);
        items.truncate(self.n);
        items.push(item);
        self.n += 1;
    }
}

impl OnDay for Visit {
    fn on_day(&self) -> Day {
        self.day
    }
}

impl OnDay for (Day, u32) {
    fn on_day(&self) -> Day {
        self.0
    }
}

/// A windowed figure of an account (or of the book), by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Revenue,
    Cost,
    GrossProfit,
    /// Gross margin %, 0 when the window has no revenue.
    MarginPct,
    Orders,
    Qty,
    /// Distinct SKUs ordered.
    Skus,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::Revenue,
        Metric::Cost,
        Metric::GrossProfit,
        Metric::MarginPct,
        Metric::Orders,
        Metric::Qty,
        Metric::Skus,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Revenue => "revenue",
            Metric::Cost => "cost",
            Metric::GrossProfit => "gross_profit",
            Metric::MarginPct => "margin_pct",
            Metric::Orders => "orders",
            Metric::Qty => "qty",
            Metric::Skus => "skus",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Metric::Revenue => "revenue (sum of order-line amounts)",
            Metric::Cost => "cost of goods sold",
            Metric::GrossProfit => "gross profit (revenue - cost)",
            Metric::MarginPct => {
                "gross margin % ((revenue - cost) / revenue x 100; 0 without revenue)"
            }
            Metric::Orders => "number of distinct orders",
            Metric::Qty => "quantity ordered",
            Metric::Skus => "number of distinct SKUs ordered",
        }
    }
}

/// Windowed sums of a series.
fn series_metric(s: &Series, m: Metric, end: Day, len: i32) -> f64 {
    match m {
        Metric::Revenue => s.sum(Measure::Revenue, end, len),
        Metric::Cost => s.sum(Measure::Cost, end, len),
        Metric::Qty => s.sum(Measure::Qty, end, len),
        Metric::Orders => s.sum(Measure::Orders, end, len),
        Metric::GrossProfit => {
            let (rev, cost) = s.revenue_cost(end, len);
            rev - cost
        }
        Metric::MarginPct => {
            let (rev, cost) = s.revenue_cost(end, len);
            if rev.abs() < f64::EPSILON {
                0.0
            } else {
                (rev - cost) / rev * 100.0
            }
        }
        Metric::Skus => 0.0,
    }
}

/// The `n` most recent complete calendar months before `end` (the month of
/// `end` counts when `end` is its last day), oldest first, as (last day,
/// length in days).
pub fn complete_months(end: Day, n: usize) -> Vec<(Day, i32)> {
    let d = date_of(end);
    let mut last = if date_of(end + 1).month() != d.month() {
        d
    } else {
        d.with_day(1).unwrap_or(d).pred_opt().unwrap_or(d)
    };
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let first = last.with_day(1).unwrap_or(last);
        out.push((day(last), day(last) - day(first) + 1));
        last = first.pred_opt().unwrap_or(first);
    }
    out.reverse();
    out
}

/// The first day of the calendar quarter that holds `end`.
pub fn quarter_start(end: Day) -> Day {
    let d = date_of(end);
    let month = (d.month0() / 3) * 3 + 1;
    NaiveDate::from_ymd_opt(d.year(), month, 1).map_or(end, day)
}

/// One visit: its day and the visitor's role as exported, by number (8
/// bytes: a large book has tens of millions of visits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visit {
    pub day: Day,
    /// 1 + the role's place in the account's `roles`; 0: no role.
    pub role: u32,
}

/// The visitors' roles as exported; a visit names its role by its place here.
pub type Roles = Arc<Vec<Arc<str>>>;

/// One open invoice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Invoice {
    pub amount: f64,
    pub due: Day,
}

/// Stock cover of one of an account's main SKUs.
#[derive(Debug, Clone, PartialEq)]
pub struct StockCover {
    pub sku: String,
    /// Stock on hand: held for this account if the inventory names it,
    /// otherwise the warehouse stock of the SKU.
    pub on_hand: f64,
    /// Average daily quantity over the last `DEMAND_DAYS` days: the
    /// account's own when the stock is held for it, the whole book's when
    /// the stock is the warehouse's.
    pub daily_qty: f64,
    /// `on_hand / daily_qty`; -1 when there was no demand.
    pub days: f64,
    /// True when the stock is held for this account.
    pub dedicated: bool,
}

/// Everything a rule may read about one account.
#[derive(Debug)]
pub struct AccountMetrics {
    pub id: String,
    pub name: String,
    pub region: String,
    pub owner: String,
    pub owner_email: Option<String>,
    pub manager_email: Option<String>,
    /// The manager's name from the master; empty when it has none.
    pub manager: String,
    /// "A", "B" or "C".
    pub tier: &'static str,
    /// The tier as of `PREV_TIER_DAYS` days earlier, from the same series.
    pub prev_tier: &'static str,
    /// Rank by trailing-12-month revenue, 1 = largest.
    pub rank: usize,
    /// Share of the book's trailing-12-month revenue, 0..1.
    pub share: f64,
    /// Share held by the accounts ranked above this one, 0..1: the
    /// account is tier A while this is below `tiers.a_share` (the account
    /// that crosses the line belongs to A).
    pub share_above: f64,
    /// The book's tiers on earlier days, and this account's place in it.
    pub history: Option<(Arc<TierHistory>, usize)>,
    pub revenue_12m: f64,
    pub series: Series,
    /// (day, SKU index into `Snapshot::skus`), by day, one entry per SKU a day.
    pub sku_days: DayLog<(Day, u32)>,
    /// Visits in date order.
    pub visits: DayLog<Visit>,
    /// The role names the visits' numbers point at (shared by every account).
    pub roles: Roles,
    /// The master's extra columns (`accounts.attrs`), as exported; shared
    /// by the snapshots of every day.
    pub attrs: Arc<serde_json::Map<String, serde_json::Value>>,
    /// The credit limit from the master, if any.
    pub credit_limit: Option<f64>,
    /// Open invoices issued on or before the as-of date.
    pub invoices: Vec<Invoice>,
    /// The main SKUs (by trailing-12-month revenue, at most `MAIN_SKUS`),
    /// largest first, with their stock cover where the inventory knows them.
    pub main_skus: Vec<String>,
    pub stock: Vec<StockCover>,
}

/// How far back [`TierHistory`] answers, in days.
pub const TIER_HISTORY_DAYS: usize = 731;

/// The tier and share-above of every active account on the days before a
/// snapshot's, each day ranked on first use from the same series (at most
/// once per snapshot: rules on every thread share it). Accounts are by
/// their index in the timeline (id order).
pub struct TierHistory {
    end: Day,
    tiers: TierConfig,
    series: Vec<Series>,
    overrides: Vec<Option<&'static str>>,
    /// Orders of accounts not active in the master: they count in the total.
    others: Vec<Series>,
    /// By days ago: (tier, share above) by account index.
    days: Vec<std::sync::OnceLock<Vec<(&'static str, f64)>>>,
    /// The end day ranked by trailing-12-month gross profit instead, on
    /// first use: (tier, share of the book's gross profit above).
    by_gross_profit: std::sync::OnceLock<Vec<(&'static str, f64)>>,
}

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
        overrides: Vec<Option<&'static str>>,
        others: Vec<Series>,
    ) -> TierHistory {
        let days = (0..TIER_HISTORY_DAYS)
            .map(|_| std::sync::OnceLock::new())
            .collect();
        TierHistory {
            end,
            tiers: tiers.clone(),
            series,
            overrides,
            others,
            days,
            by_gross_profit: std::sync::OnceLock::new(),
        }
    }

    /// Account `i`'s (tier, share above) at the end day when the book is
    /// ranked by trailing-12-month gross profit (revenue - cost) with the
    /// same lines; an account without gross profit is C. The master's
    /// tier column does not apply. None for an unknown account.
    pub fn by_gross_profit(&self, i: usize) -> Option<(&'static str, f64)> {
        let gp = |s: &Series| {
            s.sum(Measure::Revenue, self.end, 365) - s.sum(Measure::Cost, self.end, 365)
        };
        self.by_gross_profit
            .get_or_init(|| {
                let own: Vec<f64> = self.series.iter().map(gp).collect();
                let others: f64 = self.others.iter().map(gp).sum();
                rank_tiers(&own, others, &self.tiers)
            })
            .get(i)
            .copied()
    }

    /// Sets a day already ranked (`days_ago`: (tier, share above) by
    /// account index); a day already set keeps its value.
    pub fn seed(&self, days_ago: usize, ranked: Vec<(&'static str, f64)>) {
        if let Some(slot) = self.days.get(days_ago) {
            let _ = slot.set(ranked);
        }
    }

    /// Account `i`'s (tier, share above) `days_ago` days before the end;
    /// None beyond [`TIER_HISTORY_DAYS`] or for an unknown account.
    pub fn at(&self, i: usize, days_ago: i64) -> Option<(&'static str, f64)> {
        let k = usize::try_from(days_ago).ok()?;
        let slot = self.days.get(k)?;
        let day = self.end - k as i32;
        slot.get_or_init(|| {
            let revenue: Vec<f64> = self
                .series
                .iter()
                .map(|s| s.sum(Measure::Revenue, day, 365))
                .collect();
            let others: f64 = self
                .others
                .iter()
                .map(|s| s.sum(Measure::Revenue, day, 365))
                .sum();
            let mut out = rank_tiers(&revenue, others, &self.tiers);
            for (t, o) in out.iter_mut().zip(&self.overrides) {
                if let Some(o) = o {
                    t.0 = o;
                }
            }
            out
        })
        .get(i)
        .copied()
    }
}

/// Tiers and shares above by account, from each account's trailing-12-
/// month revenue (in account order) and the revenue of accounts not
/// ranked: largest first, ties in account order, as the snapshot ranks.
pub fn rank_tiers(revenue: &[f64], others: f64, tiers: &TierConfig) -> Vec<(&'static str, f64)> {
    let finite = |t: f64| if t.is_finite() { t } else { 0.0 };
    let total = finite(revenue.iter().sum::<f64>() + others);
    let mut order: Vec<(f64, usize)> = revenue.iter().copied().zip(0..).collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0));
    let sorted: Vec<f64> = order.iter().map(|a| a.0).collect();
    let assigned = assign_tiers(&sorted, total, tiers);
    let mut out = vec![("C", 1.0); revenue.len()];
    let mut above = 0.0;
    for ((rev, i), t) in order.into_iter().zip(assigned) {
        out[i] = (t, if total > 0.0 { above } else { 1.0 });
        if total > 0.0 {
            above += rev / total;
        }
    }
    out
}

/// Book-level totals.
#[derive(Debug, Default, Clone)]
pub struct Portfolio {
    pub accounts: usize,
    pub revenue_12m: f64,
    pub tier_a: usize,
    pub tier_b: usize,
    pub tier_c: usize,
    /// Daily totals of every order, including accounts missing from the master.
    pub series: Series,
    /// How many active accounts have each kind of data of [`DATA_KINDS`]
    /// (in that order) as of the day.
    pub with_data: [usize; 5],
    /// The tier lines the book was ranked with (`tiers.a_share`, `b_share`).
    pub a_share: f64,
    pub b_share: f64,
    /// The trailing-12-month revenue of the smallest account ranked into
    /// A and into B by revenue (a tier column in the master aside); 0 when
    /// the tier is empty. An account with more than this ranks into the
    /// tier, the others' revenue held as it is.
    pub floor_a: f64,
    pub floor_b: f64,
}

/// The kinds of data an account may have, as rules name them (`needs`,
/// `portfolio.accounts_with`); bit `1 << i` in [`AccountMetrics::data_bits`].
pub const DATA_KINDS: [&str; 5] = ["orders", "visits", "receivables", "credit_limit", "stock"];

impl Portfolio {
    pub fn metric(&self, m: Metric, end: Day, len: i64, offset: i64) -> f64 {
        let (len, offset) = clamp_window(len, offset);
        series_metric(&self.series, m, end - offset, len)
    }

    /// Active accounts with data of `kind` (one of [`DATA_KINDS`]); None
    /// for another name.
    pub fn accounts_with(&self, kind: &str) -> Option<usize> {
        DATA_KINDS
            .iter()
            .position(|k| *k == kind)
            .map(|i| self.with_data[i])
    }

    /// Counts `m`'s kinds of data into `with_data`.
    pub fn count_data(&mut self, m: &AccountMetrics) {
        let bits = m.data_bits();
        for (i, n) in self.with_data.iter_mut().enumerate() {
            *n += usize::from(bits & (1 << i) != 0);
        }
    }

    /// The kinds of data some active account has, as bits.
    pub fn data_bits(&self) -> u8 {
        self.with_data
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .fold(0, |b, (i, _)| b | (1 << i))
    }

    /// [`Portfolio::floor_a`] or `floor_b`; None for another tier.
    pub fn tier_floor(&self, tier: &str) -> Option<f64> {
        match tier {
            "A" => Some(self.floor_a),
            "B" => Some(self.floor_b),
            _ => None,
        }
    }

    pub fn tier_count(&self, tier: &str) -> usize {
        match tier {
            "A" => self.tier_a,
            "B" => self.tier_b,
            "C" => self.tier_c,
            _ => 0,
        }
    }
}

/// All accounts as of one date.
#[derive(Debug)]
pub struct Snapshot {
    pub as_of: NaiveDate,
    pub accounts: Vec<Arc<AccountMetrics>>,
    pub portfolio: Arc<Portfolio>,
    /// Account ids that have orders but are missing from the master.
    pub unknown_accounts: usize,
    /// SKU names, indexed by the numbers in `AccountMetrics::sku_days`.
    pub skus: Arc<Vec<String>>,
}

impl Snapshot {
    pub fn end(&self) -> Day {
        day(self.as_of)
    }

    pub fn find(&self, id: &str) -> Option<&Arc<AccountMetrics>> {
        self.accounts.iter().find(|a| a.id == id)
    }
}

/// Tiers for accounts sorted by revenue, largest first: cumulative share up
/// to `a_share` is A, up to `b_share` B, the rest (and anyone without
/// revenue) C. The account that crosses a threshold still belongs to the tier.
pub fn assign_tiers(revenues: &[f64], total: f64, tiers: &TierConfig) -> Vec<&'static str> {
    let mut cumulative = 0.0;
    revenues
        .iter()
        .map(|rev| {
            let tier = if *rev <= 0.0 {
                "C"
            } else if cumulative < tiers.a_share {
                "A"
            } else if cumulative < tiers.b_share {
                "B"
            } else {
                "C"
            };
            if total > 0.0 {
                cumulative += rev / total;
            }
            tier
        })
        .collect()
}

fn parse_tier(t: &str) -> Option<&'static str> {
    match t.trim().to_ascii_uppercase().as_str() {
        "A" => Some("A"),
        "B" => Some("B"),
        "C" => Some("C"),
        _ => None,
    }
}

fn clamp_window(len: i64, offset: i64) -> (i32, i32) {
    (
        len.clamp(0, 100_000) as i32,
        offset.clamp(0, 100_000) as i32,
    )
}

/// Everything a snapshot holds, as text, one fact a line, every number to
/// the bit (`{:?}` of an f64 is the shortest text that reads back to the
/// same bits); SKUs by name, not by their number in this load. Two
/// snapshots are the same when their dumps are.
pub fn dump(snap: &Snapshot) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let sku = |k: u32| snap.skus.get(k as usize).map_or("?", String::as_str);
    let _ = writeln!(o, "as_of {} unknown {}", snap.as_of, snap.unknown_accounts);
    let p = &snap.portfolio;
    let _ = writeln!(
        o,
        "portfolio accounts {} revenue_12m {:?} tiers {} {} {} lines {:?} {:?} with data {:?}",
        p.accounts, p.revenue_12m, p.tier_a, p.tier_b, p.tier_c, p.a_share, p.b_share, p.with_data
    );
    p.series.dump("portfolio", &mut o);
    for a in &snap.accounts {
        let _ = writeln!(
            o,
            "account {:?} {:?} {:?} {:?} {:?} {:?} {:?} tier {} prev {} rank {} share {:?} above {:?} revenue_12m {:?} credit {:?}",
            a.id,
            a.name,
            a.region,
            a.owner,
            a.owner_email,
            a.manager_email,
            a.manager,
            a.tier,
            a.prev_tier,
            a.rank,
            a.share,
            a.share_above,
            a.revenue_12m,
            a.credit_limit
        );
        // The tiers of earlier days the rules may ask for, 30 days apart.
        for k in (30..=210).step_by(30) {
            let (t, above) = a.tier_ago(k);
            let _ = writeln!(o, " tier {k} days ago {t} above {above:?}");
        }
        a.series.dump(" series", &mut o);
        for (d, k) in a.sku_days.iter() {
            let _ = writeln!(o, " sku {d} {:?}", sku(*k));
        }
        for v in a.visits.iter() {
            let _ = writeln!(o, " visit {} {:?}", v.day, a.role_name(v.role));
        }
        let _ = writeln!(
            o,
            " attrs {}",
            serde_json::Value::Object((*a.attrs).clone())
        );
        for i in &a.invoices {
            let _ = writeln!(o, " invoice {:?} {}", i.amount, i.due);
        }
        let _ = writeln!(o, " main {:?}", a.main_skus);
        for s in &a.stock {
            let _ = writeln!(o, " stock {s:?}");
        }
    }
    o
}

/// Builds the snapshot of every active account as of `as_of` (inclusive).
pub fn build(conn: &Connection, as_of: NaiveDate, tiers: &TierConfig) -> Result<Snapshot> {
    Ok(Timeline::load(conn, as_of)?.snapshot(as_of, tiers))
}

/// Whether a visit's role is one of `codes` (None: any visit; see
/// `AccountMetrics::role_codes`: the exported role is compared trimmed, so
/// "销售总监 " is a 销售总监).
fn role_matches(v: &Visit, codes: Option<&[u32]>) -> bool {
    codes.is_none_or(|c| c.contains(&v.role))
}

impl AccountMetrics {
    /// An account with no history, tier C (tests and benchmarks build on it).
    pub fn empty(id: &str, name: &str) -> AccountMetrics {
        AccountMetrics {
            id: id.to_string(),
            name: name.to_string(),
            region: String::new(),
            owner: String::new(),
            owner_email: None,
            manager_email: None,
            manager: String::new(),
            tier: "C",
            prev_tier: "C",
            rank: 1,
            share: 0.0,
            share_above: 0.0,
            history: None,
            revenue_12m: 0.0,
            series: Series::default(),
            sku_days: DayLog::default(),
            visits: DayLog::default(),
            roles: Roles::default(),
            attrs: Arc::default(),
            credit_limit: None,
            invoices: Vec::new(),
            main_skus: Vec::new(),
            stock: Vec::new(),
        }
    }

    /// The account's (tier, share above) `days_ago` days before `end`
    /// (0..[`TIER_HISTORY_DAYS`]); today's for an account built without a
    /// history (tests, benchmarks).
    pub fn tier_ago(&self, days_ago: i64) -> (&'static str, f64) {
        match &self.history {
            Some((h, i)) => h
                .at(*i, days_ago.clamp(0, TIER_HISTORY_DAYS as i64 - 1))
                .unwrap_or((self.tier, self.share_above)),
            None => (self.tier, self.share_above),
        }
    }

    /// The account's (tier, share above) with the book ranked by trailing-
    /// 12-month gross profit ([`TierHistory::by_gross_profit`]); today's
    /// revenue tier for an account built without a history.
    pub fn gross_profit_tier(&self) -> (&'static str, f64) {
        match &self.history {
            Some((h, i)) => h
                .by_gross_profit(*i)
                .unwrap_or((self.tier, self.share_above)),
            None => (self.tier, self.share_above),
        }
    }

    /// Which of the [`DATA_KINDS`] the account has, as bits: orders, a
    /// visit, an open invoice, a credit limit, stock of a main SKU.
    pub fn data_bits(&self) -> u8 {
        let mut b = 0;
        if self.series.first_day().is_some() {
            b |= 1;
        }
        if !self.visits.is_empty() {
            b |= 2;
        }
        if !self.invoices.is_empty() {
            b |= 4;
        }
        if self.credit_limit.is_some_and(|l| l > 0.0) {
            b |= 8;
        }
        if !self.stock.is_empty() {
            b |= 16;
        }
        b
    }

    /// Sum over `len` days ending `offset` days before `end`.
    pub fn window(&self, m: Measure, end: Day, len: i64, offset: i64) -> f64 {
        let (len, offset) = clamp_window(len, offset);
        self.series.sum(m, end - offset, len)
    }

    /// Gross margin % over a window; 0 when there was no revenue.
    pub fn margin_pct(&self, end: Day, len: i64, offset: i64) -> f64 {
        self.metric(Metric::MarginPct, end, len, offset)
    }

    /// Any windowed metric over `len` days ending `offset` days before `end`.
    pub fn metric(&self, m: Metric, end: Day, len: i64, offset: i64) -> f64 {
        let (len, offset) = clamp_window(len, offset);
        if m == Metric::Skus {
            return self.distinct_skus(end - offset, len) as f64;
        }
        series_metric(&self.series, m, end - offset, len)
    }

    /// Distinct SKUs ordered in `(end - len, end]`.
    pub fn distinct_skus(&self, end: Day, len: i32) -> usize {
        let hi = self.sku_days.partition_point(|d| d.0 <= end);
        let lo = self.sku_days.partition_point(|d| d.0 <= end - len);
        if hi <= lo {
            return 0;
        }
        let mut seen: Vec<u32> = self.sku_days[lo..hi].iter().map(|d| d.1).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    /// `metric` for each of the `n` most recent complete months, oldest first.
    pub fn monthly(&self, m: Metric, end: Day, n: i64) -> Vec<f64> {
        complete_months(end, n.clamp(0, 120) as usize)
            .into_iter()
            .map(|(last, len)| self.metric(m, last, i64::from(len), 0))
            .collect()
    }

    pub fn days_since_last_order(&self, end: Day) -> Option<i64> {
        self.series.last_day(end).map(|d| i64::from(end - d))
    }

    /// Orders up to and including `end`.
    pub fn order_count(&self, end: Day) -> i64 {
        self.series.sum(Measure::Orders, end, 1_000_000) as i64
    }

    /// The numbers visits give the roles in `roles` (each exported role,
    /// trimmed, equal to one of them, trimmed); None: any visit.
    fn role_codes(&self, roles: Option<&[&str]>) -> Option<Vec<u32>> {
        let rs = roles?;
        Some(
            self.roles
                .iter()
                .zip(1u32..)
                .filter(|(r, _)| rs.iter().any(|want| r.trim() == want.trim()))
                .map(|(_, c)| c)
                .collect(),
        )
    }

    /// The role a visit's number names.
    pub fn role_name(&self, code: u32) -> Option<&str> {
        code.checked_sub(1)
            .and_then(|k| self.roles.get(k as usize))
            .map(|r| &**r)
    }

    /// Days since the last visit; with `roles`, only visits by one of
    /// those roles (the exported role, trimmed, equal to one of them).
    pub fn days_since_last_visit(&self, end: Day, roles: Option<&[&str]>) -> Option<i64> {
        let codes = self.role_codes(roles);
        self.visits
            .iter()
            .rev()
            .filter(|v| v.day <= end)
            .find(|v| role_matches(v, codes.as_deref()))
            .map(|v| i64::from(end - v.day))
    }

    /// Visits in `(end - len, end]`.
    pub fn visits_in(&self, end: Day, len: i64) -> i64 {
        self.visits_by_in(end, len, None)
    }

    /// Visits in `(end - len, end]`, with `roles` only by one of them.
    pub fn visits_by_in(&self, end: Day, len: i64, roles: Option<&[&str]>) -> i64 {
        let codes = self.role_codes(roles);
        let len = len.clamp(0, 100_000) as i32;
        // Visits are in day order: the window by two searches, not a scan
        // of the whole history.
        let hi = seek(&self.visits, self.visits.len(), |v| v.day <= end);
        let lo = seek(&self.visits[..hi], hi, |v| v.day <= end - len);
        self.visits[lo..hi]
            .iter()
            .filter(|v| role_matches(v, codes.as_deref()))
            .count() as i64
    }

    /// Open invoices: the total amount.
    pub fn receivables(&self) -> f64 {
        self.invoices.iter().map(|i| i.amount).sum()
    }

    /// The amount of invoices past their due date at `end`.
    pub fn overdue_amount(&self, end: Day) -> f64 {
        self.overdue_between(end, 1, i64::MAX)
    }

    /// The amount of invoices overdue at `end` by `from` to `to` days
    /// (both included; an invoice due yesterday is 1 day overdue).
    pub fn overdue_between(&self, end: Day, from: i64, to: i64) -> f64 {
        let from = from.max(1);
        self.invoices
            .iter()
            .filter(|i| {
                let late = i64::from(end) - i64::from(i.due);
                late >= from && late <= to
            })
            .fold(0.0, |sum, i| sum + i.amount)
    }

    /// Days the oldest invoice overdue by at least `from` days is past
    /// due; 0 when none is.
    pub fn days_overdue_from(&self, end: Day, from: i64) -> i64 {
        self.invoices
            .iter()
            .filter(|i| i.amount > 0.0)
            .map(|i| i64::from(end) - i64::from(i.due))
            .filter(|late| *late >= from.max(1))
            .max()
            .unwrap_or(0)
    }

    /// Days the oldest overdue invoice is past due; 0 when none is.
    pub fn days_overdue(&self, end: Day) -> i64 {
        self.days_overdue_from(end, 1)
    }

    /// Open receivables as % of the credit limit; None without a limit.
    pub fn credit_used_pct(&self) -> Option<f64> {
        self.credit_limit
            .filter(|l| *l > 0.0)
            .map(|l| self.receivables() / l * 100.0)
    }
}

#[cfg(test)]
mod tests {
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

#[cfg(test)]
mod build_tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// A real database with two accounts: BIG ordered until 40 days ago,
    /// SMALL keeps ordering; BIG's stock and invoices are known.
    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = store::open(&dir.path().join("k.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO accounts (id, name, active, updated_at, attrs, credit_limit) VALUES
               ('BIG', '大客户', 1, 'x', '{\"渠道\": \"KA\", \"门店数\": 12}', 1000),
               ('SMALL', '小客户', 1, 'x', NULL, NULL);
             INSERT INTO receivables (account_id, invoice, amount, due_date, invoice_date) VALUES
               ('BIG', 'I1', 300, '2026-10-01', '2026-09-01'),
               ('BIG', 'I2', 500, '2026-12-31', '2026-11-01'),
               ('BIG', 'I3', 999, '2026-12-31', '2026-12-15');
             INSERT INTO inventory (sku, account_id, on_hand) VALUES ('S1', '', 900), ('S2', 'BIG', 30);",
        )
        .unwrap();
        let mut n = 0;
        let mut order = |acc: &str, date: NaiveDate, sku: &str, rev: f64| {
            n += 1;
            conn.execute(
                "INSERT INTO orders (order_id, line, account_id, date, sku, qty, revenue, cost)
                 VALUES (?1, '1', ?2, ?3, ?4, 3, ?5, ?6)",
                rusqlite::params![
                    format!("O{n}"),
                    acc,
                    store::date_text(date),
                    sku,
                    rev,
                    rev * 0.75
                ],
            )
            .unwrap();
        };
        let mut day0 = d("2025-12-01");
        let mut i = 0;
        while day0 <= d("2026-11-30") {
            if day0 <= d("2026-10-20") {
                order("BIG", day0, if i % 2 == 0 { "S1" } else { "S2" }, 10_000.0);
            }
            i += 1;
            order("SMALL", day0, "S1", 1_000.0);
            day0 += chrono::TimeDelta::days(10);
        }
        (dir, conn)
    }

    #[test]
    fn snapshot_reads_every_dataset() {
        let (_dir, conn) = db();
        let snap = build(&conn, d("2026-11-30"), &TierConfig::default()).unwrap();
        let big = snap.find("BIG").unwrap().clone();
        let small = snap.find("SMALL").unwrap();
        assert_eq!((big.tier, small.tier), ("A", "B"));
        // 30 days earlier BIG was still tier A; SMALL was C then (cumulative
        // share before it was already past b_share).
        assert_eq!(big.prev_tier, "A");
        assert_eq!(big.attrs["渠道"], "KA");
        assert_eq!(big.credit_limit, Some(1000.0));
        // I3 was issued after the as-of date: not yet open.
        assert_eq!(big.receivables(), 800.0);
        let end = snap.end();
        assert_eq!(big.overdue_amount(end), 300.0);
        assert_eq!(big.days_overdue(end), 60);
        assert_eq!(big.credit_used_pct(), Some(80.0));
        assert_eq!(big.metric(Metric::Skus, end, 365, 0), 2.0);
        assert_eq!(small.metric(Metric::Skus, end, 365, 0), 1.0);
        assert_eq!(big.metric(Metric::MarginPct, end, 365, 0), 25.0);
        assert_eq!(big.main_skus.len(), 2);
        // S2 is held for BIG: 30 on hand against BIG's own demand.
        let s2 = big.stock.iter().find(|s| s.sku == "S2").unwrap();
        assert!(s2.dedicated);
        assert_eq!(s2.on_hand, 30.0);
        // S1 is warehouse stock against the whole book's demand.
        let s1 = big.stock.iter().find(|s| s.sku == "S1").unwrap();
        assert!(!s1.dedicated);
        // 9 lines of SMALL and 3 of BIG, 3 each, in the last 90 days.
        let book_qty = 3.0 * (9.0 + 3.0) / f64::from(DEMAND_DAYS);
        assert!((s1.daily_qty - book_qty).abs() < 1e-9, "{}", s1.daily_qty);
        assert!((s1.days - 900.0 / book_qty).abs() < 1e-6);
        assert_eq!(big.days_since_last_order(end), Some(44)); // 2026-10-17
        assert_eq!(snap.portfolio.accounts, 2);
        assert!(snap.portfolio.metric(Metric::Revenue, end, 30, 0) > 0.0);
        let months = big.monthly(Metric::Revenue, end, 12);
        assert_eq!(months.len(), 12);
        assert_eq!(months[11], 0.0, "no order in November");
        assert!(months[0] > 0.0, "orders in December 2025");
    }

    #[test]
    fn tier_history_is_the_snapshot_of_that_day() {
        // BIG stopped ordering on 2026-10-20: its share falls day by day.
        let (_dir, conn) = db();
        let tiers = TierConfig::default();
        let snap = build(&conn, d("2026-11-30"), &tiers).unwrap();
        for k in [0, 1, 29, 30, 31, 45, 90, 200, 365, 400] {
            let then = build(&conn, d("2026-11-30") - chrono::Duration::days(k), &tiers).unwrap();
            for id in ["BIG", "SMALL"] {
                let a = snap.find(id).unwrap();
                let b = then.find(id).unwrap();
                assert_eq!(a.tier_ago(k), (b.tier, b.share_above), "{id} {k} days ago");
            }
        }
        let big = snap.find("BIG").unwrap();
        assert_eq!(big.tier_ago(30).0, big.prev_tier);
        assert_eq!(big.share_above, 0.0, "the largest has nobody above");
        let small = snap.find("SMALL").unwrap();
        assert!((small.share_above - big.share).abs() < 1e-12);
        // Beyond the history: the oldest day it keeps.
        assert_eq!(
            big.tier_ago(100_000),
            big.tier_ago(TIER_HISTORY_DAYS as i64 - 1)
        );
    }

    #[test]
    fn tier_override_wins_and_bad_attrs_are_ignored() {
        let (_dir, conn) = db();
        conn.execute_batch(
            "UPDATE accounts SET tier_override = 'c', attrs = 'not json' WHERE id = 'BIG'",
        )
        .unwrap();
        let snap = build(&conn, d("2026-11-30"), &TierConfig::default()).unwrap();
        let big = snap.find("BIG").unwrap();
        assert_eq!((big.tier, big.prev_tier), ("C", "C"));
        assert!(big.attrs.is_empty());
    }

    #[test]
    fn daily_sums_count_orders_not_lines() {
        let dir = tempfile::tempdir().unwrap();
        let conn = store::open(&dir.path().join("k.db")).unwrap();
        // On 11-02: order A with three lines (two of SKU S1, one without a
        // SKU) and order B with one; the order ids interleave with account
        // Y's, and one line lies after the as-of date.
        conn.execute_batch(
            "INSERT INTO accounts (id, name, active, updated_at) VALUES ('X', 'x', 1, 'x'), ('Y', 'y', 1, 'x');
             INSERT INTO orders (order_id, line, account_id, date, sku, qty, revenue, cost) VALUES
               ('A', '1', 'X', '2026-11-02', 'S1', 1, 100, 60),
               ('A', '2', 'X', '2026-11-02', 'S1', 2, 50, 30),
               ('A', '3', 'X', '2026-11-02', NULL, NULL, 10, 10),
               ('AB', '1', 'Y', '2026-11-02', 'S2', 5, 7, 1),
               ('B', '1', 'X', '2026-11-02', 'S2', 4, 40, 20),
               ('C', '1', 'X', '2026-11-05', '', 1, 5, 5),
               ('D', '1', 'X', '2026-12-01', 'S1', 9, 999, 0);",
        )
        .unwrap();
        let snap = build(&conn, d("2026-11-30"), &TierConfig::default()).unwrap();
        let x = snap.find("X").unwrap();
        let end = snap.end();
        let nov2 = day(d("2026-11-02"));
        assert_eq!(x.series.sum(Measure::Orders, nov2, 1), 2.0);
        assert_eq!(x.series.sum(Measure::Revenue, nov2, 1), 200.0);
        assert_eq!(x.series.sum(Measure::Cost, nov2, 1), 120.0);
        assert_eq!(x.series.sum(Measure::Qty, nov2, 1), 7.0);
        // The 12-01 line is after the as-of date.
        assert_eq!(x.series.sum(Measure::Revenue, end, 365), 205.0);
        assert_eq!(x.order_count(end), 3);
        assert_eq!(x.metric(Metric::Skus, end, 365, 0), 2.0);
        assert_eq!(x.sku_days.len(), 2, "one entry per day and SKU");
        assert_eq!(x.main_skus, vec!["S1".to_string(), "S2".to_string()]);
        // The book adds Y's order on the same day.
        assert_eq!(snap.portfolio.series.sum(Measure::Orders, nov2, 1), 3.0);
        assert_eq!(snap.portfolio.series.sum(Measure::Revenue, end, 365), 212.0);
    }

    #[test]
    fn calendar_helpers() {
        let end = day(d("2026-11-28"));
        assert_eq!(date_of(quarter_start(end)), d("2026-10-01"));
        let m = complete_months(end, 2);
        assert_eq!(
            m,
            vec![(day(d("2026-09-30")), 30), (day(d("2026-10-31")), 31)]
        );
        let m = complete_months(day(d("2026-10-31")), 1);
        assert_eq!(m, vec![(day(d("2026-10-31")), 31)]);
    }
}

#[cfg(test)]
pub mod tests_support {
    use super::*;

    /// A snapshot with one account and no history.
    pub fn snapshot_one() -> Snapshot {
        Snapshot {
            as_of: NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(),
            accounts: vec![Arc::new(AccountMetrics {
                tier: "A",
                prev_tier: "A",
                share: 1.0,
                ..AccountMetrics::empty("KH1", "测试")
            })],
            portfolio: Arc::new(Portfolio::default()),
            unknown_accounts: 0,
            skus: Arc::new(Vec::new()),
        }
    }
}
