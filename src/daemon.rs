//! Daemon: `kamwatch run` — the long-running loop that ties watch, ingest,
//! evaluation and delivery together.
//!
//! At start-up it opens the store, loads the rules, delivers anything left in
//! the outbox and scans the inbox; then it watches. Complete files are
//! ingested one transaction each; after a batch (debounced) the rules are
//! evaluated as of today and the mail they cause is delivered. Failed
//! deliveries are retried. SIGTERM or SIGINT stop it between two steps, so
//! no transaction is cut. Rule files are reloaded before each evaluation; a
//! file that no longer compiles keeps its last good version.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rusqlite::Connection;
use tokio::sync::mpsc;

use crate::config::Loaded;
use crate::pipeline;
use crate::rules::{CompileError, RuleSet};
use crate::store::Outcome;
use crate::watch::{self, Change, Settler};

/// How often the outbox is looked at for retries when nothing else happens.
const DELIVERY_INTERVAL: Duration = Duration::from_secs(15);
const TICK: Duration = Duration::from_millis(50);

struct State {
    cfg: Loaded,
    conn: Connection,
    rules: RuleSet,
    /// Compile errors already logged, by file, so each is reported once.
    reported: HashMap<PathBuf, String>,
}

impl State {
    /// Reloads the rules folder. A file that fails to compile keeps its last
    /// good version; the failure is logged once per distinct error.
    fn reload_rules(&mut self) {
        let (fresh, errors) = match RuleSet::load_dir(&self.cfg.rules()) {
            Ok(x) => x,
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

async fn main_loop(cfg: Loaded) -> Result<()> {
    let inbox = cfg.inbox();
    std::fs::create_dir_all(&inbox)
        .with_context(|| format!("creating the inbox {}", inbox.display()))?;
    let conn = crate::store::open(&cfg.database())?;
    let (rules, errors) = RuleSet::load_dir(&cfg.rules())?;
    let mut reported = HashMap::new();
    for e in &errors {
        tracing::error!(rule = %e.path.display(), "rule does not compile and is not loaded:\n{e}");
        reported.insert(e.path.clone(), e.to_string());
    }
    let settle = Duration::from_millis(cfg.cfg.watch.settle_ms);
    let debounce = Duration::from_millis(cfg.cfg.watch.eval_debounce_ms);
    tracing::info!(
        inbox = %inbox.display(),
        database = %cfg.database().display(),
        rules = rules.rules.len(),
        "kamwatch started"
    );
    let mut state = State {
        cfg,
        conn,
        rules,
        reported,
    };

    let (tx, mut rx) = mpsc::unbounded_channel();
    let _watcher = watch::start_with(&inbox, &state.cfg.cfg.watch, move |c| {
        let _ = tx.send(c);
    })?;
    let mut settler = Settler::new(settle);
    for p in watch::scan(&inbox)? {
        settler.touch(p);
    }

    let mut shutdown = std::pin::pin!(shutdown_signal());
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut eval_due: Option<Instant> = None;
    let mut delivery_due = Instant::now();

    loop {
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("stopping on signal");
                break;
            }
            Some(change) = rx.recv() => match change {
                Change::Path(p) => settler.touch(p),
                Change::Renamed(p) => settler.renamed(p),
                Change::Rescan => {
                    for p in watch::scan(&inbox)? {
                        settler.touch(p);
                    }
                }
            },
            _ = tick.tick() => {
                let now = Instant::now();
                let ready = settler.ready(now);
                if !ready.is_empty() {
                    let (s, ingested) = blocking(state, move |s| {
                        let mut ingested = 0;
                        for p in &ready {
                            match crate::ingest::ingest_file(&s.cfg, &mut s.conn, p) {
                                Ok(r) if r.outcome == Outcome::Ingested => ingested += 1,
                                Ok(_) => {}
                                Err(e) => tracing::error!(file = %p.display(), "could not ingest: {e:#}; the file stays in the inbox"),
                            }
                        }
                        ingested
                    }).await?;
                    state = s;
                    if ingested > 0 {
                        eval_due = Some(Instant::now() + debounce);
                    }
                }
                if eval_due.is_some_and(|t| t <= now) && settler.is_empty() {
                    eval_due = None;
                    let (s, ()) = blocking(state, |s| {
                        s.reload_rules();
                        let today = chrono::Local::now().date_naive();
                        if let Err(e) = pipeline::evaluate(&s.cfg, &mut s.conn, &s.rules, today, false) {
                            tracing::error!("evaluation failed: {e:#}");
                        }
                    }).await?;
                    state = s;
                    delivery_due = now;
                }
                if delivery_due <= now {
                    let (s, ()) = blocking(state, |s| {
                        if let Err(e) = pipeline::deliver(&s.cfg, &s.conn) {
                            tracing::error!("delivery failed: {e:#}");
                        }
                    }).await?;
                    state = s;
                    delivery_due = Instant::now() + DELIVERY_INTERVAL;
                }
            }
        }
    }
    tracing::info!("kamwatch stopped");
    Ok(())
}

/// Runs `f` on the blocking pool with the state, and gives the state back.
async fn blocking<T: Send + 'static>(
    mut state: State,
    f: impl FnOnce(&mut State) -> T + Send + 'static,
) -> Result<(State, T)> {
    tokio::task::spawn_blocking(move || {
        let out = f(&mut state);
        (state, out)
    })
    .await
    .context("a worker thread panicked")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
