//! Route: who gets a notice — the owner (else the catch-all, else the
//! admin), the manager by severity or age, the rule's extra recipients —
//! and the record of each evaluation's notices in the `notifications`
//! table (held for mail, silenced, or unroutable), with one admin notice
//! about owner or manager emails that are no address. Owns the inserts
//! into `notifications`.

use std::fmt::Write as _;

use anyhow::Result;
use rusqlite::{Connection, params};

use super::address::{Recipient, valid_address};
use super::outbox::notify_admin;
use crate::alerts::{Item, Notice, Notified, Policies, RulePolicy};
use crate::model::Severity;
use crate::model::dates::date_text;

/// Who gets a notice: the owner (else the catch-all, else the admin); the
/// manager too when it is critical or has fired for the escalation age;
/// and the rule's extra recipients. Empty if nobody can be found. An
/// address that is no mail address (`a@x.com; b@y.com` stored before
/// ingest checked them) is skipped — an owner's as if it were missing —
/// and listed by [`bad_addresses`].
pub fn route(cfg: &crate::config::Config, item: &Item, policy: &RulePolicy) -> Vec<Recipient> {
    let mut out: Vec<Recipient> = Vec::new();
    let mut push = |name: &str, email: &str| {
        let email = email.trim();
        if !email.is_empty()
            && valid_address(email)
            && !out.iter().any(|r| r.email.eq_ignore_ascii_case(email))
        {
            out.push(Recipient::new(name, email));
        }
    };
    match (&item.owner_email, &cfg.mail.catch_all, &cfg.mail.admin) {
        (Some(e), _, _) if valid_address(e.trim()) => push(&item.owner, e),
        (_, Some(c), _) => push("", c),
        (_, None, Some(a)) => push("", a),
        _ => {}
    }
    let aged = policy.escalate_after_days > 0
        && item
            .started_at
            .is_some_and(|s| (item.as_of - s).num_days() >= i64::from(policy.escalate_after_days));
    let escalate = (cfg.alerts.escalate_critical && item.severity == Severity::Critical)
        || matches!(item.notice, Notice::Aged)
        || (aged && !matches!(item.notice, Notice::Resolved { .. }));
    if escalate && let Some(m) = &item.manager_email {
        push(&item.manager, m);
    }
    for e in &policy.extra_recipients {
        push("", e);
    }
    out
}

/// The owner and manager addresses of an item that are not mail addresses.
pub fn bad_addresses(item: &Item) -> Vec<&str> {
    [&item.owner_email, &item.manager_email]
        .into_iter()
        .flatten()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty() && !valid_address(e))
        .collect()
}

/// Records the notices of one evaluation: routed and held for mail, or
/// kept as a record only (silenced; nobody to send to). Returns how many
/// are held for mail.
pub fn record(
    conn: &Connection,
    cfg: &crate::config::Config,
    policies: &Policies,
    notices: &[Notified],
) -> Result<usize> {
    let mut r = Recording::default();
    r.add(conn, cfg, policies, notices)?;
    r.finish(conn, cfg)
}

/// [`record`] a batch at a time, as the alerts' lifecycle gives them: the
/// notices of a big evaluation are never all held in memory. What is told
/// once per evaluation (bad addresses, accounts nobody gets mail for) is
/// told at [`Recording::finish`].
#[derive(Debug, Default)]
pub struct Recording {
    held: usize,
    unroutable: Vec<String>,
    bad: Vec<String>,
}

impl Recording {
    /// Routes and records `notices`, in order.
    pub fn add(
        &mut self,
        conn: &Connection,
        cfg: &crate::config::Config,
        policies: &Policies,
        notices: &[Notified],
    ) -> Result<()> {
        let mut insert = conn.prepare_cached(
            "INSERT INTO notifications (rule, account_id, key, kind, severity, as_of, item, recipients, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for n in notices {
            let it = &n.item;
            for e in bad_addresses(it) {
                self.bad.push(format!("{}: {e:?}", it.account_id));
            }
            let to = route(cfg, it, policies.get(&it.rule));
            let state = if n.silenced {
                "silenced"
            } else if to.is_empty() {
                self.unroutable.push(it.account_id.clone());
                "unroutable"
            } else {
                self.held += 1;
                "held"
            };
            insert.execute(params![
                it.rule,
                it.account_id,
                it.key,
                it.notice.kind(),
                it.severity.as_str(),
                date_text(it.as_of),
                serde_json::to_string(it)?,
                serde_json::to_string(&to)?,
                state
            ])?;
        }
        Ok(())
    }

    /// Tells the admin and the log what the evaluation's notices showed
    /// (once); returns how many notices are held for mail.
    pub fn finish(self, conn: &Connection, cfg: &crate::config::Config) -> Result<usize> {
        if !self.bad.is_empty() {
            tell_admin_bad_addresses(conn, cfg, self.bad)?;
        }
        if !self.unroutable.is_empty() {
            warn_unroutable(self.unroutable);
        }
        Ok(self.held)
    }
}

/// Tells the admin (and the log) about the owner and manager emails that
/// are no mail address, once per distinct list.
fn tell_admin_bad_addresses(
    conn: &Connection,
    cfg: &crate::config::Config,
    mut bad: Vec<String>,
) -> Result<()> {
    bad.sort_unstable();
    bad.dedup();
    tracing::warn!(
        accounts = bad.len(),
        "owner or manager emails that are no mail address are skipped (the other recipients still get the warning): {}; fix them in the customer master",
        bad.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
    );
    let mut text = format!(
        "{} owner or manager email(s) in the customer master are not mail addresses. Warnings for these accounts go to their other recipients (or to mail.catch_all / mail.admin when the owner's address is the bad one); fix the addresses in the customer master, one address per cell.\n\n",
        bad.len()
    );
    for b in bad.iter().take(200) {
        let _ = writeln!(text, "{b}");
    }
    if bad.len() > 200 {
        let _ = writeln!(text, "... and {} more", bad.len() - 200);
    }
    notify_admin(
        conn,
        &cfg.mail,
        "收件人地址无效 / invalid recipient addresses",
        &text,
    )?;
    Ok(())
}

/// One log line for the accounts whose warnings have nobody to go to.
fn warn_unroutable(mut unroutable: Vec<String>) {
    // One line for the lot: a book without owner emails would
    // otherwise log one line per warning.
    unroutable.sort_unstable();
    unroutable.dedup();
    let shown: Vec<&str> = unroutable.iter().take(10).map(String::as_str).collect();
    let more = unroutable.len().saturating_sub(shown.len());
    tracing::warn!(
        accounts = unroutable.len(),
        "warnings for accounts without an owner email are recorded but not mailed: {}{}; fill the owner email in the customer master, or set mail.catch_all or mail.admin",
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::fixtures::item;

    #[test]
    fn routes_owner_manager_extra_and_fallbacks() {
        let mut cfg = crate::config::parse(include_str!("../../config/kamwatch.yaml")).unwrap();
        let p = RulePolicy {
            escalate_after_days: 30,
            extra_recipients: vec!["pricing@example.com".into()],
            ..RulePolicy::default()
        };
        let emails = |v: Vec<Recipient>| v.into_iter().map(|r| r.email).collect::<Vec<_>>();
        let w = item(Notice::Started, Severity::Warning, "A", 0.1, "K1");
        assert_eq!(
            emails(route(&cfg, &w, &p)),
            ["zw@example.com", "pricing@example.com"]
        );
        let c = item(Notice::Started, Severity::Critical, "A", 0.1, "K1");
        assert_eq!(
            emails(route(&cfg, &c, &p)),
            ["zw@example.com", "boss@example.com", "pricing@example.com"]
        );
        let aged = item(Notice::Aged, Severity::Warning, "A", 0.1, "K1");
        assert!(
            emails(route(&cfg, &aged, &RulePolicy::default()))
                .contains(&"boss@example.com".to_string())
        );
        let mut orphan = w.clone();
        orphan.owner_email = None;
        orphan.manager_email = None;
        assert!(route(&cfg, &orphan, &RulePolicy::default()).is_empty());
        cfg.mail.admin = Some("it@example.com".into());
        assert_eq!(
            emails(route(&cfg, &orphan, &RulePolicy::default())),
            ["it@example.com"]
        );
        cfg.mail.catch_all = Some("ops@example.com".into());
        assert_eq!(
            emails(route(&cfg, &orphan, &RulePolicy::default())),
            ["ops@example.com"]
        );
    }
}
