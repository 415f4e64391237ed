//! Notes: temporary triggers on the daemon's connection (visible to it
//! alone) that note, in temporary tables and inside the same transaction
//! as the write, every account whose order lines or visits it writes,
//! replaces or deletes (for order lines also the first date written, old
//! or new: one row per account, however many lines), each small dataset
//! it writes (master, receivables, stock) and every ledger entry's id. `live` reads and forgets them after each file.
//! Writes only its own temporary tables and triggers.

use std::collections::HashMap;

use anyhow::Result;
use rusqlite::Connection;

// Not `INSERT OR IGNORE`: within a trigger, the conflict clause of the
// statement that fired it (the ingest's upsert) wins over the trigger's.
const CAPTURE: &str = "
CREATE TEMP TABLE IF NOT EXISTS live_touched (
    what TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (what, key)
) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS live_order_from (
    account TEXT NOT NULL PRIMARY KEY,
    date TEXT NOT NULL
) WITHOUT ROWID;
CREATE TEMP TRIGGER IF NOT EXISTS live_orders_i AFTER INSERT ON main.orders
  BEGIN INSERT INTO live_order_from SELECT COALESCE(new.account_id, ''), COALESCE(new.date, '') WHERE NOT EXISTS (SELECT 1 FROM live_order_from WHERE account = COALESCE(new.account_id, '')); UPDATE live_order_from SET date = COALESCE(new.date, '') WHERE account = COALESCE(new.account_id, '') AND date > COALESCE(new.date, ''); INSERT INTO live_touched SELECT 'o', COALESCE(new.account_id, '') WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'o' AND key = COALESCE(new.account_id, '')); END;
CREATE TEMP TRIGGER IF NOT EXISTS live_orders_u AFTER UPDATE ON main.orders
  BEGIN INSERT INTO live_order_from SELECT COALESCE(old.account_id, ''), COALESCE(old.date, '') WHERE NOT EXISTS (SELECT 1 FROM live_order_from WHERE account = COALESCE(old.account_id, '')); UPDATE live_order_from SET date = COALESCE(old.date, '') WHERE account = COALESCE(old.account_id, '') AND date > COALESCE(old.date, ''); INSERT INTO live_order_from SELECT COALESCE(new.account_id, ''), COALESCE(new.date, '') WHERE NOT EXISTS (SELECT 1 FROM live_order_from WHERE account = COALESCE(new.account_id, '')); UPDATE live_order_from SET date = COALESCE(new.date, '') WHERE account = COALESCE(new.account_id, '') AND date > COALESCE(new.date, ''); INSERT INTO live_touched SELECT 'o', COALESCE(old.account_id, '') WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'o' AND key = COALESCE(old.account_id, '')); INSERT INTO live_touched SELECT 'o', COALESCE(new.account_id, '') WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'o' AND key = COALESCE(new.account_id, '')); END;
CREATE TEMP TRIGGER IF NOT EXISTS live_orders_d AFTER DELETE ON main.orders
  BEGIN INSERT INTO live_order_from SELECT COALESCE(old.account_id, ''), COALESCE(old.date, '') WHERE NOT EXISTS (SELECT 1 FROM live_order_from WHERE account = COALESCE(old.account_id, '')); UPDATE live_order_from SET date = COALESCE(old.date, '') WHERE account = COALESCE(old.account_id, '') AND date > COALESCE(old.date, ''); INSERT INTO live_touched SELECT 'o', COALESCE(old.account_id, '') WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'o' AND key = COALESCE(old.account_id, '')); END;
CREATE TEMP TRIGGER IF NOT EXISTS live_visits_i AFTER INSERT ON main.visits
  BEGIN INSERT INTO live_touched SELECT 'v', COALESCE(new.account_id, '') WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'v' AND key = COALESCE(new.account_id, '')); END;
CREATE TEMP TRIGGER IF NOT EXISTS live_visits_u AFTER UPDATE ON main.visits
  BEGIN INSERT INTO live_touched SELECT 'v', COALESCE(old.account_id, '') WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'v' AND key = COALESCE(old.account_id, '')); INSERT INTO live_touched SELECT 'v', COALESCE(new.account_id, '') WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'v' AND key = COALESCE(new.account_id, '')); END;
CREATE TEMP TRIGGER IF NOT EXISTS live_visits_d AFTER DELETE ON main.visits
  BEGIN INSERT INTO live_touched SELECT 'v', COALESCE(old.account_id, '') WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'v' AND key = COALESCE(old.account_id, '')); END;
CREATE TEMP TRIGGER IF NOT EXISTS live_accounts_i AFTER INSERT ON main.accounts
  BEGIN INSERT INTO live_touched SELECT 'm', '' WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'm' AND key = ''); END;
CREATE TEMP TRIGGER IF NOT EXISTS live_accounts_u AFTER UPDATE ON main.accounts
  BEGIN INSERT INTO live_touched SELECT 'm', '' WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'm' AND key = ''); END;
CREATE TEMP TRIGGER IF NOT EXISTS live_accounts_d AFTER DELETE ON main.accounts
  BEGIN INSERT INTO live_touched SELECT 'm', '' WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'm' AND key = ''); END;
CREATE TEMP TRIGGER IF NOT EXISTS live_receivables_i AFTER INSERT ON main.receivables
  BEGIN INSERT INTO live_touched SELECT 'r', '' WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'r' AND key = ''); END;
CREATE TEMP TRIGGER IF NOT EXISTS live_receivables_u AFTER UPDATE ON main.receivables
  BEGIN INSERT INTO live_touched SELECT 'r', '' WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'r' AND key = ''); END;
CREATE TEMP TRIGGER IF NOT EXISTS live_receivables_d AFTER DELETE ON main.receivables
  BEGIN INSERT INTO live_touched SELECT 'r', '' WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'r' AND key = ''); END;
CREATE TEMP TRIGGER IF NOT EXISTS live_inventory_i AFTER INSERT ON main.inventory
  BEGIN INSERT INTO live_touched SELECT 'i', '' WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'i' AND key = ''); END;
CREATE TEMP TRIGGER IF NOT EXISTS live_inventory_u AFTER UPDATE ON main.inventory
  BEGIN INSERT INTO live_touched SELECT 'i', '' WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'i' AND key = ''); END;
CREATE TEMP TRIGGER IF NOT EXISTS live_inventory_d AFTER DELETE ON main.inventory
  BEGIN INSERT INTO live_touched SELECT 'i', '' WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'i' AND key = ''); END;
CREATE TEMP TRIGGER IF NOT EXISTS live_ledger_i AFTER INSERT ON main.ledger
  BEGIN INSERT INTO live_touched SELECT 'l', CAST(new.id AS TEXT) WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'l' AND key = CAST(new.id AS TEXT)); END;
";

pub(super) fn newest_ledger(conn: &Connection) -> Result<i64> {
    crate::store::newest_ledger_id(conn)
}

/// The notes taken since the last call, and forgets them.
pub(super) fn take(conn: &Connection) -> Result<Vec<(String, String)>> {
    let notes = {
        let mut st = conn.prepare("SELECT what, key FROM temp.live_touched")?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<(String, String)>>>()?
    };
    conn.execute("DELETE FROM temp.live_touched", [])?;
    conn.execute("DELETE FROM temp.live_order_from", [])?;
    Ok(notes)
}

/// For each account whose order lines were written since the last
/// [`take`], the first date of a line written, replaced or deleted (the
/// earlier of its old date and its new one): its lines before that date
/// are as they were. Call before [`take`], which forgets them.
pub(super) fn first_order_days(conn: &Connection) -> Result<HashMap<String, String>> {
    let mut st = conn.prepare("SELECT account, date FROM temp.live_order_from")?;
    let days = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<HashMap<String, String>>>()?;
    Ok(days)
}

/// Starts noting, on `conn` alone, what its writes touch. Idempotent.
pub(super) fn capture(conn: &Connection) -> Result<()> {
    conn.execute_batch(CAPTURE)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first date noted per account is the earliest old or new date
    /// of a line written, replaced (moved to another day or account) or
    /// deleted; a rolled-back write notes nothing; `take` forgets them.
    #[test]
    fn the_first_day_written_is_the_earliest_old_or_new_date() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("k.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO orders (order_id, line, account_id, date, revenue, cost) VALUES
             ('A', '1', 'K1', '2026-05-10', 1, 1), ('B', '1', 'K2', '2026-05-10', 1, 1),
             ('C', '1', 'K3', '2026-05-10', 1, 1);",
        )
        .unwrap();
        capture(&conn).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch("DELETE FROM orders WHERE order_id = 'C'")
            .unwrap();
        tx.rollback().unwrap();
        assert!(first_order_days(&conn).unwrap().is_empty());
        conn.execute_batch(
            "UPDATE orders SET date = '2026-06-01' WHERE order_id = 'A';
             INSERT INTO orders (order_id, line, account_id, date, revenue, cost)
               VALUES ('A', '2', 'K1', '2026-07-01', 1, 1);
             UPDATE orders SET account_id = 'K4', date = '2026-04-02' WHERE order_id = 'B';
             DELETE FROM orders WHERE order_id = 'C';",
        )
        .unwrap();
        let days = first_order_days(&conn).unwrap();
        let day = |k: &str| days.get(k).map(String::as_str);
        assert_eq!(day("K1"), Some("2026-05-10"), "its old date");
        assert_eq!(day("K2"), Some("2026-05-10"), "moved away");
        assert_eq!(day("K4"), Some("2026-04-02"), "moved in");
        assert_eq!(day("K3"), Some("2026-05-10"), "deleted");
        assert_eq!(days.len(), 4);
        take(&conn).unwrap();
        assert!(first_order_days(&conn).unwrap().is_empty());
    }
}
