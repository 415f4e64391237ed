//! SMTP transport: the TCP connection under the SMTP dialogue (plain, or
//! wrapped in TLS), whose every read and write obeys the per-answer
//! timeout, the per-message deadline and the stop flag. Touches only its
//! socket.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Why the transport gave up, carried through rustls inside an io::Error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Abort {
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

pub(super) fn abort_of(e: &io::Error) -> Option<Abort> {
    e.get_ref().and_then(|x| x.downcast_ref::<Abort>()).copied()
}

/// How often a blocked read or write looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// The TCP connection, with the clocks every read and write obey: an
/// answer within `per_read`, the whole message before `deadline`, and
/// nothing once `stop` is set.
pub(super) struct Transport {
    pub(super) tcp: TcpStream,
    pub(super) per_read: Duration,
    pub(super) deadline: Instant,
    pub(super) stop: Arc<AtomicBool>,
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

pub(super) fn waiting(e: &io::Error) -> bool {
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

pub(super) enum Stream {
    Plain(Transport),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, Transport>>),
    /// Between the two, while STARTTLS swaps them.
    Gone,
}

impl Stream {
    pub(super) fn transport(&mut self) -> Option<&mut Transport> {
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
