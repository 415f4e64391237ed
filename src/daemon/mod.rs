//! Daemon: `kamwatch run` — the long-running loop that ties watch, ingest,
//! evaluation and delivery together, and talks to systemd.
//!
//! At start-up it takes the lock on the database, opens the store, loads
//! the rules, scans the inbox and sends READY. Complete files are ingested
//! one transaction each; after a batch (debounced) and at the scheduled
//! times the rules are evaluated as of today and the mail they cause is
//! delivered; a scheduled run missed while the daemon was down, or files
//! ingested but not yet evaluated before a crash, cause one evaluation at
//! start-up. The work runs on a worker thread while this loop keeps
//! listening: WATCHDOG pings go out only while no job has been running
//! longer than `daemon.stuck_after_secs`. Mail is delivered by a thread of
//! its own with its own database connection (woken after each evaluation,
//! and every 15 s for retries), so a slow or hostile SMTP server never
//! holds up ingest or evaluation; after a pass that gave up on the server
//! (timeouts, refused login) the server is backed off as a whole, 30 s
//! doubling up to 15 min. SIGTERM/SIGINT stop taking files, let the current
//! transaction finish, make delivery give up at once (unsent messages stay
//! pending), and exit 0 within a few seconds whatever the server does. SIGHUP reloads the config
//! and the rules; an invalid config is refused and the running one stays.
//! Rule files are also reloaded before each evaluation; a file that no
//! longer compiles keeps its last good version. On `review.day_of_month`
//! the evaluation also queues each manager's key-account review.
//!
//! The metrics are kept in memory between evaluations (`metrics::live`):
//! read whole once the start-up's files are in (after READY), on SIGHUP,
//! and when files were written by another process; otherwise each
//! evaluation reads again only the accounts and datasets the files since
//! the last one wrote.
//!
//! One file cannot take the daemon down: a panic while ingesting it rejects
//! it; a file the daemon died in before (on record beside the database) is
//! ingested in a child `kamwatch ingest`, and rejected if that dies too; a
//! failure that may pass (disk full, archive read-only) is retried with
//! backoff. At start-up the database gets a `PRAGMA quick_check` (a damaged
//! one stops the start, naming the file and what to do); every second the
//! database file's and the inbox folder's identities are checked: a
//! database deleted or replaced stops the daemon with exit 1, an inbox
//! mounted or replaced is watched anew and rescanned (also on SIGHUP). A
//! failing evaluation is noted in `<db>.eval-failed` for `kamwatch status`.

pub mod service;
pub mod watch;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Utc};
use rusqlite::Connection;
use tokio::sync::mpsc;

use crate::config::{self, Loaded, Zone};
use crate::daemon::service::{Lock, Notifier};
use crate::metrics::Live;
use crate::pipeline;
use crate::rules::{CompileError, RuleSet};
use crate::store::Outcome;
use watch::{Change, Settler};

/// How often the outbox is looked at for retries when nothing else happens.
const DELIVERY_INTERVAL: Duration = Duration::from_secs(15);
/// The first and the longest pause after a delivery pass gave up on the server.
const SERVER_BACKOFF_MIN: Duration = Duration::from_secs(30);
const SERVER_BACKOFF_MAX: Duration = Duration::from_secs(900);
/// How long stopping waits for the delivery thread to let go.
const DELIVERY_GRACE: Duration = Duration::from_secs(3);
const TICK: Duration = Duration::from_millis(50);
/// How often the inbox folder and the database file are checked for
/// having been replaced (a late mount, a deleted database).
const FS_LOOK: Duration = Duration::from_secs(1);
/// Backoff for a file that failed for a reason that may pass.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// What the worker thread owns between jobs.
struct State {
    cfg: Loaded,
    conn: Connection,
    rules: RuleSet,
    /// Compile errors already logged, by file, so each is reported once.
    reported: HashMap<PathBuf, String>,
    /// Set on SIGTERM: stop between two files.
    stop: Arc<AtomicBool>,
    /// The database file's (device, inode) when it was opened.
    db_id: Option<(u64, u64)>,
    /// Wakes the delivery thread.
    delivery: std::sync::mpsc::Sender<ToDelivery>,
    /// The metrics kept in memory between evaluations; None until read
    /// (at start-up, after SIGHUP, after a refresh failed).
    live: Option<Live>,
}

/// A unit of work for the worker thread.
enum Job {
    Ingest(Vec<PathBuf>),
    Evaluate,
    /// Read the metrics into memory (at start-up and after SIGHUP), so the
    /// next evaluation only reads what files changed.
    Load,
}

/// What the delivery thread is told.
enum ToDelivery {
    /// New mail may be queued: deliver now (unless the server is backed off).
    Kick,
    /// The config was reloaded.
    Config(Box<Loaded>),
}

/// The delivery thread: passes over the outbox on its own connection, when
/// kicked and every [`DELIVERY_INTERVAL`]; after a pass that gave up on the
/// server, nothing until the server's backoff is over. Ends when `stop` is
/// set or the daemon drops its sender.
fn spawn_delivery(
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

/// What a finished job tells the loop.
#[derive(Default)]
struct Done {
    ingested: usize,
    status: Option<String>,
    /// Files not taken now, to look at again: not complete yet (`false`),
    /// or failed for a reason that may pass, with backoff (`true`).
    again: Vec<(PathBuf, bool)>,
    /// Files ingested or rejected: their backoff is over.
    settled: Vec<PathBuf>,
    /// Why the daemon must stop (its database is gone).
    fatal: Option<String>,
}

/// How one file's ingest ended, for the daemon.
enum FileOutcome {
    Done(crate::ingest::FileReport),
    /// Not complete yet: look again after the settle interval.
    NotReady(String),
    /// Rows committed, but not archived: counts as ingested, retried.
    Unfiled(String),
    /// Nothing stored; may pass (disk full, read-only archive): retried.
    Failed(String),
    /// Stopped by SIGTERM, rolled back: taken again at the next start.
    Cancelled,
    /// The process died in this file before: ingest it in a child process.
    Isolate,
}

/// Ingests `path` in a child process (`kamwatch ingest`), for a file the
/// daemon died in before. A child that dies by a signal (abort, out of
/// memory, killed) gets the file rejected with a reason naming it, and the
/// daemon goes on; a child that ends is read back from the ledger.
fn ingest_apart(cfg: &Loaded, conn: &mut Connection, path: &std::path::Path) -> FileOutcome {
    use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
    let before = crate::store::newest_ledger_id(conn).unwrap_or(0);
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return FileOutcome::Failed(format!("cannot find the kamwatch binary: {e}")),
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--config")
        .arg(&cfg.file)
        .arg("ingest")
        .arg(path)
        .env("KAMWATCH_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: prctl only, between fork and exec: the child dies with us, so
    // a daemon that is killed never leaves a second writer behind.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => return FileOutcome::Failed(format!("cannot start `kamwatch ingest`: {e}")),
    };
    let name = path.file_name().unwrap_or_default();
    if let Some(sig) = out.status.signal() {
        let what = match sig {
            libc::SIGABRT => {
                "it aborted (SIGABRT; out of memory, or an internal error)".to_string()
            }
            libc::SIGKILL => {
                "it was killed (SIGKILL; the out-of-memory killer, or kill -9)".to_string()
            }
            libc::SIGSEGV => "it crashed (SIGSEGV)".to_string(),
            s => format!("it died by signal {s}"),
        };
        tracing::error!(file = ?name, "the process ingesting this file died again: {what}; the file is rejected");
        let reason = format!(
            "kamwatch died while ingesting this file, in the daemon and again in a process of its own ({what}); nothing of it was stored, and it is set aside instead of being tried again. Check the file (size, sheet dimensions), and report it to the kamwatch maintainers if it is sound"
        );
        return match crate::ingest::reject_file(cfg, conn, path, &reason) {
            Ok(r) => FileOutcome::Done(r),
            Err(e) => FileOutcome::Failed(format!("{e:#}")),
        };
    }
    match crate::store::newest_entry_after(conn, before)
        .ok()
        .flatten()
    {
        Some(entry) => {
            let outcome = entry.outcome;
            let rows = entry.rows;
            tracing::info!(file = ?name, outcome = outcome.as_str(), rows, "ingested in a process of its own");
            FileOutcome::Done(crate::ingest::FileReport {
                file_name: entry.file_name,
                dataset: entry.dataset.and_then(|d| {
                    crate::config::Dataset::ALL
                        .iter()
                        .copied()
                        .find(|x| x.name() == d)
                }),
                outcome,
                rows,
                moved_to: PathBuf::new(),
                reason: None,
                skipped: entry.skipped,
                errors_file: None,
                read: entry.read,
                replaced: entry.replaced,
            })
        }
        None => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            FileOutcome::Failed(format!("`kamwatch ingest` failed: {last}"))
        }
    }
}

/// Ingests `path` with `ingest`; a panic inside it is caught and the file
/// rejected with a reason (with `reject`), so one bad file cannot take the
/// daemon down or stop the files after it.
fn ingest_guarded(
    path: &std::path::Path,
    ingest: impl FnOnce() -> Result<crate::ingest::FileReport>,
    reject: impl FnOnce(&str) -> Result<crate::ingest::FileReport>,
) -> FileOutcome {
    use crate::ingest::{NotReady, Unfiled};
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(ingest));
    let res = match res {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "an internal error".into());
            tracing::error!(file = ?path.file_name().unwrap_or_default(), "kamwatch failed while ingesting this file ({what}); nothing of it was stored, it is rejected");
            reject(&format!(
                "kamwatch failed while reading this file ({what}); nothing of it was stored. Please report the file to the kamwatch maintainers; other files go on"
            ))
        }
    };
    match res {
        Ok(r) => FileOutcome::Done(r),
        Err(e) => {
            let find = |f: &dyn Fn(&(dyn std::error::Error + 'static)) -> bool| e.chain().any(f);
            if find(&|c| c.is::<crate::ingest::Isolate>()) {
                FileOutcome::Isolate
            } else if let Some(n) = e.chain().find_map(|c| c.downcast_ref::<NotReady>()) {
                FileOutcome::NotReady(n.0.clone())
            } else if find(&|c| c.is::<crate::ingest::Cancelled>()) {
                FileOutcome::Cancelled
            } else if find(&|c| c.is::<Unfiled>()) {
                FileOutcome::Unfiled(format!("{e:#}"))
            } else {
                FileOutcome::Failed(format!("{e:#}"))
            }
        }
    }
}

/// What the admin reads when the database file went away under the daemon.
fn database_gone(cfg: &Loaded) -> String {
    format!(
        "the database {} was deleted or replaced while kamwatch was running; kamwatch stops so that nothing more is written into a file no one can open. Restore the database from a backup, or rebuild it from the archived inputs with `kamwatch rebuild --config {}`, then start kamwatch again",
        cfg.database().display(),
        cfg.file.display()
    )
}

/// Where the daemon notes that evaluations fail, for `kamwatch status`:
/// beside the database, so it is readable when the database is not.
pub fn eval_failed_path(database: &std::path::Path) -> PathBuf {
    let mut p = database.as_os_str().to_owned();
    p.push(".eval-failed");
    PathBuf::from(p)
}

/// The note beside the database that evaluations fail, if there is one:
/// since when (the time of the last failure) and the error.
pub fn eval_failing(database: &std::path::Path) -> Option<(String, String)> {
    let t = std::fs::read_to_string(eval_failed_path(database)).ok()?;
    let (at, error) = t.trim_end().split_once('\t')?;
    Some((at.to_string(), error.to_string()))
}

impl State {
    /// Reloads the rules folder. A file that fails to compile keeps its last
    /// good version; the failure is logged and mailed to `mail.admin` once
    /// per distinct error.
    fn reload_rules(&mut self) {
        let (fresh, errors) = match RuleSet::load_config(&self.cfg) {
            Ok((set, errors, unknown)) => {
                for name in unknown {
                    tracing::warn!(
                        "rule_settings names {name:?}, which is no rule in the rules folder"
                    );
                }
                (set, errors)
            }
            Err(e) => {
                tracing::error!("{e}; keeping the rules loaded before");
                return;
            }
        };
        let broken: Vec<&CompileError> = errors.iter().collect();
        for e in &broken {
            let text = e.to_string();
            if self.reported.get(&e.path) != Some(&text) {
                tracing::error!(rule = %e.path.display(), "rule does not compile; its last good version keeps running:\n{text}");
                // The admin hears once per distinct error (the Message-ID
                // comes from the text), with the line and the caret.
                let mail = format!(
                    "A rule file was changed and no longer compiles. Its last good version keeps running until the file is fixed.\n\n{text}\n"
                );
                if let Err(m) = crate::mail::notify_admin(
                    &self.conn,
                    &self.cfg.cfg.mail,
                    "规则无法编译 / a rule does not compile",
                    &mail,
                ) {
                    tracing::error!("the admin could not be told: {m:#}");
                }
                self.reported.insert(e.path.clone(), text);
            }
        }
        self.reported
            .retain(|p, _| broken.iter().any(|e| &e.path == p));
        self.rules = fresh.merge_last_good(
            std::mem::replace(&mut self.rules, RuleSet::empty()),
            &broken,
        );
    }

    /// The metrics as of `today`: the in-memory ones brought up to date
    /// with what was written since (see `metrics::live`), read whole when
    /// there are none yet or they could not be brought up to date.
    fn snapshot(&mut self, today: chrono::NaiveDate) -> Result<crate::metrics::Snapshot> {
        let started = Instant::now();
        if let Some(live) = &mut self.live {
            match live.refresh(&self.conn) {
                Ok(r) => {
                    if let Some(why) = &r.reloaded {
                        tracing::info!(
                            ms = started.elapsed().as_millis() as u64,
                            "metrics read again whole: {why}"
                        );
                    } else if r.changed() {
                        tracing::debug!(
                            ms = started.elapsed().as_millis() as u64,
                            order_accounts = r.orders,
                            visit_accounts = r.visits,
                            datasets = ?r.datasets,
                            "metrics brought up to date"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "the metrics in memory could not be brought up to date ({e:#}); reading them again whole"
                    );
                    self.live = None;
                }
            }
        }
        let live = match &mut self.live {
            Some(live) => live,
            None => self.live.insert(self.load_live()?),
        };
        Ok(live.snapshot(today, &self.cfg.cfg.tiers))
    }

    /// Reads every account's metrics into memory.
    fn load_live(&self) -> Result<Live> {
        let started = Instant::now();
        let live = Live::load(&self.conn)?;
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "metrics read into memory"
        );
        Ok(live)
    }

    fn run(&mut self, job: Job) -> Done {
        let mut done = Done::default();
        if crate::store::identity(&self.cfg.database()) != self.db_id {
            done.fatal = Some(database_gone(&self.cfg));
            return done;
        }
        match job {
            Job::Ingest(files) => {
                let mut last = None;
                for p in &files {
                    if self.stop.load(Ordering::Relaxed) {
                        break; // the rest stays in the inbox for next start
                    }
                    let name = p.file_name().unwrap_or_default().to_owned();
                    let (cfg, stop) = (&self.cfg, &self.stop);
                    let conn = std::cell::RefCell::new(&mut self.conn);
                    let outcome = ingest_guarded(
                        p,
                        || crate::ingest::ingest_file_until(cfg, &mut conn.borrow_mut(), p, stop),
                        |why| {
                            let mut c = conn.borrow_mut();
                            crate::store::back_to_wal(&c);
                            crate::ingest::reject_file(cfg, &mut c, p, why)
                        },
                    );
                    let outcome = match outcome {
                        FileOutcome::Isolate => ingest_apart(&self.cfg, &mut self.conn, p),
                        other => other,
                    };
                    match outcome {
                        FileOutcome::Isolate => {}
                        FileOutcome::Done(r) => {
                            if r.outcome == Outcome::Ingested {
                                done.ingested += 1;
                            }
                            last = Some(format!(
                                "last file {:?} ({}, {})",
                                r.file_name,
                                r.outcome.as_str(),
                                r.rows
                            ));
                            done.settled.push(p.clone());
                        }
                        FileOutcome::NotReady(why) => {
                            tracing::debug!(file = ?name, "not taken yet: {why}");
                            done.again.push((p.clone(), false));
                        }
                        FileOutcome::Unfiled(why) => {
                            done.ingested += 1;
                            tracing::warn!(file = ?name, "{why}");
                            done.again.push((p.clone(), true));
                        }
                        FileOutcome::Cancelled => {}
                        FileOutcome::Failed(why) => {
                            tracing::error!(file = ?name, "could not ingest: {why}; nothing of it was stored, it stays in the inbox and is tried again");
                            done.again.push((p.clone(), true));
                        }
                    }
                }
                done.status = last;
            }
            Job::Load => {
                if self.live.is_none() {
                    match self.load_live() {
                        Ok(live) => self.live = Some(live),
                        Err(e) => tracing::error!(
                            "the metrics could not be read into memory: {e:#}; the next evaluation tries again"
                        ),
                    }
                }
            }
            Job::Evaluate => {
                self.reload_rules();
                let today = self.cfg.today();
                let evaluated = self.snapshot(today).and_then(|snap| {
                    pipeline::evaluate_snapshot(
                        &self.cfg,
                        &mut self.conn,
                        &self.rules,
                        &snap,
                        false,
                        &self.stop,
                    )
                });
                match evaluated {
                    Ok(r) => {
                        done.status = Some(format!(
                            "evaluated as of {today}: {} accounts, {} warnings, {} new, {} resolved, {} rule errors",
                            r.accounts,
                            r.findings.len(),
                            r.started.len(),
                            r.resolved,
                            r.errors.len()
                        ));
                        let day = self.cfg.cfg.review.day_of_month;
                        if day > 0 && today.day() == day {
                            // Once per manager and date: later runs today are no-ops.
                            if let Err(e) = pipeline::queue_reviews(&self.cfg, &self.conn, today) {
                                tracing::error!("the monthly review could not be built: {e:#}");
                            }
                        }
                        let _ = std::fs::remove_file(eval_failed_path(&self.cfg.database()));
                        let _ = self.delivery.send(ToDelivery::Kick);
                    }
                    Err(e) => {
                        let mut text = format!("{e:#}");
                        if let Err(damaged) =
                            crate::store::quick_check(&self.conn, &self.cfg.database())
                        {
                            text = format!("{text}: {damaged:#}");
                        }
                        tracing::error!("evaluation failed: {text}");
                        done.status = Some(format!("evaluation FAILED: {text}"));
                        let note = format!("{}\t{text}\n", crate::store::now_text());
                        let _ = std::fs::write(eval_failed_path(&self.cfg.database()), note);
                    }
                }
            }
        }
        done
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(cfg: Loaded) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(main_loop(cfg))
}

/// The latest scheduled time at or before `now` (today's or yesterday's),
/// and the earliest after it, as instants.
fn slots(cfg: &Loaded, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let zone = cfg.cfg.schedule.zone();
    let times = cfg.cfg.schedule.times_of_day();
    // The day around which to look is `now`'s date in the zone, never the
    // wall clock's: the caller decides what "now" is.
    let today = zone.naive_at(now).date();
    let mut candidates: Vec<DateTime<Utc>> = Vec::new();
    for day in [today.pred_opt(), Some(today), today.succ_opt()]
        .into_iter()
        .flatten()
    {
        for t in &times {
            if let Some(at) = to_utc(zone, day.and_time(*t)) {
                candidates.push(at);
            }
        }
    }
    candidates.sort();
    let last = candidates.iter().rev().find(|t| **t <= now).copied();
    let next = candidates.iter().find(|t| **t > now).copied();
    (last, next)
}

fn to_utc(zone: Zone, t: NaiveDateTime) -> Option<DateTime<Utc>> {
    match zone {
        Zone::Local => chrono::Local
            .from_local_datetime(&t)
            .earliest()
            .map(|d| d.with_timezone(&Utc)),
        Zone::Named(tz) => tz
            .from_local_datetime(&t)
            .earliest()
            .map(|d| d.with_timezone(&Utc)),
    }
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

async fn main_loop(cfg: Loaded) -> Result<()> {
    // Signals first: a SIGTERM during start-up must not kill us mid-write.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("listening for SIGHUP")?;
    let notifier = Notifier::from_env();
    let watchdog = crate::daemon::service::watchdog_interval();
    let lock = Lock::acquire(&cfg.database())?;
    // Whatever `check` would report, the daemon says as it starts.
    for f in config::findings(&cfg) {
        tracing::warn!("{}", f.message);
    }
    let inbox = cfg.inbox();
    std::fs::create_dir_all(&inbox)
        .with_context(|| format!("creating the inbox {}", inbox.display()))?;
    let conn = crate::store::open(&cfg.database())?;
    crate::store::quick_check(&conn, &cfg.database())?;
    Live::capture(&conn).context("noting what ingest writes, for the metrics in memory")?;
    let db_id = crate::store::identity(&cfg.database());
    crate::ingest::file::sweep(&cfg.archive().join(crate::ingest::file::STAGING));
    crate::ingest::file::Attempts::new(&cfg.database())
        .prune(|hash| crate::store::hash_known(&conn, hash).unwrap_or(false));
    let (rules, errors, _) = RuleSet::load_config(&cfg)?;
    let mut reported = HashMap::new();
    for e in &errors {
        tracing::error!(rule = %e.path.display(), "rule does not compile and is not loaded:\n{e}");
        reported.insert(e.path.clone(), e.to_string());
    }
    let (inbox_text, database_text, rule_count) = (
        inbox.display().to_string(),
        cfg.database().display().to_string(),
        rules.rules.len(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut settle = Duration::from_millis(cfg.cfg.watch.settle_ms);
    let mut debounce = Duration::from_millis(cfg.cfg.watch.eval_debounce_ms);
    let mut stuck_after = Duration::from_secs(cfg.cfg.daemon.stuck_after_secs);

    // A scheduled run missed while we were down runs once now, and so does
    // an evaluation cut off by a crash after its files were ingested.
    let (last_slot, mut next_slot) = slots(&cfg, config::now());
    let evaluated = last_evaluation(&conn);
    let missed = last_slot.is_some_and(|slot| evaluated.is_none_or(|at| at < slot))
        || last_ingest(&conn).is_some_and(|at| evaluated.is_none_or(|e| e < at));
    let has_accounts = crate::store::has_accounts(&conn).unwrap_or(false);

    let (delivery, delivery_thread) = spawn_delivery(cfg.clone(), stop.clone())?;
    let mut state = Some(State {
        cfg,
        conn,
        rules,
        reported,
        stop: stop.clone(),
        db_id,
        delivery,
        live: None,
    });

    let (tx, mut rx) = mpsc::unbounded_channel();
    let watch_tx = tx.clone();
    let watch_cfg = state
        .as_ref()
        .map(|s| s.cfg.cfg.watch.clone())
        .unwrap_or_default();
    let mut watcher = watch::start_with(&inbox, &watch_cfg, move |c| {
        let _ = watch_tx.send(c);
    })?;
    let mut watched = inbox.clone();
    let mut watched_id = crate::store::identity(&watched);
    let mut last_look = Instant::now();
    // Files to look at again, when; and how often each failed in a row.
    let mut again: Vec<(Instant, PathBuf)> = Vec::new();
    let mut failures: HashMap<PathBuf, u32> = HashMap::new();
    let mut settler = Settler::new(settle);
    for p in watch::scan(&inbox)? {
        settler.touch(p);
    }
    // Watching and scanned: from here on no file dropped in is missed.
    tracing::info!(
        inbox = %inbox_text,
        database = %database_text,
        rules = rule_count,
        pid = std::process::id(),
        "kamwatch started"
    );
    notifier.ready();
    notifier.status("started; inbox scanned");

    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut eval_due: Option<Instant> = (missed && has_accounts).then(|| {
        tracing::info!("an evaluation was missed while the daemon was down; running it now");
        Instant::now()
    });
    let mut reload_wanted = false;
    // The metrics are read into memory once the start-up's files are in.
    let mut load_due = true;
    let mut stopping = false;
    let mut last_ping = Instant::now() - Duration::from_secs(3600);
    // The job running on the worker thread, and since when.
    let mut running: Option<(tokio::task::JoinHandle<(State, Done)>, Instant)> = None;

    loop {
        if stopping && running.is_none() {
            break;
        }
        tokio::select! {
            _ = term.recv(), if !stopping => {
                tracing::info!("SIGTERM: finishing the current step, then stopping");
                stopping = true;
                stop.store(true, Ordering::Relaxed);
                notifier.stopping();
            }
            _ = tokio::signal::ctrl_c(), if !stopping => {
                tracing::info!("SIGINT: finishing the current step, then stopping");
                stopping = true;
                stop.store(true, Ordering::Relaxed);
                notifier.stopping();
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the config and the rules, rescanning the inbox");
                reload_wanted = true;
                for p in watch::scan(&watched).unwrap_or_default() {
                    settler.touch(p);
                }
            }
            Some(change) = rx.recv() => match change {
                Change::Path(p) => settler.touch(p),
                Change::Renamed(p) => settler.renamed(p),
                Change::Rescan => {
                    for p in watch::scan(&watched).unwrap_or_default() {
                        settler.touch(p);
                    }
                }
            },
            joined = async { (&mut running.as_mut().expect("guarded").0).await }, if running.is_some() => {
                running = None;
                let (s, done) = joined.context("the worker thread panicked")?;
                if let Some(why) = done.fatal {
                    notifier.status(&why);
                    anyhow::bail!(why);
                }
                for p in done.settled {
                    failures.remove(&p);
                }
                for (p, backoff) in done.again {
                    let wait = if backoff {
                        let n = failures.entry(p.clone()).or_insert(0);
                        *n += 1;
                        let wait = RETRY_FIRST.saturating_mul(1 << (*n - 1).min(16)).min(RETRY_MAX);
                        tracing::info!(file = ?p.file_name().unwrap_or_default(), attempt = *n, "trying this file again in {} s", wait.as_secs());
                        wait
                    } else {
                        settle
                    };
                    again.push((Instant::now() + wait, p));
                }
                state = Some(s);
                if done.ingested > 0 {
                    eval_due = Some(Instant::now() + debounce);
                }
                if let Some(text) = done.status {
                    notifier.status(&text);
                }
            }
            _ = tick.tick() => {}
        }

        let now = Instant::now();
        // WATCHDOG: the loop is alive, and no job is stuck.
        if let Some(interval) = watchdog {
            let stuck = running
                .as_ref()
                .is_some_and(|(_, since)| now.duration_since(*since) > stuck_after);
            if !stuck && now.duration_since(last_ping) >= interval / 2 {
                notifier.watchdog();
                last_ping = now;
            }
        }
        // Files whose time to be looked at again has come.
        again.retain(|(at, p)| {
            if *at <= now {
                settler.touch(p.clone());
                false
            } else {
                true
            }
        });
        if now.duration_since(last_look) >= FS_LOOK {
            last_look = now;
            // A share mounted on the inbox after start (or the folder
            // replaced) is a new folder: watch it anew and list it.
            let id = crate::store::identity(&watched);
            if id.is_some() && id != watched_id {
                tracing::info!(inbox = %watched.display(), "the inbox folder changed (mounted, or replaced): watching it anew and rescanning");
                let watch_tx = tx.clone();
                let wcfg = state
                    .as_ref()
                    .map(|s| s.cfg.cfg.watch.clone())
                    .unwrap_or_default();
                match watch::start_with(&watched, &wcfg, move |c| {
                    let _ = watch_tx.send(c);
                }) {
                    Ok(w) => {
                        watcher = w;
                        watched_id = id;
                    }
                    Err(e) => tracing::error!("cannot watch the inbox anew: {e:#}"),
                }
                for p in watch::scan(&watched).unwrap_or_default() {
                    settler.touch(p);
                }
            }
            if let Some(s) = &state
                && crate::store::identity(&s.cfg.database()) != s.db_id
            {
                let why = database_gone(&s.cfg);
                notifier.status(&why);
                anyhow::bail!(why);
            }
        }
        if stopping || running.is_some() {
            continue;
        }
        let Some(mut s) = state.take() else {
            continue;
        };

        if reload_wanted {
            reload_wanted = false;
            notifier.reloading();
            match config::load(&s.cfg.file) {
                Ok(fresh) => {
                    if fresh.database() != s.cfg.database() {
                        tracing::warn!(
                            "the database path changed; that takes a restart, keeping {}",
                            s.cfg.database().display()
                        );
                    }
                    let new_inbox = fresh.inbox();
                    if new_inbox != watched {
                        match std::fs::create_dir_all(&new_inbox)
                            .map_err(anyhow::Error::from)
                            .and_then(|()| {
                                let watch_tx = tx.clone();
                                watch::start_with(&new_inbox, &fresh.cfg.watch, move |c| {
                                    let _ = watch_tx.send(c);
                                })
                            }) {
                            Ok(w) => {
                                watcher = w;
                                watched = new_inbox.clone();
                                watched_id = crate::store::identity(&watched);
                                for p in watch::scan(&watched).unwrap_or_default() {
                                    settler.touch(p);
                                }
                            }
                            Err(e) => tracing::error!(
                                "cannot watch the new inbox: {e:#}; still watching {}",
                                watched.display()
                            ),
                        }
                    }
                    settle = Duration::from_millis(fresh.cfg.watch.settle_ms);
                    debounce = Duration::from_millis(fresh.cfg.watch.eval_debounce_ms);
                    stuck_after = Duration::from_secs(fresh.cfg.daemon.stuck_after_secs);
                    settler.set_settle(settle);
                    let _ = s.delivery.send(ToDelivery::Config(Box::new(fresh.clone())));
                    s.cfg = fresh;
                    s.reload_rules();
                    next_slot = slots(&s.cfg, config::now()).1;
                    tracing::info!(rules = s.rules.rules.len(), "reloaded");
                    notifier.status("reloaded config and rules");
                }
                Err(e) => {
                    tracing::error!("the new config is refused, the running one stays: {e}");
                    notifier.status("config reload refused; see the log");
                }
            }
            // The database may have been changed by hand: the metrics are
            // read again whole.
            s.live = None;
            load_due = true;
            notifier.ready();
        }

        if next_slot.is_some_and(|t| config::now() >= t) {
            tracing::info!("scheduled evaluation");
            eval_due = Some(now);
            next_slot = slots(&s.cfg, config::now() + chrono::Duration::seconds(1)).1;
        }

        let ready = settler.ready(now);
        let job = if !ready.is_empty() {
            Some(Job::Ingest(ready))
        } else if eval_due.is_some_and(|t| t <= now) && settler.is_empty() {
            eval_due = None;
            load_due = false;
            Some(Job::Evaluate)
        } else if load_due && eval_due.is_none() && settler.is_empty() {
            load_due = false;
            Some(Job::Load)
        } else {
            None
        };
        match job {
            Some(job) => {
                let handle = tokio::task::spawn_blocking(move || {
                    let done = s.run(job);
                    (s, done)
                });
                running = Some((handle, now));
            }
            None => state = Some(s),
        }
    }
    drop(watcher);
    // Delivery gives up on its own (the stop flag breaks any conversation
    // within a tenth of a second); whatever still holds it after the grace
    // is cut off by the exit, like a kill: unsent rows stay pending.
    drop(state);
    let until = Instant::now() + DELIVERY_GRACE;
    while !delivery_thread.is_finished() && Instant::now() < until {
        tokio::time::sleep(TICK).await;
    }
    if !delivery_thread.is_finished() {
        tracing::warn!("the delivery thread did not let go in time; its message stays pending");
    }
    drop(lock);
    tracing::info!("kamwatch stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg_with(times: &str, tz: &str) -> Loaded {
        let text = include_str!("../../config/kamwatch.yaml")
            .replace("times: [\"07:30\"]", &format!("times: {times}"))
            .replace("timezone: Asia/Shanghai ", &format!("timezone: {tz} "));
        Loaded {
            file: PathBuf::from("/tmp/x.yaml"),
            cfg: config::parse(&text).unwrap(),
        }
    }

    /// A panic while ingesting one file rejects that file with a reason
    /// (a real reject: the file moves to rejected/ with its reason file)
    /// and the daemon goes on with the next one.
    #[test]
    fn a_panic_while_ingesting_rejects_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            include_str!("../../config/kamwatch.yaml").replace("\nroot: ..\n", "\nroot: .\n");
        assert!(text.contains("\nroot: .\n"));
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, &text).unwrap();
        let cfg = Loaded {
            file,
            cfg: config::parse(&text).unwrap(),
        };
        std::fs::create_dir_all(cfg.inbox()).unwrap();
        let mut conn = crate::store::open(&cfg.database()).unwrap();
        let bad = cfg.inbox().join("销售明细_bad.csv");
        std::fs::write(&bad, "订单编号\n1\n").unwrap();
        let out = ingest_guarded(
            &bad,
            || panic!("index out of bounds in a parser"),
            |why| crate::ingest::reject_file(&cfg, &mut conn, &bad, why),
        );
        let FileOutcome::Done(r) = out else {
            panic!("not rejected")
        };
        assert_eq!(r.outcome, Outcome::Rejected);
        assert!(!bad.exists());
        let reason = std::fs::read_to_string(r.errors_file.unwrap()).unwrap();
        assert!(
            reason.contains(
                "kamwatch failed while reading this file (index out of bounds in a parser)"
            ),
            "{reason}"
        );
        // The next file is ingested as usual.
        let good = cfg.inbox().join("销售明细_good.csv");
        std::fs::write(
            &good,
            "订单编号,客户编号,订单日期,金额,成本\nS1,K1,2026-01-05,10,5\n",
        )
        .unwrap();
        let out = ingest_guarded(
            &good,
            || crate::ingest::ingest_file(&cfg, &mut conn, &good),
            |_| unreachable!("no panic"),
        );
        assert!(matches!(out, FileOutcome::Done(r) if r.outcome == Outcome::Ingested));
    }

    #[test]
    fn slots_follow_now_not_the_wall_clock() {
        // 2031-02-28 23:30 UTC is already 07:30 on 1 March in Shanghai:
        // the slot at that very instant is the last one, the next is 18:00
        // on 1 March, whatever the machine's clock says.
        let cfg = cfg_with("[\"07:30\", \"18:00\"]", "Asia/Shanghai");
        let now = Utc.with_ymd_and_hms(2031, 2, 28, 23, 30, 0).unwrap();
        let (last, next) = slots(&cfg, now);
        assert_eq!(last, Some(now));
        assert_eq!(
            next,
            Some(Utc.with_ymd_and_hms(2031, 3, 1, 10, 0, 0).unwrap())
        );
    }

    #[test]
    fn slots_around_now_in_the_zone() {
        let cfg = cfg_with("[\"07:30\", \"18:00\"]", "Asia/Shanghai");
        // 2026-11-28 00:00 UTC is 08:00 in Shanghai: the last slot was
        // 07:30 Shanghai (23:30 UTC the day before), the next is 18:00.
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 0, 0, 0).unwrap();
        let (last, next) = slots(&cfg, now);
        assert_eq!(
            last,
            Some(Utc.with_ymd_and_hms(2026, 11, 27, 23, 30, 0).unwrap())
        );
        assert_eq!(
            next,
            Some(Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap())
        );
    }
}
