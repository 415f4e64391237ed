//! CLI commands that fill the store: `ingest` (export files now, with a
//! progress bar on a terminal for large ones) and `rebuild` (a new database
//! from the archived inputs). The work is ingest's; this prints what it did.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::output::success_if;
use crate::config::Loaded;
use crate::store::Outcome;

/// `kamwatch ingest FILE...`: exit 1 when a file is missing or rejected.
pub fn ingest(cfg: &Loaded, files: &[PathBuf]) -> Result<ExitCode> {
    let mut conn = crate::store::open(&cfg.database())?;
    let inbox = std::fs::canonicalize(cfg.inbox()).ok();
    let mut o = std::io::stdout().lock();
    let mut failed = false;
    for f in files {
        if !f.is_file() {
            writeln!(o, "{}: not a file", f.display())?;
            failed = true;
            continue;
        }
        let in_inbox = inbox.as_ref().is_some_and(|i| {
            std::fs::canonicalize(f).is_ok_and(|c| c.parent() == Some(i.as_path()))
        });
        let bar = progress_bar(f);
        let name = f.display().to_string();
        let r =
            crate::ingest::ingest_with_progress(
                cfg,
                &mut conn,
                f,
                !in_inbox,
                &mut |rows| match &bar {
                    Some(b) => b.set_position(rows),
                    None => tracing::debug!(file = ?name, rows, "ingesting"),
                },
            );
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let r = r?;
        let ds = r.dataset.map(|d| d.name()).unwrap_or("?");
        match r.outcome {
            Outcome::Ingested => {
                writeln!(
                    o,
                    "ingested {} ({ds}): {} rows (read {}, stored {}, replaced {} by key from earlier files, skipped {})",
                    f.display(),
                    r.rows,
                    r.read,
                    r.rows,
                    r.replaced,
                    r.skipped
                )?;
                if let Some(note) = &r.reason {
                    writeln!(o, "  note: {note}")?;
                }
                if let Some(e) = &r.errors_file {
                    writeln!(o, "  skipped rows: {}", e.display())?;
                }
            }
            Outcome::Duplicate => writeln!(
                o,
                "duplicate {} ({ds}): same content was ingested before; counted nowhere",
                f.display()
            )?,
            Outcome::Rejected => {
                failed = true;
                writeln!(
                    o,
                    "rejected {}: {}\n  details: {}.errors.txt",
                    f.display(),
                    r.reason.unwrap_or_default(),
                    r.moved_to.display()
                )?
            }
        }
    }
    Ok(success_if(!failed))
}

/// `kamwatch rebuild`: a new database from the archive.
pub fn rebuild(cfg: &Loaded) -> Result<ExitCode> {
    let db = cfg.database();
    if db.exists() {
        anyhow::bail!(
            "the database {} exists; rebuild writes a new one. Stop kamwatch, move the old file aside (with its -wal and -shm files), then run `kamwatch rebuild` again",
            db.display()
        );
    }
    if crate::daemon::service::holder(&crate::daemon::service::lock_path(&db)).is_some() {
        anyhow::bail!("kamwatch is running on {}; stop it first", db.display());
    }
    let files = crate::ingest::archived_inputs(&cfg.archive())?;
    let mut conn = crate::store::open(&db)?;
    let mut o = std::io::stdout().lock();
    let (mut ingested, mut failed) = (0u64, false);
    for f in &files {
        let r = crate::ingest::ingest_in_place(cfg, &mut conn, f)
            .with_context(|| format!("rebuilding from {}", f.display()))?;
        match r.outcome {
            Outcome::Ingested => ingested += r.rows,
            Outcome::Duplicate => {}
            Outcome::Rejected => {
                failed = true;
                writeln!(
                    o,
                    "rejected {}: {}",
                    f.display(),
                    r.reason.unwrap_or_default()
                )?;
            }
        }
    }
    writeln!(
        o,
        "rebuilt {} from {} archived files in {}: {ingested} rows",
        db.display(),
        files.len(),
        cfg.archive().display()
    )?;
    Ok(success_if(!failed))
}

/// Files at least this big get a progress bar (on a terminal).
const PROGRESS_BAR_BYTES: u64 = 4 << 20;

/// A progress bar (rows, rows/s) on stderr for a large file, when stderr is
/// a terminal; `None` otherwise, so scripts and logs stay quiet.
fn progress_bar(f: &Path) -> Option<indicatif::ProgressBar> {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    if std::fs::metadata(f).map(|m| m.len()).unwrap_or(0) < PROGRESS_BAR_BYTES {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} {msg} {human_pos} rows ({per_sec:0}, {elapsed})",
    )
    .ok()?;
    bar.set_style(style);
    bar.set_message(
        f.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(bar)
}
