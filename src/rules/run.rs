//! Running the rules: every enabled rule against every account of a
//! metrics snapshot, in parallel over the machine's cores, each thread
//! with its own [`Runner`] (engine, script copies, caches). A rule whose
//! tiers or needs exclude an account is silent for it without running; a
//! run's alerts are capped per account and per rule; a rule stopped at its
//! sandbox limits again and again is set aside for the evaluation; a panic
//! fails the accounts of its block, never drops them. Reads the snapshot
//! it is given; writes nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rhai::{Engine, EvalAltResult, ImmutableString, Scope};

use super::api::{self, take_raised};
use super::changed::Pick;
use super::finding::{Outcome, RunError};
use super::reads::{self, Read};
use super::rhai_internals::{Compiled, account_intact};
use super::sandbox::{
    Shared, describe_runtime, engine_for, forget_prints, is_stop, report_print, start_run,
};
use super::set::{Rule, RuleSet};
use super::settings::{has_bits, tier_bit};
use crate::metrics::{AccountMetrics, Portfolio, Snapshot};
use crate::model::dates::Day;

/// Accounts a thread takes at a time from the shared counter.
const BLOCK: usize = 256;

/// A thread's means to run the rules: see [`RuleSet::runner`].
pub struct Runner<'r> {
    rules: &'r RuleSet,
    engine: Engine,
    compiled: Vec<Compiled>,
    shared: Shared,
}

impl<'r> Runner<'r> {
    /// Every rule for every account of `snap`, on this thread.
    pub fn evaluate(&mut self, snap: &Snapshot) -> Outcome {
        // A runner kept for many evaluations (the backtest's days) counts
        // each one's alerts afresh.
        for c in self.shared.raised.iter() {
            c.store(0, Ordering::Relaxed);
        }
        let mut day = self.day(snap);
        // Nothing keeps what the pairs read: not recorded.
        day.track = false;
        let out = day.run(&snap.accounts, None);
        self.shared.report_dropped();
        out
    }

    /// Ready to run accounts of `snap`: a scope holding its `as_of` and
    /// portfolio.
    fn day<'a>(&'a mut self, snap: &Snapshot) -> AtSnapshot<'a, 'r> {
        let end = snap.end();
        // One scope per snapshot and thread: the shared constants stay,
        // each account is pushed once, and each run rewinds what the
        // script declared.
        let scope = snapshot_scope(snap, Arc::new((*snap.portfolio).clone()), false);
        let base = scope.len();
        let strikes = vec![0; self.compiled.len()];
        AtSnapshot {
            runner: self,
            scope,
            base,
            end,
            book: snap.portfolio.data_bits(),
            strikes,
            track: true,
        }
    }
}

/// A scope with what every rule sees of `snap` besides the account:
/// `as_of` and `portfolio` (the given handle of the snapshot's).
pub(super) fn snapshot_scope(
    snap: &Snapshot,
    portfolio: Arc<Portfolio>,
    explain: bool,
) -> Scope<'static> {
    api::set_as_of(snap.as_of, explain);
    let mut scope = Scope::new();
    scope.push_constant(
        "as_of",
        ImmutableString::from(snap.as_of.format("%Y-%m-%d").to_string()),
    );
    scope.push_constant(
        "portfolio",
        api::Book {
            p: portfolio,
            end: snap.end(),
            explain,
        },
    );
    scope
}

/// A [`Runner`] at one snapshot.
struct AtSnapshot<'a, 'r> {
    runner: &'a mut Runner<'r>,
    scope: Scope<'static>,
    base: usize,
    end: Day,
    /// The kinds of data the book has (`Portfolio::data_bits`).
    book: u8,
    /// Per rule: accounts in a row on which its run was stopped at a
    /// sandbox limit (operations, memory). At [`MAX_STRIKES`] the rule is
    /// not run again in this evaluation on this thread: each such run costs
    /// up to a million operations or 32 MiB of allocation.
    strikes: Vec<u32>,
    /// Whether what each pair reads is recorded into the outcome
    /// (`Outcome::reads`).
    track: bool,
}

/// See [`AtSnapshot::strikes`].
pub const MAX_STRIKES: u32 = 5;

impl AtSnapshot<'_, '_> {
    /// Every rule for each of `accounts`, in order; with `pick`, only the
    /// rules it picks for each (the accounts are its visits from the
    /// given one on).
    fn run(&mut self, accounts: &[Arc<AccountMetrics>], pick: Option<(&Pick, usize)>) -> Outcome {
        let mut out = Outcome::default();
        for (k, m) in accounts.iter().enumerate() {
            // SIGTERM: stop between accounts; the run in progress stops
            // at its next operation (the progress callback).
            if self.runner.shared.stopped() {
                out.interrupted = true;
                break;
            }
            // Tests make an evaluation panic with an account named so.
            #[cfg(test)]
            if m.id.starts_with("PANIC") {
                panic!("injected for account {}", m.id);
            }
            let only = pick.map(|(p, first)| (p, first + k));
            self.account(m, only, &mut out);
            if out.interrupted {
                break;
            }
        }
        out
    }

    /// Every rule for one account (with `only`, the rules the pick runs
    /// for its visit), into `out`.
    fn account(
        &mut self,
        m: &Arc<AccountMetrics>,
        only: Option<(&Pick, usize)>,
        out: &mut Outcome,
    ) {
        let bit = tier_bit(m.tier.as_str());
        let has = has_bits(m);
        let book = self.book;
        // `account` is a plain variable, not a constant: a method call on a
        // constant makes Rhai copy the value first. It is pushed once per
        // account, and again before a run only when a script changed it, so
        // no script can leave a changed `account` behind for the next rule.
        let mut pushed = false;
        let rules = self.runner.rules;
        let at = (out.reads.bits.len() / rules.rules.len().max(1)) as u32;
        if self.track {
            out.reads
                .bits
                .extend(std::iter::repeat_n(Read::default(), rules.rules.len()));
        }
        for (i, rule) in rules.rules.iter().enumerate() {
            if only.is_some_and(|(p, k)| !p.runs(k, i)) {
                continue;
            }
            out.runs += 1;
            let before = filter_reads(rule);
            if self.track {
                out.reads.bits[at as usize * rules.rules.len() + i] = Read {
                    decide: before,
                    figures: 0,
                };
            }
            // A rule whose tiers exclude the account, or that needs data
            // the account does not have, is silent for it without running
            // the script.
            if rule.mask & bit == 0 || rule.needs & !has != 0 || rule.book_needs & !book != 0 {
                continue;
            }
            if self.strikes[i] >= MAX_STRIKES {
                out.unsettle(&rule.name);
                out.errors.push(RunError {
                    rule: rule.name.clone(),
                    account_id: m.id.to_string(),
                    message: format!(
                        "not run: the rule was stopped at its limits (operations or memory) for {MAX_STRIKES} accounts in a row in this evaluation; the account's alerts are left as they were"
                    ),
                });
                continue;
            }
            self.push_account(m, &mut pushed);
            reads::start(before);
            let ok = self.script(i, rule, m, out);
            if self.track {
                let mut keys = Vec::new();
                let bits = reads::finish(&mut keys, &mut out.reads.book);
                out.reads.bits[at as usize * rules.rules.len() + i] = bits;
                out.reads.keys.extend(keys.into_iter().map(|k| (at, k)));
            }
            if !ok {
                out.interrupted = true;
                break;
            }
        }
    }

    /// Puts `account` in the scope for `m`: pushed once, again only when a
    /// script changed it (see [`account_intact`]).
    fn push_account(&mut self, m: &Arc<AccountMetrics>, pushed: &mut bool) {
        let scope = &mut self.scope;
        if *pushed {
            scope.rewind(self.base + 1);
        }
        if !*pushed || !account_intact(scope, m) {
            scope.rewind(self.base);
            scope.push("account", api::Account::new(m.clone(), self.end, false));
            *pushed = true;
        }
    }

    /// Runs rule `i`'s script for `m`, into `out`; false when the stop
    /// flag ended the run (not the rule's fault, and not an outcome).
    fn script(
        &mut self,
        i: usize,
        rule: &Rule,
        m: &Arc<AccountMetrics>,
        out: &mut Outcome,
    ) -> bool {
        start_run();
        out.scripts += 1;
        let began = std::time::Instant::now();
        let result = self.runner.compiled[i].run(&self.runner.engine, &mut self.scope);
        let raised = take_raised();
        out.time_script(i, began.elapsed().as_nanos() as u64);
        report_print(&self.runner.shared, &rule.name, &m.id);
        match result {
            Ok(()) => {
                self.strikes[i] = 0;
                if raised.is_empty() {
                    return true;
                }
                // `alerts.max_per_rule`, counted across the evaluation's
                // threads as the alerts come (so no runaway rule piles them
                // up in memory). Alerts of accounts refused still count:
                // once over, the rule stays over for the rest of the
                // evaluation. Held ones (`starts: false`) start nothing
                // and do not count (each run's are bounded by
                // `alerts.max_per_account`).
                let cap = self.runner.rules.caps.per_rule;
                let starting = raised.iter().filter(|r| r.starts()).count();
                let before = self.runner.shared.raised[i].fetch_add(starting, Ordering::Relaxed);
                if before + starting <= cap {
                    for r in raised {
                        out.findings.push(r.finding(&rule.name, rule.severity, m));
                    }
                } else {
                    out.unsettle(&rule.name);
                    out.errors.push(RunError {
                        rule: rule.name.clone(),
                        account_id: m.id.to_string(),
                        message: format!(
                            "the rule raised more alerts in this evaluation than alerts.max_per_rule ({cap}) allows; those of this account were not recorded and stay as they were. Fix the rule, or raise the cap if so many warnings are meant"
                        ),
                    });
                }
            }
            Err(e) if is_stop(&e) => return false,
            Err(e) => {
                if matches!(
                    *e,
                    EvalAltResult::ErrorTooManyOperations(_) | EvalAltResult::ErrorTerminated(..)
                ) {
                    self.strikes[i] += 1;
                    out.unsettle(&rule.name);
                } else {
                    self.strikes[i] = 0;
                }
                out.errors.push(RunError {
                    rule: rule.name.clone(),
                    account_id: m.id.to_string(),
                    message: describe_runtime(&e, &rule.path),
                });
            }
        }
        true
    }
}

impl RuleSet {
    /// Runs every rule for every account of the snapshot, in parallel over
    /// the machine's cores. Findings come back in (account, rule) order.
    pub fn evaluate(&self, snap: &Snapshot) -> Outcome {
        self.evaluate_until(snap, Arc::default())
    }

    /// `evaluate`, stopped early once `stop` is set (the daemon's SIGTERM):
    /// the outcome is then `interrupted`.
    pub fn evaluate_until(&self, snap: &Snapshot, stop: Arc<AtomicBool>) -> Outcome {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        self.evaluate_shared(snap, threads, &Shared::until(stop))
    }

    /// `evaluate` on at most `threads` threads.
    ///
    /// Accounts are ranked largest first, and the large ones run more rules
    /// (tier filters), so fixed halves would leave one thread idle: threads
    /// take blocks of `BLOCK` accounts from a shared counter instead, and
    /// the blocks' outcomes are put back in account order.
    pub fn evaluate_with(&self, snap: &Snapshot, threads: usize) -> Outcome {
        self.evaluate_shared(snap, threads, &Shared::default())
    }

    fn evaluate_shared(&self, snap: &Snapshot, threads: usize, shared: &Shared) -> Outcome {
        self.evaluate_over(snap, &snap.accounts, None, threads, shared)
    }

    /// Runs the rules only for the pairs `pick` chose (see
    /// `rules::changed`): the accounts it visits, in the snapshot's order,
    /// each with the rules it picks for what changed for the account. The
    /// alerts the pairs not run raised last time count towards
    /// `alerts.max_per_rule` from the start, as in a full run.
    pub fn evaluate_picked(&self, snap: &Snapshot, pick: &Pick, stop: Arc<AtomicBool>) -> Outcome {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let accounts: Vec<Arc<AccountMetrics>> = pick
            .visit
            .iter()
            .map(|(i, _)| snap.accounts[*i].clone())
            .collect();
        let shared = Shared::until(stop);
        self.evaluate_over(snap, &accounts, Some((pick, 0)), threads, &shared)
    }

    /// The rules for `accounts` of `snap` (all of them, or those of a
    /// pick, with what changed for each) on at most `threads` threads.
    fn evaluate_over(
        &self,
        snap: &Snapshot,
        accounts: &[Arc<AccountMetrics>],
        pick: Option<(&Pick, usize)>,
        threads: usize,
        shared: &Shared,
    ) -> Outcome {
        let shared = &shared.for_rules(self.rules.len());
        if let Some((p, _)) = pick {
            for (count, seed) in shared.raised.iter().zip(&p.seed) {
                count.store(*seed, Ordering::Relaxed);
            }
        }
        let blocks = accounts.len().div_ceil(BLOCK);
        let threads = threads.max(1).min(blocks.max(1));
        if threads == 1 {
            // A panic (a bug, never a script's doing) fails every account:
            // their alerts stay as they were; none is taken as cleared.
            return std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut runner = self.runner_with(shared.clone());
                let out = runner.day(snap).run(accounts, pick);
                shared.report_dropped();
                out
            }))
            .unwrap_or_else(|p| self.failed(accounts, &panic_text(&*p)));
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut parts: Vec<(usize, Outcome)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let next = &next;
                    s.spawn(move || self.blocks(snap, accounts, pick, shared, next))
                })
                .collect();
            let mut parts = Vec::new();
            for h in handles {
                match h.join() {
                    Ok(done) => parts.extend(done),
                    Err(p) => tracing::error!("an evaluation thread stopped: {}", panic_text(&*p)),
                }
            }
            parts
        });
        // Blocks a stopped thread took are failed, never left out: an
        // account missing from the outcome would read as all clear.
        let have: std::collections::HashSet<usize> = parts.iter().map(|p| p.0).collect();
        for b in (0..blocks).filter(|b| !have.contains(b)) {
            let hi = ((b + 1) * BLOCK).min(accounts.len());
            let block = &accounts[b * BLOCK..hi];
            parts.push((b, self.failed(block, "its evaluation thread stopped")));
        }
        parts.sort_by_key(|p| p.0);
        let mut out = Outcome::default();
        // Each part's lists freed as they are moved, into lists of the
        // exact length: no growing by doubling while all of them are held.
        out.reserve_for(parts.iter().map(|p| &p.1));
        for (_, p) in parts {
            out.findings.extend(p.findings);
            out.errors.extend(p.errors);
            out.runs += p.runs;
            out.scripts += p.scripts;
            out.add_times(&p.script_ns);
            out.reads.append(p.reads, self.rules.len());
            out.interrupted |= p.interrupted;
            out.unsure |= p.unsure;
            for r in p.unsettled {
                out.unsettle(&r);
            }
        }
        shared.report_dropped();
        out
    }

    /// One evaluation thread: takes blocks of [`BLOCK`] accounts from
    /// `next` until none is left; returns each block's outcome with its
    /// number. A block that panics is failed as a whole, and the thread
    /// goes on with a fresh runner.
    fn blocks(
        &self,
        snap: &Snapshot,
        accounts: &[Arc<AccountMetrics>],
        pick: Option<(&Pick, usize)>,
        shared: &Shared,
        next: &std::sync::atomic::AtomicUsize,
    ) -> Vec<(usize, Outcome)> {
        let mut done = Vec::new();
        'fresh: loop {
            let mut runner = self.runner_with(shared.clone());
            let mut day = runner.day(snap);
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                let lo = b * BLOCK;
                if lo >= accounts.len() {
                    break 'fresh;
                }
                let hi = (lo + BLOCK).min(accounts.len());
                let block = &accounts[lo..hi];
                let part = pick.map(|(p, first)| (p, first + lo));
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    day.run(block, part)
                })) {
                    Ok(mut o) => {
                        // Held until every block is done: without the room
                        // each list grew into (up to twice its length).
                        o.shrink_to_fit();
                        done.push((b, o));
                    }
                    Err(p) => {
                        done.push((b, self.failed(block, &panic_text(&*p))));
                        continue 'fresh;
                    }
                }
            }
        }
        done
    }

    /// An outcome in which every enabled rule failed for each of
    /// `accounts`, because their evaluation stopped (`why`).
    fn failed(&self, accounts: &[Arc<AccountMetrics>], why: &str) -> Outcome {
        let mut out = Outcome {
            unsure: true,
            ..Outcome::default()
        };
        for m in accounts {
            for rule in self.rules.iter().filter(|r| r.enabled()) {
                out.runs += 1;
                out.errors.push(RunError {
                    rule: rule.name.clone(),
                    account_id: m.id.to_string(),
                    message: format!(
                        "the evaluation stopped with an internal error ({why}); the account's alerts are left as they were. Please report this"
                    ),
                });
            }
        }
        out
    }

    /// What one thread needs to run the rules, kept for as long as it
    /// keeps running them (the backtest keeps one per thread for all its
    /// days).
    ///
    /// Everything a run clones is the thread's own: an engine (its function
    /// handles go into each run's resolution cache; built in about a
    /// millisecond), the scripts' ASTs (function library, source name) and
    /// their resolution caches ([`Compiled`]), and, per snapshot, `as_of`
    /// and the portfolio handle. Shared between threads, their reference
    /// counts made each core wait on the other's cache.
    pub fn runner(&self) -> Runner<'_> {
        self.runner_with(Shared::default().for_rules(self.rules.len()))
    }

    /// [`runner`](Self::runner) for one thread of an evaluation that
    /// shares `shared` (its stop flag, print allowance and alert counts,
    /// one per rule: see [`Shared::for_rules`]).
    pub(super) fn runner_with(&self, mut shared: Shared) -> Runner<'_> {
        if shared.raised.len() != self.rules.len() {
            shared = shared.for_rules(self.rules.len());
        }
        api::set_alert_cap(self.caps.per_account);
        api::set_style(&self.style);
        api::set_seasons(&self.seasons);
        // Nothing left over from a run a panic cut short.
        take_raised();
        forget_prints();
        Runner {
            rules: self,
            engine: engine_for(&shared),
            compiled: self.rules.iter().map(|r| Compiled::new(&r.ast)).collect(),
            shared,
        }
    }
}

/// What a rule reads before its script runs: its tier filter reads the
/// tier, its `book_needs` the kinds of data the book has, its `needs` of
/// orders whether the account has order lines, of visits whether it has
/// visits, of stock its main SKUs (made of its order lines) and their
/// stock (found again where the book's demand moved). (Its `needs` of
/// receivables or a credit limit read files that run every rule again.)
fn filter_reads(rule: &Rule) -> u32 {
    // `AccountMetrics::data_bits`' bits of orders, visits and stock.
    const ORDERS_NEED: u8 = 1;
    const VISITS_NEED: u8 = 1 << 1;
    const STOCK_NEED: u8 = 1 << 4;
    let mut bits = reads::RAN;
    if rule.needs & (ORDERS_NEED | STOCK_NEED) != 0 {
        bits |= reads::OWN;
    }
    if rule.needs & VISITS_NEED != 0 {
        bits |= reads::VISITS;
    }
    if rule.mask & 7 != 7 {
        bits |= reads::TIER;
    }
    if rule.book_needs != 0 {
        bits |= reads::KINDS;
    }
    if rule.needs & STOCK_NEED != 0 {
        bits |= reads::STOCK;
    }
    bits
}

/// What a panic said, for a message.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string())
}

#[cfg(test)]
mod tests;
