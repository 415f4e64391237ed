//! A rule test case's days through the alert lifecycle, in memory
//! (`kamwatch test`, a case with `from:`): each day's findings are stepped
//! with [`step`], the function the daemon and the backtest use, under each
//! rule's own policy over the `alerts:` defaults (the user's config plays
//! no part in a rule's tests). Pure: touches nothing.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::machine::{Lifecycle, Observation, State, kept_open, per_key, step};
use super::policy::{Policies, RulePolicy};
use crate::rules::testing::Noticed;
use crate::rules::{Finding, RuleSet};

/// Every notice of `days` (each day's findings, in day order), in order:
/// by day, then by (rule, account, key).
pub fn replay(rules: &RuleSet, days: &[(NaiveDate, Vec<Finding>)]) -> Vec<Noticed> {
    let mut policies = Policies::default();
    for r in &rules.rules {
        policies.set(&r.name, RulePolicy::default().with(r.settings()));
    }
    // The pending, firing and closed alerts by (rule, account, key).
    let mut open: BTreeMap<(String, String, String), Lifecycle> = BTreeMap::new();
    let mut out = Vec::new();
    for (day, findings) in days {
        let mut seen: BTreeMap<(String, String, String), Observation> = BTreeMap::new();
        // One finding per key, the first, as the daemon and the backtest.
        for (i, obs) in per_key(findings) {
            let f = &findings[i];
            let key = (f.rule.to_string(), f.account.id.to_string(), f.key.clone());
            seen.insert(key, obs);
        }
        for key in open.keys() {
            seen.entry(key.clone()).or_insert(Observation::Clear);
        }
        // One open alert per account where the rule says so: an alert the
        // rule raised or held ends its others for the account.
        let none = Lifecycle::default();
        let kept = kept_open(
            seen.iter().map(|(k, obs)| {
                let prev = open.get(k).unwrap_or(&none);
                ((k.0.clone(), k.1.clone()), prev, *obs, policies.get(&k.0))
            }),
            *day,
        );
        for (k, obs) in seen.iter_mut() {
            if *obs == Observation::Clear && kept.contains(&(k.0.clone(), k.1.clone())) {
                *obs = Observation::Ended;
            }
        }
        for (key, obs) in seen {
            let prev = open.remove(&key).unwrap_or_default();
            let st = step(&prev, obs, policies.get(&key.0), *day, false);
            for n in &st.notices {
                out.push(Noticed {
                    on: *day,
                    rule: key.0.clone(),
                    account: key.1.clone(),
                    key: key.2.clone(),
                    notice: n.kind(),
                });
            }
            if matches!(
                st.next.state,
                State::Pending | State::Firing | State::Closed
            ) {
                open.insert(key, st.next);
            }
        }
    }
    out
}
