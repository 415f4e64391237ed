//! Tests of the alert state machine: tables of days, and properties over
//! any sequence of observations.

use super::*;
use Observation::{Clear, Held, Raised, Unknown};
use Severity::{Critical, Info, Warning};

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
fn info_alerts_repeat_on_their_own_interval() {
    // Told once: no reminder of an info alert, however long it fires; a
    // rise to warning is news, and reminded on the rule's interval.
    let once = RulePolicy {
        info_repeat_interval_days: Some(0),
        ..policy()
    };
    run(
        &once,
        &[
            (1, Raised(Info), false, State::Firing, &["started"], &[]),
            (8, Raised(Info), false, State::Firing, &[], &[]),
            (30, Raised(Info), false, State::Firing, &[], &[]),
            (31, Raised(Warning), false, State::Firing, &["raised"], &[]),
            (37, Raised(Warning), false, State::Firing, &[], &[]),
            (38, Raised(Warning), false, State::Firing, &["repeat"], &[]),
        ],
    );
    // Its own interval, shorter or longer than the others'.
    let every3 = RulePolicy {
        info_repeat_interval_days: Some(3),
        ..policy()
    };
    run(
        &every3,
        &[
            (1, Raised(Info), false, State::Firing, &["started"], &[]),
            (3, Raised(Info), false, State::Firing, &[], &[]),
            (4, Raised(Info), false, State::Firing, &["repeat"], &[]),
            (7, Raised(Info), false, State::Firing, &["repeat"], &[]),
        ],
    );
    // Left out, an info alert is reminded as the others are.
    run(
        &policy(),
        &[
            (1, Raised(Info), false, State::Firing, &["started"], &[]),
            (8, Raised(Info), false, State::Firing, &["repeat"], &[]),
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

/// `close_after_days`: an alert still raised (or held) after firing
/// that long gets one final notice and is closed; closed, it tells
/// nothing while raised or held, ends silently on the first evaluation
/// that does not raise or hold it (whatever `keep_firing_for_days`), and
/// only a raise after that starts anew.
#[test]
fn closes_after_days_with_one_final_notice() {
    let p = RulePolicy {
        close_after_days: 10,
        keep_firing_for_days: 2,
        repeat_interval_days: 0,
        notify_resolved: true,
        ..policy()
    };
    run(
        &p,
        &[
            (1, Raised(Warning), false, State::Firing, &["started"], &[]),
            (10, Held(Warning), false, State::Firing, &[], &[]),
            (11, Held(Warning), false, State::Closed, &["final"], &[]),
            (11, Held(Warning), false, State::Closed, &[], &[]), // same day again
            (12, Raised(Critical), false, State::Closed, &[], &[]), // no rise told
            (13, Unknown, false, State::Closed, &[], &[]),
            (14, Clear, false, State::Resolved, &[], &[]), // ends at once, no "resolved"
            (14, Clear, false, State::Resolved, &[], &[]),
            (15, Held(Warning), false, State::Resolved, &[], &[]),
            (16, Raised(Warning), false, State::Firing, &["started"], &[]),
            (26, Raised(Warning), false, State::Closed, &["final"], &[]),
        ],
    );
    let st = step(
        &Lifecycle {
            state: State::Firing,
            started_at: Some(d(1)),
            notified: true,
            ..Lifecycle::default()
        },
        Raised(Warning),
        &p,
        d(11),
        false,
    );
    assert_eq!(st.notices, vec![Notice::Final { open_days: 10 }]);
}

/// Kept firing only by keep_firing_for_days on the closing day, an alert
/// gets no final notice about a condition that cleared: it resolves. Under
/// a silence the final notice is recorded, not sent; 0 never closes, nor
/// does the largest setting in a year; for_evaluations counts from the
/// start of firing.
#[test]
fn closing_with_keep_silence_and_extreme_settings() {
    let p = RulePolicy {
        close_after_days: 10,
        keep_firing_for_days: 2,
        repeat_interval_days: 0,
        notify_resolved: true,
        ..policy()
    };
    run(
        &RulePolicy {
            keep_firing_for_days: 5,
            ..p.clone()
        },
        &[
            (1, Raised(Warning), false, State::Firing, &["started"], &[]),
            (9, Clear, false, State::Firing, &[], &[]),
            (12, Clear, false, State::Firing, &[], &[]),
            (14, Clear, false, State::Resolved, &["resolved"], &[]),
        ],
    );
    run(
        &p,
        &[
            (1, Raised(Warning), false, State::Firing, &["started"], &[]),
            (11, Raised(Warning), true, State::Closed, &[], &["final"]),
        ],
    );
    run(
        &RulePolicy {
            close_after_days: 0,
            ..p.clone()
        },
        &[
            (1, Raised(Warning), false, State::Firing, &["started"], &[]),
            (400, Raised(Warning), false, State::Firing, &[], &[]),
        ],
    );
    run(
        &RulePolicy {
            for_evaluations: 3,
            ..p.clone()
        },
        &[
            (1, Raised(Warning), false, State::Pending, &[], &[]),
            (5, Raised(Warning), false, State::Pending, &[], &[]),
            (12, Raised(Warning), false, State::Firing, &["started"], &[]),
            (21, Raised(Warning), false, State::Firing, &[], &[]),
            (22, Raised(Warning), false, State::Closed, &["final"], &[]),
        ],
    );
    // The largest setting is a number of days like any other.
    run(
        &RulePolicy {
            close_after_days: u32::MAX,
            ..p
        },
        &[
            (1, Raised(Warning), false, State::Firing, &["started"], &[]),
            (300, Raised(Warning), false, State::Firing, &[], &[]),
        ],
    );
    assert_eq!(State::parse(State::Closed.as_str()), State::Closed);
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
            Just(Observation::Ended),
        ]
    }

    fn policies() -> impl Strategy<Value = RulePolicy> {
        (1u32..4, 0u32..10, any::<bool>(), 0u32..4, 0u32..12, 0u32..8).prop_map(
            |(n, repeat, resolved, keep, escalate, close)| RulePolicy {
                for_evaluations: n,
                repeat_interval_days: repeat,
                notify_resolved: resolved,
                keep_firing_for_days: keep,
                escalate_after_days: escalate,
                close_after_days: close,
                ..RulePolicy::default()
            },
        )
    }

    proptest! {
        /// However a rule raises, holds and clears: after a final
        /// notice nothing is told (no start, repeat, rise or resolved)
        /// until the alert has ended (resolved); each firing episode
        /// gets at most one final notice, and only once it is
        /// `close_after_days` old.
        #[test]
        fn a_closed_alert_tells_nothing_until_it_ends(
            policy in policies(),
            days in prop::collection::vec((0u32..4, observation(), any::<bool>()), 1..60),
        ) {
            let mut life = Lifecycle::default();
            let mut day = 1;
            let mut closed = false;
            for (gap, obs, silenced) in days {
                day += gap;
                let st = step(&life, obs, &policy, d(day), silenced);
                let all: Vec<Notice> = st.notices.iter().chain(&st.silenced).copied().collect();
                if closed {
                    prop_assert!(all.is_empty(), "told {:?} after the final notice", all);
                }
                for n in &all {
                    if let Notice::Final { open_days } = n {
                        prop_assert!(policy.close_after_days > 0);
                        prop_assert!(*open_days >= i64::from(policy.close_after_days));
                        prop_assert_eq!(st.next.state, State::Closed);
                    }
                }
                if st.next.state == State::Closed {
                    closed = true;
                }
                if matches!(st.next.state, State::Resolved | State::Inactive) {
                    closed = false;
                }
                prop_assert!(policy.close_after_days > 0 || st.next.state != State::Closed);
                life = st.next;
            }
        }

        #[test]
        fn a_second_step_on_the_same_day_changes_nothing(
            policy in policies(),
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

/// An alert another of its rule and account replaced
/// (`one_open_per_account`) ends at once and silently: no
/// keep_firing_for_days, no resolved notice, pending goes back to
/// inactive, a closed one ends, an ended one stays ended.
#[test]
fn ended_by_another_key_ends_at_once_and_silently() {
    let keep = RulePolicy {
        keep_firing_for_days: 30,
        notify_resolved: true,
        ..policy()
    };
    run(
        &keep,
        &[
            (1, Raised(Warning), false, State::Firing, &["started"], &[]),
            (2, Observation::Ended, false, State::Resolved, &[], &[]),
            (3, Observation::Ended, false, State::Resolved, &[], &[]),
            (4, Held(Warning), false, State::Resolved, &[], &[]),
            (5, Raised(Warning), false, State::Firing, &["started"], &[]),
        ],
    );
    let two = RulePolicy {
        for_evaluations: 2,
        ..keep.clone()
    };
    run(
        &two,
        &[
            (1, Raised(Warning), false, State::Pending, &[], &[]),
            (2, Observation::Ended, false, State::Inactive, &[], &[]),
            (3, Raised(Warning), false, State::Pending, &[], &[]),
        ],
    );
    let closing = RulePolicy {
        close_after_days: 2,
        ..keep
    };
    run(
        &closing,
        &[
            (1, Raised(Warning), false, State::Firing, &["started"], &[]),
            (3, Raised(Warning), false, State::Closed, &["final"], &[]),
            (4, Observation::Ended, false, State::Resolved, &[], &[]),
        ],
    );
}

/// Which (rule, account) groups keep an alert open today, ending their
/// others: only under `one_open_per_account`, only for an alert raised, or
/// held while open (a held finding with nothing open keeps nothing), and
/// only once it fires (one pending under `for_evaluations` ends nothing).
#[test]
fn kept_open_needs_the_setting_and_an_open_or_started_alert() {
    let on = RulePolicy {
        one_open_per_account: true,
        ..policy()
    };
    let off = policy();
    let none = Lifecycle::default();
    let firing = step(&none, Raised(Warning), &on, d(1), false).next;
    let twice = RulePolicy {
        for_evaluations: 2,
        ..on.clone()
    };
    let kept = kept_open(
        [
            ("raised", &none, Raised(Warning), &on),
            ("raised, still pending", &none, Raised(Warning), &twice),
            ("held, nothing open", &none, Held(Warning), &on),
            ("held, open", &firing, Held(Warning), &on),
            ("raised, setting off", &none, Raised(Warning), &off),
            ("clear", &firing, Clear, &on),
            ("unknown", &firing, Unknown, &on),
        ],
        d(2),
    );
    let mut kept: Vec<&str> = kept.into_iter().collect();
    kept.sort();
    assert_eq!(kept, ["held, open", "raised"]);
}
