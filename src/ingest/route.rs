//! Routing: which dataset a file is (by its name, against each dataset's
//! `files` patterns), whether its content was ingested before (a
//! duplicate, archived and counted nowhere), and for a snapshot (master,
//! receivables, stock) its day, from a date in its name or its mtime, and
//! whether it is older than the newest one ingested. Reads the ledger
//! (through `store`) and the staged copy's mtime; writes nothing.

use std::path::Path;

use anyhow::Result;
use rusqlite::Connection;

use super::reject::Rejection;
use crate::config::{Dataset, Loaded};
use crate::model::dates::date_text;
use crate::store;

/// The dataset `file_name` belongs to, or why it belongs to none.
pub(super) fn dataset(cfg: &Loaded, file_name: &str) -> Result<Dataset, Rejection> {
    cfg.cfg.datasets.route(file_name).ok_or_else(|| {
        let patterns: Vec<String> = Dataset::ALL
            .iter()
            .filter(|d| !cfg.cfg.datasets.get(**d).files.is_empty())
            .map(|d| format!("{d}: {}", cfg.cfg.datasets.get(*d).files.join(" ")))
            .collect();
        Rejection::whole(format!(
            "the file name matches no dataset pattern. Rename the file to match one of ({}) or add a pattern under `datasets.<name>.files` in {}",
            patterns.join("; "),
            cfg.file.display()
        ))
    })
}

/// The name of the file ingested before with the same content, if any: for
/// a snapshot only the newest one counts (an older content again is a new
/// snapshot).
pub(super) fn same_content(
    conn: &Connection,
    dataset: Dataset,
    hash: &str,
) -> Result<Option<String>> {
    if dataset.is_snapshot() {
        store::same_as_newest_snapshot(conn, dataset.name(), hash)
    } else {
        store::ingested_before(conn, hash)
    }
}

/// How a snapshot file relates to the newest one ingested before.
pub(super) enum Freshness {
    /// Not a snapshot, or not older: applied in full.
    Current,
    /// Older than `newest` (file name, day): must not undo it.
    Older { newest: String, day: String },
}

/// A snapshot's day (YYYY-MM-DD; see [`file_day`]) and how it relates to
/// the newest one of its dataset ingested before; no day and `Current`
/// for the other datasets.
pub(super) fn freshness(
    cfg: &Loaded,
    conn: &Connection,
    dataset: Dataset,
    copy: &Path,
    file_name: &str,
) -> Result<(Option<String>, Freshness)> {
    let file_date = dataset
        .is_snapshot()
        .then(|| file_day(cfg, copy, file_name))
        .flatten();
    let freshness = match (&file_date, dataset.is_snapshot()) {
        (Some(day), true) => match store::newest_snapshot(conn, dataset.name())? {
            Some(n) if n.day.as_str() > day.as_str() => Freshness::Older {
                newest: format!("{} of {}", n.file_name, n.day),
                day: day.clone(),
            },
            _ => Freshness::Current,
        },
        _ => Freshness::Current,
    };
    Ok((file_date, freshness))
}

/// Why a snapshot dated (by its name) after tomorrow is refused, if it is:
/// it would stay the newest for good, and every real one after it would be
/// "older", not applied.
pub(super) fn future_snapshot(cfg: &Loaded, dataset: Dataset, file_name: &str) -> Option<String> {
    let today = cfg.today();
    let day = date_in_name(file_name).filter(|_| dataset.is_snapshot())?;
    today.succ_opt().is_some_and(|tomorrow| day > tomorrow).then(|| format!(
        "the date in its name, {day}, is after today ({today} in schedule.timezone): as the newest {dataset} snapshot it could never be replaced by the real ones. Fix the date in the name, or leave the date out (the file's modification time then dates it)"
    ))
}

/// The day a snapshot was written: a date in its name (`..._20261128.csv`,
/// `..._2026-11-28.xlsx`), else the day of its mtime in
/// `schedule.timezone`. YYYY-MM-DD.
fn file_day(cfg: &Loaded, path: &Path, file_name: &str) -> Option<String> {
    if let Some(d) = date_in_name(file_name) {
        return Some(date_text(d));
    }
    let mtime = std::fs::metadata(path).ok()?.modified().ok()?;
    let t: chrono::DateTime<chrono::Utc> = mtime.into();
    Some(date_text(cfg.cfg.schedule.zone().naive_at(t).date()))
}

/// The last full date in a file name: 20261128, 2026-11-28, 2026_11_28 or
/// 2026.11.28, not part of a longer run of digits.
pub fn date_in_name(name: &str) -> Option<chrono::NaiveDate> {
    let b = name.as_bytes();
    let mut found = None;
    for i in 0..b.len() {
        if i > 0 && b[i - 1].is_ascii_digit() {
            continue;
        }
        let digits = |from: usize, n: usize| -> Option<u32> {
            let s = b.get(from..from + n)?;
            if !s.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(s).ok()?.parse().ok()
        };
        let end_ok = |at: usize| !b.get(at).is_some_and(u8::is_ascii_digit);
        let Some(y) = digits(i, 4) else { continue };
        let ymd = if let (Some(m), Some(d)) = (digits(i + 4, 2), digits(i + 6, 2)) {
            end_ok(i + 8).then_some((y, m, d))
        } else if matches!(b.get(i + 4), Some(b'-' | b'_' | b'.')) && b.get(i + 7) == b.get(i + 4) {
            match (digits(i + 5, 2), digits(i + 8, 2)) {
                (Some(m), Some(d)) if end_ok(i + 10) => Some((y, m, d)),
                _ => None,
            }
        } else {
            None
        };
        if let Some((y, m, d)) = ymd
            && (1900..=2200).contains(&y)
            && let Some(date) = chrono::NaiveDate::from_ymd_opt(y as i32, m, d)
        {
            found = Some(date);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_file_names() {
        let d = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d);
        assert_eq!(date_in_name("客户主数据_20261128.csv"), d(2026, 11, 28));
        assert_eq!(date_in_name("accounts-2026-11-28.xlsx"), d(2026, 11, 28));
        assert_eq!(date_in_name("a_2026_01_02_b_2026.03.04.csv"), d(2026, 3, 4));
        assert_eq!(date_in_name("销售明细_202609-10.csv"), None);
        assert_eq!(date_in_name("export_120261128.csv"), None);
        assert_eq!(date_in_name("x_20261332.csv"), None);
    }
}
