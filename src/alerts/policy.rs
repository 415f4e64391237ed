//! Alert policy: how each rule's alerts behave (for N evaluations,
//! repeats, hysteresis, escalation, closing, extra recipients), from the config's
//! `alerts:` defaults, the rule's own `SETTINGS` and the config's
//! `rule_settings:`, in that order of precedence. Reads the config and the
//! loaded rules; touches nothing.

use std::collections::HashMap;

use crate::config::{AlertsConfig, Config, RuleSettings};

/// How one rule's alerts behave. Defaults come from the config's `alerts:`
/// section; `alerts.rules.<name>` and the rules stage may override them per
/// rule (see [`Policies::set`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RulePolicy {
    /// Distinct evaluation days an alert must be raised before it fires (>= 1).
    pub for_evaluations: u32,
    /// Days between reminders while firing; 0 = no reminders.
    pub repeat_interval_days: u32,
    /// The same for an alert whose severity is info; None: as the others.
    pub info_repeat_interval_days: Option<u32>,
    /// Whether a resolved notice is sent.
    pub notify_resolved: bool,
    /// Days an alert stays firing after its condition clears.
    pub keep_firing_for_days: u32,
    /// Days of firing after which the manager is told; 0 = never.
    pub escalate_after_days: u32,
    /// Days of firing after which an alert still raised gets its final
    /// notice and is closed (see `machine`); 0 = never.
    pub close_after_days: u32,
    /// At most one of the rule's alerts open per account (see `machine`).
    pub one_open_per_account: bool,
    /// Addresses that get this rule's notices besides the owner.
    pub extra_recipients: Vec<String>,
}

impl RulePolicy {
    pub fn from_config(a: &AlertsConfig) -> RulePolicy {
        RulePolicy {
            for_evaluations: a.for_evaluations,
            repeat_interval_days: a.repeat_interval_days,
            info_repeat_interval_days: None,
            notify_resolved: a.notify_resolved,
            keep_firing_for_days: a.keep_firing_for_days,
            escalate_after_days: a.escalate_after_days,
            close_after_days: a.close_after_days,
            one_open_per_account: false,
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
        if let Some(n) = s.info_repeat_interval_days {
            self.info_repeat_interval_days = Some(n);
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
        if let Some(n) = s.close_after_days {
            self.close_after_days = n;
        }
        if let Some(b) = s.one_open_per_account {
            self.one_open_per_account = b;
        }
        if let Some(r) = &s.recipients {
            self.extra_recipients.clone_from(r);
        }
        self
    }
}

impl RulePolicy {
    /// Days between reminders of an alert of severity `sev`; 0 = none.
    pub fn repeat_days(&self, sev: crate::model::Severity) -> u32 {
        match (sev, self.info_repeat_interval_days) {
            (crate::model::Severity::Info, Some(n)) => n,
            _ => self.repeat_interval_days,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
            (
                "info",
                "const SETTINGS = #{ repeat_interval_days: 30, info_repeat_interval_days: 0 };",
            ),
        ])
        .unwrap();
        let base = include_str!("../../config/kamwatch.yaml")
            .replace("  for_evaluations: 1\n", "  for_evaluations: 3\n");
        let cfg = crate::config::parse(&format!(
            "{base}\nrule_settings:\n  both:\n    for_evaluations: 2\n    extra_recipients: [p@example.com]\n  old:\n    info_repeat_interval_days: 4\n"
        ))
        .unwrap();
        let p = Policies::for_rules(&cfg, &rules);
        assert_eq!(p.get("once").for_evaluations, 1);
        assert!(!p.get("once").notify_resolved);
        assert_eq!(p.get("plain").for_evaluations, 3);
        assert_eq!(p.get("both").for_evaluations, 2);
        assert_eq!(p.get("both").repeat_interval_days, 3);
        assert_eq!(p.get("both").extra_recipients, vec!["p@example.com"]);
        assert_eq!(p.get("both").close_after_days, 0, "0 (never) by default");
        // An info alert's own interval: the rule's, the config's; left
        // out, the rule's repeat_interval_days.
        let info = crate::model::Severity::Info;
        let warning = crate::model::Severity::Warning;
        assert_eq!(
            (
                p.get("info").repeat_days(info),
                p.get("info").repeat_days(warning)
            ),
            (0, 30)
        );
        assert_eq!(p.get("old").repeat_days(info), 4);
        assert_eq!(p.get("both").repeat_days(info), 3);
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
        // close_after_days: the config over SETTINGS, 0 switches it off;
        // a misspelt key, a negative or a fraction is refused, named.
        let closing = crate::rules::RuleSet::from_sources(&[(
            "once",
            "const SETTINGS = #{ close_after_days: 180 };",
        )])
        .unwrap();
        let cfg = crate::config::parse(&base).unwrap();
        assert_eq!(
            Policies::for_rules(&cfg, &closing)
                .get("once")
                .close_after_days,
            180
        );
        let cfg = crate::config::parse(&format!(
            "{base}\nrule_settings:\n  once:\n    close_after_days: 0\n"
        ))
        .unwrap();
        assert_eq!(
            Policies::for_rules(&cfg, &closing)
                .get("once")
                .close_after_days,
            0
        );
        // one_open_per_account: off by default, SETTINGS sets it, the
        // config over it.
        let one = crate::rules::RuleSet::from_sources(&[(
            "one",
            "const SETTINGS = #{ one_open_per_account: true };",
        )])
        .unwrap();
        let cfg = crate::config::parse(&base).unwrap();
        assert!(
            Policies::for_rules(&cfg, &one)
                .get("one")
                .one_open_per_account
        );
        assert!(
            !Policies::for_rules(&cfg, &one)
                .get("other")
                .one_open_per_account
        );
        let cfg = crate::config::parse(&format!(
            "{base}\nrule_settings:\n  one:\n    one_open_per_account: false\n"
        ))
        .unwrap();
        assert!(
            !Policies::for_rules(&cfg, &one)
                .get("one")
                .one_open_per_account
        );
        for (bad, want) in [
            (
                "one_open_per_acount: true",
                "unknown field `one_open_per_acount`",
            ),
            ("one_open_per_account: 2", "one_open_per_account"),
            ("close_after_day: 180", "unknown field `close_after_day`"),
            ("close_after_days: -1", "close_after_days"),
            ("close_after_days: 1.5", "close_after_days"),
        ] {
            let e = crate::config::parse(&format!("{base}\nrule_settings:\n  once:\n    {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
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
}
