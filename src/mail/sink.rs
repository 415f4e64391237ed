//! Sink: where delivered messages go — an SMTP server, with the session
//! kept open from message to message within a pass and one retry on a
//! fresh connection when a kept one was closed meanwhile, or a folder of
//! .eml files written atomically (`mail.dir` without SMTP settings).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};

use super::smtp;
use crate::config::Loaded;

/// Where messages go.
pub enum Sink {
    Dir(std::path::PathBuf),
    Smtp(Box<SmtpSink>),
}

/// An SMTP server and the session open to it, reused from message to
/// message within a delivery pass.
pub struct SmtpSink {
    settings: smtp::Settings,
    session: Option<smtp::Session>,
    stop: Arc<AtomicBool>,
}

impl Sink {
    /// The sink the config asks for: SMTP if configured, else the folder.
    /// `stop` makes a conversation give up at once (the daemon stops).
    pub fn from_config(cfg: &Loaded, stop: Arc<AtomicBool>) -> Result<Sink> {
        match &cfg.cfg.mail.smtp {
            None => Ok(Sink::Dir(cfg.mail_dir())),
            Some(s) => Ok(Sink::Smtp(Box::new(SmtpSink {
                settings: smtp::Settings::from_config(cfg, s)?,
                session: None,
                stop,
            }))),
        }
    }

    /// Ends the session politely, if one is open.
    pub fn close(&mut self) {
        if let Sink::Smtp(s) = self
            && let Some(session) = s.session.take()
        {
            session.quit();
        }
    }

    pub(super) fn stopping(&self) -> bool {
        matches!(self, Sink::Smtp(s) if s.stop.load(Ordering::Relaxed))
    }

    /// The largest message the server said it takes, once connected.
    pub(super) fn size_limit(&self) -> Option<u64> {
        match self {
            Sink::Smtp(s) => s.session.as_ref().and_then(|x| x.size_limit),
            Sink::Dir(_) => None,
        }
    }

    /// Sends `mime` to `to`; what became of each recipient.
    pub(super) fn send(
        &mut self,
        file_name: &str,
        from: &str,
        to: &[String],
        mime: &[u8],
    ) -> std::result::Result<Vec<(String, smtp::Rcpt)>, smtp::Error> {
        match self {
            Sink::Dir(dir) => {
                // Named by outbox id: a retry after a crash rewrites the same
                // file instead of adding a second one.
                write_atomic(dir, file_name, mime).map_err(|e| smtp::Error {
                    server: dir.display().to_string(),
                    failure: smtp::Failure::Folder(format!("{e:#}")),
                })?;
                Ok(to.iter().map(|t| (t.clone(), smtp::Rcpt::Sent)).collect())
            }
            Sink::Smtp(s) => {
                let reused = s.session.is_some();
                let session = match s.session.as_mut() {
                    Some(x) => x,
                    None => s.session.insert(smtp::Session::open(&s.settings, &s.stop)?),
                };
                let r = session.send(from, to, mime);
                let data_sent = session.data_sent;
                if r.is_err() {
                    // The conversation is in an unknown state: a new one
                    // for the next message.
                    s.session = None;
                }
                match r {
                    // A connection kept from the last message may have been
                    // closed by the server meanwhile (idle, or "421 too many
                    // messages"): once more on a fresh one, if the data had
                    // not gone out yet.
                    Err(e)
                        if reused
                            && !data_sent
                            && matches!(
                                &e.failure,
                                smtp::Failure::Network(_)
                                    | smtp::Failure::Protocol(_)
                                    | smtp::Failure::Reply { code: 421, .. }
                            ) =>
                    {
                        let mut fresh = smtp::Session::open(&s.settings, &s.stop)?;
                        let r = fresh.send(from, to, mime);
                        if r.is_ok() {
                            s.session = Some(fresh);
                        }
                        r
                    }
                    r => r,
                }
            }
        }
    }
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}
