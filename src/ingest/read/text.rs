//! CSV text: a text file's rows through the csv reader, decoded from
//! UTF-8 or GBK/GB18030, with the line a person's editor shows for each
//! record (the csv crate's own are off after CRLF and blank lines), every
//! line and record bounded by `ingest.max_record_bytes`, and a cell that
//! is not text in the file's encoding reported at its row, never stored as
//! mojibake. Reads the file it is given.

use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::Context;
use csv::StringRecord;

use super::encoding::{Encoding, binary_at, decoder, looks_utf8_in_gbk, sniff, sniff_delimiter};
use super::error::{OpenError, ReadError, TooLong, not_text};
use crate::config::{DatasetConfig, IngestConfig, TextEncoding};
use crate::ingest::values::{bounded, excerpt as escape};

/// The csv reader's buffer: how far it may read ahead of the record it parses.
const CSV_BUFFER: u64 = 1 << 16;

pub struct CsvSource {
    rdr: csv::Reader<LineCounter<Box<dyn Read + Send>>>,
    lines: Lines,
    /// Where the record being read starts (byte offset in the text), for
    /// the bound on a record's length.
    record_start: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The header, to name the column of a cell that is not text.
    headers: StringRecord,
    encoding: Encoding,
    max_record: u64,
}

pub(super) fn open_csv(
    path: &Path,
    head: &[u8],
    ds: &DatasetConfig,
    limits: &IngestConfig,
) -> Result<(CsvSource, StringRecord), OpenError> {
    let enc = text_encoding(head, ds)?;
    let delim = ds.delimiter_byte().unwrap_or_else(|| sniff_delimiter(head));
    let text = text_reader(path, head, enc)?;
    let newlines = Newlines::default();
    let record_start = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = LineCounter {
        inner: text,
        offset: 0,
        since_newline: 0,
        total_newlines: 0,
        newlines: newlines.clone(),
        record_start: record_start.clone(),
        max: limits.max_record_bytes,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delim)
        .flexible(true)
        .has_headers(true)
        .buffer_capacity(1 << 16)
        .from_reader(counted);
    let headers = match rdr.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return Err(OpenError::Unusable(format!(
                "the header line cannot be read: {}",
                csv_message(&e, enc, limits.max_record_bytes)
            )));
        }
    };
    record_start.store(rdr.position().byte(), std::sync::atomic::Ordering::Relaxed);
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Err(OpenError::Unusable(
            "the file is empty: no header line and no rows. Export it again".into(),
        ));
    }
    let lines = Lines {
        newlines,
        passed: 0,
    };
    Ok((
        CsvSource {
            rdr,
            lines,
            record_start,
            headers: headers.clone(),
            encoding: enc,
            max_record: limits.max_record_bytes,
        },
        headers,
    ))
}

/// The encoding of a text file from its first bytes (or the dataset's
/// `encoding`); a file that is no text in it is refused.
fn text_encoding(head: &[u8], ds: &DatasetConfig) -> Result<Encoding, OpenError> {
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return Err(OpenError::Unusable(
            "the file is UTF-16 text (Excel's \"Unicode Text\"), which kamwatch does not read; save it as \"CSV UTF-8\" (or CSV in GBK) and drop it in again".into(),
        ));
    }
    if let Some(i) = head.iter().position(|b| *b == 0) {
        return Err(OpenError::Unusable(not_text(i)));
    }
    let enc = match ds.encoding {
        TextEncoding::Auto => match sniff(head) {
            Ok(e) => e,
            Err(reason) => {
                // Control bytes (more than 1%) make it no text at all.
                let control = |b: &u8| *b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c);
                let n = head.iter().filter(|b| control(b)).count();
                return Err(OpenError::Unusable(match head.iter().position(control) {
                    Some(at) if n > 1 && n * 100 > head.len() => not_text(at),
                    _ => reason.to_string(),
                }));
            }
        },
        TextEncoding::Utf8 => Encoding::Utf8,
        TextEncoding::Gbk | TextEncoding::Gb18030 => Encoding::Gb18030,
    };
    if let Some(at) = binary_at(head, enc) {
        return Err(OpenError::Unusable(not_text(at)));
    }
    Ok(enc)
}

/// The file's text as UTF-8, from its start (past a BOM).
fn text_reader(path: &Path, head: &[u8], enc: Encoding) -> Result<Box<dyn Read + Send>, OpenError> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(match enc {
        // UTF-8 needs no decoding: the csv reader checks every record and
        // an invalid one is reported, not silently replaced. Skip the BOM.
        Encoding::Utf8 => {
            if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
                std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(3))?;
            }
            Box::new(f)
        }
        Encoding::Gb18030 => Box::new(BufReader::with_capacity(1 << 16, decoder(enc, f))),
    })
}

/// A csv error in words a person can act on.
fn csv_message(e: &csv::Error, enc: Encoding, max: u64) -> String {
    if let csv::ErrorKind::Io(io) = e.kind()
        && let Some(long) = io.get_ref().and_then(|x| x.downcast_ref::<TooLong>())
    {
        return long.message(max);
    }
    if let csv::ErrorKind::Utf8 { err, .. } = e.kind() {
        return format!(
            "field {} is not valid {} text (byte {} of the cell); fix that cell, or set `encoding` for this dataset in the config",
            err.field() + 1,
            match enc {
                Encoding::Utf8 => "UTF-8",
                Encoding::Gb18030 => "GBK/GB18030",
            },
            err.valid_up_to() + 1
        );
    }
    format!("cannot be read as CSV: {}", bounded(e))
}

impl CsvSource {
    /// How a message names field `field` of a record: its header, escaped,
    /// or its position where the header has no such column.
    fn column_name(&self, field: usize) -> String {
        self.headers
            .get(field)
            .map(|h| format!("column {}", escape(h.trim())))
            .unwrap_or_else(|| format!("field {}", field + 1))
    }

    pub(super) fn read(
        &mut self,
        rec: &mut StringRecord,
    ) -> std::result::Result<Option<u64>, ReadError> {
        use std::sync::atomic::Ordering::Relaxed;
        loop {
            let read = self.rdr.read_record(rec);
            // The next record starts here: the bound counts from it.
            self.record_start.store(self.rdr.position().byte(), Relaxed);
            match read {
                Ok(false) => return Ok(None),
                Ok(true) => {}
                Err(e) => return Err(self.error(&e)),
            }
            let start = rec.position().map_or(0, |p| p.byte());
            let line = self.lines.line_at(start);
            // The reader bounds what it holds; this makes the bound exact.
            if self.rdr.position().byte().saturating_sub(start) > self.max_record {
                return Err(ReadError {
                    line,
                    message: TooLong::Record(start).message(self.max_record),
                    fatal: false,
                });
            }
            // A blank line, a row of only delimiters (Excel writes `,,,,` for
            // rows once formatted), or DOS's end-of-file ^Z: nothing to read.
            if rec.iter().all(|f| {
                f.trim_matches(|c: char| c.is_whitespace() || c == '\u{1a}')
                    .is_empty()
            }) {
                continue;
            }
            if let Some(e) = self.gbk_problem(rec, line) {
                return Err(e);
            }
            return Ok(Some(line));
        }
    }

    /// The csv reader's error `e` as a row problem, at the line an editor
    /// shows; fatal unless the reader got past the record.
    fn error(&mut self, e: &csv::Error) -> ReadError {
        let mut fatal = true;
        let line = match e.kind() {
            csv::ErrorKind::Io(io) => io
                .get_ref()
                .and_then(|x| x.downcast_ref::<TooLong>())
                .map(|l| match l {
                    TooLong::Line(line) => *line,
                    TooLong::Record(start) => self.lines.line_at(*start),
                })
                .unwrap_or(0),
            csv::ErrorKind::Utf8 { pos, .. } => {
                // The record was read past: the next one can be.
                fatal = false;
                pos.as_ref()
                    .map(|p| self.lines.line_at(p.byte()))
                    .unwrap_or(0)
            }
            _ => e
                .position()
                .map(|p| self.lines.line_at(p.byte()))
                .unwrap_or(0),
        };
        let mut message = csv_message(e, self.encoding, self.max_record);
        if let csv::ErrorKind::Utf8 { err, .. } = e.kind()
            && let Some(h) = self.headers.get(err.field())
        {
            message = message.replacen(
                &format!("field {} ", err.field() + 1),
                &format!("column {} ", escape(h.trim())),
                1,
            );
        }
        ReadError {
            line,
            message,
            fatal,
        }
    }

    /// In a file read as GBK, a cell that is not GBK text or is UTF-8 text
    /// (which would be stored as mojibake), if `rec` has one.
    fn gbk_problem(&self, rec: &StringRecord, line: u64) -> Option<ReadError> {
        if self.encoding != Encoding::Gb18030 {
            return None;
        }
        // GB18030 decoding replaces what is not GB18030 with U+FFFD:
        // such a record is reported, never stored as mojibake.
        if let Some(field) = rec.iter().position(|f| f.contains('\u{FFFD}')) {
            let col = self.column_name(field);
            return Some(ReadError {
                line,
                message: format!(
                    "{col} holds bytes that are not GBK/GB18030 text (the file was read as GBK); fix that cell, or export the file again as CSV UTF-8"
                ),
                fatal: false,
            });
        }
        // A row pasted in from a UTF-8 file reads as GBK mojibake
        // (华润万家 -> 鍗庢鼎涓囧) without a single invalid byte: its
        // bytes, encoded back, are valid UTF-8 with Chinese in it, which
        // real GBK text practically never is.
        if let Some(field) = rec.iter().position(looks_utf8_in_gbk) {
            let col = self.column_name(field);
            return Some(ReadError {
                line,
                message: format!(
                    "{col} is UTF-8 text in a file read as GBK (it would be stored as mojibake); export the whole file again in one encoding, GBK or CSV UTF-8"
                ),
                fatal: false,
            });
        }
        None
    }
}

/// Newline offsets seen by [`LineCounter`] and not yet passed by the parser.
type Newlines = std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<u64>>>;

/// A reader that notes where each newline is, and refuses a line longer
/// than `max`, and a record longer than `max` (counted from the start of
/// the record being parsed, which the [`CsvSource`] sets: a quoted field
/// may span any number of lines). The csv crate's own line numbers are off
/// by one in CRLF files and after blank lines, and a person fixing an
/// export needs the line their editor shows.
struct LineCounter<R> {
    inner: R,
    offset: u64,
    since_newline: u64,
    total_newlines: u64,
    newlines: Newlines,
    record_start: std::sync::Arc<std::sync::atomic::AtomicU64>,
    max: u64,
}

impl<R: Read> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // The csv reader reads ahead at most its buffer past the record it
        // parses, so the record's bytes held stay under max + the buffer.
        let start = self.record_start.load(std::sync::atomic::Ordering::Relaxed);
        if self.offset.saturating_sub(start) > self.max + CSV_BUFFER {
            return Err(too_long(TooLong::Record(start)));
        }
        let n = self.inner.read(buf)?;
        let mut q = self.newlines.lock().unwrap_or_else(|e| e.into_inner());
        // `since_newline`: bytes of the current line before this chunk.
        let mut start = -(self.since_newline as i64);
        for i in memchr::memchr_iter(b'\n', &buf[..n]) {
            if i as i64 - start > self.max as i64 {
                return Err(too_long(TooLong::Line(self.total_newlines + 1)));
            }
            q.push_back(self.offset + i as u64);
            self.total_newlines += 1;
            start = i as i64 + 1;
        }
        self.since_newline = (n as i64 - start) as u64;
        self.offset += n as u64;
        if self.since_newline > self.max {
            return Err(too_long(TooLong::Line(self.total_newlines + 1)));
        }
        Ok(n)
    }
}

fn too_long(e: TooLong) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

/// Turns byte offsets of records, asked for in increasing order, into
/// 1-based line numbers.
struct Lines {
    newlines: Newlines,
    passed: u64,
}

impl Lines {
    fn line_at(&mut self, byte: u64) -> u64 {
        let mut q = self.newlines.lock().unwrap_or_else(|e| e.into_inner());
        // `<=`: after a CR the csv crate starts the next record at the LF.
        while q.front().is_some_and(|nl| *nl <= byte) {
            q.pop_front();
            self.passed += 1;
        }
        self.passed + 1
    }
}
