//! Mail: routes alert notices to people (owner, catch-all, manager by
//! severity or age, per-rule extra recipients, admin for kamwatch's own
//! problems), holds them through quiet windows, groups them into one digest
//! per recipient per evaluation, keeps messages in the `outbox` table, and
//! delivers the outbox to SMTP or to a folder of .eml files.
//!
//! A message is written to the outbox in the same transaction as the alert
//! change that caused it; delivery is a separate step that marks each row
//! sent only after the server (or the file system) accepted it, with retries
//! and backoff for temporary failures. The message is rendered through the
//! templates (`render`) when it is queued and kept whole in `outbox.mime`,
//! so a retry sends the same bytes and Message-ID. Owns the `outbox`,
//! `notifications` and `notification_mail` tables, the mail folder and the
//! templates; `smtp` reads the SMTP password (environment variable or
//! private file) and never logs it; `preview` renders without sending.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use lettre::address::Envelope;
use lettre::message::Mailbox;
use lettre::{SmtpTransport, Transport};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::alerts::{Item, Notice, Notified, Policies, RulePolicy};
use crate::config::{Loaded, MailConfig};
use crate::metrics::Snapshot;

pub mod preview;
mod render;
pub mod smtp;

use crate::rules::Severity;
use crate::store::{date_text, now_text};
pub use render::{Image, Rendered, Templates, compose};

/// A recipient as stored in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Recipient {
    pub name: String,
    pub email: String,
}

/// A quiet window, parsed from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Quiet {
    pub name: String,
    weekdays: Vec<chrono::Weekday>,
    range: Option<(DateSpec, DateSpec)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum DateSpec {
    Once(NaiveDate),
    /// (month, day), every year.
    Yearly(u32, u32),
}

impl DateSpec {
    fn parse(s: &str) -> Result<DateSpec, String> {
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(DateSpec::Once(d));
        }
        let md = s.split_once('-').and_then(|(m, d)| {
            let (m, d) = (m.parse::<u32>().ok()?, d.parse::<u32>().ok()?);
            NaiveDate::from_ymd_opt(2000, m, d).map(|_| DateSpec::Yearly(m, d))
        });
        md.ok_or_else(|| {
            format!("{s:?} is not a date: write YYYY-MM-DD for one year or MM-DD for every year")
        })
    }
}

impl Quiet {
    pub fn parse(q: &crate::config::QuietWindow) -> Result<Quiet, String> {
        let weekdays = q
            .weekdays
            .iter()
            .map(|w| {
                w.parse::<chrono::Weekday>().map_err(|_| {
                    format!("weekdays: {w:?} is not a weekday; write mon, tue, wed, thu, fri, sat or sun")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let range = match (&q.from, &q.to) {
            (None, None) => None,
            (Some(f), Some(t)) => {
                let (f, t) = (DateSpec::parse(f)?, DateSpec::parse(t)?);
                match (f, t) {
                    (DateSpec::Once(a), DateSpec::Once(b)) if a > b => {
                        return Err(format!("from {a} is after to {b}"));
                    }
                    (DateSpec::Once(_), DateSpec::Yearly(..))
                    | (DateSpec::Yearly(..), DateSpec::Once(_)) => {
                        return Err(
                            "give `from` and `to` both as YYYY-MM-DD or both as MM-DD".into()
                        );
                    }
                    _ => {}
                }
                Some((f, t))
            }
            _ => return Err("give both `from` and `to`, or neither".into()),
        };
        if weekdays.is_empty() && range.is_none() {
            return Err("a quiet window needs `weekdays` or `from` and `to`".into());
        }
        Ok(Quiet {
            name: q.name.clone().unwrap_or_else(|| "quiet window".into()),
            weekdays,
            range,
        })
    }

    /// Whether mail is held on this day.
    pub fn covers(&self, d: NaiveDate) -> bool {
        use chrono::Datelike;
        if self.weekdays.contains(&d.weekday()) {
            return true;
        }
        match self.range {
            Some((DateSpec::Once(a), DateSpec::Once(b))) => a <= d && d <= b,
            Some((DateSpec::Yearly(m1, d1), DateSpec::Yearly(m2, d2))) => {
                let x = (d.month(), d.day());
                if (m1, d1) <= (m2, d2) {
                    (m1, d1) <= x && x <= (m2, d2)
                } else {
                    x >= (m1, d1) || x <= (m2, d2) // across New Year
                }
            }
            _ => false,
        }
    }
}

/// The quiet window covering `as_of`, if any.
pub fn quiet_on(cfg: &MailConfig, as_of: NaiveDate) -> Option<String> {
    cfg.quiet
        .iter()
        .filter_map(|q| Quiet::parse(q).ok())
        .find(|q| q.covers(as_of))
        .map(|q| q.name)
}

/// Who gets a notice: the owner (else the catch-all, else the admin); the
/// manager too when it is critical or has fired for the escalation age;
/// and the rule's extra recipients. Empty if nobody can be found.
pub fn route(cfg: &crate::config::Config, item: &Item, policy: &RulePolicy) -> Vec<Recipient> {
    let mut out: Vec<Recipient> = Vec::new();
    let mut push = |name: &str, email: &str| {
        let email = email.trim();
        if !email.is_empty() && !out.iter().any(|r| r.email.eq_ignore_ascii_case(email)) {
            out.push(Recipient {
                name: name.to_string(),
                email: email.to_string(),
            });
        }
    };
    match (&item.owner_email, &cfg.mail.catch_all, &cfg.mail.admin) {
        (Some(e), _, _) if !e.trim().is_empty() => push(&item.owner, e),
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
        push("", m);
    }
    for e in &policy.extra_recipients {
        push("", e);
    }
    out
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
    let mut insert = conn.prepare(
        "INSERT INTO notifications (rule, account_id, key, kind, severity, as_of, item, recipients, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut held = 0;
    let mut unroutable: Vec<&str> = Vec::new();
    for n in notices {
        let it = &n.item;
        let to = route(cfg, it, policies.get(&it.rule));
        let state = if n.silenced {
            "silenced"
        } else if to.is_empty() {
            unroutable.push(&it.account_id);
            "unroutable"
        } else {
            held += 1;
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
    if !unroutable.is_empty() {
        // One line for the lot: a book without owner emails would
        // otherwise log one line per warning.
        unroutable.sort_unstable();
        unroutable.dedup();
        let shown: Vec<&str> = unroutable.iter().take(10).copied().collect();
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
    Ok(held)
}

/// Importance order: severity, then tier (A first), then share of revenue.
fn importance(a: &Item, b: &Item) -> std::cmp::Ordering {
    b.severity
        .cmp(&a.severity)
        .then_with(|| {
            let t = |x: &str| {
                if x.is_empty() {
                    "Z".to_string()
                } else {
                    x.to_string()
                }
            };
            t(&a.tier).cmp(&t(&b.tier))
        })
        .then_with(|| b.share.total_cmp(&a.share))
        .then_with(|| a.account_id.cmp(&b.account_id))
        .then_with(|| a.rule.cmp(&b.rule))
}

/// Turns the held notices into outbox messages, unless `as_of` falls in a
/// quiet window: one digest per recipient (critical ones alone if
/// `digest.critical_immediately`), or one message per notice when digests
/// are off. Returns how many messages were queued.
pub fn release(
    conn: &Connection,
    loaded: &Loaded,
    as_of: NaiveDate,
    snap: Option<&Snapshot>,
) -> Result<usize> {
    let cfg = &loaded.cfg;
    if let Some(name) = quiet_on(&cfg.mail, as_of) {
        tracing::info!(as_of = %as_of, window = %name, "quiet window: mail is held");
        return Ok(0);
    }
    let held: Vec<(i64, Item, Vec<Recipient>)> = {
        let mut st = conn.prepare(
            "SELECT id, item, recipients FROM notifications WHERE state = 'held' ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, item, to) = row?;
            out.push((id, serde_json::from_str(&item)?, serde_json::from_str(&to)?));
        }
        out
    };
    if held.is_empty() {
        return Ok(0);
    }
    let d = &cfg.mail.digest;
    let tpl = Templates::load(Some(&loaded.templates_dir()), &cfg.mail.locale)?;
    let from = from_mailbox(&cfg.mail)?;
    // (recipients, notice ids with their items)
    type Outgoing<'a> = (Vec<Recipient>, Vec<(i64, &'a Item)>);
    let mut messages: Vec<Outgoing<'_>> = Vec::new();
    let mut per_recipient: Vec<(Recipient, Vec<(i64, &Item)>)> = Vec::new();
    for (id, item, to) in &held {
        if !d.enabled || (d.critical_immediately && item.severity == Severity::Critical) {
            messages.push((to.clone(), vec![(*id, item)]));
            continue;
        }
        for r in to {
            match per_recipient
                .iter_mut()
                .find(|(x, _)| x.email.eq_ignore_ascii_case(&r.email))
            {
                Some((_, v)) => v.push((*id, item)),
                None => per_recipient.push((r.clone(), vec![(*id, item)])),
            }
        }
    }
    messages.extend(per_recipient.into_iter().map(|(r, v)| (vec![r], v)));

    let mut insert = conn.prepare(
        "INSERT OR IGNORE INTO outbox (message_id, recipients, subject, body_text, body_html, rule, account_id, created_at, mime)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut link = conn.prepare(
        "INSERT OR IGNORE INTO notification_mail (notification_id, outbox_id, recipient) VALUES (?1, ?2, ?3)",
    )?;
    let now = now_text();
    let mut queued = 0;
    for (to, mut items) in messages {
        items.sort_by(|a, b| importance(a.1, b.1));
        let list: Vec<&Item> = items.iter().map(|(_, i)| *i).collect();
        let m = &cfg.mail;
        let body = if list.len() == 1 {
            tpl.single(list[0], snap, m.chart_months)?
        } else {
            tpl.digest(&list, as_of, &to, snap, m.chart_months, m.charts_per_digest)?
        };
        // Derived from what it carries: re-running cannot queue it twice.
        let mut seed = String::new();
        for r in &to {
            let _ = write!(seed, "{}\u{0}", r.email.to_lowercase());
        }
        for (id, _) in &items {
            let _ = write!(seed, "{id},");
        }
        let message_id = format!(
            "<{}@kamwatch>",
            &blake3::hash(seed.as_bytes()).to_hex()[..32]
        );
        let (rule, account) = if list.len() == 1 {
            (list[0].rule.as_str(), Some(list[0].account_id.as_str()))
        } else {
            ("digest", None)
        };
        // The whole message is kept: a retry sends the same bytes, Date and
        // Message-ID included.
        let mime = compose(&from, &to, &message_id, &body)?.formatted();
        let n = insert.execute(params![
            message_id,
            serde_json::to_string(&to)?,
            body.subject,
            body.text,
            body.html,
            rule,
            account,
            now,
            mime
        ])?;
        let outbox_id: i64 = conn.query_row(
            "SELECT id FROM outbox WHERE message_id = ?1",
            [&message_id],
            |r| r.get(0),
        )?;
        queued += n;
        for (id, _) in &items {
            for r in &to {
                link.execute(params![id, outbox_id, r.email])?;
            }
        }
    }
    let mut mark = conn
        .prepare("UPDATE notifications SET state = 'mailed', released_as_of = ?2 WHERE id = ?1")?;
    for (id, _, _) in &held {
        mark.execute(params![id, date_text(as_of)])?;
    }
    Ok(queued)
}

/// Queues a message about kamwatch's own problems to `mail.admin`, once per
/// distinct content. Returns whether one was queued (false: no admin set,
/// or the same message was queued before).
pub fn notify_admin(
    conn: &Connection,
    cfg: &MailConfig,
    subject: &str,
    text: &str,
) -> Result<bool> {
    notify_admin_once(conn, cfg, subject, text, text)
}

/// [`notify_admin`], sent once per `once` (not per text): a text that
/// differs only in its counts is not mailed again.
pub fn notify_admin_once(
    conn: &Connection,
    cfg: &MailConfig,
    subject: &str,
    text: &str,
    once: &str,
) -> Result<bool> {
    let Some(admin) = &cfg.admin else {
        return Ok(false);
    };
    let hash = blake3::hash(format!("{admin}\u{0}{subject}\u{0}{once}").as_bytes());
    let message_id = format!("<{}@kamwatch>", &hash.to_hex()[..32]);
    let subject = one_line(&format!("[kamwatch] 系统 · {subject}"));
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{}</title></head><body><pre>{}</pre></body></html>",
        escape_html(&subject),
        escape_html(text)
    );
    let to = [Recipient {
        name: String::new(),
        email: admin.clone(),
    }];
    let rendered = Rendered {
        subject,
        text: text.to_string(),
        html,
        images: Vec::new(),
    };
    queue(conn, cfg, &to, &message_id, &rendered)
}

/// Queues one rendered message (with its inline images) to `to`, unless a
/// message with this Message-ID was queued before. Returns whether it was.
pub fn queue(
    conn: &Connection,
    cfg: &MailConfig,
    to: &[Recipient],
    message_id: &str,
    r: &Rendered,
) -> Result<bool> {
    let mime = compose(&from_mailbox(cfg)?, to, message_id, r)?.formatted();
    let n = conn.execute(
        "INSERT OR IGNORE INTO outbox (message_id, recipients, subject, body_text, body_html, rule, account_id, created_at, mime)
         VALUES (?1, ?2, ?3, ?4, ?5, 'system', NULL, ?6, ?7)",
        params![message_id, serde_json::to_string(to)?, r.subject, r.text, r.html, now_text(), mime],
    )?;
    Ok(n == 1)
}

/// The line that names the rule and account of an item; the same in a
/// single message and a digest, so scripts (and tests) can find them.
fn footer(it: &Item) -> String {
    format!(
        "规则 {} · 客户 {} · 评估日期 {}",
        it.rule, it.account_id, it.as_of
    )
}

/// A figure as people read it: amounts with thousands separators.
pub fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            group_thousands(&format!("{f:.2}"))
        }
        serde_json::Value::Number(n) => group_thousands(&n.to_string()),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "—".into(),
        other => other.to_string(),
    }
}

fn group_thousands(s: &str) -> String {
    let (sign, rest) = s.strip_prefix('-').map_or(("", s), |r| ("-", r));
    let (int, frac) = rest
        .split_once('.')
        .map_or((rest, None), |(i, f)| (i, Some(f)));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Folds CR/LF and other controls into spaces: a header is one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Where messages go.
pub enum Sink {
    Dir(std::path::PathBuf),
    Smtp(Box<SmtpTransport>),
}

impl Sink {
    /// The sink the config asks for: SMTP if configured, else the folder.
    /// One SMTP transport serves a whole delivery pass, so its pooled
    /// connection is reused from message to message.
    pub fn from_config(cfg: &Loaded) -> Result<Sink> {
        match &cfg.cfg.mail.smtp {
            None => Ok(Sink::Dir(cfg.mail_dir())),
            Some(smtp) => Ok(Sink::Smtp(Box::new(smtp::transport(cfg, smtp)?))),
        }
    }

    fn send(
        &self,
        id: i64,
        rule: &str,
        account: &str,
        envelope: &Envelope,
        mime: &[u8],
    ) -> std::result::Result<(), SendError> {
        match self {
            Sink::Dir(dir) => {
                // Named by outbox id: a retry after a crash rewrites the same
                // file instead of adding a second one.
                let safe = |s: &str| -> String {
                    s.chars()
                        .map(|c| {
                            if c.is_ascii_alphanumeric() || c == '-' {
                                c
                            } else {
                                '_'
                            }
                        })
                        .collect()
                };
                let name = format!("{id:06}_{}_{}.eml", safe(rule), safe(account));
                write_atomic(dir, &name, mime).map_err(|e| SendError::Temporary(format!("{e:#}")))
            }
            Sink::Smtp(t) => match t.send_raw(envelope, mime) {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
                Err(e) => Err(SendError::Temporary(e.to_string())),
            },
        }
    }
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

enum SendError {
    Temporary(String),
    Permanent(String),
}

/// What one delivery pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Delivery {
    pub sent: u64,
    pub retrying: u64,
    pub dead: u64,
}

/// Seconds to wait before attempt `n + 1`: 30 s doubling, at most an hour.
fn backoff_secs(attempts: i64) -> i64 {
    (30i64 << attempts.clamp(0, 7)).min(3600)
}

/// Sends every outbox message that is due. Each row is marked sent right
/// after the sink accepted it; a crash in between sends it again with the
/// same Message-ID (mail clients collapse such duplicates).
pub fn deliver(conn: &Connection, cfg: &Loaded, sink: &Sink) -> Result<Delivery> {
    let from = from_mailbox(&cfg.cfg.mail)?;
    let now = crate::config::now().timestamp();
    let mut out = Delivery::default();
    let due: Vec<i64> = conn
        .prepare(
            "SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY id",
        )?
        .query_map([now], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for id in due {
        let row: Option<OutboxRow> = conn
            .query_row(
                "SELECT message_id, recipients, subject, body_text, body_html, rule, account_id, attempts, mime
                 FROM outbox WHERE id = ?1 AND state = 'pending'",
                [id],
                |r| {
                    Ok(OutboxRow {
                        message_id: r.get(0)?,
                        recipients: r.get(1)?,
                        subject: r.get(2)?,
                        text: r.get(3)?,
                        html: r.get(4)?,
                        rule: r.get(5)?,
                        account: r.get(6)?,
                        attempts: r.get(7)?,
                        mime: r.get(8)?,
                    })
                },
            )
            .optional()?;
        let Some(OutboxRow {
            message_id,
            recipients,
            subject,
            text,
            html,
            rule,
            account,
            attempts,
            mime,
        }) = row
        else {
            continue;
        };
        let recipients: Vec<Recipient> = serde_json::from_str(&recipients)?;
        // Rows queued before the rendered message was kept (migration 0005)
        // are composed now, from the parts they stored.
        let msg = match mime {
            Some(m) => envelope(&from, &recipients).map(|e| (e, m)),
            None => {
                let r = Rendered {
                    subject,
                    text,
                    html,
                    images: Vec::new(),
                };
                compose(&from, &recipients, &message_id, &r)
                    .map(|m| (m.envelope().clone(), m.formatted()))
            }
        };
        let t0 = std::time::Instant::now();
        tracing::debug!(outbox = id, "sending");
        let result = match msg {
            Ok((env, bytes)) => sink.send(
                id,
                rule.as_deref().unwrap_or("system"),
                account.as_deref().unwrap_or(""),
                &env,
                &bytes,
            ),
            Err(e) => Err(SendError::Permanent(format!(
                "the message cannot be built: {e}"
            ))),
        };
        match result {
            Ok(()) => {
                let accepted = std::time::Instant::now();
                conn.execute(
                    "UPDATE outbox SET state = 'sent', attempts = attempts + 1, sent_at = ?2, last_error = NULL WHERE id = ?1",
                    params![id, now_text()],
                )?;
                tracing::debug!(
                    outbox = id,
                    send_ms = (accepted - t0).as_secs_f64() * 1000.0,
                    update_ms = accepted.elapsed().as_secs_f64() * 1000.0,
                    "sent"
                );
                out.sent += 1;
            }
            Err(SendError::Temporary(e)) => {
                let next = now + backoff_secs(attempts);
                tracing::warn!(outbox = id, error = %e, "delivery failed; will retry");
                conn.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
                    params![id, next, e],
                )?;
                out.retrying += 1;
            }
            Err(SendError::Permanent(e)) => {
                tracing::error!(outbox = id, error = %e, "the server refused the message for good; parked as dead");
                conn.execute(
                    "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
                    params![id, e],
                )?;
                out.dead += 1;
            }
        }
    }
    Ok(out)
}

struct OutboxRow {
    message_id: String,
    recipients: String,
    subject: String,
    text: String,
    html: String,
    rule: Option<String>,
    account: Option<String>,
    attempts: i64,
    mime: Option<Vec<u8>>,
}

/// The sender from `mail.from`.
pub fn from_mailbox(cfg: &MailConfig) -> Result<Mailbox> {
    cfg.from.parse().with_context(|| {
        format!(
            "mail.from {:?} is not a mail address like `kamwatch <kamwatch@example.com>`",
            cfg.from
        )
    })
}

/// The SMTP envelope of a stored message.
fn envelope(from: &Mailbox, to: &[Recipient]) -> Result<Envelope> {
    let to = to
        .iter()
        .map(|r| {
            r.email
                .parse::<lettre::Address>()
                .with_context(|| format!("{:?} is not a mail address", r.email))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Envelope::new(Some(from.email.clone()), to)?)
}

/// Outbox rows by state, for status lines and tests.
pub fn outbox_counts(conn: &Connection) -> Result<(u64, u64, u64)> {
    let n = |s: &str| -> Result<u64> {
        Ok(
            conn.query_row("SELECT COUNT(*) FROM outbox WHERE state = ?1", [s], |r| {
                r.get::<_, i64>(0)
            })? as u64,
        )
    };
    Ok((n("pending")?, n("sent")?, n("dead")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(
            escape_html("<img src=x onerror=alert(1)>&\"'"),
            "&lt;img src=x onerror=alert(1)&gt;&amp;&quot;&#39;"
        );
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(show(&serde_json::json!(1234567.5)), "1,234,567.50");
        assert_eq!(show(&serde_json::json!(-1234)), "-1,234");
        assert_eq!(show(&serde_json::json!(12)), "12");
    }

    #[test]
    fn headers_are_one_line() {
        assert_eq!(one_line("a\r\nBcc: x@y"), "a  Bcc: x@y");
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff_secs(0), 30);
        assert_eq!(backoff_secs(1), 60);
        assert_eq!(backoff_secs(10), 3600);
    }

    fn item(notice: Notice, severity: Severity, tier: &str, share: f64, id: &str) -> Item {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        Item {
            rule: "r<1>".into(),
            account_id: id.into(),
            account_name: "<b>Acme & Co</b>".into(),
            tier: tier.into(),
            share,
            region: "华东".into(),
            owner: "张伟".into(),
            owner_email: Some("zw@example.com".into()),
            manager_email: Some("boss@example.com".into()),
            key: String::new(),
            severity,
            title: "<script>x</script>".into(),
            figures: vec![("a<b".into(), serde_json::json!("<i>"))],
            action: "call".into(),
            notice,
            started_at: Some(d("2026-10-01")),
            as_of: d("2026-10-20"),
        }
    }

    #[test]
    fn quiet_windows() {
        let q = |w: &[&str], f: Option<&str>, t: Option<&str>| {
            Quiet::parse(&crate::config::QuietWindow {
                name: None,
                weekdays: w.iter().map(|s| s.to_string()).collect(),
                from: f.map(str::to_string),
                to: t.map(str::to_string),
            })
        };
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let weekend = q(&["sat", "sun"], None, None).unwrap();
        assert!(weekend.covers(d("2026-11-28"))); // a Saturday
        assert!(!weekend.covers(d("2026-11-27")));
        let year_end = q(&[], Some("12-30"), Some("01-02")).unwrap();
        assert!(year_end.covers(d("2026-12-31")) && year_end.covers(d("2027-01-02")));
        assert!(!year_end.covers(d("2027-01-03")));
        let once = q(&[], Some("2027-02-05"), Some("2027-02-13")).unwrap();
        assert!(once.covers(d("2027-02-13")) && !once.covers(d("2028-02-06")));
        assert!(q(&[], Some("2027-02-05"), None).is_err());
        assert!(q(&[], None, None).is_err());
        assert!(q(&[], Some("13-01"), Some("12-01")).is_err());
    }

    #[test]
    fn routes_owner_manager_extra_and_fallbacks() {
        let mut cfg = crate::config::parse(include_str!("../config/kamwatch.yaml")).unwrap();
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

    #[test]
    fn digest_orders_by_importance_and_escapes() {
        let a = item(Notice::Started, Severity::Warning, "B", 0.05, "K1");
        let b = item(Notice::Started, Severity::Critical, "C", 0.01, "K2");
        let c = item(Notice::Started, Severity::Warning, "A", 0.20, "K3");
        let d = item(Notice::Started, Severity::Warning, "A", 0.30, "K4");
        let r = item(
            Notice::Resolved { lasted_days: 19 },
            Severity::Warning,
            "A",
            0.3,
            "K5",
        );
        let mut list = vec![&a, &b, &c, &r, &d];
        list.sort_by(|x, y| importance(x, y));
        let order: Vec<&str> = list.iter().map(|i| i.account_id.as_str()).collect();
        assert_eq!(order, ["K2", "K4", "K5", "K3", "K1"]);
        let to = [Recipient {
            name: "张伟".into(),
            email: "zw@example.com".into(),
        }];
        let tpl = Templates::load(None, "zh-CN").unwrap();
        let body = tpl.digest(&list, a.as_of, &to, None, 18, 3).unwrap();
        let listed: Vec<&str> = body
            .text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("规则 r<1> · 客户 "))
            .map(|l| &l[..2])
            .collect();
        assert_eq!(
            listed,
            ["K2", "K4", "K3", "K1", "K5"],
            "open first, resolved last"
        );
        assert!(
            body.subject.contains("4 条新预警") && body.subject.contains("1 条已恢复"),
            "{}",
            body.subject
        );
        assert!(body.text.contains("持续 19 天"), "{}", body.text);
        for raw in ["<script>", "<b>Acme", "a<b", "<i>", "r<1>"] {
            assert!(
                !body.html.contains(raw),
                "{raw} unescaped in the digest HTML"
            );
        }
        let one = tpl.single(&r, None, 18).unwrap();
        assert!(one.subject.contains("已恢复"), "{}", one.subject);
        assert!(!one.html.contains("<script>") && !one.html.contains("r<1>"));
    }
}
