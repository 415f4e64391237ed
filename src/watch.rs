//! Watch: finds files in the inbox and says when each one is complete.
//!
//! A notify watcher reports changes; a scan lists the inbox at start-up and
//! whenever the watcher asks for a rescan. `Settler` hands a file over only
//! once its size and mtime have stayed the same for the settle interval, so
//! a half-copied export is never read. Dotfiles, `*.tmp`, `*.part` and
//! Office lock files (`~$*`) are ignored. Reads the inbox folder; writes
//! nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use notify::{Event, EventKind, RecursiveMode, Watcher as _};

/// True for names that are never data: temp files, lock files, dotfiles.
pub fn is_ignored(name: &str) -> bool {
    name.starts_with('.')
        || name.starts_with("~$")
        || name.ends_with(".tmp")
        || name.ends_with(".part")
        || name.ends_with(".crdownload")
        || name.ends_with('~')
}

/// Every candidate file directly in `inbox`, sorted by name.
pub fn scan(inbox: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(inbox)
        .with_context(|| format!("reading the inbox {}", inbox.display()))?
    {
        let e = e?;
        if !e.file_type()?.is_file() {
            continue;
        }
        let p = e.path();
        if p.file_name()
            .is_some_and(|n| !is_ignored(&n.to_string_lossy()))
        {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// What the watcher tells the daemon.
#[derive(Debug)]
pub enum Change {
    /// Something happened to this path.
    Path(PathBuf),
    /// Events were lost: list the folder again.
    Rescan,
}

/// Starts a native watcher on `inbox`; changes go to `send`.
pub fn start(
    inbox: &Path,
    send: impl Fn(Change) + Send + 'static,
) -> Result<notify::RecommendedWatcher> {
    let mut w = notify::recommended_watcher(move |res: notify::Result<Event>| match res {
        Ok(ev) => {
            if ev.need_rescan() {
                send(Change::Rescan);
            }
            if matches!(ev.kind, EventKind::Access(_)) {
                return;
            }
            for p in ev.paths {
                send(Change::Path(p));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "watcher error; rescanning the inbox");
            send(Change::Rescan);
        }
    })
    .context("starting the inbox watcher")?;
    w.watch(inbox, RecursiveMode::NonRecursive).map_err(|e| {
        let hint = if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
            "; the inotify watch limit is reached: raise it with `sysctl fs.inotify.max_user_watches=524288`"
        } else {
            ""
        };
        anyhow::anyhow!("watching {}: {e}{hint}", inbox.display())
    })?;
    Ok(w)
}

/// Tracks candidate files until they stop changing.
pub struct Settler {
    settle: Duration,
    seen: HashMap<PathBuf, (u64, Option<SystemTime>, Instant)>,
}

impl Settler {
    pub fn new(settle: Duration) -> Settler {
        Settler {
            settle,
            seen: HashMap::new(),
        }
    }

    /// Notes that `path` may have changed.
    pub fn touch(&mut self, path: PathBuf) {
        let ignored = path
            .file_name()
            .is_none_or(|n| is_ignored(&n.to_string_lossy()));
        if ignored {
            return;
        }
        self.seen
            .entry(path)
            .or_insert((u64::MAX, None, Instant::now()));
    }

    pub fn set_settle(&mut self, settle: Duration) {
        self.settle = settle;
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The files that have been stable for the settle interval, sorted;
    /// they are forgotten (the caller moves them out of the inbox).
    pub fn ready(&mut self, now: Instant) -> Vec<PathBuf> {
        let mut out = Vec::new();
        self.seen.retain(|path, (size, mtime, since)| {
            let Ok(meta) = std::fs::metadata(path) else {
                return false; // gone (moved away or deleted)
            };
            if !meta.is_file() {
                return false;
            }
            let (s, m) = (meta.len(), meta.modified().ok());
            if s != *size || m != *mtime {
                *size = s;
                *mtime = m;
                *since = now;
                return true;
            }
            if now.duration_since(*since) >= self.settle {
                out.push(path.clone());
                return false;
            }
            true
        });
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_temp_names() {
        for n in [".x.csv", "~$订单.xlsx", "a.csv.tmp", "a.part", "a.csv~"] {
            assert!(is_ignored(n), "{n}");
        }
        assert!(!is_ignored("销售明细_2026.csv"));
    }

    #[test]
    fn settles_only_after_stable_interval() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(&p, "x").unwrap();
        let mut s = Settler::new(Duration::from_millis(100));
        s.touch(p.clone());
        let t0 = Instant::now();
        assert!(s.ready(t0).is_empty()); // first look records size and mtime
        assert!(s.ready(t0 + Duration::from_millis(50)).is_empty());
        std::fs::write(&p, "xy").unwrap(); // still growing
        assert!(s.ready(t0 + Duration::from_millis(120)).is_empty());
        assert!(s.ready(t0 + Duration::from_millis(200)).is_empty());
        assert_eq!(s.ready(t0 + Duration::from_millis(230)), vec![p]);
        assert!(s.is_empty());
    }
}
