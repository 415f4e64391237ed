//! Delivery: the daemon's mail thread. It passes over the outbox on a
//! database connection of its own, when kicked after an evaluation and
//! every 15 s for retries, so a slow or hostile SMTP server never holds up
//! ingest or evaluation; after a pass that gave up on the server (timeouts,
//! refused login) the server is backed off as a whole, 30 s doubling up to
//! 15 min. A new config resets the backoff. Ends when the stop flag is set
//! or the daemon drops its sender. Touches the outbox (through `pipeline`)
//! and the SMTP server or the mail folder.

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
/// set or the daemon drops its sender.
pub fn spawn_delivery(
    cfg: Loaded,
    stop: Arc<AtomicBool>,
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
        .spawn(move || delivery_loop(cfg, &conn, &rx, &stop))
        .context("starting the delivery thread")?;
    Ok((tx, handle))
}

fn delivery_loop(
    mut cfg: Loaded,
    conn: &Connection,
    rx: &std::sync::mpsc::Receiver<ToDelivery>,
    stop: &Arc<AtomicBool>,
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
