//! Reading an export file's rows, whatever its format. The rooms, lowest
//! first: `error` (what goes wrong), `encoding` (a text file's encoding
//! and delimiter), `text` (CSV), `zip_check` and `sheet` (workbooks),
//! `jsonl` (JSON Lines), `source` (telling the kind and opening the file).
//! This file only declares them and re-exports what `ingest` uses.

mod encoding;
mod error;
mod jsonl;
mod sheet;
mod source;
mod text;
mod zip_check;

pub use error::{OpenError, ReadError};
pub use sheet::{cell_text, column_name};
pub use source::{Kind, Source, kind_of};
