//! Backtest: replays evaluation over the stored history, day by day or week
//! by week, through the full alert lifecycle (pending, for N evaluations,
//! hysteresis, repeats, resolve), and reports what the rules would have
//! mailed — per rule, per week, per owner, the accounts flagged most — and
//! which owners a rule would flood. The lifecycle runs in memory from an
//! empty state with `alerts::step`, the same function the daemon uses;
//! nothing is recorded or sent. Reads the store once, through
//! `metrics::Timeline`, and derives each replayed day's snapshot from it;
//! days are evaluated in parallel, one per core, and stepped through the
//! lifecycle in day order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{Datelike, NaiveDate};
use rusqlite::Connection;
use serde::Serialize;

use crate::alerts::{self, Lifecycle, Notice, Observation, Policies};
use crate::config::Loaded;
use crate::metrics;
use crate::rules::RuleSet;

/// What to replay.
#[derive(Debug, Clone)]
pub struct Options {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Days between evaluations: 1 (daily) or 7 (weekly).
    pub every_days: i64,
    /// Only this rule.
    pub rule: Option<String>,
    /// Warn when a rule would send one owner more than this in a week.
    pub max_per_owner_week: u64,
}

/// What one rule would have done.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleReport {
    pub rule: String,
    /// Alerts that would have started firing.
    pub started: u64,
    /// Every notice (start, severity rise, repeat, escalation, resolve).
    pub notices: u64,
    pub resolved: u64,
    /// Notices per week, by the Monday that starts it.
    pub per_week: BTreeMap<String, u64>,
    /// Notices per account owner.
    pub per_owner: BTreeMap<String, u64>,
    /// The accounts flagged (started) most often: (id, name, starts).
    pub top_accounts: Vec<(String, String, u64)>,
    /// Weeks in which one owner would get more than the limit:
    /// (owner, week, notices).
    pub floods: Vec<(String, String, u64)>,
    /// Rule runs that failed.
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub evaluations: u64,
    pub accounts: usize,
    pub seconds: f64,
    pub rules: Vec<RuleReport>,
}

fn monday(d: NaiveDate) -> NaiveDate {
    d - chrono::Duration::days(i64::from(d.weekday().num_days_from_monday()))
}

/// What one replayed day raised, by index: (rule, account, key, what was
/// observed: raised or held) for each finding of a reported rule, and the
/// (rule, account) runs that failed.
#[derive(Default)]
struct DayResult {
    raised: Vec<(u16, u32, String, Observation)>,
    failed: Vec<(u16, u32)>,
}

/// Per-rule tallies while replaying, by index.
#[derive(Default)]
struct Tally {
    started: u64,
    notices: u64,
    resolved: u64,
    errors: u64,
    per_week: BTreeMap<NaiveDate, u64>,
    /// Notices per owner index.
    per_owner: HashMap<u32, u64>,
    /// Starts per account index.
    starts: HashMap<u32, u64>,
    /// Notices per (owner index, week).
    owner_week: HashMap<(u32, NaiveDate), u64>,
}

/// Replays the evaluations and reports per rule. The history is read once,
/// up to `opts.to`; each replayed day's snapshot is derived from it
/// (`metrics::Timeline`), the same snapshot `metrics::build` gives for that
/// day. Days are evaluated on every core, one day per core at a time, and
/// stepped through the lifecycle in day order.
pub fn run(conn: &Connection, cfg: &Loaded, rules: &RuleSet, opts: &Options) -> Result<Report> {
    let started_at = Instant::now();
    let timeline = metrics::Timeline::load(conn, opts.to)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut report = replay(&timeline, cfg, rules, opts, threads);
    report.seconds = started_at.elapsed().as_secs_f64();
    Ok(report)
}

/// `run` over a loaded timeline, on `threads` threads (at least one); the
/// report does not depend on the number of threads.
pub fn replay(
    timeline: &metrics::Timeline,
    cfg: &Loaded,
    rules: &RuleSet,
    opts: &Options,
    threads: usize,
) -> Report {
    let started_at = Instant::now();
    let policies = Policies::for_rules(&cfg.cfg, rules);
    let wanted: Vec<bool> = rules
        .rules
        .iter()
        .map(|r| opts.rule.as_deref().is_none_or(|want| want == &*r.name))
        .collect();
    // Accounts and owners by index; the accounts are the same every day.
    let accounts: Vec<(&str, &str, &str)> = timeline.accounts().collect();
    let index: HashMap<&str, u32> = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| (a.0, i as u32))
        .collect();
    let owners = Owners::of(&accounts);
    let days = replayed_days(opts);
    let sku_tiers = rules.tiers_reading_skus();
    let work = Work {
        timeline,
        tiers: &cfg.cfg.tiers,
        rules,
        sku_tiers: &sku_tiers,
        wanted: &wanted,
        index: &index,
        days: &days,
        next: AtomicUsize::new(0),
        spent: std::sync::Mutex::new((Duration::ZERO, Duration::ZERO)),
    };
    let mut life = Lifecycles {
        rules,
        policies: &policies,
        owner_of: &owners.of,
        tally: rules.rules.iter().map(|_| Tally::default()).collect(),
        alerts: HashMap::new(),
        keys: HashMap::new(),
    };
    let (tx, rx) = mpsc::channel::<(usize, DayResult)>();
    let stepping = std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, days.len().max(1)) {
            let tx = tx.clone();
            let work = &work;
            s.spawn(move || work.evaluate_days(&tx));
        }
        drop(tx);
        life.step_in_order(rx, &days)
    });

    let (derive, evaluate) = work.spent.into_inner().unwrap_or_default();
    tracing::debug!(
        days = days.len(),
        threads,
        derive_ms = derive.as_millis() as u64,
        evaluate_ms = evaluate.as_millis() as u64,
        lifecycle_ms = stepping.as_millis() as u64,
        replay_ms = started_at.elapsed().as_millis() as u64,
        "backtest phases (derive and evaluate: thread time summed over threads; lifecycle: the \
         main thread stepping alerts; replay: wall)"
    );
    let reports = rule_reports(rules, life.tally, &wanted, &accounts, &owners.names, opts);
    Report {
        from: opts.from,
        to: opts.to,
        evaluations: days.len() as u64,
        accounts: accounts.len(),
        seconds: started_at.elapsed().as_secs_f64(),
        rules: reports,
    }
}

/// The days replayed: from `opts.from` to `opts.to`, every `every_days`.
fn replayed_days(opts: &Options) -> Vec<NaiveDate> {
    let step = opts.every_days.max(1);
    let mut days = Vec::new();
    let mut day = opts.from;
    while day <= opts.to {
        days.push(day);
        day += chrono::Duration::days(step);
    }
    days
}

/// Account owners by index, "(no owner)" for an account without one.
struct Owners<'a> {
    names: Vec<&'a str>,
    /// Each account's owner index.
    of: Vec<u32>,
}

impl<'a> Owners<'a> {
    fn of(accounts: &[(&'a str, &'a str, &'a str)]) -> Owners<'a> {
        let mut names: Vec<&str> = Vec::new();
        let mut ids: HashMap<&str, u32> = HashMap::new();
        let of = accounts
            .iter()
            .map(|a| {
                let owner = if a.2.is_empty() { "(no owner)" } else { a.2 };
                *ids.entry(owner).or_insert_with(|| {
                    names.push(owner);
                    names.len() as u32 - 1
                })
            })
            .collect();
        Owners { names, of }
    }
}

/// What the evaluating threads share: the history, the rules, the days to
/// evaluate (each taken once, by `next`), and the thread time spent
/// deriving snapshots and running rules, for the debug log.
struct Work<'a> {
    timeline: &'a metrics::Timeline,
    tiers: &'a crate::config::TierConfig,
    rules: &'a RuleSet,
    sku_tiers: &'a [&'static str],
    wanted: &'a [bool],
    index: &'a HashMap<&'a str, u32>,
    days: &'a [NaiveDate],
    next: AtomicUsize,
    spent: std::sync::Mutex<(Duration, Duration)>,
}

impl Work<'_> {
    /// One thread's share: takes the next day until none is left,
    /// evaluates it and sends what it raised, by the day's index.
    fn evaluate_days(&self, tx: &mpsc::Sender<(usize, DayResult)>) {
        // One runner per thread for all its days: the scripts'
        // function-resolution caches stay warm.
        // The thread's days come in order, and each day's accounts
        // are rebuilt in place from the thread's previous day.
        let mut runner = self.rules.runner();
        let mut reuse = metrics::Reuse::default();
        reuse.main_skus_for_tiers(self.sku_tiers);
        let (mut derive, mut evaluate) = (Duration::ZERO, Duration::ZERO);
        loop {
            let k = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(day) = self.days.get(k) else { break };
            let t = Instant::now();
            let snap = self.timeline.snapshot_reusing(*day, self.tiers, &mut reuse);
            derive += t.elapsed();
            let t = Instant::now();
            let outcome = runner.evaluate(&snap);
            evaluate += t.elapsed();
            reuse.recycle(snap.accounts);
            let result = reduce(self.rules, self.wanted, self.index, outcome);
            if tx.send((k, result)).is_err() {
                break;
            }
        }
        if let Ok(mut spent) = self.spent.lock() {
            spent.0 += derive;
            spent.1 += evaluate;
        }
    }
}

/// The alert lifecycles of the replay, stepped day by day in order, and
/// what they notified per rule.
struct Lifecycles<'a> {
    rules: &'a RuleSet,
    policies: &'a Policies,
    owner_of: &'a [u32],
    tally: Vec<Tally>,
    /// Pending and firing alerts by (rule, account, key index).
    alerts: HashMap<(u16, u32, u32), Lifecycle>,
    /// Alert keys by index.
    keys: HashMap<String, u32>,
}

impl Lifecycles<'_> {
    /// Steps each day's result as it arrives, in day order (results arrive
    /// in any order). Returns the time spent stepping.
    fn step_in_order(
        &mut self,
        rx: mpsc::Receiver<(usize, DayResult)>,
        days: &[NaiveDate],
    ) -> Duration {
        let mut stepping = Duration::ZERO;
        let mut pending: BTreeMap<usize, DayResult> = BTreeMap::new();
        let mut k = 0;
        for (i, result) in rx {
            pending.insert(i, result);
            while let Some(result) = pending.remove(&k) {
                let t = Instant::now();
                self.step(days[k], result);
                k += 1;
                stepping += t.elapsed();
            }
        }
        stepping
    }

    /// Steps every alert through `day`: today's raises, and the known
    /// alerts not raised today (cleared, or unknown where the rule failed
    /// for the account).
    fn step(&mut self, day: NaiveDate, result: DayResult) {
        let mut seen: HashMap<(u16, u32, u32), Observation> = HashMap::new();
        for (rule, account, key, obs) in result.raised {
            let n = self.keys.len() as u32;
            let key = *self.keys.entry(key).or_insert(n);
            // `reduce` kept one finding per key (`alerts::per_key`).
            seen.insert((rule, account, key), obs);
        }
        let mut failed: HashSet<(u16, u32)> = HashSet::new();
        for (rule, account) in result.failed {
            self.tally[usize::from(rule)].errors += 1;
            failed.insert((rule, account));
        }
        // Alerts known before but not raised today are cleared (or
        // unknown when the rule failed for the account).
        for key in self.alerts.keys() {
            if !seen.contains_key(key) {
                let obs = if failed.contains(&(key.0, key.1)) {
                    Observation::Unknown
                } else {
                    Observation::Clear
                };
                seen.insert(*key, obs);
            }
        }
        // One open alert per account where the rule says so
        // (`one_open_per_account`): an alert the rule raised or held ends
        // its others for the account, as in the daemon.
        let none = Lifecycle::default();
        let kept = alerts::kept_open(
            seen.iter().map(|(k, obs)| {
                let policy = self.policies.get(&self.rules.rules[usize::from(k.0)].name);
                (
                    (k.0, k.1),
                    self.alerts.get(k).unwrap_or(&none),
                    *obs,
                    policy,
                )
            }),
            day,
        );
        for (k, obs) in &mut seen {
            if *obs == Observation::Clear && kept.contains(&(k.0, k.1)) {
                *obs = Observation::Ended;
            }
        }
        for (key, obs) in seen {
            self.observe(day, key, obs);
        }
    }

    /// One alert's observation of `day`, and the notices it gives.
    fn observe(&mut self, day: NaiveDate, key: (u16, u32, u32), obs: Observation) {
        let rule = &self.rules.rules[usize::from(key.0)];
        let prev = self.alerts.get(&key).cloned().unwrap_or_default();
        let step = alerts::step(&prev, obs, self.policies.get(&rule.name), day, false);
        // A resolved alert behaves as one never raised: the next
        // raise starts a new episode, a clear does nothing. Only
        // pending and firing alerts are kept, so each day steps
        // those and today's raises, not every alert of the year.
        if matches!(
            step.next.state,
            alerts::State::Inactive | alerts::State::Resolved
        ) {
            self.alerts.remove(&key);
        } else {
            self.alerts.insert(key, step.next);
        }
        let week = monday(day);
        let t = &mut self.tally[usize::from(key.0)];
        let owner = self.owner_of[key.1 as usize];
        for n in &step.notices {
            t.notices += 1;
            *t.per_week.entry(week).or_default() += 1;
            *t.per_owner.entry(owner).or_default() += 1;
            *t.owner_week.entry((owner, week)).or_default() += 1;
            match n {
                Notice::Started => {
                    t.started += 1;
                    *t.starts.entry(key.1).or_default() += 1;
                }
                Notice::Resolved { .. } => t.resolved += 1,
                _ => {}
            }
        }
    }
}

/// Each reported rule's tallies as its report, rules by name.
fn rule_reports(
    rules: &RuleSet,
    tally: Vec<Tally>,
    wanted: &[bool],
    accounts: &[(&str, &str, &str)],
    owner_names: &[&str],
    opts: &Options,
) -> Vec<RuleReport> {
    let mut reports: Vec<RuleReport> = Vec::new();
    for ((r, t), wanted) in rules.rules.iter().zip(tally).zip(wanted) {
        if !wanted {
            continue;
        }
        let mut top: Vec<(String, String, u64)> = t
            .starts
            .iter()
            .map(|(a, n)| {
                let (id, name, _) = accounts[*a as usize];
                (id.to_string(), name.to_string(), *n)
            })
            .collect();
        top.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        top.truncate(10);
        let mut floods: Vec<(String, String, u64)> = t
            .owner_week
            .iter()
            .filter(|(_, n)| **n > opts.max_per_owner_week)
            .map(|((o, w), n)| (owner_names[*o as usize].to_string(), w.to_string(), *n))
            .collect();
        floods.sort();
        reports.push(RuleReport {
            rule: r.name.to_string(),
            started: t.started,
            notices: t.notices,
            resolved: t.resolved,
            per_week: t
                .per_week
                .into_iter()
                .map(|(w, n)| (w.to_string(), n))
                .collect(),
            per_owner: t
                .per_owner
                .into_iter()
                .map(|(o, n)| (owner_names[o as usize].to_string(), n))
                .collect(),
            top_accounts: top,
            floods,
            errors: t.errors,
        });
    }
    reports.sort_by(|a, b| a.rule.cmp(&b.rule));
    reports
}

/// One day's outcome as indices, for the rules reported.
fn reduce(
    rules: &RuleSet,
    wanted: &[bool],
    index: &HashMap<&str, u32>,
    outcome: crate::rules::Outcome,
) -> DayResult {
    let rule_index = |name: &Arc<str>| {
        rules
            .rules
            .iter()
            .position(|r| Arc::ptr_eq(&r.name, name) || r.name == *name)
            .filter(|i| wanted[*i])
            .map(|i| i as u16)
    };
    let mut out = DayResult::default();
    // One finding per key, the first, as the daemon reads them
    // (`alerts::per_key`, which `alerts::lifecycle` uses too). Held
    // (`starts: false`): keeps an open alert, starts none.
    for (i, obs) in alerts::per_key(&outcome.findings) {
        let f = &outcome.findings[i];
        if let (Some(rule), Some(account)) = (rule_index(&f.rule), index.get(&*f.account.id)) {
            out.raised.push((rule, *account, f.key.clone(), obs));
        }
    }
    for e in outcome.errors {
        if let (Some(rule), Some(account)) = (rule_index(&e.rule), index.get(e.account_id.as_str()))
        {
            out.failed.push((rule, *account));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A finding like a rule's run gives it, of rule "r" for `account`.
    fn finding(
        account: &Arc<metrics::AccountMetrics>,
        key: &str,
        severity: crate::model::Severity,
        starts: bool,
    ) -> crate::rules::Finding {
        crate::rules::Finding {
            rule: Arc::from("r"),
            account: account.clone(),
            said: Arc::new(crate::rules::Said {
                key: key.into(),
                severity,
                title: format!("{key} {severity:?}"),
                figures: vec![],
                units: Default::default(),
                action: "".into(),
                starts,
            }),
        }
    }

    /// Were a rule's evaluation to give a key twice for one account, the
    /// backtest keeps the finding the daemon stores: the first
    /// (`alerts::per_key`, read by both). "k" comes raised as a warning,
    /// then as critical: the warning is stored and replayed. "h" comes
    /// held, then raised: held in both, so neither starts it.
    #[test]
    fn a_key_found_twice_is_the_first_finding_here_as_in_the_daemon() {
        use crate::model::Severity::{Critical, Warning};
        let account = Arc::new(metrics::AccountMetrics::empty("K1", "客户"));
        let findings = vec![
            finding(&account, "k", Warning, true),
            finding(&account, "h", Warning, false),
            finding(&account, "k", Critical, true),
            finding(&account, "h", Critical, true),
        ];
        let day = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
        let policies = Policies::default();

        // The daemon: what `alerts::apply` stores.
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("k.db")).unwrap();
        let ran: HashSet<&str> = ["r"].into_iter().collect();
        let mut told = Vec::new();
        alerts::apply(
            &conn,
            day,
            &findings,
            &[],
            None,
            std::slice::from_ref(&account),
            &policies,
            &ran,
            &mut |b: &[alerts::Notified]| -> Result<(), alerts::Error> {
                told.extend(b.iter().map(|n| n.item.key.clone()));
                Ok(())
            },
        )
        .unwrap();
        let stored: Vec<(String, String, String)> = conn
            .prepare("SELECT key, state, severity FROM alerts ORDER BY key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let firing: Vec<_> = stored.iter().filter(|s| s.1 != "inactive").collect();
        assert_eq!(
            firing,
            [&("k".to_string(), "firing".to_string(), "warning".to_string())],
            "{stored:?}"
        );
        assert_eq!(told, ["k"]);

        // The backtest: what `reduce` keeps of the same evaluation, and
        // what stepping it leaves open.
        let rules = RuleSet::from_sources(&[("r", "")]).unwrap();
        let index: HashMap<&str, u32> = [("K1", 0)].into_iter().collect();
        let outcome = crate::rules::Outcome {
            findings,
            ..Default::default()
        };
        let result = reduce(&rules, &[true], &index, outcome);
        assert_eq!(
            result.raised,
            [
                (0, 0, "k".to_string(), Observation::Raised(Warning)),
                (0, 0, "h".to_string(), Observation::Held(Warning)),
            ]
        );
    }

    #[test]
    fn weeks_start_on_monday() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(); // a Saturday
        assert_eq!(monday(d), NaiveDate::from_ymd_opt(2026, 11, 23).unwrap());
        assert_eq!(monday(monday(d)), monday(d));
    }
}
