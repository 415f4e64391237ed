//! The snapshot: every active account's metrics as of one day, with the
//! book-level totals (`Portfolio`), and `dump`, all of it as text to the
//! bit (two snapshots are the same when their dumps are). Touches nothing
//! but the snapshot's memory.

use std::sync::Arc;

use chrono::NaiveDate;

use super::account::{AccountMetrics, Metric, clamp_window, series_metric};
use super::series::Series;
use super::tiers::{AloneBook, TierHistory};
use crate::config::TierBasis;
use crate::model::Tier;
use crate::model::dates::{Day, day};

/// Book-level totals.
#[derive(Debug, Default, Clone)]
pub struct Portfolio {
    pub accounts: usize,
    /// The total the revenue shares are of: the active accounts'
    /// trailing-12-month revenue, summed over those above zero.
    pub revenue_12m: f64,
    pub tier_a: usize,
    pub tier_b: usize,
    pub tier_c: usize,
    /// Daily totals of the active accounts' orders (the ranked ones:
    /// accounts missing from the master, or switched off, are in no figure
    /// of the book), net of returns.
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
    /// What the book is ranked by (`tiers.by`).
    pub by: TierBasis,
    /// The book's tier history (the same as every account's), for the
    /// figures of the book ranked by gross profit alone; None in books
    /// built without one (benchmarks).
    pub history: Option<Arc<TierHistory>>,
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
        match Tier::parse(tier) {
            Some(Tier::A) => Some(self.floor_a),
            Some(Tier::B) => Some(self.floor_b),
            _ => None,
        }
    }

    /// The book `days_ago` days before the as-of date ranked by revenue
    /// alone (`Revenue`) or gross profit alone (the others), whatever the
    /// basis ([`TierHistory::book_alone`]): the ranked accounts' total and
    /// the floors; zeros without a history.
    pub fn book_alone(&self, by: TierBasis, days_ago: i64) -> AloneBook {
        self.history
            .as_ref()
            .map(|h| h.book_alone(by, days_ago))
            .unwrap_or_default()
    }

    /// Today's book ranked by trailing-12-month gross profit alone
    /// ([`Portfolio::book_alone`]).
    pub fn gross_profit_book(&self) -> AloneBook {
        self.book_alone(TierBasis::GrossProfit, 0)
    }

    /// The 12-month value of the smallest account in `tier` ("A" or "B")
    /// of [`Portfolio::book_alone`]; None for another tier.
    pub fn floor_alone(&self, by: TierBasis, tier: &str, days_ago: i64) -> Option<f64> {
        let b = || self.book_alone(by, days_ago);
        match Tier::parse(tier) {
            Some(Tier::A) => Some(b().floor_a),
            Some(Tier::B) => Some(b().floor_b),
            _ => None,
        }
    }

    pub fn tier_count(&self, tier: &str) -> usize {
        match Tier::parse(tier) {
            Some(Tier::A) => self.tier_a,
            Some(Tier::B) => self.tier_b,
            Some(Tier::C) => self.tier_c,
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
    /// Account ids that have orders but are missing from the master (their
    /// lines are kept; they are not ranked and move no one's tier).
    pub unknown_accounts: usize,
    /// A few of them (the first to order, at most
    /// [`super::tiers::UNLISTED_EXAMPLES`]), and their trailing-12-month revenue.
    pub unknown_examples: Vec<String>,
    pub unknown_revenue_12m: f64,
    /// SKU names, indexed by the numbers in `AccountMetrics::sku_days`.
    pub skus: Arc<Vec<String>>,
}

impl Snapshot {
    pub fn end(&self) -> Day {
        day(self.as_of)
    }

    pub fn find(&self, id: &str) -> Option<&Arc<AccountMetrics>> {
        self.accounts.iter().find(|a| &*a.id == id)
    }

    /// Each account's share (in the snapshot's order) of the book's
    /// trailing-12-month gross profit as the ranking by gross profit
    /// counts it: none without revenue, of the total over the accounts
    /// above zero (0 for all when none is).
    pub fn gross_profit_shares(&self) -> Vec<f64> {
        let total = self.portfolio.gross_profit_book().total;
        let end = self.end();
        self.accounts
            .iter()
            .map(|a| {
                let gp = a.metric(Metric::GrossProfit, end, 365, 0);
                let gp = super::tiers::ranked_gross_profit(a.revenue_12m, gp);
                if total > 0.0 { gp / total } else { 0.0 }
            })
            .collect()
    }
}

/// Everything a snapshot holds, as text, one fact a line, every number to
/// the bit (`{:?}` of an f64 is the shortest text that reads back to the
/// same bits); SKUs by name, not by their number in this load. Two
/// snapshots are the same when their dumps are.
pub fn dump(snap: &Snapshot) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let sku = |k: u32| snap.skus.get(k as usize).map_or("?", String::as_str);
    let _ = writeln!(
        o,
        "as_of {} unknown {} {:?} {:?}",
        snap.as_of, snap.unknown_accounts, snap.unknown_examples, snap.unknown_revenue_12m
    );
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
        for l in a.sku_days.iter() {
            let _ = writeln!(o, " sku {} {:?}", l.day, sku(l.sku));
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

#[cfg(test)]
mod build_tests {
    use chrono::NaiveDate;
    use rusqlite::Connection;

    use crate::config::TierConfig;
    use crate::metrics::*;
    use crate::model::Tier;
    use crate::model::dates::{date_of, day};
    use crate::store;

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
                    crate::model::dates::date_text(date),
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
        assert_eq!((big.tier, small.tier), (Tier::A, Tier::B));
        // 30 days earlier BIG was still tier A; SMALL was C then (cumulative
        // share before it was already past b_share).
        assert_eq!(big.prev_tier, Tier::A);
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
        let s2 = big.stock.iter().find(|s| &*s.sku == "S2").unwrap();
        assert!(s2.dedicated);
        assert_eq!(s2.on_hand, 30.0);
        // S1 is warehouse stock against the whole book's demand.
        let s1 = big.stock.iter().find(|s| &*s.sku == "S1").unwrap();
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
        assert_eq!((big.tier, big.prev_tier), (Tier::C, Tier::C));
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
        assert_eq!(
            x.main_skus,
            vec![std::sync::Arc::from("S1"), std::sync::Arc::from("S2")]
        );
        // The book adds Y's order on the same day.
        assert_eq!(snap.portfolio.series.sum(Measure::Orders, nov2, 1), 3.0);
        assert_eq!(snap.portfolio.series.sum(Measure::Revenue, end, 365), 212.0);
    }

    /// The book's figures are over the ranked accounts only: an account
    /// missing from the master (ZZ) or switched off in it (OFF) is in no
    /// daily total, and the totals the shares are of leave out the
    /// accounts at zero or below (NEG returned more than it bought; the
    /// daily totals are net of it).
    #[test]
    fn the_book_is_the_ranked_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let conn = store::open(&dir.path().join("k.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO accounts (id, name, active, updated_at) VALUES
               ('X', 'x', 1, 'x'), ('Y', 'y', 1, 'x'), ('NEG', 'n', 1, 'x'), ('OFF', 'o', 0, 'x');
             INSERT INTO orders (order_id, line, account_id, date, sku, qty, revenue, cost) VALUES
               ('A', '1', 'X', '2026-11-02', 'S1', 1, 300, 100),
               ('B', '1', 'Y', '2026-11-02', 'S1', 1, 100, 90),
               ('C', '1', 'NEG', '2026-11-02', 'S1', -1, -50, -20),
               ('D', '1', 'OFF', '2026-11-02', 'S1', 1, 7000, 0),
               ('E', '1', 'ZZ', '2026-11-02', 'S1', 1, 9000, 0);",
        )
        .unwrap();
        let snap = build(&conn, d("2026-11-30"), &TierConfig::default()).unwrap();
        let (p, end) = (&snap.portfolio, snap.end());
        assert_eq!(p.accounts, 3);
        assert_eq!(p.metric(Metric::Revenue, end, 365, 0), 350.0);
        assert_eq!(p.metric(Metric::GrossProfit, end, 365, 0), 180.0);
        assert_eq!(p.metric(Metric::Orders, end, 365, 0), 3.0);
        assert_eq!((p.revenue_12m, p.gross_profit_book().total), (400.0, 210.0));
        assert_eq!(snap.find("X").unwrap().share, 0.75);
        // A margin of a negative revenue means nothing: 0, not the 60%
        // that (-50 - -20) / -50 gives.
        assert_eq!(snap.find("NEG").unwrap().margin_pct(end, 365, 0), 0.0);
        assert_eq!(
            snap.find("X").unwrap().margin_pct(end, 365, 0),
            200.0 / 300.0 * 100.0
        );
        assert_eq!(
            (snap.unknown_accounts, snap.unknown_revenue_12m),
            (1, 9000.0)
        );
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
                tier: Tier::A,
                prev_tier: Tier::A,
                share: 1.0,
                ..AccountMetrics::empty("KH1", "测试")
            })],
            portfolio: Arc::new(Portfolio::default()),
            unknown_accounts: 0,
            unknown_examples: Vec::new(),
            unknown_revenue_12m: 0.0,
            skus: Arc::new(Vec::new()),
        }
    }
}
