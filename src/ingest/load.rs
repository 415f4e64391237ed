//! Loading: one file, one transaction. Takes the write lock, picks the
//! dataset's writer (upserting by key; a snapshot replacing the last one;
//! an older snapshot validated but not applied), streams the rows through
//! it (`stream`), holds back a master that would switch off too much of the
//! book, and then either commits the rows together with the ledger entry
//! and files the file into the archive (with an errors file for rows
//! skipped), or rolls back and rejects the file. A big orders file is
//! loaded without its indexes (rebuilt once after), a big visits file
//! staged and written in key order. Touches the store (through `store`),
//! the file taken and the archive and rejected folders (through `filing`).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Result;
use csv::StringRecord;
use rusqlite::{Connection, Transaction};

use super::columns::map_columns;
use super::errors::Unfiled;

use super::filing::{Intake, Keep, sidecar, write_new};
use super::read::Source;
use super::reject::{Rejection, errors_text, reject};
use super::report::FileReport;
use super::route::Freshness;
use super::row::CellRules;
use super::stream::{Stored, Stream, load_rows};
use crate::config::{Dataset, DatasetConfig, Loaded};
use crate::store::{self, LedgerEntry, Outcome, Writer};

/// The page cache while a big file (from [`BULK_MIN_BYTES`]) is loaded,
/// in KiB.
pub(super) const LOAD_CACHE_KIB: i64 = 64 * 1024;

/// The page cache while a smaller file is loaded, in KiB: a small drop
/// touches a few hundred pages, a re-export of 10,000 lines some tens of
/// thousands spread over the whole table, which no cache of a size the
/// daemon can keep beside a large book's metrics holds anyway (the big
/// cache was the daemon's peak in a re-export).
pub(super) const SMALL_LOAD_CACHE_KIB: i64 = 16 * 1024;

/// The page cache while a file of `bytes` is loaded, in KiB.
pub(super) fn load_cache_kib(bytes: u64) -> i64 {
    if bytes >= BULK_MIN_BYTES {
        LOAD_CACHE_KIB
    } else {
        SMALL_LOAD_CACHE_KIB
    }
}

/// Below this size a file is never loaded in bulk mode (indexes rebuilt).
pub(super) const BULK_MIN_BYTES: u64 = 16 << 20;

/// What is known of a file, routed and opened, when its rows are loaded.
pub(super) struct Plan<'a> {
    pub(super) dataset: Dataset,
    /// A snapshot's day, YYYY-MM-DD.
    pub(super) file_date: Option<String>,
    pub(super) freshness: Freshness,
    /// Loaded without the orders indexes (see `entry::is_bulk`).
    pub(super) bulk: bool,
    pub(super) progress: &'a mut dyn FnMut(u64),
    pub(super) stop: Option<&'a AtomicBool>,
    /// When the ingest began, and how long taking (copying, hashing) took.
    pub(super) t0: Instant,
    pub(super) t_hash: Duration,
}

/// What the transaction holds once the rows are in, for the commit.
struct Written {
    stored: Stored,
    /// Accounts a master switched off.
    switched_off: u64,
    /// The orders indexes dropped for a bulk load, to build again.
    suspended: Vec<String>,
    /// Visits written to a stage, to apply in key order.
    staged: bool,
    unit: &'static str,
    t_load: Duration,
}

/// Loads the rows of `src` (whose header is `headers`) in one transaction
/// and files the file: ingested, or rejected with the reason.
pub(super) fn load(
    conn: &mut Connection,
    intake: &mut Intake<'_>,
    mut src: Source,
    headers: StringRecord,
    plan: Plan<'_>,
) -> Result<FileReport> {
    let cfg = intake.cfg;
    let dataset = plan.dataset;
    let ds = cfg.cfg.datasets.get(dataset);
    let unit = src.unit();
    // A big visits file is staged and written in key order.
    let staged = dataset == Dataset::Visits
        && intake.copy.size >= BULK_MIN_BYTES
        && ds.key_fields(dataset) == dataset.default_key();
    // The write lock first (waiting for it up to the busy timeout): a
    // transaction that reads before it writes fails at once when another
    // process (the daemon, a `kamwatch ingest`) wrote in between.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let older = matches!(plan.freshness, Freshness::Older { .. });
    let (suspended, active_before) = prepare(&tx, dataset, plan.bulk, older)?;
    let result = {
        let mut writer = writer_for(&tx, dataset, ds, &headers, older, staged)?;
        // Every account is first marked inactive: not a replacement.
        if dataset == Dataset::Accounts {
            store::count_replacements(&tx, dataset.name())?;
        }
        let stream = Stream {
            dataset,
            ds,
            cells: CellRules {
                max_amount: cfg.cfg.ingest.max_amount,
                zone: cfg.cfg.schedule.zone(),
            },
            progress: &mut *plan.progress,
            stop: plan.stop,
        };
        load_rows(&mut src, &headers, writer.as_mut(), stream)?
    };
    let mut switched_off = 0;
    let result = match (result, active_before) {
        (Ok(loaded), Some(before)) => {
            switched_off = store::accounts_switched_off(&tx)?;
            match master_shrink(cfg, intake.file_name, loaded.rows, switched_off, before) {
                Some(reason) => Err(Rejection::whole(reason)),
                None => Ok(loaded),
            }
        }
        (r, _) => r,
    };
    drop(src);
    let t_load = plan.t0.elapsed();
    match result {
        Ok(stored) => {
            let written = Written {
                stored,
                switched_off,
                suspended,
                staged,
                unit,
                t_load,
            };
            commit(tx, intake, &plan, written)
        }
        Err(rej) => {
            tx.rollback()?;
            reject(conn, intake, rej.of(dataset, unit))
        }
    }
}

/// Readies the transaction for a file of `dataset`: the orders indexes
/// dropped for a bulk load (returned, to build again), replacements
/// counted, and for a current master the accounts active before it
/// (returned: how many).
fn prepare(
    tx: &Transaction<'_>,
    dataset: Dataset,
    bulk: bool,
    older: bool,
) -> Result<(Vec<String>, Option<u64>)> {
    let suspended = if bulk {
        store::suspend_indexes(tx, "orders")?
    } else {
        Vec::new()
    };
    // Rows replaced by key are counted (a temporary trigger: new rows cost
    // nothing). For receivables and inventory the writer first empties the
    // table: those rows are the ones this snapshot replaces.
    if dataset != Dataset::Accounts {
        store::count_replacements(tx, dataset.name())?;
    }
    // A master is the whole book: remember who was active before it, to
    // count (and bound) the accounts it switches off.
    let active_before = if dataset == Dataset::Accounts && !older {
        Some(store::remember_active_accounts(tx)?)
    } else {
        None
    };
    Ok((suspended, active_before))
}

/// The writer for `dataset` in `tx`; `None` for an older snapshot of
/// receivables or stock, which would undo a newer one: validated, not
/// applied.
fn writer_for<'t>(
    tx: &'t Transaction<'_>,
    dataset: Dataset,
    ds: &DatasetConfig,
    headers: &StringRecord,
    older: bool,
    staged: bool,
) -> Result<Option<Writer<'t>>> {
    Ok(match dataset {
        Dataset::Accounts if older => Some(Writer::accounts_older(tx)?),
        Dataset::Accounts => Some(Writer::accounts(tx)?),
        Dataset::Orders => {
            // Order attributes are stored as values only, the names once
            // per header (a header that does not map is rejected later).
            let names = map_columns(dataset, ds, headers)
                .map(|m| m.extra.into_iter().map(|(n, _)| n).collect::<Vec<_>>())
                .unwrap_or_default();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            Some(Writer::orders_keyed(tx, &ds.key_fields(dataset), &names)?)
        }
        Dataset::Visits if staged => Some(Writer::visits_staged(tx)?),
        Dataset::Visits => Some(Writer::visits_keyed(tx, &ds.key_fields(dataset))?),
        Dataset::Receivables | Dataset::Inventory if older => None,
        Dataset::Receivables => Some(Writer::receivables(tx)?),
        Dataset::Inventory => Some(Writer::inventory(tx)?),
    })
}

/// Commits the rows with the ledger entry, then files the file into the
/// archive (committed first, moved second: a crash in between leaves the
/// file in the inbox, where its hash makes it a harmless duplicate).
fn commit(
    tx: Transaction<'_>,
    intake: &mut Intake<'_>,
    plan: &Plan<'_>,
    w: Written,
) -> Result<FileReport> {
    let (dataset, t0) = (plan.dataset, plan.t0);
    if !w.suspended.is_empty() || w.staged {
        // The sorter of an index build or of the staged rows takes
        // memory of its own: shrink the page cache first so the
        // peak stays bounded.
        tx.pragma_update(None, "cache_size", -LOAD_CACHE_KIB / 8)?;
        store::restore_indexes(&tx, &w.suspended)?;
    }
    if w.staged {
        store::apply_visit_stage(&tx)?;
    }
    let t_index = t0.elapsed();
    let skipped = w.stored.problems.bad_rows;
    let (note, stored) = note(plan, &w);
    // Updates and deletes by key, less the file's own repeated keys
    // (kept last): the rows of earlier files replaced.
    let replaced = store::replacements(&tx)?.saturating_sub(w.stored.duplicates);
    let counts = store::RowCounts {
        read: w.stored.rows + skipped,
        stored,
        replaced,
        skipped,
    };
    let file_name = intake.file_name;
    store::record_file_counts(
        &tx,
        &LedgerEntry {
            file_name,
            size: intake.copy.size,
            hash: &intake.copy.hash,
            dataset: Some(dataset.name()),
            rows: stored,
            outcome: Outcome::Ingested,
            reason: note.as_deref(),
            file_date: plan.file_date.as_deref(),
        },
        &counts,
    )?;
    tx.commit()?;
    let t_commit = t0.elapsed();
    let moved_to = intake.archive().map_err(|e| Unfiled {
        rows: stored,
        error: format!("{e:#}"),
    })?;
    tracing::debug!(
        file = ?file_name,
        hash_ms = plan.t_hash.as_millis(),
        load_ms = (w.t_load - plan.t_hash).as_millis(),
        index_ms = (t_index - w.t_load).as_millis(),
        commit_ms = (t_commit - t_index).as_millis(),
        archive_ms = (t0.elapsed() - t_commit).as_millis(),
        bulk = plan.bulk,
        staged = w.staged,
        "ingest phases"
    );
    let errors_file = if skipped > 0 && intake.keep != Keep::InPlace {
        Some(skipped_rows_file(&moved_to, file_name, dataset, &w)?)
    } else {
        None
    };
    tracing::info!(file = ?file_name, dataset = %dataset, read = counts.read, stored, replaced, skipped, "ingested");
    Ok(FileReport {
        file_name: file_name.to_string(),
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

/// Writes the errors file beside the archived file `moved_to`, listing
/// the rows skipped under `on_error: skip_rows`; returns its path.
fn skipped_rows_file(
    moved_to: &Path,
    file_name: &str,
    dataset: Dataset,
    w: &Written,
) -> Result<PathBuf> {
    let skipped = w.stored.problems.bad_rows;
    let text = errors_text(
        &format!(
            "kamwatch ingested {file_name} (dataset {dataset}) without {skipped} bad row(s), listed below (on_error: skip_rows). Fix them in the export and drop a corrected file in again: its good rows replace these."
        ),
        &w.stored.problems,
        w.unit,
    );
    let p = sidecar(moved_to);
    write_new(&p, &text)?;
    Ok(p)
}

/// What was done differently, for the ledger and the report (rows
/// skipped, accounts switched off, an older snapshot, repeated keys), if
/// anything was, and the rows stored (none of an older snapshot of
/// receivables or stock).
fn note(plan: &Plan<'_>, w: &Written) -> (Option<String>, u64) {
    let mut notes = Vec::new();
    let skipped = w.stored.problems.bad_rows;
    if skipped > 0 {
        notes.push(format!(
            "{skipped} bad row(s) skipped (on_error: skip_rows), listed in the errors file beside the archived file"
        ));
    }
    if w.switched_off > 0 {
        notes.push(format!(
            "{} account(s) listed by the previous master are not in this one and were switched off: they get no warnings, and their open alerts stay as they were until a master lists them again",
            w.switched_off
        ));
    }
    let mut stored = w.stored.rows;
    if let Freshness::Older { newest, day } = &plan.freshness {
        match plan.dataset {
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
    if w.stored.duplicates > 0 {
        notes.push(format!(
            "{} row(s) repeated the key of an earlier row of the file; the last of each was kept (duplicate_keys: keep_last)",
            w.stored.duplicates
        ));
    }
    ((!notes.is_empty()).then(|| notes.join("; ")), stored)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a file big enough to be a bulk load (or a staged visits file)
    /// gets the big page cache; any smaller one, however close, the small.
    #[test]
    fn only_big_files_get_the_big_page_cache() {
        assert_eq!(load_cache_kib(BULK_MIN_BYTES), LOAD_CACHE_KIB);
        assert_eq!(load_cache_kib(u64::MAX), LOAD_CACHE_KIB);
        assert_eq!(load_cache_kib(BULK_MIN_BYTES - 1), SMALL_LOAD_CACHE_KIB);
        assert_eq!(load_cache_kib(0), SMALL_LOAD_CACHE_KIB);
        assert!(load_cache_kib(0) < load_cache_kib(BULK_MIN_BYTES));
    }
}
