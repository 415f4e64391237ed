//! What the book decides and what of it rules may read, kept to tell what
//! changed since the last evaluation (`rules::changed`): each account's
//! placing ([`Placed`]) and the book's figures ([`Book`]), to the bit.
//! Plain values; touches nothing.

use crate::metrics::{AccountMetrics, Snapshot};
use crate::model::Tier;
use crate::rules::reads;

/// The values the book decides for one account, as a rule reads them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Placed {
    tier: Tier,
    prev_tier: Tier,
    rank: usize,
    share: u64,
    share_above: u64,
}

impl Placed {
    pub(super) fn of(m: &AccountMetrics) -> Placed {
        Placed {
            tier: m.tier,
            prev_tier: m.prev_tier,
            rank: m.rank,
            share: m.share.to_bits(),
            share_above: m.share_above.to_bits(),
        }
    }

    /// The [`reads`] bits of what differs between `self` and `now`.
    pub(super) fn changed(&self, now: &Placed) -> u16 {
        bits_of(&[
            (self.tier != now.tier, reads::TIER),
            (self.prev_tier != now.prev_tier, reads::PREV_TIER),
            (self.rank != now.rank, reads::RANK),
            (self.share != now.share, reads::SHARE),
            (self.share_above != now.share_above, reads::SHARE_ABOVE),
        ])
    }
}

/// What rules may read of the book, to tell what changed of it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Book {
    /// `format!("{:?}")` of the portfolio: every number to the bit.
    all: String,
    /// The floors by revenue, then by gross profit alone.
    floors: [u64; 4],
    counts: (usize, [usize; 3], [usize; 5]),
    kinds: u8,
}

impl Book {
    pub(super) fn of(snap: &Snapshot) -> Book {
        let p = &snap.portfolio;
        Book {
            all: format!("{p:?}"),
            floors: {
                let gp = p.book_alone(crate::config::TierBasis::GrossProfit, 0);
                [p.floor_a, p.floor_b, gp.floor_a, gp.floor_b].map(f64::to_bits)
            },
            counts: (p.accounts, [p.tier_a, p.tier_b, p.tier_c], p.with_data),
            kinds: p.data_bits(),
        }
    }

    /// The [`reads`] bits of what differs between `self` and `now`.
    pub(super) fn changed(&self, now: &Book) -> u16 {
        bits_of(&[
            (self.all != now.all, reads::PORTFOLIO),
            (self.floors != now.floors, reads::FLOORS),
            (self.counts != now.counts, reads::COUNTS),
            (self.kinds != now.kinds, reads::KINDS),
        ])
    }
}

/// The [`reads`] bits whose value differs, or-ed together.
fn bits_of(pairs: &[(bool, u16)]) -> u16 {
    pairs
        .iter()
        .filter(|(differs, _)| *differs)
        .fold(0, |bits, (_, bit)| bits | bit)
}
