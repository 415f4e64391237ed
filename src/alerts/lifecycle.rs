//! The lifecycle of every alert against the `alerts` table, one evaluation
//! at a time: [`apply`] runs the state machine (`machine::step`) for each
//! (rule, account, key) the evaluation raised or could have cleared (of
//! the pairs it observed, when it says which: [`Only`], `stored`),
//! writes the changes to `alerts`, appends every state change to
//! `alert_history`, and returns the notices; silenced ones are recorded as
//! such and not returned for mail. It writes only inside the caller's
//! transaction, so the state change and the mail it causes commit together.
//! Owns `alerts` and the writing of `alert_history`; reads `silences`
//! through `silence`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, Statement, params};
use serde::{Deserialize, Serialize};

use super::error::Error;
use super::machine::{Lifecycle, Notice, Observation, State, kept_open, per_key, step};
use super::policy::Policies;
use super::silence::{self, Silence};
use crate::metrics::AccountMetrics;
use crate::model::Severity;
use crate::model::dates::date_text;
use crate::rules::{Finding, RunError};
use crate::store::now_text;

mod stored;
pub use stored::Only;
use stored::{Key, Row, load};

/// The alert a notice is about, with all it takes to route and render it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub rule: String,
    pub account_id: String,
    pub account_name: String,
    pub tier: String,
    pub share: f64,
    pub region: String,
    pub owner: String,
    pub owner_email: Option<String>,
    pub manager_email: Option<String>,
    /// The manager's name from the master (empty: not known).
    #[serde(default)]
    pub manager: String,
    pub key: String,
    #[serde(with = "super::machine::severity_text")]
    pub severity: Severity,
    pub title: String,
    /// The figures, in the rule's order.
    pub figures: Vec<(String, serde_json::Value)>,
    /// Their kinds, by label (none in messages queued before kinds were
    /// kept: those figures are written as plain numbers).
    #[serde(default)]
    pub units: crate::rules::Units,
    pub action: String,
    pub notice: Notice,
    pub started_at: Option<NaiveDate>,
    pub as_of: NaiveDate,
}

/// A notice for one alert, ready for routing.
#[derive(Debug, Clone)]
pub struct Notified {
    pub item: Item,
    /// Held back by a silence: record only.
    pub silenced: bool,
}

/// What one evaluation changed (its notices are handed over as they come:
/// see [`apply`]).
#[derive(Debug, Default)]
pub struct Changes {
    /// Indexes of the findings whose alert started firing now.
    pub started: Vec<usize>,
    /// Indexes of the held findings (`starts: false`) with no alert open:
    /// they kept nothing open and started nothing, so they are no warning.
    pub idle: Vec<usize>,
    pub resolved: usize,
    pub pending: usize,
    pub still_firing: usize,
}

/// How many notices [`apply`] gathers before it hands them over.
pub const NOTICE_BATCH: usize = 1024;

/// Applies one evaluation's findings. Alerts of a (rule, account) whose run
/// failed are left as they are: an error is not evidence that all is well.
/// So are the alerts of a rule that did not run at all (disabled, broken,
/// gone) and of an account not evaluated (the newest master no longer lists
/// it): absence is not evidence either, and a false "resolved" costs more
/// trust than a late one. An account's alerts clear only when a rule ran for
/// it and did not raise them.
/// `accounts` gives the tier and owner of alerts that were not raised now.
/// The notices go to `notify` in order, [`NOTICE_BATCH`] at a time (an
/// evaluation that starts an alert for every account of a big book would
/// otherwise hold them all), within the same transaction.
/// With `only`, the evaluation observed only those (rule, account) pairs:
/// `findings` are theirs, and only their stored alerts are read and
/// stepped; every other alert stays as it is.
#[allow(clippy::too_many_arguments)]
pub fn apply<E: From<Error>>(
    conn: &Connection,
    as_of: NaiveDate,
    findings: &[Finding],
    errors: &[RunError],
    only: Option<&Only>,
    accounts: &[Arc<AccountMetrics>],
    policies: &Policies,
    ran: &HashSet<&str>,
    notify: &mut dyn FnMut(&[Notified]) -> Result<(), E>,
) -> Result<Changes, E> {
    let seen = (findings, errors, accounts);
    apply_batched(conn, as_of, seen, only, policies, ran, NOTICE_BATCH, notify)
}

/// [`apply`], handing the notices over `batch` at a time.
#[allow(clippy::too_many_arguments)]
fn apply_batched<E: From<Error>>(
    conn: &Connection,
    as_of: NaiveDate,
    (findings, errors, accounts): (&[Finding], &[RunError], &[Arc<AccountMetrics>]),
    only: Option<&Only>,
    policies: &Policies,
    ran: &HashSet<&str>,
    batch_size: usize,
    notify: &mut dyn FnMut(&[Notified]) -> Result<(), E>,
) -> Result<Changes, E> {
    let stored = load(conn, only)?;
    let by_id: HashMap<&str, &Arc<AccountMetrics>> = accounts.iter().map(|a| (&*a.id, a)).collect();
    let silences = silence::active(conn, as_of)?;
    let mut table = Table::prepare(conn, as_of)?;
    let mut changes = Changes::default();
    let mut batch: Vec<Notified> = Vec::new();
    let kept = kept_open_groups(findings, &stored, policies, as_of);
    for (at, obs) in observations(findings, errors, &stored, &by_id, ran) {
        // A raised alert's key is made as it comes, not all at once.
        let (key, index) = match at {
            At::Finding(i) => {
                let f = &findings[i];
                let key: Key = (f.rule.to_string(), f.account.id.to_string(), f.key.clone());
                (std::borrow::Cow::Owned(key), Some(i))
            }
            At::Stored(k) => (std::borrow::Cow::Borrowed(k), None),
        };
        let key: &Key = &key;
        let obs = if obs == Observation::Clear && kept.contains(&(key.0.as_str(), key.1.as_str())) {
            Observation::Ended
        } else {
            obs
        };
        let row = stored.get(key);
        let prev = row.map(|r| r.life.clone()).unwrap_or_default();
        let finding = index.map(|i| &findings[i]);
        let account = finding
            .map(|f| &f.account)
            .or_else(|| by_id.get(key.1.as_str()).copied());
        let silenced = is_silenced(&silences, key, account);
        let st = step(&prev, obs, policies.get(&key.0), as_of, silenced);
        if st.next == prev {
            if let (Some(i), Observation::Held(_)) = (index, obs)
                && !matches!(prev.state, State::Pending | State::Firing | State::Closed)
            {
                changes.idle.push(i);
            }
            continue;
        }
        let Some(text) = Text::of(finding, row.is_some(), key, &mut table.text)? else {
            continue;
        };
        let n = &st.next;
        table.save(key, &prev, row.is_some(), n, &text)?;
        count(&mut changes, &prev, n, index);
        let notices = st
            .notices
            .iter()
            .map(|x| (*x, false))
            .chain(st.silenced.iter().map(|x| (*x, true)));
        for (notice, silenced) in notices {
            let started_at = n.started_at.or(prev.started_at);
            let item = notice_item(key, account, finding, &text, notice, started_at, as_of);
            batch.push(Notified { item, silenced });
        }
        if batch.len() >= batch_size {
            notify(&batch)?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        notify(&batch)?;
    }
    Ok(changes)
}

/// Where an observed alert's key is: the finding's (its index), or the
/// stored alert's.
enum At<'a> {
    Finding(usize),
    Stored(&'a Key),
}

/// What the evaluation observed, alert by alert: raised now (in finding
/// order, the first of duplicates counts), then every stored alert not
/// raised, sorted, as cleared or unknown. Keys are borrowed, not copied:
/// a big book has an alert or more per account.
fn observations<'a>(
    findings: &[Finding],
    errors: &[RunError],
    stored: &'a HashMap<Key, Row>,
    by_id: &HashMap<&str, &Arc<AccountMetrics>>,
    ran: &HashSet<&str>,
) -> Vec<(At<'a>, Observation)> {
    let failed: HashSet<(&str, &str)> = errors
        .iter()
        .map(|e| (&*e.rule, e.account_id.as_str()))
        .collect();
    let mut seen: HashSet<(&str, &str, &str)> = HashSet::new();
    let mut work: Vec<(At<'a>, Observation)> = Vec::new();
    // One finding per key, the first (`machine::per_key`, as the backtest
    // and the replays read them). A held finding (`starts: false`) keeps
    // an open alert open and starts none (`machine::step`).
    for (i, obs) in per_key(findings) {
        let f = &findings[i];
        seen.insert((&*f.rule, &*f.account.id, f.key.as_str()));
        work.push((At::Finding(i), obs));
    }
    let mut rest: Vec<&Key> = stored
        .keys()
        .filter(|k| !seen.contains(&(k.0.as_str(), k.1.as_str(), k.2.as_str())))
        .collect();
    rest.sort();
    drop(seen);
    for key in rest {
        // Only a rule that ran for the account and did not raise the alert
        // clears it: a failed run, a rule that is disabled, no longer
        // compiles or is gone, or an account the master switched off,
        // leaves its alerts as they were. An account that moved out of the
        // rule's tiers clears them: for a rule about a tier (thin_margin_a,
        // rising_accounts) leaving it is the condition clearing.
        let obs = if failed.contains(&(key.0.as_str(), key.1.as_str()))
            || !ran.contains(key.0.as_str())
            || !by_id.contains_key(key.1.as_str())
        {
            Observation::Unknown
        } else {
            Observation::Clear
        };
        work.push((At::Stored(key), obs));
    }
    work
}

/// The (rule, account) groups, of rules with `one_open_per_account`, where
/// an alert raised or held now is open after this evaluation: their other
/// stored alerts, not raised, end now (`machine::kept_open`).
fn kept_open_groups<'f>(
    findings: &'f [Finding],
    stored: &HashMap<Key, Row>,
    policies: &Policies,
    as_of: NaiveDate,
) -> HashSet<(&'f str, &'f str)> {
    let none = Lifecycle::default();
    let observed = per_key(findings).into_iter().filter_map(|(i, obs)| {
        let f = &findings[i];
        let policy = policies.get(&f.rule);
        if !policy.one_open_per_account {
            return None;
        }
        let key: Key = (f.rule.to_string(), f.account.id.to_string(), f.key.clone());
        let prev = stored.get(&key).map_or(&none, |r| &r.life);
        Some(((&*f.rule, &*f.account.id), prev, obs, policy))
    });
    kept_open(observed, as_of)
}

/// Whether a silence in force covers the alert `key` of `account`.
fn is_silenced(silences: &[Silence], key: &Key, account: Option<&Arc<AccountMetrics>>) -> bool {
    silences.iter().any(|s| {
        s.matches(
            &key.0,
            &key.2,
            &key.1,
            account.map_or("", |a| a.tier.as_str()),
            account.map_or("", |a| &*a.owner),
            account.and_then(|a| a.owner_email.as_deref()),
        )
    })
}

/// What an alert says, as stored: the finding's when raised now, else the
/// stored row's (None: neither, nothing to write).
struct Text {
    severity: String,
    title: String,
    figures: String,
    units: String,
    action: String,
}

impl Text {
    /// What a finding says, as stored.
    fn from(f: &Finding) -> Text {
        Text {
            severity: f.severity.as_str().to_string(),
            title: f.title.clone(),
            figures: figures_json(f),
            units: serde_json::to_string(&*f.units).unwrap_or_else(|_| "{}".into()),
            action: f.action.to_string(),
        }
    }

    /// The finding's text, else (`stored`: the alert was loaded) the one
    /// on record for `key`, read with `read`.
    fn of(
        finding: Option<&Finding>,
        stored: bool,
        key: &Key,
        read: &mut Statement<'_>,
    ) -> Result<Option<Text>, Error> {
        Ok(Some(match finding {
            Some(f) => Text::from(f),
            None if stored => {
                let found = read
                    .query_row(params![key.0, key.1, key.2], |r| {
                        Ok(Text {
                            severity: r.get(0)?,
                            title: r.get(1)?,
                            figures: r.get(2)?,
                            units: r.get(3)?,
                            action: r.get(4)?,
                        })
                    })
                    .optional()?;
                match found {
                    Some(t) => t,
                    None => return Ok(None),
                }
            }
            None => return Ok(None),
        }))
    }
}

/// The statements `apply` writes with, prepared once per evaluation.
struct Table<'c> {
    upsert: Statement<'c>,
    /// What a stored alert says (see [`Row`]).
    text: Statement<'c>,
    earlier: Statement<'c>,
    history: Statement<'c>,
    as_of: String,
    now: String,
}

impl<'c> Table<'c> {
    fn prepare(conn: &'c Connection, as_of: NaiveDate) -> Result<Table<'c>, Error> {
        Ok(Table {
            upsert: conn.prepare(
                "INSERT INTO alerts (rule, account_id, key, state, severity, title, figures, action,
            pending_count, pending_since, started_at, last_seen_at, cleared_since, resolved_at,
            notified, notified_severity, last_notified_at, aged_notified, units)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
         ON CONFLICT (rule, account_id, key) DO UPDATE SET
           state = excluded.state, severity = excluded.severity, title = excluded.title,
           figures = excluded.figures, units = excluded.units, action = excluded.action,
           pending_count = excluded.pending_count, pending_since = excluded.pending_since,
           started_at = excluded.started_at, last_seen_at = excluded.last_seen_at,
           cleared_since = excluded.cleared_since, resolved_at = excluded.resolved_at,
           notified = excluded.notified, notified_severity = excluded.notified_severity,
           last_notified_at = excluded.last_notified_at, aged_notified = excluded.aged_notified",
            )?,
            text: conn.prepare(
                "SELECT severity, title, figures, units, action FROM alerts
                 WHERE rule = ?1 AND account_id = ?2 AND key = ?3",
            )?,
            // Resolved and inactive alerts are not loaded; their old state
            // is only looked up for the history line when they come back.
            earlier: conn.prepare(
                "SELECT state FROM alerts WHERE rule = ?1 AND account_id = ?2 AND key = ?3",
            )?,
            history: conn.prepare(
                "INSERT INTO alert_history (rule, account_id, key, from_state, to_state, severity, title, figures, as_of, recorded_at, event)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?,
            as_of: date_text(as_of),
            now: now_text(),
        })
    }

    /// Writes the alert's next lifecycle `n`, and a history line when its
    /// state changed. `loaded`: the alert was among the pending, firing
    /// and closed ones loaded at the start.
    fn save(
        &mut self,
        key: &Key,
        prev: &Lifecycle,
        loaded: bool,
        n: &Lifecycle,
        text: &Text,
    ) -> Result<(), Error> {
        // Read before the upsert below overwrites it.
        let from: Option<String> = if loaded {
            Some(prev.state.as_str().to_string())
        } else if n.state != prev.state {
            self.earlier
                .query_row(params![key.0, key.1, key.2], |r| r.get(0))
                .optional()?
        } else {
            None
        };
        let d = |x: Option<NaiveDate>| x.map(date_text);
        self.upsert.execute(params![
            key.0,
            key.1,
            key.2,
            n.state.as_str(),
            text.severity,
            text.title,
            text.figures,
            text.action,
            n.pending_count,
            d(n.pending_since),
            d(n.started_at),
            d(n.last_seen_at),
            d(n.cleared_since),
            d(n.resolved_at),
            n.notified,
            n.notified_severity.map(|s| s.as_str()),
            d(n.last_notified_at),
            n.aged_notified,
            text.units,
        ])?;
        if n.state != prev.state {
            self.history.execute(params![
                key.0,
                key.1,
                key.2,
                from,
                n.state.as_str(),
                text.severity,
                text.title,
                text.figures,
                self.as_of,
                self.now,
                "state"
            ])?;
        }
        Ok(())
    }
}

/// Counts the change from `prev` to `n` in `changes`.
fn count(changes: &mut Changes, prev: &Lifecycle, n: &Lifecycle, index: Option<usize>) {
    if n.state != prev.state {
        match n.state {
            State::Firing => {
                if let Some(i) = index {
                    changes.started.push(i);
                }
            }
            State::Resolved => changes.resolved += 1,
            State::Pending => changes.pending += 1,
            State::Inactive | State::Closed => {}
        }
    } else if n.state == State::Firing {
        changes.still_firing += 1;
    }
}

/// The alert a notice is about, for routing and rendering: the account's
/// details (the id alone when it is not in the snapshot) and what the
/// alert says.
fn notice_item(
    key: &Key,
    account: Option<&Arc<AccountMetrics>>,
    finding: Option<&Finding>,
    text: &Text,
    notice: Notice,
    started_at: Option<NaiveDate>,
    as_of: NaiveDate,
) -> Item {
    let figures: Vec<(String, serde_json::Value)> = match finding {
        Some(f) => f.figures_owned(),
        None => serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text.figures)
            .map(|m| m.into_iter().collect())
            .unwrap_or_default(),
    };
    let units: crate::rules::Units = match finding {
        Some(f) => crate::rules::Units::clone(&f.units),
        None => serde_json::from_str(&text.units).unwrap_or_default(),
    };
    Item {
        rule: key.0.clone(),
        account_id: key.1.clone(),
        account_name: account.map_or_else(|| key.1.clone(), |a| a.name.to_string()),
        tier: account.map_or("", |a| a.tier.as_str()).to_string(),
        share: account.map_or(0.0, |a| a.share),
        region: account.map_or_else(String::new, |a| a.region.to_string()),
        owner: account.map_or_else(String::new, |a| a.owner.to_string()),
        owner_email: account.and_then(|a| a.owner_email.as_deref().map(str::to_string)),
        manager_email: account.and_then(|a| a.manager_email.as_deref().map(str::to_string)),
        manager: account.map_or_else(String::new, |a| a.manager.to_string()),
        key: key.2.clone(),
        severity: Severity::parse(&text.severity).unwrap_or(Severity::Warning),
        title: text.title.clone(),
        figures,
        units,
        action: text.action.clone(),
        notice,
        started_at,
        as_of,
    }
}

/// The figures of a finding as a JSON object, in the rule's order.
pub fn figures_json(f: &Finding) -> String {
    let map: serde_json::Map<String, serde_json::Value> = f.figures_owned().into_iter().collect();
    serde_json::Value::Object(map).to_string()
}

/// The (rule, account, key) of every closed alert (`close_after_days`:
/// its final notice sent), for `eval` and `--explain` to say so.
pub fn closed_keys(conn: &Connection) -> Result<HashSet<(String, String, String)>, Error> {
    let mut st = conn.prepare("SELECT rule, account_id, key FROM alerts WHERE state = 'closed'")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Alerts currently firing, by severity, for status lines.
pub fn firing_counts(conn: &Connection) -> Result<Vec<(Severity, u64)>, Error> {
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

#[cfg(test)]
mod tests;
