//! Workbooks: the rows of one sheet of an XLSX (streamed cell by cell,
//! after its zip was checked by `zip_check`), XLS, ODS or XLSB (read whole,
//! after a size check), from a reader thread through a bounded channel,
//! as text the way a CSV export of the sheet would write it. Reads the
//! file it is given.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use calamine::{Data, Reader as _};
use csv::StringRecord;

use super::error::{OpenError, ReadError, mib};
use super::zip_check::{ZipKind, check_zip};
use crate::config::{DatasetConfig, IngestConfig};
use crate::ingest::values::{bounded, excerpt as escape};

/// The columns a worksheet can have (XFD).
const MAX_SHEET_COLUMNS: u32 = 16_384;

/// Rows in flight from the workbook reader thread.
const SHEET_ROWS_IN_FLIGHT: usize = 256;

/// A worksheet's rows, from a reader thread (calamine's workbook types
/// borrow themselves while streaming), through a bounded channel.
pub struct SheetSource {
    rows: std::sync::mpsc::Receiver<SheetMsg>,
    worker: Option<std::thread::JoinHandle<()>>,
}

pub(super) fn open_sheet(
    path: &Path,
    ds: &DatasetConfig,
    limits: &IngestConfig,
) -> Result<(SheetSource, StringRecord), OpenError> {
    let is_zip = {
        let mut magic = [0u8; 4];
        let mut f =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let n = f.read(&mut magic)?;
        n == 4 && magic == *b"PK\x03\x04"
    };
    let kind = if is_zip {
        check_zip(path, limits)?
    } else {
        // XLS (an OLE compound file) is read whole.
        let size = std::fs::metadata(path)?.len();
        if size > limits.max_in_memory_mib << 20 {
            return Err(OpenError::Unusable(format!(
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
        Some(SheetMsg::Row(_, header)) => Ok((src, StringRecord::from(header))),
        Some(SheetMsg::Whole(reason)) => Err(OpenError::Unusable(reason)),
        Some(SheetMsg::Bad(e)) => Err(OpenError::Unusable(format!(
            "row {}: {}",
            e.line, e.message
        ))),
        None => Err(OpenError::Unusable(
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

    pub(super) fn read(
        &mut self,
        rec: &mut StringRecord,
    ) -> std::result::Result<Option<u64>, ReadError> {
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

    /// Reading stops at sheet row `line` for `message`; before the header
    /// the whole file cannot be read, for the reason `whole`.
    fn stop(&self, line: u64, message: String, whole: String) {
        if self.width.is_none() {
            self.whole(whole)
        } else {
            self.bad(line, message, true)
        }
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
fn pick_sheet(names: &[String], want: Option<&str>) -> std::result::Result<String, OpenError> {
    match want {
        Some(want) => names.iter().find(|n| *n == want).cloned().ok_or_else(|| {
            OpenError::Unusable(format!(
                "the workbook has no sheet named {}; its sheets are: {}. Fix `sheet` for this dataset in the config",
                escape(want),
                bounded(names.join(", "))
            ))
        }),
        None => names
            .first()
            .cloned()
            .ok_or_else(|| OpenError::Unusable("the workbook has no sheets".to_string())),
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
        Err(reason) => return out.whole(reason.to_string()),
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
                return out.stop(line, msg.clone(), msg);
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
                let line = u64::from(r) + 1;
                return out.stop(line, msg.clone(), format!("row {line}: {msg}"));
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
                return out.stop(line, msg.clone(), format!("row {line}: {msg}"));
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
        Err(reason) => return out.whole(reason.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_and_column_names() {
        assert_eq!(column_name(0), "A");
        assert_eq!(column_name(25), "Z");
        assert_eq!(column_name(26), "AA");
        assert_eq!(column_name(16383), "XFD");
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
