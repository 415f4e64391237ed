//! Checking a zip workbook before anything of it is held in memory: the
//! number of parts, their declared and real unpacked sizes, and the longest
//! stretch of XML without a `<`. Reads the file it is given.

use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::Context;

use super::error::{OpenError, mib};
use crate::config::IngestConfig;
use crate::ingest::values::{bounded, excerpt as escape};

/// Zip archives with more parts than this are no workbook an ERP writes.
const MAX_ZIP_ENTRIES: usize = 10_000;

/// What kind of workbook a zip holds, from its part names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ZipKind {
    Xlsx,
    /// ODS, XLSB or something calamine may still know: read whole.
    Other,
}

/// Checks a zip workbook before anything of it is held in memory: the
/// number of parts, their declared and their real unpacked sizes (each
/// part is inflated once into a small buffer and counted), and the longest
/// stretch of XML without a `<` (the most a single cell or tag would take).
/// `Err(OpenError::Unusable(reason))`: the workbook is refused.
pub(super) fn check_zip(path: &Path, limits: &IngestConfig) -> Result<ZipKind, OpenError> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut zip = match zip::ZipArchive::new(BufReader::new(f)) {
        Ok(z) => z,
        Err(e) => {
            return Err(OpenError::Unusable(format!(
                "the file cannot be opened as a workbook ({}); save it again from the spreadsheet program as .xlsx, or export CSV",
                bounded(&e)
            )));
        }
    };
    if zip.len() > MAX_ZIP_ENTRIES {
        return Err(OpenError::Unusable(format!(
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
    let mut check = Unpacking {
        kind,
        limits,
        total: 0,
        in_memory: 0,
        buf: vec![0u8; 1 << 16],
    };
    check.declared(&mut zip)?;
    for i in 0..zip.len() {
        let part = match zip.by_index(i) {
            Ok(p) => p,
            Err(e) => return Err(damaged(&e)),
        };
        check.part(part)?;
    }
    Ok(kind)
}

type Zip = zip::ZipArchive<BufReader<std::fs::File>>;

/// A part that cannot be read.
fn damaged(e: &zip::result::ZipError) -> OpenError {
    OpenError::Unusable(format!(
        "the workbook cannot be read ({}); save it again as .xlsx, or export CSV",
        bounded(e)
    ))
}

/// What to do about a bound passed.
fn raise(key: &str) -> String {
    format!(
        "if this is a real export, raise `ingest.{key}` in the config; otherwise export it again as CSV"
    )
}

/// The workbook's parts inflated so far.
struct Unpacking<'a> {
    kind: ZipKind,
    limits: &'a IngestConfig,
    /// Bytes unpacked, of every part.
    total: u64,
    /// Bytes unpacked of the parts held in memory while the workbook is read.
    in_memory: u64,
    buf: Vec<u8>,
}

impl Unpacking<'_> {
    fn total_limit(&self) -> u64 {
        self.limits.max_unpacked_mib << 20
    }

    /// Refuses a workbook whose parts say they unpack to more than allowed.
    fn declared(&self, zip: &mut Zip) -> Result<(), OpenError> {
        let mut declared = 0u64;
        for i in 0..zip.len() {
            let part = zip.by_index_raw(i).map_err(|e| damaged(&e))?;
            declared = declared.saturating_add(part.size());
        }
        if declared > self.total_limit() {
            return Err(OpenError::Unusable(format!(
                "the workbook says it unpacks to {}, more than the {} allowed (`ingest.max_unpacked_mib`); {}",
                mib(declared),
                mib(self.total_limit()),
                raise("max_unpacked_mib")
            )));
        }
        Ok(())
    }

    /// Inflates one part, counting it, and refuses the workbook past a bound.
    fn part(
        &mut self,
        mut part: zip::read::ZipFile<'_, BufReader<std::fs::File>>,
    ) -> Result<(), OpenError> {
        let name = part.name().map(|n| n.into_owned()).unwrap_or_default();
        let xml = name.ends_with(".xml") || name.ends_with(".rels");
        // Streamed parts (XLSX worksheets) count only toward the total.
        let held = !(self.kind == ZipKind::Xlsx && name.starts_with("xl/worksheets/"));
        let mut run = 0u64; // bytes since the last '<'
        loop {
            let n = match part.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    return Err(OpenError::Unusable(format!(
                        "the workbook part {} cannot be unpacked ({}); the file is damaged: save it again as .xlsx, or export CSV",
                        escape(&name),
                        bounded(&e)
                    )));
                }
            };
            self.count(n as u64, held, &name)?;
            if xml {
                run = longest_run(&self.buf[..n], run, self.limits.max_record_bytes);
                if run > self.limits.max_record_bytes {
                    return Err(OpenError::Unusable(format!(
                        "the workbook part {} holds a single cell or tag longer than {} (`ingest.max_record_bytes`): this is no export of rows; export it again as CSV",
                        escape(&name),
                        mib(self.limits.max_record_bytes)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Counts `n` bytes unpacked of part `name` (`held` in memory).
    fn count(&mut self, n: u64, held: bool, name: &str) -> Result<(), OpenError> {
        self.total += n;
        if held {
            self.in_memory += n;
        }
        if self.total > self.total_limit() {
            return Err(OpenError::Unusable(format!(
                "the workbook unpacks to more than the {} allowed (`ingest.max_unpacked_mib`; the part {} passed it); {}",
                mib(self.total_limit()),
                escape(name),
                raise("max_unpacked_mib")
            )));
        }
        let memory_limit = self.limits.max_in_memory_mib << 20;
        if self.in_memory > memory_limit {
            return Err(OpenError::Unusable(format!(
                "the parts of the workbook held in memory while it is read (shared strings, styles{}) unpack to more than the {} allowed (`ingest.max_in_memory_mib`; the part {} passed it); {}",
                if self.kind == ZipKind::Xlsx {
                    ""
                } else {
                    "; an ODS or XLSB is read whole"
                },
                mib(memory_limit),
                escape(name),
                raise("max_in_memory_mib")
            )));
        }
        Ok(())
    }
}

/// The bytes since the last `<` after `chunk`, `run` before it; or, when a
/// stretch inside the chunk is longer than `max`, that stretch.
fn longest_run(chunk: &[u8], run: u64, max: u64) -> u64 {
    let n = chunk.len();
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
            if longest > max {
                longest
            } else {
                (n - last) as u64
            }
        }
        None => run + n as u64,
    }
}
