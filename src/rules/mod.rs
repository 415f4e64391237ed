//! Rules: loads the `.rhai` rule scripts, compiles each once, and runs every
//! rule against every account of a metrics snapshot in a sandbox. A rule
//! raises a warning with `alert(#{...})`; what it raises comes back as
//! `Finding`s. This stage reads the rules folder and the snapshot it is
//! given; it writes nothing.
//!
//! Rooms (each imports its siblings, never this facade, and below the
//! rules stage only config, format, metrics, model and store):
//! - `set`: a [`RuleSet`] of compiled [`Rule`]s, loaded from the folder
//!   with the config's overrides; compile errors with file:line:column.
//! - `settings`: a rule's `const SETTINGS = #{...}`, read once after
//!   compiling, and its tiers and needs as bit masks.
//! - `declared`: a rule's top-level constants, read when it compiles, and
//!   the [`RuleValues`] (visit cadence, windows) the review and the charts
//!   take from the shipped rules that declare them.
//! - `sandbox`: the engine and its limits, the memory meter, print
//!   allowances, the stop flag.
//! - `run`: the parallel runner.
//! - `changed`: which rule x account pairs an evaluation after a small
//!   drop must run again, and the full outcome put back together.
//! - `reads`: what a rule may read beyond its account's own data.
//! - `explain`: `eval --explain`.
//! - `api`: what a rule can call (one file per group), `alert()`, and the
//!   generated reference.
//! - `rhai_internals`: every trick that leans on Rhai's internals, with why.
//! - `finding`: what an evaluation produces.
//! - `error`: the stage's [`Error`].
//! - `testing`: `kamwatch test` rule test files.

pub mod api;
pub mod changed;
mod declared;
mod error;
mod explain;
mod finding;
pub mod reads;
mod rhai_internals;
mod run;
mod sandbox;
mod set;
mod settings;
#[cfg(test)]
mod test_books;
pub mod testing;

pub use api::{
    DEFAULT_MAX_ALERTS_PER_ACCOUNT, DEFAULT_MAX_ALERTS_PER_RULE, pct_change, take_raised_count,
};
pub use declared::{Days, Fallback, RuleValues, Source};
pub use error::Error;
pub use explain::Explanation;
pub use finding::{Finding, Outcome, RuleFailures, RunError, Said, Units, failures_by_rule};
pub use rhai_internals::Constant;
pub use run::{MAX_STRIKES, Runner};
pub use sandbox::{
    MAX_ARRAY, MAX_CALL_LEVELS, MAX_MAP, MAX_OPERATIONS, MAX_PRINT_BYTES, MAX_PRINT_LINES,
    MAX_PRINT_PER_EVALUATION, MAX_RUN_MEMORY, MAX_STRING, MemoryMeter, Shared, engine,
};
pub use set::{AlertCaps, CompileError, Rule, RuleSet, chinese_only_texts, rule_names};
pub use settings::{RuleSettings, settings_from_map};

/// The error `RuleSet::load_dir` and `load_config` return (the cli reads
/// any rules [`Error`] as a usage error, exit code 2).
pub type LoadError = Error;
