//! One account's metrics: `AccountMetrics`, everything a rule may read
//! about an account (windows over its series, visits by role, open
//! invoices, stock cover, its tier now and on earlier days), and the named
//! windowed figures (`Metric`). Touches nothing but the snapshot's memory.

use std::sync::Arc;

use super::calendar::complete_months;
use super::compact::{Column, Table, Values, fold};
use super::daylog::{DayLog, LOGGED, Logged};
use super::series::{Measure, Series};
use super::tiers::{LineShare, TIER_HISTORY_DAYS, TierHistory};
use super::titles::Titles;
use crate::model::Tier;
use crate::model::dates::Day;

/// How many of an account's SKUs (by trailing-12-month revenue) are "main".
pub const MAIN_SKUS: usize = 3;
/// The window over which daily demand for stock cover is averaged.
pub const DEMAND_DAYS: i32 = 90;

impl Logged for Visit {
    fn on_day(&self) -> Day {
        self.day
    }

    /// Columns: the day, the role's number; or, when narrower (two years
    /// of days and a few roles: 2 bytes a visit instead of 3), one column
    /// of both folded (`compact::fold`), the day read as its high number.
    fn pack(items: &[Visit]) -> Table {
        let days: Vec<i64> = items.iter().map(|v| i64::from(v.day)).collect();
        let roles: Vec<i64> = items.iter().map(|v| i64::from(v.role)).collect();
        match fold(&days, &roles) {
            Some((both, radix)) => Table::new(&[Values::Folded(&both, radix)]),
            None => Table::new(&[Values::Ints(&days), Values::Ints(&roles)]),
        }
    }

    fn unpack(c: &[Column<'_>; LOGGED], k: usize) -> Visit {
        // Folded: the second column is absent (reads 0); apart: the
        // first's low number is 0.
        Visit {
            day: c[0].high(k) as Day,
            role: (c[0].low(k) + c[1].int(k)) as u32,
        }
    }

    #[inline]
    fn day_in(days: &Column<'_>, k: usize) -> Day {
        days.high(k) as Day
    }
}

/// One day's order lines of one SKU: the day, the SKU (its number into
/// `Snapshot::skus`), and their summed quantity and revenue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SkuLine {
    pub day: Day,
    pub sku: u32,
    pub qty: f64,
    pub revenue: f64,
}

impl Logged for SkuLine {
    fn on_day(&self) -> Day {
        self.day
    }

    /// Columns: the day, the SKU's number, the quantity, the revenue.
    fn pack(items: &[SkuLine]) -> Table {
        let days: Vec<i64> = items.iter().map(|l| i64::from(l.day)).collect();
        let skus: Vec<i64> = items.iter().map(|l| i64::from(l.sku)).collect();
        let qty: Vec<f64> = items.iter().map(|l| l.qty).collect();
        let revenue: Vec<f64> = items.iter().map(|l| l.revenue).collect();
        Table::new(&[
            Values::Ints(&days),
            Values::Ints(&skus),
            Values::Amounts(&qty),
            Values::Amounts(&revenue),
        ])
    }

    fn unpack(c: &[Column<'_>; LOGGED], k: usize) -> SkuLine {
        SkuLine {
            day: c[0].int(k) as Day,
            sku: c[1].int(k) as u32,
            qty: c[2].amount(k),
            revenue: c[3].amount(k),
        }
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
                "gross margin % ((revenue - cost) / revenue x 100; 0 without revenue, or with more returned than sold: a margin of a negative revenue means nothing)"
            }
            Metric::Orders => "number of distinct orders",
            Metric::Qty => "quantity ordered",
            Metric::Skus => "number of distinct SKUs ordered",
        }
    }
}

/// Windowed sums of a series.
pub(super) fn series_metric(s: &Series, m: Metric, end: Day, len: i32) -> f64 {
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
            // Returns exceeding sales would give a loss a margin over 100%.
            if rev < f64::EPSILON {
                0.0
            } else {
                (rev - cost) / rev * 100.0
            }
        }
        Metric::Skus => 0.0,
    }
}

/// One visit: its day and the visitor's role as exported, by number (held
/// in a `DayLog` in 3 bytes or so: a large book has tens of millions).
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
    pub sku: Arc<str>,
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
    // The master's texts are shared with the master's record of the
    // account (`metrics::master`), not copied into each snapshot.
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub region: Arc<str>,
    pub owner: Arc<str>,
    pub owner_email: Option<Arc<str>>,
    pub manager_email: Option<Arc<str>>,
    /// The manager's name from the master; empty when it has none.
    pub manager: Arc<str>,
    /// "A", "B" or "C".
    pub tier: Tier,
    /// The tier as of `PREV_TIER_DAYS` days earlier, from the same series.
    pub prev_tier: Tier,
    /// Place in the book as ranked by `tiers.by`, 1 = first (largest).
    pub rank: usize,
    /// Share of the book's trailing-12-month revenue, 0..1.
    pub share: f64,
    /// Share held by the accounts ranked above this one, by `tiers.by`
    /// (for `both`, the larger of the two), 0..1: the account is tier A
    /// while this is below `tiers.a_share` (the account that crosses the
    /// line belongs to A).
    pub share_above: f64,
    /// The book's tiers on earlier days, and this account's place in it.
    pub history: Option<(Arc<TierHistory>, usize)>,
    pub revenue_12m: f64,
    pub series: Series,
    /// The lines with a SKU, summed per day and SKU, by day (within a day
    /// by SKU name).
    pub sku_days: DayLog<SkuLine>,
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
    pub main_skus: Vec<Arc<str>>,
    pub stock: Vec<StockCover>,
}

pub(super) fn clamp_window(len: i64, offset: i64) -> (i32, i32) {
    (
        len.clamp(0, 100_000) as i32,
        offset.clamp(0, 100_000) as i32,
    )
}

/// Whether a visit's role is one of `codes` (None: any visit; see
/// `AccountMetrics::role_codes`: which roles a list of titles names is
/// [`Titles::matches`]).
fn role_matches(v: Visit, codes: Option<&[u32]>) -> bool {
    codes.is_none_or(|c| c.contains(&v.role))
}

impl AccountMetrics {
    /// An account with no history, tier C (tests and benchmarks build on it).
    pub fn empty(id: &str, name: &str) -> AccountMetrics {
        AccountMetrics {
            id: Arc::from(id),
            name: Arc::from(name),
            region: Arc::from(""),
            owner: Arc::from(""),
            owner_email: None,
            manager_email: None,
            manager: Arc::from(""),
            tier: Tier::C,
            prev_tier: Tier::C,
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
    pub fn tier_ago(&self, days_ago: i64) -> (Tier, f64) {
        match &self.history {
            Some((h, i)) => h
                .at(*i, days_ago.clamp(0, TIER_HISTORY_DAYS as i64 - 1))
                .unwrap_or((self.tier, self.share_above)),
            None => (self.tier, self.share_above),
        }
    }

    /// The account's tier of [`AccountMetrics::tier_ago`], without its
    /// share above (which a day of the history holds only near the line).
    pub fn tier_only_ago(&self, days_ago: i64) -> Tier {
        match &self.history {
            Some((h, i)) => h
                .tier(*i, days_ago.clamp(0, TIER_HISTORY_DAYS as i64 - 1))
                .unwrap_or(self.tier),
            None => self.tier,
        }
    }

    /// The account's tier of [`AccountMetrics::tier_alone_ago`], without
    /// its share above.
    pub fn tier_alone_only_ago(&self, by: crate::config::TierBasis, days_ago: i64) -> Tier {
        match &self.history {
            Some((h, i)) => h
                .alone_tier(by, *i, days_ago.clamp(0, TIER_HISTORY_DAYS as i64 - 1))
                .unwrap_or(self.tier),
            None => self.tier,
        }
    }

    /// The account's share above of [`AccountMetrics::tier_alone_ago`] as
    /// `a_line_state` reads it for an account out of A under the line
    /// `a_share` ([`TierHistory::alone_line_share`]); today's share above
    /// for an account built without a history.
    pub fn line_share_ago(
        &self,
        by: crate::config::TierBasis,
        days_ago: i64,
        a_share: f64,
    ) -> LineShare {
        let days = days_ago.clamp(0, TIER_HISTORY_DAYS as i64 - 1);
        match &self.history {
            Some((h, i)) => h
                .alone_line_share(by, *i, days, a_share)
                .unwrap_or(LineShare::Share(self.share_above)),
            None => LineShare::Share(self.share_above),
        }
    }

    /// The account's (tier, share above) with the book ranked by trailing-
    /// 12-month gross profit ([`TierHistory::by_gross_profit`]); today's
    /// revenue tier for an account built without a history.
    pub fn gross_profit_tier(&self) -> (Tier, f64) {
        match &self.history {
            Some((h, i)) => h
                .by_gross_profit(*i)
                .unwrap_or((self.tier, self.share_above)),
            None => (self.tier, self.share_above),
        }
    }

    /// The account's (tier, share above) `days_ago` days before `end`
    /// (0..[`TIER_HISTORY_DAYS`]) with the book ranked by revenue alone
    /// (`TierBasis::Revenue`) or gross profit alone (the others), no tier
    /// column ([`TierHistory::alone_at`]); today's tier for an account
    /// built without a history.
    pub fn tier_alone_ago(&self, by: crate::config::TierBasis, days_ago: i64) -> (Tier, f64) {
        match &self.history {
            Some((h, i)) => h
                .alone_at(by, *i, days_ago.clamp(0, TIER_HISTORY_DAYS as i64 - 1))
                .unwrap_or((self.tier, self.share_above)),
            None => (self.tier, self.share_above),
        }
    }

    /// The account's (tier, share above) with the book ranked by trailing-
    /// 12-month revenue alone ([`TierHistory::by_revenue`]), whatever
    /// `tiers.by` and the master's tier column say; today's tier for an
    /// account built without a history.
    pub fn revenue_tier(&self) -> (Tier, f64) {
        match &self.history {
            Some((h, i)) => h.by_revenue(*i).unwrap_or((self.tier, self.share_above)),
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
        let hi = self.sku_days.upto(end);
        let lo = self.sku_days.upto_from(hi, end - len);
        if hi <= lo {
            return 0;
        }
        let mut seen: Vec<u32> = self.sku_days.range(lo..hi).map(|d| d.sku).collect();
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

    /// The numbers visits give the roles `titles` names (see [`Titles`]: a
    /// role containing one of them, as [`Titles`] compares, and none
    /// of the words taken out); None: any visit.
    fn role_codes(&self, titles: Option<&Titles>) -> Option<Vec<u32>> {
        let t = titles?;
        Some(
            self.roles
                .iter()
                .zip(1u32..)
                .filter(|(r, _)| t.matches(r))
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

    /// Days since the last visit; with `roles`, only visits by a role
    /// they name ([`Titles::matches`]).
    pub fn days_since_last_visit(&self, end: Day, roles: Option<&Titles>) -> Option<i64> {
        let codes = self.role_codes(roles);
        self.visits
            .range(0..self.visits.upto(end))
            .rev()
            .find(|v| role_matches(*v, codes.as_deref()))
            .map(|v| i64::from(end - v.day))
    }

    /// Visits in `(end - len, end]`.
    pub fn visits_in(&self, end: Day, len: i64) -> i64 {
        self.visits_by_in(end, len, None)
    }

    /// Visits in `(end - len, end]`, with `roles` only by a role they name.
    pub fn visits_by_in(&self, end: Day, len: i64, roles: Option<&Titles>) -> i64 {
        let codes = self.role_codes(roles);
        let len = len.clamp(0, 100_000) as i32;
        // Visits are in day order: the window by two searches, not a scan
        // of the whole history.
        let hi = self.visits.upto(end);
        let lo = self.visits.upto_from(hi, end - len);
        self.visits
            .range(lo..hi)
            .filter(|v| role_matches(*v, codes.as_deref()))
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
    /// (both included; an invoice due yesterday is 1 day overdue). Only
    /// invoices (positive amounts), as [`Self::days_overdue_from`] counts
    /// them: a credit note is not overdue, whatever its due date; it is in
    /// [`Self::credit_notes`].
    pub fn overdue_between(&self, end: Day, from: i64, to: i64) -> f64 {
        let from = from.max(1);
        self.invoices
            .iter()
            .filter(|i| {
                let late = i64::from(end) - i64::from(i.due);
                i.amount > 0.0 && late >= from && late <= to
            })
            .fold(0.0, |sum, i| sum + i.amount)
    }

    /// The open credit notes (negative amounts), whatever their due date,
    /// as a positive amount: what the account may set against its
    /// invoices. [`Self::receivables`] is net of them.
    pub fn credit_notes(&self) -> f64 {
        self.invoices
            .iter()
            .filter(|i| i.amount < 0.0)
            .fold(0.0, |sum, i| sum - i.amount)
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
