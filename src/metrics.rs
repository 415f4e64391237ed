//! Metrics: per-account time series and windows, built once per evaluation.
//!
//! Reads the store (accounts, daily order sums, visits) up to an as-of date
//! and builds an immutable `Snapshot`: per account, prefix sums over daily
//! order totals so any window (`revenue over 90 days, 365 days back`) is two
//! binary searches; visit dates; and the A/B/C tier from the trailing-12-month
//! revenue share. Rules read it; nothing here writes anything.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use chrono::{Datelike, NaiveDate};
use rusqlite::Connection;

use crate::config::TierConfig;
use crate::store;

/// Day number used for window arithmetic (days since 0001-01-01).
pub type Day = i32;

pub fn day(d: NaiveDate) -> Day {
    d.num_days_from_ce()
}

/// What a windowed metric sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Revenue,
    Cost,
    Qty,
    Orders,
}

/// One account's series. Prefix arrays have `days.len() + 1` entries.
#[derive(Debug, Default)]
pub struct Series {
    days: Vec<Day>,
    revenue: Vec<f64>,
    cost: Vec<f64>,
    qty: Vec<f64>,
    orders: Vec<f64>,
}

impl Series {
    fn push(&mut self, d: &store::OrderDay) {
        if self.revenue.is_empty() {
            for v in [
                &mut self.revenue,
                &mut self.cost,
                &mut self.qty,
                &mut self.orders,
            ] {
                v.push(0.0);
            }
        }
        self.days.push(day(d.date));
        let last = |v: &Vec<f64>| *v.last().unwrap_or(&0.0);
        self.revenue.push(last(&self.revenue) + d.revenue);
        self.cost.push(last(&self.cost) + d.cost);
        self.qty.push(last(&self.qty) + d.qty);
        self.orders.push(last(&self.orders) + f64::from(d.orders));
    }

    /// Sum of `m` over the days in `(end - len, end]`.
    pub fn sum(&self, m: Measure, end: Day, len: i32) -> f64 {
        if self.days.is_empty() || len <= 0 {
            return 0.0;
        }
        let hi = self.days.partition_point(|d| *d <= end);
        let lo = self.days.partition_point(|d| *d <= end - len);
        if hi <= lo {
            return 0.0;
        }
        let p = match m {
            Measure::Revenue => &self.revenue,
            Measure::Cost => &self.cost,
            Measure::Qty => &self.qty,
            Measure::Orders => &self.orders,
        };
        p[hi] - p[lo]
    }

    /// The last day with an order on or before `end`.
    pub fn last_day(&self, end: Day) -> Option<Day> {
        let hi = self.days.partition_point(|d| *d <= end);
        hi.checked_sub(1).map(|i| self.days[i])
    }

    /// Number of distinct order days on or before `end`.
    pub fn order_days(&self, end: Day) -> usize {
        self.days.partition_point(|d| *d <= end)
    }

    /// Median gap in days between consecutive order days up to `end`.
    pub fn median_gap(&self, end: Day) -> Option<f64> {
        let n = self.order_days(end);
        if n < 2 {
            return None;
        }
        let mut gaps: Vec<i32> = self.days[..n].windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_unstable();
        let m = gaps.len() / 2;
        Some(if gaps.len() % 2 == 1 {
            f64::from(gaps[m])
        } else {
            f64::from(gaps[m - 1] + gaps[m]) / 2.0
        })
    }
}

/// One visit: its day and the visitor's role as exported.
#[derive(Debug, Clone)]
pub struct Visit {
    pub day: Day,
    pub role: Option<Arc<str>>,
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
    /// "A", "B" or "C".
    pub tier: &'static str,
    /// Rank by trailing-12-month revenue, 1 = largest.
    pub rank: usize,
    /// Share of the book's trailing-12-month revenue, 0..1.
    pub share: f64,
    pub revenue_12m: f64,
    pub series: Series,
    /// Visits in date order.
    pub visits: Vec<Visit>,
}

/// Book-level totals.
#[derive(Debug, Default, Clone)]
pub struct Portfolio {
    pub accounts: usize,
    pub revenue_12m: f64,
    pub tier_a: usize,
    pub tier_b: usize,
    pub tier_c: usize,
}

/// All accounts as of one date.
#[derive(Debug)]
pub struct Snapshot {
    pub as_of: NaiveDate,
    pub accounts: Vec<Arc<AccountMetrics>>,
    pub portfolio: Portfolio,
    /// Account ids that have orders but are missing from the master.
    pub unknown_accounts: usize,
}

impl Snapshot {
    pub fn end(&self) -> Day {
        day(self.as_of)
    }

    pub fn find(&self, id: &str) -> Option<&Arc<AccountMetrics>> {
        self.accounts.iter().find(|a| a.id == id)
    }
}

/// Builds the snapshot of every active account as of `as_of` (inclusive).
pub fn build(conn: &Connection, as_of: NaiveDate, tiers: &TierConfig) -> Result<Snapshot> {
    let master = store::load_accounts(conn)?;
    let mut series: HashMap<String, Series> = HashMap::new();
    store::for_each_order_day(conn, as_of, |id, d| {
        if let Some(s) = series.get_mut(id) {
            s.push(&d);
        } else {
            let mut s = Series::default();
            s.push(&d);
            series.insert(id.to_string(), s);
        }
    })?;
    let mut visits: HashMap<String, Vec<Visit>> = HashMap::new();
    let mut roles: HashMap<String, Arc<str>> = HashMap::new();
    store::for_each_visit(conn, as_of, |id, date, role| {
        let role = role.map(|r| {
            roles
                .entry(r.to_string())
                .or_insert_with(|| Arc::from(r))
                .clone()
        });
        visits.entry(id.to_string()).or_default().push(Visit {
            day: day(date),
            role,
        });
    })?;

    let end = day(as_of);
    let t12 = |s: Option<&Series>| s.map_or(0.0, |s| s.sum(Measure::Revenue, end, 365));
    // The book's total includes revenue of accounts missing from the master.
    let total: f64 = series.values().map(|s| t12(Some(s))).sum();
    let known: std::collections::HashSet<&str> = master.iter().map(|a| a.row.id.as_str()).collect();
    let unknown_accounts = series
        .keys()
        .filter(|k| !known.contains(k.as_str()))
        .count();

    let mut active: Vec<(f64, store::AccountRecord)> = master
        .into_iter()
        .filter(|a| a.active)
        .map(|a| (t12(series.get(&a.row.id)), a))
        .collect();
    // Largest first; ties by id so tiers are deterministic.
    active.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| a.1.row.id.cmp(&b.1.row.id))
    });

    let mut portfolio = Portfolio {
        accounts: active.len(),
        revenue_12m: total,
        ..Portfolio::default()
    };
    let mut cumulative = 0.0;
    let mut accounts = Vec::with_capacity(active.len());
    for (rank, (rev, rec)) in active.into_iter().enumerate() {
        let share = if total > 0.0 { rev / total } else { 0.0 };
        // The account that crosses the threshold still belongs to the tier.
        let tier = if rev <= 0.0 {
            "C"
        } else if cumulative < tiers.a_share {
            "A"
        } else if cumulative < tiers.b_share {
            "B"
        } else {
            "C"
        };
        cumulative += share;
        match tier {
            "A" => portfolio.tier_a += 1,
            "B" => portfolio.tier_b += 1,
            _ => portfolio.tier_c += 1,
        }
        let r = rec.row;
        accounts.push(Arc::new(AccountMetrics {
            series: series.remove(&r.id).unwrap_or_default(),
            visits: visits.remove(&r.id).unwrap_or_default(),
            id: r.id,
            name: r.name,
            region: r.region.unwrap_or_default(),
            owner: r.owner.unwrap_or_default(),
            owner_email: r.owner_email,
            manager_email: r.manager_email,
            tier,
            rank: rank + 1,
            share,
            revenue_12m: rev,
        }));
    }
    Ok(Snapshot {
        as_of,
        accounts,
        portfolio,
        unknown_accounts,
    })
}

impl AccountMetrics {
    /// Sum over `len` days ending `offset` days before `end`.
    pub fn window(&self, m: Measure, end: Day, len: i64, offset: i64) -> f64 {
        let len = len.clamp(0, 100_000) as i32;
        let offset = offset.clamp(0, 100_000) as i32;
        self.series.sum(m, end - offset, len)
    }

    /// Gross margin % over a window; 0 when there was no revenue.
    pub fn margin_pct(&self, end: Day, len: i64, offset: i64) -> f64 {
        let rev = self.window(Measure::Revenue, end, len, offset);
        if rev.abs() < f64::EPSILON {
            return 0.0;
        }
        let cost = self.window(Measure::Cost, end, len, offset);
        (rev - cost) / rev * 100.0
    }

    pub fn days_since_last_order(&self, end: Day) -> Option<i64> {
        self.series.last_day(end).map(|d| i64::from(end - d))
    }

    /// Days since the last visit; with `role`, only visits by that role.
    pub fn days_since_last_visit(&self, end: Day, role: Option<&str>) -> Option<i64> {
        self.visits
            .iter()
            .rev()
            .filter(|v| v.day <= end)
            .find(|v| role.is_none_or(|r| v.role.as_deref() == Some(r)))
            .map(|v| i64::from(end - v.day))
    }

    /// Visits in `(end - len, end]`.
    pub fn visits_in(&self, end: Day, len: i64) -> i64 {
        let len = len.clamp(0, 100_000) as i32;
        self.visits
            .iter()
            .filter(|v| v.day <= end && v.day > end - len)
            .count() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

#[cfg(test)]
pub mod tests_support {
    use super::*;

    /// A snapshot with one account and no history.
    pub fn snapshot_one() -> Snapshot {
        Snapshot {
            as_of: NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(),
            accounts: vec![Arc::new(AccountMetrics {
                id: "KH1".into(),
                name: "测试".into(),
                region: String::new(),
                owner: String::new(),
                owner_email: None,
                manager_email: None,
                tier: "A",
                rank: 1,
                share: 1.0,
                revenue_12m: 0.0,
                series: Series::default(),
                visits: vec![],
            })],
            portfolio: Portfolio::default(),
            unknown_accounts: 0,
        }
    }
}
