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
use crate::rules::changed::{Memo, Since};
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
    pub findings: Vec<Finding>,
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
    record(cfg, conn, rules, snap, outcome, None, dry_run)
}

/// [`evaluate_snapshot`], running the rules only for the pairs whose inputs
/// changed since the evaluation `memo` remembers, when `since` says what
/// changed (the accounts whose data was written, whether order lines
/// were) and nothing else did (the day, the rules, the config, the
/// silences, the evaluations on record): see `rules::changed`. Otherwise,
/// or when the partial outcome is `unsure`, every rule runs for every
/// account. Either way the alerts are applied from what a full run would
/// find, and `memo` is left remembering this evaluation (None when it
/// failed or cannot stand for a full run).
pub fn evaluate_changed(
    cfg: &Loaded,
    conn: &mut Connection,
    rules: &RuleSet,
    snap: &metrics::Snapshot,
    memo: &mut Option<Memo>,
    since: Option<Since>,
    stop: &Arc<AtomicBool>,
) -> Result<EvalReport> {
    let last = memo.take();
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
        (Some(m), Some(since)) => m
            .pick(rules, snap, &basis(conn)?, since)
            .map(|pick| (m, pick)),
        (None, Some(_)) => Err("no evaluation of the same day to compare with".to_string()),
        (_, None) => Err(
            "the scheduled evaluation, or the metrics were read again beyond order lines and visits"
                .to_string(),
        ),
    };
    let (outcome, partial) = match picked {
        Ok((m, pick)) => {
            let started = std::time::Instant::now();
            let now = rules.evaluate_picked(snap, &pick, stop.clone());
            if !pick.settled(rules, &now) && !now.interrupted {
                tracing::info!(
                    "the rules ran only where something changed, but an alert cap or a sandbox limit was reached by a rule that did not run for every account: running every rule for every account"
                );
                (rules.evaluate_until(snap, stop.clone()), None)
            } else {
                let run = pick.accounts_run();
                let enabled = rules.rules.iter().filter(|r| r.enabled()).count();
                tracing::info!(
                    accounts_run = run,
                    accounts = snap.accounts.len(),
                    pairs = now.runs,
                    of_pairs = enabled * snap.accounts.len(),
                    scripts = now.scripts,
                    everywhere = %pick.why.join("; "),
                    ms = started.elapsed().as_millis() as u64,
                    "rules run only where something changed since the last evaluation today"
                );
                (m.merge(rules, snap, &pick, now), Some(run))
            }
        }
        Err(why) => {
            if last.is_some() {
                tracing::info!("every rule runs for every account: {why}");
            }
            (rules.evaluate_until(snap, stop.clone()), None)
        }
    };
    // The last evaluation's results are merged in or not needed: freed
    // before the alerts are applied, the evaluation's peak.
    drop(last);
    let next = Memo::of(rules, snap, String::new(), &outcome);
    let report = record(cfg, conn, rules, snap, outcome, partial, false)?;
    *memo = match next {
        Some(m) => Some(m.rebased(basis(conn)?)),
        None => None,
    };
    Ok(report)
}

/// Records what the rules found (`outcome`, for every account of `snap`;
/// `partial`: the accounts run when only some ran): the alerts' changes
/// and their mail in one transaction, and the evaluation's record. A dry
/// run goes through the same steps and rolls them back.
fn record(
    cfg: &Loaded,
    conn: &mut Connection,
    rules: &RuleSet,
    snap: &metrics::Snapshot,
    outcome: Outcome,
    partial: Option<usize>,
    dry_run: bool,
) -> Result<EvalReport> {
    let as_of = snap.as_of;
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
    if outcome.interrupted {
        anyhow::bail!(
            "the evaluation as of {as_of} was stopped before it finished; nothing of it was recorded"
        );
    }
    // Once per rule, with the count and an example: a rule failing for
    // every account cannot flood the log.
    for f in crate::rules::failures_by_rule(&outcome.errors) {
        tracing::error!(rule = %f.rule, accounts = f.accounts, "{f}");
    }
    let mut report = EvalReport {
        as_of: Some(as_of),
        accounts: snap.accounts.len(),
        rules: rules.rules.len(),
        runs: outcome.runs,
        findings: outcome.findings,
        errors: outcome.errors,
        partial,
        ..EvalReport::default()
    };
    // A dry run goes through the same steps and rolls them back, so what it
    // reports is exactly what a real run would do.
    let tx = conn.transaction()?;
    let (started, resolved, queued) = apply_changes(&tx, cfg, rules, snap, &mut report, dry_run)?;
    if dry_run {
        drop(tx);
        report.started = started;
        report.resolved = resolved;
        return Ok(report);
    }
    crate::store::record_evaluation(
        &tx,
        &crate::store::EvaluationRecord {
            as_of,
            accounts: report.accounts as u64,
            rules: report.rules as u64,
            raised: report.findings.len() as u64,
            started: started.len() as u64,
            resolved: resolved as u64,
            errors: report.errors.len() as u64,
            partial: partial.is_some(),
            accounts_run: partial.unwrap_or(report.accounts) as u64,
        },
    )?;
    tx.commit()?;
    report.started = started;
    report.resolved = resolved;
    report.queued = queued;
    tracing::info!(
        as_of = %as_of,
        accounts = report.accounts,
        rules = report.rules,
        raised = report.findings.len(),
        started = report.started.len(),
        resolved = report.resolved,
        errors = report.errors.len(),
        accounts_run = partial.unwrap_or(report.accounts),
        partial = partial.is_some(),
        "evaluated"
    );
    Ok(report)
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
    let started = without_idle(&mut report.findings, changes.started, &changes.idle);
    Ok((started, changes.resolved, queued))
}

/// Leaves out of `findings` the held ones that kept no alert open
/// (`idle`, indexes; `alert(#{ starts: false })` with none open): they are
/// no warning, and `eval` does not list them. Returns `started`'s indexes
/// into what is left.
fn without_idle(findings: &mut Vec<Finding>, started: Vec<usize>, idle: &[usize]) -> Vec<usize> {
    if idle.is_empty() {
        return started;
    }
    let idle: HashSet<usize> = idle.iter().copied().collect();
    let mut new_index = Vec::with_capacity(findings.len());
    let mut kept = 0;
    for i in 0..findings.len() {
        new_index.push(kept);
        kept += usize::from(!idle.contains(&i));
    }
    let mut i = 0;
    findings.retain(|_| {
        i += 1;
        !idle.contains(&(i - 1))
    });
    started.into_iter().map(|i| new_index[i]).collect()
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
