//! The rule API's `account` visits: days since the last visit (by anyone,
//! by a role, by one of several roles, less the roles containing a word
//! taken out) and visits in a window or this quarter. Which roles a title
//! names is one rule everywhere (`metrics::Titles`): the exported role
//! contains the title, compared as `metrics::titles` says. Registers
//! into the engine it is given.

use rhai::{Array, EvalAltResult};

use super::account::Account;
use super::registry::{Api, f, g, seen, window};
use crate::metrics::{Titles, quarter_start};

/// The strings of a rule's list (other values ignored), and the list as
/// a rule would write it, for explain.
fn string_list(items: &Array) -> (Vec<String>, String) {
    let list: Vec<String> = items
        .iter()
        .filter_map(|r| r.clone().into_immutable_string().ok())
        .map(|r| r.to_string())
        .collect();
    let text = format!(
        "[{}]",
        list.iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    (list, text)
}

/// A rule's titles less the words taken out, and how the call wrote
/// them (`["总监"]`, or `["总监"], ["助理"]`), for explain.
fn titles(roles: &Array, except: Option<&Array>) -> (Titles, String) {
    let (any, mut text) = string_list(roles);
    let out = match except {
        Some(x) => {
            let (out, t) = string_list(x);
            text = format!("{text}, {t}");
            out
        }
        None => Vec::new(),
    };
    (Titles::new(&any, &out), text)
}

/// One role as a list of titles.
fn one(role: &str) -> Titles {
    Titles::new(&[role], &[] as &[&str])
}

/// Visits by anyone or by one role.
pub(super) fn by_role(api: &mut Api) {
    api.section = "account: visits";
    g!(
        api,
        "days_since_last_visit",
        "account.days_since_last_visit",
        "days from the last visit to the as-of date; -1 when never visited",
        |a: &mut Account| {
            let v = a.visits().days_since_last_visit(a.end, None).unwrap_or(-1);
            seen(a.explain, || "account.days_since_last_visit".into(), v)
        },
    );
    f!(
        api,
        "days_since_visit_by",
        "account.days_since_visit_by(role)",
        "days since the last visit by someone whose role (the export's 职务, free text) contains `role`, compared without case, full-width letters as ordinary ones, zero-width characters and extra spaces dropped and no space between two Chinese characters: \"总监\" names 销售总监, 区域销售总监, \"总 监\" and 总监助理 (a list of words to leave out, below, takes 总监助理 back), not 總監 (list both scripts); an English title names whole words, a plural s allowed: \"director\" names \"Sales Director\" and \"ＤＩＲＥＣＴＯＲ\", \"gm\" names \"Regional GM\", not \"GmbH\"; -1 when never. Every function that takes roles matches them so",
        |a: &mut Account, role: &str| {
            let v = a
                .visits()
                .days_since_last_visit(a.end, Some(&one(role)))
                .unwrap_or(-1);
            seen(
                a.explain,
                || format!("account.days_since_visit_by({role:?})"),
                v,
            )
        },
    );
    f!(
        api,
        "visits",
        "account.visits(days)",
        "number of visits in the `days` days ending at the as-of date",
        |a: &mut Account, days: i64| {
            let call = || format!("account.visits({days})");
            window(&call, days, 0)?;
            let v = a.visits().visits_in(a.end, days);
            Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
        },
    );
    f!(
        api,
        "visits_by",
        "account.visits_by(role, days)",
        "number of visits by a role containing `role` in the `days` days ending at the as-of date",
        |a: &mut Account, role: &str, days: i64| {
            let call = || format!("account.visits_by({role:?}, {days})");
            window(&call, days, 0)?;
            let v = a.visits().visits_by_in(a.end, days, Some(&one(role)));
            Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
        },
    );
    f!(
        api,
        "visits_this_quarter",
        "account.visits_this_quarter()",
        "number of visits since the first day of the as-of date's calendar quarter",
        |a: &mut Account| {
            let len = i64::from(a.end - quarter_start(a.end) + 1);
            let v = a.visits().visits_in(a.end, len);
            seen(a.explain, || "account.visits_this_quarter()".into(), v)
        },
    );
    f!(
        api,
        "visits_this_quarter_by",
        "account.visits_this_quarter_by(role)",
        "number of visits by a role containing `role` since the first day of the as-of date's calendar quarter",
        |a: &mut Account, role: &str| {
            let len = i64::from(a.end - quarter_start(a.end) + 1);
            let v = a.visits().visits_by_in(a.end, len, Some(&one(role)));
            seen(
                a.explain,
                || format!("account.visits_this_quarter_by({role:?})"),
                v,
            )
        },
    );
}

/// The days since the last visit by a list of roles: `roles`, less the
/// words in `except` when given.
fn days_since_by(a: &mut Account, roles: &Array, except: Option<&Array>) -> i64 {
    let (t, text) = titles(roles, except);
    let v = a
        .visits()
        .days_since_last_visit(a.end, Some(&t))
        .unwrap_or(-1);
    seen(
        a.explain,
        || format!("account.days_since_visit_by({text})"),
        v,
    )
}

/// Visits in the window by a list of roles, less `except`.
fn visits_by_roles(
    a: &mut Account,
    roles: &Array,
    except: Option<&Array>,
    days: i64,
) -> Result<i64, Box<EvalAltResult>> {
    let (t, text) = titles(roles, except);
    let call = || format!("account.visits_by({text}, {days})");
    window(&call, days, 0)?;
    let v = a.visits().visits_by_in(a.end, days, Some(&t));
    Ok(seen(a.explain, call, v))
}

/// Visits this quarter by a list of roles, less `except`.
fn quarter_by_roles(a: &mut Account, roles: &Array, except: Option<&Array>) -> i64 {
    let (t, text) = titles(roles, except);
    let len = i64::from(a.end - quarter_start(a.end) + 1);
    let v = a.visits().visits_by_in(a.end, len, Some(&t));
    seen(
        a.explain,
        || format!("account.visits_this_quarter_by({text})"),
        v,
    )
}

/// The same for a list of roles, and less a list of words.
pub(super) fn by_roles(api: &mut Api) {
    f!(
        api,
        "days_since_visit_by",
        "account.days_since_visit_by(roles)",
        "the same for a list of roles (e.g. [\"销售总监\", \"总经理\"]): the last visit by anyone whose role contains one of them",
        |a: &mut Account, roles: Array| days_since_by(a, &roles, None),
    );
    f!(
        api,
        "days_since_visit_by",
        "account.days_since_visit_by(roles, except)",
        "the same, less the roles that contain one of the words in `except` whatever else they say (e.g. [\"助理\", \"assistant\"]: 总监助理 and \"Assistant to the Director\" are not directors)",
        |a: &mut Account, roles: Array, except: Array| days_since_by(a, &roles, Some(&except)),
    );
    f!(
        api,
        "visits_by",
        "account.visits_by(roles, days)",
        "the same for a list of roles: visits by anyone whose role contains one of them",
        |a: &mut Account, roles: Array, days: i64| visits_by_roles(a, &roles, None, days),
    );
    f!(
        api,
        "visits_by",
        "account.visits_by(roles, except, days)",
        "the same, less the roles that contain one of the words in `except`",
        |a: &mut Account, roles: Array, except: Array, days: i64| {
            visits_by_roles(a, &roles, Some(&except), days)
        },
    );
    f!(
        api,
        "visits_this_quarter_by",
        "account.visits_this_quarter_by(roles)",
        "the same for a list of roles (a role containing one of them)",
        |a: &mut Account, roles: Array| quarter_by_roles(a, &roles, None),
    );
    f!(
        api,
        "visits_this_quarter_by",
        "account.visits_this_quarter_by(roles, except)",
        "the same, less the roles that contain one of the words in `except`",
        |a: &mut Account, roles: Array, except: Array| quarter_by_roles(a, &roles, Some(&except)),
    );
}
