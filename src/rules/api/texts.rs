//! The rule API's figures and texts: `money(x)`, `pct(x)`, ... make a
//! [`Figure`] that keeps its raw value and kind and is written in the
//! reader's locale (`mail.locale`, `mail.currency`, held per thread);
//! titles, actions and labels may be given per locale and [`text_of`]
//! picks the reader's. Also `check`'s look at the texts a rule writes
//! ([`bad_text_maps`], [`chinese_only_texts`]). Registers into the engine
//! it is given.

use std::cell::RefCell;

use rhai::{Array, Dynamic, EvalAltResult, ImmutableString, Map};

use super::registry::{Api, f, g};
use crate::format::{Locale, Style, Texts, Unit};
use crate::rules::error::Error;

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
            // The rule's own number, not rounded (docs/rules.md: JSON
            // keeps the raw number; the mail and the text output write it
            // by its kind).
            None => serde_json::Number::from_f64(self.num)
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
pub fn text_of(d: &Dynamic, what: &str) -> Result<String, Error> {
    if d.is_string() {
        return Ok(d.to_string());
    }
    if let Some(f) = d.read_lock::<Figure>() {
        return Ok(figure_text(&f));
    }
    // A map is read in place: every entry checked, only the reader's text
    // copied.
    let Some(map) = d.read_lock::<Map>() else {
        return Err(Error::Text(format!(
            "{what} must be a string, got {} {d}; a text may also be given per locale, #{{ \"zh-CN\": \"...\", en: \"...\" }}",
            d.type_name()
        )));
    };
    let mut texts: Vec<(Locale, &Dynamic)> = Vec::with_capacity(map.len());
    for (k, v) in map.iter() {
        let Some(l) = Locale::parse(k) else {
            return Err(Error::Text(format!(
                "{what} has a text for {k:?}, which is not a locale kamwatch writes in; the locales are {}",
                Locale::known()
            )));
        };
        if !v.is_string() {
            return Err(Error::Text(format!(
                "{what}: the {k:?} text must be a string, got {} {v}",
                v.type_name()
            )));
        }
        texts.push((l, v));
    }
    match Texts::pick(&texts, locale()) {
        Some(v) => Ok(v.to_string()),
        None => Err(Error::Text(format!(
            "{what} is an empty map; give a text for at least one of {}",
            Locale::known()
        ))),
    }
}

/// `name(x)` as a figure of its kind. A value no reader can use is the
/// rule's mistake, an error naming the call: NaN or infinity (what
/// `0.0 / 0.0` and `x / 0.0` give), or a count with a fraction. Written as
/// "—" or rounded it would reach a mail looking like a real figure.
fn figure(name: &str, unit: Unit, x: f64) -> Result<Figure, Box<EvalAltResult>> {
    if x.is_nan() {
        return Err(format!(
            "{name}(NaN): the value is not a number, as 0.0 / 0.0 gives; check what it was computed from (a division by zero?) before making a figure of it"
        )
        .into());
    }
    if x.is_infinite() {
        return Err(format!(
            "{name}({x}): the value is infinite, as x / 0.0 gives; guard the division, e.g. `if y != 0.0 {{ x / y }} else {{ 0.0 }}`"
        )
        .into());
    }
    if unit == Unit::Count && x.fract() != 0.0 {
        return Err(format!(
            "count({x}): a count is a whole number; round it first, count(round(x, 0)), or write a fraction with ratio(x)"
        )
        .into());
    }
    Ok(Figure {
        unit,
        num: x,
        text: None,
    })
}

/// The figure kinds (`money(x)`, `pct(x)`, ... `date(s)`, `text(s)`).
pub(super) fn figure_kinds(api: &mut Api) {
    api.section = "figures and texts";
    api.e.register_type_with_name::<Figure>("Figure");
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
            "a number of things, written without decimals: 6 (a fraction such as 2.5 is an error: round it, count(round(x, 0)), or use ratio(x))",
        ),
        ("days", Unit::Days, "a number of days: 45 天 / 45 days"),
        ("ratio", Unit::Ratio, "a plain ratio, two decimals: 1.25"),
    ] {
        f!(
            api,
            name,
            format!("{name}(x)"),
            format!(
                "x as a figure of its kind, for `alert()` figures and titles; {doc}. NaN or infinity (a division by zero) is the rule's error, naming the call"
            ),
            move |x: f64| figure(name, unit, x)
        );
        f!(
            api,
            name,
            format!("{name}(x)"),
            "the same for an integer",
            move |x: i64| figure(name, unit, x as f64)
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
}

/// What a figure gives a rule back (`value`, `unit`, written as text) and
/// the texts per locale (`tr`, `locale`).
pub(super) fn figure_methods(api: &mut Api) {
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
    out.extend(texts_with_no_locale(ast));
    out
}

/// Maps given where a text goes (an `alert()`'s title and action, a
/// figure's label, the argument of `tr()`) that hold no text a reader
/// could get: `#{}`, or only keys that are no locale (`#{ fr: "..." }`).
/// The maps the optimizer folded are looked at too. (position, message).
fn texts_with_no_locale(ast: &rhai::AST) -> Vec<(rhai::Position, String)> {
    use rhai::{ASTNode, Expr, Stmt};
    let mut out = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        let (call, pos) = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, pos))) => (call, pos),
            Some(ASTNode::Stmt(Stmt::FnCall(call, pos))) => (call, pos),
            _ => return true,
        };
        if call.args.len() != 1 {
            return true;
        }
        // (what, keys, where: the map's own position when it has one)
        let mut texts: Vec<(String, Vec<String>, rhai::Position)> = Vec::new();
        match (call.name.as_str(), &call.args[0]) {
            ("tr", arg) => texts.extend(
                map_keys_expr(arg).map(|k| ("tr()".to_string(), k, arg.position())),
            ),
            ("alert", Expr::Map(x, _)) => {
                for (k, v) in x.0.iter() {
                    texts.extend(alert_field_texts(k.name.as_str(), FieldValue::Expr(v), *pos));
                }
            }
            ("alert", Expr::DynamicConstant(d, _)) => {
                if let Some(m) = d.read_lock::<Map>() {
                    for (k, v) in m.iter() {
                        texts.extend(alert_field_texts(k.as_str(), FieldValue::Dyn(v), *pos));
                    }
                }
            }
            _ => {}
        }
        for (what, keys, at) in texts {
            let at = if at.is_none() { *pos } else { at };
            if keys.is_empty() {
                out.push((
                    at,
                    format!(
                        "{what} is an empty map #{{}}: no reader gets a text; give a string, or a text for at least one of {}, #{{ \"zh-CN\": \"...\", en: \"...\" }}",
                        Locale::known()
                    ),
                ));
            } else if !keys.iter().any(|k| Locale::parse(k).is_some()) {
                let keys: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
                out.push((
                    at,
                    format!(
                        "{what} is given for {} only, which kamwatch does not write in; give a text for at least one of {}",
                        keys.join(", "),
                        Locale::known()
                    ),
                ));
            }
        }
        true
    });
    out
}

/// A value in an `alert()` map, as written or folded.
enum FieldValue<'a> {
    Expr(&'a rhai::Expr),
    Dyn(&'a Dynamic),
}

/// The maps among an `alert()` field's texts: ("alert()'s title", keys,
/// the map's position, or `call`'s when it was folded into a constant).
fn alert_field_texts(
    field: &str,
    v: FieldValue<'_>,
    call: rhai::Position,
) -> Vec<(String, Vec<String>, rhai::Position)> {
    use rhai::Expr;
    let what = format!("alert()'s {field}");
    let folded = |keys: Vec<Option<Vec<String>>>| -> Vec<(Option<Vec<String>>, rhai::Position)> {
        keys.into_iter().map(|k| (k, call)).collect()
    };
    let found: Vec<(Option<Vec<String>>, rhai::Position)> = match (field, v) {
        ("title" | "action", FieldValue::Expr(e)) => vec![(map_keys_expr(e), e.position())],
        ("title" | "action", FieldValue::Dyn(d)) => vec![(map_keys_dyn(d), call)],
        ("figures", FieldValue::Expr(Expr::Array(items, _))) => items
            .iter()
            .map(|item| match item {
                Expr::Array(pair, _) => pair
                    .first()
                    .map_or((None, call), |l| (map_keys_expr(l), l.position())),
                Expr::DynamicConstant(d, p) => (first_of_pair(d), *p),
                _ => (None, call),
            })
            .collect(),
        ("figures", FieldValue::Expr(Expr::DynamicConstant(d, _))) => folded(pairs(d)),
        ("figures", FieldValue::Dyn(d)) => folded(pairs(d)),
        _ => Vec::new(),
    };
    let what = if field == "figures" {
        "a figure label of alert()".to_string()
    } else {
        what
    };
    found
        .into_iter()
        .filter_map(|(k, p)| Some((what.clone(), k?, p)))
        .collect()
}

/// The label keys of each `[label, value]` pair of a folded figures array.
fn pairs(d: &Dynamic) -> Vec<Option<Vec<String>>> {
    d.read_lock::<rhai::Array>()
        .map(|a| a.iter().map(first_of_pair).collect())
        .unwrap_or_default()
}

/// The keys of a `[label, value]` pair's label, when it is a map.
fn first_of_pair(d: &Dynamic) -> Option<Vec<String>> {
    d.read_lock::<rhai::Array>()
        .and_then(|p| p.first().and_then(map_keys_dyn))
}

/// The keys of a map written (or folded) in the script; None for
/// anything else.
fn map_keys_expr(e: &rhai::Expr) -> Option<Vec<String>> {
    match e {
        rhai::Expr::Map(x, _) => Some(x.0.iter().map(|(k, _)| k.name.to_string()).collect()),
        rhai::Expr::DynamicConstant(d, _) => map_keys_dyn(d),
        _ => None,
    }
}

fn map_keys_dyn(d: &Dynamic) -> Option<Vec<String>> {
    d.read_lock::<Map>()
        .map(|m| m.keys().map(|k| k.to_string()).collect())
}

/// The texts of `alert()` calls in `ast` written in Chinese only (a title,
/// an action or a figure label given as one Chinese string, not per
/// locale): what an English reader would get as is. (position, which).
pub fn chinese_only_texts(ast: &rhai::AST) -> Vec<(rhai::Position, String)> {
    use rhai::{ASTNode, Expr, Stmt};
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
        let mut found = match &call.args[0] {
            Expr::Map(x, _) => chinese_in_map_expr(x.0.iter().map(|(k, v)| (k.name.as_str(), v))),
            Expr::DynamicConstant(d, _) => chinese_in_constant(d),
            _ => Vec::new(),
        };
        found.dedup();
        if !found.is_empty() {
            out.push((*pos, found.join(", ")));
        }
        true
    });
    out
}

fn cjk(s: &str) -> bool {
    s.chars().any(crate::format::is_cjk)
}

fn expr_cjk(e: &rhai::Expr) -> bool {
    match e {
        rhai::Expr::StringConstant(s, _) => cjk(s),
        rhai::Expr::InterpolatedString(parts, _) => parts.iter().any(expr_cjk),
        _ => false,
    }
}

fn dyn_cjk(d: &Dynamic) -> bool {
    d.is_string() && cjk(&d.to_string())
}

/// Whether a `[label, value]` pair's label is a Chinese string.
fn pair_cjk(p: &Dynamic) -> bool {
    p.read_lock::<Array>()
        .is_some_and(|p| p.first().is_some_and(dyn_cjk))
}

/// The Chinese-only texts of an `alert(#{ ... })` written as a map
/// expression, by field.
fn chinese_in_map_expr<'a>(fields: impl Iterator<Item = (&'a str, &'a rhai::Expr)>) -> Vec<String> {
    use rhai::Expr;
    let mut found = Vec::new();
    for (k, v) in fields {
        match (k, v) {
            ("title" | "action", v) if expr_cjk(v) => found.push(k.to_string()),
            ("figures", Expr::Array(items, _)) => {
                for item in items.iter() {
                    let label = match item {
                        Expr::Array(pair, _) => pair.first().is_some_and(expr_cjk),
                        Expr::DynamicConstant(d, _) => pair_cjk(d),
                        _ => false,
                    };
                    if label {
                        found.push("a figure label".into());
                    }
                }
            }
            ("figures", Expr::DynamicConstant(d, _)) => {
                if let Some(items) = d.read_lock::<Array>() {
                    for item in items.iter() {
                        if pair_cjk(item) {
                            found.push("a figure label".into());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    found
}

/// The same for an `alert()` whose map the optimizer folded into one
/// constant.
fn chinese_in_constant(d: &Dynamic) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(m) = d.read_lock::<Map>() {
        for k in ["title", "action"] {
            if m.get(k).is_some_and(dyn_cjk) {
                found.push(k.to_string());
            }
        }
        let labels = m
            .get("figures")
            .and_then(|f| f.read_lock::<Array>().map(|a| a.iter().any(pair_cjk)));
        if labels == Some(true) {
            found.push("a figure label".into());
        }
    }
    found
}
