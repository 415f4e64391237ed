//! The sandbox every rule runs in: the engine's limits (operations, call
//! depth, expression depth, string, array and map sizes), a memory limit
//! per run measured by the process's global allocator ([`MemoryMeter`],
//! counting each thread's bytes), `print`/`debug` to the log within an
//! allowance per run and per evaluation, `eval` and `sleep` refused, and a
//! stop flag (the daemon's SIGTERM) that ends a run at its next operation.
//! Rhai is built without modules, closures and custom syntax, so a rule
//! imports nothing; it has no file, network or process access of its own
//! and we register none. Also: how a run's error reads for a person.
//! Touches nothing but the log.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rhai::{Dynamic, Engine, EvalAltResult};

use super::api;
use super::rhai_internals;

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

/// The tokens a run is terminated with from the progress callback.
const STOP_MEMORY: i64 = 1;
const STOP_SIGNAL: i64 = 2;

thread_local! {
    /// Net bytes this thread has allocated and not freed (see [`MemoryMeter`]).
    static NET_BYTES: Cell<isize> = const { Cell::new(0) };
    /// `NET_BYTES` when the current run started.
    static RUN_BASE: Cell<isize> = const { Cell::new(0) };
    /// What the current run printed and what it was not allowed to.
    static PRINTED: Cell<Printed> = const { Cell::new(Printed::NONE) };
}

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
pub(super) fn run_memory() -> isize {
    NET_BYTES.with(Cell::get) - RUN_BASE.with(Cell::get)
}

/// Marks the start of a run on this thread (its memory counts from here).
pub(super) fn start_run() {
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
    pub(super) raised: Arc<[AtomicUsize]>,
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
    pub(super) fn for_rules(&self, rules: usize) -> Shared {
        Shared {
            raised: (0..rules).map(|_| AtomicUsize::new(0)).collect(),
            ..self.clone()
        }
    }

    pub(super) fn stopped(&self) -> bool {
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
    pub(super) fn report_dropped(&self) {
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

/// Forgets what this thread's last run printed (a run a panic cut short,
/// or one run outside an evaluation).
pub(super) fn forget_prints() {
    PRINTED.with(|c| c.set(Printed::NONE));
}

/// After a run: one line saying what it was not allowed to print.
pub(super) fn report_print(shared: &Shared, rule: &str, account: &str) {
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
pub(super) fn engine_for(shared: &Shared) -> Engine {
    let mut e = Engine::new();
    e.disable_symbol("eval");
    rhai_internals::without_interner(&mut e);
    e.set_max_operations(MAX_OPERATIONS);
    e.set_max_call_levels(MAX_CALL_LEVELS);
    e.set_max_expr_depths(64, 32);
    e.set_max_string_size(MAX_STRING);
    e.set_max_array_size(MAX_ARRAY);
    e.set_max_map_size(MAX_MAP);
    let s = shared.clone();
    e.on_progress(move |ops| {
        // A run measures from its own start even where no one called
        // `start_run` (explain, the benchmark's naive loop).
        if rhai_internals::run_started(ops) {
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

/// Whether a run was stopped by the stop flag (SIGTERM), not by its rule.
pub(super) fn is_stop(e: &EvalAltResult) -> bool {
    matches!(e, EvalAltResult::ErrorTerminated(t, _) if t.as_int() == Ok(STOP_SIGNAL))
}

/// A run's error as a person reads it: `file:line:column: what`, the
/// sandbox's stops said in words.
pub(super) fn describe_runtime(e: &EvalAltResult, path: &Path) -> String {
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

/// What a rule reads that nothing defines ([`undefined_variable`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Undefined {
    pub at: rhai::Position,
    pub name: String,
    /// Read inside a function (or a closure) of a name the run gives only
    /// the script's own body: `account`, `portfolio` or `as_of`.
    pub in_function: bool,
}

/// The names a run gives a rule's body (not its functions).
const RUN_NAMES: [&str; 3] = ["account", "portfolio", "as_of"];

/// The first variable `source` reads that neither the script nor the run
/// defines (a deleted `const`, a typo), with its position: Rhai would fail
/// it at run time for every account ("Variable not found"), so `check` and
/// the loader say it at compile time. Then the same for what the run gives
/// the body only: a function sees its parameters alone, so one that reads
/// `account` without being given it (a figures function,
/// `Fn("figs")` instead of `Fn("figs").curry(account)`) would fail each
/// time it is called. Parsed by a bare engine in strict variables mode,
/// first with the run's names as constants of the scope (which every
/// function sees at parse time), then with them as the body's own
/// variables (which no function sees); the ASTs are thrown away, so
/// nothing of them reaches a run.
pub(super) fn undefined_variable(source: &str) -> Option<Undefined> {
    let mut e = Engine::new_raw();
    e.set_strict_variables(true);
    e.set_max_expr_depths(0, 0);
    e.set_optimization_level(rhai::OptimizationLevel::None);
    let undefined = |scope: &rhai::Scope, source: &str| match e.compile_with_scope(scope, source) {
        Err(err) => match err.err_type() {
            rhai::ParseErrorType::VariableUndefined(name) => Some((err.position(), name.clone())),
            _ => None,
        },
        Ok(_) => None,
    };
    let mut scope = rhai::Scope::new();
    for name in RUN_NAMES {
        scope.push_constant(name, ());
    }
    if let Some((at, name)) = undefined(&scope, source) {
        return Some(Undefined {
            at,
            name,
            in_function: false,
        });
    }
    // The body's own, on a line of their own before the script's first.
    let mut body = RUN_NAMES.map(|n| format!("let {n} = ();")).join(" ");
    body.push('\n');
    body.push_str(source);
    let (at, name) = undefined(&rhai::Scope::new(), &body)?;
    let at = match (at.line(), at.position()) {
        (Some(l), Some(c)) if l > 1 => rhai::Position::new((l - 1) as u16, c as u16),
        (Some(l), None) if l > 1 => rhai::Position::new((l - 1) as u16, 0),
        _ => rhai::Position::NONE,
    };
    Some(Undefined {
        at,
        name,
        in_function: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;
    use crate::rules::test_books::book_of;

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
        assert_eq!(out.errors[0].account_id, "KH1");
        assert!(
            out.errors[0]
                .to_string()
                .contains("rule loop failed for account KH1")
        );
        assert_eq!(out.findings.len(), 1);
        assert_eq!(
            out.findings[0].figures_owned(),
            vec![("n".to_string(), 1.into())]
        );
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
}
