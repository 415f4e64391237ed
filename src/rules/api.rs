//! The rule API: the `account` and `portfolio` types a rule sees, the helper
//! functions, and the reference page generated from what is registered.
//!
//! Every function is registered through [`Api::f`] with a one-line doc, so
//! `kamwatch rules api` (and docs/rules-api.md, checked by a test) lists
//! exactly what the engine knows. When a rule is explained, the functions
//! note what they returned in a thread-local trace; an `explain` flag on the
//! value carries the switch, so ordinary runs pay one predictable branch.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::Arc;

use rhai::{
    Array, Dynamic, Engine, EvalAltResult, FuncRegistration, ImmutableString, Map,
    NativeCallContext,
};

use crate::format::{Locale, Style, Texts, Unit};
use crate::metrics::{AccountMetrics, Day, Metric, Portfolio, date_of, quarter_start};
use crate::model::seasons::{Peak, Seasons};

/// A figure with its kind, as `money(x)`, `pct(x)`, ... make it: `alert()`
/// keeps the raw value and the kind, and a title that interpolates it
/// (`${money(x)}`) reads it written in the reader's locale.
#[derive(Clone, Debug)]
pub struct Figure {
    pub unit: Unit,
    pub num: f64,
    /// For dates and texts.
    pub text: Option<ImmutableString>,
}

impl Figure {
    /// The raw value, for JSON and the store.
    pub fn json(&self) -> serde_json::Value {
        let whole = matches!(self.unit, Unit::Count | Unit::Days)
            && self.num.fract() == 0.0
            && self.num.abs() < 9.0e15;
        match &self.text {
            Some(t) => serde_json::Value::String(t.to_string()),
            // Whole counts and days stay integers: 6, not 6.0.
            None if whole => serde_json::Value::from(self.num as i64),
            None => serde_json::Number::from_f64((self.num * 100.0).round() / 100.0)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
        }
    }
}

thread_local! {
    /// How the rules running on this thread write figures and pick texts
    /// (the config's `mail.locale` and `mail.currency`).
    static STYLE: RefCell<Style> = RefCell::new(Style::default());
}

/// Sets how rules on this thread write figures and pick texts.
pub fn set_style(s: &Style) {
    STYLE.with(|t| {
        if *t.borrow() != *s {
            *t.borrow_mut() = s.clone();
        }
    });
}

thread_local! {
    /// The as-of date of the snapshot the rules on this thread run at,
    /// whether they are explained, and the seasons they see.
    static CALENDAR: RefCell<(Option<chrono::NaiveDate>, bool, Arc<Seasons>)> =
        RefCell::new((None, false, Arc::new(Seasons::default())));
}

/// Sets the seasons rules on this thread see.
pub fn set_seasons(s: &Arc<Seasons>) {
    CALENDAR.with(|c| {
        if !Arc::ptr_eq(&c.borrow().2, s) {
            c.borrow_mut().2 = s.clone();
        }
    });
}

/// Sets the as-of date rules on this thread run at, and whether they are
/// explained (so the calendar functions trace what they return).
pub fn set_as_of(d: chrono::NaiveDate, explain: bool) {
    CALENDAR.with(|c| {
        let mut c = c.borrow_mut();
        c.0 = Some(d);
        c.1 = explain;
    });
}

/// The as-of date, whether explained, and the seasons, for a calendar
/// function; an error outside an evaluation.
fn calendar() -> Result<(chrono::NaiveDate, bool, Arc<Seasons>), Box<EvalAltResult>> {
    CALENDAR.with(|c| {
        let c = c.borrow();
        match c.0 {
            Some(d) => Ok((d, c.1, c.2.clone())),
            None => Err("the season functions work only while rules are evaluated".into()),
        }
    })
}

/// A season's occurrence as a rule sees it.
fn peak_map(p: &Peak, as_of: chrono::NaiveDate) -> Map {
    let mut m = Map::new();
    m.insert("name".into(), p.name.clone().into());
    m.insert(
        "start".into(),
        p.start.format("%Y-%m-%d").to_string().into(),
    );
    m.insert("end".into(), p.end.format("%Y-%m-%d").to_string().into());
    m.insert("days_until".into(), p.days_until(as_of).into());
    m.insert("in_peak".into(), p.contains(as_of).into());
    m.insert("days_left".into(), p.days_left(as_of).into());
    m.insert("length".into(), p.length().into());
    m
}

fn peak_text(p: &Peak, as_of: chrono::NaiveDate) -> String {
    format!(
        "{} {}..{} ({})",
        p.name,
        p.start,
        p.end,
        if p.contains(as_of) {
            format!("in it, {} days left", p.days_left(as_of))
        } else {
            format!("in {} days", p.days_until(as_of))
        }
    )
}

/// The locale rules on this thread pick their texts in.
pub fn locale() -> Locale {
    STYLE.with(|t| t.borrow().locale)
}

fn figure_text(f: &Figure) -> String {
    match &f.text {
        Some(t) => t.to_string(),
        None => STYLE.with(|s| s.borrow().number(f.num, Some(f.unit))),
    }
}

/// A text given as a string, or per locale as a map
/// (`#{ "zh-CN": "...", en: "..." }`), in this thread's locale. `what`
/// names the text in errors.
pub fn text_of(d: &Dynamic, what: &str) -> Result<String, String> {
    if d.is_string() {
        return Ok(d.to_string());
    }
    if let Some(f) = d.read_lock::<Figure>() {
        return Ok(figure_text(&f));
    }
    if !d.is_map() {
        return Err(format!(
            "{what} must be a string, got {} {d}; a text may also be given per locale, #{{ \"zh-CN\": \"...\", en: \"...\" }}",
            d.type_name()
        ));
    }
    let map = d.clone().cast::<Map>();
    let mut texts = Texts::default();
    for (k, v) in map {
        let Some(l) = Locale::parse(&k) else {
            return Err(format!(
                "{what} has a text for {k:?}, which is not a locale kamwatch writes in; the locales are {}",
                Locale::known()
            ));
        };
        if !v.is_string() {
            return Err(format!(
                "{what}: the {k:?} text must be a string, got {} {v}",
                v.type_name()
            ));
        }
        texts.0.push((l, v.to_string()));
    }
    if texts.0.is_empty() {
        return Err(format!(
            "{what} is an empty map; give a text for at least one of {}",
            Locale::known()
        ));
    }
    Ok(texts.get(locale()).to_string())
}

/// The value a rule sees as `account`.
#[derive(Clone)]
pub struct Account {
    pub m: Arc<AccountMetrics>,
    pub end: Day,
    pub explain: bool,
}

/// The value a rule sees as `portfolio`: book-level totals.
#[derive(Clone)]
pub struct Book {
    pub p: Arc<Portfolio>,
    pub end: Day,
    pub explain: bool,
}

thread_local! {
    /// What the functions returned while a rule is explained on this thread.
    static TRACE: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
}

/// Takes the trace recorded on this thread.
pub fn take_trace() -> Vec<(String, String)> {
    TRACE.with(|t| std::mem::take(&mut *t.borrow_mut()))
}

/// Notes `what = value` when explaining; returns the value.
#[inline]
fn seen<T: std::fmt::Display>(on: bool, what: impl FnOnce() -> String, v: T) -> T {
    if on {
        let text = v.to_string();
        TRACE.with(|t| t.borrow_mut().push((what(), text)));
    }
    v
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

/// One registered function's doc.
#[derive(Debug, Clone)]
pub struct Doc {
    pub section: &'static str,
    /// How a rule calls it, e.g. `account.revenue(days)`.
    pub usage: String,
    pub doc: String,
}

/// Registers functions with their docs.
pub struct Api<'e> {
    e: &'e mut Engine,
    section: &'static str,
    pub docs: Vec<Doc>,
}

impl Api<'_> {
    /// The registration of `name` with its doc; `usage` is how a rule
    /// writes the call. Use through `f!` and `g!`.
    fn reg(&mut self, name: &str, usage: &str, doc: &str) -> FuncRegistration {
        self.docs.push(Doc {
            section: self.section,
            usage: usage.to_string(),
            doc: doc.to_string(),
        });
        FuncRegistration::new(name).with_comments([format!("/// {usage}: {doc}")])
    }
}

/// Registers a function with its doc: `f!(api, name, usage, doc, closure)`.
macro_rules! f {
    ($api:expr, $name:expr, $usage:expr, $doc:expr, $func:expr $(,)?) => {{
        let r = $api.reg(&$name, &$usage, &$doc);
        r.register_into_engine($api.e, $func);
    }};
}

/// Registers a property getter: `g!(api, "tier", usage, doc, closure)`.
macro_rules! g {
    ($api:expr, $name:expr, $usage:expr, $doc:expr, $func:expr $(,)?) => {{
        let r = $api.reg(&format!("get${}", $name), &$usage, &$doc);
        r.register_into_engine($api.e, $func);
    }};
}

fn all_pct(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

/// Percentage change from `before` to `now`; 0 when `before` is 0.
pub fn pct_change(now: f64, before: f64) -> f64 {
    if before.abs() < f64::EPSILON {
        0.0
    } else {
        all_pct((now - before) / before.abs() * 100.0)
    }
}

fn round_to(x: f64, digits: i64) -> f64 {
    let p = 10f64.powi(digits.clamp(0, 10) as i32);
    (x * p).round() / p
}

/// A signature as Rhai's metadata writes it, in the words a rule author
/// reads: `-> f64 (or an error)` for a function that can fail, `string`
/// for Rust's strings.
fn readable_signature(sig: &str) -> String {
    const FALLIBLE: &str = "core::result::Result<";
    const ERROR: &str = ",alloc::boxed::Box<rhai::types::error::EvalAltResult>>";
    let mut s = sig.replace("get$", "");
    if let Some(at) = s.find(FALLIBLE)
        && s.ends_with(ERROR)
    {
        let ok = s[at + FALLIBLE.len()..s.len() - ERROR.len()].to_string();
        s = format!("{}{ok} (or an error)", &s[..at]);
    }
    s.replace("alloc::string::String", "string")
        .replace("rhai::types::immutable_string::ImmutableString", "string")
}

/// Longest window a rule may ask for, in days (100 years).
const MAX_WINDOW_DAYS: i64 = 36_500;

/// A window as a rule gives it: 1 to [`MAX_WINDOW_DAYS`] days, ending 0 or
/// more days before the as-of date. Anything else is the rule's mistake, an
/// error naming the call: read as 0 it would answer a question nobody
/// asked ("no revenue") and could raise or clear an alert.
fn window(call: &dyn Fn() -> String, days: i64, offset: i64) -> Result<(), Box<EvalAltResult>> {
    if !(1..=MAX_WINDOW_DAYS).contains(&days) {
        return Err(format!(
            "{}: a window of {days} days; give 1 to {MAX_WINDOW_DAYS} days",
            call()
        )
        .into());
    }
    if !(0..=MAX_WINDOW_DAYS).contains(&offset) {
        return Err(format!(
            "{}: an offset of {offset} days; give 0 (the window ends at the as-of date) to {MAX_WINDOW_DAYS}",
            call()
        )
        .into());
    }
    Ok(())
}

fn parse_date(s: &str) -> Result<chrono::NaiveDate, Box<EvalAltResult>> {
    crate::store::parse_ymd(s)
        .or_else(|| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .ok_or_else(|| format!("{s:?} is not a date like 2026-11-28").into())
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

fn floats(v: Vec<f64>) -> Array {
    v.into_iter().map(Dynamic::from_float).collect()
}

fn to_f64s(a: &Array) -> Vec<f64> {
    a.iter()
        .filter_map(|v| {
            v.as_float()
                .ok()
                .or_else(|| v.as_int().ok().map(|i| i as f64))
        })
        .collect()
}

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

/// Registers the whole rule API into `e`; returns the docs, in order.
pub fn register(e: &mut Engine) -> Vec<Doc> {
    e.register_type_with_name::<Account>("Account");
    e.register_type_with_name::<Book>("Portfolio");
    let mut api = Api {
        e,
        section: "account: who it is",
        docs: Vec::new(),
    };
    g!(
        api,
        "id",
        "account.id",
        "the account id from the customer master",
        |a: &mut Account| { seen(a.explain, || "account.id".into(), a.m.id.clone()) }
    );
    g!(
        api,
        "name",
        "account.name",
        "the account's name",
        |a: &mut Account| { seen(a.explain, || "account.name".into(), a.m.name.clone()) }
    );
    g!(
        api,
        "region",
        "account.region",
        "the region from the master (\"\" if none)",
        |a: &mut Account| { seen(a.explain, || "account.region".into(), a.m.region.clone()) }
    );
    g!(
        api,
        "owner",
        "account.owner",
        "the sales rep who owns the account (\"\" if none)",
        |a: &mut Account| { seen(a.explain, || "account.owner".into(), a.m.owner.clone()) }
    );
    g!(
        api,
        "tier",
        "account.tier",
        "\"A\", \"B\" or \"C\": ranked by trailing-12-month revenue (cumulative share up to tiers.a_share is A, up to b_share B); a tier column in the master overrides",
        |a: &mut Account| seen(a.explain, || "account.tier".into(), tier_str(a.m.tier)),
    );
    g!(
        api,
        "prev_tier",
        "account.prev_tier",
        "the tier 30 days before the as-of date, computed from the same order history",
        |a: &mut Account| seen(
            a.explain,
            || "account.prev_tier".into(),
            tier_str(a.m.prev_tier)
        ),
    );
    g!(
        api,
        "rank",
        "account.rank",
        "rank by trailing-12-month revenue, 1 = largest",
        |a: &mut Account| { seen(a.explain, || "account.rank".into(), a.m.rank as i64) }
    );
    g!(
        api,
        "share",
        "account.share",
        "share of the book's trailing-12-month revenue, 0..1",
        |a: &mut Account| seen(a.explain, || "account.share".into(), a.m.share),
    );
    g!(
        api,
        "share_above",
        "account.share_above",
        "share of the book's trailing-12-month revenue held by the accounts ranked above this one, 0..1: the account is tier A while it is below tiers.a_share (portfolio.a_share); the account that crosses the line belongs to A",
        |a: &mut Account| seen(a.explain, || "account.share_above".into(), a.m.share_above),
    );
    f!(
        api,
        "tier_ago",
        "account.tier_ago(days)",
        "the tier `days` days before the as-of date (0 to 730), ranked from the same order history as account.tier (a tier column in the master overrides every day)",
        |a: &mut Account, days: i64| {
            let v = tier_str(a.m.tier_ago(days).0);
            seen(a.explain, || format!("account.tier_ago({days})"), v)
        },
    );
    f!(
        api,
        "share_above_ago",
        "account.share_above_ago(days)",
        "account.share_above as it was `days` days before the as-of date (0 to 730)",
        |a: &mut Account, days: i64| {
            let v = a.m.tier_ago(days).1;
            seen(a.explain, || format!("account.share_above_ago({days})"), v)
        },
    );
    g!(
        api,
        "gross_profit_tier",
        "account.gross_profit_tier",
        "the tier the account would have with the book ranked by trailing-12-month gross profit (revenue - cost) instead of revenue, with the same lines: \"A\", \"B\" or \"C\" (C without gross profit; a tier column in the master does not apply)",
        |a: &mut Account| {
            let v = tier_str(a.m.gross_profit_tier().0);
            seen(a.explain, || "account.gross_profit_tier".into(), v)
        },
    );
    g!(
        api,
        "gross_profit_share_above",
        "account.gross_profit_share_above",
        "share of the book's trailing-12-month gross profit held by the accounts ranked above this one by gross profit, 0..1: tier A by gross profit while it is below tiers.a_share",
        |a: &mut Account| {
            let v = a.m.gross_profit_tier().1;
            seen(a.explain, || "account.gross_profit_share_above".into(), v)
        },
    );
    g!(
        api,
        "revenue_12m",
        "account.revenue_12m",
        "revenue over the 365 days ending at the as-of date",
        |a: &mut Account| seen(a.explain, || "account.revenue_12m".into(), a.m.revenue_12m),
    );
    f!(
        api,
        "attr",
        "account.attr(name)",
        "an extra column of the customer master (e.g. account.attr(\"渠道\")); \"\" when the master has no such column",
        |a: &mut Account, name: &str| {
            let v =
                a.m.attrs
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
            let v =
                a.m.attrs
                    .get(name)
                    .is_some_and(|v| !v.is_null() && v.as_str() != Some(""));
            seen(a.explain, || format!("account.has_attr({name:?})"), v)
        },
    );

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
                let v = a.m.metric(m, a.end, days, 0);
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
                let v = a.m.metric(m, a.end, days, offset);
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
                let v = a.m.metric(m, a.end, days, days);
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
                let v = a.m.metric(m, a.end, days, 365);
                Ok::<_, Box<EvalAltResult>>(seen(a.explain, call, v))
            },
        );
    }

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
            "an array of the last `n` complete calendar months, oldest first (the as-of month counts when the as-of date is its last day)",
            move |a: &mut Account, n: i64| {
                let v = a.m.monthly(m, a.end, n);
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
                floats(v)
            },
        );
    }

    api.section = "account: order cadence";
    g!(
        api,
        "days_since_last_order",
        "account.days_since_last_order",
        "days from the last order to the as-of date; -1 when it never ordered",
        |a: &mut Account| {
            let v = a.m.days_since_last_order(a.end).unwrap_or(-1);
            seen(a.explain, || "account.days_since_last_order".into(), v)
        },
    );
    g!(
        api,
        "median_order_gap",
        "account.median_order_gap",
        "median days between consecutive order days; -1 with fewer than two order days",
        |a: &mut Account| {
            let v = a.m.series.median_gap(a.end).unwrap_or(-1.0);
            seen(a.explain, || "account.median_order_gap".into(), v)
        },
    );
    f!(
        api,
        "median_order_gap",
        "account.median_order_gap(days)",
        "median days between consecutive order days among those in the `days` days ending at the last order (so a rhythm from years ago does not count, and a long silence since does not empty the window); -1 with fewer than two such days",
        |a: &mut Account, days: i64| {
            let len = days.clamp(1, 100_000) as i32;
            let v = a.m.series.recent_median_gap(a.end, len).unwrap_or(-1.0);
            seen(a.explain, || format!("account.median_order_gap({days})"), v)
        },
    );
    f!(
        api,
        "order_days_before_last",
        "account.order_days_before_last(days)",
        "number of distinct order days in the `days` days ending at the last order (the days `median_order_gap(days)` is taken over)",
        |a: &mut Account, days: i64| {
            let len = days.clamp(1, 100_000) as i32;
            let v = a.m.series.recent_order_days(a.end, len).len() as i64;
            seen(
                a.explain,
                || format!("account.order_days_before_last({days})"),
                v,
            )
        },
    );
    g!(
        api,
        "order_count",
        "account.order_count",
        "number of orders up to the as-of date",
        |a: &mut Account| {
            let v = a.m.order_count(a.end);
            seen(a.explain, || "account.order_count".into(), v)
        },
    );
    g!(
        api,
        "order_days",
        "account.order_days",
        "number of distinct days with an order up to the as-of date",
        |a: &mut Account| {
            let v = a.m.series.order_days(a.end) as i64;
            seen(a.explain, || "account.order_days".into(), v)
        },
    );

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
            let v = a.m.visits_in(a.end, days);
            seen(a.explain, || format!("account.visits({days})"), v)
        },
    );
    f!(
        api,
        "visits_by",
        "account.visits_by(role, days)",
        "number of visits by `role` in the `days` days ending at the as-of date",
        |a: &mut Account, role: &str, days: i64| {
            let v = a.m.visits_by_in(a.end, days, Some(&[role]));
            seen(
                a.explain,
                || format!("account.visits_by({role:?}, {days})"),
                v,
            )
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
            let refs: Vec<&str> = list.iter().map(String::as_str).collect();
            let v = a.m.visits_by_in(a.end, days, Some(&refs));
            seen(
                a.explain,
                || format!("account.visits_by({text}, {days})"),
                v,
            )
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

    api.section = "account: receivables and credit";
    g!(
        api,
        "receivables",
        "account.receivables",
        "open invoices: the total amount (0 when none)",
        |a: &mut Account| seen(
            a.explain,
            || "account.receivables".into(),
            a.m.receivables()
        ),
    );
    g!(
        api,
        "overdue_amount",
        "account.overdue_amount",
        "the amount of open invoices past their due date",
        |a: &mut Account| {
            let v = a.m.overdue_amount(a.end);
            seen(a.explain, || "account.overdue_amount".into(), v)
        },
    );
    g!(
        api,
        "days_overdue",
        "account.days_overdue",
        "days the oldest overdue invoice is past due; 0 when none is",
        |a: &mut Account| {
            let v = a.m.days_overdue(a.end);
            seen(a.explain, || "account.days_overdue".into(), v)
        },
    );
    f!(
        api,
        "overdue_amount",
        "account.overdue_amount(days)",
        "the amount of open invoices at least `days` days past due (an invoice due yesterday is 1 day past due): the amount past a grace period",
        |a: &mut Account, days: i64| {
            let v = a.m.overdue_between(a.end, days, i64::MAX);
            seen(a.explain, || format!("account.overdue_amount({days})"), v)
        },
    );
    f!(
        api,
        "overdue_between",
        "account.overdue_between(from, to)",
        "the amount of open invoices `from` to `to` days past due, both included: the aging buckets, e.g. overdue_between(1, 30), overdue_between(31, 60), overdue_between(61, 90), overdue_between(91, 100000)",
        |a: &mut Account, from: i64, to: i64| {
            let v = a.m.overdue_between(a.end, from, to);
            seen(
                a.explain,
                || format!("account.overdue_between({from}, {to})"),
                v,
            )
        },
    );
    f!(
        api,
        "days_overdue",
        "account.days_overdue(days)",
        "days the oldest invoice at least `days` days past due is past due; 0 when none is",
        |a: &mut Account, days: i64| {
            let v = a.m.days_overdue_from(a.end, days);
            seen(a.explain, || format!("account.days_overdue({days})"), v)
        },
    );
    g!(
        api,
        "credit_limit",
        "account.credit_limit",
        "the credit limit from the master; 0 when the master gives none",
        |a: &mut Account| {
            let v = a.m.credit_limit.unwrap_or(0.0);
            seen(a.explain, || "account.credit_limit".into(), v)
        },
    );
    g!(
        api,
        "credit_used_pct",
        "account.credit_used_pct",
        "open receivables as % of the credit limit; -1 when there is no limit",
        |a: &mut Account| {
            let v = a.m.credit_used_pct().unwrap_or(-1.0);
            seen(a.explain, || "account.credit_used_pct".into(), v)
        },
    );

    api.section = "account: stock";
    g!(
        api,
        "main_skus",
        "account.main_skus",
        "the account's main SKUs (top 3 by trailing-12-month revenue), largest first",
        |a: &mut Account| {
            if a.explain {
                seen(
                    true,
                    || "account.main_skus".into(),
                    a.m.main_skus.join(", "),
                );
            }
            a.m.main_skus
                .iter()
                .map(|s| Dynamic::from(s.clone()))
                .collect::<Array>()
        },
    );
    g!(
        api,
        "stock_cover",
        "account.stock_cover",
        "for each main SKU the inventory knows: #{ sku, on_hand, daily_qty, days, dedicated } — days of cover at the last 90 days' demand (-1 without demand); stock held for the account (dedicated) is set against its own demand, warehouse stock against the whole book's",
        |a: &mut Account| {
            let mut out = Array::with_capacity(a.m.stock.len());
            for s in &a.m.stock {
                let mut m = Map::new();
                m.insert("sku".into(), s.sku.clone().into());
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

    api.section = "portfolio: the whole book";
    g!(
        api,
        "accounts",
        "portfolio.accounts",
        "number of active accounts",
        |b: &mut Book| {
            seen(
                b.explain,
                || "portfolio.accounts".into(),
                b.p.accounts as i64,
            )
        }
    );
    g!(
        api,
        "revenue_12m",
        "portfolio.revenue_12m",
        "the book's revenue over the 365 days ending at the as-of date",
        |b: &mut Book| seen(
            b.explain,
            || "portfolio.revenue_12m".into(),
            b.p.revenue_12m
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
    f!(
        api,
        "accounts_with",
        "portfolio.accounts_with(kind)",
        "number of active accounts with data of `kind`: \"orders\", \"visits\", \"receivables\", \"credit_limit\" or \"stock\" (0 says the book has none of it: an export not set up yet, not a finding)",
        |b: &mut Book, kind: &str| -> Result<i64, Box<EvalAltResult>> {
            let v = b.p.accounts_with(kind).ok_or_else(|| {
                format!("portfolio.accounts_with({kind:?}): the kinds are orders, visits, receivables, credit_limit, stock")
            })? as i64;
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
            let v = b.p.tier_count(tier) as i64;
            seen(b.explain, || format!("portfolio.tier_count({tier:?})"), v)
        },
    );
    f!(
        api,
        "tier_floor",
        "portfolio.tier_floor(tier)",
        "the trailing-12-month revenue of the smallest account ranked into tier \"A\" or \"B\" by revenue today (a tier column in the master aside); 0 when the tier is empty. An account with more than this ranks into the tier, the other accounts' revenue held as it is",
        |b: &mut Book, tier: &str| -> Result<f64, Box<EvalAltResult>> {
            let v = b.p.tier_floor(tier).ok_or_else(|| {
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
    for m in Metric::ALL {
        if m == Metric::Skus {
            continue;
        }
        let name = m.name();
        f!(
            api,
            name,
            &format!("portfolio.{name}(days)"),
            &format!(
                "the book's {} over the `days` days ending at the as-of date",
                m.describe()
            ),
            move |b: &mut Book, days: i64| {
                let call = || format!("portfolio.{name}({days})");
                window(&call, days, 0)?;
                let v = b.p.metric(m, b.end, days, 0);
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
                let v = b.p.metric(m, b.end, days, days);
                Ok::<_, Box<EvalAltResult>>(seen(b.explain, call, v))
            },
        );
    }

    api.section = "helpers";
    f!(
        api,
        "pct_change",
        "pct_change(now, before)",
        "percentage change from `before` to `now` ((now - before) / |before| x 100); 0 when `before` is 0",
        pct_change,
    );
    f!(
        api,
        "pct_change",
        "pct_change(now, before)",
        "the same for integers",
        |now: i64, before: i64| { pct_change(now as f64, before as f64) }
    );
    f!(
        api,
        "pct_change",
        "pct_change(now, before)",
        "the same with an integer `before`",
        |now: f64, before: i64| { pct_change(now, before as f64) }
    );
    f!(
        api,
        "pct_change",
        "pct_change(now, before)",
        "the same with an integer `now`",
        |now: i64, before: f64| { pct_change(now as f64, before) }
    );
    f!(
        api,
        "pct",
        "pct(part, whole)",
        "part as % of whole; 0 when whole is 0",
        |part: f64, whole: f64| {
            if whole.abs() < f64::EPSILON {
                0.0
            } else {
                all_pct(part / whole * 100.0)
            }
        }
    );
    f!(
        api,
        "round",
        "round(x, digits)",
        "x rounded to `digits` decimals (0..10)",
        round_to
    );
    f!(
        api,
        "round",
        "round(x, digits)",
        "integers stay as they are, as floats",
        |x: i64, _d: i64| { x as f64 }
    );
    f!(
        api,
        "mean",
        "mean(array)",
        "the mean of the numbers in an array; 0 when empty",
        |a: Array| {
            let v = to_f64s(&a);
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        }
    );
    f!(
        api,
        "trend_pct",
        "trend_pct(array)",
        "the least-squares slope of a series per step, as % of its mean (e.g. -5.0: falling 5% of the average each month); 0 with fewer than 2 points or a zero mean",
        |a: Array| {
            let v = to_f64s(&a);
            let n = v.len() as f64;
            if v.len() < 2 {
                return 0.0;
            }
            let mx = (n - 1.0) / 2.0;
            let my = v.iter().sum::<f64>() / n;
            let (mut sxy, mut sxx) = (0.0, 0.0);
            for (i, y) in v.iter().enumerate() {
                let dx = i as f64 - mx;
                sxy += dx * (y - my);
                sxx += dx * dx;
            }
            if my.abs() < f64::EPSILON {
                0.0
            } else {
                all_pct(sxy / sxx / my * 100.0)
            }
        },
    );
    f!(
        api,
        "format_date",
        "format_date(date, format)",
        "reformats a YYYY-MM-DD date with a strftime format, e.g. format_date(as_of, \"%Y年%m月%d日\")",
        |d: &str, fmt: &str| -> Result<String, Box<EvalAltResult>> {
            let d = parse_date(d)?;
            let mut out = String::new();
            write!(out, "{}", d.format(fmt))
                .map_err(|_| format!("format_date(): {fmt:?} is not a valid date format"))?;
            Ok(out)
        },
    );
    f!(
        api,
        "add_days",
        "add_days(date, n)",
        "the YYYY-MM-DD date `n` days after `date` (n may be negative)",
        |d: &str, n: i64| -> Result<String, Box<EvalAltResult>> {
            let d = parse_date(d)?;
            let n = n.clamp(-100_000, 100_000);
            Ok(date_of(crate::metrics::day(d) + n as i32)
                .format("%Y-%m-%d")
                .to_string())
        },
    );
    f!(
        api,
        "days_between",
        "days_between(from, to)",
        "days from one YYYY-MM-DD date to another (negative when `to` is earlier)",
        |a: &str, b: &str| -> Result<i64, Box<EvalAltResult>> {
            Ok((parse_date(b)? - parse_date(a)?).num_days())
        },
    );
    f!(
        api,
        "month",
        "month(date)",
        "the month (1..12) of a YYYY-MM-DD date",
        |d: &str| -> Result<i64, Box<EvalAltResult>> {
            use chrono::Datelike;
            Ok(i64::from(parse_date(d)?.month()))
        }
    );
    f!(
        api,
        "quarter",
        "quarter(date)",
        "the calendar quarter (1..4) of a YYYY-MM-DD date",
        |d: &str| -> Result<i64, Box<EvalAltResult>> {
            use chrono::Datelike;
            Ok(i64::from(parse_date(d)?.month0() / 3 + 1))
        }
    );
    f!(
        api,
        "year",
        "year(date)",
        "the year of a YYYY-MM-DD date",
        |d: &str| -> Result<i64, Box<EvalAltResult>> {
            use chrono::Datelike;
            Ok(i64::from(parse_date(d)?.year()))
        }
    );
    f!(
        api,
        "day_of_quarter",
        "day_of_quarter(date)",
        "the day within its calendar quarter (1 on 1 January, 1 April, 1 July, 1 October)",
        |d: &str| -> Result<i64, Box<EvalAltResult>> {
            let d = crate::metrics::day(parse_date(d)?);
            Ok(i64::from(d - quarter_start(d) + 1))
        }
    );
    api.section = "figures and texts";
    register_figures(&mut api);
    api.section = "seasons: the peaks of the year";
    f!(
        api,
        "season",
        "season(name)",
        "the configured season `name` (config `seasons:`, e.g. season(\"春节\")) running at the as-of date or the next to start: #{ name, start, end (YYYY-MM-DD), days_until (0 while it runs), in_peak, days_left (days to its end, both included, while it runs; else 0), length }; lunar dates (春节, 中秋, ...) are placed by the Chinese calendar for 1990-2100",
        |name: &str| -> Result<Map, Box<EvalAltResult>> {
            let (as_of, explain, seasons) = calendar()?;
            let s = seasons.get(name).ok_or_else(|| {
                format!(
                    "season({name:?}): no such season; the config's seasons are {}",
                    seasons.names().join(", ")
                )
            })?;
            let p = s.around(as_of).ok_or_else(|| {
                format!("season({name:?}): the calendar covers 1990-2100, not {as_of}")
            })?;
            seen(
                explain,
                || format!("season({name:?})"),
                peak_text(&p, as_of),
            );
            Ok(peak_map(&p, as_of))
        },
    );
    f!(
        api,
        "next_season",
        "next_season()",
        "the season running at the as-of date, or else the next to start, as season() gives it; () when the config has no seasons",
        || -> Result<Dynamic, Box<EvalAltResult>> {
            let (as_of, explain, seasons) = calendar()?;
            Ok(match seasons.next(as_of) {
                Some(p) => {
                    seen(explain, || "next_season()".into(), peak_text(&p, as_of));
                    peak_map(&p, as_of).into()
                }
                None => {
                    seen(explain, || "next_season()".into(), "none configured");
                    Dynamic::UNIT
                }
            })
        },
    );
    f!(
        api,
        "days_until_peak",
        "days_until_peak()",
        "days from the as-of date to the start of the next season of any name; 0 while one runs; -1 when the config has no seasons",
        || -> Result<i64, Box<EvalAltResult>> {
            let (as_of, explain, seasons) = calendar()?;
            let v = seasons.next(as_of).map_or(-1, |p| p.days_until(as_of));
            Ok(seen(explain, || "days_until_peak()".into(), v))
        },
    );
    f!(
        api,
        "from_lunar",
        "from_lunar(year, month, day)",
        "the YYYY-MM-DD date of a Chinese lunar date (not a leap month) of lunar year `year` (1989-2101), e.g. from_lunar(2026, 8, 15) is 中秋 2026",
        |y: i64, m: i64, d: i64| -> Result<String, Box<EvalAltResult>> {
            let date = i32::try_from(y)
                .ok()
                .zip(u32::try_from(m).ok().zip(u32::try_from(d).ok()))
                .and_then(|(y, (m, d))| crate::model::seasons::from_lunar(y, m, d))
                .ok_or_else(|| {
                    format!("from_lunar({y}, {m}, {d}): no such lunar date in 1989-2101")
                })?;
            Ok(date.format("%Y-%m-%d").to_string())
        },
    );

    api.section = "raising an alert";
    f!(
        api,
        "alert",
        "alert(#{ severity, title, figures, action, key })",
        "raises a warning for this account: severity \"info\" | \"warning\" | \"critical\" (default: the rule's SETTINGS.severity, else \"warning\"); title (required); figures, the numbers behind it, as an array of [label, value] pairs (kept in order; a third element names the kind, [\"revenue\", x, \"money\"]) or a map (sorted by label); the recommended action; key, to raise several alerts for one account (one per SKU, say). Title, action and labels are strings or texts per locale, #{ \"zh-CN\": \"...\", en: \"...\" }: the reader's locale is used, else Chinese, else the one given",
        |ctx: NativeCallContext, spec: Map| super::raise(&ctx, spec),
    );
    api.docs
}

/// The figure kinds and per-locale texts (`money(x)`, `tr(#{...})`, ...).
fn register_figures(api: &mut Api) {
    api.e.register_type_with_name::<Figure>("Figure");
    let num = |unit: Unit, x: f64| Figure {
        unit,
        num: x,
        text: None,
    };
    for (name, unit, doc) in [
        (
            "money",
            Unit::Money,
            "an amount in `mail.currency`: ¥22,930, or ¥2.29万 in Chinese",
        ),
        (
            "pct",
            Unit::Percent,
            "a percentage (0..100, or a change): −61.7%",
        ),
        (
            "points",
            Unit::Points,
            "a difference of percentages: 3.2 个百分点 / 3.2 pts",
        ),
        (
            "count",
            Unit::Count,
            "a number of things, written without decimals: 6",
        ),
        ("days", Unit::Days, "a number of days: 45 天 / 45 days"),
        ("ratio", Unit::Ratio, "a plain ratio, two decimals: 1.25"),
    ] {
        f!(
            api,
            name,
            format!("{name}(x)"),
            format!("x as a figure of its kind, for `alert()` figures and titles; {doc}"),
            move |x: f64| num(unit, x)
        );
        f!(
            api,
            name,
            format!("{name}(x)"),
            "the same for an integer",
            move |x: i64| num(unit, x as f64)
        );
    }
    for (name, unit, doc) in [
        (
            "date",
            Unit::Date,
            "a date figure, YYYY-MM-DD, written as given",
        ),
        ("text", Unit::Text, "a text figure, written as given"),
    ] {
        f!(
            api,
            name,
            format!("{name}(s)"),
            doc,
            move |s: ImmutableString| {
                Figure {
                    unit,
                    num: 0.0,
                    text: Some(s),
                }
            }
        );
    }
    g!(
        api,
        "value",
        "figure.value",
        "the raw number (or text) of a figure",
        |f: &mut Figure| -> Dynamic {
            match &f.text {
                Some(t) => t.clone().into(),
                None => f.num.into(),
            }
        }
    );
    g!(
        api,
        "unit",
        "figure.unit",
        "the kind of a figure: \"money\", \"percent\", \"points\", \"count\", \"days\", \"ratio\", \"date\" or \"text\"",
        |f: &mut Figure| -> ImmutableString { f.unit.name().into() }
    );
    f!(
        api,
        "to_string",
        "to_string(figure)",
        "the figure as the reader's locale writes it; what `${money(x)}` puts in a title",
        |f: &mut Figure| -> ImmutableString { figure_text(f).into() }
    );
    f!(
        api,
        "to_debug",
        "to_debug(figure)",
        "the same, for `debug`",
        |f: &mut Figure| -> ImmutableString { figure_text(f).into() }
    );
    f!(
        api,
        "tr",
        "tr(#{ \"zh-CN\": text, en: text })",
        "the text for the reader's locale (`mail.locale`), else the Chinese one, else the one given; for building texts beyond alert()'s own fields",
        |m: Map| -> Result<ImmutableString, Box<EvalAltResult>> {
            text_of(&Dynamic::from_map(m), "tr()")
                .map(Into::into)
                .map_err(Into::into)
        }
    );
    f!(
        api,
        "locale",
        "locale()",
        "the reader's locale: \"zh-CN\" or \"en\"",
        || -> ImmutableString { locale().key().into() }
    );
}

/// Texts per locale in `ast` that name a locale kamwatch does not write
/// in: a map literal with a `"zh-CN"` or `en` key is a text map, and each of
/// its keys must be a locale (`#{ zh: ..., en: ... }` is caught here, not
/// at the first alert). (position, message).
pub fn bad_text_maps(ast: &rhai::AST) -> Vec<(rhai::Position, String)> {
    use rhai::{ASTNode, Expr};
    let mut out = Vec::new();
    let mut check = |keys: Vec<String>, pos: rhai::Position| {
        if !keys.iter().any(|k| Locale::parse(k).is_some()) {
            return;
        }
        for k in keys.iter().filter(|k| Locale::parse(k).is_none()) {
            out.push((
                pos,
                format!(
                    "a text per locale has the key {k:?}, which is not a locale kamwatch writes in; the locales are {}",
                    Locale::known()
                ),
            ));
        }
    };
    ast.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Expr(Expr::Map(x, pos))) => {
                check(x.0.iter().map(|(k, _)| k.name.to_string()).collect(), *pos)
            }
            // Constant maps and arrays are folded into one value, nested
            // maps included.
            Some(ASTNode::Expr(Expr::DynamicConstant(d, pos))) => {
                let mut stack = vec![(**d).clone()];
                while let Some(d) = stack.pop() {
                    if d.is_map() {
                        let m = d.cast::<Map>();
                        check(m.keys().map(|k| k.to_string()).collect(), *pos);
                        stack.extend(m.into_values());
                    } else if d.is_array() {
                        stack.extend(d.cast::<Array>());
                    }
                }
            }
            _ => {}
        }
        true
    });
    out
}

/// The texts of `alert()` calls in `ast` written in Chinese only (a title,
/// an action or a figure label given as one Chinese string, not per
/// locale): what an English reader would get as is. (position, which).
pub fn chinese_only_texts(ast: &rhai::AST) -> Vec<(rhai::Position, String)> {
    use rhai::{ASTNode, Expr, Stmt};
    fn cjk(s: &str) -> bool {
        s.chars().any(crate::format::is_cjk)
    }
    fn expr_cjk(e: &Expr) -> bool {
        match e {
            Expr::StringConstant(s, _) => cjk(s),
            Expr::InterpolatedString(parts, _) => parts.iter().any(expr_cjk),
            _ => false,
        }
    }
    fn dyn_cjk(d: &Dynamic) -> bool {
        d.is_string() && cjk(&d.to_string())
    }
    let mut out = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        // A call is an expression, or a statement of its own.
        let (call, pos) = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, pos))) => (call, pos),
            Some(ASTNode::Stmt(Stmt::FnCall(call, pos))) => (call, pos),
            _ => return true,
        };
        if call.name.as_str() != "alert" || call.args.len() != 1 {
            return true;
        }
        let mut found: Vec<String> = Vec::new();
        match &call.args[0] {
            Expr::Map(x, _) => {
                for (k, v) in x.0.iter() {
                    match (k.name.as_str(), v) {
                        ("title" | "action", v) if expr_cjk(v) => found.push(k.name.to_string()),
                        ("figures", Expr::Array(items, _)) => {
                            for item in items.iter() {
                                match item {
                                    Expr::Array(pair, _) if pair.first().is_some_and(expr_cjk) => {
                                        found.push("a figure label".into())
                                    }
                                    Expr::DynamicConstant(d, _)
                                        if d.read_lock::<Array>()
                                            .is_some_and(|p| p.first().is_some_and(dyn_cjk)) =>
                                    {
                                        found.push("a figure label".into())
                                    }
                                    _ => {}
                                }
                            }
                        }
                        ("figures", Expr::DynamicConstant(d, _)) => {
                            if let Some(items) = d.read_lock::<Array>() {
                                for item in items.iter() {
                                    if item
                                        .read_lock::<Array>()
                                        .is_some_and(|p| p.first().is_some_and(dyn_cjk))
                                    {
                                        found.push("a figure label".into());
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            Expr::DynamicConstant(d, _) => {
                if let Some(m) = d.read_lock::<Map>() {
                    for k in ["title", "action"] {
                        if m.get(k).is_some_and(dyn_cjk) {
                            found.push(k.to_string());
                        }
                    }
                    let labels = m.get("figures").and_then(|f| {
                        f.read_lock::<Array>().map(|a| {
                            a.iter().any(|p| {
                                p.read_lock::<Array>()
                                    .is_some_and(|p| p.first().is_some_and(dyn_cjk))
                            })
                        })
                    });
                    if labels == Some(true) {
                        found.push("a figure label".into());
                    }
                }
            }
            _ => {}
        }
        found.dedup();
        if !found.is_empty() {
            out.push((*pos, found.join(", ")));
        }
        true
    });
    out
}

/// The rule API reference, as markdown, from what `register` registered.
pub fn reference() -> String {
    let mut e = Engine::new_raw();
    let docs = register(&mut e);
    let mut out = String::new();
    let _ = writeln!(out, "# Rule API reference\n");
    let _ = writeln!(
        out,
        "Generated by `kamwatch rules api` from the functions the rule engine registers; \
         a test fails when this page and the command differ. Regenerate with\n\
         `cargo run -- rules api > docs/rules-api.md`.\n"
    );
    let _ = writeln!(
        out,
        "Every rule runs once per account with these in scope: `account` (the account), \
         `portfolio` (the book), `as_of` (the evaluation date, \"YYYY-MM-DD\"). \
         Windows are `days` days ending at the as-of date, inclusive: `account.revenue(90)` \
         covers the as-of date and the 89 days before it. Money is in the export's currency; \
         percentages are 0..100. A figure that does not exist is -1 where noted \
         (never ordered, never visited, no credit limit), never an error.\n"
    );
    let _ = writeln!(
        out,
        "Per-rule settings go in a top-level literal `const SETTINGS = #{{ ... }};`: \
         `enabled` (bool), `tiers` (array of \"A\"/\"B\"/\"C\"; other accounts are skipped without \
         running the script), `needs` (data without which the rule cannot fire: \"orders\", \"visits\", \
         \"receivables\", \"credit_limit\", \"stock\"; accounts lacking it are skipped without running \
         the script), `severity` (default for `alert`), and the alert lifecycle keys of the config's \
         `alerts:` section: `for_evaluations`, `repeat_interval_days`, `notify_resolved`, \
         `keep_firing_for_days`, `escalate_after_days`, plus `recipients` (extra addresses). \
         `rule_settings.<rule>` in the config takes the same keys and wins, key by key.\n"
    );
    let sigs: Vec<String> = {
        let json = e.gen_fn_metadata_to_json(false).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        v["functions"]
            .as_array()
            .map(|fs| {
                fs.iter()
                    .map(|f| {
                        let doc = f["docComments"][0].as_str().unwrap_or("");
                        format!(
                            "{}\u{0}{}",
                            doc,
                            readable_signature(f["signature"].as_str().unwrap_or(""))
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut section = "";
    for d in &docs {
        if d.section != section {
            section = d.section;
            let _ = writeln!(out, "## {section}\n");
        }
        let key = format!("/// {}: {}", d.usage, d.doc);
        let sig: Vec<&str> = sigs
            .iter()
            .filter_map(|s| s.split_once('\u{0}'))
            .filter(|(doc, _)| *doc == key)
            .map(|(_, sig)| sig)
            .collect();
        let _ = writeln!(out, "- `{}` — {}", d.usage, d.doc);
        for s in sig.iter().take(1) {
            let _ = writeln!(out, "  <br>`{s}`");
        }
    }
    out
}

/// The functions a rule may call: name -> the numbers of arguments it
/// takes, counting a method's object as the first. Built from what the
/// engine has registered (its packages and this API), so `check` and the
/// engine cannot disagree.
pub struct Known {
    arities: std::collections::HashMap<String, std::collections::BTreeSet<usize>>,
}

/// Rhai's own functions, handled by the engine rather than registered.
const KEYWORD_FNS: &[(&str, &[usize])] = &[
    ("print", &[0, 1]),
    ("debug", &[0, 1]),
    ("type_of", &[1]),
    ("Fn", &[1]),
    ("call", &[1, 2, 3, 4, 5, 6, 7, 8]),
    ("curry", &[2, 3, 4, 5, 6, 7, 8]),
    ("is_def_var", &[1]),
    ("is_def_fn", &[2]),
    ("is_shared", &[1]),
];

impl Known {
    pub fn of(e: &Engine) -> Known {
        let mut arities: std::collections::HashMap<String, std::collections::BTreeSet<usize>> =
            std::collections::HashMap::new();
        let json = e.gen_fn_metadata_to_json(true).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        for f in v["functions"].as_array().into_iter().flatten() {
            let (Some(name), Some(n)) = (f["name"].as_str(), f["numParams"].as_u64()) else {
                continue;
            };
            arities
                .entry(name.to_string())
                .or_default()
                .insert(n as usize);
        }
        for (name, ns) in KEYWORD_FNS {
            arities
                .entry(name.to_string())
                .or_default()
                .extend(ns.iter().copied());
        }
        Known { arities }
    }

    /// The calls in `ast` (its statements and its own functions) that no
    /// registered or script-defined function answers: (name, arguments,
    /// method call?, position, the nearest known name).
    pub fn unknown_calls(&self, ast: &rhai::AST) -> Vec<UnknownCall> {
        use rhai::{ASTNode, Expr, Stmt};
        let mut own: std::collections::HashMap<String, std::collections::BTreeSet<usize>> =
            std::collections::HashMap::new();
        for f in ast.iter_functions() {
            own.entry(f.name.to_string())
                .or_default()
                .insert(f.params.len());
        }
        let mut out = Vec::new();
        ast.walk(&mut |path: &[ASTNode]| {
            let (x, pos, method) = match path.last() {
                Some(ASTNode::Expr(Expr::FnCall(x, pos))) => (x, *pos, false),
                Some(ASTNode::Expr(Expr::MethodCall(x, pos))) => (x, *pos, true),
                // A call standing as a statement of its own (`alrt(...);`).
                Some(ASTNode::Stmt(Stmt::FnCall(x, pos))) => (x, *pos, false),
                _ => return true,
            };
            let name = x.name.as_str();
            // Operators (`+`, `==`, `in`) are calls too; only names count.
            let is_name = name
                .chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_');
            if x.op_token.is_some() || !is_name {
                return true;
            }
            let args = x.args.len();
            // A script's own function answers `f(a)` and `a.f()` (as `this`).
            let script_ok = own.get(name).is_some_and(|n| n.contains(&args));
            let native_ok = self
                .arities
                .get(name)
                .is_some_and(|n| n.contains(&(args + usize::from(method))));
            if !script_ok && !native_ok {
                out.push(UnknownCall {
                    name: name.to_string(),
                    args,
                    method,
                    pos,
                    suggestion: self.nearest(name, &own),
                    other_arities: self
                        .arities
                        .get(name)
                        .or_else(|| own.get(name))
                        .map(|n| {
                            n.iter()
                                .map(|a| a.saturating_sub(usize::from(method)))
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
            true
        });
        out
    }

    /// The known name closest to `name` (edit distance at most a third of
    /// its length, at least 2), if any.
    fn nearest(
        &self,
        name: &str,
        own: &std::collections::HashMap<String, std::collections::BTreeSet<usize>>,
    ) -> Option<String> {
        let limit = (name.chars().count() / 3).max(2);
        self.arities
            .keys()
            .chain(own.keys())
            .filter(|k| k.as_str() != name && !k.contains('$'))
            .map(|k| (edit_distance(name, k), k))
            .filter(|(d, _)| *d <= limit)
            .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)))
            .map(|(_, k)| k.clone())
    }
}

/// A call `check` found no function for.
#[derive(Debug, Clone)]
pub struct UnknownCall {
    pub name: String,
    pub args: usize,
    pub method: bool,
    pub pos: rhai::Position,
    pub suggestion: Option<String>,
    /// The argument counts the name takes, when the name is known.
    pub other_arities: Vec<usize>,
}

impl std::fmt::Display for UnknownCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.args == 1 { "" } else { "s" };
        let what = if self.method { "method" } else { "function" };
        if !self.other_arities.is_empty() {
            let takes: Vec<String> = self.other_arities.iter().map(|n| n.to_string()).collect();
            return write!(
                f,
                "{what} `{}` does not take {} argument{plural}; it takes {}. See `kamwatch rules api`",
                self.name,
                self.args,
                takes.join(" or ")
            );
        }
        write!(
            f,
            "unknown {what} `{}` ({} argument{plural})",
            self.name, self.args
        )?;
        match &self.suggestion {
            Some(s) => write!(f, "; did you mean `{s}`?"),
            None => write!(f, "; `kamwatch rules api` lists the functions"),
        }
    }
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
