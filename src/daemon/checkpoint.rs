//! Checkpoint: the write-ahead log copied into the database file on a
//! thread of its own, with its own connection, kicked by the worker after
//! each job and by delivery after each pass (a passive checkpoint: it
//! waits for no reader or writer, and none waits for it). On the worker's
//! thread it held up the next file: a checkpoint that synced the database
//! took 0.75-0.8 s at 100,000 accounts, and a drop renamed meanwhile
//! waited that long to be ingested. A log copied to its end is written
//! again from its beginning by the next transaction; one that is not (a
//! mail marked sent after the worker's kick) grows by every file.
//! The daemon's connections never checkpoint when they commit (`start`).
//! Ends when every sender (the worker's, delivery's) is dropped. Touches
//! the database through its own connection only.

use std::sync::mpsc::{Receiver, Sender};
use std::time::Instant;

use anyhow::{Context, Result};
use rusqlite::Connection;

use crate::config::Loaded;

/// Starts the thread: the sender kicks it (kicks that come while it
/// copies make one more pass, not one each).
pub fn spawn(cfg: &Loaded) -> Result<(Sender<()>, std::thread::JoinHandle<()>)> {
    let conn = crate::store::open(&cfg.database())?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("checkpoint".into())
        .spawn(move || run(&conn, &rx))
        .context("starting the checkpoint thread")?;
    Ok((tx, handle))
}

fn run(conn: &Connection, rx: &Receiver<()>) {
    while rx.recv().is_ok() {
        while rx.try_recv().is_ok() {}
        checkpoint(conn);
    }
}

/// Copies what the write-ahead log holds into the database file, as far
/// as no reader needs it (`PRAGMA wal_checkpoint(PASSIVE)`).
pub fn checkpoint(conn: &Connection) {
    let started = Instant::now();
    let r = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    });
    match r {
        Ok((log, copied)) => tracing::debug!(
            log,
            copied,
            ms = started.elapsed().as_millis() as u64,
            "checkpoint"
        ),
        Err(e) => tracing::warn!(
            "the write-ahead log could not be copied into the database: {e}; the next job tries again"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kick copies the log into the database file on the thread, while
    /// the connection that wrote it stays open; the thread ends with its
    /// sender.
    #[test]
    fn a_kick_copies_the_log_on_the_thread_and_the_sender_ends_it() {
        let (_dir, cfg) = crate::config::testing::project();
        let writer = crate::store::open(&cfg.database()).unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer
            .execute_batch(
                "CREATE TABLE t(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) INSERT INTO t SELECT randomblob(100) FROM n;",
            )
            .unwrap();
        let size = || std::fs::metadata(cfg.database()).unwrap().len();
        let before = size();
        let (tx, handle) = spawn(&cfg).unwrap();
        tx.send(()).unwrap();
        tx.send(()).unwrap();
        drop(tx);
        handle.join().unwrap();
        // The database file holds the table's 500 KB now.
        assert!(size() > before + 400_000, "{before} -> {}", size());
    }
}
