//! Opening the database: the connection and its pragmas (WAL, busy
//! timeout, foreign keys), the numbered schema migrations (one `BEGIN
//! IMMEDIATE` transaction, safe with several processes starting at once),
//! `quick_check`, the file's identity and size, the installation id, and
//! the timestamp text of `*_at` columns. Owns the `installation` table and
//! the schema itself (`0001_init.sql` ...).

use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::Connection;

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
    include_str!("0012_silence_key.sql"),
    include_str!("0013_partial_evaluations.sql"),
    include_str!("0014_closed_alerts.sql"),
    include_str!("0015_order_lines_by_account.sql"),
];

/// How long a statement waits for another connection's lock.
pub(super) const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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

/// The size of the database file in bytes (pages x page size).
pub fn database_bytes(conn: &Connection) -> Result<u64> {
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok((pages.max(0) as u64) * (size.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// .cargo/config.toml builds the bundled SQLite without memory
    /// statistics (a global mutex on every allocation, 8% of a bulk
    /// ingest's time); a build that lost the flag would be slower, not
    /// wrong, so only this test notices.
    #[test]
    fn sqlite_is_built_without_memory_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("k.db")).unwrap();
        let mut st = conn.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> = st
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "SQLite was built without LIBSQLITE3_FLAGS from .cargo/config.toml: {options:?}"
        );
    }

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
}
