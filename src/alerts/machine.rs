//! The lifecycle state machine of one alert, pure: no table, no clock.
//!
//! [`step`]: inactive -> pending (raised, but not yet for `for_evaluations`
//! days) -> firing -> resolved (cleared for `keep_firing_for_days`); with
//! `close_after_days`, firing -> closed once the alert has fired that long
//! and is still raised or held: one final notice, then nothing while the
//! rule keeps raising or holding it, and a silent end (resolved, no
//! notice) on the first evaluation that does not raise or hold it, so a
//! raise after that starts a new episode. The lifecycle owns the alert's
//! age: a rule says whether its condition holds today, not how long it
//! has. It decides which notices an evaluation causes: started, severity
//! raised, repeat (every `repeat_interval_days` while firing, an info alert
//! every `info_repeat_interval_days` when the rule sets it), aged (firing
//! for `escalate_after_days`; none while an alert is kept firing only by
//! `keep_firing_for_days`), final and resolved. A held observation (a rule's
//! `alert(#{ ..., starts: false })`) is a raise for an open alert and
//! nothing for one that is not: a rule's hysteresis band, kept by the
//! lifecycle's memory instead of the rule walking back through its
//! history. Time is the evaluation's as-of
//! date, never the wall clock. Touches nothing; `lifecycle` runs it against
//! the `alerts` table and the backtest runs it in memory.

use std::collections::HashSet;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::policy::RulePolicy;
use crate::model::Severity;
use crate::rules::Finding;

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Inactive,
    Pending,
    Firing,
    /// Fired `close_after_days` and was still raised: the final notice
    /// went out, and nothing more is told while the rule keeps raising or
    /// holding it.
    Closed,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Pending => "pending",
            State::Firing => "firing",
            State::Closed => "closed",
            State::Resolved => "resolved",
        }
    }

    pub(super) fn parse(s: &str) -> State {
        match s {
            "pending" => State::Pending,
            "firing" => State::Firing,
            "closed" => State::Closed,
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
    /// The rule held it (`starts: false`): raised, with this severity, if
    /// the alert is pending or firing; otherwise as clear, so nothing
    /// starts.
    Held(Severity),
    /// The rule ran and did not raise it.
    Clear,
    /// The rule failed for the account: no evidence either way.
    Unknown,
    /// The rule ran and did not raise it, but raised (or held) another of
    /// its alerts for the account that is open, under
    /// `one_open_per_account`: it ends now, silently (see [`exclusive`]).
    Ended,
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
    /// Still raised after firing `close_after_days`: the last notice of
    /// the episode, after which the alert is closed.
    Final {
        open_days: i64,
    },
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
            Notice::Final { .. } => "final",
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
    let mut out = Step {
        next: prev.clone(),
        notices: Vec::new(),
        silenced: Vec::new(),
    };
    let mut n = match obs {
        Observation::Unknown => return out,
        Observation::Raised(sev) | Observation::Held(sev) if prev.state == State::Closed => {
            // Closed: it stays so while raised or held, and tells nothing.
            let mut n = prev.clone();
            n.severity = Some(sev);
            n.cleared_since = None;
            n.last_seen_at = Some(as_of);
            n
        }
        Observation::Raised(sev) => raised(prev, sev, policy, as_of),
        Observation::Held(sev) if matches!(prev.state, State::Pending | State::Firing) => {
            raised(prev, sev, policy, as_of)
        }
        Observation::Held(_) | Observation::Clear => {
            cleared(prev, policy, as_of, silenced, &mut out)
        }
        Observation::Ended => ended(prev, as_of),
    };
    // Kept firing only by keep_firing_for_days (cleared today), an alert
    // says nothing new: no repeat, no escalation of a condition that has
    // cleared (a drop repeated while the account is back in A).
    if n.state == State::Firing && n.cleared_since.is_none() {
        if closes(&n, policy, as_of) {
            close(&mut n, as_of, silenced, &mut out);
        } else {
            tell(&mut n, prev, policy, as_of, silenced, &mut out);
        }
    }
    out.next = n;
    out
}

/// Whether a firing alert raised today has fired `close_after_days`.
fn closes(n: &Lifecycle, policy: &RulePolicy, as_of: NaiveDate) -> bool {
    policy.close_after_days > 0 && days(n.started_at, as_of) >= i64::from(policy.close_after_days)
}

/// Closes a firing alert still raised: the final notice (recorded, not
/// sent, under a silence), then the closed state.
fn close(n: &mut Lifecycle, as_of: NaiveDate, silenced: bool, out: &mut Step) {
    let notice = Notice::Final {
        open_days: days(n.started_at, as_of),
    };
    if silenced {
        out.silenced.push(notice);
    } else {
        out.notices.push(notice);
        n.last_notified_at = Some(as_of);
    }
    n.state = State::Closed;
}

/// The next lifecycle when the rule raised the alert: pending, counted per
/// evaluation day, firing once raised on `for_evaluations` days.
fn raised(prev: &Lifecycle, sev: Severity, policy: &RulePolicy, as_of: NaiveDate) -> Lifecycle {
    let mut n = prev.clone();
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
        // Closed alerts are stepped before they get here (`step`).
        State::Firing | State::Closed => {}
    }
    n.last_seen_at = Some(as_of);
    if n.state == State::Pending && n.pending_count >= policy.for_evaluations.max(1) {
        n.state = State::Firing;
        n.started_at = Some(as_of);
    }
    n
}

/// The next lifecycle when the rule ran and did not raise the alert: a
/// pending alert goes back to inactive, a firing one resolves once clear
/// for `keep_firing_for_days` (with a resolved notice if one is wanted).
fn cleared(
    prev: &Lifecycle,
    policy: &RulePolicy,
    as_of: NaiveDate,
    silenced: bool,
    out: &mut Step,
) -> Lifecycle {
    // Only a firing alert waits out keep_firing_for_days (and may tell it
    // resolved). Pending goes back to inactive, and a closed alert ends,
    // silently, on the first evaluation that does not raise or hold it: no
    // keep, so a return shorter than keep_firing_for_days still ends the
    // closed episode and a second real drop after it is told. That is what
    // an alert another one replaced does (`ended`).
    if !matches!(prev.state, State::Firing) {
        return ended(prev, as_of);
    }
    let mut n = prev.clone();
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
    n
}

/// The next lifecycle of an alert another one of its rule and account
/// replaced (`one_open_per_account`): pending goes back to inactive, firing
/// or closed resolves today, with no notice and no keep_firing_for_days.
fn ended(prev: &Lifecycle, as_of: NaiveDate) -> Lifecycle {
    let mut n = prev.clone();
    match prev.state {
        State::Pending => {
            n.state = State::Inactive;
            n.pending_count = 0;
            n.pending_since = None;
        }
        State::Firing | State::Closed => {
            n.state = State::Resolved;
            n.resolved_at = Some(as_of);
            n.cleared_since = Some(as_of);
        }
        State::Inactive | State::Resolved => {}
    }
    n
}

/// Whether an alert observed `obs` today is firing (or closed) after its
/// step because the rule raised or held it: the alert that, under
/// `one_open_per_account`, ends the rule's others for the account. One
/// still pending (`for_evaluations` not reached) ends nothing: it has told
/// nobody yet, and may never fire.
pub fn keeps_open(
    prev: &Lifecycle,
    obs: Observation,
    policy: &RulePolicy,
    as_of: NaiveDate,
) -> bool {
    matches!(obs, Observation::Raised(_) | Observation::Held(_))
        && matches!(
            step(prev, obs, policy, as_of, false).next.state,
            State::Firing | State::Closed
        )
}

/// An evaluation's findings as observations, one per alert (rule, account,
/// key), in finding order, each with its finding's index: the first
/// finding of a key counts and a later one with the same key is dropped. A
/// finding is [`Observation::Raised`], or [`Observation::Held`] when held
/// (`starts: false`). The daemon (`lifecycle::apply`), the backtest and
/// `kamwatch test`'s replays all read their findings through it, so each
/// keeps the same finding per key. A rule's run cannot give a key twice:
/// `alert()` refuses the second as a run error, which drops the run's
/// findings and leaves the account's alerts of the rule as they were.
pub fn per_key(findings: &[Finding]) -> Vec<(usize, Observation)> {
    let mut seen: HashSet<(&str, &str, &str)> = HashSet::new();
    findings
        .iter()
        .enumerate()
        .filter(|(_, f)| seen.insert((&*f.rule, &*f.account.id, f.key.as_str())))
        .map(|(i, f)| {
            let obs = if f.starts {
                Observation::Raised(f.severity)
            } else {
                Observation::Held(f.severity)
            };
            (i, obs)
        })
        .collect()
}

/// `one_open_per_account`, for one evaluation: of the `observed` alerts
/// (each with its group, the rule and account, its lifecycle before today,
/// today's observation and its rule's policy), the groups of a rule with
/// the setting where an alert is raised or held and firing (or closed)
/// after today ([`keeps_open`]). The caller observes the group's other alerts that the
/// rule did not raise (`Clear`) as [`Observation::Ended`]. Alerts the rule
/// raised or held stay as observed (a rule that raises two keys at once
/// keeps both open: it should raise one), and so do unknown ones (a
/// failed run is no evidence).
pub fn kept_open<'a, G: Eq + std::hash::Hash>(
    observed: impl IntoIterator<Item = (G, &'a Lifecycle, Observation, &'a RulePolicy)>,
    as_of: NaiveDate,
) -> std::collections::HashSet<G> {
    observed
        .into_iter()
        .filter(|(_, prev, obs, policy)| {
            policy.one_open_per_account && keeps_open(prev, *obs, policy, as_of)
        })
        .map(|(group, ..)| group)
        .collect()
}

/// The notices of an alert firing after this evaluation (`n`): started,
/// severity raised, aged or repeat, at most one; a silence records a start
/// without sending it.
fn tell(
    n: &mut Lifecycle,
    prev: &Lifecycle,
    policy: &RulePolicy,
    as_of: NaiveDate,
    silenced: bool,
    out: &mut Step,
) {
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
    } else if policy.repeat_days(sev) > 0
        && days(n.last_notified_at, as_of) >= i64::from(policy.repeat_days(sev))
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

/// Severity as its config/rule spelling ("warning"), for stored JSON.
pub(super) mod severity_text {
    use crate::model::Severity;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Severity, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Severity, D::Error> {
        let s = String::deserialize(d)?;
        Severity::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("severity {s:?}")))
    }
}

#[cfg(test)]
mod tests;
