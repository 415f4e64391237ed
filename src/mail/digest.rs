//! Digest: turns the held notices into outbox messages — one digest per
//! recipient per evaluation (critical ones alone if asked), most important
//! first, under `mail.max_message_kb` (fewer charts, then parts) — unless
//! a quiet window holds them; and re-renders a message the server found too
//! large into smaller parts. Owns the `notification_mail` links and the
//! `notifications` state change from held to mailed.

use std::fmt::Write as _;

use anyhow::Result;
use chrono::NaiveDate;
use lettre::message::Mailbox;
use rusqlite::{Connection, params};

use super::address::{Recipient, from_mailbox};
use super::mime::{Rendered, compose};
use super::outbox::message_id;
use super::quiet::quiet_on;
use super::render::Templates;
use crate::alerts::Item;
use crate::config::{Loaded, MailConfig};
use crate::metrics::Snapshot;
use crate::rules::Severity;
use crate::store::{date_text, now_text};

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
}
