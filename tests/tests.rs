//! Integration tests: one binary (links once), one module per area.

// Shared helpers: temp project folders, the kamwatch binary, an SMTP server.
mod support;

// The CLI contract: check/ingest/eval exit codes, messages and formats.
mod cli;

// The daemon end to end: inbox in, SMTP out, nothing sent twice.
mod e2e;

// Rule scripts: `kamwatch test`, the API reference, explain, settings.
mod rules;
