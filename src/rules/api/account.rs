//! The rule API's `account`, who it is: id, name, region, owner, tier and
//! rank (now and as it was), the tiers by revenue and by gross profit
//! alone, and the customer master's extra columns. Registers into the
//! engine it is given.

use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult, ImmutableString};

use super::registry::{Api, days_ago, f, g, seen};
use crate::metrics::AccountMetrics;
use crate::model::Tier;
use crate::model::dates::Day;
use crate::rules::reads::{
    self, AboveBy, Ago, AgoRead, By, PREV_TIER, RANK, Ranking, SHARE, SHARE_ABOVE, TIER, note,
};

/// The value a rule sees as `account`.
#[derive(Clone)]
pub struct Account {
    /// Read only through [`Account::orders`], [`Account::visits`] and
    /// [`Account::master`]: a run notes which of the account's own data
    /// it read, and a getter cannot forget to.
    m: Arc<AccountMetrics>,
    pub end: Day,
    pub explain: bool,
}

impl Account {
    /// Account `m` as of `end`; `explain`: for `kamwatch rules explain`.
    pub fn new(m: Arc<AccountMetrics>, end: Day, explain: bool) -> Account {
        Account { m, end, explain }
    }

    /// Its metrics, to read its own order lines or what is made of them
    /// alone (sums, main SKUs): noted as read ([`reads::OWN`]).
    pub(super) fn orders(&self) -> &AccountMetrics {
        note(reads::OWN);
        &self.m
    }

    /// Its metrics, to read its own visits: noted as read
    /// ([`reads::VISITS`]).
    pub(super) fn visits(&self) -> &AccountMetrics {
        note(reads::VISITS);
        &self.m
    }

    /// Its metrics, to read who it is (the customer master), its
    /// receivables and credit (a file of either reads the book again and
    /// runs every rule), and what the book decides for it (each getter
    /// notes that itself): nothing of its own order lines or visits.
    pub(super) fn master(&self) -> &AccountMetrics {
        &self.m
    }

    /// Whether this is the handle of `m`.
    pub(crate) fn is(&self, m: &Arc<AccountMetrics>) -> bool {
        Arc::ptr_eq(&self.m, m)
    }
}

thread_local! {
    /// The tier strings, allocated once per thread: shared between threads,
    /// their reference counts would bounce between the cores' caches.
    static TIERS: [ImmutableString; 3] = ["A".into(), "B".into(), "C".into()];
}

fn tier_str(t: &str) -> ImmutableString {
    let i = match t {
        "A" => 0,
        "B" => 1,
        _ => 2,
    };
    TIERS.with(|t| t[i].clone())
}

/// `v`, a value `rules::changed` keeps for every account, noted as read.
fn noted<T>(bits: u32, v: T) -> T {
    note(bits);
    v
}

/// The key of a value of the account's tier history (`days` checked).
fn ago(ranking: Ranking, days: i64, read: AgoRead) -> Ago {
    let days = u16::try_from(days).unwrap_or(u16::MAX);
    Ago {
        ranking,
        days,
        read,
    }
}

/// The account's tier by `ranking` `days` back, noted as read (`read`:
/// the tier, or whether it is one).
fn hist_tier(a: &Account, ranking: Ranking, days: i64, read: AgoRead) -> Tier {
    reads::ago_tier(a.master(), ago(ranking, days, read))
}

/// The account's share above by `ranking` `days` back, noted as read.
fn hist_share(a: &Account, ranking: Ranking, days: i64) -> f64 {
    reads::ago_share(a.master(), ago(ranking, days, AgoRead::Share))
}

fn json_to_dynamic(v: &serde_json::Value) -> Dynamic {
    match v {
        serde_json::Value::Null => Dynamic::UNIT,
        serde_json::Value::Bool(b) => (*b).into(),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(0.0).into(),
        },
        serde_json::Value::String(s) => s.clone().into(),
        other => other.to_string().into(),
    }
}

/// `account.id` ... `account.share_above`.
pub(super) fn identity(api: &mut Api) {
    api.section = "account: who it is";
    g!(
        api,
        "id",
        "account.id",
        "the account id from the customer master",
        |a: &mut Account| { seen(a.explain, || "account.id".into(), a.master().id.to_string()) }
    );
    g!(
        api,
        "name",
        "account.name",
        "the account's name",
        |a: &mut Account| {
            seen(
                a.explain,
                || "account.name".into(),
                a.master().name.to_string(),
            )
        }
    );
    g!(
        api,
        "region",
        "account.region",
        "the region from the master (\"\" if none)",
        |a: &mut Account| {
            seen(
                a.explain,
                || "account.region".into(),
                a.master().region.to_string(),
            )
        }
    );
    g!(
        api,
        "owner",
        "account.owner",
        "the sales rep who owns the account (\"\" if none)",
        |a: &mut Account| {
            seen(
                a.explain,
                || "account.owner".into(),
                a.master().owner.to_string(),
            )
        }
    );
    g!(
        api,
        "tier",
        "account.tier",
        "\"A\", \"B\" or \"C\": ranked by tiers.by, trailing-12-month revenue (the default), gross profit, or both (the lower of the two tiers); cumulative share up to tiers.a_share is A, up to b_share B; a tier column in the master overrides",
        |a: &mut Account| seen(
            a.explain,
            || "account.tier".into(),
            tier_str(noted(TIER, a.master().tier).as_str())
        ),
    );
    g!(
        api,
        "prev_tier",
        "account.prev_tier",
        "the tier 30 days before the as-of date, computed from the same order history by the same tiers.by",
        |a: &mut Account| seen(
            a.explain,
            || "account.prev_tier".into(),
            tier_str(noted(PREV_TIER, a.master().prev_tier).as_str())
        ),
    );
    g!(
        api,
        "rank",
        "account.rank",
        "place in the book as ranked by tiers.by (trailing-12-month revenue by default; for both, by the larger of the two shares above), 1 = first",
        |a: &mut Account| {
            seen(
                a.explain,
                || "account.rank".into(),
                noted(RANK, a.master().rank) as i64,
            )
        }
    );
    g!(
        api,
        "share",
        "account.share",
        "share of the book's trailing-12-month revenue, 0..1",
        |a: &mut Account| seen(
            a.explain,
            || "account.share".into(),
            noted(SHARE, a.master().share)
        ),
    );
    g!(
        api,
        "share_above",
        "account.share_above",
        "share held by the accounts ranked above this one by tiers.by (of the book's trailing-12-month revenue by default; for both, the larger of the revenue and gross-profit shares above), 0..1: the account is tier A while it is below tiers.a_share (portfolio.a_share); the account that crosses the line belongs to A",
        |a: &mut Account| seen(
            a.explain,
            || "account.share_above".into(),
            noted(SHARE_ABOVE, a.master().share_above)
        ),
    );
}

/// The tier and share as they were, by gross profit, and the master's columns.
pub(super) fn ranking_and_master(api: &mut Api) {
    f!(
        api,
        "tier_ago",
        "account.tier_ago(days)",
        "the tier `days` days before the as-of date (0 to 730), ranked from the same order history as account.tier (a tier column in the master overrides every day)",
        |a: &mut Account, days: i64| {
            let call = || format!("account.tier_ago({days})");
            days_ago(&call, days)?;
            let v = tier_str(hist_tier(a, Ranking::Basis, days, AgoRead::Tier).as_str());
            Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
        },
    );
    f!(
        api,
        "share_above_ago",
        "account.share_above_ago(days)",
        "account.share_above as it was `days` days before the as-of date (0 to 730)",
        |a: &mut Account, days: i64| {
            let call = || format!("account.share_above_ago({days})");
            days_ago(&call, days)?;
            let v = hist_share(a, Ranking::Basis, days);
            Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
        },
    );
    f!(
        api,
        "is_tier_ago",
        "account.is_tier_ago(tier, days)",
        "true when account.tier_ago(days) is `tier` (\"A\", \"B\" or \"C\"): the same answer as `account.tier_ago(days) == tier`, but read as that answer, so the rule runs again for the account only when it enters or leaves that tier on that day, not whenever it moves between the other two (see docs/rules.md, \"What makes a rule cheap\")",
        |a: &mut Account, tier: &str, days: i64| {
            let call = || format!("account.is_tier_ago({tier:?}, {days})");
            days_ago(&call, days)?;
            let t = Tier::parse(tier)
                .ok_or_else(|| format!("{}: the tiers are \"A\", \"B\" and \"C\"", call()))?;
            let v = hist_tier(a, Ranking::Basis, days, AgoRead::Is(t)) == t;
            Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
        },
    );
    single_measure(api);
    share_lines(api);
    g!(
        api,
        "revenue_12m",
        "account.revenue_12m",
        "revenue over the 365 days ending at the as-of date",
        |a: &mut Account| seen(
            a.explain,
            || "account.revenue_12m".into(),
            a.orders().revenue_12m
        ),
    );
    f!(
        api,
        "attr",
        "account.attr(name)",
        "an extra column of the customer master (e.g. account.attr(\"渠道\")); \"\" when the master has no such column",
        |a: &mut Account, name: &str| {
            let v = a
                .master()
                .attrs
                .get(name)
                .map_or_else(|| Dynamic::from(""), json_to_dynamic);
            seen(a.explain, || format!("account.attr({name:?})"), v)
        },
    );
    f!(
        api,
        "has_attr",
        "account.has_attr(name)",
        "true when the master has a non-empty column `name` for this account",
        |a: &mut Account, name: &str| {
            let v = a
                .master()
                .attrs
                .get(name)
                .is_some_and(|v| !v.is_null() && v.as_str() != Some(""));
            seen(a.explain, || format!("account.has_attr({name:?})"), v)
        },
    );
}

/// The book ranked by revenue alone and by gross profit alone, whatever
/// `tiers.by` says: the tier and share above, now and on earlier days.
/// Longer than most functions: it is one table of eight registrations,
/// read (and documented in docs/rules-api.md) in this order.
fn single_measure(api: &mut Api) {
    f!(
        api,
        "revenue_tier_ago",
        "account.revenue_tier_ago(days)",
        "account.revenue_tier as it was `days` days before the as-of date (0 to 730): the book ranked by trailing-12-month revenue alone on that day",
        |a: &mut Account, days: i64| {
            let call = || format!("account.revenue_tier_ago({days})");
            days_ago(&call, days)?;
            let v =
                tier_str(hist_tier(a, Ranking::Alone(By::Revenue), days, AgoRead::Tier).as_str());
            Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
        },
    );
    f!(
        api,
        "revenue_share_above_ago",
        "account.revenue_share_above_ago(days)",
        "account.revenue_share_above as it was `days` days before the as-of date (0 to 730)",
        |a: &mut Account, days: i64| {
            let call = || format!("account.revenue_share_above_ago({days})");
            days_ago(&call, days)?;
            let v = hist_share(a, Ranking::Alone(By::Revenue), days);
            Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
        },
    );
    f!(
        api,
        "gross_profit_tier_ago",
        "account.gross_profit_tier_ago(days)",
        "account.gross_profit_tier as it was `days` days before the as-of date (0 to 730): the book ranked by trailing-12-month gross profit alone on that day",
        |a: &mut Account, days: i64| {
            let call = || format!("account.gross_profit_tier_ago({days})");
            days_ago(&call, days)?;
            let v = tier_str(
                hist_tier(a, Ranking::Alone(By::GrossProfit), days, AgoRead::Tier).as_str(),
            );
            Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
        },
    );
    f!(
        api,
        "gross_profit_share_above_ago",
        "account.gross_profit_share_above_ago(days)",
        "account.gross_profit_share_above as it was `days` days before the as-of date (0 to 730)",
        |a: &mut Account, days: i64| {
            let call = || format!("account.gross_profit_share_above_ago({days})");
            days_ago(&call, days)?;
            let v = hist_share(a, Ranking::Alone(By::GrossProfit), days);
            Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
        },
    );
    g!(
        api,
        "revenue_tier",
        "account.revenue_tier",
        "the tier the account has with the book ranked by trailing-12-month revenue alone, whatever tiers.by says: \"A\", \"B\" or \"C\" (C without revenue; a tier column in the master does not apply)",
        |a: &mut Account| {
            let v = tier_str(hist_tier(a, Ranking::Today(By::Revenue), 0, AgoRead::Tier).as_str());
            seen(a.explain, || "account.revenue_tier".into(), v)
        },
    );
    g!(
        api,
        "revenue_share_above",
        "account.revenue_share_above",
        "share of the book's trailing-12-month revenue held by the accounts ranked above this one by revenue, 0..1: tier A by revenue while it is below tiers.a_share",
        |a: &mut Account| {
            let v = hist_share(a, Ranking::Today(By::Revenue), 0);
            seen(a.explain, || "account.revenue_share_above".into(), v)
        },
    );
    g!(
        api,
        "gross_profit_tier",
        "account.gross_profit_tier",
        "the tier the account has with the book ranked by trailing-12-month gross profit (revenue - cost) alone, whatever tiers.by says, with the same lines: \"A\", \"B\" or \"C\" (C without gross profit or at a loss; a tier column in the master does not apply)",
        |a: &mut Account| {
            let v =
                tier_str(hist_tier(a, Ranking::Today(By::GrossProfit), 0, AgoRead::Tier).as_str());
            seen(a.explain, || "account.gross_profit_tier".into(), v)
        },
    );
    g!(
        api,
        "gross_profit_share_above",
        "account.gross_profit_share_above",
        "share of the book's trailing-12-month gross profit held by the accounts ranked above this one by gross profit, 0..1: tier A by gross profit while it is below tiers.a_share",
        |a: &mut Account| {
            let v = hist_share(a, Ranking::Today(By::GrossProfit), 0);
            seen(a.explain, || "account.gross_profit_share_above".into(), v)
        },
    );
}

/// Whether a share above of today reaches a line, the share not read as
/// such (`rules::reads`: the answer is what a small drop compares).
fn share_lines(api: &mut Api) {
    for (by, name, what) in [
        (
            AboveBy::Basis,
            "share_above_at_least",
            "account.share_above",
        ),
        (
            AboveBy::Alone(By::Revenue),
            "revenue_share_above_at_least",
            "account.revenue_share_above",
        ),
        (
            AboveBy::Alone(By::GrossProfit),
            "gross_profit_share_above_at_least",
            "account.gross_profit_share_above",
        ),
    ] {
        f!(
            api,
            name,
            &format!("account.{name}(line)"),
            &format!(
                "true when {what} is `line` or more, both to six decimals: the same answer as `round({what}, 6) >= round(line, 6)`, but read as that answer, so after a small drop the rule runs again for the account only when its share above crosses the line, not whenever the book's total moves it (see docs/rules.md, \"What makes a rule cheap\")"
            ),
            move |a: &mut Account, line: f64| {
                let call = || format!("account.{name}({line})");
                seen(a.explain, call, reads::share_reaches(a.master(), by, line))
            },
        );
    }
}
