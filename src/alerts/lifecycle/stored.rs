//! The open alerts an evaluation steps, read from the `alerts` table: all
//! of them (a full evaluation), or only those of the (rule, account) pairs
//! an evaluation after a small drop observed again ([`Only`]), read by the
//! table's key, so its cost follows the pairs that ran, not the book.
//! Reads `alerts`; writes nothing.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;
use rusqlite::{Connection, Row as SqlRow, params};

use crate::alerts::error::Error;
use crate::alerts::machine::{Lifecycle, State};
use crate::model::Severity;

/// (rule, account, key): one alert.
pub(super) type Key = (String, String, String);

/// A stored alert's lifecycle. What it says (the last finding's text) is
/// read only when it is written again without a finding now: on a big
/// book the texts of every open alert would be most of an evaluation's
/// memory.
pub(super) struct Row {
    pub(super) life: Lifecycle,
}

/// The (rule, account) pairs an evaluation observed anew, when not all:
/// per rule, the accounts in `pairs`. The alerts of any other pair are
/// left as the last evaluation of the same day left them, which is what
/// stepping them again with the same observation would do
/// (`rules::changed`).
#[derive(Debug, Default, Clone)]
pub struct Only {
    pub pairs: HashMap<String, HashSet<String>>,
}

impl Only {
    /// Whether the alerts of `rule` for `account` were observed.
    pub fn has(&self, rule: &str, account: &str) -> bool {
        self.pairs.get(rule).is_some_and(|a| a.contains(account))
    }

    /// How many (rule, account) pairs `pairs` lists.
    fn listed(&self) -> usize {
        self.pairs.values().map(HashSet::len).sum()
    }
}

/// Past this many pairs, every open alert is read and the others dropped:
/// one read by key costs about what a few rows of the whole scan do.
const POINT_READS: usize = 20_000;

const COLUMNS: &str = "rule, account_id, key, state, severity, pending_count, pending_since,
                started_at, last_seen_at, cleared_since, resolved_at, notified,
                notified_severity, last_notified_at, aged_notified";

fn opt_date(s: Option<String>) -> Option<NaiveDate> {
    s.and_then(|s| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok())
}

fn row(r: &SqlRow<'_>) -> rusqlite::Result<(Key, Row)> {
    let notified_severity: Option<String> = r.get(12)?;
    Ok((
        (r.get(0)?, r.get(1)?, r.get(2)?),
        Row {
            life: Lifecycle {
                state: State::parse(&r.get::<_, String>(3)?),
                severity: Severity::parse(&r.get::<_, String>(4)?),
                pending_count: r.get::<_, i64>(5)?.max(0) as u32,
                pending_since: opt_date(r.get(6)?),
                started_at: opt_date(r.get(7)?),
                last_seen_at: opt_date(r.get(8)?),
                cleared_since: opt_date(r.get(9)?),
                resolved_at: opt_date(r.get(10)?),
                notified: r.get::<_, i64>(11)? != 0,
                notified_severity: notified_severity.as_deref().and_then(Severity::parse),
                last_notified_at: opt_date(r.get(13)?),
                aged_notified: r.get::<_, i64>(14)? != 0,
            },
        },
    ))
}

/// The pending, firing and closed alerts, of the pairs `only` names when
/// given (a closed alert is stepped like an open one: it stays closed
/// while raised, and ends once clear).
pub(super) fn load(conn: &Connection, only: Option<&Only>) -> Result<HashMap<Key, Row>, Error> {
    let open = "state IN ('pending', 'firing', 'closed')";
    let Some(only) = only.filter(|o| o.listed() <= POINT_READS) else {
        let mut st = conn.prepare(&format!("SELECT {COLUMNS} FROM alerts WHERE {open}"))?;
        let rows = st.query_map([], row)?;
        let mut out = HashMap::new();
        for r in rows {
            let (k, v) = r?;
            if only.is_none_or(|o| o.has(&k.0, &k.1)) {
                out.insert(k, v);
            }
        }
        return Ok(out);
    };
    let mut out = HashMap::new();
    // By the table's key (rule, account_id, key).
    let mut by_pair = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM alerts WHERE rule = ?1 AND account_id = ?2 AND {open}"
    ))?;
    for (rule, accounts) in &only.pairs {
        for account in accounts {
            for r in by_pair.query_map(params![rule, account], row)? {
                let (k, v) = r?;
                out.insert(k, v);
            }
        }
    }
    Ok(out)
}
