//! A pair runs again exactly when a value its last run read changed.

use std::sync::Arc;

use super::*;
use crate::metrics::{AccountMetrics, Portfolio};
use crate::model::Tier;

/// Accounts KH1.. with `tiers`, each holding `share` of the book, whose
/// smallest A account has `floor` of 12-month revenue.
fn book(tiers: &[Tier], floor: f64, share: f64) -> Snapshot {
    book_with(tiers, floor, share, &[])
}

/// [`book`], the accounts with `revenue` of 12-month revenue (in order).
fn book_with(tiers: &[Tier], floor: f64, share: f64, revenue: &[f64]) -> Snapshot {
    let mut snap = crate::metrics::tests_support::snapshot_one();
    snap.accounts = tiers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Arc::new(AccountMetrics {
                tier: *t,
                prev_tier: *t,
                share,
                share_above: share,
                revenue_12m: revenue.get(i).copied().unwrap_or(0.0),
                ..AccountMetrics::empty(&format!("KH{}", i + 1), "测试")
            })
        })
        .collect();
    snap.portfolio = Arc::new(Portfolio {
        floor_a: floor,
        ..Portfolio::default()
    });
    snap
}

/// The ids of the accounts `pick` runs any rule for.
fn ran(pick: &Pick, snap: &Snapshot) -> Vec<String> {
    (0..pick.visit.len())
        .filter(|k| (0..pick.rules).any(|r| pick.runs(*k, r)))
        .map(|k| snap.accounts[pick.visit[k].0].id.to_string())
        .collect()
}

/// Picks the pairs for `snap` after `memo`, runs them, brings the memo up
/// to date and checks it holds what the alerts observe of what a full run
/// finds, and that the findings it steps are a full run's; returns the accounts
/// run.
fn step(rules: &RuleSet, memo: &mut Memo, snap: &Snapshot) -> Vec<String> {
    let since = Since {
        accounts: &[],
        visited: &[],
        orders: true,
        orders_from: None,
    };
    let pick = memo.pick(rules, snap, "", since).unwrap();
    let now = rules.evaluate_picked(snap, &pick, Arc::default());
    assert!(pick.settled(rules, &now));
    let stepped = memo.update(rules, snap, &pick, &now);
    let full = rules.evaluate(snap);
    // The findings handed to the alerts' step carry a full run's texts.
    let whole = |f: &Finding| {
        format!(
            "{} {} {:?} {:?} {:?}",
            f.account.id, f.rule, f.key, f.title, f.figures
        )
    };
    let theirs: Vec<String> = full.findings.iter().map(whole).collect();
    for f in &stepped.findings {
        assert!(
            theirs.contains(&whole(f)),
            "{} not as a full run finds it",
            whole(f)
        );
    }
    // What the alerts observe of each finding (the memo keeps no texts).
    let titles = |o: &Outcome| -> Vec<String> {
        let mut t: Vec<String> = o
            .findings
            .iter()
            .map(|f| {
                format!(
                    "{} {} {:?} {:?} {}",
                    f.account.id, f.rule, f.key, f.severity, f.starts
                )
            })
            .collect();
        t.extend(
            o.errors
                .iter()
                .map(|e| format!("{} {}", e.account_id, e.message)),
        );
        t
    };
    assert_eq!(titles(&memo.outcome(rules, snap)), titles(&full));
    ran(&pick, snap)
}

/// A rule that stops at the tier for A accounts is not run again for them
/// when the floor moves; those that read the floor are. A value nobody
/// read (the share) moving runs nothing; an account whose tier moves runs
/// again, and from then on reads the floor.
#[test]
fn a_pair_runs_again_only_when_what_it_read_changed() {
    let src = r#"
        if account.tier == "A" { return; }
        let p = portfolio;
        let floor = p.call(Fn("tier_floor"), "A");
        if floor > 100.0 { alert(#{ title: `under ${floor}` }); }
    "#;
    let rules = RuleSet::from_sources(&[("r", src)]).unwrap();
    let (a, b, c) = (Tier::A, Tier::B, Tier::C);
    let first = book(&[a, b, c], 50.0, 0.1);
    let out = rules.evaluate(&first);
    assert!(out.findings.is_empty());
    let mut memo = Memo::of(&rules, &first, String::new(), &out).unwrap();
    // The floor moves: the B and C accounts read it, the A account did not.
    let ids = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
    assert_eq!(
        step(&rules, &mut memo, &book(&[a, b, c], 200.0, 0.1)),
        ids(&["KH2", "KH3"])
    );
    // The share moves: nobody read it.
    assert_eq!(
        step(&rules, &mut memo, &book(&[a, b, c], 200.0, 0.2)),
        ids(&[])
    );
    // KH1 leaves A: it read its tier.
    assert_eq!(
        step(&rules, &mut memo, &book(&[b, b, c], 200.0, 0.2)),
        ids(&["KH1"])
    );
    // The floor moves again: KH1 now read it too.
    assert_eq!(
        step(&rules, &mut memo, &book(&[b, b, c], 300.0, 0.2)),
        ids(&["KH1", "KH2", "KH3"])
    );
    // Nothing moved: nothing runs.
    assert_eq!(
        step(&rules, &mut memo, &book(&[b, b, c], 300.0, 0.2)),
        ids(&[])
    );
}

/// A snapshot holds its accounts in rank order, so the next one may hold
/// them elsewhere: the memo finds each by id, keeps its results with it,
/// and tells another account list from the same one in another order.
#[test]
fn the_same_accounts_in_another_order_are_found_by_id() {
    let src = r#"
        if account.tier != "A" { alert(#{ title: `${account.id} out of A` }); }
    "#;
    let rules = RuleSet::from_sources(&[("r", src)]).unwrap();
    let (a, b) = (Tier::A, Tier::B);
    let first = book(&[a, b, b], 50.0, 0.1);
    let out = rules.evaluate(&first);
    assert_eq!(out.findings.len(), 2);
    let mut memo = Memo::of(&rules, &first, String::new(), &out).unwrap();
    let ids = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
    // The same accounts, the other way round: nothing moved, nothing runs.
    let reversed = |mut s: Snapshot| {
        s.accounts.reverse();
        s
    };
    assert_eq!(
        step(&rules, &mut memo, &reversed(book(&[a, b, b], 50.0, 0.1))),
        ids(&[])
    );
    // KH3 moves into A (now first, as a ranking would put it): it alone
    // runs, and its finding goes with it (`step` compares with a full run).
    let mut moved = book(&[a, b, a], 50.0, 0.1);
    moved.accounts.swap(0, 2);
    assert_eq!(step(&rules, &mut memo, &moved), ids(&["KH3"]));
    assert_eq!(memo.outcome(&rules, &moved).findings.len(), 1);
    // As many accounts, one of them another: everything runs.
    let mut other = book(&[a, b, a], 50.0, 0.1);
    other.accounts[1] = Arc::new(AccountMetrics {
        tier: Tier::B,
        ..AccountMetrics::empty("KH9", "测试")
    });
    let since = Since {
        accounts: &[],
        visited: &[],
        orders: true,
        orders_from: None,
    };
    let why = memo.pick(&rules, &other, "", since).unwrap_err();
    assert_eq!(why, "the accounts of the book changed");
    // Two accounts with one id: no memo (everything runs next time).
    let mut twice = book(&[a, b], 50.0, 0.1);
    twice.accounts[1] = twice.accounts[0].clone();
    let out = rules.evaluate(&twice);
    assert!(Memo::of(&rules, &twice, String::new(), &out).is_none());
}

/// What changed for each account is found on several threads, a block
/// of accounts at a time: the pick is the one a single thread makes,
/// whatever the blocks and threads (accounts moved in the order, touched,
/// a tier or the floor moved, blocks that end mid-book), and an account
/// the memo does not know fails the pick from any block.
#[test]
fn the_pick_is_the_same_however_the_accounts_are_split_between_threads() {
    let src = r#"
        if account.tier == "A" { return; }
        if account.revenue_12m > portfolio.tier_floor("A") { alert(#{ title: "near A" }); }
        if account.tier == "C" { alert(#{ title: `${account.id} in C`, key: "c" }); }
    "#;
    let rules = RuleSet::from_sources(&[
        ("r", src),
        (
            "s",
            "if account.tier == \"B\" { alert(#{ title: \"B\" }); }",
        ),
    ])
    .unwrap();
    let (a, b, c) = (Tier::A, Tier::B, Tier::C);
    let tiers: Vec<Tier> = (0..37).map(|i| [a, b, c, c, b][i % 5]).collect();
    let revenue: Vec<f64> = (0..37).map(|i| f64::from(i * 17 % 101)).collect();
    let first = book_with(&tiers, 50.0, 0.1, &revenue);
    let out = rules.evaluate(&first);
    let memo = Memo::of(&rules, &first, String::new(), &out).unwrap();
    // Another day's book: some tiers moved, the floor too, two accounts
    // swapped places, and some accounts' own data written.
    let mut moved = tiers.clone();
    for i in [2, 9, 10, 31] {
        moved[i] = a;
    }
    moved[36] = b;
    let mut next = book_with(&moved, 60.0, 0.1, &revenue);
    next.accounts.swap(4, 20);
    let touched: Vec<String> = ["KH1", "KH8", "KH30", "KH37", "KH99"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let since = Since {
        accounts: &touched,
        visited: &touched[1..3],
        orders: true,
        orders_from: None,
    };
    let one = Split {
        block: usize::MAX,
        threads: 1,
    };
    let pick = |snap: &Snapshot, split: Split| {
        memo.pick_split(&rules, snap, "", since, split)
            .map(|p| format!("{p:?}"))
    };
    let alone = pick(&next, one).unwrap();
    // The pick is not trivially empty: some accounts run, not all.
    let p = memo.pick_split(&rules, &next, "", since, one).unwrap();
    assert!(!p.visit.is_empty() && p.visit.len() < 37, "{alone}");
    for (block, threads) in [
        (1, 2),
        (1, 3),
        (3, 2),
        (7, 4),
        (36, 2),
        (37, 2),
        (0, 2),
        (5, 64),
    ] {
        assert_eq!(
            pick(&next, Split { block, threads }).unwrap(),
            alone,
            "blocks of {block} on {threads}"
        );
    }
    // An account the memo does not know, in the last block of several.
    let mut other = book_with(&moved, 60.0, 0.1, &revenue);
    other.accounts[35] = Arc::new(AccountMetrics {
        tier: Tier::B,
        ..AccountMetrics::empty("KH99", "测试")
    });
    for (block, threads) in [(usize::MAX, 1), (2, 2), (5, 3)] {
        assert_eq!(
            pick(&other, Split { block, threads }).unwrap_err(),
            "the accounts of the book changed"
        );
    }
}

/// A value compared with a floor through `past_tier_floor` is read as the
/// answer: the pair runs again when the floor crosses the value, not when
/// the floor moves and stays on the same side.
#[test]
fn a_floor_asked_about_runs_a_pair_again_only_when_it_crosses_the_value() {
    let src = r#"
        if portfolio.past_tier_floor("A", account.revenue_12m) { alert(#{ title: "past" }); }
    "#;
    let rules = RuleSet::from_sources(&[("r", src)]).unwrap();
    let b = Tier::B;
    let at = |floor: f64| book_with(&[b, b], floor, 0.1, &[100.0, 300.0]);
    let first = at(50.0);
    let out = rules.evaluate(&first);
    assert_eq!(out.findings.len(), 2);
    let mut memo = Memo::of(&rules, &first, String::new(), &out).unwrap();
    let ids = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
    // 50 -> 60: both still past it.
    assert_eq!(step(&rules, &mut memo, &at(60.0)), ids(&[]));
    // -> 200: KH1's 100 is no longer past it; KH2's 300 is.
    assert_eq!(step(&rules, &mut memo, &at(200.0)), ids(&["KH1"]));
    // -> 250: nobody crosses.
    assert_eq!(step(&rules, &mut memo, &at(250.0)), ids(&[]));
    // -> 300: KH2's 300 is at the floor, not past it.
    assert_eq!(step(&rules, &mut memo, &at(300.0)), ids(&["KH2"]));
    // -> 90: both past it again.
    assert_eq!(step(&rules, &mut memo, &at(90.0)), ids(&["KH1", "KH2"]));
}

/// A value compared with a floor plus a margin through
/// `reaches_tier_floor_plus` is read as the answer, `x >= f + f * pct /
/// 100.0` to the bit: the pair runs again when that line crosses the
/// value (exactly on it counts as reached), not whenever the floor moves.
#[test]
fn a_floor_plus_a_margin_asked_about_runs_a_pair_again_only_when_it_crosses_the_value() {
    // (A whole float margin is the same margin.)
    let src = r#"
        if portfolio.reaches_tier_floor_plus("A", account.revenue_12m, 10)
            != portfolio.reaches_tier_floor_plus("A", account.revenue_12m, 10.0) { throw "differ"; }
        if portfolio.reaches_tier_floor_plus("A", account.revenue_12m, 10) { alert(#{ title: "reaches" }); }
    "#;
    let rules = RuleSet::from_sources(&[("r", src)]).unwrap();
    let b = Tier::B;
    let at = |floor: f64| book_with(&[b, b], floor, 0.1, &[110.0, 300.0]);
    let reaching = |floor: f64| rules.evaluate(&at(floor)).findings.len();
    let first = at(100.0);
    let out = rules.evaluate(&first);
    assert_eq!(out.findings.len(), 2, "110 is exactly 100 + 10%");
    let mut memo = Memo::of(&rules, &first, String::new(), &out).unwrap();
    let ids = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
    // A hair above 100: 110 no longer reaches it; 300 does.
    assert_eq!(step(&rules, &mut memo, &at(100.01)), ids(&["KH1"]));
    assert_eq!(reaching(100.01), 1);
    // -> 200: nobody crosses (KH2's 300 reaches 220).
    assert_eq!(step(&rules, &mut memo, &at(200.0)), ids(&[]));
    // -> 280: 308 is past KH2's 300.
    assert_eq!(step(&rules, &mut memo, &at(280.0)), ids(&["KH2"]));
    assert_eq!(reaching(280.0), 0);
    // -> 50: both reach it again.
    assert_eq!(step(&rules, &mut memo, &at(50.0)), ids(&["KH1", "KH2"]));
    // A tier without a floor, a margin that is no whole percentage: an
    // error that says which.
    for (call, says) in [
        (
            r#"reaches_tier_floor_plus("C", 1.0, 10)"#,
            "the tiers with a floor are",
        ),
        (
            r#"reaches_gross_profit_floor_plus("A", 1.0, 1001)"#,
            "a whole percentage, 0 to 1000",
        ),
        (
            r#"reaches_tier_floor_plus("A", 1.0, -1)"#,
            "a whole percentage, 0 to 1000",
        ),
        (
            r#"reaches_tier_floor_plus("A", 1.0, 10.5)"#,
            "a whole percentage, 0 to 1000",
        ),
    ] {
        let r = RuleSet::from_sources(&[("r", &format!("portfolio.{call};"))]).unwrap();
        let out = r.evaluate(&first);
        assert_eq!(out.errors.len(), 2, "{call}");
        let m = &out.errors[0].message;
        assert!(m.contains(says) && m.contains("reaches_"), "{call}: {m}");
    }
}

/// The functions read as their answer give the answer of the comparison
/// a rule would write, as Rhai compares floats (within a relative
/// `f64::EPSILON`; NaN and infinities compare false but for `NaN >= 0.0`):
/// at a hair's breadth
/// of the line, and for a value that is not a number or infinite, whatever
/// the floor (zero, huge, not finite). Such a value's answer never moves,
/// so its pair never runs again for the floor moving; the partial
/// evaluations equal full ones (`step`).
#[test]
fn the_answers_are_the_comparisons_a_rule_writes_at_a_hair_and_for_nan_and_infinities() {
    let x = r#"
        let inf = parse_float("inf");
        let x = switch account.id {
            "KH1" => parse_float("NaN"), "KH2" => inf, "KH3" => -inf,
            "KH5" => 109.99999999999999, "KH6" => 110.00000000000001, "KH7" => 100.00000000000001,
            _ => account.revenue_12m,
        };
    "#;
    // What a rule would write, beside the function (the floor read: this
    // one runs everywhere whenever the floor moves).
    let check = format!(
        r#"{x}
        let f = portfolio.tier_floor("A");
        if portfolio.reaches_tier_floor_plus("A", x, 10) != (x >= f + f * 10 / 100.0) {{ throw `at least: ${{x}} ${{f}}`; }}
        if portfolio.past_tier_floor("A", x) != (x > f) {{ throw `past: ${{x}} ${{f}}`; }}
        if account.revenue_share_above_at_least(x) != (round(account.revenue_share_above, 6) >= round(x, 6)) {{ throw `share: ${{x}}`; }}
        "#
    );
    let check = RuleSet::from_sources(&[("check", &check)]).unwrap();
    let src = format!(
        r#"{x} if portfolio.reaches_tier_floor_plus("A", x, 10) {{ alert(#{{ title: "reaches" }}); }}"#
    );
    let rules = RuleSet::from_sources(&[("r", &src)]).unwrap();
    let b = Tier::B;
    let revenue = [0.0, 0.0, 0.0, 110.0, 0.0, 0.0, 0.0];
    let at = |floor: f64| book_with(&[b; 7], floor, 0.1, &revenue);
    let reaching = |snap: &Snapshot| -> Vec<String> {
        let checked = check.evaluate(snap);
        assert!(checked.errors.is_empty(), "{:?}", checked.errors);
        let out = rules.evaluate(snap);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        out.findings
            .iter()
            .map(|f| f.account.id.to_string())
            .collect()
    };
    let ids = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
    let first = at(100.0);
    // One unit in the last place below 110 is at least 110 in a rule.
    assert_eq!(reaching(&first), ids(&["KH4", "KH5", "KH6"]));
    let out = rules.evaluate(&first);
    let mut memo = Memo::of(&rules, &first, String::new(), &out).unwrap();
    // The floor moves: the finite values run again as the line crosses
    // them; NaN and the infinities never do.
    for (floor, runs, reach) in [
        (100.01, &["KH4", "KH5", "KH6"][..], &[][..]),
        // (Rhai's `NaN >= 0.0` is true: against zero its scale is the
        // other's magnitude, NaN's 0.)
        (
            0.0,
            &["KH1", "KH4", "KH5", "KH6", "KH7"][..],
            &["KH1", "KH4", "KH5", "KH6", "KH7"][..],
        ),
        (f64::MAX, &["KH1", "KH4", "KH5", "KH6", "KH7"][..], &[][..]),
    ] {
        assert_eq!(
            step(&rules, &mut memo, &at(floor)),
            ids(runs),
            "floor {floor}"
        );
        assert_eq!(reaching(&at(floor)), ids(reach), "floor {floor}");
    }
    // A floor that is not finite (the loads hold none): the same
    // comparisons, without an error.
    assert_eq!(reaching(&at(f64::INFINITY)), ids(&[]));
    assert_eq!(reaching(&at(f64::NAN)), ids(&[]));
    assert_eq!(reaching(&at(-f64::INFINITY)), ids(&[]));
}

/// Accounts KH1.. of tier B with these shares above (by `tiers.by`).
fn shares(above: &[f64]) -> Snapshot {
    let mut snap = book(&[], 50.0, 0.1);
    snap.accounts = above
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Arc::new(AccountMetrics {
                tier: Tier::B,
                prev_tier: Tier::B,
                share_above: *s,
                ..AccountMetrics::empty(&format!("KH{}", i + 1), "测试")
            })
        })
        .collect();
    snap
}

/// A share above compared with a line through `share_above_at_least`
/// (here through a variable and `Fn`/`call`) is read as the answer: the
/// pair runs again when the share crosses the line (to six decimals, the
/// line itself reached), not whenever it moves; a rule that fails for an
/// account after asking, and a share that is not a number, are followed
/// the same way.
#[test]
fn a_share_asked_about_runs_a_pair_again_only_when_it_crosses_the_line() {
    let src = r#"
        let line = 0.5;
        let ask = Fn("share_above_at_least");
        if account.call(ask, line) {
            if account.id == "KH3" { throw "KH3 fails once past the line"; }
            return;
        }
        alert(#{ title: "under the line" });
    "#;
    let rules = RuleSet::from_sources(&[("r", src)]).unwrap();
    let first = shares(&[0.3, 0.6, 0.7]);
    let out = rules.evaluate(&first);
    assert_eq!((out.findings.len(), out.errors.len()), (1, 1));
    let mut memo = Memo::of(&rules, &first, String::new(), &out).unwrap();
    let ids = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
    // Every share moves, none crosses the line.
    assert_eq!(
        step(&rules, &mut memo, &shares(&[0.31, 0.65, 0.75])),
        ids(&[])
    );
    // KH1 exactly at the line reaches it.
    assert_eq!(
        step(&rules, &mut memo, &shares(&[0.5, 0.65, 0.75])),
        ids(&["KH1"])
    );
    // Under it by less than half a millionth: still the line, to six decimals.
    assert_eq!(
        step(&rules, &mut memo, &shares(&[0.499_999_6, 0.65, 0.75])),
        ids(&[])
    );
    // A millionth under it: no longer.
    assert_eq!(
        step(&rules, &mut memo, &shares(&[0.499_999, 0.65, 0.75])),
        ids(&["KH1"])
    );
    // KH2 falls under it; KH3's share is no number (it reaches no line).
    assert_eq!(
        step(&rules, &mut memo, &shares(&[0.49, 0.2, f64::NAN])),
        ids(&["KH2", "KH3"])
    );
    assert_eq!(
        step(&rules, &mut memo, &shares(&[0.48, 0.1, f64::NAN])),
        ids(&[])
    );
    // KH3 past the line again fails again.
    assert_eq!(
        step(&rules, &mut memo, &shares(&[0.48, 0.1, 1.0])),
        ids(&["KH3"])
    );
}

/// An account's keys past the 64 kept: earlier days are taken whole (and
/// make room for today's, still kept one by one), moved only by a line
/// dated before the day; today's past the limit take the whole history,
/// moved by any line.
#[test]
fn earlier_days_past_the_keys_kept_make_room_for_todays() {
    use crate::rules::reads::{AccountKey, Ago, AgoRead, BookKey, Ranking};
    let snap = book(&[Tier::A], 100.0, 0.5);
    let m = &snap.accounts[0];
    let at = (&*snap.portfolio, snap.end());
    let ago = |days: u16| {
        AccountKey::Ago(Ago {
            ranking: Ranking::Basis,
            days,
            read: AgoRead::Tier,
        })
    };
    let answer = |x: u32| AccountKey::Past(BookKey::TierFloor(Tier::A), f64::from(x).to_bits());
    let earlier = AccountKey::PastOverflow.bit();
    let whole = AccountKey::Overflow.bit();
    // One rule deciding on `decide`, over the account's `keys`.
    let placed = |decide: u32, keys: &[AccountKey]| {
        book::Placed::of(m, at, vec![reads::Read { decide, figures: 0 }].into(), keys)
    };

    // 64 earlier days, then one of today: the earlier ones give way.
    let mut keys: Vec<AccountKey> = (1..=64).map(ago).collect();
    keys.push(answer(1));
    let p = placed(reads::PAST_FLOOR | earlier, &keys);
    assert_eq!(p.overflowed(), (false, true));
    assert_eq!(p.changed(m, at, true, false), 0, "a line of today");
    assert_eq!(
        p.changed(m, at, true, true) & earlier,
        earlier,
        "a line before"
    );
    assert_eq!(p.changed(m, at, true, true) & whole & !earlier, 0);

    // 64 of today and one more: the whole history.
    let keys: Vec<AccountKey> = (0..65).map(answer).collect();
    let p = placed(reads::PAST_FLOOR, &keys);
    assert_eq!(p.overflowed(), (true, false));
    assert_eq!(p.changed(m, at, true, false) & whole, whole);
    assert_eq!(p.changed(m, at, false, false), 0, "no order line");

    // A few of each: kept one by one, nothing taken whole.
    let keys = [ago(1), ago(30), answer(1), answer(1000)];
    let p = placed(reads::PAST_FLOOR, &keys);
    assert_eq!(p.overflowed(), (false, false));
    assert_eq!(p.changed(m, at, true, true), 0, "nothing moved");
}
