//! Rejecting: a file refused whole goes to the rejected folder beside
//! `<name>.errors.txt`, which says why in words a person can act on and
//! lists the rows at fault by line (or sheet row) and column; the ledger
//! records it. `Problems` gathers a file's row errors (the first
//! `MAX_LISTED_ERRORS` listed, the rest counted); `Rejection` is why a
//! file was refused. Touches the rejected folder (through `filing` and
//! `file`) and the ledger (through `store`).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::Connection;

use super::filing::{Intake, Keep, file_entry_into, file_with_reason, sidecar, write_new};
use super::report::FileReport;
use crate::config::{Dataset, Loaded};
use crate::store::{self, LedgerEntry, Outcome};

/// How many row errors an errors file lists before it only counts them.
pub(super) const MAX_LISTED_ERRORS: usize = 200;

/// One problem in a file, located as precisely as we can.
#[derive(Debug, Clone)]
pub(super) struct RowError {
    pub(super) line: u64,
    pub(super) column: Option<String>,
    pub(super) message: String,
}

/// Problems found in a file's rows.
#[derive(Default)]
pub(super) struct Problems {
    pub(super) listed: Vec<RowError>,
    pub(super) total: usize,
    pub(super) bad_rows: u64,
}

impl Problems {
    pub(super) fn push(&mut self, e: RowError) {
        self.total += 1;
        if self.listed.len() < MAX_LISTED_ERRORS {
            self.listed.push(e);
        }
    }
}

/// Why a whole file was refused, and what its reason file says it is.
pub(super) struct Rejection {
    pub(super) summary: String,
    pub(super) problems: Problems,
    /// The dataset the file was routed to, if it was.
    pub(super) dataset: Option<Dataset>,
    /// What a location in the file is called: "line" or (in a sheet) "row".
    pub(super) unit: &'static str,
}

impl Rejection {
    /// A file refused for `summary`, with no row listed.
    pub(super) fn whole(summary: impl Into<String>) -> Rejection {
        Rejection::listing(summary, Problems::default())
    }

    /// A file refused for `summary`, listing `problems`.
    pub(super) fn listing(summary: impl Into<String>, problems: Problems) -> Rejection {
        Rejection {
            summary: summary.into(),
            problems,
            dataset: None,
            unit: "line",
        }
    }

    /// The same, for a file of `dataset` whose locations are `unit`s.
    pub(super) fn of(self, dataset: Dataset, unit: &'static str) -> Rejection {
        Rejection {
            dataset: Some(dataset),
            unit,
            ..self
        }
    }
}

/// The text of an errors file: `first` line, then the listed problems.
pub(super) fn errors_text(first: &str, problems: &Problems, unit: &str) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "{first}");
    if !problems.listed.is_empty() {
        let _ = writeln!(text);
        for e in &problems.listed {
            let col = e
                .column
                .as_ref()
                .map(|c| format!(", column {c}"))
                .unwrap_or_default();
            let _ = writeln!(text, "{unit} {}{col}: {}", e.line, e.message);
        }
        if problems.total > problems.listed.len() {
            let _ = writeln!(
                text,
                "... and {} more error(s) not listed",
                problems.total - problems.listed.len()
            );
        }
    }
    text
}

/// The first line of a reason file.
fn reason_head(file_name: &str, rej: &Rejection) -> String {
    // A name with a line break would split the reason's first line.
    let file_name = if file_name.chars().any(char::is_control) {
        format!("{file_name:?}")
    } else {
        file_name.to_string()
    };
    let mut first = format!(
        "kamwatch rejected {file_name}{}: {}.",
        rej.dataset
            .map(|d| format!(" (dataset {d})"))
            .unwrap_or_default(),
        rej.summary
    );
    if !rej.problems.listed.is_empty() {
        first.push_str(
            "\nFix the rows below in the export, then drop the whole file into the inbox again.",
        );
    }
    first
}

/// Rejects the file taken in `intake` for `rej`: files it into the
/// rejected folder with its reason file, and records it in the ledger.
pub(super) fn reject(
    conn: &Connection,
    intake: &mut Intake<'_>,
    rej: Rejection,
) -> Result<FileReport> {
    let (hash, size) = (intake.copy.hash.clone(), intake.copy.size);
    let file_name = intake.file_name;
    let text = errors_text(&reason_head(file_name, &rej), &rej.problems, rej.unit);
    let dir = intake.cfg.rejected();
    let moved_to = if intake.keep == Keep::InPlace {
        intake.file_into(&dir)?
    } else {
        file_with_reason(&dir, file_name, &text, || intake.file_into(&dir))?
    };
    let reason_path = sidecar(&moved_to);
    store::record_file(
        conn,
        &LedgerEntry {
            file_name,
            size,
            hash: &hash,
            dataset: rej.dataset.map(|d| d.name()),
            rows: 0,
            outcome: Outcome::Rejected,
            reason: Some(&text),
            file_date: None,
        },
    )?;
    tracing::warn!(file = ?file_name, reason = ?rej.summary, reasons = ?reason_path, "rejected");
    Ok(FileReport {
        file_name: file_name.to_string(),
        dataset: rej.dataset,
        outcome: Outcome::Rejected,
        rows: 0,
        moved_to,
        reason: Some(rej.summary),
        skipped: 0,
        errors_file: Some(reason_path),
        read: 0,
        replaced: 0,
    })
}

/// Rejects an inbox entry that is no regular file (a symlink, a FIFO ...)
/// without opening it: its target or content is never read. An inbox
/// entry is moved to rejected/; one named on the command line stays.
pub(super) fn reject_entry(
    cfg: &Loaded,
    conn: &Connection,
    path: &Path,
    keep: Keep,
    file_name: &str,
    kind: &str,
) -> Result<FileReport> {
    let rej = Rejection::whole(format!(
        "it is {kind}, not a regular file; kamwatch reads only regular files and never follows links, so nothing of it was read. Put the export itself into the inbox (write it elsewhere, then move it in)"
    ));
    let dir = cfg.rejected();
    let moved_to = if keep == Keep::Move {
        file_entry_into(path, &dir, file_name)?
    } else if keep == Keep::InPlace {
        path.to_path_buf()
    } else {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut p = dir.join(file_name);
        let mut i = 0;
        while std::fs::symlink_metadata(sidecar(&p)).is_ok() {
            i += 1;
            p = dir.join(format!("{file_name}.{i}"));
        }
        p
    };
    let text = errors_text(&reason_head(file_name, &rej), &rej.problems, rej.unit);
    let reason_path = sidecar(&moved_to);
    if keep != Keep::InPlace {
        write_new(&reason_path, &text)?;
    }
    store::record_file(
        conn,
        &LedgerEntry {
            file_name,
            size: 0,
            hash: "",
            dataset: None,
            rows: 0,
            outcome: Outcome::Rejected,
            reason: Some(&text),
            file_date: None,
        },
    )?;
    tracing::warn!(file = ?file_name, reason = ?rej.summary, reasons = ?reason_path, "rejected");
    Ok(FileReport {
        file_name: file_name.to_string(),
        dataset: None,
        outcome: Outcome::Rejected,
        rows: 0,
        moved_to,
        reason: Some(rej.summary),
        skipped: 0,
        errors_file: Some(reason_path),
        read: 0,
        replaced: 0,
    })
}
