//! The rule API's `alert(#{...})`: a rule raising a warning for the
//! account it runs for. Each call is checked (fields, types, kinds, one
//! alert per key, at most `alerts.max_per_account` per run) and kept in
//! this thread's list of what the current run raised, which the runner
//! takes after the run. Touches only that thread-local list.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult, FnPtr, Map, NativeCallContext};

use super::registry::{Api, f};
use super::texts::{Figure, text_of};
use crate::format::Unit;
use crate::metrics::AccountMetrics;
use crate::model::Severity;
use crate::rules::finding::{Finding, Said, Units};
use crate::rules::reads;

/// Defaults of `alerts.max_per_account` and `alerts.max_per_rule` (the
/// config's): the most alerts a rule may raise for one account in one run,
/// and in one evaluation.
pub use crate::config::{DEFAULT_MAX_ALERTS_PER_ACCOUNT, DEFAULT_MAX_ALERTS_PER_RULE};

thread_local! {
    /// Alerts raised by the script currently running on this thread.
    static RAISED: RefCell<Vec<Raised>> = const { RefCell::new(Vec::new()) };
    /// The most alerts one run may raise on this thread
    /// (`alerts.max_per_account`).
    static ALERT_CAP: Cell<usize> = const { Cell::new(DEFAULT_MAX_ALERTS_PER_ACCOUNT) };
}

/// One `alert()` call of the current run.
pub struct Raised {
    key: String,
    severity: Option<Severity>,
    title: String,
    figures: Figures,
    units: Units,
    action: String,
    /// `starts: false`: keeps an open alert open, starts none.
    starts: bool,
    /// The line of the `alert()` call.
    pub line: Option<usize>,
}

impl Raised {
    /// Whether it may start an alert (`starts`, default true): a held one
    /// does not count towards `alerts.max_per_rule`.
    pub fn starts(&self) -> bool {
        self.starts
    }

    /// The finding of `rule` for `account`; `severity` is the rule's
    /// default (its `SETTINGS.severity`), else "warning".
    pub fn finding(
        self,
        rule: &Arc<str>,
        severity: Option<Severity>,
        account: &Arc<AccountMetrics>,
    ) -> Finding {
        let mut figures: Vec<(Arc<str>, serde_json::Value)> = self
            .figures
            .into_iter()
            .map(|(k, v)| (shared_text(k), v))
            .collect();
        figures.shrink_to_fit();
        let mut title = self.title;
        title.shrink_to_fit();
        Finding {
            rule: rule.clone(),
            account: account.clone(),
            said: Arc::new(Said {
                key: self.key,
                severity: self.severity.or(severity).unwrap_or(Severity::Warning),
                title,
                figures,
                units: shared_units(self.units),
                action: shared_text(self.action),
                starts: self.starts,
            }),
        }
    }
}

/// At most this many texts, and this many sets of figure kinds, are shared
/// per thread: a rule that writes a new label for every account (its SKU's
/// name, say) gets copies past them, never an unbounded table.
const SHARED: usize = 4096;

thread_local! {
    /// Texts already given out on this thread (labels, actions).
    static TEXTS: RefCell<std::collections::HashSet<Arc<str>>> = RefCell::default();
    /// Figure kinds already given out on this thread.
    static UNITS: RefCell<std::collections::HashSet<Arc<Units>>> = RefCell::default();
}

/// `s` as a shared text: the one given out before when there is one.
fn shared_text(s: String) -> Arc<str> {
    TEXTS.with(|t| {
        let mut t = t.borrow_mut();
        if let Some(a) = t.get(s.as_str()) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        if t.len() < SHARED {
            t.insert(a.clone());
        }
        a
    })
}

/// `u` shared: the equal set given out before when there is one.
fn shared_units(u: Units) -> Arc<Units> {
    UNITS.with(|t| {
        let mut t = t.borrow_mut();
        if let Some(a) = t.get(&u) {
            return a.clone();
        }
        let a = Arc::new(u);
        if t.len() < SHARED {
            t.insert(a.clone());
        }
        a
    })
}

/// Takes what the last run on this thread raised.
pub fn take_raised() -> Vec<Raised> {
    RAISED.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

/// Takes the alerts the last script run on this thread raised, and says
/// how many there were (the rule benchmark counts them).
pub fn take_raised_count() -> usize {
    take_raised().len()
}

/// Sets `alerts.max_per_account` for the runs on this thread.
pub fn set_alert_cap(cap: usize) {
    ALERT_CAP.with(|c| c.set(cap));
}

/// `alert(#{ ... })`.
pub(super) fn alert(api: &mut Api) {
    api.section = "raising an alert";
    f!(
        api,
        "alert",
        "alert(#{ severity, title, figures, action, key, starts })",
        "raises a warning for this account: severity \"info\" | \"warning\" | \"critical\" (default: the rule's SETTINGS.severity, else \"warning\"); title (required); figures, the numbers behind it, as an array of [label, value] pairs (kept in order; a third element names the kind, [\"revenue\", x, \"money\"]) or a map (sorted by label), or a function of the script that returns them, Fn(\"name\").curry(account, ...) (functions see only their arguments), called at once: what it reads does not run the rule again after a small drop (an alert's figures are written when its lifecycle changes, which only what decided it changes; its pairs run first when the account's tier moves); the recommended action; key, to raise several alerts for one account (one per SKU, say); starts: false (default true) holds instead of raising: if this key's alert is open (pending or firing) it counts as raised today (severity, for_evaluations, repeats, escalation, keep_firing_for_days as for any raise), and if none is open nothing starts and nothing is mailed. Hysteresis from the lifecycle: raise past the line plus a margin, hold inside the margin. Title, action and labels are strings or texts per locale, #{ \"zh-CN\": \"...\", en: \"...\" }: the reader's locale is used, else Chinese, else the one given",
        |ctx: NativeCallContext, spec: Map| raise(&ctx, spec),
    );
}

/// One `alert()` call: checked, then kept for the runner.
fn raise(ctx: &NativeCallContext, mut spec: Map) -> Result<(), Box<EvalAltResult>> {
    if reads::in_figures() {
        return Err(
            "alert(): called from an alert's figures function; a figures function returns the figures and raises nothing"
                .into(),
        );
    }
    let cap = ALERT_CAP.with(Cell::get);
    if RAISED.with(|r| r.borrow().len()) >= cap {
        return Err(format!(
            "alert(): more than {cap} alerts for one account (alerts.max_per_account); none of this run's alerts were recorded. Fix the rule, or raise the cap if so many are meant"
        )
        .into());
    }
    for k in spec.keys() {
        if !matches!(
            k.as_str(),
            "severity" | "title" | "figures" | "action" | "key" | "starts"
        ) {
            return Err(format!(
                "alert(): unknown field `{k}`; the fields are severity, title, figures, action, key, starts"
            )
            .into());
        }
    }
    let key = key_of(&spec)?;
    let severity = match text(&spec, "severity")? {
        None => None,
        Some(t) => Some(Severity::parse(&t).ok_or_else(|| {
            format!("alert(): severity {t:?} is not one of info, warning, critical")
        })?),
    };
    let title = words(&spec, "title")?
        .filter(|t| !t.trim().is_empty())
        .ok_or("alert(): `title` is required and must be a string")?;
    let action = words(&spec, "action")?.unwrap_or_default();
    let starts = match spec.get("starts") {
        None => true,
        Some(v) => v
            .as_bool()
            .map_err(|t| format!("alert(): `starts` must be true or false, got {t} {v}"))?,
    };
    // One alert per key: a second with the same key (`7` and "7" included)
    // would be lost without a word when the alerts are stored.
    let line = ctx.call_position().line();
    if let Some(first) = RAISED.with(|r| r.borrow().iter().find(|a| a.key == key).map(|a| a.line)) {
        let at = |l: Option<usize>| l.map_or_else(|| "?".to_string(), |l| l.to_string());
        return Err(format!(
            "alert(): key {key:?} was raised twice in one run (lines {} and {}); give each alert of a rule and account its own `key`",
            at(first),
            at(line)
        )
        .into());
    }
    // Taken out of the call's own map, not copied; a function of the
    // script's computes them last, its reads noted apart (`reads`).
    let (figures, units) = match spec.remove("figures") {
        Some(f) if f.is_fnptr() => figures_by(ctx, &f.cast::<FnPtr>())?,
        Some(f) => figures_of(f)?,
        None => (Vec::new(), Units::new()),
    };
    RAISED.with(|r| {
        r.borrow_mut().push(Raised {
            key,
            severity,
            title,
            figures,
            units,
            action,
            starts,
            line,
        })
    });
    Ok(())
}

/// The figures the script's function `f` returns (`figures: Fn(..)`),
/// its reads noted as the figures' (`reads::figures`). It decides
/// nothing, so nothing of it reaches the decision: a failure (an error, a
/// sandbox limit, figures of the wrong shape) becomes the alert's one
/// figure, saying what failed, not an error the script could catch or the
/// run would report (a partial evaluation does not run a held finding
/// again for what only its figures read, nor so for how they failed).
/// Its operations are its own: they run on a copy of the run's count
/// (Rhai's native call), which they do not advance.
fn figures_by(ctx: &NativeCallContext, f: &FnPtr) -> Result<(Figures, Units), Box<EvalAltResult>> {
    let out = reads::figures(|| f.call_within_context::<Dynamic>(ctx, ()))
        .map_err(|e| failure_text(&e))
        .and_then(|v| figures_of(v).map_err(|e| failure_text(&e)));
    let message = match out {
        Ok(figures) => return Ok(figures),
        Err(e) => e,
    };
    let label = text_of(
        &Dynamic::from_map(Map::from_iter([
            ("zh-CN".into(), "数字未能算出".into()),
            ("en".into(), "Figures not computed".into()),
        ])),
        "alert(): a figure's label",
    )?;
    let name = f.fn_name();
    let value = format!(
        "the figures function {name}() failed: {message}. Fix the function (it sees only its arguments: pass it account, portfolio and what else it reads, with Fn(\"{name}\").curry(...)); `kamwatch eval --explain` runs it for one account"
    );
    Ok((
        vec![(label, serde_json::Value::String(value))],
        Units::new(),
    ))
}

/// An error of a figures function in words, once ("Runtime error: " and
/// the position Rhai adds left out).
fn failure_text(e: &EvalAltResult) -> String {
    let text = match e {
        EvalAltResult::ErrorRuntime(v, _) => v.to_string(),
        EvalAltResult::ErrorInFunctionCall(name, _, inner, _) => {
            format!("in {name}(): {}", failure_text(inner))
        }
        EvalAltResult::ErrorTooManyOperations(_) => {
            "stopped at the sandbox's limit of operations (an endless loop?)".to_string()
        }
        EvalAltResult::ErrorTerminated(..) => {
            "stopped (a sandbox limit, or the daemon stopping)".to_string()
        }
        other => other.to_string(),
    };
    match text.rfind(" (line ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    }
}

/// A field that must be a string: given with another type it is refused,
/// not silently read as "" (two alerts with key "" would collide).
fn text(spec: &Map, k: &str) -> Result<Option<String>, Box<EvalAltResult>> {
    match spec.get(k) {
        None => Ok(None),
        Some(v) if v.is_string() => Ok(Some(v.to_string())),
        Some(v) => {
            Err(format!("alert(): `{k}` must be a string, got {} {v}", v.type_name()).into())
        }
    }
}

/// Title and action: a string, or texts per locale.
fn words(spec: &Map, k: &str) -> Result<Option<String>, Box<EvalAltResult>> {
    match spec.get(k) {
        None => Ok(None),
        Some(v) => text_of(v, &format!("alert(): `{k}`"))
            .map(Some)
            .map_err(Into::into),
    }
}

/// The key: a string, or an integer (an id), written in decimal.
fn key_of(spec: &Map) -> Result<String, Box<EvalAltResult>> {
    Ok(match spec.get("key") {
        Some(v) if v.is_int() => v.as_int().map(|i| i.to_string()).unwrap_or_default(),
        Some(v) if !v.is_string() => {
            return Err(format!(
                "alert(): `key` must be a string or an integer, got {} {v}",
                v.type_name()
            )
            .into());
        }
        _ => text(spec, "key")?.unwrap_or_default(),
    })
}

/// Figures by label, in the rule's order.
type Figures = Vec<(String, serde_json::Value)>;

/// The figures (a map, or [label, value(, kind)] pairs in order) and the
/// kinds of those that have one.
fn figures_of(f: Dynamic) -> Result<(Figures, Units), Box<EvalAltResult>> {
    let mut figures = Vec::new();
    let mut units = Units::new();
    let mut add = |label: String, v: &Dynamic, unit: Option<Unit>| {
        let (value, kind) = match v.read_lock::<Figure>() {
            Some(f) => (f.json(), Some(f.unit)),
            None => (to_json(v), None),
        };
        if let Some(u) = unit.or(kind) {
            units.insert(label.clone(), u);
        }
        figures.push((label, value));
    };
    if f.is_map() {
        for (k, v) in f.cast::<Map>() {
            add(k.to_string(), &v, None);
        }
    } else if f.is_array() {
        for pair in f.cast::<rhai::Array>() {
            let (label, value, unit) = figure_pair(pair)?;
            add(label, &value, unit);
        }
    } else {
        return Err("alert(): `figures` must be an array of [label, value] pairs or a map, e.g. [[\"revenue\", 1200.0]]".into());
    }
    Ok((figures, units))
}

/// One `[label, value]` or `[label, value, kind]` entry of `figures`.
fn figure_pair(pair: Dynamic) -> Result<(String, Dynamic, Option<Unit>), Box<EvalAltResult>> {
    let bad = || -> Box<EvalAltResult> {
        "alert(): each entry of `figures` must be a pair [\"label\", value], or [\"label\", value, \"kind\"]".into()
    };
    if !pair.is_array() {
        return Err(bad());
    }
    let mut pair = pair.cast::<rhai::Array>();
    if pair.len() != 2 && pair.len() != 3 {
        return Err(bad());
    }
    let unit = match pair.get(2) {
        None => None,
        Some(u) => Some(
            u.clone()
                .into_immutable_string()
                .ok()
                .and_then(|u| Unit::parse(&u))
                .ok_or_else(|| {
                    format!(
                        "alert(): the figure {} has the kind {}, which is not one of {}",
                        pair[0],
                        pair[2],
                        Unit::known()
                    )
                })?,
        ),
    };
    // A label per locale is a map; anything else is written as it always
    // was (a number too).
    let label = if pair[0].is_map() {
        text_of(&pair[0], "alert(): a figure's label")?
    } else {
        pair[0].to_string()
    };
    Ok((label, std::mem::take(&mut pair[1]), unit))
}

fn to_json(v: &Dynamic) -> serde_json::Value {
    if let Ok(i) = v.as_int() {
        serde_json::Value::from(i)
    } else if let Ok(f) = v.as_float() {
        // Raw, as a kind's figure (`Figure::json`).
        serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null)
    } else if let Ok(b) = v.as_bool() {
        serde_json::Value::Bool(b)
    } else if v.is_unit() {
        serde_json::Value::Null
    } else {
        serde_json::Value::String(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use crate::model::Severity;
    use crate::rules::RuleSet;
    use crate::rules::test_books::book_of;

    #[test]
    fn alert_keys_are_strings_or_integers() {
        let rs = RuleSet::from_sources(&[(
            "k",
            "alert(#{ title: \"a\", key: 7 }); alert(#{ title: \"b\", key: \"x\" });",
        )])
        .unwrap();
        let out = rs.evaluate(&book_of(1));
        let keys: Vec<&str> = out.findings.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, ["7", "x"]);
        for (src, what) in [
            (
                "alert(#{ title: \"a\", key: 1.5 });",
                "`key` must be a string or an integer",
            ),
            (
                "alert(#{ title: \"a\", key: true });",
                "`key` must be a string or an integer",
            ),
            (
                "alert(#{ title: \"a\", key: () });",
                "`key` must be a string or an integer",
            ),
            (
                "alert(#{ title: \"a\", action: 3 });",
                "`action` must be a string",
            ),
            (
                "alert(#{ title: \"a\", severity: 3 });",
                "`severity` must be a string",
            ),
            ("alert(#{ title: 3 });", "`title` must be a string"),
            (
                "alert(#{ title: \"a\", key: 7 });\nalert(#{ title: \"b\", key: \"7\" });",
                "key \"7\" was raised twice in one run (lines 1 and 2)",
            ),
            (
                "alert(#{ title: \"a\" });\nalert(#{ title: \"b\" });",
                "key \"\" was raised twice in one run (lines 1 and 2)",
            ),
        ] {
            let rs = RuleSet::from_sources(&[("k", src)]).unwrap();
            let out = rs.evaluate(&book_of(1));
            assert_eq!(out.errors.len(), 1, "{src}");
            assert!(
                out.errors[0].message.contains(what),
                "{src}: {}",
                out.errors[0]
            );
            assert!(out.findings.is_empty());
        }
    }

    #[test]
    fn alert_validates_its_fields() {
        let rs = RuleSet::from_sources(&[
            ("sev", "alert(#{ title: \"t\", severity: \"loud\" });"),
            ("typo", "alert(#{ titel: \"t\" });"),
        ])
        .unwrap();
        let snap = crate::metrics::tests_support::snapshot_one();
        let out = rs.evaluate(&snap);
        assert_eq!(out.errors.len(), 2);
        assert!(out.errors[0].message.contains("loud"));
        assert!(out.errors[1].message.contains("titel"));
    }

    #[test]
    fn figures_keep_the_rule_order_as_pairs() {
        let rs = RuleSet::from_sources(&[(
            "pairs",
            "alert(#{ title: \"t\", figures: [[\"z\", 1], [\"a\", 2.5]] });",
        )])
        .unwrap();
        let out = rs.evaluate(&crate::metrics::tests_support::snapshot_one());
        assert_eq!(
            out.findings[0].figures_owned(),
            vec![("z".to_string(), 1.into()), ("a".to_string(), 2.5.into())]
        );
        assert_eq!(out.findings[0].severity, Severity::Warning);
    }

    #[test]
    fn figures_carry_their_kind_and_keep_the_raw_number() {
        use crate::format::Unit;
        let src = r#"
            let drop = -61.66;
            alert(#{
                title: `orders ${pct(drop)} at ${money(22930)} in ${days(45)}`,
                figures: [
                    ["revenue", money(22930.4)],
                    ["orders", count(6.0)],
                    ["change", pct(drop)],
                    ["slip", points(3.24), "points"],
                    ["plain", 6.0],
                    ["named", 1500, "money"],
                    ["since", date("2031-02-03")],
                ],
            });"#;
        let rs = RuleSet::from_sources(&[("k", src)]).unwrap();
        let out = rs.evaluate(&crate::metrics::tests_support::snapshot_one());
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let f = &out.findings[0];
        assert_eq!(f.title, "orders −61.7% at ¥2.29万 in 45 天");
        assert_eq!(
            f.figures_owned()[0],
            ("revenue".to_string(), 22930.4.into())
        );
        assert_eq!(f.figures_owned()[1], ("orders".to_string(), 6.into()));
        assert_eq!(
            f.figures_owned()[6],
            ("since".to_string(), "2031-02-03".into())
        );
        let u = |k: &str| f.units.get(k).copied();
        assert_eq!(u("revenue"), Some(Unit::Money));
        assert_eq!(u("orders"), Some(Unit::Count));
        assert_eq!(u("change"), Some(Unit::Percent));
        assert_eq!(u("slip"), Some(Unit::Points));
        assert_eq!(u("plain"), None);
        assert_eq!(u("named"), Some(Unit::Money));
        assert_eq!(u("since"), Some(Unit::Date));
        // The reader's locale and currency write the title.
        let mut rs = RuleSet::from_sources(&[("k", src)]).unwrap();
        rs.style = crate::format::Style::new(crate::format::Locale::En, "USD");
        let out = rs.evaluate(&crate::metrics::tests_support::snapshot_one());
        assert_eq!(out.findings[0].title, "orders −61.7% at $22,930 in 45 days");
    }

    #[test]
    fn texts_per_locale_pick_the_readers_and_one_language_works_everywhere() {
        use crate::format::{Locale, Style};
        let src = r#"
            alert(#{
                key: "both",
                title: #{ "zh-CN": "订单下降", en: "Orders down" },
                figures: [[#{ "zh-CN": "收入", en: "Revenue" }, money(1)]],
                action: #{ "zh-CN": "致电", en: "Call" },
            });
            alert(#{ key: "zh", title: "只有中文", action: tr(#{ en: "only English" }) });
            alert(#{ key: "loc", title: locale(), figures: [[7, 1]] });"#;
        for (locale, want) in [
            (
                Locale::ZhCn,
                [
                    "订单下降",
                    "收入",
                    "致电",
                    "只有中文",
                    "only English",
                    "zh-CN",
                ],
            ),
            (
                Locale::En,
                [
                    "Orders down",
                    "Revenue",
                    "Call",
                    "只有中文",
                    "only English",
                    "en",
                ],
            ),
        ] {
            let mut rs = RuleSet::from_sources(&[("t", src)]).unwrap();
            rs.style = Style::new(locale, "CNY");
            let out = rs.evaluate(&crate::metrics::tests_support::snapshot_one());
            assert!(out.errors.is_empty(), "{:?}", out.errors);
            let f = &out.findings;
            assert_eq!(f[0].title, want[0]);
            assert_eq!(&*f[0].figures[0].0, want[1]);
            assert!(f[0].units.contains_key(want[1]));
            assert_eq!(&*f[0].action, want[2]);
            assert_eq!(f[1].title, want[3]);
            assert_eq!(&*f[1].action, want[4]);
            assert_eq!(f[2].title, want[5]);
            assert_eq!(&*f[2].figures[0].0, "7", "a number as a label, as before");
        }
    }

    #[test]
    fn bad_texts_and_kinds_are_run_errors_that_say_what_to_write() {
        let rs = RuleSet::from_sources(&[
            // Built at run time, out of `check`'s sight.
            (
                "fr",
                "let t = #{ en: \"y\" };\nt[\"fr\"] = \"x\";\nalert(#{ title: t });",
            ),
            ("empty", "let t = #{};\nalert(#{ title: t });"),
            ("num", "alert(#{ title: #{ en: 5 } });"),
            (
                "unit",
                "alert(#{ title: \"t\", figures: [[\"a\", 1, \"euros\"]] });",
            ),
            (
                "four",
                "alert(#{ title: \"t\", figures: [[\"a\", 1, \"money\", 2]] });",
            ),
        ])
        .unwrap();
        let out = rs.evaluate(&crate::metrics::tests_support::snapshot_one());
        let msg = |r: &str| {
            out.errors
                .iter()
                .find(|e| &*e.rule == r)
                .map(|e| e.message.clone())
                .unwrap_or_default()
        };
        assert!(
            msg("fr").contains("\"fr\"") && msg("fr").contains("\"zh-CN\", \"en\""),
            "{}",
            msg("fr")
        );
        assert!(msg("empty").contains("empty map"), "{}", msg("empty"));
        assert!(msg("num").contains("must be a string"), "{}", msg("num"));
        assert!(
            msg("unit").contains("euros") && msg("unit").contains("money, percent"),
            "{}",
            msg("unit")
        );
        assert!(
            msg("four").contains("[\"label\", value, \"kind\"]"),
            "{}",
            msg("four")
        );
        assert!(out.findings.is_empty());
    }
}
