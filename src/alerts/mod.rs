//! Alerts: the lifecycle of each (rule, account, key) and its history.
//!
//! A small explicit state machine ([`step`]): inactive -> pending (raised,
//! but not yet for `for_evaluations` days) -> firing -> resolved (cleared
//! for `keep_firing_for_days`). It decides which notices an evaluation
//! causes: started, severity raised, repeat (every `repeat_interval_days`
//! while firing), aged (firing for `escalate_after_days`) and resolved.
//! Time is the evaluation's as-of date, never the wall clock.
//!
//! [`apply`] runs the machine for one evaluation against the `alerts`
//! table, appends every state change to `alert_history`, and returns the
//! notices; silenced ones are recorded as such and not returned for mail.
//! It writes only inside the caller's transaction, so the state change and
//! the mail it causes commit together. Owns `alerts` and `alert_history`.

pub mod history;
pub mod silence;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Result;
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::config::{AlertsConfig, Config, RuleSettings};
use crate::metrics::AccountMetrics;
use crate::rules::{Finding, RunError, Severity};
use crate::store::{date_text, now_text};

/// How one rule's alerts behave. Defaults come from the config's `alerts:`
/// section; `alerts.rules.<name>` and the rules stage may override them per
/// rule (see [`Policies::set`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RulePolicy {
    /// Distinct evaluation days an alert must be raised before it fires (>= 1).
    pub for_evaluations: u32,
    /// Days between reminders while firing; 0 = no reminders.
    pub repeat_interval_days: u32,
    /// Whether a resolved notice is sent.
    pub notify_resolved: bool,
    /// Days an alert stays firing after its condition clears.
    pub keep_firing_for_days: u32,
    /// Days of firing after which the manager is told; 0 = never.
    pub escalate_after_days: u32,
    /// Addresses that get this rule's notices besides the owner.
    pub extra_recipients: Vec<String>,
}

impl RulePolicy {
    pub fn from_config(a: &AlertsConfig) -> RulePolicy {
        RulePolicy {
            for_evaluations: a.for_evaluations,
            repeat_interval_days: a.repeat_interval_days,
            notify_resolved: a.notify_resolved,
            keep_firing_for_days: a.keep_firing_for_days,
            escalate_after_days: a.escalate_after_days,
            extra_recipients: Vec::new(),
        }
    }

    /// This policy with a rule's settings over it, key by key: a key the
    /// settings give wins, even when it equals a default (`for: 1` over a
    /// global 3).
    pub fn with(mut self, s: &RuleSettings) -> RulePolicy {
        if let Some(n) = s.for_evaluations {
            self.for_evaluations = n.max(1);
        }
        if let Some(n) = s.repeat_interval_days {
            self.repeat_interval_days = n;
        }
        if let Some(b) = s.notify_resolved {
            self.notify_resolved = b;
        }
        if let Some(n) = s.keep_firing_for_days {
            self.keep_firing_for_days = n;
        }
        if let Some(n) = s.escalate_after_days {
            self.escalate_after_days = n;
        }
        if let Some(r) = &s.recipients {
            self.extra_recipients.clone_from(r);
        }
        self
    }
}

impl Default for RulePolicy {
    fn default() -> Self {
        RulePolicy::from_config(&AlertsConfig::default())
    }
}

/// The policy of every rule: a default and per-rule values.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub default: RulePolicy,
    pub per_rule: HashMap<String, RulePolicy>,
}

impl Policies {
    /// Sets one rule's policy.
    pub fn set(&mut self, rule: &str, policy: RulePolicy) {
        self.per_rule.insert(rule.to_string(), policy);
    }

    pub fn get(&self, rule: &str) -> &RulePolicy {
        self.per_rule.get(rule).unwrap_or(&self.default)
    }

    /// Each rule's policy, one precedence for every key: the config's
    /// `rule_settings.<rule>` > the rule's own `SETTINGS` > the `alerts:`
    /// defaults. (A rule set loaded with the config already holds its
    /// `rule_settings`; laying them on again changes nothing.)
    pub fn for_rules(cfg: &Config, rules: &crate::rules::RuleSet) -> Policies {
        let mut p = Policies {
            default: RulePolicy::from_config(&cfg.alerts),
            per_rule: HashMap::new(),
        };
        for rule in &rules.rules {
            let mut policy = p.default.clone().with(rule.settings());
            if let Some(o) = cfg.rule_settings.get(&*rule.name) {
                policy = policy.with(o);
            }
            if policy != p.default {
                p.set(&rule.name, policy);
            }
        }
        p
    }
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Inactive,
    Pending,
    Firing,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Pending => "pending",
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }

    fn parse(s: &str) -> State {
        match s {
            "pending" => State::Pending,
            "firing" => State::Firing,
            "resolved" => State::Resolved,
            _ => State::Inactive,
        }
    }
}

/// The lifecycle fields of one alert (dates are evaluation as-of dates).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Lifecycle {
    pub state: State,
    pub severity: Option<Severity>,
    pub pending_count: u32,
    pub pending_since: Option<NaiveDate>,
    pub started_at: Option<NaiveDate>,
    pub last_seen_at: Option<NaiveDate>,
    pub cleared_since: Option<NaiveDate>,
    pub resolved_at: Option<NaiveDate>,
    /// A start notice went out for the current firing episode.
    pub notified: bool,
    pub notified_severity: Option<Severity>,
    pub last_notified_at: Option<NaiveDate>,
    pub aged_notified: bool,
}

/// What one evaluation observed for an alert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    /// The rule raised it, with this severity.
    Raised(Severity),
    /// The rule ran and did not raise it.
    Clear,
    /// The rule failed for the account: no evidence either way.
    Unknown,
}

/// A notice about an alert: what people are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Notice {
    Started,
    /// Severity rose above what was last told.
    Raised {
        #[serde(with = "severity_text")]
        from: Severity,
    },
    /// Still firing after the repeat interval.
    Repeat,
    /// Firing longer than the escalation age: the manager is told.
    Aged,
    /// Resolved after firing this many days.
    Resolved {
        lasted_days: i64,
    },
}

impl Notice {
    pub fn kind(self) -> &'static str {
        match self {
            Notice::Started => "started",
            Notice::Raised { .. } => "raised",
            Notice::Repeat => "repeat",
            Notice::Aged => "aged",
            Notice::Resolved { .. } => "resolved",
        }
    }
}

/// The outcome of one step of the machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub next: Lifecycle,
    /// Notices to send.
    pub notices: Vec<Notice>,
    /// Notices a silence held back (recorded, not sent).
    pub silenced: Vec<Notice>,
}

fn days(from: Option<NaiveDate>, to: NaiveDate) -> i64 {
    from.map_or(0, |f| (to - f).num_days().max(0))
}

/// One evaluation of one alert: the previous lifecycle and what was
/// observed as of `as_of` in, the next lifecycle and its notices out.
pub fn step(
    prev: &Lifecycle,
    obs: Observation,
    policy: &RulePolicy,
    as_of: NaiveDate,
    silenced: bool,
) -> Step {
    let mut n = prev.clone();
    let mut out = Step {
        next: prev.clone(),
        notices: Vec::new(),
        silenced: Vec::new(),
    };
    match obs {
        Observation::Unknown => return out,
        Observation::Raised(sev) => {
            n.cleared_since = None;
            n.severity = Some(sev);
            match prev.state {
                State::Inactive | State::Resolved => {
                    n = Lifecycle {
                        state: State::Pending,
                        severity: Some(sev),
                        pending_count: 1,
                        pending_since: Some(as_of),
                        ..Lifecycle::default()
                    };
                }
                State::Pending => {
                    // Counted per evaluation day, so re-running a day (or a
                    // restart that evaluates it again) does not count twice.
                    if prev.last_seen_at != Some(as_of) {
                        n.pending_count += 1;
                    }
                }
                State::Firing => {}
            }
            n.last_seen_at = Some(as_of);
            if n.state == State::Pending && n.pending_count >= policy.for_evaluations.max(1) {
                n.state = State::Firing;
                n.started_at = Some(as_of);
            }
        }
        Observation::Clear => match prev.state {
            State::Pending => {
                n.state = State::Inactive;
                n.pending_count = 0;
                n.pending_since = None;
            }
            State::Firing => {
                let since = prev.cleared_since.unwrap_or(as_of);
                n.cleared_since = Some(since);
                if days(Some(since), as_of) >= i64::from(policy.keep_firing_for_days) {
                    n.state = State::Resolved;
                    n.resolved_at = Some(as_of);
                    if prev.notified && policy.notify_resolved {
                        let notice = Notice::Resolved {
                            lasted_days: days(prev.started_at, as_of),
                        };
                        if silenced {
                            out.silenced.push(notice);
                        } else {
                            out.notices.push(notice);
                        }
                    }
                }
            }
            State::Inactive | State::Resolved => {}
        },
    }
    if n.state == State::Firing {
        let sev = n.severity.unwrap_or(Severity::Warning);
        let just_started = prev.state != State::Firing;
        let aged = policy.escalate_after_days > 0
            && days(n.started_at, as_of) >= i64::from(policy.escalate_after_days);
        if silenced {
            if just_started {
                out.silenced.push(Notice::Started);
            }
        } else if !n.notified {
            out.notices.push(Notice::Started);
            n.notified = true;
            n.notified_severity = Some(sev);
            n.last_notified_at = Some(as_of);
        } else if n.notified_severity.is_some_and(|s| sev > s) {
            out.notices.push(Notice::Raised {
                from: n.notified_severity.unwrap_or(sev),
            });
            n.notified_severity = Some(sev);
            n.last_notified_at = Some(as_of);
        } else if aged && !n.aged_notified {
            out.notices.push(Notice::Aged);
            n.last_notified_at = Some(as_of);
        } else if policy.repeat_interval_days > 0
            && days(n.last_notified_at, as_of) >= i64::from(policy.repeat_interval_days)
        {
            out.notices.push(Notice::Repeat);
            n.last_notified_at = Some(as_of);
        }
        // Any notice sent once the alert is this old goes to the manager
        // too (see `mail::route`), so the age escalation has been made.
        if aged && !out.notices.is_empty() {
            n.aged_notified = true;
        }
    }
    out.next = n;
    out
}

/// The alert a notice is about, with all it takes to route and render it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub rule: String,
    pub account_id: String,
    pub account_name: String,
    pub tier: String,
    pub share: f64,
    pub region: String,
    pub owner: String,
    pub owner_email: Option<String>,
    pub manager_email: Option<String>,
    /// The manager's name from the master (empty: not known).
    #[serde(default)]
    pub manager: String,
    pub key: String,
    #[serde(with = "severity_text")]
    pub severity: Severity,
    pub title: String,
    /// The figures, in the rule's order.
    pub figures: Vec<(String, serde_json::Value)>,
    /// Their kinds, by label (none in messages queued before kinds were
    /// kept: those figures are written as plain numbers).
    #[serde(default)]
    pub units: crate::rules::Units,
    pub action: String,
    pub notice: Notice,
    #[serde(with = "date_serde::option")]
    pub started_at: Option<NaiveDate>,
    #[serde(with = "date_serde")]
    pub as_of: NaiveDate,
}

/// Severity as its config/rule spelling ("warning"), for stored JSON.
mod severity_text {
    use super::Severity;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Severity, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Severity, D::Error> {
        let s = String::deserialize(d)?;
        Severity::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("severity {s:?}")))
    }
}

/// Dates as YYYY-MM-DD in stored JSON (chrono's serde feature is off).
pub mod date_serde {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.format("%Y-%m-%d").to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        let s = String::deserialize(d)?;
        NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(serde::de::Error::custom)
    }

    pub mod option {
        use chrono::NaiveDate;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(v: &Option<NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| {
                    NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(serde::de::Error::custom)
                })
                .transpose()
        }
    }
}

/// A notice for one alert, ready for routing.
#[derive(Debug, Clone)]
pub struct Notified {
    pub item: Item,
    /// Held back by a silence: record only.
    pub silenced: bool,
}

/// What one evaluation changed.
#[derive(Debug, Default)]
pub struct Changes {
    /// Indexes of the findings whose alert started firing now.
    pub started: Vec<usize>,
    pub resolved: usize,
    pub pending: usize,
    pub still_firing: usize,
    pub notices: Vec<Notified>,
}

type Key = (String, String, String);

/// A stored alert: its lifecycle and the last finding's text.
struct Row {
    life: Lifecycle,
    severity: String,
    title: String,
    figures: String,
    units: String,
    action: String,
}

fn opt_date(s: Option<String>) -> Option<NaiveDate> {
    s.and_then(|s| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok())
}

fn load(conn: &Connection) -> Result<HashMap<Key, Row>> {
    let mut st = conn.prepare(
        "SELECT rule, account_id, key, state, severity, title, figures, action, pending_count,
                pending_since, started_at, last_seen_at, cleared_since, resolved_at, notified,
                notified_severity, last_notified_at, aged_notified, units
         FROM alerts WHERE state IN ('pending', 'firing')",
    )?;
    let rows = st.query_map([], |r| {
        let severity: String = r.get(4)?;
        let notified_severity: Option<String> = r.get(15)?;
        Ok((
            (r.get(0)?, r.get(1)?, r.get(2)?),
            Row {
                life: Lifecycle {
                    state: State::parse(&r.get::<_, String>(3)?),
                    severity: Severity::parse(&severity),
                    pending_count: r.get::<_, i64>(8)?.max(0) as u32,
                    pending_since: opt_date(r.get(9)?),
                    started_at: opt_date(r.get(10)?),
                    last_seen_at: opt_date(r.get(11)?),
                    cleared_since: opt_date(r.get(12)?),
                    resolved_at: opt_date(r.get(13)?),
                    notified: r.get::<_, i64>(14)? != 0,
                    notified_severity: notified_severity.as_deref().and_then(Severity::parse),
                    last_notified_at: opt_date(r.get(16)?),
                    aged_notified: r.get::<_, i64>(17)? != 0,
                },
                severity,
                title: r.get(5)?,
                figures: r.get(6)?,
                units: r.get(18)?,
                action: r.get(7)?,
            },
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Applies one evaluation's findings. Alerts of a (rule, account) whose run
/// failed are left as they are: an error is not evidence that all is well.
/// So are the alerts of a rule that did not run at all (disabled, broken,
/// gone) and of an account not evaluated (the newest master no longer lists
/// it): absence is not evidence either, and a false "resolved" costs more
/// trust than a late one. An account's alerts clear only when a rule ran for
/// it and did not raise them.
/// `accounts` gives the tier and owner of alerts that were not raised now.
pub fn apply(
    conn: &Connection,
    as_of: NaiveDate,
    findings: &[Finding],
    errors: &[RunError],
    accounts: &[Arc<AccountMetrics>],
    policies: &Policies,
    ran: &HashSet<&str>,
) -> Result<Changes> {
    let as_of_text = date_text(as_of);
    let now = now_text();
    let mut stored = load(conn)?;
    let failed: HashSet<(&str, &str)> = errors
        .iter()
        .map(|e| (&*e.rule, e.account_id.as_str()))
        .collect();
    let by_id: HashMap<&str, &Arc<AccountMetrics>> =
        accounts.iter().map(|a| (a.id.as_str(), a)).collect();
    let silences = crate::alerts::silence::active(conn, as_of)?;

    let mut upsert = conn.prepare(
        "INSERT INTO alerts (rule, account_id, key, state, severity, title, figures, action,
            pending_count, pending_since, started_at, last_seen_at, cleared_since, resolved_at,
            notified, notified_severity, last_notified_at, aged_notified, units)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
         ON CONFLICT (rule, account_id, key) DO UPDATE SET
           state = excluded.state, severity = excluded.severity, title = excluded.title,
           figures = excluded.figures, units = excluded.units, action = excluded.action,
           pending_count = excluded.pending_count, pending_since = excluded.pending_since,
           started_at = excluded.started_at, last_seen_at = excluded.last_seen_at,
           cleared_since = excluded.cleared_since, resolved_at = excluded.resolved_at,
           notified = excluded.notified, notified_severity = excluded.notified_severity,
           last_notified_at = excluded.last_notified_at, aged_notified = excluded.aged_notified",
    )?;
    // Resolved and inactive alerts are not loaded; their old state is only
    // looked up for the history line when they come back.
    let mut earlier =
        conn.prepare("SELECT state FROM alerts WHERE rule = ?1 AND account_id = ?2 AND key = ?3")?;
    let mut history = conn.prepare(
        "INSERT INTO alert_history (rule, account_id, key, from_state, to_state, severity, title, figures, as_of, recorded_at, event)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;

    let mut changes = Changes::default();
    let mut seen: HashSet<Key> = HashSet::new();
    // Raised now: in finding order, the first of duplicates counts.
    let mut work: Vec<(Key, Observation, Option<usize>)> = Vec::new();
    for (i, f) in findings.iter().enumerate() {
        let key: Key = (f.rule.to_string(), f.account.id.clone(), f.key.clone());
        if seen.insert(key.clone()) {
            work.push((key, Observation::Raised(f.severity), Some(i)));
        }
    }
    let mut rest: Vec<Key> = stored
        .keys()
        .filter(|k| !seen.contains(*k))
        .cloned()
        .collect();
    rest.sort();
    for key in rest {
        // Only a rule that ran for the account and did not raise the alert
        // clears it: a failed run, a rule that is disabled, no longer
        // compiles or is gone, or an account the master switched off,
        // leaves its alerts as they were. An account that moved out of the
        // rule's tiers clears them: for a rule about a tier (thin_margin_a,
        // rising_accounts) leaving it is the condition clearing.
        let obs = if failed.contains(&(key.0.as_str(), key.1.as_str()))
            || !ran.contains(key.0.as_str())
            || !by_id.contains_key(key.1.as_str())
        {
            Observation::Unknown
        } else {
            Observation::Clear
        };
        work.push((key, obs, None));
    }

    for (key, obs, index) in work {
        let row = stored.remove(&key);
        let prev = row.as_ref().map(|r| r.life.clone()).unwrap_or_default();
        let finding = index.map(|i| &findings[i]);
        let account = finding
            .map(|f| &f.account)
            .or_else(|| by_id.get(key.1.as_str()).copied());
        let silenced = silences.iter().any(|s| {
            s.matches(
                &key.0,
                &key.1,
                account.map_or("", |a| a.tier),
                account.map_or("", |a| a.owner.as_str()),
                account.and_then(|a| a.owner_email.as_deref()),
            )
        });
        let policy = policies.get(&key.0);
        let st = step(&prev, obs, policy, as_of, silenced);
        if st.next == prev {
            continue;
        }
        let (severity, title, figures, units, action) = match (finding, &row) {
            (Some(f), _) => (
                f.severity.as_str().to_string(),
                f.title.clone(),
                figures_json(f),
                serde_json::to_string(&f.units).unwrap_or_else(|_| "{}".into()),
                f.action.clone(),
            ),
            (None, Some(r)) => (
                r.severity.clone(),
                r.title.clone(),
                r.figures.clone(),
                r.units.clone(),
                r.action.clone(),
            ),
            (None, None) => continue,
        };
        let n = &st.next;
        // Read before the upsert below overwrites it.
        let from: Option<String> = match &row {
            Some(_) => Some(prev.state.as_str().to_string()),
            None if n.state != prev.state => earlier
                .query_row(params![key.0, key.1, key.2], |r| r.get(0))
                .optional()?,
            None => None,
        };
        let d = |x: Option<NaiveDate>| x.map(date_text);
        upsert.execute(params![
            key.0,
            key.1,
            key.2,
            n.state.as_str(),
            severity,
            title,
            figures,
            action,
            n.pending_count,
            d(n.pending_since),
            d(n.started_at),
            d(n.last_seen_at),
            d(n.cleared_since),
            d(n.resolved_at),
            n.notified,
            n.notified_severity.map(|s| s.as_str()),
            d(n.last_notified_at),
            n.aged_notified,
            units,
        ])?;
        if n.state != prev.state {
            history.execute(params![
                key.0,
                key.1,
                key.2,
                from,
                n.state.as_str(),
                severity,
                title,
                figures,
                as_of_text,
                now,
                "state"
            ])?;
            match n.state {
                State::Firing => {
                    if let Some(i) = index {
                        changes.started.push(i);
                    }
                }
                State::Resolved => changes.resolved += 1,
                State::Pending => changes.pending += 1,
                State::Inactive => {}
            }
        } else if n.state == State::Firing {
            changes.still_firing += 1;
        }
        let notices = st
            .notices
            .iter()
            .map(|x| (*x, false))
            .chain(st.silenced.iter().map(|x| (*x, true)));
        for (notice, silenced) in notices {
            let figures_list: Vec<(String, serde_json::Value)> = match finding {
                Some(f) => f.figures.clone(),
                None => {
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&figures)
                        .map(|m| m.into_iter().collect())
                        .unwrap_or_default()
                }
            };
            let units_map: crate::rules::Units = match finding {
                Some(f) => f.units.clone(),
                None => serde_json::from_str(&units).unwrap_or_default(),
            };
            let item = Item {
                rule: key.0.clone(),
                account_id: key.1.clone(),
                account_name: account.map_or_else(|| key.1.clone(), |a| a.name.clone()),
                tier: account.map_or("", |a| a.tier).to_string(),
                share: account.map_or(0.0, |a| a.share),
                region: account.map_or_else(String::new, |a| a.region.clone()),
                owner: account.map_or_else(String::new, |a| a.owner.clone()),
                owner_email: account.and_then(|a| a.owner_email.clone()),
                manager_email: account.and_then(|a| a.manager_email.clone()),
                manager: account.map_or_else(String::new, |a| a.manager.clone()),
                key: key.2.clone(),
                severity: Severity::parse(&severity).unwrap_or(Severity::Warning),
                title: title.clone(),
                figures: figures_list,
                units: units_map,
                action: action.clone(),
                notice,
                started_at: n.started_at.or(prev.started_at),
                as_of,
            };
            changes.notices.push(Notified { item, silenced });
        }
    }
    Ok(changes)
}

/// The figures of a finding as a JSON object, in the rule's order.
pub fn figures_json(f: &Finding) -> String {
    let map: serde_json::Map<String, serde_json::Value> = f.figures.iter().cloned().collect();
    serde_json::Value::Object(map).to_string()
}

/// Alerts currently firing, by severity, for status lines.
pub fn firing_counts(conn: &Connection) -> Result<Vec<(Severity, u64)>> {
    let mut st = conn.prepare(
        "SELECT severity, COUNT(*) FROM alerts WHERE state = 'firing' GROUP BY severity",
    )?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = Vec::new();
    for r in rows {
        let (s, n) = r?;
        if let Some(s) = Severity::parse(&s) {
            out.push((s, n as u64));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Observation::{Clear, Raised, Unknown};
    use Severity::{Critical, Warning};

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 10, 1).unwrap() + chrono::Days::new(u64::from(day) - 1)
    }

    /// One row of a table: (day of October, observed, silenced) in;
    /// (state, notices sent, notices silenced) expected.
    type Row = (
        u32,
        Observation,
        bool,
        State,
        &'static [&'static str],
        &'static [&'static str],
    );

    fn run(policy: &RulePolicy, rows: &[Row]) {
        let mut life = Lifecycle::default();
        for (i, (day, obs, silenced, want_state, want, want_silenced)) in rows.iter().enumerate() {
            let st = step(&life, *obs, policy, d(*day), *silenced);
            let kinds = |v: &[Notice]| v.iter().map(|n| n.kind()).collect::<Vec<_>>();
            assert_eq!(
                (st.next.state, kinds(&st.notices), kinds(&st.silenced)),
                (*want_state, want.to_vec(), want_silenced.to_vec()),
                "row {i} (day {day}, {obs:?}, silenced {silenced})"
            );
            life = st.next;
        }
    }

    fn policy() -> RulePolicy {
        RulePolicy {
            escalate_after_days: 0,
            ..RulePolicy::default()
        }
    }

    #[test]
    fn fires_at_once_and_resolves_with_duration() {
        run(
            &policy(),
            &[
                (1, Clear, false, State::Inactive, &[], &[]),
                (2, Raised(Warning), false, State::Firing, &["started"], &[]),
                (3, Raised(Warning), false, State::Firing, &[], &[]),
                (5, Clear, false, State::Resolved, &["resolved"], &[]),
                (6, Clear, false, State::Resolved, &[], &[]),
                (7, Raised(Warning), false, State::Firing, &["started"], &[]),
            ],
        );
        let st = step(
            &Lifecycle {
                state: State::Firing,
                started_at: Some(d(2)),
                notified: true,
                ..Lifecycle::default()
            },
            Clear,
            &policy(),
            d(5),
            false,
        );
        assert_eq!(st.notices, vec![Notice::Resolved { lasted_days: 3 }]);
    }

    /// One precedence for every key: the config's rule_settings.R > the
    /// rule's own SETTINGS (even `for_evaluations: 1`) > the alerts:
    /// defaults. `alerts.rules.R` is the same place as rule_settings.R, and
    /// the older names mean the same keys.
    #[test]
    fn one_precedence_and_one_set_of_names_in_every_place() {
        let rules = crate::rules::RuleSet::from_sources(&[
            (
                "once",
                "const SETTINGS = #{ for_evaluations: 1, notify_resolved: false };",
            ),
            ("plain", "let x = 1;"),
            (
                "both",
                "const SETTINGS = #{ \"for\": 1, repeat_interval_days: 3 };",
            ),
            ("old", "let x = 1;"),
        ])
        .unwrap();
        let base = include_str!("../../config/kamwatch.yaml")
            .replace("  for_evaluations: 1\n", "  for_evaluations: 3\n");
        let cfg = crate::config::parse(&format!(
            "{base}\nrule_settings:\n  both:\n    for_evaluations: 2\n    extra_recipients: [p@example.com]\n"
        ))
        .unwrap();
        let p = Policies::for_rules(&cfg, &rules);
        assert_eq!(p.get("once").for_evaluations, 1);
        assert!(!p.get("once").notify_resolved);
        assert_eq!(p.get("plain").for_evaluations, 3);
        assert_eq!(p.get("both").for_evaluations, 2);
        assert_eq!(p.get("both").repeat_interval_days, 3);
        assert_eq!(p.get("both").extra_recipients, vec!["p@example.com"]);
        assert_eq!(
            cfg.notes,
            vec![
                "rule_settings.both.extra_recipients is read as `recipients`, its name now; rename it"
            ]
        );

        // alerts.rules.R is read into rule_settings.R.
        let moved = include_str!("../../config/kamwatch.yaml").replace(
            "alerts:\n",
            "alerts:\n  rules:\n    old:\n      repeat_days: 9\n",
        );
        let cfg = crate::config::parse(&moved).unwrap();
        assert_eq!(
            Policies::for_rules(&cfg, &rules)
                .get("old")
                .repeat_interval_days,
            9
        );
        assert_eq!(cfg.notes.len(), 2, "{:?}", cfg.notes);
        // The same key in both places is refused, naming both.
        let twice = moved.replace(
            "alerts:\n",
            "rule_settings:\n  old:\n    repeat_interval_days: 2\nalerts:\n",
        );
        let e = crate::config::parse(&twice).unwrap_err().to_string();
        assert!(
            e.contains(
                "repeat_interval_days set both in rule_settings.old and in alerts.rules.old"
            ),
            "{e}"
        );
        // A key under its name and its older name is refused.
        let e = crate::config::parse(&format!(
            "{base}\nrule_settings:\n  x:\n    for: 1\n    for_evaluations: 2\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("both `for_evaluations` and its older name `for`"),
            "{e}"
        );
    }

    #[test]
    fn for_n_evaluations_counts_distinct_days() {
        let p = RulePolicy {
            for_evaluations: 3,
            ..policy()
        };
        run(
            &p,
            &[
                (1, Raised(Warning), false, State::Pending, &[], &[]),
                (1, Raised(Warning), false, State::Pending, &[], &[]), // same day again
                (2, Raised(Warning), false, State::Pending, &[], &[]),
                (3, Unknown, false, State::Pending, &[], &[]), // a failed run changes nothing
                (4, Clear, false, State::Inactive, &[], &[]),  // pending that clears: no mail
                (5, Raised(Warning), false, State::Pending, &[], &[]),
                (6, Raised(Warning), false, State::Pending, &[], &[]),
                (7, Raised(Warning), false, State::Firing, &["started"], &[]),
            ],
        );
    }

    #[test]
    fn hysteresis_keeps_firing_through_a_dip() {
        let p = RulePolicy {
            keep_firing_for_days: 3,
            ..policy()
        };
        run(
            &p,
            &[
                (1, Raised(Warning), false, State::Firing, &["started"], &[]),
                (2, Clear, false, State::Firing, &[], &[]),
                (3, Raised(Warning), false, State::Firing, &[], &[]), // flaps back: nothing
                (4, Clear, false, State::Firing, &[], &[]),
                (6, Clear, false, State::Firing, &[], &[]),
                (7, Clear, false, State::Resolved, &["resolved"], &[]),
            ],
        );
    }

    #[test]
    fn severity_rise_and_repeat_interval() {
        run(
            &policy(),
            &[
                (1, Raised(Warning), false, State::Firing, &["started"], &[]),
                (7, Raised(Warning), false, State::Firing, &[], &[]),
                (8, Raised(Warning), false, State::Firing, &["repeat"], &[]),
                (9, Raised(Critical), false, State::Firing, &["raised"], &[]),
                (10, Raised(Warning), false, State::Firing, &[], &[]), // a fall is not news
                (11, Raised(Critical), false, State::Firing, &[], &[]), // nor rising back
                (16, Raised(Warning), false, State::Firing, &["repeat"], &[]),
            ],
        );
    }

    #[test]
    fn resolved_notice_opt_out() {
        let p = RulePolicy {
            notify_resolved: false,
            repeat_interval_days: 0,
            ..policy()
        };
        run(
            &p,
            &[
                (1, Raised(Warning), false, State::Firing, &["started"], &[]),
                (30, Raised(Warning), false, State::Firing, &[], &[]), // no repeats
                (31, Clear, false, State::Resolved, &[], &[]),
            ],
        );
    }

    #[test]
    fn silence_records_then_lets_the_start_through() {
        run(
            &policy(),
            &[
                (1, Raised(Warning), true, State::Firing, &[], &["started"]),
                (2, Raised(Critical), true, State::Firing, &[], &[]),
                (3, Raised(Critical), false, State::Firing, &["started"], &[]),
                (4, Clear, true, State::Resolved, &[], &["resolved"]),
                // started and resolved within a silence: nothing is mailed
                (5, Raised(Warning), true, State::Firing, &[], &["started"]),
                (6, Clear, false, State::Resolved, &[], &[]),
            ],
        );
    }

    #[test]
    fn escalates_once_by_age() {
        let p = RulePolicy {
            escalate_after_days: 10,
            ..RulePolicy::default()
        };
        run(
            &p,
            &[
                (1, Raised(Warning), false, State::Firing, &["started"], &[]),
                (8, Raised(Warning), false, State::Firing, &["repeat"], &[]),
                (11, Raised(Warning), false, State::Firing, &["aged"], &[]),
                (15, Raised(Warning), false, State::Firing, &[], &[]),
                (18, Raised(Warning), false, State::Firing, &["repeat"], &[]),
            ],
        );
        // A rise on the escalation day already reaches the manager: no
        // separate age notice follows.
        run(
            &p,
            &[
                (1, Raised(Warning), false, State::Firing, &["started"], &[]),
                (11, Raised(Critical), false, State::Firing, &["raised"], &[]),
                (12, Raised(Critical), false, State::Firing, &[], &[]),
            ],
        );
    }

    #[test]
    fn migration_keeps_firing_alerts_without_mailing_them_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(include_str!("../store/0001_init.sql"))
                .unwrap();
            c.execute_batch(include_str!("../store/0002_more_datasets.sql"))
                .unwrap();
            c.pragma_update(None, "user_version", 2).unwrap();
            c.execute(
                "INSERT INTO alerts (rule, account_id, key, state, severity, title, figures, action, started_at, last_seen_at)
                 VALUES ('r', 'A', '', 'firing', 'warning', 't', '{}', '', '2026-10-01', '2026-10-05')",
                [],
            )
            .unwrap();
        }
        let conn = crate::store::open(&path).unwrap();
        let stored = load(&conn).unwrap();
        let row = &stored[&("r".to_string(), "A".to_string(), String::new())];
        assert_eq!(row.life.state, State::Firing);
        assert!(
            row.life.notified,
            "an alert mailed before the upgrade is mailed again"
        );
        assert_eq!(row.life.started_at, Some(d(1)));
        // Still firing on the next day: no notice; a week after the start: a repeat.
        let p = policy();
        assert!(
            step(&row.life, Raised(Warning), &p, d(6), false)
                .notices
                .is_empty()
        );
        assert_eq!(
            step(&row.life, Raised(Warning), &p, d(8), false).notices,
            vec![Notice::Repeat]
        );
    }
}
