//! Writing the data tables inside one file's transaction: `Writer` upserts
//! accounts, order lines, visits, receivables and stock (by the table's key
//! or a configured one), keeps the attribute layouts of order lines, and
//! counts the rows a file replaced and the accounts a master switched off.
//! Owns the writes of `accounts`, `orders`, `visits`, `receivables`,
//! `inventory` and `attr_layouts` (ingest and `kamwatch test` fixtures
//! write through it).

use anyhow::Result;
use rusqlite::{Connection, Transaction, params};

use super::open::now_text;
use super::rows::{AccountRow, Extra, InventoryRow, OrderRow, ReceivableRow, VisitRow};
use crate::model::Tier;
use crate::model::dates::{date_bytes, date_text};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::open::open;
    use crate::store::read::counts;
    use chrono::NaiveDate;

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
}
