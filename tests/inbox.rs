//! The inbox as a file system an unlucky or hostile world writes into, with
//! the real daemon: symlinks and FIFOs, writers that keep a file open, names
//! that look like log lines or reason files, a read-only archive, a late
//! mount, a file the process dies on, a database deleted or damaged under
//! it, and many processes starting on a new database at once.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::support::*;

const HEADER: &str =
    "订单编号,行号,客户编号,客户名称,订单日期,产品编号,产品名称,数量,单价,金额,成本\n";

/// `n` order rows numbered from `from`, one line each.
fn rows(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("SO{i},1,KH1001,客户,2026-01-05,SP1,产品,1,10,10,5\n"))
        .collect()
}

fn count(p: &Project, sql: &str) -> i64 {
    p.db().query_row(sql, [], |r| r.get(0)).unwrap_or(-1)
}

/// Writes `text` elsewhere and renames it into the inbox as `name`.
fn drop_file(p: &Project, name: &str, text: &str) -> PathBuf {
    let tmp = p.path(&format!("tmp-{}", name.len()));
    std::fs::write(&tmp, text).unwrap();
    let to = p.path("inbox").join(name);
    std::fs::rename(&tmp, &to).unwrap();
    to
}

fn started(p: &Project) -> Daemon {
    let d = Daemon::start(p);
    wait_for(30, "the daemon to start", || {
        Daemon::log(p).contains("kamwatch started").then_some(())
    });
    d
}

fn archived(p: &Project, name: &str) -> bool {
    p.files_under("var/archive")
        .iter()
        .any(|f| f.file_name().is_some_and(|n| n == name))
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Symlinks are rejected unread — one there before start (the scan), one
/// dropped while running (the watcher) — and a FIFO does not block the
/// daemon: the file after it is ingested and SIGTERM is honoured.
#[test]
fn symlinks_and_fifos_are_rejected_unread() {
    let p = Project::new();
    let secret = p.path("secret.txt");
    std::fs::write(&secret, "TOP-SECRET-LINE,x\n").unwrap();
    std::os::unix::fs::symlink(&secret, p.path("inbox/销售明细_link1.csv")).unwrap();
    let d = started(&p);
    std::os::unix::fs::symlink(&secret, p.path("inbox/销售明细_link2.csv")).unwrap();
    mkfifo(&p.path("inbox/销售明细_fifo.csv"));
    drop_file(&p, "销售明细_good.csv", &format!("{HEADER}{}", rows(1, 3)));
    wait_for(30, "the good file ingested and the others rejected", || {
        let rejected = p.files_under("var/rejected");
        (archived(&p, "销售明细_good.csv")
            && rejected
                .iter()
                .filter(|f| f.to_string_lossy().ends_with(".errors.txt"))
                .count()
                == 3)
            .then_some(())
    });
    assert!(d.stop().success(), "SIGTERM not honoured");
    assert_eq!(count(&p, "SELECT COUNT(*) FROM orders"), 3);
    for name in ["销售明细_link1.csv", "销售明细_link2.csv"] {
        let reason =
            std::fs::read_to_string(p.path(&format!("var/rejected/{name}.errors.txt"))).unwrap();
        assert!(reason.contains("symbolic link"), "{reason}");
        let kept = p.path(&format!("var/rejected/{name}"));
        assert!(
            std::fs::symlink_metadata(&kept)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
    let reason =
        std::fs::read_to_string(p.path("var/rejected/销售明细_fifo.csv.errors.txt")).unwrap();
    assert!(reason.contains("FIFO"), "{reason}");
    // The target's content went nowhere.
    let mut everywhere = Daemon::log(&p);
    for f in p.files_under("var/rejected") {
        if f.to_string_lossy().ends_with(".errors.txt") {
            everywhere.push_str(&std::fs::read_to_string(&f).unwrap());
        }
    }
    let ledger: Vec<String> = {
        let db = p.db();
        let mut st = db
            .prepare("SELECT COALESCE(reason, '') FROM ledger")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    everywhere.push_str(&ledger.join("\n"));
    assert!(!everywhere.contains("TOP-SECRET"), "{everywhere}");
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "TOP-SECRET-LINE,x\n"
    );
}

/// A file a writer still holds open is not taken, however long it pauses;
/// once closed it is taken whole.
#[test]
fn a_file_open_for_writing_is_not_taken() {
    let p = Project::new();
    let d = Daemon::start_with(&p, &[("KAMWATCH_LOG", "kamwatch=debug")]);
    wait_for(30, "the daemon to start", || {
        Daemon::log(&p).contains("kamwatch started").then_some(())
    });
    let path = p.path("inbox/销售明细_slow.csv");
    let mut w = std::fs::File::create(&path).unwrap();
    w.write_all(format!("{HEADER}{}", rows(1, 1)).as_bytes())
        .unwrap();
    w.flush().unwrap();
    // It has settled (unchanged for the settle interval) and was looked at.
    wait_for(30, "the daemon to find the writer", || {
        Daemon::log(&p).contains("open for writing").then_some(())
    });
    assert!(path.exists(), "taken while a writer had it open");
    assert_eq!(count(&p, "SELECT COUNT(*) FROM orders"), 0);
    w.write_all(rows(2, 19).as_bytes()).unwrap();
    drop(w);
    wait_for(30, "the file ingested once closed", || {
        archived(&p, "销售明细_slow.csv").then_some(())
    });
    assert!(d.stop().success());
    assert_eq!(count(&p, "SELECT COUNT(*) FROM orders"), 20);
    assert_eq!(
        count(&p, "SELECT COUNT(*) FROM ledger WHERE outcome = 'ingested'"),
        1
    );
}

/// A name with a newline cannot forge a log line, and an inbox file named
/// like a reason file never overwrites the reason of another rejected file.
#[test]
fn names_cannot_forge_log_lines_or_overwrite_reasons() {
    let p = Project::new();
    let d = started(&p);
    // Matches no dataset: rejected as `x.csv.errors.txt`, beside which its
    // own reason goes.
    drop_file(&p, "x.csv.errors.txt", "FIRST CONTENT\n");
    wait_for(30, "the first file rejected", || {
        p.path("var/rejected/x.csv.errors.txt")
            .exists()
            .then_some(())
    });
    drop_file(&p, "x.csv", "whatever\n");
    let forged = "销售明细_a\nERROR kamwatch forged line.csv";
    drop_file(&p, forged, &format!("{HEADER}{}", rows(1, 1)));
    // The same through a rejection, whose log line names the reason file.
    let forged_bad = "销售明细_b\nERROR kamwatch forged reject.csv";
    drop_file(&p, forged_bad, "not,an,export\n1,2,3\n");
    wait_for(30, "all files taken", || {
        (p.files_under("inbox").is_empty() && count(&p, "SELECT COUNT(*) FROM ledger") == 4)
            .then_some(())
    });
    assert!(d.stop().success());
    assert_eq!(
        std::fs::read_to_string(p.path("var/rejected/x.csv.errors.txt")).unwrap(),
        "FIRST CONTENT\n",
        "the reason of x.csv overwrote a rejected file"
    );
    let reason = std::fs::read_to_string(p.path("var/rejected/x.csv.1.errors.txt")).unwrap();
    assert!(reason.contains("kamwatch rejected x.csv:"), "{reason}");
    let log = Daemon::log(&p);
    // Every line that mentions the forged text holds it escaped: none
    // starts where the name's line break would have started one.
    assert!(
        log.lines()
            .filter(|l| l.contains("kamwatch forged"))
            .all(|l| l.contains(r"销售明细_a\nERROR kamwatch forged")
                || l.contains(r"销售明细_b\nERROR kamwatch forged")),
        "{log}"
    );
    let reasons: Vec<_> = p
        .files_under("var/rejected")
        .into_iter()
        .filter(|f| f.to_string_lossy().contains("forged reject"))
        .filter(|f| f.to_string_lossy().ends_with(".errors.txt"))
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    let first = std::fs::read_to_string(&reasons[0]).unwrap();
    let first = first.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(r#"kamwatch rejected "销售明细_b\nERROR kamwatch forged reject.csv""#),
        "{first}"
    );
    assert!(
        log.contains(r"销售明细_a\nERROR kamwatch forged line.csv"),
        "{log}"
    );
}

/// The archive cannot be written (here: its path is a file): nothing is
/// stored, the log says so, and the file is tried again with backoff and
/// lands once the archive is back — with no partial copy anywhere.
#[test]
fn an_unwritable_archive_is_retried_and_leaves_no_partial_copy() {
    let p = Project::new();
    std::fs::create_dir_all(p.path("var")).unwrap();
    std::fs::write(p.path("var/archive"), "not a folder").unwrap();
    let d = started(&p);
    drop_file(&p, "销售明细_a.csv", &format!("{HEADER}{}", rows(1, 5)));
    wait_for(30, "the failure logged", || {
        Daemon::log(&p)
            .contains("nothing of it was stored, it stays in the inbox and is tried again")
            .then_some(())
    });
    assert_eq!(count(&p, "SELECT COUNT(*) FROM orders"), 0);
    assert!(p.path("inbox/销售明细_a.csv").exists());
    std::fs::remove_file(p.path("var/archive")).unwrap();
    wait_for(60, "the file ingested on a retry", || {
        archived(&p, "销售明细_a.csv").then_some(())
    });
    assert!(d.stop().success());
    assert_eq!(count(&p, "SELECT COUNT(*) FROM orders"), 5);
    let stray: Vec<PathBuf> = p
        .files_under("var/archive")
        .into_iter()
        .filter(|f| f.file_name().is_none_or(|n| n != "销售明细_a.csv"))
        .collect();
    assert!(stray.is_empty(), "partial copies: {stray:?}");
}

/// Rows committed but the day's archive folder cannot be made: the log says
/// the rows were stored, an evaluation follows, and the file is archived
/// (counted once) when the folder can be made again.
#[test]
fn committed_rows_are_reported_and_evaluated_when_archiving_fails() {
    let p = Project::new();
    std::fs::create_dir_all(p.path("var/archive")).unwrap();
    // Whatever the zone's date is, its day folder cannot be created.
    let now = chrono::Utc::now().date_naive();
    let days: Vec<String> = [now.pred_opt().unwrap(), now, now.succ_opt().unwrap()]
        .iter()
        .map(|d| d.format("%Y-%m-%d").to_string())
        .collect();
    for day in &days {
        std::fs::write(p.path("var/archive").join(day), "blocked").unwrap();
    }
    let d = started(&p);
    drop_file(
        &p,
        "客户主数据.csv",
        &std::fs::read_to_string(fixture("客户主数据.csv")).unwrap(),
    );
    wait_for(30, "the commit without archive logged", || {
        Daemon::log(&p)
            .contains("rows were stored, but it could not be archived")
            .then_some(())
    });
    let accounts = count(&p, "SELECT COUNT(*) FROM accounts");
    assert!(accounts > 0);
    wait_for(60, "an evaluation after the committed rows", || {
        (count(&p, "SELECT COUNT(*) FROM evaluations") > 0).then_some(())
    });
    for day in &days {
        std::fs::remove_file(p.path("var/archive").join(day)).unwrap();
    }
    wait_for(60, "the file archived on a retry", || {
        (archived(&p, "客户主数据.csv") && p.files_under("inbox").is_empty()).then_some(())
    });
    assert!(d.stop().success());
    assert_eq!(count(&p, "SELECT COUNT(*) FROM accounts"), accounts);
    assert_eq!(
        count(&p, "SELECT COUNT(*) FROM ledger WHERE outcome = 'ingested'"),
        1
    );
}

/// A share mounted on the inbox after start (here: the folder replaced by
/// a new one) is noticed and its files are taken.
#[test]
fn an_inbox_mounted_after_start_is_rescanned() {
    let p = Project::new();
    let d = started(&p);
    std::fs::rename(p.path("inbox"), p.path("inbox.old")).unwrap();
    std::fs::create_dir(p.path("inbox")).unwrap();
    std::fs::write(
        p.path("inbox/销售明细_late.csv"),
        format!("{HEADER}{}", rows(1, 2)),
    )
    .unwrap();
    wait_for(60, "the file in the new inbox ingested", || {
        archived(&p, "销售明细_late.csv").then_some(())
    });
    assert!(d.stop().success());
    assert_eq!(count(&p, "SELECT COUNT(*) FROM orders"), 2);
    assert!(Daemon::log(&p).contains("the inbox folder changed"));
}

/// The children of `pid` (from /proc).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|s| s.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// A file the process dies on: killed mid-ingest, the daemon takes it at
/// the next start in a process of its own; killed there too, the file is
/// rejected with a reason and the daemon goes on with the next file.
#[test]
fn a_file_the_process_dies_on_is_rejected_not_retried_forever() {
    let p = Project::new();
    let big = format!("{HEADER}{}", rows(1, 200_000));
    let mut d = started(&p);
    drop_file(&p, "销售明细_poison.csv", &big);
    let record = p.path("var/kamwatch.db.ingesting");
    wait_for(60, "the ingest under way", || record.exists().then_some(()));
    let mut child = d.0.take().unwrap();
    child.kill().unwrap(); // kill -9 mid-ingest
    child.wait().unwrap();
    assert_eq!(count(&p, "SELECT COUNT(*) FROM orders"), 0);

    let d = Daemon::start(&p);
    let pid = d.0.as_ref().unwrap().id();
    // The file is ingested apart: kill that process too.
    let apart = wait_for(60, "the file ingested in a child process", || {
        children(pid).into_iter().next()
    });
    // SAFETY: kill(2) on a pid we just read.
    assert_eq!(unsafe { libc::kill(apart as i32, libc::SIGKILL) }, 0);
    drop_file(&p, "销售明细_next.csv", &format!("{HEADER}{}", rows(1, 2)));
    wait_for(
        60,
        "the poison file rejected and the next one ingested",
        || {
            (p.path("var/rejected/销售明细_poison.csv.errors.txt")
                .exists()
                && archived(&p, "销售明细_next.csv"))
            .then_some(())
        },
    );
    assert!(d.stop().success());
    let reason =
        std::fs::read_to_string(p.path("var/rejected/销售明细_poison.csv.errors.txt")).unwrap();
    assert!(
        reason.contains("kamwatch died while ingesting this file"),
        "{reason}"
    );
    assert!(reason.contains("SIGKILL"), "{reason}");
    assert_eq!(count(&p, "SELECT COUNT(*) FROM orders"), 2);
    assert!(!record.exists(), "the attempts record was not cleared");
}

/// The database deleted under the running daemon: it stops with an error
/// that says what to do; `kamwatch rebuild` then restores every row from
/// the archive.
#[test]
fn a_deleted_database_stops_the_daemon_and_rebuild_restores_it() {
    let p = Project::new();
    let d = started(&p);
    drop_file(&p, "销售明细_a.csv", &format!("{HEADER}{}", rows(1, 7)));
    drop_file(
        &p,
        "客户主数据.csv",
        &std::fs::read_to_string(fixture("客户主数据.csv")).unwrap(),
    );
    wait_for(30, "both files ingested", || {
        (archived(&p, "销售明细_a.csv") && archived(&p, "客户主数据.csv")).then_some(())
    });
    let accounts = count(&p, "SELECT COUNT(*) FROM accounts");
    for f in ["kamwatch.db", "kamwatch.db-wal", "kamwatch.db-shm"] {
        let _ = std::fs::remove_file(p.path("var").join(f));
    }
    let mut d = d;
    let mut child = d.0.take().unwrap();
    let status = wait_for(30, "the daemon to stop", || child.try_wait().unwrap());
    assert!(!status.success(), "exited 0 after its database was deleted");
    let log = Daemon::log(&p);
    assert!(log.contains("was deleted or replaced"), "{log}");
    assert!(log.contains("kamwatch rebuild"), "{log}");

    let out = p.run_ok(&["rebuild"]);
    assert!(
        stdout(&out).contains("from 2 archived files"),
        "{}",
        show(&out)
    );
    assert_eq!(count(&p, "SELECT COUNT(*) FROM orders"), 7);
    assert_eq!(count(&p, "SELECT COUNT(*) FROM accounts"), accounts);
    // A second rebuild refuses to write over the database.
    let again = p.run(&["rebuild"]);
    assert_exit(&again, 1);
    assert!(
        stderr(&again).contains("move the old file aside"),
        "{}",
        show(&again)
    );
}

/// A damaged database page: the daemon refuses to start and says which
/// file and what to do; `status` says the same.
#[test]
fn a_damaged_database_is_reported_at_start_and_by_status() {
    let p = Project::new();
    p.run_ok(&[
        "ingest",
        fixture("销售明细_202609-10.csv").to_str().unwrap(),
    ]);
    let db = p.path("var/kamwatch.db");
    // Checkpoint the WAL into the file, then scribble over pages 3.. .
    p.db()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let len = std::fs::metadata(&db).unwrap().len();
    assert!(len > 4 * 4096, "a database of {len} bytes");
    let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    use std::io::Seek as _;
    f.seek(std::io::SeekFrom::Start(2 * 4096)).unwrap();
    f.write_all(&vec![0x5a; 2 * 4096]).unwrap();
    drop(f);
    let out = p.run(&["run"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("is damaged"), "{err}");
    assert!(err.contains(db.to_str().unwrap()), "{err}");
    assert!(err.contains("kamwatch rebuild"), "{err}");
    let st = p.run(&["status"]);
    assert_exit(&st, 1);
    let text = stdout(&st);
    assert!(text.contains("kamwatch rebuild"), "{}", show(&st));
}

/// Eight processes starting on a new database at once, twenty times: the
/// schema is migrated once and every process succeeds.
#[test]
fn processes_starting_together_on_a_new_database_all_succeed() {
    for round in 0..20 {
        let p = Project::new();
        let files: Vec<PathBuf> = (0..8)
            .map(|i| {
                let f = p.path(&format!("销售明细_{round}_{i}.csv"));
                std::fs::write(&f, format!("{HEADER}{}", rows(i * 10, 3))).unwrap();
                f
            })
            .collect();
        let children: Vec<_> = files
            .iter()
            .map(|f| {
                p.command(&["ingest", f.to_str().unwrap()])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let o = c.wait_with_output().unwrap();
            assert_exit(&o, 0);
        }
        assert_eq!(
            count(&p, "SELECT COUNT(*) FROM orders"),
            24,
            "round {round}"
        );
    }
}

/// A daemon stops cleanly after SIGTERM even with a FIFO in the inbox from
/// the start (no open() blocks the worker).
#[test]
fn sigterm_is_honoured_with_a_fifo_in_the_inbox() {
    let p = Project::new();
    mkfifo(&p.path("inbox/销售明细_pipe.csv"));
    let d = started(&p);
    wait_for(30, "the FIFO rejected", || {
        p.path("var/rejected/销售明细_pipe.csv.errors.txt")
            .exists()
            .then_some(())
    });
    assert!(d.stop().success());
}

/// Evaluations that fail (here: a table the metrics read is gone) are
/// shown by `kamwatch status`, with the error.
#[test]
fn status_shows_evaluations_failing() {
    let p = Project::new();
    let d = started(&p);
    let master = std::fs::read_to_string(fixture("客户主数据.csv")).unwrap();
    drop_file(&p, "客户主数据.csv", &master);
    wait_for(60, "a first evaluation", || {
        (count(&p, "SELECT COUNT(*) FROM evaluations") > 0).then_some(())
    });
    p.db()
        .execute_batch("ALTER TABLE visits RENAME TO visits_gone")
        .unwrap();
    // The daemon keeps its metrics in memory and after an orders file reads
    // only that file's accounts' lines again: SIGHUP (the database was
    // changed by hand) makes it read everything, visits too.
    d.signal("HUP");
    drop_file(&p, "销售明细_a.csv", &format!("{HEADER}{}", rows(1, 2)));
    let marker = p.path("var/kamwatch.db.eval-failed");
    wait_for(60, "the failed evaluation noted", || {
        marker.exists().then_some(())
    });
    let st = p.run(&["status"]);
    let text = stdout(&st);
    assert!(text.contains("evaluations are FAILING"), "{}", show(&st));
    assert!(text.contains("visits"), "{}", show(&st));
    let json = stdout(&p.run(&["status", "--format", "json"]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert!(v["evaluation_failing"]["error"].is_string(), "{json}");
    assert!(d.stop().success());
}
