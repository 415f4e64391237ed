//! Delivery: the daemon's mail thread. It passes over the outbox on a
//! database connection of its own, when kicked after an evaluation and
//! every 15 s for retries, so a slow or hostile SMTP server never holds up
//! ingest or evaluation; after a pass that gave up on the server (timeouts,
//! refused login) the server is backed off as a whole, 30 s doubling up to
//! 15 min. A new config resets the backoff. After each pass it kicks the
//! checkpoint thread (`checkpoint`): a mail marked sent after the worker's
//! kick left frames in the write-ahead log that nothing copied, and a log
//! not copied to its end is never started again from its beginning, so it
//! grew by every file's pages (80 MB a re-export of 10,000 lines at
//! 100,000 accounts) and each new page extended the file. Ends when the
//! stop flag is set or the daemon drops its sender. Touches the outbox
//! (through `pipeline`) and the SMTP server or the mail folder.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rusqlite::Connection;

use crate::config::Loaded;
use crate::pipeline;

/// How often the outbox is looked at for retries when nothing else happens.
const DELIVERY_INTERVAL: Duration = Duration::from_secs(15);
/// The first and the longest pause after a delivery pass gave up on the server.
const SERVER_BACKOFF_MIN: Duration = Duration::from_secs(30);
const SERVER_BACKOFF_MAX: Duration = Duration::from_secs(900);

/// What the delivery thread is told.
pub enum ToDelivery {
    /// New mail may be queued: deliver now (unless the server is backed off).
    Kick,
    /// The config was reloaded.
    Config(Box<Loaded>),
}

/// The delivery thread: passes over the outbox on its own connection, when
/// kicked and every [`DELIVERY_INTERVAL`]; after a pass that gave up on the
/// server, nothing until the server's backoff is over. Ends when `stop` is
/// set or the daemon drops its sender. `checkpoint` is kicked after each
/// pass.
pub fn spawn_delivery(
    cfg: Loaded,
    stop: Arc<AtomicBool>,
    checkpoint: std::sync::mpsc::Sender<()>,
) -> Result<(
    std::sync::mpsc::Sender<ToDelivery>,
    std::thread::JoinHandle<()>,
)> {
    let conn = crate::store::open(&cfg.database())?;
    // Marking a message sent must not fail because a long ingest holds the
    // write lock: this thread may wait (it holds nothing up meanwhile).
    conn.busy_timeout(Duration::from_secs(600))?;
    // The checkpoint thread copies the log after each job (`checkpoint`).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("delivery".into())
        .spawn(move || delivery_loop(cfg, &conn, &rx, &stop, &checkpoint))
        .context("starting the delivery thread")?;
    Ok((tx, handle))
}

fn delivery_loop(
    mut cfg: Loaded,
    conn: &Connection,
    rx: &std::sync::mpsc::Receiver<ToDelivery>,
    stop: &Arc<AtomicBool>,
    checkpoint: &std::sync::mpsc::Sender<()>,
) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut next = Instant::now();
    let mut backoff = Duration::ZERO;
    let mut backed_off_until: Option<Instant> = None;
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(ToDelivery::Kick) => {
                if backed_off_until.is_some_and(|t| t > Instant::now()) {
                    continue; // the server is backed off; its time comes
                }
            }
            Ok(ToDelivery::Config(c)) => {
                // A new config may have fixed the server: try it now.
                cfg = *c;
                backoff = Duration::ZERO;
                backed_off_until = None;
                next = Instant::now();
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Kicks that came meanwhile are served by this pass.
        while let Ok(m) = rx.try_recv() {
            if let ToDelivery::Config(c) = m {
                cfg = *c;
            }
        }
        // A bug in one pass must not end delivery for good.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pipeline::deliver(&cfg, conn, stop.clone())
        }))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the delivery pass panicked")));
        // What the pass wrote is copied too (nothing to copy costs a lock).
        let _ = checkpoint.send(());
        let now = Instant::now();
        match result {
            Ok(d) if d.gave_up.is_some() => {
                backoff = (backoff * 2).clamp(SERVER_BACKOFF_MIN, SERVER_BACKOFF_MAX);
                backed_off_until = Some(now + backoff);
                next = now + backoff;
                if !stop.load(Ordering::Relaxed) {
                    tracing::warn!(
                        backoff_secs = backoff.as_secs(),
                        "the mail server is backed off: no delivery for {} s",
                        backoff.as_secs()
                    );
                }
            }
            Ok(_) => {
                backoff = Duration::ZERO;
                backed_off_until = None;
                next = now + DELIVERY_INTERVAL;
            }
            Err(e) => {
                tracing::error!("delivery failed: {e:#}");
                next = now + DELIVERY_INTERVAL;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The write-ahead log's last frame and how far it is copied into the
    /// database, from the header SQLite keeps in the `-shm` file (wal.c:
    /// `WalIndexHdr.mxFrame` at byte 16, `WalCkptInfo.nBackfill` at byte
    /// 96, in the machine's order). Read from the file, not asked through a
    /// connection: asking (`PRAGMA wal_checkpoint`) copies the log.
    fn log_state(db: &std::path::Path) -> (u32, u32) {
        let shm = std::fs::read(format!("{}-shm", db.display())).unwrap();
        let at = |i: usize| u32::from_ne_bytes(shm[i..i + 4].try_into().unwrap());
        (at(16), at(96))
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < until, "{what}: not within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A pass's writes are copied into the database after it. The worker
    /// kicks the checkpoint when its job is done, and delivery marks the
    /// job's mail sent meanwhile: frames written while that copy runs were
    /// copied by nothing, and a log not copied to its end is never written
    /// again from its beginning, so while the daemon ran it grew by every
    /// file's pages (80 MB a re-export at 100,000 accounts), each new page
    /// extending the file. Here the pass writes after frames nothing copied
    /// (the race made plain: no other kick comes), and the log is copied to
    /// its end, so the next transaction starts it again.
    #[test]
    fn a_pass_has_the_log_copied_to_its_end_so_the_next_write_starts_it_again() {
        let (_dir, mut cfg) = crate::config::testing::project();
        cfg.cfg.mail.admin = Some("it@example.com".into());
        let db = cfg.database();
        let writer = crate::store::open(&db).unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        // A file's pages and a mail, in the log.
        writer
            .execute_batch(
                "CREATE TABLE t(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) INSERT INTO t SELECT randomblob(1000) FROM n;",
            )
            .unwrap();
        assert!(
            crate::mail::notify_admin_once(
                &writer,
                &cfg.cfg.mail,
                "问题 / A problem",
                "text",
                "once"
            )
            .unwrap()
        );
        let (file, copied) = log_state(&db);
        assert!(file > 400 && copied == 0, "{file} frames, {copied} copied");
        let (checkpoint, checkpoint_thread) = super::super::checkpoint::spawn(&cfg).unwrap();
        // Delivery marks the mail sent, after them.
        let stop = Arc::new(AtomicBool::new(false));
        let (delivery, delivery_thread) =
            spawn_delivery(cfg.clone(), stop.clone(), checkpoint.clone()).unwrap();
        wait_until("the mail is sent", || {
            crate::mail::outbox_counts(&writer).unwrap() == (0, 1, 0)
        });
        wait_until("the pass's writes are copied", || {
            let (last, copied) = log_state(&db);
            last > file && copied == last
        });
        // So the next transaction starts the log again: a few frames, not
        // the file's and the mail's and its own.
        writer.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let frames: i64 = writer
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap();
        assert!(frames < 10, "{frames} frames in the log after {file}");
        stop.store(true, Ordering::Relaxed);
        drop((delivery, checkpoint));
        delivery_thread.join().unwrap();
        checkpoint_thread.join().unwrap();
    }
}
