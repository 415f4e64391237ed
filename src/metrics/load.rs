//! The reads behind the metrics beyond visits: the order lines (daily sums
//! and lines per SKU, in one scan), the master's attributes, credit limits
//! and tier overrides, open invoices and stock on hand. Every statement is parameterised;
//! nothing here writes.

use std::collections::HashMap;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use rusqlite::Connection;

use super::{Day, Invoice, Series, day};
use crate::store::OrderDay;
use crate::store::date_text;

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

fn warn_insane(table: &str, n: u64) {
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
    pub attrs: serde_json::Map<String, serde_json::Value>,
    pub credit_limit: Option<f64>,
    pub tier_override: Option<String>,
}

pub fn account_extras(conn: &Connection) -> Result<HashMap<String, Extra>> {
    let mut st = conn.prepare("SELECT id, attrs, credit_limit, tier_override FROM accounts")?;
    let mut rows = st.query([])?;
    let mut out = HashMap::new();
    let mut insane = 0u64;
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
                attrs,
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
    fn intern(&mut self, sku: &str) -> u32 {
        if let Some(i) = self.ids.get(sku) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.names.push(sku.to_string());
        self.ids.insert(sku.to_string(), i);
        i
    }
}

/// One account's order lines with a SKU, summed per day and SKU, by day.
#[derive(Debug, Default)]
pub struct SkuLines {
    /// (day, sku).
    pub days: Vec<(Day, u32)>,
    /// (quantity, revenue) of each entry of `days`.
    pub amounts: Vec<(f64, f64)>,
}

/// Everything the metrics need from the order lines up to `until`.
#[derive(Debug, Default)]
pub struct Orders {
    /// Per account: daily sums.
    pub series: HashMap<String, Series>,
    /// The whole book's daily sums (accounts missing from the master too).
    pub book: Series,
    pub index: SkuIndex,
    /// Per account in id order (the order the book's per-SKU demand is
    /// summed in): the lines with a SKU, summed per day and SKU, by day.
    pub sku_lines: Vec<(String, SkuLines)>,
}

/// One order line, as compact as the scan needs it.
struct Line {
    account: u32,
    day: Day,
    /// The line's place in the scan: sorting by it too makes the order
    /// of a day's lines, and so its floating-point sums, the same whatever
    /// the date range read.
    seq: u32,
    /// Numbers the orders in scan order: lines of one order are adjacent
    /// (the table's key starts with the order id), so equal numbers mean
    /// the same order.
    order: u32,
    sku: u32,
    qty: f64,
    revenue: f64,
    cost: f64,
}

const NO_SKU: u32 = u32::MAX;

/// Reads the order lines up to `until` in one sequential scan of the table
/// (its key order: no index lookups) and builds, per account, the daily
/// sums (revenue, cost, quantity, distinct orders) and the SKU lines. The
/// lines are held compactly (48 bytes each) while they are sorted by
/// account and day. Two `GROUP BY` queries over an (account, date) index
/// (since dropped: nothing else read it), which looked every line up in the
/// table, took four times as long.
pub fn orders(conn: &Connection, until: NaiveDate) -> Result<Orders> {
    let mut st = conn.prepare(
        "SELECT order_id, account_id, date, sku, COALESCE(qty, 0), revenue, cost
         FROM orders NOT INDEXED WHERE date <= ?1",
    )?;
    let mut rows = st.query([date_text(until)])?;
    let mut accounts: Vec<String> = Vec::new();
    let mut account_ids: HashMap<String, u32> = HashMap::new();
    let mut out = Orders::default();
    let mut lines: Vec<Line> = Vec::new();
    let mut insane = 0u64;
    let mut last_order = String::new();
    let mut order = 0u32;
    while let Some(r) = rows.next()? {
        let order_id = r.get_ref(0)?.as_str()?;
        if order_id != last_order {
            order = order.wrapping_add(1);
            last_order.clear();
            last_order.push_str(order_id);
        }
        let id = r.get_ref(1)?.as_str()?;
        let account = match account_ids.get(id) {
            Some(a) => *a,
            None => {
                let a = accounts.len() as u32;
                accounts.push(id.to_string());
                account_ids.insert(id.to_string(), a);
                a
            }
        };
        let date = r.get_ref(2)?.as_str()?;
        let d = crate::store::parse_ymd(date).with_context(|| {
            format!("orders.date {date:?} of order {last_order} is not YYYY-MM-DD")
        })?;
        let sku = match r.get_ref(3)?.as_str_or_null()? {
            Some(s) if !s.is_empty() => out.index.intern(s),
            _ => NO_SKU,
        };
        lines.push(Line {
            account,
            day: day(d),
            seq: lines.len() as u32,
            order,
            sku,
            qty: sane(r.get(4)?, &mut insane),
            revenue: sane(r.get(5)?, &mut insane),
            cost: sane(r.get(6)?, &mut insane),
        });
    }
    drop(rows);
    warn_insane("orders", insane);
    // By scan order within a day: the lines of one order stay adjacent.
    lines.sort_unstable_by_key(|l| (l.account, l.day, l.seq));

    let mut book: HashMap<Day, OrderDay> = HashMap::new();
    let mut skus_today: Vec<(u32, f64, f64)> = Vec::new();
    for acc in lines.chunk_by(|a, b| a.account == b.account) {
        let id = &accounts[acc[0].account as usize];
        let mut series = Series::default();
        let mut sku_lines = SkuLines::default();
        for today in acc.chunk_by(|a, b| a.day == b.day) {
            let d = today[0].day;
            let mut sum = OrderDay {
                date: super::date_of(d),
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
            // The day's lines per SKU, in SKU name order.
            skus_today
                .sort_by(|a, b| out.index.names[a.0 as usize].cmp(&out.index.names[b.0 as usize]));
            for same in skus_today.chunk_by(|a, b| a.0 == b.0) {
                sku_lines.days.push((d, same[0].0));
                sku_lines.amounts.push((
                    same.iter().map(|x| x.1).sum(),
                    same.iter().map(|x| x.2).sum(),
                ));
            }
            series.push(&sum);
            let b = book.entry(d).or_insert(OrderDay {
                revenue: 0.0,
                cost: 0.0,
                qty: 0.0,
                orders: 0,
                ..sum
            });
            b.revenue += sum.revenue;
            b.cost += sum.cost;
            b.qty += sum.qty;
            b.orders += sum.orders;
        }
        out.series.insert(id.clone(), series);
        if !sku_lines.days.is_empty() {
            out.sku_lines.push((id.clone(), sku_lines));
        }
    }
    out.sku_lines.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut book: Vec<OrderDay> = book.into_values().collect();
    book.sort_unstable_by_key(|d| d.date);
    for d in &book {
        out.book.push(d);
    }
    Ok(out)
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
