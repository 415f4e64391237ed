//! Start: what the daemon does before it listens — takes the one-daemon
//! lock, says what `check` would warn of, opens and checks the database,
//! clears what a crash left (the archive's staging folder, stale ingest
//! attempts), loads the rules, starts the delivery and checkpoint
//! threads, and works out
//! whether an evaluation was missed while it was down (a scheduled one, or
//! one cut off by a crash after its files were ingested). Touches the
//! lock file, the store, the inbox folder (created), the archive, and the
//! rejected folder (a reason for a file a crash left there without one).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rusqlite::Connection;

use super::delivery::spawn_delivery;
use super::schedule::slots;
use super::service::Lock;
use super::worker::State;
use crate::config::{self, Loaded};
use crate::metrics::Live;
use crate::rules::RuleSet;

/// What start-up hands the loop.
pub struct Started {
    pub lock: Lock,
    pub state: State,
    pub delivery_thread: std::thread::JoinHandle<()>,
    /// Ends when the state (its sender) is dropped.
    pub checkpoint_thread: std::thread::JoinHandle<()>,
    /// An evaluation is owed now (missed while down, and there are
    /// accounts to evaluate).
    pub missed: bool,
}

/// Everything before the loop; an error stops the start with its reason.
pub fn start(cfg: Loaded, stop: &Arc<AtomicBool>) -> Result<Started> {
    let lock = Lock::acquire(&cfg.database())?;
    // Whatever `check` would report, the daemon says as it starts.
    for f in config::findings(&cfg) {
        tracing::warn!("{}", f.message);
    }
    let inbox = cfg.inbox();
    std::fs::create_dir_all(&inbox)
        .with_context(|| format!("creating the inbox {}", inbox.display()))?;
    let conn = crate::store::open(&cfg.database())?;
    // No checkpoint when a transaction commits: the checkpoint thread
    // copies the log after each evaluation, off the way from a file to
    // its mail.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    crate::store::quick_check(&conn, &cfg.database())?;
    Live::capture(&conn).context("noting what ingest writes, for the metrics in memory")?;
    let db_id = crate::store::identity(&cfg.database());
    crate::ingest::file::sweep(&cfg.archive().join(crate::ingest::file::STAGING));
    let mended = crate::ingest::mend_rejected(&cfg.rejected());
    if mended > 0 {
        tracing::warn!(
            files = mended,
            folder = %cfg.rejected().display(),
            "files a crash left in the rejected folder without their reason now have one saying so; put them into the inbox again to see why they were rejected"
        );
    }
    crate::ingest::file::Attempts::new(&cfg.database())
        .prune(|hash| crate::store::hash_known(&conn, hash).unwrap_or(false));
    let (rules, errors, _) = RuleSet::load_config(&cfg)?;
    let mut reported = HashMap::new();
    for e in &errors {
        tracing::error!(rule = %e.path.display(), "rule does not compile and is not loaded:\n{e}");
        reported.insert(e.path.clone(), e.to_string());
    }
    let missed = missed(&cfg, &conn);
    let (checkpoint, checkpoint_thread) = super::checkpoint::spawn(&cfg)?;
    let (delivery, delivery_thread) =
        spawn_delivery(cfg.clone(), stop.clone(), checkpoint.clone())?;
    let state = State {
        cfg,
        conn,
        rules,
        reported,
        stop: stop.clone(),
        db_id,
        delivery,
        checkpoint,
        live: None,
        memo: None,
    };
    Ok(Started {
        lock,
        state,
        delivery_thread,
        checkpoint_thread,
        missed,
    })
}

/// A scheduled run missed while we were down runs once now, and so does
/// an evaluation cut off by a crash after its files were ingested; not
/// before there are accounts.
fn missed(cfg: &Loaded, conn: &Connection) -> bool {
    let zone = cfg.cfg.schedule.zone();
    let (last_slot, _) = slots(zone, &cfg.cfg.schedule.times_of_day(), config::now());
    let evaluated = last_evaluation(conn);
    let missed = last_slot.is_some_and(|slot| evaluated.is_none_or(|at| at < slot))
        || last_ingest(conn).is_some_and(|at| evaluated.is_none_or(|e| e < at));
    let has_accounts = crate::store::has_accounts(conn).unwrap_or(false);
    missed && has_accounts
}

/// When the last evaluation was recorded, if ever.
fn last_evaluation(conn: &Connection) -> Option<DateTime<Utc>> {
    stored_time(crate::store::last_evaluation(conn).ok()??.at)
}

/// When a file was last ingested, if ever.
fn last_ingest(conn: &Connection) -> Option<DateTime<Utc>> {
    stored_time(crate::store::last_ingest_at(conn).ok()??)
}

fn stored_time(at: String) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(&at, "%Y-%m-%dT%H:%M:%S%.f%:z")
        .ok()
        .map(|d| d.with_timezone(&Utc))
}
