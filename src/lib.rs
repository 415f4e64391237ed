//! kamwatch — a key-account early-warning daemon.
//!
//! Data flows one way, one module per stage:
//! `watch` → `ingest` → `store` → `metrics` → `rules` → `alerts` → `mail`,
//! wired together by `pipeline` and driven by `daemon` (the service) or
//! `cli` (one-shot commands); `service` speaks to systemd. `config` loads
//! the YAML every stage reads; `generate` writes realistic sample exports.
//! `silence` and `history` serve the alerts stage: silences people set, and
//! what happened. `chart`, `accounts` and `status` are read-only views; `format` writes
//! figures (money, percent, days, ...) the way the reader's locale does.

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
