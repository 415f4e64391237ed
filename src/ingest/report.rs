//! The report of one file's ingest: what happened to it, where it went and
//! the counts of its rows. Touches nothing.

use std::path::PathBuf;

use crate::config::Dataset;
use crate::store::Outcome;

/// What happened to one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileReport {
    pub file_name: String,
    pub dataset: Option<Dataset>,
    pub outcome: Outcome,
    pub rows: u64,
    /// Where the file ended up (archive or rejected folder).
    pub moved_to: PathBuf,
    /// For rejected files: the first line of the reason. For ingested
    /// files: a note on what was done differently (rows skipped, an older
    /// snapshot), if any.
    pub reason: Option<String>,
    /// Rows left out under `on_error: skip_rows`.
    pub skipped: u64,
    /// The errors file beside the archived or rejected file, if one was written.
    pub errors_file: Option<PathBuf>,
    /// Data rows read, good and bad (0 unless ingested).
    pub read: u64,
    /// Rows of earlier files this one replaced by key (for receivables and
    /// inventory: the previous snapshot's rows).
    pub replaced: u64,
}
