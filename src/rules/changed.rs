//! Rules only where something changed: which rule x account pairs an
//! evaluation must run when nothing but new data arrived since the last
//! evaluation of the same day, and what a full run would find, kept up to
//! date from the pairs run now.
//!
//! A rule's run for an account is a function of what it reads: the
//! account's own data (order lines, visits), the values the book decides
//! for it (tier, prev_tier, rank, share, share_above; the tier history
//! behind `tier_ago` and the single-measure rankings; its stock cover),
//! the `portfolio`, the as-of date, and the rule set with its settings.
//! Each run records what it actually read (`rules::reads`: every getter of
//! the rule API notes its key), and [`Memo`] keeps, from the last
//! evaluation, each account's book-decided values and history values its
//! pairs read, the book's figures the pairs read (to the bit), what each
//! pair read at its last run, a fingerprint of the rule set and the
//! results of every pair. [`Memo::pick`] runs a pair again when the
//! account's order lines were written since and its last run read them,
//! or its visits and it read those (the refresh's accounts; a rule that
//! reads only visits is not run again after a file of order lines, nor
//! one that reads only order lines after a file of visits), or when a
//! value the pair read at its last run changed: a rule that stopped early
//! after reading only values that did not move (its tier, a tier of 30
//! days ago) is not run again when the book's total moves; nor is a pair
//! whose only changed reads are its alerts' figures' (`alert(#{ figures:
//! Fn("name") })`): an alert's texts are written and mailed only with a
//! change of its lifecycle, which only a change of what decided it makes.
//! Every pair of an account whose tier moved runs: its alerts are stepped
//! (a silence may name a tier), and their texts may be written then.
//! Every other pair would give what it gave last time: [`Memo::update`]
//! puts the results of the pairs run in place of the remembered ones, so
//! the memo holds what the alerts' lifecycle observes of a full run's
//! results (each finding's key, severity and whether it may start; not its
//! texts, which only a pair run now writes) without one being assembled,
//! and says which pairs' alerts the lifecycle steps ([`Stepped`]): those
//! run whose results it observes otherwise now (another key or severity,
//! a finding more or less, a failure), and every pair of an account whose
//! tier moved. The others are observed as they were earlier the same day,
//! and the state machine run twice on one day with the same observation
//! changes nothing (`alerts::machine`'s test), so their alerts stay as
//! they are.
//!
//! A rule whose results depended on the order the accounts ran in (it
//! reached its alert cap, or was stopped at its sandbox limits:
//! `Outcome::unsettled`) runs for every account the next time, as in a
//! full run. Not exact, so everything runs: another day, another rule set
//! or config, another account list, SKU or role list, a block of accounts
//! that failed together (`Outcome::unsure`), and such a rule reaching its
//! cap or limits where it ran only for some accounts.
//! Reads the rule set and snapshots it is given; touches nothing else.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;

use super::finding::{Finding, Outcome, RunError, Said};
use super::reads;
use super::set::RuleSet;
use crate::metrics::{AccountMetrics, Snapshot};
use crate::model::Severity;

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
/// day: the accounts whose order lines, and those whose visits, were
/// written, and whether any order
/// line was (which moves the book's rankings and history), and from
/// which day.
#[derive(Debug, Clone, Copy)]
pub struct Since<'a> {
    /// The accounts whose order lines were written.
    pub accounts: &'a [String],
    /// The accounts whose visits were written.
    pub visited: &'a [String],
    pub orders: bool,
    /// The earliest date of an order line written, replaced or deleted
    /// (its old date or its new one), when known. A line dated the
    /// snapshot's day moves no earlier day's ranking; None with `orders`
    /// is taken as a line of any day.
    pub orders_from: Option<NaiveDate>,
}

impl<'a> Since<'a> {
    /// What a refresh of the metrics in memory read again, when it read
    /// only some accounts again (None after it read everything, or a
    /// dataset: then everything runs).
    pub fn after(r: &'a crate::metrics::live::Refresh) -> Option<Since<'a>> {
        (r.reloaded.is_none() && r.datasets.is_empty()).then(|| Since {
            accounts: &r.order_accounts,
            visited: &r.visit_accounts,
            orders: r.orders > 0,
            orders_from: r.orders_from,
        })
    }

    /// Whether an order line dated before `day` was written.
    fn orders_before(&self, day: NaiveDate) -> bool {
        self.orders && self.orders_from.is_none_or(|d| d < day)
    }
}

/// One result of one pair, kept without the account's metrics: of a
/// finding, what the alerts' lifecycle observes of it ([`Seen`]).
/// `idle`: a held finding (`starts: false`) that kept no alert open, which
/// the evaluation does not count or list as a warning ([`Memo::mark_idle`]).
#[derive(Debug, Clone)]
enum Kept {
    Found { rule: usize, seen: Seen, idle: bool },
    Failed { rule: usize, message: String },
}

/// What the alerts' lifecycle observes of a finding: its key, severity
/// and whether it may start an alert. Its texts (title, figures, action)
/// are written only with a change of its alert's lifecycle, which the
/// same observation on the same day does not make, and a pair whose
/// alerts are stepped runs first (see [`Memo::pick`]): the memo keeps no
/// texts (at 100,000 accounts, 87,000 findings' texts were about 49 MiB).
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    key: Box<str>,
    severity: Severity,
    starts: bool,
}

impl Seen {
    fn of(said: &Said) -> Seen {
        // A field added to `Said` must be placed here (the pattern names
        // every one).
        let Said {
            key,
            severity,
            starts,
            title: _,
            figures: _,
            units: _,
            action: _,
        } = said;
        Seen {
            key: key.as_str().into(),
            severity: *severity,
            starts: *starts,
        }
    }
}

impl Kept {
    fn rule(&self) -> usize {
        match self {
            Kept::Found { rule, .. } | Kept::Failed { rule, .. } => *rule,
        }
    }
}

/// Puts a kept result of account `a` back into `out` as what a run gives;
/// a finding as the memo keeps it (no texts: see [`Seen`]).
fn put_back(out: &mut Outcome, rules: &RuleSet, a: &Arc<AccountMetrics>, k: &Kept) {
    let Some(rule) = rules.rules.get(k.rule()).map(|r| r.name.clone()) else {
        return;
    };
    match k {
        Kept::Found { seen, .. } => out.findings.push(Finding {
            rule,
            account: a.clone(),
            said: Arc::new(Said {
                key: seen.key.to_string(),
                severity: seen.severity,
                starts: seen.starts,
                title: String::new(),
                figures: Vec::new(),
                units: Arc::default(),
                action: Arc::from(""),
            }),
        }),
        Kept::Failed { message, .. } => out.errors.push(RunError {
            rule,
            account_id: a.id.to_string(),
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
    /// The accounts remembered: the tables below are by their place here.
    places: Places,
    /// Per account: its book-decided values and what its pairs read.
    placed: Box<[Placed]>,
    book: Book,
    skus: Arc<Vec<String>>,
    roles: Vec<Arc<str>>,
    /// Per account: its pairs' results in a full run's order (most have
    /// none: an empty list holds no allocation).
    results: Box<[Vec<Kept>]>,
    /// How many of them are findings, how many failures, and how many of
    /// the findings are idle.
    found: usize,
    failed: usize,
    idle: usize,
    /// Per rule: its results depended on the order accounts ran in (see
    /// `Outcome::unsettled`); it runs for every account the next time.
    unsettled: Vec<bool>,
}

/// How [`Memo::pick`] splits the accounts between threads to find what
/// changed for each: `block` accounts at a time from a shared counter
/// (the large accounts, first in the book's order, read the most
/// history), on at most `threads` threads.
#[derive(Debug, Clone, Copy)]
struct Split {
    block: usize,
    threads: usize,
}

impl Split {
    /// Blocks of 1,024 accounts on every core of the machine.
    fn machine() -> Split {
        Split {
            block: 1024,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// What changed for one account since the evaluation remembered.
struct Change {
    /// Its place in the memo's tables.
    place: usize,
    /// The [`reads`] bits of what changed for it, and of the book.
    changed: u32,
    /// Whether its pairs read more history than is kept: of today, of
    /// earlier days only.
    overflowed: (bool, bool),
}

/// The pairs to run: see [`Memo::pick`].
#[derive(Debug)]
pub struct Pick {
    /// How many rules.
    rules: usize,
    /// Per rule, whether it runs for every account.
    everywhere: Vec<bool>,
    /// The accounts to visit (indexes into the snapshot, in its order),
    /// each with what changed for it ([`reads`] bits).
    pub(super) visit: Vec<(usize, u32)>,
    /// Per visit, the account's place in the memo's tables.
    places: Vec<usize>,
    /// Per visit, per rule: whether the pair runs.
    run: Vec<bool>,
    /// Per rule, the alerts its pairs not run raised last time: they count
    /// towards `alerts.max_per_rule` as they would in a full run.
    pub(super) seed: Vec<usize>,
    /// Per rule that runs anywhere: how many pairs, and why, for the log.
    pub why: Vec<String>,
    /// Accounts whose pairs read more history than is kept: of today
    /// (any order line runs them again), of earlier days only (an order
    /// line dated before today does), for the log.
    pub overflowed: (usize, usize),
    /// Whether an order line dated before the snapshot's day was written
    /// since the evaluation remembered ([`Since::orders_before`]).
    past: bool,
    /// The book now, for the memo brought up to date.
    book: Book,
}

impl Pick {
    /// Whether rule `rule` runs for the `k`th account visited.
    pub(super) fn runs(&self, k: usize, rule: usize) -> bool {
        self.run.get(k * self.rules + rule).copied().unwrap_or(true)
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
        (0..self.visit.len())
            .filter(|k| (0..self.rules).any(|r| self.runs(*k, r)))
            .count()
    }
}

/// The accounts a memo remembers, in the order of the snapshot it was
/// made from, with their ids shared with the snapshot's (not a `String`
/// per account for each of two tables by id: at 100,000 accounts those
/// took about 20 MiB), and where each one is by id. A snapshot's accounts
/// are in rank order, so a later one may hold them elsewhere.
#[derive(Debug)]
struct Places {
    ids: Box<[Arc<str>]>,
    by_id: HashMap<Arc<str>, u32>,
}

impl Places {
    /// `snap`'s accounts; None when two have the same id.
    fn of(snap: &Snapshot) -> Option<Places> {
        let ids: Box<[Arc<str>]> = snap.accounts.iter().map(|a| a.id.clone()).collect();
        let by_id: HashMap<Arc<str>, u32> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i as u32))
            .collect();
        (by_id.len() == ids.len()).then_some(Places { ids, by_id })
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    /// The place of account `id`.
    fn find(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).map(|at| *at as usize)
    }

    /// The place of a snapshot's `i`th account, `id` (`i` when it did not
    /// move in the order).
    fn at(&self, i: usize, id: &Arc<str>) -> Option<usize> {
        match self.ids.get(i) {
            // The same id, most often the same allocation (the snapshots
            // of a day share their accounts' ids).
            Some(x) if Arc::ptr_eq(x, id) || **x == **id => Some(i),
            _ => self.find(id),
        }
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
        let n = rules.rules.len();
        if out.reads.bits.len() != n * snap.accounts.len() {
            return None;
        }
        let index = rule_index(rules);
        let places = Places::of(snap)?;
        let mut results: Box<[Vec<Kept>]> = (0..places.len()).map(|_| Vec::new()).collect();
        let (mut found, mut failed) = (0, 0);
        for (id, k, _) in kept_of(&index, out) {
            // (Every result is of an account of the snapshot.)
            let at = places.find(id)?;
            if k.rule() == usize::MAX {
                return None;
            }
            count(&k, &mut found, &mut failed, true);
            results[at].push(k);
        }
        // A full run's order within an account: by rule, each rule's
        // alerts in the order raised (a stable sort keeps it).
        for v in results.iter_mut().filter(|v| !v.is_empty()) {
            v.sort_by_key(Kept::rule);
            v.shrink_to_fit();
        }
        Some(Memo {
            as_of: snap.as_of,
            basis,
            places,
            placed: snap
                .accounts
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let pairs = out.reads.bits[i * n..(i + 1) * n].into();
                    let keys: Vec<_> = book::keys_of(&out.reads, i).collect();
                    let at = (&*snap.portfolio, snap.end());
                    Placed::of(a, at, pairs, &keys)
                })
                .collect(),
            book: Book::of(&snap.portfolio, snap.end(), &out.reads),
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
        self.pick_split(rules, snap, basis, since, Split::machine())
    }

    /// [`Memo::pick`], what changed for each account found as `split`
    /// says: the same pick however it splits.
    fn pick_split(
        &self,
        rules: &RuleSet,
        snap: &Snapshot,
        basis: &str,
        since: Since,
        split: Split,
    ) -> Result<Pick, String> {
        if snap.as_of != self.as_of {
            return Err(format!("a new day ({} after {})", snap.as_of, self.as_of));
        }
        if basis != self.basis {
            return Err(
                "the rules, their settings, the config, the silences or the evaluations on record changed".into(),
            );
        }
        // As many accounts, each of them at its place (in `visits`): the
        // same accounts, in the same order.
        if snap.accounts.len() != self.places.len() {
            return Err("the accounts of the book changed".into());
        }
        if !snap.skus.starts_with(&self.skus) || !roles_of(snap).starts_with(&self.roles) {
            return Err("the SKUs or visit roles known were renumbered".into());
        }
        let n = rules.rules.len();
        let moved = since.orders || !since.accounts.is_empty();
        let clock = std::time::Instant::now();
        // The days of the tier history the book's figures and the
        // accounts' values read below, ranked ahead on two threads (after a
        // re-export, every day the rules look back at is ranked again).
        if let Some(h) = &snap.portfolio.history {
            h.warm(
                self.book
                    .wanted()
                    .chain(self.placed.iter().flat_map(Placed::wanted)),
            );
        }
        let warmed = clock.elapsed();
        // What changed of the book, as the bits of the pairs that read it.
        let (book, now) = self.book.changed(&snap.portfolio, snap.end(), moved);
        let booked = clock.elapsed();
        let everywhere: Vec<bool> = (0..n)
            .map(|i| self.unsettled.get(i).copied().unwrap_or(true))
            .collect();
        let mut pick = Pick {
            rules: n,
            seed: Vec::new(),
            everywhere,
            visit: Vec::new(),
            places: Vec::new(),
            run: Vec::new(),
            why: Vec::new(),
            overflowed: (0, 0),
            past: since.orders_before(snap.as_of),
            book: now,
        };
        let tally = self.visits(snap, since, book, &mut pick, split)?;
        let visited = clock.elapsed();
        pick.why = rules
            .rules
            .iter()
            .zip(&tally)
            .enumerate()
            .filter(|(_, (r, t))| r.enabled() && t.0 > 0)
            .map(|(i, (r, (count, bits)))| {
                if pick.everywhere[i] {
                    format!(
                        "{} everywhere (an alert cap or a sandbox limit last time)",
                        r.name
                    )
                } else {
                    format!("{} {count} ({})", r.name, reads::describe(*bits))
                }
            })
            .collect();
        pick.seed = self.seed(&pick);
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        tracing::debug!(
            warm_ms = ms(warmed),
            book_ms = ms(booked - warmed),
            visits_ms = ms(visited - booked),
            seed_ms = ms(clock.elapsed() - visited),
            "the pick's parts"
        );
        Ok(pick)
    }

    /// Fills `pick`'s visits: each account with a pair to run (one whose
    /// last run read something that changed: `book`, what changed of the
    /// book, or of the account), or whose tier moved. Returns per rule how
    /// many pairs run and the bits that made them, for the log.
    fn visits(
        &self,
        snap: &Snapshot,
        since: Since,
        book: u32,
        pick: &mut Pick,
        split: Split,
    ) -> Result<Vec<(usize, u32)>, String> {
        let n = pick.rules;
        let mut tally = vec![(0usize, 0u32); n];
        let found = self.changes(snap, since, book, pick.past, split)?;
        let everywhere = pick.everywhere.iter().any(|e| *e);
        for (i, c) in found.into_iter().enumerate() {
            let Change {
                place,
                changed,
                overflowed: (all, earlier),
            } = c;
            pick.overflowed.0 += usize::from(all);
            pick.overflowed.1 += usize::from(earlier);
            // Nothing changed for it, and no rule runs everywhere: no pair
            // runs, and it is not visited.
            if changed == 0 && !everywhere {
                continue;
            }
            let p = &self.placed[place];
            let at = pick.run.len();
            let tier = changed & reads::TIER != 0;
            for (r, t) in tally.iter_mut().enumerate() {
                let read = p.pairs.get(r).copied().filter(|b| !b.is_empty());
                let why = match read {
                    _ if pick.everywhere[r] => reads::ALL,
                    // An account whose tier moved has every pair run: its
                    // alerts are stepped, and their texts may be written.
                    _ if tier => changed,
                    None => changed,
                    // What only its alerts' figures read runs nothing: they
                    // are written only with a change of what decided them.
                    Some(b) => b.decide & changed,
                };
                pick.run.push(why != 0);
                if why != 0 {
                    t.0 += 1;
                    t.1 |= why;
                }
            }
            // An account whose tier moved is visited even when none of its
            // pairs runs: its alerts are stepped (a silence may name a tier).
            if changed & reads::TIER != 0 || pick.run[at..].iter().any(|r| *r) {
                pick.visit.push((i, changed));
                pick.places.push(place);
            } else {
                pick.run.truncate(at);
            }
        }
        Ok(tally)
    }

    /// Per account of `snap`, in its order, what changed for it since the
    /// evaluation remembered ([`Change`]): every history value its pairs
    /// read looked up again, for every account after every file (a third
    /// of a small drop's evaluation at 100,000 accounts), so on as many
    /// threads as `split` allows, a block of accounts at a time;
    /// the same answers as one thread gives. Err when an account is not
    /// at a place of the memo's.
    fn changes(
        &self,
        snap: &Snapshot,
        since: Since,
        book: u32,
        past: bool,
        split: Split,
    ) -> Result<Vec<Change>, String> {
        // What of the accounts' own data was written, by place (an id the
        // memo does not know is no account of the snapshot's: at no place).
        let mut touched = vec![0u32; self.places.len()];
        for (ids, bit) in [(since.accounts, reads::OWN), (since.visited, reads::VISITS)] {
            for id in ids {
                if let Some(at) = self.places.find(id) {
                    touched[at] |= bit;
                }
            }
        }
        let size = split.block.max(1);
        let block = |b: usize| -> Result<Vec<Change>, String> {
            let lo = b.saturating_mul(size);
            let hi = lo.saturating_add(size).min(snap.accounts.len());
            (lo..hi)
                .map(|i| {
                    let a = &snap.accounts[i];
                    let Some(place) = self.places.at(i, &a.id) else {
                        return Err("the accounts of the book changed".to_string());
                    };
                    let p = &self.placed[place];
                    let changed = p.changed(a, (&snap.portfolio, snap.end()), since.orders, past)
                        | book
                        | touched[place];
                    Ok(Change {
                        place,
                        changed,
                        overflowed: p.overflowed(),
                    })
                })
                .collect()
        };
        let blocks = snap.accounts.len().div_ceil(size);
        let threads = split.threads.min(blocks);
        let mut parts: Vec<(usize, Result<Vec<Change>, String>)> = if threads <= 1 {
            (0..blocks).map(|b| (b, block(b))).collect()
        } else {
            let next = std::sync::atomic::AtomicUsize::new(0);
            let take = || {
                let mut done = Vec::new();
                loop {
                    let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if b >= blocks {
                        return done;
                    }
                    done.push((b, block(b)));
                }
            };
            std::thread::scope(|s| {
                let others: Vec<_> = (1..threads).map(|_| s.spawn(take)).collect();
                let mut parts = take();
                for h in others {
                    // A panic is a bug: it goes on as it would on one thread.
                    parts.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
                }
                parts
            })
        };
        parts.sort_unstable_by_key(|p| p.0);
        let mut out = Vec::with_capacity(snap.accounts.len());
        for (_, part) in parts {
            out.extend(part?);
        }
        Ok(out)
    }

    /// Per rule, the alerts raised last time by the pairs `pick` does not
    /// run: a full run would raise them again, and they count towards
    /// `alerts.max_per_rule` before the pairs run now.
    fn seed(&self, pick: &Pick) -> Vec<usize> {
        let mut seed = vec![0; pick.rules];
        // By place in the memo's tables.
        let mut visited: Vec<Option<usize>> = vec![None; self.places.len()];
        for (k, at) in pick.places.iter().enumerate() {
            visited[*at] = Some(k);
        }
        for (kept, k) in self.results.iter().zip(visited) {
            for r in kept {
                // Held findings do not count towards the cap (`rules::run`).
                let runs = k.is_some_and(|k| pick.runs(k, r.rule()));
                if matches!(r, Kept::Found { seen, .. } if seen.starts) && !runs {
                    seed[r.rule()] += 1;
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
        for (i, a) in snap.accounts.iter().enumerate() {
            let kept = self.places.at(i, &a.id).map(|at| &self.results[at]);
            for k in kept.into_iter().flatten() {
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

/// `out`'s results as kept, each with its account's id and, for a
/// finding, the finding itself (its texts, which the memo does not keep),
/// in `out`'s order (a rule not in `index` as `usize::MAX`).
fn kept_of<'o>(
    index: &HashMap<&str, usize>,
    out: &'o Outcome,
) -> impl Iterator<Item = (&'o str, Kept, Option<&'o Finding>)> {
    let rule = |name: &str| index.get(name).copied().unwrap_or(usize::MAX);
    let found = out.findings.iter().map(move |f| {
        let k = Kept::Found {
            rule: rule(&f.rule),
            seen: Seen::of(&f.said),
            idle: false,
        };
        (&*f.account.id, k, Some(f))
    });
    let failed = out.errors.iter().map(move |e| {
        let k = Kept::Failed {
            rule: rule(&e.rule),
            message: e.message.clone(),
        };
        (e.account_id.as_str(), k, None)
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

#[cfg(test)]
mod tests;
