//! Rules: loads the `.rhai` rule scripts, compiles each once, and runs every
//! rule against every account of a metrics snapshot in a sandbox.
//!
//! The sandbox: operation, call-depth, expression-depth, string, array and
//! map limits; no module import (the resolver is a dummy); `eval` disabled;
//! `print`/`debug` go to the log. Rhai has no file, network or process access
//! of its own and we register none. A rule raises a warning with
//! `alert(#{...})`; what it raises comes back as `Finding`s. This module reads
//! the rules folder and the snapshot it is given; it writes nothing.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{AST, Dynamic, Engine, EvalAltResult, ImmutableString, Map, Position, Scope};

use crate::metrics::{AccountMetrics, Day, Measure, Snapshot};

/// How bad a warning is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A warning raised by one rule for one account.
#[derive(Debug, Clone)]
pub struct Finding {
    pub rule: Arc<str>,
    pub account: Arc<AccountMetrics>,
    /// Distinguishes several alerts of one rule for one account; often "".
    pub key: String,
    pub severity: Severity,
    pub title: String,
    /// The figures behind the warning, in the order the rule gave them.
    pub figures: Vec<(String, serde_json::Value)>,
    pub action: String,
}

/// A compiled rule.
pub struct Rule {
    pub name: Arc<str>,
    pub path: PathBuf,
    ast: AST,
}

/// A rule file that does not compile, located for a person to fix.
#[derive(Debug, Clone)]
pub struct CompileError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The offending source line and a caret under the column.
    pub excerpt: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}\n{}",
            self.path.display(),
            self.line,
            self.column,
            self.message,
            self.excerpt
        )
    }
}

/// A rule that failed while running for one account.
#[derive(Debug, Clone)]
pub struct RunError {
    pub rule: Arc<str>,
    pub account_id: String,
    pub message: String,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule {} failed for account {}: {}",
            self.rule, self.account_id, self.message
        )
    }
}

/// The compiled rules and the engine that runs them.
pub struct RuleSet {
    engine: Engine,
    pub rules: Vec<Rule>,
}

/// Everything one evaluation produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub errors: Vec<RunError>,
    /// Rule x account runs.
    pub runs: u64,
}

/// A value a rule sees as `account`: the account's metrics and the as-of day.
#[derive(Clone)]
struct Account {
    m: Arc<AccountMetrics>,
    end: Day,
}

thread_local! {
    /// Alerts raised by the script currently running on this thread.
    static RAISED: RefCell<Vec<Raised>> = const { RefCell::new(Vec::new()) };
}

struct Raised {
    key: String,
    severity: Severity,
    title: String,
    figures: Vec<(String, serde_json::Value)>,
    action: String,
}

/// Limits of the sandbox. Generous for honest rules, fatal for runaway ones.
const MAX_OPERATIONS: u64 = 1_000_000;
const MAX_CALL_LEVELS: usize = 32;
const MAX_STRING: usize = 64 * 1024;
const MAX_ARRAY: usize = 10_000;
const MAX_MAP: usize = 1_000;

/// Builds the sandboxed engine with the rule API registered.
pub fn engine() -> Engine {
    let mut e = Engine::new();
    e.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    e.disable_symbol("eval");
    e.set_max_operations(MAX_OPERATIONS);
    e.set_max_call_levels(MAX_CALL_LEVELS);
    e.set_max_expr_depths(64, 32);
    e.set_max_string_size(MAX_STRING);
    e.set_max_array_size(MAX_ARRAY);
    e.set_max_map_size(MAX_MAP);
    e.on_print(|s| tracing::info!(target: "kamwatch::rule", "{s}"));
    e.on_debug(
        |s, src, pos| tracing::debug!(target: "kamwatch::rule", "{}:{pos}: {s}", src.unwrap_or("")),
    );
    register_api(&mut e);
    e
}

fn register_api(e: &mut Engine) {
    e.register_type_with_name::<Account>("Account");
    e.register_get("id", |a: &mut Account| a.m.id.clone());
    e.register_get("name", |a: &mut Account| a.m.name.clone());
    e.register_get("region", |a: &mut Account| a.m.region.clone());
    e.register_get("owner", |a: &mut Account| a.m.owner.clone());
    e.register_get("tier", |a: &mut Account| a.m.tier.to_string());
    e.register_get("rank", |a: &mut Account| a.m.rank as i64);
    e.register_get("share", |a: &mut Account| a.m.share);
    e.register_get("revenue_12m", |a: &mut Account| a.m.revenue_12m);

    // Windowed sums: name(days), name(days, offset), name_prev(days),
    // name_last_year(days).
    for (name, m) in [
        ("revenue", Measure::Revenue),
        ("cost", Measure::Cost),
        ("qty", Measure::Qty),
        ("orders", Measure::Orders),
    ] {
        e.register_fn(name, move |a: &mut Account, days: i64| {
            a.m.window(m, a.end, days, 0)
        });
        e.register_fn(name, move |a: &mut Account, days: i64, offset: i64| {
            a.m.window(m, a.end, days, offset)
        });
        e.register_fn(format!("{name}_prev"), move |a: &mut Account, days: i64| {
            a.m.window(m, a.end, days, days)
        });
        e.register_fn(
            format!("{name}_last_year"),
            move |a: &mut Account, days: i64| a.m.window(m, a.end, days, 365),
        );
    }
    e.register_fn("gross_profit", |a: &mut Account, days: i64| {
        a.m.window(Measure::Revenue, a.end, days, 0) - a.m.window(Measure::Cost, a.end, days, 0)
    });
    e.register_fn("margin_pct", |a: &mut Account, days: i64| {
        a.m.margin_pct(a.end, days, 0)
    });
    e.register_fn("margin_pct", |a: &mut Account, days: i64, offset: i64| {
        a.m.margin_pct(a.end, days, offset)
    });
    e.register_fn("margin_pct_prev", |a: &mut Account, days: i64| {
        a.m.margin_pct(a.end, days, days)
    });
    e.register_get("days_since_last_order", |a: &mut Account| {
        a.m.days_since_last_order(a.end).unwrap_or(-1)
    });
    e.register_get("days_since_last_visit", |a: &mut Account| {
        a.m.days_since_last_visit(a.end, None).unwrap_or(-1)
    });
    e.register_fn("days_since_visit_by", |a: &mut Account, role: &str| {
        a.m.days_since_last_visit(a.end, Some(role)).unwrap_or(-1)
    });
    e.register_fn("visits", |a: &mut Account, days: i64| {
        a.m.visits_in(a.end, days)
    });

    // Helpers.
    e.register_fn("pct_change", |now: f64, before: f64| {
        pct_change(now, before)
    });
    e.register_fn("pct_change", |now: i64, before: i64| {
        pct_change(now as f64, before as f64)
    });
    e.register_fn("pct_change", |now: f64, before: i64| {
        pct_change(now, before as f64)
    });
    e.register_fn("pct_change", |now: i64, before: f64| {
        pct_change(now as f64, before)
    });
    e.register_fn("round", |x: f64, digits: i64| {
        let p = 10f64.powi(digits.clamp(0, 10) as i32);
        (x * p).round() / p
    });
    e.register_fn("alert", raise);
}

/// Percentage change from `before` to `now`; 0 when `before` is 0.
pub fn pct_change(now: f64, before: f64) -> f64 {
    if before.abs() < f64::EPSILON {
        0.0
    } else {
        (now - before) / before.abs() * 100.0
    }
}

fn raise(spec: Map) -> Result<(), Box<EvalAltResult>> {
    let text = |k: &str| -> Option<String> {
        spec.get(k)
            .and_then(|v| v.clone().into_immutable_string().ok())
            .map(|s| s.to_string())
    };
    for k in spec.keys() {
        if !matches!(
            k.as_str(),
            "severity" | "title" | "figures" | "action" | "key"
        ) {
            return Err(format!(
                "alert(): unknown field `{k}`; the fields are severity, title, figures, action, key"
            )
            .into());
        }
    }
    let sev_text = text("severity").unwrap_or_else(|| "warning".into());
    let severity = Severity::parse(&sev_text).ok_or_else(|| {
        format!("alert(): severity {sev_text:?} is not one of info, warning, critical")
    })?;
    let title = text("title")
        .filter(|t| !t.trim().is_empty())
        .ok_or("alert(): `title` is required and must be a string")?;
    let mut figures = Vec::new();
    if let Some(f) = spec.get("figures") {
        let map = f
            .clone()
            .try_cast::<Map>()
            .ok_or("alert(): `figures` must be a map, e.g. #{ \"revenue\": 1200.0 }")?;
        for (k, v) in map {
            figures.push((k.to_string(), to_json(&v)));
        }
    }
    RAISED.with(|r| {
        r.borrow_mut().push(Raised {
            key: text("key").unwrap_or_default(),
            severity,
            title,
            figures,
            action: text("action").unwrap_or_default(),
        })
    });
    Ok(())
}

fn to_json(v: &Dynamic) -> serde_json::Value {
    if let Ok(i) = v.as_int() {
        serde_json::Value::from(i)
    } else if let Ok(f) = v.as_float() {
        serde_json::Number::from_f64((f * 100.0).round() / 100.0)
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

/// Why rules could not be loaded at all (a missing folder); compile errors
/// of single files are returned beside the good rules instead.
#[derive(Debug)]
pub struct LoadError(pub String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

impl RuleSet {
    /// Compiles every `*.rhai` in `dir` (sorted by name). Files that do not
    /// compile are returned as errors; the rest load.
    pub fn load_dir(dir: &Path) -> Result<(RuleSet, Vec<CompileError>), LoadError> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            LoadError(format!(
                "cannot read the rules folder {}: {e}; create it or set `rules:` in the config",
                dir.display()
            ))
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
            .collect();
        paths.sort();
        let engine = engine();
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            let source = match std::fs::read_to_string(&path) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(CompileError {
                        path: path.clone(),
                        line: 0,
                        column: 0,
                        message: format!("cannot read the file: {e}"),
                        excerpt: String::new(),
                    });
                    continue;
                }
            };
            match compile(&engine, &path, &source) {
                Ok(rule) => rules.push(rule),
                Err(e) => errors.push(e),
            }
        }
        Ok((RuleSet { engine, rules }, errors))
    }

    /// A set with no rules.
    pub fn empty() -> RuleSet {
        RuleSet {
            engine: engine(),
            rules: Vec::new(),
        }
    }

    /// Keeps, for every file in `broken`, the version of it in `old` that
    /// compiled: a bad edit must not switch a working rule off.
    pub fn merge_last_good(mut self, old: RuleSet, broken: &[&CompileError]) -> RuleSet {
        for rule in old.rules {
            if broken.iter().any(|b| b.path == rule.path)
                && !self.rules.iter().any(|r| r.path == rule.path)
            {
                self.rules.push(rule);
            }
        }
        self.rules.sort_by(|a, b| a.path.cmp(&b.path));
        self
    }

    /// Compiles one rule from source (tests and `check` use this too).
    pub fn from_sources(sources: &[(&str, &str)]) -> Result<RuleSet, CompileError> {
        let engine = engine();
        let mut rules = Vec::new();
        for (name, src) in sources {
            rules.push(compile(&engine, Path::new(&format!("{name}.rhai")), src)?);
        }
        Ok(RuleSet { engine, rules })
    }

    /// Runs every rule for every account of the snapshot, in parallel over
    /// the machine's cores. Findings come back in (account, rule) order.
    pub fn evaluate(&self, snap: &Snapshot) -> Outcome {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(snap.accounts.len().max(1));
        let chunk = snap.accounts.len().div_ceil(threads).max(1);
        let end = snap.end();
        let as_of: ImmutableString = snap.as_of.format("%Y-%m-%d").to_string().into();
        let parts: Vec<Outcome> = std::thread::scope(|s| {
            let handles: Vec<_> = snap
                .accounts
                .chunks(chunk)
                .map(|accounts| {
                    let as_of = as_of.clone();
                    s.spawn(move || self.evaluate_chunk(accounts, end, as_of))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut out = Outcome::default();
        for p in parts {
            out.findings.extend(p.findings);
            out.errors.extend(p.errors);
            out.runs += p.runs;
        }
        out
    }

    fn evaluate_chunk(
        &self,
        accounts: &[Arc<AccountMetrics>],
        end: Day,
        as_of: ImmutableString,
    ) -> Outcome {
        let mut out = Outcome::default();
        let mut scope = Scope::new();
        for m in accounts {
            for rule in &self.rules {
                scope.clear();
                scope.push_constant("account", Account { m: m.clone(), end });
                scope.push_constant("as_of", as_of.clone());
                RAISED.with(|r| r.borrow_mut().clear());
                let result = self.engine.run_ast_with_scope(&mut scope, &rule.ast);
                out.runs += 1;
                let raised = RAISED.with(|r| std::mem::take(&mut *r.borrow_mut()));
                match result {
                    Ok(()) => {
                        for r in raised {
                            out.findings.push(Finding {
                                rule: rule.name.clone(),
                                account: m.clone(),
                                key: r.key,
                                severity: r.severity,
                                title: r.title,
                                figures: r.figures,
                                action: r.action,
                            });
                        }
                    }
                    Err(e) => out.errors.push(RunError {
                        rule: rule.name.clone(),
                        account_id: m.id.clone(),
                        message: describe_runtime(&e, &rule.path),
                    }),
                }
            }
        }
        out
    }
}

fn compile(engine: &Engine, path: &Path, source: &str) -> Result<Rule, CompileError> {
    let name: Arc<str> = Arc::from(
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    match engine.compile(source) {
        Ok(ast) => Ok(Rule {
            name,
            path: path.to_path_buf(),
            ast,
        }),
        Err(e) => {
            let pos = e.position();
            Err(CompileError {
                path: path.to_path_buf(),
                line: pos.line().unwrap_or(0),
                column: pos.position().unwrap_or(0),
                message: e.err_type().to_string(),
                excerpt: excerpt(source, pos),
            })
        }
    }
}

/// The source line at `pos` with a caret under the column.
fn excerpt(source: &str, pos: Position) -> String {
    let Some(line) = pos.line() else {
        return String::new();
    };
    let text = source.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let col = pos.position().unwrap_or(1).max(1);
    let gutter = format!("{line} | ");
    let pad: String = text
        .chars()
        .take(col - 1)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    format!("{gutter}{text}\n{}{pad}^", " ".repeat(gutter.len()))
}

fn describe_runtime(e: &EvalAltResult, path: &Path) -> String {
    let pos = e.position();
    let what = match e {
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "stopped after {MAX_OPERATIONS} operations (an endless loop?); the rule's other accounts and the other rules still ran"
        ),
        other => {
            let mut s = other.to_string();
            // Display appends " (line x, position y)"; we say it ourselves.
            if let Some(i) = s.rfind(" (line ") {
                s.truncate(i);
            }
            s
        }
    };
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{}:{l}:{c}: {what}", path.display()),
        (Some(l), None) => format!("{}:{l}: {what}", path.display()),
        _ => format!("{}: {what}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_error_points_at_the_line() {
        let err = RuleSet::from_sources(&[("bad", "let x = 1;\nlet y = (2 + ;\n")])
            .err()
            .unwrap();
        assert_eq!(err.line, 2);
        assert!(err.to_string().starts_with("bad.rhai:2:"), "{err}");
        assert!(err.excerpt.contains("let y = (2 + ;"), "{}", err.excerpt);
        assert!(err.excerpt.contains('^'));
    }

    #[test]
    fn eval_and_import_are_refused() {
        assert!(RuleSet::from_sources(&[("e", "eval(\"1\")")]).is_err());
        let rs = RuleSet::from_sources(&[("i", "import \"x\" as y;")]);
        // Either refused at compile time or fails at run time: never loads a file.
        if let Ok(rs) = rs {
            let snap = crate::metrics::tests_support::snapshot_one();
            let out = rs.evaluate(&snap);
            assert_eq!(out.errors.len(), 1);
        }
    }

    #[test]
    fn runaway_rule_is_stopped_and_others_run() {
        let rs = RuleSet::from_sources(&[
            ("loop", "loop { }"),
            ("ok", "alert(#{ title: \"t\", figures: #{ n: 1 } });"),
        ])
        .unwrap();
        let snap = crate::metrics::tests_support::snapshot_one();
        let out = rs.evaluate(&snap);
        assert_eq!(out.errors.len(), 1);
        assert!(
            out.errors[0].message.contains("endless loop"),
            "{}",
            out.errors[0]
        );
        assert_eq!(&*out.errors[0].rule, "loop");
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].figures, vec![("n".to_string(), 1.into())]);
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
}
