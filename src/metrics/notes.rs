//! Notes: temporary triggers on the daemon's connection (visible to it
//! alone) that note, in temporary tables and inside the same transaction
//! as the write, every account whose order lines or visits it writes,
//! replaces or deletes (for order lines also the dates written, old and
//! new), each small dataset it writes (master, receivables, stock) and
//! every ledger entry's id. `live` reads and forgets them after each file.
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
CREATE TEMP TABLE IF NOT EXISTS live_order_days (
    account TEXT NOT NULL,
    date TEXT NOT NULL,
    PRIMARY KEY (account, date)
) WITHOUT ROWID;
CREATE TEMP TRIGGER IF NOT EXISTS live_orders_i AFTER INSERT ON main.orders
  BEGIN INSERT INTO live_order_days SELECT COALESCE(new.account_id, ''), COALESCE(new.date, '') WHERE NOT EXISTS (SELECT 1 FROM live_order_days WHERE account = COALESCE(new.account_id, '') AND date = COALESCE(new.date, '')); INSERT INTO live_touched SELECT 'o', COALESCE(new.account_id, '') WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'o' AND key = COALESCE(new.account_id, '')); END;
CREATE TEMP TRIGGER IF NOT EXISTS live_orders_u AFTER UPDATE ON main.orders
  BEGIN INSERT INTO live_order_days SELECT COALESCE(old.account_id, ''), COALESCE(old.date, '') WHERE NOT EXISTS (SELECT 1 FROM live_order_days WHERE account = COALESCE(old.account_id, '') AND date = COALESCE(old.date, '')); INSERT INTO live_order_days SELECT COALESCE(new.account_id, ''), COALESCE(new.date, '') WHERE NOT EXISTS (SELECT 1 FROM live_order_days WHERE account = COALESCE(new.account_id, '') AND date = COALESCE(new.date, '')); INSERT INTO live_touched SELECT 'o', COALESCE(old.account_id, '') WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'o' AND key = COALESCE(old.account_id, '')); INSERT INTO live_touched SELECT 'o', COALESCE(new.account_id, '') WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'o' AND key = COALESCE(new.account_id, '')); END;
CREATE TEMP TRIGGER IF NOT EXISTS live_orders_d AFTER DELETE ON main.orders
  BEGIN INSERT INTO live_order_days SELECT COALESCE(old.account_id, ''), COALESCE(old.date, '') WHERE NOT EXISTS (SELECT 1 FROM live_order_days WHERE account = COALESCE(old.account_id, '') AND date = COALESCE(old.date, '')); INSERT INTO live_touched SELECT 'o', COALESCE(old.account_id, '') WHERE NOT EXISTS (SELECT 1 FROM live_touched WHERE what = 'o' AND key = COALESCE(old.account_id, '')); END;
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
    conn.execute("DELETE FROM temp.live_order_days", [])?;
    Ok(notes)
}

/// For each account whose order lines were written since the last
/// [`take`], the first date of a line written, replaced or deleted (its
/// old date and its new one): its lines before that date are as they
/// were. Call before [`take`], which forgets them.
pub(super) fn first_order_days(conn: &Connection) -> Result<HashMap<String, String>> {
    let mut st =
        conn.prepare("SELECT account, MIN(date) FROM temp.live_order_days GROUP BY account")?;
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
