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
//!
//! `settings` resolves the config (port, TLS roots, password); `transport`
//! is the clocked TCP stream under TLS; `session` is the SMTP dialogue;
//! `error` says what failed and hints at the fix; `probe` is `mail test`.

mod error;
mod probe;
mod session;
mod settings;
mod transport;

pub use error::{Error, Failure};
pub use probe::send_test;
pub use session::{Rcpt, Reply, Session};
pub use settings::{Settings, port};
