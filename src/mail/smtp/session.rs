//! SMTP session: the dialogue with the server — greeting, EHLO, STARTTLS,
//! AUTH, then MAIL/RCPT/DATA per message with each recipient's answer kept
//! — over the clocked [`Transport`]. A hostile server cannot make it hold
//! more than a bounded reply. Touches only its connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::SmtpSecurity;

use super::error::{Error, Failure};
use super::settings::Settings;
use super::transport::{Abort, Stream, Transport, abort_of, waiting};

/// One reply: its code and its text lines joined.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text())
    }
}

/// What the server said to one recipient of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Rcpt {
    /// Accepted, and the message was accepted at the end of DATA.
    Sent,
    /// Refused for good (5xx): the server's reply.
    Refused(String),
    /// Refused for now (4xx), or the message failed after RCPT for now.
    Deferred(String),
}

/// Longest reply line and most lines in one reply: a hostile server cannot
/// make us hold more than this.
const MAX_LINE: usize = 4096;
const MAX_LINES: usize = 200;

/// An open, greeted (and, as configured, encrypted and logged-in) SMTP
/// session.
pub struct Session {
    server: String,
    stream: Stream,
    buf: Vec<u8>,
    per_message: Duration,
    /// The SIZE the server announced in EHLO, in bytes (None: not given, or 0).
    pub size_limit: Option<u64>,
    /// What the server said at the end of the last message.
    pub last_reply: Option<Reply>,
    /// Whether the current message's data went out: after that a failure
    /// may hide a server that took it, so the message is not sent again
    /// at once on a fresh connection.
    pub data_sent: bool,
}

impl Session {
    fn fail(&self, failure: Failure) -> Error {
        Error {
            server: self.server.clone(),
            failure,
        }
    }

    fn io_failure(&self, e: &io::Error, what: &str) -> Error {
        let per_read = self
            .stream_per_read()
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let f = match abort_of(e) {
            Some(Abort::NoAnswer) => Failure::NoAnswer(per_read),
            Some(Abort::Deadline) => Failure::Deadline(self.per_message.as_secs()),
            Some(Abort::Stopped) => Failure::Stopped,
            None => {
                let text = e.to_string();
                if e.get_ref().is_some_and(|x| x.is::<rustls::Error>())
                    || text.contains("received corrupt message")
                    || text.contains("certificate")
                    || text.contains("InvalidContentType")
                {
                    Failure::Tls(text)
                } else if e.kind() == io::ErrorKind::UnexpectedEof {
                    Failure::Network(format!("the server closed the connection {what}"))
                } else {
                    Failure::Network(format!("{what}: {text}"))
                }
            }
        };
        self.fail(f)
    }

    fn stream_per_read(&self) -> Option<Duration> {
        match &self.stream {
            Stream::Plain(t) => Some(t.per_read),
            Stream::Tls(s) => Some(s.sock.per_read),
            Stream::Gone => None,
        }
    }

    /// Starts the clock for one message: the session must be done with it
    /// within `message_deadline_secs` from now.
    fn start_clock(&mut self) {
        let deadline = Instant::now() + self.per_message;
        if let Some(t) = self.stream.transport() {
            t.deadline = deadline;
        }
    }

    /// Connects, reads the greeting, says EHLO, does STARTTLS and AUTH as
    /// configured. The whole of it counts against one message's deadline.
    pub fn open(s: &Settings, stop: &Arc<AtomicBool>) -> std::result::Result<Session, Error> {
        let server = s.server();
        let fail = |failure| Error {
            server: server.clone(),
            failure,
        };
        if stop.load(Ordering::Relaxed) {
            return Err(fail(Failure::Stopped));
        }
        let deadline = Instant::now() + s.per_message;
        let tcp = connect(s, deadline).map_err(fail)?;
        let _ = tcp.set_nodelay(true);
        let transport = Transport {
            tcp,
            per_read: s.per_read,
            deadline,
            stop: stop.clone(),
        };
        let mut session = Session {
            server,
            stream: Stream::Plain(transport),
            buf: Vec::new(),
            per_message: s.per_message,
            size_limit: None,
            last_reply: None,
            data_sent: false,
        };
        session.handshake(s)?;
        Ok(session)
    }

    /// The greeting, EHLO, STARTTLS and AUTH as configured; the SIZE the
    /// server announces is kept.
    fn handshake(&mut self, s: &Settings) -> std::result::Result<(), Error> {
        if s.security == SmtpSecurity::Tls {
            self.start_tls(s)?;
        }
        let greeting = self.read_reply("before its greeting")?;
        if greeting.code != 220 {
            return Err(self.fail(Failure::Reply {
                code: greeting.code,
                text: greeting.text(),
                after: "the connection".into(),
            }));
        }
        let mut ehlo = self.ehlo()?;
        if s.security == SmtpSecurity::Starttls {
            if !ehlo.iter().any(|l| l.eq_ignore_ascii_case("STARTTLS")) {
                return Err(self.fail(Failure::Tls("the server does not offer STARTTLS".into())));
            }
            let r = self.command("STARTTLS", "STARTTLS")?;
            if r.code != 220 {
                return Err(self.fail(Failure::Tls(format!("the server refused STARTTLS: {r}"))));
            }
            if !self.buf.is_empty() {
                return Err(self.fail(Failure::Protocol(
                    "the server sent data before the TLS handshake; refusing to go on".into(),
                )));
            }
            self.start_tls(s)?;
            ehlo = self.ehlo()?;
        }
        self.size_limit = ehlo.iter().find_map(|l| {
            let mut w = l.split_whitespace();
            w.next()
                .filter(|k| k.eq_ignore_ascii_case("SIZE"))
                .and_then(|_| w.next())
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| *n > 0)
        });
        if let Some((user, password)) = &s.credentials {
            self.auth(&ehlo, user, password)?;
        }
        Ok(())
    }

    fn start_tls(&mut self, s: &Settings) -> std::result::Result<(), Error> {
        let Some(config) = s.tls.clone() else {
            return Err(self.fail(Failure::Tls("TLS is not set up".into())));
        };
        let name = rustls::pki_types::ServerName::try_from(s.host.clone())
            .map_err(|e| self.fail(Failure::Tls(format!("{:?} is no host name: {e}", s.host))))?;
        let conn = rustls::ClientConnection::new(config, name)
            .map_err(|e| self.fail(Failure::Tls(e.to_string())))?;
        let Stream::Plain(t) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(self.fail(Failure::Tls("TLS started twice".into())));
        };
        let mut tls = rustls::StreamOwned::new(conn, t);
        // The handshake now, so a failure is reported as TLS, not later.
        while tls.conn.is_handshaking() {
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                self.stream = Stream::Tls(Box::new(tls));
                let e = match abort_of(&e) {
                    Some(_) => self.io_failure(&e, "during the TLS handshake"),
                    None => self.fail(Failure::Tls(e.to_string())),
                };
                return Err(e);
            }
        }
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    fn ehlo(&mut self) -> std::result::Result<Vec<String>, Error> {
        let name = lettre::transport::smtp::extension::ClientId::default().to_string();
        let r = self.command(&format!("EHLO {name}"), "EHLO")?;
        if r.code == 250 {
            return Ok(r.lines.into_iter().skip(1).collect());
        }
        let r = self.command(&format!("HELO {name}"), "HELO")?;
        if r.code != 250 {
            return Err(self.fail(Failure::Reply {
                code: r.code,
                text: r.text(),
                after: "HELO".into(),
            }));
        }
        Ok(Vec::new())
    }

    fn auth(
        &mut self,
        ehlo: &[String],
        user: &str,
        password: &str,
    ) -> std::result::Result<(), Error> {
        use base64::Engine as _;
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let mechs: Vec<String> = ehlo
            .iter()
            .filter_map(|l| {
                let u = l.to_ascii_uppercase();
                u.strip_prefix("AUTH").map(|m| m.replace('=', " "))
            })
            .flat_map(|m| m.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect();
        let r = if mechs.iter().any(|m| m == "PLAIN") || mechs.is_empty() {
            let token = b64(format!("\0{user}\0{password}").as_bytes());
            self.command_secret(&format!("AUTH PLAIN {token}"), "AUTH PLAIN")?
        } else if mechs.iter().any(|m| m == "LOGIN") {
            let r = self.command("AUTH LOGIN", "AUTH LOGIN")?;
            if r.code != 334 {
                r
            } else {
                let r = self.command_secret(&b64(user.as_bytes()), "AUTH LOGIN")?;
                if r.code != 334 {
                    r
                } else {
                    self.command_secret(&b64(password.as_bytes()), "AUTH LOGIN")?
                }
            }
        } else {
            return Err(self.fail(Failure::Auth(format!(
                "the server offers AUTH {} and kamwatch speaks PLAIN and LOGIN",
                mechs.join(" ")
            ))));
        };
        if r.code == 235 {
            return Ok(());
        }
        Err(self.fail(Failure::Auth(format!(
            "the server answered {r} for user {user:?}"
        ))))
    }

    fn write_all(&mut self, bytes: &[u8], what: &str) -> std::result::Result<(), Error> {
        let r = self
            .stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush());
        r.map_err(|e| self.io_failure(&e, &format!("while sending {what}")))
    }

    /// Sends one command line and reads the reply.
    fn command(&mut self, line: &str, what: &str) -> std::result::Result<Reply, Error> {
        tracing::trace!(server = %self.server, "> {line}");
        self.command_secret(line, what)
    }

    /// Like `command`, but the line is never logged (it carries a secret).
    fn command_secret(&mut self, line: &str, what: &str) -> std::result::Result<Reply, Error> {
        self.write_all(format!("{line}\r\n").as_bytes(), what)?;
        self.read_reply(&format!("to {what}"))
    }

    fn read_line(&mut self, what: &str) -> std::result::Result<String, Error> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = String::from_utf8_lossy(&line);
                return Ok(line.trim_end_matches(['\r', '\n']).to_string());
            }
            if self.buf.len() > MAX_LINE {
                return Err(self.fail(Failure::Protocol(format!(
                    "a reply line {what} is longer than {MAX_LINE} bytes; this is not an SMTP server"
                ))));
            }
            let mut chunk = [0u8; 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(self.fail(Failure::Network(format!(
                        "the server closed the connection {what}"
                    ))));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(self.io_failure(&e, what)),
            }
        }
    }

    fn read_reply(&mut self, what: &str) -> std::result::Result<Reply, Error> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line(what)?;
            let code = line
                .get(..3)
                .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|c| c.parse::<u16>().ok());
            let Some(code) = code else {
                let shown: String = line.chars().take(80).collect();
                return Err(self.fail(Failure::Protocol(format!(
                    "the server answered {what} with {shown:?}, which is not SMTP; check the port (587 starttls, 465 tls, 25)"
                ))));
            };
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                return Ok(Reply { code, lines });
            }
            if lines.len() >= MAX_LINES {
                return Err(self.fail(Failure::Protocol(format!(
                    "the reply {what} has more than {MAX_LINES} lines"
                ))));
            }
        }
    }

    /// Sends one message from `from` to `to` and returns what became of
    /// each recipient. Err: the message as a whole failed (nobody got it);
    /// the session should then be dropped.
    pub fn send(
        &mut self,
        from: &str,
        to: &[String],
        mime: &[u8],
    ) -> std::result::Result<Vec<(String, Rcpt)>, Error> {
        self.start_clock();
        self.data_sent = false;
        let data = dot_stuff(mime);
        if let Some(limit) = self.size_limit
            && data.len() as u64 > limit
        {
            return Err(self.fail(Failure::TooBig(format!(
                "{} bytes, and the server takes at most {limit} (its SIZE)",
                data.len()
            ))));
        }
        let mail_from = if self.size_limit.is_some() {
            format!("MAIL FROM:<{from}> SIZE={}", data.len())
        } else {
            format!("MAIL FROM:<{from}>")
        };
        let r = self.command(&mail_from, "MAIL FROM")?;
        if r.code != 250 {
            return Err(self.reply_failure(r, "MAIL FROM"));
        }
        let mut out: Vec<(String, Rcpt)> = Vec::new();
        for t in to {
            let r = self.command(&format!("RCPT TO:<{t}>"), &format!("RCPT TO <{t}>"))?;
            let said = r.to_string();
            out.push((
                t.clone(),
                match r.code {
                    250 | 251 => Rcpt::Sent,
                    552 if r.text().to_lowercase().contains("size") => {
                        return Err(self.fail(Failure::TooBig(said)));
                    }
                    c if c >= 500 => Rcpt::Refused(said),
                    _ => Rcpt::Deferred(said),
                },
            ));
        }
        if !out.iter().any(|(_, r)| *r == Rcpt::Sent) {
            let _ = self.command("RSET", "RSET");
            return Ok(out);
        }
        let r = self.command("DATA", "DATA")?;
        if r.code != 354 {
            return Err(self.reply_failure(r, "DATA"));
        }
        self.data_sent = true;
        self.write_all(&data, "the message")?;
        self.write_all(b".\r\n", "the message")?;
        let r = self.read_reply("to the end of the message")?;
        if r.code != 250 {
            return Err(self.reply_failure(r, "the end of the message"));
        }
        self.last_reply = Some(r);
        Ok(out)
    }

    fn reply_failure(&self, r: Reply, after: &str) -> Error {
        if r.code == 552 || (r.code == 554 && r.text().to_lowercase().contains("size")) {
            return self.fail(Failure::TooBig(r.to_string()));
        }
        self.fail(Failure::Reply {
            code: r.code,
            text: r.text(),
            after: after.into(),
        })
    }

    /// Says QUIT, waiting at most a moment for the answer.
    pub fn quit(mut self) {
        if let Some(t) = self.stream.transport() {
            t.deadline = Instant::now() + Duration::from_secs(1);
        }
        let _ = self.command("QUIT", "QUIT");
    }
}

/// A TCP connection to the server's first address that answers, each
/// try within `per_read` and all before `deadline`.
fn connect(s: &Settings, deadline: Instant) -> std::result::Result<TcpStream, Failure> {
    let addrs: Vec<SocketAddr> = (s.host.as_str(), s.port)
        .to_socket_addrs()
        .map_err(|e| Failure::Network(format!("cannot resolve {}: {e}", s.host)))?
        .collect();
    let mut last = None;
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&a, left.min(s.per_read)) {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if waiting(&e) => Failure::NoAnswer(s.per_read.as_secs()),
        Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Failure::Network("connection refused: nothing listens there".into())
        }
        Some(e) => Failure::Network(format!("cannot connect: {e}")),
        None => Failure::Network(format!("{} resolves to no address", s.host)),
    })
}

/// The message with CRLF line ends, dot-stuffed, ending in CRLF: ready to
/// go after DATA (the final "." follows).
fn dot_stuff(mime: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(mime.len() + mime.len() / 50 + 8);
    let mut at_line_start = true;
    let mut i = 0;
    while i < mime.len() {
        let b = mime[i];
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        match b {
            b'\r' if mime.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
                at_line_start = true;
            }
            b'\n' | b'\r' => {
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                out.push(b);
                at_line_start = false;
            }
        }
        i += 1;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffs_and_ends_lines_with_crlf() {
        assert_eq!(dot_stuff(b".a\r\n..b\nc"), b"..a\r\n...b\r\nc\r\n");
        assert_eq!(dot_stuff(b"x\r\n.\r\n"), b"x\r\n..\r\n");
        assert_eq!(dot_stuff(b""), b"\r\n");
    }
}
