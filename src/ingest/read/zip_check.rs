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
                return Err(OpenError::Unusable(format!(
                    "the workbook cannot be read ({}); save it again as .xlsx, or export CSV",
                    bounded(&e)
                )));
            }
        };
        declared = declared.saturating_add(part.size());
    }
    if declared > total_limit {
        return Err(OpenError::Unusable(format!(
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
                return Err(OpenError::Unusable(format!(
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
                    return Err(OpenError::Unusable(format!(
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
                return Err(OpenError::Unusable(format!(
                    "the workbook unpacks to more than the {} allowed (`ingest.max_unpacked_mib`; the part {} passed it); {}",
                    mib(total_limit),
                    escape(&name),
                    raise("max_unpacked_mib")
                )));
            }
            if in_memory > memory_limit {
                return Err(OpenError::Unusable(format!(
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
                    return Err(OpenError::Unusable(format!(
                        "the workbook part {} holds a single cell or tag longer than {} (`ingest.max_record_bytes`): this is no export of rows; export it again as CSV",
                        escape(&name),
                        mib(limits.max_record_bytes)
                    )));
                }
            }
        }
    }
    Ok(kind)
}
