//! A test case's rows into its database: the inline rows, then those of
//! its CSV fixtures, written in one transaction through the store's writer
//! (the one ingest uses). Reads the fixture files; writes only the case's
//! own database.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::NaiveDate;
use rusqlite::{Connection, Transaction};

use super::schema::{AccountIn, Date, InvoiceIn, OrderIn, StockIn, TestCase, VisitIn};
use crate::model::Tier;
use crate::store::{AccountRow, Extra, InventoryRow, OrderRow, ReceivableRow, VisitRow, Writer};

fn read_csv<T: serde::de::DeserializeOwned>(base: &Path, rel: &Path) -> Result<Vec<T>> {
    let path = base.join(rel);
    let mut r = csv::Reader::from_path(&path)
        .with_context(|| format!("opening the fixture {}", path.display()))?;
    let mut out = Vec::new();
    for (i, row) in r.deserialize().enumerate() {
        out.push(row.with_context(|| {
            format!(
                "{} row {}: use the canonical column names (as in inline rows)",
                path.display(),
                i + 2
            )
        })?);
    }
    Ok(out)
}

/// Dates of a row: `date`, or every `every` days from `from` to `to`.
fn dates(
    date: Option<Date>,
    from: Option<Date>,
    to: Option<Date>,
    every: Option<u32>,
) -> Result<Vec<NaiveDate>> {
    match (date, from, to) {
        (Some(d), None, None) => Ok(vec![d.0]),
        (None, Some(Date(from)), Some(Date(to))) => {
            let step = i64::from(every.unwrap_or(1).max(1));
            let mut out = Vec::new();
            let mut d = from;
            while d <= to {
                out.push(d);
                d += chrono::TimeDelta::days(step);
            }
            Ok(out)
        }
        _ => anyhow::bail!("a row needs either `date` or both `from` and `to` (with `every`)"),
    }
}

/// Every row of a case: inline, then from its fixture files.
struct Rows {
    accounts: Vec<AccountIn>,
    orders: Vec<OrderIn>,
    visits: Vec<VisitIn>,
    invoices: Vec<InvoiceIn>,
    stock: Vec<StockIn>,
}

/// Reads a case's fixture files (the inline rows stay in the case).
fn fixtures(case: &TestCase, base: &Path) -> Result<Rows> {
    fn read<T: serde::de::DeserializeOwned>(base: &Path, p: &Option<PathBuf>) -> Result<Vec<T>> {
        match p {
            Some(p) => read_csv(base, p),
            None => Ok(Vec::new()),
        }
    }
    let f = &case.files;
    Ok(Rows {
        accounts: read(base, &f.accounts)?,
        orders: read(base, &f.orders)?,
        visits: read(base, &f.visits)?,
        invoices: read(base, &f.receivables)?,
        stock: read(base, &f.inventory)?,
    })
}

/// Writes a case's rows (inline first, then its fixtures') through the
/// store's writer, in one transaction.
pub(super) fn load_rows(conn: &mut Connection, case: &TestCase, base: &Path) -> Result<()> {
    let files = fixtures(case, base)?;
    let tx = conn.transaction()?;
    write_rows(&tx, case, &files)?;
    tx.commit()?;
    Ok(())
}

/// Writes every row of the case, each table through its writer.
fn write_rows(tx: &Transaction, case: &TestCase, files: &Rows) -> Result<()> {
    let mut w = Writer::accounts(tx)?;
    for a in case.accounts.iter().chain(&files.accounts) {
        write_account(&mut w, a).with_context(|| format!("account {}", a.id))?;
    }
    let mut w = Writer::orders(tx)?;
    let mut n = 0u64;
    for o in case.orders.iter().chain(&files.orders) {
        for d in dates(o.date, o.from, o.to, o.every)
            .with_context(|| format!("an order of {}", o.account))?
        {
            n += 1;
            w.order(&OrderRow {
                order_id: format!("T{n}"),
                line: "1".into(),
                account_id: o.account.clone(),
                date: d,
                sku: o.sku.clone(),
                qty: o.qty,
                revenue: o.revenue,
                cost: o.cost,
            })?;
        }
    }
    let mut w = Writer::visits(tx)?;
    for v in case.visits.iter().chain(&files.visits) {
        for d in dates(v.date, v.from, v.to, v.every)
            .with_context(|| format!("a visit of {}", v.account))?
        {
            w.visit(&VisitRow {
                account_id: v.account.clone(),
                date: d,
                visitor: v.visitor.clone().unwrap_or_else(|| "rep".into()),
                role: v.role.clone(),
            })?;
        }
    }
    let mut w = Writer::receivables(tx)?;
    for (i, inv) in case.receivables.iter().chain(&files.invoices).enumerate() {
        let row = ReceivableRow {
            account_id: inv.account.clone(),
            invoice: inv
                .invoice
                .clone()
                .unwrap_or_else(|| format!("INV{}", i + 1)),
            amount: inv.amount,
            due_date: inv.due.0,
            invoice_date: inv.issued.map(|d| d.0),
        };
        w.receivable(&row, None)?;
    }
    let mut w = Writer::inventory(tx)?;
    for s in case.inventory.iter().chain(&files.stock) {
        let row = InventoryRow {
            sku: s.sku.clone(),
            account_id: s.account.clone().unwrap_or_default(),
            on_hand: s.on_hand,
        };
        w.stock(&row, None)?;
    }
    Ok(())
}

/// One account of the master. A tier the metrics would not read (not A, B
/// or C, in any case) leaves the computed tier, as it always did.
fn write_account(w: &mut Writer, a: &AccountIn) -> Result<()> {
    let row = AccountRow {
        id: a.id.clone(),
        name: a.name.clone().unwrap_or_else(|| a.id.clone()),
        region: a.region.clone(),
        owner: a.owner.clone(),
        owner_email: a.owner_email.clone(),
        manager_email: None,
        manager: None,
    };
    let extra = Extra {
        credit_limit: a.credit_limit,
        tier_override: a
            .tier
            .as_deref()
            .and_then(|t| Tier::parse(&t.trim().to_ascii_uppercase())),
        attrs: a
            .attrs
            .as_ref()
            .map(|m| serde_json::Value::Object(m.clone()).to_string()),
    };
    w.account_with(&row, &extra)
}
