//! Store: the SQLite database on disk — opening and migrating it, and the
//! typed writes and reads of the tables it owns. Every statement is
//! parameterised; other stages reach the database only through a
//! connection opened here. Imports only `config`, `model` and `format`.
//!
//! Each table's SQL lives in one owning module:
//!
//! | table | owner |
//! |---|---|
//! | the schema, `installation` | `store::open` (migrations `NNNN_*.sql`) |
//! | `ledger` | `store::ledger` |
//! | `accounts`, `orders`, `visits`, `receivables`, `inventory`, `attr_layouts` | writes: `store::writer` (bulk: `store::bulk`); reads: `store::read` and, for the metrics, `metrics::load` |
//! | `evaluations` | `store::evaluations` |
//! | `alerts`, `alert_history` | `alerts` (`alerts::history`) |
//! | `silences` | `alerts::silence` |
//! | `outbox`, `notifications`, `notification_mail` | `mail` |
//!
//! Reads beside the owners: the metrics read the data tables in bulk
//! (`metrics::load`, `metrics::snapshot`) and keep temporary triggers on
//! them on the daemon's connection (`metrics::notes`); `status` counts the
//! outbox; `reports::accounts`, `mail::preview` and
//! `alerts::silence` (the keys a rule raised) read `alerts`.
//! `kamwatch test` fixtures write through `Writer` (`rules::testing`).
//!
//! - `open`: connection, pragmas, migrations, `quick_check`, identity;
//! - `ledger`: the file ledger;
//! - `rows`: the row types of the data tables;
//! - `writer`: `Writer`, one file's rows inside its transaction;
//! - `bulk`: staged visits, suspended indexes, leaving WAL for a load;
//! - `read`: accounts, visits, order attributes, counts;
//! - `evaluations`: the record of evaluations.

mod bulk;
mod evaluations;
mod ledger;
mod open;
mod read;
mod rows;
mod writer;

pub use bulk::{
    apply_visit_stage, back_to_wal, leave_wal_for_bulk, restore_indexes, suspend_indexes,
};
pub use evaluations::{
    EvaluationRecord, LastEvaluation, last_evaluation, newest_evaluation, newest_evaluation_id,
    record_evaluation,
};
pub use ledger::{
    LastIngest, LedgerEntry, LedgerRecord, NewestSnapshot, Outcome, RowCounts, hash_known,
    ingested_before, last_ingest_at, last_ingests, newest_entry_after, newest_ledger_id,
    newest_snapshot, record_file, record_file_counts, rejected_files, same_as_newest_snapshot,
};
pub use open::{
    database_bytes, identity, installation_id, now_text, open, open_reader, quick_check,
};
pub use read::{
    account_exists, counts, for_each_visit, for_each_visit_of, has_accounts, load_accounts,
    order_attrs, unlisted_accounts,
};
pub use rows::{
    AccountRecord, AccountRow, Extra, InventoryRow, OrderDay, OrderRow, ReceivableRow, VisitRow,
};
pub use writer::{
    KeyDelete, OrderWriter, Writer, accounts_switched_off, attr_layout, count_replacements,
    remember_active_accounts, replacements,
};
