//! The reads behind the metrics beyond visits: the order lines (daily sums
//! and lines per SKU, in one scan), the master's attributes, credit limits
//! and tier overrides, open invoices and stock on hand. Every statement is parameterised;
//! nothing here writes.

use std::collections::HashMap;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use rusqlite::Connection;

use super::account::{Invoice, SkuLine};
use super::daylog::DayLog;
use super::series::{DaySums, Series, ahead};
use crate::model::dates::{Day, day};
use crate::model::dates::{date_text, parse_ymd};

/// The largest amount a total may hold one of: ingest refuses anything
/// beyond `ingest.max_amount` (at most 1e15), so only values stored before
/// that bound, or written into the database by hand, are beyond it.
const SANE_AMOUNT: f64 = 1e15;

/// `x` if it is a finite amount within ±[`SANE_AMOUNT`], else 0: one such
/// value would make every total infinite and every share NaN. Counted in
/// `insane`, which the caller logs once.
fn sane(x: f64, insane: &mut u64) -> f64 {
    if x.is_finite() && x.abs() <= SANE_AMOUNT {
        x
    } else {
        *insane += 1;
        0.0
    }
}

pub(super) fn warn_insane(table: &str, n: u64) {
    if n > 0 {
        tracing::warn!(
            table,
            values = n,
            "amounts that are not finite or beyond ±1e15 were counted as 0; they were stored before ingest bounded amounts: correct them and ingest the file again"
        );
    }
}

/// What the master says beyond the canonical columns.
#[derive(Debug, Default)]
pub struct Extra {
    pub attrs: std::sync::Arc<serde_json::Map<String, serde_json::Value>>,
    pub credit_limit: Option<f64>,
    pub tier_override: Option<String>,
}

pub fn account_extras(conn: &Connection) -> Result<HashMap<String, Extra>> {
    let mut st = conn.prepare("SELECT id, attrs, credit_limit, tier_override FROM accounts")?;
    let mut rows = st.query([])?;
    let mut out = HashMap::new();
    let mut insane = 0u64;
    // Accounts without attributes (most) share one empty set.
    let none = std::sync::Arc::new(serde_json::Map::new());
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let attrs: Option<String> = r.get(1)?;
        let attrs = match attrs
            .as_deref()
            .map(serde_json::from_str::<serde_json::Value>)
        {
            Some(Ok(serde_json::Value::Object(m))) => m,
            Some(_) => {
                tracing::warn!(account = %id, "accounts.attrs is not a JSON object; the account's attributes are ignored");
                serde_json::Map::new()
            }
            None => serde_json::Map::new(),
        };
        out.insert(
            id,
            Extra {
                attrs: if attrs.is_empty() {
                    none.clone()
                } else {
                    std::sync::Arc::new(attrs)
                },
                credit_limit: r.get::<_, Option<f64>>(2)?.map(|x| sane(x, &mut insane)),
                tier_override: r
                    .get::<_, Option<String>>(3)?
                    .filter(|t| !t.trim().is_empty()),
            },
        );
    }
    warn_insane("accounts", insane);
    Ok(out)
}

/// SKU names interned to small numbers.
#[derive(Debug, Default)]
pub struct SkuIndex {
    pub names: Vec<String>,
    pub ids: HashMap<String, u32>,
}

impl SkuIndex {
    /// The number of SKU `sku`, a new one if it has none; an error past
    /// the 4,294,967,294th SKU (a number is a `u32`, and `u32::MAX` says
    /// "no SKU"), never a number already taken.
    pub(super) fn intern(&mut self, sku: &str) -> Result<u32> {
        if let Some(i) = self.ids.get(sku) {
            return Ok(*i);
        }
        let i = u32::try_from(self.names.len())
            .ok()
            .filter(|i| *i < NO_SKU)
            .with_context(|| {
                format!(
                    "the order lines name more than {NO_SKU} distinct SKUs (at {sku:?}); the metrics cannot number more"
                )
            })?;
        self.names.push(sku.to_string());
        self.ids.insert(sku.to_string(), i);
        Ok(i)
    }
}

/// One account's order lines with a SKU, summed per day and SKU, by day.
pub type SkuLines = DayLog<SkuLine>;

/// One account's order lines as the metrics need them.
#[derive(Debug, Default)]
pub struct AccountOrders {
    /// Daily sums.
    pub series: Series,
    /// The lines with a SKU, summed per day and SKU, by day.
    pub skus: SkuLines,
}

/// Everything the metrics need from the order lines up to `until`.
#[derive(Debug, Default)]
pub struct Orders {
    /// Per account with any line, in id order (the order the book's daily
    /// sums and per-SKU demand are summed in).
    pub accounts: std::collections::BTreeMap<String, AccountOrders>,
    pub index: SkuIndex,
}

/// One order line of an account, as the sums need it.
pub(super) struct Line {
    day: Day,
    /// Numbers the account's orders in read order: lines of one order are
    /// adjacent (they come by date, then order id), so equal numbers mean
    /// the same order.
    order: u32,
    pub(super) sku: u32,
    qty: f64,
    revenue: f64,
    cost: f64,
}

pub(super) const NO_SKU: u32 = u32::MAX;

/// One account's lines as they are read, in day order and, within a day,
/// in the table's key order (order id, line).
#[derive(Default)]
pub(super) struct Lines {
    lines: Vec<Line>,
    last_order: String,
    order: u32,
    scratch: Vec<(u32, f64, f64)>,
    pub(super) insane: u64,
}

impl Lines {
    /// Adds the line of row `r`, whose order id, date, SKU, quantity,
    /// revenue and cost are its columns from `at` on.
    pub(super) fn push(
        &mut self,
        r: &rusqlite::Row<'_>,
        at: usize,
        index: &mut SkuIndex,
    ) -> Result<()> {
        let order_id = r.get_ref(at)?.as_str()?;
        if order_id != self.last_order {
            self.order = self.order.wrapping_add(1);
            self.last_order.clear();
            self.last_order.push_str(order_id);
        }
        let date = r.get_ref(at + 1)?.as_str()?;
        let d = parse_ymd(date).with_context(|| {
            format!(
                "orders.date {date:?} of order {} is not YYYY-MM-DD",
                self.last_order
            )
        })?;
        let sku = match r.get_ref(at + 2)?.as_str_or_null()? {
            Some(s) if !s.is_empty() => index.intern(s)?,
            _ => NO_SKU,
        };
        let insane = &mut self.insane;
        self.lines.push(Line {
            day: day(d),
            order: self.order,
            sku,
            qty: sane(r.get(at + 3)?, insane),
            revenue: sane(r.get(at + 4)?, insane),
            cost: sane(r.get(at + 5)?, insane),
        });
        Ok(())
    }

    /// The account read so far, if it has lines; starts the next one.
    pub(super) fn take(&mut self, index: &SkuIndex) -> Option<AccountOrders> {
        if self.lines.is_empty() {
            return None;
        }
        let out = account_orders(&self.lines, index, &mut self.scratch);
        self.lines.clear();
        self.last_order.clear();
        self.order = 0;
        Some(out)
    }

    /// [`account_orders_after`] of `kept` and the account read so far;
    /// starts the next one.
    pub(super) fn take_after(
        &mut self,
        kept: Option<Kept<'_>>,
        index: &SkuIndex,
    ) -> Option<AccountOrders> {
        let out = account_orders_after(kept, &self.lines, index, &mut self.scratch);
        self.lines.clear();
        self.last_order.clear();
        self.order = 0;
        out
    }

    /// The lines of the account read so far, as read; starts the next one.
    pub(super) fn raw(&mut self) -> Vec<Line> {
        self.last_order.clear();
        self.order = 0;
        std::mem::take(&mut self.lines)
    }
}

/// Reads the order lines up to `until` and builds, per account, the daily
/// sums (revenue, cost, quantity, distinct orders) and the SKU lines.
///
/// One sequential scan of the table (its key order: no index lookups),
/// sorted by account, day and key by SQLite's sorter, which spills to
/// temporary files past a few MiB: memory holds one account's lines at a
/// time, never the whole table's. (The lines were held in memory, 48
/// bytes each, while they were sorted: the daemon's peak at start-up, 420
/// MiB for 8.75M lines. Reading through an index on the account alone
/// instead looks every line up in the table by its key, several times
/// slower.)
pub fn orders(conn: &Connection, until: NaiveDate) -> Result<Orders> {
    let mut st = conn.prepare(
        "SELECT account_id, order_id, date, sku, COALESCE(qty, 0), revenue, cost
         FROM orders NOT INDEXED WHERE date <= ?1
         ORDER BY account_id, date, order_id, line",
    )?;
    let mut rows = st.query([date_text(until)])?;
    let mut out = Orders::default();
    let mut lines = Lines::default();
    let mut account = String::new();
    while let Some(r) = rows.next()? {
        let id = r.get_ref(0)?.as_str()?;
        if id != account {
            if let Some(o) = lines.take(&out.index) {
                out.accounts.insert(std::mem::take(&mut account), o);
            }
            account.clear();
            account.push_str(id);
        }
        lines.push(r, 1, &mut out.index)?;
    }
    if let Some(o) = lines.take(&out.index) {
        out.accounts.insert(account, o);
    }
    warn_insane("orders", lines.insane);
    Ok(out)
}

/// One account's daily sums and SKU lines from its lines, sorted by day
/// and, within a day, in the table's key order.
pub(super) fn account_orders(
    lines: &[Line],
    index: &SkuIndex,
    skus_today: &mut Vec<(u32, f64, f64)>,
) -> AccountOrders {
    account_orders_after(None, lines, index, skus_today).unwrap_or_default()
}

/// What an account's metrics keep when only its lines from a day on are
/// read again: that day, and its series and SKU lines as they were (the
/// days before it are kept, to the bit).
pub(super) type Kept<'a> = (Day, &'a Series, &'a SkuLines);

/// [`account_orders`] of the kept days of `kept` (if any) followed by
/// `lines` (all on or after its day): what `account_orders` gives for all
/// the account's lines, to the bit (each day is summed on its own, and
/// each prefix sum is the one before plus the day's). None when that
/// leaves no day.
pub(super) fn account_orders_after(
    kept: Option<Kept<'_>>,
    lines: &[Line],
    index: &SkuIndex,
    skus_today: &mut Vec<(u32, f64, f64)>,
) -> Option<AccountOrders> {
    let (keep, mut sku_lines) = match kept {
        Some((from, series, skus)) => (
            series.days_before(from),
            skus.range(0..skus.upto(from.saturating_sub(1))).collect(),
        ),
        None => (0, Vec::new()),
    };
    let mut days: Vec<DaySums> = Vec::with_capacity(lines.chunk_by(|a, b| a.day == b.day).count());
    for today in lines.chunk_by(|a, b| a.day == b.day) {
        let d = today[0].day;
        let mut sum = DaySums {
            day: d,
            revenue: 0.0,
            cost: 0.0,
            qty: 0.0,
            orders: 0,
        };
        skus_today.clear();
        let mut prev_order = None;
        for l in today {
            sum.revenue += l.revenue;
            sum.cost += l.cost;
            sum.qty += l.qty;
            if prev_order != Some(l.order) {
                sum.orders += 1;
                prev_order = Some(l.order);
            }
            if l.sku != NO_SKU {
                skus_today.push((l.sku, l.qty, l.revenue));
            }
        }
        // The day's lines per SKU, in SKU name order (stable: equal names
        // keep the key order).
        skus_today.sort_by(|a, b| index.names[a.0 as usize].cmp(&index.names[b.0 as usize]));
        for same in skus_today.chunk_by(|a, b| a.0 == b.0) {
            sku_lines.push(SkuLine {
                day: d,
                sku: same[0].0,
                qty: same.iter().map(|x| x.1).sum(),
                revenue: same.iter().map(|x| x.2).sum(),
            });
        }
        days.push(sum);
    }
    if keep + days.len() == 0 {
        return None;
    }
    // Each packed once, at the size it ends with.
    let series = match kept {
        Some((_, old, _)) => old.continued(keep, &days),
        None => Series::of(&days),
    };
    Some(AccountOrders {
        series,
        skus: DayLog::from(sku_lines),
    })
}

/// One day of the book: the day and its (revenue, cost, quantity,
/// orders), each summed over the accounts in id order.
pub type BookDay = (Day, [f64; 4]);

/// The whole book's daily sums from the accounts' series, summed day by
/// day in the order given (account id order): each account's day as its
/// series holds it, so the book is the same whichever way the accounts'
/// series were read.
///
/// The days are summed in a dense array over the book's span (a hash map
/// per account-day cost most of a re-export's timeline update at 100,000
/// accounts); a span beyond [`DENSE_DAYS`] (dates written by hand a
/// century apart) is summed in a map instead. Either way each day is
/// summed over the same accounts in the same order: the same bits.
pub fn book_days<'a>(series: impl Iterator<Item = &'a Series>) -> Vec<BookDay> {
    let series: Vec<&Series> = series.collect();
    let first = ahead(&series, |s| *s).filter_map(|s| s.first_day()).min();
    let last = ahead(&series, |s| *s)
        .filter_map(|s| s.last_day(Day::MAX))
        .max();
    let (Some(first), Some(last)) = (first, last) else {
        return Vec::new();
    };
    let span = i64::from(last) - i64::from(first) + 1;
    if span > DENSE_DAYS {
        return book_days_sparse(series);
    }
    // At most DENSE_DAYS entries: the span fits.
    let mut sums: Vec<Option<[f64; 4]>> = vec![None; span as usize];
    for s in ahead(&series, |s| *s) {
        s.each_day(|d, x| {
            let k = (i64::from(d) - i64::from(first)) as usize;
            let b = sums[k].get_or_insert([0.0; 4]);
            for (y, v) in b.iter_mut().zip(x) {
                *y += v;
            }
        });
    }
    sums.into_iter()
        .zip(first..)
        .filter_map(|(x, d)| x.map(|x| (d, x)))
        .collect()
}

/// The widest span of days [`book_days`] sums in a dense array: about 55
/// years (32 bytes a day, under 1 MiB).
const DENSE_DAYS: i64 = 20_000;

/// [`book_days`] in a map, for a book spanning more than [`DENSE_DAYS`].
fn book_days_sparse(series: Vec<&Series>) -> Vec<BookDay> {
    let mut days: HashMap<Day, [f64; 4]> = HashMap::new();
    for s in series {
        s.each_day(|d, sums| {
            let b = days.entry(d).or_insert([0.0; 4]);
            for (x, y) in b.iter_mut().zip(sums) {
                *x += y;
            }
        });
    }
    let mut days: Vec<BookDay> = days.into_iter().collect();
    days.sort_unstable_by_key(|d| d.0);
    days
}

/// The book's series of its daily totals ([`book_days`]).
pub fn book_series(days: &[BookDay]) -> Series {
    let days: Vec<DaySums> = days
        .iter()
        .map(|&(day, [revenue, cost, qty, orders])| DaySums {
            day,
            revenue,
            cost,
            qty,
            orders: orders as u32,
        })
        .collect();
    Series::of(&days)
}

/// Stock on hand of the SKUs that were ever ordered.
#[derive(Debug, Default)]
pub struct Inventory {
    /// (sku, account) -> stock held for that account.
    pub by_account: HashMap<(u32, String), f64>,
    /// sku -> stock not held for one account.
    pub warehouse: HashMap<u32, f64>,
}

pub fn inventory(conn: &Connection, index: &SkuIndex) -> Result<Inventory> {
    let mut st = conn.prepare("SELECT sku, account_id, on_hand FROM inventory")?;
    let mut rows = st.query([])?;
    let mut out = Inventory::default();
    let mut insane = 0u64;
    while let Some(r) = rows.next()? {
        let Some(sku) = index.ids.get(r.get_ref(0)?.as_str()?) else {
            continue;
        };
        let account: String = r.get(1)?;
        let on_hand: f64 = sane(r.get(2)?, &mut insane);
        if account.is_empty() {
            *out.warehouse.entry(*sku).or_default() += on_hand;
        } else {
            *out.by_account.entry((*sku, account)).or_default() += on_hand;
        }
    }
    warn_insane("inventory", insane);
    Ok(out)
}

/// An open invoice and the day it was issued, if the export says.
pub type Issued = (Option<Day>, Invoice);

/// Open invoices issued on or before `as_of` (or without an invoice date),
/// each with the day it was issued; by account, then due date.
pub fn receivables(conn: &Connection, as_of: NaiveDate) -> Result<HashMap<String, Vec<Issued>>> {
    let mut st = conn.prepare(
        "SELECT account_id, invoice, amount, due_date, invoice_date FROM receivables
         WHERE invoice_date IS NULL OR invoice_date <= ?1
         ORDER BY account_id, due_date, invoice",
    )?;
    let mut rows = st.query([date_text(as_of)])?;
    let mut out: HashMap<String, Vec<Issued>> = HashMap::new();
    let mut insane = 0u64;
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let parse = |column: &str, text: &str| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d").with_context(|| {
                let invoice: String = r.get(1).unwrap_or_default();
                format!(
                    "receivables.{column} {text:?} of invoice {invoice} (account {id}) is not YYYY-MM-DD"
                )
            })
        };
        let due: String = r.get(3)?;
        let due = parse("due_date", &due)?;
        let issued = match r.get::<_, Option<String>>(4)? {
            Some(text) => Some(day(parse("invoice_date", &text)?)),
            None => None,
        };
        out.entry(id).or_default().push((
            issued,
            Invoice {
                amount: sane(r.get(2)?, &mut insane),
                due: day(due),
            },
        ));
    }
    warn_insane("receivables", insane);
    Ok(out)
}

#[cfg(test)]
mod tests;
