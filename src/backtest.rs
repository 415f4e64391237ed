//! Backtest: replays evaluation over the stored history, day by day or week
//! by week, through the full alert lifecycle (pending, for N evaluations,
//! hysteresis, repeats, resolve), and reports what the rules would have
//! mailed — per rule, per week, per owner, the accounts flagged most — and
//! which owners a rule would flood. The lifecycle runs in memory from an
//! empty state with `alerts::step`, the same function the daemon uses;
//! nothing is recorded or sent. Reads the store through `metrics`.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

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

/// Replays the evaluations and reports per rule.
pub fn run(conn: &Connection, cfg: &Loaded, rules: &RuleSet, opts: &Options) -> Result<Report> {
    let started_at = Instant::now();
    let policies = Policies::for_rules(&cfg.cfg.alerts, rules);
    let mut life: HashMap<(String, String, String), Lifecycle> = HashMap::new();
    let mut per_rule: BTreeMap<String, RuleReport> = BTreeMap::new();
    let mut starts_by_account: HashMap<(String, String), (String, u64)> = HashMap::new();
    let mut owner_week: HashMap<(String, String, String), u64> = HashMap::new();
    for r in &rules.rules {
        if opts.rule.as_deref().is_none_or(|want| want == &*r.name) {
            per_rule.insert(
                r.name.to_string(),
                RuleReport {
                    rule: r.name.to_string(),
                    ..RuleReport::default()
                },
            );
        }
    }
    let mut evaluations = 0;
    let mut accounts = 0;
    let mut day = opts.from;
    while day <= opts.to {
        let snap = metrics::build(conn, day, &cfg.cfg.tiers)?;
        accounts = snap.accounts.len();
        let outcome = rules.evaluate(&snap);
        evaluations += 1;
        let week = monday(day).to_string();
        // What each (rule, account, key) observed today.
        let mut seen: HashMap<(String, String, String), Observation> = HashMap::new();
        for f in &outcome.findings {
            if !per_rule.contains_key(&*f.rule) {
                continue;
            }
            let key = (f.rule.to_string(), f.account.id.clone(), f.key.clone());
            let obs = Observation::Raised(f.severity);
            // Several findings for one key: the most severe counts.
            match seen.get(&key) {
                Some(Observation::Raised(s)) if *s >= f.severity => {}
                _ => {
                    seen.insert(key, obs);
                }
            }
        }
        let mut failed: HashMap<(String, String), ()> = HashMap::new();
        for e in &outcome.errors {
            if let Some(r) = per_rule.get_mut(&*e.rule) {
                r.errors += 1;
                failed.insert((e.rule.to_string(), e.account_id.clone()), ());
            }
        }
        // Alerts known before but not raised today are cleared (or unknown
        // when the rule failed for the account).
        for key in life.keys() {
            if !seen.contains_key(key) {
                let obs = if failed.contains_key(&(key.0.clone(), key.1.clone())) {
                    Observation::Unknown
                } else {
                    Observation::Clear
                };
                seen.insert(key.clone(), obs);
            }
        }
        let owners: HashMap<&str, (&str, &str)> = snap
            .accounts
            .iter()
            .map(|a| (a.id.as_str(), (a.owner.as_str(), a.name.as_str())))
            .collect();
        for (key, obs) in seen {
            let prev = life.get(&key).cloned().unwrap_or_default();
            let step = alerts::step(&prev, obs, policies.get(&key.0), day, false);
            if step.next.state == alerts::State::Inactive {
                life.remove(&key);
            } else {
                life.insert(key.clone(), step.next);
            }
            if step.notices.is_empty() {
                continue;
            }
            let Some(r) = per_rule.get_mut(&key.0) else {
                continue;
            };
            let (owner, name) = owners.get(key.1.as_str()).copied().unwrap_or(("", ""));
            let owner = if owner.is_empty() {
                "(no owner)"
            } else {
                owner
            };
            for n in &step.notices {
                r.notices += 1;
                *r.per_week.entry(week.clone()).or_default() += 1;
                *r.per_owner.entry(owner.to_string()).or_default() += 1;
                *owner_week
                    .entry((key.0.clone(), owner.to_string(), week.clone()))
                    .or_default() += 1;
                match n {
                    Notice::Started => {
                        r.started += 1;
                        let e = starts_by_account
                            .entry((key.0.clone(), key.1.clone()))
                            .or_insert_with(|| (name.to_string(), 0));
                        e.1 += 1;
                    }
                    Notice::Resolved { .. } => r.resolved += 1,
                    _ => {}
                }
            }
        }
        day += chrono::Duration::days(opts.every_days.max(1));
    }
    for ((rule, account), (name, n)) in starts_by_account {
        if let Some(r) = per_rule.get_mut(&rule) {
            r.top_accounts.push((account, name, n));
        }
    }
    for r in per_rule.values_mut() {
        r.top_accounts
            .sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        r.top_accounts.truncate(10);
    }
    let mut floods: Vec<_> = owner_week
        .into_iter()
        .filter(|(_, n)| *n > opts.max_per_owner_week)
        .collect();
    floods.sort();
    for ((rule, owner, week), n) in floods {
        if let Some(r) = per_rule.get_mut(&rule) {
            r.floods.push((owner, week, n));
        }
    }
    Ok(Report {
        from: opts.from,
        to: opts.to,
        evaluations,
        accounts,
        seconds: started_at.elapsed().as_secs_f64(),
        rules: per_rule.into_values().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(); // a Saturday
        assert_eq!(monday(d), NaiveDate::from_ymd_opt(2026, 11, 23).unwrap());
        assert_eq!(monday(monday(d)), monday(d));
    }
}
