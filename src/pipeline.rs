//! Pipeline: the stages wired together for one pass — ingest a batch of
//! files, or evaluate the rules as of a date and deliver what it caused.
//!
//! The daemon and the CLI commands call these functions, so `kamwatch eval`
//! and the running daemon share one code path. After a small drop the
//! daemon evaluates with [`evaluate_changed`]: the rules run only for the
//! pairs whose inputs changed since the last evaluation of the same day
//! (`rules::changed`), and the alerts are applied from the outcome a full
//! run would give. Owns no table of its own; it opens the one transaction
//! in which alert changes and their mail commit.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use chrono::NaiveDate;
use rusqlite::Connection;

use crate::alerts::history;
use crate::alerts::{self, Policies};
use crate::config::Loaded;
use crate::ingest::{self, FileReport};
use crate::mail::{self, Delivery, Sink};
use crate::metrics;
use crate::rules::changed::{Memo, Pick, Since};
use crate::rules::{Finding, Outcome, RuleSet, RunError};

/// Ingests the given files one by one (each its own transaction).
pub fn ingest_files(
    cfg: &Loaded,
    conn: &mut Connection,
    files: &[&Path],
) -> Result<Vec<FileReport>> {
    files
        .iter()
        .map(|f| ingest::ingest_file(cfg, conn, f))
        .collect()
}

/// What one evaluation found and changed.
#[derive(Debug, Default)]
pub struct EvalReport {
    pub as_of: Option<NaiveDate>,
    pub accounts: usize,
    pub rules: usize,
    pub runs: u64,
    /// How many warnings the rules raised (all of them, also when only
    /// some pairs ran; not the idle ones).
    pub raised: usize,
    /// What the rules found; when only some pairs ran (`partial`), the
    /// findings of the pairs whose alerts were stepped (the others' are
    /// what the last evaluation found, and their alerts did not change).
    pub findings: Vec<Finding>,
    /// The held findings (`starts: false`) that kept no alert open: no
    /// warning, not in `findings`.
    pub idle: Vec<Finding>,
    pub errors: Vec<RunError>,
    /// Indexes into `findings` of the alerts that started now (in a dry
    /// run: that would start).
    pub started: Vec<usize>,
    pub resolved: usize,
    pub queued: usize,
    /// Set when the rules ran only where something changed: the accounts
    /// for which at least one rule ran.
    pub partial: Option<usize>,
}

/// Evaluates every rule for every active account as of `as_of`. Unless
/// `dry_run`, records the alert changes and queues their mail in one
/// transaction; nothing is sent here (see [`deliver`]).
pub fn evaluate(
    cfg: &Loaded,
    conn: &mut Connection,
    rules: &RuleSet,
    as_of: NaiveDate,
    dry_run: bool,
) -> Result<EvalReport> {
    evaluate_until(cfg, conn, rules, as_of, dry_run, &Arc::default())
}

/// [`evaluate`], stopped between accounts (or within a rule run) once
/// `stop` is set: then nothing is recorded and an error says so (the daemon
/// evaluates again at its next start, as after a crash).
pub fn evaluate_until(
    cfg: &Loaded,
    conn: &mut Connection,
    rules: &RuleSet,
    as_of: NaiveDate,
    dry_run: bool,
    stop: &Arc<AtomicBool>,
) -> Result<EvalReport> {
    let snap = metrics::build(conn, as_of, &cfg.cfg.tiers)?;
    evaluate_snapshot(cfg, conn, rules, &snap, dry_run, stop)
}

/// [`evaluate_until`] over a snapshot built by the caller (the daemon's
/// in-memory one), as of its day.
pub fn evaluate_snapshot(
    cfg: &Loaded,
    conn: &mut Connection,
    rules: &RuleSet,
    snap: &metrics::Snapshot,
    dry_run: bool,
    stop: &Arc<AtomicBool>,
) -> Result<EvalReport> {
    let outcome = rules.evaluate_until(snap, stop.clone());
    finished(&outcome, snap.as_of)?;
    record(cfg, conn, rules, snap, Found::all(outcome), dry_run)
}

/// Err when `outcome` was stopped (SIGTERM) before it finished: nothing of
/// it is recorded.
fn finished(outcome: &Outcome, as_of: NaiveDate) -> Result<()> {
    if outcome.interrupted {
        anyhow::bail!(
            "the evaluation as of {as_of} was stopped before it finished; nothing of it was recorded"
        );
    }
    Ok(())
}

/// [`evaluate_snapshot`], running the rules only for the pairs whose inputs
/// changed since the evaluation `memo` remembers, when `since` says what
/// changed (the accounts whose data was written, whether order lines
/// were) and nothing else did (the day, the rules, the config, the
/// silences, the evaluations on record): see `rules::changed`. Otherwise,
/// or when the partial outcome is `unsure`, every rule runs for every
/// account. A partial evaluation brings `memo` up to date in place and
/// steps only the alerts of the pairs it ran (the others' would not
/// change); either way the alerts end as a full run leaves them, and
/// `memo` is left remembering this evaluation (None when it failed or
/// cannot stand for a full run).
pub fn evaluate_changed(
    cfg: &Loaded,
    conn: &mut Connection,
    rules: &RuleSet,
    snap: &metrics::Snapshot,
    memo: &mut Option<Memo>,
    since: Option<Since>,
    stop: &Arc<AtomicBool>,
) -> Result<EvalReport> {
    let picking = std::time::Instant::now();
    let mut last = memo.take();
    let fixed = format!(
        "{}\n{:?}\n",
        crate::rules::changed::fingerprint(rules),
        cfg.cfg
    );
    let basis = |conn: &Connection| -> Result<String> {
        let silences = alerts::silence::active(conn, snap.as_of)?;
        let evaluation = crate::store::newest_evaluation_id(conn)?;
        Ok(format!("{fixed}{silences:?}\nevaluation {evaluation}"))
    };
    let picked = match (&last, since) {
        (Some(m), Some(since)) => m.pick(rules, snap, &basis(conn)?, since),
        (None, Some(_)) => Err("no evaluation of the same day to compare with".to_string()),
        (_, None) => Err(
            "the scheduled evaluation, or the metrics were read again beyond order lines and visits"
                .to_string(),
        ),
    };
    let picked_in = picking.elapsed();
    let (report, next) = match (picked, last.take()) {
        (Ok(pick), Some(m)) => {
            let started = std::time::Instant::now();
            let now = rules.evaluate_picked(snap, &pick, stop.clone());
            if now.interrupted || pick.settled(rules, &now) {
                let times = Times {
                    pick: picked_in,
                    started,
                };
                partly(cfg, conn, rules, snap, m, &pick, now, times, stop)?
            } else {
                tracing::info!(
                    "the rules ran only where something changed, but an alert cap or a sandbox limit was reached by a rule that did not run for every account: running every rule for every account"
                );
                drop((m, now));
                fully(cfg, conn, rules, snap, stop)?
            }
        }
        (why, m) => {
            if let (Err(why), Some(_)) = (&why, &m) {
                tracing::info!("every rule runs for every account: {why}");
            }
            // The last evaluation's results are not needed: freed before
            // the alerts are applied, the evaluation's peak.
            drop(m);
            fully(cfg, conn, rules, snap, stop)?
        }
    };
    *memo = match next {
        Some(m) => Some(m.rebased(basis(conn)?)),
        None => None,
    };
    Ok(report)
}

/// Every rule for every account, recorded; with what it found, to
/// remember.
fn fully(
    cfg: &Loaded,
    conn: &mut Connection,
    rules: &RuleSet,
    snap: &metrics::Snapshot,
    stop: &Arc<AtomicBool>,
) -> Result<(EvalReport, Option<Memo>)> {
    let outcome = rules.evaluate_until(snap, stop.clone());
    finished(&outcome, snap.as_of)?;
    let mut next = Memo::of(rules, snap, String::new(), &outcome);
    let report = record(cfg, conn, rules, snap, Found::all(outcome), false)?;
    if let Some(m) = &mut next {
        m.mark_idle(rules, &report.idle);
    }
    Ok((report, next))
}

/// How long the pick took, and when the pairs it chose started running.
struct Times {
    pick: std::time::Duration,
    started: std::time::Instant,
}

/// The pairs `pick` chose, run (`now`, since `times.started`): `memo`
/// brought up to date with them, and the alerts of the pairs stepped
/// recorded.
#[allow(clippy::too_many_arguments)]
fn partly(
    cfg: &Loaded,
    conn: &mut Connection,
    rules: &RuleSet,
    snap: &metrics::Snapshot,
    mut memo: Memo,
    pick: &Pick,
    now: Outcome,
    times: Times,
    stop: &Arc<AtomicBool>,
) -> Result<(EvalReport, Option<Memo>)> {
    finished(&now, snap.as_of)?;
    let started = times.started;
    let ran = started.elapsed();
    let stepped = memo.update(rules, snap, pick, &now);
    if let Some(why) = &stepped.incomplete {
        tracing::error!(
            "the rules ran only where something changed, but {why}: running every rule for every account"
        );
        drop((memo, now, stepped));
        return fully(cfg, conn, rules, snap, stop);
    }
    let run = pick.accounts_run();
    let enabled = rules.rules.iter().filter(|r| r.enabled()).count();
    tracing::info!(
        accounts_run = run,
        accounts = snap.accounts.len(),
        pairs = now.runs,
        of_pairs = enabled * snap.accounts.len(),
        scripts = now.scripts,
        everywhere = %pick.why.join("; "),
        pick_ms = times.pick.as_millis() as u64,
        scripts_ms = ran.as_millis() as u64,
        script_cpu_ms = %script_times(rules, &now),
        memo_ms = (started.elapsed() - ran).as_millis() as u64,
        stepped = stepped.findings.len(),
        history_overflowed = pick.overflowed.0,
        earlier_days_overflowed = pick.overflowed.1,
        "rules run only where something changed since the last evaluation today"
    );
    let mut only = alerts::Only::default();
    for (rule, account) in stepped.pairs {
        only.pairs.entry(rule).or_default().insert(account);
    }
    let found = Found {
        findings: stepped.findings,
        errors: stepped.errors,
        others: stepped.others,
        runs: now.runs,
        partial: Some((run, only)),
    };
    drop(now);
    let report = record(cfg, conn, rules, snap, found, false)?;
    memo.mark_idle(rules, &report.idle);
    Ok((report, memo.keepable().then_some(memo)))
}

/// The time each rule's scripts took (all threads), dearest first:
/// "thin_margin_a 812, rising_accounts 240".
fn script_times(rules: &RuleSet, now: &Outcome) -> String {
    let mut t: Vec<(u64, &str)> = now
        .script_ns
        .iter()
        .zip(&rules.rules)
        .filter(|(ns, _)| **ns > 0)
        .map(|(ns, r)| (*ns, &*r.name))
        .collect();
    t.sort_by_key(|b| std::cmp::Reverse(b.0));
    let t: Vec<String> = t
        .iter()
        .map(|(ns, name)| format!("{name} {}", ns / 1_000_000))
        .collect();
    t.join(", ")
}

/// What the rules found, to record.
struct Found {
    /// All a full run found; when only some pairs ran, the findings of the
    /// pairs whose alerts are stepped.
    findings: Vec<Finding>,
    errors: Vec<RunError>,
    /// How many findings not in `findings` count as warnings (of the pairs
    /// not stepped, those not idle).
    others: usize,
    runs: u64,
    /// When only some pairs ran: the accounts for which a rule ran, and
    /// the pairs whose alerts are stepped.
    partial: Option<(usize, alerts::Only)>,
}

impl Found {
    fn all(outcome: Outcome) -> Found {
        Found {
            others: 0,
            findings: outcome.findings,
            errors: outcome.errors,
            runs: outcome.runs,
            partial: None,
        }
    }
}

/// Records what the rules found (`found`, for every account of `snap`, or
/// for the pairs stepped when only some ran): the alerts' changes and
/// their mail in one transaction, and the evaluation's record. A dry run
/// goes through the same steps and rolls them back.
fn record(
    cfg: &Loaded,
    conn: &mut Connection,
    rules: &RuleSet,
    snap: &metrics::Snapshot,
    found: Found,
    dry_run: bool,
) -> Result<EvalReport> {
    let as_of = snap.as_of;
    warn_unlisted(snap);
    // Once per rule, with the count and an example: a rule failing for
    // every account cannot flood the log.
    for f in crate::rules::failures_by_rule(&found.errors) {
        tracing::error!(rule = %f.rule, accounts = f.accounts, "{f}");
    }
    let (partial, only) = found
        .partial
        .map_or((None, None), |(n, o)| (Some(n), Some(o)));
    let mut report = EvalReport {
        as_of: Some(as_of),
        accounts: snap.accounts.len(),
        rules: rules.rules.len(),
        runs: found.runs,
        findings: found.findings,
        errors: found.errors,
        partial,
        ..EvalReport::default()
    };
    // A dry run goes through the same steps and rolls them back, so what it
    // reports is exactly what a real run would do.
    let started = std::time::Instant::now();
    // The write lock first (waiting up to the busy timeout for another
    // writer: the delivery marking mail sent, an ingest): a transaction
    // that read the alerts before taking it fails when another connection
    // wrote in between ("database is locked"), and the evaluation with it.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let (started_now, resolved, queued) =
        apply_changes(&tx, cfg, rules, snap, &mut report, only.as_ref(), dry_run)?;
    report.raised = found.others + report.findings.len();
    report.started = started_now;
    report.resolved = resolved;
    if dry_run {
        drop(tx);
        return Ok(report);
    }
    crate::store::record_evaluation(
        &tx,
        &crate::store::EvaluationRecord {
            as_of,
            accounts: report.accounts as u64,
            rules: report.rules as u64,
            raised: report.raised as u64,
            started: report.started.len() as u64,
            resolved: resolved as u64,
            errors: report.errors.len() as u64,
            partial: partial.is_some(),
            accounts_run: partial.unwrap_or(report.accounts) as u64,
        },
    )?;
    tx.commit()?;
    report.queued = queued;
    tracing::info!(
        as_of = %as_of,
        accounts = report.accounts,
        rules = report.rules,
        raised = report.raised,
        started = report.started.len(),
        resolved = report.resolved,
        errors = report.errors.len(),
        accounts_run = partial.unwrap_or(report.accounts),
        partial = partial.is_some(),
        alerts_ms = started.elapsed().as_millis() as u64,
        "evaluated"
    );
    Ok(report)
}

/// Logs the order lines' accounts missing from the master, if any.
fn warn_unlisted(snap: &metrics::Snapshot) {
    if snap.unknown_accounts > 0 {
        tracing::warn!(
            count = snap.unknown_accounts,
            "{}",
            crate::reports::accounts::unlisted_accounts(
                snap.unknown_accounts,
                &snap.unknown_examples,
                snap.unknown_revenue_12m
            )
        );
    }
}

/// Within the evaluation's transaction: the alerts' state changes from
/// what the rules found, their mail recorded and released (quiet windows,
/// digests), the admin told of rules that failed to run, old history
/// pruned. The held findings that kept nothing open leave `report` (see
/// [`without_idle`]). Returns the indexes of the findings that started,
/// how many alerts resolved and how many messages were queued.
fn apply_changes(
    tx: &Connection,
    cfg: &Loaded,
    rules: &RuleSet,
    snap: &metrics::Snapshot,
    report: &mut EvalReport,
    only: Option<&alerts::Only>,
    dry_run: bool,
) -> Result<(Vec<usize>, usize, usize)> {
    let as_of = snap.as_of;
    let policies = Policies::for_rules(&cfg.cfg, rules);
    let ran = rules
        .rules
        .iter()
        .filter(|r| r.enabled())
        .map(|r| &*r.name)
        .collect();
    // Each batch of notices is routed and recorded as the lifecycle gives
    // it, in order.
    let mut recording = mail::Recording::default();
    let changes = alerts::apply(
        tx,
        as_of,
        &report.findings,
        &report.errors,
        only,
        &snap.accounts,
        &policies,
        &ran,
        &mut |batch: &[alerts::Notified]| recording.add(tx, &cfg.cfg, &policies, batch),
    )?;
    recording.finish(tx, &cfg.cfg)?;
    // A dry run renders no charts: nothing will be sent, and drawing
    // them is most of an evaluation's time.
    let values = crate::rules::RuleValues::of(rules);
    let mut queued = mail::release(tx, cfg, as_of, (!dry_run).then_some(snap), &values)?;
    if !report.errors.is_empty() {
        queued += usize::from(admin_notice(tx, cfg, &report.errors)?);
    }
    history::prune(tx, as_of, cfg.cfg.alerts.history_retention_days)?;
    let (started, idle) = without_idle(&mut report.findings, changes.started, &changes.idle);
    report.idle = idle;
    Ok((started, changes.resolved, queued))
}

/// Takes out of `findings` the held ones that kept no alert open (`idle`,
/// indexes; `alert(#{ starts: false })` with none open): they are no
/// warning, and `eval` does not list them. Returns `started`'s indexes
/// into what is left, and the findings taken out (the daemon's memo marks
/// them).
fn without_idle(
    findings: &mut Vec<Finding>,
    started: Vec<usize>,
    idle: &[usize],
) -> (Vec<usize>, Vec<Finding>) {
    if idle.is_empty() {
        return (started, Vec::new());
    }
    let idle: HashSet<usize> = idle.iter().copied().collect();
    let mut new_index = Vec::with_capacity(findings.len());
    let mut kept = 0;
    for i in 0..findings.len() {
        new_index.push(kept);
        kept += usize::from(!idle.contains(&i));
    }
    let (taken, left): (Vec<_>, Vec<_>) = std::mem::take(findings)
        .into_iter()
        .enumerate()
        .partition(|(i, _)| idle.contains(i));
    *findings = left.into_iter().map(|(_, f)| f).collect();
    let started = started.into_iter().map(|i| new_index[i]).collect();
    (started, taken.into_iter().map(|(_, f)| f).collect())
}

/// Tells the admin which rules failed to run, once per distinct set of
/// failures (the same failures every day are not news).
fn admin_notice(conn: &rusqlite::Connection, cfg: &Loaded, errors: &[RunError]) -> Result<bool> {
    use std::fmt::Write as _;
    let failures = crate::rules::failures_by_rule(errors);
    let mut text = format!(
        "{} rule(s) failed to run, for {} account run(s) in all; the alerts of those rules and accounts are left as they were until the rule is fixed.\n\n",
        failures.len(),
        errors.len()
    );
    for f in &failures {
        let _ = writeln!(text, "{f}");
    }
    // Once per set of failing rules and examples: tomorrow's count of the
    // same failure is not news.
    let mut key: Vec<String> = failures
        .iter()
        .map(|f| format!("{}\u{0}{}", f.rule, f.example.message))
        .collect();
    key.sort();
    mail::notify_admin_once(
        conn,
        &cfg.cfg.mail,
        "规则运行失败 / rules failed to run",
        &text,
        &key.join("\u{1}"),
    )
}

/// Queues this month's key-account review to every manager (once per
/// manager and as-of date: queuing again is a no-op). Returns how many
/// were queued.
pub fn queue_reviews(cfg: &Loaded, conn: &Connection, as_of: NaiveDate) -> Result<usize> {
    let mut queued = 0;
    let values = crate::rules::RuleValues::load(cfg);
    for r in crate::reports::review::build(conn, as_of, &cfg.cfg.tiers, &cfg.style(), &values)? {
        let message_id = mail::message_id(
            conn,
            &cfg.cfg.mail,
            "review.",
            &format!("review\u{0}{}\u{0}{as_of}", r.manager),
        )?;
        let rendered = mail::Rendered {
            subject: r.subject,
            text: r.text,
            html: r.html,
            images: vec![mail::Image {
                cid: "pareto".into(),
                png: r.chart,
            }],
        };
        let to = [mail::Recipient::new(&r.manager_name, &r.manager)];
        if mail::queue(conn, &cfg.cfg.mail, &to, &message_id, &rendered)? {
            queued += 1;
        }
    }
    if queued > 0 {
        tracing::info!(as_of = %as_of, queued, "key-account reviews queued");
    }
    Ok(queued)
}

/// Delivers the due outbox messages; `stop` makes it give up at once,
/// leaving the rest pending.
pub fn deliver(cfg: &Loaded, conn: &Connection, stop: Arc<AtomicBool>) -> Result<Delivery> {
    let mut sink = Sink::from_config(cfg, stop)?;
    let d = mail::deliver(conn, cfg, &mut sink)?;
    if d.sent + d.retrying + d.dead + d.split > 0 {
        tracing::info!(
            sent = d.sent,
            retrying = d.retrying,
            dead = d.dead,
            refused_recipients = d.refused,
            split = d.split,
            "delivered"
        );
    }
    if let Some(e) = &d.gave_up {
        tracing::warn!("delivery paused: {e}; the rest stays pending");
    }
    Ok(d)
}

#[cfg(test)]
mod tests;
