//! The bad-input corpus beyond export files (those are in tests/ingest.rs):
//! rules that must not load or run, and configs that must be refused, each
//! with the message fragment it must produce.

use crate::support::*;

fn table(path: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(fixture(path))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').map(|f| f.replace("\\n", "\n")).collect())
        .collect()
}

#[test]
fn every_bad_rule_is_reported_with_where() {
    let cases = table("bad-rules/expected.tsv");
    assert!(cases.len() >= 8);
    // Every file in the folder is in the table.
    for e in std::fs::read_dir(fixture("bad-rules")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name == "expected.tsv" || cases.iter().any(|c| c[0] == name),
            "bad-rules/{name} has no line in expected.tsv"
        );
    }
    let p = Project::new();
    let fixtures = [
        "客户主数据.csv",
        "销售明细_202609-10.csv",
        "拜访记录_202609-10.csv",
    ]
    .map(|f| fixture(f).to_string_lossy().into_owned());
    let mut args = vec!["ingest"];
    args.extend(fixtures.iter().map(String::as_str));
    p.run_ok(&args);
    for c in &cases {
        let (file, command, fragment) = (&c[0], c[1].as_str(), &c[2]);
        for e in std::fs::read_dir(p.path("rules")).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        std::fs::copy(
            fixture(&format!("bad-rules/{file}")),
            p.path("rules").join(file),
        )
        .unwrap();
        let o = match command {
            "check" => p.run(&["check"]),
            _ => p.run(&["eval", "--as-of", "2026-10-31", "--dry-run"]),
        };
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert_eq!(o.status.code(), Some(1), "{file}: {}", show(&o));
        assert!(
            all.contains(fragment.as_str()),
            "{file}: no {fragment:?} in\n{all}"
        );
        if command == "eval" {
            // A run-time failure is reported once, with the rule, how many
            // accounts it failed for (all 20 here) and an example account.
            let stem = file.trim_end_matches(".rhai");
            let said = format!("rule {stem} failed for 20 accounts, e.g. KH");
            assert_eq!(all.matches(&said).count(), 1, "{file}: {all}");
        }
    }
}

#[test]
fn every_bad_config_is_refused_with_its_reason() {
    let cases = table("bad-config/cases.tsv");
    assert!(cases.len() >= 6);
    for c in &cases {
        let (from, to, fragment) = (&c[0], &c[1], &c[2]);
        let p = Project::new();
        let cfg = std::fs::read_to_string(p.config()).unwrap();
        assert!(
            cfg.contains(from.as_str()),
            "the shipped config has no {from:?}"
        );
        std::fs::write(p.config(), cfg.replacen(from.as_str(), to, 1)).unwrap();
        let o = p.run(&["check"]);
        assert_eq!(o.status.code(), Some(2), "{to:?}: {}", show(&o));
        assert!(
            stderr(&o).contains(fragment.as_str()),
            "{to:?}: no {fragment:?} in {}",
            stderr(&o)
        );
    }
}

/// Configs that would take the machine to parse them: over 1 MiB, a
/// "billion laughs" of nested YAML aliases the size of the one reported
/// (about 300 KB), and a FIFO. Each is refused at once with exit 2.
#[test]
fn configs_too_big_to_parse_are_refused() {
    let p = Project::new();
    let good = std::fs::read_to_string(p.config()).unwrap();

    let padded = format!("{good}\n#{}\n", "x".repeat(1024 * 1024));
    std::fs::write(p.config(), &padded).unwrap();
    let o = p.run(&["check"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(stderr(&o).contains("larger than 1024 KiB"), "{}", show(&o));

    std::fs::write(p.config(), format!("{good}\n{}", laughs(300_000))).unwrap();
    let o = p.run(&["check"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        stderr(&o).contains("values once its YAML aliases (*name) are expanded"),
        "{}",
        show(&o)
    );

    let fifo = p.path("fifo.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let o = p.run(&["check", "--config", fifo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(stderr(&o).contains("not a regular file"), "{}", show(&o));
}

/// YAML of about `bytes` whose aliases expand without bound: many wide
/// leaves (so the parser's own repetition limit, proportional to the
/// events, is high) under ten levels of nine aliases each.
fn laughs(bytes: usize) -> String {
    let mut y = String::from("lol0: &a0 [");
    while y.len() < bytes {
        y.push_str("lol, ");
    }
    y.push_str("lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        y.push_str(&format!("lol{i}: &a{i} [{refs}]\n"));
    }
    y
}

/// The same configs by SIGHUP to a running daemon: refused, the daemon
/// keeps running on the old config (it still ingests).
#[test]
fn sighup_with_an_expanding_config_keeps_the_daemon() {
    let p = Project::new();
    let d = Daemon::start(&p);
    wait_for(20, "the daemon to start", || {
        Daemon::log(&p).contains("kamwatch started").then_some(())
    });
    let good = std::fs::read_to_string(p.config()).unwrap();
    std::fs::write(p.config(), format!("{good}\n{}", laughs(300_000))).unwrap();
    d.signal("HUP");
    wait_for(20, "the reload to be refused", || {
        Daemon::log(&p).contains("refused").then_some(())
    });
    assert!(
        Daemon::log(&p).contains("YAML aliases"),
        "{}",
        Daemon::log(&p)
    );
    std::fs::copy(fixture("客户主数据.csv"), p.path("inbox/客户主数据.csv")).unwrap();
    wait_for(30, "the master ingested after the refused reload", || {
        let n: i64 = p
            .db()
            .query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))
            .unwrap_or(0);
        (n > 0).then_some(())
    });
    assert!(d.stop().success());
}

/// `print` in a loop: each run logs at most its allowance and one line
/// saying how much it dropped, so the log stays small.
#[test]
fn a_printing_rule_cannot_flood_the_log() {
    let p = Project::new();
    p.run_ok(&["ingest", fixture("客户主数据.csv").to_str().unwrap()]);
    for e in std::fs::read_dir(p.path("rules")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    std::fs::write(
        p.path("rules/chatty.rhai"),
        "for i in 0..100000 { print(`line ${i} of a chatty rule`); }\n",
    )
    .unwrap();
    // Prints are logged at info; the CLI logs warnings only by default.
    let o = p
        .command(&["eval", "--as-of", "2026-10-31", "--dry-run"])
        .env("KAMWATCH_LOG", "info")
        .output()
        .unwrap();
    assert_exit(&o, 0);
    let err = stderr(&o);
    let accounts = err.matches("rule chatty for account").count();
    assert!(accounts > 0, "no line says what was dropped:\n{err}");
    assert!(
        err.contains("print line(s) (") && err.contains("bytes) dropped"),
        "{err}"
    );
    // 20 lines per run are logged, not 100,000.
    assert_eq!(
        err.matches("line 20 of a chatty rule").count(),
        0,
        "a run printed more than 20 lines"
    );
    assert_eq!(err.matches("line 19 of a chatty rule").count(), accounts);
    assert!(
        err.len() < 200 * 1024,
        "{} bytes of log for {accounts} accounts",
        err.len()
    );
}

/// SIGTERM while rules run: a rule that builds a map in a loop, and one
/// that spends its whole operation budget on every account. The daemon
/// stops within the test's 10 s (the evaluation is stopped between
/// accounts and within a run; left alone it takes longer than that) and
/// records nothing of the evaluation.
#[test]
fn sigterm_stops_a_runaway_evaluation() {
    let p = Project::new();
    p.with_generated_history(120, 5);
    for e in std::fs::read_dir(p.path("rules")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    std::fs::copy(
        fixture("bad-rules/map_in_loop.rhai"),
        p.path("rules/map_in_loop.rhai"),
    )
    .unwrap();
    std::fs::write(
        p.path("rules/slow.rhai"),
        "print(`slow rule for ${account.id}`);\nlet n = 0;\nfor i in 0..300000 { n += i; }\n",
    )
    .unwrap();
    let evaluations = |p: &Project| -> i64 {
        p.db()
            .query_row("SELECT COUNT(*) FROM evaluations", [], |r| r.get(0))
            .unwrap_or(-1)
    };
    let d = Daemon::start(&p);
    wait_for(60, "the evaluation to be running", || {
        Daemon::log(&p).contains("slow rule for").then_some(())
    });
    let status = d.stop();
    assert!(status.success(), "exit after SIGTERM: {status}");
    let log = Daemon::log(&p);
    assert!(log.contains("stopped before it finished"), "{log}");
    assert_eq!(evaluations(&p), 0, "a partial evaluation was recorded");
    assert!(!log.contains("evaluated as of"), "{log}");
}
