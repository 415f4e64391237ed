//! Status: a read-only summary of the store for `kamwatch status` and the
//! daemon's STATUS line — last ingest per dataset, last evaluation, alerts
//! firing by severity, the outbox and the recipients it refused. Reads the
//! store; writes nothing.

use anyhow::Result;
use rusqlite::Connection;
use serde::Serialize;

use crate::rules::Severity;

#[derive(Debug, Serialize)]
pub struct Status {
    pub last_ingest: Vec<LastIngest>,
    pub last_evaluation: Option<LastEvaluation>,
    pub firing: Firing,
    pub outbox: Outbox,
    pub rejected_files: u64,
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

#[derive(Debug, Serialize)]
pub struct Refused {
    pub email: String,
    pub reply: String,
    /// Messages it was refused in.
    pub messages: u64,
    /// When the last of them was queued.
    pub at: String,
}

/// Recipients parked as refused or invalid in the outbox, at most 20,
/// the latest first.
fn refused(conn: &Connection) -> Result<Vec<Refused>> {
    let mut st = conn.prepare(
        "SELECT json_extract(r.value, '$.email') AS email,
                MAX(json_extract(r.value, '$.reply')), COUNT(*), MAX(o.created_at) AS at
         FROM outbox o, json_each(o.recipients) r
         WHERE json_extract(r.value, '$.state') IN ('refused', 'invalid')
         GROUP BY email ORDER BY at DESC LIMIT 20",
    )?;
    let rows = st.query_map([], |r| {
        Ok(Refused {
            email: r.get(0)?,
            reply: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            messages: r.get::<_, i64>(2)? as u64,
            at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
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
    Ok(Status {
        last_ingest,
        last_evaluation,
        firing,
        outbox: Outbox {
            pending,
            sent,
            dead,
            refused: refused(conn)?,
        },
        rejected_files,
    })
}
