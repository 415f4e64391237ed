//! The file ledger: one row per file kamwatch took (ingested, duplicate,
//! rejected) with its size, hash, rows and reason, written in the file's
//! own transaction; and what ingest asks of it (was this content ingested
//! before, the newest snapshot of a dataset). Owns the `ledger` table.

use anyhow::Result;
use rusqlite::{Connection, OptionalExtension, params};

use super::open::now_text;

/// What became of a file, as the ledger records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ingested,
    Duplicate,
    Rejected,
}

impl Outcome {
    /// The outcome as the ledger stores it; anything but `ingested` or
    /// `duplicate` reads as rejected.
    pub fn from_stored(s: &str) -> Outcome {
        match s {
            "ingested" => Outcome::Ingested,
            "duplicate" => Outcome::Duplicate,
            _ => Outcome::Rejected,
        }
    }

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

/// The last file of a dataset ingested, as `status` shows it.
#[derive(Debug, serde::Serialize)]
pub struct LastIngest {
    pub dataset: String,
    pub file: String,
    pub rows: u64,
    pub at: String,
    /// Files of this dataset ingested in all.
    pub files: u64,
}

/// The last file ingested of each dataset, by dataset name.
pub fn last_ingests(conn: &Connection) -> Result<Vec<LastIngest>> {
    let mut st = conn.prepare(
        "SELECT l.dataset, l.file_name, l.rows, l.at,
                (SELECT COUNT(*) FROM ledger c WHERE c.dataset = l.dataset AND c.outcome = 'ingested')
         FROM ledger l
         WHERE l.id IN (SELECT MAX(id) FROM ledger WHERE outcome = 'ingested' GROUP BY dataset)
         ORDER BY l.dataset",
    )?;
    let rows = st.query_map([], |r| {
        Ok(LastIngest {
            dataset: r.get(0)?,
            file: r.get(1)?,
            rows: r.get::<_, i64>(2)? as u64,
            at: r.get(3)?,
            files: r.get::<_, i64>(4)? as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// When a file was last ingested (`now_text`), if ever.
pub fn last_ingest_at(conn: &Connection) -> Result<Option<String>> {
    Ok(conn.query_row(
        "SELECT MAX(at) FROM ledger WHERE outcome = 'ingested'",
        [],
        |r| r.get(0),
    )?)
}

/// How many files were rejected, in all.
pub fn rejected_files(conn: &Connection) -> Result<u64> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM ledger WHERE outcome = 'rejected'",
        [],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

/// The id of the newest ledger entry, 0 when there is none: the daemon's
/// in-memory metrics note it to see what was written since.
pub fn newest_ledger_id(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT COALESCE(MAX(id), 0) FROM ledger", [], |r| r.get(0))?)
}

/// A ledger entry read back: what became of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRecord {
    pub file_name: String,
    pub dataset: Option<String>,
    pub outcome: Outcome,
    pub rows: u64,
    /// Rows read, replaced by key and skipped (0 where not recorded).
    pub read: u64,
    pub replaced: u64,
    pub skipped: u64,
}

/// The newest ledger entry after the entry `id` ([`newest_ledger_id`]), if
/// any: what a process ingesting one file recorded.
pub fn newest_entry_after(conn: &Connection, id: i64) -> Result<Option<LedgerRecord>> {
    let count = |r: &rusqlite::Row, i| r.get::<_, i64>(i).map(|n| n.max(0) as u64);
    Ok(conn
        .query_row(
            "SELECT file_name, dataset, outcome, rows, COALESCE(rows_read, 0),
               COALESCE(rows_replaced, 0), COALESCE(rows_skipped, 0)
             FROM ledger WHERE id > ?1 ORDER BY id DESC LIMIT 1",
            [id],
            |r| {
                Ok(LedgerRecord {
                    file_name: r.get(0)?,
                    dataset: r.get(1)?,
                    outcome: Outcome::from_stored(&r.get::<_, String>(2)?),
                    rows: count(r, 3)?,
                    read: count(r, 4)?,
                    replaced: count(r, 5)?,
                    skipped: count(r, 6)?,
                })
            },
        )
        .optional()?)
}

/// Whether a file with this content is in the ledger at all, whatever
/// became of it.
pub fn hash_known(conn: &Connection, hash: &str) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM ledger WHERE hash = ?1 LIMIT 1",
            [hash],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::open::open;

    /// What the daemon, `status` and ingest read back is what was recorded,
    /// newest first where it matters.
    #[test]
    fn entries_read_back_as_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("k.db")).unwrap();
        assert_eq!(newest_ledger_id(&conn).unwrap(), 0);
        assert_eq!(last_ingest_at(&conn).unwrap(), None);
        assert!(last_ingests(&conn).unwrap().is_empty());
        let entry = |name, hash, outcome| LedgerEntry {
            file_name: name,
            size: 10,
            hash,
            dataset: Some("orders"),
            rows: 3,
            outcome,
            reason: None,
            file_date: None,
        };
        record_file(&conn, &entry("a.csv", "h1", Outcome::Ingested)).unwrap();
        let before = newest_ledger_id(&conn).unwrap();
        assert_eq!(newest_entry_after(&conn, before).unwrap(), None);
        let counts = RowCounts {
            read: 5,
            stored: 3,
            replaced: 1,
            skipped: 2,
        };
        record_file_counts(&conn, &entry("b.csv", "h2", Outcome::Ingested), &counts).unwrap();
        record_file(&conn, &entry("c.csv", "h3", Outcome::Rejected)).unwrap();
        let newest = newest_entry_after(&conn, before).unwrap().unwrap();
        assert_eq!(
            (newest.file_name.as_str(), newest.outcome, newest.read),
            ("c.csv", Outcome::Rejected, 0)
        );
        let ingests = last_ingests(&conn).unwrap();
        assert_eq!(ingests.len(), 1);
        assert_eq!((ingests[0].file.as_str(), ingests[0].files), ("b.csv", 2));
        assert!(last_ingest_at(&conn).unwrap().is_some());
        assert_eq!(rejected_files(&conn).unwrap(), 1);
        assert!(hash_known(&conn, "h3").unwrap() && !hash_known(&conn, "h4").unwrap());
        assert_eq!(ingested_before(&conn, "h3").unwrap(), None);
        assert_eq!(
            ingested_before(&conn, "h2").unwrap().as_deref(),
            Some("b.csv")
        );
        for o in [Outcome::Ingested, Outcome::Duplicate, Outcome::Rejected] {
            assert_eq!(Outcome::from_stored(o.as_str()), o);
        }
    }
}
