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

use crate::config::{DatasetConfig, TextEncoding};

/// The longest line (or JSON Lines record) read; a longer one rejects the
/// file without being read into memory.
pub const MAX_LINE_BYTES: u64 = 1 << 20;

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
}

pub struct SheetSource {
    rows: std::vec::IntoIter<(u64, Vec<String>)>,
}

pub struct JsonlSource {
    reader: BufReader<std::fs::File>,
    keys: Vec<String>,
    line: u64,
    buf: Vec<u8>,
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
    ) -> Result<std::result::Result<(Source, StringRecord), String>> {
        let head = read_head(path)?;
        if head.is_empty() {
            return Ok(Err(
                "the file is empty: no header line and no rows. Export it again".into(),
            ));
        }
        match kind_of(path, &head) {
            Kind::Workbook => open_sheet(path, ds),
            Kind::Jsonl => open_jsonl(path, &head),
            Kind::Text => open_csv(path, &head, ds),
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
            Source::Sheet(s) => Ok(s.rows.next().map(|(line, cells)| {
                rec.clear();
                for c in &cells {
                    rec.push_field(c);
                }
                line
            })),
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

/// Looks at the start of the file: a BOM or valid UTF-8 means UTF-8,
/// anything else is taken as GB18030 (a superset of GBK and GB2312).
pub fn sniff(head: &[u8]) -> Encoding {
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
) -> Result<std::result::Result<(Source, StringRecord), String>> {
    let enc = match ds.encoding {
        TextEncoding::Auto => sniff(head),
        TextEncoding::Utf8 => Encoding::Utf8,
        TextEncoding::Gbk | TextEncoding::Gb18030 => Encoding::Gb18030,
    };
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return Ok(Err(
            "the file is UTF-16 text (Excel's \"Unicode Text\"), which kamwatch does not read; save it as \"CSV UTF-8\" (or CSV in GBK) and drop it in again".into(),
        ));
    }
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
    let counted = LineCounter {
        inner: text,
        offset: 0,
        since_newline: 0,
        total_newlines: 0,
        newlines: newlines.clone(),
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
                csv_message(&e)
            )));
        }
    };
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
        Source::Csv(Box::new(CsvSource { rdr, lines })),
        headers,
    )))
}

/// A csv error in words a person can act on.
fn csv_message(e: &csv::Error) -> String {
    if let csv::ErrorKind::Io(io) = e.kind()
        && let Some(long) = io.get_ref().and_then(|x| x.downcast_ref::<LineTooLong>())
    {
        return long.to_string();
    }
    if let csv::ErrorKind::Utf8 { .. } = e.kind() {
        return "is not valid text in the file's encoding; set `encoding` for this dataset in the config".into();
    }
    format!("cannot be read as CSV: {e}")
}

impl CsvSource {
    fn read(&mut self, rec: &mut StringRecord) -> std::result::Result<Option<u64>, ReadError> {
        loop {
            match self.rdr.read_record(rec) {
                Ok(false) => return Ok(None),
                Ok(true) => {}
                Err(e) => {
                    let line = match e.kind() {
                        csv::ErrorKind::Io(io) => io
                            .get_ref()
                            .and_then(|x| x.downcast_ref::<LineTooLong>())
                            .map(|l| l.line)
                            .unwrap_or(0),
                        _ => e
                            .position()
                            .map(|p| self.lines.line_at(p.byte()))
                            .unwrap_or(0),
                    };
                    return Err(ReadError {
                        line,
                        message: csv_message(&e),
                        fatal: true,
                    });
                }
            }
            let line = rec
                .position()
                .map(|p| self.lines.line_at(p.byte()))
                .unwrap_or(0);
            if rec.len() == 1 && rec.get(0).is_some_and(|f| f.trim().is_empty()) {
                continue; // blank line
            }
            return Ok(Some(line));
        }
    }
}

/// The error a [`LineCounter`] returns for a line over [`MAX_LINE_BYTES`].
#[derive(Debug)]
struct LineTooLong {
    line: u64,
}

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "is longer than {} MiB without a line break; this is not an export of rows (or a quote is never closed)",
            MAX_LINE_BYTES >> 20
        )
    }
}

impl std::error::Error for LineTooLong {}

/// Newline offsets seen by [`LineCounter`] and not yet passed by the parser.
type Newlines = std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<u64>>>;

/// A reader that notes where each newline is, and refuses a line longer
/// than [`MAX_LINE_BYTES`]. The csv crate's own line numbers are off by one
/// in CRLF files and after blank lines, and a person fixing an export needs
/// the line their editor shows.
struct LineCounter<R> {
    inner: R,
    offset: u64,
    since_newline: u64,
    total_newlines: u64,
    newlines: Newlines,
}

impl<R: Read> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut q = self.newlines.lock().unwrap_or_else(|e| e.into_inner());
        // `since_newline`: bytes of the current line before this chunk.
        let mut start = -(self.since_newline as i64);
        for i in memchr::memchr_iter(b'\n', &buf[..n]) {
            if i as i64 - start > MAX_LINE_BYTES as i64 {
                return Err(too_long(self.total_newlines + 1));
            }
            q.push_back(self.offset + i as u64);
            self.total_newlines += 1;
            start = i as i64 + 1;
        }
        self.since_newline = (n as i64 - start) as u64;
        self.offset += n as u64;
        if self.since_newline > MAX_LINE_BYTES {
            return Err(too_long(self.total_newlines + 1));
        }
        Ok(n)
    }
}

fn too_long(line: u64) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, LineTooLong { line })
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

fn open_sheet(
    path: &Path,
    ds: &DatasetConfig,
) -> Result<std::result::Result<(Source, StringRecord), String>> {
    // Workbooks are read whole: the zip/OLE containers need random access.
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut wb = match calamine::open_workbook_auto_from_rs(std::io::Cursor::new(bytes)) {
        Ok(wb) => wb,
        Err(e) => {
            return Ok(Err(format!(
                "the file cannot be opened as a workbook ({e}); save it again from the spreadsheet program as .xlsx, or export CSV"
            )));
        }
    };
    let names = wb.sheet_names();
    let name = match &ds.sheet {
        Some(want) => match names.iter().find(|n| *n == want) {
            Some(n) => n.clone(),
            None => {
                return Ok(Err(format!(
                    "the workbook has no sheet named {want:?}; its sheets are: {}. Fix `sheet` for this dataset in the config",
                    names.join(", ")
                )));
            }
        },
        None => match names.first() {
            Some(n) => n.clone(),
            None => return Ok(Err("the workbook has no sheets".into())),
        },
    };
    let range = match wb.worksheet_range(&name) {
        Ok(r) => r,
        Err(e) => {
            return Ok(Err(format!(
                "the sheet {name:?} cannot be read ({e}); save the workbook again as .xlsx, or export CSV"
            )));
        }
    };
    let first_row = range.start().map(|(r, _)| u64::from(r)).unwrap_or(0);
    let mut rows = Vec::with_capacity(range.height());
    for (i, cells) in range.rows().enumerate() {
        if cells.iter().all(|c| matches!(c, Data::Empty)) {
            continue;
        }
        let mut texts: Vec<String> = cells.iter().map(cell_text).collect();
        // Trailing empty cells (formatting past the data) are no columns.
        while texts.last().is_some_and(|t| t.is_empty()) {
            texts.pop();
        }
        rows.push((first_row + i as u64 + 1, texts));
    }
    let mut rows = rows.into_iter();
    let Some((_, header)) = rows.next() else {
        return Ok(Err(format!(
            "the sheet {name:?} is empty: no header row and no rows. Export it again"
        )));
    };
    // Data rows may be shorter (trailing empty cells), never ragged: pad
    // them to the header's width so only real extra cells count as extra.
    let width = header.len();
    let rows: Vec<(u64, Vec<String>)> = rows
        .map(|(line, mut cells)| {
            if cells.len() < width {
                cells.resize(width, String::new());
            }
            (line, cells)
        })
        .collect();
    Ok(Ok((
        Source::Sheet(SheetSource {
            rows: rows.into_iter(),
        }),
        StringRecord::from(header),
    )))
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
) -> Result<std::result::Result<(Source, StringRecord), String>> {
    if let Some(at) = binary_at(head, Encoding::Utf8) {
        return Ok(Err(not_text(at)));
    }
    // First pass: the union of the keys, in the order first seen.
    let mut keys: Vec<String> = Vec::new();
    let mut scan = JsonlSource::new(path)?;
    let mut seen = std::collections::HashSet::new();
    loop {
        match scan.next_object() {
            Ok(None) => break,
            Ok(Some((_, obj))) => {
                for k in obj.keys() {
                    if seen.insert(k.clone()) {
                        keys.push(k.clone());
                    }
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
    let mut src = JsonlSource::new(path)?;
    src.keys = keys.clone();
    Ok(Ok((Source::Jsonl(src), StringRecord::from(keys))))
}

type JsonObject = serde_json::Map<String, serde_json::Value>;

impl JsonlSource {
    fn new(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(JsonlSource {
            reader: BufReader::with_capacity(1 << 16, f),
            keys: Vec::new(),
            line: 0,
            buf: Vec::new(),
        })
    }

    /// The next non-blank line as an object, with its line number.
    fn next_object(&mut self) -> std::result::Result<Option<(u64, JsonObject)>, ReadError> {
        loop {
            self.buf.clear();
            let n = (&mut self.reader)
                .take(MAX_LINE_BYTES + 1)
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
            if self.buf.len() as u64 > MAX_LINE_BYTES && self.buf.last() != Some(&b'\n') {
                return Err(ReadError {
                    line: self.line,
                    message: LineTooLong { line: self.line }.to_string(),
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
                    message: format!("is not valid JSON: {e}"),
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
        assert!(binary_at(&noise, sniff(&noise)).is_some());
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
