//! The rule API's `account` figures over time: every metric over a window
//! (now, the previous period, a year earlier), monthly series, and the
//! order cadence. Registers into the engine it is given.

use rhai::{Array, Dynamic, EvalAltResult};

use super::account::Account;
use super::helpers::round_to;
use super::registry::{Api, f, g, months, seen, window};
use crate::metrics::Metric;

/// Every metric over a window ending at the as-of date, or before it.
pub(super) fn windowed(api: &mut Api) {
    api.section = "account: windowed figures";
    for m in Metric::ALL {
        let name = m.name();
        f!(
            api,
            name,
            &format!("account.{name}(days)"),
            &format!(
                "{} over the `days` days ending at the as-of date",
                m.describe()
            ),
            move |a: &mut Account, days: i64| {
                let call = || format!("account.{name}({days})");
                window(&call, days, 0)?;
                let v = a.orders().metric(m, a.end, days, 0);
                Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
            },
        );
        f!(
            api,
            name,
            &format!("account.{name}(days, offset)"),
            "the same over `days` days ending `offset` days before the as-of date",
            move |a: &mut Account, days: i64, offset: i64| {
                let call = || format!("account.{name}({days}, {offset})");
                window(&call, days, offset)?;
                let v = a.orders().metric(m, a.end, days, offset);
                Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
            },
        );
        f!(
            api,
            &format!("{name}_prev"),
            &format!("account.{name}_prev(days)"),
            "the same over the previous period: the `days` days before the window",
            move |a: &mut Account, days: i64| {
                let call = || format!("account.{name}_prev({days})");
                window(&call, days, days)?;
                let v = a.orders().metric(m, a.end, days, days);
                Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
            },
        );
        f!(
            api,
            &format!("{name}_last_year"),
            &format!("account.{name}_last_year(days)"),
            "the same over the same `days` days one year (365 days) earlier",
            move |a: &mut Account, days: i64| {
                let call = || format!("account.{name}_last_year({days})");
                window(&call, days, 365)?;
                let v = a.orders().metric(m, a.end, days, 365);
                Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
            },
        );
    }
}

/// The last complete calendar months, as arrays.
pub(super) fn monthly(api: &mut Api) {
    api.section = "account: monthly series";
    for m in [
        Metric::Revenue,
        Metric::GrossProfit,
        Metric::MarginPct,
        Metric::Orders,
        Metric::Qty,
    ] {
        let name = m.name();
        f!(
            api,
            &format!("monthly_{name}"),
            &format!("account.monthly_{name}(n)"),
            "an array of the last `n` complete calendar months (1 to 120), oldest first (the as-of month counts when the as-of date is its last day)",
            move |a: &mut Account, n: i64| {
                months(&|| format!("account.monthly_{name}({n})"), n)?;
                let v = a.orders().monthly(m, a.end, n);
                if a.explain {
                    let text = v
                        .iter()
                        .map(|x| format!("{}", round_to(*x, 2)))
                        .collect::<Vec<_>>();
                    seen(
                        true,
                        || format!("account.monthly_{name}({n})"),
                        format!("[{}]", text.join(", ")),
                    );
                }
                Ok::<_, Box<EvalAltResult>>(floats(v))
            },
        );
    }
}

/// Days since the last order, the usual gap, order counts.
pub(super) fn cadence(api: &mut Api) {
    api.section = "account: order cadence";
    g!(
        api,
        "days_since_last_order",
        "account.days_since_last_order",
        "days from the last order to the as-of date; -1 when it never ordered",
        |a: &mut Account| {
            let v = a.orders().days_since_last_order(a.end).unwrap_or(-1);
            seen(a.explain, || "account.days_since_last_order".into(), v)
        },
    );
    g!(
        api,
        "median_order_gap",
        "account.median_order_gap",
        "median days between consecutive order days; -1 with fewer than two order days",
        |a: &mut Account| {
            let v = a.orders().series.median_gap(a.end).unwrap_or(-1.0);
            seen(a.explain, || "account.median_order_gap".into(), v)
        },
    );
    f!(
        api,
        "median_order_gap",
        "account.median_order_gap(days)",
        "median days between consecutive order days among those in the `days` days ending at the last order (so a rhythm from years ago does not count, and a long silence since does not empty the window); -1 with fewer than two such days",
        |a: &mut Account, days: i64| {
            let call = || format!("account.median_order_gap({days})");
            window(&call, days, 0)?;
            let v = a
                .orders()
                .series
                .recent_median_gap(a.end, days as i32)
                .unwrap_or(-1.0);
            Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
        },
    );
    f!(
        api,
        "order_days_before_last",
        "account.order_days_before_last(days)",
        "number of distinct order days in the `days` days ending at the last order (the days `median_order_gap(days)` is taken over)",
        |a: &mut Account, days: i64| {
            let call = || format!("account.order_days_before_last({days})");
            window(&call, days, 0)?;
            let v = a
                .orders()
                .series
                .recent_order_days(a.end, days as i32)
                .len() as i64;
            Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
        },
    );
    g!(
        api,
        "order_count",
        "account.order_count",
        "number of orders up to the as-of date",
        |a: &mut Account| {
            let v = a.orders().order_count(a.end);
            seen(a.explain, || "account.order_count".into(), v)
        },
    );
    g!(
        api,
        "order_days",
        "account.order_days",
        "number of distinct days with an order up to the as-of date",
        |a: &mut Account| {
            let v = a.orders().series.order_days(a.end) as i64;
            seen(a.explain, || "account.order_days".into(), v)
        },
    );
}

fn floats(v: Vec<f64>) -> Array {
    v.into_iter().map(Dynamic::from_float).collect()
}
