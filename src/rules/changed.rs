//! Rules only where something changed: which rule x account pairs an
//! evaluation must run when nothing but new data arrived since the last
//! evaluation of the same day, and what a full run would find, kept up to
//! date from the pairs run now.
//!
//! A rule's run for an account is a function of what it reads: the
//! account's own data (order lines, visits), the values the book decides
//! for it (tier, prev_tier, rank, share, share_above; the tier history
//! behind `tier_ago` and the gross-profit ranking), the `portfolio`, the
//! as-of date, and the rule set with its settings. [`Memo`] keeps, from the
//! last evaluation, each account's book-decided values, the portfolio as
//! text (to the bit), a fingerprint of the rule set and the results of
//! every pair. [`Memo::pick`] runs a pair again when the account's data
//! was written since (the refresh's accounts), when a book-decided value
//! the rule may read changed for the account (a tier-filtered rule reads
//! the tier), when the rule may read the tier history and any order line
//! changed, or when it may read what changed of the portfolio (its floors,
//! its counts, the kinds of data it has, anything else of it). What a rule
//! may read is taken from its compiled script (`rules::reads`). Every
//! other pair would give what it gave last time: [`Memo::update`] puts
//! the results of the pairs run in place of the remembered ones, so the
//! memo holds what a full run finds without one being assembled, and says
//! which pairs' alerts the lifecycle steps ([`Stepped`]): those run whose
//! results it observes otherwise now (another key or severity, a finding
//! more or less, a failure), and every pair of an account whose tier moved
//! (a silence may name a tier). The others are observed as they were
//! earlier the same day, and the state machine run twice on one day with
//! the same observation changes nothing (`alerts::machine`'s test), so
//! their alerts stay as they are.
//!
//! A rule whose results depended on the order the accounts ran in (it
//! reached its alert cap, or was stopped at its sandbox limits:
//! `Outcome::unsettled`) runs for every account the next time, as in a
//! full run. Not exact, so everything runs: another day, another rule set
//! or config, another account list, SKU or role list, a block of accounts
//! that failed together (`Outcome::unsure`), and such a rule reaching its
//! cap or limits where it ran only for some accounts.
//! Reads the rule set and snapshots it is given; touches nothing else.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::NaiveDate;

use super::finding::{Finding, Outcome, RunError, Said};
use super::reads::{self, rule_reads};
use super::set::RuleSet;
use crate::metrics::{AccountMetrics, Snapshot};

mod book;
mod update;
use book::{Book, Placed};

/// Everything about the rule set a rule's run may depend on, as text: two
/// sets with the same fingerprint run the same scripts with the same
/// settings, caps, texts and seasons.
pub fn fingerprint(rules: &RuleSet) -> String {
    let mut out = format!("{:?}\n{:?}\n{:?}\n", rules.caps, rules.style, rules.seasons);
    for r in &rules.rules {
        out += &format!(
            "{} {} {:?} {} {} {}\n{:?}\n",
            r.name,
            r.path.display(),
            r.settings,
            r.mask,
            r.needs,
            r.book_needs,
            r.ast
        );
    }
    out
}

/// What changed since the last evaluation, besides the rule set and the
/// day: the accounts whose own data was written, and whether any order
/// line was (which moves the book's rankings and history).
#[derive(Debug, Clone, Copy)]
pub struct Since<'a> {
    pub accounts: &'a [String],
    pub orders: bool,
}

/// One result of one pair, kept without the account's metrics; what a
/// finding says is shared with the outcome it came from, not copied.
/// `idle`: a held finding (`starts: false`) that kept no alert open, which
/// the evaluation does not count or list as a warning ([`Memo::mark_idle`]).
#[derive(Debug, Clone)]
enum Kept {
    Found {
        rule: usize,
        said: Arc<Said>,
        idle: bool,
    },
    Failed {
        rule: usize,
        message: String,
    },
}

impl Kept {
    fn rule(&self) -> usize {
        match self {
            Kept::Found { rule, .. } | Kept::Failed { rule, .. } => *rule,
        }
    }
}

/// Puts a kept result of account `a` back into `out` as what a run gives.
fn put_back(out: &mut Outcome, rules: &RuleSet, a: &Arc<AccountMetrics>, k: &Kept) {
    let Some(rule) = rules.rules.get(k.rule()).map(|r| r.name.clone()) else {
        return;
    };
    match k {
        Kept::Found { said, .. } => out.findings.push(Finding {
            rule,
            account: a.clone(),
            said: said.clone(),
        }),
        Kept::Failed { message, .. } => out.errors.push(RunError {
            rule,
            account_id: a.id.clone(),
            message: message.clone(),
        }),
    }
}

/// Past this many failed runs the results are not kept (the next
/// evaluation runs everything): a rule failing for every account of a big
/// book would hold a message per account.
const MAX_KEPT_ERRORS: usize = 100_000;

/// What the last evaluation saw and found, to tell what changed since.
#[derive(Debug)]
pub struct Memo {
    as_of: NaiveDate,
    /// The rule set's fingerprint and whatever else the caller says must
    /// not have changed (silences, the evaluation on record).
    basis: String,
    placed: HashMap<String, Placed>,
    book: Book,
    skus: Arc<Vec<String>>,
    roles: Vec<Arc<str>>,
    /// Per account with any, its pairs' results in a full run's order.
    results: HashMap<String, Vec<Kept>>,
    /// How many of them are findings, how many failures, and how many of
    /// the findings are idle.
    found: usize,
    failed: usize,
    idle: usize,
    /// Per rule: its results depended on the order accounts ran in (see
    /// `Outcome::unsettled`); it runs for every account the next time.
    unsettled: Vec<bool>,
}

/// The pairs to run: see [`Memo::pick`].
#[derive(Debug)]
pub struct Pick {
    /// Per rule, what it may read ([`reads`] bits).
    reads: Vec<u16>,
    /// Per rule, whether it runs for every account.
    everywhere: Vec<bool>,
    /// The accounts to visit (indexes into the snapshot, in its order),
    /// each with what changed for it ([`reads`] bits).
    pub(super) visit: Vec<(usize, u16)>,
    /// Per rule, the alerts its pairs not run raised last time: they count
    /// towards `alerts.max_per_rule` as they would in a full run.
    pub(super) seed: Vec<usize>,
    /// The rules that run for every account, each with what it reads that
    /// changed, for the log.
    pub why: Vec<String>,
    /// The book now, for the memo brought up to date.
    book: Book,
}

impl Pick {
    /// Whether rule `rule` runs for an account with `changed` bits.
    pub(super) fn runs(&self, rule: usize, changed: u16) -> bool {
        self.everywhere[rule] || changed & self.reads[rule] != 0
    }

    /// Whether `now`, the outcome of the pairs picked, can stand for theirs
    /// in a full run: nothing failed together, and every rule whose results
    /// depended on the order accounts ran in ran for every account.
    pub fn settled(&self, rules: &RuleSet, now: &Outcome) -> bool {
        !now.unsure
            && now.unsettled.iter().all(|name| {
                rules
                    .rules
                    .iter()
                    .position(|r| r.name == *name)
                    .is_some_and(|i| self.everywhere[i])
            })
    }

    /// Accounts for which at least one rule runs.
    pub fn accounts_run(&self) -> usize {
        self.visit
            .iter()
            .filter(|(_, c)| (0..self.reads.len()).any(|r| self.runs(r, *c)))
            .count()
    }
}

fn roles_of(snap: &Snapshot) -> Vec<Arc<str>> {
    snap.accounts
        .first()
        .map(|a| a.roles.as_ref().clone())
        .unwrap_or_default()
}

impl Memo {
    /// What a full run found for `snap`, to
    /// compare the next evaluation with; None when it cannot stand for a
    /// full run's (`unsure`, interrupted) or is too big to keep.
    pub fn of(rules: &RuleSet, snap: &Snapshot, basis: String, out: &Outcome) -> Option<Memo> {
        if out.unsure || out.interrupted || out.errors.len() > MAX_KEPT_ERRORS {
            return None;
        }
        let index = rule_index(rules);
        let mut results: HashMap<String, Vec<Kept>> = HashMap::new();
        let (mut found, mut failed) = (0, 0);
        for (id, k) in kept_of(&index, out) {
            if k.rule() == usize::MAX {
                return None;
            }
            count(&k, &mut found, &mut failed, true);
            results.entry(id.to_string()).or_default().push(k);
        }
        // A full run's order within an account: by rule, each rule's
        // alerts in the order raised (a stable sort keeps it).
        for v in results.values_mut() {
            v.sort_by_key(Kept::rule);
        }
        Some(Memo {
            as_of: snap.as_of,
            basis,
            placed: snap
                .accounts
                .iter()
                .map(|a| (a.id.clone(), Placed::of(a)))
                .collect(),
            book: Book::of(snap),
            skus: snap.skus.clone(),
            roles: roles_of(snap),
            results,
            found,
            failed,
            idle: 0,
            unsettled: rules
                .rules
                .iter()
                .map(|r| out.unsettled.contains(&r.name))
                .collect(),
        })
    }

    /// The same, with the basis the next evaluation must find unchanged
    /// (known once this one is recorded).
    pub fn rebased(self, basis: String) -> Memo {
        Memo { basis, ..self }
    }

    /// The day of the evaluation remembered.
    pub fn as_of(&self) -> NaiveDate {
        self.as_of
    }

    /// The pairs an evaluation of `snap` must run, given what changed
    /// `since` the evaluation remembered; Err says why everything must
    /// run instead.
    pub fn pick(
        &self,
        rules: &RuleSet,
        snap: &Snapshot,
        basis: &str,
        since: Since,
    ) -> Result<Pick, String> {
        if snap.as_of != self.as_of {
            return Err(format!("a new day ({} after {})", snap.as_of, self.as_of));
        }
        if basis != self.basis {
            return Err(
                "the rules, their settings, the config, the silences or the evaluations on record changed".into(),
            );
        }
        if snap.accounts.len() != self.placed.len()
            || snap
                .accounts
                .iter()
                .any(|a| !self.placed.contains_key(&a.id))
        {
            return Err("the accounts of the book changed".into());
        }
        if !snap.skus.starts_with(&self.skus) || !roles_of(snap).starts_with(&self.roles) {
            return Err("the SKUs or visit roles known were renumbered".into());
        }
        let touched: HashSet<&str> = since.accounts.iter().map(String::as_str).collect();
        // What changed of the book, as the bits of the rules that read it.
        let now = Book::of(snap);
        let mut book = self.book.changed(&now);
        if since.orders {
            book |= reads::HISTORY;
        }
        let reads: Vec<u16> = rules.rules.iter().map(rule_reads).collect();
        let mut why = Vec::new();
        let everywhere: Vec<bool> = rules
            .rules
            .iter()
            .zip(&reads)
            .enumerate()
            .map(|(i, (r, &b))| {
                let unsettled = self.unsettled.get(i).copied().unwrap_or(true);
                let on = b & book != 0 || unsettled;
                if on && r.enabled() {
                    why.push(if unsettled {
                        format!("{} (an alert cap or a sandbox limit last time)", r.name)
                    } else {
                        format!("{} ({})", r.name, reads::describe(b & book))
                    });
                }
                on
            })
            .collect();
        let all = everywhere.iter().any(|e| *e);
        let mut visit = Vec::new();
        for (i, a) in snap.accounts.iter().enumerate() {
            let mut changed = self
                .placed
                .get(&a.id)
                .map_or(reads::ALL, |p| p.changed(&Placed::of(a)));
            if touched.contains(a.id.as_str()) {
                changed |= reads::OWN;
            }
            if changed != 0 || all {
                visit.push((i, changed));
            }
        }
        let mut pick = Pick {
            seed: Vec::new(),
            reads,
            everywhere,
            visit,
            why,
            book: now,
        };
        pick.seed = self.seed(snap, &pick);
        Ok(pick)
    }

    /// Per rule, the alerts raised last time by the pairs `pick` does not
    /// run: a full run would raise them again, and they count towards
    /// `alerts.max_per_rule` before the pairs run now.
    fn seed(&self, snap: &Snapshot, pick: &Pick) -> Vec<usize> {
        let mut seed = vec![0; pick.reads.len()];
        let changed: HashMap<&str, u16> = pick
            .visit
            .iter()
            .map(|(i, c)| (snap.accounts[*i].id.as_str(), *c))
            .collect();
        for (id, kept) in &self.results {
            let c = changed.get(id.as_str()).copied().unwrap_or(0);
            for k in kept {
                // Held findings do not count towards the cap (`rules::run`).
                if matches!(k, Kept::Found { said, .. } if said.starts) && !pick.runs(k.rule(), c) {
                    seed[k.rule()] += 1;
                }
            }
        }
        seed
    }

    /// Whether the memo may be kept for the next evaluation: not when it
    /// holds more failures than [`MAX_KEPT_ERRORS`].
    pub fn keepable(&self) -> bool {
        self.failed <= MAX_KEPT_ERRORS
    }

    /// The outcome a full run of `snap` gives, as remembered: findings (not
    /// the idle ones, as a full evaluation reports them) and failures in a
    /// full run's order (accounts in the snapshot's order; within one, by
    /// rule).
    pub fn outcome(&self, rules: &RuleSet, snap: &Snapshot) -> Outcome {
        self.gather(rules, snap, true)
    }

    /// [`Memo::outcome`], without the findings unless `findings`: a small
    /// drop wants only the failures, and only when there are any.
    fn gather(&self, rules: &RuleSet, snap: &Snapshot, findings: bool) -> Outcome {
        let mut out = Outcome::default();
        for a in &snap.accounts {
            for k in self.results.get(a.id.as_str()).into_iter().flatten() {
                let listed = match k {
                    Kept::Found { idle, .. } => findings && !idle,
                    Kept::Failed { .. } => true,
                };
                if listed {
                    put_back(&mut out, rules, a, k);
                }
            }
        }
        out
    }
}

/// Rule names to their index in `rules`.
fn rule_index(rules: &RuleSet) -> HashMap<&str, usize> {
    rules
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| (&*r.name, i))
        .collect()
}

/// `out`'s results as kept, each with its account's id, in `out`'s order
/// (a rule not in `index` as `usize::MAX`).
fn kept_of<'o>(
    index: &HashMap<&str, usize>,
    out: &'o Outcome,
) -> impl Iterator<Item = (&'o str, Kept)> {
    let rule = |name: &str| index.get(name).copied().unwrap_or(usize::MAX);
    let found = out.findings.iter().map(move |f| {
        let k = Kept::Found {
            rule: rule(&f.rule),
            said: f.said.clone(),
            idle: false,
        };
        (f.account.id.as_str(), k)
    });
    let failed = out.errors.iter().map(move |e| {
        let k = Kept::Failed {
            rule: rule(&e.rule),
            message: e.message.clone(),
        };
        (e.account_id.as_str(), k)
    });
    found.chain(failed)
}

/// Counts `k` into the findings or failures kept, up or down.
fn count(k: &Kept, found: &mut usize, failed: &mut usize, up: bool) {
    let n = match k {
        Kept::Found { .. } => found,
        Kept::Failed { .. } => failed,
    };
    *n = if up { *n + 1 } else { n.saturating_sub(1) };
}
