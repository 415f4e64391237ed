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

/// One account's order lines with a SKU, summed per day and SKU, by day.
#[derive(Debug, Default)]
pub struct SkuLines {
    /// (day, sku).
    pub days: Vec<(Day, u32)>,
    /// (quantity, revenue) of each entry of `days`.
    pub amounts: Vec<(f64, f64)>,
}

/// Order lines with a SKU up to `until`, per account in id order (the
/// order the book's per-SKU demand is summed in), each by day.
pub fn sku_lines(
    conn: &Connection,
    until: NaiveDate,
) -> Result<(SkuIndex, Vec<(String, SkuLines)>)> {
    let mut st = conn.prepare(
        "SELECT account_id, date, sku, SUM(COALESCE(qty, 0)), SUM(revenue) FROM orders
         WHERE date <= ?1 AND sku IS NOT NULL AND sku <> ''
         GROUP BY account_id, date, sku ORDER BY account_id, date",
    )?;
    let mut rows = st.query([date_text(until)])?;
    let mut index = SkuIndex::default();
    let mut out: Vec<(String, SkuLines)> = Vec::new();
    while let Some(r) = rows.next()? {
        let id = r.get_ref(0)?.as_str()?;
        if out.last().is_none_or(|(last, _)| last != id) {
            out.push((id.to_string(), SkuLines::default()));
        }
        let Some((id, lines)) = out.last_mut() else {
            continue;
        };
        let date: String = r.get(1)?;
        let d = day(NaiveDate::parse_from_str(&date, "%Y-%m-%d")
            .with_context(|| format!("orders.date {date:?} of account {id} is not YYYY-MM-DD"))?);
        let sku = index.intern(r.get_ref(2)?.as_str()?);
        lines.days.push((d, sku));
        lines.amounts.push((r.get(3)?, r.get(4)?));
    }
    Ok((index, out))
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
                amount: r.get(2)?,
                due: day(due),
            },
        ));
    }
    Ok(out)
}
