//! Alerts: the lifecycle of each (rule, account, key), the silences people
//! set, and the history of what happened.
//!
//! Rooms, each importing only its siblings and lower stages (rules,
//! metrics, store, config, model):
//! - `machine`: the pure state machine ([`step`]): pending, firing,
//!   resolved; which notices an evaluation causes. No table, no clock.
//! - `policy`: each rule's [`RulePolicy`] from the config and the rule's
//!   own settings.
//! - `lifecycle`: [`apply`] runs the machine for one evaluation against the
//!   `alerts` table inside the caller's transaction and returns the
//!   notices; owns `alerts` and writes `alert_history`.
//! - `replay`: a rule test case's days through the machine, in memory
//!   (`kamwatch test` with `from:`).
//! - `silence`: owns `silences`.
//! - `history`: reads `alert_history` and the notices with their mail, and
//!   prunes them past the retention.
//! - `error`: the stage's [`Error`].
//!
//! Time is always the evaluation's as-of date, never the wall clock.

mod error;
pub mod history;
mod lifecycle;
mod machine;
mod policy;
mod replay;
pub mod silence;

pub use error::Error;
pub use lifecycle::{
    Changes, Item, Notified, Only, apply, closed_keys, figures_json, firing_counts,
};
pub use machine::{Lifecycle, Notice, Observation, State, Step, kept_open, per_key, step};
pub use policy::{Policies, RulePolicy};
pub use replay::replay;
