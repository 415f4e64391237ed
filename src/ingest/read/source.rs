//! Sources: the rows of one export file, whatever its format — CSV (UTF-8,
//! UTF-8 BOM, GBK/GB18030; `,` `;` tab or a configured delimiter),
//! XLSX/XLS/ODS workbooks (calamine) or JSON Lines — as text fields in a
//! `csv::StringRecord` with the line (or sheet row) a person would look at.
//! Reads the file it is given; nothing else.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use csv::StringRecord;

use super::encoding::HEAD_BYTES;
use super::error::{OpenError, ReadError};
use super::jsonl::{JsonlSource, open_jsonl};
use super::sheet::{SheetSource, open_sheet};
use super::text::{CsvSource, open_csv};
use crate::config::{DatasetConfig, IngestConfig};

/// An open file, positioned after its header.
pub enum Source {
    Csv(Box<CsvSource>),
    Sheet(SheetSource),
    Jsonl(JsonlSource),
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
    /// Opens `path` and reads its header. `Err(OpenError::Unusable(reason))` is a file that
    /// cannot be read as an export at all.
    pub fn open(
        path: &Path,
        ds: &DatasetConfig,
        limits: &IngestConfig,
    ) -> Result<(Source, StringRecord), OpenError> {
        let head = read_head(path)?;
        if head.is_empty() {
            return Err(OpenError::Unusable(
                "the file is empty: no header line and no rows. Export it again".into(),
            ));
        }
        match kind_of(path, &head) {
            Kind::Workbook => open_sheet(path, ds, limits).map(|(s, h)| (Source::Sheet(s), h)),
            Kind::Jsonl => open_jsonl(path, &head, limits).map(|(s, h)| (Source::Jsonl(s), h)),
            Kind::Text => {
                open_csv(path, &head, ds, limits).map(|(s, h)| (Source::Csv(Box::new(s)), h))
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_magic_then_name() {
        assert_eq!(kind_of(Path::new("a.csv"), b"PK\x03\x04xx"), Kind::Workbook);
        assert_eq!(kind_of(Path::new("a.XLSX"), b""), Kind::Workbook);
        assert_eq!(kind_of(Path::new("a.jsonl"), b"{}"), Kind::Jsonl);
        assert_eq!(kind_of(Path::new("a.csv"), b"a,b"), Kind::Text);
    }
}
