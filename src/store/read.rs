//! Reading the data tables for the other stages: the accounts, visits in
//! key order, an order line's attributes, row counts.

use anyhow::{Context, Result};
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{AccountRecord, AccountRow};
use crate::model::dates::{date_text, parse_ymd};

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

/// Whether the store holds any account at all (active or not).
pub fn has_accounts(conn: &Connection) -> Result<bool> {
    Ok(conn.query_row("SELECT EXISTS (SELECT 1 FROM accounts)", [], |r| r.get(0))?)
}

/// Accounts with order lines that the customer master does not list: how
/// many, and the first `examples` ids (by id). One pass over the orders'
/// account index.
pub fn unlisted_accounts(conn: &Connection, examples: usize) -> Result<(u64, Vec<String>)> {
    let mut st = conn.prepare(
        "SELECT account_id FROM (SELECT DISTINCT account_id FROM orders)
          WHERE account_id NOT IN (SELECT id FROM accounts) ORDER BY account_id",
    )?;
    let mut rows = st.query([])?;
    let (mut n, mut ids) = (0u64, Vec::new());
    while let Some(r) = rows.next()? {
        n += 1;
        if ids.len() < examples {
            ids.push(r.get(0)?);
        }
    }
    Ok((n, ids))
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
    use crate::store::open::open;
    use crate::store::rows::OrderRow;
    use crate::store::writer::Writer;

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
