//! SMTP errors: why a conversation failed, naming the server, whether a
//! retry can help, and a hint for the admin naming the setting to check.
//! Pure.

use crate::config::SmtpConfig;

use super::settings::port;

/// Why a conversation with the server failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// No answer to one command within `timeout_secs`.
    #[error("no answer within {0} s (timeout_secs)")]
    NoAnswer(u64),
    /// The message as a whole took longer than `message_deadline_secs`.
    #[error("the message was not through within {0} s (message_deadline_secs)")]
    Deadline(u64),
    /// The daemon is stopping.
    #[error("given up because kamwatch is stopping")]
    Stopped,
    /// Connecting failed or the connection broke.
    #[error("{0}")]
    Network(String),
    /// The TLS handshake or STARTTLS failed.
    #[error("TLS failed: {0}")]
    Tls(String),
    /// The server refused the login.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The server answered with an error code.
    #[error("the server answered {after} with {code} {text}")]
    Reply {
        code: u16,
        text: String,
        after: String,
    },
    /// The message is larger than the server takes.
    #[error("the message is too large for the server: {0}")]
    TooBig(String),
    /// The server said something that is not SMTP.
    #[error("{0}")]
    Protocol(String),
    /// Writing the message into the mail folder (`mail.dir`, no server)
    /// failed.
    #[error("{0}")]
    Folder(String),
}

impl Failure {
    /// What the failure is of: the SMTP server, or the mail folder.
    fn label(&self) -> &'static str {
        match self {
            Failure::Folder(_) => "mail folder",
            _ => "smtp",
        }
    }
}

/// A failed conversation, naming the server.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} {server}: {failure}", .failure.label())]
pub struct Error {
    pub server: String,
    pub failure: Failure,
}

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
            Failure::Folder(_) => {
                "check mail.dir: the folder must be writable by kamwatch and its disk not full"
                    .into()
            }
            _ => "check mail.smtp in the config".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mail_folder_error_is_not_called_smtp() {
        let e = Error {
            server: "/var/lib/kamwatch/mail".into(),
            failure: Failure::Folder("No space left on device".into()),
        };
        assert_eq!(
            e.to_string(),
            "mail folder /var/lib/kamwatch/mail: No space left on device"
        );
        assert!(!e.is_permanent() && !e.is_timeout());
        assert!(
            e.hint(&serde_yaml::from_str::<SmtpConfig>("host: localhost").unwrap())
                .contains("mail.dir")
        );
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
