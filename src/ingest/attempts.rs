//! Attempts: a small record beside the database (`<db>.ingesting`),
//! written and fsynced before a file's rows are read, of files whose
//! ingest is under way: one the process died on (abort, out of memory,
//! kill -9) is recognised at the next start, and the daemon then ingests
//! it in a child process, so that a file that kills its reader is rejected
//! instead of retried forever. Shared by processes under a flock. Touches
//! only the record and its lock file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// An exclusive flock on `f` (`wait` false: only if free). True if held.
pub(super) fn lock(f: &std::fs::File, wait: bool) -> bool {
    use std::os::fd::AsRawFd as _;
    let op = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(f.as_raw_fd(), op) == 0 }
}

/// The record of files whose ingest is under way: one line per file,
/// `<hash> <deaths> <name as a Rust string literal>`.
pub struct Attempts {
    path: PathBuf,
}

impl Attempts {
    /// The record for the database at `database`: `<database>.ingesting`.
    pub fn new(database: &Path) -> Attempts {
        let mut p = database.as_os_str().to_owned();
        p.push(".ingesting");
        Attempts {
            path: PathBuf::from(p),
        }
    }

    /// Forgets the files `known` says are filed already (a process that
    /// died after filing a file but before ending its record).
    pub fn prune(&self, known: impl Fn(&str) -> bool) {
        self.locked(|| self.prune_unlocked(known))
    }

    fn prune_unlocked(&self, known: impl Fn(&str) -> bool) {
        let mut entries = self.read();
        let len = entries.len();
        entries.retain(|(h, _, _)| !known(h));
        if entries.len() != len
            && let Err(e) = self.write(&entries)
        {
            tracing::warn!("{e:#}");
        }
    }

    fn read(&self) -> Vec<(String, u32, String)> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut parts = l.splitn(3, ' ');
                let hash = parts.next()?.to_string();
                let n = parts.next()?.parse().ok()?;
                Some((hash, n, parts.next().unwrap_or("").to_string()))
            })
            .collect()
    }

    fn write(&self, entries: &[(String, u32, String)]) -> Result<()> {
        if entries.is_empty() {
            match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", self.path.display()));
                }
                _ => return Ok(()),
            }
        }
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let mut text = String::new();
        for (h, n, name) in entries {
            text.push_str(&format!("{h} {n} {name}\n"));
        }
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Holds an exclusive flock on `<record>.lock` while `f` reads and
    /// rewrites the record: several processes (the daemon, `kamwatch
    /// ingest`) may share it.
    fn locked<T>(&self, f: impl FnOnce() -> T) -> T {
        let mut p = self.path.as_os_str().to_owned();
        p.push(".lock");
        let guard = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(PathBuf::from(p));
        if let Ok(g) = &guard {
            lock(g, true);
        }
        let out = f();
        drop(guard);
        out
    }

    /// How many ingests of `hash` the process died in.
    pub fn deaths(&self, hash: &str) -> u32 {
        self.read()
            .iter()
            .find(|(h, _, _)| h == hash)
            .map_or(0, |e| e.1)
    }

    /// Notes (durably) that the ingest of `hash` starts; returns how many
    /// earlier ingests of it the process died in.
    pub fn begin(&self, hash: &str, file_name: &str) -> Result<u32> {
        self.locked(|| self.begin_unlocked(hash, file_name))
    }

    fn begin_unlocked(&self, hash: &str, file_name: &str) -> Result<u32> {
        let mut entries = self.read();
        let died = match entries.iter_mut().find(|(h, _, _)| h == hash) {
            Some(e) => {
                let died = e.1;
                e.1 += 1;
                died
            }
            None => {
                entries.push((hash.to_string(), 1, format!("{file_name:?}")));
                0
            }
        };
        // Bounded: the oldest entries go first.
        let len = entries.len();
        if len > 64 {
            entries.drain(..len - 64);
        }
        self.write(&entries)?;
        Ok(died)
    }

    /// Notes that the ingest of `hash` ended (in whatever outcome) with the
    /// process alive.
    pub fn end(&self, hash: &str) {
        self.locked(|| self.end_unlocked(hash))
    }

    fn end_unlocked(&self, hash: &str) {
        let mut entries = self.read();
        let len = entries.len();
        entries.retain(|(h, _, _)| h != hash);
        if entries.len() != len
            && let Err(e) = self.write(&entries)
        {
            tracing::warn!("{e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_count_deaths_until_ended() {
        let dir = tempfile::tempdir().unwrap();
        let a = Attempts::new(&dir.path().join("k.db"));
        assert_eq!(a.begin("h1", "a\nb.csv").unwrap(), 0);
        assert_eq!(a.begin("h2", "c.csv").unwrap(), 0);
        // The process "died" in h1 twice more.
        assert_eq!(a.begin("h1", "a\nb.csv").unwrap(), 1);
        assert_eq!(a.begin("h1", "a\nb.csv").unwrap(), 2);
        assert_eq!(a.deaths("h1"), 3);
        a.end("h2");
        assert_eq!(a.deaths("h2"), 0);
        assert_eq!(a.begin("h2", "c.csv").unwrap(), 0);
        a.end("h1");
        a.end("h2");
        assert!(!dir.path().join("k.db.ingesting").exists());
    }
}
