//! Bringing the memo up to an evaluation that ran only some pairs
//! (`rules::changed`): the results of the pairs run put in place of the
//! remembered ones, the pairs whose alerts the lifecycle must step
//! ([`Stepped`]), what those pairs read now in place of what they read
//! last time, and the held findings that kept no alert open marked idle.
//! Touches nothing but the memo.

use std::collections::HashMap;

use super::{Kept, Memo, Pick, Seen, count, kept_of, roles_of, rule_index};
use crate::metrics::Snapshot;
use crate::rules::finding::{Finding, Outcome, RunError};
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
        // The results of the pairs run, by account, each finding with its
        // texts: the stepped ones are handed over from here (the memo
        // keeps none).
        let mut fresh: HashMap<&str, Vec<(Kept, Option<&Finding>)>> = HashMap::new();
        for (id, k, f) in kept_of(&index, now) {
            fresh.entry(id).or_default().push((k, f));
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
            let (new, found): (Vec<Kept>, Vec<Option<&Finding>>) =
                fresh.remove(&*a.id).unwrap_or_default().into_iter().unzip();
            // A full run's order within the account: by rule, each rule's
            // in the order raised (a stable sort).
            let mut ran: Vec<(usize, &Finding)> = new
                .iter()
                .zip(found)
                .filter_map(|(k, f)| Some((k.rule(), f?)))
                .collect();
            ran.sort_by_key(|(r, _)| *r);
            // The alerts of an account whose tier moved are stepped for
            // every rule: a silence may name the tier (and every pair of
            // it ran: `Memo::pick`).
            let tier = c & reads::TIER != 0;
            let (results, moved) = self.replace(at, new, |r| pick.runs(k, r), tier);
            let stepped = |r: usize| tier || moved.contains(&r);
            let before = out.findings.len();
            out.findings.extend(
                ran.into_iter()
                    .filter(|(r, _)| stepped(*r))
                    .map(|(_, f)| f.clone()),
            );
            // Every finding stepped is handed over with its texts: none of
            // a pair that did not run (the memo has no texts to give).
            let kept = results
                .iter()
                .filter(|k| matches!(k, Kept::Found { .. }) && stepped(k.rule()))
                .count();
            if out.findings.len() - before != kept && out.incomplete.is_none() {
                debug_assert!(false, "{}: a finding stepped whose pair did not run", a.id);
                out.incomplete = Some(format!(
                    "{}: a finding would be stepped whose pair did not run",
                    a.id
                ));
            }
            for (r, rule) in rules.rules.iter().enumerate() {
                if rule.enabled() && stepped(r) {
                    out.pairs.push((rule.name.to_string(), a.id.to_string()));
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
                matches!(k, Kept::Found { rule, seen, idle: false, .. } if *rule == r && *seen.key == *f.key)
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
    /// Why these cannot stand for a full run's step, when they cannot (a
    /// finding to step whose pair did not run: `Memo::pick` runs every
    /// pair whose alerts are stepped, so this is a fault of its own).
    pub incomplete: Option<String>,
}

/// What the alerts' lifecycle observes of a result: a failure, or a
/// finding's key, severity and whether it may start an alert ([`Seen`]).
fn observed(k: &Kept) -> Option<&Seen> {
    match k {
        Kept::Found { seen, .. } => Some(seen),
        Kept::Failed { .. } => None,
    }
}

/// Whether rule `r`'s results in `a` and in `b` are observed alike.
fn same_observed(a: &[Kept], b: &[Kept], r: usize) -> bool {
    let a = a.iter().filter(|k| k.rule() == r).map(observed);
    a.eq(b.iter().filter(|k| k.rule() == r).map(observed))
}
