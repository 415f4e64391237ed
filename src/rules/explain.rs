//! `eval --explain`: one rule run for one account with every figure it
//! read recorded (the API's trace), and what it raised or why it stayed
//! silent (its tiers, its needs, the book's needs, no `alert()` reached).
//! Reads the snapshot it is given; writes nothing.

use std::fmt;

use super::api::{self, take_raised};
use super::error::Error;
use super::finding::Finding;
use super::run::snapshot_scope;
use super::sandbox::{describe_runtime, forget_prints, start_run};
use super::set::{Rule, RuleSet};
use super::settings::{RuleSettings, has_bits, tier_bit};
use crate::metrics::{AccountMetrics, Snapshot};

impl RuleSet {
    /// Runs one rule for one account, recording every figure the rule read.
    pub fn explain(
        &self,
        snap: &Snapshot,
        rule: &str,
        account: &str,
    ) -> Result<Explanation, Error> {
        let r = self.get(rule).ok_or_else(|| Error::NoRule {
            rule: rule.to_string(),
            loaded: self
                .rules
                .iter()
                .map(|r| &*r.name)
                .collect::<Vec<&str>>()
                .join(", "),
        })?;
        let m = snap
            .find(account)
            .ok_or_else(|| Error::NoAccount(account.to_string()))?;
        let mut ex = Explanation {
            rule: r.name.to_string(),
            account: m.id.to_string(),
            account_name: m.name.to_string(),
            tier: m.tier.as_str(),
            as_of: snap.as_of,
            settings: r.settings.clone(),
            skipped: skipped(r, m, snap),
            reads: Vec::new(),
            findings: Vec::new(),
            lines: Vec::new(),
            error: None,
            style: self.style.clone(),
            closed: Vec::new(),
        };
        if ex.skipped.is_some() {
            return Ok(ex);
        }
        let end = snap.end();
        let mut scope = snapshot_scope(snap, snap.portfolio.clone(), true);
        scope.push_constant("account", api::Account::new(m.clone(), end, true));
        api::take_trace();
        api::set_alert_cap(self.caps.per_account);
        api::set_style(&self.style);
        api::set_seasons(&self.seasons);
        start_run();
        let result = self.engine.run_ast_with_scope(&mut scope, &r.ast);
        forget_prints();
        // Each figure once, in the order it was first read.
        for r in api::take_trace() {
            if !ex.reads.contains(&r) {
                ex.reads.push(r);
            }
        }
        let raised = take_raised();
        match result {
            Ok(()) => {
                for x in raised {
                    ex.lines.push(x.line);
                    ex.findings.push(x.finding(&r.name, r.severity, m));
                }
            }
            Err(e) => ex.error = Some(describe_runtime(&e, &r.path)),
        }
        Ok(ex)
    }
}

/// Why `rule` does not run its script for `m` at all, if it does not: its
/// tiers, its needs, or the book's needs.
fn skipped(r: &Rule, m: &AccountMetrics, snap: &Snapshot) -> Option<String> {
    if r.mask & tier_bit(m.tier.as_str()) == 0 {
        return Some(if r.enabled() {
            format!(
                "tier {} is not among the rule's tiers ({}); the script did not run",
                m.tier,
                r.settings.tiers.clone().unwrap_or_default().join(", ")
            )
        } else {
            "the rule is disabled (enabled: false); the script did not run".to_string()
        });
    }
    let names = |missing: u8| -> Vec<&str> {
        RuleSettings::NEEDS
            .iter()
            .enumerate()
            .filter(|(i, _)| missing & 1 << i != 0)
            .map(|(_, x)| *x)
            .collect()
    };
    let missing = r.needs & !has_bits(m);
    if missing != 0 {
        return Some(format!(
            "the rule needs {} and the account has none; the script did not run",
            names(missing).join(", ")
        ));
    }
    let missing = r.book_needs & !snap.portfolio.data_bits();
    if missing != 0 {
        return Some(format!(
            "the rule needs {} in the book (book_needs) and no account has any; the script did not run",
            names(missing).join(", ")
        ));
    }
    None
}

/// What one rule read and raised for one account (`eval --explain`).
#[derive(Debug)]
pub struct Explanation {
    pub rule: String,
    pub account: String,
    pub account_name: String,
    pub tier: &'static str,
    pub as_of: chrono::NaiveDate,
    pub settings: RuleSettings,
    /// Why the script did not run at all, if it did not.
    pub skipped: Option<String>,
    /// Every figure the rule read, in order: (call, value).
    pub reads: Vec<(String, String)>,
    pub findings: Vec<Finding>,
    /// The line of the `alert()` call behind each finding.
    pub lines: Vec<Option<usize>>,
    pub error: Option<String>,
    /// How the findings' figures are written.
    pub style: crate::format::Style,
    /// The keys of this rule and account whose alert is closed on record
    /// (its final notice sent): a finding of one tells nothing. The
    /// caller, who reads the alerts, fills it in; empty: none known.
    pub closed: Vec<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "rule {} for account {} ({}, tier {}) as of {}",
            self.rule, self.account, self.account_name, self.tier, self.as_of
        )?;
        if let Some(why) = &self.skipped {
            return writeln!(f, "silent: {why}");
        }
        if self.reads.is_empty() {
            writeln!(f, "read nothing")?;
        } else {
            writeln!(f, "read:")?;
            let w = self
                .reads
                .iter()
                .map(|r| r.0.chars().count())
                .max()
                .unwrap_or(0);
            for (what, v) in &self.reads {
                let pad = w - what.chars().count();
                writeln!(f, "  {what}{} = {v}", " ".repeat(pad))?;
            }
            if self.reads.iter().any(|r| r.0.ends_with(api::FIGURES_MARK)) {
                writeln!(
                    f,
                    "  ({} read by the alert's figures function: after a small drop they run the rule again for the account only when its tier moved)",
                    api::FIGURES_MARK.trim()
                )?;
            }
        }
        if let Some(e) = &self.error {
            return writeln!(f, "failed: {e}");
        }
        if self.findings.is_empty() {
            return writeln!(f, "silent: no alert() call was reached with these figures");
        }
        for (x, line) in self.findings.iter().zip(&self.lines) {
            if self.closed.contains(&x.key) {
                // Closed (`close_after_days`): raised or held, it stays
                // closed and mails nothing; the first run that neither
                // raises nor holds it ends it.
                write!(
                    f,
                    "closed (its final notice was sent; while raised or held it stays closed and mails nothing): {} \"{}\"",
                    x.severity, x.title
                )?;
            } else if x.starts {
                write!(f, "fired: {} \"{}\"", x.severity, x.title)?;
            } else {
                // `alert(#{ starts: false })`: what it does depends on the
                // alert's state, which an explanation does not look at.
                write!(
                    f,
                    "held (starts: false: keeps this alert open if it is, starts none): {} \"{}\"",
                    x.severity, x.title
                )?;
            }
            if !x.key.is_empty() {
                write!(f, " [key {}]", x.key)?;
            }
            if let Some(l) = line {
                write!(f, " (alert() at {}.rhai line {l})", self.rule)?;
            }
            writeln!(f)?;
            for (k, v) in &x.figures {
                let unit = x.units.get(&**k).copied();
                write!(f, "  {k}: {}", self.style.value(v, unit))?;
                match unit {
                    Some(u) => writeln!(f, " ({} {v})", u.name())?,
                    None => writeln!(f)?,
                }
            }
            if !x.action.is_empty() {
                writeln!(f, "  action: {}", x.action)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::RuleSet;

    #[test]
    fn explain_writes_figures_by_kind() {
        let rs = RuleSet::from_sources(&[(
            "x",
            "alert(#{ title: \"t\", figures: [[\"rev\", money(22930)], [\"n\", 6.0]] });",
        )])
        .unwrap();
        let snap = crate::metrics::tests_support::snapshot_one();
        let id = snap.accounts[0].id.clone();
        let text = rs.explain(&snap, "x", &id).unwrap().to_string();
        assert!(text.contains("  rev: ¥2.29万 (money 22930.0)"), "{text}");
        assert!(text.contains("  n: 6\n"), "{text}");
    }

    /// Rule `x` of `source`, explained for KH1 of the one-account
    /// snapshot, asserting that it read `reads` (what, value) in that order.
    fn explained(source: &str, reads: &[(&str, &str)]) -> (RuleSet, super::Explanation) {
        let rs = RuleSet::from_sources(&[("x", source)]).unwrap();
        let snap = crate::metrics::tests_support::snapshot_one();
        let ex = rs.explain(&snap, "x", "KH1").unwrap();
        let want: Vec<(String, String)> = reads
            .iter()
            .map(|(w, v)| (w.to_string(), v.to_string()))
            .collect();
        assert_eq!(ex.reads, want);
        (rs, ex)
    }

    /// What a figures function reads is marked as such, apart from what
    /// decided.
    #[test]
    fn explain_marks_what_the_figures_function_read() {
        let (_, ex) = explained(
            "fn f(a) { [[\"r\", a.revenue(30)]] }\nif account.revenue(90) <= 0.0 { alert(#{ title: \"t\", figures: Fn(\"f\").curry(account) }); }",
            &[
                ("account.revenue(90)", "0"),
                ("account.revenue(30) (in figures)", "0"),
            ],
        );
        let text = ex.to_string();
        assert!(
            text.contains("(in figures) read by the alert's figures function"),
            "{text}"
        );
    }

    #[test]
    fn explain_lists_what_was_read() {
        let (rs, ex) = explained(
            "let r = account.revenue(90);\nif account.tier == \"A\" && r <= 0.0 {\n  alert(#{ title: \"none\", figures: [[\"r\", r]] });\n}",
            &[("account.revenue(90)", "0"), ("account.tier", "A")],
        );
        let snap = crate::metrics::tests_support::snapshot_one();
        assert_eq!(ex.lines, vec![Some(3)]);
        let text = ex.to_string();
        assert!(
            text.contains("fired: warning \"none\" (alert() at x.rhai line 3)"),
            "{text}"
        );
        let held = RuleSet::from_sources(&[("h", "alert(#{ title: \"t\", starts: false });")])
            .unwrap()
            .explain(&snap, "h", "KH1")
            .unwrap()
            .to_string();
        assert!(
            held.contains("held (starts: false") && !held.contains("fired"),
            "{held}"
        );
        assert!(rs.explain(&snap, "y", "KH1").is_err());
        assert!(
            rs.explain(&snap, "x", "KH9")
                .unwrap_err()
                .to_string()
                .contains("KH9")
        );
    }
}
