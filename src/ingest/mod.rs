//! Ingest: turns one export file into rows in the store, or into a reason.
//!
//! Takes the file through `file` (opened without following links or
//! blocking, refused while a writer has it open, copied into a private
//! staging copy and hashed from that one read), routes it to a dataset by
//! name, reads the copy's rows through `read` (CSV in UTF-8, UTF-8 BOM or
//! GBK/GB18030; XLSX/XLS; JSON Lines), maps the export's columns to the
//! canonical fields (the other columns are kept as attributes: for orders
//! their values, a JSON array, with the names once per header in
//! `attr_layouts`; elsewhere a JSON object), validates every row and
//! writes them in one transaction together with the ledger entry. Then
//! files the file into `archive/` or, with `<name>.errors.txt`, into
//! `rejected/` (never over an existing name). `rebuild` re-reads archived
//! files in place. Touches the store (through `store`), the file it is
//! given, and the archive and rejected folders — nothing else.
//!
//! The rooms, in the order a file passes them: `entry` (the ways in),
//! `file` and `attempts` (taking the file, the record of files being
//! read), `route` (its dataset, a duplicate, a snapshot's day), `read`
//! (its rows, per format), `columns` (the header mapped to fields), `row`
//! and `values` (one row's cells validated), `keys` (repeated keys),
//! `stream` (rows parsed on one thread, written on another), `load` (the
//! transaction), `filing` and `reject` (archive or rejected folder, the
//! reason file), `report` and `errors` (what the caller is told). This
//! file only declares them and re-exports what the other stages use.

mod attempts;
mod columns;
mod entry;
mod errors;
pub mod file;
mod filing;
mod keys;
mod load;
pub mod read;
mod reject;
mod report;
mod route;
mod row;
mod stream;
pub mod values;

pub use columns::{ColumnMap, HeaderError, map_columns};
pub use entry::{
    ingest_copy, ingest_file, ingest_file_until, ingest_in_place, ingest_with_progress, reject_file,
};
pub use errors::{Cancelled, Isolate, NotReady, Unfiled};
pub use filing::{archived_inputs, mend_rejected};
pub use report::FileReport;
pub use route::date_in_name;
pub use stream::PROGRESS_EVERY;
