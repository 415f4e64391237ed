//! Mail: turns started alerts into messages, keeps them in the `outbox`
//! table, and delivers the outbox to SMTP or to a folder of .eml files.
//!
//! A message is written to the outbox in the same transaction as the alert
//! change that caused it; delivery is a separate step that marks each row
//! sent only after the server (or the file system) accepted it, with retries
//! and backoff for temporary failures. Owns the `outbox` table and the mail
//! folder; reads the SMTP password from the environment variable the config
//! names and never logs it.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::Tls;
use lettre::{Message, SmtpTransport, Transport};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::alerts::Started;
use crate::config::{Loaded, MailConfig, SmtpSecurity};
use crate::rules::Severity;
use crate::store::now_text;

/// A recipient as stored in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Recipient {
    pub name: String,
    pub email: String,
}

/// Queues one message per started alert. Returns how many were queued; an
/// alert whose account has no owner email and no catch-all is logged.
pub fn enqueue(
    conn: &Connection,
    cfg: &MailConfig,
    as_of: NaiveDate,
    started: &[Started<'_>],
) -> Result<usize> {
    let mut insert = conn.prepare(
        "INSERT INTO outbox (message_id, recipients, subject, body_text, body_html, rule, account_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let now = now_text();
    let mut queued = 0;
    for s in started {
        let f = s.finding;
        let a = &f.account;
        let to = match (&a.owner_email, &cfg.catch_all) {
            (Some(email), _) => Recipient {
                name: a.owner.clone(),
                email: email.clone(),
            },
            (None, Some(catch_all)) => Recipient {
                name: String::new(),
                email: catch_all.clone(),
            },
            (None, None) => {
                tracing::warn!(rule = %f.rule, account = %a.id, "account has no owner email and mail.catch_all is not set; the warning is recorded but not mailed");
                continue;
            }
        };
        let body = Body::of(f, as_of);
        let hash = blake3::hash(
            format!(
                "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{now}",
                f.rule, a.id, f.key, as_of
            )
            .as_bytes(),
        );
        let message_id = format!("<{}@kamwatch>", &hash.to_hex()[..32]);
        insert.execute(params![
            message_id,
            serde_json::to_string(&[to])?,
            body.subject,
            body.text,
            body.html,
            &*f.rule,
            a.id,
            now
        ])?;
        queued += 1;
    }
    Ok(queued)
}

fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Info => "提示",
        Severity::Warning => "警告",
        Severity::Critical => "严重",
    }
}

/// The rendered parts of one warning.
pub struct Body {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Body {
    pub fn of(f: &crate::rules::Finding, as_of: NaiveDate) -> Body {
        let a = &f.account;
        let sev = severity_label(f.severity);
        let subject = one_line(&format!("[kamwatch] {sev} · {}：{}", a.name, f.title));
        let owner = if a.owner.is_empty() { "—" } else { &a.owner };
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{} ({}) · {} 类客户 · {} · 负责人 {owner}\n",
            a.name, a.id, a.tier, a.region
        );
        let _ = writeln!(text, "{sev}：{}\n", f.title);
        if !f.figures.is_empty() {
            let _ = writeln!(text, "数据：");
            for (k, v) in &f.figures {
                let _ = writeln!(text, "  {k}: {}", show(v));
            }
            text.push('\n');
        }
        if !f.action.is_empty() {
            let _ = writeln!(text, "建议：{}\n", f.action);
        }
        let _ = writeln!(text, "规则 {} · 评估日期 {as_of}", f.rule);

        let e = escape_html;
        let mut html = String::new();
        let _ = write!(
            html,
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{}</title></head>\
             <body style=\"font-family:Arial,'Microsoft YaHei',sans-serif;font-size:14px;color:#222\">\
             <table role=\"presentation\" cellpadding=\"6\" cellspacing=\"0\" border=\"0\" width=\"600\">\
             <tr><td style=\"background:{};color:#fff;font-weight:bold\">{} · {}</td></tr>\
             <tr><td><b>{}</b> ({}) · {} 类客户 · {} · 负责人 {}</td></tr>",
            e(&subject),
            match f.severity {
                Severity::Critical => "#b00020",
                Severity::Warning => "#c77700",
                Severity::Info => "#2f6f9f",
            },
            e(sev),
            e(&f.title),
            e(&a.name),
            e(&a.id),
            e(a.tier),
            e(&a.region),
            e(owner)
        );
        if !f.figures.is_empty() {
            html.push_str("<tr><td><table cellpadding=\"4\" cellspacing=\"0\" border=\"1\" style=\"border-collapse:collapse\">");
            for (k, v) in &f.figures {
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td align=\"right\">{}</td></tr>",
                    e(k),
                    e(&show(v))
                );
            }
            html.push_str("</table></td></tr>");
        }
        if !f.action.is_empty() {
            let _ = write!(html, "<tr><td><b>建议：</b>{}</td></tr>", e(&f.action));
        }
        let _ = write!(
            html,
            "<tr><td style=\"color:#888;font-size:12px\">规则 {} · 评估日期 {}</td></tr></table></body></html>",
            e(&f.rule),
            as_of
        );
        Body {
            subject,
            text,
            html,
        }
    }
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
    pub fn from_config(cfg: &Loaded) -> Result<Sink> {
        let Some(smtp) = &cfg.cfg.mail.smtp else {
            return Ok(Sink::Dir(cfg.mail_dir()));
        };
        let builder = match smtp.security {
            SmtpSecurity::Starttls => {
                SmtpTransport::starttls_relay(&smtp.host)?.port(smtp.port.unwrap_or(587))
            }
            SmtpSecurity::Tls => SmtpTransport::relay(&smtp.host)?.port(smtp.port.unwrap_or(465)),
            SmtpSecurity::None => SmtpTransport::builder_dangerous(&smtp.host)
                .port(smtp.port.unwrap_or(25))
                .tls(Tls::None),
        };
        let mut builder = builder.timeout(Some(Duration::from_secs(smtp.timeout_secs)));
        if let (Some(user), Some(var)) = (&smtp.user, &smtp.password_env) {
            let password = std::env::var(var).with_context(|| {
                format!("mail.smtp.password_env names the environment variable {var}, which is not set; set it to the SMTP password")
            })?;
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Sink::Smtp(Box::new(builder.build())))
    }

    fn send(
        &self,
        id: i64,
        rule: &str,
        account: &str,
        msg: &Message,
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
                write_atomic(dir, &name, &msg.formatted())
                    .map_err(|e| SendError::Temporary(format!("{e:#}")))
            }
            Sink::Smtp(t) => match t.send(msg) {
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
    let from: Mailbox = cfg.cfg.mail.from.parse().with_context(|| {
        format!(
            "mail.from {:?} is not a mail address like `kamwatch <kamwatch@example.com>`",
            cfg.cfg.mail.from
        )
    })?;
    let now = chrono::Utc::now().timestamp();
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
                "SELECT message_id, recipients, subject, body_text, body_html, rule, account_id, attempts
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
        }) = row
        else {
            continue;
        };
        let recipients: Vec<Recipient> = serde_json::from_str(&recipients)?;
        let msg = build_message(&from, &recipients, &message_id, &subject, &text, &html);
        let t0 = std::time::Instant::now();
        tracing::debug!(outbox = id, "sending");
        let result = match msg {
            Ok(m) => sink.send(
                id,
                rule.as_deref().unwrap_or("system"),
                account.as_deref().unwrap_or(""),
                &m,
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
}

fn build_message(
    from: &Mailbox,
    to: &[Recipient],
    message_id: &str,
    subject: &str,
    text: &str,
    html: &str,
) -> Result<Message> {
    let mut b = Message::builder()
        .from(from.clone())
        .subject(subject)
        .message_id(Some(message_id.to_string()))
        .user_agent(format!("kamwatch {}", env!("CARGO_PKG_VERSION")));
    for r in to {
        let address = r
            .email
            .parse()
            .with_context(|| format!("{:?} is not a mail address", r.email))?;
        let name = (!r.name.is_empty()).then(|| r.name.clone());
        b = b.to(Mailbox::new(name, address));
    }
    Ok(b.multipart(MultiPart::alternative_plain_html(
        text.to_string(),
        html.to_string(),
    ))?)
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
}
