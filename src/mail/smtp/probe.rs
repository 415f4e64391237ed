//! `kamwatch mail test`: one test message through the configured server,
//! reporting what the server said or what failed with a hint. Reads the
//! config's SMTP settings; writes nothing.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};

use super::error::{Error, Failure};
use super::session::{Rcpt, Session};
use super::settings::Settings;
use crate::config::Loaded;
use crate::mail::address::{Recipient, from_mailbox, id_domain};
use crate::mail::mime::{Rendered, compose, escape_html};

/// Sends a test message to `to` and returns the server's answer as a line
/// to print, or an error with a hint.
pub fn send_test(cfg: &Loaded, to: &str) -> Result<String> {
    let Some(smtp) = &cfg.cfg.mail.smtp else {
        bail!(
            "mail.smtp is not configured: messages are written to {} as .eml files; add an `smtp` section to send through a server",
            cfg.mail_dir().display()
        );
    };
    let from = from_mailbox(&cfg.cfg.mail)?;
    let address: lettre::Address = to
        .parse()
        .with_context(|| format!("--to {to:?} is not a mail address like name@example.com"))?;
    let rendered = test_message(cfg.cfg.mail.locale == "en");
    let id = format!(
        "<test-{}@{}>",
        &blake3::hash(format!("{to}{}", crate::config::now()).as_bytes()).to_hex()[..24],
        id_domain(&cfg.cfg.mail)
    );
    let msg = compose(
        &from,
        &[Recipient::new("", address.as_ref())],
        &id,
        &rendered,
        cfg.cfg.mail.zone,
    )?;
    let settings = Settings::from_config(cfg, smtp)?;
    let stop = Arc::new(AtomicBool::new(false));
    let result = Session::open(&settings, &stop).and_then(|mut session| {
        let to = [address.to_string()];
        let out = session.send(from.email.as_ref(), &to, &msg.formatted());
        let said = session.last_reply.clone();
        session.quit();
        out.map(|r| (r, said))
    });
    let e = match result {
        Ok((rcpts, said)) => match rcpts.into_iter().next() {
            Some((_, Rcpt::Sent)) => {
                return Ok(format!(
                    "{} ({:?}) accepted the test message to {to}: {}",
                    settings.server(),
                    smtp.security,
                    said.map(|r| r.to_string()).unwrap_or_default()
                ));
            }
            Some((_, Rcpt::Refused(r) | Rcpt::Deferred(r))) => Error {
                server: settings.server(),
                failure: Failure::Reply {
                    code: r.get(..3).and_then(|c| c.parse().ok()).unwrap_or(550),
                    text: r.get(4..).unwrap_or("").to_string(),
                    after: format!("RCPT TO <{to}>"),
                },
            },
            None => Error {
                server: settings.server(),
                failure: Failure::Protocol("no recipient".into()),
            },
        },
        Err(e) => e,
    };
    bail!(
        "sending failed: {e} ({:?})\nhint: {}",
        smtp.security,
        e.hint(smtp)
    )
}

/// The test message, in the mail's language.
fn test_message(en: bool) -> Rendered {
    let (subject, text) = if en {
        (
            "[kamwatch] Test message",
            "This is a test message from kamwatch. If you read it, mail delivery works.",
        )
    } else {
        (
            "[kamwatch] 测试邮件",
            "这是 kamwatch 发出的测试邮件。收到即说明邮件发送正常。",
        )
    };
    Rendered {
        subject: subject.into(),
        text: text.into(),
        html: format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body><p>{}</p></body></html>",
            escape_html(text)
        ),
        images: Vec::new(),
    }
}
