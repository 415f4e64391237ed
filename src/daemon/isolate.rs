//! Isolate: one file cannot take the daemon down. `ingest_guarded` runs an
//! ingest and turns a panic inside it into the file's rejection (with a
//! reason), and sorts its errors into what the daemon does next
//! ([`FileOutcome`]). A file the daemon died in before is ingested in a
//! child process (`kamwatch ingest`, [`ingest_apart`]), so that dying again
//! takes only the child: a child that dies by a signal (abort, out of
//! memory, killed) gets the file rejected with a reason naming it; a child
//! that ends is read back from the ledger. Runs the kamwatch binary; reads
//! the ledger; moves files only through ingest.

use std::path::{Path, PathBuf};

use anyhow::Result;
use rusqlite::Connection;

use crate::config::Loaded;

/// How one file's ingest ended, for the daemon.
pub enum FileOutcome {
    Done(crate::ingest::FileReport),
    /// Not complete yet: look again after the settle interval.
    NotReady(String),
    /// Rows committed, but not archived: counts as ingested, retried.
    Unfiled(String),
    /// Nothing stored; may pass (disk full, read-only archive): retried.
    Failed(String),
    /// Stopped by SIGTERM, rolled back: taken again at the next start.
    Cancelled,
    /// The process died in this file before: ingest it in a child process.
    Isolate,
}

/// Ingests `path` with `ingest`; a panic inside it is caught and the file
/// rejected with a reason (with `reject`), so one bad file cannot take the
/// daemon down or stop the files after it.
pub fn ingest_guarded(
    path: &Path,
    ingest: impl FnOnce() -> Result<crate::ingest::FileReport>,
    reject: impl FnOnce(&str) -> Result<crate::ingest::FileReport>,
) -> FileOutcome {
    use crate::ingest::{NotReady, Unfiled};
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(ingest));
    let res = match res {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "an internal error".into());
            tracing::error!(file = ?path.file_name().unwrap_or_default(), "kamwatch failed while ingesting this file ({what}); nothing of it was stored, it is rejected");
            reject(&format!(
                "kamwatch failed while reading this file ({what}); nothing of it was stored. Please report the file to the kamwatch maintainers; other files go on"
            ))
        }
    };
    match res {
        Ok(r) => FileOutcome::Done(r),
        Err(e) => {
            let find = |f: &dyn Fn(&(dyn std::error::Error + 'static)) -> bool| e.chain().any(f);
            if find(&|c| c.is::<crate::ingest::Isolate>()) {
                FileOutcome::Isolate
            } else if let Some(n) = e.chain().find_map(|c| c.downcast_ref::<NotReady>()) {
                FileOutcome::NotReady(n.0.clone())
            } else if find(&|c| c.is::<crate::ingest::Cancelled>()) {
                FileOutcome::Cancelled
            } else if find(&|c| c.is::<Unfiled>()) {
                FileOutcome::Unfiled(format!("{e:#}"))
            } else {
                FileOutcome::Failed(format!("{e:#}"))
            }
        }
    }
}

/// Ingests `path` in a child process (`kamwatch ingest`), for a file the
/// daemon died in before. A child that dies by a signal (abort, out of
/// memory, killed) gets the file rejected with a reason naming it, and the
/// daemon goes on; a child that ends is read back from the ledger.
pub fn ingest_apart(cfg: &Loaded, conn: &mut Connection, path: &Path) -> FileOutcome {
    use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
    let before = crate::store::newest_ledger_id(conn).unwrap_or(0);
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return FileOutcome::Failed(format!("cannot find the kamwatch binary: {e}")),
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--config")
        .arg(&cfg.file)
        .arg("ingest")
        .arg(path)
        .env("KAMWATCH_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: prctl only, between fork and exec: the child dies with us, so
    // a daemon that is killed never leaves a second writer behind.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => return FileOutcome::Failed(format!("cannot start `kamwatch ingest`: {e}")),
    };
    if let Some(sig) = out.status.signal() {
        return died_again(cfg, conn, path, sig);
    }
    read_back(conn, before, path, &out.stderr)
}

/// The child ingesting `path` died by signal `sig`: the file is rejected
/// with a reason naming how, so it is not tried again.
fn died_again(cfg: &Loaded, conn: &mut Connection, path: &Path, sig: i32) -> FileOutcome {
    let name = path.file_name().unwrap_or_default();
    let what = match sig {
        libc::SIGABRT => "it aborted (SIGABRT; out of memory, or an internal error)".to_string(),
        libc::SIGKILL => {
            "it was killed (SIGKILL; the out-of-memory killer, or kill -9)".to_string()
        }
        libc::SIGSEGV => "it crashed (SIGSEGV)".to_string(),
        s => format!("it died by signal {s}"),
    };
    tracing::error!(file = ?name, "the process ingesting this file died again: {what}; the file is rejected");
    let reason = format!(
        "kamwatch died while ingesting this file, in the daemon and again in a process of its own ({what}); nothing of it was stored, and it is set aside instead of being tried again. Check the file (size, sheet dimensions), and report it to the kamwatch maintainers if it is sound"
    );
    match crate::ingest::reject_file(cfg, conn, path, &reason) {
        Ok(r) => FileOutcome::Done(r),
        Err(e) => FileOutcome::Failed(format!("{e:#}")),
    }
}

/// What the child that ended wrote to the ledger after row `before`, as
/// the file's report; its last line of stderr when it wrote nothing.
fn read_back(conn: &Connection, before: i64, path: &Path, stderr: &[u8]) -> FileOutcome {
    let name = path.file_name().unwrap_or_default();
    match crate::store::newest_entry_after(conn, before)
        .ok()
        .flatten()
    {
        Some(entry) => {
            let outcome = entry.outcome;
            let rows = entry.rows;
            tracing::info!(file = ?name, outcome = outcome.as_str(), rows, "ingested in a process of its own");
            FileOutcome::Done(crate::ingest::FileReport {
                file_name: entry.file_name,
                dataset: entry.dataset.and_then(|d| {
                    crate::config::Dataset::ALL
                        .iter()
                        .copied()
                        .find(|x| x.name() == d)
                }),
                outcome,
                rows,
                moved_to: PathBuf::new(),
                reason: None,
                skipped: entry.skipped,
                errors_file: None,
                read: entry.read,
                replaced: entry.replaced,
            })
        }
        None => {
            let err = String::from_utf8_lossy(stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            FileOutcome::Failed(format!("`kamwatch ingest` failed: {last}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Loaded};
    use crate::store::Outcome;

    /// A panic while ingesting one file rejects that file with a reason
    /// (a real reject: the file moves to rejected/ with its reason file)
    /// and the daemon goes on with the next one.
    #[test]
    fn a_panic_while_ingesting_rejects_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            include_str!("../../config/kamwatch.yaml").replace("\nroot: ..\n", "\nroot: .\n");
        assert!(text.contains("\nroot: .\n"));
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, &text).unwrap();
        let cfg = Loaded {
            file,
            cfg: config::parse(&text).unwrap(),
        };
        std::fs::create_dir_all(cfg.inbox()).unwrap();
        let mut conn = crate::store::open(&cfg.database()).unwrap();
        let bad = cfg.inbox().join("销售明细_bad.csv");
        std::fs::write(&bad, "订单编号\n1\n").unwrap();
        let out = ingest_guarded(
            &bad,
            || panic!("index out of bounds in a parser"),
            |why| crate::ingest::reject_file(&cfg, &mut conn, &bad, why),
        );
        let FileOutcome::Done(r) = out else {
            panic!("not rejected")
        };
        assert_eq!(r.outcome, Outcome::Rejected);
        assert!(!bad.exists());
        let reason = std::fs::read_to_string(r.errors_file.unwrap()).unwrap();
        assert!(
            reason.contains(
                "kamwatch failed while reading this file (index out of bounds in a parser)"
            ),
            "{reason}"
        );
        // The next file is ingested as usual.
        let good = cfg.inbox().join("销售明细_good.csv");
        std::fs::write(
            &good,
            "订单编号,客户编号,订单日期,金额,成本\nS1,K1,2026-01-05,10,5\n",
        )
        .unwrap();
        let out = ingest_guarded(
            &good,
            || crate::ingest::ingest_file(&cfg, &mut conn, &good),
            |_| unreachable!("no panic"),
        );
        assert!(matches!(out, FileOutcome::Done(r) if r.outcome == Outcome::Ingested));
    }
}
