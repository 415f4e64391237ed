//! SMTP: the client kamwatch speaks to its mail server, and its settings —
//! STARTTLS (required, the default), implicit TLS, or plaintext to loopback;
//! an extra CA from `mail.smtp.ca_file`; the AUTH password from an
//! environment variable or a private file (never logged); and `kamwatch
//! mail test`, which reports what the server said.
//!
//! The conversation is our own (lettre builds the messages): every read and
//! write goes through a transport that enforces `timeout_secs` for each
//! answer *and* a total deadline for each message
//! (`message_deadline_secs`), and gives up at once when the daemon stops,
//! so a server that never answers or drips one byte at a time holds nothing
//! up. RCPT results are kept per recipient (one refused address does not
//! sink the others), the SIZE the server announces in EHLO is read, and
//! every error names the server (`smtp 127.0.0.1:2530: ...`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::config::{Loaded, SmtpConfig, SmtpSecurity};

/// The port used when the config gives none.
pub fn port(smtp: &SmtpConfig) -> u16 {
    smtp.port.unwrap_or(match smtp.security {
        SmtpSecurity::Starttls => 587,
        SmtpSecurity::Tls => 465,
        SmtpSecurity::None => 25,
    })
}

/// Reads the password from a file that only its owner may read (the
/// config checks it at load too).
pub use crate::config::read_password_file;

fn password(cfg: &Loaded, smtp: &SmtpConfig) -> Result<Option<String>> {
    if let Some(var) = &smtp.password_env {
        let p = std::env::var(var).with_context(|| {
            format!("mail.smtp.password_env names the environment variable {var}, which is not set; set it to the SMTP password")
        })?;
        return Ok(Some(p));
    }
    if let Some(f) = &smtp.password_file {
        return read_password_file(&cfg.path(f)).map(Some);
    }
    Ok(None)
}

fn tls_config(cfg: &Loaded, smtp: &SmtpConfig) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(f) = &smtp.ca_file {
        let f = cfg.path(f);
        let pem = std::fs::read(&f)
            .with_context(|| format!("reading mail.smtp.ca_file {}", f.display()))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| {
                anyhow::anyhow!(
                    "mail.smtp.ca_file {}: not a PEM certificate ({e}); give the CA certificate as -----BEGIN CERTIFICATE-----",
                    f.display()
                )
            })?;
            roots.add(cert).map_err(|e| {
                anyhow::anyhow!(
                    "mail.smtp.ca_file {}: the certificate is not usable as a CA ({e})",
                    f.display()
                )
            })?;
            added += 1;
        }
        if added == 0 {
            bail!(
                "mail.smtp.ca_file {}: no certificate in it; give the CA certificate as -----BEGIN CERTIFICATE-----",
                f.display()
            );
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .with_context(|| format!("setting up TLS for {}", smtp.host))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// What the client needs to reach the server, resolved once per delivery
/// pass (the password is read here, and kept only in memory).
#[derive(Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    credentials: Option<(String, String)>,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Longest wait for any one answer (`timeout_secs`).
    pub per_read: Duration,
    /// Longest time one message may take, connecting included.
    pub per_message: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Settings")
            .field("server", &self.server())
            .field("security", &self.security)
            .finish()
    }
}

impl Settings {
    pub fn from_config(cfg: &Loaded, smtp: &SmtpConfig) -> Result<Settings> {
        let tls = match smtp.security {
            SmtpSecurity::None => None,
            _ => Some(tls_config(cfg, smtp)?),
        };
        let credentials = match (&smtp.user, password(cfg, smtp)?) {
            (Some(u), Some(p)) => Some((u.clone(), p)),
            _ => None,
        };
        Ok(Settings {
            host: smtp.host.clone(),
            port: port(smtp),
            security: smtp.security,
            credentials,
            tls,
            per_read: Duration::from_secs(smtp.timeout_secs.max(1)),
            per_message: Duration::from_secs(smtp.message_deadline_secs.max(1)),
        })
    }

    /// `host:port`, as errors name it.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Why a conversation with the server failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// No answer to one command within `timeout_secs`.
    NoAnswer(u64),
    /// The message as a whole took longer than `message_deadline_secs`.
    Deadline(u64),
    /// The daemon is stopping.
    Stopped,
    /// Connecting failed or the connection broke.
    Network(String),
    /// The TLS handshake or STARTTLS failed.
    Tls(String),
    /// The server refused the login.
    Auth(String),
    /// The server answered with an error code.
    Reply {
        code: u16,
        text: String,
        after: String,
    },
    /// The message is larger than the server takes.
    TooBig(String),
    /// The server said something that is not SMTP.
    Protocol(String),
}

/// A failed conversation, naming the server.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub server: String,
    pub failure: Failure,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "smtp {}: ", self.server)?;
        match &self.failure {
            Failure::NoAnswer(s) => write!(f, "no answer within {s} s (timeout_secs)"),
            Failure::Deadline(s) => write!(
                f,
                "the message was not through within {s} s (message_deadline_secs)"
            ),
            Failure::Stopped => write!(f, "given up because kamwatch is stopping"),
            Failure::Network(e) => write!(f, "{e}"),
            Failure::Tls(e) => write!(f, "TLS failed: {e}"),
            Failure::Auth(e) => write!(f, "authentication failed: {e}"),
            Failure::Reply { code, text, after } => {
                write!(f, "the server answered {after} with {code} {text}")
            }
            Failure::TooBig(e) => write!(f, "the message is too large for the server: {e}"),
            Failure::Protocol(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The server refused for good: retrying the same message is useless.
    pub fn is_permanent(&self) -> bool {
        matches!(&self.failure, Failure::Reply { code, .. } if *code >= 500)
    }

    /// The server did not answer in time (a tarpit, a dead link).
    pub fn is_timeout(&self) -> bool {
        matches!(self.failure, Failure::NoAnswer(_) | Failure::Deadline(_))
    }

    /// A hint for the admin, from what failed.
    pub fn hint(&self, smtp: &SmtpConfig) -> String {
        let p = port(smtp);
        match &self.failure {
            Failure::Tls(e) => {
                let e = e.to_lowercase();
                if e.contains("starttls") {
                    return "the server did not offer STARTTLS; use `security: tls` (port 465) if it expects TLS from the start".into();
                }
                format!(
                    "the TLS handshake failed: if the server uses a company or self-signed certificate, set mail.smtp.ca_file; if port {p} expects STARTTLS, use `security: starttls` (587), if it expects TLS from the start, `security: tls` (465)"
                )
            }
            Failure::Network(e) if e.contains("refused") => format!(
                "nothing listens on {}:{p}; check mail.smtp.host and port",
                smtp.host
            ),
            Failure::NoAnswer(_) | Failure::Deadline(_) => format!(
                "the server at {}:{p} is too slow or does not speak SMTP there; check the port (587 starttls, 465 tls) and any firewall",
                smtp.host
            ),
            Failure::Auth(_) => {
                "check mail.smtp.user and the password (password_env or password_file)".into()
            }
            Failure::Reply { code, .. } if *code >= 500 => {
                "the server refused for good: check mail.from and the recipient address".into()
            }
            Failure::Reply { .. } => "the server refused for now: try again later".into(),
            Failure::TooBig(_) => "lower mail.max_message_kb or mail.charts_per_digest".into(),
            _ => "check mail.smtp in the config".into(),
        }
    }
}

/// Why the transport gave up, carried through rustls inside an io::Error.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Abort {
    NoAnswer,
    Deadline,
    Stopped,
}

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Abort {}

fn abort_of(e: &io::Error) -> Option<Abort> {
    e.get_ref().and_then(|x| x.downcast_ref::<Abort>()).copied()
}

/// How often a blocked read or write looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// The TCP connection, with the clocks every read and write obey: an
/// answer within `per_read`, the whole message before `deadline`, and
/// nothing once `stop` is set.
struct Transport {
    tcp: TcpStream,
    per_read: Duration,
    deadline: Instant,
    stop: Arc<AtomicBool>,
}

impl Transport {
    /// How long the next blocking call may wait, or why it may not.
    fn slice(&self, started: Instant) -> io::Result<Duration> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(io::Error::other(Abort::Stopped));
        }
        let now = Instant::now();
        if now >= self.deadline {
            return Err(io::Error::other(Abort::Deadline));
        }
        let waited = now.duration_since(started);
        if waited >= self.per_read {
            return Err(io::Error::other(Abort::NoAnswer));
        }
        Ok((self.deadline - now)
            .min(self.per_read - waited)
            .min(POLL)
            .max(Duration::from_millis(1)))
    }
}

fn waiting(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let started = Instant::now();
        loop {
            let slice = self.slice(started)?;
            self.tcp.set_read_timeout(Some(slice))?;
            match self.tcp.read(buf) {
                Err(e) if waiting(&e) => continue,
                r => return r,
            }
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let started = Instant::now();
        loop {
            let slice = self.slice(started)?;
            self.tcp.set_write_timeout(Some(slice))?;
            match self.tcp.write(buf) {
                Err(e) if waiting(&e) => continue,
                r => return r,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

enum Stream {
    Plain(Transport),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, Transport>>),
    /// Between the two, while STARTTLS swaps them.
    Gone,
}

impl Stream {
    fn transport(&mut self) -> Option<&mut Transport> {
        match self {
            Stream::Plain(t) => Some(t),
            Stream::Tls(s) => Some(&mut s.sock),
            Stream::Gone => None,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(t) => t.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Gone => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(t) => t.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Gone => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(t) => t.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Gone => Ok(()),
        }
    }
}

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
        let addrs: Vec<SocketAddr> = (s.host.as_str(), s.port)
            .to_socket_addrs()
            .map_err(|e| fail(Failure::Network(format!("cannot resolve {}: {e}", s.host))))?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for a in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match TcpStream::connect_timeout(&a, left.min(s.per_read)) {
                Ok(t) => {
                    tcp = Some(t);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = match (tcp, last) {
            (Some(t), _) => t,
            (None, Some(e)) if waiting(&e) => {
                return Err(fail(Failure::NoAnswer(s.per_read.as_secs())));
            }
            (None, Some(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Err(fail(Failure::Network(
                    "connection refused: nothing listens there".into(),
                )));
            }
            (None, Some(e)) => return Err(fail(Failure::Network(format!("cannot connect: {e}")))),
            (None, None) => {
                return Err(fail(Failure::Network(format!(
                    "{} resolves to no address",
                    s.host
                ))));
            }
        };
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
        if s.security == SmtpSecurity::Tls {
            session.start_tls(s)?;
        }
        let greeting = session.read_reply("before its greeting")?;
        if greeting.code != 220 {
            return Err(session.fail(Failure::Reply {
                code: greeting.code,
                text: greeting.text(),
                after: "the connection".into(),
            }));
        }
        let mut ehlo = session.ehlo()?;
        if s.security == SmtpSecurity::Starttls {
            if !ehlo.iter().any(|l| l.eq_ignore_ascii_case("STARTTLS")) {
                return Err(session.fail(Failure::Tls("the server does not offer STARTTLS".into())));
            }
            let r = session.command("STARTTLS", "STARTTLS")?;
            if r.code != 220 {
                return Err(session.fail(Failure::Tls(format!("the server refused STARTTLS: {r}"))));
            }
            if !session.buf.is_empty() {
                return Err(session.fail(Failure::Protocol(
                    "the server sent data before the TLS handshake; refusing to go on".into(),
                )));
            }
            session.start_tls(s)?;
            ehlo = session.ehlo()?;
        }
        session.size_limit = ehlo.iter().find_map(|l| {
            let mut w = l.split_whitespace();
            w.next()
                .filter(|k| k.eq_ignore_ascii_case("SIZE"))
                .and_then(|_| w.next())
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| *n > 0)
        });
        if let Some((user, password)) = &s.credentials {
            session.auth(&ehlo, user, password)?;
        }
        Ok(session)
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

/// Sends a test message to `to` and returns the server's answer as a line
/// to print, or an error with a hint.
pub fn send_test(cfg: &Loaded, to: &str) -> Result<String> {
    let Some(smtp) = &cfg.cfg.mail.smtp else {
        bail!(
            "mail.smtp is not configured: messages are written to {} as .eml files; add an `smtp` section to send through a server",
            cfg.mail_dir().display()
        );
    };
    let from = super::from_mailbox(&cfg.cfg.mail)?;
    let address: lettre::Address = to
        .parse()
        .with_context(|| format!("--to {to:?} is not a mail address like name@example.com"))?;
    let en = cfg.cfg.mail.locale == "en";
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
    let rendered = super::Rendered {
        subject: subject.into(),
        text: text.into(),
        html: format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body><p>{}</p></body></html>",
            super::escape_html(text)
        ),
        images: Vec::new(),
    };
    let id = format!(
        "<test-{}@{}>",
        &blake3::hash(format!("{to}{}", crate::config::now()).as_bytes()).to_hex()[..24],
        super::id_domain(&cfg.cfg.mail)
    );
    let msg = super::compose(
        &from,
        &[super::Recipient::new("", address.as_ref())],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffs_and_ends_lines_with_crlf() {
        assert_eq!(dot_stuff(b".a\r\n..b\nc"), b"..a\r\n...b\r\nc\r\n");
        assert_eq!(dot_stuff(b"x\r\n.\r\n"), b"x\r\n..\r\n");
        assert_eq!(dot_stuff(b""), b"\r\n");
    }

    #[test]
    fn errors_name_the_server_and_the_setting() {
        let e = Error {
            server: "127.0.0.1:2530".into(),
            failure: Failure::NoAnswer(10),
        };
        assert_eq!(
            e.to_string(),
            "smtp 127.0.0.1:2530: no answer within 10 s (timeout_secs)"
        );
        assert!(e.is_timeout() && !e.is_permanent());
        let e = Error {
            server: "mail.example.com:587".into(),
            failure: Failure::Reply {
                code: 550,
                text: "no".into(),
                after: "MAIL FROM".into(),
            },
        };
        assert!(e.is_permanent());
    }
}
