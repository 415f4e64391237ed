//! Bulk loads: what makes a file much bigger than its table cheap to
//! load — visits staged and applied in key order, secondary indexes
//! suspended and rebuilt once, the rollback journal instead of WAL for the
//! load. Writes `visits` (through the stage) and changes only indexes and
//! the journal mode otherwise.

use anyhow::Result;
use rusqlite::{Connection, Transaction};

use super::open::BUSY_TIMEOUT;
use super::writer::Writer;

impl<'t> Writer<'t> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::dates::date_text;
    use crate::store::open::open;
    use crate::store::rows::VisitRow;
    use chrono::NaiveDate;

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
}
