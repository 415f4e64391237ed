//! History: what happened to alerts, for people and scripts — every state
//! change (`alert_history`) and every notice with the mail that carried it
//! (`notifications`, `notification_mail`, `outbox`), merged in date order;
//! and the retention that prunes them. Reads those tables with its own
//! queries (`alerts` and `mail` own them; a notice's recipients are read as
//! the JSON `mail` stores, taking only each address); deletes from them
//! only in [`prune`]. Imports nothing above the alerts stage.

use chrono::NaiveDate;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::error::Error;
use crate::model::dates::date_text;

/// A recipient as `mail` stores it in a notice: only the address is read
/// (serde skips the other fields).
#[derive(Deserialize)]
struct Addressee {
    email: String,
}

/// What `kamwatch history` asks for; `None` is no filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub account: Option<String>,
    pub rule: Option<String>,
    pub since: Option<NaiveDate>,
}

/// One line of history.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    pub as_of: String,
    /// "state" (a lifecycle change) or "notice" (what people were told).
    pub event: &'static str,
    pub rule: String,
    pub account_id: String,
    pub key: String,
    pub severity: String,
    pub title: String,
    /// For a state change: the state before; for a notice: its kind.
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub notice: Option<String>,
    /// For a notice: held, mailed, silenced or unroutable.
    pub mail: Option<String>,
    /// For a notice: who it was addressed to.
    pub recipients: Vec<String>,
    /// For a mailed notice: the outbox states of its messages (pending, sent, dead).
    pub delivery: Vec<String>,
    #[serde(skip)]
    order: (u8, i64),
}

/// History entries matching `f`, oldest first.
pub fn query(conn: &Connection, f: &Filter) -> Result<Vec<Entry>, Error> {
    let since = f.since.map(date_text);
    let mut out = Vec::new();
    {
        let mut st = conn.prepare(
            "SELECT id, as_of, rule, account_id, key, from_state, to_state, severity, title
             FROM alert_history
             WHERE (?1 IS NULL OR account_id = ?1) AND (?2 IS NULL OR rule = ?2) AND (?3 IS NULL OR as_of >= ?3)
             ORDER BY as_of, id",
        )?;
        let rows = st.query_map(params![f.account, f.rule, since], |r| {
            Ok(Entry {
                order: (0, r.get(0)?),
                as_of: r.get(1)?,
                event: "state",
                rule: r.get(2)?,
                account_id: r.get(3)?,
                key: r.get(4)?,
                from_state: r.get(5)?,
                to_state: r.get(6)?,
                severity: r.get(7)?,
                title: r.get(8)?,
                notice: None,
                mail: None,
                recipients: Vec::new(),
                delivery: Vec::new(),
            })
        })?;
        for r in rows {
            out.push(r?);
        }
    }
    {
        let mut st = conn.prepare(
            "SELECT n.id, n.as_of, n.rule, n.account_id, n.key, n.kind, n.severity,
                    COALESCE(json_extract(n.item, '$.title'), ''), n.state, n.recipients,
                    (SELECT group_concat(o.state, ',') FROM notification_mail m
                       JOIN outbox o ON o.id = m.outbox_id WHERE m.notification_id = n.id)
             FROM notifications n
             WHERE (?1 IS NULL OR n.account_id = ?1) AND (?2 IS NULL OR n.rule = ?2) AND (?3 IS NULL OR n.as_of >= ?3)
             ORDER BY n.as_of, n.id",
        )?;
        let rows = st.query_map(params![f.account, f.rule, since], |r| {
            let to: String = r.get(9)?;
            let delivery: Option<String> = r.get(10)?;
            Ok(Entry {
                order: (1, r.get(0)?),
                as_of: r.get(1)?,
                event: "notice",
                rule: r.get(2)?,
                account_id: r.get(3)?,
                key: r.get(4)?,
                notice: Some(r.get(5)?),
                severity: r.get(6)?,
                title: r.get(7)?,
                mail: Some(r.get(8)?),
                recipients: serde_json::from_str::<Vec<Addressee>>(&to)
                    .map(|v| v.into_iter().map(|x| x.email).collect())
                    .unwrap_or_default(),
                delivery: delivery
                    .map(|d| d.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
                from_state: None,
                to_state: None,
            })
        })?;
        for r in rows {
            out.push(r?);
        }
    }
    out.sort_by(|a, b| a.as_of.cmp(&b.as_of).then(a.order.cmp(&b.order)));
    Ok(out)
}

/// Deletes history and notices older than `retention_days` before `as_of`
/// (never a notice still held for mail). Returns the rows deleted.
pub fn prune(conn: &Connection, as_of: NaiveDate, retention_days: u32) -> Result<usize, Error> {
    let cutoff = date_text(as_of - chrono::Days::new(u64::from(retention_days)));
    let mut n = conn.execute("DELETE FROM alert_history WHERE as_of < ?1", [&cutoff])?;
    n += conn.execute(
        "DELETE FROM notification_mail WHERE notification_id IN
           (SELECT id FROM notifications WHERE as_of < ?1 AND state <> 'held')",
        [&cutoff],
    )?;
    n += conn.execute(
        "DELETE FROM notifications WHERE as_of < ?1 AND state <> 'held'",
        [&cutoff],
    )?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_window_and_held_notices() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("k.db")).unwrap();
        for (as_of, state) in [
            ("2026-01-01", "mailed"),
            ("2026-01-02", "held"),
            ("2026-03-01", "mailed"),
        ] {
            conn.execute(
                "INSERT INTO alert_history (rule, account_id, key, to_state, severity, title, figures, as_of, recorded_at)
                 VALUES ('r', 'A', '', 'firing', 'warning', 't', '{}', ?1, 'x')",
                [as_of],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO notifications (rule, account_id, key, kind, severity, as_of, item, recipients, state)
                 VALUES ('r', 'A', '', 'started', 'warning', ?1, '{}', '[]', ?2)",
                [as_of, state],
            )
            .unwrap();
        }
        let as_of = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        // 30 days back from 2026-03-01 is 2026-01-30: the January rows go,
        // except the notice still held for mail.
        assert_eq!(prune(&conn, as_of, 30).unwrap(), 3);
        let left = query(&conn, &Filter::default()).unwrap();
        let dates: Vec<(&str, &str)> = left.iter().map(|e| (e.as_of.as_str(), e.event)).collect();
        assert_eq!(
            dates,
            [
                ("2026-01-02", "notice"),
                ("2026-03-01", "state"),
                ("2026-03-01", "notice")
            ]
        );
        let filtered = query(
            &conn,
            &Filter {
                since: Some(as_of),
                rule: Some("r".into()),
                account: Some("B".into()),
            },
        )
        .unwrap();
        assert!(filtered.is_empty());
    }
}
