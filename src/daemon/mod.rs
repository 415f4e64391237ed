//! Daemon: `kamwatch run` — the long-running service that ties watch,
//! ingest, evaluation and delivery together, and talks to systemd.
//!
//! `start` takes the lock on the database, opens and checks the store,
//! loads the rules and starts the `delivery` thread; `event_loop` then
//! scans the inbox, sends READY and listens: complete files (`watch`) are
//! ingested one transaction each; after a batch (debounced) and at the
//! scheduled times (`schedule`) the rules are evaluated as of today and the
//! mail they cause is delivered; a scheduled run missed while the daemon
//! was down, or files ingested but not yet evaluated before a crash, cause
//! one evaluation at start-up. The work runs on a blocking thread
//! (`worker`) while the loop keeps listening, and the loop itself never
//! touches the disk: WATCHDOG pings go out only while no job has been
//! running longer than `daemon.stuck_after_secs`. Mail is delivered by a
//! thread of its own with its own database connection, so a slow or
//! hostile SMTP server never holds up ingest or evaluation. SIGTERM/SIGINT
//! stop taking files, let the current transaction finish, make delivery
//! give up at once (unsent messages stay pending), and exit 0 within a few
//! seconds whatever the server does. SIGHUP reloads the config and the
//! rules; an invalid config is refused and the running one stays. Rule
//! files are also reloaded before each evaluation; a file that no longer
//! compiles keeps its last good version. On `review.day_of_month` the
//! evaluation also queues each manager's key-account review.
//!
//! The metrics are kept in memory between evaluations (`metrics::live`):
//! read whole once the start-up's files are in (after READY), on SIGHUP,
//! and when files were written by another process; otherwise each
//! evaluation reads again only the accounts and datasets the files since
//! the last one wrote. `memory` keeps glibc to two arenas and hands freed
//! pages back after each evaluation and full read. The daemon's
//! connections never checkpoint the write-ahead log when they commit; a
//! thread of its own (`checkpoint`) does, kicked by the worker after each
//! job that no evaluation follows and by delivery after each pass, so
//! copying a big file's pages into the database never delays its
//! evaluation, nor the next file, and the log is copied to its end between
//! files (the next file's writes then start it again from its beginning).
//!
//! One file cannot take the daemon down (`isolate`): a panic while
//! ingesting it rejects it; a file the daemon died in before (on record
//! beside the database) is ingested in a child `kamwatch ingest`, and
//! rejected if that dies too; a failure that may pass (disk full, archive
//! read-only) is retried with backoff. At start-up the database gets a
//! `PRAGMA quick_check` (a damaged one stops the start, naming the file and
//! what to do); every second the database file's and the inbox folder's
//! identities are checked: a database deleted or replaced stops the daemon
//! with exit 1, an inbox mounted or replaced is watched anew and rescanned
//! (also on SIGHUP). A failing evaluation is noted in `<db>.eval-failed`
//! for `kamwatch status`. `service` speaks to systemd and holds the
//! one-daemon lock.

mod checkpoint;
mod delivery;
mod event_loop;
mod isolate;
mod memory;
mod schedule;
pub mod service;
mod start;
pub mod watch;
mod worker;

use anyhow::{Context, Result};

use crate::config::Loaded;
pub use worker::{eval_failed_path, eval_failing};

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(cfg: Loaded) -> Result<()> {
    memory::few_arenas();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(event_loop::main_loop(cfg))
}
