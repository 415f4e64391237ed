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
    pub gave_up: Option<smtp::Error>,
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
    let mut pass = Pass {
        conn,
        cfg,
        now: crate::config::now().timestamp(),
        out: Delivery::default(),
        timeouts: 0,
    };
    let mut due = due_ids(conn, pass.now)?;
    while let Some(id) = due.pop_front() {
        if sink.stopping() {
            break;
        }
        let Some(row) = pending_row(conn, id)? else {
            continue;
        };
        let mut recipients: Vec<Recipient> = serde_json::from_str(&row.recipients)?;
        // Addresses stored before they were checked: skipped, not fatal.
        let news = skip_invalid(&mut recipients);
        let waiting: Vec<String> = recipients
            .iter()
            .filter(|r| r.state.is_none())
            .map(|r| r.email.clone())
            .collect();
        let bytes = match message_bytes(&row, &recipients, &from, cfg) {
            Ok(b) => b,
            Err(e) => {
                park_dead(conn, id, &format!("the message cannot be built: {e:#}"))?;
                pass.out.dead += 1;
                continue;
            }
        };
        let t0 = std::time::Instant::now();
        tracing::debug!(outbox = id, "sending");
        let rule = row.rule.clone().unwrap_or_else(|| "system".into());
        let account = row.account.clone().unwrap_or_default();
        let file_name = eml_name(id, &rule, &account);
        let result = if waiting.is_empty() {
            Ok(Vec::new())
        } else {
            sink.send(&file_name, &from_addr, &waiting, &bytes)
        };
        let then = match result {
            Ok(answers) => {
                pass.answered(id, &row, recipients, answers, news, t0)?;
                Then::Next
            }
            Err(e) => pass.failed(id, &row, &recipients, &bytes, e, sink, &mut due)?,
        };
        if matches!(then, Then::Stop) {
            break;
        }
    }
    sink.close();
    Ok(pass.out)
}

/// What a delivery pass does after a message.
enum Then {
    Next,
    Stop,
}

/// One delivery pass: where it writes, its clock, and what it did so far.
struct Pass<'a> {
    conn: &'a Connection,
    cfg: &'a Loaded,
    /// The pass's time, in seconds: retries are due from it.
    now: i64,
    out: Delivery,
    /// Timeouts in a row.
    timeouts: u32,
}

/// The outbox rows due at `now`, oldest first.
fn due_ids(conn: &Connection, now: i64) -> Result<VecDeque<i64>> {
    Ok(conn
        .prepare(
            "SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY id",
        )?
        .query_map([now], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

/// Outbox row `id` if it is still pending.
fn pending_row(conn: &Connection, id: i64) -> Result<Option<OutboxRow>> {
    Ok(conn
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
        .optional()?)
}

/// Marks the waiting recipients that are no mail address as `invalid`;
/// one entry per recipient so marked.
fn skip_invalid(recipients: &mut [Recipient]) -> Vec<&'static str> {
    let mut news = Vec::new();
    for r in recipients.iter_mut().filter(|r| r.state.is_none()) {
        if !valid_address(&r.email) {
            r.state = Some("invalid".into());
            r.reply = Some("not a mail address".into());
            news.push("invalid");
        }
    }
    news
}

/// The bytes to send: the kept message, or for rows queued before the
/// rendered message was kept (migration 0005) one composed now from the
/// parts they stored.
fn message_bytes(
    row: &OutboxRow,
    recipients: &[Recipient],
    from: &lettre::message::Mailbox,
    cfg: &Loaded,
) -> Result<Vec<u8>> {
    if let Some(m) = &row.mime {
        return Ok(m.clone());
    }
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
    compose(from, &to, &row.message_id, &r, cfg.cfg.mail.zone).map(|m| m.formatted())
}

/// Each recipient's answer applied: sent, refused for good (a new entry in
/// `news`), or deferred (the reply returned).
fn apply_answers(
    recipients: &mut [Recipient],
    answers: Vec<(String, smtp::Rcpt)>,
    news: &mut Vec<&'static str>,
) -> Option<String> {
    let mut deferred: Option<String> = None;
    for (email, said) in answers {
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
    deferred
}

impl Pass<'_> {
    /// The server answered for each recipient: the row says who got it,
    /// and is done (sent, or dead when nobody could get it) or retried
    /// for the recipients still waiting. The row and the admin's notice
    /// about a refused recipient commit together.
    fn answered(
        &mut self,
        id: i64,
        row: &OutboxRow,
        mut recipients: Vec<Recipient>,
        answers: Vec<(String, smtp::Rcpt)>,
        mut news: Vec<&'static str>,
        t0: std::time::Instant,
    ) -> Result<()> {
        self.timeouts = 0;
        let deferred = apply_answers(&mut recipients, answers, &mut news);
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
        // The write lock first: a mail the server accepted must be
        // recorded sent, not fail on another writer and go out again.
        let tx = rusqlite::Transaction::new_unchecked(
            self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        let conn: &Connection = &tx;
        if left == 0 {
            let state = if any_sent { "sent" } else { "dead" };
            let error = (!parked.is_empty()).then(|| format!("refused: {}", parked.join("; ")));
            conn.execute(
                "UPDATE outbox SET state = ?2, attempts = attempts + 1, sent_at = CASE WHEN ?2 = 'sent' THEN ?3 ELSE sent_at END, last_error = ?4, recipients = ?5 WHERE id = ?1",
                params![id, state, now_text(), error, json],
            )?;
            if any_sent {
                self.out.sent += 1;
            } else {
                tracing::error!(
                    outbox = id,
                    "every recipient was refused; parked as dead: {}",
                    parked.join("; ")
                );
                self.out.dead += 1;
            }
        } else {
            let e = deferred.unwrap_or_else(|| "some recipients are still to be sent".into());
            tracing::warn!(outbox = id, error = %e, "a recipient was refused for now; will retry it");
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3, recipients = ?4 WHERE id = ?1",
                params![id, self.now + backoff_secs(row.attempts), e, json],
            )?;
            self.out.retrying += 1;
        }
        tracing::debug!(
            outbox = id,
            send_ms = t0.elapsed().as_secs_f64() * 1000.0,
            "sent"
        );
        if !news.is_empty() {
            self.out.refused += news.len() as u64;
            tell_admin_refused(conn, self.cfg, &recipients)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The message as a whole failed: split it when too large (its parts go
    /// first in `due`), park it when refused for good, else retry it later
    /// and stop the pass when the whole server is out or keeps timing out.
    #[allow(clippy::too_many_arguments)]
    fn failed(
        &mut self,
        id: i64,
        row: &OutboxRow,
        recipients: &[Recipient],
        bytes: &[u8],
        e: smtp::Error,
        sink: &Sink,
        due: &mut VecDeque<i64>,
    ) -> Result<Then> {
        let text = e.to_string();
        match &e.failure {
            smtp::Failure::Stopped => return Ok(Then::Stop),
            smtp::Failure::TooBig(_) => {
                self.too_big(id, row, recipients, bytes, &text, sink, due)?;
                return Ok(Then::Next);
            }
            _ if e.is_permanent() => {
                park_dead(self.conn, id, &text)?;
                self.out.dead += 1;
                return Ok(Then::Next);
            }
            _ => {}
        }
        match &e.failure {
            smtp::Failure::Folder(_) => tracing::warn!(
                outbox = id,
                error = %text,
                "could not write the message into the mail folder; will retry: check mail.dir (a folder kamwatch may create and write, on a disk with room)"
            ),
            _ => tracing::warn!(outbox = id, error = %text, "delivery failed; will retry"),
        }
        self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3, recipients = ?4 WHERE id = ?1",
            params![id, self.now + backoff_secs(row.attempts), text, serde_json::to_string(recipients)?],
        )?;
        self.out.retrying += 1;
        let whole_server = matches!(
            e.failure,
            smtp::Failure::Auth(_) | smtp::Failure::Tls(_) | smtp::Failure::Network(_)
        ) && matches!(sink, Sink::Smtp(_));
        if e.is_timeout() {
            self.timeouts += 1;
        }
        if whole_server || self.timeouts >= TIMEOUTS_BEFORE_GIVING_UP {
            self.out.gave_up = Some(e);
            return Ok(Then::Stop);
        }
        Ok(Then::Next)
    }

    /// A message too large for the server: re-rendered as smaller parts
    /// that go in this same pass, or parked as dead when it cannot be made
    /// smaller.
    #[allow(clippy::too_many_arguments)]
    fn too_big(
        &mut self,
        id: i64,
        row: &OutboxRow,
        recipients: &[Recipient],
        bytes: &[u8],
        text: &str,
        sink: &Sink,
        due: &mut VecDeque<i64>,
    ) -> Result<()> {
        // The server's SIZE, or half of what it refused; 2% spare for
        // dot-stuffing on the wire.
        let limit = sink
            .size_limit()
            .unwrap_or((bytes.len() as u64) / 2)
            .min(self.cfg.cfg.mail.max_message_kb.saturating_mul(1024));
        let limit = limit - limit / 50;
        // The rewrite and the parts commit together: a crash between them
        // must not leave a part unqueued.
        let tx = rusqlite::Transaction::new_unchecked(
            self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        let parts = split(&tx, self.cfg, id, &row.message_id, recipients, limit, text)?;
        tx.commit()?;
        match parts {
            Some(ids) => {
                tracing::warn!(outbox = id, parts = ids.len(), error = %text, "too large for the server; sent as smaller messages without charts");
                self.out.split += 1;
                for part in ids.into_iter().rev() {
                    due.push_front(part);
                }
            }
            None => {
                park_dead(self.conn, id, text)?;
                self.out.dead += 1;
            }
        }
        Ok(())
    }
}

/// The file name of a message in the mail folder: the outbox id (unique),
/// then the rule and the account as far as they are safe ASCII, each cut to
/// `EML_PART_CHARS` so that a long id never makes a name the file system
/// refuses (255 bytes).
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
        let part: String = safe(part).chars().take(EML_PART_CHARS).collect();
        let part = part.trim_matches('_');
        if !part.is_empty() {
            name.push('_');
            name.push_str(part);
        }
    }
    name + ".eml"
}

/// How much of the rule's name and of the account id an .eml name keeps.
const EML_PART_CHARS: usize = 60;

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
