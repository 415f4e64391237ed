//! File: an inbox file as a file-system object — taking it, filing it.
//!
//! `take` opens a file without following a symlink and without blocking on
//! a FIFO (`O_NOFOLLOW | O_NONBLOCK`), checks after opening that it is a
//! regular file, asks the kernel whether any process still has it open for
//! writing (a read lease, `F_SETLEASE`/`F_RDLCK`, which is refused while a
//! writer is open; where leases are not available — another owner without
//! `CAP_LEASE`, a network share — only the watcher's settle interval
//! speaks for it), then copies it into a private staging folder
//! (`<archive>/.incoming`) while hashing it, from one read. The copy is
//! what is parsed, stored and archived, so the hash in the ledger is the
//! hash of exactly the content stored; a file whose size, mtime or inode
//! changed while it was copied is refused as busy and taken again later.
//!
//! `file_into` moves a staged copy (or a non-regular inbox entry, which is
//! never read) into archive/ or rejected/ under a name that is free
//! together with its `.errors.txt` sidecar: nothing there is overwritten.
//! `release_original` removes the inbox file only when it is still the file
//! that was copied and no writer has it open; otherwise it stays and is
//! ingested again as a new version.
//!
//! `Attempts` is a small record beside the database (`<db>.ingesting`),
//! written and fsynced before a file's rows
//! are read, of files whose ingest was under way: one the process died on
//! (abort, out of memory, kill -9) is recognised at the next start, and
//! the daemon then ingests it in a child process, so that a file that
//! kills its reader is rejected instead of retried forever.
//!
//! Touches the inbox file it is given, the staging folder, and the archive
//! and rejected folders — nothing else.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

/// The name of the staging folder inside the archive folder.
pub const STAGING: &str = ".incoming";

/// What a file was when it was copied: its identity and the two things
/// that change when it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

impl Snapshot {
    fn of(m: &std::fs::Metadata) -> Snapshot {
        Snapshot {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    }
}

/// A private, complete copy of an inbox file, hashed as it was copied.
/// Dropped before it is filed, the copy is removed.
#[derive(Debug)]
pub struct Staged {
    /// The copy in the staging folder.
    pub path: PathBuf,
    pub hash: String,
    pub size: u64,
    /// The original as it was while copied.
    pub original: Snapshot,
    filed: bool,
    /// Open with an exclusive flock while the copy is ours: a sweep takes
    /// only copies nobody holds (their process is gone).
    _lock: std::fs::File,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.filed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What `take` found.
#[derive(Debug)]
pub enum Taken {
    Staged(Staged),
    /// Not a regular file: rejected without reading it. The text says what
    /// it is ("a symbolic link", "a FIFO" ...).
    NotRegular(&'static str),
    /// Not complete yet: the text says why (a writer has it open, it
    /// changed while it was copied). Look again later.
    Busy(String),
    /// It is no longer there.
    Gone,
}

/// What kind of non-regular file `ft` is, for a reason text.
fn kind_name(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a folder"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Whether another process has the file open for writing, from a read
/// lease: `Some(true)` busy, `Some(false)` no writer, `None` unknown here
/// (leases refused: another owner without CAP_LEASE, a file system
/// without leases, leases turned off).
fn writer_open(f: &std::fs::File) -> Option<bool> {
    use std::os::fd::AsRawFd as _;
    // A writer that opens the file in the instant the lease is held makes
    // the kernel send SIGIO to the holder, whose default action ends the
    // process (seen: the test binary killed by signal 29). The lease is
    // released at once anyway, so the signal carries nothing we need.
    static IGNORE_SIGIO: std::sync::Once = std::sync::Once::new();
    IGNORE_SIGIO.call_once(|| {
        // SAFETY: setting a signal's disposition to SIG_IGN installs no
        // handler code; nothing else in kamwatch uses SIGIO.
        unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
    });
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; F_SETLEASE takes an int.
    let r = unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) };
    if r == 0 {
        // Only a probe: released at once, so a writer that opens the file
        // later is never held up. A write
        // after this is seen by the size/mtime check after copying.
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) };
        return Some(false);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EBUSY) => Some(true),
        _ => None,
    }
}

/// Opens `path` for reading without following a symlink and without
/// blocking on a FIFO.
fn open_safely(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// A unique name in the staging folder for a copy of `file_name`:
/// `<pid>-<n>.<file_name>`, so a sweep can tell whose copy it is.
fn staging_name(staging: &Path, file_name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    staging.join(format!("{}-{n}.{file_name}", std::process::id()))
}

/// Takes `path`: see the module header. `staging` is created if needed.
pub fn take(path: &Path, staging: &Path) -> Result<Taken> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Taken::Gone),
        Err(e) => return Err(e).with_context(|| format!("looking at {}", path.display())),
    };
    if !meta.file_type().is_file() {
        return Ok(Taken::NotRegular(kind_name(meta.file_type())));
    }
    let mut f = match open_safely(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Taken::Gone),
        // Swapped for a symlink or a socket since we looked.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Taken::NotRegular("a symbolic link"));
        }
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Ok(Taken::NotRegular("a socket"));
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let before = f.metadata()?;
    if !before.file_type().is_file() {
        return Ok(Taken::NotRegular(kind_name(before.file_type())));
    }
    if writer_open(&f) == Some(true) {
        return Ok(Taken::Busy(
            "another process still has it open for writing".into(),
        ));
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::create_dir_all(staging)
        .with_context(|| format!("creating the staging folder {}", staging.display()))?;
    let copy_path = staging_name(staging, &file_name);
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&copy_path)
        .with_context(|| format!("creating {}", copy_path.display()))?;
    lock(&out, true);
    let mut staged = Staged {
        path: copy_path,
        hash: String::new(),
        size: 0,
        original: Snapshot::of(&before),
        filed: false,
        _lock: out.try_clone()?,
    };
    let mut out = out;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 18];
    let mut size = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        h.update(&buf[..n]);
        out.write_all(&buf[..n])
            .with_context(|| format!("writing {}", staged.path.display()))?;
        size += n as u64;
    }
    out.flush()?;
    // The copy keeps the original's mtime: a snapshot without a date in its
    // name is dated by it, and `rebuild` orders the archive by it.
    if let Ok(t) = before.modified() {
        let _ = out.set_modified(t);
    }
    drop(out);
    // The same file, unchanged from the first byte read to the last?
    let after = f.metadata()?;
    let now = std::fs::symlink_metadata(path)
        .ok()
        .map(|m| Snapshot::of(&m));
    let first = Snapshot::of(&before);
    if Snapshot::of(&after) != first || now != Some(first) || size != first.size {
        return Ok(Taken::Busy(format!(
            "it changed while it was read ({} bytes when taken, {} read, {} now); nothing of it was stored",
            first.size,
            size,
            after.size()
        )));
    }
    staged.hash = h.finalize().to_hex().to_string();
    staged.size = size;
    Ok(Taken::Staged(staged))
}

/// A name in `dir` for `file_name` that is free together with its
/// `.errors.txt` sidecar: `name`, then `name.1`, `name.2` …
fn free_name(dir: &Path, file_name: &str) -> PathBuf {
    let free = |p: &Path| {
        std::fs::symlink_metadata(p).is_err() && std::fs::symlink_metadata(sidecar(p)).is_err()
    };
    let first = dir.join(file_name);
    if free(&first) {
        return first;
    }
    (1..)
        .map(|i| dir.join(format!("{file_name}.{i}")))
        .find(|p| free(p))
        .expect("an unbounded range yields a free name")
}

/// `<path>.errors.txt`.
pub fn sidecar(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".errors.txt");
    PathBuf::from(s)
}

/// Puts `from` at a free name for `file_name` in `dir` without ever
/// replacing a file there: a hard link (atomic, fails if the name exists)
/// when on the same file system, else a copy under a temp name, fsynced,
/// then linked in. `from` stays; the caller removes it.
fn place(from: &Path, dir: &Path, file_name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    loop {
        let to = free_name(dir, file_name);
        match std::fs::hard_link(from, &to) {
            Ok(()) => return Ok(to),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                let tmp = dir.join(format!(".{}.kamwatch-tmp", std::process::id()));
                let copied = std::fs::copy(from, &tmp)
                    .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
                    .and_then(|()| std::fs::hard_link(&tmp, &to));
                let _ = std::fs::remove_file(&tmp);
                match copied {
                    Ok(()) => return Ok(to),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("copying {} to {}", from.display(), to.display())
                        });
                    }
                }
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("filing {} as {}", from.display(), to.display()));
            }
        }
    }
}

/// Files a staged copy into `dir` as `file_name` (a free name); the copy
/// leaves the staging folder.
pub fn file_into(staged: &mut Staged, dir: &Path, file_name: &str) -> Result<PathBuf> {
    let to = place(&staged.path, dir, file_name)?;
    staged.filed = true;
    let _ = std::fs::remove_file(&staged.path);
    Ok(to)
}

/// Moves a non-regular inbox entry (symlink, FIFO, socket ...) into `dir`
/// without opening it: renamed when on the same file system; otherwise a
/// symlink is recreated there (its target is never read) and anything else
/// is only removed from the inbox, as it holds no data.
pub fn file_entry_into(path: &Path, dir: &Path, file_name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let to = free_name(dir, file_name);
    match std::fs::rename(path, &to) {
        Ok(()) => Ok(to),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            if let Ok(target) = std::fs::read_link(path) {
                std::os::unix::fs::symlink(target, &to)
                    .with_context(|| format!("creating {}", to.display()))?;
            }
            std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
            Ok(to)
        }
        Err(e) => Err(e).with_context(|| format!("moving {} to {}", path.display(), to.display())),
    }
}

/// Writes `text` as a new file (never over an existing one).
pub fn write_new(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `rename` that fails with `AlreadyExists` instead of replacing `to`.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: two valid NUL-terminated paths, relative to the cwd.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Files what was taken from `path` into `dir` as `file_name` (a free
/// name). With `move_original`, the inbox original goes: renamed into
/// place when it is still the file that was copied, no writer has it open
/// and `dir` is on its file system (one atomic step: a crash leaves it in
/// the inbox or in `dir`, never in both); otherwise the copy is filed and
/// the original removed if unchanged. An original that changed since it was
/// taken stays in the inbox, to be ingested again as a new version
/// (`Original::Changed`). Without `move_original` the copy is filed.
pub fn file_taken(
    path: &Path,
    staged: &mut Staged,
    dir: &Path,
    file_name: &str,
    move_original: bool,
) -> Result<(PathBuf, Original)> {
    if !move_original {
        return Ok((file_into(staged, dir, file_name)?, Original::Removed));
    }
    let unchanged = open_safely(path).is_ok_and(|f| {
        f.metadata()
            .is_ok_and(|m| Snapshot::of(&m) == staged.original)
            && std::fs::symlink_metadata(path).is_ok_and(|m| Snapshot::of(&m) == staged.original)
            && writer_open(&f) != Some(true)
    });
    if !unchanged {
        return Ok((file_into(staged, dir, file_name)?, Original::Changed));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    loop {
        let to = free_name(dir, file_name);
        match rename_noreplace(path, &to) {
            Ok(()) => return Ok((to, Original::Removed)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            // Another file system, or no RENAME_NOREPLACE there.
            Err(_) => break,
        }
    }
    let to = file_into(staged, dir, file_name)?;
    std::fs::File::open(&to)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("making {} durable", to.display()))?;
    Ok((to, release_original(path, staged)?))
}

/// What became of the inbox original after its copy was filed.
#[derive(Debug, PartialEq, Eq)]
pub enum Original {
    Removed,
    /// It changed (or a writer has it open) since it was copied: it stays
    /// in the inbox and is taken again as a new version.
    Changed,
}

/// Removes the inbox original if it is still the file that was copied and
/// no process has it open for writing.
pub fn release_original(path: &Path, staged: &Staged) -> Result<Original> {
    let Ok(f) = open_safely(path) else {
        return Ok(Original::Changed);
    };
    let same = f
        .metadata()
        .is_ok_and(|m| Snapshot::of(&m) == staged.original)
        && std::fs::symlink_metadata(path).is_ok_and(|m| Snapshot::of(&m) == staged.original);
    if !same || writer_open(&f) == Some(true) {
        return Ok(Original::Changed);
    }
    std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    Ok(Original::Removed)
}

/// An exclusive flock on `f` (`wait` false: only if free). True if held.
fn lock(f: &std::fs::File, wait: bool) -> bool {
    use std::os::fd::AsRawFd as _;
    let op = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(f.as_raw_fd(), op) == 0 }
}

/// Removes copies left in the staging folder by processes that are gone
/// (killed mid-ingest): those no process holds a lock on. Their originals
/// are still in the inbox or already archived, so nothing is lost.
pub fn sweep(staging: &Path) {
    let Ok(rd) = std::fs::read_dir(staging) else {
        return;
    };
    for e in rd.flatten() {
        if let Ok(f) = std::fs::File::open(e.path())
            && lock(&f, false)
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
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

    /// A writer opening the file while the lease is held sends SIGIO, which
    /// would end the process: after a probe, SIGIO is ignored.
    #[test]
    fn a_lease_break_signal_cannot_end_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, "a\n").unwrap();
        let f = std::fs::File::open(&p).unwrap();
        let _ = writer_open(&f);
        // SAFETY: raising a signal whose disposition is SIG_IGN.
        assert_eq!(unsafe { libc::raise(libc::SIGIO) }, 0);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    fn staged(t: Taken) -> Staged {
        match t {
            Taken::Staged(s) => s,
            other => panic!("not staged: {other:?}"),
        }
    }

    #[test]
    fn a_copy_hashes_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(&p, "h\n1\n").unwrap();
        let s = staged(take(&p, &dir.path().join("st")).unwrap());
        assert_eq!(std::fs::read(&s.path).unwrap(), b"h\n1\n");
        assert_eq!(s.hash, blake3::hash(b"h\n1\n").to_hex().to_string());
        assert_eq!(s.size, 4);
        let copy = s.path.clone();
        drop(s);
        assert!(!copy.exists(), "an unfiled copy is removed when dropped");
    }

    #[test]
    fn symlinks_and_fifos_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "password\n").unwrap();
        let link = dir.path().join("a.csv");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let st = dir.path().join("st");
        assert!(matches!(
            take(&link, &st).unwrap(),
            Taken::NotRegular("a symbolic link")
        ));
        let fifo = dir.path().join("b.csv");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            take(&fifo, &st).unwrap(),
            Taken::NotRegular("a FIFO (named pipe)")
        ));
        let to = file_entry_into(&link, &dir.path().join("rej"), "a.csv").unwrap();
        assert!(
            std::fs::symlink_metadata(&to)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(!st.exists() || std::fs::read_dir(&st).unwrap().next().is_none());
    }

    #[test]
    fn a_file_open_for_writing_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        let mut w = std::fs::File::create(&p).unwrap();
        w.write_all(b"h\n").unwrap();
        let st = dir.path().join("st");
        match take(&p, &st).unwrap() {
            Taken::Busy(why) => assert!(why.contains("open for writing"), "{why}"),
            other => panic!("taken while a writer has it open: {other:?}"),
        }
        drop(w);
        let s = staged(take(&p, &st).unwrap());
        // Appended after it was taken: the original stays for a new version.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"2\n")
            .unwrap();
        assert_eq!(release_original(&p, &s).unwrap(), Original::Changed);
        assert!(p.exists());
        let s = staged(take(&p, &st).unwrap());
        assert_eq!(release_original(&p, &s).unwrap(), Original::Removed);
        assert!(!p.exists());
    }

    /// A file rewritten over and over while it is taken is either refused
    /// (busy, changed) or staged as exactly one whole version, its hash
    /// that of the copy: never a truncated or mixed content.
    #[test]
    fn a_file_changing_while_taken_is_never_staged_half() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        let versions = [vec![b'A'; 1 << 20], vec![b'B'; 3 << 20]];
        std::fs::write(&p, &versions[0]).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (p, stop, versions) = (p.clone(), stop.clone(), versions.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    std::fs::write(&p, &versions[i % 2]).unwrap();
                    i += 1;
                }
            })
        };
        let st = dir.path().join("st");
        let (mut staged_n, mut busy_n) = (0, 0);
        for _ in 0..200 {
            match take(&p, &st).unwrap() {
                Taken::Staged(s) => {
                    let copy = std::fs::read(&s.path).unwrap();
                    assert!(
                        versions.contains(&copy),
                        "a copy of {} bytes is no whole version",
                        copy.len()
                    );
                    assert_eq!(s.hash, blake3::hash(&copy).to_hex().to_string());
                    assert_eq!(s.size, copy.len() as u64);
                    staged_n += 1;
                }
                Taken::Busy(_) => busy_n += 1,
                other => panic!("{other:?}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert!(busy_n > 0, "never saw the writer ({staged_n} staged)");
    }

    #[test]
    fn filing_never_overwrites_a_file_or_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let rej = dir.path().join("rej");
        std::fs::create_dir_all(&rej).unwrap();
        // An inbox file named like a reason file was rejected before.
        std::fs::write(rej.join("x.csv.errors.txt"), "someone else's").unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, "data").unwrap();
        let mut s = staged(take(&p, &dir.path().join("st")).unwrap());
        let to = file_into(&mut s, &rej, "x.csv").unwrap();
        assert_eq!(to, rej.join("x.csv.1"));
        write_new(&sidecar(&to), "reason").unwrap();
        assert_eq!(
            std::fs::read_to_string(rej.join("x.csv.errors.txt")).unwrap(),
            "someone else's"
        );
        assert!(write_new(&sidecar(&to), "again").is_err());
    }

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
