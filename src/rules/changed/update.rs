//! Bringing the memo up to an evaluation that ran only some pairs
//! (`rules::changed`): the results of the pairs run put in place of the
//! remembered ones, the pairs whose alerts the lifecycle must step
//! ([`Stepped`]), what those pairs read now in place of what they read
//! last time, and the held findings that kept no alert open marked idle.
//! Touches nothing but the memo.

use std::collections::HashMap;

use super::{Kept, Memo, Pick, count, kept_of, roles_of, rule_index};
use crate::metrics::Snapshot;
use crate::model::Severity;
use crate::rules::finding::{Finding, Outcome, RunError, Said};
use crate::rules::reads;
use crate::rules::set::RuleSet;

impl Memo {
    /// Brings the memo up to this evaluation in place, `now` being the
    /// outcome of the pairs `pick` ran (settled: see [`Pick::settled`]):
    /// their results replace the remembered ones, and the book-decided
    /// values, the book and the rules' order dependence are this
    /// evaluation's. The memo then holds what a full run of `snap` would
    /// find, without one being put together. Returns what the alerts' step
    /// needs: see [`Stepped`].
    pub fn update(
        &mut self,
        rules: &RuleSet,
        snap: &Snapshot,
        pick: &Pick,
        now: &Outcome,
    ) -> Stepped {
        let index = rule_index(rules);
        let mut fresh: HashMap<&str, Vec<Kept>> = HashMap::new();
        for (id, k) in kept_of(&index, now) {
            fresh.entry(id).or_default().push(k);
        }
        let mut out = Stepped::default();
        let n = rules.rules.len();
        for (k, &(i, c)) in pick.visit.iter().enumerate() {
            let a = &snap.accounts[i];
            let at = pick.places[k];
            self.placed[at].update(
                a,
                (&snap.portfolio, snap.end()),
                &now.reads,
                k,
                n,
                pick.past,
            );
            let new = fresh.remove(&*a.id).unwrap_or_default();
            // The alerts of an account whose tier moved are stepped for
            // every rule: a silence may name the tier.
            let tier = c & reads::TIER != 0;
            let (results, moved) = self.replace(at, new, |r| pick.runs(k, r), tier);
            let stepped = |r: usize| tier || moved.contains(&r);
            for k in results.iter().filter(|k| stepped(k.rule())) {
                if let Kept::Found {
                    rule, said, stale, ..
                } = k
                    && let Some(r) = rules.rules.get(*rule)
                {
                    // Its texts may be written now: a stale one ran
                    // (`Memo::visits`).
                    debug_assert!(!stale, "{} for {}: stale figures stepped", r.name, a.id);
                    out.findings.push(Finding {
                        rule: r.name.clone(),
                        account: a.clone(),
                        said: said.clone(),
                    });
                }
            }
            for (r, rule) in rules.rules.iter().enumerate() {
                if rule.enabled() && stepped(r) {
                    out.pairs.push((rule.name.to_string(), a.id.to_string()));
                }
            }
        }
        for &(at, r) in &pick.stale {
            for k in &mut self.results[at] {
                if let Kept::Found { rule, stale, .. } = k
                    && *rule == r
                {
                    *stale = true;
                }
            }
        }
        self.book = pick.book.clone();
        self.book.add(&snap.portfolio, snap.end(), &now.reads);
        self.skus = snap.skus.clone();
        self.roles = roles_of(snap);
        self.unsettled = rules
            .rules
            .iter()
            .map(|r| now.unsettled.contains(&r.name))
            .collect();
        // The stepped findings are not idle until the step says so.
        out.others = (self.found - self.idle).saturating_sub(out.findings.len());
        if self.failed > 0 {
            out.errors = self.gather(rules, snap, false).errors;
        }
        out
    }

    /// The results of the account at place `at`, those of the rules `ran` replaced by `new`
    /// (its results now), in a full run's order; and the rules that ran
    /// whose results the alerts' lifecycle observes otherwise now
    /// ([`observed`]). With `all` (every pair of the account is stepped),
    /// none of its findings is idle any more until the step says so.
    fn replace(
        &mut self,
        at: usize,
        new: Vec<Kept>,
        ran: impl Fn(usize) -> bool,
        all: bool,
    ) -> (&[Kept], Vec<usize>) {
        let results = &mut self.results[at];
        // Most accounts: the rules that ran found nothing, then or now.
        if new.is_empty() && !all && !results.iter().any(|k| ran(k.rule())) {
            return (&self.results[at], Vec::new());
        }
        let (gone, stay): (Vec<Kept>, Vec<Kept>) = std::mem::take(results)
            .into_iter()
            .partition(|k| ran(k.rule()));
        let mut ran: Vec<usize> = gone.iter().chain(&new).map(Kept::rule).collect();
        ran.sort_unstable();
        ran.dedup();
        let (alike, moved): (Vec<usize>, Vec<usize>) = ran
            .into_iter()
            .partition(|&r| same_observed(&gone, &new, r));
        let mut new = new;
        for k in &gone {
            count(k, &mut self.found, &mut self.failed, false);
            if matches!(k, Kept::Found { idle: true, .. }) {
                self.idle -= 1;
            }
        }
        // A result observed alike is not stepped (unless `all` are): it
        // stays idle if it was.
        for r in alike.into_iter().filter(|_| !all) {
            let was = gone.iter().filter(|k| k.rule() == r);
            for (k, old) in new.iter_mut().filter(|k| k.rule() == r).zip(was) {
                if let (Kept::Found { idle, .. }, Kept::Found { idle: true, .. }) = (k, old) {
                    *idle = true;
                    self.idle += 1;
                }
            }
        }
        for k in &new {
            count(k, &mut self.found, &mut self.failed, true);
        }
        *results = stay;
        for k in results.iter_mut().filter(|_| all) {
            if let Kept::Found {
                idle: idle @ true, ..
            } = k
            {
                *idle = false;
                self.idle -= 1;
            }
        }
        results.extend(new);
        // By rule, each rule's in the order raised (a stable sort).
        results.sort_by_key(Kept::rule);
        results.shrink_to_fit();
        (&self.results[at], moved)
    }

    /// Marks `idle`'s findings (as the alerts' step handed them over: held,
    /// with no alert open) as idle: not counted or listed as warnings in
    /// this evaluation nor, while their pair is not stepped, in the next.
    pub fn mark_idle(&mut self, rules: &RuleSet, idle: &[Finding]) {
        let index = rule_index(rules);
        for f in idle {
            let Some(&r) = index.get(&*f.rule) else {
                continue;
            };
            let at = self.places.find(&f.account.id);
            let kept = at.map(|at| &mut self.results[at]);
            let first = kept.into_iter().flatten().find(|k| {
                matches!(k, Kept::Found { rule, said, idle: false, .. } if *rule == r && said.key == f.key)
            });
            if let Some(Kept::Found { idle, .. }) = first {
                *idle = true;
                self.idle += 1;
            }
        }
    }
}

/// What an evaluation that ran only some pairs hands to the alerts' step
/// ([`Memo::update`]): the alerts of the pairs it stepped, and of those
/// only, may change (the others are observed as earlier the same day, and
/// a second step changes nothing: `alerts::machine`'s test).
#[derive(Debug, Default)]
pub struct Stepped {
    /// The findings of the pairs stepped (those run whose observation
    /// changed, and every pair of an account whose tier moved), in a full
    /// run's order.
    pub findings: Vec<Finding>,
    /// Every failure a full run would report, in its order.
    pub errors: Vec<RunError>,
    /// How many findings of the pairs not stepped count as warnings (those
    /// not idle).
    pub others: usize,
    /// The pairs stepped: (rule, account).
    pub pairs: Vec<(String, String)>,
}

/// What the alerts' lifecycle observes of a result: a failure, or a
/// finding's key, severity and whether it may start an alert. Its texts are written only with a change
/// of its alert's lifecycle, which the same observation on the same day
/// does not make. A field added to [`Said`] must be placed here (the
/// pattern names every one).
fn observed(k: &Kept) -> Option<(&str, Severity, bool)> {
    match k {
        Kept::Found { said, .. } => {
            let Said {
                key,
                severity,
                starts,
                title: _,
                figures: _,
                units: _,
                action: _,
            } = &**said;
            Some((key.as_str(), *severity, *starts))
        }
        Kept::Failed { .. } => None,
    }
}

/// Whether rule `r`'s results in `a` and in `b` are observed alike.
fn same_observed(a: &[Kept], b: &[Kept], r: usize) -> bool {
    let a = a.iter().filter(|k| k.rule() == r).map(observed);
    a.eq(b.iter().filter(|k| k.rule() == r).map(observed))
}
