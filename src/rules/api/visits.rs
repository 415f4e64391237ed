//! The rule API's `account` visits: days since the last visit (by anyone,
//! by a role, by one of several roles) and visits in a window or this
//! quarter. Registers into the engine it is given.

use rhai::{Array, EvalAltResult};

use super::account::Account;
use super::registry::{Api, f, g, seen, window};
use crate::metrics::quarter_start;

/// The strings of a rule's role list (other values ignored), and the
/// list as a rule would write it, for explain.
fn role_list(roles: &Array) -> (Vec<String>, String) {
    let list: Vec<String> = roles
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

/// Visits by anyone or by one role.
pub(super) fn by_role(api: &mut Api) {
    api.section = "account: visits";
    g!(
        api,
        "days_since_last_visit",
        "account.days_since_last_visit",
        "days from the last visit to the as-of date; -1 when never visited",
        |a: &mut Account| {
            let v = a.m.days_since_last_visit(a.end, None).unwrap_or(-1);
            seen(a.explain, || "account.days_since_last_visit".into(), v)
        },
    );
    f!(
        api,
        "days_since_visit_by",
        "account.days_since_visit_by(role)",
        "days since the last visit by someone with this role (the export's 职务, e.g. \"销售总监\"); -1 when never",
        |a: &mut Account, role: &str| {
            let v =
                a.m.days_since_last_visit(a.end, Some(&[role]))
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
            let v = a.m.visits_in(a.end, days);
            Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
        },
    );
    f!(
        api,
        "visits_by",
        "account.visits_by(role, days)",
        "number of visits by `role` in the `days` days ending at the as-of date",
        |a: &mut Account, role: &str, days: i64| {
            let call = || format!("account.visits_by({role:?}, {days})");
            window(&call, days, 0)?;
            let v = a.m.visits_by_in(a.end, days, Some(&[role]));
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
            let v = a.m.visits_in(a.end, len);
            seen(a.explain, || "account.visits_this_quarter()".into(), v)
        },
    );
    f!(
        api,
        "visits_this_quarter_by",
        "account.visits_this_quarter_by(role)",
        "number of visits by `role` since the first day of the as-of date's calendar quarter",
        |a: &mut Account, role: &str| {
            let len = i64::from(a.end - quarter_start(a.end) + 1);
            let v = a.m.visits_by_in(a.end, len, Some(&[role]));
            seen(
                a.explain,
                || format!("account.visits_this_quarter_by({role:?})"),
                v,
            )
        },
    );
}

/// The same for a list of roles.
pub(super) fn by_roles(api: &mut Api) {
    f!(
        api,
        "days_since_visit_by",
        "account.days_since_visit_by(roles)",
        "the same for a list of roles (e.g. [\"销售总监\", \"总经理\"]): the last visit by anyone whose role is one of them",
        |a: &mut Account, roles: Array| {
            let (list, text) = role_list(&roles);
            let refs: Vec<&str> = list.iter().map(String::as_str).collect();
            let v = a.m.days_since_last_visit(a.end, Some(&refs)).unwrap_or(-1);
            seen(
                a.explain,
                || format!("account.days_since_visit_by({text})"),
                v,
            )
        },
    );
    f!(
        api,
        "visits_by",
        "account.visits_by(roles, days)",
        "the same for a list of roles: visits by anyone whose role is one of them",
        |a: &mut Account, roles: Array, days: i64| {
            let (list, text) = role_list(&roles);
            let call = || format!("account.visits_by({text}, {days})");
            window(&call, days, 0)?;
            let refs: Vec<&str> = list.iter().map(String::as_str).collect();
            let v = a.m.visits_by_in(a.end, days, Some(&refs));
            Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
        },
    );
    f!(
        api,
        "visits_this_quarter_by",
        "account.visits_this_quarter_by(roles)",
        "the same for a list of roles (the exported role, trimmed, equal to one of them)",
        |a: &mut Account, roles: Array| {
            let (list, text) = role_list(&roles);
            let refs: Vec<&str> = list.iter().map(String::as_str).collect();
            let len = i64::from(a.end - quarter_start(a.end) + 1);
            let v = a.m.visits_by_in(a.end, len, Some(&refs));
            seen(
                a.explain,
                || format!("account.visits_this_quarter_by({text})"),
                v,
            )
        },
    );
}
