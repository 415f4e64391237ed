//! Status: a read-only summary of the store for `kamwatch status` and the
//! daemon's STATUS line — last ingest per dataset, last evaluation, alerts
//! firing by severity, the outbox and the recipients it refused (both
//! read by `mail`, which owns the outbox). Reads the store; writes nothing.

use anyhow::Result;
use rusqlite::Connection;
use serde::Serialize;

pub use crate::mail::Refused;
use crate::rules::Severity;

#[derive(Debug, Serialize)]
pub struct Status {
    pub last_ingest: Vec<LastIngest>,
    pub last_evaluation: Option<LastEvaluation>,
    pub firing: Firing,
    pub outbox: Outbox,
    pub rejected_files: u64,
}

#[derive(Debug, Serialize)]
pub struct LastIngest {
    pub dataset: String,
    pub file: String,
    pub rows: u64,
    pub at: String,
    /// Files of this dataset ingested in all.
    pub files: u64,
}

#[derive(Debug, Serialize)]
pub struct LastEvaluation {
    pub as_of: String,
    pub at: String,
    pub accounts: u64,
    pub raised: u64,
    pub started: u64,
    pub resolved: u64,
    pub errors: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Firing {
    pub critical: u64,
    pub warning: u64,
    pub info: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Outbox {
    pub pending: u64,
    pub sent: u64,
    pub dead: u64,
    /// Recipients the server refused for good (or that are no mail
    /// address), each with the server's reply; the message went to the
    /// others.
    pub refused: Vec<Refused>,
}

pub fn read(conn: &Connection) -> Result<Status> {
    let mut st = conn.prepare(
        "SELECT l.dataset, l.file_name, l.rows, l.at,
                (SELECT COUNT(*) FROM ledger c WHERE c.dataset = l.dataset AND c.outcome = 'ingested')
         FROM ledger l
         WHERE l.id IN (SELECT MAX(id) FROM ledger WHERE outcome = 'ingested' GROUP BY dataset)
         ORDER BY l.dataset",
    )?;
    let last_ingest = st
        .query_map([], |r| {
            Ok(LastIngest {
                dataset: r.get(0)?,
                file: r.get(1)?,
                rows: r.get::<_, i64>(2)? as u64,
                at: r.get(3)?,
                files: r.get::<_, i64>(4)? as u64,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let last_evaluation = conn
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
        .ok();
    let mut firing = Firing::default();
    for (sev, n) in crate::alerts::firing_counts(conn)? {
        match sev {
            Severity::Critical => firing.critical = n,
            Severity::Warning => firing.warning = n,
            Severity::Info => firing.info = n,
        }
    }
    let (pending, sent, dead) = crate::mail::outbox_counts(conn)?;
    let rejected_files: i64 = conn.query_row(
        "SELECT COUNT(*) FROM ledger WHERE outcome = 'rejected'",
        [],
        |r| r.get(0),
    )?;
    Ok(Status {
        last_ingest,
        last_evaluation,
        firing,
        outbox: Outbox {
            pending,
            sent,
            dead,
            refused: crate::mail::refused_recipients(conn)?,
        },
        rejected_files: rejected_files as u64,
    })
}
