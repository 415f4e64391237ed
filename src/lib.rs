//! kamwatch — a key-account early-warning daemon.
//!
//! The tree follows the data, one folder per stage, each on a floor of
//! its own: a module imports only from its floor or below, never above,
//! and no two files import each other (`scripts/house.py` checks it).
//!
//! ```text
//! inbox/ -> daemon::watch -> ingest -> store -> metrics -> rules -> alerts -> mail
//! ```
//!
//! From the bottom up:
//! - `model` (days, tiers, severities, dates) and `format` (figures the
//!   reader's way, HTML escaping) are the plain values everyone shares;
//!   `generate` writes realistic sample exports and imports nothing else.
//! - `config` loads and checks the YAML every stage reads, parsed into
//!   types at load; `store` opens and migrates SQLite and owns its tables.
//! - `ingest` reads export files into the store, one transaction each;
//!   `metrics` turns the store into per-account series and tiers.
//! - `rules` runs the Rhai rules per account in a sandbox; `alerts` keeps
//!   each alert's lifecycle, silences and history; `chart` draws; `mail`
//!   routes, renders and delivers through the outbox; `reports` are the
//!   read-only views (accounts, review, status, backtest, bench).
//! - `pipeline` wires the stages for one pass (ingest files; evaluate as of
//!   a day and deliver), so the daemon and the CLI share one code path.
//! - `daemon` is `kamwatch run`: start-up, the event loop, the worker, the
//!   delivery thread, the schedule, the inbox watch and systemd (`service`).
//! - `cli` is the command line: arguments, one file per command group,
//!   output, and the exit code each error type maps to.

pub mod alerts;
pub mod chart;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod format;
pub mod generate;
pub mod ingest;
pub mod mail;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod reports;
pub mod rules;
pub mod store;

/// Counts each thread's allocations so a rule run's memory can be bounded
/// (see [`rules::MemoryMeter`]).
#[global_allocator]
static ALLOCATOR: rules::MemoryMeter = rules::MemoryMeter;
