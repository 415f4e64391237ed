//! Addresses: a recipient as the outbox stores it (with what became of
//! it), whether a string is an address a server can be given, and the
//! sender from `mail.from`. Pure: touches nothing.

use anyhow::{Context, Result};
use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};

use crate::config::MailConfig;

/// A recipient as stored in the outbox, with what became of it once
/// the server answered for it (absent while it still waits).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Recipient {
    pub name: String,
    pub email: String,
    /// `sent`, `refused` (the server refused it for good) or `invalid`
    /// (not a mail address); absent: still to be sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The server's reply, or why the address was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
}

impl Recipient {
    pub fn new(name: &str, email: &str) -> Recipient {
        Recipient {
            name: name.to_string(),
            email: email.to_string(),
            ..Recipient::default()
        }
    }
}

/// Whether `email` is a mail address a server can be given.
pub fn valid_address(email: &str) -> bool {
    crate::config::sendable_address(email)
}

/// The part of `mail.from` after the `@`, for Message-IDs.
pub fn id_domain(cfg: &MailConfig) -> String {
    from_mailbox(cfg)
        .map(|m| m.email.domain().to_string())
        .unwrap_or_else(|_| "kamwatch.invalid".to_string())
}

/// The sender from `mail.from`.
pub fn from_mailbox(cfg: &MailConfig) -> Result<Mailbox> {
    cfg.from.parse().with_context(|| {
        format!(
            "mail.from {:?} is not a mail address like `kamwatch <kamwatch@example.com>`",
            cfg.from
        )
    })
}
