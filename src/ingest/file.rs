//! File: taking an inbox file as a file-system object.
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
//! Filing the copy away afterwards is `filing`'s. `sweep` removes copies
//! left by processes that are gone.
//!
//! `Attempts` (in `attempts`, re-exported here) is the record of files
//! whose ingest is under way, so that one the process died on is ingested
//! apart at the next start.
//!
//! Touches the inbox file it is given and the staging folder — nothing
//! else.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

pub use super::attempts::Attempts;
use super::attempts::lock;

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
    pub(super) fn of(m: &std::fs::Metadata) -> Snapshot {
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
    pub(super) filed: bool,
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
pub(super) fn writer_open(f: &std::fs::File) -> Option<bool> {
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
pub(super) fn open_safely(path: &Path) -> std::io::Result<std::fs::File> {
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
    let (hash, size) = copy_hashing(&mut f, path, &mut out, &staged.path)?;
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
    staged.hash = hash;
    staged.size = size;
    Ok(Taken::Staged(staged))
}

/// Copies `f` (read from `path`) into `out` (written at `to`) in one
/// read, hashing it: the hash (hex) and the bytes copied.
fn copy_hashing(
    f: &mut std::fs::File,
    path: &Path,
    out: &mut std::fs::File,
    to: &Path,
) -> Result<(String, u64)> {
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
            .with_context(|| format!("writing {}", to.display()))?;
        size += n as u64;
    }
    out.flush()?;
    Ok((h.finalize().to_hex().to_string(), size))
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

#[cfg(test)]
mod tests {
    use super::super::filing::{Original, file_entry_into, release_original};
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
}
