//! Every place kamwatch reaches into Rhai's internals or leans on how Rhai
//! works inside, in one file, each with why it is needed. Upgrading Rhai
//! means reading this file first; the tests at the bottom (and the rule
//! benchmark, docs/benchmarks.md) fail when a trick stops holding.
//!
//! - [`without_interner`]: Rhai's string interner is, with the `sync`
//!   feature, one lock shared by every thread, taken at each property
//!   access (`account.tier`): it ran the evaluation threads one at a time.
//! - [`run_started`]: the progress callback is the only hook called inside
//!   a run; every run starts counting operations at 1 (fresh global
//!   state), which is how the sandbox knows a run began where nobody told
//!   it (explain, the benchmark's naive loop).
//! - [`thread_copy`]: an `AST` clone shares its function library and
//!   source name by reference count; shared between threads, those counts
//!   made each core wait on the other's cache. A merge with an empty AST
//!   gives a copy that shares nothing.
//! - [`Compiled`]: `Engine::run_ast_with_scope` throws away its function
//!   resolution cache after every run, and Rhai caches a function only on
//!   its second call within one cache, so every run resolved every call
//!   from scratch. `Compiled::run` is what `run_ast_with_scope` does,
//!   through the (deprecated, `internals`) `eval_statements_raw`, keeping
//!   the cache for as long as the thread runs the rule.
//! - [`drop_folded_constants`]: the optimizer puts a `const`'s value
//!   everywhere it is read but still runs the declaration at every run
//!   (a fifth of the shipped rules' instructions); the leading ones are cut
//!   from the AST when nothing reads their names any more.
//! - [`constants`]: a rule's top-level `const`s with their lines, read
//!   from the AST's statements (`Stmt::Var` and its flags) before
//!   `drop_folded_constants` cuts the leading ones; Rhai's public
//!   `iter_literal_variables` gives neither lines nor the computed ones.
//! - [`account_intact`]: `account` stays in a scope reused across rules
//!   and is pushed again only when a script changed it; this checks the
//!   scope's value is still the untouched handle.
//!
//! Touches nothing outside the engine, ASTs and scopes it is given.

use std::collections::BTreeMap;
use std::sync::Arc;

use rhai::{AST, Dynamic, Engine, EvalAltResult, ImmutableString, Scope};

use super::api::Account;
use crate::metrics::AccountMetrics;

/// Turns off the engine's string interner (see the module's notes).
pub(super) fn without_interner(e: &mut Engine) {
    e.set_max_strings_interned(0);
}

/// Whether the progress callback's `ops` is the first operation of a run.
pub(super) fn run_started(ops: u64) -> bool {
    ops == 1
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
pub(super) struct Compiled {
    ast: AST,
    source: Option<ImmutableString>,
    caches: rhai::Caches,
}

impl Compiled {
    pub(super) fn new(ast: &AST) -> Self {
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
    pub(super) fn run(
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
pub(super) fn account_intact(scope: &Scope, m: &Arc<AccountMetrics>) -> bool {
    scope
        .get("account")
        .and_then(|d| d.read_lock::<Account>())
        .is_some_and(|a| a.is(m) && !a.explain)
}

/// A rule's top-level constant as compiled.
#[derive(Debug, Clone)]
pub struct Constant {
    /// The line of its (first) declaration.
    pub line: usize,
    /// The value; None when it is not a literal (the script computes it
    /// when it runs, e.g. `const A = account.tier;`).
    pub value: Option<Dynamic>,
    /// How many times the script declares the name at its top level.
    pub declared: usize,
}

/// The top-level `const`s of a compiled script, by name. The optimizer has
/// folded what it can (`7 * 2` is 14 by then).
pub(super) fn constants(ast: &AST) -> BTreeMap<String, Constant> {
    use rhai::{ASTFlags, Stmt};
    let mut out: BTreeMap<String, Constant> = BTreeMap::new();
    for st in ast.statements() {
        let Stmt::Var(x, flags, pos) = st else {
            continue;
        };
        if !flags.contains(ASTFlags::CONSTANT) {
            continue;
        }
        let value =
            x.1.is_constant()
                .then(|| x.1.get_literal_value(None))
                .flatten();
        out.entry(x.0.name.to_string())
            .and_modify(|c| c.declared += 1)
            .or_insert(Constant {
                line: pos.line().unwrap_or(0),
                value,
                declared: 1,
            });
    }
    out
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
pub(super) fn drop_folded_constants(ast: AST) -> AST {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{RuleSet, engine};

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
}
