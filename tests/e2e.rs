use std::collections::{BTreeSet, HashMap};

use crate::support::*;

fn count(p: &Project, sql: &str) -> i64 {
    p.db().query_row(sql, [], |r| r.get(0)).unwrap_or(0)
}

/// (owner email, account name) by account id, from the generated master.
fn master(path: &std::path::Path) -> HashMap<String, (String, String)> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].to_string(), (rec[4].to_string(), rec[1].to_string()))
        })
        .collect()
}

/// The daemon, started on an empty inbox, takes generated exports dropped
/// into it, evaluates, and mails each warning once to the account's owner
/// through a real SMTP server; a second evaluation sends nothing new.
#[test]
fn daemon_mails_owners_once() {
    let smtp = SmtpServer::start();
    let p = Project::with_smtp(smtp.port);
    // The daemon's today is pinned, and the data ends on it.
    let daemon = Daemon::start_with(&p, &[("KAMWATCH_NOW", NOW)]);

    // Generate outside the inbox, then rename in: complete files only.
    let staging = p.path("staging");
    let today = today();
    let summary = kamwatch::generate::generate(&kamwatch::generate::GenerateOptions {
        out_dir: staging.clone(),
        seed: 7,
        accounts: 120,
        end: today,
        months: 24,
    })
    .unwrap();
    let accounts = master(&summary.files[0]);
    let managers: BTreeSet<String> = {
        let mut r = csv::Reader::from_path(&summary.files[0]).unwrap();
        r.records()
            .map(|rec| rec.unwrap()[5].to_string())
            .filter(|m| !m.is_empty())
            .collect()
    };
    for f in &summary.files {
        std::fs::rename(f, p.path("inbox").join(f.file_name().unwrap())).unwrap();
    }

    // All three files ingested, one evaluation, the outbox drained.
    wait_for(60, "three files ingested and an evaluation", || {
        (count(&p, "SELECT COUNT(*) FROM ledger WHERE outcome = 'ingested'") == 3
            && count(&p, "SELECT COUNT(*) FROM evaluations") >= 1)
            .then_some(())
    });
    let firing = count(&p, "SELECT COUNT(*) FROM alerts WHERE state = 'firing'");
    assert!(firing > 0, "no alert fired on generated data");
    let mailable = count(&p, "SELECT COUNT(*) FROM outbox");
    let msgs = wait_for(30, "every queued message at the SMTP server", || {
        let m = smtp.messages();
        (m.len() as i64 >= mailable
            && count(&p, "SELECT COUNT(*) FROM outbox WHERE state = 'pending'") == 0)
            .then_some(m)
    });
    assert_eq!(
        msgs.len() as i64,
        mailable,
        "each queued message arrives exactly once"
    );

    // Who got what: each message is one recipient's digest (or a single
    // warning); every listed (rule, account) reaches the owner once, and
    // the manager only sees critical ones.
    let mut got: BTreeSet<(String, String)> = BTreeSet::new();
    let mut notices: std::collections::BTreeMap<(String, String), i64> = Default::default();
    for m in &msgs {
        let parsed = mail_parser::MessageParser::default()
            .parse(&m.data)
            .expect("a parseable MIME message");
        let text = parsed.body_text(0).expect("a text part").to_string();
        assert!(parsed.body_html(0).is_some(), "an HTML part");
        assert_eq!(m.to.len(), 1, "one recipient per message");
        let subject = parsed.subject().unwrap_or_default();
        assert!(subject.starts_with("[kamwatch] "), "{subject:?}");
        let items = listed(&text);
        assert!(!items.is_empty(), "a message that lists nothing:\n{text}");
        for (rule, id) in items {
            let (email, name) = accounts.get(&id).expect("a known account");
            if &m.to[0] == email {
                assert!(
                    subject.contains(name.as_str()) || subject.contains("预警摘要"),
                    "subject {subject:?} names the account {name} or says it is a digest"
                );
                // A rule may raise several alerts (keys) for one account:
                // one notice each, no more.
                let keys = count(
                    &p,
                    &format!(
                        "SELECT COUNT(*) FROM alerts WHERE rule = '{rule}' AND account_id = '{id}'"
                    ),
                );
                let n = notices.entry((rule.clone(), id.clone())).or_insert(0);
                *n += 1;
                assert!(*n <= keys, "one notice per alert per owner: {rule} {id}");
                got.insert((rule, id));
            } else {
                assert!(
                    managers.contains(&m.to[0]),
                    "mail for {id} went to {:?}, neither owner nor a manager",
                    m.to
                );
            }
        }
    }

    // Every planted problem was caught and mailed (owners with an email).
    for (rule, planted) in [
        ("declining_orders", &summary.declining),
        ("margin_slip", &summary.margin_slipping),
        ("lapsed_visits", &summary.lapsed_visits),
    ] {
        for id in planted {
            if accounts[id].0.is_empty() {
                continue;
            }
            assert!(
                got.contains(&(rule.to_string(), id.clone())),
                "{rule} for planted account {id} was not mailed; got {got:?}"
            );
        }
    }

    // A second batch (one new visit of a healthy account) evaluates again
    // and sends nothing new: the alerts are still firing, not starting.
    let healthy = accounts
        .keys()
        .find(|id| {
            !summary.declining.contains(id)
                && !summary.margin_slipping.contains(id)
                && !summary.lapsed_visits.contains(id)
        })
        .unwrap()
        .clone();
    let visit = format!(
        "拜访日期,客户编号,拜访人,职务,拜访类型,备注\n{today},{healthy},测试,业务员,电话回访,\n"
    );
    std::fs::write(p.path("staging/v.csv"), visit).unwrap();
    std::fs::rename(p.path("staging/v.csv"), p.path("inbox/拜访记录_extra.csv")).unwrap();
    wait_for(30, "the second evaluation", || {
        (count(&p, "SELECT COUNT(*) FROM evaluations") >= 2).then_some(())
    });
    // SIGTERM lets the running job (the evaluation, then its delivery)
    // finish: whatever the second evaluation would send has been sent.
    let status = daemon.stop();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert_eq!(
        smtp.messages().len(),
        msgs.len(),
        "the second evaluation sent nothing"
    );
    assert_eq!(count(&p, "SELECT COUNT(*) FROM outbox"), mailable);

    // Every file left the inbox into the archive; none was rejected.
    assert!(p.files_under("inbox").is_empty());
    assert_eq!(p.files_under("var/archive").len(), 4);
    assert!(p.nothing_under("var/rejected"));

    let log = std::fs::read_to_string(p.path("daemon.log")).unwrap();
    assert!(log.contains("kamwatch stopped"), "{log}");
}

/// The (rule, account, key) of every alert `eval --dry-run --format json`
/// finds as of today.
fn dry_run_findings(p: &Project) -> BTreeSet<(String, String, String)> {
    let out = p.run_ok(&[
        "eval",
        "--as-of",
        "2026-11-28",
        "--dry-run",
        "--format",
        "json",
    ]);
    stdout(&out)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            (s("rule"), s("account_id"), s("key"))
        })
        .collect()
}

/// The alerts the daemon's last evaluation left pending or firing as
/// raised or held today: an alert kept firing after its rule stopped
/// raising it (a rule's `keep_firing_for_days`) has `cleared_since` set,
/// and no finding of today's.
fn daemon_alerts(p: &Project) -> BTreeSet<(String, String, String)> {
    let db = p.db();
    let mut st = db
        .prepare(
            "SELECT rule, account_id, key FROM alerts
             WHERE state IN ('pending', 'firing') AND cleared_since IS NULL",
        )
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The daemon keeps its metrics in memory and after a file reads again
/// only what it wrote: after a re-export that changes amounts and moves
/// lines between accounts, and after a file ingested by another process
/// (which makes it read everything), what it evaluated is what a full read
/// (`eval --dry-run`) finds, alert for alert.
#[test]
fn the_daemons_metrics_in_memory_follow_each_file() {
    let p = Project::new();
    p.with_generated_history(60, 11);
    let d = Daemon::start_with(
        &p,
        &[("KAMWATCH_NOW", NOW), ("KAMWATCH_LOG", "kamwatch=debug")],
    );
    // Evaluations as the log tells them (it is written after the commit).
    let evaluated = |n: usize| {
        wait_for(60, "an evaluation", || {
            (Daemon::log(&p).matches(" evaluated as_of=").count() >= n).then_some(())
        })
    };
    // The history was ingested before the start: it is evaluated at once.
    evaluated(1);
    assert!(Daemon::log(&p).contains("metrics read into memory"));
    let before = 1;

    // A re-export of 40 lines: amounts doubled, every other line moved to
    // another account.
    let orders = p
        .files_under("staging")
        .into_iter()
        .find(|f| f.to_string_lossy().contains("销售明细"))
        .unwrap();
    let text = std::fs::read_to_string(&orders).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<Vec<String>> = lines
        .rev()
        .take(40)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    let other = rows[0][2].clone();
    let mut re = format!("{header}\n");
    for (k, r) in rows.iter().enumerate() {
        let mut r = r.clone();
        let amount: f64 = r[9].parse().unwrap();
        r[9] = format!("{:.2}", amount * 2.0);
        if k % 2 == 1 {
            r[2] = other.clone();
        }
        re += &format!("{}\n", r.join(","));
    }
    let staged = p.path("re.tmp");
    std::fs::write(&staged, re).unwrap();
    std::fs::rename(&staged, p.path("inbox/销售明细_re.csv")).unwrap();
    evaluated(before + 1);
    let log = Daemon::log(&p);
    assert!(log.contains("metrics brought up to date"), "{log}");
    assert!(!log.contains("metrics read again whole"), "{log}");
    let found = dry_run_findings(&p);
    assert!(!found.is_empty(), "no alert on generated data");
    assert_eq!(daemon_alerts(&p), found);

    // Another process ingests a file: the daemon's next evaluation reads
    // everything again.
    let more = p.path("销售明细_more.csv");
    std::fs::write(
        &more,
        format!("{header}\nX1,1,{other},x,2026-11-28,SP-001,x,1,9.00,123456.00,100.00\n"),
    )
    .unwrap();
    p.run_ok(&["ingest", more.to_str().unwrap()]);
    let visits = "拜访日期,客户编号,拜访人,职务\n2026-11-28,{other},张三,业务员\n"
        .replace("{other}", &other);
    std::fs::write(p.path("v.tmp"), visits).unwrap();
    std::fs::rename(p.path("v.tmp"), p.path("inbox/拜访记录_more.csv")).unwrap();
    evaluated(before + 2);
    let log = Daemon::log(&p);
    assert!(
        log.contains("metrics read again whole") && log.contains("another process"),
        "{log}"
    );
    assert_eq!(daemon_alerts(&p), dry_run_findings(&p));
    assert!(d.stop().success());
}

/// What each message says, without what differs between two projects
/// (Message-ID, Date, the project's folder): (recipients, subject, text
/// part), sorted.
fn mails(p: &Project, msgs: &[Received]) -> Vec<(Vec<String>, String, String)> {
    let root = p.path("").display().to_string();
    let mut out: Vec<_> = msgs
        .iter()
        .map(|m| {
            let parsed = mail_parser::MessageParser::default()
                .parse(&m.data)
                .expect("a parseable MIME message");
            (
                m.to.clone(),
                parsed.subject().unwrap_or_default().to_string(),
                parsed
                    .body_text(0)
                    .unwrap_or_default()
                    .replace(root.trim_end_matches('/'), "<project>"),
            )
        })
        .collect();
    out.sort();
    out
}

/// Asserts two lists of [`mails`] are the same, showing the first difference.
fn same_mails(x: Vec<(Vec<String>, String, String)>, y: Vec<(Vec<String>, String, String)>) {
    for (m, n) in x.iter().zip(&y) {
        assert_eq!(m, n, "the first message that differs");
    }
    assert_eq!(x.len(), y.len(), "messages");
}

/// The messages the server got once everything queued in `p` was sent.
fn drained(p: &Project, smtp: &SmtpServer) -> Vec<Received> {
    wait_for(60, "every queued message at the SMTP server", || {
        let m = smtp.messages();
        (m.len() as i64 >= count(p, "SELECT COUNT(*) FROM outbox")
            && count(p, "SELECT COUNT(*) FROM outbox WHERE state = 'pending'") == 0)
            .then_some(m)
    })
}

/// (partial, accounts run, accounts) of the newest evaluation recorded.
fn newest_record(p: &Project) -> (bool, i64, i64) {
    p.db()
        .query_row(
            "SELECT partial, accounts_run, accounts FROM evaluations ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
}

/// Every alert state change on record: (rule, account, key, from, to, as of).
fn transitions(p: &Project) -> Vec<(String, String, String, Option<String>, String, String)> {
    let db = p.db();
    let mut st = db
        .prepare(
            "SELECT rule, account_id, key, from_state, to_state, as_of FROM alert_history ORDER BY id",
        )
        .unwrap();
    st.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// After a small drop the daemon runs the rules only where something
/// changed since its last evaluation of the day, and its evaluation record
/// and log say so; what it mails is what a full evaluation mails. The
/// other daemon of the test got SIGHUP before each drop, which makes its
/// next evaluation run every rule for every account; both got the same
/// book and the same files. A visits file for two accounts runs the rules
/// for those two; an order so large that its account jumps into tier A
/// (and pushes the accounts at the line out) moves the tiers of accounts
/// the file does not name, and their alerts change as a full run changes
/// them.
#[test]
fn a_small_drop_runs_the_rules_only_where_something_changed() {
    let (sa, sb) = (SmtpServer::start(), SmtpServer::start());
    let (a, b) = (Project::with_smtp(sa.port), Project::with_smtp(sb.port));
    for p in [&a, &b] {
        p.with_generated_history(60, 11);
    }
    let env = [("KAMWATCH_NOW", NOW)];
    let (da, db) = (Daemon::start_with(&a, &env), Daemon::start_with(&b, &env));
    let evaluated = |p: &Project, n: usize| {
        wait_for(60, "an evaluation", || {
            (Daemon::log(p).matches(" evaluated as_of=").count() >= n).then_some(())
        })
    };
    let full_next = |n: usize| {
        db.signal("HUP");
        wait_for(30, "the reload", || {
            (Daemon::log(&b).matches("reloaded").count() >= n).then_some(())
        });
    };
    let drop = |name: &str, text: &str| {
        for p in [&a, &b] {
            std::fs::write(p.path("drop.tmp"), text).unwrap();
            std::fs::rename(p.path("drop.tmp"), p.path("inbox").join(name)).unwrap();
        }
    };
    evaluated(&a, 1);
    evaluated(&b, 1);
    let (first_a, first_b) = (drained(&a, &sa).len(), drained(&b, &sb).len());
    assert!(first_a > 0, "no mail on generated data");
    same_mails(mails(&a, &sa.messages()), mails(&b, &sb.messages()));

    // Visits for two accounts.
    let ids: Vec<String> = {
        let db = a.db();
        let mut st = db
            .prepare("SELECT id FROM accounts WHERE active = 1 ORDER BY id LIMIT 2")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    full_next(1);
    drop(
        "拜访记录_d1.csv",
        &format!(
            "拜访日期,客户编号,拜访人,职务\n2026-11-28,{},张三,业务员\n2026-11-27,{},李四,经理\n",
            ids[0], ids[1]
        ),
    );
    evaluated(&a, 2);
    evaluated(&b, 2);
    // Only the rule that reads visits runs, for those of the two accounts
    // in its tiers (lapsed_visits: A and B): no other rule reads them.
    let (partial, run, accounts) = newest_record(&a);
    assert!(
        partial && (1..=2).contains(&run) && accounts == 60,
        "{partial} {run} {accounts}"
    );
    assert_eq!(newest_record(&b), (false, 60, 60));
    let log = Daemon::log(&a);
    let ran = log
        .lines()
        .rfind(|l| l.contains("rules run only where something changed"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        ran.contains(&format!("accounts_run={run} "))
            && ran.contains(&format!("everywhere=lapsed_visits {run} (its own visits"))
            && !ran.contains("tier_movement"),
        "{ran}"
    );

    // The smallest account orders more than the whole book in a year.
    let small: String = a
        .db()
        .query_row(
            "SELECT a.id FROM accounts a LEFT JOIN orders o ON o.account_id = a.id
             WHERE a.active = 1 GROUP BY a.id ORDER BY IFNULL(SUM(o.revenue), 0), a.id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let header = "订单编号,行号,客户编号,客户名称,订单日期,产品编号,产品名称,数量,单价,金额,成本";
    let before = transitions(&a);
    full_next(2);
    drop(
        "销售明细_d2.csv",
        &format!(
            "{header}\nBIG1,1,{small},x,2026-11-28,SP-001,x,1,9.00,900000000.00,500000000.00\nBIG1,2,{},x,2026-11-28,SP-002,x,2,9.00,18.00,10.00\n",
            ids[0]
        ),
    );
    evaluated(&a, 3);
    evaluated(&b, 3);
    let (partial, run, accounts) = newest_record(&a);
    assert!(partial && run <= accounts, "{partial} {run} {accounts}");
    assert!(!newest_record(&b).0);
    let log = Daemon::log(&a);
    // Which rules ran where, and what they had read that moved: the book.
    assert!(
        log.lines()
            .any(|l| l.contains("rules run only where something changed")
                && l.contains("tier_movement ")
                && l.contains("the book's total")),
        "{log}"
    );
    // Alerts of accounts the file does not name changed: the tiers moved.
    let moved: BTreeSet<String> = transitions(&a)[before.len()..]
        .iter()
        .map(|t| t.1.clone())
        .filter(|id| *id != small && *id != ids[0])
        .collect();
    assert!(!moved.is_empty(), "no alert of another account changed");
    assert_eq!(transitions(&a), transitions(&b));
    let (now_a, now_b) = (drained(&a, &sa), drained(&b, &sb));
    assert!(now_a.len() > first_a, "the drops were not mailed");
    // The mails of the partial evaluations are a full evaluation's.
    same_mails(mails(&a, &now_a[first_a..]), mails(&b, &now_b[first_b..]));
    assert!(da.stop().success() && db.stop().success());
}
