//! The rule API's `account` receivables, credit and stock: open and
//! overdue amounts with aging buckets, the credit limit and its use, the
//! main SKUs and their days of stock cover. Registers into the engine it is
//! given.

use rhai::{Array, Dynamic, EvalAltResult, Map};

use super::account::Account;
use super::helpers::round_to;
use super::registry::{Api, f, g, past_due, seen};
use crate::rules::reads::{STOCK, note};

/// Open and overdue invoices.
pub(super) fn receivables(api: &mut Api) {
    api.section = "account: receivables and credit";
    g!(
        api,
        "receivables",
        "account.receivables",
        "open invoices: the total amount (0 when none)",
        |a: &mut Account| seen(
            a.explain,
            || "account.receivables".into(),
            a.master().receivables()
        ),
    );
    g!(
        api,
        "credit_notes",
        "account.credit_notes",
        "open credit notes (negative amounts in the receivables export), whatever their due date, as a positive amount (0 when none): what the account may set against its invoices; account.receivables is net of them, the overdue amounts and aging buckets count invoices only",
        |a: &mut Account| seen(
            a.explain,
            || "account.credit_notes".into(),
            a.master().credit_notes()
        ),
    );
    g!(
        api,
        "overdue_amount",
        "account.overdue_amount",
        "the amount of open invoices past their due date (invoices only: credit notes are account.credit_notes)",
        |a: &mut Account| {
            let v = a.master().overdue_amount(a.end);
            seen(a.explain, || "account.overdue_amount".into(), v)
        },
    );
    g!(
        api,
        "days_overdue",
        "account.days_overdue",
        "days the oldest overdue invoice is past due; 0 when none is",
        |a: &mut Account| {
            let v = a.master().days_overdue(a.end);
            seen(a.explain, || "account.days_overdue".into(), v)
        },
    );
    f!(
        api,
        "overdue_amount",
        "account.overdue_amount(days)",
        "the amount of open invoices at least `days` days past due (0 or more; an invoice due yesterday is 1 day past due): the amount past a grace period; invoices only, without credit notes",
        |a: &mut Account, days: i64| {
            let call = || format!("account.overdue_amount({days})");
            past_due(&call, days, i64::MAX)?;
            let v = a.master().overdue_between(a.end, days, i64::MAX);
            Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
        },
    );
    f!(
        api,
        "overdue_between",
        "account.overdue_between(from, to)",
        "the amount of open invoices `from` to `to` days past due, both included (0 <= from <= to): the aging buckets, e.g. overdue_between(1, 30), overdue_between(31, 60), overdue_between(61, 90), overdue_between(91, 100000); invoices only, without credit notes",
        |a: &mut Account, from: i64, to: i64| {
            let call = || format!("account.overdue_between({from}, {to})");
            past_due(&call, from, to)?;
            let v = a.master().overdue_between(a.end, from, to);
            Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
        },
    );
    f!(
        api,
        "days_overdue",
        "account.days_overdue(days)",
        "days the oldest invoice at least `days` days past due is past due; 0 when none is",
        |a: &mut Account, days: i64| {
            let call = || format!("account.days_overdue({days})");
            past_due(&call, days, i64::MAX)?;
            let v = a.master().days_overdue_from(a.end, days);
            Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
        },
    );
}

/// The credit limit and how much of it is used.
pub(super) fn credit(api: &mut Api) {
    g!(
        api,
        "credit_limit",
        "account.credit_limit",
        "the credit limit from the master; 0 when the master gives none",
        |a: &mut Account| {
            let v = a.master().credit_limit.unwrap_or(0.0);
            seen(a.explain, || "account.credit_limit".into(), v)
        },
    );
    g!(
        api,
        "credit_used_pct",
        "account.credit_used_pct",
        "open receivables as % of the credit limit; -1 when there is no limit",
        |a: &mut Account| {
            let v = a.master().credit_used_pct().unwrap_or(-1.0);
            seen(a.explain, || "account.credit_used_pct".into(), v)
        },
    );
}

/// Main SKUs and their stock cover.
pub(super) fn stock(api: &mut Api) {
    api.section = "account: stock";
    g!(
        api,
        "main_skus",
        "account.main_skus",
        "the account's main SKUs (top 3 by trailing-12-month revenue), largest first",
        |a: &mut Account| {
            // Found again where the book's demand moved: read as such.
            note(STOCK);
            let m = a.orders();
            if a.explain {
                seen(true, || "account.main_skus".into(), m.main_skus.join(", "));
            }
            m.main_skus
                .iter()
                .map(|s| Dynamic::from(s.to_string()))
                .collect::<Array>()
        },
    );
    g!(
        api,
        "stock_cover",
        "account.stock_cover",
        "for each main SKU the inventory knows: #{ sku, on_hand, daily_qty, days, dedicated } — days of cover at the last 90 days' demand (-1 without demand); stock held for the account (dedicated) is set against its own demand, warehouse stock against the whole book's",
        |a: &mut Account| {
            // Warehouse stock is set against the whole book's demand.
            note(STOCK);
            let stock = &a.orders().stock;
            let mut out = Array::with_capacity(stock.len());
            for s in stock {
                let mut m = Map::new();
                m.insert("sku".into(), s.sku.to_string().into());
                m.insert("on_hand".into(), s.on_hand.into());
                m.insert("daily_qty".into(), s.daily_qty.into());
                m.insert("days".into(), s.days.into());
                m.insert("dedicated".into(), s.dedicated.into());
                if a.explain {
                    seen(
                        true,
                        || format!("account.stock_cover[{}]", s.sku),
                        format!(
                            "on hand {}, {}/day, {} days{}",
                            round_to(s.on_hand, 2),
                            round_to(s.daily_qty, 2),
                            round_to(s.days, 1),
                            if s.dedicated {
                                " (held for the account)"
                            } else {
                                " (warehouse)"
                            }
                        ),
                    );
                }
                out.push(m.into());
            }
            out
        },
    );
}
