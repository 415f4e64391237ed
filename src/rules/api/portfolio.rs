//! The rule API's `portfolio`: the whole book's counts, tier lines and
//! floors (and whether a value is past one), and its figures over a window. Registers into the engine it is
//! given.

use std::sync::Arc;

use rhai::{EvalAltResult, ImmutableString};

use super::account::Account;

use super::registry::{Api, days_ago, f, g, seen, window};
use crate::metrics::{DATA_KINDS, Metric, Portfolio};
use crate::model::Tier;
use crate::model::dates::Day;
use crate::rules::reads::{self, BookKey, By};

/// `key` of the book, noted as read (`rules::reads`).
fn read(b: &Book, key: BookKey) -> f64 {
    reads::book(&b.p, b.end, key)
}

/// The tier a floor is asked for: A or B.
fn floor_tier(tier: &str) -> Option<Tier> {
    Tier::parse(tier).filter(|t| *t != Tier::C)
}

/// The value a rule sees as `portfolio`: book-level totals.
#[derive(Clone)]
pub struct Book {
    pub p: Arc<Portfolio>,
    pub end: Day,
    pub explain: bool,
}

/// The book's size and tier lines.
pub(super) fn book(api: &mut Api) {
    api.section = "portfolio: the whole book";
    g!(
        api,
        "accounts",
        "portfolio.accounts",
        "number of active accounts (the ranked ones: the customer master's active accounts; every figure of the portfolio is over them, never over order lines of accounts the master does not list)",
        |b: &mut Book| {
            seen(
                b.explain,
                || "portfolio.accounts".into(),
                read(b, BookKey::Accounts) as i64,
            )
        }
    );
    g!(
        api,
        "revenue_12m",
        "portfolio.revenue_12m",
        "the total the shares of revenue are of (account.share): the active accounts' revenue over the 365 days ending at the as-of date, summed over those above zero (an account that returned more than it bought lowers nobody's share; portfolio.revenue(365) is the same lines net of returns)",
        |b: &mut Book| seen(
            b.explain,
            || "portfolio.revenue_12m".into(),
            read(b, BookKey::Revenue12m)
        ),
    );
    g!(
        api,
        "a_share",
        "portfolio.a_share",
        "the tier-A line the book is ranked with (config tiers.a_share, e.g. 0.8)",
        |b: &mut Book| seen(b.explain, || "portfolio.a_share".into(), b.p.a_share),
    );
    g!(
        api,
        "b_share",
        "portfolio.b_share",
        "the tier-B line (config tiers.b_share, e.g. 0.95)",
        |b: &mut Book| seen(b.explain, || "portfolio.b_share".into(), b.p.b_share),
    );
    g!(
        api,
        "tiers_by",
        "portfolio.tiers_by",
        "what the book is ranked by (config tiers.by): \"revenue\", \"gross_profit\" or \"both\"",
        |b: &mut Book| {
            let v = rhai::ImmutableString::from(b.p.by.as_str());
            seen(b.explain, || "portfolio.tiers_by".into(), v)
        },
    );
    g!(
        api,
        "gross_profit_12m",
        "portfolio.gross_profit_12m",
        "the total the gross-profit shares are of (account.gross_profit_share_above): the ranked accounts' gross profit (revenue - cost) over the 365 days ending at the as-of date, an account without revenue counting none, summed over those above zero; an account's share is account.gross_profit(365) / portfolio.gross_profit_12m",
        |b: &mut Book| {
            let v = read(b, BookKey::Total(By::GrossProfit, 0));
            seen(b.explain, || "portfolio.gross_profit_12m".into(), v)
        },
    );
}

/// Accounts with a kind of data, per tier, and the tier floors.
pub(super) fn by_kind_and_tier(api: &mut Api) {
    f!(
        api,
        "accounts_with",
        "portfolio.accounts_with(kind)",
        "number of active accounts with data of `kind`: \"orders\", \"visits\", \"receivables\", \"credit_limit\" or \"stock\" (0 says the book has none of it: an export not set up yet, not a finding)",
        |b: &mut Book, kind: &str| -> Result<i64, Box<EvalAltResult>> {
            let k = DATA_KINDS.iter().position(|k| *k == kind).ok_or_else(|| {
                format!("portfolio.accounts_with({kind:?}): the kinds are orders, visits, receivables, credit_limit, stock")
            })?;
            let v = read(b, BookKey::AccountsWith(k as u8)) as i64;
            Ok(seen(
                b.explain,
                || format!("portfolio.accounts_with({kind:?})"),
                v,
            ))
        },
    );
    f!(
        api,
        "tier_count",
        "portfolio.tier_count(tier)",
        "number of active accounts in tier \"A\", \"B\" or \"C\"",
        |b: &mut Book, tier: &str| {
            // Another name than A, B or C counts none, whatever the book.
            let v = Tier::parse(tier).map_or(0, |t| read(b, BookKey::TierCount(t)) as i64);
            seen(b.explain, || format!("portfolio.tier_count({tier:?})"), v)
        },
    );
    f!(
        api,
        "tier_floor",
        "portfolio.tier_floor(tier)",
        "the trailing-12-month revenue of the smallest account ranked into tier \"A\" or \"B\" by revenue today (a tier column in the master aside); 0 when the tier is empty. An account with more than this ranks into the tier, the other accounts' revenue held as it is",
        |b: &mut Book, tier: &str| -> Result<f64, Box<EvalAltResult>> {
            let v = floor_tier(tier)
                .map(|t| read(b, BookKey::TierFloor(t)))
                .ok_or_else(|| {
                    format!(
                        "portfolio.tier_floor({tier:?}): the tiers with a floor are \"A\" and \"B\""
                    )
                })?;
            Ok(seen(
                b.explain,
                || format!("portfolio.tier_floor({tier:?})"),
                v,
            ))
        },
    );
    floors_alone(api);
    past_floors(api);
    floors_reached(api);
    a_line(api);
}

/// Where an account stands against the tier A line, with a margin.
fn a_line(api: &mut Api) {
    f!(
        api,
        "a_line_state",
        "portfolio.a_line_state(account, margin, days)",
        "where the account stood `days` days before the as-of date (0 to 730; 0: today) against the tier A line (tiers.a_share) with a margin of `margin` % of its own 12 months on each side, on each measure of tiers.by against that day's book ranked by that measure alone: \"A\" (in A, and would stay A after losing the margin, the others held as they are: its 12 months at least the margin above portfolio.tier_floor_ago(\"A\", days), or the accounts above it under the line of the total less the margin), \"a_line\" (in A, inside the margin), \"band\" (out, inside the margin: it would need less than the margin more to be A, the smaller of reaching the floor and enough that the accounts above it fall under the line as the total grows with it) or \"out\" (it would need the margin or more, on some measure); each comparison to six decimals of its percentage. Read as that answer, which moves only when the account crosses a side of the band, not with every order (tier_movement's hysteresis; see docs/rules.md)",
        |b: &mut Book, a: Account, margin: f64, days: i64| a_line_state(b, &a, margin, days),
    );
    f!(
        api,
        "a_line_state",
        "portfolio.a_line_state(account, margin, days)",
        "the same with a whole margin",
        |b: &mut Book, a: Account, margin: i64, days: i64| a_line_state(b, &a, margin as f64, days),
    );
}

/// `portfolio.a_line_state`, checked and noted.
fn a_line_state(
    b: &Book,
    a: &Account,
    margin: f64,
    days: i64,
) -> Result<ImmutableString, Box<EvalAltResult>> {
    let call = || {
        format!(
            "portfolio.a_line_state({}, {margin}, {days})",
            a.master().id
        )
    };
    days_ago(&call, days)?;
    if !(margin.is_finite() && margin >= 0.0) {
        return Err(format!("{}: the margin is a percentage, 0 or more", call()).into());
    }
    let v = reads::line(a.master(), &b.p, b.end, days as u16, margin).as_str();
    Ok(seen(b.explain, call, v.into()))
}

/// Whether a value is past today's floor, the floor not read as such.
fn past_floors(api: &mut Api) {
    for (by, name, what) in [
        (None, "past_tier_floor", "portfolio.tier_floor(tier)"),
        (
            Some(By::GrossProfit),
            "past_gross_profit_floor",
            "portfolio.gross_profit_floor(tier)",
        ),
    ] {
        f!(
            api,
            name,
            &format!("portfolio.{name}(tier, value)"),
            &format!(
                "true when `value` is more than {what} (tier \"A\" or \"B\"): the same answer as `value > {what}`, but read as that answer, so after a small drop the rule runs again for the account only when the floor crosses `value`, not whenever the floor moves (see docs/rules.md, \"What makes a rule cheap\")"
            ),
            move |b: &mut Book, tier: &str, value: f64| -> Result<bool, Box<EvalAltResult>> {
                let call = || format!("portfolio.{name}({tier:?}, {value})");
                let t = floor_tier(tier).ok_or_else(|| {
                    format!("{}: the tiers with a floor are \"A\" and \"B\"", call())
                })?;
                let key = match by {
                    None => BookKey::TierFloor(t),
                    Some(by) => BookKey::Floor(by, t, 0),
                };
                Ok(seen(b.explain, call, reads::past(&b.p, b.end, key, value)))
            },
        );
    }
}

/// Whether a value reaches today's floor plus a margin, the floor not
/// read as such.
fn floors_reached(api: &mut Api) {
    for (by, name, what) in [
        (
            None,
            "reaches_tier_floor_plus",
            "portfolio.tier_floor(tier)",
        ),
        (
            Some(By::GrossProfit),
            "reaches_gross_profit_floor_plus",
            "portfolio.gross_profit_floor(tier)",
        ),
    ] {
        f!(
            api,
            name,
            &format!("portfolio.{name}(tier, value, pct)"),
            &format!(
                "true when `value` is at least {what} (tier \"A\" or \"B\") plus `pct` % of it (a whole number, 0 to 1000): the same answer as `value >= f + f * pct / 100.0` with f = {what}, but read as that answer, so after a small drop the rule runs again for the account only when that line crosses `value`. With `value` 0.0 and `pct` 0 it tells an empty tier (a floor of 0 or less) without reading the floor"
            ),
            move |b: &mut Book, tier: &str, value: f64, pct: i64| {
                floor_reached(b, by, name, tier, value, pct as f64)
            },
        );
        f!(
            api,
            name,
            &format!("portfolio.{name}(tier, value, pct)"),
            "the same with `pct` a float, a whole number",
            move |b: &mut Book, tier: &str, value: f64, pct: f64| {
                floor_reached(b, by, name, tier, value, pct)
            },
        );
    }
}

/// `portfolio.reaches_tier_floor_plus` (`by` None) and
/// `reaches_gross_profit_floor_plus`, checked and noted.
fn floor_reached(
    b: &Book,
    by: Option<By>,
    name: &str,
    tier: &str,
    value: f64,
    pct: f64,
) -> Result<bool, Box<EvalAltResult>> {
    let call = || format!("portfolio.{name}({tier:?}, {value}, {pct})");
    let t = floor_tier(tier)
        .ok_or_else(|| format!("{}: the tiers with a floor are \"A\" and \"B\"", call()))?;
    if !(pct.fract() == 0.0 && (0.0..=1000.0).contains(&pct)) {
        return Err(format!("{}: the margin is a whole percentage, 0 to 1000", call()).into());
    }
    let key = match by {
        None => BookKey::TierFloor(t),
        Some(by) => BookKey::Floor(by, t, 0),
    };
    let at = reads::at_least(&b.p, b.end, key, value, pct as u16);
    Ok(seen(b.explain, call, at))
}

/// [`by_kind_and_tier`]'s floors by gross profit, and the floors and
/// totals of earlier days, by each measure alone.
fn floors_alone(api: &mut Api) {
    f!(
        api,
        "gross_profit_floor",
        "portfolio.gross_profit_floor(tier)",
        "the trailing-12-month gross profit of the smallest account ranked into tier \"A\" or \"B\" by gross profit alone today, whatever tiers.by says (a tier column in the master aside); 0 when the tier is empty. An account with more than this ranks into the tier by gross profit, the other accounts' held as they are",
        |b: &mut Book, tier: &str| floor(b, By::GrossProfit, "gross_profit_floor", tier, None),
    );
    for (by, name, what) in [
        (By::Revenue, "tier_floor_ago", "portfolio.tier_floor(tier)"),
        (
            By::GrossProfit,
            "gross_profit_floor_ago",
            "portfolio.gross_profit_floor(tier)",
        ),
    ] {
        f!(
            api,
            name,
            &format!("portfolio.{name}(tier, days)"),
            &format!(
                "{what} as it was `days` days before the as-of date (0 to 730): the book of that day ranked by that measure alone"
            ),
            move |b: &mut Book, tier: &str, days: i64| floor(b, by, name, tier, Some(days)),
        );
    }
    for (by, name, what) in [
        (By::Revenue, "revenue_12m_ago", "revenue"),
        (By::GrossProfit, "gross_profit_12m_ago", "gross profit"),
    ] {
        f!(
            api,
            name,
            &format!("portfolio.{name}(days)"),
            &format!(
                "the total the {what} shares were of `days` days before the as-of date (0 to 730): the ranked accounts' trailing-12-month {what} on that day"
            ),
            move |b: &mut Book, days: i64| {
                let call = || format!("portfolio.{name}({days})");
                days_ago(&call, days)?;
                let v = read(b, BookKey::Total(by, days as u16));
                Ok::<_, Box<EvalAltResult>>(seen(b.explain, call, v))
            },
        );
    }
    f!(
        api,
        "has_revenue_12m_ago",
        "portfolio.has_revenue_12m_ago(days)",
        "true when the book had sales in the 12 months to `days` days before the as-of date (0 to 730): the same answer as `portfolio.revenue_12m_ago(days) > 0.0`, but read as that answer, so the rule runs again only when it changes, not with every order line dated in those 12 months (a re-export of old lines moves the total; see docs/rules.md, \"What makes a rule cheap\")",
        |b: &mut Book, days: i64| {
            let call = || format!("portfolio.has_revenue_12m_ago({days})");
            days_ago(&call, days)?;
            let v = read(b, BookKey::Sold(days as u16)) > 0.0;
            Ok::<_, Box<EvalAltResult>>(seen(b.explain, call, v))
        },
    );
}

/// A floor of [`floors_alone`]: `days` ago, or today (None).
fn floor(
    b: &mut Book,
    by: By,
    name: &str,
    tier: &str,
    days: Option<i64>,
) -> Result<f64, Box<EvalAltResult>> {
    let call = || match days {
        Some(d) => format!("portfolio.{name}({tier:?}, {d})"),
        None => format!("portfolio.{name}({tier:?})"),
    };
    if let Some(d) = days {
        days_ago(&call, d)?;
    }
    let d = days.unwrap_or(0) as u16;
    let v = floor_tier(tier)
        .map(|t| read(b, BookKey::Floor(by, t, d)))
        .ok_or_else(|| format!("{}: the tiers with a floor are \"A\" and \"B\"", call()))?;
    Ok(seen(b.explain, call, v))
}

/// The book's figures over a window.
pub(super) fn windowed(api: &mut Api) {
    for (i, m) in Metric::ALL.into_iter().enumerate() {
        if m == Metric::Skus {
            continue;
        }
        let key =
            move |days: i64, offset: i64| BookKey::Metric(i as u8, days as u32, offset as u32);
        let name = m.name();
        f!(
            api,
            name,
            &format!("portfolio.{name}(days)"),
            &format!(
                "the book's {} over the `days` days ending at the as-of date: the active accounts' order lines (the ranked accounts), net of returns",
                m.describe()
            ),
            move |b: &mut Book, days: i64| {
                let call = || format!("portfolio.{name}({days})");
                window(&call, days, 0)?;
                let v = read(b, key(days, 0));
                Ok::<_, Box<EvalAltResult>>(seen(b.explain, call, v))
            },
        );
        f!(
            api,
            &format!("{name}_prev"),
            &format!("portfolio.{name}_prev(days)"),
            "the same over the previous `days` days",
            move |b: &mut Book, days: i64| {
                let call = || format!("portfolio.{name}_prev({days})");
                window(&call, days, days)?;
                let v = read(b, key(days, days));
                Ok::<_, Box<EvalAltResult>>(seen(b.explain, call, v))
            },
        );
    }
}
