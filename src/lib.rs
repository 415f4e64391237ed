//! kamwatch — a key-account early-warning daemon.
//!
//! Data flows one way, one module per stage:
//! `watch` → `ingest` → `store` → `metrics` → `rules` → `alerts` → `mail`,
//! wired together by `pipeline` and driven by `daemon` (the service) or
//! `cli` (one-shot commands). `config` loads the YAML every stage reads;
//! `generate` writes realistic sample exports. `silence` and `history`
//! serve the alerts stage: silences people set, and what happened.

pub mod alerts;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod generate;
pub mod history;
pub mod ingest;
pub mod mail;
pub mod metrics;
pub mod pipeline;
pub mod rules;
pub mod silence;
pub mod store;
pub mod watch;
