//! Store: the SQLite database on disk — connection, pragmas and numbered
//! schema migrations — and the typed writes and reads of the data tables
//! (ledger, accounts, orders, visits).
//!
//! Every statement is parameterised. Other stages keep their own tables
//! (alerts owns `alerts`/`alert_history`, mail owns `outbox`) but reach the
//! database only through a connection opened here.

use std::path::Path;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// Numbered migrations; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("store/0001_init.sql"),
    include_str!("store/0002_more_datasets.sql"),
    include_str!("store/0003_alert_lifecycle.sql"),
    include_str!("store/0006_outbox_mime.sql"),
];

/// Opens (creating if needed) the database and brings its schema up to date.
pub fn open(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the database folder {}", dir.display()))?;
    }
    let mut conn = Connection::open(path)
        .with_context(|| format!("opening the database {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(&mut conn).with_context(|| format!("migrating the database {}", path.display()))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let done: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let done = usize::try_from(done).unwrap_or(0);
    if done > MIGRATIONS.len() {
        anyhow::bail!(
            "the database is at schema version {done}, newer than this kamwatch knows ({}); run a newer kamwatch",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// Now, as stored in `*_at` columns.
pub fn now_text() -> String {
    chrono::Local::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

pub fn date_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// What became of a file, as the ledger records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ingested,
    Duplicate,
    Rejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ingested => "ingested",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
        }
    }
}

pub struct LedgerEntry<'a> {
    pub file_name: &'a str,
    pub size: u64,
    pub hash: &'a str,
    pub dataset: Option<&'a str>,
    pub rows: u64,
    pub outcome: Outcome,
    pub reason: Option<&'a str>,
}

pub fn record_file(conn: &Connection, e: &LedgerEntry<'_>) -> Result<()> {
    conn.execute(
        "INSERT INTO ledger (file_name, size, hash, dataset, rows, outcome, reason, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            e.file_name,
            e.size as i64,
            e.hash,
            e.dataset,
            e.rows as i64,
            e.outcome.as_str(),
            e.reason,
            now_text()
        ],
    )?;
    Ok(())
}

/// The name of the file with this content that was already ingested, if any.
pub fn ingested_before(conn: &Connection, hash: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT file_name FROM ledger WHERE hash = ?1 AND outcome = 'ingested' LIMIT 1",
            [hash],
            |r| r.get(0),
        )
        .optional()?)
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccountRow {
    pub id: String,
    pub name: String,
    pub region: Option<String>,
    pub owner: Option<String>,
    pub owner_email: Option<String>,
    pub manager_email: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    pub order_id: String,
    pub line: String,
    pub account_id: String,
    pub date: NaiveDate,
    pub sku: Option<String>,
    pub qty: Option<f64>,
    pub revenue: f64,
    pub cost: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VisitRow {
    pub account_id: String,
    pub date: NaiveDate,
    pub visitor: String,
    pub role: Option<String>,
}

/// Writes the rows of one file inside its transaction.
pub enum Writer<'t> {
    Accounts(rusqlite::Statement<'t>, String),
    Orders(rusqlite::Statement<'t>),
    Visits(rusqlite::Statement<'t>),
}

impl<'t> Writer<'t> {
    /// An accounts file is the whole master: every account it does not list
    /// becomes inactive (never deleted, so history stays attached).
    pub fn accounts(tx: &'t Transaction<'t>) -> Result<Self> {
        tx.execute("UPDATE accounts SET active = 0", [])?;
        let st = tx.prepare(
            "INSERT INTO accounts (id, name, region, owner, owner_email, manager_email, active, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, region = excluded.region,
               owner = excluded.owner, owner_email = excluded.owner_email,
               manager_email = excluded.manager_email, active = 1, updated_at = excluded.updated_at",
        )?;
        Ok(Writer::Accounts(st, now_text()))
    }

    /// Order lines are upserted by (order id, line): a re-export replaces.
    pub fn orders(tx: &'t Transaction<'t>) -> Result<Self> {
        Ok(Writer::Orders(tx.prepare(
            "INSERT INTO orders (order_id, line, account_id, date, sku, qty, revenue, cost)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (order_id, line) DO UPDATE SET account_id = excluded.account_id,
               date = excluded.date, sku = excluded.sku, qty = excluded.qty,
               revenue = excluded.revenue, cost = excluded.cost",
        )?))
    }

    pub fn visits(tx: &'t Transaction<'t>) -> Result<Self> {
        Ok(Writer::Visits(tx.prepare(
            "INSERT INTO visits (account_id, date, visitor, role) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (account_id, date, visitor) DO UPDATE SET role = excluded.role",
        )?))
    }

    pub fn account(&mut self, r: &AccountRow) -> Result<()> {
        if let Writer::Accounts(st, now) = self {
            st.execute(params![
                r.id,
                r.name,
                r.region,
                r.owner,
                r.owner_email,
                r.manager_email,
                &*now
            ])?;
        }
        Ok(())
    }

    pub fn order(&mut self, r: &OrderRow) -> Result<()> {
        if let Writer::Orders(st) = self {
            st.execute(params![
                r.order_id,
                r.line,
                r.account_id,
                date_text(r.date),
                r.sku,
                r.qty,
                r.revenue,
                r.cost
            ])?;
        }
        Ok(())
    }

    pub fn visit(&mut self, r: &VisitRow) -> Result<()> {
        if let Writer::Visits(st) = self {
            st.execute(params![r.account_id, date_text(r.date), r.visitor, r.role])?;
        }
        Ok(())
    }
}

/// An account as the rest of the pipeline sees it.
#[derive(Debug, Clone)]
pub struct AccountRecord {
    pub row: AccountRow,
    pub active: bool,
}

pub fn load_accounts(conn: &Connection) -> Result<Vec<AccountRecord>> {
    let mut st = conn.prepare(
        "SELECT id, name, region, owner, owner_email, manager_email, active FROM accounts ORDER BY id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(AccountRecord {
            row: AccountRow {
                id: r.get(0)?,
                name: r.get(1)?,
                region: r.get(2)?,
                owner: r.get(3)?,
                owner_email: r.get(4)?,
                manager_email: r.get(5)?,
            },
            active: r.get::<_, i64>(6)? != 0,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One account's orders on one day, summed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrderDay {
    pub date: NaiveDate,
    pub revenue: f64,
    pub cost: f64,
    pub qty: f64,
    pub orders: u32,
}

/// Daily order sums up to and including `until`, grouped by account, in
/// date order. Calls `f(account_id, day)` for each.
pub fn for_each_order_day(
    conn: &Connection,
    until: NaiveDate,
    mut f: impl FnMut(&str, OrderDay),
) -> Result<()> {
    let mut st = conn.prepare(
        "SELECT account_id, date, SUM(revenue), SUM(cost), SUM(COALESCE(qty, 0)), COUNT(DISTINCT order_id)
         FROM orders WHERE date <= ?1 GROUP BY account_id, date ORDER BY account_id, date",
    )?;
    let mut rows = st.query([date_text(until)])?;
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let date: String = r.get(1)?;
        let date = parse_stored_date(&date)?;
        f(
            &id,
            OrderDay {
                date,
                revenue: r.get(2)?,
                cost: r.get(3)?,
                qty: r.get(4)?,
                orders: r.get::<_, i64>(5)? as u32,
            },
        );
    }
    Ok(())
}

/// Visits up to and including `until`, in date order per account.
pub fn for_each_visit(
    conn: &Connection,
    until: NaiveDate,
    mut f: impl FnMut(&str, NaiveDate, Option<&str>),
) -> Result<()> {
    let mut st = conn.prepare(
        "SELECT account_id, date, role FROM visits WHERE date <= ?1 ORDER BY account_id, date",
    )?;
    let mut rows = st.query([date_text(until)])?;
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let date: String = r.get(1)?;
        let role: Option<String> = r.get(2)?;
        f(&id, parse_stored_date(&date)?, role.as_deref());
    }
    Ok(())
}

fn parse_stored_date(s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .with_context(|| format!("a date in the database is not YYYY-MM-DD: {s:?}"))
}

/// Row counts of the data tables, for status lines and tests.
pub fn counts(conn: &Connection) -> Result<(u64, u64, u64)> {
    let n = |t: &str| -> Result<u64> {
        Ok(
            conn.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| {
                r.get::<_, i64>(0)
            })? as u64,
        )
    };
    Ok((n("accounts")?, n("orders")?, n("visits")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("var/k.db");
        drop(open(&p).unwrap());
        let conn = open(&p).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn orders_upsert_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("k.db")).unwrap();
        let row = OrderRow {
            order_id: "SO1".into(),
            line: "1".into(),
            account_id: "A".into(),
            date: NaiveDate::from_ymd_opt(2026, 1, 2).unwrap(),
            sku: None,
            qty: Some(1.0),
            revenue: 10.0,
            cost: 5.0,
        };
        for rev in [10.0, 12.0] {
            let tx = conn.transaction().unwrap();
            {
                let mut w = Writer::orders(&tx).unwrap();
                w.order(&OrderRow {
                    revenue: rev,
                    ..row.clone()
                })
                .unwrap();
            }
            tx.commit().unwrap();
        }
        let (_, orders, _) = counts(&conn).unwrap();
        assert_eq!(orders, 1);
        let rev: f64 = conn
            .query_row("SELECT revenue FROM orders", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rev, 12.0);
    }
}
