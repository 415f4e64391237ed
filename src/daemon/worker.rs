//! Worker: what the daemon does between listening — one job at a time on a
//! blocking thread, with the state it owns between jobs (config, database
//! connection, rules, metrics in memory). Jobs: ingest a batch of complete
//! files (one transaction each, through `isolate` so one bad file cannot
//! take the daemon down), read the metrics into memory, evaluate as of
//! today (reloading the rule files first; a file that no longer compiles
//! keeps its last good version and the admin is mailed once; after a small
//! drop the rules run only where something changed, see
//! `pipeline::evaluate_changed`), and reload
//! the config on SIGHUP (an invalid one is refused, the running one stays).
//! A failing evaluation is noted in `<db>.eval-failed` for `kamwatch
//! status` and reported to the event loop, which tries it again with
//! backoff; a database deleted or replaced under the daemon stops it.
//! Touches the store (through ingest, pipeline, metrics), the inbox's
//! files (through ingest) and that note.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Result;
use chrono::Datelike;
use rusqlite::Connection;

use super::delivery::ToDelivery;
use super::isolate::{FileOutcome, ingest_apart, ingest_guarded};
use crate::config::{self, Loaded};
use crate::metrics::Live;
use crate::pipeline;
use crate::rules::changed::{Memo, Since};
use crate::rules::{CompileError, RuleSet};
use crate::store::Outcome;

/// What the worker thread owns between jobs.
pub struct State {
    pub cfg: Loaded,
    pub conn: Connection,
    pub rules: RuleSet,
    /// Compile errors already logged, by file, so each is reported once.
    pub reported: HashMap<PathBuf, String>,
    /// Set on SIGTERM: stop between two files.
    pub stop: Arc<AtomicBool>,
    /// The database file's (device, inode) when it was opened.
    pub db_id: Option<(u64, u64)>,
    /// Wakes the delivery thread.
    pub delivery: std::sync::mpsc::Sender<ToDelivery>,
    /// Wakes the checkpoint thread (`checkpoint`): after each job that no
    /// evaluation follows.
    pub checkpoint: std::sync::mpsc::Sender<()>,
    /// The metrics kept in memory between evaluations; None until read
    /// (at start-up, after SIGHUP, after a refresh failed).
    pub live: Option<Live>,
    /// What the last evaluation saw and found, so that the next one of the
    /// same day runs the rules only where something changed; None after
    /// anything but a refresh of order lines and visits (see `snapshot`).
    pub memo: Option<Memo>,
}

/// What the metrics' refresh before an evaluation read again (`Since::after`
/// tells the evaluation); None when there were no metrics in memory to
/// refresh.
type Touched = Option<crate::metrics::live::Refresh>;

/// A unit of work for the worker thread.
pub enum Job {
    Ingest(Vec<PathBuf>),
    /// Evaluate as of today; `full`: every rule for every account (the
    /// scheduled run), else only where something changed when that can be
    /// told.
    Evaluate {
        full: bool,
    },
    /// Read the metrics into memory (at start-up and after SIGHUP), so the
    /// next evaluation only reads what files changed.
    Load,
    /// SIGHUP: read the config and the rules again.
    Reload,
}

/// What a finished job tells the loop.
#[derive(Default)]
pub struct Done {
    pub ingested: usize,
    pub status: Option<String>,
    /// Files not taken now, to look at again: not complete yet (`false`),
    /// or failed for a reason that may pass, with backoff (`true`).
    pub again: Vec<(PathBuf, bool)>,
    /// Files ingested or rejected: their backoff is over.
    pub settled: Vec<PathBuf>,
    /// Why the daemon must stop (its database is gone).
    pub fatal: Option<String>,
    /// After a reload: the config now in force, when a new one was taken.
    pub reloaded: Option<Loaded>,
    /// After an evaluation: whether it failed (it is tried again, with
    /// backoff: a lock another process held past the busy timeout, a full
    /// disk, may pass).
    pub evaluated: Option<bool>,
}

/// What the admin reads when the database file went away under the daemon.
pub fn database_gone(cfg: &Loaded) -> String {
    format!(
        "the database {} was deleted or replaced while kamwatch was running; kamwatch stops so that nothing more is written into a file no one can open. Restore the database from a backup, or rebuild it from the archived inputs with `kamwatch rebuild --config {}`, then start kamwatch again",
        cfg.database().display(),
        cfg.file.display()
    )
}

/// Where the daemon notes that evaluations fail, for `kamwatch status`:
/// beside the database, so it is readable when the database is not.
pub fn eval_failed_path(database: &Path) -> PathBuf {
    let mut p = database.as_os_str().to_owned();
    p.push(".eval-failed");
    PathBuf::from(p)
}

/// The note beside the database that evaluations fail, if there is one:
/// since when (the time of the last failure) and the error.
pub fn eval_failing(database: &Path) -> Option<(String, String)> {
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
    /// there are none yet or they could not be brought up to date; and
    /// what the refresh read again ([`Touched`]).
    fn snapshot(
        &mut self,
        today: chrono::NaiveDate,
    ) -> Result<(crate::metrics::Snapshot, Touched, std::time::Duration)> {
        let started = Instant::now();
        let mut touched = None;
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
                    touched = Some(r);
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
        let refreshed = started.elapsed();
        Ok((
            live.snapshot(today, &self.cfg.cfg.tiers),
            touched,
            refreshed,
        ))
    }

    /// Reads every account's metrics into memory.
    fn load_live(&self) -> Result<Live> {
        let started = Instant::now();
        let live = Live::load(&self.conn)?;
        let f = live.footprint();
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            series_mib = f.series >> 20,
            sku_lines_mib = f.sku_lines >> 20,
            visits_mib = f.visits >> 20,
            "metrics read into memory"
        );
        Ok(live)
    }

    /// Runs one job; the database must still be the file opened at start.
    pub fn run(&mut self, job: Job) -> Done {
        if crate::store::identity(&self.cfg.database()) != self.db_id {
            return Done {
                fatal: Some(database_gone(&self.cfg)),
                ..Done::default()
            };
        }
        tracing::debug!(
            job = match &job {
                Job::Ingest(_) => "ingest",
                Job::Evaluate { .. } => "evaluate",
                Job::Load => "load",
                Job::Reload => "reload",
            },
            "job started"
        );
        let ingest = matches!(job, Job::Ingest(_));
        let done = match job {
            Job::Ingest(files) => self.ingest(&files),
            Job::Load => {
                if self.live.is_none() {
                    match self.load_live() {
                        Ok(live) => self.live = Some(live),
                        Err(e) => tracing::error!(
                            "the metrics could not be read into memory: {e:#}; the next evaluation tries again"
                        ),
                    }
                    super::memory::give_back();
                }
                Done::default()
            }
            Job::Evaluate { full } => self.evaluate(full),
            Job::Reload => self.reload(),
        };
        // Files ingested are evaluated next: the checkpoint waits for it
        // (on its own thread: `checkpoint`).
        if !ingest || done.ingested == 0 {
            let _ = self.checkpoint.send(());
        }
        done
    }

    /// Ingests `files` in order, each in its own transaction, until SIGTERM.
    fn ingest(&mut self, files: &[PathBuf]) -> Done {
        let mut done = Done::default();
        for p in files {
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
                FileOutcome::Isolate | FileOutcome::Cancelled => {}
                FileOutcome::Done(r) => {
                    if r.outcome == Outcome::Ingested {
                        done.ingested += 1;
                    }
                    done.status = Some(format!(
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
                FileOutcome::Failed(why) => {
                    tracing::error!(file = ?name, "could not ingest: {why}; nothing of it was stored, it stays in the inbox and is tried again");
                    done.again.push((p.clone(), true));
                }
            }
        }
        done
    }

    /// Evaluates as of today with the rule files as they are now (`full`:
    /// every rule for every account; else only where something changed
    /// since the last evaluation of the day, when that can be told),
    /// queues the monthly review on its day, and wakes delivery.
    fn evaluate(&mut self, full: bool) -> Done {
        let mut done = Done::default();
        self.reload_rules();
        let today = self.cfg.today();
        let started = Instant::now();
        let evaluated = match self.snapshot(today) {
            Ok((snap, touched, refreshed)) => {
                let built = started.elapsed();
                let since = touched.as_ref().filter(|_| !full).and_then(Since::after);
                let r = pipeline::evaluate_changed(
                    &self.cfg,
                    &mut self.conn,
                    &self.rules,
                    &snap,
                    &mut self.memo,
                    since,
                    &self.stop,
                );
                tracing::info!(
                    refresh_ms = refreshed.as_millis() as u64,
                    snapshot_ms = built.as_millis() as u64,
                    accounts_kept = self.live.as_ref().map_or(0, |l| l.restood()),
                    evaluation_ms = (started.elapsed() - built).as_millis() as u64,
                    "the metrics brought up to date and evaluated"
                );
                r
            }
            Err(e) => {
                self.memo = None;
                Err(e)
            }
        };
        match evaluated {
            Ok(r) => {
                let ran = match r.partial {
                    Some(n) => format!(" (rules run for {n} where something changed)"),
                    None => String::new(),
                };
                done.status = Some(format!(
                    "evaluated as of {today}: {} accounts{ran}, {} warnings, {} new, {} resolved, {} rule errors",
                    r.accounts,
                    r.raised,
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
                done.evaluated = Some(true);
            }
            Err(e) => {
                let mut text = format!("{e:#}");
                if let Err(damaged) = crate::store::quick_check(&self.conn, &self.cfg.database()) {
                    text = format!("{text}: {damaged:#}");
                }
                tracing::error!("evaluation failed: {text}");
                done.status = Some(format!("evaluation FAILED: {text}"));
                let note = format!("{}\t{text}\n", crate::store::now_text());
                let _ = std::fs::write(eval_failed_path(&self.cfg.database()), note);
                done.evaluated = Some(false);
            }
        }
        super::memory::give_back();
        done
    }

    /// SIGHUP: the config file read again (refused when invalid: the
    /// running one stays), the rules reloaded, and the metrics read again
    /// whole (the database may have been changed by hand).
    fn reload(&mut self) -> Done {
        let mut done = Done::default();
        match config::load(&self.cfg.file) {
            Ok(fresh) => {
                if fresh.database() != self.cfg.database() {
                    tracing::warn!(
                        "the database path changed; that takes a restart, keeping {}",
                        self.cfg.database().display()
                    );
                }
                let _ = self
                    .delivery
                    .send(ToDelivery::Config(Box::new(fresh.clone())));
                self.cfg = fresh;
                self.reload_rules();
                tracing::info!(rules = self.rules.rules.len(), "reloaded");
                done.status = Some("reloaded config and rules".into());
                done.reloaded = Some(self.cfg.clone());
            }
            Err(e) => {
                tracing::error!("the new config is refused, the running one stays: {e}");
                done.status = Some("config reload refused; see the log".into());
            }
        }
        self.live = None;
        self.memo = None;
        done
    }
}
