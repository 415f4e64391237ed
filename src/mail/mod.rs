//! Mail: routes alert notices to people (owner, catch-all, manager by
//! severity or age, per-rule extra recipients, admin for kamwatch's own
//! problems), holds them through quiet windows, groups them into one digest
//! per recipient per evaluation, keeps messages in the `outbox` table, and
//! delivers the outbox to SMTP or to a folder of .eml files.
//!
//! A message is written to the outbox in the same transaction as the alert
//! change that caused it, under `mail.max_message_kb` (fewer charts, then
//! parts); delivery is a separate step that marks each recipient sent only
//! after the server (or the file system) accepted it, parks a recipient the
//! server refuses (or that is no address) and tells the admin once, splits
//! a message the server finds too large, and retries temporary failures
//! with backoff, giving up on a server that times out again and again. The
//! message is rendered through the templates when it is queued and kept
//! whole in `outbox.mime`, so a retry sends the same bytes and Message-ID.
//! Owns the `outbox`, `notifications` and `notification_mail` tables, the
//! mail folder and the templates.
//!
//! The rooms, lowest first (each imports only rooms listed before it):
//! - `address`: a recipient, address checks, the sender;
//! - `mime`: a rendered message into MIME bytes, HTML escaping, one-line headers;
//! - `templates`, `words`, `render`: the message's text, HTML and charts;
//! - `outbox`: queuing a message, admin notices, Message-IDs, counts and
//!   the refused recipients;
//! - `route`: who gets a notice, and the record of each evaluation's notices;
//! - `digest`: held notices into outbox messages, sized to the limit;
//! - `smtp`: the client and its settings (password never logged);
//! - `sink`: SMTP or a folder of .eml files;
//! - `deliver`: one delivery pass over the outbox;
//! - `preview`: renders without sending.
//!
//! This file only declares them and re-exports what other stages use.

mod address;
mod deliver;
mod digest;
mod mime;
mod outbox;
pub mod preview;
mod render;
mod route;
mod sink;
pub mod smtp;
mod templates;
mod words;

#[cfg(test)]
mod fixtures;

pub use address::Recipient;
pub use deliver::{Delivery, deliver};
pub use digest::release;
pub use mime::{Image, Rendered, escape_html};
pub use outbox::{
    Refused, message_id, notify_admin, notify_admin_once, outbox_counts, queue, refused_recipients,
};
pub use render::Templates;
pub use route::{Recording, record, route};
pub use sink::{Sink, SmtpSink};
