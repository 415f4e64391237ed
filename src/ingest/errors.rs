//! Why an ingest did not end with the file filed: the errors the daemon
//! tells apart (by type, through the `anyhow` chain) to decide what to do
//! with the file. A bad file is no error here: it is rejected, with a
//! reason, and reported as such. Touches nothing.

/// Why an ingest stopped before the end of its file: the caller asked it to
/// (the daemon on SIGTERM). The transaction was rolled back and the file
/// left where it was, so nothing of it is stored and it is taken again.
#[derive(Debug, thiserror::Error)]
#[error("stopped before the end of the file; rolled back, the file stays in the inbox")]
pub struct Cancelled;

/// The process died while ingesting this file before (it is on record in
/// the staging folder's attempts): the daemon ingests it in a child
/// process, where a crash rejects the file instead of the daemon.
#[derive(Debug, thiserror::Error)]
#[error("kamwatch died while ingesting this file before; it is ingested apart")]
pub struct Isolate;

/// Why a file was not taken now: it is not complete yet (a writer has it
/// open, it changed while it was read) or it went away. Nothing of it was
/// stored; the daemon looks at it again later.
#[derive(Debug, thiserror::Error)]
#[error("not taken yet: {0}")]
pub struct NotReady(pub String);

/// The rows of a file were committed, but the file could not be filed into
/// the archive (read-only, full): it stays in the inbox and is filed (as a
/// duplicate of itself) once the archive takes it.
#[derive(Debug, thiserror::Error)]
#[error(
    "its {rows} rows were stored, but it could not be archived ({error}); it stays in the inbox and is archived once that works"
)]
pub struct Unfiled {
    pub rows: u64,
    pub error: String,
}
