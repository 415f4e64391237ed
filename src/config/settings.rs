//! Per-rule settings: one type, `RuleSettings`, for a rule script's
//! `const SETTINGS` and the config's `rule_settings:` (which wins, key by
//! key), with older key names, the checks of each value and the overlay
//! of one source on another. Pure: reads nothing.

use serde::Deserialize;

use super::error::SettingError;
use super::mail::sendable_address;
use crate::model::{Severity, Tier};

/// One rule's policy as one source states it: the script's `const SETTINGS`
/// or `rule_settings.<rule>` in the config (`alerts.rules.<rule>` is read as
/// the same). The same keys, with the same meaning and type, in every
/// place; a key left out keeps the value below it. Precedence: the config >
/// the script's SETTINGS > the `alerts:` defaults. The older names `for`,
/// `repeat_days` and `extra_recipients` are read as `for_evaluations`,
/// `repeat_interval_days` and `recipients` (`check` says so).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    /// Whether the rule runs at all.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Tiers the rule runs for ("A", "B", "C"); None: every tier.
    #[serde(default)]
    pub tiers: Option<Vec<String>>,
    /// Data the rule cannot fire without (see [`RuleSettings::NEEDS`]);
    /// accounts lacking any of it are skipped without running the script.
    #[serde(default)]
    pub needs: Option<Vec<String>>,
    /// Data the book must have at all (any active account), or the rule is
    /// skipped for every account: "never visited" needs visits in the
    /// book, not for the account.
    #[serde(default)]
    pub book_needs: Option<Vec<String>>,
    /// Severity of an `alert()` that names none: info, warning or critical.
    #[serde(default)]
    pub severity: Option<String>,
    /// Evaluations (on distinct days) an alert must be raised before it fires.
    #[serde(default)]
    pub for_evaluations: Option<u32>,
    /// Days between reminders while an alert keeps firing; 0 = never.
    #[serde(default)]
    pub repeat_interval_days: Option<u32>,
    /// Days between reminders of the rule's info alerts (severity info
    /// when last raised); 0 = never: an info alert is told once. Left
    /// out: `repeat_interval_days`.
    #[serde(default)]
    pub info_repeat_interval_days: Option<u32>,
    /// Whether a resolved notice is mailed.
    #[serde(default)]
    pub notify_resolved: Option<bool>,
    /// Days an alert stays firing after its condition clears.
    #[serde(default)]
    pub keep_firing_for_days: Option<u32>,
    /// Days of firing after which the manager is told too; 0 = never.
    #[serde(default)]
    pub escalate_after_days: Option<u32>,
    /// Days of firing after which an alert still raised gets a final
    /// notice and is closed; 0 = never.
    #[serde(default)]
    pub close_after_days: Option<u32>,
    /// At most one of the rule's alerts open per account: an alert raised
    /// or held (and open) ends the rule's other alerts of the account at
    /// once, silently (see `alerts::machine`).
    #[serde(default)]
    pub one_open_per_account: Option<bool>,
    /// Addresses mailed besides the account's owner.
    #[serde(default)]
    pub recipients: Option<Vec<String>>,
    // Older names, moved onto the ones above by `settle`.
    #[serde(default, rename = "for")]
    old_for: Option<u32>,
    #[serde(default, rename = "repeat_days")]
    old_repeat_days: Option<u32>,
    #[serde(default, rename = "extra_recipients")]
    old_extra_recipients: Option<Vec<String>>,
}

impl RuleSettings {
    /// Every key, in the order the docs list them.
    pub const KEYS: [&str; 14] = [
        "enabled",
        "tiers",
        "needs",
        "book_needs",
        "severity",
        "for_evaluations",
        "repeat_interval_days",
        "info_repeat_interval_days",
        "notify_resolved",
        "keep_firing_for_days",
        "escalate_after_days",
        "close_after_days",
        "one_open_per_account",
        "recipients",
    ];
    /// Older key names and the key each is read as.
    pub const OLD_NAMES: [(&str, &str); 3] = [
        ("for", "for_evaluations"),
        ("repeat_days", "repeat_interval_days"),
        ("extra_recipients", "recipients"),
    ];
    /// The data a rule may need.
    pub const NEEDS: [&str; 5] = ["orders", "visits", "receivables", "credit_limit", "stock"];

    /// Sets an older-named key (see [`RuleSettings::OLD_NAMES`]); the
    /// caller has checked the name.
    pub fn set_old_for(&mut self, n: u32) {
        self.old_for = Some(n);
    }
    pub fn set_old_repeat_days(&mut self, n: u32) {
        self.old_repeat_days = Some(n);
    }
    pub fn set_old_extra_recipients(&mut self, r: Vec<String>) {
        self.old_extra_recipients = Some(r);
    }

    /// Moves values given under an older name onto the key's name. Returns
    /// the older names used; a key given under both names is an error.
    pub fn settle(&mut self) -> Result<Vec<&'static str>, SettingError> {
        let mut used = Vec::new();
        fn take<T>(
            new: &mut Option<T>,
            old: &mut Option<T>,
            names: (&'static str, &'static str),
            used: &mut Vec<&'static str>,
        ) -> Result<(), SettingError> {
            if let Some(v) = old.take() {
                if new.is_some() {
                    return Err(SettingError::BothNames {
                        new: names.1,
                        old: names.0,
                    });
                }
                *new = Some(v);
                used.push(names.0);
            }
            Ok(())
        }
        let [f, r, e] = Self::OLD_NAMES;
        take(&mut self.for_evaluations, &mut self.old_for, f, &mut used)?;
        take(
            &mut self.repeat_interval_days,
            &mut self.old_repeat_days,
            r,
            &mut used,
        )?;
        take(
            &mut self.recipients,
            &mut self.old_extra_recipients,
            e,
            &mut used,
        )?;
        Ok(used)
    }

    /// Checks each value; an error names the key.
    pub fn validate(&self) -> Result<(), SettingError> {
        let bad = |key: &'static str, why: String| Err(SettingError::Value { key, why });
        if let Some(ts) = &self.tiers {
            if ts.is_empty() {
                return bad("tiers", "an empty list would leave the rule no account; list the tiers it runs for, or set enabled: false to switch it off".into());
            }
            if let Some(t) = ts.iter().enumerate().find(|(i, t)| ts[..*i].contains(t)) {
                return bad("tiers", format!("{:?} is listed twice", t.1));
            }
        }
        for t in self.tiers.iter().flatten() {
            if Tier::parse(t).is_none() {
                return bad(
                    "tiers",
                    format!("{t:?} is not a tier; use \"A\", \"B\" or \"C\""),
                );
            }
        }
        for (key, names) in [("needs", &self.needs), ("book_needs", &self.book_needs)] {
            for n in names.iter().flatten() {
                if !Self::NEEDS.contains(&n.as_str()) {
                    return bad(
                        key,
                        format!("{n:?} is not one of {}", Self::NEEDS.join(", ")),
                    );
                }
            }
        }
        if let Some(s) = &self.severity
            && Severity::parse(s).is_none()
        {
            return bad(
                "severity",
                format!("{s:?} is not one of info, warning, critical"),
            );
        }
        if self.for_evaluations == Some(0) {
            return bad(
                "for_evaluations",
                "must be at least 1 (1 = fire on the first evaluation that raises it)".into(),
            );
        }
        for r in self.recipients.iter().flatten() {
            if !sendable_address(r) {
                return bad(
                    "recipients",
                    format!("{r:?} is not a mail address like name@example.com"),
                );
            }
        }
        Ok(())
    }

    /// `upper`'s keys over this one's: what a higher source says wins, key
    /// by key.
    pub fn overlay(&mut self, upper: &RuleSettings) {
        fn over<T: Clone>(low: &mut Option<T>, up: &Option<T>) {
            if up.is_some() {
                low.clone_from(up);
            }
        }
        over(&mut self.enabled, &upper.enabled);
        over(&mut self.tiers, &upper.tiers);
        over(&mut self.needs, &upper.needs);
        over(&mut self.book_needs, &upper.book_needs);
        over(&mut self.severity, &upper.severity);
        over(&mut self.for_evaluations, &upper.for_evaluations);
        over(&mut self.repeat_interval_days, &upper.repeat_interval_days);
        over(
            &mut self.info_repeat_interval_days,
            &upper.info_repeat_interval_days,
        );
        over(&mut self.notify_resolved, &upper.notify_resolved);
        over(&mut self.keep_firing_for_days, &upper.keep_firing_for_days);
        over(&mut self.escalate_after_days, &upper.escalate_after_days);
        over(&mut self.close_after_days, &upper.close_after_days);
        over(&mut self.one_open_per_account, &upper.one_open_per_account);
        over(&mut self.recipients, &upper.recipients);
    }

    /// The keys this one sets.
    pub(super) fn keys_set(&self) -> Vec<&'static str> {
        let set = [
            self.enabled.is_some(),
            self.tiers.is_some(),
            self.needs.is_some(),
            self.book_needs.is_some(),
            self.severity.is_some(),
            self.for_evaluations.is_some(),
            self.repeat_interval_days.is_some(),
            self.info_repeat_interval_days.is_some(),
            self.notify_resolved.is_some(),
            self.keep_firing_for_days.is_some(),
            self.escalate_after_days.is_some(),
            self.close_after_days.is_some(),
            self.one_open_per_account.is_some(),
            self.recipients.is_some(),
        ];
        Self::KEYS
            .iter()
            .zip(set)
            .filter_map(|(k, s)| s.then_some(*k))
            .collect()
    }
}
