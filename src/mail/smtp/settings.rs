//! SMTP settings: the port, the TLS roots (with `mail.smtp.ca_file`), and
//! the AUTH password from an environment variable or a private file, read
//! once per delivery pass and kept only in memory (never logged). Reads the
//! password and CA files.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::config::{Loaded, SmtpConfig, SmtpSecurity, read_password_file};

/// The port used when the config gives none.
pub fn port(smtp: &SmtpConfig) -> u16 {
    smtp.port.unwrap_or(match smtp.security {
        SmtpSecurity::Starttls => 587,
        SmtpSecurity::Tls => 465,
        SmtpSecurity::None => 25,
    })
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
    pub(super) credentials: Option<(String, String)>,
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
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
