//! Alerts: the lifecycle of each (rule, account, key) and its history.
//!
//! Given the findings of one evaluation, moves alerts from nothing or
//! resolved to firing (a *start*, which is what gets mailed), keeps firing
//! ones firing without mailing again, and resolves those no longer raised.
//! Every transition is appended to `alert_history`. Owns the `alerts` and
//! `alert_history` tables and writes them only inside the caller's
//! transaction, so the state change and the mail it causes commit together.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use rusqlite::{Connection, params};

use crate::rules::{Finding, RunError, Severity};
use crate::store::{date_text, now_text};
use chrono::NaiveDate;

/// An alert that started firing in this evaluation.
#[derive(Debug, Clone)]
pub struct Started<'a> {
    /// Index of the finding in the slice given to [`apply`].
    pub index: usize,
    pub finding: &'a Finding,
}

/// What one evaluation changed.
#[derive(Debug, Default)]
pub struct Changes<'a> {
    pub started: Vec<Started<'a>>,
    /// (rule, account_id, key) of alerts that stopped firing.
    pub resolved: Vec<(String, String, String)>,
    /// Alerts that were firing and still are.
    pub still_firing: usize,
}

type Key = (String, String, String);

/// Applies one evaluation's findings. Alerts of a (rule, account) whose run
/// failed are left as they are: an error is not evidence that all is well.
/// Alerts of rules not in `rules` (deleted or renamed) are resolved.
pub fn apply<'a>(
    conn: &Connection,
    as_of: NaiveDate,
    findings: &'a [Finding],
    errors: &[RunError],
) -> Result<Changes<'a>> {
    let as_of_text = date_text(as_of);
    let now = now_text();
    let mut firing: HashMap<Key, ()> = HashMap::new();
    {
        let mut st =
            conn.prepare("SELECT rule, account_id, key FROM alerts WHERE state = 'firing'")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        for k in rows {
            firing.insert(k?, ());
        }
    }
    let failed: HashSet<(&str, &str)> = errors
        .iter()
        .map(|e| (&*e.rule, e.account_id.as_str()))
        .collect();

    let mut changes = Changes::default();
    let mut raised: HashSet<Key> = HashSet::new();
    let mut upsert = conn.prepare(
        "INSERT INTO alerts (rule, account_id, key, state, severity, title, figures, action, started_at, last_seen_at)
         VALUES (?1, ?2, ?3, 'firing', ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT (rule, account_id, key) DO UPDATE SET
           state = 'firing', severity = excluded.severity, title = excluded.title,
           figures = excluded.figures, action = excluded.action,
           started_at = CASE WHEN alerts.state = 'firing' THEN alerts.started_at ELSE excluded.started_at END,
           last_seen_at = excluded.last_seen_at, resolved_at = NULL",
    )?;
    let mut history = conn.prepare(
        "INSERT INTO alert_history (rule, account_id, key, from_state, to_state, severity, title, figures, as_of, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut prior_state =
        conn.prepare("SELECT state FROM alerts WHERE rule = ?1 AND account_id = ?2 AND key = ?3")?;

    for (index, f) in findings.iter().enumerate() {
        let key: Key = (f.rule.to_string(), f.account.id.clone(), f.key.clone());
        if !raised.insert(key.clone()) {
            continue; // the same alert raised twice in one run counts once
        }
        let figures = figures_json(f);
        let was_firing = firing.contains_key(&key);
        if !was_firing {
            let prior: Option<String> = prior_state
                .query_row(params![key.0, key.1, key.2], |r| r.get(0))
                .ok();
            history.execute(params![
                key.0,
                key.1,
                key.2,
                prior,
                "firing",
                f.severity.as_str(),
                f.title,
                figures,
                as_of_text,
                now
            ])?;
            changes.started.push(Started { index, finding: f });
        } else {
            changes.still_firing += 1;
        }
        upsert.execute(params![
            key.0,
            key.1,
            key.2,
            f.severity.as_str(),
            f.title,
            figures,
            f.action,
            as_of_text
        ])?;
    }

    let mut resolve = conn.prepare(
        "UPDATE alerts SET state = 'resolved', resolved_at = ?4
         WHERE rule = ?1 AND account_id = ?2 AND key = ?3
         RETURNING severity, title, figures",
    )?;
    for key in firing.into_keys() {
        if raised.contains(&key) || failed.contains(&(key.0.as_str(), key.1.as_str())) {
            continue;
        }
        let (severity, title, figures): (String, String, String) = resolve
            .query_row(params![key.0, key.1, key.2, as_of_text], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        history.execute(params![
            key.0, key.1, key.2, "firing", "resolved", severity, title, figures, as_of_text, now
        ])?;
        changes.resolved.push(key);
    }
    Ok(changes)
}

/// Indexes of the findings that would start an alert now (that are not
/// already firing): what `apply` would report, without writing anything.
pub fn would_start(conn: &Connection, findings: &[Finding]) -> Result<Vec<usize>> {
    let mut st = conn.prepare(
        "SELECT 1 FROM alerts WHERE rule = ?1 AND account_id = ?2 AND key = ?3 AND state = 'firing'",
    )?;
    let mut seen: HashSet<Key> = HashSet::new();
    let mut out = Vec::new();
    for (i, f) in findings.iter().enumerate() {
        let key: Key = (f.rule.to_string(), f.account.id.clone(), f.key.clone());
        if seen.insert(key.clone()) && !st.exists(params![key.0, key.1, key.2])? {
            out.push(i);
        }
    }
    Ok(out)
}

/// The figures of a finding as a JSON object, in the rule's order.
pub fn figures_json(f: &Finding) -> String {
    let map: serde_json::Map<String, serde_json::Value> = f.figures.iter().cloned().collect();
    serde_json::Value::Object(map).to_string()
}

/// Alerts currently firing, by severity, for status lines.
pub fn firing_counts(conn: &Connection) -> Result<Vec<(Severity, u64)>> {
    let mut st = conn.prepare(
        "SELECT severity, COUNT(*) FROM alerts WHERE state = 'firing' GROUP BY severity",
    )?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = Vec::new();
    for r in rows {
        let (s, n) = r?;
        if let Some(s) = Severity::parse(&s) {
            out.push((s, n as u64));
        }
    }
    Ok(out)
}
