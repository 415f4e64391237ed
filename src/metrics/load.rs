//! The reads behind the metrics beyond daily order sums and visits: the
//! master's attributes, credit limits and tier overrides, order lines per
//! SKU, open invoices and stock on hand. Every statement is parameterised;
//! nothing here writes.

use std::collections::HashMap;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use rusqlite::Connection;

use super::{Day, Invoice, day};
use crate::store::date_text;

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
                credit_limit: r.get(2)?,
                tier_override: r
                    .get::<_, Option<String>>(3)?
                    .filter(|t| !t.trim().is_empty()),
            },
        );
    }
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

#[derive(Debug, Default)]
pub struct SkuData {
    pub index: SkuIndex,
    /// Per account: (day, sku) by day.
    pub by_account: HashMap<String, Vec<(Day, u32)>>,
    /// Per account and SKU: revenue after `since_12m`.
    pub revenue_12m: HashMap<String, HashMap<u32, f64>>,
    /// Per account and SKU: quantity after `since_recent`.
    pub qty_recent: HashMap<String, HashMap<u32, f64>>,
    /// Per SKU over the whole book: quantity after `since_recent`.
    pub book_qty_recent: HashMap<u32, f64>,
}

/// Order lines with a SKU up to `until`, one entry per account, day and SKU.
pub fn sku_days(
    conn: &Connection,
    until: NaiveDate,
    since_12m: Day,
    since_recent: Day,
) -> Result<SkuData> {
    let mut st = conn.prepare(
        "SELECT account_id, date, sku, SUM(COALESCE(qty, 0)), SUM(revenue) FROM orders
         WHERE date <= ?1 AND sku IS NOT NULL AND sku <> ''
         GROUP BY account_id, date, sku ORDER BY account_id, date",
    )?;
    let mut rows = st.query([date_text(until)])?;
    let mut out = SkuData::default();
    let mut current = String::new();
    let mut days: Vec<(Day, u32)> = Vec::new();
    let mut rev: HashMap<u32, f64> = HashMap::new();
    let mut qty: HashMap<u32, f64> = HashMap::new();
    let flush = |out: &mut SkuData,
                 id: &str,
                 days: &mut Vec<_>,
                 rev: &mut HashMap<_, _>,
                 qty: &mut HashMap<_, _>| {
        if !id.is_empty() {
            out.by_account.insert(id.to_string(), std::mem::take(days));
            out.revenue_12m.insert(id.to_string(), std::mem::take(rev));
            out.qty_recent.insert(id.to_string(), std::mem::take(qty));
        }
    };
    while let Some(r) = rows.next()? {
        let id = r.get_ref(0)?.as_str()?;
        if id != current {
            flush(&mut out, &current, &mut days, &mut rev, &mut qty);
            current = id.to_string();
        }
        let date: String = r.get(1)?;
        let d = day(
            NaiveDate::parse_from_str(&date, "%Y-%m-%d").with_context(|| {
                format!("orders.date {date:?} of account {current} is not YYYY-MM-DD")
            })?,
        );
        let sku = out.index.intern(r.get_ref(2)?.as_str()?);
        let q: f64 = r.get(3)?;
        let v: f64 = r.get(4)?;
        days.push((d, sku));
        if d > since_12m {
            *rev.entry(sku).or_default() += v;
        }
        if d > since_recent {
            *qty.entry(sku).or_default() += q;
            *out.book_qty_recent.entry(sku).or_default() += q;
        }
    }
    flush(&mut out, &current, &mut days, &mut rev, &mut qty);
    Ok(out)
}

/// Stock on hand of the SKUs that were ever ordered.
#[derive(Debug, Default)]
pub struct Inventory {
    /// (sku, account) -> stock held for that account.
    pub by_account: HashMap<(u32, String), f64>,
    /// sku -> stock not held for one account.
    pub warehouse: HashMap<u32, f64>,
    /// sku -> the whole book's recent quantity (filled by the caller).
    pub book_qty_recent: HashMap<u32, f64>,
}

pub fn inventory(conn: &Connection, index: &SkuIndex) -> Result<Inventory> {
    let mut st = conn.prepare("SELECT sku, account_id, on_hand FROM inventory")?;
    let mut rows = st.query([])?;
    let mut out = Inventory::default();
    while let Some(r) = rows.next()? {
        let Some(sku) = index.ids.get(r.get_ref(0)?.as_str()?) else {
            continue;
        };
        let account: String = r.get(1)?;
        let on_hand: f64 = r.get(2)?;
        if account.is_empty() {
            *out.warehouse.entry(*sku).or_default() += on_hand;
        } else {
            *out.by_account.entry((*sku, account)).or_default() += on_hand;
        }
    }
    Ok(out)
}

/// Open invoices issued on or before `as_of` (or without an invoice date).
pub fn receivables(conn: &Connection, as_of: NaiveDate) -> Result<HashMap<String, Vec<Invoice>>> {
    let mut st = conn.prepare(
        "SELECT account_id, invoice, amount, due_date FROM receivables
         WHERE invoice_date IS NULL OR invoice_date <= ?1 ORDER BY account_id, due_date",
    )?;
    let mut rows = st.query([date_text(as_of)])?;
    let mut out: HashMap<String, Vec<Invoice>> = HashMap::new();
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let due: String = r.get(3)?;
        let due = NaiveDate::parse_from_str(&due, "%Y-%m-%d").with_context(|| {
            let invoice: String = r.get(1).unwrap_or_default();
            format!(
                "receivables.due_date {due:?} of invoice {invoice} (account {id}) is not YYYY-MM-DD"
            )
        })?;
        out.entry(id).or_default().push(Invoice {
            amount: r.get(2)?,
            due: day(due),
        });
    }
    Ok(out)
}
