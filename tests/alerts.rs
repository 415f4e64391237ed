//! The alert lifecycle through the real binary, one `eval --as-of` after
//! another: resolve after the data changes, silences, repeats, quiet
//! windows, a restart in the middle, and the retention check.

use std::path::PathBuf;

use mail_parser::MessageParser;

use crate::support::*;

const MASTER: &str = "客户主数据.csv";
const ORDERS: &str = "销售明细_202609-10.csv";
const VISITS: &str = "拜访记录_202609-10.csv";
// KH1001 (华联超市, owner zhang.wei@example.com) was last visited on
// 2026-10-16: as of 2026-10-31 its 14-day cadence has lapsed.
const RULE: &str = "lapsed_visits";
const ACCOUNT: &str = "KH1001";
const OWNER: &str = "zhang.wei@example.com";

/// A project whose config went through `edit`, holding the fixtures.
fn project(edit: impl Fn(&str) -> String) -> Project {
    let p = Project::new();
    let cfg = std::fs::read_to_string(p.config()).unwrap();
    std::fs::write(p.config(), edit(&cfg)).unwrap();
    let files = [MASTER, ORDERS, VISITS].map(|f| fixture(f).to_string_lossy().into_owned());
    let mut args = vec!["ingest"];
    args.extend(files.iter().map(String::as_str));
    assert_exit(&p.run(&args), 0);
    p
}

fn eval(p: &Project, as_of: &str) -> String {
    let o = p.run(&["eval", "--as-of", as_of]);
    assert_exit(&o, 0);
    stdout(&o)
}

/// One .eml file as a reader sees it.
#[derive(Debug)]
struct Mail {
    file: PathBuf,
    to: Vec<String>,
    subject: String,
    text: String,
    items: Vec<(String, String)>,
}

impl Mail {
    fn lists(&self, rule: &str, account: &str) -> bool {
        self.items.iter().any(|(r, a)| r == rule && a == account)
    }

    /// The text of the listed item about `account` (a digest lists several).
    fn item_text(&self, account: &str) -> String {
        let marker = format!("({account})");
        let start = self.text.find(&marker).expect("the account in the text");
        let end = self.text[start..]
            .find("评估日期")
            .map_or(self.text.len(), |e| start + e);
        self.text[start..end].to_string()
    }
}

/// Every message written so far, in outbox order.
fn mails(p: &Project) -> Vec<Mail> {
    p.files_under("var/mail")
        .into_iter()
        .map(|file| {
            let bytes = std::fs::read(&file).unwrap();
            let m = MessageParser::default()
                .parse(&bytes)
                .unwrap_or_else(|| panic!("{} does not parse", file.display()));
            let text = m.body_text(0).expect("a text part").to_string();
            assert!(
                m.body_html(0).is_some(),
                "no HTML part in {}",
                file.display()
            );
            Mail {
                to: m
                    .to()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.address())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
                subject: m.subject().unwrap_or_default().to_string(),
                items: listed(&text),
                text,
                file,
            }
        })
        .collect()
}

fn history(p: &Project, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["history", "--format", "json"];
    all.extend_from_slice(args);
    let o = p.run(&all);
    assert_exit(&o, 0);
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn state(p: &Project, rule: &str, account: &str) -> String {
    p.db()
        .query_row(
            "SELECT state FROM alerts WHERE rule = ?1 AND account_id = ?2 AND key = ''",
            [rule, account],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("no alert {rule} {account}: {e}"))
}

/// A visit recorded after the fixtures clears the lapsed-visit alert: the
/// owner is told it resolved and how long it lasted; history has it all.
#[test]
fn alert_resolves_after_the_data_changes() {
    let p = project(str::to_string);
    eval(&p, "2026-10-31");
    assert_eq!(state(&p, RULE, ACCOUNT), "firing");
    let before = mails(&p);
    let start: Vec<&Mail> = before.iter().filter(|m| m.lists(RULE, ACCOUNT)).collect();
    assert_eq!(start.len(), 1, "{before:#?}");
    assert_eq!(start[0].to, [OWNER]);

    let visit = p.path("拜访记录_补录.csv");
    std::fs::write(
        &visit,
        "拜访日期,客户编号,拜访人,职务,拜访类型,备注\n2026-11-01,KH1001,张伟,业务员,上门拜访,\n",
    )
    .unwrap();
    assert_exit(&p.run(&["ingest", visit.to_str().unwrap()]), 0);
    let out = eval(&p, "2026-11-01");
    assert!(out.contains("1 resolved"), "{out}");
    assert_eq!(state(&p, RULE, ACCOUNT), "resolved");

    let after = mails(&p);
    let new: Vec<&Mail> = after[before.len()..]
        .iter()
        .filter(|m| m.lists(RULE, ACCOUNT))
        .collect();
    assert_eq!(new.len(), 1, "one resolved notice: {after:#?}");
    assert_eq!(new[0].to, [OWNER]);
    let item = new[0].item_text(ACCOUNT);
    assert!(
        item.contains("已恢复") && item.contains("持续 1 天"),
        "{item}"
    );

    // Evaluating the same day again changes nothing and sends nothing.
    let again = eval(&p, "2026-11-01");
    assert!(again.contains("0 started, 0 resolved"), "{again}");
    assert_eq!(mails(&p).len(), after.len());

    let h = history(&p, &["--account", ACCOUNT, "--rule", RULE]);
    let steps: Vec<String> = h
        .iter()
        .map(|e| match e["event"].as_str().unwrap() {
            "state" => format!("{} {}", e["as_of"], e["to_state"]),
            _ => format!("{} {} {}", e["as_of"], e["notice"], e["mail"]),
        })
        .collect();
    assert_eq!(
        steps,
        [
            r#""2026-10-31" "firing""#,
            r#""2026-10-31" "started" "mailed""#,
            r#""2026-11-01" "resolved""#,
            r#""2026-11-01" "resolved" "mailed""#,
        ]
    );
    for e in h.iter().filter(|e| e["event"] == "notice") {
        assert_eq!(e["recipients"], serde_json::json!([OWNER]), "{e}");
        assert_eq!(e["delivery"], serde_json::json!(["sent"]), "{e}");
    }
    // --since leaves out what came before.
    assert_eq!(
        history(
            &p,
            &[
                "--account",
                ACCOUNT,
                "--rule",
                RULE,
                "--since",
                "2026-11-01"
            ]
        )
        .len(),
        2
    );

    // Fifteen days after that visit the cadence lapses again: a new start.
    eval(&p, "2026-11-16");
    assert_eq!(state(&p, RULE, ACCOUNT), "firing");
    let h = history(
        &p,
        &[
            "--account",
            ACCOUNT,
            "--rule",
            RULE,
            "--since",
            "2026-11-16",
        ],
    );
    // The lapsed cadence (key ""); day 47 of the quarter also starts the
    // missing senior visit, an alert of its own (key "senior").
    let lapsed: Vec<&serde_json::Value> = h.iter().filter(|e| e["key"] == "").collect();
    assert_eq!(lapsed[0]["from_state"], "resolved", "{h:?}");
    assert_eq!(lapsed[0]["to_state"], "firing", "{h:?}");
    assert_eq!(lapsed[1]["notice"], "started", "{h:?}");
    assert!(
        h.iter()
            .any(|e| e["key"] == "senior" && e["notice"] == "started"),
        "{h:?}"
    );
}

/// A silence keeps the alert's mail back (the alert is still recorded),
/// and once it ends the owner gets the start notice after all.
#[test]
fn silence_suppresses_then_lets_mail_through() {
    let p = project(str::to_string);
    // Silences are added on 2026-10-31: `--until` must not be in the past.
    let at = |args: &[&str]| {
        p.command(args)
            .env("KAMWATCH_NOW", "2026-10-31T04:00:00Z")
            .output()
            .unwrap()
    };
    let add = at(&[
        "silence",
        "add",
        "--rule",
        RULE,
        "--account",
        ACCOUNT,
        "--until",
        "2026-11-02",
        "--reason",
        "门店装修，暂停拜访",
    ]);
    assert_exit(&add, 0);
    assert!(stdout(&add).contains("silence 1 added"), "{}", show(&add));

    // Two scopes, or none, is a usage error.
    let both = [
        "silence",
        "add",
        "--rule",
        RULE,
        "--account",
        ACCOUNT,
        "--tier",
        "A",
        "--until",
        "2026-11-02",
        "--reason",
        "x",
    ];
    assert_exit(&at(&both), 2);
    let none = [
        "silence",
        "add",
        "--rule",
        RULE,
        "--until",
        "2026-11-02",
        "--reason",
        "x",
    ];
    let o = at(&none);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("--account, --tier or --owner"),
        "{}",
        show(&o)
    );

    // A misspelt rule or a tier that does not exist would silence nothing.
    let typo = [
        "silence",
        "add",
        "--rule",
        "lapsed_visit",
        "--account",
        ACCOUNT,
        "--until",
        "2026-11-02",
        "--reason",
        "x",
    ];
    let o = at(&typo);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("lapsed_visits"), "{}", show(&o));
    let tier = [
        "silence",
        "add",
        "--rule",
        RULE,
        "--tier",
        "D",
        "--until",
        "2026-11-02",
        "--reason",
        "x",
    ];
    assert_exit(&at(&tier), 2);

    let list = p.run(&["silence", "list", "--format", "json"]);
    assert_exit(&list, 0);
    let listed: Vec<serde_json::Value> = stdout(&list)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1, "{}", show(&list));
    assert_eq!(listed[0]["rule"], RULE);
    assert_eq!(listed[0]["scope"], "account");
    assert_eq!(listed[0]["value"], ACCOUNT);
    assert_eq!(listed[0]["until"], "2026-11-02");
    assert_eq!(listed[0]["reason"], "门店装修，暂停拜访");

    eval(&p, "2026-10-31");
    assert_eq!(state(&p, RULE, ACCOUNT), "firing", "silenced, yet recorded");
    let first = mails(&p);
    assert!(!first.is_empty(), "other alerts are still mailed");
    assert!(
        !first.iter().any(|m| m.lists(RULE, ACCOUNT)),
        "a silenced alert was mailed"
    );
    assert!(
        first.iter().any(|m| m.to == [OWNER]),
        "the owner's other alerts still go out"
    );
    let h = history(&p, &["--account", ACCOUNT, "--rule", RULE]);
    assert!(
        h.iter()
            .any(|e| e["notice"] == "started" && e["mail"] == "silenced"),
        "{h:?}"
    );

    eval(&p, "2026-11-02"); // the last silenced day
    assert!(
        !mails(&p).iter().any(|m| m.lists(RULE, ACCOUNT)),
        "mailed on the silence's last day"
    );

    eval(&p, "2026-11-03");
    let all = mails(&p);
    let now: Vec<&Mail> = all.iter().filter(|m| m.lists(RULE, ACCOUNT)).collect();
    assert_eq!(now.len(), 1, "the start notice after the silence: {all:#?}");
    assert_eq!(now[0].to, [OWNER]);
    assert!(
        now[0].item_text(ACCOUNT).contains("新预警"),
        "{}",
        now[0].text
    );

    // Expire: listed as expired; expiring twice or an unknown id fails.
    let add = at(&[
        "silence",
        "add",
        "--rule",
        "*",
        "--tier",
        "b",
        "--until",
        "2027-01-01",
        "--reason",
        "year end",
    ]);
    assert_exit(&add, 0);
    assert_exit(&p.run(&["silence", "expire", "2"]), 0);
    assert_exit(&p.run(&["silence", "expire", "2"]), 1);
    let o = p.run(&["silence", "expire", "99"]);
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("no silence 99"), "{}", show(&o));
    let text = stdout(&p.run(&["silence", "list"]));
    assert!(
        text.lines()
            .any(|l| l.contains("tier B") && l.contains("expired")),
        "{text}"
    );
}

/// While an alert keeps firing it is mailed again after the repeat
/// interval (7 days by default), and not before.
#[test]
fn repeat_comes_after_the_interval() {
    let p = project(str::to_string);
    eval(&p, "2026-10-31");
    let n = mails(&p).len();
    for day in ["2026-11-03", "2026-11-06"] {
        eval(&p, day);
        assert!(
            !mails(&p)[n..].iter().any(|m| m.lists(RULE, ACCOUNT)),
            "repeated before the interval, as of {day}"
        );
    }
    eval(&p, "2026-11-07");
    let all = mails(&p);
    let repeat: Vec<&Mail> = all[n..].iter().filter(|m| m.lists(RULE, ACCOUNT)).collect();
    assert_eq!(repeat.len(), 1, "{all:#?}");
    assert_eq!(repeat[0].to, [OWNER]);
    let item = repeat[0].item_text(ACCOUNT);
    assert!(item.contains("仍未解决：自 2026-10-31 起已 7 天"), "{item}");
    eval(&p, "2026-11-08");
    assert!(
        !mails(&p)[all.len()..]
            .iter()
            .any(|m| m.lists(RULE, ACCOUNT)),
        "repeated again the next day"
    );
}

/// Everything an evaluation writes, with no wall-clock column: the alerts,
/// their history, the notices and the outbox.
fn dump(p: &Project) -> Vec<String> {
    let db = p.db();
    let mut out = Vec::new();
    for sql in [
        "SELECT rule || '|' || account_id || '|' || state || '|' || severity || '|' || pending_count || '|' ||
                COALESCE(started_at, '') || '|' || COALESCE(last_notified_at, '') || '|' || notified
         FROM alerts ORDER BY rule, account_id",
        "SELECT rule || '|' || account_id || '|' || COALESCE(from_state, '') || '|' || to_state || '|' || as_of
         FROM alert_history ORDER BY id",
        "SELECT rule || '|' || account_id || '|' || kind || '|' || state || '|' || as_of || '|' || recipients
         FROM notifications ORDER BY id",
        // Message-IDs carry the database's own random installation id:
        // two databases compare equal without it.
        "SELECT replace(message_id, (SELECT id FROM installation), 'INSTALLATION') || '|' || recipients || '|' || subject || '|' || body_text FROM outbox ORDER BY id",
    ] {
        let mut st = db.prepare(sql).unwrap();
        // The silence command in each mail names the project's own config.
        let home = p.dir.path().display().to_string();
        out.extend(
            st.query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(|r| r.unwrap().replace(&home, "PROJECT")),
        );
    }
    out
}

/// With "for 2 evaluations", a restart (a new process) that evaluates a
/// day again neither forgets the pending alert nor counts or sends
/// anything twice: the end state equals that of an uninterrupted run.
#[test]
fn restart_in_the_middle_changes_nothing() {
    let two = |c: &str| c.replace("for_evaluations: 1", "for_evaluations: 2");
    let steady = project(two);
    let restarted = project(two);

    eval(&steady, "2026-10-31");
    assert_eq!(state(&steady, RULE, ACCOUNT), "pending");
    assert!(mails(&steady).is_empty(), "a pending alert was mailed");

    eval(&restarted, "2026-10-31");
    eval(&restarted, "2026-10-31");
    assert_eq!(state(&restarted, RULE, ACCOUNT), "pending");

    eval(&steady, "2026-11-01");
    eval(&restarted, "2026-11-01");
    eval(&restarted, "2026-11-01");
    assert_eq!(state(&steady, RULE, ACCOUNT), "firing");
    let sent = mails(&steady);
    assert!(sent.iter().any(|m| m.lists(RULE, ACCOUNT)), "{sent:#?}");
    assert_eq!(
        dump(&restarted),
        dump(&steady),
        "re-running days changed the outcome"
    );
    assert_eq!(mails(&restarted).len(), sent.len());
}

/// Mail of an evaluation in a quiet window (weekends here; 2026-10-31 is a
/// Saturday) is held and goes out at the first evaluation after it.
#[test]
fn quiet_window_holds_mail_until_after() {
    let p = project(|c| {
        c.replace(
            "  quiet: []\n",
            "  quiet:\n    - name: weekend\n      weekdays: [sat, sun]\n",
        )
    });
    eval(&p, "2026-10-31");
    eval(&p, "2026-11-01");
    assert!(mails(&p).is_empty(), "mailed on a weekend");
    let held: i64 = p
        .db()
        .query_row(
            "SELECT COUNT(*) FROM notifications WHERE state = 'held'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(held > 0);
    eval(&p, "2026-11-02");
    let all = mails(&p);
    let items: usize = all
        .iter()
        .filter(|m| m.to == [OWNER])
        .map(|m| m.items.len())
        .sum();
    assert!(items >= 1, "{all:#?}");
    assert!(all.iter().any(|m| m.lists(RULE, ACCOUNT)));
    let left: i64 = p
        .db()
        .query_row(
            "SELECT COUNT(*) FROM notifications WHERE state = 'held'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
    for m in &all {
        assert!(m.subject.starts_with("[kamwatch]"), "{}", m.file.display());
    }
}

/// A retention shorter than a repeat interval is refused by `check` with
/// the reason (exit 2), not silently capped.
#[test]
fn check_refuses_retention_shorter_than_a_repeat() {
    let p = Project::new();
    p.edit_config("history_retention_days: 400", "history_retention_days: 5");
    let o = p.run(&["check"]);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("history_retention_days is 5") && err.contains("at least 7"),
        "{}",
        show(&o)
    );
}

/// With `digest.critical_immediately`, each critical alert goes alone to
/// owner and manager together; the rest still come as one digest per
/// recipient.
#[test]
fn critical_alerts_can_go_at_once() {
    let p = project(|c| c.replace("critical_immediately: false", "critical_immediately: true"));
    eval(&p, "2026-10-31");
    let all = mails(&p);
    let critical: Vec<(String, String)> = {
        let db = p.db();
        let mut st = db
            .prepare("SELECT rule, account_id FROM alerts WHERE state = 'firing' AND severity = 'critical'")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert!(!critical.is_empty(), "no critical alert on the fixtures");
    for (rule, id) in &critical {
        let carrying: Vec<&Mail> = all.iter().filter(|m| m.lists(rule, id)).collect();
        assert_eq!(carrying.len(), 1, "{rule} {id}: {all:#?}");
        assert_eq!(
            carrying[0].items.len(),
            1,
            "a critical alert shares a message"
        );
        assert_eq!(
            carrying[0].to.len(),
            2,
            "owner and manager: {:?}",
            carrying[0].to
        );
        assert!(
            carrying[0].subject.contains("严重"),
            "{}",
            carrying[0].subject
        );
    }
    let others: usize = all
        .iter()
        .filter(|m| !critical.iter().any(|(r, a)| m.lists(r, a)))
        .map(|m| m.items.len())
        .sum();
    let firing: i64 = p
        .db()
        .query_row(
            "SELECT COUNT(*) FROM alerts WHERE state = 'firing' AND severity <> 'critical'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(others as i64, firing, "the others are all listed once");
}

/// A rule that fails at run time is kamwatch's own problem: the admin gets
/// one message naming it, and the same failure the next day is not news.
#[test]
fn rule_failures_go_to_the_admin_once() {
    let p = project(|c| c.replace("  # admin: it@example.com", "  admin: it@example.com"));
    std::fs::write(
        p.path("rules/broken.rhai"),
        "// fails for every account\nlet x = account.no_such_field + 1;\n",
    )
    .unwrap();
    let o = p.run(&["eval", "--as-of", "2026-10-31"]);
    assert_exit(&o, 1);
    let accounts: i64 = p
        .db()
        .query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))
        .unwrap();
    // Once per rule, with the count and one example: not a line per account.
    let said = format!("rule broken failed for {accounts} accounts, e.g. KH");
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("broken")).collect();
    assert_eq!(lines.len(), 1, "{}", show(&o));
    assert!(lines[0].contains(&said), "{}", show(&o));
    assert!(lines[0].contains("no_such_field"), "{}", show(&o));
    // The summary counts the failed runs.
    assert!(
        stdout(&o).contains(&format!("{accounts} rule run(s) failed (1 rule(s)")),
        "{}",
        show(&o)
    );
    let admin: Vec<Mail> = mails(&p)
        .into_iter()
        .filter(|m| m.to == ["it@example.com"])
        .collect();
    assert_eq!(admin.len(), 1, "{}", show(&o));
    assert!(admin[0].subject.contains("系统"), "{}", admin[0].subject);
    let about: Vec<&str> = admin[0]
        .text
        .lines()
        .filter(|l| l.contains("broken"))
        .collect();
    assert_eq!(about.len(), 1, "{}", admin[0].text);
    assert!(about[0].contains(&said), "{}", admin[0].text);
    let n = mails(&p).len();
    assert_exit(&p.run(&["eval", "--as-of", "2026-11-01"]), 1);
    assert!(
        !mails(&p)[n..].iter().any(|m| m.to == ["it@example.com"]),
        "the same failure was mailed again"
    );
}

/// Messages written since the first `n` that list `RULE` for `ACCOUNT`.
fn listing_since(p: &Project, n: usize) -> Vec<Mail> {
    mails(p)
        .into_iter()
        .skip(n)
        .filter(|m| m.lists(RULE, ACCOUNT))
        .collect()
}

/// An alert is cleared only by a run of its rule for its account that did
/// not raise it. A run that failed for the account, a rule that no longer
/// compiles, and a disabled rule all leave it firing, and nobody is told it
/// resolved. Once the rule runs again and the data has changed, it resolves.
#[test]
fn an_alert_is_not_resolved_by_a_rule_that_did_not_run() {
    let p = project(str::to_string);
    eval(&p, "2026-10-31");
    assert_eq!(state(&p, RULE, ACCOUNT), "firing");
    let good = std::fs::read_to_string(p.path("rules/lapsed_visits.rhai")).unwrap();
    // The visit that clears it on 2026-11-01, once the rule runs.
    let visit = p.path("拜访记录_补录.csv");
    std::fs::write(
        &visit,
        "拜访日期,客户编号,拜访人,职务,拜访类型,备注\n2026-11-01,KH1001,张伟,业务员,上门拜访,\n",
    )
    .unwrap();
    assert_exit(&p.run(&["ingest", visit.to_str().unwrap()]), 0);
    let n = mails(&p).len();

    // 1. The rule fails for this account only.
    std::fs::write(
        p.path("rules/lapsed_visits.rhai"),
        good.replace(
            "let tier = account.tier;",
            "if account.id == \"KH1001\" { throw \"no data for KH1001\"; }\nlet tier = account.tier;",
        ),
    )
    .unwrap();
    let o = p.run(&["eval", "--as-of", "2026-11-01"]);
    assert_exit(&o, 1);
    assert_eq!(state(&p, RULE, ACCOUNT), "firing", "{}", show(&o));

    // 2. The rule no longer compiles.
    std::fs::write(p.path("rules/lapsed_visits.rhai"), "let x = (1 + ;\n").unwrap();
    let o = p.run(&["eval", "--as-of", "2026-11-02"]);
    assert_exit(&o, 1);
    assert_eq!(state(&p, RULE, ACCOUNT), "firing", "{}", show(&o));

    // 3. The rule compiles again but is disabled in the config.
    std::fs::write(p.path("rules/lapsed_visits.rhai"), &good).unwrap();
    p.edit_config(
        "# rule_settings:\n",
        "rule_settings:\n  lapsed_visits:\n    enabled: false\n",
    );
    let o = p.run(&["eval", "--as-of", "2026-11-03"]);
    assert_exit(&o, 0);
    assert_eq!(state(&p, RULE, ACCOUNT), "firing", "{}", show(&o));
    assert!(
        listing_since(&p, n).is_empty(),
        "a rule that did not run mailed about the alert"
    );

    // 4. Enabled again, it runs, sees the visit and resolves the alert.
    p.edit_config("    enabled: false\n", "    enabled: true\n");
    let out = eval(&p, "2026-11-04");
    assert_eq!(state(&p, RULE, ACCOUNT), "resolved", "{out}");
    let resolved = listing_since(&p, n);
    assert_eq!(resolved.len(), 1, "{resolved:#?}");
    assert!(resolved[0].item_text(ACCOUNT).contains("已恢复"));
}

/// An account the newest master no longer lists is not evaluated, and that
/// is no evidence its problems are over: its alerts stay as they were and
/// nobody is told "resolved". Listed again, it is evaluated as before.
#[test]
fn an_account_switched_off_by_the_master_is_not_resolved() {
    let p = project(str::to_string);
    eval(&p, "2026-10-31");
    assert_eq!(state(&p, RULE, ACCOUNT), "firing");
    let n = mails(&p).len();
    let full = std::fs::read_to_string(fixture(MASTER)).unwrap();
    let without: String = full
        .lines()
        .filter(|l| !l.starts_with(&format!("{ACCOUNT},")))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(without.lines().count() + 1, full.lines().count());
    let master = p.path("客户主数据_少一户.csv");
    std::fs::write(&master, &without).unwrap();
    assert_exit(&p.run(&["ingest", master.to_str().unwrap()]), 0);
    let active: i64 = p
        .db()
        .query_row(
            "SELECT active FROM accounts WHERE id = ?1",
            [ACCOUNT],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(active, 0, "the master switched the account off");

    eval(&p, "2026-11-01");
    assert_eq!(state(&p, RULE, ACCOUNT), "firing");
    assert!(
        listing_since(&p, n).is_empty(),
        "a switched-off account was mailed about"
    );
    let to_resolved = history(&p, &["--account", ACCOUNT])
        .into_iter()
        .filter(|h| h["to_state"] == "resolved")
        .count();
    assert_eq!(to_resolved, 0, "history records a resolve");

    // Listed again, and visited: now a run clears it, and the owner hears.
    let master = p.path("客户主数据_全部.csv");
    std::fs::write(&master, &full).unwrap();
    let visit = p.path("拜访记录_补录.csv");
    std::fs::write(
        &visit,
        "拜访日期,客户编号,拜访人,职务,拜访类型,备注\n2026-11-02,KH1001,张伟,业务员,上门拜访,\n",
    )
    .unwrap();
    assert_exit(
        &p.run(&["ingest", master.to_str().unwrap(), visit.to_str().unwrap()]),
        0,
    );
    eval(&p, "2026-11-02");
    assert_eq!(state(&p, RULE, ACCOUNT), "resolved");
    assert_eq!(listing_since(&p, n).len(), 1);
}

/// A rule file that stops compiling while the daemon runs keeps its last
/// good version running, and the admin is mailed once, with file:line:col,
/// the line and the caret; the next evaluation does not mail it again.
#[test]
fn a_rule_broken_while_the_daemon_runs_is_mailed_to_the_admin_once() {
    let smtp = SmtpServer::start();
    let p = Project::with_smtp(smtp.port);
    p.edit_config("  # admin: it@example.com", "  admin: it@example.com");
    let files = [MASTER, ORDERS, VISITS].map(|f| fixture(f).to_string_lossy().into_owned());
    let mut args = vec!["ingest"];
    args.extend(files.iter().map(String::as_str));
    assert_exit(&p.run(&args), 0);
    let d = Daemon::start_with(&p, &[("KAMWATCH_NOW", NOW)]);
    let evaluations = || -> i64 {
        p.db()
            .query_row("SELECT COUNT(*) FROM evaluations", [], |r| r.get(0))
            .unwrap_or(0)
    };
    // Data ingested before the start: the daemon evaluates at once.
    wait_for(90, "the first evaluation", || {
        (evaluations() >= 1).then_some(())
    });
    let rule = p.path("rules/margin_slip.rhai");
    let good = std::fs::read_to_string(&rule).unwrap();
    assert!(
        good.contains("account.margin_pct("),
        "the shipped rule changed"
    );
    std::fs::write(
        &rule,
        good.replacen("account.margin_pct(", "account.margin_percent(", 1),
    )
    .unwrap();
    let admin = || -> Vec<Received> {
        smtp.messages()
            .into_iter()
            .filter(|m| m.to == ["it@example.com"])
            .collect()
    };
    // Each drop makes the daemon reload the rules and evaluate.
    let drop_visit = |n: u32| {
        let staging = p.path(&format!("v{n}.csv"));
        std::fs::write(
            &staging,
            format!("拜访日期,客户编号,拜访人,职务,拜访类型,备注\n2026-11-2{n},KH1001,张伟,业务员,上门拜访,\n"),
        )
        .unwrap();
        std::fs::rename(&staging, p.path(&format!("inbox/拜访记录_{n}.csv"))).unwrap();
    };
    drop_visit(1);
    let first = wait_for(90, "the admin's mail", || {
        let a = admin();
        (!a.is_empty()).then_some(a)
    });
    let text = String::from_utf8_lossy(&first[0].data).into_owned();
    let parsed = MessageParser::default()
        .parse(first[0].data.as_slice())
        .unwrap();
    let body = parsed.body_text(0).unwrap().to_string();
    assert!(body.contains("margin_slip.rhai:"), "{text}");
    assert!(body.contains("did you mean `margin_pct`?"), "{body}");
    let lines: Vec<&str> = body.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("account.margin_percent("))
        .unwrap_or_else(|| panic!("the line is not shown: {body}"));
    assert_eq!(
        lines[at + 1].find('^'),
        lines[at].find("margin_percent"),
        "{body}"
    );
    // The last good version still ran: the evaluation had all rules.
    let rules: i64 = p
        .db()
        .query_row(
            "SELECT rules FROM evaluations ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let shipped = std::fs::read_dir(p.path("rules"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "rhai")
        })
        .count() as i64;
    assert!(shipped >= 8, "{shipped} rules in the folder");
    assert_eq!(rules, shipped);

    // Another evaluation with the same broken file: not mailed again.
    let before = evaluations();
    drop_visit(2);
    wait_for(30, "the next evaluation, its mail delivered", || {
        (evaluations() > before
            && p.db()
                .query_row(
                    "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap_or(1)
                == 0)
            .then_some(())
    });
    d.stop();
    assert_eq!(admin().len(), 1, "the broken rule was mailed again");
}

/// The daemon killed with SIGKILL after mailing, then started again: a new
/// drop evaluates again and nothing is sent twice or forgotten.
#[test]
fn daemon_killed_and_restarted_sends_nothing_twice() {
    use std::process::Stdio;
    let smtp = SmtpServer::start();
    let p = Project::with_smtp(smtp.port);
    /// Kills the daemon even if an assertion fails first.
    struct Running(std::process::Child);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let start = |p: &Project| {
        Running(
            p.command(&["run"])
                .env("KAMWATCH_NOW", NOW)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting kamwatch run"),
        )
    };
    let count = |sql: &str| -> i64 { p.db().query_row(sql, [], |r| r.get(0)).unwrap_or(0) };
    let daemon = start(&p);

    let staging = p.path("staging");
    // The daemon's today is pinned, and the data ends on it.
    let today = today();
    let summary = kamwatch::generate::generate(&kamwatch::generate::GenerateOptions {
        out_dir: staging.clone(),
        seed: 11,
        accounts: 60,
        end: today,
        months: 14,
    })
    .unwrap();
    for f in &summary.files {
        std::fs::rename(f, p.path("inbox").join(f.file_name().unwrap())).unwrap();
    }
    wait_for(60, "the first evaluation", || {
        (count("SELECT COUNT(*) FROM evaluations") >= 1).then_some(())
    });
    let queued = count("SELECT COUNT(*) FROM outbox");
    assert!(queued > 0, "nothing was queued on generated data");
    let first = wait_for(30, "every queued message at the server", || {
        let m = smtp.messages();
        (m.len() as i64 == queued
            && count("SELECT COUNT(*) FROM outbox WHERE state = 'pending'") == 0)
            .then_some(m)
    });
    let before = dump(&p);

    // kill -9 (what Child::kill sends): no chance to tidy up.
    drop(daemon);
    let daemon = start(&p);
    let visit = format!(
        "拜访日期,客户编号,拜访人,职务,拜访类型,备注\n{today},NOSUCH,测试,业务员,电话回访,\n"
    );
    std::fs::write(staging.join("v.csv"), visit).unwrap();
    std::fs::rename(staging.join("v.csv"), p.path("inbox/拜访记录_restart.csv")).unwrap();
    wait_for(30, "the evaluation after the restart", || {
        (count("SELECT COUNT(*) FROM evaluations") >= 2).then_some(())
    });
    // SIGTERM lets the running job (the evaluation, then its delivery)
    // finish: whatever the restarted daemon would send has been sent.
    let mut daemon = daemon;
    let pid = daemon.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(daemon.0.wait().unwrap().success());
    assert_eq!(
        smtp.messages().len(),
        first.len(),
        "a message was sent twice"
    );
    assert_eq!(dump(&p), before, "the restart changed alert state or mail");
}

/// Silences and history refuse what cannot be right: an `--until` in the
/// past (exit 2), an account not in the master unless `--force` (exit 2),
/// a silence past its end listed as ended rather than active, history for
/// an unknown account (exit 1), and a database error is exit 1, not 2.
#[test]
fn silence_and_history_refuse_what_cannot_be_right() {
    let p = project(str::to_string);
    let on = |day: &str, args: &[&str]| {
        p.command(args)
            .env("KAMWATCH_NOW", format!("{day}T04:00:00Z"))
            .output()
            .unwrap()
    };
    let add = |until: &str, account: &str, force: bool| {
        let mut args = vec![
            "silence",
            "add",
            "--rule",
            RULE,
            "--account",
            account,
            "--until",
            until,
            "--reason",
            "renovation",
        ];
        if force {
            args.push("--force");
        }
        on("2026-11-10", &args)
    };
    let past = add("2026-11-09", ACCOUNT, false);
    assert_exit(&past, 2);
    assert!(
        stderr(&past).contains("is in the past (today is 2026-11-10"),
        "{}",
        show(&past)
    );
    assert_exit(&add("2026-11-10", ACCOUNT, false), 0);

    let unknown = add("2026-12-01", "KH9999", false);
    assert_exit(&unknown, 2);
    assert!(stderr(&unknown).contains("--force"), "{}", show(&unknown));
    assert_exit(&add("2026-12-01", "KH9999", true), 0);

    // On 2026-11-11 the first has ended: not listed as active.
    let list = on("2026-11-11", &["silence", "list"]);
    assert_exit(&list, 0);
    let text = stdout(&list);
    let line = |account: &str| -> String {
        text.lines()
            .find(|l| l.contains(&format!("account {account} ")))
            .unwrap_or_else(|| panic!("{account} not listed: {text}"))
            .to_string()
    };
    assert!(line(ACCOUNT).contains(" ended "), "{text}");
    assert!(!line(ACCOUNT).contains("active"), "{text}");
    assert!(line("KH9999").contains(" active "), "{text}");
    let json = on("2026-11-11", &["silence", "list", "--format", "json"]);
    let actives: Vec<bool> = stdout(&json)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["active"]
                .as_bool()
                .unwrap()
        })
        .collect();
    assert_eq!(actives, [true, false], "newest first: {}", show(&json));

    let h = p.run(&["history", "--account", "KH9999"]);
    assert_exit(&h, 1);
    assert!(stderr(&h).contains("no account \"KH9999\""), "{}", show(&h));
    // A known account with no history yet is not an error.
    assert_exit(&p.run(&["history", "--account", ACCOUNT]), 0);

    // A database error is the job failing (1), not usage (2).
    p.db().execute_batch("DROP TABLE silences").unwrap();
    let broken = add("2026-12-01", ACCOUNT, false);
    assert_exit(&broken, 1);
    assert!(stderr(&broken).contains("silences"), "{}", show(&broken));
}

/// A silence naming a key holds back that alert only: silencing
/// lapsed_visits' "senior" alert for an account leaves its lapsed-cadence
/// alert (key "") mailed. `--key` needs one rule and a key the rule has
/// raised (a typo would silence nothing) unless forced; the list shows it.
#[test]
fn a_silence_with_a_key_leaves_the_rules_other_alerts_mailed() {
    let p = project(str::to_string);
    let add = |rule: &str, key: &str, force: bool| {
        let mut args = vec![
            "silence",
            "add",
            "--rule",
            rule,
            "--key",
            key,
            "--account",
            ACCOUNT,
            "--until",
            "2026-11-30",
            "--reason",
            "senior visit planned",
        ];
        if force {
            args.push("--force");
        }
        p.command(&args)
            .env("KAMWATCH_NOW", "2026-10-31T04:00:00Z")
            .output()
            .unwrap()
    };
    let o = add("*", "senior", true);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("--key names one alert of one rule"),
        "{}",
        show(&o)
    );
    for (key, says) in [
        ("*", "leave --key out"),
        ("", "leave --key out"),
        ("sen\tior", "control character"),
    ] {
        let o = add(RULE, key, true);
        assert_exit(&o, 2);
        assert!(stderr(&o).contains(says), "{key:?}: {}", show(&o));
    }
    // Nothing raised yet: the key is refused as a possible typo, unless forced.
    let o = add(RULE, "senior", false);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("has never raised an alert with this key"),
        "{}",
        show(&o)
    );
    let o = add(RULE, "senior", true);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("lapsed_visits (key senior)"),
        "{}",
        show(&o)
    );
    let text = stdout(&p.run(&["silence", "list"]));
    assert!(text.contains("lapsed_visits (key senior)"), "{text}");

    eval(&p, "2026-10-31");
    let db = p.db();
    let keys: Vec<String> = db
        .prepare("SELECT key FROM alerts WHERE rule = ?1 AND account_id = ?2")
        .unwrap()
        .query_map([RULE, ACCOUNT], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        keys.contains(&String::new()),
        "the lapsed alert fires: {keys:?}"
    );
    assert!(
        mails(&p).iter().any(|m| m.lists(RULE, ACCOUNT)),
        "the lapsed alert is mailed though the senior one is silenced"
    );
    let h = history(&p, &["--account", ACCOUNT, "--rule", RULE]);
    assert!(
        !h.iter().any(|e| e["key"] == "" && e["mail"] == "silenced"),
        "{h:?}"
    );
    // Once raised, keys are known: a misspelling is refused, listing them.
    let o = add(RULE, "senoir", false);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains(r#"keys raised so far: """#),
        "{}",
        show(&o)
    );
}
