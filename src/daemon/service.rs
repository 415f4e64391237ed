//! Service: what the daemon tells its supervisor and the files that make it
//! one process per state folder.
//!
//! `Notifier` speaks the systemd notify protocol over `$NOTIFY_SOCKET`
//! (READY, RELOADING, STOPPING, STATUS, WATCHDOG); without the variable every
//! call is a no-op, so the daemon runs the same under a terminal. `Lock` is an
//! exclusive lock on `<database>.lock` holding the daemon's pid, which
//! `kamwatch status` reads to tell whether a daemon is running. Touches only
//! that socket and that lock file.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

/// Sends sd_notify messages when started by systemd with Type=notify.
pub struct Notifier {
    sock: Option<(UnixDatagram, String)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; a no-op notifier when it is not set.
    pub fn from_env() -> Notifier {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier { sock: None };
        };
        let path = path.to_string_lossy().into_owned();
        match UnixDatagram::unbound() {
            Ok(s) => Notifier {
                sock: Some((s, path)),
            },
            Err(e) => {
                tracing::warn!("cannot create the systemd notify socket: {e}");
                Notifier { sock: None }
            }
        }
    }

    pub fn is_active(&self) -> bool {
        self.sock.is_some()
    }

    fn send(&self, msg: &str) {
        let Some((sock, path)) = &self.sock else {
            return;
        };
        let res = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|addr| sock.send_to_addr(msg.as_bytes(), &addr))
        } else {
            sock.send_to(msg.as_bytes(), path)
        };
        if let Err(e) = res {
            tracing::debug!("sd_notify {msg:?} failed: {e}");
        }
    }

    pub fn ready(&self) {
        self.send(&format!("READY=1\nMAINPID={}", std::process::id()));
    }

    pub fn reloading(&self) {
        let usec = monotonic_usec();
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// One line for `systemctl status`.
    pub fn status(&self, text: &str) {
        let line: String = text
            .chars()
            .map(|c| if c == '\n' { ' ' } else { c })
            .collect();
        self.send(&format!("STATUS={line}"));
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}

/// The watchdog interval systemd asked for (`$WATCHDOG_USEC`, for this pid).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

fn monotonic_usec() -> u64 {
    // CLOCK_MONOTONIC counts from boot like /proc/uptime; reading the file
    // spares unsafe FFI and is precise enough for RELOADING's timestamp.
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .and_then(|s| s.parse::<f64>().ok())
        .map(|secs| (secs * 1e6) as u64)
        .unwrap_or(0)
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
    fn notifier_speaks_the_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            sock: Some((
                UnixDatagram::unbound().unwrap(),
                path.to_string_lossy().into_owned(),
            )),
        };
        n.ready();
        n.status("evaluated\n42 accounts");
        let mut buf = [0u8; 256];
        let k = server.recv(&mut buf).unwrap();
        let first = std::str::from_utf8(&buf[..k]).unwrap();
        assert!(first.starts_with("READY=1\nMAINPID="), "{first}");
        let k = server.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..k]).unwrap(),
            "STATUS=evaluated 42 accounts"
        );
    }
}
