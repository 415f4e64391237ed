//! The lifecycle state machine of one alert, pure: no table, no clock.
//!
//! [`step`]: inactive -> pending (raised, but not yet for `for_evaluations`
//! days) -> firing -> resolved (cleared for `keep_firing_for_days`). It
//! decides which notices an evaluation causes: started, severity raised,
//! repeat (every `repeat_interval_days` while firing), aged (firing for
//! `escalate_after_days`; none while an alert is kept firing only by
//! `keep_firing_for_days`) and resolved. A held observation (a rule's
//! `alert(#{ ..., starts: false })`) is a raise for an open alert and
//! nothing for one that is not: a rule's hysteresis band, kept by the
//! lifecycle's memory instead of the rule walking back through its
//! history. Time is the evaluation's as-of
//! date, never the wall clock. Touches nothing; `lifecycle` runs it against
//! the `alerts` table and the backtest runs it in memory.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::policy::RulePolicy;
use crate::model::Severity;

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

    pub(super) fn parse(s: &str) -> State {
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
    /// The rule held it (`starts: false`): raised, with this severity, if
    /// the alert is pending or firing; otherwise as clear, so nothing
    /// starts.
    Held(Severity),
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
    let mut out = Step {
        next: prev.clone(),
        notices: Vec::new(),
        silenced: Vec::new(),
    };
    let mut n = match obs {
        Observation::Unknown => return out,
        Observation::Raised(sev) => raised(prev, sev, policy, as_of),
        Observation::Held(sev) if matches!(prev.state, State::Pending | State::Firing) => {
            raised(prev, sev, policy, as_of)
        }
        Observation::Held(_) | Observation::Clear => {
            cleared(prev, policy, as_of, silenced, &mut out)
        }
    };
    // Kept firing only by keep_firing_for_days (cleared today), an alert
    // says nothing new: no repeat, no escalation of a condition that has
    // cleared (a drop repeated while the account is back in A).
    if n.state == State::Firing && n.cleared_since.is_none() {
        tell(&mut n, prev, policy, as_of, silenced, &mut out);
    }
    out.next = n;
    out
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
        State::Firing => {}
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
    let mut n = prev.clone();
    match prev.state {
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
    }
    n
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
mod tests {
    use super::*;
    use Observation::{Clear, Held, Raised, Unknown};
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
        // Kept firing after it cleared, it is not repeated nor escalated:
        // the repeat falls due on day 8, the escalation on day 10, both
        // inside the keep; raised again on day 11, the manager's copy is
        // told (it comes before a repeat, and counts as one).
        let p = RulePolicy {
            keep_firing_for_days: 10,
            escalate_after_days: 9,
            ..policy()
        };
        run(
            &p,
            &[
                (1, Raised(Warning), false, State::Firing, &["started"], &[]),
                (5, Clear, false, State::Firing, &[], &[]),
                (8, Clear, false, State::Firing, &[], &[]),
                (10, Clear, false, State::Firing, &[], &[]),
                (11, Raised(Warning), false, State::Firing, &["aged"], &[]),
                (12, Raised(Warning), false, State::Firing, &[], &[]),
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

    /// A held observation keeps an open alert open as a raise would (its
    /// count towards for_evaluations, its repeats, keep_firing_for_days
    /// from the last day held) and never starts one: held with nothing
    /// open, held after a resolve, held while a resolved alert is gone.
    #[test]
    fn held_keeps_an_open_alert_and_starts_none() {
        let p = RulePolicy {
            keep_firing_for_days: 2,
            ..policy()
        };
        run(
            &p,
            &[
                (1, Held(Warning), false, State::Inactive, &[], &[]),
                (2, Held(Critical), false, State::Inactive, &[], &[]),
                (3, Raised(Warning), false, State::Firing, &["started"], &[]),
                (4, Held(Warning), false, State::Firing, &[], &[]),
                (9, Held(Warning), false, State::Firing, &[], &[]),
                (10, Held(Warning), false, State::Firing, &["repeat"], &[]),
                (11, Held(Critical), false, State::Firing, &["raised"], &[]),
                (12, Clear, false, State::Firing, &[], &[]),
                (13, Held(Warning), false, State::Firing, &[], &[]), // back in the band
                (14, Clear, false, State::Firing, &[], &[]),
                (16, Clear, false, State::Resolved, &["resolved"], &[]),
                (17, Held(Warning), false, State::Resolved, &[], &[]),
                (18, Raised(Warning), false, State::Firing, &["started"], &[]),
            ],
        );
        // Pending: held days count towards for_evaluations; held alone
        // never makes one pending.
        let p = RulePolicy {
            for_evaluations: 3,
            ..policy()
        };
        run(
            &p,
            &[
                (1, Held(Warning), false, State::Inactive, &[], &[]),
                (2, Raised(Warning), false, State::Pending, &[], &[]),
                (3, Held(Warning), false, State::Pending, &[], &[]),
                (4, Held(Warning), false, State::Firing, &["started"], &[]),
                (5, Clear, false, State::Resolved, &["resolved"], &[]),
            ],
        );
    }

    /// What lets an evaluation after a small drop leave the alerts of the
    /// pairs it did not run to a full run's outcome (`rules::changed`):
    /// on any alert's life, a second step on the same day with the same
    /// observation changes nothing and tells no one.
    mod same_day {
        use proptest::prelude::*;

        use super::*;

        fn observation() -> impl Strategy<Value = Observation> {
            prop_oneof![
                Just(Clear),
                Just(Unknown),
                Just(Raised(Warning)),
                Just(Raised(Critical)),
                Just(Held(Warning)),
                Just(Held(Critical)),
            ]
        }

        proptest! {
            #[test]
            fn a_second_step_on_the_same_day_changes_nothing(
                policy in (1u32..4, 0u32..10, any::<bool>(), 0u32..4, 0u32..12).prop_map(
                    |(n, repeat, resolved, keep, escalate)| RulePolicy {
                        for_evaluations: n,
                        repeat_interval_days: repeat,
                        notify_resolved: resolved,
                        keep_firing_for_days: keep,
                        escalate_after_days: escalate,
                        ..RulePolicy::default()
                    }
                ),
                days in prop::collection::vec((0u32..4, observation(), any::<bool>()), 1..40),
            ) {
                let mut life = Lifecycle::default();
                let mut day = 1;
                for (gap, obs, silenced) in days {
                    day += gap;
                    let first = step(&life, obs, &policy, d(day), silenced);
                    let again = step(&first.next, obs, &policy, d(day), silenced);
                    prop_assert_eq!(&again.next, &first.next);
                    prop_assert!(again.notices.is_empty() && again.silenced.is_empty(), "{:?}", again);
                    life = first.next;
                }
            }
        }
    }
}
