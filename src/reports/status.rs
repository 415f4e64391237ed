//! Status: a read-only summary of the store for `kamwatch status` and the
//! daemon's STATUS line — last ingest per dataset, last evaluation, alerts
//! firing by severity, the outbox and the recipients it refused (both
//! read by `mail`, which owns the outbox), the accounts with orders that
//! the master does not list. Reads the store; writes nothing.

use anyhow::Result;
use rusqlite::Connection;
use serde::Serialize;

pub use crate::mail::Refused;
use crate::model::Severity;

#[derive(Debug, Serialize)]
pub struct Status {
    pub last_ingest: Vec<LastIngest>,
    pub last_evaluation: Option<LastEvaluation>,
    pub firing: Firing,
    pub outbox: Outbox,
    pub rejected_files: u64,
    /// Accounts with order lines that the customer master does not list
    /// (kept, but not ranked and never warned about), and a few ids.
    pub unlisted_accounts: u64,
    pub unlisted_examples: Vec<String>,
}

/// The last file of each dataset and the last evaluation, as the store
/// records them.
pub use crate::store::{LastEvaluation, LastIngest};

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
    let last_ingest = crate::store::last_ingests(conn)?;
    let last_evaluation = crate::store::last_evaluation(conn).ok().flatten();
    let mut firing = Firing::default();
    for (sev, n) in crate::alerts::firing_counts(conn)? {
        match sev {
            Severity::Critical => firing.critical = n,
            Severity::Warning => firing.warning = n,
            Severity::Info => firing.info = n,
        }
    }
    let (pending, sent, dead) = crate::mail::outbox_counts(conn)?;
    let rejected_files = crate::store::rejected_files(conn)?;
    let (unlisted_accounts, unlisted_examples) = crate::store::unlisted_accounts(conn, 3)?;
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
        rejected_files,
        unlisted_accounts,
        unlisted_examples,
    })
}
