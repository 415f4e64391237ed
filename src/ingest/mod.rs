//! Ingest: turns one export file into rows in the store, or into a reason.
//!
//! Takes the file through `file` (opened without following links or
//! blocking, refused while a writer has it open, copied into a private
//! staging copy and hashed from that one read), routes it to a dataset by
//! name, reads the copy's rows through `source` (CSV in UTF-8, UTF-8 BOM or GBK/GB18030; XLSX/XLS;
//! JSON Lines), maps the export's columns to the canonical fields (the other
//! columns are kept as attributes: for orders their values, a JSON array, with
//! the names once per header in `attr_layouts`; elsewhere a JSON object),
//! validates every row and
//! writes them in one transaction together with the ledger entry. Then files
//! the file into `archive/` or, with `<name>.errors.txt`, into `rejected/`
//! (never over an existing name). `rebuild` re-reads archived files in
//! place.
//! Touches the store (through `store`), the file it is given, and the
//! archive and rejected folders — nothing else.

pub mod file;
pub mod source;
pub mod values;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use csv::StringRecord;
use rusqlite::Connection;

use crate::config::{Dataset, DatasetConfig, DuplicateKeys, Loaded, OnError};
use crate::store::{
    self, AccountRow, Extra, InventoryRow, LedgerEntry, OrderRow, Outcome, ReceivableRow, VisitRow,
    Writer,
};
use source::Source;

/// How many row errors an errors file lists before it only counts them.
const MAX_LISTED_ERRORS: usize = 200;

/// How often (in rows) the progress callback is called.
pub const PROGRESS_EVERY: u64 = 4096;

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

/// One problem in a file, located as precisely as we can.
#[derive(Debug, Clone)]
struct RowError {
    line: u64,
    column: Option<String>,
    message: String,
}

/// Problems found in a file's rows.
#[derive(Default)]
struct Problems {
    listed: Vec<RowError>,
    total: usize,
    bad_rows: u64,
}

impl Problems {
    fn push(&mut self, e: RowError) {
        self.total += 1;
        if self.listed.len() < MAX_LISTED_ERRORS {
            self.listed.push(e);
        }
    }
}

/// Why a whole file was refused.
struct Rejection {
    summary: String,
    problems: Problems,
}

impl Rejection {
    fn whole(summary: impl Into<String>) -> Rejection {
        Rejection {
            summary: summary.into(),
            problems: Problems::default(),
        }
    }
}

/// The rows a file put in the store.
struct Loaded_ {
    rows: u64,
    problems: Problems,
    /// Rows that repeat the key of an earlier row of the file (kept last,
    /// `duplicate_keys: keep_last`).
    duplicates: u64,
}

/// Ingests one file and moves it out of the inbox. An `Err` means the store
/// or the file system failed (the file stays where it was); a bad file is an
/// `Ok` with outcome `Rejected`.
pub fn ingest_file(cfg: &Loaded, conn: &mut Connection, path: &Path) -> Result<FileReport> {
    ingest(cfg, conn, path, Keep::Move, &mut |_| {}, None)
}

/// Why an ingest stopped before the end of its file: the caller asked it to
/// (the daemon on SIGTERM). The transaction was rolled back and the file
/// left where it was, so nothing of it is stored and it is taken again.
#[derive(Debug)]
pub struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped before the end of the file; rolled back, the file stays in the inbox")
    }
}

impl std::error::Error for Cancelled {}

/// Like [`ingest_file`], but gives up with [`Cancelled`] (rolling back)
/// soon after `stop` is set, checked every [`PROGRESS_EVERY`] rows. For the
/// daemon: a file the process died in before is not read here but refused
/// with [`Isolate`], for the caller to ingest in a child process.
pub fn ingest_file_until(
    cfg: &Loaded,
    conn: &mut Connection,
    path: &Path,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<FileReport> {
    ingest(cfg, conn, path, Keep::Move, &mut |_| {}, Some(stop))
}

/// Like [`ingest_file`], but leaves `path` where it is and archives (or
/// rejects) a copy: for files a person names on the command line.
pub fn ingest_copy(cfg: &Loaded, conn: &mut Connection, path: &Path) -> Result<FileReport> {
    ingest(cfg, conn, path, Keep::Copy, &mut |_| {}, None)
}

/// [`ingest_file`] (`copy` false) or [`ingest_copy`], calling `progress`
/// with the rows read so far every [`PROGRESS_EVERY`] rows.
pub fn ingest_with_progress(
    cfg: &Loaded,
    conn: &mut Connection,
    path: &Path,
    copy: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<FileReport> {
    let keep = if copy { Keep::Copy } else { Keep::Move };
    ingest(cfg, conn, path, keep, progress, None)
}

/// Whether the original file leaves the inbox or stays where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Move,
    Copy,
    /// Read from where it is and filed nowhere: `rebuild` re-reading the
    /// archive.
    InPlace,
}

/// Ingests a file already in the archive, leaving it there and writing
/// nothing beside it: for `kamwatch rebuild`.
pub fn ingest_in_place(cfg: &Loaded, conn: &mut Connection, path: &Path) -> Result<FileReport> {
    ingest(cfg, conn, path, Keep::InPlace, &mut |_| {}, None)
}

/// How a snapshot file relates to the newest one ingested before.
enum Freshness {
    /// Not a snapshot, or not older: applied in full.
    Current,
    /// Older than `newest` (file name, day): must not undo it.
    Older { newest: String, day: String },
}

/// The page cache while a file is loaded, in KiB.
const LOAD_CACHE_KIB: i64 = 64 * 1024;

/// Below this size a file is never loaded in bulk mode (indexes rebuilt).
const BULK_MIN_BYTES: u64 = 16 << 20;

fn ingest(
    cfg: &Loaded,
    conn: &mut Connection,
    path: &Path,
    keep: Keep,
    progress: &mut dyn FnMut(u64),
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> Result<FileReport> {
    // A big page cache while loading keeps the pages of the growing tables
    // and their indexes in memory instead of spilling them to the WAL and
    // reading them back. It is bounded, so memory stays flat however big
    // the file; afterwards the connection gets its usual cache back.
    let cache: i64 = conn.pragma_query_value(None, "cache_size", |r| r.get(0))?;
    conn.pragma_update(None, "cache_size", -LOAD_CACHE_KIB)?;
    let bulk = is_bulk(cfg, conn, path)?;
    let rollback_journal = bulk && store::leave_wal_for_bulk(conn)?;
    let report = ingest_inner(cfg, conn, path, keep, progress, stop, bulk);
    if rollback_journal {
        store::back_to_wal(conn);
    }
    conn.pragma_update(None, "cache_size", cache)?;
    report
}

/// A bulk load: an orders file bigger than the whole database (a first
/// load, a history backfill), upserted by the default key. It is loaded
/// without any orders indexes, rebuilt once after, and in a rollback
/// journal when it can be. (A configured key deletes by the key row by row
/// and needs its index all along.)
fn is_bulk(cfg: &Loaded, conn: &Connection, path: &Path) -> Result<bool> {
    let name = path.file_name().map(|n| n.to_string_lossy());
    if name.and_then(|n| cfg.cfg.datasets.route(&n)) != Some(Dataset::Orders) {
        return Ok(false);
    }
    let ds = &cfg.cfg.datasets.orders;
    if ds.key_fields(Dataset::Orders) != Dataset::Orders.default_key() {
        return Ok(false);
    }
    let size = std::fs::symlink_metadata(path).map_or(0, |m| m.len());
    Ok(size >= BULK_MIN_BYTES && size > store::database_bytes(conn)?)
}

fn ingest_inner(
    cfg: &Loaded,
    conn: &mut Connection,
    path: &Path,
    keep: Keep,
    progress: &mut dyn FnMut(u64),
    stop: Option<&std::sync::atomic::AtomicBool>,
    bulk: bool,
) -> Result<FileReport> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let t0 = std::time::Instant::now();
    let staging = cfg.archive().join(file::STAGING);
    let mut staged = match file::take(path, &staging)
        .with_context(|| format!("taking {file_name:?} from the inbox: nothing of it was stored"))?
    {
        file::Taken::Staged(s) => s,
        file::Taken::Busy(why) => return Err(NotReady(why).into()),
        file::Taken::Gone => {
            return Err(NotReady("it is no longer there".into()).into());
        }
        file::Taken::NotRegular(kind) => {
            return reject_entry(cfg, conn, path, keep, &file_name, kind);
        }
    };
    // From here on only the private copy is read: what is hashed is what
    // is stored and archived. The attempt is on record (fsynced) while the
    // rows are read, so a file the process dies on is known at next start.
    let attempts = file::Attempts::new(&cfg.database());
    let died = attempts.deaths(&staged.hash);
    if died > 0 && stop.is_some() {
        tracing::warn!(
            file = ?file_name,
            "kamwatch stopped {died} time(s) while ingesting this file before; it is ingested in a child process now"
        );
        return Err(Isolate.into());
    }
    attempts.begin(&staged.hash, &file_name)?;
    let report = ingest_staged(cfg, conn, path, &mut staged, keep, progress, stop, bulk, t0);
    attempts.end(&staged.hash);
    report
}

/// Rejects the inbox file `path` whole with `summary` as the reason,
/// without reading its rows: for a file whose ingest failed in a way no
/// row explains (the daemon caught a panic while ingesting it).
pub fn reject_file(
    cfg: &Loaded,
    conn: &mut Connection,
    path: &Path,
    summary: &str,
) -> Result<FileReport> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = cfg.archive().join(file::STAGING);
    match file::take(path, &staging)? {
        file::Taken::Staged(mut copy) => {
            let dataset = cfg.cfg.datasets.route(&file_name);
            let (hash, size) = (copy.hash.clone(), copy.size);
            let r = reject(
                cfg,
                conn,
                path,
                &mut copy,
                Keep::Move,
                &file_name,
                size,
                &hash,
                dataset,
                "line",
                Rejection::whole(summary),
            );
            file::Attempts::new(&cfg.database()).end(&hash);
            r
        }
        file::Taken::NotRegular(kind) => {
            reject_entry(cfg, conn, path, Keep::Move, &file_name, kind)
        }
        file::Taken::Busy(why) => Err(NotReady(why).into()),
        file::Taken::Gone => Err(NotReady("it is no longer there".into()).into()),
    }
}

/// The process died while ingesting this file before (it is on record in
/// the staging folder's attempts): the daemon ingests it in a child
/// process, where a crash rejects the file instead of the daemon.
#[derive(Debug)]
pub struct Isolate;

impl std::fmt::Display for Isolate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("kamwatch died while ingesting this file before; it is ingested apart")
    }
}

impl std::error::Error for Isolate {}

/// Why a file was not taken now: it is not complete yet (a writer has it
/// open, it changed while it was read) or it went away. Nothing of it was
/// stored; the daemon looks at it again later.
#[derive(Debug)]
pub struct NotReady(pub String);

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not taken yet: {}", self.0)
    }
}

impl std::error::Error for NotReady {}

/// The rows of a file were committed, but the file could not be filed into
/// the archive (read-only, full): it stays in the inbox and is filed (as a
/// duplicate of itself) once the archive takes it.
#[derive(Debug)]
pub struct Unfiled {
    pub rows: u64,
    pub error: String,
}

impl std::fmt::Display for Unfiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "its {} rows were stored, but it could not be archived ({}); it stays in the inbox and is archived once that works",
            self.rows, self.error
        )
    }
}

impl std::error::Error for Unfiled {}

#[allow(clippy::too_many_arguments)]
fn ingest_staged(
    cfg: &Loaded,
    conn: &mut Connection,
    path: &Path,
    copy: &mut file::Staged,
    keep: Keep,
    progress: &mut dyn FnMut(u64),
    stop: Option<&std::sync::atomic::AtomicBool>,
    bulk: bool,
    t0: std::time::Instant,
) -> Result<FileReport> {
    let t_hash = t0.elapsed();
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (hash, size) = (copy.hash.clone(), copy.size);
    let dataset = cfg.cfg.datasets.route(&file_name);
    let Some(dataset) = dataset else {
        let patterns: Vec<String> = Dataset::ALL
            .iter()
            .filter(|d| !cfg.cfg.datasets.get(**d).files.is_empty())
            .map(|d| format!("{d}: {}", cfg.cfg.datasets.get(*d).files.join(" ")))
            .collect();
        let rej = Rejection::whole(format!(
            "the file name matches no dataset pattern. Rename the file to match one of ({}) or add a pattern under `datasets.<name>.files` in {}",
            patterns.join("; "),
            cfg.file.display()
        ));
        return reject(
            cfg, conn, path, copy, keep, &file_name, size, &hash, None, "line", rej,
        );
    };

    let same = if dataset.is_snapshot() {
        store::same_as_newest_snapshot(conn, dataset.name(), &hash)?
    } else {
        store::ingested_before(conn, &hash)?
    };
    if let Some(first) = same {
        let moved_to = archive(cfg, path, copy, keep, &file_name)?;
        store::record_file(
            conn,
            &LedgerEntry {
                file_name: &file_name,
                size,
                hash: &hash,
                dataset: Some(dataset.name()),
                rows: 0,
                outcome: Outcome::Duplicate,
                reason: Some(&format!("same content as {first}, ingested before")),
                file_date: None,
            },
        )?;
        tracing::info!(file = ?file_name, dataset = %dataset, first = ?first, "duplicate of a file already ingested; archived, counted nowhere");
        return Ok(FileReport {
            file_name,
            dataset: Some(dataset),
            outcome: Outcome::Duplicate,
            rows: 0,
            moved_to,
            reason: None,
            skipped: 0,
            errors_file: None,
            read: 0,
            replaced: 0,
        });
    }

    let ds = cfg.cfg.datasets.get(dataset);
    let file_date = dataset
        .is_snapshot()
        .then(|| file_day(cfg, &copy.path, &file_name))
        .flatten();
    let freshness = match (&file_date, dataset.is_snapshot()) {
        (Some(day), true) => match store::newest_snapshot(conn, dataset.name())? {
            Some(n) if n.day.as_str() > day.as_str() => Freshness::Older {
                newest: format!("{} of {}", n.file_name, n.day),
                day: day.clone(),
            },
            _ => Freshness::Current,
        },
        _ => Freshness::Current,
    };

    let opened = match future_snapshot(cfg, dataset, &file_name) {
        Some(reason) => Err(reason),
        None => Source::open(&copy.path, ds, &cfg.cfg.ingest)?,
    };
    let (mut src, headers) = match opened {
        Ok(x) => x,
        Err(summary) => {
            let rej = Rejection::whole(summary);
            return reject(
                cfg,
                conn,
                path,
                copy,
                keep,
                &file_name,
                size,
                &hash,
                Some(dataset),
                "line",
                rej,
            );
        }
    };
    let unit = src.unit();

    // A big visits file is staged and written in key order.
    let staged = dataset == Dataset::Visits
        && size >= BULK_MIN_BYTES
        && ds.key_fields(dataset) == dataset.default_key();
    // The write lock first (waiting for it up to the busy timeout): a
    // transaction that reads before it writes fails at once when another
    // process (the daemon, a `kamwatch ingest`) wrote in between.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let suspended = if bulk {
        store::suspend_indexes(&tx, "orders")?
    } else {
        Vec::new()
    };
    // Rows replaced by key are counted (a temporary trigger: new rows cost
    // nothing). For receivables and inventory the writer first empties the
    // table: those rows are the ones this snapshot replaces.
    if dataset != Dataset::Accounts {
        store::count_replacements(&tx, dataset.name())?;
    }
    let older = matches!(freshness, Freshness::Older { .. });
    // A master is the whole book: remember who was active before it, to
    // count (and bound) the accounts it switches off.
    let active_before = if dataset == Dataset::Accounts && !older {
        Some(store::remember_active_accounts(&tx)?)
    } else {
        None
    };
    let result = {
        let mut writer = match dataset {
            Dataset::Accounts if older => Some(Writer::accounts_older(&tx)?),
            Dataset::Accounts => Some(Writer::accounts(&tx)?),
            Dataset::Orders => {
                // Order attributes are stored as values only, the names once
                // per header (a header that does not map is rejected below).
                let names = map_columns(dataset, ds, &headers)
                    .map(|m| m.extra.into_iter().map(|(n, _)| n).collect::<Vec<_>>())
                    .unwrap_or_default();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                Some(Writer::orders_keyed(&tx, &ds.key_fields(dataset), &names)?)
            }
            Dataset::Visits if staged => Some(Writer::visits_staged(&tx)?),
            Dataset::Visits => Some(Writer::visits_keyed(&tx, &ds.key_fields(dataset))?),
            // An older snapshot of these would undo a newer one: validated,
            // not applied.
            Dataset::Receivables | Dataset::Inventory if older => None,
            Dataset::Receivables => Some(Writer::receivables(&tx)?),
            Dataset::Inventory => Some(Writer::inventory(&tx)?),
        };
        // Every account is first marked inactive: not a replacement.
        if dataset == Dataset::Accounts {
            store::count_replacements(&tx, dataset.name())?;
        }
        load_rows(
            &mut src,
            &headers,
            dataset,
            ds,
            writer.as_mut(),
            progress,
            stop,
            CellRules {
                max_amount: cfg.cfg.ingest.max_amount,
                zone: cfg.cfg.schedule.zone(),
            },
        )?
    };
    let mut switched_off = 0;
    let result = match (result, active_before) {
        (Ok(loaded), Some(before)) => {
            switched_off = store::accounts_switched_off(&tx)?;
            match master_shrink(cfg, &file_name, loaded.rows, switched_off, before) {
                Some(reason) => Err(Rejection::whole(reason)),
                None => Ok(loaded),
            }
        }
        (r, _) => r,
    };
    drop(src);
    let t_load = t0.elapsed();
    match result {
        Ok(loaded) => {
            if !suspended.is_empty() || staged {
                // The sorter of an index build or of the staged rows takes
                // memory of its own: shrink the page cache first so the
                // peak stays bounded.
                tx.pragma_update(None, "cache_size", -LOAD_CACHE_KIB / 8)?;
                store::restore_indexes(&tx, &suspended)?;
            }
            if staged {
                store::apply_visit_stage(&tx)?;
            }
            let t_index = t0.elapsed();
            let mut notes = Vec::new();
            let skipped = loaded.problems.bad_rows;
            if skipped > 0 {
                notes.push(format!(
                    "{skipped} bad row(s) skipped (on_error: skip_rows), listed in the errors file beside the archived file"
                ));
            }
            if switched_off > 0 {
                notes.push(format!(
                    "{switched_off} account(s) listed by the previous master are not in this one and were switched off: they get no warnings, and their open alerts stay as they were until a master lists them again"
                ));
            }
            let mut stored = loaded.rows;
            if let Freshness::Older { newest, day } = &freshness {
                match dataset {
                    Dataset::Accounts => notes.push(format!(
                        "this master (of {day}) is older than {newest}, ingested before: no account was changed or deactivated; accounts only this file lists were added as inactive"
                    )),
                    _ => {
                        stored = 0;
                        notes.push(format!(
                            "this snapshot (of {day}) is older than {newest}, ingested before: validated but not applied; the newer one stays"
                        ))
                    }
                }
            }
            // Updates and deletes by key, less the file's own repeated keys
            // (kept last): the rows of earlier files replaced.
            let replaced = store::replacements(&tx)?.saturating_sub(loaded.duplicates);
            let counts = store::RowCounts {
                read: loaded.rows + skipped,
                stored,
                replaced,
                skipped,
            };
            if loaded.duplicates > 0 {
                notes.push(format!(
                    "{} row(s) repeated the key of an earlier row of the file; the last of each was kept (duplicate_keys: keep_last)",
                    loaded.duplicates
                ));
            }
            let note = (!notes.is_empty()).then(|| notes.join("; "));
            store::record_file_counts(
                &tx,
                &LedgerEntry {
                    file_name: &file_name,
                    size,
                    hash: &hash,
                    dataset: Some(dataset.name()),
                    rows: stored,
                    outcome: Outcome::Ingested,
                    reason: note.as_deref(),
                    file_date: file_date.as_deref(),
                },
                &counts,
            )?;
            tx.commit()?;
            let t_commit = t0.elapsed();
            // Committed first, moved second: a crash in between leaves the
            // file in the inbox, where its hash makes it a harmless duplicate.
            let moved_to = archive(cfg, path, copy, keep, &file_name).map_err(|e| Unfiled {
                rows: stored,
                error: format!("{e:#}"),
            })?;
            tracing::debug!(
                file = ?file_name,
                hash_ms = t_hash.as_millis(),
                load_ms = (t_load - t_hash).as_millis(),
                index_ms = (t_index - t_load).as_millis(),
                commit_ms = (t_commit - t_index).as_millis(),
                archive_ms = (t0.elapsed() - t_commit).as_millis(),
                bulk,
                staged,
                "ingest phases"
            );
            let errors_file = if skipped > 0 && keep != Keep::InPlace {
                let text = errors_text(
                    &format!(
                        "kamwatch ingested {file_name} (dataset {dataset}) without {skipped} bad row(s), listed below (on_error: skip_rows). Fix them in the export and drop a corrected file in again: its good rows replace these."
                    ),
                    &loaded.problems,
                    unit,
                );
                let p = file::sidecar(&moved_to);
                file::write_new(&p, &text)?;
                Some(p)
            } else {
                None
            };
            tracing::info!(file = ?file_name, dataset = %dataset, read = counts.read, stored, replaced, skipped, "ingested");
            Ok(FileReport {
                file_name,
                dataset: Some(dataset),
                outcome: Outcome::Ingested,
                rows: stored,
                moved_to,
                reason: note,
                skipped,
                errors_file,
                read: counts.read,
                replaced,
            })
        }
        Err(rej) => {
            tx.rollback()?;
            reject(
                cfg,
                conn,
                path,
                copy,
                keep,
                &file_name,
                size,
                &hash,
                Some(dataset),
                unit,
                rej,
            )
        }
    }
}

/// Why a snapshot dated (by its name) after tomorrow is refused, if it is:
/// it would stay the newest for good, and every real one after it would be
/// "older", not applied.
fn future_snapshot(cfg: &Loaded, dataset: Dataset, file_name: &str) -> Option<String> {
    let today = cfg.today();
    let day = date_in_name(file_name).filter(|_| dataset.is_snapshot())?;
    today.succ_opt().is_some_and(|tomorrow| day > tomorrow).then(|| format!(
        "the date in its name, {day}, is after today ({today} in schedule.timezone): as the newest {dataset} snapshot it could never be replaced by the real ones. Fix the date in the name, or leave the date out (the file's modification time then dates it)"
    ))
}

/// Why a master that would switch off too much of the book is held back, if
/// it is: a partial export (one region, one new account) looks like a master
/// and would silence every warning of the rest. `before` accounts were
/// active; this file lists `listed` and leaves `off` of them out.
fn master_shrink(
    cfg: &Loaded,
    file_name: &str,
    listed: u64,
    off: u64,
    before: u64,
) -> Option<String> {
    let max_pct = cfg.cfg.ingest.max_accounts_switched_off_pct;
    // A small book may change by more than the share in one go.
    if off == 0 || before < 10 || (off as f64) * 100.0 <= max_pct * before as f64 {
        return None;
    }
    Some(format!(
        "this customer master lists {listed} account(s) and would switch off {off} of the {before} active now ({:.0}%, more than ingest.max_accounts_switched_off_pct = {max_pct}): a master is the whole book, and a partial export would silence the warnings of every account it leaves out. Nothing of it was stored. Drop the full master instead; if the book really shrank this much, raise ingest.max_accounts_switched_off_pct in {} and drop {} again",
        off as f64 * 100.0 / before as f64,
        cfg.file.display(),
        file_name
    ))
}

/// The day a snapshot was written: a date in its name (`..._20261128.csv`,
/// `..._2026-11-28.xlsx`), else the day of its mtime in
/// `schedule.timezone`. YYYY-MM-DD.
fn file_day(cfg: &Loaded, path: &Path, file_name: &str) -> Option<String> {
    if let Some(d) = date_in_name(file_name) {
        return Some(store::date_text(d));
    }
    let mtime = std::fs::metadata(path).ok()?.modified().ok()?;
    let t: chrono::DateTime<chrono::Utc> = mtime.into();
    Some(store::date_text(cfg.cfg.schedule.zone().naive_at(t).date()))
}

/// The last full date in a file name: 20261128, 2026-11-28, 2026_11_28 or
/// 2026.11.28, not part of a longer run of digits.
pub fn date_in_name(name: &str) -> Option<chrono::NaiveDate> {
    let b = name.as_bytes();
    let mut found = None;
    for i in 0..b.len() {
        if i > 0 && b[i - 1].is_ascii_digit() {
            continue;
        }
        let digits = |from: usize, n: usize| -> Option<u32> {
            let s = b.get(from..from + n)?;
            if !s.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(s).ok()?.parse().ok()
        };
        let end_ok = |at: usize| !b.get(at).is_some_and(u8::is_ascii_digit);
        let Some(y) = digits(i, 4) else { continue };
        let ymd = if let (Some(m), Some(d)) = (digits(i + 4, 2), digits(i + 6, 2)) {
            end_ok(i + 8).then_some((y, m, d))
        } else if matches!(b.get(i + 4), Some(b'-' | b'_' | b'.')) && b.get(i + 7) == b.get(i + 4) {
            match (digits(i + 5, 2), digits(i + 8, 2)) {
                (Some(m), Some(d)) if end_ok(i + 10) => Some((y, m, d)),
                _ => None,
            }
        } else {
            None
        };
        if let Some((y, m, d)) = ymd
            && (1900..=2200).contains(&y)
            && let Some(date) = chrono::NaiveDate::from_ymd_opt(y as i32, m, d)
        {
            found = Some(date);
        }
    }
    found
}

/// Where each canonical field sits in the file's header, and the other
/// columns, kept as attributes.
pub struct ColumnMap {
    /// (field, column header, index) for every mapped field.
    fields: Vec<(&'static str, String, Option<usize>)>,
    /// (attribute name, index) of every other column with a header.
    extra: Vec<(String, usize)>,
}

impl ColumnMap {
    pub fn idx(&self, field: &str) -> Option<usize> {
        self.fields
            .iter()
            .find(|(f, _, _)| *f == field)
            .and_then(|(_, _, i)| *i)
    }
    fn header(&self, field: &str) -> String {
        self.fields
            .iter()
            .find(|(f, _, _)| *f == field)
            .map(|(_, h, _)| format!("{h} ({field})"))
            .unwrap_or_else(|| field.to_string())
    }
    /// The attribute names, in header order.
    pub fn extra_names(&self) -> Vec<&str> {
        self.extra.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The other columns of `rec` for `dataset`: for orders the values only,
    /// a JSON array in the order of [`ColumnMap::extra_names`] with null for
    /// an empty cell (the store keeps the names once per file); for the
    /// other datasets a JSON object. `None` if all are empty.
    fn attrs_for(&self, dataset: Dataset, rec: &StringRecord, buf: String) -> Option<String> {
        if dataset == Dataset::Orders {
            self.attr_values(rec, buf)
        } else {
            self.attrs(rec)
        }
    }

    /// The other columns of `rec` as a JSON array of values (null for an
    /// empty one), written into `buf` (emptied first); `None` if all are
    /// empty.
    fn attr_values(&self, rec: &StringRecord, buf: String) -> Option<String> {
        let mut out = buf;
        out.clear();
        let mut any = false;
        for (_, i) in &self.extra {
            out.push(if out.is_empty() { '[' } else { ',' });
            match rec.get(*i).map(str::trim).filter(|v| !v.is_empty()) {
                Some(v) => {
                    any = true;
                    json_string(&mut out, v);
                }
                None => out.push_str("null"),
            }
        }
        any.then(|| {
            out.push(']');
            out
        })
    }

    /// The other columns of `rec` as a JSON object; `None` if all are empty.
    fn attrs(&self, rec: &StringRecord) -> Option<String> {
        let mut out = String::new();
        for (name, i) in &self.extra {
            let Some(v) = rec.get(*i).map(str::trim).filter(|v| !v.is_empty()) else {
                continue;
            };
            out.push(if out.is_empty() { '{' } else { ',' });
            json_string(&mut out, name);
            out.push(':');
            json_string(&mut out, v);
        }
        if out.is_empty() {
            None
        } else {
            out.push('}');
            Some(out)
        }
    }
}

/// Appends `s` as a JSON string literal.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Maps the header to the dataset's fields. Refuses a header that lacks a
/// required column or names a mapped column twice.
pub fn map_columns(
    dataset: Dataset,
    ds: &DatasetConfig,
    headers: &StringRecord,
) -> std::result::Result<ColumnMap, String> {
    // Names as a person reads them: an invisible character copied into a
    // header cell (a zero-width space) would otherwise make `金额` another
    // column than `金额`, and the value read from the wrong one.
    let names: Vec<String> = headers.iter().map(values::header_name).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut fields = Vec::new();
    let mut missing = Vec::new();
    let mut used = vec![false; names.len()];
    for (field, required) in dataset.fields() {
        let Some(col) = ds.columns.get(*field) else {
            continue;
        };
        let hits: Vec<usize> = names
            .iter()
            .enumerate()
            .filter(|(_, n)| **n == values::header_name(col))
            .map(|(i, _)| i)
            .collect();
        if hits.len() > 1 {
            return Err(format!(
                "the header has the column {col:?} {} times (columns {}), so it is unclear which is {field}; keep one, rename the others, and drop the file in again",
                hits.len(),
                hits.iter()
                    .map(|i| (i + 1).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if hits.is_empty() && *required {
            missing.push(format!("{col:?} ({field})"));
        }
        if let Some(i) = hits.first() {
            used[*i] = true;
        }
        fields.push((*field, col.clone(), hits.first().copied()));
    }
    if !missing.is_empty() {
        return Err(format!(
            "the header lacks the required column(s) {}. The header found is: {}. Either this is not an export of {dataset}, or its columns are named differently: map them under `datasets.{dataset}.columns` in the config",
            missing.join(", "),
            names
                .iter()
                .take(40)
                .map(values::bounded)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // Other columns become attributes; a repeated name gets "#2", "#3" …
    // A column without a name is named by its place ("column F"), so what
    // it holds is kept (its empty cells cost nothing: they are left out).
    let mut extra: Vec<(String, usize)> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if used[i] {
            continue;
        }
        let n = if n.trim().is_empty() {
            format!("column {}", source::column_name(i as u32))
        } else {
            (*n).to_string()
        };
        let n = n.as_str();
        let mut name = n.to_string();
        let mut k = 1;
        while extra.iter().any(|(e, _)| *e == name) {
            k += 1;
            name = format!("{n}#{k}");
        }
        extra.push((name, i));
    }
    Ok(ColumnMap { fields, extra })
}

/// Rows parsed per batch handed from the parser thread to the writer.
const BATCH_ROWS: usize = 1024;
/// Batches in flight between them: bounds the memory a fast parser can use.
const BATCHES_IN_FLIGHT: usize = 4;

/// Parsed rows with their attributes (a JSON object, if any).
type Batch = Vec<(Parsed, Option<String>)>;

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

/// Reads, validates and (with a writer) writes every row: a parser thread
/// reads and validates, this thread writes, with a bounded channel between
/// them (two cores, and SQLite is the slower half). The outer `Result` is a
/// store failure; the inner one is the verdict on the file.
#[allow(clippy::too_many_arguments)]
fn load_rows(
    src: &mut Source,
    headers: &StringRecord,
    dataset: Dataset,
    ds: &DatasetConfig,
    writer: Option<&mut Writer<'_>>,
    progress: &mut dyn FnMut(u64),
    stop: Option<&std::sync::atomic::AtomicBool>,
    cells: CellRules,
) -> Result<std::result::Result<Loaded_, Rejection>> {
    let map = match map_columns(dataset, ds, headers) {
        Ok(m) => m,
        Err(r) => return Ok(Err(Rejection::whole(r))),
    };
    let skip = ds.on_error == OnError::SkipRows;
    let unit = src.unit();
    let write = writer.is_some();
    let (send, recv) = std::sync::mpsc::sync_channel::<Batch>(BATCHES_IN_FLIGHT);
    // Written batches go back to the parser thread to be freed there: the
    // thread that allocated their strings frees them fastest.
    let (done, written_batches) = std::sync::mpsc::sync_channel::<Batch>(BATCHES_IN_FLIGHT + 1);
    let verdict = std::thread::scope(|scope| -> Result<std::result::Result<Verdict, String>> {
        let map = &map;
        let parser = scope.spawn(move || {
            parse_all(
                src,
                headers.len(),
                dataset,
                ds,
                map,
                skip,
                cells,
                write.then_some((send, written_batches)),
            )
        });
        let mut failure = None;
        if let Some(w) = writer {
            let mut written = 0u64;
            let mut next_report = PROGRESS_EVERY;
            for batch in recv.iter() {
                if let Err(e) = write_batch(w, &batch) {
                    failure = Some(e);
                    break;
                }
                written += batch.len() as u64;
                // A full return channel (the parser finished) just drops it here.
                let _ = done.try_send(batch);
                if written >= next_report {
                    progress(written);
                    next_report = written + PROGRESS_EVERY;
                    if stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed)) {
                        // The caller drops the transaction: all rolls back.
                        failure = Some(Cancelled.into());
                        break;
                    }
                }
            }
        }
        // Dropping the receiver stops a parser that is still sending.
        drop(recv);
        // A panic while parsing (a bug, in kamwatch or a format library)
        // rejects this file; it does not take the daemon down.
        let verdict = parser.join().map_err(|panic| {
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into())
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(verdict),
        }
    })?;
    let verdict = match verdict {
        Ok(v) => v,
        Err(panic) => {
            return Ok(Err(Rejection::whole(format!(
                "reading this file failed inside kamwatch ({}); nothing from it was stored. It is set aside, not retried: please report it to the kamwatch maintainers with the file",
                values::bounded(panic)
            ))));
        }
    };
    let Verdict {
        rows,
        mut problems,
        fatal,
        keys,
    } = verdict;
    progress(rows);
    if let Some(line) = fatal {
        return Ok(Err(Rejection {
            summary: format!(
                "{unit} {line} cannot be read, so the rest of the file cannot be either; nothing from this file was stored"
            ),
            problems,
        }));
    }
    let dups = keys.context("checking the file's keys in a temporary file")?;
    if dups.rows > 0 && ds.duplicate_keys == DuplicateKeys::Reject {
        let fields = key_fields(dataset, ds).join(", ");
        let mut all = Problems::default();
        for (first, line) in &dups.pairs {
            all.push(RowError {
                line: *line,
                column: None,
                message: format!("has the same key ({fields}) as {unit} {first}"),
            });
        }
        all.total = dups.rows as usize;
        for e in problems.listed.drain(..) {
            all.push(e);
        }
        all.total += problems.total;
        all.listed.sort_by_key(|e| e.line);
        let hint = if dataset == Dataset::Orders && map.idx("line").is_none() {
            "; the export has no line column, so its rows were numbered per order in file order: map the export's line column (`columns: line:`) if it has one"
        } else {
            ""
        };
        return Ok(Err(Rejection {
            summary: format!(
                "{} row(s) have the key ({fields}) of an earlier row of this file, and rows of one file with one key would overwrite each other, so nothing from this file was stored. Fix the export{hint}, or set `duplicate_keys: keep_last` for this dataset to store the last row of each key",
                dups.rows
            ),
            problems: all,
        }));
    }
    if problems.total > 0 && (!skip || rows == 0) {
        let all_bad = if skip && rows == 0 {
            " (on_error: skip_rows, but no row was good)"
        } else {
            ""
        };
        return Ok(Err(Rejection {
            summary: format!(
                "{} error(s) in {} of {} data row(s){all_bad}; nothing from this file was stored",
                problems.total,
                problems.bad_rows,
                rows + problems.bad_rows
            ),
            problems,
        }));
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
    Ok(Ok(Loaded_ {
        rows,
        problems,
        duplicates: dups.rows,
    }))
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

/// The parser thread: reads and validates every row, and sends the good
/// ones to `send` in batches — all of them under `skip_rows`, otherwise
/// only until the first problem (the file will be rejected, but every
/// problem is still listed). Stops early if the writer hangs up.
#[allow(clippy::too_many_arguments)]
fn parse_all(
    src: &mut Source,
    width: usize,
    dataset: Dataset,
    ds: &DatasetConfig,
    map: &ColumnMap,
    skip: bool,
    cells: CellRules,
    send: Option<(
        std::sync::mpsc::SyncSender<Batch>,
        std::sync::mpsc::Receiver<Batch>,
    )>,
) -> Verdict {
    let mut problems = Problems::default();
    let mut rows = 0u64;
    let key = key_fields(dataset, ds);
    let mut keys = KeySeen::default();
    // Order lines without a line number are numbered per order, in file
    // order (by a 64-bit hash of the order id: a collision would only skip
    // numbers, never give two lines one number).
    let mut next_line: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
    let mut record = StringRecord::new();
    let mut row_errors = Vec::new();
    let mut batch: Batch = Vec::with_capacity(BATCH_ROWS);
    // Rows of a batch the writer is done with: their strings are refilled
    // for new rows instead of allocated again.
    let mut spare: Batch = Vec::new();
    let mut send = send;
    let mut fatal = None;
    loop {
        let line = match src.read(&mut record) {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                problems.bad_rows += 1;
                problems.push(RowError {
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
        if record.len() != width {
            problems.bad_rows += 1;
            problems.push(RowError {
                line,
                column: None,
                message: format!(
                    "has {} fields where the header has {width}; check for an unquoted delimiter in a value",
                    record.len()
                ),
            });
            continue;
        }
        row_errors.clear();
        let (reuse, reuse_attrs) = spare.pop().unzip();
        let mut parsed = parse_row(dataset, ds, map, &record, &mut row_errors, reuse, cells);
        if !row_errors.is_empty() {
            problems.bad_rows += 1;
            for (column, message) in row_errors.drain(..) {
                problems.push(RowError {
                    line,
                    column: Some(column),
                    message,
                });
            }
            continue;
        }
        rows += 1;
        if let Some(Parsed::Order(r)) = &mut parsed
            && r.line.is_empty()
        {
            let n = next_line
                .entry(hash_of(&[r.order_id.as_bytes()]))
                .or_insert(0);
            *n += 1;
            let _ = write!(r.line, "{n}");
        }
        if let Some(p) = &parsed
            && let Err(e) = keys.push(key_hash(p, &key), line)
        {
            return Verdict {
                rows,
                problems,
                fatal: None,
                keys: Err(e),
            };
        }
        if !skip && problems.total > 0 {
            send = None; // rejected anyway: stop writing
        }
        if let (Some((s, back)), Some(p)) = (&send, parsed) {
            let attrs = map.attrs_for(dataset, &record, reuse_attrs.flatten().unwrap_or_default());
            batch.push((p, attrs));
            if batch.len() == BATCH_ROWS {
                // A batch the writer is done with becomes the spare rows; the
                // spare list, now empty, the next batch.
                let next = match back.try_recv() {
                    Ok(b) => {
                        let mut emptied = std::mem::replace(&mut spare, b);
                        emptied.clear();
                        emptied
                    }
                    Err(_) => Vec::with_capacity(BATCH_ROWS),
                };
                let full = std::mem::replace(&mut batch, next);
                if s.send(full).is_err() {
                    break; // the writer failed; its error is what counts
                }
            }
        }
    }
    if let Some((s, _)) = &send
        && !batch.is_empty()
    {
        let _ = s.send(batch);
    }
    Verdict {
        rows,
        problems,
        fatal,
        keys: keys.duplicates(MAX_LISTED_ERRORS),
    }
}

/// The fields that identify a row of `dataset`: two rows of one file with
/// the same values there would overwrite each other.
fn key_fields(dataset: Dataset, ds: &DatasetConfig) -> Vec<String> {
    match dataset {
        Dataset::Orders | Dataset::Visits => ds.key_fields(dataset),
        Dataset::Accounts => vec!["id".into()],
        Dataset::Receivables => vec!["account_id".into(), "invoice".into()],
        Dataset::Inventory => vec!["sku".into(), "account_id".into()],
    }
}

/// A 64-bit hash of byte strings (SipHash with fixed keys: the same in
/// every run), each ended by a byte no UTF-8 text holds.
fn hash_of(parts: &[&[u8]]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    for p in parts {
        h.write(p);
        h.write_u8(0xFF);
    }
    h.finish()
}

/// The hash of the key `fields` of a parsed row.
fn key_hash(p: &Parsed, fields: &[String]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    let mut text = |s: &str| {
        h.write(s.as_bytes());
        h.write_u8(0xFF);
    };
    for f in fields {
        match (p, f.as_str()) {
            (Parsed::Order(r), "order_id") => text(&r.order_id),
            (Parsed::Order(r), "line") => text(&r.line),
            (Parsed::Order(r), "account_id") => text(&r.account_id),
            (Parsed::Order(r), "date") => text(&store::date_text(r.date)),
            (Parsed::Order(r), "sku") => text(r.sku.as_deref().unwrap_or("")),
            (Parsed::Order(r), "qty") => text(&r.qty.map(f64::to_bits).unwrap_or(0).to_string()),
            (Parsed::Order(r), "revenue") => text(&r.revenue.to_bits().to_string()),
            (Parsed::Order(r), "cost") => text(&r.cost.to_bits().to_string()),
            (Parsed::Visit(r), "account_id") => text(&r.account_id),
            (Parsed::Visit(r), "date") => text(&store::date_text(r.date)),
            (Parsed::Visit(r), "visitor") => text(&r.visitor),
            (Parsed::Visit(r), "role") => text(r.role.as_deref().unwrap_or("")),
            (Parsed::Account(r, _), "id") => text(&r.id),
            (Parsed::Receivable(r), "account_id") => text(&r.account_id),
            (Parsed::Receivable(r), "invoice") => text(&r.invoice),
            (Parsed::Stock(r), "sku") => text(&r.sku),
            (Parsed::Stock(r), "account_id") => text(&r.account_id),
            _ => text(""),
        }
    }
    h.finish()
}

/// Key hashes held in memory before a sorted run is spilled: 4 MiB.
const KEY_RUN: usize = 1 << 18;

/// The keys of a file's good rows, to find two rows with the same key:
/// (64-bit hash, line) pairs, sorted in runs of [`KEY_RUN`] and spilled to
/// unlinked temporary files beyond, merged at the end. Memory stays at one
/// run however big the file.
#[derive(Default)]
struct KeySeen {
    run: Vec<(u64, u64)>,
    spilled: Vec<std::fs::File>,
}

/// Rows of the file whose key an earlier row already had (rows minus
/// distinct keys), and the first few (earlier line, line) pairs.
#[derive(Debug, Default)]
struct Duplicates {
    rows: u64,
    pairs: Vec<(u64, u64)>,
}

impl KeySeen {
    fn push(&mut self, hash: u64, line: u64) -> std::io::Result<()> {
        if self.run.capacity() == 0 {
            self.run.reserve_exact(KEY_RUN);
        }
        self.run.push((hash, line));
        if self.run.len() == KEY_RUN {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> std::io::Result<()> {
        use std::io::{Seek, Write};
        self.run.sort_unstable();
        let mut f = tempfile_unlinked()?;
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 16, &mut f);
            for (h, l) in self.run.drain(..) {
                w.write_all(&h.to_le_bytes())?;
                w.write_all(&l.to_le_bytes())?;
            }
            w.flush()?;
        }
        f.seek(std::io::SeekFrom::Start(0))?;
        self.spilled.push(f);
        Ok(())
    }

    fn duplicates(mut self, listed: usize) -> std::io::Result<Duplicates> {
        use std::io::Read;
        let mut d = Duplicates::default();
        let mut note = |prev: &mut Option<(u64, u64)>, (h, l): (u64, u64)| match prev {
            Some((ph, first)) if *ph == h => {
                d.rows += 1;
                if d.pairs.len() < listed {
                    d.pairs.push((*first, l));
                }
            }
            _ => *prev = Some((h, l)),
        };
        let mut prev = None;
        if self.spilled.is_empty() {
            self.run.sort_unstable();
            for e in self.run.drain(..) {
                note(&mut prev, e);
            }
        } else {
            if !self.run.is_empty() {
                self.spill()?;
            }
            // A k-way merge of the sorted runs, read through small buffers.
            use std::cmp::Reverse;
            let mut readers: Vec<_> = self
                .spilled
                .drain(..)
                .map(|f| std::io::BufReader::with_capacity(1 << 16, f))
                .collect();
            let next =
                |r: &mut std::io::BufReader<std::fs::File>| -> std::io::Result<Option<(u64, u64)>> {
                    let mut b = [0u8; 16];
                    match r.read_exact(&mut b) {
                        Ok(()) => {
                            let (h, l) = b.split_at(8);
                            let h = u64::from_le_bytes(h.try_into().unwrap_or_default());
                            let l = u64::from_le_bytes(l.try_into().unwrap_or_default());
                            Ok(Some((h, l)))
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
                        Err(e) => Err(e),
                    }
                };
            let mut heap = std::collections::BinaryHeap::new();
            for (i, r) in readers.iter_mut().enumerate() {
                if let Some(e) = next(r)? {
                    heap.push(Reverse((e, i)));
                }
            }
            while let Some(Reverse((e, i))) = heap.pop() {
                note(&mut prev, e);
                if let Some(e) = next(&mut readers[i])? {
                    heap.push(Reverse((e, i)));
                }
            }
        }
        Ok(d)
    }
}

/// A new temporary file, already unlinked: it goes when it is closed.
fn tempfile_unlinked() -> std::io::Result<std::fs::File> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir();
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("kamwatch-keys-{}-{seq}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(f)
}

/// How cells are read beyond their dataset's columns.
#[derive(Clone, Copy)]
struct CellRules {
    /// Amounts beyond ± this are row errors (`ingest.max_amount`).
    max_amount: f64,
    /// A time with an offset (`2026-11-28T20:00:00Z`) is the date it is in
    /// this zone (`schedule.timezone`), the business day of every date.
    zone: crate::config::Zone,
}

enum Parsed {
    Account(AccountRow, Extra),
    Order(OrderRow),
    Visit(VisitRow),
    Receivable(ReceivableRow),
    Stock(InventoryRow),
}

/// Parses and validates one row. `reuse`: a row already written, whose
/// strings an order line refills instead of allocating its own.
fn parse_row(
    dataset: Dataset,
    ds: &DatasetConfig,
    map: &ColumnMap,
    rec: &StringRecord,
    errs: &mut Vec<(String, String)>,
    reuse: Option<Parsed>,
    cells: CellRules,
) -> Option<Parsed> {
    let max_amount = cells.max_amount;
    let raw = |field: &str| -> &str { map.idx(field).and_then(|i| rec.get(i)).unwrap_or("") };
    let text = |field: &str| -> Option<String> {
        Some(raw(field).trim())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let required = |field: &str, errs: &mut Vec<(String, String)>| -> String {
        match text(field) {
            Some(v) => v,
            None => {
                errs.push((map.header(field), "is empty but required".into()));
                String::new()
            }
        }
    };
    // An identifier (see `values::identifier`): "" when empty, which a
    // required one reports.
    let id = |field: &str, need: bool, errs: &mut Vec<(String, String)>| -> String {
        match values::identifier(raw(field)) {
            Ok(v) => {
                if v.is_empty() && need {
                    errs.push((map.header(field), "is empty but required".into()));
                }
                v.into_owned()
            }
            Err(e) => {
                errs.push((map.header(field), e));
                String::new()
            }
        }
    };
    let date = |field: &str, need: bool, errs: &mut Vec<(String, String)>| {
        let v = raw(field);
        if !need && v.trim().is_empty() {
            return None;
        }
        if let Some(at) = values::instant_with_offset(v) {
            return Some(cells.zone.naive_at(at).date());
        }
        match values::parse_date_in(v, ds.date_order) {
            Ok(d) => Some(d),
            Err(e) => {
                errs.push((map.header(field), e));
                None
            }
        }
    };
    let number = |field: &str, need: bool, errs: &mut Vec<(String, String)>| {
        match values::parse_number(raw(field)) {
            Ok(None) if need => {
                errs.push((map.header(field), "is empty but required".into()));
                None
            }
            Ok(Some(v)) if v.abs() > max_amount => {
                errs.push((
                    map.header(field),
                    format!(
                        "{} is beyond the amounts accepted (±{max_amount:e}, `ingest.max_amount`): a typo or a broken export? Fix the cell, or raise `ingest.max_amount` in the config",
                        values::excerpt(raw(field).trim())
                    ),
                ));
                None
            }
            Ok(v) => v,
            Err(e) => {
                errs.push((map.header(field), e));
                None
            }
        }
    };
    // One address per cell, checked like the mail does; a list is refused
    // with what to do, not mailed to half of it.
    let email = |field: &str, errs: &mut Vec<(String, String)>| -> Option<String> {
        let v = text(field)?;
        // `张伟 <zhang.wei@example.com>`, as mail clients copy it: the
        // address is what is in the brackets (the name is the owner column's).
        let v = match (v.rfind('<'), v.trim_end().strip_suffix('>')) {
            (Some(open), Some(inner)) if !v[..open].contains(['<', '>', '@']) => {
                inner[open + 1..].trim().to_string()
            }
            _ => v,
        };
        let parts: Vec<&str> = v
            .split([';', ',', '；', '，', ' ', '\t', '\n', '\r'])
            .filter(|p| !p.is_empty())
            .collect();
        if parts.len() > 1 {
            errs.push((
                map.header(field),
                format!(
                    "{} holds {} addresses; write one address per account here (the account's owner or manager). To copy more people on an account's warnings, use a rule's `recipients` in `rule_settings`",
                    values::excerpt(&v),
                    parts.len()
                ),
            ));
            return None;
        }
        if !crate::config::sendable_address(&v) {
            errs.push((
                map.header(field),
                format!(
                    "{} is not an email address kamwatch can send to (name@example.com, ASCII, no address literal); fix it or leave the cell empty",
                    values::excerpt(&v)
                ),
            ));
            return None;
        }
        Some(v)
    };
    match dataset {
        Dataset::Accounts => {
            let id = id("id", true, errs);
            let name = required("name", errs);
            let credit_limit = number("credit_limit", false, errs);
            let tier_override = match text("tier") {
                None => None,
                Some(t) => match crate::model::Tier::parse(&t.to_ascii_uppercase()) {
                    Some(tier) => Some(tier),
                    None => {
                        errs.push((
                            map.header("tier"),
                            format!("{} is not a tier; write A, B or C, or leave it empty to let kamwatch compute it", values::excerpt(&t)),
                        ));
                        None
                    }
                },
            };
            Some(Parsed::Account(
                AccountRow {
                    id,
                    name,
                    region: text("region"),
                    owner: text("owner"),
                    owner_email: email("owner_email", errs),
                    manager_email: email("manager_email", errs),
                    manager: text("manager"),
                },
                Extra {
                    credit_limit,
                    tier_override,
                    attrs: None,
                },
            ))
        }
        Dataset::Orders => {
            let mut r = match reuse {
                Some(Parsed::Order(r)) => r,
                _ => OrderRow {
                    order_id: String::new(),
                    line: String::new(),
                    account_id: String::new(),
                    date: chrono::NaiveDate::MIN,
                    sku: None,
                    qty: None,
                    revenue: 0.0,
                    cost: 0.0,
                },
            };
            // The cell of `field` as an identifier into `dst`; false if it
            // is empty (a bad one is reported here).
            let put = |dst: &mut String, field: &str, errs: &mut Vec<(String, String)>| {
                dst.clear();
                match values::identifier(raw(field)) {
                    Ok(v) => {
                        dst.push_str(&v);
                        !v.is_empty()
                    }
                    Err(e) => {
                        errs.push((map.header(field), e));
                        true
                    }
                }
            };
            for (dst, field) in [
                (&mut r.order_id, "order_id"),
                (&mut r.account_id, "account_id"),
            ] {
                if !put(dst, field, errs) {
                    errs.push((map.header(field), "is empty but required".into()));
                }
            }
            // An empty line number is filled in by the caller: the order's
            // rows are numbered in file order.
            put(&mut r.line, "line", errs);
            // A line number is a number: `0010` in one export and `10` in
            // another (or a workbook's numeric cell) are one line, not two.
            if r.line.len() > 1
                && r.line.starts_with('0')
                && r.line.bytes().all(|b| b.is_ascii_digit())
            {
                let zeros = r.line.len() - r.line.trim_start_matches('0').len();
                r.line.drain(..zeros.min(r.line.len() - 1));
            }
            let mut sku = r.sku.take().unwrap_or_default();
            r.sku = put(&mut sku, "sku", errs).then_some(sku);
            let d = date("date", true, errs);
            r.qty = number("qty", false, errs);
            let revenue = number("revenue", true, errs);
            let cost = number("cost", true, errs);
            r.date = d?;
            r.revenue = revenue?;
            r.cost = cost?;
            Some(Parsed::Order(r))
        }
        Dataset::Visits => {
            let account_id = id("account_id", true, errs);
            let d = date("date", true, errs);
            Some(Parsed::Visit(VisitRow {
                account_id,
                date: d?,
                visitor: text("visitor").unwrap_or_default(),
                role: text("role"),
            }))
        }
        Dataset::Receivables => {
            let account_id = id("account_id", true, errs);
            let invoice = id("invoice", true, errs);
            let amount = number("amount", true, errs);
            let due = date("due_date", true, errs);
            let issued = date("invoice_date", false, errs);
            Some(Parsed::Receivable(ReceivableRow {
                account_id,
                invoice,
                amount: amount?,
                due_date: due?,
                invoice_date: issued,
            }))
        }
        Dataset::Inventory => {
            let sku = id("sku", true, errs);
            let on_hand = number("on_hand", true, errs);
            Some(Parsed::Stock(InventoryRow {
                sku,
                account_id: id("account_id", false, errs),
                on_hand: on_hand?,
            }))
        }
    }
}

/// Files the file taken into today's archive folder (see
/// [`file::file_taken`]).
fn archive(
    cfg: &Loaded,
    path: &Path,
    copy: &mut file::Staged,
    keep: Keep,
    file_name: &str,
) -> Result<PathBuf> {
    let day = store::date_text(cfg.today());
    file_as(path, copy, keep, &cfg.archive().join(day), file_name)
}

/// Files the file taken into `dir`, and says so when the inbox original
/// changed after it was taken and therefore stays.
fn file_as(
    path: &Path,
    copy: &mut file::Staged,
    keep: Keep,
    dir: &Path,
    file_name: &str,
) -> Result<PathBuf> {
    if keep == Keep::InPlace {
        return Ok(path.to_path_buf());
    }
    let (to, original) = file::file_taken(path, copy, dir, file_name, keep == Keep::Move)?;
    if original == file::Original::Changed {
        tracing::warn!(
            file = ?file_name,
            "the file changed after it was taken (or a writer has it open again): the version taken was filed as {}; the file stays in the inbox and is ingested again as a new version (rows with the same keys replace the ones stored)",
            to.display()
        );
    }
    Ok(to)
}

/// The text of an errors file: `first` line, then the listed problems.
fn errors_text(first: &str, problems: &Problems, unit: &str) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "{first}");
    if !problems.listed.is_empty() {
        let _ = writeln!(text);
        for e in &problems.listed {
            let col = e
                .column
                .as_ref()
                .map(|c| format!(", column {c}"))
                .unwrap_or_default();
            let _ = writeln!(text, "{unit} {}{col}: {}", e.line, e.message);
        }
        if problems.total > problems.listed.len() {
            let _ = writeln!(
                text,
                "... and {} more error(s) not listed",
                problems.total - problems.listed.len()
            );
        }
    }
    text
}

/// The first line of a reason file.
fn reason_head(file_name: &str, dataset: Option<Dataset>, rej: &Rejection) -> String {
    // A name with a line break would split the reason's first line.
    let file_name = if file_name.chars().any(char::is_control) {
        format!("{file_name:?}")
    } else {
        file_name.to_string()
    };
    let mut first = format!(
        "kamwatch rejected {file_name}{}: {}.",
        dataset
            .map(|d| format!(" (dataset {d})"))
            .unwrap_or_default(),
        rej.summary
    );
    if !rej.problems.listed.is_empty() {
        first.push_str(
            "\nFix the rows below in the export, then drop the whole file into the inbox again.",
        );
    }
    first
}

#[allow(clippy::too_many_arguments)]
fn reject(
    cfg: &Loaded,
    conn: &Connection,
    path: &Path,
    copy: &mut file::Staged,
    keep: Keep,
    file_name: &str,
    size: u64,
    hash: &str,
    dataset: Option<Dataset>,
    unit: &str,
    rej: Rejection,
) -> Result<FileReport> {
    let moved_to = file_as(path, copy, keep, &cfg.rejected(), file_name)?;
    let text = errors_text(&reason_head(file_name, dataset, &rej), &rej.problems, unit);
    let reason_path = file::sidecar(&moved_to);
    if keep != Keep::InPlace {
        file::write_new(&reason_path, &text)?;
    }
    let summary = rej.summary.clone();
    store::record_file(
        conn,
        &LedgerEntry {
            file_name,
            size,
            hash,
            dataset: dataset.map(|d| d.name()),
            rows: 0,
            outcome: Outcome::Rejected,
            reason: Some(&text),
            file_date: None,
        },
    )?;
    tracing::warn!(file = ?file_name, reason = ?summary, reasons = ?reason_path, "rejected");
    Ok(FileReport {
        file_name: file_name.to_string(),
        dataset,
        outcome: Outcome::Rejected,
        rows: 0,
        moved_to,
        reason: Some(summary),
        skipped: 0,
        errors_file: Some(reason_path),
        read: 0,
        replaced: 0,
    })
}

/// Rejects an inbox entry that is no regular file (a symlink, a FIFO ...)
/// without opening it: its target or content is never read. An inbox
/// entry is moved to rejected/; one named on the command line stays.
fn reject_entry(
    cfg: &Loaded,
    conn: &Connection,
    path: &Path,
    keep: Keep,
    file_name: &str,
    kind: &str,
) -> Result<FileReport> {
    let rej = Rejection::whole(format!(
        "it is {kind}, not a regular file; kamwatch reads only regular files and never follows links, so nothing of it was read. Put the export itself into the inbox (write it elsewhere, then move it in)"
    ));
    let dir = cfg.rejected();
    let moved_to = if keep == Keep::Move {
        file::file_entry_into(path, &dir, file_name)?
    } else if keep == Keep::InPlace {
        path.to_path_buf()
    } else {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut p = dir.join(file_name);
        let mut i = 0;
        while std::fs::symlink_metadata(file::sidecar(&p)).is_ok() {
            i += 1;
            p = dir.join(format!("{file_name}.{i}"));
        }
        p
    };
    let text = errors_text(&reason_head(file_name, None, &rej), &rej.problems, "line");
    let reason_path = file::sidecar(&moved_to);
    if keep != Keep::InPlace {
        file::write_new(&reason_path, &text)?;
    }
    store::record_file(
        conn,
        &LedgerEntry {
            file_name,
            size: 0,
            hash: "",
            dataset: None,
            rows: 0,
            outcome: Outcome::Rejected,
            reason: Some(&text),
            file_date: None,
        },
    )?;
    tracing::warn!(file = ?file_name, reason = ?rej.summary, reasons = ?reason_path, "rejected");
    Ok(FileReport {
        file_name: file_name.to_string(),
        dataset: None,
        outcome: Outcome::Rejected,
        rows: 0,
        moved_to,
        reason: Some(rej.summary),
        skipped: 0,
        errors_file: Some(reason_path),
        read: 0,
        replaced: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn orders_config() -> DatasetConfig {
        let text = include_str!("../../config/kamwatch.yaml");
        crate::config::parse(text).unwrap().datasets.orders
    }

    #[test]
    fn dates_in_file_names() {
        let d = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d);
        assert_eq!(date_in_name("客户主数据_20261128.csv"), d(2026, 11, 28));
        assert_eq!(date_in_name("accounts-2026-11-28.xlsx"), d(2026, 11, 28));
        assert_eq!(date_in_name("a_2026_01_02_b_2026.03.04.csv"), d(2026, 3, 4));
        assert_eq!(date_in_name("销售明细_202609-10.csv"), None);
        assert_eq!(date_in_name("export_120261128.csv"), None);
        assert_eq!(date_in_name("x_20261332.csv"), None);
    }

    #[test]
    fn attrs_are_a_json_object_of_the_other_columns() {
        let ds = orders_config();
        let h = StringRecord::from(vec![
            "订单编号",
            "客户编号",
            "订单日期",
            "金额",
            "成本",
            "备注",
            "备注",
            "",
        ]);
        let map = map_columns(Dataset::Orders, &ds, &h).unwrap();
        // A column without a name is kept, named by its place.
        assert_eq!(map.extra_names(), vec!["备注", "备注#2", "column H"]);
        let rec = StringRecord::from(vec![
            "1",
            "K",
            "2026-01-01",
            "1",
            "1",
            "say \"hi\"\n",
            "",
            "x",
        ]);
        let a = map.attrs(&rec).unwrap();
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"备注": "say \"hi\"", "column H": "x"})
        );
        // Orders keep the values only, in the order of the names.
        let a = map.attrs_for(Dataset::Orders, &rec, String::new()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v, serde_json::json!(["say \"hi\"", null, "x"]));
        let empty = StringRecord::from(vec!["1", "K", "2026-01-01", "1", "1", " ", "", ""]);
        assert_eq!(map.attrs_for(Dataset::Orders, &empty, "junk".into()), None);
        assert_eq!(map.attrs(&empty), None);
    }

    /// A row refilled from a written one holds nothing of it.
    #[test]
    fn a_reused_order_row_is_the_new_row_only() {
        let ds = orders_config();
        let h = StringRecord::from(vec![
            "订单编号",
            "行号",
            "客户编号",
            "订单日期",
            "产品编号",
            "数量",
            "金额",
            "成本",
        ]);
        let map = map_columns(Dataset::Orders, &ds, &h).unwrap();
        let parse = |cells: Vec<&str>, reuse| {
            let mut errs = Vec::new();
            let p = parse_row(
                Dataset::Orders,
                &ds,
                &map,
                &StringRecord::from(cells),
                &mut errs,
                reuse,
                CellRules {
                    max_amount: 1e12,
                    zone: crate::config::Zone::Local,
                },
            );
            (p, errs)
        };
        let (old, errs) = parse(
            vec![
                "SO-LONG-ID-1",
                "3",
                "KH-LONG",
                "2026-01-05",
                "SP-9",
                "4",
                "10",
                "5",
            ],
            None,
        );
        assert!(errs.is_empty(), "{errs:?}");
        let (new, errs) = parse(
            vec!["S2", "", "K", "2026-02-01", " ", "", "1,234.5", "(2)"],
            old,
        );
        assert!(errs.is_empty(), "{errs:?}");
        let Some(Parsed::Order(r)) = new else {
            panic!("not an order")
        };
        assert_eq!(
            r,
            OrderRow {
                order_id: "S2".into(),
                line: String::new(),
                account_id: "K".into(),
                date: chrono::NaiveDate::from_ymd_opt(2026, 2, 1).unwrap(),
                sku: None,
                qty: None,
                revenue: 1234.5,
                cost: -2.0,
            }
        );
        // A bad row reports its cells, reused or not.
        let (bad, errs) = parse(
            vec!["", "1", "K", "x", "", "", "1", "1"],
            Some(Parsed::Order(r)),
        );
        assert!(bad.is_none());
        let cols: Vec<&str> = errs.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(cols, ["订单编号 (order_id)", "订单日期 (date)"]);
    }

    /// Past one in-memory run the keys are spilled and merged: a repeated
    /// key is found wherever it is, with both its lines.
    #[test]
    fn repeated_keys_are_found_across_spilled_runs() {
        let mut k = KeySeen::default();
        let n = KEY_RUN as u64 * 2 + 123;
        for i in 0..n {
            k.push(hash_of(&[format!("SO{i}").as_bytes()]), i + 2)
                .unwrap();
        }
        k.push(hash_of(&[b"SO7"]), n + 2).unwrap();
        let d = k.duplicates(10).unwrap();
        assert_eq!(d.rows, 1);
        assert_eq!(d.pairs, vec![(9, n + 2)]);
        let mut none = KeySeen::default();
        for i in 0..1000u64 {
            none.push(hash_of(&[&i.to_le_bytes()]), i).unwrap();
        }
        assert_eq!(none.duplicates(10).unwrap().rows, 0);
    }

    #[test]
    fn a_mapped_column_twice_is_refused() {
        let ds = orders_config();
        let h = StringRecord::from(vec![
            "订单编号",
            "客户编号",
            "订单日期",
            "金额",
            "成本",
            "金额",
        ]);
        let e = map_columns(Dataset::Orders, &ds, &h).err().unwrap();
        assert!(e.contains("\"金额\" 2 times (columns 4, 6)"), "{e}");
    }

    proptest! {
        /// Whatever the order of the columns and whatever others are
        /// around them, each field finds its column and the rest become
        /// attributes.
        #[test]
        fn columns_map_in_any_order(
            extra in proptest::collection::vec("[a-z]{1,6}", 0..6),
            seed in any::<u64>(),
            drop_optional in any::<bool>(),
        ) {
            let ds = orders_config();
            let mut cols: Vec<String> = ds
                .columns
                .iter()
                .filter(|(f, _)| {
                    !drop_optional
                        || Dataset::Orders.fields().iter().any(|(k, req)| k == f && *req)
                })
                .map(|(_, c)| c.clone())
                .collect();
            let mut extra_unique: Vec<String> = Vec::new();
            for e in extra {
                if !extra_unique.contains(&e) {
                    extra_unique.push(e);
                }
            }
            cols.extend(extra_unique.iter().cloned());
            // A deterministic shuffle from the seed.
            let mut s = seed;
            for i in (1..cols.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                cols.swap(i, (s >> 33) as usize % (i + 1));
            }
            let header = StringRecord::from(cols.clone());
            let map = map_columns(Dataset::Orders, &ds, &header).unwrap();
            for (field, col) in &ds.columns {
                let want = cols.iter().position(|c| c == col);
                prop_assert_eq!(map.idx(field), want, "{}", field);
            }
            let mut got: Vec<&str> = map.extra_names();
            got.sort();
            let mut want: Vec<&str> = extra_unique.iter().map(String::as_str).collect();
            want.sort();
            prop_assert_eq!(got, want);
        }

        /// Dropping any required column is refused, naming that column.
        #[test]
        fn a_missing_required_column_is_named(which in 0usize..5) {
            let ds = orders_config();
            let required: Vec<&str> = Dataset::Orders
                .fields()
                .iter()
                .filter(|(_, r)| *r)
                .map(|(f, _)| *f)
                .collect();
            let gone = required[which % required.len()];
            let cols: Vec<&str> = required
                .iter()
                .filter(|f| **f != gone)
                .map(|f| ds.columns[*f].as_str())
                .collect();
            let e = map_columns(Dataset::Orders, &ds, &StringRecord::from(cols)).err().unwrap();
            let want = format!("{:?} ({gone})", ds.columns[gone]);
            prop_assert!(e.contains(&want), "{}", e);
        }
    }
}
