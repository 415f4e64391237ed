//! The record of evaluations: one row per evaluation that was recorded
//! (a dry run records none), written in the evaluation's transaction, and
//! what the daemon, `status` and `eval` read back. Owns the `evaluations`
//! table.

use anyhow::Result;
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::open::now_text;
use crate::model::dates::{date_text, parse_ymd};

/// What one evaluation did, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvaluationRecord {
    pub as_of: NaiveDate,
    pub accounts: u64,
    pub rules: u64,
    /// Alerts the rules raised.
    pub raised: u64,
    /// Alerts that started firing and that resolved.
    pub started: u64,
    pub resolved: u64,
    /// Rule runs that failed.
    pub errors: u64,
    /// Whether the rules ran only for the pairs whose inputs changed since
    /// the last evaluation of the same day (`pipeline::evaluate_changed`).
    pub partial: bool,
    /// Accounts for which at least one rule ran (all of them in a full run).
    pub accounts_run: u64,
}

/// Records an evaluation, stamped now.
pub fn record_evaluation(conn: &Connection, e: &EvaluationRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO evaluations (as_of, accounts, rules, raised, started, resolved, errors, at,
                                  partial, accounts_run)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            date_text(e.as_of),
            e.accounts as i64,
            e.rules as i64,
            e.raised as i64,
            e.started as i64,
            e.resolved as i64,
            e.errors as i64,
            now_text(),
            e.partial,
            e.accounts_run as i64
        ],
    )?;
    Ok(())
}

/// The last evaluation recorded, as `status` shows it.
#[derive(Debug, Serialize)]
pub struct LastEvaluation {
    pub as_of: String,
    /// When it was recorded (`now_text`).
    pub at: String,
    pub accounts: u64,
    pub raised: u64,
    pub started: u64,
    pub resolved: u64,
    pub errors: u64,
}

/// The last evaluation recorded, if any.
pub fn last_evaluation(conn: &Connection) -> Result<Option<LastEvaluation>> {
    Ok(conn
        .query_row(
            "SELECT as_of, at, accounts, raised, started, resolved, errors
             FROM evaluations ORDER BY id DESC LIMIT 1",
            [],
            |r| {
                Ok(LastEvaluation {
                    as_of: r.get(0)?,
                    at: r.get(1)?,
                    accounts: r.get::<_, i64>(2)? as u64,
                    raised: r.get::<_, i64>(3)? as u64,
                    started: r.get::<_, i64>(4)? as u64,
                    resolved: r.get::<_, i64>(5)? as u64,
                    errors: r.get::<_, i64>(6)? as u64,
                })
            },
        )
        .optional()?)
}

/// The id of the newest evaluation on record (0: none). The daemon notes
/// the one it wrote: another means someone else evaluated in between.
pub fn newest_evaluation_id(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT IFNULL(MAX(id), 0) FROM evaluations", [], |r| {
            r.get(0)
        })?,
    )
}

/// The as-of date of the newest evaluation on record, if any (`None` too
/// when it is not a date).
pub fn newest_evaluation(conn: &Connection) -> Result<Option<NaiveDate>> {
    let newest: Option<String> =
        conn.query_row("SELECT MAX(as_of) FROM evaluations", [], |r| r.get(0))?;
    Ok(newest.as_deref().and_then(parse_ymd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::open::open;

    #[test]
    fn evaluations_read_back_as_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("k.db")).unwrap();
        assert!(last_evaluation(&conn).unwrap().is_none());
        assert_eq!(newest_evaluation(&conn).unwrap(), None);
        let day = |d| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
        for (as_of, raised) in [(day(9), 4), (day(2), 7)] {
            let e = EvaluationRecord {
                as_of,
                accounts: 300,
                rules: 9,
                raised,
                started: 2,
                resolved: 1,
                errors: 0,
                partial: raised == 7,
                accounts_run: 300 - raised,
            };
            record_evaluation(&conn, &e).unwrap();
        }
        let last = last_evaluation(&conn).unwrap().unwrap();
        assert_eq!(
            (
                last.as_of.as_str(),
                last.accounts,
                last.raised,
                last.started
            ),
            ("2026-03-02", 300, 7, 2)
        );
        assert_eq!(newest_evaluation(&conn).unwrap(), Some(day(9)));
        assert_eq!(newest_evaluation_id(&conn).unwrap(), 2);
        let (partial, run): (bool, i64) = conn
            .query_row(
                "SELECT partial, accounts_run FROM evaluations WHERE id = 2",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((partial, run), (true, 293));
    }
}
