//! Tests of the alerts' lifecycle against the table: migrated rows, stored
//! items, notices handed over in batches.

use super::super::policy::RulePolicy;
use super::*;
use Observation::Raised;
use Severity::Warning;

fn policy() -> RulePolicy {
    RulePolicy {
        escalate_after_days: 0,
        ..RulePolicy::default()
    }
}

fn d(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 1).unwrap() + chrono::Days::new(u64::from(day) - 1)
}

#[test]
fn migration_keeps_firing_alerts_without_mailing_them_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(include_str!("../../store/0001_init.sql"))
            .unwrap();
        c.execute_batch(include_str!("../../store/0002_more_datasets.sql"))
            .unwrap();
        c.pragma_update(None, "user_version", 2).unwrap();
        c.execute(
            "INSERT INTO alerts (rule, account_id, key, state, severity, title, figures, action, started_at, last_seen_at)
             VALUES ('r', 'A', '', 'firing', 'warning', 't', '{}', '', '2026-10-01', '2026-10-05')",
            [],
        )
        .unwrap();
    }
    let conn = crate::store::open(&path).unwrap();
    let stored = load(&conn, None).unwrap();
    let row = &stored[&("r".to_string(), "A".to_string(), String::new())];
    assert_eq!(row.life.state, State::Firing);
    assert!(
        row.life.notified,
        "an alert mailed before the upgrade is mailed again"
    );
    assert_eq!(row.life.started_at, Some(d(1)));
    // Still firing on the next day: no notice; a week after the start: a repeat.
    let p = policy();
    assert!(
        step(&row.life, Raised(Warning), &p, d(6), false)
            .notices
            .is_empty()
    );
    assert_eq!(
        step(&row.life, Raised(Warning), &p, d(8), false).notices,
        vec![Notice::Repeat]
    );
}

/// Five accounts, each with a finding of rule "r" that fires at once.
fn five_findings() -> (Vec<Arc<AccountMetrics>>, Vec<Finding>, Policies) {
    let accounts: Vec<Arc<AccountMetrics>> = (0..5)
        .map(|i| Arc::new(AccountMetrics::empty(&format!("K{i}"), "客户")))
        .collect();
    let rule: Arc<str> = Arc::from("r");
    let findings = accounts
        .iter()
        .map(|a| Finding {
            rule: rule.clone(),
            account: a.clone(),
            said: Arc::new(crate::rules::Said {
                key: String::new(),
                severity: Warning,
                title: format!("t {}", a.id),
                figures: vec![("n".into(), 1.into())],
                units: Default::default(),
                action: "".into(),
                starts: true,
            }),
        })
        .collect();
    let mut policies = Policies::default();
    policies.set("r", policy());
    (accounts, findings, policies)
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The notices of an evaluation go out in batches, in order, and the
/// batches together are what one batch of all would be: every alert
/// that started is told, none twice.
#[test]
fn notices_come_in_batches_in_order() {
    let run = |batch: usize| {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("k.db")).unwrap();
        let (accounts, findings, policies) = five_findings();
        let ran: HashSet<&str> = ["r"].into_iter().collect();
        let mut sizes = Vec::new();
        let mut told = Vec::new();
        let changes = apply_batched(
            &conn,
            d(1),
            (&findings, &[], &accounts),
            None,
            &policies,
            &ran,
            batch,
            &mut |b: &[Notified]| -> Result<(), Error> {
                sizes.push(b.len());
                told.extend(b.iter().map(|n| serde_json::to_string(&n.item).unwrap()));
                Ok(())
            },
        )
        .unwrap();
        let rows = count(&conn, "SELECT COUNT(*) FROM alerts WHERE state = 'firing'");
        (sizes, told, changes.started, rows)
    };
    let (sizes, told, started, rows) = run(2);
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(started, [0, 1, 2, 3, 4]);
    assert_eq!(rows, 5);
    let (one, all, _, _) = run(usize::MAX);
    assert_eq!(one, [5]);
    assert_eq!(told, all);
    assert!(told[0].contains("t K0") && told[4].contains("t K4"));
}

/// A batch that cannot be recorded (the disk full, say) fails the whole
/// evaluation: the alerts written before it are in the same transaction
/// and roll back with it, so no alert is left started without its notice.
#[test]
fn a_batch_that_fails_leaves_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = crate::store::open(&dir.path().join("k.db")).unwrap();
    let (accounts, findings, policies) = five_findings();
    let ran: HashSet<&str> = ["r"].into_iter().collect();
    let tx = conn.transaction().unwrap();
    let mut calls = 0;
    let out = apply_batched(
        &tx,
        d(1),
        (&findings, &[], &accounts),
        None,
        &policies,
        &ran,
        2,
        &mut |_: &[Notified]| -> Result<(), Error> {
            calls += 1;
            if calls == 2 {
                return Err(Error::Store(rusqlite::Error::InvalidQuery));
            }
            Ok(())
        },
    );
    assert!(out.is_err());
    assert_eq!(calls, 2, "nothing is applied after the batch that failed");
    assert_eq!(count(&tx, "SELECT COUNT(*) FROM alerts"), 4);
    drop(tx);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM alerts"), 0);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM alert_history"), 0);
}

/// Items are stored as JSON in the outbox's notices and read back by
/// mail; the dates are written YYYY-MM-DD (null when absent), as the
/// hand-written serde they replace wrote them, and read back the same.
#[test]
fn items_are_stored_with_plain_dates_as_before() {
    let stored = r#"{"rule":"r","account_id":"A","account_name":"甲","tier":"A","share":0.5,"region":"","owner":"o","owner_email":null,"manager_email":"m@example.com","manager":"","key":"","severity":"critical","title":"t","figures":[["revenue",1.5]],"units":{"revenue":"money"},"action":"","notice":{"kind":"raised","from":"warning"},"started_at":"2026-10-01","as_of":"2026-10-08"}"#;
    let item: Item = serde_json::from_str(stored).unwrap();
    assert_eq!(item.started_at, Some(d(1)));
    assert_eq!(item.as_of, d(8));
    assert_eq!(serde_json::to_string(&item).unwrap(), stored);
    let never = stored.replace(r#""started_at":"2026-10-01""#, r#""started_at":null"#);
    let item: Item = serde_json::from_str(&never).unwrap();
    assert_eq!(item.started_at, None);
    assert_eq!(serde_json::to_string(&item).unwrap(), never);
    let bad = stored.replace("2026-10-08", "08.10.2026");
    assert!(serde_json::from_str::<Item>(&bad).is_err());
}

/// A closed alert is written to the table as closed (the migration's new
/// state), read back with the open ones, kept closed by the next raises
/// without a notice, and ends silently once clear; a database of the
/// schema before keeps its alerts through the migration.
#[test]
fn a_closed_alert_is_stored_stays_closed_and_ends() {
    let dir = tempfile::tempdir().unwrap();
    let conn = crate::store::open(&dir.path().join("k.db")).unwrap();
    let (accounts, findings, mut policies) = five_findings();
    policies.set(
        "r",
        RulePolicy {
            close_after_days: 3,
            repeat_interval_days: 0,
            ..policy()
        },
    );
    let ran: HashSet<&str> = ["r"].into_iter().collect();
    let eval = |day: u32, findings: &[Finding]| {
        let mut told: Vec<String> = Vec::new();
        apply(
            &conn,
            d(day),
            findings,
            &[],
            None,
            &accounts,
            &policies,
            &ran,
            &mut |b: &[Notified]| -> Result<(), Error> {
                told.extend(b.iter().map(|n| n.item.notice.kind().to_string()));
                Ok(())
            },
        )
        .unwrap();
        told
    };
    assert_eq!(eval(1, &findings[..1]), ["started"]);
    assert!(eval(2, &findings[..1]).is_empty());
    assert_eq!(eval(4, &findings[..1]), ["final"]);
    assert!(eval(5, &findings[..1]).is_empty());
    assert!(eval(40, &findings[..1]).is_empty());
    let state = |conn: &Connection| -> String {
        conn.query_row(
            "SELECT state FROM alerts WHERE account_id = 'K0'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(state(&conn), "closed");
    // Cleared: it ends without a notice; raised after, it starts anew.
    assert!(eval(41, &[]).is_empty());
    assert_eq!(state(&conn), "resolved");
    assert_eq!(eval(42, &findings[..1]), ["started"]);
    let history = count(
        &conn,
        "SELECT COUNT(*) FROM alert_history WHERE from_state = 'firing' AND to_state = 'closed'",
    );
    assert_eq!(history, 1);
}

/// `one_open_per_account` against the table (probe6 06): rule "r" raises
/// key "a" on day 1, holds it on day 2, raises "b" on day 3 and holds
/// both on day 4 (inside a margin), then raises "a" again on day 5. Each
/// day at most one of the account's alerts is open: "b" starting ends
/// "a" at once, silently, though keep_firing_for_days would keep it 30
/// days; holding both keeps only the open one open; "a" raised again
/// ends "b". Without the setting, both stay open together.
#[test]
fn one_open_per_account_ends_the_other_key_at_once() {
    let run = |one_open: bool| {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("k.db")).unwrap();
        let account = Arc::new(AccountMetrics::empty("K1", "客户"));
        let rule: Arc<str> = Arc::from("r");
        let finding = |key: &str, starts: bool| Finding {
            rule: rule.clone(),
            account: account.clone(),
            said: Arc::new(crate::rules::Said {
                key: key.into(),
                severity: Warning,
                title: format!("t {key}"),
                figures: vec![],
                units: Default::default(),
                action: "".into(),
                starts,
            }),
        };
        let mut policies = Policies::default();
        policies.set(
            "r",
            RulePolicy {
                keep_firing_for_days: 30,
                notify_resolved: true,
                one_open_per_account: one_open,
                ..policy()
            },
        );
        let ran: HashSet<&str> = ["r"].into_iter().collect();
        let accounts = vec![account.clone()];
        let days: Vec<Vec<Finding>> = vec![
            vec![finding("a", true)],
            vec![finding("a", false)],
            vec![finding("b", true)],
            vec![finding("a", false), finding("b", false)],
            vec![finding("a", true)],
        ];
        let mut open = Vec::new();
        let mut told = Vec::new();
        for (i, findings) in days.iter().enumerate() {
            apply(
                &conn,
                d(i as u32 + 1),
                findings,
                &[],
                None,
                &accounts,
                &policies,
                &ran,
                &mut |b: &[Notified]| -> Result<(), Error> {
                    told.extend(
                        b.iter()
                            .map(|n| (i + 1, n.item.key.clone(), n.item.notice.kind())),
                    );
                    Ok(())
                },
            )
            .unwrap();
            let mut s = conn
                .prepare("SELECT key FROM alerts WHERE state IN ('pending', 'firing', 'closed') ORDER BY key")
                .unwrap();
            let keys: Vec<String> = s
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(|k| k.unwrap())
                .collect();
            open.push(keys.join(","));
        }
        (open, told)
    };
    let (open, told) = run(true);
    assert_eq!(open, ["a", "a", "b", "b", "a"]);
    let started = |d: usize, k: &str| (d, k.to_string(), "started");
    assert_eq!(
        told,
        [started(1, "a"), started(3, "b"), started(5, "a")],
        "the alert another replaced ends silently, with no resolved notice"
    );
    let (open, _) = run(false);
    assert_eq!(open, ["a", "a", "a,b", "a,b", "a,b"]);
}
