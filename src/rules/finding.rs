//! What an evaluation produces: the [`Finding`]s rules raise, the
//! [`RunError`]s of rules that failed for an account, both gathered in an
//! [`Outcome`] with what the pairs read ([`ReadLog`]), and failures
//! grouped per rule for logs and mail. Plain values; touches nothing.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use super::reads::{AccountKey, BookKey, Read};

use crate::metrics::AccountMetrics;
use crate::model::Severity;

/// A warning raised by one rule for one account. What it says ([`Said`])
/// is shared, not copied, by everything that keeps it after the run (the
/// daemon's memory of the last evaluation, what a partial one steps), and
/// read through it as if it were the finding's own fields (`f.title`).
#[derive(Debug, Clone)]
pub struct Finding {
    pub rule: Arc<str>,
    pub account: Arc<AccountMetrics>,
    pub said: Arc<Said>,
}

/// What a finding says: everything of it but the rule and the account.
/// A big book's evaluation holds one per warning (100,000 and more), and
/// the daemon keeps them until the next one, so what repeats from finding
/// to finding of a rule (the figures' labels, their kinds, the action) is
/// shared, not copied, where the run could tell (`rules::api::alert`).
#[derive(Debug, Clone, PartialEq)]
pub struct Said {
    /// Distinguishes several alerts of one rule for one account; often "".
    pub key: String,
    pub severity: Severity,
    pub title: String,
    /// The figures behind the warning, in the order the rule gave them.
    pub figures: Vec<(Arc<str>, serde_json::Value)>,
    /// The kind of each figure that has one (`money(x)`), by label.
    pub units: Arc<Units>,
    pub action: Arc<str>,
    /// Whether the finding may start an alert. `alert(#{ ..., starts:
    /// false })` gives one that does not: it keeps the key's alert open
    /// (pending or firing: counted as raised today) and starts none when
    /// none is open. A rule's hysteresis band: raised past the line plus
    /// the margin, held inside the margin.
    pub starts: bool,
}

impl Said {
    /// The figures with labels of their own, as items and output keep them.
    pub fn figures_owned(&self) -> Vec<(String, serde_json::Value)> {
        self.figures
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }
}

impl std::ops::Deref for Finding {
    type Target = Said;
    fn deref(&self) -> &Said {
        &self.said
    }
}

/// Figure kinds by label; a figure without one is a plain number.
pub type Units = std::collections::BTreeMap<String, crate::format::Unit>;

/// One rule's run-time failures in an evaluation: how many accounts it
/// failed for, and the first failure as the example. Logs, the eval summary
/// and the admin's mail report failures this way, once per rule.
#[derive(Debug)]
pub struct RuleFailures<'a> {
    pub rule: &'a str,
    pub accounts: usize,
    pub example: &'a RunError,
}

impl fmt::Display for RuleFailures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.accounts == 1 { "" } else { "s" };
        write!(
            f,
            "rule {} failed for {} account{s}, e.g. {}: {}",
            self.rule, self.accounts, self.example.account_id, self.example.message
        )
    }
}

/// `errors` grouped by rule, in rule name order.
pub fn failures_by_rule(errors: &[RunError]) -> Vec<RuleFailures<'_>> {
    let mut by: std::collections::BTreeMap<&str, (std::collections::BTreeSet<&str>, &RunError)> =
        std::collections::BTreeMap::new();
    for e in errors {
        by.entry(&*e.rule)
            .or_insert_with(|| (Default::default(), e))
            .0
            .insert(e.account_id.as_str());
    }
    by.into_iter()
        .map(|(rule, (accounts, example))| RuleFailures {
            rule,
            accounts: accounts.len(),
            example,
        })
        .collect()
}

/// A rule that failed while running for one account.
#[derive(Debug, Clone)]
pub struct RunError {
    pub rule: Arc<str>,
    pub account_id: String,
    pub message: String,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule {} failed for account {}: {}",
            self.rule, self.account_id, self.message
        )
    }
}

/// Everything one evaluation produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub errors: Vec<RunError>,
    /// Rule x account pairs decided: every enabled rule for every account,
    /// whether its script ran or its tiers or needs made it silent.
    pub runs: u64,
    /// Scripts actually run (a part of `runs`).
    pub scripts: u64,
    /// Per rule (by its place in the rule set), the time its scripts took
    /// on all threads together, in nanoseconds; empty when none ran.
    pub script_ns: Vec<u64>,
    /// Stopped (SIGTERM) before every account was evaluated: the outcome is
    /// partial and must not be recorded.
    pub interrupted: bool,
    /// A block of accounts failed together here (a panic, a thread that
    /// stopped): such an outcome is not put together from parts
    /// (`rules::changed`), the next evaluation runs everything.
    pub unsure: bool,
    /// Rules whose results here depend on the order the accounts ran in:
    /// one reached its alert cap (counted across the evaluation) or was
    /// stopped at its sandbox limits (strikes count accounts in a row).
    /// `rules::changed` runs them for every account the next time.
    pub unsettled: Vec<Arc<str>>,
    /// What each pair run read beyond its account's own data, when the
    /// evaluation records it (`rules::changed` keeps it).
    pub reads: ReadLog,
}

/// What the pairs of an evaluation read (`rules::reads`).
#[derive(Debug, Default)]
pub struct ReadLog {
    /// Per account evaluated, in order, one entry per rule: the bits its
    /// run read (its decision's, its alerts' figures'); empty when it did
    /// not run.
    pub bits: Vec<Read>,
    /// The account keys read: (the account's place in that order, key).
    pub keys: Vec<(u32, AccountKey)>,
    /// The portfolio's keys read.
    pub book: HashSet<BookKey>,
}

impl ReadLog {
    /// Appends `other`, whose accounts come after this one's (`rules` per
    /// account).
    pub fn append(&mut self, other: ReadLog, rules: usize) {
        let offset = (self.bits.len() / rules.max(1)) as u32;
        self.bits.extend(other.bits);
        self.keys
            .extend(other.keys.into_iter().map(|(i, k)| (i + offset, k)));
        self.book.extend(other.book);
    }
}

impl Outcome {
    /// Gives back the room its lists grew into (the evaluation holds the
    /// outcomes of all its blocks before it puts them together).
    pub fn shrink_to_fit(&mut self) {
        self.findings.shrink_to_fit();
        self.errors.shrink_to_fit();
        self.reads.bits.shrink_to_fit();
        self.reads.keys.shrink_to_fit();
    }

    /// Makes room for `parts` appended to this one, exactly.
    pub fn reserve_for<'a>(&mut self, parts: impl Iterator<Item = &'a Outcome> + Clone) {
        let sum = |f: fn(&Outcome) -> usize| parts.clone().map(f).sum::<usize>();
        self.findings.reserve_exact(sum(|o| o.findings.len()));
        self.errors.reserve_exact(sum(|o| o.errors.len()));
        self.reads.bits.reserve_exact(sum(|o| o.reads.bits.len()));
        self.reads.keys.reserve_exact(sum(|o| o.reads.keys.len()));
    }

    /// Adds `ns` nanoseconds to rule `i`'s script time.
    pub fn time_script(&mut self, i: usize, ns: u64) {
        if self.script_ns.len() <= i {
            self.script_ns.resize(i + 1, 0);
        }
        self.script_ns[i] += ns;
    }

    /// Adds `other`'s script times to this one's.
    pub fn add_times(&mut self, other: &[u64]) {
        for (i, ns) in other.iter().enumerate() {
            self.time_script(i, *ns);
        }
    }

    /// Notes that `rule`'s results depend on the order accounts ran in.
    pub fn unsettle(&mut self, rule: &Arc<str>) {
        if !self.unsettled.contains(rule) {
            self.unsettled.push(rule.clone());
        }
    }
}
