//! Digest: turns the held notices into outbox messages — one digest per
//! recipient per evaluation (critical ones alone if asked), most important
//! first, under `mail.max_message_kb` (fewer charts, then parts) — unless
//! a quiet window (`mail.quiet`, parsed by the config) holds them; and
//! re-renders a message the server found too large into smaller parts.
//! Owns the `notification_mail` links and the `notifications` state change
//! from held to mailed.

use std::fmt::Write as _;

use anyhow::Result;
use chrono::NaiveDate;
use lettre::message::Mailbox;
use rusqlite::{Connection, params};

use super::address::{Recipient, from_mailbox};
use super::mime::{Rendered, compose};
use super::outbox::message_id;
use super::render::Templates;
use crate::alerts::Item;
use crate::config::{DigestConfig, Loaded, MailConfig};
use crate::metrics::Snapshot;
use crate::model::Severity;
use crate::model::dates::date_text;
use crate::store::now_text;

/// The quiet window covering `as_of`, if any.
fn quiet_on(cfg: &MailConfig, as_of: NaiveDate) -> Option<String> {
    cfg.quiet
        .iter()
        .find(|q| q.covers(as_of))
        .map(|q| q.name.clone())
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
/// are off; the charts drawn with `values` (the rules' cadence and
/// windows). Returns how many messages were queued.
pub fn release(
    conn: &Connection,
    loaded: &Loaded,
    as_of: NaiveDate,
    snap: Option<&Snapshot>,
    values: &crate::rules::RuleValues,
) -> Result<usize> {
    let cfg = &loaded.cfg;
    if let Some(name) = quiet_on(&cfg.mail, as_of) {
        tracing::info!(as_of = %as_of, window = %name, "quiet window: mail is held");
        return Ok(0);
    }
    let held = held_notices(conn)?;
    if held.is_empty() {
        return Ok(0);
    }
    let tpl = Templates::load(Some(&loaded.templates_dir()), &cfg.mail.locale)?
        .with_mail(&cfg.mail, Some(&loaded.file))
        .with_values(values.clone());
    let w = Writer::new(conn, &cfg.mail)?;
    let limit = cfg.mail.max_message_kb.saturating_mul(1024);
    let sizing = message_id(conn, &cfg.mail, "", "")?;
    // Each recipient's messages are queued as they are rendered, in the
    // same order: a big evaluation's mail is never all held rendered.
    let mut queued = 0;
    for (to, mut items) in group(&held, &cfg.mail.digest) {
        items.sort_by(|a, b| importance(a.1, b.1));
        let at = (as_of, snap, &sizing[..]);
        for (items, body) in fit(&tpl, &w.from, &to, &items, at, &cfg.mail, limit)? {
            // Derived from what it carries: re-running cannot queue it twice.
            let mut seed = String::new();
            for r in &to {
                let _ = write!(seed, "{}\u{0}", r.email.to_lowercase());
            }
            for (id, _) in &items {
                let _ = write!(seed, "{id},");
            }
            let message_id = message_id(conn, &cfg.mail, "", &seed)?;
            queued += w.queue(&message_id, &to, &items, &body)?.0;
        }
    }
    let mut mark = conn
        .prepare("UPDATE notifications SET state = 'mailed', released_as_of = ?2 WHERE id = ?1")?;
    for (id, _, _) in &held {
        mark.execute(params![id, date_text(as_of)])?;
    }
    Ok(queued)
}

/// A notice held for mail: its id, the alert item and its recipients.
type Held = (i64, Item, Vec<Recipient>);

/// The notices held for mail, in the order they were recorded.
fn held_notices(conn: &Connection) -> Result<Vec<Held>> {
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
    Ok(out)
}

/// A message to be: its recipients and the notices (ids and items) it carries.
type Outgoing<'a> = (Vec<Recipient>, Vec<(i64, &'a Item)>);

/// The messages the held notices make: one per notice when digests are
/// off (and for a critical one when `critical_immediately`), else one
/// digest per recipient, in the order recipients first appear.
fn group<'a>(held: &'a [Held], d: &DigestConfig) -> Vec<Outgoing<'a>> {
    let mut messages: Vec<Outgoing<'_>> = Vec::new();
    let mut per_recipient: Vec<(Recipient, Vec<(i64, &Item)>)> = Vec::new();
    for (id, item, to) in held {
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
    messages
}

type Part<'a> = (Vec<(i64, &'a Item)>, Rendered);

/// The messages one recipient list's items become, each under `limit`
/// bytes when it can be: all in one with the configured charts if that
/// fits, else with fewer charts, else split into parts "(1/n)" in order of
/// importance (each again with as many charts as fit). No item is ever
/// left out: an item too large alone even without its chart goes as is.
/// Sizes are measured with `sizing`, a Message-ID as long as the one each
/// part will carry, and with the parts' "(i/n)" in the subject.
fn fit<'a>(
    tpl: &Templates,
    from: &Mailbox,
    to: &[Recipient],
    items: &[(i64, &'a Item)],
    (as_of, snap, sizing): (NaiveDate, Option<&Snapshot>, &str),
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
        let size = compose(from, to, sizing, &body, m.zone)?.formatted().len() as u64;
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
                // The "(i/n)" makes each part a little larger than it was
                // measured: one now over the limit means more parts.
                let mut over = false;
                for (_, body) in &out {
                    over |=
                        compose(from, to, sizing, body, m.zone)?.formatted().len() as u64 > limit;
                }
                if over && per > 1 {
                    k = (k + 1).min(n);
                    continue;
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

/// Writes the messages of one release or split, all with one sender and
/// one creation time.
struct Writer<'a> {
    conn: &'a Connection,
    mail: &'a MailConfig,
    from: Mailbox,
    now: String,
}

impl<'a> Writer<'a> {
    fn new(conn: &'a Connection, mail: &'a MailConfig) -> Result<Writer<'a>> {
        Ok(Writer {
            conn,
            mail,
            from: from_mailbox(mail)?,
            now: now_text(),
        })
    }

    /// The MIME bytes of `body` to `to` under `message_id`.
    fn mime(&self, to: &[Recipient], message_id: &str, body: &Rendered) -> Result<Vec<u8>> {
        Ok(compose(&self.from, to, message_id, body, self.mail.zone)?.formatted())
    }

    /// Queues one rendered message to `to`, whole (a retry sends the same
    /// bytes, Date and Message-ID included), linked to the notices it
    /// carries. Returns whether it was queued (0 or 1: a message with this
    /// Message-ID may be there already) and its outbox row.
    fn queue(
        &self,
        message_id: &str,
        to: &[Recipient],
        items: &[(i64, &Item)],
        body: &Rendered,
    ) -> Result<(usize, i64)> {
        let (rule, account) = rule_and_account(items);
        let mime = self.mime(to, message_id, body)?;
        let n = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO outbox (message_id, recipients, subject, body_text, body_html, rule, account_id, created_at, mime)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                message_id,
                serde_json::to_string(to)?,
                body.subject,
                body.text,
                body.html,
                rule,
                account,
                self.now,
                mime
            ])?;
        let outbox_id: i64 = self.conn.query_row(
            "SELECT id FROM outbox WHERE message_id = ?1",
            [message_id],
            |r| r.get(0),
        )?;
        let mut link = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO notification_mail (notification_id, outbox_id, recipient) VALUES (?1, ?2, ?3)",
        )?;
        for (id, _) in items {
            for r in to {
                link.execute(params![id, outbox_id, r.email])?;
            }
        }
        Ok((n, outbox_id))
    }
}

/// The rule and account a message names: its one notice's, or "digest".
fn rule_and_account<'a>(items: &[(i64, &'a Item)]) -> (&'a str, Option<&'a str>) {
    match items {
        [(_, one)] => (one.rule.as_str(), Some(one.account_id.as_str())),
        _ => ("digest", None),
    }
}

/// The notices outbox row `outbox_id` carries, by id.
fn carried(conn: &Connection, outbox_id: i64) -> Result<Vec<(i64, Item)>> {
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
    Ok(v)
}

/// Re-renders a message the server found too large from the notices it
/// carries: without charts, in parts under `limit` bytes, to the
/// recipients it still had to reach. The first part takes the message's
/// own row (its Message-ID and its place; nobody got it yet), the others
/// are queued beside it. Returns the rows to send, or None when it cannot
/// be split (a system message, or one notice too large alone).
#[allow(clippy::too_many_arguments)]
pub(super) fn split(
    conn: &Connection,
    cfg: &Loaded,
    outbox_id: i64,
    message_id: &str,
    recipients: &[Recipient],
    limit: u64,
    why: &str,
) -> Result<Option<Vec<i64>>> {
    let items = carried(conn, outbox_id)?;
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
    let w = Writer::new(conn, &cfg.cfg.mail)?;
    let sizing = self::message_id(conn, &cfg.cfg.mail, "", "")?;
    let at = (as_of, None, &sizing[..]);
    let parts = fit(&tpl, &w.from, &to, &refs, at, &cfg.cfg.mail, limit)?;
    let fits = |body: &Rendered| -> Result<bool> {
        Ok(w.mime(&to, message_id, body)?.len() as u64 <= limit)
    };
    // Nothing smaller can be made: one notice, and it does not fit alone.
    if parts.len() == 1 && (refs.len() == 1 || !fits(&parts[0].1)?) {
        return Ok(None);
    }
    let mut ids = vec![outbox_id];
    let (first, first_body) = &parts[0];
    let why = format!("{why}; split into {} messages without charts", parts.len());
    rewrite(&w, outbox_id, message_id, &to, first, first_body, &why)?;
    for (part, body) in &parts[1..] {
        let mut seed = format!("{message_id}\u{0}part");
        for (id, _) in part {
            let _ = write!(seed, "{id},");
        }
        let part_id = self::message_id(conn, &cfg.cfg.mail, "", &seed)?;
        ids.push(w.queue(&part_id, &to, part, body)?.1);
    }
    Ok(Some(ids))
}

/// Outbox row `outbox_id` rewritten as the first part of its split: the
/// part's message under the row's own Message-ID, linked only to the
/// notices of that part.
fn rewrite(
    w: &Writer<'_>,
    outbox_id: i64,
    message_id: &str,
    to: &[Recipient],
    part: &[(i64, &Item)],
    body: &Rendered,
    why: &str,
) -> Result<()> {
    let (rule, account) = rule_and_account(part);
    let mime = w.mime(to, message_id, body)?;
    w.conn.execute(
        "UPDATE outbox SET subject = ?2, body_text = ?3, body_html = ?4, rule = ?5, account_id = ?6, mime = ?7,
                attempts = attempts + 1, last_error = ?8
         WHERE id = ?1",
        params![outbox_id, body.subject, body.text, body.html, rule, account, mime, why],
    )?;
    let keep: Vec<String> = part.iter().map(|(id, _)| id.to_string()).collect();
    w.conn.execute(
        &format!(
            "DELETE FROM notification_mail WHERE outbox_id = ?1 AND notification_id NOT IN ({})",
            keep.join(",")
        ),
        [outbox_id],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::Notice;
    use crate::mail::fixtures::item;

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

    /// One digest per address whatever its case, in the order recipients
    /// first appear; a critical notice alone when asked; one message per
    /// notice when digests are off.
    #[test]
    fn notices_group_by_address_whatever_its_case() {
        let w = item(Notice::Started, Severity::Warning, "A", 0.1, "K1");
        let c = item(Notice::Started, Severity::Critical, "A", 0.1, "K2");
        let zw = Recipient::new("张伟", "zw@example.com");
        let zw_upper = Recipient::new("张伟", "ZW@Example.com");
        let boss = Recipient::new("", "boss@example.com");
        let held: Vec<Held> = vec![
            (1, w.clone(), vec![zw.clone(), boss.clone()]),
            (2, c.clone(), vec![zw_upper.clone()]),
            (3, w.clone(), vec![boss.clone()]),
        ];
        let shape = |d: &DigestConfig| -> Vec<(Vec<String>, Vec<i64>)> {
            group(&held, d)
                .into_iter()
                .map(|(to, items)| {
                    (
                        to.into_iter().map(|r| r.email).collect(),
                        items.into_iter().map(|(id, _)| id).collect(),
                    )
                })
                .collect()
        };
        let digest = DigestConfig {
            enabled: true,
            critical_immediately: false,
        };
        assert_eq!(
            shape(&digest),
            [
                (vec!["zw@example.com".to_string()], vec![1, 2]),
                (vec!["boss@example.com".to_string()], vec![1, 3]),
            ]
        );
        let critical_alone = DigestConfig {
            critical_immediately: true,
            ..digest
        };
        assert_eq!(
            shape(&critical_alone),
            [
                (vec!["ZW@Example.com".to_string()], vec![2]),
                (vec!["zw@example.com".to_string()], vec![1]),
                (vec!["boss@example.com".to_string()], vec![1, 3]),
            ]
        );
        let off = DigestConfig {
            enabled: false,
            critical_immediately: false,
        };
        assert_eq!(shape(&off).len(), 3, "one message per notice");
        assert_eq!(
            shape(&off)[0].0,
            ["zw@example.com", "boss@example.com"],
            "a notice keeps all its recipients"
        );
    }
}
