//! Deliver: sends the due outbox messages through a [`Sink`], marks each
//! recipient sent only after the server (or the file system) accepted it,
//! parks a recipient the server refuses (or that is no address) and tells
//! the admin once, splits a message the server finds too large, and retries
//! temporary failures with backoff, giving up on a server that times out
//! again and again. Owns the `outbox` row updates after a send.

use std::collections::VecDeque;

use anyhow::Result;
use rusqlite::{Connection, OptionalExtension, params};

use super::address::{Recipient, from_mailbox, valid_address};
use super::digest::split;
use super::mime::{Rendered, compose};
use super::outbox::notify_admin;
use super::sink::Sink;
use super::smtp;
use crate::config::Loaded;
use crate::store::now_text;

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
    let mut due: VecDeque<i64> = conn
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff_secs(0), 30);
        assert_eq!(backoff_secs(1), 60);
        assert_eq!(backoff_secs(10), 3600);
    }
}
