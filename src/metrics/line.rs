//! Where an account stands against the tier A line on a day, with a margin
//! on each side of it (`portfolio.a_line_state(account, margin, days)`):
//! clearly A, A at the line, just under it (inside the margin), or clearly
//! out, each measure of `tiers.by` against that day's book ranked by that
//! measure alone. The hysteresis band `tier_movement` decides on, computed
//! here once so a rule reads one answer (which moves only when the account
//! crosses a side of the band) instead of the floors, totals and shares
//! behind it (which every order moves). Pure arithmetic over the snapshot;
//! touches nothing.

use super::account::{AccountMetrics, Metric};
use super::snapshot::Portfolio;
use super::tiers::LineShare;
use crate::config::TierBasis;
use crate::model::Tier;
use crate::model::dates::Day;

/// Where an account stands against the tier A line ([`a_line_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineState {
    /// In A, and would stay A after losing the margin of its own 12 months.
    A,
    /// In A, within the margin above the line.
    ALine,
    /// Out of A, within the margin below the line.
    Band,
    /// Out of A, and would need at least the margin more to be A.
    Out,
}

impl LineState {
    /// As the rule reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            LineState::A => "A",
            LineState::ALine => "a_line",
            LineState::Band => "band",
            LineState::Out => "out",
        }
    }
}

/// One measure of the basis on the day: the book's floor of A and total
/// and the account's 12 months, each by that measure alone (`by`: the
/// share of the accounts above it is read by that measure, out of A).
struct OnDay {
    floor: f64,
    total: f64,
    value: f64,
    by: TierBasis,
}

/// `x` to six decimals, as the rule API's `round(x, 6)`.
fn six(x: f64) -> f64 {
    let p = 10f64.powi(6);
    (x * p).round() / p
}

/// Where account `m` stood `days` days before `end` (0: today, its tier
/// today; else its tier then) against the tier A line of `p` (`a_share`),
/// with a margin of `margin` % of its own 12 months on each side:
/// - in A, clearly A when on each measure of the basis it could lose the
///   margin and stay A, the other accounts held as they are: its 12
///   months at least the margin above the floor (the smallest A
///   account's), or even with every account below it passing it, the
///   accounts above would hold less than the line of the smaller total;
///   else at the line;
/// - out of A, clearly out when it would need at least the margin more on
///   some measure to be A (the most of the measures): the smaller of
///   reaching the floor and enough that the accounts above it fall under
///   the line as the total grows with it; else in the band.
///
/// Gross profit counts as none without revenue, as the ranking does. Each
/// comparison is to six decimals of its percentage.
pub fn a_line_state(
    m: &AccountMetrics,
    p: &Portfolio,
    end: Day,
    days: i64,
    margin: f64,
) -> LineState {
    let line = p.a_share;
    let tier = if days == 0 {
        m.tier
    } else {
        m.tier_only_ago(days)
    };
    let mut measures = [None, None];
    if p.by != TierBasis::GrossProfit {
        measures[0] = Some(on_day(m, p, end, days, TierBasis::Revenue));
    }
    if p.by != TierBasis::Revenue {
        measures[1] = Some(on_day(m, p, end, days, TierBasis::GrossProfit));
    }
    let measures = measures.iter().flatten();
    if tier == Tier::A {
        let clearly = measures.into_iter().all(|x| {
            let v = x.value;
            if v <= 0.0 {
                return false;
            }
            let by_floor = six((v - x.floor) / v * 100.0) >= margin;
            let by_share = six((x.total - v) / (x.total - v * margin / 100.0)) < six(line);
            by_floor || by_share
        });
        return if clearly {
            LineState::A
        } else {
            LineState::ALine
        };
    }
    let mut most = -1.0e300;
    for x in measures {
        let by_floor = x.floor - x.value;
        // Read only out of A (a day of the tier history holds the shares
        // near the line alone).
        let money = match m.line_share_ago(x.by, days, line) {
            LineShare::Share(above) => {
                let by_share = x.total * (above - line) / line;
                if by_floor < by_share {
                    by_floor
                } else {
                    by_share
                }
            }
            // So far above the line that reaching the floor costs less
            // (for an account with a positive value; the others are
            // clearly out whatever it costs).
            LineShare::Beyond => by_floor,
        };
        let pct = if x.value > 0.0 {
            money / x.value * 100.0
        } else {
            1.0e300
        };
        if pct > most {
            most = pct;
        }
    }
    if six(most) >= margin {
        LineState::Out
    } else {
        LineState::Band
    }
}

/// Measure `by` (revenue or gross profit alone) of `m` and the book on the
/// day `days` before `end`.
fn on_day(m: &AccountMetrics, p: &Portfolio, end: Day, days: i64, by: TierBasis) -> OnDay {
    let revenue = m.metric(Metric::Revenue, end, 365, days);
    let value = match by {
        TierBasis::GrossProfit if revenue > 0.0 => m.metric(Metric::GrossProfit, end, 365, days),
        TierBasis::GrossProfit => 0.0,
        _ => revenue,
    };
    OnDay {
        floor: p.floor_alone(by, "A", days).unwrap_or(0.0),
        total: p.book_alone(by, days).total,
        value,
        by,
    }
}
