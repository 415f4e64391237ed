//! Store: the SQLite database on disk — connection, pragmas, numbered
//! schema migrations (one `BEGIN IMMEDIATE` transaction, safe with several
//! processes starting at once), `quick_check` and the file's identity — and the typed writes and reads of the data tables
//! (ledger, accounts, orders, visits, receivables, inventory), including
//! the bulk-load index suspend/restore and the key-ordered staging of big
//! visits files that ingest uses.
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
    include_str!("0001_init.sql"),
    include_str!("0002_more_datasets.sql"),
    include_str!("0003_alert_lifecycle.sql"),
    include_str!("0004_ingest.sql"),
    include_str!("0005_outbox_mime.sql"),
    include_str!("0006_compact_order_attrs.sql"),
    include_str!("0007_ledger_counts.sql"),
    include_str!("0008_installation.sql"),
    include_str!("0009_figure_units.sql"),
    include_str!("0010_manager_name.sql"),
    include_str!("0011_orders_by_account.sql"),
];

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens (creating if needed) the database and brings its schema up to date.
pub fn open(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the database folder {}", dir.display()))?;
    }
    let mut conn = Connection::open(path)
        .with_context(|| format!("opening the database {}", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    set_wal(&conn).with_context(|| format!("opening the database {}", path.display()))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(&mut conn).with_context(|| format!("migrating the database {}", path.display()))?;
    Ok(conn)
}

/// Puts the database in WAL mode. On a new database another process may be
/// doing the same (or migrating) at this moment, and SQLite answers a mode
/// change it cannot make with "database is locked" at once, without waiting:
/// so it is retried until [`BUSY_TIMEOUT`].
fn set_wal(conn: &Connection) -> Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A read-only connection to a database [`open`] has already set up (WAL,
/// migrated): for reading in a second thread beside the first connection.
pub fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening the database {} to read", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Brings the schema up to date. Several processes may open a new database
/// at once (the daemon, `ingest`, `status`): all migrations run in one
/// `BEGIN IMMEDIATE` transaction that reads the schema version inside it,
/// so the second process waits for the first and then finds nothing to do.
fn migrate(conn: &mut Connection) -> Result<()> {
    let current = |c: &Connection| -> Result<usize> {
        let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
        Ok(usize::try_from(v).unwrap_or(0))
    };
    if current(conn)? == MIGRATIONS.len() {
        return Ok(()); // the usual case: no write lock taken
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let done = current(&tx)?;
    if done > MIGRATIONS.len() {
        anyhow::bail!(
            "the database is at schema version {done}, newer than this kamwatch knows ({}); run a newer kamwatch",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.execute_batch(sql)
            .with_context(|| format!("schema migration {}", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}

/// This database's installation id: random, made when it was created (or
/// upgraded to schema 8), the same for its whole life.
pub fn installation_id(conn: &Connection) -> Result<String> {
    Ok(conn.query_row("SELECT id FROM installation LIMIT 1", [], |r| r.get(0))?)
}

/// The identity of the database file: (device, inode). The daemon compares
/// it before each job, so a database deleted or replaced under it stops it
/// instead of writing on into a file nobody can open any more.
pub fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// `PRAGMA quick_check`: `Ok(())` when the database's pages are sound,
/// else the problems SQLite found (at most a few lines), as an error that
/// names the file and says what to do.
pub fn quick_check(conn: &Connection, path: &Path) -> Result<()> {
    let found: std::result::Result<Vec<String>, rusqlite::Error> =
        conn.prepare("PRAGMA quick_check(5)").and_then(|mut st| {
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<std::result::Result<Vec<_>, _>>()
        });
    let problems = match found {
        Ok(lines) if lines.len() == 1 && lines[0] == "ok" => return Ok(()),
        Ok(lines) => lines.join("; "),
        Err(e) => e.to_string(),
    };
    Err(anyhow::anyhow!(
        "the database {} is damaged ({problems}). Stop kamwatch, then restore the file from a backup, or move it aside and run `kamwatch rebuild` to rebuild it from the archived inputs",
        path.display()
    ))
}

/// Now, as stored in `*_at` columns.
pub fn now_text() -> String {
    crate::config::now()
        .with_timezone(&chrono::Local)
        .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

use crate::model::Tier;
use crate::model::dates::date_bytes;
/// Stored date text, read and written: plain values of the model.
pub use crate::model::dates::{date_text, parse_ymd};

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
    /// For snapshots: the day the file was written (YYYY-MM-DD).
    pub file_date: Option<&'a str>,
}

pub fn record_file(conn: &Connection, e: &LedgerEntry<'_>) -> Result<()> {
    conn.execute(
        "INSERT INTO ledger (file_name, size, hash, dataset, rows, outcome, reason, at, file_date)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            e.file_name,
            e.size as i64,
            e.hash,
            e.dataset,
            e.rows as i64,
            e.outcome.as_str(),
            e.reason,
            now_text(),
            e.file_date
        ],
    )?;
    Ok(())
}

/// What one ingested file did, row by row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCounts {
    /// Data rows read, good and bad.
    pub read: u64,
    pub stored: u64,
    /// Rows of earlier files this file replaced by key (for receivables
    /// and inventory: the rows of the snapshot before).
    pub replaced: u64,
    /// Bad rows left out under `on_error: skip_rows`.
    pub skipped: u64,
}

impl std::fmt::Display for RowCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "read {}, stored {}, replaced {} (by key, from earlier files), skipped {}",
            self.read, self.stored, self.replaced, self.skipped
        )
    }
}

/// [`record_file`] with the row counts of an ingested file.
pub fn record_file_counts(conn: &Connection, e: &LedgerEntry<'_>, c: &RowCounts) -> Result<()> {
    record_file(conn, e)?;
    conn.execute(
        "UPDATE ledger SET rows_read = ?1, rows_replaced = ?2, rows_skipped = ?3
         WHERE id = last_insert_rowid()",
        params![c.read as i64, c.replaced as i64, c.skipped as i64],
    )?;
    Ok(())
}

/// Starts counting the rows of `table` that the writes of this transaction
/// replace (an upsert that updates, or a delete by a configured key): a
/// temporary trigger, so rows that are new cost nothing. Read the count
/// with [`replacements`]. `table` is one of the data tables.
pub fn count_replacements(tx: &Transaction<'_>, table: &str) -> Result<()> {
    if !matches!(
        table,
        "accounts" | "orders" | "visits" | "receivables" | "inventory"
    ) {
        anyhow::bail!("no data table {table}");
    }
    tx.execute_batch(&format!(
        "DROP TABLE IF EXISTS temp.replaced_rows;
         CREATE TEMP TABLE replaced_rows (n INTEGER NOT NULL);
         INSERT INTO temp.replaced_rows VALUES (0);
         DROP TRIGGER IF EXISTS temp.replaced_by_update;
         DROP TRIGGER IF EXISTS temp.replaced_by_delete;
         CREATE TEMP TRIGGER replaced_by_update AFTER UPDATE ON main.{table}
           BEGIN UPDATE temp.replaced_rows SET n = n + 1; END;
         CREATE TEMP TRIGGER replaced_by_delete AFTER DELETE ON main.{table}
           BEGIN UPDATE temp.replaced_rows SET n = n + 1; END;"
    ))?;
    Ok(())
}

/// The rows replaced since [`count_replacements`]; stops counting.
pub fn replacements(tx: &Transaction<'_>) -> Result<u64> {
    let n: i64 = tx.query_row("SELECT n FROM temp.replaced_rows", [], |r| r.get(0))?;
    tx.execute_batch(
        "DROP TRIGGER IF EXISTS temp.replaced_by_update;
         DROP TRIGGER IF EXISTS temp.replaced_by_delete;
         DROP TABLE IF EXISTS temp.replaced_rows;",
    )?;
    Ok(n.max(0) as u64)
}

/// The newest snapshot of a dataset ingested so far, by its day, then the
/// ledger order.
pub struct NewestSnapshot {
    pub file_name: String,
    pub day: String,
    pub hash: String,
}

/// The newest snapshot of `dataset` ingested so far.
pub fn newest_snapshot(conn: &Connection, dataset: &str) -> Result<Option<NewestSnapshot>> {
    Ok(conn
        .query_row(
            "SELECT file_name, file_date, hash FROM ledger
             WHERE dataset = ?1 AND outcome = 'ingested' AND file_date IS NOT NULL
             ORDER BY file_date DESC, id DESC LIMIT 1",
            [dataset],
            |r| {
                Ok(NewestSnapshot {
                    file_name: r.get(0)?,
                    day: r.get(1)?,
                    hash: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// Remembers, inside a master's transaction and before it switches every
/// account off, which accounts are active; returns how many.
pub fn remember_active_accounts(tx: &Transaction) -> Result<u64> {
    tx.execute_batch(
        "DROP TABLE IF EXISTS temp.active_before;
         CREATE TEMP TABLE active_before AS SELECT id FROM accounts WHERE active = 1;",
    )?;
    Ok(
        tx.query_row("SELECT COUNT(*) FROM temp.active_before", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

/// How many of the accounts [`remember_active_accounts`] saw active the
/// master left out.
pub fn accounts_switched_off(tx: &Transaction) -> Result<u64> {
    let n: i64 = tx.query_row(
        "SELECT COUNT(*) FROM temp.active_before b JOIN accounts a ON a.id = b.id WHERE a.active = 0",
        [],
        |r| r.get(0),
    )?;
    tx.execute_batch("DROP TABLE temp.active_before")?;
    Ok(n as u64)
}

/// The newest snapshot of `dataset` applied (by its day, then the ledger
/// order), if it has this content. A snapshot that equals an older one but
/// not the newest is no duplicate: sent again after another replaced it, it
/// is the book as it is now (a full master after a partial one).
pub fn same_as_newest_snapshot(
    conn: &Connection,
    dataset: &str,
    hash: &str,
) -> Result<Option<String>> {
    Ok(newest_snapshot(conn, dataset)?
        .filter(|n| n.hash == hash)
        .map(|n| n.file_name))
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
    /// The manager's name, when the master has it.
    pub manager: Option<String>,
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

/// The customer master's fields beyond [`AccountRow`], and the columns of
/// any export beyond its canonical fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extra {
    pub credit_limit: Option<f64>,
    /// The master's tier, overriding the computed one.
    pub tier_override: Option<Tier>,
    /// A JSON object of the other columns, `None` when there are none.
    pub attrs: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReceivableRow {
    pub account_id: String,
    pub invoice: String,
    pub amount: f64,
    pub due_date: NaiveDate,
    pub invoice_date: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InventoryRow {
    pub sku: String,
    /// Empty for stock not held for one account.
    pub account_id: String,
    pub on_hand: f64,
}

/// Deletes the rows that share a configured key with the row written next,
/// when that key is not the table's own primary key.
pub struct KeyDelete<'t> {
    st: rusqlite::Statement<'t>,
    fields: Vec<&'static str>,
}

impl<'t> KeyDelete<'t> {
    /// `None` when `key` is the table's primary key (the upsert suffices).
    fn new(
        tx: &'t Transaction<'t>,
        table: &str,
        columns: &[&'static str],
        primary: &[&str],
        key: &[String],
    ) -> Result<Option<Self>> {
        if key.len() == primary.len() && key.iter().all(|k| primary.contains(&k.as_str())) {
            return Ok(None);
        }
        // Only canonical column names reach the SQL text (config validated
        // them); the values are parameters.
        let mut fields = Vec::new();
        for k in key {
            let Some(c) = columns.iter().find(|c| **c == k.as_str()) else {
                anyhow::bail!("{table} has no column {k:?} to key on");
            };
            fields.push(*c);
        }
        // The delete runs once per written row, so it needs an index on the
        // key, unless the key is a leading part of the primary key. Orders
        // keep no other index (migration 0006), so one is made here, once.
        let leading = (1..=primary.len())
            .any(|n| n == fields.len() && primary[..n].iter().all(|p| fields.contains(p)));
        if !leading {
            tx.execute_batch(&format!(
                "CREATE INDEX IF NOT EXISTS {table}_key_{} ON {table} ({})",
                fields.join("_"),
                fields.join(", ")
            ))?;
        }
        let cond: Vec<String> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| format!("{f} IS ?{}", i + 1))
            .collect();
        let st = tx.prepare(&format!("DELETE FROM {table} WHERE {}", cond.join(" AND ")))?;
        Ok(Some(KeyDelete { st, fields }))
    }

    fn run(&mut self, value: impl Fn(&str) -> rusqlite::types::Value) -> Result<()> {
        let vals: Vec<rusqlite::types::Value> = self.fields.iter().map(|f| value(f)).collect();
        self.st.execute(rusqlite::params_from_iter(vals))?;
        Ok(())
    }
}

const ORDER_COLUMNS: &[&str] = &[
    "order_id",
    "line",
    "account_id",
    "date",
    "sku",
    "qty",
    "revenue",
    "cost",
];
const VISIT_COLUMNS: &[&str] = &["account_id", "date", "visitor", "role"];

/// Parameters of one order line in the upsert.
const ORDER_PARAMS: usize = 10;
/// Order lines per statement in [`Writer::orders_many`].
const ORDERS_PER_STATEMENT: usize = 64;

/// The upsert of `rows` order lines, their parameters numbered in order.
fn order_upsert_sql(rows: usize) -> String {
    let one = format!("({})", ["?"; ORDER_PARAMS].join(", "));
    format!(
        "INSERT INTO orders (order_id, line, account_id, date, sku, qty, revenue, cost, attrs, attr_layout)
         VALUES {}
         ON CONFLICT (order_id, line) DO UPDATE SET account_id = excluded.account_id,
           date = excluded.date, sku = excluded.sku, qty = excluded.qty,
           revenue = excluded.revenue, cost = excluded.cost, attrs = excluded.attrs,
           attr_layout = excluded.attr_layout",
        vec![one; rows].join(", ")
    )
}

/// Binds one order line to the parameters `first..first + ORDER_PARAMS`.
fn bind_order(
    st: &mut rusqlite::Statement<'_>,
    first: usize,
    r: &OrderRow,
    values: Option<&str>,
    layout: Option<i64>,
) -> Result<()> {
    let date = date_bytes(r.date);
    // date_bytes writes ASCII digits and dashes only.
    let date = std::str::from_utf8(&date).unwrap_or_default();
    st.raw_bind_parameter(first, r.order_id.as_str())?;
    st.raw_bind_parameter(first + 1, r.line.as_str())?;
    st.raw_bind_parameter(first + 2, r.account_id.as_str())?;
    st.raw_bind_parameter(first + 3, date)?;
    st.raw_bind_parameter(first + 4, r.sku.as_deref())?;
    st.raw_bind_parameter(first + 5, r.qty)?;
    st.raw_bind_parameter(first + 6, r.revenue)?;
    st.raw_bind_parameter(first + 7, r.cost)?;
    st.raw_bind_parameter(first + 8, values)?;
    st.raw_bind_parameter(first + 9, values.and(layout))?;
    Ok(())
}

/// The statements that write order lines.
pub struct OrderWriter<'t> {
    /// The upsert of one line.
    one: rusqlite::Statement<'t>,
    /// The upsert of [`ORDERS_PER_STATEMENT`] lines; `None` with `delete`.
    many: Option<rusqlite::Statement<'t>>,
    /// The delete by a configured key other than (order id, line).
    delete: Option<KeyDelete<'t>>,
    /// The attribute layout (`attr_layouts.id`) of the file's extra columns.
    layout: Option<i64>,
}

/// Writes the rows of one file inside its transaction.
pub enum Writer<'t> {
    Accounts(rusqlite::Statement<'t>, String),
    Orders(OrderWriter<'t>),
    Visits(rusqlite::Statement<'t>, Option<KeyDelete<'t>>),
    Receivables(rusqlite::Statement<'t>),
    Inventory(rusqlite::Statement<'t>),
}

impl<'t> Writer<'t> {
    /// An accounts file is the whole master: every account it does not list
    /// becomes inactive (never deleted, so history stays attached).
    pub fn accounts(tx: &'t Transaction<'t>) -> Result<Self> {
        tx.execute("UPDATE accounts SET active = 0", [])?;
        let st = tx.prepare(
            "INSERT INTO accounts (id, name, region, owner, owner_email, manager_email, active, updated_at,
               credit_limit, tier_override, attrs, manager)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, region = excluded.region,
               owner = excluded.owner, owner_email = excluded.owner_email,
               manager_email = excluded.manager_email, manager = excluded.manager, active = 1, updated_at = excluded.updated_at,
               credit_limit = excluded.credit_limit, tier_override = excluded.tier_override,
               attrs = excluded.attrs",
        )?;
        Ok(Writer::Accounts(st, now_text()))
    }

    /// A master older than the newest one ingested: it changes no account
    /// the store knows and deactivates none; accounts only it lists are
    /// added as inactive (the newer master did not list them).
    pub fn accounts_older(tx: &'t Transaction<'t>) -> Result<Self> {
        let st = tx.prepare(
            "INSERT INTO accounts (id, name, region, owner, owner_email, manager_email, active, updated_at,
               credit_limit, tier_override, attrs, manager)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (id) DO NOTHING",
        )?;
        Ok(Writer::Accounts(st, now_text()))
    }

    /// Order lines are upserted by (order id, line): a re-export replaces.
    pub fn orders(tx: &'t Transaction<'t>) -> Result<Self> {
        Self::orders_keyed(tx, &["order_id".to_string(), "line".to_string()], &[])
    }

    /// Order lines upserted by `key` (canonical order fields), from a file
    /// whose extra columns are `attr_names` (in column order): the values
    /// given to [`Writer::order_with`] are a JSON array in that order.
    pub fn orders_keyed(
        tx: &'t Transaction<'t>,
        key: &[String],
        attr_names: &[&str],
    ) -> Result<Self> {
        let delete = KeyDelete::new(tx, "orders", ORDER_COLUMNS, &["order_id", "line"], key)?;
        let layout = if attr_names.is_empty() {
            None
        } else {
            Some(attr_layout(tx, attr_names)?)
        };
        // Without a separate key to delete by, whole batches go in one
        // statement of ORDERS_PER_STATEMENT rows: a fraction of the
        // per-statement work of one row at a time.
        let many = if delete.is_none() {
            Some(tx.prepare(&order_upsert_sql(ORDERS_PER_STATEMENT))?)
        } else {
            None
        };
        Ok(Writer::Orders(OrderWriter {
            one: tx.prepare(&order_upsert_sql(1))?,
            many,
            delete,
            layout,
        }))
    }

    pub fn visits(tx: &'t Transaction<'t>) -> Result<Self> {
        Self::visits_keyed(tx, &["account_id", "date", "visitor"].map(String::from))
    }

    /// Visits upserted by `key` (canonical visit fields).
    pub fn visits_keyed(tx: &'t Transaction<'t>, key: &[String]) -> Result<Self> {
        let delete = KeyDelete::new(
            tx,
            "visits",
            VISIT_COLUMNS,
            &["account_id", "date", "visitor"],
            key,
        )?;
        Ok(Writer::Visits(
            tx.prepare(
                "INSERT INTO visits (account_id, date, visitor, role, attrs) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (account_id, date, visitor) DO UPDATE SET role = excluded.role,
                   attrs = excluded.attrs",
            )?,
            delete,
        ))
    }

    /// Visits of a big file, written first to a temporary stage in file
    /// order; [`apply_visit_stage`] then upserts them into `visits` in key
    /// order. A backfill comes in date order while the table is keyed by
    /// account first, so row by row every visit lands on a random page of
    /// a table far bigger than the page cache (18k rows/s at 10.9M
    /// visits); in key order the pages are visited once, in order. With
    /// the default key only: a configured key deletes row by row.
    pub fn visits_staged(tx: &'t Transaction<'t>) -> Result<Self> {
        tx.execute_batch(
            "DROP TABLE IF EXISTS temp.visit_stage;
             CREATE TEMP TABLE visit_stage (account_id TEXT NOT NULL, date TEXT NOT NULL,
               visitor TEXT NOT NULL, role TEXT, attrs TEXT);",
        )?;
        Ok(Writer::Visits(
            tx.prepare(
                "INSERT INTO temp.visit_stage (account_id, date, visitor, role, attrs)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?,
            None,
        ))
    }

    /// A receivables file is every open invoice: it replaces the table.
    pub fn receivables(tx: &'t Transaction<'t>) -> Result<Self> {
        tx.execute("DELETE FROM receivables", [])?;
        Ok(Writer::Receivables(tx.prepare(
            "INSERT INTO receivables (account_id, invoice, amount, due_date, invoice_date, attrs)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (account_id, invoice) DO UPDATE SET amount = excluded.amount,
               due_date = excluded.due_date, invoice_date = excluded.invoice_date,
               attrs = excluded.attrs",
        )?))
    }

    /// An inventory file is all stock on hand: it replaces the table.
    pub fn inventory(tx: &'t Transaction<'t>) -> Result<Self> {
        tx.execute("DELETE FROM inventory", [])?;
        Ok(Writer::Inventory(tx.prepare(
            "INSERT INTO inventory (sku, account_id, on_hand, attrs) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (sku, account_id) DO UPDATE SET on_hand = excluded.on_hand,
               attrs = excluded.attrs",
        )?))
    }

    pub fn account(&mut self, r: &AccountRow) -> Result<()> {
        self.account_with(r, &Extra::default())
    }

    pub fn account_with(&mut self, r: &AccountRow, x: &Extra) -> Result<()> {
        if let Writer::Accounts(st, now) = self {
            st.execute(params![
                r.id,
                r.name,
                r.region,
                r.owner,
                r.owner_email,
                r.manager_email,
                &*now,
                x.credit_limit,
                x.tier_override.map(Tier::as_str),
                x.attrs,
                r.manager
            ])?;
        }
        Ok(())
    }

    pub fn order(&mut self, r: &OrderRow) -> Result<()> {
        self.order_with(r, None)
    }

    /// `values`: the attribute values, a JSON array in the order of the
    /// writer's `attr_names` (null for an empty cell); `None` when every
    /// one is empty.
    pub fn order_with(&mut self, r: &OrderRow, values: Option<&str>) -> Result<()> {
        use rusqlite::types::Value;
        if let Writer::Orders(OrderWriter {
            one: st,
            delete,
            layout,
            ..
        }) = self
        {
            if let Some(del) = delete {
                let date = date_text(r.date);
                del.run(|f| match f {
                    "order_id" => Value::Text(r.order_id.clone()),
                    "line" => Value::Text(r.line.clone()),
                    "account_id" => Value::Text(r.account_id.clone()),
                    "date" => Value::Text(date.clone()),
                    "sku" => r.sku.clone().map_or(Value::Null, Value::Text),
                    "qty" => r.qty.map_or(Value::Null, Value::Real),
                    "revenue" => Value::Real(r.revenue),
                    "cost" => Value::Real(r.cost),
                    _ => Value::Null,
                })?;
            }
            bind_order(st, 1, r, values, *layout)?;
            st.raw_execute()?;
        }
        Ok(())
    }

    /// Writes order lines as [`Writer::order_with`] does, in order (a later
    /// line with the same key replaces an earlier one), several to a
    /// statement.
    pub fn orders_many(&mut self, rows: &[(&OrderRow, Option<&str>)]) -> Result<()> {
        if let Writer::Orders(OrderWriter {
            many: Some(st),
            layout,
            ..
        }) = self
        {
            let layout = *layout;
            let mut chunks = rows.chunks_exact(ORDERS_PER_STATEMENT);
            for chunk in &mut chunks {
                for (i, (r, values)) in chunk.iter().enumerate() {
                    bind_order(st, i * ORDER_PARAMS + 1, r, *values, layout)?;
                }
                st.raw_execute()?;
            }
            for (r, values) in chunks.remainder() {
                self.order_with(r, *values)?;
            }
        } else {
            for (r, values) in rows {
                self.order_with(r, *values)?;
            }
        }
        Ok(())
    }

    pub fn visit(&mut self, r: &VisitRow) -> Result<()> {
        self.visit_with(r, None)
    }

    pub fn visit_with(&mut self, r: &VisitRow, attrs: Option<&str>) -> Result<()> {
        use rusqlite::types::Value;
        if let Writer::Visits(st, delete) = self {
            let date = date_text(r.date);
            if let Some(del) = delete {
                del.run(|f| match f {
                    "account_id" => Value::Text(r.account_id.clone()),
                    "date" => Value::Text(date.clone()),
                    "visitor" => Value::Text(r.visitor.clone()),
                    "role" => r.role.clone().map_or(Value::Null, Value::Text),
                    _ => Value::Null,
                })?;
            }
            st.execute(params![r.account_id, date, r.visitor, r.role, attrs])?;
        }
        Ok(())
    }

    pub fn receivable(&mut self, r: &ReceivableRow, attrs: Option<&str>) -> Result<()> {
        if let Writer::Receivables(st) = self {
            st.execute(params![
                r.account_id,
                r.invoice,
                r.amount,
                date_text(r.due_date),
                r.invoice_date.map(date_text),
                attrs
            ])?;
        }
        Ok(())
    }

    pub fn stock(&mut self, r: &InventoryRow, attrs: Option<&str>) -> Result<()> {
        if let Writer::Inventory(st) = self {
            st.execute(params![r.sku, r.account_id, r.on_hand, attrs])?;
        }
        Ok(())
    }
}

/// Upserts the visits staged by [`Writer::visits_staged`] in key order (a
/// later row of the file with the same key replaces an earlier one, as row
/// by row), then drops the stage. SQLite's sorter orders them within the
/// connection's page cache size, spilling to temporary files beyond it.
pub fn apply_visit_stage(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch(
        "INSERT INTO visits (account_id, date, visitor, role, attrs)
           SELECT account_id, date, visitor, role, attrs FROM temp.visit_stage
           WHERE true ORDER BY account_id, date, visitor, rowid
           ON CONFLICT (account_id, date, visitor) DO UPDATE SET role = excluded.role,
             attrs = excluded.attrs;
         DROP TABLE temp.visit_stage;",
    )?;
    Ok(())
}

/// The id of the attribute layout `names` (column names in order), added
/// if it is new. Stored once per distinct header, not once per row.
pub fn attr_layout(conn: &Connection, names: &[&str]) -> Result<i64> {
    let names = serde_json::to_string(names)?;
    conn.execute(
        "INSERT INTO attr_layouts (names) VALUES (?1) ON CONFLICT (names) DO NOTHING",
        [&names],
    )?;
    Ok(conn.query_row(
        "SELECT id FROM attr_layouts WHERE names = ?1",
        [&names],
        |r| r.get(0),
    )?)
}

/// The attributes of one order line as name -> value (the non-empty extra
/// columns of the export it came from), however they were stored; empty
/// when it has none or no such line exists.
pub fn order_attrs(
    conn: &Connection,
    order_id: &str,
    line: &str,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let text: Option<String> = conn
        .query_row(
            "SELECT attrs FROM orders_attrs WHERE order_id = ?1 AND line = ?2",
            [order_id, line],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    match text {
        None => Ok(serde_json::Map::new()),
        Some(t) => match serde_json::from_str(&t)? {
            serde_json::Value::Object(m) => Ok(m),
            other => anyhow::bail!(
                "the attributes of order {order_id} line {line} are not a JSON object: {other}"
            ),
        },
    }
}

/// Drops the secondary indexes of `table` inside `tx` and returns the SQL
/// that recreates them ([`restore_indexes`]). For a load much bigger than
/// the table: one sorted index build is far cheaper than a million random
/// index inserts. A rollback brings the indexes back by itself.
pub fn suspend_indexes(tx: &Transaction<'_>, table: &str) -> Result<Vec<String>> {
    let found: Vec<(String, String)> = {
        let mut st = tx.prepare(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL",
        )?;
        st.query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    for (name, _) in &found {
        // The name comes from sqlite_master, not from input; quoted anyway.
        tx.execute_batch(&format!("DROP INDEX \"{}\"", name.replace('"', "\"\"")))?;
    }
    Ok(found.into_iter().map(|(_, sql)| sql).collect())
}

/// Recreates indexes dropped by [`suspend_indexes`].
pub fn restore_indexes(tx: &Transaction<'_>, sqls: &[String]) -> Result<()> {
    for sql in sqls {
        tx.execute_batch(sql)?;
    }
    Ok(())
}

/// For a bulk load, leaves WAL mode for a rollback journal (TRUNCATE), so
/// the new pages are written once, into the database file, instead of into
/// the WAL and copied again by the checkpoint. A rollback journal keeps
/// the load atomic: a kill -9 leaves a hot journal that the next open rolls
/// back. Switching needs the only connection to the database; when another
/// is open this returns false at once and the load runs in WAL mode.
pub fn leave_wal_for_bulk(conn: &Connection) -> Result<bool> {
    conn.busy_timeout(std::time::Duration::ZERO)?;
    let mode =
        conn.pragma_update_and_check(None, "journal_mode", "TRUNCATE", |r| r.get::<_, String>(0));
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(mode.is_ok_and(|m| m.eq_ignore_ascii_case("truncate")))
}

/// Back to WAL mode after [`leave_wal_for_bulk`]. Should another process
/// hold the database just then, the next `open` (every connection sets WAL)
/// switches it back; this says so in the log.
pub fn back_to_wal(conn: &Connection) {
    let mode = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0));
    if !mode.as_deref().is_ok_and(|m| m.eq_ignore_ascii_case("wal")) {
        tracing::warn!(result = ?mode, "could not switch the database back to WAL mode after a bulk load; the next start does");
    }
}

/// The size of the database file in bytes (pages x page size).
pub fn database_bytes(conn: &Connection) -> Result<u64> {
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok((pages.max(0) as u64) * (size.max(0) as u64))
}

/// An account as the rest of the pipeline sees it.
#[derive(Debug, Clone)]
pub struct AccountRecord {
    pub row: AccountRow,
    pub active: bool,
}

pub fn load_accounts(conn: &Connection) -> Result<Vec<AccountRecord>> {
    let mut st = conn.prepare(
        "SELECT id, name, region, owner, owner_email, manager_email, active, manager FROM accounts ORDER BY id",
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
                manager: r.get(7)?,
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

/// Visits up to and including `until`, in date order per account.
pub fn for_each_visit(
    conn: &Connection,
    until: NaiveDate,
    mut f: impl FnMut(&str, NaiveDate, Option<&str>),
) -> Result<()> {
    let mut st = conn.prepare(
        "SELECT account_id, date, role FROM visits WHERE date <= ?1 ORDER BY account_id, date, visitor",
    )?;
    let mut rows = st.query([date_text(until)])?;
    // Borrowed from the row, not copied: a long history has millions.
    while let Some(r) = rows.next()? {
        let id = r.get_ref(0)?.as_str()?;
        let date = r.get_ref(1)?.as_str()?;
        let role = r.get_ref(2)?.as_str_or_null()?;
        f(id, parse_stored_date(date)?, role);
    }
    Ok(())
}

/// The visits of one account up to and including `until`, in the order
/// [`for_each_visit`] gives them.
pub fn for_each_visit_of(
    conn: &Connection,
    account: &str,
    until: NaiveDate,
    mut f: impl FnMut(NaiveDate, Option<&str>),
) -> Result<()> {
    let mut st = conn.prepare_cached(
        "SELECT date, role FROM visits WHERE account_id = ?1 AND date <= ?2 ORDER BY date, visitor",
    )?;
    let mut rows = st.query(params![account, date_text(until)])?;
    while let Some(r) = rows.next()? {
        let date = r.get_ref(0)?.as_str()?;
        let role = r.get_ref(1)?.as_str_or_null()?;
        f(parse_stored_date(date)?, role);
    }
    Ok(())
}

fn parse_stored_date(s: &str) -> Result<NaiveDate> {
    parse_ymd(s).with_context(|| format!("a date in the database is not YYYY-MM-DD: {s:?}"))
}

/// Whether the customer master has an account with this id.
pub fn account_exists(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ?1)",
        [id],
        |r| r.get(0),
    )?)
}

/// The as-of date of the newest evaluation on record, if any.
pub fn newest_evaluation(conn: &Connection) -> Result<Option<NaiveDate>> {
    let newest: Option<String> =
        conn.query_row("SELECT MAX(as_of) FROM evaluations", [], |r| r.get(0))?;
    Ok(newest.as_deref().and_then(parse_ymd))
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

    /// Many lines to a statement: every line lands, and within one batch,
    /// as across files, a later line with the same key replaces the earlier.
    #[test]
    fn orders_many_keeps_the_last_of_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("k.db")).unwrap();
        let rows: Vec<OrderRow> = (0..300)
            .map(|i| OrderRow {
                // 150 distinct keys, each twice in the batch.
                order_id: format!("SO{}", i % 150),
                line: "1".into(),
                account_id: format!("A{}", i % 7),
                date: NaiveDate::from_ymd_opt(2026, 1, 1 + (i % 28) as u32).unwrap(),
                sku: (i % 2 == 0).then(|| "SKU".to_string()),
                qty: None,
                revenue: f64::from(i),
                cost: 1.0,
            })
            .collect();
        let values = r#"["x"]"#;
        let batch: Vec<(&OrderRow, Option<&str>)> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r, (i % 3 == 0).then_some(values)))
            .collect();
        let tx = conn.transaction().unwrap();
        {
            let key = ["order_id".to_string(), "line".to_string()];
            let mut w = Writer::orders_keyed(&tx, &key, &["备注"]).unwrap();
            w.orders_many(&batch).unwrap();
        }
        tx.commit().unwrap();
        let (_, n, _) = counts(&conn).unwrap();
        assert_eq!(n, 150);
        for i in [0usize, 63, 64, 149] {
            let (rev, date, attrs): (f64, String, Option<String>) = conn
                .query_row(
                    "SELECT revenue, date, attrs FROM orders_attrs WHERE order_id = ?1",
                    [format!("SO{i}")],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .unwrap();
            let last = i + 150;
            assert_eq!(rev, last as f64, "SO{i}");
            assert_eq!(date, date_text(rows[last].date));
            let want = (last % 3 == 0).then(|| r#"{"备注":"x"}"#.to_string());
            assert_eq!(attrs, want, "SO{i}");
        }
    }

    /// Staged visits land as row by row would: a later row with the same
    /// key replaces an earlier one (in the file or in the table), and the
    /// stage is gone after.
    #[test]
    fn staged_visits_upsert_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("k.db")).unwrap();
        let day = |d| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
        let visit = |a: &str, d, role: &str| VisitRow {
            account_id: a.into(),
            date: day(d),
            visitor: "王".into(),
            role: Some(role.into()),
        };
        let tx = conn.transaction().unwrap();
        Writer::visits(&tx)
            .unwrap()
            .visit(&visit("B", 1, "old"))
            .unwrap();
        tx.commit().unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut w = Writer::visits_staged(&tx).unwrap();
            // Date order, as backfills come; B/1 twice, and already stored.
            for (a, d, role) in [
                ("C", 1, "c1"),
                ("B", 1, "first"),
                ("A", 2, "a2"),
                ("B", 1, "second"),
                ("A", 3, "a3"),
            ] {
                w.visit_with(&visit(a, d, role), Some(r#"{"x":"1"}"#))
                    .unwrap();
            }
        }
        apply_visit_stage(&tx).unwrap();
        tx.commit().unwrap();
        let mut st = conn
            .prepare("SELECT account_id, date, role, attrs FROM visits ORDER BY 1, 2")
            .unwrap();
        let got: Vec<(String, String, String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let want: Vec<(String, String, String, String)> = [
            ("A", 2, "a2"),
            ("A", 3, "a3"),
            ("B", 1, "second"),
            ("C", 1, "c1"),
        ]
        .iter()
        .map(|(a, d, r)| {
            (
                a.to_string(),
                date_text(day(*d)),
                r.to_string(),
                r#"{"x":"1"}"#.to_string(),
            )
        })
        .collect();
        assert_eq!(got, want);
        let stage: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM temp.sqlite_master WHERE name = 'visit_stage'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stage, 0);
    }

    /// Order attributes are stored as values with the names once per
    /// layout, and read back as name -> value, as are lines stored before
    /// (a JSON object per row).
    #[test]
    fn order_attributes_read_back_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("k.db")).unwrap();
        let row = |id: &str| OrderRow {
            order_id: id.into(),
            line: "1".into(),
            account_id: "A".into(),
            date: NaiveDate::from_ymd_opt(2026, 1, 2).unwrap(),
            sku: None,
            qty: None,
            revenue: 1.0,
            cost: 1.0,
        };
        let names = ["客户名称", "备注", "单价"];
        for _ in 0..2 {
            let tx = conn.transaction().unwrap();
            {
                let mut w = Writer::orders_keyed(
                    &tx,
                    &["order_id".to_string(), "line".to_string()],
                    &names,
                )
                .unwrap();
                w.order_with(&row("SO1"), Some(r#"["华联超市",null,"15.80"]"#))
                    .unwrap();
                w.order_with(&row("SO2"), None).unwrap();
                w.order_with(&row("SO3"), Some(r#"[null,"a \"b\"",null]"#))
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        let layouts: i64 = conn
            .query_row("SELECT COUNT(*) FROM attr_layouts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(layouts, 1, "one layout per distinct header");
        // A line written before the layouts: a JSON object of its own.
        conn.execute(
            "INSERT INTO orders (order_id, line, account_id, date, revenue, cost, attrs)
             VALUES ('OLD', '1', 'A', '2025-01-01', 1, 1, '{\"渠道\":\"KA\"}')",
            [],
        )
        .unwrap();
        let got = |id: &str| serde_json::Value::Object(order_attrs(&conn, id, "1").unwrap());
        assert_eq!(
            got("SO1"),
            serde_json::json!({"客户名称": "华联超市", "单价": "15.80"})
        );
        assert_eq!(got("SO2"), serde_json::json!({}));
        assert_eq!(got("SO3"), serde_json::json!({"备注": "a \"b\""}));
        assert_eq!(got("OLD"), serde_json::json!({"渠道": "KA"}));
        assert_eq!(got("NONE"), serde_json::json!({}));
        let stored: String = conn
            .query_row("SELECT attrs FROM orders WHERE order_id = 'SO1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(
            !stored.contains("客户名称"),
            "names repeated per row: {stored}"
        );
    }
}
