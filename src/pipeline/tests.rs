//! Proof that an evaluation running the rules only where something changed
//! ([`evaluate_changed`]) does what a full evaluation does: random files
//! dropped into a generated book, and after each evaluation the findings,
//! the alerts, their history, the mail queued and the evaluations' record
//! compared with a full evaluation of a copy of the same database.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::NaiveDate;
use proptest::prelude::*;
use proptest::test_runner::{Config as Cases, TestRunner};

use super::*;
use crate::metrics::Live;
use crate::rules::changed::Since;

/// The generated book's last day: "today" of the first evaluations.
fn end() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()
}

const ACCOUNTS: usize = 20;

use crate::config::testing::project;

/// A database holding a generated book of [`ACCOUNTS`] accounts over 24
/// months, evaluated as of its last day, made once per test run; each
/// case starts from a copy.
fn book() -> &'static Path {
    static BOOK: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &BOOK
        .get_or_init(|| {
            let (dir, cfg) = project();
            let mut conn = crate::store::open(&cfg.database()).unwrap();
            let summary = crate::generate::generate(&crate::generate::GenerateOptions {
                out_dir: dir.path().join("gen"),
                accounts: ACCOUNTS,
                seed: 7,
                end: end(),
                months: 24,
            })
            .unwrap();
            for f in &summary.files {
                crate::ingest::ingest_file(&cfg, &mut conn, f).unwrap();
            }
            // Evaluated once: the alerts of the book and their mail (with
            // charts, the slow part) are there before each case starts.
            let (rules, _, _) = RuleSet::load_config(&cfg).unwrap();
            evaluate(&cfg, &mut conn, &rules, end(), false).unwrap();
            let path = dir.path().join("book.db");
            conn.execute("VACUUM INTO ?1", [path.to_str().unwrap()])
                .unwrap();
            (dir, path)
        })
        .1
}

fn account(a: usize) -> String {
    // One id of the drops is missing from the master: its lines count in
    // the book's total, it gets no warnings.
    if a >= ACCOUNTS {
        "KH9999".into()
    } else {
        format!("KH{}", 1001 + a)
    }
}

/// An order line: (order, line, account, days before today, qty, revenue
/// in cents). Orders come from a small pool, so later files re-export
/// lines with other amounts, accounts or days.
type Line = (u8, u8, usize, u16, u16, u32);

/// One step: a file dropped (or something else done), then maybe an
/// evaluation.
#[derive(Debug, Clone)]
enum Drop {
    Orders(Vec<Line>),
    /// An orders file with a bad row: rejected, nothing stored.
    Rejected(Vec<Line>),
    /// Visits: (account, days before today, role).
    Visits(Vec<(usize, u16, u8)>),
    /// The file dropped `n` steps back, again.
    Again(usize),
    /// A silence for one account's alerts of every rule.
    Silence(usize),
    /// The master again, one account's tier overridden.
    Master(usize, u8),
    /// Nothing new.
    Nothing,
    /// Tomorrow.
    NextDay,
}

fn orders_csv(rows: &[Line], today: NaiveDate, bad: bool) -> String {
    let mut t = "订单编号,行号,客户编号,订单日期,产品编号,数量,金额,成本\n".to_string();
    for (k, (o, l, a, back, q, r)) in rows.iter().enumerate() {
        let day = today - chrono::Duration::days(i64::from(*back));
        let amount = if bad && k == rows.len() / 2 {
            "abc".to_string()
        } else {
            format!("{}.{:02}", r / 100, r % 100)
        };
        let cost = u64::from(*r) * 7 / 10;
        t += &format!(
            "DROP{o},{l},{},{},SP-00{},{q},{amount},{}.{:02}\n",
            account(*a),
            day.format("%Y-%m-%d"),
            1 + a % 5,
            cost / 100,
            cost % 100
        );
    }
    t
}

/// The file of a step, if it drops one: (name, text).
fn file_of(
    step: usize,
    drop: &Drop,
    today: NaiveDate,
    past: &[(String, String)],
) -> Option<(String, String)> {
    Some(match drop {
        Drop::Orders(rows) => (
            format!("销售明细_d{step}.csv"),
            orders_csv(rows, today, false),
        ),
        Drop::Rejected(rows) => (
            format!("销售明细_bad{step}.csv"),
            orders_csv(rows, today, true),
        ),
        Drop::Visits(rows) => {
            let mut t = "拜访日期,客户编号,拜访人,职务\n".to_string();
            for (a, back, role) in rows {
                let day = today - chrono::Duration::days(i64::from(*back));
                t += &format!(
                    "{},{},人{a},{}\n",
                    day.format("%Y-%m-%d"),
                    account(*a),
                    ["业务员", "经理", "总监"][usize::from(*role % 3)]
                );
            }
            (format!("拜访记录_d{step}.csv"), t)
        }
        Drop::Again(_) if past.is_empty() => return None,
        Drop::Again(n) => {
            let (name, text) = &past[past.len() - 1 - n % past.len()];
            (format!("again{step}_{name}"), text.clone())
        }
        Drop::Master(a, tier) => {
            let mut t =
                "客户编号,客户名称,区域,业务员,业务员邮箱,主管邮箱,信用额度,等级\n".to_string();
            for i in 0..ACCOUNTS {
                let tier = if i == *a {
                    ["A", "B", "C"][usize::from(*tier % 3)]
                } else {
                    ""
                };
                t += &format!(
                    "{},客户{i},华东,张伟,zhang.wei@example.com,chen.jing@example.com,100000,{tier}\n",
                    account(i)
                );
            }
            (format!("客户主数据_d{step}.csv"), t)
        }
        Drop::Silence(_) | Drop::Nothing | Drop::NextDay => return None,
    })
}

fn drops() -> impl Strategy<Value = Drop> {
    // Mostly recent lines; some far back (they move the tier history),
    // some large (they move tiers).
    let back = prop_oneof![4 => 0u16..10, 1 => 0u16..500];
    let amount = prop_oneof![4 => 0u32..5_000_000, 1 => 0u32..3_000_000_000];
    let line = (0u8..8, 1u8..3, 0..=ACCOUNTS, back, 1u16..500, amount);
    prop_oneof![
        6 => prop::collection::vec(line.clone(), 1..6).prop_map(Drop::Orders),
        1 => prop::collection::vec(line, 2..5).prop_map(Drop::Rejected),
        3 => prop::collection::vec((0..=ACCOUNTS, 0u16..60, 0u8..3), 1..5).prop_map(Drop::Visits),
        1 => (0usize..4).prop_map(Drop::Again),
        1 => (0..ACCOUNTS).prop_map(Drop::Silence),
        1 => (0..ACCOUNTS, 0u8..3).prop_map(|(a, t)| Drop::Master(a, t)),
        2 => Just(Drop::Nothing),
        1 => Just(Drop::NextDay),
    ]
}

/// What an evaluation reports, as text: the findings (without the
/// accounts' arrays), the failures, what started, resolved and was queued.
fn reported(r: &EvalReport) -> String {
    let mut lines: Vec<String> = r
        .findings
        .iter()
        .map(|f| {
            format!(
                "finding {} {} {:?} {:?} {:?} {:?} {:?} {:?} tier {} share {:?}",
                f.rule,
                f.account.id,
                f.key,
                f.severity,
                f.title,
                f.figures,
                f.units,
                f.action,
                f.account.tier.as_str(),
                f.account.share
            )
        })
        .collect();
    lines.extend(r.errors.iter().map(|e| format!("error {e:?}")));
    lines.push(format!(
        "accounts {} rules {} started {:?} resolved {} queued {}",
        r.accounts, r.rules, r.started, r.resolved, r.queued
    ));
    lines.join("\n")
}

/// Every table of the database but the inputs, row by row, without the
/// columns that hold the wall clock (`at`, `*_at`), the rendered MIME
/// (its Date header) and the record of how the evaluation ran.
fn tables(conn: &Connection) -> String {
    let inputs = [
        "orders",
        "visits",
        "accounts",
        "receivables",
        "inventory",
        "ledger",
    ];
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let mut out = String::new();
    for t in names.iter().filter(|t| !inputs.contains(&t.as_str())) {
        let cols: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{t}')"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .filter(|c| {
                c != "at"
                    && !c.ends_with("_at")
                    && !["mime", "partial", "accounts_run"].contains(&c.as_str())
            })
            .collect();
        let mut st = conn
            .prepare(&format!(
                "SELECT {} FROM \"{t}\" ORDER BY rowid",
                cols.join(", ")
            ))
            .unwrap();
        let mut rows = st.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            let values: Vec<String> = (0..cols.len())
                .map(|i| format!("{:?}", row.get::<_, rusqlite::types::Value>(i).unwrap()))
                .collect();
            out += &format!("{t}: {}\n", values.join(" | "));
        }
    }
    out
}

/// The daemon's side: a database, its metrics in memory, and the memo of
/// the last evaluation.
struct Daemon {
    _dir: tempfile::TempDir,
    cfg: Loaded,
    conn: Connection,
    live: Live,
    memo: Option<crate::rules::changed::Memo>,
    rules: RuleSet,
}

impl Daemon {
    /// `cap`: `alerts.max_per_rule`, when a small one is wanted.
    fn start(cap: Option<usize>) -> Daemon {
        let (dir, mut cfg) = project();
        if let Some(cap) = cap {
            cfg.cfg.alerts.max_per_rule = cap;
        }
        std::fs::create_dir_all(cfg.database().parent().unwrap()).unwrap();
        std::fs::copy(book(), cfg.database()).unwrap();
        let conn = crate::store::open(&cfg.database()).unwrap();
        Live::capture(&conn).unwrap();
        let live = Live::load(&conn).unwrap();
        let (rules, errors, _) = RuleSet::load_config(&cfg).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        Daemon {
            _dir: dir,
            cfg,
            conn,
            live,
            memo: None,
            rules,
        }
    }

    /// Evaluates as of `today` as the daemon does (only where something
    /// changed, when that can be told), and a copy of the database taken
    /// just before it with every rule for every account; panics where the
    /// two differ. Returns the daemon's report.
    fn evaluate_both(&mut self, today: NaiveDate, what: &str) -> EvalReport {
        let r = self.live.refresh(&self.conn).unwrap();
        let touched = (r.reloaded.is_none() && r.datasets.is_empty())
            .then(|| (r.accounts.clone(), r.orders > 0));
        let copy = self.cfg.database().with_extension("full.db");
        let _ = std::fs::remove_file(&copy);
        self.conn
            .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
            .unwrap();
        let snap = self.live.snapshot(today, &self.cfg.cfg.tiers);
        let since = touched.as_ref().map(|(accounts, orders)| Since {
            accounts,
            orders: *orders,
        });
        let stop = Arc::default();
        let a = evaluate_changed(
            &self.cfg,
            &mut self.conn,
            &self.rules,
            &snap,
            &mut self.memo,
            since,
            &stop,
        )
        .unwrap();
        let mut full = crate::store::open(&copy).unwrap();
        let b = evaluate(&self.cfg, &mut full, &self.rules, today, false).unwrap();
        assert!(b.partial.is_none());
        let (x, y) = (reported(&b), reported(&a));
        if let Some((n, p, q)) = crate::metrics::live::first_difference(&x, &y) {
            panic!("{what}: the findings differ at line {n}\nfull:    {p}\npartial: {q}");
        }
        let (x, y) = (tables(&full), tables(&self.conn));
        if let Some((n, p, q)) = crate::metrics::live::first_difference(&x, &y) {
            panic!("{what}: the tables differ at line {n}\nfull:    {p}\npartial: {q}");
        }
        a
    }
}

/// Partial evaluations made over all cases, and accounts they ran.
static PARTIAL: AtomicUsize = AtomicUsize::new(0);
static RAN: AtomicUsize = AtomicUsize::new(0);

/// One case: the steps in order; after each, maybe an evaluation compared
/// with a full one.
fn case(cap: Option<usize>, steps: &[(Drop, bool)]) {
    let mut d = Daemon::start(cap);
    let mut today = end();
    let mut past: Vec<(String, String)> = Vec::new();
    d.evaluate_both(today, "the first evaluation");
    for (step, (drop, evaluate)) in steps.iter().enumerate() {
        match drop {
            Drop::NextDay => today = today.succ_opt().unwrap(),
            Drop::Silence(a) => {
                let scope = crate::alerts::silence::Scope::Account(account(*a));
                crate::alerts::silence::add(&d.conn, "*", None, &scope, today, "on holiday")
                    .unwrap();
            }
            _ => {}
        }
        if let Some((name, text)) = file_of(step, drop, today, &past) {
            let path = d.cfg.inbox().join(&name);
            std::fs::write(&path, &text).unwrap();
            let report = crate::ingest::ingest_file(&d.cfg, &mut d.conn, &path).unwrap();
            if matches!(drop, Drop::Rejected(_)) {
                assert_eq!(report.outcome, crate::store::Outcome::Rejected);
            }
            past.push((name, text));
        }
        if (*evaluate || step + 1 == steps.len())
            && let Some(n) = d
                .evaluate_both(today, &format!("after step {step} ({drop:?})"))
                .partial
        {
            PARTIAL.fetch_add(1, Ordering::Relaxed);
            RAN.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Random sequences of files into a daemon-like state: after each
/// evaluation, the one that ran the rules only where something changed
/// recorded exactly what a full evaluation of the same database records
/// (findings, alerts, their history, mail queued, the evaluation record),
/// and many evaluations did run partly; also when a rule reaches a small
/// `alerts.max_per_rule`.
#[test]
fn changed_only_equals_full() {
    // A small alerts.max_per_rule in some cases: the rules that reach it
    // run for every account the next time.
    let strategy = (
        prop::option::weighted(0.3, 2usize..12),
        prop::collection::vec((drops(), prop::bool::weighted(0.8)), 1..9),
    );
    let mut runner = TestRunner::new(Cases {
        cases: 16,
        failure_persistence: None,
        ..Cases::default()
    });
    runner
        .run(&strategy, |(cap, steps)| {
            case(cap, &steps);
            Ok(())
        })
        .unwrap();
    let (partial, ran) = (PARTIAL.load(Ordering::Relaxed), RAN.load(Ordering::Relaxed));
    assert!(partial >= 16, "only {partial} evaluations ran partly");
    // Partly: on average fewer accounts than the book has.
    assert!(
        ran < partial * ACCOUNTS,
        "{ran} accounts run in {partial} partial evaluations"
    );
}

/// A rule that reached `alerts.max_per_rule` (which alerts it kept depends
/// on the order the accounts ran in) runs for every account in the next
/// evaluation of the day, the other rules only where something changed:
/// the evaluation still runs partly, and records what a full one records.
#[test]
fn a_rule_at_its_cap_runs_everywhere_next_time() {
    let mut d = Daemon::start(Some(2));
    let today = end();
    let first = d.evaluate_both(today, "the first evaluation");
    assert!(
        first
            .errors
            .iter()
            .any(|e| e.message.contains("max_per_rule (2)")),
        "no rule reached the cap"
    );
    assert!(
        d.memo.is_some(),
        "nothing kept after an evaluation at the cap"
    );
    let path = d.cfg.inbox().join("拜访记录_cap.csv");
    std::fs::write(
        &path,
        "拜访日期,客户编号,拜访人,职务\n2026-11-28,KH1001,人,经理\n",
    )
    .unwrap();
    crate::ingest::ingest_file(&d.cfg, &mut d.conn, &path).unwrap();
    let again = d.evaluate_both(today, "after a visit");
    // Partly: the capped rules visit every account, the others KH1001 only.
    assert_eq!(again.partial, Some(ACCOUNTS));
    assert!(
        again.runs < (ACCOUNTS * again.rules) as u64,
        "{}",
        again.runs
    );
}
