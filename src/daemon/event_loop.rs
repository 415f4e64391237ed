//! Event loop: the daemon's listening half, on the async runtime. It hears
//! signals (SIGTERM/SIGINT stop, SIGHUP reloads and rescans), the inbox
//! watcher's changes, and the end of the worker's job; it keeps the
//! timers (files settling, files to try again with backoff, the scheduled
//! evaluations, the debounced evaluation after a batch, WATCHDOG pings)
//! and sleeps until the next one is due. It never touches the disk
//! itself: looks at settling files, rescans, the inbox's and the
//! database's identities and starting a watcher run on blocking threads,
//! and each job runs on the worker (`worker`). It talks to systemd through
//! `service`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveTime, Utc};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

use super::schedule::slots;
use super::service::{Notifier, watchdog_interval};
use super::start::{Started, start};
use super::watch::{self, Change, InboxWatcher, Look, Settler};
use super::worker::{Done, Job, State, database_gone};
use crate::config::{self, Loaded, WatchConfig, Zone};

/// How long stopping waits for the delivery thread to let go.
const DELIVERY_GRACE: Duration = Duration::from_secs(3);
/// How often the inbox folder and the database file are checked for
/// having been replaced (a late mount, a deleted database).
const FS_LOOK: Duration = Duration::from_secs(1);
/// Backoff for a file that failed for a reason that may pass.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// The shortest sleep: a timer that is due but cannot act yet never makes
/// the loop spin.
const MIN_SLEEP: Duration = Duration::from_millis(5);

type Identity = Option<(u64, u64)>;

/// What reaches the loop besides signals and the worker's end.
enum Msg {
    /// From the watcher.
    Watch(Change),
    /// A rescan of the inbox listed these.
    Scanned(Vec<PathBuf>),
    /// Looks at settling files, taken at that instant.
    Looked(Instant, Vec<(PathBuf, Option<Look>)>),
    /// The inbox folder's and the database file's identities now (the
    /// database's only when no job was running).
    Identities {
        inbox: Identity,
        database: Option<Identity>,
    },
}

/// The loop's state between two wake-ups.
struct Loop {
    tx: UnboundedSender<Msg>,
    notifier: Notifier,
    watchdog: Option<Duration>,
    stop: Arc<AtomicBool>,
    /// The schedule's zone and times of day, and the next slot.
    schedule: (Zone, Vec<NaiveTime>),
    next_slot: Option<DateTime<Utc>>,
    watcher: InboxWatcher,
    watched: PathBuf,
    watched_id: Identity,
    /// The database file's identity at start, and what to say when it
    /// changes under us.
    db_id: Identity,
    database_gone: String,
    settler: Settler,
    /// A look at settling files is out.
    looking: bool,
    /// A rescan is out, and another was asked for meanwhile.
    scanning: bool,
    rescan_again: bool,
    /// Complete files waiting for the worker.
    ready: Vec<PathBuf>,
    /// Files to look at again, when; and how often each failed in a row.
    again: Vec<(Instant, PathBuf)>,
    failures: HashMap<PathBuf, u32>,
    settle: Duration,
    debounce: Duration,
    stuck_after: Duration,
    eval_due: Option<Instant>,
    /// The evaluation due runs every rule for every account (the scheduled
    /// one, one missed while down), not only where something changed.
    eval_full: bool,
    /// Evaluations failed in a row (their retry's backoff).
    eval_failures: u32,
    /// The metrics are read into memory once the start-up's files are in.
    load_due: bool,
    reload_wanted: bool,
    reloading: bool,
    stopping: bool,
    last_ping: Instant,
    next_fs_look: Instant,
    fs_looking: bool,
    /// The worker's state while no job runs.
    state: Option<State>,
    /// The job running on the worker thread, and since when.
    running: Option<(JoinHandle<(State, Done)>, Instant)>,
}

/// Runs the daemon: start-up, then the loop until SIGTERM or SIGINT (exit
/// 0) or a fatal error (the database gone; exit 1).
pub async fn main_loop(cfg: Loaded) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Signals first: a SIGTERM during start-up must not kill us mid-write.
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    let notifier = Notifier::from_env();
    let stop = Arc::new(AtomicBool::new(false));
    let Started {
        lock,
        state,
        delivery_thread,
        checkpoint_thread,
        missed,
    } = start(cfg, &stop)?;
    let (tx, mut rx) = unbounded_channel();
    let mut lp = Loop::new(state, tx, notifier, stop).await?;
    // Watching and scanned: from here on no file dropped in is missed.
    lp.notifier.ready();
    lp.notifier.status("started; inbox scanned");
    if missed {
        tracing::info!("an evaluation was missed while the daemon was down; running it now");
        lp.eval_due = Some(Instant::now());
        lp.eval_full = true;
    }
    lp.run(&mut term, &mut hup, &mut rx).await?;
    let Loop { watcher, state, .. } = lp;
    drop(watcher);
    // Delivery gives up on its own (the stop flag breaks any conversation
    // within a tenth of a second); whatever still holds it after the grace
    // is cut off by the exit, like a kill: unsent rows stay pending.
    // The checkpoint thread ends with the state's sender and delivery's,
    // after the pass it is in (one cut off by the exit leaves the log as
    // it was: SQLite copies it the next time).
    drop(state);
    let until = Instant::now() + DELIVERY_GRACE;
    while !(delivery_thread.is_finished() && checkpoint_thread.is_finished())
        && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !delivery_thread.is_finished() {
        tracing::warn!("the delivery thread did not let go in time; its message stays pending");
    }
    drop(lock);
    tracing::info!("kamwatch stopped");
    Ok(())
}

/// Starts a watcher on `dir` whose changes reach the loop, on a blocking
/// thread (creating the folder first when `create`).
async fn watch_on(
    dir: PathBuf,
    cfg: WatchConfig,
    tx: UnboundedSender<Msg>,
    create: bool,
) -> Result<InboxWatcher> {
    tokio::task::spawn_blocking(move || {
        if create {
            std::fs::create_dir_all(&dir)?;
        }
        watch::start_with(&dir, &cfg, move |c| {
            let _ = tx.send(Msg::Watch(c));
        })
    })
    .await
    .context("the watcher's thread panicked")?
}

impl Loop {
    async fn new(
        state: State,
        tx: UnboundedSender<Msg>,
        notifier: Notifier,
        stop: Arc<AtomicBool>,
    ) -> Result<Loop> {
        let cfg = &state.cfg;
        let inbox = cfg.inbox();
        let watcher = watch_on(inbox.clone(), cfg.cfg.watch.clone(), tx.clone(), false).await?;
        let settle = Duration::from_millis(cfg.cfg.watch.settle_ms);
        let mut settler = Settler::new(settle);
        let scan_dir = inbox.clone();
        let (listed, watched_id) = tokio::task::spawn_blocking(move || {
            (watch::scan(&scan_dir), crate::store::identity(&scan_dir))
        })
        .await
        .context("the scan's thread panicked")?;
        for p in listed? {
            settler.touch(p);
        }
        tracing::info!(
            inbox = %inbox.display(),
            database = %cfg.database().display(),
            rules = state.rules.rules.len(),
            pid = std::process::id(),
            "kamwatch started"
        );
        let schedule = (cfg.cfg.schedule.zone(), cfg.cfg.schedule.times_of_day());
        let next_slot = slots(schedule.0, &schedule.1, config::now()).1;
        let now = Instant::now();
        Ok(Loop {
            tx,
            notifier,
            watchdog: watchdog_interval(),
            stop,
            next_slot,
            schedule,
            watcher,
            watched: inbox,
            watched_id,
            db_id: state.db_id,
            database_gone: database_gone(cfg),
            settler,
            looking: false,
            scanning: false,
            rescan_again: false,
            ready: Vec::new(),
            again: Vec::new(),
            failures: HashMap::new(),
            settle,
            debounce: Duration::from_millis(cfg.cfg.watch.eval_debounce_ms),
            stuck_after: Duration::from_secs(cfg.cfg.daemon.stuck_after_secs),
            eval_due: None,
            eval_full: false,
            eval_failures: 0,
            load_due: true,
            reload_wanted: false,
            reloading: false,
            stopping: false,
            last_ping: now - Duration::from_secs(3600),
            next_fs_look: now + FS_LOOK,
            fs_looking: false,
            state: Some(state),
            running: None,
        })
    }

    /// Listens until stopped and the running job is over.
    async fn run(
        &mut self,
        term: &mut tokio::signal::unix::Signal,
        hup: &mut tokio::signal::unix::Signal,
        rx: &mut UnboundedReceiver<Msg>,
    ) -> Result<()> {
        loop {
            if self.stopping && self.running.is_none() {
                return Ok(());
            }
            let deadline = self.next_deadline(Instant::now());
            tokio::select! {
                _ = term.recv(), if !self.stopping => self.stop_now("SIGTERM"),
                _ = tokio::signal::ctrl_c(), if !self.stopping => self.stop_now("SIGINT"),
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the config and the rules, rescanning the inbox");
                    self.reload_wanted = true;
                    self.rescan();
                }
                Some(msg) = rx.recv() => self.on_msg(msg).await?,
                joined = async { (&mut self.running.as_mut().expect("guarded").0).await }, if self.running.is_some() => {
                    self.running = None;
                    let (s, done) = joined.context("the worker thread panicked")?;
                    self.state = Some(s);
                    self.on_done(done).await?;
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            // What the watcher said meanwhile is heard before the next job
            // is chosen: a file renamed in while a job ran is taken before
            // the evaluation, so a batch is evaluated once, without a
            // blind wait (`watch.eval_debounce_ms` adds one if asked).
            while let Ok(msg) = rx.try_recv() {
                self.on_msg(msg).await?;
            }
            self.step(Instant::now());
        }
    }

    fn stop_now(&mut self, signal: &str) {
        tracing::info!("{signal}: finishing the current step, then stopping");
        self.stopping = true;
        self.stop.store(true, Ordering::Relaxed);
        self.notifier.stopping();
    }

    /// Lists the inbox again on a blocking thread; what it finds comes
    /// back as [`Msg::Scanned`]. One scan at a time: asked again meanwhile
    /// (a watcher that overflows asks on every event), one more follows.
    fn rescan(&mut self) {
        if self.scanning {
            self.rescan_again = true;
            return;
        }
        self.scanning = true;
        let (dir, tx) = (self.watched.clone(), self.tx.clone());
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(Msg::Scanned(watch::scan(&dir).unwrap_or_default()));
        });
    }

    async fn on_msg(&mut self, msg: Msg) -> Result<()> {
        match msg {
            Msg::Watch(Change::Path(p)) => self.settler.touch(p),
            Msg::Watch(Change::Renamed(p)) => self.settler.renamed(p),
            Msg::Watch(Change::Rescan) => self.rescan(),
            Msg::Scanned(paths) => {
                self.scanning = false;
                for p in paths {
                    self.settler.touch(p);
                }
                if std::mem::take(&mut self.rescan_again) {
                    self.rescan();
                }
            }
            Msg::Looked(at, looked) => {
                self.looking = false;
                self.ready.extend(self.settler.observe(at, looked));
                self.ready.sort();
                self.ready.dedup();
            }
            Msg::Identities { inbox, database } => {
                self.fs_looking = false;
                self.next_fs_look = Instant::now() + FS_LOOK;
                self.on_identities(inbox, database).await?;
            }
        }
        Ok(())
    }

    /// A share mounted on the inbox after start (or the folder replaced)
    /// is a new folder: watch it anew and list it. A database deleted or
    /// replaced stops the daemon (checked between jobs; a job checks at
    /// its start).
    async fn on_identities(&mut self, inbox: Identity, database: Option<Identity>) -> Result<()> {
        if inbox.is_some() && inbox != self.watched_id {
            tracing::info!(inbox = %self.watched.display(), "the inbox folder changed (mounted, or replaced): watching it anew and rescanning");
            let wcfg = self.watch_config();
            match watch_on(self.watched.clone(), wcfg, self.tx.clone(), false).await {
                Ok(w) => {
                    self.watcher = w;
                    self.watched_id = inbox;
                }
                Err(e) => tracing::error!("cannot watch the inbox anew: {e:#}"),
            }
            self.rescan();
        }
        if self.state.is_some() && database.is_some_and(|d| d != self.db_id) {
            self.notifier.status(&self.database_gone);
            anyhow::bail!(self.database_gone.clone());
        }
        Ok(())
    }

    fn watch_config(&self) -> WatchConfig {
        self.state
            .as_ref()
            .map(|s| s.cfg.cfg.watch.clone())
            .unwrap_or_default()
    }

    /// What the finished job tells: files settled or to try again, an
    /// evaluation due after a batch, a new config after a reload.
    async fn on_done(&mut self, done: Done) -> Result<()> {
        if let Some(why) = done.fatal {
            self.notifier.status(&why);
            anyhow::bail!(why);
        }
        for p in done.settled {
            self.failures.remove(&p);
        }
        for (p, backoff) in done.again {
            let wait = if backoff {
                let n = self.failures.entry(p.clone()).or_insert(0);
                *n += 1;
                let wait = RETRY_FIRST
                    .saturating_mul(1 << (*n - 1).min(16))
                    .min(RETRY_MAX);
                tracing::info!(file = ?p.file_name().unwrap_or_default(), attempt = *n, "trying this file again in {} s", wait.as_secs());
                wait
            } else {
                self.settle
            };
            self.again.push((Instant::now() + wait, p));
        }
        if done.ingested > 0 {
            self.eval_due = Some(Instant::now() + self.debounce);
        }
        match done.evaluated {
            // Failed: evaluated again (everything: the memo is gone) after
            // a backoff, or sooner if a file comes. Nothing is left waiting
            // for the next file or the next day.
            Some(false) => {
                self.eval_failures += 1;
                let wait = RETRY_FIRST
                    .saturating_mul(1 << (self.eval_failures - 1).min(16))
                    .min(RETRY_MAX);
                tracing::info!(
                    attempt = self.eval_failures,
                    "evaluating again in {} s",
                    wait.as_secs()
                );
                let at = Instant::now() + wait;
                self.eval_due = Some(self.eval_due.map_or(at, |t| t.min(at)));
                self.eval_full = true;
            }
            Some(true) => self.eval_failures = 0,
            None => {}
        }
        if let Some(fresh) = done.reloaded {
            self.take_config(&fresh).await;
        }
        if let Some(text) = done.status {
            self.notifier.status(&text);
        }
        if std::mem::take(&mut self.reloading) {
            self.load_due = true;
            self.notifier.ready();
        }
        Ok(())
    }

    /// After a reload: the new timers, schedule and inbox.
    async fn take_config(&mut self, fresh: &Loaded) {
        let new_inbox = fresh.inbox();
        if new_inbox != self.watched {
            let w = watch_on(
                new_inbox.clone(),
                fresh.cfg.watch.clone(),
                self.tx.clone(),
                true,
            )
            .await;
            match w {
                Ok(w) => {
                    self.watcher = w;
                    self.watched = new_inbox.clone();
                    self.watched_id =
                        tokio::task::spawn_blocking(move || crate::store::identity(&new_inbox))
                            .await
                            .unwrap_or(None);
                    self.rescan();
                }
                Err(e) => tracing::error!(
                    "cannot watch the new inbox: {e:#}; still watching {}",
                    self.watched.display()
                ),
            }
        }
        self.settle = Duration::from_millis(fresh.cfg.watch.settle_ms);
        self.debounce = Duration::from_millis(fresh.cfg.watch.eval_debounce_ms);
        self.stuck_after = Duration::from_secs(fresh.cfg.daemon.stuck_after_secs);
        self.settler.set_settle(self.settle);
        self.schedule = (fresh.cfg.schedule.zone(), fresh.cfg.schedule.times_of_day());
        self.next_slot = slots(self.schedule.0, &self.schedule.1, config::now()).1;
    }

    /// Whether the running job has run longer than `stuck_after`.
    fn stuck(&self, now: Instant) -> bool {
        self.running
            .as_ref()
            .is_some_and(|(_, since)| now.duration_since(*since) > self.stuck_after)
    }

    /// When the loop must wake up next if nothing else wakes it: the
    /// earliest timer that can act.
    fn next_deadline(&self, now: Instant) -> Instant {
        let idle = self.running.is_none() && !self.stopping;
        let settled = self.settler.is_empty() && self.ready.is_empty();
        let slot = self.next_slot.map(|t| {
            let wait = (t - config::now()).to_std().unwrap_or_default();
            now + wait
        });
        let timers = [
            self.watchdog
                .filter(|_| !self.stuck(now))
                .map(|i| self.last_ping + i / 2),
            self.again.iter().map(|(at, _)| *at).min(),
            (!self.fs_looking).then_some(self.next_fs_look),
            if self.looking {
                None
            } else {
                self.settler.next_due(now)
            },
            self.eval_due.filter(|_| idle && settled),
            slot,
        ];
        let next = timers.into_iter().flatten().min();
        next.unwrap_or(now + FS_LOOK).max(now + MIN_SLEEP)
    }

    /// What is due at `now`: pings, files to look at, the scheduled slot,
    /// and — when no job runs — the next job.
    fn step(&mut self, now: Instant) {
        // WATCHDOG: the loop is alive, and no job is stuck.
        if let Some(interval) = self.watchdog
            && !self.stuck(now)
            && now.duration_since(self.last_ping) >= interval / 2
        {
            self.notifier.watchdog();
            self.last_ping = now;
        }
        if self.next_slot.is_some_and(|t| config::now() >= t) {
            tracing::info!("scheduled evaluation");
            self.eval_due = Some(now);
            self.eval_full = true;
            let later = config::now() + chrono::Duration::seconds(1);
            self.next_slot = slots(self.schedule.0, &self.schedule.1, later).1;
        }
        // Files whose time to be looked at again has come.
        let settler = &mut self.settler;
        self.again.retain(|(at, p)| {
            if *at <= now {
                settler.touch(p.clone());
                false
            } else {
                true
            }
        });
        if !self.fs_looking && now >= self.next_fs_look {
            self.look_at_identities();
        }
        if !self.looking && self.settler.next_due(now).is_some_and(|t| t <= now) {
            self.look_at_settling(now);
        }
        if !self.stopping && self.running.is_none() {
            self.start_job(now);
        }
    }

    fn look_at_identities(&mut self) {
        self.fs_looking = true;
        let (inbox, tx) = (self.watched.clone(), self.tx.clone());
        let database = self.state.as_ref().map(|s| s.cfg.database());
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(Msg::Identities {
                inbox: crate::store::identity(&inbox),
                database: database.map(|d| crate::store::identity(&d)),
            });
        });
    }

    fn look_at_settling(&mut self, now: Instant) {
        self.looking = true;
        let due = self.settler.due(now);
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let at = Instant::now();
            let _ = tx.send(Msg::Looked(at, watch::looks(due)));
        });
    }

    /// Starts the next job, if one is due: a reload first, then complete
    /// files, then a due evaluation once nothing is settling, then reading
    /// the metrics into memory.
    fn start_job(&mut self, now: Instant) {
        let Some(mut s) = self.state.take() else {
            return;
        };
        let settled = self.settler.is_empty() && !self.looking;
        let job = if self.reload_wanted {
            self.reload_wanted = false;
            self.reloading = true;
            self.notifier.reloading();
            Some(Job::Reload)
        } else if !self.ready.is_empty() {
            Some(Job::Ingest(std::mem::take(&mut self.ready)))
        } else if self.eval_due.is_some_and(|t| t <= now) && settled {
            self.eval_due = None;
            self.load_due = false;
            Some(Job::Evaluate {
                full: std::mem::take(&mut self.eval_full),
            })
        } else if self.load_due && self.eval_due.is_none() && settled {
            self.load_due = false;
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
                self.running = Some((handle, now));
            }
            None => self.state = Some(s),
        }
    }
}
