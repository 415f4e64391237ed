use std::collections::HashMap;
use std::time::{Duration, Instant};

use kamwatch::generate::Rng;

use crate::support::*;

/// Splits a CSV into `parts` files with the same header, named by `name`.
fn split_csv(
    src: &std::path::Path,
    parts: usize,
    name: impl Fn(usize) -> String,
) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(src).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let rows: Vec<&str> = lines.collect();
    let per = rows.len().div_ceil(parts);
    rows.chunks(per)
        .enumerate()
        .map(|(i, chunk)| (name(i), format!("{header}\n{}\n", chunk.join("\n"))))
        .collect()
}

/// kill -9 at random moments while the daemon ingests a stream of files
/// and delivers mail, 50 times, restarting it each time. Afterwards every
/// good row is stored exactly once, every message in the outbox reached the
/// SMTP server (duplicates only with the same Message-ID), and every file
/// dropped is in the archive or in rejected/ with a reason.
#[test]
fn kill_9_loses_nothing_and_sends_once() {
    let smtp = SmtpServer::start();
    let p = Project::with_smtp(smtp.port);
    // Accounts without an owner email go to the catch-all: every alert mails.
    let cfg = std::fs::read_to_string(p.config()).unwrap();
    let cfg = cfg.replace(
        "# catch_all: sales-ops@example.com",
        "catch_all: sales-ops@example.com",
    );
    assert!(cfg.contains("\n  catch_all: sales-ops@example.com"));
    std::fs::write(p.config(), cfg).unwrap();
    let today = today();
    let s = kamwatch::generate::generate(&kamwatch::generate::GenerateOptions {
        out_dir: p.path("staging"),
        seed: 3,
        accounts: 60,
        end: today,
        months: 24,
    })
    .unwrap();
    let order_rows = s.order_lines as i64;
    let visit_rows = s.visits as i64;
    let mut drops: Vec<(String, String)> = Vec::new();
    drops.push((
        s.files[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
        std::fs::read_to_string(&s.files[0]).unwrap(),
    ));
    drops.extend(split_csv(&s.files[1], 24, |i| {
        format!("销售明细_part{i:02}.csv")
    }));
    drops.extend(split_csv(&s.files[2], 6, |i| {
        format!("拜访记录_part{i:02}.csv")
    }));
    // A malformed file in the middle of the batch.
    drops.insert(
        10,
        (
            "销售明细_broken.csv".into(),
            "订单编号,行号,客户编号,客户名称,订单日期,产品编号,产品名称,数量,单价,金额,成本\nX1,1,KH1001,x,not-a-date,SP,x,1,1,1,1\n".into(),
        ),
    );
    let dropped = drops.len();

    let mut rng = Rng::new(20261128);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut kills = 0;
    let mut next_drop = 0;
    while kills < 50 && Instant::now() < deadline {
        let mut d = Daemon::start_with(&p, &[("KAMWATCH_NOW", NOW)]);
        // Drop a few files (written elsewhere, renamed in: complete).
        for _ in 0..rng.below_u64(3) {
            if next_drop < drops.len() {
                let (name, text) = &drops[next_drop];
                let tmp = p.path("staging").join(format!(".{name}"));
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(&tmp, p.path("inbox").join(name)).unwrap();
                next_drop += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20 + rng.below_u64(380)));
        let mut child = d.0.take().unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    assert!(kills >= 50, "only {kills} kills in the time allowed");

    // The rest of the files, then a clean run to the end.
    for (name, text) in &drops[next_drop..] {
        let tmp = p.path("staging").join(format!(".{name}"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, p.path("inbox").join(name)).unwrap();
    }
    let mut d = Daemon::start_with(&p, &[("KAMWATCH_NOW", NOW)]);
    let db = || p.db();
    let count = |sql: &str| -> i64 { db().query_row(sql, [], |r| r.get(0)).unwrap() };
    let pending = || count("SELECT COUNT(*) FROM outbox WHERE state = 'pending'");
    wait_for(90, "every file taken and the outbox drained", || {
        (p.files_under("inbox").is_empty()
            && pending() == 0
            && count("SELECT COUNT(*) FROM evaluations") > 0)
            .then_some(())
    });
    // Stop once nothing is pending. An evaluation may still queue mail
    // between the last look and the stop (the metrics read in the
    // background after start-up, a debounced batch): queued mail is sent
    // at the next start, so start again until a stop leaves none.
    let mut starts = 1;
    loop {
        std::thread::sleep(Duration::from_secs(2));
        wait_for(60, "the outbox drained", || (pending() == 0).then_some(()));
        assert!(d.stop().success());
        if pending() == 0 {
            break;
        }
        assert!(starts < 4, "mail still queued after {starts} clean stops");
        d = Daemon::start_with(&p, &[("KAMWATCH_NOW", NOW)]);
        starts += 1;
    }

    // Rows: exactly once.
    assert_eq!(count("SELECT COUNT(*) FROM orders"), order_rows);
    assert_eq!(count("SELECT COUNT(*) FROM visits"), visit_rows);
    assert_eq!(count("SELECT COUNT(*) FROM accounts"), 60);

    // Files: none vanished; the broken one is rejected with a reason.
    let archived = p.files_under("var/archive").len();
    let rejected: Vec<_> = p.files_under("var/rejected");
    let reasons = rejected
        .iter()
        .filter(|f| f.to_string_lossy().ends_with(".errors.txt"))
        .count();
    assert_eq!(
        archived + rejected.len() - reasons,
        dropped,
        "archived {archived}, rejected {rejected:?}"
    );
    assert_eq!(reasons, 1);
    assert!(
        std::fs::read_to_string(
            rejected
                .iter()
                .find(|f| f.to_string_lossy().ends_with(".errors.txt"))
                .unwrap()
        )
        .unwrap()
        .contains("not-a-date")
    );

    // Mail: each outbox message at the server, duplicates only of the same
    // Message-ID (a kill between the server's OK and the outbox update).
    let mut at_server: HashMap<String, usize> = HashMap::new();
    for m in smtp.messages() {
        let parsed = mail_parser::MessageParser::default()
            .parse(&m.data)
            .unwrap();
        let id = parsed.message_id().expect("a Message-ID").to_string();
        *at_server.entry(id).or_default() += 1;
    }
    let conn = db();
    let mut st = conn
        .prepare("SELECT message_id, state FROM outbox")
        .unwrap();
    let outbox: Vec<(String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!outbox.is_empty(), "no warning was queued at all");
    for (id, state) in &outbox {
        assert_eq!(state, "sent", "{id}");
        let id = id.trim_matches(['<', '>']);
        assert!(at_server.contains_key(id), "{id} never reached the server");
    }
    assert_eq!(
        at_server.len(),
        outbox.len(),
        "the server got messages the outbox never had"
    );
    let duplicates: usize = at_server.values().map(|n| n - 1).sum();
    eprintln!(
        "{kills} kills; {} messages, {duplicates} same-Message-ID duplicates",
        outbox.len()
    );
    // Every alert that started was mailed: some message names its account.
    let mut st = conn
        .prepare(
            "SELECT DISTINCT h.account_id FROM alert_history h
             WHERE h.to_state = 'firing'
               AND NOT EXISTS (SELECT 1 FROM outbox o
                               WHERE instr(o.body_text, '客户 ' || h.account_id || ' · ') > 0)",
        )
        .unwrap();
    let unmailed: Vec<String> = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        unmailed.is_empty(),
        "alerts started but never mailed: {unmailed:?}"
    );
}
