//! SMTP connection settings: STARTTLS (required, the default), implicit
//! TLS, or plaintext to loopback; an extra CA from `mail.smtp.ca_file`;
//! the AUTH password from an environment variable or a private file (never
//! logged); and `kamwatch mail test`, which reports what the server said.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};

use crate::config::{Loaded, SmtpConfig, SmtpSecurity};

/// The port used when the config gives none.
pub fn port(smtp: &SmtpConfig) -> u16 {
    smtp.port.unwrap_or(match smtp.security {
        SmtpSecurity::Starttls => 587,
        SmtpSecurity::Tls => 465,
        SmtpSecurity::None => 25,
    })
}

/// Reads the password from a file that only its owner may read.
pub fn read_password_file(path: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "mail.smtp.password_file {}: cannot read it; create it with the SMTP password on its first line",
            path.display()
        )
    })?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "mail.smtp.password_file {} can be read by group or others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading mail.smtp.password_file {}", path.display()))?;
    let password = text.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        bail!(
            "mail.smtp.password_file {} is empty; put the SMTP password on its first line",
            path.display()
        );
    }
    Ok(password)
}

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

fn tls_parameters(cfg: &Loaded, smtp: &SmtpConfig) -> Result<TlsParameters> {
    let mut b = TlsParameters::builder(smtp.host.clone());
    if let Some(f) = &smtp.ca_file {
        let f = cfg.path(f);
        let pem = std::fs::read(&f)
            .with_context(|| format!("reading mail.smtp.ca_file {}", f.display()))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            anyhow::anyhow!(
                "mail.smtp.ca_file {}: not a PEM certificate ({e}); give the CA certificate as -----BEGIN CERTIFICATE-----",
                f.display()
            )
        })?;
        b = b.add_root_certificate(cert);
    }
    b.build_rustls()
        .with_context(|| format!("setting up TLS for {}", smtp.host))
}

/// The transport for `smtp`. Its connection pool keeps one connection
/// open across the messages of a delivery pass.
pub fn transport(cfg: &Loaded, smtp: &SmtpConfig) -> Result<SmtpTransport> {
    let tls = match smtp.security {
        SmtpSecurity::Starttls => Tls::Required(tls_parameters(cfg, smtp)?),
        SmtpSecurity::Tls => Tls::Wrapper(tls_parameters(cfg, smtp)?),
        SmtpSecurity::None => Tls::None,
    };
    let mut b = SmtpTransport::builder_dangerous(&smtp.host)
        .port(port(smtp))
        .tls(tls)
        .timeout(Some(Duration::from_secs(smtp.timeout_secs)));
    if let (Some(user), Some(p)) = (&smtp.user, password(cfg, smtp)?) {
        b = b.credentials(Credentials::new(user.clone(), p));
    }
    Ok(b.build())
}

/// A hint for a failed send, from what the error looks like.
pub fn hint(e: &lettre::transport::smtp::Error, smtp: &SmtpConfig) -> String {
    let text = format!("{e:?} {e}").to_lowercase();
    let p = port(smtp);
    if text.contains("starttls") || (e.is_response() && text.contains("tls")) {
        return "the server did not offer STARTTLS; use `security: tls` (port 465) if it expects TLS from the start".into();
    }
    let tls = [
        "certificate",
        "handshake",
        "corrupt message",
        "invalidcontenttype",
        "alert",
    ];
    if e.is_tls() || tls.iter().any(|w| text.contains(w)) {
        return format!(
            "the TLS handshake failed: if the server uses a company or self-signed certificate, set mail.smtp.ca_file; if port {p} expects STARTTLS, use `security: starttls` (587), if it expects TLS from the start, `security: tls` (465)"
        );
    }
    if text.contains("refused") {
        return format!(
            "nothing listens on {}:{p}; check mail.smtp.host and port",
            smtp.host
        );
    }
    if e.is_timeout() || text.contains("timed out") {
        return format!(
            "no answer from {}:{p} within {} s; check the port (587 starttls, 465 tls) and any firewall",
            smtp.host, smtp.timeout_secs
        );
    }
    if let Some(code) = e.status() {
        let c = code.to_string();
        if c.starts_with("535") || c.starts_with("534") || c.starts_with("530") {
            return "authentication failed or is required: check mail.smtp.user and the password"
                .into();
        }
        if c.starts_with('5') {
            return "the server refused for good: check mail.from and the recipient address".into();
        }
        return "the server refused for now: try again later".into();
    }
    "check mail.smtp in the config".into()
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
        "<test-{}@kamwatch>",
        &blake3::hash(format!("{to}{}", chrono::Utc::now()).as_bytes()).to_hex()[..24]
    );
    let msg = super::compose(
        &from,
        &[super::Recipient {
            name: String::new(),
            email: address.to_string(),
        }],
        &id,
        &rendered,
    )?;
    let t = transport(cfg, smtp)?;
    match t.send(&msg) {
        Ok(r) => Ok(format!(
            "{}:{} ({:?}) accepted the test message to {to}: {} {}",
            smtp.host,
            port(smtp),
            smtp.security,
            r.code(),
            r.message().collect::<Vec<_>>().join(" ")
        )),
        Err(e) => bail!(
            "sending to {}:{} ({:?}) failed: {e}\nhint: {}",
            smtp.host,
            port(smtp),
            smtp.security,
            hint(&e, smtp)
        ),
    }
}
