//! Accounts: the key-account book as a table — tier (by `tiers.by`),
//! share, cumulative share on the basis (both for `both`), share of gross
//! profit, the tiers by revenue
//! and by gross profit alone, trailing-12-month revenue and margin, days
//! since the last order and visit, alerts firing — the tier migrations
//! since a month and a year ago (who moved between A, B and C), and the
//! accounts with orders that the master does not list. Built from
//! `metrics` snapshots at three dates; reads the store, writes nothing.

use std::collections::HashMap;

use anyhow::Result;
use chrono::NaiveDate;
use rusqlite::Connection;
use serde::Serialize;

use crate::config::{TierBasis, TierConfig};
use crate::ingest::values::excerpt;
use crate::metrics;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub rank: usize,
    pub id: String,
    pub name: String,
    pub owner: String,
    /// The tier by `tiers.by` (the master's tier column applied).
    pub tier: &'static str,
    /// What `tier` is ranked by: revenue, gross_profit or both.
    pub tiers_by: &'static str,
    /// Share of the book's trailing-12-month revenue, percent.
    pub share_pct: f64,
    /// Cumulative share down to this account on the basis, percent: the
    /// share held by the accounts above it plus its own, in the ranking by
    /// `tiers.by` (for `both`, the larger of the two below); 100 for an
    /// account at zero or below (the whole book is above it), 0 when no
    /// account is above zero.
    pub cumulative_pct: f64,
    /// The same in the ranking by revenue alone.
    pub cumulative_revenue_pct: f64,
    /// The same in the ranking by gross profit alone.
    pub cumulative_gross_profit_pct: f64,
    /// Share of the book's trailing-12-month gross profit, percent: of
    /// the gross profit the accounts are ranked by (none for an account
    /// without revenue), whose total is over those above zero.
    pub gross_profit_share_pct: f64,
    /// The tier with the book ranked by revenue alone (same lines, no
    /// tier column).
    pub revenue_tier: &'static str,
    /// The tier with the book ranked by gross profit alone.
    pub gross_profit_tier: &'static str,
    pub revenue_12m: f64,
    pub margin_pct_12m: f64,
    pub days_since_last_order: Option<i64>,
    pub days_since_last_visit: Option<i64>,
    pub alerts_firing: u64,
    pub tier_month_ago: &'static str,
    pub tier_year_ago: &'static str,
}

/// The kind of each number of a [`Row`], for `accounts --format json`.
pub const UNITS: [(&str, crate::format::Unit); 10] = {
    use crate::format::Unit::*;
    [
        ("share_pct", Percent),
        ("cumulative_pct", Percent),
        ("cumulative_revenue_pct", Percent),
        ("cumulative_gross_profit_pct", Percent),
        ("gross_profit_share_pct", Percent),
        ("revenue_12m", Money),
        ("margin_pct_12m", Percent),
        ("days_since_last_order", Days),
        ("days_since_last_visit", Days),
        ("alerts_firing", Count),
    ]
};

#[derive(Debug, Clone, Serialize)]
pub struct Migration {
    pub id: String,
    pub name: String,
    pub from: &'static str,
    pub to: &'static str,
}

#[derive(Debug, Clone)]
pub struct Book {
    pub as_of: NaiveDate,
    /// The tier lines and basis the book was ranked with.
    pub tiers: TierConfig,
    /// Accounts with orders that the master does not list: how many, a
    /// few ids, their trailing-12-month revenue. Not ranked.
    pub unlisted: (usize, Vec<String>, f64),
    pub rows: Vec<Row>,
    pub since_month: Vec<Migration>,
    pub since_year: Vec<Migration>,
}

/// The tier of each account at `as_of`.
fn tiers_at(
    conn: &Connection,
    as_of: NaiveDate,
    tiers: &TierConfig,
) -> Result<HashMap<String, &'static str>> {
    Ok(metrics::build(conn, as_of, tiers)?
        .accounts
        .iter()
        .map(|a| (a.id.to_string(), a.tier.as_str()))
        .collect())
}

/// How many alerts are firing, by account id.
fn firing_by_account(conn: &Connection) -> Result<HashMap<String, u64>> {
    let mut firing = HashMap::new();
    let mut st = conn.prepare(
        "SELECT account_id, COUNT(*) FROM alerts WHERE state = 'firing' GROUP BY account_id",
    )?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for r in rows {
        let (id, n) = r?;
        firing.insert(id, n as u64);
    }
    Ok(firing)
}

pub fn book(conn: &Connection, as_of: NaiveDate, tiers: &TierConfig) -> Result<Book> {
    let snap = metrics::build(conn, as_of, tiers)?;
    let month_ago = tiers_at(conn, as_of - chrono::Duration::days(30), tiers)?;
    let year_ago = tiers_at(conn, as_of - chrono::Duration::days(365), tiers)?;
    let firing = firing_by_account(conn)?;
    let end = snap.end();
    // Of the ranked accounts, as the shares of revenue and the tiers are:
    // the totals are over the accounts with a positive figure.
    let gp_shares = snap.gross_profit_shares();
    let book_gp = snap.portfolio.gross_profit_book().total;
    let book_rev = snap.portfolio.revenue_12m;
    let mut rows = Vec::with_capacity(snap.accounts.len());
    for (a, gp_share) in snap.accounts.iter().zip(gp_shares) {
        let cum_rev = cumulative(a.revenue_tier().1, a.share, book_rev);
        let cum_gp = cumulative(a.gross_profit_tier().1, gp_share, book_gp);
        rows.push(Row {
            rank: a.rank,
            id: a.id.to_string(),
            name: a.name.to_string(),
            owner: a.owner.to_string(),
            tier: a.tier.as_str(),
            tiers_by: tiers.by.as_str(),
            share_pct: round2(a.share * 100.0),
            cumulative_pct: round2(
                100.0
                    * match tiers.by {
                        TierBasis::Revenue => cum_rev,
                        TierBasis::GrossProfit => cum_gp,
                        TierBasis::Both => cum_rev.max(cum_gp),
                    },
            ),
            cumulative_revenue_pct: round2(cum_rev * 100.0),
            cumulative_gross_profit_pct: round2(cum_gp * 100.0),
            gross_profit_share_pct: round2(gp_share * 100.0),
            revenue_tier: a.revenue_tier().0.as_str(),
            gross_profit_tier: a.gross_profit_tier().0.as_str(),
            revenue_12m: round2(a.revenue_12m),
            margin_pct_12m: round2(a.margin_pct(end, 365, 0)),
            days_since_last_order: a.days_since_last_order(end),
            days_since_last_visit: a.days_since_last_visit(end, None),
            alerts_firing: firing.get(&*a.id).copied().unwrap_or(0),
            tier_month_ago: month_ago.get(&*a.id).copied().unwrap_or("-"),
            tier_year_ago: year_ago.get(&*a.id).copied().unwrap_or("-"),
        });
    }
    let moved = |then: fn(&Row) -> &'static str| -> Vec<Migration> {
        let mut m: Vec<Migration> = rows
            .iter()
            .filter(|r| then(r) != "-" && then(r) != r.tier)
            .map(|r| Migration {
                id: r.id.clone(),
                name: r.name.clone(),
                from: then(r),
                to: r.tier,
            })
            .collect();
        m.sort_by(|a, b| (a.from, a.to, &a.id).cmp(&(b.from, b.to, &b.id)));
        m
    };
    let since_month = moved(|r| r.tier_month_ago);
    let since_year = moved(|r| r.tier_year_ago);
    Ok(Book {
        as_of,
        tiers: tiers.clone(),
        unlisted: (
            snap.unknown_accounts,
            snap.unknown_examples.clone(),
            snap.unknown_revenue_12m,
        ),
        rows,
        since_month,
        since_year,
    })
}

/// The header of the table's cumulative column: the basis's share, the
/// one the tier lines are on; under `both`, the two the tier is the lower
/// of ([`Row::cumulative_cells`] fills it).
pub fn cumulative_header(by: TierBasis) -> &'static str {
    match by {
        TierBasis::Revenue => "cum rev%",
        TierBasis::GrossProfit => "cum GP%",
        TierBasis::Both => "cum rev%  cum GP%",
    }
}

impl Row {
    /// The row's cells under [`cumulative_header`], 8 wide each.
    pub fn cumulative_cells(&self) -> String {
        if self.tiers_by == TierBasis::Both.as_str() {
            format!(
                "{:>8.2} {:>8.2}",
                self.cumulative_revenue_pct, self.cumulative_gross_profit_pct
            )
        } else {
            format!("{:>8.2}", self.cumulative_pct)
        }
    }
}

/// What the book is ranked by, in a sentence: the first line of `accounts`.
pub fn basis_line(t: &TierConfig) -> String {
    let pct = |x: f64| (x * 10_000.0).round() / 100.0;
    let (a, b) = (pct(t.a_share), pct(t.b_share));
    let of = "of the trailing-12-month";
    match t.by {
        TierBasis::Revenue => {
            format!("tiers by revenue (tiers.by: revenue): A up to {a}% {of} revenue, B up to {b}%")
        }
        TierBasis::GrossProfit => format!(
            "tiers by gross profit (tiers.by: gross_profit): A up to {a}% {of} gross profit, B up to {b}%"
        ),
        TierBasis::Both => format!(
            "tiers by revenue and gross profit (tiers.by: both): the lower of the two tiers, each A up to {a}% {of} total, B up to {b}%"
        ),
    }
}

/// The warning for order lines of accounts the master does not list: how
/// many, a few ids, their revenue, and what to do. The evaluation logs it
/// and `accounts` prints it.
pub fn unlisted_accounts(count: usize, examples: &[String], revenue_12m: f64) -> String {
    // Ids come from the order files: quoted as every message quotes a cell
    // (bounded, control characters escaped), never copied raw into a log.
    let ids: Vec<String> = examples.iter().map(|id| excerpt(id)).collect();
    let ids = ids.join(", ");
    let more = if count > examples.len() { ", ..." } else { "" };
    format!(
        "order lines name {} account(s) missing from the customer master ({ids}{more}), with {:.2} of revenue in the last 12 months: the lines are kept, but those accounts are not ranked, move no account's tier and get no warnings; add them to the customer master (or fix the account ids in the orders export)",
        count, revenue_12m
    )
}

/// The cumulative share down to an account in one ranking, 0..1: the
/// share above it plus its own `share`; the whole book for an account at
/// zero or below (nothing of it counts), also when no account counts
/// (`total` not positive), as the rules' `share_above` of 1 says.
fn cumulative(share_above: f64, share: f64, total: f64) -> f64 {
    if total <= 0.0 || share <= 0.0 {
        1.0
    } else {
        share_above + share
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Down to a positive account: the share above plus its own; an
    /// account at zero or below: the whole book, counting nothing of its
    /// own; a book with no account above zero (all returns): the same.
    #[test]
    fn cumulative_share_at_each_kind_of_account() {
        assert_eq!(cumulative(0.0, 0.75, 1_000.0), 0.75);
        assert_eq!(cumulative(0.75, 0.25, 1_000.0), 1.0);
        assert_eq!(cumulative(1.0, 0.0, 1_000.0), 1.0);
        assert_eq!(cumulative(1.0, -0.2, 1_000.0), 1.0);
        // No positive account (probe4 08): the whole book above each,
        // as `share_above` says, not 0.
        assert_eq!(cumulative(1.0, -0.2, 0.0), 1.0);
        assert_eq!(cumulative(1.0, 0.0, 0.0), 1.0);
    }
}
