//! Rules: loads the `.rhai` rule scripts, compiles each once, and runs every
//! rule against every account of a metrics snapshot in a sandbox.
//!
//! The sandbox: operation, call-depth, expression-depth, string, array and
//! map limits; a memory limit per run, measured by the process's global
//! allocator ([`MemoryMeter`], counting each thread's bytes); at most
//! `alerts.max_per_account` alerts per run and `alerts.max_per_rule` per
//! rule and evaluation; no module import (rhai is built without modules,
//! closures and custom syntax, which also makes it faster); `eval`
//! disabled; `print`/`debug` go to the log within an allowance per run and
//! per evaluation. A stop flag (the daemon's SIGTERM) ends an evaluation
//! between accounts and a run at its next operation. Rhai has no file,
//! network or process access of its own and we register none. A rule raises a warning with
//! `alert(#{...})`; what it raises comes back as `Finding`s. A rule's
//! `const SETTINGS = #{...}` is read once after compiling (`RuleSettings`).
//! This module reads the rules folder and the snapshot it is given; it
//! writes nothing. Submodules: `api` (what a rule can call, and the generated
//! reference), `testing` (`kamwatch test` rule test files), `bench` (the
//! evaluation benchmark).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rhai::{
    AST, Dynamic, Engine, EvalAltResult, ImmutableString, Map, NativeCallContext, Position, Scope,
};

use crate::metrics::{AccountMetrics, Day, Portfolio, Snapshot};

pub mod api;
pub mod testing;

pub use api::pct_change;

/// How bad a warning is (a plain value of the model).
pub use crate::model::Severity;

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
    /// The kind of each figure that has one (`money(x)`), by label.
    pub units: Units,
    pub action: String,
}

/// Figure kinds by label; a figure without one is a plain number.
pub type Units = std::collections::BTreeMap<String, crate::format::Unit>;

/// A compiled rule.
#[derive(Clone)]
pub struct Rule {
    pub name: Arc<str>,
    pub path: PathBuf,
    pub(crate) ast: AST,
    settings: RuleSettings,
    /// The severity of an `alert()` that names none, from the settings.
    severity: Option<Severity>,
    /// Tiers the rule runs for, as bits (0: disabled).
    mask: u8,
    /// The data it needs, as bits (see `NEEDS`).
    needs: u8,
    /// The data the book must have, as bits.
    book_needs: u8,
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
        self.mask = tier_mask(&s);
        self.needs = needs_mask(&s);
        self.book_needs = book_needs_mask(&s);
        self.severity = s.severity.as_deref().and_then(Severity::parse);
        self.settings = s;
    }

    /// Whether the rule runs (`enabled`, default true).
    pub fn enabled(&self) -> bool {
        self.settings.enabled != Some(false)
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

/// One rule's run-time failures in an evaluation: how many accounts it
/// failed for, and the first failure as the example. Logs, the eval summary
/// and the admin's mail report failures this way, once per rule.
#[derive(Debug)]
pub struct RuleFailures<'a> {
    pub rule: &'a str,
    pub accounts: usize,
    pub example: &'a RunError,
}

impl fmt::Display for RuleFailures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.accounts == 1 { "" } else { "s" };
        write!(
            f,
            "rule {} failed for {} account{s}, e.g. {}: {}",
            self.rule, self.accounts, self.example.account_id, self.example.message
        )
    }
}

/// `errors` grouped by rule, in rule name order.
pub fn failures_by_rule(errors: &[RunError]) -> Vec<RuleFailures<'_>> {
    let mut by: std::collections::BTreeMap<&str, (std::collections::BTreeSet<&str>, &RunError)> =
        std::collections::BTreeMap::new();
    for e in errors {
        by.entry(&*e.rule)
            .or_insert_with(|| (Default::default(), e))
            .0
            .insert(e.account_id.as_str());
    }
    by.into_iter()
        .map(|(rule, (accounts, example))| RuleFailures {
            rule,
            accounts: accounts.len(),
            example,
        })
        .collect()
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
    pub caps: AlertCaps,
    /// The locale rules pick their texts in, and how `${money(x)}` in a
    /// title is written (`mail.locale`, `mail.currency`).
    pub style: crate::format::Style,
    /// The seasons `season()` and `days_until_peak()` resolve (the
    /// config's `seasons:`).
    pub seasons: Arc<crate::model::seasons::Seasons>,
}

/// The most alerts a rule may raise, for one account in one run and in one
/// evaluation (`alerts.max_per_account`, `alerts.max_per_rule`). Past them
/// the rule has failed for the accounts concerned: their alerts are left as
/// they were, and the admin is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertCaps {
    pub per_account: usize,
    pub per_rule: usize,
}

impl Default for AlertCaps {
    fn default() -> Self {
        AlertCaps {
            per_account: DEFAULT_MAX_ALERTS_PER_ACCOUNT,
            per_rule: DEFAULT_MAX_ALERTS_PER_RULE,
        }
    }
}

/// Everything one evaluation produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub errors: Vec<RunError>,
    /// Rule x account pairs decided: every enabled rule for every account,
    /// whether its script ran or its tiers or needs made it silent.
    pub runs: u64,
    /// Scripts actually run (a part of `runs`).
    pub scripts: u64,
    /// Stopped (SIGTERM) before every account was evaluated: the outcome is
    /// partial and must not be recorded.
    pub interrupted: bool,
}

/// Per-rule settings: one type for the rule's `const SETTINGS = #{ ... };`
/// and the config's `rule_settings:` (which wins, key by key). The alerts
/// stage applies the lifecycle keys (`for_evaluations`, repeat, recipients,
/// ...); the rules stage applies `enabled`, `tiers`, `needs` and `severity`
/// as the default of `alert()`.
pub use crate::config::RuleSettings;

/// Which of the `RuleSettings::NEEDS` the account has, as bits (bit i for
/// `NEEDS[i]`, the same order as `metrics::DATA_KINDS`).
fn has_bits(m: &AccountMetrics) -> u8 {
    m.data_bits()
}

/// A rule's `needs` as bits (see [`has_bits`]).
fn needs_mask(s: &RuleSettings) -> u8 {
    needs_bits(s.needs.as_deref())
}

/// A rule's `book_needs` as bits (see [`has_bits`]).
fn book_needs_mask(s: &RuleSettings) -> u8 {
    needs_bits(s.book_needs.as_deref())
}

fn needs_bits(names: Option<&[String]>) -> u8 {
    names
        .into_iter()
        .flatten()
        .filter_map(|n| RuleSettings::NEEDS.iter().position(|x| x == n))
        .fold(0, |b, i| b | 1 << i)
}

/// Bit per tier (A=1, B=2, C=4) of the accounts the rule runs for.
fn tier_mask(s: &RuleSettings) -> u8 {
    if s.enabled == Some(false) {
        return 0;
    }
    match &s.tiers {
        None => 0b111,
        Some(ts) => ts.iter().map(|t| tier_bit(t)).fold(0, |a, b| a | b),
    }
}

/// Reads a script's `SETTINGS` map into the one settings type, with the
/// same keys (older names included) and checks as the config's
/// `rule_settings:`; errors say which key is wrong and why.
pub fn settings_from_map(map: &Map) -> Result<RuleSettings, String> {
    fn strings(v: &Dynamic, key: &str, example: &str) -> Result<Vec<String>, String> {
        let arr = v
            .clone()
            .try_cast::<rhai::Array>()
            .ok_or_else(|| format!("`{key}` must be an array like {example}"))?;
        arr.into_iter()
            .map(|t| {
                t.into_immutable_string()
                    .map(|t| t.to_string())
                    .map_err(|_| format!("`{key}` must hold strings"))
            })
            .collect()
    }
    fn count(v: &Dynamic, key: &str, what: &str) -> Result<u32, String> {
        let n = v
            .as_int()
            .map_err(|_| format!("`{key}` must be a whole number of {what}"))?;
        u32::try_from(n).map_err(|_| {
            if n < 0 {
                format!("`{key}` must be 0 or more")
            } else {
                format!("`{key}` is too large: at most {}", u32::MAX)
            }
        })
    }
    fn flag(v: &Dynamic, key: &str) -> Result<bool, String> {
        v.as_bool()
            .map_err(|_| format!("`{key}` must be true or false"))
    }
    let mut s = RuleSettings::default();
    for (k, v) in map {
        match k.as_str() {
            "enabled" => s.enabled = Some(flag(v, "enabled")?),
            "tiers" => s.tiers = Some(strings(v, "tiers", "[\"A\", \"B\"]")?),
            "needs" => s.needs = Some(strings(v, "needs", "[\"receivables\"]")?),
            "book_needs" => s.book_needs = Some(strings(v, "book_needs", "[\"visits\"]")?),
            "severity" => {
                let t = v
                    .clone()
                    .into_immutable_string()
                    .map_err(|_| "`severity` must be a string".to_string())?;
                s.severity = Some(t.to_string());
            }
            "for_evaluations" => {
                s.for_evaluations = Some(count(v, "for_evaluations", "evaluations")?)
            }
            "for" => s.set_old_for(count(v, "for", "evaluations")?),
            "repeat_interval_days" => {
                s.repeat_interval_days = Some(count(v, "repeat_interval_days", "days")?)
            }
            "repeat_days" => s.set_old_repeat_days(count(v, "repeat_days", "days")?),
            "notify_resolved" => s.notify_resolved = Some(flag(v, "notify_resolved")?),
            "keep_firing_for_days" => {
                s.keep_firing_for_days = Some(count(v, "keep_firing_for_days", "days")?)
            }
            "escalate_after_days" => {
                s.escalate_after_days = Some(count(v, "escalate_after_days", "days")?)
            }
            "recipients" => {
                s.recipients = Some(strings(v, "recipients", "[\"pricing@example.com\"]")?)
            }
            "extra_recipients" => s.set_old_extra_recipients(strings(
                v,
                "extra_recipients",
                "[\"pricing@example.com\"]",
            )?),
            other => {
                return Err(format!(
                    "unknown setting `{other}`; the settings are {}",
                    RuleSettings::KEYS.join(", ")
                ));
            }
        }
    }
    s.settle().map_err(|e| e.to_string())?;
    s.validate().map_err(|e| match e {
        crate::config::SettingError::Value { key, why } => format!("`{key}`: {why}"),
        other => other.to_string(),
    })?;
    Ok(s)
}

fn tier_bit(t: &str) -> u8 {
    match t {
        "A" => 1,
        "B" => 2,
        "C" => 4,
        _ => 0,
    }
}

/// Takes the alerts the last script run on this thread raised, and says
/// how many there were (the rule benchmark counts them).
pub(crate) fn take_raised_count() -> usize {
    RAISED.with(|r| std::mem::take(&mut *r.borrow_mut())).len()
}

thread_local! {
    /// Alerts raised by the script currently running on this thread.
    static RAISED: RefCell<Vec<Raised>> = const { RefCell::new(Vec::new()) };
    /// The most alerts one run may raise on this thread
    /// (`alerts.max_per_account`).
    static ALERT_CAP: Cell<usize> = const { Cell::new(DEFAULT_MAX_ALERTS_PER_ACCOUNT) };
    /// Net bytes this thread has allocated and not freed (see [`MemoryMeter`]).
    static NET_BYTES: Cell<isize> = const { Cell::new(0) };
    /// `NET_BYTES` when the current run started.
    static RUN_BASE: Cell<isize> = const { Cell::new(0) };
    /// What the current run printed and what it was not allowed to.
    static PRINTED: Cell<Printed> = const { Cell::new(Printed::NONE) };
}

struct Raised {
    key: String,
    severity: Option<Severity>,
    title: String,
    figures: Vec<(String, serde_json::Value)>,
    units: Units,
    action: String,
    line: Option<usize>,
}

/// Limits of the sandbox. Generous for honest rules, fatal for runaway ones.
pub const MAX_OPERATIONS: u64 = 1_000_000;
pub const MAX_CALL_LEVELS: usize = 32;
pub const MAX_STRING: usize = 64 * 1024;
pub const MAX_ARRAY: usize = 10_000;
pub const MAX_MAP: usize = 1_000;
/// Memory one run may hold beyond what it started with: everything its
/// values and the API calls it makes allocate and have not freed. Rhai's
/// own size limits miss a map grown by `m[k] = v` and many big values side
/// by side; this catches them, measured by [`MemoryMeter`].
pub const MAX_RUN_MEMORY: usize = 32 * 1024 * 1024;
/// What one run may `print` (lines, bytes); the rest is dropped and counted.
pub const MAX_PRINT_LINES: u32 = 20;
pub const MAX_PRINT_BYTES: usize = 4 * 1024;
/// What one evaluation may print in all, over every rule and account.
pub const MAX_PRINT_PER_EVALUATION: usize = 1024 * 1024;
/// Defaults of `alerts.max_per_account` and `alerts.max_per_rule`.
pub use crate::config::{DEFAULT_MAX_ALERTS_PER_ACCOUNT, DEFAULT_MAX_ALERTS_PER_RULE};

/// The tokens a run is terminated with from the progress callback.
const STOP_MEMORY: i64 = 1;
const STOP_SIGNAL: i64 = 2;

/// The global allocator (installed in `lib.rs`): the system allocator, plus
/// a per-thread count of the bytes allocated and not yet freed. A rule run
/// notes the count when it starts, and the progress callback, called at
/// every operation, stops the run once it holds more than
/// [`MAX_RUN_MEMORY`]. The count is one thread-local add per allocation;
/// `kamwatch bench rules` measured no difference (docs/benchmarks.md).
/// Memory freed on another thread than the one that allocated it shows up
/// as a negative count there and a positive one here; rule runs allocate
/// and free on their own thread.
pub struct MemoryMeter;

fn meter(delta: isize) {
    // Const-initialised and without a destructor: never allocates, never
    // fails, also while a thread exits.
    let _ = NET_BYTES.try_with(|c| c.set(c.get().wrapping_add(delta)));
}

// SAFETY: every call is forwarded to `System` unchanged; the count is a
// thread-local add that does not allocate.
unsafe impl GlobalAlloc for MemoryMeter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            meter(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            meter(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        meter(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            meter(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Bytes this thread holds beyond what it held when the current run started.
fn run_memory() -> isize {
    NET_BYTES.with(Cell::get) - RUN_BASE.with(Cell::get)
}

/// Marks the start of a run on this thread: memory, prints, alerts.
fn start_run() {
    RUN_BASE.with(|b| b.set(NET_BYTES.with(Cell::get)));
}

/// What one run printed, and dropped over its allowance.
#[derive(Clone, Copy)]
struct Printed {
    lines: u32,
    bytes: usize,
    dropped_lines: u32,
    dropped_bytes: usize,
}

impl Printed {
    const NONE: Printed = Printed {
        lines: 0,
        bytes: 0,
        dropped_lines: 0,
        dropped_bytes: 0,
    };
}

/// What the threads of one evaluation share: the flag that stops it
/// (SIGTERM) and what the rules have printed so far.
#[derive(Clone)]
pub struct Shared {
    stop: Arc<AtomicBool>,
    printed: Arc<AtomicUsize>,
    /// Print lines dropped after the evaluation's allowance ran out.
    dropped: Arc<AtomicUsize>,
    /// Bytes of print lines (and lines about them) actually logged.
    logged: Arc<AtomicUsize>,
    /// Alerts raised so far in the evaluation, per rule (in `RuleSet`
    /// order): see `alerts.max_per_rule`.
    raised: Arc<[AtomicUsize]>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            stop: Arc::default(),
            printed: Arc::default(),
            dropped: Arc::default(),
            logged: Arc::default(),
            raised: Arc::new([]),
        }
    }
}

impl Shared {
    /// An evaluation stopped by `stop` (checked between accounts and at
    /// every operation of a run).
    pub fn until(stop: Arc<AtomicBool>) -> Shared {
        Shared {
            stop,
            ..Shared::default()
        }
    }

    /// A copy sharing the stop flag, with alert counters for `rules` rules.
    fn for_rules(&self, rules: usize) -> Shared {
        Shared {
            raised: (0..rules).map(|_| AtomicUsize::new(0)).collect(),
            ..self.clone()
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes of the evaluation's print allowance, if it has them.
    fn take_print(&self, n: usize) -> bool {
        let ok = self.printed.fetch_add(n, Ordering::Relaxed) + n <= MAX_PRINT_PER_EVALUATION;
        if ok {
            self.logged.fetch_add(n, Ordering::Relaxed);
        }
        ok
    }

    /// Logs, once, what was dropped after the allowance ran out.
    fn report_dropped(&self) {
        let n = self.dropped.swap(0, Ordering::Relaxed);
        if n > 0 {
            tracing::warn!(
                target: "kamwatch::rule",
                "{n} more print line(s) from rules were dropped: an evaluation may print {} KiB in all",
                MAX_PRINT_PER_EVALUATION / 1024
            );
        }
    }
}

/// A rule's `print`: logged while the run and the evaluation have
/// allowance left, otherwise counted (see [`report_print`]).
fn rule_print(shared: &Shared, len: usize, log: impl FnOnce()) {
    let mut p = PRINTED.with(Cell::get);
    if p.lines < MAX_PRINT_LINES && p.bytes + len <= MAX_PRINT_BYTES && shared.take_print(len) {
        p.lines += 1;
        p.bytes += len;
        log();
    } else {
        p.dropped_lines += 1;
        p.dropped_bytes += len;
    }
    PRINTED.with(|c| c.set(p));
}

/// After a run: one line saying what it was not allowed to print.
fn report_print(shared: &Shared, rule: &str, account: &str) {
    let p = PRINTED.with(|c| c.replace(Printed::NONE));
    if p.dropped_lines == 0 {
        return;
    }
    if shared.take_print(128) {
        tracing::warn!(
            target: "kamwatch::rule",
            "rule {rule} for account {account}: {} print line(s) ({} bytes) dropped; a run may print {MAX_PRINT_LINES} lines or {} KiB",
            p.dropped_lines,
            p.dropped_bytes,
            MAX_PRINT_BYTES / 1024
        );
    } else {
        shared
            .dropped
            .fetch_add(p.dropped_lines as usize, Ordering::Relaxed);
    }
}

/// Builds the sandboxed engine with the rule API registered.
pub fn engine() -> Engine {
    engine_for(&Shared::default())
}

/// [`engine`] printing into, and stopped by, `shared`.
fn engine_for(shared: &Shared) -> Engine {
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
    let s = shared.clone();
    e.on_progress(move |ops| {
        // Every run starts counting at 1 (fresh global state), so a run
        // measures from its own start even where no one called
        // `start_run` (explain, the benchmark's naive loop).
        if ops == 1 {
            start_run();
        }
        if run_memory() > MAX_RUN_MEMORY as isize {
            Some(Dynamic::from_int(STOP_MEMORY))
        } else if s.stopped() {
            Some(Dynamic::from_int(STOP_SIGNAL))
        } else {
            None
        }
    });
    // `print` and `debug` share the run's and the evaluation's allowance.
    let s = shared.clone();
    e.on_print(move |line| {
        rule_print(
            &s,
            line.len(),
            || tracing::info!(target: "kamwatch::rule", "{line}"),
        )
    });
    let s = shared.clone();
    e.on_debug(move |line, src, pos| {
        rule_print(
            &s,
            line.len(),
            || tracing::debug!(target: "kamwatch::rule", "{}:{pos}: {line}", src.unwrap_or("")),
        )
    });
    api::register(&mut e);
    // Rhai's standard library can `sleep`: a rule that sleeps holds an
    // evaluation thread without spending operations, so neither the
    // operation limit nor SIGTERM would reach it. Registered functions come
    // before packages, so these replace it.
    e.register_fn(
        "sleep",
        |_: rhai::INT| -> Result<(), Box<rhai::EvalAltResult>> { Err(NO_SLEEP.into()) },
    );
    e.register_fn(
        "sleep",
        |_: rhai::FLOAT| -> Result<(), Box<rhai::EvalAltResult>> { Err(NO_SLEEP.into()) },
    );
    e
}

const NO_SLEEP: &str =
    "`sleep` is not available in rules: a rule reads the figures it is given and returns at once";

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
    shared: Shared,
}

impl<'r> Runner<'r> {
    /// Every rule for every account of `snap`, on this thread.
    pub fn evaluate(&mut self, snap: &Snapshot) -> Outcome {
        // A runner kept for many evaluations (the backtest's days) counts
        // each one's alerts afresh.
        for c in self.shared.raised.iter() {
            c.store(0, Ordering::Relaxed);
        }
        let out = self.day(snap).run(&snap.accounts);
        self.shared.report_dropped();
        out
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
        let strikes = vec![0; self.compiled.len()];
        AtSnapshot {
            runner: self,
            scope,
            base,
            end,
            book: snap.portfolio.data_bits(),
            strikes,
        }
    }
}

/// A scope with what every rule sees of `snap` besides the account:
/// `as_of` and `portfolio` (the given handle of the snapshot's).
fn snapshot_scope(snap: &Snapshot, portfolio: Arc<Portfolio>, explain: bool) -> Scope<'static> {
    api::set_as_of(snap.as_of, explain);
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
    /// The kinds of data the book has (`Portfolio::data_bits`).
    book: u8,
    /// Per rule: accounts in a row on which its run was stopped at a
    /// sandbox limit (operations, memory). At [`MAX_STRIKES`] the rule is
    /// not run again in this evaluation on this thread: each such run costs
    /// up to a million operations or 32 MiB of allocation.
    strikes: Vec<u32>,
}

/// See [`AtSnapshot::strikes`].
pub const MAX_STRIKES: u32 = 5;

impl AtSnapshot<'_, '_> {
    /// Every rule for each of `accounts`, in order.
    fn run(&mut self, accounts: &[Arc<AccountMetrics>]) -> Outcome {
        let mut out = Outcome::default();
        let (scope, base, end) = (&mut self.scope, self.base, self.end);
        for m in accounts {
            // SIGTERM: stop between accounts; the run in progress stops
            // at its next operation (the progress callback).
            if self.runner.shared.stopped() {
                out.interrupted = true;
                break;
            }
            // Tests make an evaluation panic with an account named so.
            #[cfg(test)]
            if m.id.starts_with("PANIC") {
                panic!("injected for account {}", m.id);
            }
            let bit = tier_bit(m.tier);
            let has = has_bits(m);
            let book = self.book;
            // `account` is a plain variable, not a constant: a method call on
            // a constant makes Rhai copy the value first. It is pushed once
            // per account, and again before a run only when a script changed
            // it, so no script can leave a changed `account` behind for the
            // next rule.
            let mut pushed = false;
            for (i, (rule, script)) in self
                .runner
                .rules
                .rules
                .iter()
                .zip(self.runner.compiled.iter_mut())
                .enumerate()
            {
                out.runs += 1;
                // A rule whose tiers exclude the account, or that needs data
                // the account does not have, is silent for it without
                // running the script.
                if rule.mask & bit == 0 || rule.needs & !has != 0 || rule.book_needs & !book != 0 {
                    continue;
                }
                if self.strikes[i] >= MAX_STRIKES {
                    out.errors.push(RunError {
                        rule: rule.name.clone(),
                        account_id: m.id.clone(),
                        message: format!(
                            "not run: the rule was stopped at its limits (operations or memory) for {MAX_STRIKES} accounts in a row in this evaluation; the account's alerts are left as they were"
                        ),
                    });
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
                start_run();
                out.scripts += 1;
                let result = script.run(&self.runner.engine, scope);
                let raised = RAISED.with(|r| std::mem::take(&mut *r.borrow_mut()));
                report_print(&self.runner.shared, &rule.name, &m.id);
                if result.is_ok() {
                    self.strikes[i] = 0;
                }
                match result {
                    Ok(()) if raised.is_empty() => {}
                    Ok(()) => {
                        // `alerts.max_per_rule`, counted across the
                        // evaluation's threads as the alerts come (so no
                        // runaway rule piles them up in memory). Alerts of
                        // accounts refused still count: once over, the rule
                        // stays over for the rest of the evaluation.
                        let cap = self.runner.rules.caps.per_rule;
                        let before =
                            self.runner.shared.raised[i].fetch_add(raised.len(), Ordering::Relaxed);
                        if before + raised.len() <= cap {
                            for r in raised {
                                out.findings.push(finding(rule, m, r));
                            }
                        } else {
                            out.errors.push(RunError {
                                rule: rule.name.clone(),
                                account_id: m.id.clone(),
                                message: format!(
                                    "the rule raised more alerts in this evaluation than alerts.max_per_rule ({cap}) allows; those of this account were not recorded and stay as they were. Fix the rule, or raise the cap if so many warnings are meant"
                                ),
                            });
                        }
                    }
                    Err(e) if is_stop(&e) => {
                        // Not the rule's fault, and not an outcome.
                        out.interrupted = true;
                        break;
                    }
                    Err(e) => {
                        if matches!(
                            *e,
                            EvalAltResult::ErrorTooManyOperations(_)
                                | EvalAltResult::ErrorTerminated(..)
                        ) {
                            self.strikes[i] += 1;
                        } else {
                            self.strikes[i] = 0;
                        }
                        out.errors.push(RunError {
                            rule: rule.name.clone(),
                            account_id: m.id.clone(),
                            message: describe_runtime(&e, &rule.path),
                        });
                    }
                }
            }
            if out.interrupted {
                break;
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
    let cap = ALERT_CAP.with(Cell::get);
    if RAISED.with(|r| r.borrow().len()) >= cap {
        return Err(format!(
            "alert(): more than {cap} alerts for one account (alerts.max_per_account); none of this run's alerts were recorded. Fix the rule, or raise the cap if so many are meant"
        )
        .into());
    }
    // A field given with another type than a string is refused, not
    // silently read as "" (two alerts with key "" would collide).
    let text = |k: &str| -> Result<Option<String>, Box<EvalAltResult>> {
        match spec.get(k) {
            None => Ok(None),
            Some(v) if v.is_string() => Ok(Some(v.to_string())),
            Some(v) => {
                Err(format!("alert(): `{k}` must be a string, got {} {v}", v.type_name()).into())
            }
        }
    };
    // Title and action may be given per locale.
    let words = |k: &str| -> Result<Option<String>, Box<EvalAltResult>> {
        match spec.get(k) {
            None => Ok(None),
            Some(v) => api::text_of(v, &format!("alert(): `{k}`"))
                .map(Some)
                .map_err(Into::into),
        }
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
    // A key may be an integer (an id): it is written in decimal.
    let key = match spec.get("key") {
        Some(v) if v.is_int() => v.as_int().map(|i| i.to_string()).unwrap_or_default(),
        Some(v) if !v.is_string() => {
            return Err(format!(
                "alert(): `key` must be a string or an integer, got {} {v}",
                v.type_name()
            )
            .into());
        }
        _ => text("key")?.unwrap_or_default(),
    };
    let severity = match text("severity")? {
        None => None,
        Some(t) => Some(Severity::parse(&t).ok_or_else(|| {
            format!("alert(): severity {t:?} is not one of info, warning, critical")
        })?),
    };
    let title = words("title")?
        .filter(|t| !t.trim().is_empty())
        .ok_or("alert(): `title` is required and must be a string")?;
    let mut figures = Vec::new();
    let mut units = Units::new();
    let mut add = |label: String, v: &Dynamic, unit: Option<crate::format::Unit>| {
        let (value, kind) = match v.read_lock::<api::Figure>() {
            Some(f) => (f.json(), Some(f.unit)),
            None => (to_json(v), None),
        };
        if let Some(u) = unit.or(kind) {
            units.insert(label.clone(), u);
        }
        figures.push((label, value));
    };
    if let Some(f) = spec.get("figures") {
        if f.is_map() {
            for (k, v) in f.clone().cast::<Map>() {
                add(k.to_string(), &v, None);
            }
        } else if f.is_array() {
            for pair in f.clone().cast::<rhai::Array>() {
                let bad = || -> Box<EvalAltResult> {
                    "alert(): each entry of `figures` must be a pair [\"label\", value], or [\"label\", value, \"kind\"]".into()
                };
                if !pair.is_array() {
                    return Err(bad());
                }
                let pair = pair.cast::<rhai::Array>();
                if pair.len() != 2 && pair.len() != 3 {
                    return Err(bad());
                }
                let unit = match pair.get(2) {
                    None => None,
                    Some(u) => Some(
                        u.clone()
                            .into_immutable_string()
                            .ok()
                            .and_then(|u| crate::format::Unit::parse(&u))
                            .ok_or_else(|| {
                                format!(
                                    "alert(): the figure {} has the kind {}, which is not one of {}",
                                    pair[0],
                                    pair[2],
                                    crate::format::Unit::known()
                                )
                            })?,
                    ),
                };
                // A label per locale is a map; anything else is written as
                // it always was (a number too).
                let label = if pair[0].is_map() {
                    api::text_of(&pair[0], "alert(): a figure's label")?
                } else {
                    pair[0].to_string()
                };
                add(label, &pair[1], unit);
            }
        } else {
            return Err("alert(): `figures` must be an array of [label, value] pairs or a map, e.g. [[\"revenue\", 1200.0]]".into());
        }
    }
    let action = words("action")?.unwrap_or_default();
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
    RAISED.with(|r| {
        r.borrow_mut().push(Raised {
            key,
            severity,
            title,
            figures,
            units,
            action,
            line,
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

/// The names of the rules in `dir` (each `*.rhai` file's stem), sorted,
/// without compiling them; none when the folder cannot be read.
pub fn rule_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
                .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

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
        let known = api::Known::of(&engine);
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
                Ok(rule) => {
                    let unknown = unknown_calls(&known, &rule, &source);
                    if unknown.is_empty() {
                        rules.push(rule);
                    } else {
                        errors.extend(unknown);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        Ok((
            RuleSet {
                engine,
                rules,
                caps: AlertCaps::default(),
                style: Default::default(),
                seasons: Arc::new(crate::model::seasons::Seasons::shipped()),
            },
            errors,
        ))
    }

    /// A set with no rules.
    pub fn empty() -> RuleSet {
        RuleSet {
            engine: engine(),
            rules: Vec::new(),
            caps: AlertCaps::default(),
            style: Default::default(),
            seasons: Arc::new(crate::model::seasons::Seasons::shipped()),
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
        let known = api::Known::of(&engine);
        let mut rules = Vec::new();
        for (name, src) in sources {
            let rule = compile(&engine, Path::new(&format!("{name}.rhai")), src)?;
            if let Some(e) = unknown_calls(&known, &rule, src).into_iter().next() {
                return Err(e);
            }
            rules.push(rule);
        }
        Ok(RuleSet {
            engine,
            rules,
            caps: AlertCaps::default(),
            style: Default::default(),
            seasons: Arc::new(crate::model::seasons::Seasons::shipped()),
        })
    }

    /// Loads the rules folder of the config and applies its `rule_settings`.
    /// Overrides naming no loaded rule are returned as messages.
    pub fn load_config(
        cfg: &crate::config::Loaded,
    ) -> Result<(RuleSet, Vec<CompileError>, Vec<String>), LoadError> {
        let (mut set, errors) = RuleSet::load_dir(&cfg.rules())?;
        set.caps = AlertCaps {
            per_account: cfg.cfg.alerts.max_per_account,
            per_rule: cfg.cfg.alerts.max_per_rule,
        };
        set.style = cfg.style();
        // Every season was read when the config was loaded.
        set.seasons = Arc::new(cfg.cfg.seasons.clone());
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
        overrides: &std::collections::BTreeMap<String, RuleSettings>,
    ) -> Vec<String> {
        let mut unknown = Vec::new();
        for (name, o) in overrides {
            match self.rules.iter_mut().find(|r| &*r.name == name) {
                Some(r) => {
                    let mut s = r.settings.clone();
                    s.overlay(o);
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
        self.evaluate_until(snap, Arc::default())
    }

    /// `evaluate`, stopped early once `stop` is set (the daemon's SIGTERM):
    /// the outcome is then `interrupted`.
    pub fn evaluate_until(&self, snap: &Snapshot, stop: Arc<AtomicBool>) -> Outcome {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        self.evaluate_shared(snap, threads, &Shared::until(stop))
    }

    /// `evaluate` on at most `threads` threads.
    ///
    /// Accounts are ranked largest first, and the large ones run more rules
    /// (tier filters), so fixed halves would leave one thread idle: threads
    /// take blocks of `BLOCK` accounts from a shared counter instead, and
    /// the blocks' outcomes are put back in account order.
    pub fn evaluate_with(&self, snap: &Snapshot, threads: usize) -> Outcome {
        self.evaluate_shared(snap, threads, &Shared::default())
    }

    fn evaluate_shared(&self, snap: &Snapshot, threads: usize, shared: &Shared) -> Outcome {
        let shared = &shared.for_rules(self.rules.len());
        const BLOCK: usize = 256;
        let blocks = snap.accounts.len().div_ceil(BLOCK);
        let threads = threads.max(1).min(blocks.max(1));
        if threads == 1 {
            // A panic (a bug, never a script's doing) fails every account:
            // their alerts stay as they were; none is taken as cleared.
            return std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.runner_with(shared.clone()).evaluate(snap)
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
                            let mut runner = self.runner_with(shared.clone());
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
            out.scripts += p.scripts;
            out.interrupted |= p.interrupted;
        }
        shared.report_dropped();
        out
    }

    /// An outcome in which every enabled rule failed for each of
    /// `accounts`, because their evaluation stopped (`why`).
    fn failed(&self, accounts: &[Arc<AccountMetrics>], why: &str) -> Outcome {
        let mut out = Outcome::default();
        for m in accounts {
            for rule in self.rules.iter().filter(|r| r.enabled()) {
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
        self.runner_with(Shared::default().for_rules(self.rules.len()))
    }

    /// [`runner`](Self::runner) for one thread of an evaluation that
    /// shares `shared` (its stop flag, print allowance and alert counts,
    /// one per rule: see [`Shared::for_rules`]).
    fn runner_with(&self, mut shared: Shared) -> Runner<'_> {
        if shared.raised.len() != self.rules.len() {
            shared = shared.for_rules(self.rules.len());
        }
        ALERT_CAP.with(|c| c.set(self.caps.per_account));
        api::set_style(&self.style);
        api::set_seasons(&self.seasons);
        // Nothing left over from a run a panic cut short.
        RAISED.with(|r| r.borrow_mut().clear());
        PRINTED.with(|c| c.set(Printed::NONE));
        Runner {
            rules: self,
            engine: engine_for(&shared),
            compiled: self.rules.iter().map(|r| Compiled::new(&r.ast)).collect(),
            shared,
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
            style: self.style.clone(),
        };
        if r.mask & tier_bit(m.tier) == 0 {
            ex.skipped = Some(if r.enabled() {
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
            let what: Vec<&str> = RuleSettings::NEEDS
                .iter()
                .enumerate()
                .filter(|(i, _)| missing & 1 << i != 0)
                .map(|(_, x)| *x)
                .collect();
            ex.skipped = Some(format!(
                "the rule needs {} and the account has none; the script did not run",
                what.join(", ")
            ));
            return Ok(ex);
        }
        let missing = r.book_needs & !snap.portfolio.data_bits();
        if missing != 0 {
            let what: Vec<&str> = RuleSettings::NEEDS
                .iter()
                .enumerate()
                .filter(|(i, _)| missing & (1 << i) != 0)
                .map(|(_, n)| *n)
                .collect();
            ex.skipped = Some(format!(
                "the rule needs {} in the book (book_needs) and no account has any; the script did not run",
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
        ALERT_CAP.with(|c| c.set(self.caps.per_account));
        api::set_style(&self.style);
        api::set_seasons(&self.seasons);
        start_run();
        let result = self.engine.run_ast_with_scope(&mut scope, &r.ast);
        PRINTED.with(|c| c.set(Printed::NONE));
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
        severity: r.severity.or(rule.severity).unwrap_or(Severity::Warning),
        title: r.title,
        figures: r.figures,
        units: r.units,
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
    /// How the findings' figures are written.
    pub style: crate::format::Style,
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
                let unit = x.units.get(k).copied();
                write!(f, "  {k}: {}", self.style.value(v, unit))?;
                match unit {
                    Some(u) => writeln!(f, " ({} {v})", u.name())?,
                    None => writeln!(f)?,
                }
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
            let mut rule = Rule {
                name,
                path: path.to_path_buf(),
                reads_skus: source.contains("main_skus") || source.contains("stock_cover"),
                ast,
                severity: None,
                mask: 0,
                needs: 0,
                book_needs: 0,
                settings: RuleSettings::default(),
            };
            rule.set_settings(settings);
            Ok(rule)
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
        return settings_from_map(&map).map_err(|e| (line, format!("SETTINGS: {e}")));
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
/// Every call in `rule` that no function answers, as compile errors with
/// the line, column and a caret: a misspelt function would otherwise fail
/// for every account at run time.
/// For `check` with `mail.locale: en`: each `alert()` whose title, action
/// or figure labels are Chinese strings only, as "file:line:column: ...".
pub fn chinese_only_texts(rule: &Rule) -> Vec<String> {
    api::chinese_only_texts(&rule.ast)
        .into_iter()
        .map(|(pos, what)| {
            format!(
                "{}:{}:{}: this alert()'s texts ({what}) are in Chinese only, and English readers (mail.locale: en) get them as they are; give them per locale, #{{ \"zh-CN\": \"...\", en: \"...\" }}",
                rule.path.display(),
                pos.line().unwrap_or(0),
                pos.position().unwrap_or(0)
            )
        })
        .collect()
}

/// Texts per locale with a key that is no locale are reported the same way.
fn unknown_calls(known: &api::Known, rule: &Rule, source: &str) -> Vec<CompileError> {
    known
        .unknown_calls(&rule.ast)
        .into_iter()
        .map(|u| (u.pos, u.to_string()))
        .chain(api::bad_text_maps(&rule.ast))
        .map(|(pos, message)| CompileError {
            path: rule.path.clone(),
            line: pos.line().unwrap_or(0),
            column: pos.position().unwrap_or(0),
            message,
            excerpt: excerpt(source, pos),
        })
        .collect()
}

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

/// Whether a run was stopped by the stop flag (SIGTERM), not by its rule.
fn is_stop(e: &EvalAltResult) -> bool {
    matches!(e, EvalAltResult::ErrorTerminated(t, _) if t.as_int() == Ok(STOP_SIGNAL))
}

fn describe_runtime(e: &EvalAltResult, path: &Path) -> String {
    let pos = e.position();
    let what = match e {
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "stopped after {MAX_OPERATIONS} operations (an endless loop?); the rule's other accounts and the other rules still ran"
        ),
        EvalAltResult::ErrorTerminated(token, _) if token.as_int() == Ok(STOP_MEMORY) => format!(
            "stopped: the run held more than {} MiB of memory (a map or array growing in a loop?); the rule's other accounts and the other rules still ran",
            MAX_RUN_MEMORY / (1024 * 1024)
        ),
        EvalAltResult::ErrorTerminated(..) => {
            "stopped: the daemon is shutting down; the evaluation runs again at the next start"
                .to_string()
        }
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
    fn sleep_is_refused_at_once() {
        let e = engine();
        for script in ["sleep(1000);", "sleep(2.5);"] {
            let started = std::time::Instant::now();
            let err = e.run(script).expect_err(script).to_string();
            assert!(err.contains("`sleep` is not available in rules"), "{err}");
            assert!(started.elapsed() < std::time::Duration::from_secs(2));
        }
    }
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

    #[test]
    fn rules_see_the_seasons_of_their_set() {
        // As of 2026-11-28: 双11 is over; 春节 2027 is 02-06, its stocking
        // peak (the shipped 春节 - 30 to 元宵) starts 2027-01-07, in 40 days.
        let src = r#"
            let s = season("春节");
            let m = season("中秋");
            let n = next_season();
            alert(#{ title: `${s.start}..${s.end} ${s.days_until} ${s.in_peak} ${m.start} ${n.name} ${days_until_peak()} ${from_lunar(2027, 8, 15)}` });
        "#;
        let mut rs = RuleSet::from_sources(&[("s", src)]).unwrap();
        let snap = crate::metrics::tests_support::snapshot_one();
        let out = rs.evaluate(&snap);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(
            out.findings[0].title,
            "2027-01-07..2027-02-20 40 false 2027-08-16 春节 40 2027-09-15"
        );
        // The set's own seasons: a name it lacks is an error naming those
        // it has; without seasons there is no next peak.
        let own = crate::model::seasons::Season::parse("店庆", "12-01", "12-07").unwrap();
        rs.seasons = Arc::new(crate::model::seasons::Seasons { list: vec![own] });
        let out = rs.evaluate(&snap);
        assert_eq!(out.errors.len(), 1, "{:?}", out.findings);
        assert!(
            out.errors[0]
                .message
                .contains("no such season; the config's seasons are 店庆"),
            "{}",
            out.errors[0].message
        );
        let none = RuleSet {
            seasons: Arc::new(crate::model::seasons::Seasons::default()),
            ..RuleSet::from_sources(&[(
                "n",
                "alert(#{ title: `${days_until_peak()} ${type_of(next_season())}` });",
            )])
            .unwrap()
        };
        let out = none.evaluate(&snap);
        assert_eq!(out.findings[0].title, "-1 ()");
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

    /// A snapshot of `n` tier-A accounts KH1..KHn.
    fn book_of(n: usize) -> Snapshot {
        let mut snap = crate::metrics::tests_support::snapshot_one();
        for i in 2..=n {
            let id = format!("KH{i}");
            snap.accounts.push(Arc::new(AccountMetrics {
                tier: "A",
                prev_tier: "A",
                ..AccountMetrics::empty(&id, "测试")
            }));
        }
        snap
    }

    #[test]
    fn a_rule_that_hoards_memory_is_stopped_and_others_run() {
        let rs = RuleSet::from_sources(&[
            (
                "hoard",
                "let big = \"x\"; for i in 0..15 { big += big; }\n\
                 let m = #{}; let i = 0; loop { m[`k${i}`] = big + i; i += 1; }",
            ),
            ("ok", "alert(#{ title: \"t\" });"),
        ])
        .unwrap();
        let out = rs.evaluate_with(&book_of(3), 1);
        assert_eq!(out.errors.len(), 3, "{:?}", out.errors);
        for e in &out.errors {
            assert_eq!(&*e.rule, "hoard");
            assert!(e.message.contains("more than 32 MiB of memory"), "{e}");
            assert!(e.message.contains("hoard.rhai:2:"), "{e}");
        }
        assert_eq!(out.findings.len(), 3);
        // What the runs held was freed: a fourth evaluation starts afresh.
        assert!(run_memory() < MAX_RUN_MEMORY as isize);
    }

    #[test]
    fn a_run_measures_memory_from_its_own_start() {
        // This thread holds 40 MiB before the run: not the run's doing.
        let hold = vec![1u8; 40 << 20];
        let e = engine();
        let ast = e.compile("let x = [1, 2, 3]; x.len()").unwrap();
        assert_eq!(e.eval_ast::<i64>(&ast).unwrap(), 3);
        drop(hold);
    }

    #[test]
    fn the_stop_flag_interrupts_an_evaluation() {
        let rs = RuleSet::from_sources(&[("ok", "alert(#{ title: \"t\" });")]).unwrap();
        let stop = Arc::new(AtomicBool::new(true));
        let out = rs.evaluate_until(&book_of(3), stop);
        assert!(out.interrupted);
        assert!(out.findings.is_empty());
        // Mid-run: the progress callback stops the script at once, and the
        // stop is not reported as the rule's failure.
        let rs =
            RuleSet::from_sources(&[("slow", "let n = 0; for i in 0..50000 { n += i; }")]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let setter = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            flag.store(true, Ordering::Relaxed);
        });
        let out = rs.evaluate_until(&book_of(1000), stop);
        setter.join().unwrap();
        assert!(out.interrupted);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
    }

    #[test]
    fn a_rule_stopped_at_its_limits_again_and_again_is_set_aside() {
        let rs =
            RuleSet::from_sources(&[("spin", "loop { }"), ("ok", "alert(#{ title: \"t\" });")])
                .unwrap();
        let out = rs.evaluate_with(&book_of(20), 1);
        let spin: Vec<&RunError> = out.errors.iter().filter(|e| &*e.rule == "spin").collect();
        assert_eq!(spin.len(), 20, "every account is accounted for");
        let stopped = spin
            .iter()
            .filter(|e| e.message.contains("endless loop"))
            .count();
        assert_eq!(stopped, MAX_STRIKES as usize);
        assert!(spin[MAX_STRIKES as usize].message.starts_with("not run:"));
        assert_eq!(out.findings.len(), 20, "the other rule ran everywhere");
    }

    #[test]
    fn alerts_are_capped_per_account_and_per_rule() {
        let mut rs = RuleSet::from_sources(&[
            (
                "flood",
                "for i in 0..1000 { alert(#{ title: \"t\", key: i }); }",
            ),
            (
                "three",
                "for i in 0..3 { alert(#{ title: \"t\", key: i }); }",
            ),
            ("one", "alert(#{ title: \"t\" });"),
        ])
        .unwrap();
        rs.caps = AlertCaps {
            per_account: 5,
            per_rule: 7,
        };
        let out = rs.evaluate_with(&book_of(4), 2);
        // flood: over the per-account cap everywhere, nothing recorded.
        let flood: Vec<_> = out.errors.iter().filter(|e| &*e.rule == "flood").collect();
        assert_eq!(flood.len(), 4);
        assert!(
            flood[0]
                .message
                .contains("more than 5 alerts for one account")
        );
        assert!(!out.findings.iter().any(|f| &*f.rule == "flood"));
        // three: 12 in the evaluation, cap 7: KH1 and KH2 kept whole (6),
        // KH3 would cross the cap, so KH3 and KH4 failed (one block of
        // accounts: in book order).
        let kept: Vec<&str> = out
            .findings
            .iter()
            .filter(|f| &*f.rule == "three")
            .map(|f| f.account.id.as_str())
            .collect();
        assert_eq!(kept, ["KH1", "KH1", "KH1", "KH2", "KH2", "KH2"]);
        let failed: Vec<&str> = out
            .errors
            .iter()
            .filter(|e| &*e.rule == "three")
            .map(|e| e.account_id.as_str())
            .collect();
        assert_eq!(failed, ["KH3", "KH4"]);
        assert!(out.errors.iter().any(|e| {
            e.message
                .contains("more alerts in this evaluation than alerts.max_per_rule (7)")
        }));
        // one: under both caps, untouched.
        assert_eq!(out.findings.iter().filter(|f| &*f.rule == "one").count(), 4);
    }

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
    fn prints_are_capped_per_run_and_per_evaluation() {
        let rs = RuleSet::from_sources(&[(
            "chatty",
            "for i in 0..100 { print(\"0123456789012345678901234567890123456789\"); }",
        )])
        .unwrap();
        let shared = Shared::default();
        let mut runner = rs.runner_with(shared.clone());
        // 20 lines of 40 bytes per run; 1 MiB in all is about 1,300 runs.
        let out = runner.evaluate(&book_of(2000));
        assert!(out.errors.is_empty());
        let logged = shared.logged.load(Ordering::Relaxed);
        assert!(logged <= MAX_PRINT_PER_EVALUATION, "{logged}");
        assert!(logged > MAX_PRINT_PER_EVALUATION - 1024, "{logged}");
        // What was dropped after the allowance ran out was reported once
        // (and the count reset).
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 0);
        assert_eq!(PRINTED.with(Cell::get).lines, 0);
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
        assert_eq!(f.figures[0], ("revenue".to_string(), 22930.4.into()));
        assert_eq!(f.figures[1], ("orders".to_string(), 6.into()));
        assert_eq!(f.figures[6], ("since".to_string(), "2031-02-03".into()));
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
            assert_eq!(f[0].figures[0].0, want[1]);
            assert!(f[0].units.contains_key(want[1]));
            assert_eq!(f[0].action, want[2]);
            assert_eq!(f[1].title, want[3]);
            assert_eq!(f[1].action, want[4]);
            assert_eq!(f[2].title, want[5]);
            assert_eq!(f[2].figures[0].0, "7", "a number as a label, as before");
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
            ("empty", "alert(#{ title: #{} });"),
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

    #[test]
    fn check_finds_texts_for_unknown_locales_before_they_run() {
        for src in [
            "alert(#{ title: #{ zh: \"x\", en: \"y\" } });",
            "let t = \"y\";\nif account.tier == \"Z\" { alert(#{ title: #{ \"zh-CN\": t, \"en-GB\": t } }); }",
        ] {
            let e = RuleSet::from_sources(&[("l", src)]).err().expect(src);
            assert!(e.message.contains("not a locale"), "{e}");
            assert_eq!(e.line, src.lines().count(), "{e}");
        }
        // Other maps are not texts.
        RuleSet::from_sources(&[(
            "ok",
            "let m = #{ zh: 1, fr: 2 };\nalert(#{ title: tr(#{ en: \"a\" }) });",
        )])
        .unwrap();
    }

    #[test]
    fn explain_writes_figures_by_kind() {
        let rs = RuleSet::from_sources(&[(
            "x",
            "alert(#{ title: \"t\", figures: [[\"rev\", money(22930)], [\"n\", 6.0]] });",
        )])
        .unwrap();
        let snap = crate::metrics::tests_support::snapshot_one();
        let id = snap.accounts[0].id.clone();
        let text = rs.explain(&snap, "x", &id).unwrap().to_string();
        assert!(text.contains("  rev: ¥2.29万 (money 22930.0)"), "{text}");
        assert!(text.contains("  n: 6\n"), "{text}");
    }

    /// A window of no days or a negative offset is the rule's mistake,
    /// reported with the call, never read as "no revenue" (which could
    /// raise or clear an alert).
    #[test]
    fn a_window_a_rule_cannot_mean_is_an_error_naming_the_call() {
        let snap = crate::metrics::tests_support::snapshot_one();
        for (call, want) in [
            (
                "account.revenue(-5)",
                "account.revenue(-5): a window of -5 days; give 1 to 36500 days",
            ),
            ("account.orders(0)", "account.orders(0): a window of 0 days"),
            (
                "account.revenue(30, -1)",
                "account.revenue(30, -1): an offset of -1 days",
            ),
            ("account.margin_pct_prev(100000)", "a window of 100000 days"),
            (
                "portfolio.revenue(-1)",
                "portfolio.revenue(-1): a window of -1 days",
            ),
        ] {
            let src = format!("let x = {call};\nalert(#{{ title: \"t\" }});");
            let rs = RuleSet::from_sources(&[("w", src.as_str())]).unwrap();
            let out = rs.evaluate(&snap);
            assert!(out.findings.is_empty(), "{call}");
            let e = out
                .errors
                .first()
                .unwrap_or_else(|| panic!("{call}: no error"));
            assert!(e.to_string().contains(want), "{call}: {e}");
        }
        let ok = "if account.revenue(30) >= 0.0 && account.revenue(30, 0) >= 0.0 { alert(#{ title: \"t\" }); }";
        let out = RuleSet::from_sources(&[("w", ok)]).unwrap().evaluate(&snap);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.findings.len(), 1);
    }

    #[test]
    fn settings_are_read_and_filter_tiers() {
        let src = "const SETTINGS = #{ tiers: [\"B\"], severity: \"critical\", for_evaluations: 2, repeat_days: 7, recipients: [\"x@example.com\"] };\nalert(#{ title: \"t\" });";
        let rs = RuleSet::from_sources(&[("s", src)]).unwrap();
        let s = rs.rules[0].settings();
        assert_eq!(s.tiers, Some(vec!["B".to_string()]));
        assert_eq!(s.severity.as_deref(), Some("critical"));
        assert_eq!(
            (s.for_evaluations, s.repeat_interval_days),
            (Some(2), Some(7))
        );
        assert_eq!(s.recipients, Some(vec!["x@example.com".to_string()]));
        // The only account is tier A: skipped, but counted as decided; no
        // script ran.
        let snap = crate::metrics::tests_support::snapshot_one();
        let out = rs.evaluate(&snap);
        assert!(out.findings.is_empty());
        assert_eq!((out.runs, out.scripts), (1, 0));
        // A rule for every tier runs its script.
        let all = RuleSet::from_sources(&[("s", "alert(#{ title: \"t\" });")]).unwrap();
        let out = all.evaluate(&snap);
        assert_eq!((out.runs, out.scripts, out.findings.len()), (1, 1, 1));
        let ex = rs.explain(&snap, "s", "KH1").unwrap();
        assert!(
            ex.skipped.as_deref().unwrap_or("").contains("tier A"),
            "{ex}"
        );

        let mut rs = RuleSet::from_sources(&[("s", src)]).unwrap();
        let mut o = RuleSettings::default();
        o.tiers = Some(vec!["A".into()]);
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
            (
                "const SETTINGS = #{ tiers: [] };",
                "an empty list would leave the rule no account",
            ),
            (
                "const SETTINGS = #{ tiers: [\"A\", \"A\"] };",
                "\"A\" is listed twice",
            ),
            (
                "const SETTINGS = #{ repeat_interval_days: -1 };",
                "must be 0 or more",
            ),
            (
                "const SETTINGS = #{ repeat_interval_days: 5000000000 };",
                "too large: at most 4294967295",
            ),
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
            Some(vec!["receivables".to_string()])
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
