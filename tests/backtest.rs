use std::sync::Arc;

use chrono::NaiveDate;
use kamwatch::metrics::{self, Snapshot, Timeline};
use kamwatch::rules::RuleSet;

use crate::support::*;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// Floats computed through the same prefix sums are equal; totals summed
/// in another order may differ in the last bits.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a, b) {
        (serde_json::Value::Number(x), serde_json::Value::Number(y)) => {
            close(x.as_f64().unwrap(), y.as_f64().unwrap())
        }
        (serde_json::Value::Array(x), serde_json::Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Asserts that the snapshot derived from the timeline is the one
/// `metrics::build` reads for the same day, account by account, and that
/// the rules find the same things in both. Returns the findings' count.
fn assert_same(derived: &Snapshot, built: &Snapshot, rules: &RuleSet) -> usize {
    let day = built.as_of;
    assert_eq!(derived.as_of, day);
    assert_eq!(derived.unknown_accounts, built.unknown_accounts, "{day}");
    let (p, q) = (&derived.portfolio, &built.portfolio);
    assert_eq!(
        (p.accounts, p.tier_a, p.tier_b, p.tier_c),
        (q.accounts, q.tier_a, q.tier_b, q.tier_c),
        "{day}"
    );
    assert!(close(p.revenue_12m, q.revenue_12m), "{day}");
    let end = built.end();
    for m in metrics::Metric::ALL {
        assert_eq!(p.metric(m, end, 400, 0), q.metric(m, end, 400, 0), "{day}");
        // Windows reaching past the day see nothing after it.
        assert_eq!(p.metric(m, end + 30, 60, 0), q.metric(m, end + 30, 60, 0));
    }
    assert_eq!(derived.accounts.len(), built.accounts.len(), "{day}");
    for (a, b) in derived.accounts.iter().zip(&built.accounts) {
        let at = format!("{} on {day}", b.id);
        assert_eq!(a.id, b.id, "rank {} on {day}", b.rank);
        assert_eq!(
            (a.tier, a.prev_tier, a.rank),
            (b.tier, b.prev_tier, b.rank),
            "{at}"
        );
        assert!(close(a.share, b.share), "{at}");
        assert_eq!(a.revenue_12m, b.revenue_12m, "{at}");
        assert_eq!(a.main_skus, b.main_skus, "{at}");
        assert_eq!(a.stock, b.stock, "{at}");
        assert_eq!(a.invoices, b.invoices, "{at}");
        assert_eq!(a.credit_limit, b.credit_limit, "{at}");
        assert_eq!(a.attrs, b.attrs, "{at}");
        assert_eq!((&*a.owner, &*a.name), (&*b.owner, &*b.name));
        assert_eq!(a.visits.len(), b.visits.len(), "{at}");
        assert_eq!(a.sku_days.len(), b.sku_days.len(), "{at}");
        assert_eq!(
            a.series.order_days(i32::MAX),
            b.series.order_days(i32::MAX),
            "{at}"
        );
        assert_eq!(a.days_since_last_order(end), b.days_since_last_order(end));
        assert_eq!(
            a.days_since_last_visit(end + 100, None),
            b.days_since_last_visit(end + 100, None),
            "{at}"
        );
        for m in metrics::Metric::ALL {
            assert_eq!(a.monthly(m, end, 13), b.monthly(m, end, 13), "{at}");
            assert_eq!(a.metric(m, end + 20, 50, 0), b.metric(m, end + 20, 50, 0));
        }
    }
    let (x, y) = (rules.evaluate(derived), rules.evaluate(built));
    assert_eq!(x.runs, y.runs);
    assert_eq!(x.errors.len(), y.errors.len(), "{day}: {:?}", y.errors);
    assert_eq!(x.findings.len(), y.findings.len(), "{day}");
    for (f, g) in x.findings.iter().zip(&y.findings) {
        let at = format!("{} for {} on {day}", g.rule, g.account.id);
        assert_eq!(
            (&*f.rule, &*f.account.id, f.key.as_str(), f.severity),
            (&*g.rule, &*g.account.id, g.key.as_str(), g.severity),
            "{at}"
        );
        assert_eq!((&f.title, &f.action), (&g.title, &g.action), "{at}");
        assert_eq!(f.figures.len(), g.figures.len(), "{at}");
        for ((k, v), (l, w)) in f.figures.iter().zip(&g.figures) {
            assert_eq!(k, l, "{at}");
            assert!(same_json(v, w), "{at}: {k} = {v} vs {w}");
        }
    }
    y.findings.len()
}

/// The backtest derives each day's snapshot from one load of the history
/// (`Timeline`); for a generated book with receivables, stock, a tier
/// override, an inactive account and orders of an account missing from
/// the master, every derived day equals `metrics::build` run at that day —
/// tiers, shares, main SKUs, stock cover, open invoices — and the rules
/// find exactly the same warnings.
#[test]
fn derived_snapshots_equal_a_build_at_that_day() {
    let p = Project::new();
    p.with_generated_history(60, 11);
    let db = p.db();
    let ids: Vec<String> = {
        let mut st = db.prepare("SELECT id FROM accounts ORDER BY id").unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let skus: Vec<String> = {
        let mut st = db
            .prepare("SELECT sku FROM orders GROUP BY sku ORDER BY COUNT(*) DESC LIMIT 6")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert!(ids.len() == 60 && skus.len() == 6);
    // Invoices issued across the year (some without an issue date), due
    // 30 days later; most of today's open invoices were issued late.
    for (i, id) in ids.iter().enumerate().take(40) {
        for k in 0..3 {
            let issued = d("2026-01-10") + chrono::TimeDelta::days((i * 7 + k * 90) as i64 % 320);
            let issued_text = (i % 9 != 0).then(|| issued.to_string());
            db.execute(
                "INSERT INTO receivables (account_id, invoice, amount, due_date, invoice_date)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![
                    id,
                    format!("INV-{i}-{k}"),
                    1000.0 + (i * 37 + k * 11) as f64 * 3.25,
                    (issued + chrono::TimeDelta::days(30)).to_string(),
                    issued_text
                ],
            )
            .unwrap();
        }
    }
    db.execute_batch(&format!(
        "INSERT INTO inventory (sku, account_id, on_hand) VALUES
           ('{s0}', '', 500), ('{s1}', '', 40), ('{s2}', '', 0),
           ('{s0}', '{a0}', 25), ('{s3}', '{a1}', 12), ('{s4}', '{a2}', 7);
         UPDATE accounts SET tier_override = 'A', credit_limit = 20000 WHERE id = '{a3}';
         UPDATE accounts SET active = 0 WHERE id = '{a4}';
         INSERT INTO orders (order_id, line, account_id, date, sku, qty, revenue, cost)
           VALUES ('GHOST-1', '1', 'NOT-IN-MASTER', '2026-05-02', '{s0}', 40, 90000, 60000),
                  ('GHOST-2', '1', 'NOT-IN-MASTER', '2026-10-02', '{s1}', 10, 20000, 15000);",
        s0 = skus[0],
        s1 = skus[1],
        s2 = skus[2],
        s3 = skus[3],
        s4 = skus[4],
        a0 = ids[0],
        a1 = ids[1],
        a2 = ids[2],
        a3 = ids[3],
        a4 = ids[4],
    ))
    .unwrap();
    drop(db);

    let cfg = kamwatch::config::load(&p.config()).unwrap();
    let (rules, errors, _) = RuleSet::load_config(&cfg).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let conn = kamwatch::store::open(&cfg.database()).unwrap();
    let tiers = &cfg.cfg.tiers;
    let timeline = Timeline::load(&conn, d("2026-11-28")).unwrap();
    let mut findings = 0;
    let mut unknown = Vec::new();
    let mut spare = Vec::new();
    let mut reuse = metrics::Reuse::default();
    for day in [
        "2024-11-15",
        "2025-06-30",
        "2026-02-28",
        "2026-05-01",
        "2026-05-02",
        "2026-08-17",
        "2026-10-31",
        "2026-11-28",
    ] {
        let built = metrics::build(&conn, d(day), tiers).unwrap();
        let derived = timeline.snapshot(d(day), tiers);
        findings += assert_same(&derived, &built, &rules);
        unknown.push(derived.unknown_accounts);
        // The backtest's way: the previous day's accounts rebuilt in place.
        let before: Vec<*const _> = spare.iter().map(Arc::as_ptr).collect();
        reuse.recycle(std::mem::take(&mut spare));
        let reused = timeline.snapshot_reusing(d(day), tiers, &mut reuse);
        assert_same(&reused, &built, &rules);
        if !before.is_empty() {
            assert!(
                reused
                    .accounts
                    .iter()
                    .all(|a| before.contains(&Arc::as_ptr(a))),
                "{day}: the spare accounts were not reused"
            );
        }
        spare = reused.accounts;
    }
    // Main SKUs for tier A only: A's as built, the others' left empty.
    let mut only_a = metrics::Reuse::default();
    only_a.main_skus_for_tiers(&["A"]);
    let built = metrics::build(&conn, d("2026-11-28"), tiers).unwrap();
    let some = timeline.snapshot_reusing(d("2026-11-28"), tiers, &mut only_a);
    let mut with_skus = 0;
    for (a, b) in some.accounts.iter().zip(&built.accounts) {
        if a.tier == kamwatch::model::Tier::A {
            assert_eq!(
                (&a.main_skus, &a.stock),
                (&b.main_skus, &b.stock),
                "{}",
                a.id
            );
            with_skus += usize::from(!a.main_skus.is_empty());
        } else {
            assert!(a.main_skus.is_empty() && a.stock.is_empty(), "{}", a.id);
        }
    }
    assert!(with_skus > 0);
    assert!(
        built
            .accounts
            .iter()
            .any(|b| b.tier != kamwatch::model::Tier::A && !b.main_skus.is_empty())
    );
    // Back in time, from the last day's accounts.
    let built = metrics::build(&conn, d("2025-06-30"), tiers).unwrap();
    reuse.recycle(spare);
    assert_same(
        &timeline.snapshot_reusing(d("2025-06-30"), tiers, &mut reuse),
        &built,
        &rules,
    );
    assert!(findings > 0, "no rule fired on any day");
    // The account missing from the master counts from its first order on.
    assert_eq!(unknown, [0, 0, 0, 0, 1, 1, 1, 1]);
    // An earlier day sees fewer open invoices than today.
    let early = timeline.snapshot(d("2026-03-01"), tiers);
    let today = timeline.snapshot(d("2026-11-28"), tiers);
    let open = |s: &Snapshot| s.accounts.iter().map(|a| a.invoices.len()).sum::<usize>();
    assert!(
        open(&early) < open(&today),
        "{} {}",
        open(&early),
        open(&today)
    );
    assert!(open(&early) > 0);
}

/// The replay evaluates days on several threads and steps the lifecycle in
/// day order: the report is the same on one thread as on three, daily and
/// weekly, and it found something to report.
#[test]
fn backtest_report_does_not_depend_on_threads() {
    let p = Project::new();
    p.with_generated_history(40, 9);
    let cfg = kamwatch::config::load(&p.config()).unwrap();
    let (rules, _, _) = RuleSet::load_config(&cfg).unwrap();
    let conn = kamwatch::store::open(&cfg.database()).unwrap();
    let timeline = Timeline::load(&conn, d("2026-11-28")).unwrap();
    for every_days in [1, 7] {
        let opts = kamwatch::reports::backtest::Options {
            from: d("2026-08-01"),
            to: d("2026-11-28"),
            every_days,
            rule: None,
            max_per_owner_week: 1,
        };
        let json = |threads| {
            let mut r =
                kamwatch::reports::backtest::replay(&timeline, &cfg, &rules, &opts, threads);
            r.seconds = 0.0;
            serde_json::to_string(&r).unwrap()
        };
        let one = json(1);
        assert_eq!(one, json(3), "every {every_days} days");
        assert!(one.contains("\"started\":"), "{one}");
        let report: serde_json::Value = serde_json::from_str(&one).unwrap();
        let started: u64 = report["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["started"].as_u64().unwrap())
            .sum();
        assert!(started > 0, "{one}");
    }
}

/// A rule that raises the same key twice for an account in one run: the
/// backtest keeps what the daemon keeps. `alert()` refuses the second as a
/// run error, so on that day both drop the run's findings and leave the
/// account's alert as it was (no second start, no resolved notice); were
/// two findings of one key to come, both would keep the first
/// (`alerts::per_key`, pinned in `reports::backtest`'s unit tests). Here
/// `kamwatch eval` day by day on the database, then `kamwatch backtest`
/// over the same days on it, give the same starts, notices and errors.
#[test]
fn a_key_raised_twice_is_kept_the_same_by_eval_and_backtest() {
    let p = Project::new();
    p.with_generated_history(5, 3);
    for f in p.files_under("rules") {
        std::fs::remove_file(f).unwrap();
    }
    std::fs::write(
        p.path("rules/twice.rhai"),
        "// Raises \"k\" once each day; on 2026-11-27 a second time, critical.\n\
         alert(#{ key: \"k\", title: \"first\", severity: \"warning\" });\n\
         if as_of == \"2026-11-27\" {\n    \
             alert(#{ key: \"k\", title: \"second\", severity: \"critical\" });\n\
         }\n",
    )
    .unwrap();
    let days = ["2026-11-26", "2026-11-27", "2026-11-28"];

    // The backtest first: it records and sends nothing.
    let o = p.run(&[
        "backtest", "--from", days[0], "--to", days[2], "--format", "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(r["rule"], "twice", "{r}");

    // The daemon's evaluation, day by day.
    let mut errors = 0;
    for day in days {
        let o = p.run(&["eval", "--as-of", day]);
        let failed = stderr(&o).matches("raised twice in one run").count();
        assert_eq!(o.status.success(), failed == 0, "{day}: {}", show(&o));
        errors += failed;
    }
    let db = p.db();
    let alerts: Vec<(String, String, String, String, String)> = db
        .prepare(
            "SELECT account_id, state, severity, title, started_at FROM alerts ORDER BY account_id",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(alerts.len(), 5, "{alerts:?}");
    for a in &alerts {
        assert_eq!(
            (&*a.1, &*a.2, &*a.3, &*a.4),
            ("firing", "warning", "first", days[0]),
            "{a:?}"
        );
    }
    let mails = p.files_under("var/mail").len();
    assert_eq!(mails, 5);

    // The same in the backtest: each account started once, on the first
    // day; one failed run per account on the second; nothing resolved.
    assert_eq!(r["started"], 5, "{r}");
    assert_eq!(r["notices"], mails as u64, "{r}");
    assert_eq!(r["resolved"], 0, "{r}");
    // The daemon logs the failure once per rule ("failed for 5
    // accounts"); the backtest counts each failed run.
    assert_eq!(errors, 1);
    assert_eq!(r["errors"], 5, "{r}");
}
