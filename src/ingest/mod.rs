//! Ingest: turns one export file into rows in the store, or into a reason.
//!
//! Routes the file to a dataset by name, hashes it for the ledger, decodes
//! CSV (UTF-8, UTF-8 BOM, GBK/GB18030), maps the export's columns to the
//! canonical fields, validates every row and writes them in one transaction
//! together with the ledger entry. Then moves the file to `archive/` or, with
//! `<name>.errors.txt`, to `rejected/`. Touches the store (through `store`),
//! the file it is given, and the archive and rejected folders — nothing else.

pub mod values;

use std::fmt::Write as _;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rusqlite::Connection;

use crate::config::{Dataset, DatasetConfig, Loaded};
use crate::store::{self, AccountRow, LedgerEntry, OrderRow, Outcome, VisitRow, Writer};

/// How many row errors an errors file lists before it only counts them.
const MAX_LISTED_ERRORS: usize = 200;

/// What happened to one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileReport {
    pub file_name: String,
    pub dataset: Option<Dataset>,
    pub outcome: Outcome,
    pub rows: u64,
    /// Where the file ended up (archive or rejected folder).
    pub moved_to: PathBuf,
    /// For rejected files: the first line of the reason.
    pub reason: Option<String>,
}

/// One problem in a file, located as precisely as we can.
#[derive(Debug, Clone)]
struct RowError {
    line: u64,
    column: Option<String>,
    message: String,
}

/// Why a whole file was refused.
struct Rejection {
    summary: String,
    errors: Vec<RowError>,
    total_errors: usize,
}

/// Ingests one file and moves it out of the inbox. An `Err` means the store
/// or the file system failed (the file stays where it was); a bad file is an
/// `Ok` with outcome `Rejected`.
pub fn ingest_file(cfg: &Loaded, conn: &mut Connection, path: &Path) -> Result<FileReport> {
    ingest(cfg, conn, path, Keep::Move)
}

/// Like [`ingest_file`], but leaves `path` where it is and archives (or
/// rejects) a copy: for files a person names on the command line.
pub fn ingest_copy(cfg: &Loaded, conn: &mut Connection, path: &Path) -> Result<FileReport> {
    ingest(cfg, conn, path, Keep::Copy)
}

/// Whether the original file leaves the inbox or stays where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Move,
    Copy,
}

fn ingest(cfg: &Loaded, conn: &mut Connection, path: &Path, keep: Keep) -> Result<FileReport> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (hash, size) = hash_file(path)?;
    let dataset = cfg.cfg.datasets.route(&file_name);

    let Some(dataset) = dataset else {
        let patterns: Vec<String> = Dataset::ALL
            .iter()
            .map(|d| format!("{d}: {}", cfg.cfg.datasets.get(*d).files.join(" ")))
            .collect();
        let rej = Rejection {
            summary: format!(
                "the file name matches no dataset pattern. Rename the file to match one of ({}) or add a pattern under `datasets.<name>.files` in {}",
                patterns.join("; "),
                cfg.file.display()
            ),
            errors: vec![],
            total_errors: 0,
        };
        return reject(cfg, conn, path, keep, &file_name, size, &hash, None, rej);
    };

    if let Some(first) = store::ingested_before(conn, &hash)? {
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
            },
        )?;
        let moved_to = move_to_archive(cfg, path, keep, &file_name)?;
        tracing::info!(file = %file_name, dataset = %dataset, first = %first, "duplicate of a file already ingested; archived, counted nowhere");
        return Ok(FileReport {
            file_name,
            dataset: Some(dataset),
            outcome: Outcome::Duplicate,
            rows: 0,
            moved_to,
            reason: None,
        });
    }

    let tx = conn.transaction()?;
    let result = {
        let mut writer = match dataset {
            Dataset::Accounts => Writer::accounts(&tx)?,
            Dataset::Orders => Writer::orders(&tx)?,
            Dataset::Visits => Writer::visits(&tx)?,
        };
        load_rows(path, dataset, cfg.cfg.datasets.get(dataset), &mut writer)?
    };
    match result {
        Ok(rows) => {
            store::record_file(
                &tx,
                &LedgerEntry {
                    file_name: &file_name,
                    size,
                    hash: &hash,
                    dataset: Some(dataset.name()),
                    rows,
                    outcome: Outcome::Ingested,
                    reason: None,
                },
            )?;
            tx.commit()?;
            // Committed first, moved second: a crash in between leaves the
            // file in the inbox, where its hash makes it a harmless duplicate.
            let moved_to = move_to_archive(cfg, path, keep, &file_name)?;
            tracing::info!(file = %file_name, dataset = %dataset, rows, "ingested");
            Ok(FileReport {
                file_name,
                dataset: Some(dataset),
                outcome: Outcome::Ingested,
                rows,
                moved_to,
                reason: None,
            })
        }
        Err(rej) => {
            tx.rollback()?;
            reject(
                cfg,
                conn,
                path,
                keep,
                &file_name,
                size,
                &hash,
                Some(dataset),
                rej,
            )
        }
    }
}

fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((h.finalize().to_hex().to_string(), size))
}

/// Text encodings we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Utf8,
    Gb18030,
}

/// Looks at the start of the file: a BOM or valid UTF-8 means UTF-8,
/// anything else is taken as GB18030 (a superset of GBK and GB2312).
fn sniff(head: &[u8]) -> Encoding {
    if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Encoding::Utf8;
    }
    match std::str::from_utf8(head) {
        Ok(_) => Encoding::Utf8,
        // A multi-byte character cut at the end of the sample is still UTF-8.
        Err(e) if e.error_len().is_none() => Encoding::Utf8,
        Err(_) => Encoding::Gb18030,
    }
}

/// Picks the delimiter that the header line uses most: `,`, `;` or tab.
fn sniff_delimiter(head: &[u8]) -> u8 {
    let line = head.split(|b| *b == b'\n').next().unwrap_or(head);
    [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| line.iter().filter(|b| *b == d).count())
        .unwrap_or(b',')
}

/// Newline offsets seen by [`LineCounter`] and not yet passed by the parser.
type Newlines = std::rc::Rc<std::cell::RefCell<std::collections::VecDeque<u64>>>;

/// A reader that notes where each newline is. The csv crate's own line
/// numbers are off by one in CRLF files and after blank lines, and a person
/// fixing an export needs the line their editor shows.
struct LineCounter<R> {
    inner: R,
    offset: u64,
    newlines: Newlines,
}

impl<R: Read> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut q = self.newlines.borrow_mut();
        for (i, b) in buf[..n].iter().enumerate() {
            if *b == b'\n' {
                q.push_back(self.offset + i as u64);
            }
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// Turns byte offsets of records, asked for in increasing order, into
/// 1-based line numbers.
struct Lines {
    newlines: Newlines,
    passed: u64,
}

impl Lines {
    fn line_at(&mut self, byte: u64) -> u64 {
        let mut q = self.newlines.borrow_mut();
        // `<=`: after a CR the csv crate starts the next record at the LF.
        while q.front().is_some_and(|nl| *nl <= byte) {
            q.pop_front();
            self.passed += 1;
        }
        self.passed + 1
    }
}

fn open_text(path: &Path) -> Result<(Box<dyn Read>, u8)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut head = vec![0u8; 64 * 1024];
    let mut n = 0;
    while n < head.len() {
        let k = f.read(&mut head[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    head.truncate(n);
    let enc = sniff(&head);
    let delim = sniff_delimiter(&head);
    let whole = std::io::Cursor::new(head).chain(f);
    let reader: Box<dyn Read> = match enc {
        // BOM-sniffing decoder: strips a UTF-8 BOM, passes the rest through.
        Encoding::Utf8 => Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(encoding_rs::UTF_8))
                .bom_override(true)
                .build(whole),
        ),
        Encoding::Gb18030 => Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(encoding_rs::GB18030))
                .build(whole),
        ),
    };
    Ok((Box::new(BufReader::with_capacity(1 << 16, reader)), delim))
}

/// Where each canonical field sits in the file's header.
struct ColumnMap {
    /// (field, column header, index) for every mapped field present.
    fields: Vec<(&'static str, String, Option<usize>)>,
}

impl ColumnMap {
    fn idx(&self, field: &str) -> Option<usize> {
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
}

fn map_columns(
    dataset: Dataset,
    ds: &DatasetConfig,
    headers: &csv::StringRecord,
) -> std::result::Result<ColumnMap, Rejection> {
    let names: Vec<&str> = headers.iter().map(|h| h.trim()).collect();
    let mut fields = Vec::new();
    let mut missing = Vec::new();
    for (field, required) in dataset.fields() {
        let Some(col) = ds.columns.get(*field) else {
            continue;
        };
        let hits: Vec<usize> = names
            .iter()
            .enumerate()
            .filter(|(_, n)| **n == col.as_str())
            .map(|(i, _)| i)
            .collect();
        if hits.len() > 1 {
            return Err(Rejection {
                summary: format!(
                    "the header has the column {col:?} {} times (columns {}); keep one and drop the file in again",
                    hits.len(),
                    hits.iter()
                        .map(|i| (i + 1).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                errors: vec![],
                total_errors: 0,
            });
        }
        if hits.is_empty() && *required {
            missing.push(format!("{col:?} ({field})"));
        }
        fields.push((*field, col.clone(), hits.first().copied()));
    }
    if !missing.is_empty() {
        return Err(Rejection {
            summary: format!(
                "the header lacks the required column(s) {}. The header found is: {}. Either this is not an export of {dataset}, or its columns are named differently: map them under `datasets.{dataset}.columns` in the config",
                missing.join(", "),
                names.join(", ")
            ),
            errors: vec![],
            total_errors: 0,
        });
    }
    Ok(ColumnMap { fields })
}

/// Reads, validates and writes every row. The outer `Result` is a store
/// failure; the inner one is the verdict on the file.
fn load_rows(
    path: &Path,
    dataset: Dataset,
    ds: &DatasetConfig,
    writer: &mut Writer<'_>,
) -> Result<std::result::Result<u64, Rejection>> {
    let (text, delim) = open_text(path)?;
    let newlines = Newlines::default();
    let text = LineCounter {
        inner: text,
        offset: 0,
        newlines: newlines.clone(),
    };
    let mut lines = Lines {
        newlines,
        passed: 0,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delim)
        .flexible(true)
        .has_headers(true)
        .from_reader(text);
    let headers = match rdr.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return Ok(Err(Rejection {
                summary: format!("the header line cannot be read: {e}"),
                errors: vec![],
                total_errors: 0,
            }));
        }
    };
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Ok(Err(Rejection {
            summary: "the file is empty: no header line and no rows. Export it again".into(),
            errors: vec![],
            total_errors: 0,
        }));
    }
    let map = match map_columns(dataset, ds, &headers) {
        Ok(m) => m,
        Err(r) => return Ok(Err(r)),
    };
    let width = headers.len();
    let mut errors: Vec<RowError> = Vec::new();
    let mut total_errors = 0usize;
    let mut bad_rows = 0u64;
    let mut rows = 0u64;
    let mut record = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| lines.line_at(p.byte())).unwrap_or(0);
                total_errors += 1;
                errors.push(RowError {
                    line,
                    column: None,
                    message: format!("cannot be read as CSV: {e}"),
                });
                break;
            }
        }
        let line = record
            .position()
            .map(|p| lines.line_at(p.byte()))
            .unwrap_or(0);
        if record.len() == 1 && record.get(0).is_some_and(|f| f.trim().is_empty()) {
            continue; // blank line
        }
        if record.len() != width {
            total_errors += 1;
            bad_rows += 1;
            if errors.len() < MAX_LISTED_ERRORS {
                errors.push(RowError {
                    line,
                    column: None,
                    message: format!(
                        "has {} fields where the header has {width}; check for an unquoted delimiter in a value",
                        record.len()
                    ),
                });
            }
            continue;
        }
        let mut row_errors = Vec::new();
        let parsed = parse_row(dataset, &map, &record, &mut row_errors);
        if !row_errors.is_empty() {
            total_errors += row_errors.len();
            bad_rows += 1;
            for (column, message) in row_errors {
                if errors.len() < MAX_LISTED_ERRORS {
                    errors.push(RowError {
                        line,
                        column: Some(column),
                        message,
                    });
                }
            }
            continue;
        }
        if total_errors == 0 {
            match parsed {
                Some(Parsed::Account(r)) => writer.account(&r)?,
                Some(Parsed::Order(r)) => writer.order(&r)?,
                Some(Parsed::Visit(r)) => writer.visit(&r)?,
                None => {}
            }
        }
        rows += 1;
    }
    if total_errors > 0 {
        return Ok(Err(Rejection {
            summary: format!(
                "{total_errors} error(s) in {bad_rows} of {} data row(s); nothing from this file was stored",
                rows + bad_rows
            ),
            errors,
            total_errors,
        }));
    }
    if rows == 0 {
        return Ok(Err(Rejection {
            summary: "the file has a header but no data rows; nothing to ingest".into(),
            errors: vec![],
            total_errors: 0,
        }));
    }
    Ok(Ok(rows))
}

enum Parsed {
    Account(AccountRow),
    Order(OrderRow),
    Visit(VisitRow),
}

fn parse_row(
    dataset: Dataset,
    map: &ColumnMap,
    rec: &csv::StringRecord,
    errs: &mut Vec<(String, String)>,
) -> Option<Parsed> {
    let text = |field: &str| -> Option<String> {
        map.idx(field)
            .and_then(|i| rec.get(i))
            .map(str::trim)
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
    let date = |field: &str, errs: &mut Vec<(String, String)>| {
        let raw = map.idx(field).and_then(|i| rec.get(i)).unwrap_or("");
        match values::parse_date(raw) {
            Ok(d) => Some(d),
            Err(e) => {
                errs.push((map.header(field), e));
                None
            }
        }
    };
    let number = |field: &str, need: bool, errs: &mut Vec<(String, String)>| {
        let raw = map.idx(field).and_then(|i| rec.get(i)).unwrap_or("");
        match values::parse_number(raw) {
            Ok(None) if need => {
                errs.push((map.header(field), "is empty but required".into()));
                None
            }
            Ok(v) => v,
            Err(e) => {
                errs.push((map.header(field), e));
                None
            }
        }
    };
    match dataset {
        Dataset::Accounts => {
            let id = required("id", errs);
            let name = required("name", errs);
            Some(Parsed::Account(AccountRow {
                id,
                name,
                region: text("region"),
                owner: text("owner"),
                owner_email: text("owner_email"),
                manager_email: text("manager_email"),
            }))
        }
        Dataset::Orders => {
            let order_id = required("order_id", errs);
            let account_id = required("account_id", errs);
            let d = date("date", errs);
            let qty = number("qty", false, errs);
            let revenue = number("revenue", true, errs);
            let cost = number("cost", true, errs);
            Some(Parsed::Order(OrderRow {
                order_id,
                line: text("line").unwrap_or_else(|| "1".into()),
                account_id,
                date: d?,
                sku: text("sku"),
                qty,
                revenue: revenue?,
                cost: cost?,
            }))
        }
        Dataset::Visits => {
            let account_id = required("account_id", errs);
            let d = date("date", errs);
            Some(Parsed::Visit(VisitRow {
                account_id,
                date: d?,
                visitor: text("visitor").unwrap_or_default(),
                role: text("role"),
            }))
        }
    }
}

/// A free name in `dir` for `file_name`: `name`, then `name.1`, `name.2` …
fn free_name(dir: &Path, file_name: &str) -> PathBuf {
    let first = dir.join(file_name);
    if !first.exists() {
        return first;
    }
    (1..)
        .map(|i| dir.join(format!("{file_name}.{i}")))
        .find(|p| !p.exists())
        .expect("an unbounded range yields a free name")
}

fn move_file(from: &Path, keep: Keep, dir: &Path, file_name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let to = free_name(dir, file_name);
    if keep == Keep::Copy {
        std::fs::copy(from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    } else if std::fs::rename(from, &to).is_err() {
        // Another file system: copy, make durable, then remove the original.
        std::fs::copy(from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        std::fs::File::open(&to)?.sync_all()?;
        std::fs::remove_file(from)?;
    }
    Ok(to)
}

fn move_to_archive(cfg: &Loaded, path: &Path, keep: Keep, file_name: &str) -> Result<PathBuf> {
    let day = chrono::Local::now().format("%Y-%m-%d").to_string();
    move_file(path, keep, &cfg.archive().join(day), file_name)
}

#[allow(clippy::too_many_arguments)]
fn reject(
    cfg: &Loaded,
    conn: &Connection,
    path: &Path,
    keep: Keep,
    file_name: &str,
    size: u64,
    hash: &str,
    dataset: Option<Dataset>,
    rej: Rejection,
) -> Result<FileReport> {
    let dir = cfg.rejected();
    let moved_to = move_file(path, keep, &dir, file_name)?;
    let mut text = String::new();
    let moved_name = moved_to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _ = writeln!(
        text,
        "kamwatch rejected {file_name}{}: {}.",
        dataset
            .map(|d| format!(" (dataset {d})"))
            .unwrap_or_default(),
        rej.summary
    );
    if !rej.errors.is_empty() {
        let _ = writeln!(
            text,
            "Fix the rows below in the export, then drop the whole file into the inbox again.\n"
        );
        for e in &rej.errors {
            let col = e
                .column
                .as_ref()
                .map(|c| format!(", column {c}"))
                .unwrap_or_default();
            let _ = writeln!(text, "line {}{col}: {}", e.line, e.message);
        }
        if rej.total_errors > rej.errors.len() {
            let _ = writeln!(
                text,
                "... and {} more error(s) not listed",
                rej.total_errors - rej.errors.len()
            );
        }
    }
    let reason_path = dir.join(format!("{moved_name}.errors.txt"));
    std::fs::write(&reason_path, &text)
        .with_context(|| format!("writing {}", reason_path.display()))?;
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
        },
    )?;
    tracing::warn!(file = %file_name, reason = %summary, "rejected; see {}", reason_path.display());
    Ok(FileReport {
        file_name: file_name.to_string(),
        dataset,
        outcome: Outcome::Rejected,
        rows: 0,
        moved_to,
        reason: Some(summary),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_encodings() {
        assert_eq!(sniff(b"\xEF\xBB\xBFa,b"), Encoding::Utf8);
        assert_eq!(sniff("客户编号,x".as_bytes()), Encoding::Utf8);
        // 客户 in GBK
        assert_eq!(sniff(b"\xbf\xcd\xbb\xa7,x"), Encoding::Gb18030);
        // UTF-8 cut in the middle of a character
        assert_eq!(sniff(&"客户".as_bytes()[..4]), Encoding::Utf8);
    }

    #[test]
    fn sniffs_delimiters() {
        assert_eq!(sniff_delimiter(b"a;b;c\n1,2;3"), b';');
        assert_eq!(sniff_delimiter(b"a\tb\tc"), b'\t');
        assert_eq!(sniff_delimiter(b"a,b,c"), b',');
    }
}
