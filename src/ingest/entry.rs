//! The ways in: ingesting a file from the inbox (moved out when done), a
//! copy of one named on the command line, one re-read in place from the
//! archive (`rebuild`), or rejecting one whole without reading its rows.
//! Takes the file (`file`: a private staged copy, hashed), keeps the
//! attempt on record while its rows are read (`file::Attempts`), routes it
//! (`route`: its dataset, a duplicate, a snapshot's day), opens its rows
//! (`read`) and hands it to `load`. Touches the store's connection
//! settings (page cache, journal mode for a bulk load), the inbox file,
//! the staging, archive and rejected folders, and the ledger.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result};
use rusqlite::Connection;

use super::errors::{Isolate, NotReady};
use super::file;
use super::filing::{Intake, Keep};
use super::load::{BULK_MIN_BYTES, Plan, load, load_cache_kib};
use super::read::{OpenError, Source};
use super::reject::{Rejection, reject, reject_entry};
use super::report::FileReport;
use super::route;
use crate::config::{Dataset, Loaded};
use crate::store::{self, LedgerEntry, Outcome};

/// Ingests one file and moves it out of the inbox. An `Err` means the store
/// or the file system failed (the file stays where it was); a bad file is an
/// `Ok` with outcome `Rejected`.
pub fn ingest_file(cfg: &Loaded, conn: &mut Connection, path: &Path) -> Result<FileReport> {
    ingest(cfg, conn, path, Run::new(Keep::Move, &mut |_| {}, None))
}

/// Like [`ingest_file`], but gives up with [`Cancelled`](super::Cancelled)
/// (rolling back) soon after `stop` is set, checked every
/// [`PROGRESS_EVERY`](super::PROGRESS_EVERY) rows. For the daemon: a file
/// the process died in before is not read here but refused with
/// [`Isolate`], for the caller to ingest in a child process.
pub fn ingest_file_until(
    cfg: &Loaded,
    conn: &mut Connection,
    path: &Path,
    stop: &AtomicBool,
) -> Result<FileReport> {
    ingest(
        cfg,
        conn,
        path,
        Run::new(Keep::Move, &mut |_| {}, Some(stop)),
    )
}

/// Like [`ingest_file`], but leaves `path` where it is and archives (or
/// rejects) a copy: for files a person names on the command line.
pub fn ingest_copy(cfg: &Loaded, conn: &mut Connection, path: &Path) -> Result<FileReport> {
    ingest(cfg, conn, path, Run::new(Keep::Copy, &mut |_| {}, None))
}

/// [`ingest_file`] (`copy` false) or [`ingest_copy`], calling `progress`
/// with the rows read so far every [`PROGRESS_EVERY`](super::PROGRESS_EVERY)
/// rows.
pub fn ingest_with_progress(
    cfg: &Loaded,
    conn: &mut Connection,
    path: &Path,
    copy: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<FileReport> {
    let keep = if copy { Keep::Copy } else { Keep::Move };
    ingest(cfg, conn, path, Run::new(keep, progress, None))
}

/// Ingests a file already in the archive, leaving it there and writing
/// nothing beside it: for `kamwatch rebuild`.
pub fn ingest_in_place(cfg: &Loaded, conn: &mut Connection, path: &Path) -> Result<FileReport> {
    ingest(cfg, conn, path, Run::new(Keep::InPlace, &mut |_| {}, None))
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
    let file_name = name_of(path);
    let staging = cfg.archive().join(file::STAGING);
    match file::take(path, &staging)? {
        file::Taken::Staged(mut copy) => {
            let rej = Rejection {
                dataset: cfg.cfg.datasets.route(&file_name),
                ..Rejection::whole(summary)
            };
            let hash = copy.hash.clone();
            let mut intake = Intake {
                cfg,
                path,
                file_name: &file_name,
                keep: Keep::Move,
                copy: &mut copy,
            };
            let r = reject(conn, &mut intake, rej);
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

/// How one ingest runs: where the file goes, and what the caller is told
/// and may ask.
struct Run<'a> {
    keep: Keep,
    progress: &'a mut dyn FnMut(u64),
    stop: Option<&'a AtomicBool>,
}

impl<'a> Run<'a> {
    fn new(keep: Keep, progress: &'a mut dyn FnMut(u64), stop: Option<&'a AtomicBool>) -> Self {
        Run {
            keep,
            progress,
            stop,
        }
    }
}

/// The file name of `path`, as text.
fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn ingest(cfg: &Loaded, conn: &mut Connection, path: &Path, run: Run<'_>) -> Result<FileReport> {
    // A big page cache while loading a big file keeps the pages of the
    // growing tables and their indexes in memory instead of spilling them
    // to the WAL and reading them back; a smaller file gets a smaller one
    // (`load_cache_kib`). It is bounded, so memory stays flat however big
    // the file; afterwards the connection gets its usual cache back.
    let cache: i64 = conn.pragma_query_value(None, "cache_size", |r| r.get(0))?;
    let bytes = std::fs::symlink_metadata(path).map_or(0, |m| m.len());
    conn.pragma_update(None, "cache_size", -load_cache_kib(bytes))?;
    let bulk = is_bulk(cfg, conn, path)?;
    let rollback_journal = bulk && store::leave_wal_for_bulk(conn)?;
    let report = ingest_taken(cfg, conn, path, run, bulk);
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

/// Takes the file into a staged copy and ingests that, with the attempt
/// on record while it is read.
fn ingest_taken(
    cfg: &Loaded,
    conn: &mut Connection,
    path: &Path,
    run: Run<'_>,
    bulk: bool,
) -> Result<FileReport> {
    let file_name = name_of(path);
    let t0 = Instant::now();
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
            return reject_entry(cfg, conn, path, run.keep, &file_name, kind);
        }
    };
    // From here on only the private copy is read: what is hashed is what
    // is stored and archived. The attempt is on record (fsynced) while the
    // rows are read, so a file the process dies on is known at next start.
    let attempts = file::Attempts::new(&cfg.database());
    let died = attempts.deaths(&staged.hash);
    if died > 0 && run.stop.is_some() {
        tracing::warn!(
            file = ?file_name,
            "kamwatch stopped {died} time(s) while ingesting this file before; it is ingested in a child process now"
        );
        return Err(Isolate.into());
    }
    attempts.begin(&staged.hash, &file_name)?;
    let hash = staged.hash.clone();
    let mut intake = Intake {
        cfg,
        path,
        file_name: &file_name,
        keep: run.keep,
        copy: &mut staged,
    };
    let report = ingest_staged(conn, &mut intake, run, bulk, t0);
    attempts.end(&hash);
    report
}

/// Routes the staged file, files a duplicate, opens its rows and loads them.
fn ingest_staged(
    conn: &mut Connection,
    intake: &mut Intake<'_>,
    run: Run<'_>,
    bulk: bool,
    t0: Instant,
) -> Result<FileReport> {
    let t_hash = t0.elapsed();
    let cfg = intake.cfg;
    let dataset = match route::dataset(cfg, intake.file_name) {
        Ok(d) => d,
        Err(rej) => return reject(conn, intake, rej),
    };
    if let Some(first) = route::same_content(conn, dataset, &intake.copy.hash)? {
        return duplicate(conn, intake, dataset, &first);
    }
    let (file_date, freshness) =
        route::freshness(cfg, conn, dataset, &intake.copy.path, intake.file_name)?;
    let opened = match route::future_snapshot(cfg, dataset, intake.file_name) {
        Some(reason) => Err(OpenError::Unusable(reason)),
        None => Source::open(
            &intake.copy.path,
            cfg.cfg.datasets.get(dataset),
            &cfg.cfg.ingest,
        ),
    };
    let (src, headers) = match opened {
        Ok(x) => x,
        Err(OpenError::Unusable(summary)) => {
            return reject(conn, intake, Rejection::whole(summary).of(dataset, "line"));
        }
        Err(OpenError::Failed(e)) => return Err(e),
    };
    let plan = Plan {
        dataset,
        file_date,
        freshness,
        bulk,
        progress: run.progress,
        stop: run.stop,
        t0,
        t_hash,
    };
    load(conn, intake, src, headers, plan)
}

/// Files a file whose content was ingested before (as `first`) into the
/// archive, counted nowhere.
fn duplicate(
    conn: &Connection,
    intake: &mut Intake<'_>,
    dataset: Dataset,
    first: &str,
) -> Result<FileReport> {
    let moved_to = intake.archive()?;
    let file_name = intake.file_name;
    store::record_file(
        conn,
        &LedgerEntry {
            file_name,
            size: intake.copy.size,
            hash: &intake.copy.hash,
            dataset: Some(dataset.name()),
            rows: 0,
            outcome: Outcome::Duplicate,
            reason: Some(&format!("same content as {first}, ingested before")),
            file_date: None,
        },
    )?;
    tracing::info!(file = ?file_name, dataset = %dataset, first = ?first, "duplicate of a file already ingested; archived, counted nowhere");
    Ok(FileReport {
        file_name: file_name.to_string(),
        dataset: Some(dataset),
        outcome: Outcome::Duplicate,
        rows: 0,
        moved_to,
        reason: None,
        skipped: 0,
        errors_file: None,
        read: 0,
        replaced: 0,
    })
}
