//! What a rule's run for an account actually read, recorded as it runs
//! (`rules::changed` runs the pair again only when one of those values
//! changed). Which of the account's own data it read: its order lines
//! ([`OWN`]) or its visits ([`VISITS`]), noted by the rule API's only
//! ways to them (`api::Account::orders`, `api::Account::visits`), so a
//! file of visits does not run a rule that reads only order lines, nor a
//! file of order lines one that reads only visits. Every function of the
//! rule API that reads something the book decides goes through here: the account's tier, rank
//! and shares ([`note`] of a bit: `rules::changed` keeps those values for
//! every account), the tier history and the single-measure rankings
//! ([`ago`]: the key and its value are kept per account), its stock cover
//! (the book's demand), and the portfolio's figures ([`book`]: each key's
//! value is kept once for the book). A run that stops early after reading
//! only values that did not move is not run again; how a value was reached
//! (a variable, a function of the script, `Fn`/`call`) does not matter, as
//! every read passes through the getter. What an alert's figures read
//! (`alert(#{ figures: Fn("name") })`) is noted apart from what decided
//! the run ([`Read`]): a pair is not run again when only its figures
//! would change (`rules::changed`).
//!
//! A run's reads are bits (below) and keys. The bits group the keys for a
//! fast test; keys of one group are told apart by their kept values, so a
//! collision only runs a pair again, never misses one. Per run at most
//! [`MAX_KEYS`] keys of earlier days ([`AccountKey::is_past`]) are noted:
//! past that, the run is taken as reading every earlier day
//! ([`AccountKey::PastOverflow`]), which only an order line dated before
//! the snapshot's day moves (a drop of today's lines does not); and at
//! most [`MAX_KEYS`] other keys: past that, the run is taken as reading
//! the whole history ([`HISTORY`]), which any order line moves.
//! Touches nothing but this thread's record of the current run.

use std::cell::RefCell;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use crate::config::TierBasis;
use crate::metrics::{
    AccountMetrics, LineState, Metric, Portfolio, TIER_HISTORY_DAYS, Wanted, a_line_state,
};
use crate::model::Tier;
use crate::model::dates::Day;

// The bits: what a run read, and what changed for an account or the book.

/// The account's own order lines, and what is made of them alone (its
/// sums, its main SKUs): noted by [`crate::rules::api::Account::orders`],
/// the API's only way to them, and by a rule whose `needs` ask whether
/// the account has orders or stock of a main SKU.
pub const OWN: u32 = 1;
/// The account's own visits: noted by
/// [`crate::rules::api::Account::visits`], and by a rule whose `needs`
/// ask whether the account has visits.
pub const VISITS: u32 = 1 << 19;
pub const TIER: u32 = 1 << 1;
pub const PREV_TIER: u32 = 1 << 2;
pub const RANK: u32 = 1 << 3;
pub const SHARE: u32 = 1 << 4;
pub const SHARE_ABOVE: u32 = 1 << 5;
/// The kinds of data the book has (a rule's `book_needs`).
pub const KINDS: u32 = 1 << 6;
/// The account's main SKUs and stock cover (warehouse stock is set
/// against the whole book's demand).
pub const STOCK: u32 = 1 << 7;
/// The tier history and single-measure rankings ([`AccountKey`]): a tier
/// of today, a share above of today, tiers of earlier days (five bits by
/// day), shares above of earlier days (three bits by day).
pub const HIST_TIER_NOW: u32 = 1 << 8;
pub const HIST_SHARE_NOW: u32 = 1 << 9;
const HIST_TIER_PAST: (u32, u32) = (10, 5);
const HIST_SHARE_PAST: (u32, u32) = (16, 3);
/// Every bit of the history.
pub const HISTORY: u32 =
    HIST_TIER_NOW | HIST_SHARE_NOW | bits_of(HIST_TIER_PAST) | bits_of(HIST_SHARE_PAST);
/// The pair ran (or was decided by its filters): set for every pair
/// recorded, and by nothing that changes, so a run that read nothing any
/// file moves (who the account is, its receivables) is told from a pair
/// without a record, which runs whenever anything changed.
pub const RAN: u32 = 1 << 15;
/// The portfolio's figures ([`BookKey`]): today's floors, today's totals,
/// the counts, the rest of today's (three bits by key), and earlier days'
/// (one bit: they move only with a line dated before the snapshot's day,
/// so a drop of today's lines, which moves today's figures, runs no pair
/// again that read only earlier days' as its keys shared a bit with them).
pub const FLOOR_A: u32 = 1 << 20;
pub const FLOOR_B: u32 = 1 << 21;
pub const GP_FLOOR_A: u32 = 1 << 22;
pub const GP_FLOOR_B: u32 = 1 << 23;
pub const TOTAL: u32 = 1 << 24;
pub const GP_TOTAL: u32 = 1 << 25;
pub const COUNTS: u32 = 1 << 26;
const BOOK_OTHER: (u32, u32) = (27, 3);
pub const BOOK_PAST: u32 = 1 << 30;
/// Every bit of the portfolio.
pub const PORTFOLIO: u32 = 0x7ff0_0000;
/// Whether a value of the account's is past a tier floor
/// (`portfolio.past_tier_floor`), or its share above reaches a line
/// (`account.revenue_share_above_at_least`): kept per account with its
/// answer.
pub const PAST_FLOOR: u32 = 1 << 31;
pub const ALL: u32 = u32::MAX;

/// Most account keys one run notes (see the module's notes).
pub const MAX_KEYS: usize = 64;

/// `bits` in words, for the log: "the tier history, the portfolio".
pub fn describe(bits: u32) -> String {
    let names = [
        (OWN, "its own order lines"),
        (VISITS, "its own visits"),
        (TIER, "the tier"),
        (PREV_TIER, "the tier 30 days ago"),
        (RANK, "the rank"),
        (SHARE, "the share"),
        (SHARE_ABOVE, "the share above"),
        (KINDS, "the kinds of data the book has"),
        (STOCK, "the stock cover"),
        (HIST_TIER_NOW, "a tier by one measure"),
        (HIST_SHARE_NOW, "a share above by one measure"),
        (bits_of(HIST_TIER_PAST), "an earlier day's tier"),
        (bits_of(HIST_SHARE_PAST), "an earlier day's share above"),
        (FLOOR_A | FLOOR_B | GP_FLOOR_A | GP_FLOOR_B, "a tier floor"),
        (TOTAL | GP_TOTAL, "the book's total"),
        (COUNTS, "the book's counts"),
        (bits_of(BOOK_OTHER), "another figure of the book"),
        (BOOK_PAST, "a figure of the book on an earlier day"),
        (
            PAST_FLOOR,
            "whether a value is past a tier floor or a share above reaches a line",
        ),
    ];
    let said: Vec<&str> = names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    said.join(", ")
}

/// The bits of a (first bit, count) group.
const fn bits_of((first, n): (u32, u32)) -> u32 {
    ((1 << n) - 1) << first
}

/// One bit of a group, chosen by `h`.
fn bit_in((first, n): (u32, u32), h: u64) -> u32 {
    1 << (first + (h % u64::from(n)) as u32)
}

/// One measure alone: revenue or gross profit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum By {
    Revenue,
    GrossProfit,
}

impl By {
    pub fn basis(self) -> TierBasis {
        match self {
            By::Revenue => TierBasis::Revenue,
            By::GrossProfit => TierBasis::GrossProfit,
        }
    }
}

/// Which ranking an [`AccountKey`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ranking {
    /// By `tiers.by` (`tier_ago`, `share_above_ago`).
    Basis,
    /// By one measure alone on a day (`revenue_tier_ago`, ...).
    Alone(By),
    /// Today's by one measure alone (`revenue_tier`, `gross_profit_tier`).
    Today(By),
}

/// A value of the account's tier history: its tier or its share above, by
/// a ranking, `days` days back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ago {
    pub ranking: Ranking,
    pub days: u16,
    pub read: AgoRead,
}

/// What an [`Ago`] reads of the day's (tier, share above).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgoRead {
    /// The tier (`tier_ago`).
    Tier,
    /// The share above (`share_above_ago`).
    Share,
    /// Whether the tier is this one (`is_tier_ago`): the answer moves only
    /// when the account enters or leaves that tier, not when it moves
    /// between the other two (a ranking moved by a re-export moves many
    /// accounts between B and C on some earlier day).
    Is(Tier),
}

/// A value kept per account: one of its tier history ([`Ago`]); whether
/// a value the rule computed for it (its bits) is past a floor of the book
/// (a [`BookKey`] floor): that answer moves only when the floor crosses
/// the value; or whether its share above today reaches a line the rule
/// gave (its bits; [`AboveBy`] says which share above): that answer moves
/// only when the share crosses the line, not whenever the book's total
/// moves it a little.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountKey {
    Ago(Ago),
    Past(BookKey, u64),
    /// Whether a value the rule computed (its bits) is at least a floor of
    /// the book plus a whole percentage of it (`reaches_tier_floor_plus`):
    /// the answer moves only when the floor plus its margin crosses it.
    AtLeast(BookKey, u64, u16),
    Reaches(AboveBy, u64),
    /// Where the account stood against the tier A line `days` days back,
    /// with a margin (its bits): its answer (`metrics::a_line_state`),
    /// which moves only when the account crosses a side of the band.
    Line {
        days: u16,
        margin: u64,
    },
    /// The run read more keys of earlier days than are noted
    /// ([`MAX_KEYS`]): every earlier day's tier and share above.
    PastOverflow,
    /// The run read more keys of today than are noted ([`MAX_KEYS`]).
    Overflow,
}

/// Which share above of today a [`AccountKey::Reaches`] compares: by
/// `tiers.by` (`account.share_above`) or by one measure alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AboveBy {
    Basis,
    Alone(By),
}

impl AboveBy {
    /// `m`'s share above of today by this ranking.
    fn share(self, m: &AccountMetrics) -> f64 {
        match self {
            AboveBy::Basis => m.share_above,
            AboveBy::Alone(By::Revenue) => m.revenue_tier().1,
            AboveBy::Alone(By::GrossProfit) => m.gross_profit_tier().1,
        }
    }
}

impl AccountKey {
    /// Its value for `m` in `p` (at `end`), to the bit.
    pub fn value(&self, m: &AccountMetrics, p: &Portfolio, end: Day) -> u64 {
        match self {
            AccountKey::Ago(a) => a.value(m),
            AccountKey::Past(floor, x) => u64::from(is_past(p, end, *floor, f64::from_bits(*x))),
            AccountKey::AtLeast(floor, x, pct) => {
                u64::from(is_at_least(p, end, *floor, f64::from_bits(*x), *pct))
            }
            AccountKey::Reaches(by, x) => u64::from(reaches(by.share(m), f64::from_bits(*x))),
            AccountKey::Line { days, margin } => {
                let margin = f64::from_bits(*margin);
                a_line_state(m, p, end, i64::from(*days), margin) as u64
            }
            AccountKey::PastOverflow | AccountKey::Overflow => 0,
        }
    }

    /// Whether its value is of an earlier day's ranking alone (a tier or
    /// share above 1 day back or more): only an order line dated before
    /// the snapshot's day can move it (a day's 12-month sums end that
    /// day), not one of the day itself.
    pub fn is_past(&self) -> bool {
        match self {
            AccountKey::Ago(a) => a.days > 0 && !matches!(a.ranking, Ranking::Today(_)),
            AccountKey::Line { days, .. } => *days > 0,
            AccountKey::PastOverflow => true,
            AccountKey::Past(..)
            | AccountKey::AtLeast(..)
            | AccountKey::Reaches(..)
            | AccountKey::Overflow => false,
        }
    }

    /// The day of the book's tier history [`AccountKey::value`] ranks
    /// on first use, if any (the pick ranks them ahead, on two threads).
    pub fn wanted(&self) -> Option<Wanted> {
        match self {
            AccountKey::Ago(a) => Some(a.wanted()),
            AccountKey::Past(floor, _) | AccountKey::AtLeast(floor, ..) => floor.wanted(),
            AccountKey::Reaches(AboveBy::Alone(by), _) => Some(Wanted {
                ranking: Some(by.basis()),
                days_ago: 0,
                book: false,
                shares: true,
            }),
            // (Ranked by revenue alone; gross profit's, under `both`, on
            // first use.)
            AccountKey::Line { days, .. } => Some(Wanted {
                ranking: Some(TierBasis::Revenue),
                days_ago: i64::from(*days),
                book: true,
                shares: false,
            }),
            AccountKey::Reaches(AboveBy::Basis, _)
            | AccountKey::PastOverflow
            | AccountKey::Overflow => None,
        }
    }

    /// Its bit.
    pub fn bit(&self) -> u32 {
        match self {
            AccountKey::Ago(a) => a.bit(),
            AccountKey::Past(..) | AccountKey::AtLeast(..) | AccountKey::Reaches(..) => PAST_FLOOR,
            AccountKey::Line { days: 0, .. } => PAST_FLOOR,
            // An earlier day's, one of its overflow's bits.
            AccountKey::Line { days, .. } => bit_in(HIST_TIER_PAST, u64::from(*days / 30)),
            AccountKey::PastOverflow => bits_of(HIST_TIER_PAST) | bits_of(HIST_SHARE_PAST),
            AccountKey::Overflow => HISTORY | PAST_FLOOR,
        }
    }
}

/// Whether `share` is `line` or more, both rounded to six decimals as the
/// rule API's `round(x, 6)` does (a share compared with a line to a
/// millionth of the book), compared as a rule's `>=` ([`at_least_as_rhai`]).
fn reaches(share: f64, line: f64) -> bool {
    let six = |x: f64| {
        let p = 10f64.powi(6);
        (x * p).round() / p
    };
    at_least_as_rhai(six(share), six(line))
}

/// Whether `x` is more than `floor`'s value in `p`, as a rule's `x >
/// floor` ([`more_as_rhai`]).
fn is_past(p: &Portfolio, end: Day, floor: BookKey, x: f64) -> bool {
    more_as_rhai(x, floor.value(p, end))
}

/// Whether `x` is at least `floor`'s value `f` in `p` plus `pct` % of it,
/// computed and compared as a rule writes it: `x >= f + f * pct / 100.0`
/// ([`at_least_as_rhai`]).
fn is_at_least(p: &Portfolio, end: Day, floor: BookKey, x: f64, pct: u16) -> bool {
    let f = floor.value(p, end);
    at_least_as_rhai(x, f + f * f64::from(pct) / 100.0)
}

/// The scale Rhai compares two floats at: 1 when either is zero, else the
/// larger magnitude.
fn rhai_scale(x: f64, y: f64) -> f64 {
    if x * y == 0.0 {
        1.0
    } else {
        x.abs().max(y.abs())
    }
}

/// A rule's `x >= y` on two floats, as Rhai computes it (its built-in
/// operator, checked arithmetic): within a relative `f64::EPSILON` counts
/// as equal, so one unit in the last place below `y` is still at least
/// `y`; a comparison with a NaN, or of infinities (`inf >= 1.0` too), is
/// false, but for `NaN >= 0.0` (against zero the scale is NaN's magnitude,
/// ignored, and the other's, 0: equal). The API functions that give "the same answer as" a comparison
/// compare with this, not IEEE's, so that they do.
pub(crate) fn at_least_as_rhai(x: f64, y: f64) -> bool {
    let max = rhai_scale(x, y);
    max == 0.0 || (x - y) / max > -f64::EPSILON
}

/// A rule's `x > y` on two floats, as Rhai computes it: more than a
/// relative `f64::EPSILON` above ([`at_least_as_rhai`]).
pub(crate) fn more_as_rhai(x: f64, y: f64) -> bool {
    let max = rhai_scale(x, y);
    max != 0.0 && (x - y) / max > f64::EPSILON
}

impl Ago {
    /// The tier of `m` this key reads.
    fn tier(&self, m: &AccountMetrics) -> Tier {
        let d = i64::from(self.days);
        match self.ranking {
            Ranking::Basis => m.tier_only_ago(d),
            Ranking::Alone(by) => m.tier_alone_only_ago(by.basis(), d),
            Ranking::Today(by) => m.tier_alone_only_ago(by.basis(), 0),
        }
    }

    /// The share above of `m` this key reads (a day of the tier history
    /// holds every share only once one is read beyond the line's).
    fn share(&self, m: &AccountMetrics) -> f64 {
        let d = i64::from(self.days);
        match self.ranking {
            Ranking::Basis => m.tier_ago(d).1,
            Ranking::Alone(by) => m.tier_alone_ago(by.basis(), d).1,
            Ranking::Today(By::Revenue) => m.revenue_tier().1,
            Ranking::Today(By::GrossProfit) => m.gross_profit_tier().1,
        }
    }

    /// The day of the tier history [`Ago::value`] reads: as
    /// `tier_ago` and `tier_alone_ago` clamp it.
    fn wanted(&self) -> Wanted {
        let clamped = i64::from(self.days).clamp(0, TIER_HISTORY_DAYS as i64 - 1);
        let (ranking, days_ago) = match self.ranking {
            Ranking::Basis => (None, clamped),
            Ranking::Alone(by) => (Some(by.basis()), clamped),
            Ranking::Today(by) => (Some(by.basis()), 0),
        };
        Wanted {
            ranking,
            days_ago,
            book: false,
            shares: self.read == AgoRead::Share,
        }
    }

    /// Its value for `m`, to the bit.
    pub fn value(&self, m: &AccountMetrics) -> u64 {
        match self.read {
            AgoRead::Tier => self.tier(m) as u64,
            AgoRead::Share => self.share(m).to_bits(),
            AgoRead::Is(t) => u64::from(self.tier(m) == t),
        }
    }

    /// Its bit.
    pub fn bit(&self) -> u32 {
        let now = self.days == 0 || matches!(self.ranking, Ranking::Today(_));
        match (now, self.read == AgoRead::Share) {
            (true, false) => HIST_TIER_NOW,
            (true, true) => HIST_SHARE_NOW,
            (false, false) => bit_in(HIST_TIER_PAST, u64::from(self.days / 30)),
            (false, true) => bit_in(HIST_SHARE_PAST, u64::from(self.days)),
        }
    }
}

/// A figure of the portfolio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BookKey {
    /// `tier_floor(tier)`.
    TierFloor(Tier),
    /// `tier_floor_ago`, `gross_profit_floor(_ago)`: by one measure alone.
    Floor(By, Tier, u16),
    /// `revenue_12m_ago`, `gross_profit_12m(_ago)`.
    Total(By, u16),
    /// `has_revenue_12m_ago(days)`: whether `revenue_12m_ago(days)` is
    /// more than zero, as a rule's `>` compares (1 or 0): moves only when
    /// the book starts or stops having sales in those 12 months, not with
    /// every line dated in them.
    Sold(u16),
    /// `revenue_12m`.
    Revenue12m,
    Accounts,
    TierCount(Tier),
    /// `accounts_with(kind)`, by its place in `DATA_KINDS`.
    AccountsWith(u8),
    /// `revenue(days)`, `margin_pct_prev(days)`, ...: by its place in
    /// `Metric::ALL`, the window and its offset.
    Metric(u8, u32, u32),
}

impl BookKey {
    /// Its value in `p` (at `end`), as the rule reads it.
    pub fn value(&self, p: &Portfolio, end: Day) -> f64 {
        let tier = |t: &Tier| t.as_str();
        match self {
            BookKey::TierFloor(t) => p.tier_floor(tier(t)).unwrap_or(0.0),
            BookKey::Floor(by, t, d) => p
                .floor_alone(by.basis(), tier(t), i64::from(*d))
                .unwrap_or(0.0),
            BookKey::Total(by, d) => p.book_alone(by.basis(), i64::from(*d)).total,
            BookKey::Sold(d) => {
                let total = BookKey::Total(By::Revenue, *d).value(p, end);
                f64::from(u8::from(more_as_rhai(total, 0.0)))
            }
            BookKey::Revenue12m => p.revenue_12m,
            BookKey::Accounts => p.accounts as f64,
            BookKey::TierCount(t) => p.tier_count(tier(t)) as f64,
            BookKey::AccountsWith(k) => {
                p.with_data.get(usize::from(*k)).copied().unwrap_or(0) as f64
            }
            BookKey::Metric(m, days, offset) => Metric::ALL.get(usize::from(*m)).map_or(0.0, |m| {
                p.metric(*m, end, i64::from(*days), i64::from(*offset))
            }),
        }
    }

    /// The day whose ranking alone and book [`BookKey::value`] reads, if
    /// any (the pick ranks them ahead, on two threads).
    pub fn wanted(&self) -> Option<Wanted> {
        match self {
            BookKey::Floor(by, _, d) | BookKey::Total(by, d) => Some(Wanted {
                ranking: Some(by.basis()),
                days_ago: i64::from(*d),
                book: true,
                shares: false,
            }),
            BookKey::Sold(d) => BookKey::Total(By::Revenue, *d).wanted(),
            _ => None,
        }
    }

    /// Its bit.
    pub fn bit(&self) -> u32 {
        use By::{GrossProfit, Revenue};
        match self {
            BookKey::TierFloor(Tier::A) | BookKey::Floor(Revenue, Tier::A, 0) => FLOOR_A,
            BookKey::TierFloor(Tier::B) | BookKey::Floor(Revenue, Tier::B, 0) => FLOOR_B,
            BookKey::Floor(GrossProfit, Tier::A, 0) => GP_FLOOR_A,
            BookKey::Floor(GrossProfit, Tier::B, 0) => GP_FLOOR_B,
            BookKey::Revenue12m | BookKey::Total(Revenue, 0) | BookKey::Sold(0) => TOTAL,
            BookKey::Total(GrossProfit, 0) => GP_TOTAL,
            BookKey::Accounts | BookKey::TierCount(_) | BookKey::AccountsWith(_) => COUNTS,
            BookKey::Floor(_, _, d) | BookKey::Total(_, d) | BookKey::Sold(d) if *d > 0 => {
                BOOK_PAST
            }
            other => {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                other.hash(&mut h);
                bit_in(BOOK_OTHER, h.finish())
            }
        }
    }
}

/// A multiply-rotate hasher (FxHash's) for the few small keys of one run:
/// every getter of the rule API notes its key, hundreds of times a run,
/// and SipHash's defence against chosen keys is not needed for the API's
/// own keys.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Fx(u64);

impl Fx {
    #[inline]
    fn add(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.add(u64::from(*b));
        }
    }
    fn write_u8(&mut self, x: u8) {
        self.add(u64::from(x));
    }
    fn write_u16(&mut self, x: u16) {
        self.add(u64::from(x));
    }
    fn write_u32(&mut self, x: u32) {
        self.add(u64::from(x));
    }
    fn write_u64(&mut self, x: u64) {
        self.add(x);
    }
    fn write_usize(&mut self, x: usize) {
        self.add(x as u64);
    }
}

/// A set hashed with [`Fx`].
pub(crate) type FxSet<T> = HashSet<T, BuildHasherDefault<Fx>>;

/// What one pair's run read, as bits: what its decision read (whether it
/// raised an alert, and each alert's key, severity, `starts`, title and
/// action), and what only the figures of its alerts read (`alert(#{
/// figures: Fn("name") })`, [`figures`]). `rules::changed` does not run a
/// pair again for a change of what its figures read alone: its alerts'
/// texts are written only when their lifecycle changes, which a change of
/// what decided them does (an account whose tier moved has every pair
/// run). Both empty: the pair did not run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Read {
    pub decide: u32,
    pub figures: u32,
}

impl Read {
    /// Whether the pair did not run.
    pub fn is_empty(self) -> bool {
        self.decide == 0 && self.figures == 0
    }

    /// Everything it read.
    pub fn all(self) -> u32 {
        self.decide | self.figures
    }
}

/// What one run read: bits (of its decision, and of its alerts' figures
/// alone), the account keys (at most [`MAX_KEYS`] of earlier days and as
/// many others, in the order first read) and the book's keys.
#[derive(Debug, Default)]
pub struct Record {
    pub bits: u32,
    /// The bits read only while an alert's figures were computed.
    figure_bits: u32,
    /// Whether an alert's figures are being computed ([`figures`]).
    in_figures: bool,
    pub keys: Vec<AccountKey>,
    book: FxSet<BookKey>,
    /// The keys read, noted or not (past the limits).
    seen: FxSet<AccountKey>,
    /// How many of `keys` are of earlier days ([`AccountKey::is_past`]).
    past: usize,
}

impl Record {
    /// Notes `bits` as read by the decision, or by the figures while
    /// they are computed.
    #[inline]
    fn read(&mut self, bits: u32) {
        if self.in_figures {
            self.figure_bits |= bits;
        } else {
            self.bits |= bits;
        }
    }
}

thread_local! {
    /// What the current run on this thread read.
    static RUN: RefCell<Record> = RefCell::new(Record::default());
}

/// Starts recording a run that reads `bits` before its script runs (its
/// tier filter, its needs).
pub(super) fn start(bits: u32) {
    RUN.with(|r| {
        let mut r = r.borrow_mut();
        r.bits = bits;
        r.figure_bits = 0;
        r.in_figures = false;
        r.keys.clear();
        r.seen.clear();
        r.past = 0;
    });
}

/// What the current run read, its account keys appended to `keys`, its
/// book keys added to `book`.
pub(super) fn finish(keys: &mut Vec<AccountKey>, book: &mut HashSet<BookKey>) -> Read {
    RUN.with(|r| {
        let mut r = r.borrow_mut();
        keys.extend_from_slice(&r.keys);
        book.extend(r.book.drain());
        Read {
            decide: r.bits,
            figures: r.figure_bits,
        }
    })
}

/// Runs `f`, an alert's figures (`alert(#{ figures: Fn("name") })`), with
/// what it reads noted as the figures' ([`Read::figures`]), not the
/// decision's: they decide nothing (the alert is raised, with its key,
/// severity and title, before they are computed).
pub(super) fn figures<T>(f: impl FnOnce() -> T) -> T {
    let was = RUN.with(|r| std::mem::replace(&mut r.borrow_mut().in_figures, true));
    let out = f();
    RUN.with(|r| r.borrow_mut().in_figures = was);
    out
}

/// Whether an alert's figures are being computed on this thread.
pub(super) fn in_figures() -> bool {
    RUN.with(|r| r.borrow().in_figures)
}

/// Notes a read of a value `rules::changed` keeps for every account.
#[inline]
pub(super) fn note(bits: u32) {
    RUN.with(|r| r.borrow_mut().read(bits));
}

/// Notes the account key `key`.
fn note_key(key: AccountKey) {
    RUN.with(|r| {
        let mut r = r.borrow_mut();
        r.read(key.bit());
        if !r.seen.insert(key) {
            return;
        }
        let past = key.is_past();
        let (noted, over) = if past {
            (r.past, AccountKey::PastOverflow)
        } else {
            (r.keys.len() - r.past, AccountKey::Overflow)
        };
        if noted < MAX_KEYS {
            r.keys.push(key);
            r.past += usize::from(past);
        } else if r.seen.insert(over) {
            // Past the keys noted: every key of the kinds kept per account
            // (of earlier days, or all of them). A key's own bit is one of
            // its overflow's, which moves all of them.
            r.read(over.bit());
            r.keys.push(over);
            r.past += usize::from(past);
        }
    });
}

/// Reads the tier of `key` of `m`, noted.
pub(super) fn ago_tier(m: &AccountMetrics, key: Ago) -> Tier {
    note_key(AccountKey::Ago(key));
    key.tier(m)
}

/// Reads the share above of `key` of `m`, noted.
pub(super) fn ago_share(m: &AccountMetrics, key: Ago) -> f64 {
    note_key(AccountKey::Ago(key));
    key.share(m)
}

/// Whether `x` is past the floor `floor` of `p` (more than it), noted
/// with `x` (the floor itself is not read).
pub(super) fn past(p: &Portfolio, end: Day, floor: BookKey, x: f64) -> bool {
    note_key(AccountKey::Past(floor, x.to_bits()));
    is_past(p, end, floor, x)
}

/// Whether `x` is at least the floor `floor` of `p` plus `pct` % of it,
/// noted with `x` and `pct` (the floor itself is not read).
pub(super) fn at_least(p: &Portfolio, end: Day, floor: BookKey, x: f64, pct: u16) -> bool {
    note_key(AccountKey::AtLeast(floor, x.to_bits(), pct));
    is_at_least(p, end, floor, x, pct)
}

/// Whether `m`'s share above of today (`by`) reaches `line`, to six
/// decimals ([`reaches`]), noted with `line` (the share itself is not
/// read).
pub(super) fn share_reaches(m: &AccountMetrics, by: AboveBy, line: f64) -> bool {
    note_key(AccountKey::Reaches(by, line.to_bits()));
    reaches(by.share(m), line)
}

/// Where `m` stood against the tier A line of `p` `days` days back, with
/// a margin of `margin` % (`metrics::a_line_state`), noted as its answer.
pub(super) fn line(
    m: &AccountMetrics,
    p: &Portfolio,
    end: Day,
    days: u16,
    margin: f64,
) -> LineState {
    note_key(AccountKey::Line {
        days,
        margin: margin.to_bits(),
    });
    a_line_state(m, p, end, i64::from(days), margin)
}

/// Reads `key` of `p`, noted.
pub(super) fn book(p: &Portfolio, end: Day, key: BookKey) -> f64 {
    RUN.with(|r| {
        let mut r = r.borrow_mut();
        r.read(key.bit());
        r.book.insert(key);
    });
    key.value(p, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys of earlier days past [`MAX_KEYS`] are noted as every earlier
    /// day, today's keys still one by one; today's keys past it as the
    /// whole history.
    #[test]
    fn earlier_days_past_the_keys_noted_are_taken_whole_apart_from_today() {
        let ago = |days: u16, ranking| {
            AccountKey::Ago(Ago {
                ranking,
                days,
                read: AgoRead::Tier,
            })
        };
        let run = |keys: &[AccountKey]| {
            start(0);
            for k in keys {
                note_key(*k);
            }
            let (mut noted, mut book) = (Vec::new(), HashSet::new());
            let bits = finish(&mut noted, &mut book).decide;
            (bits, noted)
        };
        let mut keys: Vec<AccountKey> = (1..=80).map(|d| ago(d, Ranking::Basis)).collect();
        keys.push(ago(0, Ranking::Basis));
        keys.push(ago(3, Ranking::Today(By::Revenue)));
        keys.push(AccountKey::Past(
            BookKey::TierFloor(Tier::A),
            7.0f64.to_bits(),
        ));
        keys.push(ago(81, Ranking::Alone(By::Revenue)));
        let (bits, noted) = run(&keys);
        assert_eq!(noted.len(), MAX_KEYS + 1 + 3);
        assert_eq!(noted.iter().filter(|k| k.is_past()).count(), MAX_KEYS + 1);
        assert!(noted.contains(&AccountKey::PastOverflow));
        assert!(!noted.contains(&AccountKey::Overflow));
        for k in &keys[80..83] {
            assert!(noted.contains(k), "{k:?}");
            assert!(!k.is_past(), "{k:?}");
        }
        assert_eq!(
            bits & AccountKey::PastOverflow.bit(),
            AccountKey::PastOverflow.bit()
        );
        assert_eq!(
            bits & (HIST_TIER_NOW | PAST_FLOOR),
            HIST_TIER_NOW | PAST_FLOOR
        );
        assert_eq!(bits & HIST_SHARE_NOW, 0);

        // Today's keys past the limit: the whole history.
        let keys: Vec<AccountKey> = (0..70u32)
            .map(|x| AccountKey::Past(BookKey::TierFloor(Tier::A), f64::from(x).to_bits()))
            .collect();
        let (bits, noted) = run(&keys);
        assert_eq!(noted.len(), MAX_KEYS + 1);
        assert_eq!(noted.last(), Some(&AccountKey::Overflow));
        assert_eq!(bits & HISTORY, HISTORY);
        // A run that noted fewer is noted whole, the count starting again.
        let (_, noted) = run(&[ago(5, Ranking::Basis)]);
        assert_eq!(noted, [ago(5, Ranking::Basis)]);
    }

    /// Every account keeps its keys (up to [`MAX_KEYS`] of each run):
    /// a key grows the daemon's memory with the book.
    #[test]
    fn an_account_key_is_24_bytes() {
        assert_eq!(std::mem::size_of::<AccountKey>(), 24);
    }

    #[test]
    fn each_key_has_one_bit_in_its_group() {
        for days in [0u16, 1, 30, 181, 730] {
            for read in [AgoRead::Tier, AgoRead::Share, AgoRead::Is(Tier::A)] {
                for ranking in [
                    Ranking::Basis,
                    Ranking::Alone(By::Revenue),
                    Ranking::Today(By::GrossProfit),
                ] {
                    let b = Ago {
                        ranking,
                        days,
                        read,
                    }
                    .bit();
                    assert_eq!(b.count_ones(), 1);
                    assert_eq!(b & HISTORY, b);
                }
            }
        }
        for k in [
            BookKey::TierFloor(Tier::A),
            BookKey::Floor(By::GrossProfit, Tier::B, 30),
            BookKey::Total(By::Revenue, 0),
            BookKey::Sold(0),
            BookKey::Sold(400),
            BookKey::Metric(3, 365, 0),
            BookKey::AccountsWith(4),
        ] {
            assert_eq!(k.bit().count_ones(), 1);
            assert_eq!(k.bit() & PORTFOLIO, k.bit(), "{k:?}");
        }
        assert_eq!(HISTORY & PORTFOLIO, 0);
        assert_eq!((HISTORY | PORTFOLIO) & PAST_FLOOR, 0);
        assert_eq!(
            OWN | VISITS
                | RAN
                | TIER
                | PREV_TIER
                | RANK
                | SHARE
                | SHARE_ABOVE
                | KINDS
                | STOCK
                | HISTORY
                | PORTFOLIO
                | PAST_FLOOR,
            ALL
        );
        assert_eq!(
            HISTORY,
            HIST_TIER_NOW | HIST_SHARE_NOW | bits_of(HIST_TIER_PAST) | bits_of(HIST_SHARE_PAST)
        );
        assert_eq!(
            PORTFOLIO,
            FLOOR_A
                | FLOOR_B
                | GP_FLOOR_A
                | GP_FLOOR_B
                | TOTAL
                | GP_TOTAL
                | COUNTS
                | bits_of(BOOK_OTHER)
                | BOOK_PAST
        );
        // Earlier days' figures have their bit, today's none of it.
        assert_eq!(BookKey::Total(By::Revenue, 1).bit(), BOOK_PAST);
        assert_eq!(
            BookKey::Floor(By::GrossProfit, Tier::A, 730).bit(),
            BOOK_PAST
        );
        for k in [
            BookKey::Metric(3, 365, 0),
            BookKey::Metric(3, 365, 365),
            BookKey::Revenue12m,
            BookKey::Total(By::GrossProfit, 0),
        ] {
            assert_ne!(k.bit(), BOOK_PAST, "{k:?}");
        }
    }
}
