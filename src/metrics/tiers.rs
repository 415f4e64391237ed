//! Tiers: ranking the book by trailing-12-month revenue (or gross profit)
//! into A/B/C by cumulative share, and `TierHistory`, the tiers of the
//! days before a snapshot's, ranked on first use. Touches nothing but the
//! series it is given.

use super::series::{Measure, Series};
use crate::config::TierConfig;
use crate::model::Tier;
use crate::model::dates::Day;

/// How many days back the previous tier is computed.
pub const PREV_TIER_DAYS: i32 = 30;

/// How far back [`TierHistory`] answers, in days.
pub const TIER_HISTORY_DAYS: usize = 731;

/// The tier and share-above of every active account on the days before a
/// snapshot's, each day ranked on first use from the same series (at most
/// once per snapshot: rules on every thread share it). Accounts are by
/// their index in the timeline (id order).
pub struct TierHistory {
    end: Day,
    tiers: TierConfig,
    series: Vec<Series>,
    overrides: Vec<Option<Tier>>,
    /// Orders of accounts not active in the master: they count in the total.
    others: Vec<Series>,
    /// By days ago: (tier, share above) by account index.
    days: Vec<std::sync::OnceLock<Vec<(Tier, f64)>>>,
    /// The end day ranked by trailing-12-month gross profit instead, on
    /// first use: (tier, share of the book's gross profit above).
    by_gross_profit: std::sync::OnceLock<Vec<(Tier, f64)>>,
}

impl std::fmt::Debug for TierHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TierHistory(end {}, {} accounts)",
            self.end,
            self.series.len()
        )
    }
}

impl TierHistory {
    /// A history ending at `end`, for accounts with these series and tier
    /// overrides (by account index).
    pub fn new(
        end: Day,
        tiers: &TierConfig,
        series: Vec<Series>,
        overrides: Vec<Option<Tier>>,
        others: Vec<Series>,
    ) -> TierHistory {
        let days = (0..TIER_HISTORY_DAYS)
            .map(|_| std::sync::OnceLock::new())
            .collect();
        TierHistory {
            end,
            tiers: tiers.clone(),
            series,
            overrides,
            others,
            days,
            by_gross_profit: std::sync::OnceLock::new(),
        }
    }

    /// Account `i`'s (tier, share above) at the end day when the book is
    /// ranked by trailing-12-month gross profit (revenue - cost) with the
    /// same lines; an account without gross profit is C. The master's
    /// tier column does not apply. None for an unknown account.
    pub fn by_gross_profit(&self, i: usize) -> Option<(Tier, f64)> {
        let gp = |s: &Series| {
            s.sum(Measure::Revenue, self.end, 365) - s.sum(Measure::Cost, self.end, 365)
        };
        self.by_gross_profit
            .get_or_init(|| {
                let own: Vec<f64> = self.series.iter().map(gp).collect();
                let others: f64 = self.others.iter().map(gp).sum();
                rank_tiers(&own, others, &self.tiers)
            })
            .get(i)
            .copied()
    }

    /// Sets a day already ranked (`days_ago`: (tier, share above) by
    /// account index); a day already set keeps its value.
    pub fn seed(&self, days_ago: usize, ranked: Vec<(Tier, f64)>) {
        if let Some(slot) = self.days.get(days_ago) {
            let _ = slot.set(ranked);
        }
    }

    /// Account `i`'s (tier, share above) `days_ago` days before the end;
    /// None beyond [`TIER_HISTORY_DAYS`] or for an unknown account.
    pub fn at(&self, i: usize, days_ago: i64) -> Option<(Tier, f64)> {
        let k = usize::try_from(days_ago).ok()?;
        let slot = self.days.get(k)?;
        let day = self.end - k as i32;
        slot.get_or_init(|| {
            let revenue: Vec<f64> = self
                .series
                .iter()
                .map(|s| s.sum(Measure::Revenue, day, 365))
                .collect();
            let others: f64 = self
                .others
                .iter()
                .map(|s| s.sum(Measure::Revenue, day, 365))
                .sum();
            let mut out = rank_tiers(&revenue, others, &self.tiers);
            for (t, o) in out.iter_mut().zip(&self.overrides) {
                if let Some(o) = o {
                    t.0 = *o;
                }
            }
            out
        })
        .get(i)
        .copied()
    }
}

/// Tiers and shares above by account, from each account's trailing-12-
/// month revenue (in account order) and the revenue of accounts not
/// ranked: largest first, ties in account order, as the snapshot ranks.
pub fn rank_tiers(revenue: &[f64], others: f64, tiers: &TierConfig) -> Vec<(Tier, f64)> {
    let finite = |t: f64| if t.is_finite() { t } else { 0.0 };
    let total = finite(revenue.iter().sum::<f64>() + others);
    let mut order: Vec<(f64, usize)> = revenue.iter().copied().zip(0..).collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0));
    let sorted: Vec<f64> = order.iter().map(|a| a.0).collect();
    let assigned = assign_tiers(&sorted, total, tiers);
    let mut out = vec![(Tier::C, 1.0); revenue.len()];
    let mut above = 0.0;
    for ((rev, i), t) in order.into_iter().zip(assigned) {
        out[i] = (t, if total > 0.0 { above } else { 1.0 });
        if total > 0.0 {
            above += rev / total;
        }
    }
    out
}

/// Tiers for accounts sorted by revenue, largest first: cumulative share up
/// to `a_share` is A, up to `b_share` B, the rest (and anyone without
/// revenue) C. The account that crosses a threshold still belongs to the tier.
pub fn assign_tiers(revenues: &[f64], total: f64, tiers: &TierConfig) -> Vec<Tier> {
    let mut cumulative = 0.0;
    revenues
        .iter()
        .map(|rev| {
            let tier = if *rev <= 0.0 {
                Tier::C
            } else if cumulative < tiers.a_share {
                Tier::A
            } else if cumulative < tiers.b_share {
                Tier::B
            } else {
                Tier::C
            };
            if total > 0.0 {
                cumulative += rev / total;
            }
            tier
        })
        .collect()
}

/// The master's tier column as stored: A, B or C in any case, spaces
/// around; anything else is no override.
pub(super) fn parse_tier(t: &str) -> Option<Tier> {
    Tier::parse(&t.trim().to_ascii_uppercase())
}
