//! What goes wrong reading a file: the file cannot be read as an export
//! at all (`OpenError::Unusable`, rejected with the reason) or the file
//! system failed (`OpenError::Failed`, the file stays); one row cannot be
//! read (`ReadError`, listed with its line; `fatal` when the rest cannot
//! be read either); a line or record past `ingest.max_record_bytes`
//! (`TooLong`). Touches nothing.

/// Why a file could not be opened for its rows.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file cannot be read as an export at all: it is rejected with
    /// this reason.
    #[error("{0}")]
    Unusable(String),
    /// The file system failed (the file stays where it is; nothing of it
    /// was stored).
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<std::io::Error> for OpenError {
    fn from(e: std::io::Error) -> Self {
        OpenError::Failed(e.into())
    }
}

/// A problem reading rows. `fatal`: the rest of the file cannot be read.
#[derive(Debug, Clone)]
pub struct ReadError {
    pub line: u64,
    pub message: String,
    pub fatal: bool,
}

/// The error a [`LineCounter`] returns for a line or a record over the
/// bound: the line, or the byte where the record starts.
#[derive(Debug)]
pub(super) enum TooLong {
    Line(u64),
    Record(u64),
}

impl TooLong {
    pub(super) fn message(&self, max: u64) -> String {
        match self {
            TooLong::Line(_) => format!(
                "is longer than {} without a line break (`ingest.max_record_bytes`); this is not an export of rows (or a quote is never closed)",
                mib(max)
            ),
            TooLong::Record(_) => format!(
                "starts a record (a row, its quoted fields spanning lines) longer than {} (`ingest.max_record_bytes`): a quote that is never closed, or a field no export writes",
                mib(max)
            ),
        }
    }
}

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message(1 << 20))
    }
}

impl std::error::Error for TooLong {}

pub(super) fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{bytes} bytes")
    }
}

pub(super) fn not_text(at: usize) -> String {
    format!(
        "the file is not text: binary content at byte {at}. If it is a workbook, give it its .xlsx or .xls name; otherwise export it again as CSV"
    )
}
