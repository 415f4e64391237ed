//! Integration tests: one binary (links once), one module per area.

// Shared helpers: temp project folders, the kamwatch binary, an SMTP server.
mod support;

// The CLI contract: check/ingest/eval exit codes, messages and formats.
mod cli;

// The daemon end to end: inbox in, SMTP out, nothing sent twice.
mod e2e;

// The daemon as a service: signals, reload, watchdog, status.
mod service;

// kill -9 at random moments: nothing lost, nothing sent twice.
mod crash;

// The inbox as a hostile file system: symlinks, FIFOs, open writers, odd
// names, an unwritable archive, a late mount, poison files; the database
// deleted, damaged, or created by many processes at once.
mod inbox;

// Reports over the book: the accounts table.
mod reports;
// Tiers through real files: `tiers.by`, accounts missing from the master.
mod tiers;
// The backtest's snapshots of past days against `metrics::build` at them.
mod backtest;
// Alert lifecycle through `eval --as-of`: resolve, silence, repeat, quiet
// windows, restarts, retention check.
mod alerts;
// Ingest: formats (XLSX, XLS, JSON Lines, encodings), values, datasets, bad input.
mod ingest;

// Bad rules and bad configs, each with the message it must produce.
mod corpus;
// Rule scripts: `kamwatch test`, the API reference, explain, settings.
mod rules;

// Warning mails over STARTTLS + AUTH: MIME parts, inline chart, escaping;
// an SMTP outage; `mail test` and `mail preview`.
mod mail;
