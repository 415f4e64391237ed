//! Service: what the daemon tells its supervisor and the files that make it
//! one process per state folder.
//!
//! `Notifier` sends systemd's notifications (READY, RELOADING with its
//! CLOCK_MONOTONIC timestamp, STOPPING, STATUS, WATCHDOG) through the
//! `sd-notify` crate over `$NOTIFY_SOCKET`; without the variable every call
//! is a no-op, so the daemon runs the same under a terminal. `Lock` is an
//! exclusive lock on `<database>.lock` holding the daemon's pid, which
//! `kamwatch status` reads to tell whether a daemon is running. Touches only
//! that socket and that lock file.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use sd_notify::NotifyState;

/// Sends sd_notify messages when started by systemd with Type=notify.
pub struct Notifier {
    active: bool,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; a no-op notifier when it is not set.
    pub fn from_env() -> Notifier {
        Notifier {
            active: std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.active {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!("sd_notify {states:?} failed: {e}");
        }
    }

    pub fn ready(&self) {
        self.send(&[NotifyState::Ready, NotifyState::MainPid(std::process::id())]);
    }

    /// RELOADING with the time it began on CLOCK_MONOTONIC, as systemd
    /// wants for `Type=notify-reload`.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// One line for `systemctl status`.
    pub fn status(&self, text: &str) {
        self.send(&[NotifyState::Status(&status_line(text))]);
    }

    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}

/// A STATUS text on one line: a newline would end the message's field.
fn status_line(text: &str) -> String {
    text.chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect()
}

/// The watchdog interval systemd asked for (`$WATCHDOG_USEC`, for this
/// pid); none when it is zero.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// The lock that makes one daemon per database.
pub struct Lock {
    _file: File,
    pub path: PathBuf,
}

/// Where the lock of the daemon using `database` lives.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut p = database.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

impl Lock {
    /// Takes the lock or says which process holds it.
    pub fn acquire(database: &Path) -> Result<Lock> {
        let path = lock_path(database);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        if file.try_lock().is_err() {
            let pid = holder(&path)
                .map(|p| p.to_string())
                .unwrap_or_else(|| "?".into());
            anyhow::bail!(
                "another kamwatch daemon (pid {pid}) is already running on {}; stop it first (systemctl stop kamwatch) or use another database",
                database.display()
            );
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(Lock { _file: file, path })
    }
}

/// The pid of the daemon holding the lock, or `None` when none runs.
pub fn holder(lock: &Path) -> Option<u32> {
    let mut file = File::open(lock).ok()?;
    if file.try_lock_shared().is_ok() {
        return None; // nobody holds it
    }
    let mut s = String::new();
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_and_tells_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("k.db");
        assert_eq!(holder(&lock_path(&db)), None);
        let lock = Lock::acquire(&db).unwrap();
        assert_eq!(holder(&lock.path), Some(std::process::id()));
        let second = Lock::acquire(&db).err().unwrap().to_string();
        assert!(second.contains("already running"), "{second}");
        drop(lock);
        assert_eq!(holder(&lock_path(&db)), None);
        assert!(Lock::acquire(&db).is_ok());
    }

    #[test]
    fn status_is_one_line() {
        assert_eq!(
            status_line("evaluated\n42 accounts"),
            "evaluated 42 accounts"
        );
    }
}
