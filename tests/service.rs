use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::support::*;

fn count(p: &Project, sql: &str) -> i64 {
    p.db().query_row(sql, [], |r| r.get(0)).unwrap_or(-1)
}

/// Generated exports in `staging/` of the project; returns (files, order rows).
fn exports(p: &Project, accounts: usize) -> (Vec<std::path::PathBuf>, usize) {
    let s = kamwatch::generate::generate(&kamwatch::generate::GenerateOptions {
        out_dir: p.path("staging"),
        seed: 11,
        accounts,
        end: chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(),
        months: 24,
    })
    .unwrap();
    (s.files, s.order_lines)
}

fn drop_in(p: &Project, f: &std::path::Path) {
    std::fs::rename(f, p.path("inbox").join(f.file_name().unwrap())).unwrap();
}

/// SIGTERM while a large file is being ingested: the daemon exits 0 and the
/// file is either wholly in the store (and archived) or not at all (and
/// still in the inbox, taken again at the next start).
#[test]
fn sigterm_mid_ingest_loses_nothing() {
    let p = Project::new();
    let (files, rows) = exports(&p, 300);
    let orders = &files[1];
    let d = Daemon::start(&p);
    wait_for(20, "the daemon to start", || {
        Daemon::log(&p).contains("kamwatch started").then_some(())
    });
    drop_in(&p, orders);
    // The ingest has begun once its attempt is recorded beside the database
    // (written before the first row is read, removed when the file is
    // done): stop then, not after a guessed sleep.
    let record = p.path("var/kamwatch.db.ingesting");
    wait_for(30, "the ingest to begin", || {
        std::fs::metadata(&record)
            .is_ok_and(|m| m.len() > 0)
            .then_some(())
    });
    let status = d.stop();
    assert!(status.success(), "exit after SIGTERM: {status}");
    // Proof that the signal landed during the ingest: the daemon heard it
    // before it logged the file as ingested, if it did at all.
    let log = Daemon::log(&p);
    let heard = log
        .find("SIGTERM: finishing the current step")
        .unwrap_or_else(|| panic!("no SIGTERM in the log:\n{log}"));
    if let Some(done) = log.find(" ingested file=") {
        assert!(
            heard < done,
            "the file was ingested before the signal came:\n{log}"
        );
    }
    let stored = count(&p, "SELECT COUNT(*) FROM orders");
    let in_inbox = p.files_under("inbox").len();
    assert!(
        (stored == rows as i64 && in_inbox == 0) || (stored == 0 && in_inbox == 1),
        "half a file: {stored} of {rows} rows stored, {in_inbox} files left in the inbox"
    );

    // Whatever was left is taken at the next start; nothing counted twice.
    let d = Daemon::start(&p);
    wait_for(20, "the daemon to start again", || {
        Daemon::log(&p).contains("kamwatch started").then_some(())
    });
    wait_for(60, "every row stored", || {
        (count(&p, "SELECT COUNT(*) FROM orders") == rows as i64
            && p.files_under("inbox").is_empty())
        .then_some(())
    });
    assert!(d.stop().success());
    assert_eq!(
        count(&p, "SELECT COUNT(*) FROM ledger WHERE outcome = 'ingested'"),
        1
    );
}

/// SIGHUP with a broken config is refused and the running config keeps
/// working; SIGHUP with a good one takes effect.
#[test]
fn sighup_with_broken_config_keeps_the_old_one() {
    let p = Project::new();
    let d = Daemon::start(&p);
    wait_for(20, "the daemon to start", || {
        Daemon::log(&p).contains("kamwatch started").then_some(())
    });
    let good = std::fs::read_to_string(p.config()).unwrap();
    std::fs::write(p.config(), good.replace("\ninbox:", "\ninbxo:")).unwrap();
    d.signal("HUP");
    wait_for(20, "the reload to be refused", || {
        Daemon::log(&p).contains("refused").then_some(())
    });
    assert!(Daemon::log(&p).contains("inbxo"), "{}", Daemon::log(&p));

    // Still watching and ingesting with the old config.
    let (files, _) = exports(&p, 20);
    drop_in(&p, &files[0]);
    wait_for(20, "the master ingested after the refused reload", || {
        (count(&p, "SELECT COUNT(*) FROM accounts") == 20).then_some(())
    });

    // A good config is taken: a new inbox is watched from now on.
    std::fs::write(
        p.config(),
        good.replace("\ninbox: inbox\n", "\ninbox: inbox2\n"),
    )
    .unwrap();
    d.signal("HUP");
    wait_for(20, "the reload", || {
        Daemon::log(&p).contains("reloaded").then_some(())
    });
    drop_in_dir(&files[2], &p.path("inbox2"));
    wait_for(30, "visits ingested from the new inbox", || {
        (count(&p, "SELECT COUNT(*) FROM visits") > 0).then_some(())
    });
    assert!(d.stop().success());
}

fn drop_in_dir(f: &std::path::Path, dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::rename(f, dir.join(f.file_name().unwrap())).unwrap();
}

/// Under systemd (NOTIFY_SOCKET, WATCHDOG_USEC) the daemon sends READY,
/// pings while healthy, stops pinging while a job is stuck (here: waiting
/// on a database lock another process holds), and pings again after.
#[test]
fn watchdog_pings_stop_while_stuck() {
    let p = Project::new();
    let cfg = std::fs::read_to_string(p.config()).unwrap();
    std::fs::write(
        p.config(),
        cfg.replace("stuck_after_secs: 600", "stuck_after_secs: 1"),
    )
    .unwrap();
    let sock_path = p.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let d = Daemon::start_with(
        &p,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "300000"),
        ],
    );
    // Messages with the time they arrived.
    let mut got: Vec<(Instant, String)> = Vec::new();
    let recv_until = |got: &mut Vec<(Instant, String)>, until: Instant| {
        let mut buf = [0u8; 512];
        while Instant::now() < until {
            if let Ok(n) = sock.recv(&mut buf) {
                got.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
        }
    };
    recv_until(&mut got, Instant::now() + Duration::from_secs(2));
    assert!(got.iter().any(|(_, m)| m.starts_with("READY=1")), "{got:?}");
    let pings = |got: &[(Instant, String)], from: Instant, to: Instant| {
        got.iter()
            // Each assignment may end with a newline (sd_notify(3)).
            .filter(|(t, m)| m.trim_end() == "WATCHDOG=1" && *t >= from && *t < to)
            .count()
    };
    let healthy_from = Instant::now() - Duration::from_secs(1);
    assert!(pings(&got, healthy_from, Instant::now()) >= 3, "{got:?}");

    // Hold the write lock, then drop a file: the ingest waits on the lock.
    let (files, _) = exports(&p, 20);
    let blocker = p.db();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    drop_in(&p, &files[0]);
    let stall_from = Instant::now();
    recv_until(&mut got, stall_from + Duration::from_secs(4));
    blocker.execute_batch("COMMIT").unwrap();
    drop(blocker);
    // Stuck after 1 s: from then on, no ping until the lock goes.
    let quiet_from = stall_from + Duration::from_millis(1800);
    assert_eq!(
        pings(&got, quiet_from, stall_from + Duration::from_secs(4)),
        0,
        "pings went on while the job was stuck"
    );
    let after = Instant::now();
    recv_until(&mut got, after + Duration::from_secs(2));
    assert!(
        pings(&got, after, Instant::now()) >= 2,
        "pings did not resume"
    );
    assert!(got.iter().any(|(_, m)| m.starts_with("STATUS=")));
    assert!(d.stop().success());
}

/// CLOCK_MONOTONIC now, in microseconds, as systemd reads it.
fn monotonic_usec() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) },
        0
    );
    i128::from(ts.tv_sec) * 1_000_000 + i128::from(ts.tv_nsec) / 1000
}

/// SIGHUP under systemd: RELOADING=1 with MONOTONIC_USEC on systemd's
/// clock (CLOCK_MONOTONIC, not the boot time that /proc/uptime gives,
/// which runs ahead after a suspend), then READY=1 once reloaded.
#[test]
fn reload_tells_systemd_on_the_monotonic_clock() {
    let p = Project::new();
    let sock_path = p.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let d = Daemon::start_with(&p, &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())]);
    let mut buf = [0u8; 512];
    let mut recv = |what: &str| -> String {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Ok(n) = sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                if m.starts_with(what) {
                    return m;
                }
            }
        }
        panic!("no {what} from the daemon");
    };
    recv("READY=1");
    let before = monotonic_usec();
    d.signal("HUP");
    let reloading = recv("RELOADING=1");
    let after = monotonic_usec();
    let usec: i128 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"))
        .parse()
        .unwrap();
    assert!(
        before <= usec && usec <= after,
        "MONOTONIC_USEC={usec} is not between {before} and {after}"
    );
    recv("READY=1");
    assert!(d.stop().success());
}

/// `kamwatch status` tells whether the daemon runs and what it last did.
#[test]
fn status_reports_the_daemon() {
    let p = Project::new();
    let o = p.run(&["status"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("not running"));

    let d = Daemon::start(&p);
    let (files, _) = exports(&p, 20);
    for f in &files {
        drop_in(&p, f);
    }
    wait_for(30, "an evaluation", || {
        (count(&p, "SELECT COUNT(*) FROM evaluations") >= 1).then_some(())
    });
    let o = p.run(&["status", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["running"], true);
    assert_eq!(v["pid"], d.0.as_ref().unwrap().id());
    assert_eq!(v["last_ingest"].as_array().unwrap().len(), 3);
    assert_eq!(v["last_evaluation"]["accounts"], 20);
    // A second daemon on the same database is refused, naming the first.
    let second = p.run(&["run"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        stderr(&second).contains("already running"),
        "{}",
        stderr(&second)
    );
    assert!(d.stop().success());
}

/// With stderr on a full disk the daemon keeps working: a log line that
/// cannot be written is dropped, never a panic ("failed printing to
/// stderr", exit 101), and SIGTERM still ends it cleanly.
#[test]
fn a_full_disk_under_stderr_never_stops_the_daemon() {
    let p = Project::new();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("opening /dev/full");
    let child = p
        .command(&["run"])
        .env("KAMWATCH_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(full)
        .spawn()
        .unwrap();
    let mut d = Daemon(Some(child));
    let (files, _) = exports(&p, 20);
    for f in &files {
        drop_in(&p, f);
    }
    wait_for(60, "the exports ingested and evaluated", || {
        let alive = d.0.as_mut().unwrap().try_wait().unwrap();
        assert!(alive.is_none(), "the daemon died: {alive:?}");
        (count(&p, "SELECT COUNT(*) FROM evaluations") >= 1).then_some(())
    });
    assert_eq!(d.stop().code(), Some(0));
}

/// An evaluation that fails (here: another process holds the write lock
/// past the busy timeout, as a long `kamwatch ingest` may) is tried again
/// with backoff once it can be: the book is evaluated without waiting for
/// the next file or the next day, and nothing is lost.
#[test]
fn a_failed_evaluation_is_tried_again() {
    let p = Project::new();
    p.edit_config("eval_debounce_ms: 0", "eval_debounce_ms: 2000");
    let d = Daemon::start(&p);
    wait_for(30, "the daemon to start", || {
        Daemon::log(&p).contains("kamwatch started").then_some(())
    });
    let (files, _) = exports(&p, 20);
    let count = |c: &rusqlite::Connection| -> i64 {
        c.query_row("SELECT COUNT(*) FROM evaluations", [], |r| r.get(0))
            .unwrap()
    };
    let blocker = p.db();
    let before = count(&blocker);
    for f in &files {
        drop_in(&p, f);
    }
    wait_for(60, "every file ingested", || {
        (Daemon::log(&p).matches(" ingested ").count() >= files.len()).then_some(())
    });
    // Within the debounce: the evaluation then waits on the lock, 10 s.
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    wait_for(30, "the evaluation to fail", || {
        Daemon::log(&p).contains("evaluation failed").then_some(())
    });
    assert_eq!(count(&blocker), before, "evaluated while the lock was held");
    blocker.execute_batch("COMMIT").unwrap();
    wait_for(30, "the evaluation tried again", || {
        (count(&blocker) > before).then_some(())
    });
    let log = Daemon::log(&p);
    assert!(log.contains("evaluating again in 1 s"), "{log}");
    assert!(d.stop().success());
}
