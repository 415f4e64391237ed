//! MIME: a rendered message (subject, text, HTML, inline images) into the
//! bytes the outbox keeps and the server gets, with the text helpers every
//! message uses (HTML escaping, one-line headers, CRLF). Pure: reads the
//! clock only for the Date header (`config::now`).

use anyhow::{Context, Result};
use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};

use super::address::Recipient;
use crate::config::Zone;

/// One inline image: its Content-ID (without brackets) and PNG bytes.
#[derive(Debug, Clone)]
pub struct Image {
    pub cid: String,
    pub png: Vec<u8>,
}

/// A rendered message, before MIME.
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub images: Vec<Image>,
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
pub(super) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `s` with CRLF line endings. lettre converts a body itself, but by
/// inserting each `\r` in place, which is quadratic: a digest of a few
/// thousand warnings took over a minute. Given CRLF, it has nothing to do.
fn crlf(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 32);
    let mut prev = '\0';
    for c in s.chars() {
        if c == '\n' && prev != '\r' {
            out.push('\r');
        }
        out.push(c);
        prev = c;
    }
    out
}

/// The message as MIME: multipart/alternative of the text and the HTML,
/// the HTML wrapped in multipart/related with its inline images; marked
/// `Auto-Submitted: auto-generated` (RFC 3834: no auto-replies to it), its
/// Date in `zone` (`schedule.timezone`).
pub fn compose(
    from: &Mailbox,
    to: &[Recipient],
    message_id: &str,
    r: &Rendered,
    zone: Zone,
) -> Result<Message> {
    use lettre::message::header::{HeaderName, HeaderValue};
    let mut b = Message::builder()
        .from(from.clone())
        .subject(one_line(&r.subject).trim())
        .message_id(Some(message_id.to_string()))
        .user_agent(format!("kamwatch {}", env!("CARGO_PKG_VERSION")));
    for rcpt in to {
        let address = rcpt
            .email
            .parse()
            .with_context(|| format!("{:?} is not a mail address", rcpt.email))?;
        let name = (!rcpt.name.trim().is_empty()).then(|| one_line(&rcpt.name));
        b = b.to(Mailbox::new(name, address));
    }
    let text = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .body(crlf(&r.text));
    let html = SinglePart::builder()
        .header(ContentType::TEXT_HTML)
        .body(crlf(&r.html));
    let alt = MultiPart::alternative().singlepart(text);
    let alt = if r.images.is_empty() {
        alt.singlepart(html)
    } else {
        let png = ContentType::parse("image/png").context("the PNG content type")?;
        let mut related = MultiPart::related().singlepart(html);
        for i in &r.images {
            related = related
                .singlepart(Attachment::new_inline(i.cid.clone()).body(i.png.clone(), png.clone()));
        }
        alt.multipart(related)
    };
    let mut m = b.multipart(alt)?;
    let h = |name: &'static str, value: String| {
        HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
    };
    m.headers_mut()
        .insert_raw(h("Date", zone.rfc2822(crate::config::now())));
    m.headers_mut()
        .insert_raw(h("Auto-Submitted", "auto-generated".into()));
    Ok(m)
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
    fn line_endings_become_crlf_once() {
        assert_eq!(crlf("a\nb\r\nc\n\n"), "a\r\nb\r\nc\r\n\r\n");
        assert_eq!(crlf("\n中文\r"), "\r\n中文\r");
        assert_eq!(crlf(""), "");
    }

    #[test]
    fn no_header_injection_and_utf8_is_encoded() {
        let r = Rendered {
            subject: "警告 · 华联超市\r\nBcc: evil@example.com".into(),
            text: "t".into(),
            html: "<p>h</p>".into(),
            images: Vec::new(),
        };
        let to = [Recipient::new(
            "张伟\r\nBcc: evil@example.com",
            "zw@example.com",
        )];
        let from: Mailbox = "kamwatch <k@example.com>".parse().unwrap();
        let mime = compose(&from, &to, "<x@kamwatch>", &r, Zone::Local)
            .unwrap()
            .formatted();
        let text = String::from_utf8_lossy(&mime);
        assert!(!text.contains("\r\nBcc:"), "{text}");
        let head = &text[..text.find("\r\n\r\n").unwrap()];
        assert!(head.is_ascii(), "{head}");
        assert!(head.contains("=?utf-8?"), "{head}");
    }
}
