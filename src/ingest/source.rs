//! Sources: the rows of one export file, whatever its format — CSV (UTF-8,
//! UTF-8 BOM, GBK/GB18030; `,` `;` tab or a configured delimiter),
//! XLSX/XLS/ODS workbooks (calamine) or JSON Lines — as text fields in a
//! `csv::StringRecord` with the line (or sheet row) a person would look at.
//! Reads the file it is given; nothing else.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result};
use calamine::{Data, Reader as _};
use csv::StringRecord;

use crate::config::{DatasetConfig, IngestConfig, TextEncoding};
use crate::ingest::values::{bounded, excerpt as escape};

/// The csv reader's buffer: how far it may read ahead of the record it parses.
const CSV_BUFFER: u64 = 1 << 16;

/// How many bytes of the start of a file are looked at to tell its kind.
const HEAD_BYTES: usize = 64 * 1024;

/// A problem reading rows. `fatal`: the rest of the file cannot be read.
#[derive(Debug, Clone)]
pub struct ReadError {
    pub line: u64,
    pub message: String,
    pub fatal: bool,
}

/// An open file, positioned after its header.
pub enum Source {
    Csv(Box<CsvSource>),
    Sheet(SheetSource),
    Jsonl(JsonlSource),
}

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

/// A worksheet's rows, from a reader thread (calamine's workbook types
/// borrow themselves while streaming), through a bounded channel.
pub struct SheetSource {
    rows: std::sync::mpsc::Receiver<SheetMsg>,
    worker: Option<std::thread::JoinHandle<()>>,
}

pub struct JsonlSource {
    reader: BufReader<std::fs::File>,
    keys: Vec<String>,
    line: u64,
    buf: Vec<u8>,
    max_line: u64,
}

/// The kind of a file, from its first bytes and then its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Workbook,
    Jsonl,
    Text,
}

pub fn kind_of(path: &Path, head: &[u8]) -> Kind {
    // XLSX/ODS are zip files; XLS is an OLE compound document.
    if head.starts_with(b"PK\x03\x04") || head.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) {
        return Kind::Workbook;
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "xlsx" | "xlsm" | "xlsb" | "xls" | "ods" => Kind::Workbook,
        "jsonl" | "ndjson" | "json" => Kind::Jsonl,
        _ => Kind::Text,
    }
}

impl Source {
    /// Opens `path` and reads its header. `Ok(Err(reason))` is a file that
    /// cannot be read as an export at all.
    pub fn open(
        path: &Path,
        ds: &DatasetConfig,
        limits: &IngestConfig,
    ) -> Result<std::result::Result<(Source, StringRecord), String>> {
        let head = read_head(path)?;
        if head.is_empty() {
            return Ok(Err(
                "the file is empty: no header line and no rows. Export it again".into(),
            ));
        }
        match kind_of(path, &head) {
            Kind::Workbook => open_sheet(path, ds, limits),
            Kind::Jsonl => open_jsonl(path, &head, limits),
            Kind::Text => open_csv(path, &head, ds, limits),
        }
    }

    /// What a location in this file is called: "line" or "row".
    pub fn unit(&self) -> &'static str {
        match self {
            Source::Sheet(_) => "row",
            _ => "line",
        }
    }

    /// Reads the next non-blank record into `rec`; its line, or `None` at
    /// the end.
    pub fn read(&mut self, rec: &mut StringRecord) -> std::result::Result<Option<u64>, ReadError> {
        match self {
            Source::Csv(c) => c.read(rec),
            Source::Sheet(s) => s.read(rec),
            Source::Jsonl(j) => j.read(rec),
        }
    }
}

fn read_head(path: &Path) -> Result<Vec<u8>> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut head = vec![0u8; HEAD_BYTES];
    let mut n = 0;
    while n < head.len() {
        let k = f.read(&mut head[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    head.truncate(n);
    Ok(head)
}

/// Text encodings we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Gb18030,
}

/// Chooses the encoding of a text file from its first bytes, on strong
/// evidence only: a BOM or valid UTF-8 is UTF-8; text that is mostly valid
/// UTF-8 (ten or more valid multi-byte characters per invalid byte
/// sequence) is UTF-8 with errors, which the reader then reports at their
/// line; otherwise text that decodes cleanly as GB18030 (a superset of GBK)
/// with some Chinese in it is GB18030. Anything else is refused with the
/// reason: a guess would store every name as mojibake.
pub fn sniff(head: &[u8]) -> std::result::Result<Encoding, String> {
    if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Ok(Encoding::Utf8);
    }
    // Judge whole lines: a sample cut by its size may end inside a character.
    let sample = if head.len() >= HEAD_BYTES {
        memchr::memrchr(b'\n', head).map_or(head, |i| &head[..=i])
    } else {
        head
    };
    let mut multibyte = 0usize;
    let mut bad = 0usize;
    let mut first_bad = None;
    let mut at = 0usize;
    for chunk in sample.utf8_chunks() {
        multibyte += chunk.valid().chars().filter(|c| !c.is_ascii()).count();
        at += chunk.valid().len();
        if !chunk.invalid().is_empty() {
            if head.len() >= HEAD_BYTES && at + chunk.invalid().len() == sample.len() {
                break; // a character cut by the end of the sample
            }
            bad += 1;
            first_bad.get_or_insert(at);
            at += chunk.invalid().len();
        }
    }
    let Some(first_bad) = first_bad else {
        return Ok(Encoding::Utf8);
    };
    if multibyte >= 10 * bad {
        return Ok(Encoding::Utf8);
    }
    let (gbk_bad, gbk_chars) = gb18030_check(sample);
    match gbk_bad {
        None if gbk_chars >= 4 => Ok(Encoding::Gb18030),
        None => Err(format!(
            "the file's encoding cannot be told: it is not UTF-8 (byte 0x{:02X} at line {} is invalid) and holds too little non-ASCII text to call it GBK. Set `encoding` for this dataset in the config (utf-8, gbk), or export the file again as CSV UTF-8",
            sample[first_bad],
            line_of(sample, first_bad)
        )),
        Some(g) => Err(format!(
            "the file is neither UTF-8 nor GBK/GB18030 text: as UTF-8, byte 0x{:02X} at line {} is invalid; as GBK, byte 0x{:02X} at line {} is. Set `encoding` for this dataset in the config if you know it, or export the file again as CSV UTF-8",
            sample[first_bad],
            line_of(sample, first_bad),
            sample[g.min(sample.len() - 1)],
            line_of(sample, g)
        )),
    }
}

/// The 1-based line of byte `at` of `text`.
fn line_of(text: &[u8], at: usize) -> u64 {
    memchr::memchr_iter(b'\n', &text[..at.min(text.len())]).count() as u64 + 1
}

/// Decodes `text` as GB18030 without replacing anything: the offset of the
/// first byte that is not GB18030 (if any), and how many non-ASCII
/// characters were read.
fn gb18030_check(text: &[u8]) -> (Option<usize>, usize) {
    let mut dec = encoding_rs::GB18030.new_decoder_without_bom_handling();
    let mut out = String::with_capacity(4096);
    let mut read = 0usize;
    let mut chars = 0usize;
    loop {
        out.clear();
        let (res, n) = dec.decode_to_string_without_replacement(&text[read..], &mut out, true);
        chars += out.chars().filter(|c| !c.is_ascii()).count();
        read += n;
        match res {
            encoding_rs::DecoderResult::InputEmpty => return (None, chars),
            encoding_rs::DecoderResult::OutputFull => {}
            encoding_rs::DecoderResult::Malformed(len, back) => {
                let at = read.saturating_sub(len as usize + back as usize);
                return (Some(at), chars);
            }
        }
    }
}

/// Whether the start of a file is not text in `enc`: NUL bytes, or more
/// than 1% control or undecodable characters. Returns the byte offset of
/// the first such character.
pub fn binary_at(head: &[u8], enc: Encoding) -> Option<usize> {
    if let Some(i) = head.iter().position(|b| *b == 0) {
        return Some(i);
    }
    let coder = match enc {
        Encoding::Utf8 => encoding_rs::UTF_8,
        Encoding::Gb18030 => encoding_rs::GB18030,
    };
    let (text, _) = coder.decode_without_bom_handling(head);
    let mut bad = 0usize;
    let mut first = None;
    let mut total = 0usize;
    let mut at = 0usize;
    for c in text.chars() {
        total += 1;
        let odd = c == '\u{FFFD}' || (c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0c'));
        if odd {
            bad += 1;
            first.get_or_insert(at);
        }
        at += c.len_utf8();
    }
    // The last character may be cut by the sample's end.
    if bad > 1 && bad * 100 > total {
        first
    } else {
        None
    }
}

/// Picks the delimiter that the header line uses most: `,`, `;` or tab.
pub fn sniff_delimiter(head: &[u8]) -> u8 {
    let line = head.split(|b| *b == b'\n').next().unwrap_or(head);
    [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| line.iter().filter(|b| *b == d).count())
        .unwrap_or(b',')
}

fn decoder(enc: Encoding, inner: impl Read + Send + 'static) -> Box<dyn Read + Send> {
    match enc {
        // BOM-sniffing decoder: strips a UTF-8 BOM, passes the rest through.
        Encoding::Utf8 => Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(encoding_rs::UTF_8))
                .bom_override(true)
                .build(inner),
        ),
        Encoding::Gb18030 => Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(encoding_rs::GB18030))
                .build(inner),
        ),
    }
}

fn not_text(at: usize) -> String {
    format!(
        "the file is not text: binary content at byte {at}. If it is a workbook, give it its .xlsx or .xls name; otherwise export it again as CSV"
    )
}

fn open_csv(
    path: &Path,
    head: &[u8],
    ds: &DatasetConfig,
    limits: &IngestConfig,
) -> Result<std::result::Result<(Source, StringRecord), String>> {
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return Ok(Err(
            "the file is UTF-16 text (Excel's \"Unicode Text\"), which kamwatch does not read; save it as \"CSV UTF-8\" (or CSV in GBK) and drop it in again".into(),
        ));
    }
    if let Some(i) = head.iter().position(|b| *b == 0) {
        return Ok(Err(not_text(i)));
    }
    let enc = match ds.encoding {
        TextEncoding::Auto => match sniff(head) {
            Ok(e) => e,
            Err(reason) => {
                // Control bytes (more than 1%) make it no text at all.
                let control = |b: &u8| *b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c);
                let n = head.iter().filter(|b| control(b)).count();
                return Ok(Err(match head.iter().position(control) {
                    Some(at) if n > 1 && n * 100 > head.len() => not_text(at),
                    _ => reason,
                }));
            }
        },
        TextEncoding::Utf8 => Encoding::Utf8,
        TextEncoding::Gbk | TextEncoding::Gb18030 => Encoding::Gb18030,
    };
    if let Some(at) = binary_at(head, enc) {
        return Ok(Err(not_text(at)));
    }
    let delim = ds.delimiter_byte().unwrap_or_else(|| sniff_delimiter(head));
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let text: Box<dyn Read + Send> = match enc {
        // UTF-8 needs no decoding: the csv reader checks every record and
        // an invalid one is reported, not silently replaced. Skip the BOM.
        Encoding::Utf8 => {
            if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
                std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(3))?;
            }
            Box::new(f)
        }
        Encoding::Gb18030 => Box::new(BufReader::with_capacity(1 << 16, decoder(enc, f))),
    };
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
            return Ok(Err(format!(
                "the header line cannot be read: {}",
                csv_message(&e, enc, limits.max_record_bytes)
            )));
        }
    };
    record_start.store(rdr.position().byte(), std::sync::atomic::Ordering::Relaxed);
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Ok(Err(
            "the file is empty: no header line and no rows. Export it again".into(),
        ));
    }
    let lines = Lines {
        newlines,
        passed: 0,
    };
    Ok(Ok((
        Source::Csv(Box::new(CsvSource {
            rdr,
            lines,
            record_start,
            headers: headers.clone(),
            encoding: enc,
            max_record: limits.max_record_bytes,
        })),
        headers,
    )))
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

    fn read(&mut self, rec: &mut StringRecord) -> std::result::Result<Option<u64>, ReadError> {
        use std::sync::atomic::Ordering::Relaxed;
        loop {
            let read = self.rdr.read_record(rec);
            // The next record starts here: the bound counts from it.
            self.record_start.store(self.rdr.position().byte(), Relaxed);
            match read {
                Ok(false) => return Ok(None),
                Ok(true) => {}
                Err(e) => {
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
                    let mut message = csv_message(&e, self.encoding, self.max_record);
                    if let csv::ErrorKind::Utf8 { err, .. } = e.kind()
                        && let Some(h) = self.headers.get(err.field())
                    {
                        message = message.replacen(
                            &format!("field {} ", err.field() + 1),
                            &format!("column {} ", escape(h.trim())),
                            1,
                        );
                    }
                    return Err(ReadError {
                        line,
                        message,
                        fatal,
                    });
                }
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
            // GB18030 decoding replaces what is not GB18030 with U+FFFD:
            // such a record is reported, never stored as mojibake.
            if self.encoding == Encoding::Gb18030
                && let Some(field) = rec.iter().position(|f| f.contains('\u{FFFD}'))
            {
                let col = self.column_name(field);
                return Err(ReadError {
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
            if self.encoding == Encoding::Gb18030
                && let Some(field) = rec.iter().position(looks_utf8_in_gbk)
            {
                let col = self.column_name(field);
                return Err(ReadError {
                    line,
                    message: format!(
                        "{col} is UTF-8 text in a file read as GBK (it would be stored as mojibake); export the whole file again in one encoding, GBK or CSV UTF-8"
                    ),
                    fatal: false,
                });
            }
            return Ok(Some(line));
        }
    }
}

/// Whether a field decoded as GB18030 was really UTF-8: its bytes are valid
/// UTF-8 holding at least two CJK characters (a single pair of GBK bytes can
/// happen to be valid UTF-8; a run of them practically never is).
fn looks_utf8_in_gbk(field: &str) -> bool {
    if field.is_ascii() {
        return false;
    }
    let (bytes, _, _) = encoding_rs::GB18030.encode(field);
    std::str::from_utf8(&bytes).is_ok_and(|t| {
        t.chars()
            .filter(|c| ('\u{4E00}'..='\u{9FFF}').contains(c))
            .nth(1)
            .is_some()
    })
}

/// The error a [`LineCounter`] returns for a line or a record over the
/// bound: the line, or the byte where the record starts.
#[derive(Debug)]
enum TooLong {
    Line(u64),
    Record(u64),
}

impl TooLong {
    fn message(&self, max: u64) -> String {
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

/// The most distinct keys a JSON Lines file may use (its columns).
const MAX_JSONL_KEYS: usize = 1024;

/// Zip archives with more parts than this are no workbook an ERP writes.
const MAX_ZIP_ENTRIES: usize = 10_000;

/// The columns a worksheet can have (XFD).
const MAX_SHEET_COLUMNS: u32 = 16_384;

/// Rows in flight from the workbook reader thread.
const SHEET_ROWS_IN_FLIGHT: usize = 256;

/// What kind of workbook a zip holds, from its part names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ZipKind {
    Xlsx,
    /// ODS, XLSB or something calamine may still know: read whole.
    Other,
}

fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{bytes} bytes")
    }
}

/// Checks a zip workbook before anything of it is held in memory: the
/// number of parts, their declared and their real unpacked sizes (each
/// part is inflated once into a small buffer and counted), and the longest
/// stretch of XML without a `<` (the most a single cell or tag would take).
/// `Ok(Err(reason))`: the workbook is refused.
fn check_zip(path: &Path, limits: &IngestConfig) -> Result<std::result::Result<ZipKind, String>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut zip = match zip::ZipArchive::new(BufReader::new(f)) {
        Ok(z) => z,
        Err(e) => {
            return Ok(Err(format!(
                "the file cannot be opened as a workbook ({}); save it again from the spreadsheet program as .xlsx, or export CSV",
                bounded(&e)
            )));
        }
    };
    if zip.len() > MAX_ZIP_ENTRIES {
        return Ok(Err(format!(
            "the workbook has {} parts (at most {MAX_ZIP_ENTRIES}): this is no export; save it again as .xlsx with the data sheet only, or export CSV",
            zip.len()
        )));
    }
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    let kind = if names.iter().any(|n| n == "xl/workbook.xml") {
        ZipKind::Xlsx
    } else {
        ZipKind::Other
    };
    let total_limit = limits.max_unpacked_mib << 20;
    let memory_limit = limits.max_in_memory_mib << 20;
    // Streamed parts (XLSX worksheets) count only toward the total.
    let streamed = |name: &str| kind == ZipKind::Xlsx && name.starts_with("xl/worksheets/");
    let raise = |key: &str| {
        format!(
            "if this is a real export, raise `ingest.{key}` in the config; otherwise export it again as CSV"
        )
    };
    let mut declared = 0u64;
    for i in 0..zip.len() {
        let part = match zip.by_index_raw(i) {
            Ok(p) => p,
            Err(e) => {
                return Ok(Err(format!(
                    "the workbook cannot be read ({}); save it again as .xlsx, or export CSV",
                    bounded(&e)
                )));
            }
        };
        declared = declared.saturating_add(part.size());
    }
    if declared > total_limit {
        return Ok(Err(format!(
            "the workbook says it unpacks to {}, more than the {} allowed (`ingest.max_unpacked_mib`); {}",
            mib(declared),
            mib(total_limit),
            raise("max_unpacked_mib")
        )));
    }
    let mut total = 0u64;
    let mut in_memory = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    for i in 0..zip.len() {
        let mut part = match zip.by_index(i) {
            Ok(p) => p,
            Err(e) => {
                return Ok(Err(format!(
                    "the workbook cannot be read ({}); save it again as .xlsx, or export CSV",
                    bounded(&e)
                )));
            }
        };
        let name = part.name().map(|n| n.into_owned()).unwrap_or_default();
        let xml = name.ends_with(".xml") || name.ends_with(".rels");
        let held = !streamed(&name);
        let mut run = 0u64; // bytes since the last '<'
        loop {
            let n = match part.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    return Ok(Err(format!(
                        "the workbook part {} cannot be unpacked ({}); the file is damaged: save it again as .xlsx, or export CSV",
                        escape(&name),
                        bounded(&e)
                    )));
                }
            };
            total += n as u64;
            if held {
                in_memory += n as u64;
            }
            if total > total_limit {
                return Ok(Err(format!(
                    "the workbook unpacks to more than the {} allowed (`ingest.max_unpacked_mib`; the part {} passed it); {}",
                    mib(total_limit),
                    escape(&name),
                    raise("max_unpacked_mib")
                )));
            }
            if in_memory > memory_limit {
                return Ok(Err(format!(
                    "the parts of the workbook held in memory while it is read (shared strings, styles{}) unpack to more than the {} allowed (`ingest.max_in_memory_mib`; the part {} passed it); {}",
                    if kind == ZipKind::Xlsx {
                        ""
                    } else {
                        "; an ODS or XLSB is read whole"
                    },
                    mib(memory_limit),
                    escape(&name),
                    raise("max_in_memory_mib")
                )));
            }
            if xml {
                let chunk = &buf[..n];
                match memchr::memrchr(b'<', chunk) {
                    Some(last) => {
                        let first = memchr::memchr(b'<', chunk).unwrap_or(last);
                        let mut longest = run + first as u64;
                        let mut prev = first;
                        for i in memchr::memchr_iter(b'<', &chunk[first + 1..]) {
                            let at = first + 1 + i;
                            longest = longest.max((at - prev) as u64);
                            prev = at;
                        }
                        if longest > limits.max_record_bytes {
                            run = longest;
                        } else {
                            run = (n - last) as u64;
                        }
                    }
                    None => run += n as u64,
                }
                if run > limits.max_record_bytes {
                    return Ok(Err(format!(
                        "the workbook part {} holds a single cell or tag longer than {} (`ingest.max_record_bytes`): this is no export of rows; export it again as CSV",
                        escape(&name),
                        mib(limits.max_record_bytes)
                    )));
                }
            }
        }
    }
    Ok(Ok(kind))
}

fn open_sheet(
    path: &Path,
    ds: &DatasetConfig,
    limits: &IngestConfig,
) -> Result<std::result::Result<(Source, StringRecord), String>> {
    let is_zip = {
        let mut magic = [0u8; 4];
        let mut f =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let n = f.read(&mut magic)?;
        n == 4 && magic == *b"PK\x03\x04"
    };
    let kind = if is_zip {
        match check_zip(path, limits)? {
            Ok(k) => k,
            Err(reason) => return Ok(Err(reason)),
        }
    } else {
        // XLS (an OLE compound file) is read whole.
        let size = std::fs::metadata(path)?.len();
        if size > limits.max_in_memory_mib << 20 {
            return Ok(Err(format!(
                "the workbook is {}, more than the {} a workbook read whole may take (`ingest.max_in_memory_mib`); save it as .xlsx (read as a stream), or export CSV",
                mib(size),
                mib(limits.max_in_memory_mib << 20)
            )));
        }
        ZipKind::Other
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(SHEET_ROWS_IN_FLIGHT);
    let owned = path.to_path_buf();
    let sheet = ds.sheet.clone();
    let max_rows = limits.max_sheet_rows;
    let worker = std::thread::Builder::new()
        .name("kamwatch-sheet".into())
        .spawn(move || {
            let out = RowSink { tx, width: None };
            match kind {
                ZipKind::Xlsx => stream_xlsx(&owned, sheet.as_deref(), max_rows, out),
                ZipKind::Other => read_whole(&owned, sheet.as_deref(), max_rows, out),
            }
        })
        .context("starting the workbook reader")?;
    let mut src = SheetSource {
        rows: rx,
        worker: Some(worker),
    };
    match src.next_msg() {
        Some(SheetMsg::Row(_, header)) => Ok(Ok((Source::Sheet(src), StringRecord::from(header)))),
        Some(SheetMsg::Whole(reason)) => Ok(Err(reason)),
        Some(SheetMsg::Bad(e)) => Ok(Err(format!("row {}: {}", e.line, e.message))),
        None => Ok(Err(
            "the sheet is empty: no header row and no rows. Export it again".into(),
        )),
    }
}

/// What the workbook reader thread sends: rows (the header first), a
/// problem with one row, or a reason the whole file cannot be read (only
/// before the header).
enum SheetMsg {
    Row(u64, Vec<String>),
    Bad(ReadError),
    Whole(String),
}

impl SheetSource {
    /// The next message; a reader thread that died (a panic in the
    /// workbook library) is a fatal error, not the end of the rows.
    fn next_msg(&mut self) -> Option<SheetMsg> {
        match self.rows.recv() {
            Ok(m) => Some(m),
            Err(_) => {
                let panicked = self.worker.take().map(|w| w.join().is_err());
                panicked.filter(|p| *p).map(|_| {
                    SheetMsg::Whole(
                        "the workbook reader failed on this file (a bug in reading its format); save it again as .xlsx, or export CSV".into(),
                    )
                })
            }
        }
    }

    fn read(&mut self, rec: &mut StringRecord) -> std::result::Result<Option<u64>, ReadError> {
        match self.next_msg() {
            None => Ok(None),
            Some(SheetMsg::Row(line, cells)) => {
                rec.clear();
                for c in &cells {
                    rec.push_field(c);
                }
                Ok(Some(line))
            }
            Some(SheetMsg::Bad(e)) => Err(e),
            Some(SheetMsg::Whole(reason)) => Err(ReadError {
                line: 0,
                message: reason,
                fatal: true,
            }),
        }
    }
}

/// The sending end of the rows: assembles cells into rows of the header's
/// width. `send` is false once the reading side hung up.
struct RowSink {
    tx: std::sync::mpsc::SyncSender<SheetMsg>,
    /// The header's width, once the header was sent.
    width: Option<usize>,
}

impl RowSink {
    fn whole(&self, reason: String) {
        let _ = self.tx.send(SheetMsg::Whole(reason));
    }

    /// Sends sheet row `row` (0-based) of (column, text) cells, the empty
    /// ones left out. Returns false when the reader has hung up.
    fn row(&mut self, row: u32, cells: &mut Vec<(u32, String)>) -> bool {
        if cells.is_empty() {
            return true;
        }
        let line = u64::from(row) + 1;
        let last = cells.iter().map(|(c, _)| *c).max().unwrap_or(0);
        let msg = match self.width {
            None if last >= MAX_SHEET_COLUMNS => SheetMsg::Whole(format!(
                "the header row {line} has a cell in column {}, past the last column a sheet can have",
                column_name(last)
            )),
            None => {
                self.width = Some(last as usize + 1);
                SheetMsg::Row(line, place(cells, last as usize + 1))
            }
            Some(w) if last as usize >= w => SheetMsg::Bad(ReadError {
                line,
                message: format!(
                    "has a value in column {} ({}), beyond the header's {w} column(s): a stray cell far right of the data, or a row shifted; delete it and save again",
                    column_name(last),
                    last + 1
                ),
                fatal: false,
            }),
            Some(w) => SheetMsg::Row(line, place(cells, w)),
        };
        cells.clear();
        self.tx.send(msg).is_ok()
    }

    fn bad(&self, line: u64, message: String, fatal: bool) {
        let _ = self.tx.send(SheetMsg::Bad(ReadError {
            line,
            message,
            fatal,
        }));
    }
}

/// (column, text) cells laid out in a row of `width` fields.
fn place(cells: &mut Vec<(u32, String)>, width: usize) -> Vec<String> {
    let mut row = vec![String::new(); width];
    for (c, t) in cells.drain(..) {
        if let Some(slot) = row.get_mut(c as usize) {
            *slot = t;
        }
    }
    row
}

/// The spreadsheet name of a 0-based column: 0 is A, 16383 is XFD.
pub fn column_name(col: u32) -> String {
    let mut n = col as u64 + 1;
    let mut out = Vec::new();
    while n > 0 {
        let r = ((n - 1) % 26) as u8;
        out.push(b'A' + r);
        n = (n - 1) / 26;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The sheet to read: the configured one, or the first.
fn pick_sheet(names: &[String], want: Option<&str>) -> std::result::Result<String, String> {
    match want {
        Some(want) => names.iter().find(|n| *n == want).cloned().ok_or_else(|| {
            format!(
                "the workbook has no sheet named {}; its sheets are: {}. Fix `sheet` for this dataset in the config",
                escape(want),
                bounded(names.join(", "))
            )
        }),
        None => names
            .first()
            .cloned()
            .ok_or_else(|| "the workbook has no sheets".to_string()),
    }
}

/// Streams an XLSX sheet cell by cell (calamine's cell reader): memory is
/// one row, however far apart its cells are.
fn stream_xlsx(path: &Path, want: Option<&str>, max_rows: u64, mut out: RowSink) {
    let mut wb: calamine::Xlsx<_> = match calamine::open_workbook(path) {
        Ok(wb) => wb,
        Err(e) => {
            return out.whole(format!(
                "the file cannot be opened as a workbook ({}); save it again from the spreadsheet program as .xlsx, or export CSV", bounded(&e)
            ));
        }
    };
    let name = match pick_sheet(&wb.sheet_names(), want) {
        Ok(n) => n,
        Err(reason) => return out.whole(reason),
    };
    let mut cells = match wb.worksheet_cells_reader(&name) {
        Ok(r) => r,
        Err(e) => {
            return out.whole(format!(
                "the sheet {} cannot be read ({}); save the workbook again as .xlsx, or export CSV",
                escape(&name),
                bounded(&e)
            ));
        }
    };
    let dim = cells.dimensions();
    if u64::from(dim.end.0) + 1 > max_rows {
        return out.whole(format!(
            "the sheet {} says it has {} rows (its dimension ends at {}{}), more than the {max_rows} allowed (`ingest.max_sheet_rows`); delete what lies below the data and save again, or export CSV",
            escape(&name),
            u64::from(dim.end.0) + 1,
            column_name(dim.end.1.min(MAX_SHEET_COLUMNS)),
            u64::from(dim.end.0) + 1
        ));
    }
    let mut row: Vec<(u32, String)> = Vec::new();
    let mut current: Option<u32> = None;
    loop {
        let cell = match cells.next_cell() {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                let line = current.map_or(0, |r| u64::from(r) + 1);
                let msg = format!(
                    "the sheet cannot be read past here ({}); the file is damaged: save it again as .xlsx, or export CSV",
                    bounded(&e)
                );
                if out.width.is_none() {
                    return out.whole(msg);
                }
                return out.bad(line, msg, true);
            }
        };
        let (r, c) = cell.get_position();
        if current != Some(r) {
            if let Some(prev) = current
                && !out.row(prev, &mut row)
            {
                return;
            }
            current = Some(r);
            if u64::from(r) + 1 > max_rows {
                let msg = format!("is past the {max_rows} rows allowed (`ingest.max_sheet_rows`)");
                if out.width.is_none() {
                    return out.whole(format!("row {}: {msg}", u64::from(r) + 1));
                }
                return out.bad(u64::from(r) + 1, msg, true);
            }
        }
        let text = cell_text(&Data::from(cell.get_value().clone()));
        if !text.is_empty() {
            // A row holds at most one cell per column: more is no sheet.
            if c >= MAX_SHEET_COLUMNS || row.len() >= MAX_SHEET_COLUMNS as usize {
                let line = u64::from(r) + 1;
                let msg = format!(
                    "has a cell past column {} (the last a sheet can have), or more cells than columns; the file is damaged: save it again as .xlsx, or export CSV",
                    column_name(MAX_SHEET_COLUMNS - 1)
                );
                if out.width.is_none() {
                    return out.whole(format!("row {line}: {msg}"));
                }
                return out.bad(line, msg, true);
            }
            row.push((c, text));
        }
    }
    if let Some(prev) = current {
        out.row(prev, &mut row);
    }
}

/// XLS, ODS and XLSB: calamine reads these whole (after the size checks).
fn read_whole(path: &Path, want: Option<&str>, max_rows: u64, mut out: RowSink) {
    let mut wb = match calamine::open_workbook_auto(path) {
        Ok(wb) => wb,
        Err(e) => {
            return out.whole(format!(
                "the file cannot be opened as a workbook ({}); save it again from the spreadsheet program as .xlsx, or export CSV", bounded(&e)
            ));
        }
    };
    let name = match pick_sheet(&wb.sheet_names(), want) {
        Ok(n) => n,
        Err(reason) => return out.whole(reason),
    };
    let range = match wb.worksheet_range(&name) {
        Ok(r) => r,
        Err(e) => {
            return out.whole(format!(
                "the sheet {} cannot be read ({}); save the workbook again as .xlsx, or export CSV",
                escape(&name),
                bounded(&e)
            ));
        }
    };
    let first_row = range.start().map(|(r, _)| r).unwrap_or(0);
    let first_col = range.start().map(|(_, c)| c).unwrap_or(0);
    if u64::from(first_row) + range.height() as u64 > max_rows {
        return out.whole(format!(
            "the sheet {} has {} rows, more than the {max_rows} allowed (`ingest.max_sheet_rows`); export it again as CSV",
            escape(&name),
            u64::from(first_row) + range.height() as u64
        ));
    }
    let mut row = Vec::new();
    for (i, cells) in range.rows().enumerate() {
        for (j, c) in cells.iter().enumerate() {
            let t = cell_text(c);
            if !t.is_empty() {
                row.push((first_col + j as u32, t));
            }
        }
        if !out.row(first_row + i as u32, &mut row) {
            return;
        }
    }
}

/// A cell as text, the way the CSV export of the same sheet would write it;
/// date cells as YYYY-MM-DD (with the time only if it is not midnight).
/// Formulas are never evaluated: the sheet's stored value is taken.
pub fn cell_text(c: &Data) -> String {
    match c {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) => float_text(*f),
        Data::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        Data::DateTime(dt) => match dt.as_datetime() {
            Some(t) if dt.is_datetime() => {
                if t.time() == chrono::NaiveTime::MIN {
                    t.format("%Y-%m-%d").to_string()
                } else {
                    t.format("%Y-%m-%d %H:%M:%S").to_string()
                }
            }
            _ => float_text(dt.as_f64()),
        },
        Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Error(e) => format!("#{e:?}"),
    }
}

fn float_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

fn open_jsonl(
    path: &Path,
    head: &[u8],
    limits: &IngestConfig,
) -> Result<std::result::Result<(Source, StringRecord), String>> {
    if let Some(at) = binary_at(head, Encoding::Utf8) {
        return Ok(Err(not_text(at)));
    }
    // First pass: the union of the keys, in the order first seen.
    let mut keys: Vec<String> = Vec::new();
    let mut scan = JsonlSource::new(path, limits.max_record_bytes)?;
    let mut seen = std::collections::HashSet::new();
    loop {
        match scan.next_object() {
            Ok(None) => break,
            Ok(Some((line, obj))) => {
                for k in obj.keys() {
                    if seen.insert(k.clone()) {
                        keys.push(k.clone());
                    }
                }
                // Every key is a column of every row: many distinct keys
                // would make each row cost as much as all of them.
                if keys.len() > MAX_JSONL_KEYS {
                    return Ok(Err(format!(
                        "line {line}: the file has more than {MAX_JSONL_KEYS} distinct keys by here, and each would be a column; this is no export of rows (objects with the same keys, one a line)"
                    )));
                }
            }
            Err(e) if e.fatal => {
                return Ok(Err(format!("line {}: {}", e.line, e.message)));
            }
            Err(_) => {} // reported on the second pass
        }
    }
    if keys.is_empty() {
        return Ok(Err(
            "the file holds no JSON objects: nothing to ingest. Export it again".into(),
        ));
    }
    let mut src = JsonlSource::new(path, limits.max_record_bytes)?;
    src.keys = keys.clone();
    Ok(Ok((Source::Jsonl(src), StringRecord::from(keys))))
}

type JsonObject = serde_json::Map<String, serde_json::Value>;

/// A JSON object that refuses a repeated key.
struct UniqueObject(JsonObject);

impl<'de> serde::Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> std::result::Result<UniqueObject, A::Error> {
                let mut m = JsonObject::new();
                while let Some((k, v)) = a.next_entry::<String, serde_json::Value>()? {
                    if m.contains_key(&k) {
                        return Err(serde::de::Error::custom(RepeatedKey(k)));
                    }
                    m.insert(k, v);
                }
                Ok(UniqueObject(m))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// The error a repeated key raises, told apart by its text.
struct RepeatedKey(String);

impl std::fmt::Display for RepeatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "\u{0}repeated key\u{0}{}", self.0)
    }
}

/// The key that makes `text` fail as a [`UniqueObject`], if that is why.
fn repeated_key(text: &[u8]) -> Option<String> {
    let e = serde_json::from_slice::<UniqueObject>(text)
        .err()?
        .to_string();
    let rest = e.split_once("\u{0}repeated key\u{0}")?.1;
    // serde_json appends " at line L column C".
    let key = rest.rsplit_once(" at line ").map_or(rest, |(k, _)| k);
    Some(key.to_string())
}

impl JsonlSource {
    fn new(path: &Path, max_line: u64) -> Result<Self> {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(JsonlSource {
            reader: BufReader::with_capacity(1 << 16, f),
            keys: Vec::new(),
            line: 0,
            buf: Vec::new(),
            max_line,
        })
    }

    /// The next non-blank line as an object, with its line number.
    fn next_object(&mut self) -> std::result::Result<Option<(u64, JsonObject)>, ReadError> {
        loop {
            self.buf.clear();
            let n = (&mut self.reader)
                .take(self.max_line + 1)
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| ReadError {
                    line: self.line + 1,
                    message: format!("cannot be read: {e}"),
                    fatal: true,
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if self.buf.len() as u64 > self.max_line && self.buf.last() != Some(&b'\n') {
                return Err(ReadError {
                    line: self.line,
                    message: TooLong::Line(self.line).message(self.max_line),
                    fatal: true,
                });
            }
            let mut text = &self.buf[..];
            if self.line == 1 {
                text = text.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(text);
            }
            if text.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            // One object whose keys are unique (serde_json keeps the last of
            // a repeated key without a word, where a CSV with a repeated
            // column is refused); anything else is parsed again to say what.
            if let Ok(UniqueObject(m)) = serde_json::from_slice::<UniqueObject>(text) {
                return Ok(Some((self.line, m)));
            }
            if let Some(key) = repeated_key(text) {
                return Err(ReadError {
                    line: self.line,
                    message: format!(
                        "has the key {} twice; which value counts is anyone's guess, so fix the export to write each key once",
                        super::values::excerpt(&key)
                    ),
                    fatal: false,
                });
            }
            return match serde_json::from_slice::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(m)) => Ok(Some((self.line, m))),
                Ok(other) => Err(ReadError {
                    line: self.line,
                    message: format!(
                        "is a JSON {} where each line must be one object {{\"column\": value, ...}}",
                        json_kind(&other)
                    ),
                    fatal: false,
                }),
                Err(e) => Err(ReadError {
                    line: self.line,
                    message: format!("is not valid JSON: {}", bounded(&e)),
                    fatal: false,
                }),
            };
        }
    }

    fn read(&mut self, rec: &mut StringRecord) -> std::result::Result<Option<u64>, ReadError> {
        let Some((line, obj)) = self.next_object()? else {
            return Ok(None);
        };
        rec.clear();
        for k in &self.keys {
            match obj.get(k) {
                None | Some(serde_json::Value::Null) => rec.push_field(""),
                Some(serde_json::Value::String(s)) => rec.push_field(s),
                Some(v) => rec.push_field(&v.to_string()),
            }
        }
        Ok(Some(line))
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_read_as_gbk_is_told_apart_from_gbk() {
        let gbk_of_utf8 = |t: &str| encoding_rs::GB18030.decode(t.as_bytes()).0.into_owned();
        assert!(looks_utf8_in_gbk(&gbk_of_utf8("华润万家")));
        assert!(looks_utf8_in_gbk(&gbk_of_utf8("KH1001 华润万家")));
        for real in ["华润万家", "人人乐", "纸巾10包", "A", "é", "SO26090001"] {
            assert!(!looks_utf8_in_gbk(real), "{real}");
        }
    }

    #[test]
    fn sniffs_encodings() {
        assert_eq!(sniff(b"\xEF\xBB\xBFa,b"), Ok(Encoding::Utf8));
        assert_eq!(sniff("客户编号,x".as_bytes()), Ok(Encoding::Utf8));
        // 客户编号,客户名称 in GBK
        let gbk = encoding_rs::GBK
            .encode("客户编号,客户名称\n")
            .0
            .into_owned();
        assert_eq!(sniff(&gbk), Ok(Encoding::Gb18030));
        // Too little to call it GBK: refused, not guessed.
        let e = sniff(b"\xbf\xcd\xbb\xa7,x").unwrap_err();
        assert!(e.contains("cannot be told"), "{e}");
        // UTF-8 cut in the middle of a character by the sample's end
        let mut long = "客户".repeat(HEAD_BYTES / 6 + 1).into_bytes();
        long.truncate(HEAD_BYTES);
        assert_eq!(sniff(&long), Ok(Encoding::Utf8));
        // One stray Latin-1 byte in UTF-8 Chinese text: UTF-8, not GBK.
        let mut text = "订单编号,客户名称\n".repeat(50).into_bytes();
        text.extend_from_slice(b"SO1,caf\xE9\n");
        assert_eq!(sniff(&text), Ok(Encoding::Utf8));
        // Neither: named with its bytes and lines.
        let mut both = gbk.clone();
        both.extend_from_slice(b"x,\xff\xff\n");
        let e = sniff(&both).unwrap_err();
        assert!(e.contains("neither UTF-8 nor GBK"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn excerpts_and_column_names() {
        assert_eq!(column_name(0), "A");
        assert_eq!(column_name(25), "Z");
        assert_eq!(column_name(26), "AA");
        assert_eq!(column_name(16383), "XFD");
    }

    #[test]
    fn sniffs_delimiters() {
        assert_eq!(sniff_delimiter(b"a;b;c\n1,2;3"), b';');
        assert_eq!(sniff_delimiter(b"a\tb\tc"), b'\t');
        assert_eq!(sniff_delimiter(b"a,b,c"), b',');
    }

    #[test]
    fn tells_binary_from_text() {
        assert_eq!(binary_at(b"a,b\n1,\x002", Encoding::Utf8), Some(6));
        assert_eq!(
            binary_at("客户编号,金额\r\n".as_bytes(), Encoding::Utf8),
            None
        );
        assert_eq!(
            binary_at(b"\xbf\xcd\xbb\xa7,x\r\n", Encoding::Gb18030),
            None
        );
        let noise: Vec<u8> = (0..4000u32).map(|i| (i * 7919 % 251 + 1) as u8).collect();
        assert!(binary_at(&noise, Encoding::Utf8).is_some());
    }

    #[test]
    fn kinds_by_magic_then_name() {
        assert_eq!(kind_of(Path::new("a.csv"), b"PK\x03\x04xx"), Kind::Workbook);
        assert_eq!(kind_of(Path::new("a.XLSX"), b""), Kind::Workbook);
        assert_eq!(kind_of(Path::new("a.jsonl"), b"{}"), Kind::Jsonl);
        assert_eq!(kind_of(Path::new("a.csv"), b"a,b"), Kind::Text);
    }

    #[test]
    fn cells_as_text() {
        assert_eq!(cell_text(&Data::Float(5308.8)), "5308.8");
        assert_eq!(cell_text(&Data::Float(336.0)), "336");
        assert_eq!(cell_text(&Data::Int(7)), "7");
        assert_eq!(
            cell_text(&Data::String("=HYPERLINK(\"x\")".into())),
            "=HYPERLINK(\"x\")"
        );
        let d = calamine::ExcelDateTime::new(46266.0, calamine::ExcelDateTimeType::DateTime, false);
        assert_eq!(cell_text(&Data::DateTime(d)), "2026-09-01");
    }
}
