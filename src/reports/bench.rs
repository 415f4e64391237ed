//! The evaluation benchmark (`kamwatch bench rules`): the shipped rules over
//! generated accounts, rule x account evaluations per second, beside a naive
//! baseline measured in the same run. It prints figures; nothing asserts a
//! time. The accounts are built in memory (no export files, no database):
//! what is measured is the rules stage alone.

use std::sync::Arc;
use std::time::Instant;

use chrono::NaiveDate;
use rhai::{ImmutableString, Scope};

use crate::config::TierConfig;
use crate::generate::Rng;
use crate::metrics::{
    AccountMetrics, Invoice, Portfolio, Series, SkuLine, Snapshot, StockCover, Visit, assign_tiers,
};
use crate::model::dates::{Day, day};
use crate::rules::{RuleSet, api};
use crate::store::OrderDay;

/// A book of `n` accounts with 18 months of orders, visits, invoices and
/// stock, as of `as_of`. Account sizes are heavy-tailed, so about a fifth
/// of the accounts make tier A, as in a real book.
pub fn synthetic(n: usize, seed: u64, as_of: NaiveDate) -> Snapshot {
    let mut rng = Rng::new(seed);
    let end = day(as_of);
    let start = end - 540;
    let roles: crate::metrics::Roles = Arc::new(vec![Arc::from("业务员"), Arc::from("销售总监")]);
    let mut accounts: Vec<AccountMetrics> = Vec::with_capacity(n);
    let mut per_day = vec![0.0f64; 541];
    for i in 0..n {
        let mut a = AccountMetrics::empty(&format!("KH{i:06}"), &format!("客户{i}"));
        a.roles = roles.clone();
        // Pareto-like size: a few big accounts, many small ones.
        let size = 2_000.0 / (1.0 - rng.unit()).powf(0.8);
        add_orders(&mut a, &mut rng, size, start, end, &mut per_day);
        add_visits(&mut a, &mut rng, start, end);
        add_receivables(&mut a, &mut rng, size, end);
        add_stock(&mut a, &mut rng, size);
        a.revenue_12m = a.series.sum(crate::metrics::Measure::Revenue, end, 365);
        accounts.push(a);
    }
    let book = book_series(&per_day, start);
    accounts.sort_by(|a, b| {
        b.revenue_12m
            .total_cmp(&a.revenue_12m)
            .then(a.id.cmp(&b.id))
    });
    let portfolio = rank(&mut accounts, &mut rng, book);
    Snapshot {
        as_of,
        accounts: accounts.into_iter().map(Arc::new).collect(),
        portfolio: Arc::new(portfolio),
        unknown_accounts: 0,
        unknown_examples: Vec::new(),
        unknown_revenue_12m: 0.0,
        skus: Arc::new((0..50).map(|i| format!("SP-{i:03}")).collect()),
    }
}

/// Orders every few days from `start` to `end`, of about `size` each, at
/// the account's margin; one in thirty accounts halves in the last 90 days.
/// Each day's revenue is added to `per_day` (indexed from `start`).
fn add_orders(
    a: &mut AccountMetrics,
    rng: &mut Rng,
    size: f64,
    start: Day,
    end: Day,
    per_day: &mut [f64],
) {
    let gap = 5 + rng.below_u64(20) as i32;
    let margin = 0.15 + 0.2 * rng.unit();
    // A few planted problems, at rates a real book shows.
    let fading = rng.below_u64(30) == 0;
    let mut d = start + rng.below_u64(gap as u64) as i32;
    while d <= end {
        let fade = if fading && d > end - 90 { 0.5 } else { 1.0 };
        let revenue = (size * (0.8 + 0.4 * rng.unit()) * fade).round();
        let date = crate::model::dates::date_of(d);
        a.series.push(&OrderDay {
            date,
            revenue,
            cost: (revenue * (1.0 - margin)).round(),
            qty: (revenue / 20.0).round(),
            orders: 1,
        });
        a.sku_days.push(SkuLine {
            day: d,
            sku: rng.below_u64(50) as u32,
            qty: (revenue / 20.0).round(),
            revenue,
        });
        per_day[(d - start) as usize] += revenue;
        d += gap + rng.below_u64(gap as u64 / 4 + 1) as i32;
    }
}

/// Visits at a steady cadence, a third of them senior; one in thirty
/// accounts stops being visited 60 days before `end`.
fn add_visits(a: &mut AccountMetrics, rng: &mut Rng, start: Day, end: Day) {
    let mut v = start + rng.below_u64(10) as i32;
    let cadence = 4 + rng.below_u64(9) as i32;
    let stopped = if rng.below_u64(30) == 0 {
        end - 60
    } else {
        end
    };
    while v <= stopped {
        let senior = rng.below_u64(3) == 0;
        a.visits.push(Visit {
            day: v,
            role: 1 + u32::from(senior),
        });
        v += cadence;
    }
}

/// For one account in four, a credit limit and three open invoices, late
/// for one in ten of those.
fn add_receivables(a: &mut AccountMetrics, rng: &mut Rng, size: f64, end: Day) {
    if rng.below_u64(4) == 0 {
        a.credit_limit = Some((size * 6.0).round());
        let late = if rng.below_u64(10) == 0 { 40 } else { 0 };
        for k in 0..3 {
            a.invoices.push(Invoice {
                amount: (size * rng.unit() * 1.5).round(),
                due: end - 5 - late + 20 * k,
            });
        }
    }
}

/// One main SKU and its stock cover, short for one account in twenty.
fn add_stock(a: &mut AccountMetrics, rng: &mut Rng, size: f64) {
    a.main_skus = vec![Arc::from(format!("SP-{:03}", rng.below_u64(50)))];
    a.stock.push(StockCover {
        sku: a.main_skus[0].clone(),
        on_hand: (size / 10.0).round(),
        daily_qty: size / 300.0,
        days: if rng.below_u64(20) == 0 {
            30.0 * rng.unit()
        } else {
            90.0 + 270.0 * rng.unit()
        },
        dedicated: true,
    });
}

/// The book series: one entry per calendar day from `start`, summed over
/// accounts.
fn book_series(per_day: &[f64], start: Day) -> Series {
    let mut book = Series::default();
    for (off, rev) in per_day.iter().enumerate() {
        book.push(&OrderDay {
            date: crate::model::dates::date_of(start + off as i32),
            revenue: *rev,
            cost: rev * 0.75,
            qty: rev / 20.0,
            orders: 0,
        });
    }
    book
}

/// Tiers, ranks and shares of the accounts (sorted largest first), and the
/// portfolio they make with the `book` series.
fn rank(accounts: &mut [AccountMetrics], rng: &mut Rng, book: Series) -> Portfolio {
    let n = accounts.len();
    let revs: Vec<f64> = accounts.iter().map(|a| a.revenue_12m).collect();
    let total = crate::metrics::ranking_total(&revs);
    let tiers = assign_tiers(&revs, total, &TierConfig::default());
    let mut portfolio = Portfolio {
        accounts: n,
        revenue_12m: total,
        series: book,
        ..Portfolio::default()
    };
    for (rank, (a, t)) in accounts.iter_mut().zip(tiers).enumerate() {
        a.tier = t;
        // Some movement between tiers, as a month of trading gives.
        a.prev_tier = if rng.below_u64(50) == 0 {
            crate::model::Tier::B
        } else {
            t
        };
        a.rank = rank + 1;
        a.share = if total > 0.0 {
            a.revenue_12m / total
        } else {
            0.0
        };
        match t {
            crate::model::Tier::A => portfolio.tier_a += 1,
            crate::model::Tier::B => portfolio.tier_b += 1,
            crate::model::Tier::C => portfolio.tier_c += 1,
        }
    }
    // What the book holds and where the tiers start, as a real snapshot
    // says: without them a rule with `book_needs` (lapsed_visits) never
    // runs, and the figure counts it as decided for free.
    for a in accounts.iter() {
        portfolio.count_data(a);
    }
    // The smallest positive revenue of the tier (0 if none), as
    // `Timeline::snapshot` sets it.
    let floor = |tier: crate::model::Tier| {
        accounts
            .iter()
            .filter(|a| a.tier == tier && a.revenue_12m > 0.0)
            .map(|a| a.revenue_12m)
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.min(r))))
            .unwrap_or(0.0)
    };
    portfolio.floor_a = floor(crate::model::Tier::A);
    portfolio.floor_b = floor(crate::model::Tier::B);
    portfolio
}

/// One measured run.
#[derive(Debug, Clone)]
pub struct Measured {
    pub label: String,
    /// Rule x account pairs decided (a script run, or skipped by the
    /// rule's tiers or needs).
    pub evaluations: u64,
    /// Scripts actually run.
    pub scripts: u64,
    pub alerts: usize,
    /// Wall-clock seconds.
    pub secs: f64,
    /// CPU seconds the process used meanwhile (all threads), when known.
    pub cpu_secs: Option<f64>,
}

impl Measured {
    pub fn per_sec(&self) -> f64 {
        self.evaluations as f64 / self.secs.max(1e-9)
    }

    /// Evaluations per CPU second: what one core does when nobody else
    /// uses it (the machine may be shared while the benchmark runs).
    pub fn per_cpu_sec(&self) -> Option<f64> {
        self.cpu_secs
            .filter(|c| *c > 0.0)
            .map(|c| self.evaluations as f64 / c)
    }

    /// Scripts actually run per second, wall clock.
    pub fn scripts_per_sec(&self) -> f64 {
        self.scripts as f64 / self.secs.max(1e-9)
    }

    /// Scripts actually run per CPU second.
    pub fn scripts_per_cpu_sec(&self) -> Option<f64> {
        self.cpu_secs
            .filter(|c| *c > 0.0)
            .map(|c| self.scripts as f64 / c)
    }
}

/// CPU seconds (user + system) of this process and its finished threads,
/// from /proc/self/stat (Linux; clock ticks of 1/100 s).
pub fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn measure(label: String, f: impl FnOnce() -> (u64, u64, usize)) -> Measured {
    let c0 = cpu_secs();
    let t = Instant::now();
    let (evaluations, scripts, alerts) = f();
    let secs = t.elapsed().as_secs_f64();
    let cpu = match (c0, cpu_secs()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Measured {
        label,
        evaluations,
        scripts,
        alerts,
        secs,
        cpu_secs: cpu,
    }
}

/// The naive loop: one thread, a fresh scope with the account pushed for
/// every rule x account call, and every script run whatever its tiers.
pub fn naive(rules: &RuleSet, snap: &Snapshot) -> Measured {
    measure(
        "naive: 1 thread, fresh scope per call, every script runs".into(),
        || naive_loop(rules, snap),
    )
}

fn naive_loop(rules: &RuleSet, snap: &Snapshot) -> (u64, u64, usize) {
    let end = snap.end();
    let as_of: ImmutableString = snap.as_of.format("%Y-%m-%d").to_string().into();
    let mut evaluations = 0u64;
    let mut alerts = 0usize;
    api::set_seasons(&rules.seasons);
    api::set_as_of(snap.as_of, false);
    for m in &snap.accounts {
        for rule in &rules.rules {
            let mut scope = Scope::new();
            scope.push_constant("as_of", as_of.clone());
            scope.push_constant(
                "portfolio",
                api::Book {
                    p: snap.portfolio.clone(),
                    end,
                    explain: false,
                },
            );
            scope.push_constant("account", api::Account::new(m.clone(), end, false));
            let _ = rules.engine.run_ast_with_scope(&mut scope, &rule.ast);
            alerts += crate::rules::take_raised_count();
            evaluations += 1;
        }
    }
    (evaluations, evaluations, alerts)
}

/// `RuleSet::evaluate_with` on `threads` threads: what the daemon runs.
pub fn optimized(rules: &RuleSet, snap: &Snapshot, threads: usize) -> Measured {
    measure(
        format!(
            "kamwatch: {threads} thread{}, scope reused, tier filter first",
            if threads == 1 { "" } else { "s" }
        ),
        || {
            let out = rules.evaluate_with(snap, threads);
            (out.runs, out.scripts, out.findings.len())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The synthetic book says what it holds and where the tiers start, as
    /// a real snapshot does: a rule with `book_needs` (lapsed_visits) runs
    /// its script in the benchmark instead of being decided for free.
    #[test]
    fn the_synthetic_book_runs_rules_that_need_the_books_data() {
        let snap = synthetic(500, 7, NaiveDate::from_ymd_opt(2026, 11, 28).unwrap());
        let p = &snap.portfolio;
        assert_eq!(p.data_bits() & 0b11, 0b11, "orders and visits");
        assert!(p.floor_a > 0.0 && p.floor_b > 0.0 && p.floor_a >= p.floor_b);
        let rules = RuleSet::from_sources(&[(
            "v",
            "const SETTINGS = #{ book_needs: [\"visits\"] };\nalert(#{ title: \"t\" });",
        )])
        .unwrap();
        let out = rules.evaluate(&snap);
        assert_eq!(out.findings.len(), 500);
    }
}
