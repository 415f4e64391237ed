//! Mail: routes alert notices to people (owner, catch-all, manager by
//! severity or age, per-rule extra recipients, admin for kamwatch's own
//! problems), holds them through quiet windows, groups them into one digest
//! per recipient per evaluation, keeps messages in the `outbox` table, and
//! delivers the outbox to SMTP or to a folder of .eml files.
//!
//! A message is written to the outbox in the same transaction as the alert
//! change that caused it, under `mail.max_message_kb` (fewer charts, then
//! parts); delivery is a separate step that marks each recipient sent only
//! after the server (or the file system) accepted it, parks a recipient the
//! server refuses (or that is no address) and tells the admin once, splits
//! a message the server finds too large, and retries temporary failures
//! with backoff, giving up on a server that times out again and again. The message is rendered through the
//! templates (`render`) when it is queued and kept whole in `outbox.mime`,
//! so a retry sends the same bytes and Message-ID. Owns the `outbox`,
//! `notifications` and `notification_mail` tables, the mail folder and the
//! templates; `smtp` reads the SMTP password (environment variable or
//! private file) and never logs it; `preview` renders without sending.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lettre::message::Mailbox;
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

/// A recipient as stored in the outbox, with what became of it once
/// the server answered for it (absent while it still waits).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Recipient {
    pub name: String,
    pub email: String,
    /// `sent`, `refused` (the server refused it for good) or `invalid`
    /// (not a mail address); absent: still to be sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The server's reply, or why the address was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
}

impl Recipient {
    pub fn new(name: &str, email: &str) -> Recipient {
        Recipient {
            name: name.to_string(),
            email: email.to_string(),
            ..Recipient::default()
        }
    }
}

/// Whether `email` is a mail address a server can be given.
pub fn valid_address(email: &str) -> bool {
    crate::config::sendable_address(email)
}

/// A quiet window, parsed from the config when it is loaded.
pub use crate::config::Quiet;

/// The quiet window covering `as_of`, if any.
pub fn quiet_on(cfg: &MailConfig, as_of: NaiveDate) -> Option<String> {
    cfg.quiet
        .iter()
        .find(|q| q.covers(as_of))
        .map(|q| q.name.clone())
}

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
    let mut insert = conn.prepare(
        "INSERT INTO notifications (rule, account_id, key, kind, severity, as_of, item, recipients, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut held = 0;
    let mut unroutable: Vec<&str> = Vec::new();
    let mut bad: Vec<String> = Vec::new();
    for n in notices {
        let it = &n.item;
        for e in bad_addresses(it) {
            bad.push(format!("{}: {e:?}", it.account_id));
        }
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
    if !bad.is_empty() {
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
    let tpl = Templates::load(Some(&loaded.templates_dir()), &cfg.mail.locale)?
        .with_mail(&cfg.mail, Some(&loaded.file));
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
    let limit = cfg.mail.max_message_kb.saturating_mul(1024);
    let mut parts: Vec<(Vec<Recipient>, Part<'_>)> = Vec::new();
    for (to, mut items) in messages {
        items.sort_by(|a, b| importance(a.1, b.1));
        for (part, body) in fit(&tpl, &from, &to, &items, as_of, snap, &cfg.mail, limit)? {
            parts.push((to.clone(), (part, body)));
        }
    }
    for (to, (items, body)) in parts {
        let list: Vec<&Item> = items.iter().map(|(_, i)| *i).collect();
        // Derived from what it carries: re-running cannot queue it twice.
        let mut seed = String::new();
        for r in &to {
            let _ = write!(seed, "{}\u{0}", r.email.to_lowercase());
        }
        for (id, _) in &items {
            let _ = write!(seed, "{id},");
        }
        let message_id = message_id(conn, &cfg.mail, "", &seed)?;
        let (rule, account) = if list.len() == 1 {
            (list[0].rule.as_str(), Some(list[0].account_id.as_str()))
        } else {
            ("digest", None)
        };
        // The whole message is kept: a retry sends the same bytes, Date and
        // Message-ID included.
        let mime = compose(&from, &to, &message_id, &body, cfg.mail.zone)?.formatted();
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

type Part<'a> = (Vec<(i64, &'a Item)>, Rendered);

/// The messages one recipient list's items become, each under `limit`
/// bytes when it can be: all in one with the configured charts if that
/// fits, else with fewer charts, else split into parts "(1/n)" in order of
/// importance (each again with as many charts as fit). No item is ever
/// left out: an item too large alone even without its chart goes as is.
#[allow(clippy::too_many_arguments)]
fn fit<'a>(
    tpl: &Templates,
    from: &Mailbox,
    to: &[Recipient],
    items: &[(i64, &'a Item)],
    as_of: NaiveDate,
    snap: Option<&Snapshot>,
    m: &MailConfig,
    limit: u64,
) -> Result<Vec<Part<'a>>> {
    let render = |chunk: &[(i64, &Item)], charts: usize| -> Result<(Rendered, u64)> {
        let list: Vec<&Item> = chunk.iter().map(|(_, i)| *i).collect();
        let body = if list.len() == 1 {
            tpl.single(list[0], to, snap.filter(|_| charts > 0), m.chart_months)?
        } else {
            tpl.digest(&list, as_of, to, snap, m.chart_months, charts)?
        };
        let size = compose(from, to, "<size@kamwatch>", &body, m.zone)?
            .formatted()
            .len() as u64;
        Ok((body, size))
    };
    let n = items.len().max(1);
    let mut k = 1usize;
    loop {
        let per = n.div_ceil(k);
        let chunks: Vec<&[(i64, &Item)]> = items.chunks(per).collect();
        let mut out: Vec<Part<'a>> = Vec::new();
        let mut largest = 0u64;
        for chunk in &chunks {
            let most = if chunk.len() == 1 {
                usize::from(snap.is_some())
            } else {
                m.charts_per_digest
            };
            let mut chosen = None;
            for charts in (0..=most).rev() {
                let (body, size) = render(chunk, charts)?;
                if size <= limit || charts == 0 {
                    largest = largest.max(size);
                    chosen = Some(body);
                    break;
                }
            }
            if let Some(body) = chosen {
                out.push((chunk.to_vec(), body));
            }
        }
        if largest <= limit || per == 1 {
            let total = out.len();
            if total > 1 {
                for (i, (_, body)) in out.iter_mut().enumerate() {
                    body.subject = format!("{} ({}/{total})", body.subject, i + 1);
                }
                tracing::info!(
                    parts = total,
                    limit_kb = limit / 1024,
                    "a digest over the size limit is sent in parts"
                );
            }
            return Ok(out);
        }
        let grow = (k as u64).saturating_mul(largest).div_ceil(limit.max(1)) as usize;
        k = grow.max(k + 1).min(n);
    }
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
    let message_id = message_id(conn, cfg, "", &format!("{admin}\u{0}{subject}\u{0}{once}"))?;
    // Subjects come as "中文 / English": an English reader gets the English.
    let subject = if cfg.locale == "en" {
        let en = subject.split_once(" / ").map_or(subject, |(_, en)| en);
        one_line(&format!("[kamwatch] system · {en}"))
    } else {
        one_line(&format!("[kamwatch] 系统 · {subject}"))
    };
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{}</title></head><body><pre>{}</pre></body></html>",
        escape_html(&subject),
        escape_html(text)
    );
    let to = [Recipient::new("", admin)];
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
    let mime = compose(&from_mailbox(cfg)?, to, message_id, r, cfg.zone)?.formatted();
    let n = conn.execute(
        "INSERT OR IGNORE INTO outbox (message_id, recipients, subject, body_text, body_html, rule, account_id, created_at, mime)
         VALUES (?1, ?2, ?3, ?4, ?5, 'system', NULL, ?6, ?7)",
        params![message_id, serde_json::to_string(to)?, r.subject, r.text, r.html, now_text(), mime],
    )?;
    Ok(n == 1)
}

/// The line that names the rule and account of an item; the same in a
/// single message and a digest, so scripts (and tests) can find them.
fn footer(it: &Item, en: bool) -> String {
    if en {
        format!(
            "rule {} · account {} · as of {}",
            it.rule, it.account_id, it.as_of
        )
    } else {
        format!(
            "规则 {} · 客户 {} · 评估日期 {}",
            it.rule, it.account_id, it.as_of
        )
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
    Smtp(Box<SmtpSink>),
}

/// An SMTP server and the session open to it, reused from message to
/// message within a delivery pass.
pub struct SmtpSink {
    settings: smtp::Settings,
    session: Option<smtp::Session>,
    stop: Arc<AtomicBool>,
}

impl Sink {
    /// The sink the config asks for: SMTP if configured, else the folder.
    /// `stop` makes a conversation give up at once (the daemon stops).
    pub fn from_config(cfg: &Loaded, stop: Arc<AtomicBool>) -> Result<Sink> {
        match &cfg.cfg.mail.smtp {
            None => Ok(Sink::Dir(cfg.mail_dir())),
            Some(s) => Ok(Sink::Smtp(Box::new(SmtpSink {
                settings: smtp::Settings::from_config(cfg, s)?,
                session: None,
                stop,
            }))),
        }
    }

    /// Ends the session politely, if one is open.
    pub fn close(&mut self) {
        if let Sink::Smtp(s) = self
            && let Some(session) = s.session.take()
        {
            session.quit();
        }
    }

    fn stopping(&self) -> bool {
        matches!(self, Sink::Smtp(s) if s.stop.load(Ordering::Relaxed))
    }

    /// The largest message the server said it takes, once connected.
    fn size_limit(&self) -> Option<u64> {
        match self {
            Sink::Smtp(s) => s.session.as_ref().and_then(|x| x.size_limit),
            Sink::Dir(_) => None,
        }
    }

    /// Sends `mime` to `to`; what became of each recipient.
    fn send(
        &mut self,
        file_name: &str,
        from: &str,
        to: &[String],
        mime: &[u8],
    ) -> std::result::Result<Vec<(String, smtp::Rcpt)>, smtp::Error> {
        match self {
            Sink::Dir(dir) => {
                // Named by outbox id: a retry after a crash rewrites the same
                // file instead of adding a second one.
                write_atomic(dir, file_name, mime).map_err(|e| smtp::Error {
                    server: dir.display().to_string(),
                    failure: smtp::Failure::Network(format!("{e:#}")),
                })?;
                Ok(to.iter().map(|t| (t.clone(), smtp::Rcpt::Sent)).collect())
            }
            Sink::Smtp(s) => {
                let reused = s.session.is_some();
                let session = match s.session.as_mut() {
                    Some(x) => x,
                    None => s.session.insert(smtp::Session::open(&s.settings, &s.stop)?),
                };
                let r = session.send(from, to, mime);
                let data_sent = session.data_sent;
                if r.is_err() {
                    // The conversation is in an unknown state: a new one
                    // for the next message.
                    s.session = None;
                }
                match r {
                    // A connection kept from the last message may have been
                    // closed by the server meanwhile (idle, or "421 too many
                    // messages"): once more on a fresh one, if the data had
                    // not gone out yet.
                    Err(e)
                        if reused
                            && !data_sent
                            && matches!(
                                &e.failure,
                                smtp::Failure::Network(_)
                                    | smtp::Failure::Protocol(_)
                                    | smtp::Failure::Reply { code: 421, .. }
                            ) =>
                    {
                        let mut fresh = smtp::Session::open(&s.settings, &s.stop)?;
                        let r = fresh.send(from, to, mime);
                        if r.is_ok() {
                            s.session = Some(fresh);
                        }
                        r
                    }
                    r => r,
                }
            }
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

/// What one delivery pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Delivery {
    pub sent: u64,
    pub retrying: u64,
    pub dead: u64,
    /// Recipients the server refused for good, or that are no address.
    pub refused: u64,
    /// Messages too large for the server, split into smaller parts.
    pub split: u64,
    /// Set when the pass gave up on the server (it timed out again and
    /// again, refused the login, or cannot be reached): the error.
    pub gave_up: Option<String>,
}

/// Seconds to wait before attempt `n + 1`: 30 s doubling, at most an hour.
fn backoff_secs(attempts: i64) -> i64 {
    (30i64 << attempts.clamp(0, 7)).min(3600)
}

/// Timeouts in a row after which a pass gives up on the server.
const TIMEOUTS_BEFORE_GIVING_UP: u32 = 2;

/// Sends every outbox message that is due, each to the recipients it still
/// has to reach. A message's row is updated right after the server
/// answered for it (one short statement; no transaction is held while the
/// server talks); a crash in between sends it again with the same
/// Message-ID (mail clients collapse such duplicates). A recipient refused
/// for good is parked with the server's reply and the admin is told once;
/// the others get the message. A message too large for the server is
/// split. The pass gives up on the server — leaving the rest pending and
/// untouched — when it times out twice in a row, refuses the login or
/// cannot be reached, and when `stop` is set.
pub fn deliver(conn: &Connection, cfg: &Loaded, sink: &mut Sink) -> Result<Delivery> {
    let from = from_mailbox(&cfg.cfg.mail)?;
    let from_addr = from.email.to_string();
    let now = crate::config::now().timestamp();
    let mut out = Delivery::default();
    let mut due: std::collections::VecDeque<i64> = conn
        .prepare(
            "SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY id",
        )?
        .query_map([now], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut timeouts = 0;
    while let Some(id) = due.pop_front() {
        if sink.stopping() {
            break;
        }
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
        let Some(row) = row else {
            continue;
        };
        let mut recipients: Vec<Recipient> = serde_json::from_str(&row.recipients)?;
        // Addresses stored before they were checked: skipped, not fatal.
        let mut news: Vec<&'static str> = Vec::new();
        for r in recipients.iter_mut().filter(|r| r.state.is_none()) {
            if !valid_address(&r.email) {
                r.state = Some("invalid".into());
                r.reply = Some("not a mail address".into());
                news.push("invalid");
            }
        }
        let waiting: Vec<String> = recipients
            .iter()
            .filter(|r| r.state.is_none())
            .map(|r| r.email.clone())
            .collect();
        let rule = row.rule.clone().unwrap_or_else(|| "system".into());
        let account = row.account.clone().unwrap_or_default();
        // Rows queued before the rendered message was kept (migration 0005)
        // are composed now, from the parts they stored.
        let bytes = match &row.mime {
            Some(m) => Ok(m.clone()),
            None => {
                let r = Rendered {
                    subject: row.subject.clone(),
                    text: row.text.clone(),
                    html: row.html.clone(),
                    images: Vec::new(),
                };
                let to: Vec<Recipient> = recipients
                    .iter()
                    .filter(|r| valid_address(&r.email))
                    .cloned()
                    .collect();
                compose(&from, &to, &row.message_id, &r, cfg.cfg.mail.zone).map(|m| m.formatted())
            }
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                park_dead(conn, id, &format!("the message cannot be built: {e:#}"))?;
                out.dead += 1;
                continue;
            }
        };
        let t0 = std::time::Instant::now();
        tracing::debug!(outbox = id, "sending");
        let file_name = eml_name(id, &rule, &account);
        let result = if waiting.is_empty() {
            Ok(Vec::new())
        } else {
            sink.send(&file_name, &from_addr, &waiting, &bytes)
        };
        match result {
            Ok(results) => {
                timeouts = 0;
                let mut deferred: Option<String> = None;
                for (email, said) in results {
                    let Some(r) = recipients
                        .iter_mut()
                        .find(|r| r.state.is_none() && r.email == email)
                    else {
                        continue;
                    };
                    match said {
                        smtp::Rcpt::Sent => r.state = Some("sent".into()),
                        smtp::Rcpt::Refused(reply) => {
                            r.state = Some("refused".into());
                            r.reply = Some(reply);
                            news.push("refused");
                        }
                        smtp::Rcpt::Deferred(reply) => deferred = Some(reply),
                    }
                }
                let any_sent = recipients
                    .iter()
                    .any(|r| r.state.as_deref() == Some("sent"));
                let left = recipients.iter().filter(|r| r.state.is_none()).count();
                let parked: Vec<String> = recipients
                    .iter()
                    .filter(|r| matches!(r.state.as_deref(), Some("refused" | "invalid")))
                    .map(|r| format!("{} ({})", r.email, r.reply.as_deref().unwrap_or("")))
                    .collect();
                let json = serde_json::to_string(&recipients)?;
                // The row and the admin's notice about it commit together.
                let tx = conn.unchecked_transaction()?;
                let conn: &Connection = &tx;
                if left == 0 {
                    let state = if any_sent { "sent" } else { "dead" };
                    let error =
                        (!parked.is_empty()).then(|| format!("refused: {}", parked.join("; ")));
                    conn.execute(
                        "UPDATE outbox SET state = ?2, attempts = attempts + 1, sent_at = CASE WHEN ?2 = 'sent' THEN ?3 ELSE sent_at END, last_error = ?4, recipients = ?5 WHERE id = ?1",
                        params![id, state, now_text(), error, json],
                    )?;
                    if any_sent {
                        out.sent += 1;
                    } else {
                        tracing::error!(
                            outbox = id,
                            "every recipient was refused; parked as dead: {}",
                            parked.join("; ")
                        );
                        out.dead += 1;
                    }
                } else {
                    let e =
                        deferred.unwrap_or_else(|| "some recipients are still to be sent".into());
                    tracing::warn!(outbox = id, error = %e, "a recipient was refused for now; will retry it");
                    conn.execute(
                        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3, recipients = ?4 WHERE id = ?1",
                        params![id, now + backoff_secs(row.attempts), e, json],
                    )?;
                    out.retrying += 1;
                }
                tracing::debug!(
                    outbox = id,
                    send_ms = t0.elapsed().as_secs_f64() * 1000.0,
                    "sent"
                );
                if !news.is_empty() {
                    out.refused += news.len() as u64;
                    tell_admin_refused(conn, cfg, &recipients)?;
                }
                tx.commit()?;
            }
            Err(e) => {
                let text = e.to_string();
                match &e.failure {
                    smtp::Failure::Stopped => break,
                    smtp::Failure::TooBig(_) => {
                        // The server's SIZE, or half of what it refused;
                        // 2% spare for dot-stuffing on the wire.
                        let limit = sink
                            .size_limit()
                            .unwrap_or((bytes.len() as u64) / 2)
                            .min(cfg.cfg.mail.max_message_kb.saturating_mul(1024));
                        let limit = limit - limit / 50;
                        // The rewrite and the parts commit together: a crash
                        // between them must not leave a part unqueued.
                        let tx = conn.unchecked_transaction()?;
                        let parts =
                            split(&tx, cfg, id, &row.message_id, &recipients, limit, &text)?;
                        tx.commit()?;
                        match parts {
                            Some(ids) => {
                                tracing::warn!(outbox = id, parts = ids.len(), error = %text, "too large for the server; sent as smaller messages without charts");
                                out.split += 1;
                                // The parts go in this same pass.
                                for part in ids.into_iter().rev() {
                                    due.push_front(part);
                                }
                            }
                            None => {
                                park_dead(conn, id, &text)?;
                                out.dead += 1;
                            }
                        }
                        continue;
                    }
                    _ if e.is_permanent() => {
                        park_dead(conn, id, &text)?;
                        out.dead += 1;
                        continue;
                    }
                    _ => {}
                }
                tracing::warn!(outbox = id, error = %text, "delivery failed; will retry");
                conn.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3, recipients = ?4 WHERE id = ?1",
                    params![id, now + backoff_secs(row.attempts), text, serde_json::to_string(&recipients)?],
                )?;
                out.retrying += 1;
                let whole_server = matches!(
                    e.failure,
                    smtp::Failure::Auth(_) | smtp::Failure::Tls(_) | smtp::Failure::Network(_)
                ) && matches!(sink, Sink::Smtp(_));
                if e.is_timeout() {
                    timeouts += 1;
                }
                if whole_server || timeouts >= TIMEOUTS_BEFORE_GIVING_UP {
                    out.gave_up = Some(text);
                    break;
                }
            }
        }
    }
    sink.close();
    Ok(out)
}

fn eml_name(id: i64, rule: &str, account: &str) -> String {
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
    let mut name = format!("{id:06}");
    for part in [rule, account] {
        let part = safe(part);
        let part = part.trim_matches('_');
        if !part.is_empty() {
            name.push('_');
            name.push_str(part);
        }
    }
    name + ".eml"
}

fn park_dead(conn: &Connection, id: i64, error: &str) -> Result<()> {
    tracing::error!(outbox = id, error = %error, "the server refused the message for good; parked as dead");
    conn.execute(
        "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
        params![id, error],
    )?;
    Ok(())
}

/// Tells the admin about each recipient of a message that was refused or
/// skipped — once per address and reply, however many messages it hits.
fn tell_admin_refused(conn: &Connection, cfg: &Loaded, recipients: &[Recipient]) -> Result<()> {
    let admin = cfg.cfg.mail.admin.as_deref().unwrap_or("");
    for r in recipients {
        let (Some(state), Some(reply)) = (&r.state, &r.reply) else {
            continue;
        };
        if state == "sent" || r.email.eq_ignore_ascii_case(admin) {
            continue;
        }
        tracing::warn!(recipient = %r.email, reply = %reply, "a recipient was refused; the others got the message");
        let what = if state == "invalid" {
            format!("{:?} is not a mail address, so it was skipped.", r.email)
        } else {
            format!("The mail server refused {} for good: {reply}", r.email)
        };
        let text = format!(
            "{what}\n\nThe other recipients of the message got it; kamwatch will not try this address again for that message. Fix the address — the owner or manager email in the customer master, or mail.* / alerts.*.extra_recipients in the config — and later warnings will reach it.\n"
        );
        notify_admin(
            conn,
            &cfg.cfg.mail,
            "收件人被拒 / a recipient was refused",
            &text,
        )?;
    }
    Ok(())
}

/// Re-renders a message the server found too large from the notices it
/// carries: without charts, in parts under `limit` bytes, to the
/// recipients it still had to reach. The first part takes the message's
/// own row (its Message-ID and its place; nobody got it yet), the others
/// are queued beside it. Returns the rows to send, or None when it cannot
/// be split (a system message, or one notice too large alone).
#[allow(clippy::too_many_arguments)]
fn split(
    conn: &Connection,
    cfg: &Loaded,
    outbox_id: i64,
    message_id: &str,
    recipients: &[Recipient],
    limit: u64,
    why: &str,
) -> Result<Option<Vec<i64>>> {
    let items: Vec<(i64, Item)> = {
        let mut st = conn.prepare(
            "SELECT DISTINCT n.id, n.item FROM notification_mail m JOIN notifications n ON n.id = m.notification_id
             WHERE m.outbox_id = ?1 ORDER BY n.id",
        )?;
        let rows = st.query_map([outbox_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut v = Vec::new();
        for row in rows {
            let (id, item) = row?;
            v.push((id, serde_json::from_str::<Item>(&item)?));
        }
        v
    };
    let to: Vec<Recipient> = recipients
        .iter()
        .filter(|r| r.state.is_none())
        .map(|r| Recipient::new(&r.name, &r.email))
        .collect();
    if items.is_empty() || to.is_empty() {
        return Ok(None);
    }
    let mut refs: Vec<(i64, &Item)> = items.iter().map(|(id, it)| (*id, it)).collect();
    refs.sort_by(|a, b| importance(a.1, b.1));
    let as_of = refs[0].1.as_of;
    let tpl = Templates::load(Some(&cfg.templates_dir()), &cfg.cfg.mail.locale)?
        .with_mail(&cfg.cfg.mail, Some(&cfg.file));
    let from = from_mailbox(&cfg.cfg.mail)?;
    let parts = fit(&tpl, &from, &to, &refs, as_of, None, &cfg.cfg.mail, limit)?;
    let fits = |body: &Rendered| -> Result<bool> {
        Ok(compose(&from, &to, message_id, body, cfg.cfg.mail.zone)?
            .formatted()
            .len() as u64
            <= limit)
    };
    // Nothing smaller can be made: one notice, and it does not fit alone.
    if parts.len() == 1 && (refs.len() == 1 || !fits(&parts[0].1)?) {
        return Ok(None);
    }
    let now = now_text();
    let mut ids = Vec::new();
    for (i, (part, body)) in parts.iter().enumerate() {
        let (rule, account) = if part.len() == 1 {
            (part[0].1.rule.as_str(), Some(part[0].1.account_id.as_str()))
        } else {
            ("digest", None)
        };
        let row_id = if i == 0 {
            let mime = compose(&from, &to, message_id, body, cfg.cfg.mail.zone)?.formatted();
            conn.execute(
                "UPDATE outbox SET subject = ?2, body_text = ?3, body_html = ?4, rule = ?5, account_id = ?6, mime = ?7,
                        attempts = attempts + 1, last_error = ?8
                 WHERE id = ?1",
                params![outbox_id, body.subject, body.text, body.html, rule, account, mime,
                        format!("{why}; split into {} messages without charts", parts.len())],
            )?;
            let keep: Vec<String> = part.iter().map(|(id, _)| id.to_string()).collect();
            conn.execute(
                &format!(
                    "DELETE FROM notification_mail WHERE outbox_id = ?1 AND notification_id NOT IN ({})",
                    keep.join(",")
                ),
                [outbox_id],
            )?;
            outbox_id
        } else {
            let mut seed = format!("{message_id}\u{0}part");
            for (id, _) in part {
                let _ = write!(seed, "{id},");
            }
            let part_id = self::message_id(conn, &cfg.cfg.mail, "", &seed)?;
            let mime = compose(&from, &to, &part_id, body, cfg.cfg.mail.zone)?.formatted();
            conn.execute(
                "INSERT OR IGNORE INTO outbox (message_id, recipients, subject, body_text, body_html, rule, account_id, created_at, mime)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![part_id, serde_json::to_string(&to)?, body.subject, body.text, body.html, rule, account, now, mime],
            )?;
            let new_id: i64 = conn.query_row(
                "SELECT id FROM outbox WHERE message_id = ?1",
                [&part_id],
                |r| r.get(0),
            )?;
            for (nid, _) in part {
                for r in &to {
                    conn.execute(
                        "INSERT OR IGNORE INTO notification_mail (notification_id, outbox_id, recipient) VALUES (?1, ?2, ?3)",
                        params![nid, new_id, r.email],
                    )?;
                }
            }
            new_id
        };
        ids.push(row_id);
    }
    Ok(Some(ids))
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

/// A Message-ID derived from `seed` (so queuing the same thing again is
/// a no-op), unique to this database by its installation id, in the domain
/// of `mail.from`: `<PREFIXhash.installation@domain>`. Some providers drop
/// a message whose Message-ID they have seen, so two databases must never
/// make the same one. A retry resends the stored message, id and all.
pub fn message_id(conn: &Connection, cfg: &MailConfig, prefix: &str, seed: &str) -> Result<String> {
    let install = crate::store::installation_id(conn)?;
    Ok(format!(
        "<{prefix}{}.{install}@{}>",
        &blake3::hash(seed.as_bytes()).to_hex()[..32],
        id_domain(cfg)
    ))
}

/// The part of `mail.from` after the `@`, for Message-IDs.
pub fn id_domain(cfg: &MailConfig) -> String {
    from_mailbox(cfg)
        .map(|m| m.email.domain().to_string())
        .unwrap_or_else(|_| "kamwatch.invalid".to_string())
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
            manager: "孙涛".into(),
            key: String::new(),
            severity,
            title: "<script>x</script>".into(),
            figures: vec![("a<b".into(), serde_json::json!("<i>"))],
            units: Default::default(),
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
        let to = [Recipient::new("张伟", "zw@example.com")];
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
        let one = tpl.single(&r, &to, None, 18).unwrap();
        assert!(one.subject.contains("已恢复"), "{}", one.subject);
        assert!(!one.html.contains("<script>") && !one.html.contains("r<1>"));
    }

    /// A message in English says nothing in Chinese but the data, and
    /// writes each figure by its kind.
    #[test]
    fn english_messages_have_no_chinese_outside_the_data() {
        use crate::format::Unit;
        let mut it = item(Notice::Started, Severity::Critical, "A", 0.4, "K1");
        it.account_name = "华联超市".into();
        it.title = "Orders down 62% on the previous period".into();
        it.action = "Call the buyer this week.".into();
        it.figures = vec![
            ("Revenue, last 90 days".into(), serde_json::json!(22930.4)),
            ("vs previous period".into(), serde_json::json!(-61.66)),
            ("Margin slip".into(), serde_json::json!(3.24)),
            ("Orders, last 90 days".into(), serde_json::json!(6.0)),
            ("Days since the last visit".into(), serde_json::json!(45)),
            ("Plain".into(), serde_json::json!(1234.5)),
        ];
        it.units = [
            ("Revenue, last 90 days", Unit::Money),
            ("vs previous period", Unit::Percent),
            ("Margin slip", Unit::Points),
            ("Orders, last 90 days", Unit::Count),
            ("Days since the last visit", Unit::Days),
        ]
        .into_iter()
        .map(|(k, u)| (k.to_string(), u))
        .collect();
        let mut resolved = item(
            Notice::Resolved { lasted_days: 19 },
            Severity::Warning,
            "B",
            0.1,
            "K2",
        );
        resolved.title = "Margin back".into();
        let to = [Recipient::new("Sun Tao", "sun.tao@example.com")];
        let data = ["华联超市", "华东", "张伟"];
        let tpl = Templates::load(None, "en").unwrap();
        let digest = tpl
            .digest(&[&it, &resolved], it.as_of, &to, None, 18, 3)
            .unwrap();
        let single = tpl.single(&it, &[], None, 18).unwrap();
        for (what, text) in [
            ("digest subject", &digest.subject),
            ("digest text", &digest.text),
            ("digest html", &digest.html),
            ("single subject", &single.subject),
            ("single text", &single.text),
            ("single html", &single.html),
        ] {
            let mut rest = text.clone();
            for d in data {
                rest = rest.replace(d, "");
            }
            let cjk: String = rest.chars().filter(|c| crate::format::is_cjk(*c)).collect();
            assert!(
                cjk.is_empty(),
                "{what} has Chinese outside the data: {cjk:?}\n{text}"
            );
        }
        for want in [
            "¥22,930",
            "−61.7%",
            "3.2 pts",
            "Orders, last 90 days: 6\n",
            "45 days",
            "1,234.50",
        ] {
            assert!(
                single.text.contains(want),
                "{want} missing:\n{}",
                single.text
            );
            assert!(
                digest.text.contains(want.trim_end()),
                "{want} missing:\n{}",
                digest.text
            );
        }
        // Chinese writes large amounts in 万, in the configured currency.
        let zh = Templates::load(None, "zh-CN").unwrap().currency("USD");
        let one = zh.single(&it, &[], None, 18).unwrap();
        assert!(one.text.contains("$2.29万"), "{}", one.text);
        assert!(one.text.contains("3.2 个百分点"), "{}", one.text);
    }
}
