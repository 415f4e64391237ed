//! The timeline: everything a snapshot is built from, read from the store
//! once up to a last day, from which the snapshot of that day or of any
//! earlier day is derived without reading the store again. `metrics::build`
//! is `Timeline::load(as_of)` then `snapshot(as_of)`; the backtest loads
//! once at `--to` and derives every replayed day, so both share one path.
//!
//! What a day's snapshot sees: order days, SKU lines and visits on or
//! before that day (views of shared arrays, nothing copied per day); tiers,
//! ranks, shares, the book totals and the main SKUs recomputed from those.
//! Some of the store is a current snapshot, not a history, and a past day
//! sees it as it is now: the customer master (names, owners, active flag,
//! attributes, credit limits, tier overrides), the stock on hand, and the
//! open invoices — of which a past day sees those issued on or before it
//! (or without an issue date); invoices paid since are gone from the store,
//! so a past day sees fewer receivables than it had. See docs/backtest.md.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Result;
use chrono::NaiveDate;
use rusqlite::Connection;

use super::account::{AccountMetrics, Invoice, Roles, Visit};
use super::daylog::DayLog;
use super::load::{self, BookDay, book_days, book_series};
use super::master::Who;
use super::parts::{Parts, SkuLog};
use super::ranks::Kept;
use super::series::{Series, ahead};
use super::snapshot::{Portfolio, Snapshot};
use super::stock::{SkuBook, SkuScratch};
use super::tiers::{PREV_TIER_DAYS, Ranked, TierHistory, Unlisted, gross_profit_12m, parse_tier};
use crate::config::{TierBasis, TierConfig};
use crate::model::Tier;
use crate::model::dates::{Day, date_of, day};

mod update;

/// Builds the snapshot of every active account as of `as_of` (inclusive).
pub fn build(conn: &Connection, as_of: NaiveDate, tiers: &TierConfig) -> Result<Snapshot> {
    Ok(Timeline::load(conn, as_of)?.snapshot(as_of, tiers))
}

/// What one active account of the master brings, for every day.
#[derive(Debug)]
struct Base {
    /// Its texts from the master, shared with the parts (not copied).
    who: Arc<Who>,
    series: Series,
    skus: SkuLog,
    visits: DayLog<Visit>,
    attrs: Arc<serde_json::Map<String, serde_json::Value>>,
    credit_limit: Option<f64>,
    tier_override: Option<Tier>,
    /// Open invoices with the day each was issued, by due date.
    invoices: Vec<load::Issued>,
    /// Stock held for this account: (sku, on hand).
    own_stock: Vec<(u32, f64)>,
}

impl Base {
    /// The open invoices issued on or before `end` (or without an issue date).
    fn open_invoices(&self, end: Day) -> impl Iterator<Item = Invoice> + '_ {
        self.invoices
            .iter()
            .filter(move |(issued, _)| issued.is_none_or(|d| d <= end))
            .map(|(_, i)| *i)
    }
}

/// An account's place in the book on a snapshot's day.
struct Standing {
    tier: Tier,
    prev_tier: Tier,
    rank: usize,
    share: f64,
    share_above: f64,
    history: (Arc<TierHistory>, usize),
    revenue_12m: f64,
}

/// What a thread keeps from one derived day to the next: see
/// [`Timeline::snapshot_reusing`]. For one timeline; given another, it
/// starts afresh. The daemon keeps one between evaluations: the next
/// snapshot of the same day sets again only what the book decides for the
/// accounts whose own data did not change (see [`Reuse::touch`]).
#[derive(Debug, Default)]
pub struct Reuse {
    /// The timeline it was last used with ([`Timeline::generation`]).
    timeline: u64,
    /// The day of the last snapshot derived with it.
    end: Option<Day>,
    /// By timeline index: the account's own data changed since the last
    /// snapshot (its parts were updated in the timeline).
    stale: Vec<bool>,
    /// The book's demand per SKU the last snapshot used, if any account
    /// needed it.
    book_qty: Option<Vec<f64>>,
    /// Accounts the last snapshot took from the one before with only
    /// what the book decides set again.
    restood: usize,
    /// The accounts handed back, by timeline index.
    spare: Vec<Option<Arc<AccountMetrics>>>,
    /// The timeline index of each account of the last snapshot, in its
    /// (rank) order.
    order: Vec<usize>,
    /// By timeline index: the bounds of the trailing-12-month windows,
    /// now and `PREV_TIER_DAYS` earlier, where the last searches ended.
    hints: Vec<[[usize; 2]; 2]>,
    /// The tiers (A, B, C) whose accounts get their main SKUs and stock
    /// cover; None: all.
    sku_tiers: Option<[bool; 3]>,
}

impl Reuse {
    /// Main SKUs and stock cover only for accounts of these tiers; the
    /// others' are left empty. For a caller that knows nothing reads them
    /// elsewhere (the backtest asks the rules: see
    /// `RuleSet::tiers_reading_skus`): they are the costliest part of a
    /// day, a pass over each account's last twelve months of lines.
    pub fn main_skus_for_tiers(&mut self, tiers: &[&str]) {
        self.sku_tiers = Some(Tier::ALL.map(|t| tiers.contains(&t.as_str())));
    }

    /// Starts afresh unless it was last used with `timeline`.
    fn start(&mut self, timeline: &Timeline) {
        let n = timeline.accounts.len();
        if self.timeline != timeline.generation || self.hints.len() != n {
            *self = Reuse {
                timeline: timeline.generation,
                hints: vec![[[0; 2]; 2]; n],
                stale: vec![false; n],
                sku_tiers: self.sku_tiers,
                ..Reuse::default()
            };
        }
    }

    fn wants_skus(&self, tier: Tier) -> bool {
        let k = match tier {
            Tier::A => 0,
            Tier::B => 1,
            Tier::C => 2,
        };
        self.sku_tiers.is_none_or(|t| t[k])
    }

    /// Hands back the accounts of the snapshot last derived with this, for
    /// the next day to rebuild in place.
    pub fn recycle(&mut self, accounts: Vec<Arc<AccountMetrics>>) {
        if accounts.len() != self.order.len() {
            return;
        }
        self.spare.clear();
        self.spare.resize(self.hints.len(), None);
        for (m, &i) in accounts.into_iter().zip(&self.order) {
            if let Some(slot) = self.spare.get_mut(i) {
                *slot = Some(m);
            }
        }
    }
}

/// A fingerprint of the accounts ranked: their ids in order and tier
/// columns (see `Timeline::ranked`).
fn fingerprint(accounts: &[Base]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for a in accounts {
        (&*a.who.id, a.tier_override).hash(&mut h);
    }
    h.finish()
}

/// The accounts of `parts` with order lines that the master does not list.
fn unlisted_of(parts: &Parts) -> Unlisted {
    let known: HashSet<&str> = parts.master.iter().map(|a| &*a.who.id).collect();
    Unlisted::of(
        parts
            .orders
            .iter()
            .filter(|(id, _)| !known.contains(id.as_str()))
            .map(|(id, s)| (id, &s.0)),
    )
}

/// The SKU lines of every account of `parts` with any, in id order.
fn sku_lines(parts: &Parts) -> Vec<SkuLog> {
    parts
        .orders
        .values()
        .filter(|o| !o.1.days.is_empty())
        .map(|o| o.1.clone())
        .collect()
}

/// A number for each timeline assembled ([`Timeline::generation`]).
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The history of the book up to `until`, loaded once.
#[derive(Debug)]
pub struct Timeline {
    until: Day,
    /// Unique to this timeline (an update in place keeps it): what a
    /// [`Reuse`] was last used with.
    generation: u64,
    /// Active accounts of the master, in id order.
    accounts: Vec<Base>,
    /// Accounts with orders that are missing from the master: counted,
    /// never ranked, in no figure of the book.
    unlisted: Unlisted,
    /// Daily totals of the active accounts' orders (the ranked ones), and
    /// the same totals by day as summed (`book`'s prefix sums are of them).
    book: Series,
    book_days: Vec<BookDay>,
    /// SKU names, every account's SKU lines, the warehouse's stock.
    skus: SkuBook,
    roles: Roles,
    /// A fingerprint of the accounts ranked (ids in order, tier column):
    /// rankings kept from another timeline with the same one still hold
    /// (`metrics::ranks`).
    ranked: u64,
}

impl Timeline {
    /// The timeline of `parts`. The accounts' arrays and texts are shared
    /// (the parts may change after: they replace them, never change them).
    pub fn of(parts: &Parts) -> Timeline {
        let master = &parts.master;
        let active: HashSet<&str> = master
            .iter()
            .filter(|a| a.active)
            .map(|a| &*a.who.id)
            .collect();
        let unlisted = unlisted_of(parts);
        let lines = sku_lines(parts);
        let mut own_stock: HashMap<&str, Vec<(u32, f64)>> = HashMap::new();
        for ((sku, account), on_hand) in &parts.inventory.by_account {
            own_stock
                .entry(account.as_str())
                .or_default()
                .push((*sku, *on_hand));
        }

        let mut accounts: Vec<Base> = Vec::with_capacity(active.len());
        for rec in master.iter().filter(|a| a.active) {
            let id = &*rec.who.id;
            let extra = rec.extra.as_ref();
            let (series, skus) = parts.orders.get(id).cloned().unwrap_or_default();
            let mut own = own_stock.remove(id).unwrap_or_default();
            own.sort_by_key(|s| s.0);
            accounts.push(Base {
                series,
                skus,
                visits: parts.visits.get(id).cloned().unwrap_or_default(),
                attrs: extra.map(|e| e.attrs.clone()).unwrap_or_default(),
                credit_limit: extra.and_then(|e| e.credit_limit),
                tier_override: extra
                    .and_then(|e| e.tier_override.as_deref())
                    .and_then(parse_tier),
                invoices: parts.invoices.get(id).cloned().unwrap_or_default(),
                own_stock: own,
                who: rec.who.clone(),
            });
        }
        accounts.sort_by(|a, b| a.who.id.cmp(&b.who.id));
        let ranked = fingerprint(&accounts);
        // The book is the ranked accounts' lines: the portfolio's figures
        // and the shares are over the same accounts.
        let book_days = book_days(accounts.iter().map(|a| &a.series));
        Timeline {
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            book: book_series(&book_days),
            book_days,
            ranked,
            until: day(parts.until),
            accounts,
            unlisted,
            skus: SkuBook {
                names: Arc::new(parts.skus.names.clone()),
                texts: parts
                    .skus
                    .names
                    .iter()
                    .map(|n| Arc::from(n.as_str()))
                    .collect(),
                lines,
                warehouse: parts.inventory.warehouse.clone(),
            },
            roles: parts.roles.names.clone(),
        }
    }

    /// Reads every dataset up to and including `until`.
    pub fn load(conn: &Connection, until: NaiveDate) -> Result<Timeline> {
        Ok(Timeline::of(&Parts::load(conn, until)?))
    }

    /// The last day loaded.
    pub fn until(&self) -> NaiveDate {
        date_of(self.until)
    }

    /// The active accounts as (id, name, owner), in id order: the same
    /// accounts every snapshot holds.
    pub fn accounts(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.accounts
            .iter()
            .map(|a| (&*a.who.id, &*a.who.name, &*a.who.owner))
    }

    /// The snapshot as of `as_of`: what `metrics::build` at that day gives.
    /// Days after `until` see nothing after `until`.
    pub fn snapshot(&self, as_of: NaiveDate, tiers: &TierConfig) -> Snapshot {
        self.snapshot_reusing(as_of, tiers, &mut Reuse::default())
    }

    /// [`Timeline::snapshot_reusing`], its tier history given the
    /// rankings `kept` from earlier snapshots that still hold, and keeping
    /// what its rules read for the next (the daemon's: see
    /// `metrics::ranks`).
    pub fn snapshot_kept(
        &self,
        as_of: NaiveDate,
        tiers: &TierConfig,
        reuse: &mut Reuse,
        kept: &mut Kept,
    ) -> Snapshot {
        self.snapshot_with(as_of, tiers, reuse, Some(kept))
    }

    /// [`Timeline::snapshot`], rebuilding the accounts of the snapshot
    /// last derived with `reuse` (and handed back with [`Reuse::recycle`])
    /// in place where nothing else holds them: no names, ids or owners
    /// copied again, no allocation per account, and each search started
    /// from where it ended that day (`as_of_near`, `revenue_near`). The
    /// backtest keeps one `Reuse` per thread, whose days come in order.
    /// For the same day again, an account whose parts were not updated
    /// since ([`Reuse::touch`]) keeps its metrics but for what the book
    /// decides (tier, rank, shares, history) and, where the book's demand
    /// for one of its main SKUs moved, its stock cover.
    pub fn snapshot_reusing(
        &self,
        as_of: NaiveDate,
        tiers: &TierConfig,
        reuse: &mut Reuse,
    ) -> Snapshot {
        self.snapshot_with(as_of, tiers, reuse, None)
    }

    // One snapshot, in one piece: the ranking, the portfolio and each
    // account's metrics share the loop over the rank order.
    fn snapshot_with(
        &self,
        as_of: NaiveDate,
        tiers: &TierConfig,
        reuse: &mut Reuse,
        kept: Option<&mut Kept>,
    ) -> Snapshot {
        reuse.start(self);
        let mut spare = std::mem::take(&mut reuse.spare);
        let end = day(as_of);
        let (now, before) = self.rank(end, tiers, &mut reuse.hints);
        let prev_tier_of = before.by_index(self.accounts.len());
        let (history, share_above) = self.tier_history(end, tiers, &now, &before);
        if let Some(kept) = kept {
            kept.seed(&history, tiers, self.ranked);
        }
        let mut scratch = SkuScratch::default();
        let moved = self.demand_moved(reuse, end, &mut scratch);
        let mut restood = 0;
        let mut portfolio = Portfolio {
            accounts: self.accounts.len(),
            revenue_12m: now.total,
            a_share: tiers.a_share,
            b_share: tiers.b_share,
            floor_a: now.floors.0,
            floor_b: now.floors.1,
            by: tiers.by,
            history: Some(history.clone()),
            series: self.book.as_of(end),
            ..Portfolio::default()
        };
        let unlisted = self.unlisted.seen(end);
        let mut accounts = Vec::with_capacity(self.accounts.len());
        reuse.order.clear();
        reuse.order.extend(now.order.iter().map(|o| o.1));
        for (rank, &(rev, i)) in now.order.iter().enumerate() {
            let a = &self.accounts[i];
            let tier = a.tier_override.unwrap_or(now.places[rank].0);
            match tier {
                Tier::A => portfolio.tier_a += 1,
                Tier::B => portfolio.tier_b += 1,
                Tier::C => portfolio.tier_c += 1,
            }
            let standing = Standing {
                tier,
                prev_tier: a.tier_override.unwrap_or(prev_tier_of[i].0),
                rank: rank + 1,
                share: if now.total > 0.0 {
                    rev / now.total
                } else {
                    0.0
                },
                share_above: share_above[i],
                history: (history.clone(), i),
                revenue_12m: rev,
            };
            let skus = reuse
                .wants_skus(tier)
                .then(|| reuse.holds(i, end).then_some(&moved));
            let spare = spare.get_mut(i).and_then(Option::take);
            let (m, kept) = self.account_metrics(a, spare, standing, end, skus, &mut scratch);
            restood += usize::from(kept);
            portfolio.count_data(&m);
            accounts.push(m);
        }
        reuse.done(end, scratch.take_book_qty(), restood);
        Snapshot {
            as_of,
            accounts,
            portfolio: Arc::new(portfolio),
            unknown_accounts: unlisted.accounts,
            unknown_examples: unlisted.examples,
            unknown_revenue_12m: unlisted.revenue_12m,
            skus: self.skus.names.clone(),
        }
    }

    /// The book ranked by `tiers.by` as of `end` and `PREV_TIER_DAYS`
    /// earlier, each series visited once (an account's two revenue
    /// searches started from its `hints`; gross profit, when the basis
    /// needs it, searched afresh).
    fn rank(
        &self,
        end: Day,
        tiers: &TierConfig,
        hints: &mut [[[usize; 2]; 2]],
    ) -> (Ranked, Ranked) {
        let prev_end = end - PREV_TIER_DAYS;
        let (now, before): (Vec<f64>, Vec<f64>) = ahead(&self.accounts, |a| &a.series)
            .zip(hints)
            .map(|(a, [h_now, h_before])| {
                (
                    a.series.revenue_near(end, 365, h_now),
                    a.series.revenue_near(prev_end, 365, h_before),
                )
            })
            .unzip();
        let gp = |d: Day| -> Option<Vec<f64>> {
            (tiers.by != TierBasis::Revenue).then(|| {
                let gp = self.accounts.iter().map(|a| gross_profit_12m(&a.series, d));
                gp.collect()
            })
        };
        (
            Ranked::new(&now, gp(end).as_deref(), tiers),
            Ranked::new(&before, gp(prev_end).as_deref(), tiers),
        )
    }

    /// The tier history of the snapshot at `end`, its first days (`now`
    /// and `before`, `PREV_TIER_DAYS` earlier) already ranked; and the
    /// share above each account now, by account index.
    fn tier_history(
        &self,
        end: Day,
        tiers: &TierConfig,
        now: &Ranked,
        before: &Ranked,
    ) -> (Arc<TierHistory>, Vec<f64>) {
        let history = Arc::new(TierHistory::new(
            end,
            tiers,
            ahead(&self.accounts, |a| &a.series)
                .map(|a| a.series.as_of(end))
                .collect(),
            self.accounts.iter().map(|a| a.tier_override).collect(),
        ));
        // The history applies the tier column as it is read.
        let n = self.accounts.len();
        let seen_now = now.by_index(n);
        let share_above: Vec<f64> = seen_now.iter().map(|x| x.1).collect();
        history.seed(0, seen_now);
        history.seed(PREV_TIER_DAYS as usize, before.by_index(n));
        (history, share_above)
    }

    /// Account `a` as of `end`: `spare` (the same account's metrics of a
    /// day before) rebuilt in place if nothing else holds it, else built
    /// anew; `skus`: with its main SKUs and stock cover (None: without),
    /// and `Some(Some(moved))` when `spare` is of the same day and the
    /// account's parts did not change since: kept, what the book decides
    /// set again (`Timeline::restand`; true).
    fn account_metrics(
        &self,
        a: &Base,
        spare: Option<Arc<AccountMetrics>>,
        s: Standing,
        end: Day,
        skus: Option<Option<&HashSet<&str>>>,
        scratch: &mut SkuScratch,
    ) -> (Arc<AccountMetrics>, bool) {
        if let Some(mut held) = spare
            && let Some(m) = Arc::get_mut(&mut held)
        {
            if let Some(Some(moved)) = skus {
                self.restand(a, m, &s, moved, end, scratch);
                return (held, true);
            }
            stand(m, &s);
            if !Arc::ptr_eq(&m.roles, &self.roles) {
                m.roles = self.roles.clone();
            }
            m.series = a.series.as_of_near(end, &m.series);
            m.sku_days = a.skus.days.as_of_near(end, &m.sku_days);
            m.visits = a.visits.as_of_near(end, &m.visits);
            m.invoices.clear();
            m.invoices.extend(a.open_invoices(end));
            if skus.is_some() {
                self.skus.main_skus_and_cover(&a.own_stock, m, end, scratch);
            } else {
                m.main_skus.clear();
                m.stock.clear();
            }
            return (held, false);
        }
        let Standing {
            tier,
            prev_tier,
            rank,
            share,
            share_above,
            history,
            revenue_12m,
        } = s;
        let mut m = AccountMetrics {
            id: a.who.id.clone(),
            name: a.who.name.clone(),
            region: a.who.region.clone(),
            owner: a.who.owner.clone(),
            owner_email: a.who.owner_email.clone(),
            manager_email: a.who.manager_email.clone(),
            manager: a.who.manager.clone(),
            tier,
            prev_tier,
            rank,
            share,
            share_above,
            history: Some(history),
            revenue_12m,
            series: a.series.as_of(end),
            sku_days: a.skus.days.as_of(end),
            visits: a.visits.as_of(end),
            roles: self.roles.clone(),
            attrs: a.attrs.clone(),
            credit_limit: a.credit_limit,
            invoices: a.open_invoices(end).collect(),
            main_skus: Vec::new(),
            stock: Vec::new(),
        };
        if skus.is_some() {
            self.skus
                .main_skus_and_cover(&a.own_stock, &mut m, end, scratch);
        }
        (Arc::new(m), false)
    }
}

/// Sets what the book decides for an account (`s`) on its metrics `m`.
fn stand(m: &mut AccountMetrics, s: &Standing) {
    m.tier = s.tier;
    m.prev_tier = s.prev_tier;
    m.rank = s.rank;
    m.share = s.share;
    m.share_above = s.share_above;
    m.history = Some(s.history.clone());
    m.revenue_12m = s.revenue_12m;
}
