//! Filing: the file being ingested (`Intake`: where it came from, its
//! staged copy, whether the original leaves the inbox) and where it goes
//! when done, today's archive folder or the rejected folder.
//!
//! `file_into` moves a staged copy (or a non-regular inbox entry, which is
//! never read) into archive/ or rejected/ under a name that is free
//! together with its `.errors.txt` sidecar: nothing there is overwritten.
//! `release_original` removes the inbox file only when it is still the file
//! that was copied and no writer has it open; otherwise it stays and is
//! ingested again as a new version. `archived_inputs` lists the archive
//! back in the order it was filed, for `kamwatch rebuild`. Touches the
//! inbox file, its staged copy and the archive and rejected folders.

use std::path::{Path, PathBuf};

use std::io::Write as _;

use anyhow::{Context, Result};

use super::file::{Snapshot, Staged, open_safely, writer_open};
use crate::config::Loaded;
use crate::model::dates::date_text;

/// Whether the original file leaves the inbox or stays where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keep {
    Move,
    Copy,
    /// Read from where it is and filed nowhere: `rebuild` re-reading the
    /// archive.
    InPlace,
}

/// A file being ingested, taken: its path, name and staged copy.
pub(super) struct Intake<'a> {
    pub(super) cfg: &'a Loaded,
    pub(super) path: &'a Path,
    pub(super) file_name: &'a str,
    pub(super) keep: Keep,
    pub(super) copy: &'a mut Staged,
}

impl Intake<'_> {
    /// Files the file taken into today's archive folder (see
    /// [`file_taken`]).
    pub(super) fn archive(&mut self) -> Result<PathBuf> {
        let day = date_text(self.cfg.today());
        let dir = self.cfg.archive().join(day);
        self.file_into(&dir)
    }

    /// Files the file taken into `dir`, and says so when the inbox original
    /// changed after it was taken and therefore stays.
    pub(super) fn file_into(&mut self, dir: &Path) -> Result<PathBuf> {
        if self.keep == Keep::InPlace {
            return Ok(self.path.to_path_buf());
        }
        let (to, original) = file_taken(
            self.path,
            self.copy,
            dir,
            self.file_name,
            self.keep == Keep::Move,
        )?;
        if original == Original::Changed {
            tracing::warn!(
                file = ?self.file_name,
                "the file changed after it was taken (or a writer has it open again): the version taken was filed as {}; the file stays in the inbox and is ingested again as a new version (rows with the same keys replace the ones stored)",
                to.display()
            );
        }
        Ok(to)
    }
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

/// Where a rejection's reason waits in the rejected folder `dir` while
/// its file `file_name` is filed there: a dotfile, which the folder's
/// readers leave out.
fn pending_reason(dir: &Path, file_name: &str) -> PathBuf {
    dir.join(format!(".{file_name}.reason-pending"))
}

/// Files a rejected file into `dir` with its reason `text`. Filing and
/// writing the reason are two steps (the file's name is known only once it
/// is filed), so the reason is written first beside them, under a name
/// made of `file_name` ([`pending_reason`]); a kill between the steps
/// leaves it there and the next start gives it to the file
/// ([`mend_rejected`]). `file` files the file and says where it went.
pub fn file_with_reason(
    dir: &Path,
    file_name: &str,
    text: &str,
    file: impl FnOnce() -> Result<PathBuf>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let pending = pending_reason(dir, file_name);
    // Best effort: without it (a name too long for a dotfile, a full disk)
    // a crash between the steps leaves REASON_LOST, as before.
    let written = std::fs::write(&pending, text).is_ok();
    let filed = file().and_then(|to| write_new(&sidecar(&to), text).map(|()| to));
    if written {
        let _ = std::fs::remove_file(&pending);
    }
    filed
}

/// The reason given to a file a crash left in rejected/ without one.
pub const REASON_LOST: &str = "kamwatch was stopped (a crash or kill -9) after it moved this file here and before it wrote why it was rejected, so the reason is lost. Put the file into the inbox again: it is read afresh and, if it is still wrong, rejected again with the rows and columns at fault.\n";

/// Mends what a crash can leave in the rejected folder `dir`: filing a
/// rejected file and writing its reason are two steps, so a kill between
/// them leaves the file without its `.errors.txt`. Each such entry gets
/// the reason [`file_with_reason`] left waiting for its name (the entry's
/// name, or that name without the `.N` a name collision added), else
/// [`REASON_LOST`], so no rejected file is kept without a reason. Reasons
/// left waiting for no entry (a kill before the file was filed: it is
/// still in the inbox and is rejected again) are removed. Reason files,
/// other dotfiles and folders are left alone. Returns how many it mended.
pub fn mend_rejected(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut mended = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if name.starts_with('.')
            || name.ends_with(".errors.txt")
            || std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir())
            || std::fs::symlink_metadata(sidecar(&p)).is_ok()
        {
            continue;
        }
        let base = match name.rsplit_once('.') {
            Some((b, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => b,
            _ => name.as_str(),
        };
        let waiting = [name.as_str(), base]
            .iter()
            .find_map(|n| std::fs::read_to_string(pending_reason(dir, n)).ok());
        if write_new(&sidecar(&p), waiting.as_deref().unwrap_or(REASON_LOST)).is_ok() {
            mended += 1;
        }
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".reason-pending") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    mended
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

/// The archived inputs in the order they were ingested (for `kamwatch
/// rebuild`): day folders by name, the files in each by mtime (an archived
/// file keeps the mtime it had in the inbox), then name. A file's
/// `.errors.txt` sidecar and the staging folder (a dotfile) are left out.
pub fn archived_inputs(archive: &Path) -> Result<Vec<PathBuf>> {
    let mut days: Vec<PathBuf> = std::fs::read_dir(archive)
        .with_context(|| format!("reading the archive {}", archive.display()))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    days.sort();
    let mut out = Vec::new();
    for day in days {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for e in std::fs::read_dir(&day)
            .with_context(|| format!("reading {}", day.display()))?
            .flatten()
        {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if !m.is_file() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(base) = name.strip_suffix(".errors.txt")
                && day.join(base).exists()
            {
                continue;
            }
            files.push((m.modified().unwrap_or(std::time::UNIX_EPOCH), p));
        }
        files.sort();
        out.extend(files.into_iter().map(|(_, p)| p));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::file::{Taken, take};
    use super::*;

    fn staged(t: Taken) -> Staged {
        match t {
            Taken::Staged(s) => s,
            other => panic!("not staged: {other:?}"),
        }
    }

    /// A kill between filing a rejected file and writing its reason: the
    /// reason written first is given to it at the next start, also when a
    /// name collision filed it as `name.N`; a reason whose file was never
    /// filed is removed; a file filed whole gets its reason and leaves
    /// nothing waiting.
    #[test]
    fn a_crash_between_filing_and_the_reason_keeps_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let rej = dir.path().join("rej");
        let killed = |name: &str, filed_as: &str| {
            let r = file_with_reason(&rej, name, &format!("row 3 of {name}: not-a-date"), || {
                std::fs::write(rej.join(filed_as), "data").unwrap();
                anyhow::bail!("killed")
            });
            assert!(r.is_err());
            // What the kill leaves: the file filed, its reason waiting.
            std::fs::write(
                pending_reason(&rej, name),
                format!("row 3 of {name}: not-a-date"),
            )
            .unwrap();
        };
        killed("a.csv", "a.csv");
        killed("b.csv", "b.csv.1");
        std::fs::write(pending_reason(&rej, "never.csv"), "x").unwrap();
        assert_eq!(mend_rejected(&rej), 2);
        let reason = |n: &str| std::fs::read_to_string(rej.join(n)).unwrap();
        assert_eq!(reason("a.csv.errors.txt"), "row 3 of a.csv: not-a-date");
        assert_eq!(reason("b.csv.1.errors.txt"), "row 3 of b.csv: not-a-date");
        let left: Vec<_> = std::fs::read_dir(&rej)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        let to = file_with_reason(&rej, "c.csv", "why", || {
            std::fs::write(rej.join("c.csv"), "data").unwrap();
            Ok(rej.join("c.csv"))
        })
        .unwrap();
        assert_eq!(reason("c.csv.errors.txt"), "why");
        assert!(!pending_reason(&rej, "c.csv").exists());
        assert_eq!(to, rej.join("c.csv"));
    }

    /// A kill between filing a rejected file and writing its reason (the
    /// crash test hit it once in CI): the next start gives it a reason
    /// that says so; files with a reason, reason files, dotfiles and
    /// folders are left as they are.
    #[test]
    fn a_rejected_file_a_crash_left_without_its_reason_gets_one() {
        let dir = tempfile::tempdir().unwrap();
        let rej = dir.path();
        std::fs::write(rej.join("lost.csv"), "data").unwrap();
        std::fs::write(rej.join("kept.csv"), "data").unwrap();
        std::fs::write(rej.join("kept.csv.errors.txt"), "row 2: bad date").unwrap();
        std::fs::write(rej.join(".staging"), "x").unwrap();
        std::fs::create_dir(rej.join("sub")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", rej.join("link")).unwrap();
        assert_eq!(mend_rejected(rej), 2);
        assert_eq!(
            std::fs::read_to_string(rej.join("lost.csv.errors.txt")).unwrap(),
            REASON_LOST
        );
        assert!(rej.join("link.errors.txt").exists());
        assert_eq!(
            std::fs::read_to_string(rej.join("kept.csv.errors.txt")).unwrap(),
            "row 2: bad date"
        );
        assert!(!rej.join(".staging.errors.txt").exists());
        assert!(!rej.join("sub.errors.txt").exists());
        // Once mended, nothing more to do; no folder, nothing at all.
        assert_eq!(mend_rejected(rej), 0);
        assert_eq!(mend_rejected(&rej.join("none")), 0);
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
}
