//! Streaming a file's rows into the store: a parser thread reads and
//! validates every row (`row`), numbers order lines that have no line
//! number, notes each row's key (`keys`), and hands the good rows in
//! batches over a bounded channel to this thread, which writes them
//! (two cores, and SQLite is the slower half); then the verdict on the
//! whole file: stored, or refused with its rows' problems listed. Memory
//! stays bounded: a few batches in flight, their strings reused. Touches
//! the open transaction's writer (through `store`) and nothing else.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};

use anyhow::{Context, Result};
use csv::StringRecord;

use super::columns::{ColumnMap, map_columns};
use super::errors::Cancelled;
use super::keys::{Duplicates, KeySeen, hash_of, key_fields, key_hash};
use super::read::Source;
use super::reject::{MAX_LISTED_ERRORS, Problems, Rejection, RowError};
use super::row::{CellRules, Parsed, parse_row};
use super::values;
use crate::config::{Dataset, DatasetConfig, DuplicateKeys, OnError};
use crate::store::{Extra, OrderRow, Writer};

/// How often (in rows) the progress callback is called.
pub const PROGRESS_EVERY: u64 = 4096;

/// Rows parsed per batch handed from the parser thread to the writer.
const BATCH_ROWS: usize = 1024;
/// Batches in flight between them: bounds the memory a fast parser can use.
const BATCHES_IN_FLIGHT: usize = 4;

/// Parsed rows with their attributes (a JSON object, if any).
type Batch = Vec<(Parsed, Option<String>)>;

/// The rows a file put in the store.
pub(super) struct Stored {
    pub(super) rows: u64,
    pub(super) problems: Problems,
    /// Rows that repeat the key of an earlier row of the file (kept last,
    /// `duplicate_keys: keep_last`).
    pub(super) duplicates: u64,
}

/// What the parser thread found in the whole file.
struct Verdict {
    rows: u64,
    problems: Problems,
    /// The line at which reading had to stop, if it did.
    fatal: Option<u64>,
    /// Rows with the key of an earlier row of the file (or why that could
    /// not be found out).
    keys: std::io::Result<Duplicates>,
}

/// What a file's rows are read as, and what the caller is told.
pub(super) struct Stream<'a> {
    pub(super) dataset: Dataset,
    pub(super) ds: &'a DatasetConfig,
    pub(super) cells: CellRules,
    /// Called with the rows written so far every [`PROGRESS_EVERY`] rows.
    pub(super) progress: &'a mut dyn FnMut(u64),
    /// Set by the caller to stop (checked every [`PROGRESS_EVERY`] rows).
    pub(super) stop: Option<&'a AtomicBool>,
}

/// Reads, validates and (with a writer) writes every row of `src`. The
/// outer `Result` is a store failure (or [`Cancelled`]); the inner one is
/// the verdict on the file.
pub(super) fn load_rows(
    src: &mut Source,
    headers: &StringRecord,
    writer: Option<&mut Writer<'_>>,
    s: Stream<'_>,
) -> Result<std::result::Result<Stored, Rejection>> {
    let map = match map_columns(s.dataset, s.ds, headers) {
        Ok(m) => m,
        Err(e) => return Ok(Err(Rejection::whole(e.to_string()))),
    };
    let unit = src.unit();
    let mut s = s;
    let verdict = match pump(src, headers.len(), &map, writer, &mut s)? {
        Ok(v) => v,
        Err(Panicked(panic)) => {
            return Ok(Err(Rejection::whole(format!(
                "reading this file failed inside kamwatch ({}); nothing from it was stored. It is set aside, not retried: please report it to the kamwatch maintainers with the file",
                values::bounded(panic)
            ))));
        }
    };
    (s.progress)(verdict.rows);
    judge(verdict, s.dataset, s.ds, &map, unit)
}

/// The parser thread panicked (a bug, in kamwatch or a format library),
/// with this message: the file is rejected rather than the daemon taken
/// down.
struct Panicked(String);

/// Runs the parser thread and writes what it sends. The outer `Result` is
/// a store failure (or [`Cancelled`]), the inner one what the parser found.
fn pump(
    src: &mut Source,
    width: usize,
    map: &ColumnMap,
    writer: Option<&mut Writer<'_>>,
    s: &mut Stream<'_>,
) -> Result<std::result::Result<Verdict, Panicked>> {
    let (dataset, ds, cells) = (s.dataset, s.ds, s.cells);
    let skip = ds.on_error == OnError::SkipRows;
    let write = writer.is_some();
    let (send, recv) = std::sync::mpsc::sync_channel::<Batch>(BATCHES_IN_FLIGHT);
    // Written batches go back to the parser thread to be freed there: the
    // thread that allocated their strings frees them fastest.
    let (done, written_batches) = std::sync::mpsc::sync_channel::<Batch>(BATCHES_IN_FLIGHT + 1);
    std::thread::scope(|scope| {
        let parser = scope.spawn(move || {
            let mut p = Parser::new(dataset, ds, map, skip, cells);
            p.send = write.then_some((send, written_batches));
            p.run(src, width)
        });
        let failure = match writer {
            Some(w) => write_all(w, &recv, &done, s.progress, s.stop).err(),
            None => None,
        };
        // Dropping the receiver stops a parser that is still sending.
        drop(recv);
        let verdict = parser.join().map_err(|panic| {
            Panicked(
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into()),
            )
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(verdict),
        }
    })
}

/// Writes the batches received until the parser is done, handing each back
/// to be reused; calls `progress` and checks `stop` every
/// [`PROGRESS_EVERY`] rows.
fn write_all(
    w: &mut Writer<'_>,
    recv: &Receiver<Batch>,
    done: &SyncSender<Batch>,
    progress: &mut dyn FnMut(u64),
    stop: Option<&AtomicBool>,
) -> Result<()> {
    let mut written = 0u64;
    let mut next_report = PROGRESS_EVERY;
    for batch in recv.iter() {
        write_batch(w, &batch)?;
        written += batch.len() as u64;
        // A full return channel (the parser finished) just drops it here.
        let _ = done.try_send(batch);
        if written >= next_report {
            progress(written);
            next_report = written + PROGRESS_EVERY;
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                // The caller drops the transaction: all rolls back.
                return Err(Cancelled.into());
            }
        }
    }
    Ok(())
}

/// The verdict on a whole file from what the parser found: stored, or
/// refused (a row that stops reading, repeated keys, bad rows not to be
/// skipped, no data row).
fn judge(
    verdict: Verdict,
    dataset: Dataset,
    ds: &DatasetConfig,
    map: &ColumnMap,
    unit: &'static str,
) -> Result<std::result::Result<Stored, Rejection>> {
    let skip = ds.on_error == OnError::SkipRows;
    let Verdict {
        rows,
        problems,
        fatal,
        keys,
    } = verdict;
    if let Some(line) = fatal {
        return Ok(Err(Rejection::listing(
            format!(
                "{unit} {line} cannot be read, so the rest of the file cannot be either; nothing from this file was stored"
            ),
            problems,
        )));
    }
    let dups = keys.context("checking the file's keys in a temporary file")?;
    if dups.rows > 0 && ds.duplicate_keys == DuplicateKeys::Reject {
        return Ok(Err(repeated_keys(dups, problems, dataset, ds, map, unit)));
    }
    if problems.total > 0 && (!skip || rows == 0) {
        let all_bad = if skip && rows == 0 {
            " (on_error: skip_rows, but no row was good)"
        } else {
            ""
        };
        return Ok(Err(Rejection::listing(
            format!(
                "{} error(s) in {} of {} data row(s){all_bad}; nothing from this file was stored",
                problems.total,
                problems.bad_rows,
                rows + problems.bad_rows
            ),
            problems,
        )));
    }
    // Receivables and stock with a header only are a snapshot of nothing:
    // everything paid, nothing on hand. They replace the last one like any
    // other (an empty master is refused by its own bound on accounts
    // switched off, an empty events file has nothing to add).
    if rows == 0 && !matches!(dataset, Dataset::Receivables | Dataset::Inventory) {
        return Ok(Err(Rejection::whole(
            "the file has a header but no data rows; nothing to ingest",
        )));
    }
    Ok(Ok(Stored {
        rows,
        problems,
        duplicates: dups.rows,
    }))
}

/// The refusal of a file whose rows repeat keys: each repeat listed with
/// the earlier row, among the other problems, in line order.
fn repeated_keys(
    dups: Duplicates,
    mut problems: Problems,
    dataset: Dataset,
    ds: &DatasetConfig,
    map: &ColumnMap,
    unit: &str,
) -> Rejection {
    let fields = key_fields(dataset, ds).join(", ");
    let mut all = Problems::default();
    for (first, line) in &dups.pairs {
        all.push(RowError {
            line: *line,
            column: None,
            message: format!("has the same key ({fields}) as {unit} {first}"),
        });
    }
    for e in problems.listed.drain(..) {
        all.push(e);
    }
    // Every repeat and every other problem once, listed or not (push
    // counted only those it was given).
    all.total = dups.rows as usize + problems.total;
    all.listed.sort_by_key(|e| e.line);
    let hint = if dataset == Dataset::Orders && map.idx("line").is_none() {
        "; the export has no line column, so its rows were numbered per order in file order: map the export's line column (`columns: line:`) if it has one"
    } else {
        ""
    };
    Rejection::listing(
        format!(
            "{} row(s) have the key ({fields}) of an earlier row of this file, and rows of one file with one key would overwrite each other, so nothing from this file was stored. Fix the export{hint}, or set `duplicate_keys: keep_last` for this dataset to store the last row of each key",
            dups.rows
        ),
        all,
    )
}

/// Writes one batch in order: order lines several to a statement, the
/// other rows one by one.
fn write_batch(w: &mut Writer<'_>, batch: &Batch) -> Result<()> {
    let mut orders: Vec<(&OrderRow, Option<&str>)> = Vec::new();
    for (row, attrs) in batch {
        let a = attrs.as_deref();
        if let Parsed::Order(r) = row {
            orders.push((r, a));
            continue;
        }
        w.orders_many(&orders)?;
        orders.clear();
        match row {
            Parsed::Account(r, x) => w.account_with(
                r,
                &Extra {
                    attrs: attrs.clone(),
                    ..x.clone()
                },
            )?,
            Parsed::Visit(r) => w.visit_with(r, a)?,
            Parsed::Receivable(r) => w.receivable(r, a)?,
            Parsed::Stock(r) => w.stock(r, a)?,
            Parsed::Order(_) => {}
        }
    }
    w.orders_many(&orders)
}

/// The parser thread's state: reads and validates every row, and sends
/// the good ones in batches — all of them under `skip_rows`, otherwise
/// only until the first problem (the file will be rejected, but every
/// problem is still listed). Stops early if the writer hangs up.
struct Parser<'a> {
    dataset: Dataset,
    ds: &'a DatasetConfig,
    map: &'a ColumnMap,
    skip: bool,
    cells: CellRules,
    problems: Problems,
    rows: u64,
    key: Vec<String>,
    keys: KeySeen,
    /// Order lines without a line number are numbered per order, in file
    /// order (by a 64-bit hash of the order id: a collision would only skip
    /// numbers, never give two lines one number).
    next_line: std::collections::HashMap<u64, u32>,
    batch: Batch,
    /// Rows of a batch the writer is done with: their strings are refilled
    /// for new rows instead of allocated again.
    spare: Batch,
    /// Where batches go, and where written ones come back from.
    send: Option<(SyncSender<Batch>, Receiver<Batch>)>,
}

/// What one record came to.
enum Step {
    Next,
    /// The keys could not be noted.
    KeysFailed(std::io::Error),
    /// The writer hung up: its error is what counts.
    WriterGone,
}

impl<'a> Parser<'a> {
    fn new(
        dataset: Dataset,
        ds: &'a DatasetConfig,
        map: &'a ColumnMap,
        skip: bool,
        cells: CellRules,
    ) -> Parser<'a> {
        Parser {
            dataset,
            ds,
            map,
            skip,
            cells,
            problems: Problems::default(),
            rows: 0,
            key: key_fields(dataset, ds),
            keys: KeySeen::default(),
            next_line: std::collections::HashMap::new(),
            batch: Vec::with_capacity(BATCH_ROWS),
            spare: Vec::new(),
            send: None,
        }
    }

    fn run(mut self, src: &mut Source, width: usize) -> Verdict {
        let mut record = StringRecord::new();
        let mut row_errors = Vec::new();
        let mut fatal = None;
        loop {
            let line = match src.read(&mut record) {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => {
                    self.problems.bad_rows += 1;
                    self.problems.push(RowError {
                        line: e.line,
                        column: None,
                        message: e.message,
                    });
                    if e.fatal {
                        fatal = Some(e.line);
                        break;
                    }
                    continue;
                }
            };
            match self.record(line, &record, width, &mut row_errors) {
                Step::Next => {}
                Step::KeysFailed(e) => {
                    return Verdict {
                        rows: self.rows,
                        problems: self.problems,
                        fatal: None,
                        keys: Err(e),
                    };
                }
                Step::WriterGone => break,
            }
        }
        if let Some((s, _)) = &self.send
            && !self.batch.is_empty()
        {
            let _ = s.send(std::mem::take(&mut self.batch));
        }
        Verdict {
            rows: self.rows,
            problems: self.problems,
            fatal,
            keys: self.keys.duplicates(MAX_LISTED_ERRORS),
        }
    }

    /// Validates one record read at `line` and sends it on if it is good.
    fn record(
        &mut self,
        line: u64,
        record: &StringRecord,
        width: usize,
        row_errors: &mut Vec<(String, String)>,
    ) -> Step {
        if record.len() != width {
            self.problems.bad_rows += 1;
            self.problems.push(RowError {
                line,
                column: None,
                message: format!(
                    "has {} fields where the header has {width}; check for an unquoted delimiter in a value",
                    record.len()
                ),
            });
            return Step::Next;
        }
        row_errors.clear();
        let (reuse, reuse_attrs) = self.spare.pop().unzip();
        let mut parsed = parse_row(
            self.dataset,
            self.ds,
            self.map,
            record,
            row_errors,
            reuse,
            self.cells,
        );
        if !row_errors.is_empty() {
            self.problems.bad_rows += 1;
            for (column, message) in row_errors.drain(..) {
                self.problems.push(RowError {
                    line,
                    column: Some(column),
                    message,
                });
            }
            return Step::Next;
        }
        self.rows += 1;
        if let Some(Parsed::Order(r)) = &mut parsed
            && r.line.is_empty()
        {
            let n = self
                .next_line
                .entry(hash_of(&[r.order_id.as_bytes()]))
                .or_insert(0);
            *n += 1;
            let _ = write!(r.line, "{n}");
        }
        if let Some(p) = &parsed
            && let Err(e) = self.keys.push(key_hash(p, &self.key), line)
        {
            return Step::KeysFailed(e);
        }
        if !self.skip && self.problems.total > 0 {
            self.send = None; // rejected anyway: stop writing
        }
        match parsed {
            Some(p) if self.send.is_some() => {
                let attrs = self.map.attrs_for(
                    self.dataset,
                    record,
                    reuse_attrs.flatten().unwrap_or_default(),
                );
                self.batch.push((p, attrs));
                self.send_full()
            }
            _ => Step::Next,
        }
    }

    /// Sends the batch once it is full. A batch the writer is done with
    /// becomes the spare rows; the spare list, now empty, the next batch.
    fn send_full(&mut self) -> Step {
        let Some((s, back)) = &self.send else {
            return Step::Next;
        };
        if self.batch.len() < BATCH_ROWS {
            return Step::Next;
        }
        let next = match back.try_recv() {
            Ok(b) => {
                let mut emptied = std::mem::replace(&mut self.spare, b);
                emptied.clear();
                emptied
            }
            Err(_) => Vec::with_capacity(BATCH_ROWS),
        };
        let full = std::mem::replace(&mut self.batch, next);
        if s.send(full).is_err() {
            return Step::WriterGone;
        }
        Step::Next
    }
}
