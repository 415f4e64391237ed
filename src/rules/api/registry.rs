//! The machinery every group of the rule API registers through: [`Api`]
//! records a one-line doc with each function (the reference and `check`
//! are built from it), the `f!` and `g!` macros register a function or a
//! property getter, [`seen`] notes what a call returned while a rule is
//! explained (marked when an alert's figures function read it), and [`window`], [`months`], [`past_due`] and [`days_ago`]
//! check the day and month counts rules give. Touches nothing but the
//! engine it is given and this thread's trace.

use std::cell::RefCell;

use rhai::{Engine, EvalAltResult, FuncRegistration};

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
    pub(super) e: &'e mut Engine,
    pub(super) section: &'static str,
    pub(super) docs: Vec<Doc>,
}

impl Api<'_> {
    /// The registration of `name` with its doc; `usage` is how a rule
    /// writes the call. Use through `f!` and `g!`.
    pub(super) fn reg(&mut self, name: &str, usage: &str, doc: &str) -> FuncRegistration {
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

pub(super) use {f, g};

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
pub(super) fn seen<T: std::fmt::Display>(on: bool, what: impl FnOnce() -> String, v: T) -> T {
    if on {
        let text = v.to_string();
        let mut what = what();
        // What an alert's figures function reads is marked: it runs the
        // pair again after a drop only when its account's tier moved.
        if crate::rules::reads::in_figures() {
            what.push_str(FIGURES_MARK);
        }
        TRACE.with(|t| t.borrow_mut().push((what, text)));
    }
    v
}

/// The mark of a read made by an alert's figures function in the trace.
pub const FIGURES_MARK: &str = " (in figures)";

/// Longest window a rule may ask for, in days (100 years).
pub const MAX_WINDOW_DAYS: i64 = 36_500;

/// A window as a rule gives it: 1 to [`MAX_WINDOW_DAYS`] days, ending 0 or
/// more days before the as-of date. Anything else is the rule's mistake, an
/// error naming the call: read as 0 it would answer a question nobody
/// asked ("no revenue") and could raise or clear an alert.
pub(super) fn window(
    call: &dyn Fn() -> String,
    days: i64,
    offset: i64,
) -> Result<(), Box<EvalAltResult>> {
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

/// Most complete months a monthly series gives (ten years).
pub(super) const MAX_MONTHS: i64 = 120;

/// A number of months as a rule gives it: 1 to [`MAX_MONTHS`].
pub(super) fn months(call: &dyn Fn() -> String, n: i64) -> Result<(), Box<EvalAltResult>> {
    if !(1..=MAX_MONTHS).contains(&n) {
        return Err(format!("{}: {n} months; give 1 to {MAX_MONTHS} months", call()).into());
    }
    Ok(())
}

/// Days past due as a rule gives them: `from` 0 or more (0 and 1 both
/// mean every overdue invoice), `to` not below `from`.
pub(super) fn past_due(
    call: &dyn Fn() -> String,
    from: i64,
    to: i64,
) -> Result<(), Box<EvalAltResult>> {
    if from < 0 {
        return Err(format!(
            "{}: {from} days past due; give 0 or more (1: every overdue invoice, 31: a month late or more)",
            call()
        )
        .into());
    }
    if to < from {
        return Err(format!(
            "{}: the bucket ends ({to} days) before it starts ({from}); give the smaller number first",
            call()
        )
        .into());
    }
    Ok(())
}

/// How far back a tier is known, in days (two years).
pub(super) const MAX_DAYS_AGO: i64 = crate::metrics::TIER_HISTORY_DAYS as i64 - 1;

/// Days back as a rule gives them: 0 (the as-of date) to [`MAX_DAYS_AGO`].
pub(super) fn days_ago(call: &dyn Fn() -> String, days: i64) -> Result<(), Box<EvalAltResult>> {
    if !(0..=MAX_DAYS_AGO).contains(&days) {
        return Err(format!(
            "{}: {days} days back; give 0 (the as-of date) to {MAX_DAYS_AGO}",
            call()
        )
        .into());
    }
    Ok(())
}
