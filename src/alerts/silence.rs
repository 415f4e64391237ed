//! Silences: "do not mail me about rule R (or only its alert with key K)
//! for this account (or tier, or owner) until DATE, because ...". A silenced alert still moves through its
//! lifecycle and is recorded; only its mail is held back, and when the
//! silence ends mail resumes (see `alerts::step`). Owns the `silences`
//! table; `kamwatch silence add|list|expire` are thin wrappers over this.
//! Refusals and database failures are an [`Error`] (`is_refusal` tells
//! them apart, for the exit code).

use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::error::Error;
use crate::model::dates::date_text;
use crate::store::now_text;

/// What a silence applies to, besides its rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "scope", content = "value")]
pub enum Scope {
    Account(String),
    Tier(String),
    /// An owner's name or email.
    Owner(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct Silence {
    pub id: i64,
    /// A rule name, or `*` for every rule.
    pub rule: String,
    #[serde(flatten)]
    pub scope: Scope,
    /// Only the rule's alert with this key (None: every alert of the rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Last as-of date silenced (inclusive).
    pub until: NaiveDate,
    pub reason: String,
    pub created_at: String,
    pub expired_at: Option<String>,
}

impl Silence {
    /// Whether this silence covers the alert `key` of `rule` for an
    /// account with this id, tier and owner.
    #[allow(clippy::too_many_arguments)]
    pub fn matches(
        &self,
        rule: &str,
        key: &str,
        account_id: &str,
        tier: &str,
        owner: &str,
        owner_email: Option<&str>,
    ) -> bool {
        if self.rule != "*" && self.rule != rule {
            return false;
        }
        if self.key.as_deref().is_some_and(|k| k != key) {
            return false;
        }
        match &self.scope {
            Scope::Account(a) => a == account_id,
            Scope::Tier(t) => t.eq_ignore_ascii_case(tier),
            Scope::Owner(o) => {
                (!owner.is_empty() && o == owner)
                    || owner_email.is_some_and(|e| e.eq_ignore_ascii_case(o))
            }
        }
    }

    /// Active for an evaluation as of `as_of`.
    pub fn active(&self, as_of: NaiveDate) -> bool {
        self.expired_at.is_none() && as_of <= self.until
    }
}

/// Adds a silence; returns its id.
pub fn add(
    conn: &Connection,
    rule: &str,
    key: Option<&str>,
    scope: &Scope,
    until: NaiveDate,
    reason: &str,
) -> Result<i64, Error> {
    if rule.trim().is_empty() {
        return Err(Error::EmptyRule);
    }
    if key.is_some() && rule == "*" {
        return Err(Error::KeyWithoutRule);
    }
    if reason.trim().is_empty() {
        return Err(Error::EmptyReason);
    }
    let (a, t, o) = match scope {
        Scope::Account(a) => (Some(a.as_str()), None, None),
        Scope::Tier(t) => (None, Some(t.as_str()), None),
        Scope::Owner(o) => (None, None, Some(o.as_str())),
    };
    conn.execute(
        "INSERT INTO silences (rule, account_id, tier, owner, until, reason, created_at, key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![rule, a, t, o, date_text(until), reason, now_text(), key],
    )?;
    Ok(conn.last_insert_rowid())
}

/// The keys `rule` has raised alerts with, as recorded in the alerts
/// table (read only; the lifecycle owns it): what `silence add --key`
/// checks a key against.
pub fn keys_raised(conn: &Connection, rule: &str) -> Result<Vec<String>, Error> {
    let mut st = conn.prepare("SELECT DISTINCT key FROM alerts WHERE rule = ?1 ORDER BY key")?;
    let rows = st.query_map([rule], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Ends a silence now. Errors if there is no such silence.
pub fn expire(conn: &Connection, id: i64) -> Result<Silence, Error> {
    let n = conn.execute(
        "UPDATE silences SET expired_at = ?2 WHERE id = ?1 AND expired_at IS NULL",
        params![id, now_text()],
    )?;
    let s = get(conn, id)?;
    match s {
        None => Err(Error::NoSilence(id)),
        Some(s) if n == 0 => Err(Error::AlreadyExpired {
            id,
            at: s.expired_at.unwrap_or_default(),
        }),
        Some(s) => Ok(s),
    }
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Silence> {
    let account: Option<String> = r.get(2)?;
    let tier: Option<String> = r.get(3)?;
    let owner: Option<String> = r.get(4)?;
    let scope = match (account, tier, owner) {
        (Some(a), _, _) => Scope::Account(a),
        (None, Some(t), _) => Scope::Tier(t),
        (None, None, o) => Scope::Owner(o.unwrap_or_default()),
    };
    let until: String = r.get(5)?;
    Ok(Silence {
        id: r.get(0)?,
        rule: r.get(1)?,
        scope,
        until: NaiveDate::parse_from_str(&until, "%Y-%m-%d").unwrap_or(NaiveDate::MIN),
        reason: r.get(6)?,
        created_at: r.get(7)?,
        expired_at: r.get(8)?,
        key: r.get(9)?,
    })
}

const COLUMNS: &str =
    "id, rule, account_id, tier, owner, until, reason, created_at, expired_at, key";

pub fn get(conn: &Connection, id: i64) -> Result<Option<Silence>, Error> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM silences WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()?)
}

/// Every silence, newest first.
pub fn list(conn: &Connection) -> Result<Vec<Silence>, Error> {
    let mut st = conn.prepare(&format!("SELECT {COLUMNS} FROM silences ORDER BY id DESC"))?;
    let rows = st.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The silences in force for an evaluation as of `as_of`.
pub fn active(conn: &Connection, as_of: NaiveDate) -> Result<Vec<Silence>, Error> {
    let mut st = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM silences WHERE expired_at IS NULL AND until >= ?1"
    ))?;
    let rows = st.query_map([date_text(as_of)], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn add_match_expire() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("k.db")).unwrap();
        let id = add(
            &conn,
            "margin_slip",
            None,
            &Scope::Tier("A".into()),
            d("2026-11-10"),
            "price war",
        )
        .unwrap();
        let on = active(&conn, d("2026-11-10")).unwrap();
        assert_eq!(on.len(), 1);
        assert!(on[0].matches("margin_slip", "", "K1", "A", "", None));
        assert!(!on[0].matches("margin_slip", "", "K1", "B", "", None));
        assert!(!on[0].matches("declining_orders", "", "K1", "A", "", None));
        assert!(active(&conn, d("2026-11-11")).unwrap().is_empty());
        expire(&conn, id).unwrap();
        assert!(active(&conn, d("2026-11-01")).unwrap().is_empty());
        let again = expire(&conn, id).unwrap_err().to_string();
        assert!(again.contains("already expired"), "{again}");
        let none = expire(&conn, 99).unwrap_err().to_string();
        assert!(none.contains("no silence 99"), "{none}");
        let e = add(
            &conn,
            "x",
            None,
            &Scope::Owner("a".into()),
            d("2026-01-01"),
            " ",
        )
        .unwrap_err();
        assert!(
            e.is_refusal() && e.to_string().starts_with("--reason is empty"),
            "{e}"
        );
        let e = add(
            &conn,
            "",
            None,
            &Scope::Owner("a".into()),
            d("2026-01-01"),
            "r",
        )
        .unwrap_err();
        assert!(
            e.is_refusal() && e.to_string().starts_with("--rule is empty"),
            "{e}"
        );
        // The database failing is no refusal: the job failed.
        conn.execute_batch("DROP TABLE silences").unwrap();
        let e = add(
            &conn,
            "x",
            None,
            &Scope::Tier("A".into()),
            d("2026-01-01"),
            "r",
        )
        .unwrap_err();
        assert!(!e.is_refusal(), "{e}");
    }

    /// lapsed_visits raises "lapsed" and "senior" for one account: a
    /// silence of one key leaves the other mailed; one without a key holds
    /// back both, as before keys could be named.
    #[test]
    fn a_silence_with_a_key_holds_back_that_alert_only() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("k.db")).unwrap();
        let account = Scope::Account("K1".into());
        add(
            &conn,
            "lapsed_visits",
            Some("senior"),
            &account,
            d("2026-12-31"),
            "r",
        )
        .unwrap();
        let on = active(&conn, d("2026-12-01")).unwrap();
        assert_eq!(on[0].key.as_deref(), Some("senior"));
        assert!(on[0].matches("lapsed_visits", "senior", "K1", "A", "", None));
        assert!(!on[0].matches("lapsed_visits", "lapsed", "K1", "A", "", None));
        assert!(!on[0].matches("lapsed_visits", "senior", "K2", "A", "", None));
        assert!(
            serde_json::to_string(&on[0])
                .unwrap()
                .contains(r#""key":"senior""#)
        );
        add(&conn, "lapsed_visits", None, &account, d("2026-12-31"), "r").unwrap();
        let both = active(&conn, d("2026-12-01")).unwrap();
        let keyless = both.iter().find(|s| s.key.is_none()).unwrap();
        assert!(keyless.matches("lapsed_visits", "lapsed", "K1", "A", "", None));
        let e = add(&conn, "*", Some("senior"), &account, d("2026-12-31"), "r").unwrap_err();
        assert!(e.is_refusal() && e.to_string().contains("--key"), "{e}");
    }

    #[test]
    fn owner_by_name_or_email() {
        let s = Silence {
            id: 1,
            rule: "*".into(),
            scope: Scope::Owner("zhang.wei@example.com".into()),
            until: d("2026-12-31"),
            reason: "leave".into(),
            created_at: String::new(),
            expired_at: None,
            key: None,
        };
        assert!(s.matches("any", "", "K", "C", "张伟", Some("Zhang.Wei@example.com")));
        assert!(!s.matches("any", "", "K", "C", "张伟", None));
        // `silence list --format json` writes the date as it always did.
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"id":1,"rule":"*","scope":"owner","value":"zhang.wei@example.com","until":"2026-12-31","reason":"leave","created_at":"","expired_at":null}"#
        );
    }
}
