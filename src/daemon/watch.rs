//! Watch: finds files in the inbox and says when each one is complete.
//!
//! A notify watcher (inotify, or a polling one for network shares) reports
//! changes; a scan lists the inbox at start-up and whenever the watcher asks
//! for a rescan. `Settler` hands a file over only once its size and mtime
//! have stayed the same for the settle interval, so a half-copied export is
//! never read — or at once when it was renamed into the inbox, which is how
//! a careful sender says it is complete. Dotfiles, `*.tmp`, `*.part` and
//! Office lock files (`~$*`) are ignored. Symlinks are never followed:
//! the scan and the settler look at the link itself and hand it over like
//! any other entry (ingest rejects it unread). Whether a writer still has
//! a file open is asked by ingest when it takes it (a read lease); the
//! settle interval is what remains where that cannot be known. Reads the
//! inbox folder; writes nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use notify::event::{ModifyKind, RenameMode};
use notify::{Event, EventKind, RecursiveMode, Watcher as _};

use crate::config::WatchConfig;

/// True for names that are never data: temp files, lock files, dotfiles.
pub fn is_ignored(name: &str) -> bool {
    name.starts_with('.')
        || name.starts_with("~$")
        || name.ends_with(".tmp")
        || name.ends_with(".part")
        || name.ends_with(".crdownload")
        || name.ends_with('~')
}

/// Every candidate entry directly in `inbox`, sorted by name: files, and
/// also symlinks, FIFOs and the like (never followed), which ingest
/// rejects with a reason — the watcher hands them over the same way.
pub fn scan(inbox: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(inbox)
        .with_context(|| format!("reading the inbox {}", inbox.display()))?
    {
        let e = e?;
        if e.file_type()?.is_dir() {
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
#[derive(Debug, PartialEq)]
pub enum Change {
    /// Something happened to this path.
    Path(PathBuf),
    /// This path was renamed into the inbox: it is complete now.
    Renamed(PathBuf),
    /// Events were lost: list the folder again.
    Rescan,
}

/// The changes one notify event stands for.
pub fn changes(ev: Event) -> Vec<Change> {
    let mut out = Vec::new();
    if ev.need_rescan() {
        out.push(Change::Rescan);
    }
    match ev.kind {
        EventKind::Access(_) => {}
        // From another folder: only the destination is reported.
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
            out.extend(ev.paths.into_iter().map(Change::Renamed));
        }
        // Within the inbox (`x.csv.tmp` -> `x.csv`): [from, to].
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
            let mut paths = ev.paths.into_iter();
            if let Some(from) = paths.next() {
                out.push(Change::Path(from));
            }
            out.extend(paths.map(Change::Renamed));
        }
        _ => out.extend(ev.paths.into_iter().map(Change::Path)),
    }
    out
}

/// The watcher in use; dropping it stops watching.
pub enum InboxWatcher {
    Native(notify::RecommendedWatcher),
    Poll(notify::PollWatcher),
}

/// Starts a native watcher on `inbox`; changes go to `send`.
pub fn start(inbox: &Path, send: impl Fn(Change) + Send + 'static) -> Result<InboxWatcher> {
    start_with(inbox, &WatchConfig::default(), send)
}

/// Starts the watcher `cfg` asks for (native, or polling every
/// `poll_interval_ms`) on `inbox`; changes go to `send`.
pub fn start_with(
    inbox: &Path,
    cfg: &WatchConfig,
    send: impl Fn(Change) + Send + 'static,
) -> Result<InboxWatcher> {
    let handler = move |res: notify::Result<Event>| match res {
        Ok(ev) => {
            for c in changes(ev) {
                send(c);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "watcher error; rescanning the inbox");
            send(Change::Rescan);
        }
    };
    let fail = |e: notify::Error| anyhow::anyhow!("watching {}: {}", inbox.display(), explain(&e));
    let mut w = if cfg.poll {
        let c = notify::Config::default()
            .with_poll_interval(Duration::from_millis(cfg.poll_interval_ms));
        InboxWatcher::Poll(notify::PollWatcher::new(handler, c).map_err(fail)?)
    } else {
        InboxWatcher::Native(notify::recommended_watcher(handler).map_err(fail)?)
    };
    match &mut w {
        InboxWatcher::Native(n) => n.watch(inbox, RecursiveMode::NonRecursive),
        InboxWatcher::Poll(p) => p.watch(inbox, RecursiveMode::NonRecursive),
    }
    .map_err(fail)?;
    Ok(w)
}

/// A watcher error with what to do about it: the inotify limits name the
/// sysctl that raises them.
pub fn explain(e: &notify::Error) -> String {
    let hint = match &e.kind {
        notify::ErrorKind::MaxFilesWatch => {
            "; the inotify watch limit is reached: raise it with `sysctl fs.inotify.max_user_watches=524288` (persist it in /etc/sysctl.d/), or set `watch.poll: true`"
        }
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(24) => {
            "; too many inotify instances: raise them with `sysctl fs.inotify.max_user_instances=1024` (persist it in /etc/sysctl.d/), or set `watch.poll: true`"
        }
        notify::ErrorKind::PathNotFound => {
            "; create the inbox folder, or fix `inbox` in the config"
        }
        _ => "",
    };
    format!("{e}{hint}")
}

/// What a look at a path found (`symlink_metadata`: a link is looked at
/// as a link, never followed); `None` in [`looks`] when it is gone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Look {
    pub dir: bool,
    pub size: u64,
    pub mtime: Option<SystemTime>,
}

/// Looks at each path: the only part of settling that touches the disk,
/// so the daemon runs it off its event loop.
pub fn looks(paths: Vec<PathBuf>) -> Vec<(PathBuf, Option<Look>)> {
    paths
        .into_iter()
        .map(|p| {
            let look = std::fs::symlink_metadata(&p).ok().map(|m| Look {
                dir: m.is_dir(),
                size: m.len(),
                mtime: m.modified().ok(),
            });
            (p, look)
        })
        .collect()
}

/// The shortest pause between two looks at a file that keeps changing.
const MIN_LOOK: Duration = Duration::from_millis(50);

/// Tracks candidate files until they stop changing. A file is looked at
/// when it is first noted, then once a settle interval after the last
/// change seen; it is handed over when two looks a settle interval apart
/// found the same size and mtime. [`Settler::due`] says what to look at
/// and [`Settler::observe`] takes what the looks found, so the looking can
/// happen elsewhere; [`Settler::ready`] does both in place.
pub struct Settler {
    settle: Duration,
    /// Size and mtime at the last look (`u64::MAX`, `None` before the
    /// first), and since when they are so (the time it was noted, before).
    seen: HashMap<PathBuf, (u64, Option<SystemTime>, Instant)>,
    /// Renamed in: handed over at the next look, unless they vanish.
    complete: Vec<PathBuf>,
}

impl Settler {
    pub fn new(settle: Duration) -> Settler {
        Settler {
            settle,
            seen: HashMap::new(),
            complete: Vec::new(),
        }
    }

    /// Notes that `path` was renamed into the inbox, so it is complete.
    pub fn renamed(&mut self, path: PathBuf) {
        let ignored = path
            .file_name()
            .is_none_or(|n| is_ignored(&n.to_string_lossy()));
        if ignored {
            return;
        }
        self.seen.remove(&path);
        if !self.complete.contains(&path) {
            self.complete.push(path);
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
        self.seen.is_empty() && self.complete.is_empty()
    }

    /// When a file is to be looked at next.
    fn due_at(&self, size: u64, mtime: Option<SystemTime>, since: Instant) -> Instant {
        if size == u64::MAX && mtime.is_none() {
            since // never looked at: at once
        } else {
            since + self.settle.max(MIN_LOOK)
        }
    }

    /// The earliest time a file is to be looked at; `now` when one was
    /// renamed in.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        if !self.complete.is_empty() {
            return Some(now);
        }
        self.seen
            .values()
            .map(|(size, mtime, since)| self.due_at(*size, *mtime, *since))
            .min()
    }

    /// The files to look at now.
    pub fn due(&self, now: Instant) -> Vec<PathBuf> {
        let mut out = self.complete.clone();
        out.extend(
            self.seen
                .iter()
                .filter(|(_, (size, mtime, since))| self.due_at(*size, *mtime, *since) <= now)
                .map(|(p, _)| p.clone()),
        );
        out
    }

    /// Takes what looks at `now` found; returns the files that are
    /// complete, sorted, and forgets them (the caller moves them out of the
    /// inbox). Gone paths and folders are forgotten too.
    pub fn observe(&mut self, now: Instant, looked: Vec<(PathBuf, Option<Look>)>) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for (path, look) in looked {
            let is_entry = look.is_some_and(|l| !l.dir);
            if let Some(i) = self.complete.iter().position(|p| *p == path) {
                self.complete.remove(i);
                if is_entry {
                    out.push(path.clone());
                }
            }
            let Some((size, mtime, since)) = self.seen.get_mut(&path) else {
                continue;
            };
            let Some(look) = look.filter(|_| is_entry) else {
                self.seen.remove(&path); // gone (moved away or deleted), or a folder
                continue;
            };
            if look.size != *size || look.mtime != *mtime {
                *size = look.size;
                *mtime = look.mtime;
                *since = now;
            } else if now.duration_since(*since) >= self.settle {
                self.seen.remove(&path);
                out.push(path);
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The files that have been stable for the settle interval, sorted;
    /// they are forgotten (the caller moves them out of the inbox). Looks
    /// at the files due in place.
    pub fn ready(&mut self, now: Instant) -> Vec<PathBuf> {
        let looked = looks(self.due(now));
        self.observe(now, looked)
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

    /// The daemon sleeps until a file is due instead of looking at every
    /// file on a tick: a file noted is due at once, then not before a
    /// settle interval after the last change seen; the looks can be taken
    /// elsewhere and handed to `observe`.
    #[test]
    fn files_are_due_once_per_settle_interval() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(&p, "x").unwrap();
        let settle = Duration::from_millis(300);
        let mut s = Settler::new(settle);
        assert_eq!(s.next_due(Instant::now()), None);
        s.touch(p.clone());
        let t0 = Instant::now();
        assert!(s.next_due(t0).is_some_and(|t| t <= t0));
        assert_eq!(s.due(t0), vec![p.clone()]);
        assert!(s.observe(t0, looks(s.due(t0))).is_empty());
        // Looked at: next due one settle interval later, not before.
        assert_eq!(s.next_due(t0), Some(t0 + settle));
        assert!(s.due(t0 + Duration::from_millis(299)).is_empty());
        // A look that finds it changed starts the interval again.
        std::fs::write(&p, "xy").unwrap();
        let t1 = t0 + settle;
        assert!(s.observe(t1, looks(s.due(t1))).is_empty());
        assert_eq!(s.next_due(t1), Some(t1 + settle));
        // Unchanged a settle interval later: complete.
        let t2 = t1 + settle;
        assert_eq!(s.observe(t2, looks(s.due(t2))), vec![p.clone()]);
        assert!(s.is_empty());
        // Gone before its look: forgotten, never handed over.
        s.touch(p.clone());
        std::fs::remove_file(&p).unwrap();
        let t3 = Instant::now();
        assert!(s.observe(t3, looks(s.due(t3))).is_empty());
        assert!(s.is_empty());
    }

    #[test]
    fn renamed_in_is_ready_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(&p, "x").unwrap();
        let mut s = Settler::new(Duration::from_secs(3600));
        s.touch(p.clone());
        s.renamed(p.clone());
        s.renamed(dir.path().join("gone.csv"));
        s.renamed(dir.path().join("b.csv.part"));
        assert!(!s.is_empty());
        assert_eq!(s.ready(Instant::now()), vec![p]);
        assert!(s.is_empty());
    }

    #[test]
    fn rename_events_become_complete_files() {
        use notify::event::{CreateKind, ModifyKind, RenameMode};
        let ev = |kind, paths: &[&str]| Event {
            kind,
            paths: paths.iter().map(PathBuf::from).collect(),
            attrs: Default::default(),
        };
        let to = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert_eq!(
            changes(ev(to, &["/in/a.csv"])),
            vec![Change::Renamed("/in/a.csv".into())]
        );
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert_eq!(
            changes(ev(both, &["/in/a.tmp", "/in/a.csv"])),
            vec![
                Change::Path("/in/a.tmp".into()),
                Change::Renamed("/in/a.csv".into())
            ]
        );
        let created = EventKind::Create(CreateKind::File);
        assert_eq!(
            changes(ev(created, &["/in/b.csv"])),
            vec![Change::Path("/in/b.csv".into())]
        );
        let rescan = Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert_eq!(changes(rescan), vec![Change::Rescan]);
    }

    #[test]
    fn watch_limits_name_the_sysctl() {
        let e = explain(&notify::Error::new(notify::ErrorKind::MaxFilesWatch));
        assert!(e.contains("fs.inotify.max_user_watches"), "{e}");
        let e = explain(&notify::Error::io(std::io::Error::from_raw_os_error(24)));
        assert!(e.contains("fs.inotify.max_user_instances"), "{e}");
    }

    #[test]
    fn poll_watcher_reports_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let cfg = WatchConfig {
            poll: true,
            poll_interval_ms: 20,
            ..WatchConfig::default()
        };
        let _w = start_with(dir.path(), &cfg, move |c| {
            let _ = tx.send(c);
        })
        .unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(&p, "x").unwrap();
        let got = loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Change::Path(x)) if x == p => break true,
                Ok(_) => {}
                Err(_) => break false,
            }
        };
        assert!(got, "the polling watcher did not report {}", p.display());
    }
}
