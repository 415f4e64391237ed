//! Outbox: queues a rendered message in the `outbox` table (once per
//! Message-ID), queues kamwatch's own problems to `mail.admin` once per
//! content, derives Message-IDs, counts the outbox by state and lists the
//! recipients it refused. Owns the `outbox` table's inserts of new
//! messages and its summaries; reads the installation id.

use anyhow::Result;
use rusqlite::{Connection, params};
use serde::Serialize;

use super::address::{Recipient, from_mailbox, id_domain};
use super::mime::{Rendered, compose, escape_html, one_line};
use crate::config::MailConfig;
use crate::store::now_text;

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
pub fn refused_recipients(conn: &Connection) -> Result<Vec<Refused>> {
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
