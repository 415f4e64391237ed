//! Tests of the parallel runner: panics, limits, caps, seasons.

use std::collections::BTreeSet;

use super::*;
use crate::rules::AlertCaps;
use crate::rules::test_books::{book_of, snapshot_of};

#[test]
fn rules_see_the_seasons_of_their_set() {
    // As of 2026-11-28: 双11 is over; 春节 2027 is 02-06, its stocking
    // peak (the shipped 春节 - 30 to 元宵) starts 2027-01-07, in 40 days.
    let src = r#"
        let s = season("春节");
        let m = season("中秋");
        let n = next_season();
        alert(#{ title: `${s.start}..${s.end} ${s.days_until} ${s.in_peak} ${m.start} ${n.name} ${days_until_peak()} ${from_lunar(2027, 8, 15)}` });
    "#;
    let mut rs = RuleSet::from_sources(&[("s", src)]).unwrap();
    let snap = crate::metrics::tests_support::snapshot_one();
    let out = rs.evaluate(&snap);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(
        out.findings[0].title,
        "2027-01-07..2027-02-20 40 false 2027-08-16 春节 40 2027-09-15"
    );
    // The set's own seasons: a name it lacks is an error naming those
    // it has; without seasons there is no next peak.
    let own = crate::model::seasons::Season::parse("店庆", "12-01", "12-07").unwrap();
    rs.seasons = Arc::new(crate::model::seasons::Seasons { list: vec![own] });
    let out = rs.evaluate(&snap);
    assert_eq!(out.errors.len(), 1, "{:?}", out.findings);
    assert!(
        out.errors[0]
            .message
            .contains("no such season; the config's seasons are 店庆"),
        "{}",
        out.errors[0].message
    );
    let none = RuleSet {
        seasons: Arc::new(crate::model::seasons::Seasons::default()),
        ..RuleSet::from_sources(&[(
            "n",
            "alert(#{ title: `${days_until_peak()} ${type_of(next_season())}` });",
        )])
        .unwrap()
    };
    let out = none.evaluate(&snap);
    assert_eq!(out.findings[0].title, "-1 ()");
}

#[test]
fn seasons_within_lists_each_season_running_or_starting_soon() {
    // On 2026-11-08 双11 runs (11-01..11-11, 4 days left) and 春节 2027
    // stocking (from 2027-01-07) is 60 days away: both, the running one
    // first; 59 days ahead sees only 双11.
    let src = r#"
        let t = "";
        for p in seasons_within(60) { t += `${p.name}:${p.days_until}:${p.in_peak}:${p.days_left} `; }
        t += `${seasons_within(59).len()}`;
        alert(#{ title: t });
    "#;
    let rs = RuleSet::from_sources(&[("s", src)]).unwrap();
    let mut snap = crate::metrics::tests_support::snapshot_one();
    snap.as_of = chrono::NaiveDate::from_ymd_opt(2026, 11, 8).unwrap();
    let out = rs.evaluate(&snap);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.findings[0].title, "双11:0:true:4 春节:60:false:0 1");
    // Out of its bounds, an error naming the call.
    for bad in ["-1", "367"] {
        let rs = RuleSet::from_sources(&[("b", &format!("seasons_within({bad});"))]).unwrap();
        let out = rs.evaluate(&snap);
        assert_eq!(out.errors.len(), 1, "{bad}");
        assert!(
            out.errors[0]
                .message
                .contains(&format!("seasons_within({bad}): give 0")),
            "{}",
            out.errors[0].message
        );
    }
    // Without seasons, an empty list.
    let none = RuleSet {
        seasons: Arc::new(crate::model::seasons::Seasons::default()),
        ..RuleSet::from_sources(&[("n", "alert(#{ title: `${seasons_within(366).len()}` });")])
            .unwrap()
    };
    assert_eq!(none.evaluate(&snap).findings[0].title, "0");
}

#[test]
fn a_panicking_evaluation_fails_its_accounts_and_drops_none() {
    let rs = RuleSet::from_sources(&[
        ("a", "alert(#{ title: account.id, figures: #{ n: 1 } });"),
        ("b", "let x = 1;"),
    ])
    .unwrap();
    // 600 accounts are three blocks; the panic is in the second.
    let snap = snapshot_of(600, 300);
    for threads in [1, 2] {
        let out = rs.evaluate_with(&snap, threads);
        let failed: BTreeSet<&str> = out.errors.iter().map(|e| e.account_id.as_str()).collect();
        let fired: BTreeSet<&str> = out.findings.iter().map(|f| &*f.account.id).collect();
        // Every account either fired or failed: none vanished.
        for m in &snap.accounts {
            assert!(
                failed.contains(&*m.id) ^ fired.contains(&*m.id),
                "{threads} thread(s): account {} neither fired nor failed",
                m.id
            );
        }
        assert!(failed.contains("PANIC300"));
        assert!(
            out.errors
                .iter()
                .all(|e| e.message.contains("internal error"))
        );
        // Both rules failed for each failed account.
        assert_eq!(out.errors.len(), failed.len() * 2);
        if threads == 2 {
            // Only the panicking block failed.
            assert_eq!(failed.len(), 256, "{failed:?}");
            assert!(fired.contains("KH0") && fired.contains("KH599"));
        }
    }
}

#[test]
fn a_rule_stopped_at_its_limits_again_and_again_is_set_aside() {
    let rs = RuleSet::from_sources(&[("spin", "loop { }"), ("ok", "alert(#{ title: \"t\" });")])
        .unwrap();
    let out = rs.evaluate_with(&book_of(20), 1);
    let spin: Vec<&RunError> = out.errors.iter().filter(|e| &*e.rule == "spin").collect();
    assert_eq!(spin.len(), 20, "every account is accounted for");
    let stopped = spin
        .iter()
        .filter(|e| e.message.contains("endless loop"))
        .count();
    assert_eq!(stopped, MAX_STRIKES as usize);
    assert!(spin[MAX_STRIKES as usize].message.starts_with("not run:"));
    assert_eq!(out.findings.len(), 20, "the other rule ran everywhere");
}

#[test]
fn alerts_are_capped_per_account_and_per_rule() {
    let mut rs = RuleSet::from_sources(&[
        (
            "flood",
            "for i in 0..1000 { alert(#{ title: \"t\", key: i }); }",
        ),
        (
            "three",
            "for i in 0..3 { alert(#{ title: \"t\", key: i }); }",
        ),
        ("one", "alert(#{ title: \"t\" });"),
    ])
    .unwrap();
    rs.caps = AlertCaps {
        per_account: 5,
        per_rule: 7,
    };
    let out = rs.evaluate_with(&book_of(4), 2);
    // flood: over the per-account cap everywhere, nothing recorded.
    let flood: Vec<_> = out.errors.iter().filter(|e| &*e.rule == "flood").collect();
    assert_eq!(flood.len(), 4);
    assert!(
        flood[0]
            .message
            .contains("more than 5 alerts for one account")
    );
    assert!(!out.findings.iter().any(|f| &*f.rule == "flood"));
    // three: 12 in the evaluation, cap 7: KH1 and KH2 kept whole (6),
    // KH3 would cross the cap, so KH3 and KH4 failed (one block of
    // accounts: in book order).
    let kept: Vec<&str> = out
        .findings
        .iter()
        .filter(|f| &*f.rule == "three")
        .map(|f| &*f.account.id)
        .collect();
    assert_eq!(kept, ["KH1", "KH1", "KH1", "KH2", "KH2", "KH2"]);
    let failed: Vec<&str> = out
        .errors
        .iter()
        .filter(|e| &*e.rule == "three")
        .map(|e| e.account_id.as_str())
        .collect();
    assert_eq!(failed, ["KH3", "KH4"]);
    assert!(out.errors.iter().any(|e| {
        e.message
            .contains("more alerts in this evaluation than alerts.max_per_rule (7)")
    }));
    // one: under both caps, untouched.
    assert_eq!(out.findings.iter().filter(|f| &*f.rule == "one").count(), 4);
    // Held findings start nothing and do not count towards the per-rule
    // cap: 3 held and 1 raised per account, 4 accounts, cap 7.
    let mut rs = RuleSet::from_sources(&[(
        "held",
        "for i in 0..3 { alert(#{ title: \"t\", key: i, starts: false }); }\nalert(#{ title: \"t\", key: \"r\" });",
    )])
    .unwrap();
    rs.caps = AlertCaps {
        per_account: 5,
        per_rule: 7,
    };
    let out = rs.evaluate_with(&book_of(4), 2);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.findings.len(), 16);
    assert_eq!(out.findings.iter().filter(|f| f.starts).count(), 4);
}

/// `figures: Fn("name")`: the figures a function of the script returns,
/// as if given inline, what it reads noted apart from what decided the
/// run (`reads::Read`); a function that raises an alert, returns
/// something else or runs away is an error that says so.
#[test]
fn figures_from_a_function_are_the_inline_ones_their_reads_noted_apart() {
    let inline = r#"
        alert(#{ title: "t", figures: [["rev", money(account.revenue(90))], ["book", portfolio.revenue_12m], ["share", account.share]] });"#;
    let by_fn = r#"
        fn f(a, book, x) { [["rev", money(a.revenue(90))], ["book", book.revenue_12m], ["share", a.share * x]] }
        alert(#{ title: "t", figures: Fn("f").curry(account, portfolio, 1.0) });"#;
    let snap = book_of(6);
    let run = |src: &str| {
        RuleSet::from_sources(&[("r", src)])
            .unwrap()
            .evaluate(&snap)
    };
    let (a, b) = (run(inline), run(by_fn));
    assert!(a.errors.is_empty() && b.errors.is_empty(), "{:?}", b.errors);
    assert!(!a.findings.is_empty(), "nothing raised: no test");
    let said = |o: &Outcome| -> Vec<String> {
        o.findings
            .iter()
            .map(|f| format!("{} {:?} {:?}", f.account.id, f.figures, f.units))
            .collect()
    };
    assert_eq!(said(&a), said(&b));
    // Inline, the book's total and the share decide; by the function they
    // are the figures' alone.
    let book = reads::TOTAL | reads::SHARE;
    let inline_read = a.reads.bits.iter().fold(0, |x, r| x | r.decide);
    assert_eq!(inline_read & book, book);
    assert!(a.reads.bits.iter().all(|r| r.figures == 0));
    assert_eq!(b.reads.bits.iter().fold(0, |x, r| x | r.decide) & book, 0);
    let figures = b.reads.bits.iter().fold(0, |x, r| x | r.figures);
    assert_eq!(figures & book, book);

    // Its failures are the alert's one figure, saying what failed, never
    // an error of the run: they depend on what only the figures read.
    let failed = |src: &str, says: &str| {
        let out = run(src);
        assert!(out.errors.is_empty(), "{src}: {:?}", out.errors);
        assert_eq!(out.findings.len(), snap.accounts.len(), "{src}");
        let figures = &out.findings[0].figures;
        assert_eq!(figures.len(), 1, "{figures:?}");
        let said = figures[0].1.as_str().unwrap_or_default();
        assert!(
            said.starts_with("the figures function f() failed: "),
            "{said}"
        );
        assert!(said.contains(says), "{said}");
        assert!(!said.contains("Runtime error"), "{said}");
    };
    failed(
        r#"fn f() { alert(#{ title: "inner" }); [] }
           alert(#{ title: "t", figures: Fn("f") });"#,
        "called from an alert's figures function",
    );
    failed(
        r#"fn f() { 42 }
           alert(#{ title: "t", figures: Fn("f") });"#,
        "`figures` must be an array",
    );
    failed(
        r#"fn f() { loop { } }
           alert(#{ title: "t", figures: Fn("f") });"#,
        "limit of operations",
    );
    failed(
        r#"fn f(a) { [["x", a.revenue(90)]] }
           alert(#{ title: "t", figures: Fn("f") });"#,
        "Function not found",
    );
    failed(
        r#"fn f() { throw "no such SKU"; }
           alert(#{ title: "t", figures: Fn("f") });"#,
        "no such SKU",
    );
    // Nor can the script catch one.
    let out = run(r#"fn f() { throw "no"; }
        try { alert(#{ title: "t", figures: Fn("f") }); } catch (e) { alert(#{ key: "caught", title: "t" }); }"#);
    assert!(
        out.findings.iter().all(|f| f.key.is_empty()),
        "{:?}",
        out.findings
    );
    // Its operations are its own: as many in it as after it, each under
    // the limit, both over it together.
    let spin = |n: usize| format!("let n = 0; while n < {n} {{ n += 1; }}");
    let out = run(&format!(
        r#"fn f() {{ {} [["n", n]] }}
           alert(#{{ title: "t", figures: Fn("f") }});
           {}"#,
        spin(100_000),
        spin(100_000)
    ));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.findings[0].figures[0].1, serde_json::json!(100_000));
    let out = run(&format!("{} {}", spin(100_000), spin(100_000)));
    assert!(
        !out.errors.is_empty(),
        "both loops in one run are under the limit: no test"
    );
    // A figures function's own reads stop with it: the next alert's
    // decision is the decision's again.
    let after = run(r#"
        fn f(book) { [["book", book.revenue_12m]] }
        alert(#{ key: "a", title: "t", figures: Fn("f").curry(portfolio) });
        alert(#{ key: "b", title: `${account.share}` });"#);
    assert!(after.errors.is_empty(), "{:?}", after.errors);
    assert!(
        after
            .reads
            .bits
            .iter()
            .all(|r| r.decide & reads::SHARE != 0)
    );
}
