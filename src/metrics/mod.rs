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
//! nothing here writes anything.
//!
//! The rooms, lowest first (each imports only those before it):
//! `titles` (which visit roles a rule's list of titles names: a role
//! containing one, as read (NFKC, without case, invisible characters and
//! extra spaces dropped; English titles as whole words), and none of the
//! words taken out), `calendar` (complete months and quarters over the model's day
//! numbers), `compact` (a history's columns packed at the narrowest
//! width that gives every value back exactly), `series` (`Series`: an
//! account's daily sums, shared, seen as views ending at a day),
//! `daylog` (`DayLog`: visits and SKU lines, the same), `tiers`
//! (ranking into A/B/C, `TierHistory`), `ranks` (the rankings of earlier
//! days kept from one snapshot to the next), `account` (`AccountMetrics`,
//! `Metric`), `snapshot` (`Snapshot`, `Portfolio`, `dump`), `line` (where
//! an account stands against the tier A line, with a margin), `load` (the
//! reads of the store beyond visits), `reread` (some accounts' order
//! lines read again, half on a second connection when many), `master`
//! (the customer master's texts, held once per account and shared),
//! `parts` (every dataset as read, by
//! account), `stock` (main SKUs and stock cover), `timeline` (the parts
//! assembled, or updated in place for the accounts a refresh read; the
//! snapshot of any day up to the last read, and `build`),
//! `notes` (temporary triggers noting what a connection's writes touch),
//! `live` (the daemon's parts kept in memory and refreshed from the
//! notes). This file only declares them and re-exports what the other
//! stages use.

mod account;
mod calendar;
mod compact;
mod daylog;
mod line;
pub mod live;
mod load;
mod master;
mod notes;
mod parts;
mod ranks;
mod reread;
mod series;
mod snapshot;
mod stock;
mod tiers;
mod timeline;
mod titles;

pub use account::{
    AccountMetrics, DEMAND_DAYS, Invoice, MAIN_SKUS, Metric, Roles, SkuLine, StockCover, Visit,
};
pub use calendar::{complete_months, quarter_start};
/// The packed columns a [`DayLog`]'s entries are held in and read from (for [`Logged`]).
#[doc(hidden)]
pub use compact::{Column, Table, Values};
pub use daylog::{DayLog, LOGGED, Logged};
pub use line::{LineState, a_line_state};
pub use live::Live;
pub use parts::Parts;
pub use series::{DaySums, Measure, Series};
#[cfg(test)]
pub use snapshot::tests_support;
pub use snapshot::{DATA_KINDS, Portfolio, Snapshot, dump};
pub use tiers::{
    PREV_TIER_DAYS, TIER_HISTORY_DAYS, TierHistory, Wanted, assign_tiers, rank_tiers,
    ranked_gross_profit, ranking_total,
};
pub use timeline::{Reuse, Timeline, build};
pub use titles::Titles;
