//! What the book decides and what of it the pairs read, kept to tell what
//! changed since the last evaluation (`rules::changed`): each account's
//! placing and what its pairs read ([`Placed`]), and the book's figures
//! the pairs read ([`Book`]), to the bit. Plain values; touches nothing.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::metrics::{AccountMetrics, Portfolio, Wanted};
use crate::model::Tier;
use crate::model::dates::Day;
use crate::rules::finding::ReadLog;
use crate::rules::reads::{self, AccountKey, BookKey, FxSet, Read};

/// Most history keys kept per account; past them, its earlier days are
/// taken as read whole (an order line dated before the snapshot's day
/// moves them), and when its keys of today alone are more, its whole
/// history (any order line moves it).
const MAX_ACCOUNT_KEYS: usize = 64;

/// Most portfolio keys kept; past them, every figure of the book is taken
/// as moved whenever anything changed.
const MAX_BOOK_KEYS: usize = 4096;

/// The values the book decides for one account, as its pairs read them,
/// and what each of its pairs read at its last run.
#[derive(Debug, Clone)]
pub(super) struct Placed {
    tier: Tier,
    prev_tier: Tier,
    rank: usize,
    share: u64,
    share_above: u64,
    /// The main SKUs and their stock cover, hashed.
    stock: u64,
    /// The history values its pairs read, each with its value.
    hist: Vec<(AccountKey, u64)>,
    /// More history was read than is kept (see [`MAX_ACCOUNT_KEYS`]).
    hist_all: bool,
    /// More of earlier days was read than is kept (`hist` keeps none of
    /// them then: [`AccountKey::is_past`]).
    past_all: bool,
    /// Per rule, the [`reads`] bits of its last run for this account.
    pub(super) pairs: Box<[Read]>,
}

impl Placed {
    /// `m`'s values now, with what its pairs read (`pairs`, one per rule,
    /// and the history `keys`).
    pub(super) fn of(
        m: &AccountMetrics,
        at: At,
        pairs: Box<[Read]>,
        keys: &[AccountKey],
    ) -> Placed {
        let mut p = Placed {
            tier: m.tier,
            prev_tier: m.prev_tier,
            rank: m.rank,
            share: m.share.to_bits(),
            share_above: m.share_above.to_bits(),
            stock: stock_hash(m),
            hist: Vec::new(),
            hist_all: false,
            past_all: false,
            pairs,
        };
        p.add_keys(m, at, keys);
        p
    }

    /// Adds `keys` (read now from `m`) to the history values kept.
    fn add_keys(&mut self, m: &AccountMetrics, at: At, keys: &[AccountKey]) {
        if keys.is_empty() || self.hist_all {
            return;
        }
        // The keys kept, to look each one up once (a run notes up to 130).
        let mut have: FxSet<AccountKey> = self.hist.iter().map(|(h, _)| *h).collect();
        for k in keys {
            if self.hist_all || (self.past_all && k.is_past()) || have.contains(k) {
                continue;
            }
            if *k == AccountKey::PastOverflow
                || (self.hist.len() >= MAX_ACCOUNT_KEYS
                    && (k.is_past() || self.hist.iter().any(|(h, _)| h.is_past())))
            {
                // Earlier days taken whole, which makes room for today's.
                self.past_all = true;
                self.hist.retain(|(h, _)| !h.is_past());
                have.retain(|h| !h.is_past());
                if k.is_past() {
                    continue;
                }
            }
            if *k == AccountKey::Overflow || self.hist.len() >= MAX_ACCOUNT_KEYS {
                self.hist_all = true;
                self.past_all = false;
                self.hist = Vec::new();
                continue;
            }
            self.hist.push((*k, k.value(m, at.0, at.1)));
            have.insert(*k);
        }
        // Kept until the next evaluation, for every account: no room to
        // grow into (pushed one by one, a list is up to twice its length).
        self.hist.shrink_to_fit();
    }

    /// Whether more history was read than is kept: of today and earlier
    /// days, of earlier days (for the log).
    pub(super) fn overflowed(&self) -> (bool, bool) {
        (self.hist_all, self.past_all)
    }

    /// The days of the book's tier history its history values read.
    pub(super) fn wanted(&self) -> impl Iterator<Item = Wanted> + '_ {
        self.hist.iter().filter_map(|(k, _)| k.wanted())
    }

    /// The [`reads`] bits of what differs between `self` and `m` now
    /// (`orders`: whether any order line changed, which moves a history
    /// not kept key by key; `past`: whether one dated before the
    /// snapshot's day did, which moves earlier days not kept key by key).
    pub(super) fn changed(&self, m: &AccountMetrics, at: At, orders: bool, past: bool) -> u32 {
        let mut bits = bits_of(&[
            (self.tier != m.tier, reads::TIER),
            (self.prev_tier != m.prev_tier, reads::PREV_TIER),
            (self.rank != m.rank, reads::RANK),
            (self.share != m.share.to_bits(), reads::SHARE),
            (
                self.share_above != m.share_above.to_bits(),
                reads::SHARE_ABOVE,
            ),
        ]);
        if self.pairs.iter().any(|b| b.all() & reads::STOCK != 0) && self.stock != stock_hash(m) {
            bits |= reads::STOCK;
        }
        for (k, v) in &self.hist {
            // An earlier day's value moves only with a line dated before
            // the snapshot's day: not looked up after a drop of today's.
            if (past || !k.is_past()) && k.value(m, at.0, at.1) != *v {
                bits |= k.bit();
            }
        }
        if self.hist_all && orders {
            bits |= AccountKey::Overflow.bit();
        }
        if self.past_all && past {
            bits |= AccountKey::PastOverflow.bit();
        }
        bits
    }

    /// Brought up to `m` now, with the pairs run now (`log`'s entries of
    /// account `at`, `rules` per account) in place of their last runs.
    /// `past`: whether an order line dated before the snapshot's day was
    /// written since (without one, earlier days' values are as kept).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn update(
        &mut self,
        m: &AccountMetrics,
        now: At,
        log: &ReadLog,
        at: usize,
        rules: usize,
        past: bool,
    ) {
        self.tier = m.tier;
        self.prev_tier = m.prev_tier;
        self.rank = m.rank;
        self.share = m.share.to_bits();
        self.share_above = m.share_above.to_bits();
        self.stock = stock_hash(m);
        for (k, v) in self.hist.iter_mut().filter(|(k, _)| past || !k.is_past()) {
            *v = k.value(m, now.0, now.1);
        }
        if let Some(now) = log.bits.get(at * rules..(at + 1) * rules) {
            for (kept, &b) in self.pairs.iter_mut().zip(now) {
                if !b.is_empty() {
                    *kept = b;
                }
            }
        }
        let keys: Vec<AccountKey> = keys_of(log, at).collect();
        self.add_keys(m, now, &keys);
    }
}

/// The book an account's values are read in: its portfolio and last day.
pub(super) type At<'a> = (&'a Portfolio, Day);

/// The account keys `log` holds for account `at` (sorted by account, as a
/// run appends them).
pub(super) fn keys_of(log: &ReadLog, at: usize) -> impl Iterator<Item = AccountKey> + '_ {
    let at = at as u32;
    let start = log.keys.partition_point(|(i, _)| *i < at);
    log.keys[start..]
        .iter()
        .take_while(move |(i, _)| *i == at)
        .map(|(_, k)| *k)
}

/// `m`'s main SKUs and stock cover, hashed (each number to the bit).
fn stock_hash(m: &AccountMetrics) -> u64 {
    if m.main_skus.is_empty() && m.stock.is_empty() {
        return 0;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    m.main_skus.hash(&mut h);
    for s in &m.stock {
        s.sku.hash(&mut h);
        for x in [s.on_hand, s.daily_qty, s.days] {
            x.to_bits().hash(&mut h);
        }
        s.dedicated.hash(&mut h);
    }
    h.finish()
}

/// The book's figures the pairs read, to tell what changed of them.
#[derive(Debug, Clone, Default)]
pub(super) struct Book {
    kinds: u8,
    keys: HashMap<BookKey, u64>,
    /// More keys were read than are kept (see [`MAX_BOOK_KEYS`]).
    all: bool,
}

impl Book {
    /// The kinds of data of `p`, and the figures `log` read of it.
    pub(super) fn of(p: &Portfolio, end: Day, log: &ReadLog) -> Book {
        let mut b = Book {
            kinds: p.data_bits(),
            ..Book::default()
        };
        b.add(p, end, log);
        b
    }

    /// Adds the keys `log` read (of `p`, now).
    pub(super) fn add(&mut self, p: &Portfolio, end: Day, log: &ReadLog) {
        for k in &log.book {
            if self.all || self.keys.contains_key(k) {
                continue;
            }
            if self.keys.len() >= MAX_BOOK_KEYS {
                self.all = true;
                self.keys = HashMap::new();
                continue;
            }
            self.keys.insert(*k, k.value(p, end).to_bits());
        }
    }

    /// The days of the book's tier history its figures read.
    pub(super) fn wanted(&self) -> impl Iterator<Item = Wanted> + '_ {
        self.keys.keys().filter_map(BookKey::wanted)
    }

    /// The [`reads`] bits of what differs between `self` and `p` now
    /// (`moved`: whether any data changed at all), and the book now.
    pub(super) fn changed(&self, p: &Portfolio, end: Day, moved: bool) -> (u32, Book) {
        let mut now = Book {
            kinds: p.data_bits(),
            keys: HashMap::with_capacity(self.keys.len()),
            all: self.all,
        };
        let mut bits = if self.kinds != now.kinds {
            reads::KINDS
        } else {
            0
        };
        for (k, v) in &self.keys {
            let value = k.value(p, end).to_bits();
            if value != *v {
                bits |= k.bit();
            }
            now.keys.insert(*k, value);
        }
        if self.all && moved {
            bits |= reads::PORTFOLIO;
        }
        (bits, now)
    }
}

/// The [`reads`] bits whose value differs, or-ed together.
fn bits_of(pairs: &[(bool, u32)]) -> u32 {
    pairs
        .iter()
        .filter(|(differs, _)| *differs)
        .fold(0, |bits, (_, bit)| bits | bit)
}
