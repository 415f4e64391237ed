//! Rules: loads the `.rhai` rule scripts, compiles each once, and runs every
//! rule against every account of a metrics snapshot in a sandbox.
//!
//! The sandbox: operation, call-depth, expression-depth, string, array and
//! map limits; no module import (rhai is built without modules, closures
//! and custom syntax, which also makes it faster); `eval` disabled;
//! `print`/`debug` go to the log. Rhai has no file, network or process access
//! of its own and we register none. A rule raises a warning with
//! `alert(#{...})`; what it raises comes back as `Finding`s. A rule's
//! `const SETTINGS = #{...}` is read once after compiling (`RuleSettings`).
//! This module reads the rules folder and the snapshot it is given; it
//! writes nothing. Submodules: `api` (what a rule can call, and the generated
//! reference), `testing` (`kamwatch test` rule test files), `bench` (the
//! evaluation benchmark).

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{
    AST, Dynamic, Engine, EvalAltResult, ImmutableString, Map, NativeCallContext, Position, Scope,
};

use crate::metrics::{AccountMetrics, Day, Portfolio, Snapshot};

pub mod api;
pub mod bench;
pub mod testing;

pub use api::pct_change;

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
    pub(crate) ast: AST,
    settings: RuleSettings,
    /// Tiers the rule runs for, as bits (0: disabled).
    mask: u8,
    /// The data it needs, as bits (see `NEEDS`).
    needs: u8,
    /// Whether its script mentions `main_skus` or `stock_cover` (anywhere,
    /// comments included: Rhai has no other way to reach them).
    reads_skus: bool,
}

impl Rule {
    /// The rule's settings (script `SETTINGS`, then config overrides).
    pub fn settings(&self) -> &RuleSettings {
        &self.settings
    }

    /// Replaces the settings (config overrides are applied through this).
    pub fn set_settings(&mut self, s: RuleSettings) {
        self.mask = s.mask();
        self.needs = s.needs_mask();
        self.settings = s;
    }
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

/// What a panic said, for a message.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string())
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
    pub(crate) engine: Engine,
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

/// Per-rule settings, from the rule's `const SETTINGS = #{ ... };` and the
/// config's `rule_settings:` (which wins). The alerts stage applies `for`,
/// `repeat_days` and `recipients`; the rules stage applies `enabled` and
/// `tiers`, and `severity` as the default of `alert()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSettings {
    pub enabled: bool,
    /// Tiers the rule runs for; None: every tier.
    pub tiers: Option<Vec<String>>,
    /// The severity of an `alert()` that names none.
    pub severity: Option<Severity>,
    /// Consecutive evaluations an alert must be raised before it fires (>= 1).
    pub for_evaluations: u32,
    /// Days before a still-firing alert is mailed again; None: never.
    pub repeat_days: Option<u32>,
    /// Addresses mailed besides the account's owner.
    pub recipients: Vec<String>,
    /// Data the rule cannot fire without ("orders", "visits",
    /// "receivables", "credit_limit", "stock"); accounts lacking any of it
    /// are skipped without running the script.
    pub needs: Vec<String>,
}

/// The `needs` a rule may declare, as bits.
const NEEDS: [(&str, u8); 5] = [
    ("orders", 1),
    ("visits", 2),
    ("receivables", 4),
    ("credit_limit", 8),
    ("stock", 16),
];

/// Which of the `NEEDS` the account has.
fn has_bits(m: &AccountMetrics) -> u8 {
    let mut b = 0;
    if m.series.first_day().is_some() {
        b |= 1;
    }
    if !m.visits.is_empty() {
        b |= 2;
    }
    if !m.invoices.is_empty() {
        b |= 4;
    }
    if m.credit_limit.is_some_and(|l| l > 0.0) {
        b |= 8;
    }
    if !m.stock.is_empty() {
        b |= 16;
    }
    b
}

impl Default for RuleSettings {
    fn default() -> Self {
        RuleSettings {
            enabled: true,
            tiers: None,
            severity: None,
            for_evaluations: 1,
            repeat_days: None,
            recipients: Vec::new(),
            needs: Vec::new(),
        }
    }
}

impl RuleSettings {
    /// The `needs` as bits.
    fn needs_mask(&self) -> u8 {
        self.needs
            .iter()
            .filter_map(|n| NEEDS.iter().find(|x| x.0 == n).map(|x| x.1))
            .fold(0, |a, b| a | b)
    }

    /// Bit per tier (A=1, B=2, C=4) of the accounts the rule runs for.
    fn mask(&self) -> u8 {
        if !self.enabled {
            return 0;
        }
        match &self.tiers {
            None => 0b111,
            Some(ts) => ts.iter().map(|t| tier_bit(t)).fold(0, |a, b| a | b),
        }
    }

    /// Reads a `SETTINGS` map; errors say which key is wrong and why.
    pub fn from_map(map: &Map) -> Result<RuleSettings, String> {
        let mut s = RuleSettings::default();
        for (k, v) in map {
            let k = k.as_str();
            match k {
                "enabled" => {
                    s.enabled = v
                        .as_bool()
                        .map_err(|_| "`enabled` must be true or false".to_string())?
                }
                "tiers" => {
                    let arr = v
                        .clone()
                        .try_cast::<rhai::Array>()
                        .ok_or("`tiers` must be an array like [\"A\", \"B\"]")?;
                    let mut tiers = Vec::new();
                    for t in arr {
                        let t = t
                            .into_immutable_string()
                            .map_err(|_| "`tiers` must hold strings".to_string())?;
                        if !matches!(t.as_str(), "A" | "B" | "C") {
                            return Err(format!(
                                "`tiers`: {t:?} is not a tier; use \"A\", \"B\" or \"C\""
                            ));
                        }
                        tiers.push(t.to_string());
                    }
                    s.tiers = Some(tiers);
                }
                "severity" => {
                    let t = v
                        .clone()
                        .into_immutable_string()
                        .map_err(|_| "`severity` must be a string".to_string())?;
                    s.severity = Some(Severity::parse(&t).ok_or_else(|| {
                        format!("`severity`: {t:?} is not one of info, warning, critical")
                    })?);
                }
                "for" | "for_evaluations" => {
                    let n = v
                        .as_int()
                        .map_err(|_| "`for` must be a whole number of evaluations".to_string())?;
                    s.for_evaluations = u32::try_from(n)
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or("`for` must be at least 1")?;
                }
                "repeat_days" => {
                    let n = v
                        .as_int()
                        .map_err(|_| "`repeat_days` must be a whole number of days".to_string())?;
                    s.repeat_days = Some(
                        u32::try_from(n)
                            .ok()
                            .filter(|n| *n >= 1)
                            .ok_or("`repeat_days` must be at least 1")?,
                    );
                }
                "needs" => {
                    let arr = v
                        .clone()
                        .try_cast::<rhai::Array>()
                        .ok_or("`needs` must be an array like [\"receivables\"]")?;
                    for n in arr {
                        let n = n
                            .into_immutable_string()
                            .map_err(|_| "`needs` must hold strings".to_string())?;
                        if !NEEDS.iter().any(|x| x.0 == n.as_str()) {
                            return Err(format!(
                                "`needs`: {n:?} is not one of orders, visits, receivables, credit_limit, stock"
                            ));
                        }
                        s.needs.push(n.to_string());
                    }
                }
                "recipients" => {
                    let arr = v
                        .clone()
                        .try_cast::<rhai::Array>()
                        .ok_or("`recipients` must be an array of email addresses")?;
                    for r in arr {
                        let r = r
                            .into_immutable_string()
                            .map_err(|_| "`recipients` must hold strings".to_string())?;
                        if !r.contains('@') {
                            return Err(format!("`recipients`: {r:?} is not an email address"));
                        }
                        s.recipients.push(r.to_string());
                    }
                }
                other => {
                    return Err(format!(
                        "unknown setting `{other}`; the settings are enabled, tiers, needs, severity, for_evaluations, repeat_days, recipients"
                    ));
                }
            }
        }
        Ok(s)
    }

    /// Applies the config's overrides.
    pub fn apply(&mut self, o: &crate::config::RuleSettingsOverride) {
        if let Some(e) = o.enabled {
            self.enabled = e;
        }
        if let Some(t) = &o.tiers {
            self.tiers = Some(t.clone());
        }
        if let Some(s) = o.severity.as_deref().and_then(Severity::parse) {
            self.severity = Some(s);
        }
        if let Some(n) = o.for_evaluations {
            self.for_evaluations = n.max(1);
        }
        if let Some(n) = o.repeat_days {
            self.repeat_days = Some(n);
        }
        if let Some(r) = &o.recipients {
            self.recipients = r.clone();
        }
    }
}

fn tier_bit(t: &str) -> u8 {
    match t {
        "A" => 1,
        "B" => 2,
        "C" => 4,
        _ => 0,
    }
}

thread_local! {
    /// Alerts raised by the script currently running on this thread.
    static RAISED: RefCell<Vec<Raised>> = const { RefCell::new(Vec::new()) };
}

struct Raised {
    key: String,
    severity: Option<Severity>,
    title: String,
    figures: Vec<(String, serde_json::Value)>,
    action: String,
    line: Option<usize>,
}

/// Limits of the sandbox. Generous for honest rules, fatal for runaway ones.
pub const MAX_OPERATIONS: u64 = 1_000_000;
pub const MAX_CALL_LEVELS: usize = 32;
pub const MAX_STRING: usize = 64 * 1024;
pub const MAX_ARRAY: usize = 10_000;
pub const MAX_MAP: usize = 1_000;

/// Builds the sandboxed engine with the rule API registered.
pub fn engine() -> Engine {
    let mut e = Engine::new();
    e.disable_symbol("eval");
    // No string interner: with `sync` it is one lock shared by every
    // thread, taken at each property access (`account.tier`), which ran
    // the evaluation threads one at a time.
    e.set_max_strings_interned(0);
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
    api::register(&mut e);
    e
}

/// A copy of `ast` that shares no reference count with it: its own function
/// library and source name (the statements are cloned).
fn thread_copy(ast: &AST) -> AST {
    let mut copy = ast.merge(&AST::empty());
    if let Some(source) = ast.source() {
        copy.set_source(source.to_string());
    }
    copy
}

/// A thread's means to run the rules: see [`RuleSet::runner`].
pub struct Runner<'r> {
    rules: &'r RuleSet,
    engine: Engine,
    compiled: Vec<Compiled>,
}

impl<'r> Runner<'r> {
    /// Every rule for every account of `snap`, on this thread.
    pub fn evaluate(&mut self, snap: &Snapshot) -> Outcome {
        self.day(snap).run(&snap.accounts)
    }

    /// Ready to run accounts of `snap`: a scope holding its `as_of` and
    /// portfolio.
    fn day<'a>(&'a mut self, snap: &Snapshot) -> AtSnapshot<'a, 'r> {
        let end = snap.end();
        // One scope per snapshot and thread: the shared constants stay,
        // each account is pushed once, and each run rewinds what the
        // script declared.
        let scope = snapshot_scope(snap, Arc::new((*snap.portfolio).clone()), false);
        let base = scope.len();
        AtSnapshot {
            runner: self,
            scope,
            base,
            end,
        }
    }
}

/// A scope with what every rule sees of `snap` besides the account:
/// `as_of` and `portfolio` (the given handle of the snapshot's).
fn snapshot_scope(snap: &Snapshot, portfolio: Arc<Portfolio>, explain: bool) -> Scope<'static> {
    let mut scope = Scope::new();
    scope.push_constant(
        "as_of",
        ImmutableString::from(snap.as_of.format("%Y-%m-%d").to_string()),
    );
    scope.push_constant(
        "portfolio",
        api::Book {
            p: portfolio,
            end: snap.end(),
            explain,
        },
    );
    scope
}

/// A [`Runner`] at one snapshot.
struct AtSnapshot<'a, 'r> {
    runner: &'a mut Runner<'r>,
    scope: Scope<'static>,
    base: usize,
    end: Day,
}

impl AtSnapshot<'_, '_> {
    /// Every rule for each of `accounts`, in order.
    fn run(&mut self, accounts: &[Arc<AccountMetrics>]) -> Outcome {
        let mut out = Outcome::default();
        let (scope, base, end) = (&mut self.scope, self.base, self.end);
        for m in accounts {
            // Tests make an evaluation panic with an account named so.
            #[cfg(test)]
            if m.id.starts_with("PANIC") {
                panic!("injected for account {}", m.id);
            }
            let bit = tier_bit(m.tier);
            let has = has_bits(m);
            // `account` is a plain variable, not a constant: a method call on
            // a constant makes Rhai copy the value first. It is pushed once
            // per account, and again before a run only when a script changed
            // it, so no script can leave a changed `account` behind for the
            // next rule.
            let mut pushed = false;
            for (rule, script) in self
                .runner
                .rules
                .rules
                .iter()
                .zip(self.runner.compiled.iter_mut())
            {
                out.runs += 1;
                // A rule whose tiers exclude the account, or that needs data
                // the account does not have, is silent for it without
                // running the script.
                if rule.mask & bit == 0 || rule.needs & !has != 0 {
                    continue;
                }
                if pushed {
                    scope.rewind(base + 1);
                }
                if !pushed || !account_intact(scope, m) {
                    scope.rewind(base);
                    scope.push(
                        "account",
                        api::Account {
                            m: m.clone(),
                            end,
                            explain: false,
                        },
                    );
                    pushed = true;
                }
                let result = script.run(&self.runner.engine, scope);
                let raised = RAISED.with(|r| std::mem::take(&mut *r.borrow_mut()));
                match result {
                    Ok(()) => {
                        for r in raised {
                            out.findings.push(finding(rule, m, r));
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

/// One rule's script as one thread runs it, again and again: its own copy
/// of the AST ([`thread_copy`]) and a function-resolution cache that lives
/// as long as the thread does.
///
/// `Engine::run_ast_with_scope` starts every run with an empty cache, and
/// Rhai caches a function only on its second call within that cache, so a
/// rule that calls `account.revenue(90)` once per run resolved it from
/// scratch every time: hashing, a search through the packages' tables, an
/// allocation. Each run here still gets fresh global state (operation count
/// and call depth, so the sandbox limits apply per run); only the cache
/// carries over. The cache maps a call's name and argument types to the
/// function, which cannot change while the AST and engine stay the same.
pub(crate) struct Compiled {
    ast: AST,
    source: Option<ImmutableString>,
    caches: rhai::Caches,
}

impl Compiled {
    pub(crate) fn new(ast: &AST) -> Self {
        let ast = thread_copy(ast);
        let source = ast.source().map(ImmutableString::from);
        Compiled {
            ast,
            source,
            caches: rhai::Caches::new(),
        }
    }

    /// What `engine.run_ast_with_scope(scope, ast)` does, with the cache
    /// kept.
    pub(crate) fn run(
        &mut self,
        engine: &Engine,
        scope: &mut Scope,
    ) -> Result<(), Box<EvalAltResult>> {
        let mut global = engine.new_global_runtime_state();
        global.source.clone_from(&self.source);
        global.lib.push(self.ast.shared_lib().clone());
        // Deprecated in favour of nothing: it is the internals entry point
        // `run_ast_with_scope` wraps, minus the cache it throws away.
        #[allow(deprecated)]
        let result =
            engine.eval_statements_raw(&mut global, &mut self.caches, scope, self.ast.statements());
        // A run that failed inside a script function may leave that
        // function's cache on the stack.
        if self.caches.fn_resolution_caches_len() > 1 {
            self.caches.rewind_fn_resolution_caches(1);
        }
        result.map(|_| ())
    }
}

/// Whether the scope's `account` is still the untouched handle of `m`: a
/// script may assign to it or change it through `this`.
fn account_intact(scope: &Scope, m: &Arc<AccountMetrics>) -> bool {
    scope
        .get("account")
        .and_then(|d| d.read_lock::<api::Account>())
        .is_some_and(|a| Arc::ptr_eq(&a.m, m) && !a.explain)
}

fn raise(ctx: &NativeCallContext, spec: Map) -> Result<(), Box<EvalAltResult>> {
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
    let severity = match text("severity") {
        None => None,
        Some(t) => Some(Severity::parse(&t).ok_or_else(|| {
            format!("alert(): severity {t:?} is not one of info, warning, critical")
        })?),
    };
    let title = text("title")
        .filter(|t| !t.trim().is_empty())
        .ok_or("alert(): `title` is required and must be a string")?;
    let mut figures = Vec::new();
    if let Some(f) = spec.get("figures") {
        if f.is_map() {
            for (k, v) in f.clone().cast::<Map>() {
                figures.push((k.to_string(), to_json(&v)));
            }
        } else if f.is_array() {
            for pair in f.clone().cast::<rhai::Array>() {
                let bad = || -> Box<EvalAltResult> {
                    "alert(): each entry of `figures` must be a pair [\"label\", value]".into()
                };
                if !pair.is_array() {
                    return Err(bad());
                }
                let pair = pair.cast::<rhai::Array>();
                if pair.len() != 2 {
                    return Err(bad());
                }
                figures.push((pair[0].to_string(), to_json(&pair[1])));
            }
        } else {
            return Err("alert(): `figures` must be an array of [label, value] pairs or a map, e.g. [[\"revenue\", 1200.0]]".into());
        }
    }
    RAISED.with(|r| {
        r.borrow_mut().push(Raised {
            key: text("key").unwrap_or_default(),
            severity,
            title,
            figures,
            action: text("action").unwrap_or_default(),
            line: ctx.call_position().line(),
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

    /// Loads the rules folder of the config and applies its `rule_settings`.
    /// Overrides naming no loaded rule are returned as messages.
    pub fn load_config(
        cfg: &crate::config::Loaded,
    ) -> Result<(RuleSet, Vec<CompileError>, Vec<String>), LoadError> {
        let (mut set, errors) = RuleSet::load_dir(&cfg.rules())?;
        let unknown = set.apply_overrides(&cfg.cfg.rule_settings);
        // A broken file's name is not unknown: its last good version may run.
        let unknown = unknown
            .into_iter()
            .filter(|n| {
                !errors.iter().any(|e| {
                    e.path
                        .file_stem()
                        .is_some_and(|s| s.to_string_lossy() == *n)
                })
            })
            .map(|n| {
                format!(
                    "rule_settings.{n}: there is no rule {n}.rhai in {}",
                    cfg.rules().display()
                )
            })
            .collect();
        Ok((set, errors, unknown))
    }

    /// Applies config overrides by rule name; returns the names that match no rule.
    pub fn apply_overrides(
        &mut self,
        overrides: &std::collections::BTreeMap<String, crate::config::RuleSettingsOverride>,
    ) -> Vec<String> {
        let mut unknown = Vec::new();
        for (name, o) in overrides {
            match self.rules.iter_mut().find(|r| &*r.name == name) {
                Some(r) => {
                    let mut s = r.settings.clone();
                    s.apply(o);
                    r.set_settings(s);
                }
                None => unknown.push(name.clone()),
            }
        }
        unknown
    }

    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| &*r.name == name)
    }

    /// Runs every rule for every account of the snapshot, in parallel over
    /// the machine's cores. Findings come back in (account, rule) order.
    pub fn evaluate(&self, snap: &Snapshot) -> Outcome {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        self.evaluate_with(snap, threads)
    }

    /// `evaluate` on at most `threads` threads.
    ///
    /// Accounts are ranked largest first, and the large ones run more rules
    /// (tier filters), so fixed halves would leave one thread idle: threads
    /// take blocks of `BLOCK` accounts from a shared counter instead, and
    /// the blocks' outcomes are put back in account order.
    pub fn evaluate_with(&self, snap: &Snapshot, threads: usize) -> Outcome {
        const BLOCK: usize = 256;
        let blocks = snap.accounts.len().div_ceil(BLOCK);
        let threads = threads.max(1).min(blocks.max(1));
        if threads == 1 {
            // A panic (a bug, never a script's doing) fails every account:
            // their alerts stay as they were; none is taken as cleared.
            return std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.runner().evaluate(snap)
            }))
            .unwrap_or_else(|p| self.failed(&snap.accounts, &panic_text(&*p)));
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut parts: Vec<(usize, Outcome)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let next = &next;
                    s.spawn(move || {
                        let mut done = Vec::new();
                        // A block that panics is failed as a whole, and the
                        // thread goes on with a fresh runner.
                        'fresh: loop {
                            let mut runner = self.runner();
                            let mut day = runner.day(snap);
                            loop {
                                let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let lo = b * BLOCK;
                                if lo >= snap.accounts.len() {
                                    break 'fresh;
                                }
                                let hi = (lo + BLOCK).min(snap.accounts.len());
                                let block = &snap.accounts[lo..hi];
                                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    day.run(block)
                                })) {
                                    Ok(o) => done.push((b, o)),
                                    Err(p) => {
                                        done.push((b, self.failed(block, &panic_text(&*p))));
                                        continue 'fresh;
                                    }
                                }
                            }
                        }
                        done
                    })
                })
                .collect();
            let mut parts = Vec::new();
            for h in handles {
                match h.join() {
                    Ok(done) => parts.extend(done),
                    Err(p) => tracing::error!("an evaluation thread stopped: {}", panic_text(&*p)),
                }
            }
            parts
        });
        // Blocks a stopped thread took are failed, never left out: an
        // account missing from the outcome would read as all clear.
        let have: std::collections::HashSet<usize> = parts.iter().map(|p| p.0).collect();
        for b in (0..blocks).filter(|b| !have.contains(b)) {
            let hi = ((b + 1) * BLOCK).min(snap.accounts.len());
            let block = &snap.accounts[b * BLOCK..hi];
            parts.push((b, self.failed(block, "its evaluation thread stopped")));
        }
        parts.sort_by_key(|p| p.0);
        let mut out = Outcome::default();
        for (_, p) in parts {
            out.findings.extend(p.findings);
            out.errors.extend(p.errors);
            out.runs += p.runs;
        }
        out
    }

    /// An outcome in which every enabled rule failed for each of
    /// `accounts`, because their evaluation stopped (`why`).
    fn failed(&self, accounts: &[Arc<AccountMetrics>], why: &str) -> Outcome {
        let mut out = Outcome::default();
        for m in accounts {
            for rule in self.rules.iter().filter(|r| r.settings.enabled) {
                out.runs += 1;
                out.errors.push(RunError {
                    rule: rule.name.clone(),
                    account_id: m.id.clone(),
                    message: format!(
                        "the evaluation stopped with an internal error ({why}); the account's alerts are left as they were. Please report this"
                    ),
                });
            }
        }
        out
    }

    /// The tiers whose accounts some enabled rule may read the main SKUs
    /// or stock cover of, or needs stock for (`needs: ["stock"]`): the
    /// backtest derives main SKUs for those tiers only.
    pub fn tiers_reading_skus(&self) -> Vec<&'static str> {
        let mask = self
            .rules
            .iter()
            .filter(|r| r.reads_skus || r.needs & 16 != 0)
            .fold(0, |m, r| m | r.mask);
        ["A", "B", "C"]
            .into_iter()
            .filter(|t| mask & tier_bit(t) != 0)
            .collect()
    }

    /// What one thread needs to run the rules, kept for as long as it
    /// keeps running them (the backtest keeps one per thread for all its
    /// days).
    ///
    /// Everything a run clones is the thread's own: an engine (its function
    /// handles go into each run's resolution cache; built in about a
    /// millisecond), the scripts' ASTs (function library, source name) and
    /// their resolution caches ([`Compiled`]), and, per snapshot, `as_of`
    /// and the portfolio handle. Shared between threads, their reference
    /// counts made each core wait on the other's cache.
    pub fn runner(&self) -> Runner<'_> {
        Runner {
            rules: self,
            engine: engine(),
            compiled: self.rules.iter().map(|r| Compiled::new(&r.ast)).collect(),
        }
    }

    /// Runs one rule for one account, recording every figure the rule read.
    pub fn explain(
        &self,
        snap: &Snapshot,
        rule: &str,
        account: &str,
    ) -> Result<Explanation, String> {
        let r = self.get(rule).ok_or_else(|| {
            let names: Vec<&str> = self.rules.iter().map(|r| &*r.name).collect();
            format!(
                "no rule {rule:?}; the loaded rules are {}",
                names.join(", ")
            )
        })?;
        let m = snap
            .find(account)
            .ok_or_else(|| format!("no active account {account:?} in the customer master"))?;
        let mut ex = Explanation {
            rule: r.name.to_string(),
            account: m.id.clone(),
            account_name: m.name.clone(),
            tier: m.tier,
            as_of: snap.as_of,
            settings: r.settings.clone(),
            skipped: None,
            reads: Vec::new(),
            findings: Vec::new(),
            lines: Vec::new(),
            error: None,
        };
        if r.mask & tier_bit(m.tier) == 0 {
            ex.skipped = Some(if r.settings.enabled {
                format!(
                    "tier {} is not among the rule's tiers ({}); the script did not run",
                    m.tier,
                    r.settings.tiers.clone().unwrap_or_default().join(", ")
                )
            } else {
                "the rule is disabled (enabled: false); the script did not run".to_string()
            });
            return Ok(ex);
        }
        let missing = r.needs & !has_bits(m);
        if missing != 0 {
            let what: Vec<&str> = NEEDS
                .iter()
                .filter(|x| missing & x.1 != 0)
                .map(|x| x.0)
                .collect();
            ex.skipped = Some(format!(
                "the rule needs {} and the account has none; the script did not run",
                what.join(", ")
            ));
            return Ok(ex);
        }
        let end = snap.end();
        let mut scope = snapshot_scope(snap, snap.portfolio.clone(), true);
        scope.push_constant(
            "account",
            api::Account {
                m: m.clone(),
                end,
                explain: true,
            },
        );
        api::take_trace();
        let result = self.engine.run_ast_with_scope(&mut scope, &r.ast);
        // Each figure once, in the order it was first read.
        for r in api::take_trace() {
            if !ex.reads.contains(&r) {
                ex.reads.push(r);
            }
        }
        let raised = RAISED.with(|x| std::mem::take(&mut *x.borrow_mut()));
        match result {
            Ok(()) => {
                for x in raised {
                    ex.lines.push(x.line);
                    ex.findings.push(finding(r, m, x));
                }
            }
            Err(e) => ex.error = Some(describe_runtime(&e, &r.path)),
        }
        Ok(ex)
    }
}

fn finding(rule: &Rule, m: &Arc<AccountMetrics>, r: Raised) -> Finding {
    Finding {
        rule: rule.name.clone(),
        account: m.clone(),
        key: r.key,
        severity: r
            .severity
            .or(rule.settings.severity)
            .unwrap_or(Severity::Warning),
        title: r.title,
        figures: r.figures,
        action: r.action,
    }
}

/// What one rule read and raised for one account (`eval --explain`).
#[derive(Debug)]
pub struct Explanation {
    pub rule: String,
    pub account: String,
    pub account_name: String,
    pub tier: &'static str,
    pub as_of: chrono::NaiveDate,
    pub settings: RuleSettings,
    /// Why the script did not run at all, if it did not.
    pub skipped: Option<String>,
    /// Every figure the rule read, in order: (call, value).
    pub reads: Vec<(String, String)>,
    pub findings: Vec<Finding>,
    /// The line of the `alert()` call behind each finding.
    pub lines: Vec<Option<usize>>,
    pub error: Option<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "rule {} for account {} ({}, tier {}) as of {}",
            self.rule, self.account, self.account_name, self.tier, self.as_of
        )?;
        if let Some(why) = &self.skipped {
            return writeln!(f, "silent: {why}");
        }
        if self.reads.is_empty() {
            writeln!(f, "read nothing")?;
        } else {
            writeln!(f, "read:")?;
            let w = self
                .reads
                .iter()
                .map(|r| r.0.chars().count())
                .max()
                .unwrap_or(0);
            for (what, v) in &self.reads {
                let pad = w - what.chars().count();
                writeln!(f, "  {what}{} = {v}", " ".repeat(pad))?;
            }
        }
        if let Some(e) = &self.error {
            return writeln!(f, "failed: {e}");
        }
        if self.findings.is_empty() {
            return writeln!(f, "silent: no alert() call was reached with these figures");
        }
        for (x, line) in self.findings.iter().zip(&self.lines) {
            write!(f, "fired: {} \"{}\"", x.severity, x.title)?;
            if !x.key.is_empty() {
                write!(f, " [key {}]", x.key)?;
            }
            if let Some(l) = line {
                write!(f, " (alert() at {}.rhai line {l})", self.rule)?;
            }
            writeln!(f)?;
            for (k, v) in &x.figures {
                writeln!(f, "  {k}: {v}")?;
            }
            if !x.action.is_empty() {
                writeln!(f, "  action: {}", x.action)?;
            }
        }
        Ok(())
    }
}

fn compile(engine: &Engine, path: &Path, source: &str) -> Result<Rule, CompileError> {
    let name: Arc<str> = Arc::from(
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    match engine.compile(source) {
        Ok(ast) => {
            let settings = read_settings(&ast, source).map_err(|(line, message)| CompileError {
                path: path.to_path_buf(),
                line,
                column: 1,
                message,
                excerpt: excerpt(source, Position::new(line.max(1) as u16, 1)),
            })?;
            // The settings were read; running them again for every account
            // would build the map each time. Blank the statement (keeping
            // every position) unless the script reads SETTINGS itself.
            let ast = match blank_settings(source) {
                Some(stripped) => engine.compile(&stripped).unwrap_or(ast),
                None => ast,
            };
            let ast = drop_folded_constants(ast);
            Ok(Rule {
                name,
                path: path.to_path_buf(),
                reads_skus: source.contains("main_skus") || source.contains("stock_cover"),
                ast,
                mask: settings.mask(),
                needs: settings.needs_mask(),
                settings,
            })
        }
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

/// `ast` without its leading `const NAME = <constant>;` statements once
/// the optimizer has put their values everywhere they are read.
///
/// Rules open with their thresholds (`const DAYS = 90;` ...). Rhai's
/// optimizer already replaces every read of such a constant by its value,
/// but still runs each declaration on every run, pushing it into the scope:
/// about a fifth of the instructions of the shipped rules. The declarations
/// are dropped only when nothing reads the names any more (no variable node
/// left with that name, in the statements or in any function), and only as
/// a leading run of statements: Rhai finds a script's own variables by
/// their offset from the end of the scope, which the variables declared
/// after them keep. Otherwise the AST is returned as it was.
fn drop_folded_constants(ast: AST) -> AST {
    use rhai::{ASTFlags, ASTNode, Expr, Stmt};
    let lead = ast
        .statements()
        .iter()
        .take_while(|st| {
            matches!(st, Stmt::Var(x, flags, _)
                if flags.contains(ASTFlags::CONSTANT) && x.1.is_constant())
        })
        .count();
    if lead == 0 {
        return ast;
    }
    let names: Vec<ImmutableString> = ast.statements()[..lead]
        .iter()
        .filter_map(|st| match st {
            Stmt::Var(x, ..) => Some(x.0.name.clone()),
            _ => None,
        })
        .collect();
    let mut read = false;
    ast.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Expr(Expr::Variable(v, ..))) = path.last() {
            read |= names.contains(&v.1);
        }
        !read
    });
    if read {
        return ast;
    }
    AST::new(
        ast.statements()[lead..].iter().cloned(),
        ast.shared_lib().clone(),
    )
}

/// The rule's `const SETTINGS = #{...}`, read without running the script.
/// Errors carry the line of the declaration.
fn read_settings(ast: &AST, source: &str) -> Result<RuleSettings, (usize, String)> {
    let line = source
        .lines()
        .position(|l| l.contains("SETTINGS"))
        .map_or(1, |i| i + 1);
    for (name, constant, value) in ast.iter_literal_variables(true, true) {
        if name != "SETTINGS" {
            continue;
        }
        if !constant {
            return Err((
                line,
                "declare the settings with `const SETTINGS = #{ ... };`, not `let`".into(),
            ));
        }
        let map = value.try_cast::<Map>().ok_or((
            line,
            "SETTINGS must be a map, e.g. #{ tiers: [\"A\", \"B\"] }".to_string(),
        ))?;
        return RuleSettings::from_map(&map).map_err(|e| (line, format!("SETTINGS: {e}")));
    }
    if source.lines().any(|l| {
        let t = l.trim_start();
        (t.starts_with("const SETTINGS") || t.starts_with("let SETTINGS")) && !t.starts_with("//")
    }) {
        return Err((
            line,
            "SETTINGS must be a literal map at the top level of the rule (only constants inside, no variables or calls)".into(),
        ));
    }
    Ok(RuleSettings::default())
}

/// `source` with its `const SETTINGS = ...;` statement replaced by spaces
/// (newlines kept, so positions in errors stay true); None when there is
/// none or the script mentions SETTINGS elsewhere.
fn blank_settings(source: &str) -> Option<String> {
    if source.matches("SETTINGS").count() != 1 {
        return None;
    }
    let start = source.find("const SETTINGS")?;
    if !source[..start].ends_with('\n') && start != 0 {
        return None;
    }
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in source[start..].char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '`' | '\'' => quote = Some(c),
            '{' | '[' | '(' => depth += 1,
            '}' | ']' | ')' => depth -= 1,
            ';' if depth == 0 => {
                end = Some(start + i + 1);
                break;
            }
            _ => {}
        }
    }
    let end = end?;
    let blank: String = source[start..end]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    Some(format!("{}{blank}{}", &source[..start], &source[end..]))
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
    use std::collections::BTreeSet;

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
    fn leading_constants_are_dropped_only_when_nothing_reads_them() {
        let engine = engine();
        let run = |src: &str| {
            let ast = drop_folded_constants(engine.compile(src).unwrap());
            let n = ast.statements().len();
            (n, engine.eval_ast::<i64>(&ast).unwrap())
        };
        // Folded into `x + A` and `B`: both leading declarations go; the
        // `const C` after a `let` stays, and `x` is still found.
        assert_eq!(
            run("const A = 2; const B = 3; let x = 1; const C = 4; x + A + B + C"),
            (3, 10)
        );
        // `A` is shadowed by a variable, so a read of the name is left:
        // nothing is dropped and the variable wins.
        assert_eq!(run("const A = 2; let A = 5; A"), (3, 5));
        // A constant that is not a literal is not touched.
        assert_eq!(run("const A = [1, 2]; A.len()"), (2, 2));
    }

    #[test]
    fn the_tiers_reading_skus_come_from_the_rules_that_can() {
        let tiers =
            |sources: &[(&str, &str)]| RuleSet::from_sources(sources).unwrap().tiers_reading_skus();
        let stock = r#"const SETTINGS = #{ tiers: ["A"], needs: ["stock"] };
            let c = account.stock_cover;"#;
        let plain = r#"const SETTINGS = #{ tiers: ["B"] }; let r = account.revenue(90);"#;
        assert_eq!(tiers(&[("s", stock), ("p", plain)]), ["A"]);
        // Stock needed without reading it, and main SKUs read by any tier.
        let needs = r#"const SETTINGS = #{ tiers: ["C"], needs: ["stock"] };"#;
        assert_eq!(tiers(&[("n", needs), ("p", plain)]), ["C"]);
        let any = "let m = account.main_skus;";
        assert_eq!(tiers(&[("m", any)]), ["A", "B", "C"]);
        assert!(tiers(&[("p", plain)]).is_empty());
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
    fn a_rule_that_changes_account_does_not_leak_into_the_next() {
        // Rules run in order; the first two clobber `account` in both ways a
        // script can, and the last must still see the real account.
        let rs = RuleSet::from_sources(&[
            ("a_assign", "account = 5;"),
            (
                "b_this",
                "fn clobber() { this = \"x\"; } account.clobber();",
            ),
            (
                "c_reads",
                "alert(#{ title: account.id, figures: #{ n: 1 } });",
            ),
        ])
        .unwrap();
        let snap = crate::metrics::tests_support::snapshot_one();
        let out = rs.evaluate(&snap);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].title, "KH1");
    }

    /// A snapshot of `n` tier-A accounts, the one at `panic_at` named so
    /// that its evaluation panics.
    fn snapshot_of(n: usize, panic_at: usize) -> Snapshot {
        let mut snap = crate::metrics::tests_support::snapshot_one();
        snap.accounts = (0..n)
            .map(|i| {
                let id = if i == panic_at {
                    format!("PANIC{i}")
                } else {
                    format!("KH{i}")
                };
                Arc::new(AccountMetrics {
                    tier: "A",
                    prev_tier: "A",
                    ..AccountMetrics::empty(&id, "测试")
                })
            })
            .collect();
        snap
    }

    #[test]
    fn a_panicking_evaluation_fails_its_accounts_and_drops_none() {
        let rs = RuleSet::from_sources(&[
            ("a", "alert(#{ title: account.id, figures: #{ n: 1 } });"),
            ("b", "let x = 1;"),
        ])
        .unwrap();
        // 600 accounts are three blocks; the panic is in the second.
        let snap = snapshot_of(600, 300);
        for threads in [1, 2] {
            let out = rs.evaluate_with(&snap, threads);
            let failed: BTreeSet<&str> = out.errors.iter().map(|e| e.account_id.as_str()).collect();
            let fired: BTreeSet<&str> =
                out.findings.iter().map(|f| f.account.id.as_str()).collect();
            // Every account either fired or failed: none vanished.
            for m in &snap.accounts {
                assert!(
                    failed.contains(m.id.as_str()) ^ fired.contains(m.id.as_str()),
                    "{threads} thread(s): account {} neither fired nor failed",
                    m.id
                );
            }
            assert!(failed.contains("PANIC300"));
            assert!(
                out.errors
                    .iter()
                    .all(|e| e.message.contains("internal error"))
            );
            // Both rules failed for each failed account.
            assert_eq!(out.errors.len(), failed.len() * 2);
            if threads == 2 {
                // Only the panicking block failed.
                assert_eq!(failed.len(), 256, "{failed:?}");
                assert!(fired.contains("KH0") && fired.contains("KH599"));
            }
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
        assert_eq!(out.errors[0].account_id, "KH1");
        assert!(
            out.errors[0]
                .to_string()
                .contains("rule loop failed for account KH1")
        );
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

    #[test]
    fn figures_keep_the_rule_order_as_pairs() {
        let rs = RuleSet::from_sources(&[(
            "pairs",
            "alert(#{ title: \"t\", figures: [[\"z\", 1], [\"a\", 2.5]] });",
        )])
        .unwrap();
        let out = rs.evaluate(&crate::metrics::tests_support::snapshot_one());
        assert_eq!(
            out.findings[0].figures,
            vec![("z".to_string(), 1.into()), ("a".to_string(), 2.5.into())]
        );
        assert_eq!(out.findings[0].severity, Severity::Warning);
    }

    #[test]
    fn settings_are_read_and_filter_tiers() {
        let src = "const SETTINGS = #{ tiers: [\"B\"], severity: \"critical\", for_evaluations: 2, repeat_days: 7, recipients: [\"x@example.com\"] };\nalert(#{ title: \"t\" });";
        let rs = RuleSet::from_sources(&[("s", src)]).unwrap();
        let s = rs.rules[0].settings();
        assert_eq!(s.tiers, Some(vec!["B".to_string()]));
        assert_eq!(s.severity, Some(Severity::Critical));
        assert_eq!((s.for_evaluations, s.repeat_days), (2, Some(7)));
        assert_eq!(s.recipients, vec!["x@example.com".to_string()]);
        // The only account is tier A: skipped, but counted as evaluated.
        let snap = crate::metrics::tests_support::snapshot_one();
        let out = rs.evaluate(&snap);
        assert!(out.findings.is_empty());
        assert_eq!(out.runs, 1);
        let ex = rs.explain(&snap, "s", "KH1").unwrap();
        assert!(
            ex.skipped.as_deref().unwrap_or("").contains("tier A"),
            "{ex}"
        );

        let mut rs = RuleSet::from_sources(&[("s", src)]).unwrap();
        let o = crate::config::RuleSettingsOverride {
            tiers: Some(vec!["A".into()]),
            ..Default::default()
        };
        let unknown = rs.apply_overrides(
            &[("s".to_string(), o.clone()), ("nope".to_string(), o)]
                .into_iter()
                .collect(),
        );
        assert_eq!(unknown, vec!["nope".to_string()]);
        let out = rs.evaluate(&snap);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].severity, Severity::Critical);
    }

    #[test]
    fn bad_settings_are_compile_errors_with_the_line() {
        for (src, want) in [
            (
                "// x\nconst SETTINGS = #{ tiers: [\"D\"] };",
                "\"D\" is not a tier",
            ),
            ("const SETTINGS = #{ fro: 2 };", "unknown setting `fro`"),
            (
                "let n = 2;\nconst SETTINGS = #{ for_evaluations: n };",
                "literal map",
            ),
            ("const SETTINGS = #{ \"for\": 0 };", "at least 1"),
        ] {
            let e = RuleSet::from_sources(&[("b", src)]).err().unwrap();
            assert!(e.message.contains(want), "{src}: {e}");
            assert_eq!(
                e.line,
                src.lines().position(|l| l.contains("SETTINGS")).unwrap() + 1
            );
        }
    }

    #[test]
    fn explain_lists_what_was_read() {
        let rs = RuleSet::from_sources(&[(
            "x",
            "let r = account.revenue(90);\nif account.tier == \"A\" && r <= 0.0 {\n  alert(#{ title: \"none\", figures: [[\"r\", r]] });\n}",
        )])
        .unwrap();
        let snap = crate::metrics::tests_support::snapshot_one();
        let ex = rs.explain(&snap, "x", "KH1").unwrap();
        assert_eq!(
            ex.reads,
            vec![
                ("account.revenue(90)".to_string(), "0".to_string()),
                ("account.tier".to_string(), "A".to_string())
            ]
        );
        assert_eq!(ex.lines, vec![Some(3)]);
        let text = ex.to_string();
        assert!(
            text.contains("fired: warning \"none\" (alert() at x.rhai line 3)"),
            "{text}"
        );
        assert!(rs.explain(&snap, "y", "KH1").is_err());
        assert!(rs.explain(&snap, "x", "KH9").unwrap_err().contains("KH9"));
    }

    #[test]
    fn sandbox_limits_stop_big_values_and_deep_calls() {
        let rs = RuleSet::from_sources(&[
            ("big_string", "let s = \"x\"; loop { s += s; }"),
            ("big_array", "let a = []; loop { a.push(1); }"),
            ("deep", "fn f(n) { f(n + 1) } f(0);"),
            // Rhai does not check the map size on index assignment; the
            // operation limit bounds such a map instead.
            (
                "big_map",
                "let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; }",
            ),
        ])
        .unwrap();
        let out = rs.evaluate(&crate::metrics::tests_support::snapshot_one());
        assert_eq!(out.errors.len(), 4, "{:?}", out.errors);
        for e in &out.errors {
            assert_eq!(e.account_id, "KH1");
            let m = e.message.to_lowercase();
            assert!(
                m.contains("too large") || m.contains("stack overflow") || m.contains("operations"),
                "{e}"
            );
        }
    }

    #[test]
    fn reference_covers_every_registered_function() {
        let text = api::reference();
        let mut e = Engine::new_raw();
        api::register(&mut e);
        for sig in e.gen_fn_signatures(false) {
            let name = sig.split('(').next().unwrap().replace("get$", "");
            assert!(text.contains(&name), "{sig} is not in the reference");
        }
        assert!(text.contains("`account.revenue_prev(days)`"));
        assert!(text.contains("`account.stock_cover`"));
    }

    #[test]
    fn a_broken_edit_keeps_the_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("r.rhai");
        std::fs::write(
            &f,
            "const SETTINGS = #{ severity: \"critical\" };\nalert(#{ title: \"v1\" });\n",
        )
        .unwrap();
        let (good, errors) = RuleSet::load_dir(dir.path()).unwrap();
        assert!(errors.is_empty());
        std::fs::write(&f, "alert(#{ title: \"v2\" );\n").unwrap();
        let (fresh, errors) = RuleSet::load_dir(dir.path()).unwrap();
        assert_eq!(errors.len(), 1);
        // The error a person reads (and the admin is mailed): file:line:col,
        // the source line and a caret.
        let text = errors[0].to_string();
        assert!(text.starts_with(&format!("{}:1:", f.display())), "{text}");
        assert!(text.contains("1 | alert(#{ title: \"v2\" );"), "{text}");
        assert!(text.contains('^'), "{text}");
        let broken: Vec<&CompileError> = errors.iter().collect();
        let merged = fresh.merge_last_good(good, &broken);
        let out = merged.evaluate(&crate::metrics::tests_support::snapshot_one());
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].title, "v1");
        assert_eq!(
            out.findings[0].severity,
            Severity::Critical,
            "settings kept too"
        );
        // Fixed again: the new version runs.
        std::fs::write(&f, "alert(#{ title: \"v3\" });\n").unwrap();
        let (fixed, errors) = RuleSet::load_dir(dir.path()).unwrap();
        let merged = fixed.merge_last_good(merged, &errors.iter().collect::<Vec<_>>());
        let out = merged.evaluate(&crate::metrics::tests_support::snapshot_one());
        assert_eq!(out.findings[0].title, "v3");
    }

    #[test]
    fn settings_statement_is_blanked_keeping_positions() {
        let src =
            "// x\nconst SETTINGS = #{ tiers: [\"A\"], recipients: [\"a;b@x.com\"] };\nlet y = 1;";
        let out = blank_settings(src).unwrap();
        assert_eq!(out.lines().count(), src.lines().count());
        assert!(!out.contains("SETTINGS"));
        assert!(out.ends_with("\nlet y = 1;"), "{out}");
        assert_eq!(out.chars().count(), src.chars().count());
        // Read elsewhere: left alone.
        assert!(blank_settings("const SETTINGS = #{};\nprint(SETTINGS);").is_none());
        // An error after the settings still points at the right line.
        let e = RuleSet::from_sources(&[(
            "p",
            "const SETTINGS = #{ tiers: [\"A\"] };\nlet x = (1 + ;",
        )])
        .err()
        .unwrap();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn needs_skip_accounts_without_the_data() {
        let rs = RuleSet::from_sources(&[(
            "n",
            "const SETTINGS = #{ needs: [\"receivables\"] };\nalert(#{ title: \"t\" });",
        )])
        .unwrap();
        assert_eq!(
            rs.rules[0].settings().needs,
            vec!["receivables".to_string()]
        );
        let snap = crate::metrics::tests_support::snapshot_one();
        let out = rs.evaluate(&snap);
        assert!(out.findings.is_empty());
        assert_eq!(out.runs, 1);
        let ex = rs.explain(&snap, "n", "KH1").unwrap();
        assert!(ex.to_string().contains("needs receivables"), "{ex}");
        let e = RuleSet::from_sources(&[("b", "const SETTINGS = #{ needs: [\"money\"] };")])
            .err()
            .unwrap();
        assert!(e.message.contains("\"money\""), "{e}");
    }
}
