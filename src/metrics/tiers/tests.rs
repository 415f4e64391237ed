//! The ranking's conventions pinned: the lines, the bases, the totals,
//! the history, the accounts missing from the master.

use super::*;
use crate::model::dates::day;
use crate::store::OrderDay;
use chrono::NaiveDate;
use proptest::strategy::Strategy;

fn cfg(by: TierBasis) -> TierConfig {
    TierConfig {
        by,
        ..TierConfig::default()
    }
}

/// Tiers by account index, as letters.
fn letters(r: &Ranked, n: usize) -> String {
    r.by_index(n).iter().map(|t| t.0.as_str()).collect()
}

/// (revenue, gross profit) of three accounts: by gross profit 0 is
/// first, holding `gp0_cents` of 10,000 (so 1 sits exactly at the 80%
/// line at 800,000 cents); by revenue 1 is first, holding exactly 80%
/// (0 is B), and 2 is C either way.
fn book(gp0_cents: i64) -> (Vec<f64>, Vec<f64>) {
    let gp0 = gp0_cents as f64 / 100.0;
    (
        vec![2_000.0, 10_000.0, 500.0],
        vec![gp0, 10_000.0 - gp0 - 500.0, 500.0],
    )
}

#[test]
fn revenue_exactly_at_the_line_and_a_cent_either_side() {
    let tiers = cfg(TierBasis::Revenue);
    // X holds exactly 80% of 10,000: Y (above it: 80%) is B.
    for (x, y, want) in [
        (8_000.0, 1_500.0, "ABC"),
        (7_999.99, 1_500.01, "AAC"),
        (8_000.01, 1_499.99, "ABC"),
    ] {
        let r = Ranked::new(&[x, y, 500.0], None, &tiers);
        assert_eq!(letters(&r, 3), want, "X {x}, Y {y}");
        let above = r.by_index(3)[1].1;
        assert_eq!(above < 0.8, want == "AAC", "Y's share above {above}");
        assert_eq!(r.floors.0, if want == "AAC" { y } else { x });
    }
}

#[test]
fn gross_profit_ranks_by_gross_profit_at_the_line() {
    let tiers = cfg(TierBasis::GrossProfit);
    for (cents, want) in [(800_000, "ABC"), (799_999, "AAC"), (800_001, "ABC")] {
        let (rev, gp) = book(cents);
        let r = Ranked::new(&rev, Some(&gp), &tiers);
        assert_eq!(letters(&r, 3), want, "gross profit of 0: {cents} cents");
        // The order is by gross profit, the revenue floor by revenue.
        assert_eq!(r.order.iter().map(|o| o.1).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(r.order[0].0, 2_000.0);
        assert_eq!(r.floors, (10_000.0, 2_000.0));
        // By revenue alone the same book is B, A, C.
        let by_rev = Ranked::new(&rev, Some(&gp), &cfg(TierBasis::Revenue));
        assert_eq!(letters(&by_rev, 3), "BAC");
    }
}

#[test]
fn both_is_the_lower_tier_with_the_larger_share_above() {
    let (rev, gp) = book(800_000);
    let r = Ranked::new(&rev, Some(&gp), &cfg(TierBasis::Both));
    // 0: B by revenue, A by gross profit; 1: A by revenue, B by gross
    // profit (each exactly at the line); 2: C by both.
    assert_eq!(letters(&r, 3), "BBC");
    let by = r.by_index(3);
    assert_eq!(by[0].1, 0.8); // its revenue share above
    assert_eq!(by[1].1, 0.8); // its gross-profit share above
    // Listed by the larger share above, equal ones in revenue order.
    assert_eq!(r.order.iter().map(|o| o.1).collect::<Vec<_>>(), [1, 0, 2]);
    // A cent less gross profit above 1: A by both.
    let (rev, gp) = book(799_999);
    let r = Ranked::new(&rev, Some(&gp), &cfg(TierBasis::Both));
    assert_eq!(letters(&r, 3), "BAC");
    assert_eq!(r.order.iter().map(|o| o.1).collect::<Vec<_>>(), [1, 0, 2]);
}

#[test]
fn no_revenue_zero_or_negative_gross_profit_is_c_below_everyone() {
    // 3 sold nothing in the 12 months, 2 sold at a loss, 1 at cost.
    let rev = [5_000.0, 4_000.0, 3_000.0, 0.0];
    let gp = [1_000.0, 0.0, -200.0, 0.0];
    for by in [TierBasis::Revenue, TierBasis::GrossProfit, TierBasis::Both] {
        let r = Ranked::new(&rev, Some(&gp), &cfg(by));
        let t = r.by_index(4);
        assert_eq!(t[3].0, Tier::C, "{by}");
        assert!(t[3].1 >= 0.8 + 0.02, "{by}: {t:?}");
        // Nothing positive ranks below an account without sales.
        let place = |i| r.order.iter().position(|o| o.1 == i);
        assert!(place(3) > place(0) && place(3) > place(1), "{by}");
        if by != TierBasis::Revenue {
            assert!(place(2) > place(0), "{by}: at a loss below a profit");
            assert_eq!(letters(&r, 4), "ACCC", "{by}");
            // Zero or negative: still at least the whole book above.
            assert!(t[1].1 >= 1.0 && t[2].1 >= 1.0, "{by}: {t:?}");
        }
    }
    // A book with no account at a positive gross profit ranks nobody
    // into A.
    let r = Ranked::new(
        &rev,
        Some(&[-100.0, -300.0, 0.0, 0.0]),
        &cfg(TierBasis::GrossProfit),
    );
    assert_eq!(letters(&r, 4), "CCCC");
    assert!(r.by_index(4).iter().all(|t| t.1 == 1.0));
    // One positive account in a book that lost money overall is A:
    // the losses are not in the total.
    let r = Ranked::new(
        &rev,
        Some(&[100.0, -300.0, 0.0, 0.0]),
        &cfg(TierBasis::GrossProfit),
    );
    assert_eq!(letters(&r, 4), "ACCC");
    let r = Ranked::new(&[0.0, 0.0], None, &cfg(TierBasis::Revenue));
    assert_eq!(letters(&r, 2), "CC");
    assert_eq!(r.floors, (0.0, 0.0));
}

/// A net-negative account (more returned than sold) is C and not in
/// the total: the others' shares are of the positive accounts alone,
/// so they add up to exactly 100% and the line falls where it would
/// without the returns (with them in the total, 0.79 + 0.21 of 1,000
/// would be 0.878 of 900, and the second account B).
#[test]
fn a_net_negative_account_does_not_lower_the_total() {
    for by in [TierBasis::Revenue, TierBasis::GrossProfit, TierBasis::Both] {
        let rev = [790.0, 210.0, -100.0, 0.0];
        let gp = [790.0, 210.0, -100.0, 0.0];
        let r = Ranked::new(&rev, Some(&gp), &cfg(by));
        assert_eq!(letters(&r, 4), "AACC", "{by}");
        assert_eq!(r.total, 1_000.0, "{by}");
        let t = r.by_index(4);
        assert_eq!((t[0].1, t[1].1), (0.0, 0.79), "{by}: {t:?}");
        assert_eq!((t[2].1, t[3].1), (1.0, 1.0), "{by}: the whole book above");
        assert_eq!(r.floors, (210.0, 0.0), "{by}");
    }
    // Only the gross profit is negative: revenue ranks as before, the
    // gross-profit total leaves the loss out.
    let rev = [790.0, 210.0, 100.0];
    let gp = [79.0, 21.0, -50.0];
    let r = Ranked::new(&rev, Some(&gp), &cfg(TierBasis::GrossProfit));
    assert_eq!(letters(&r, 3), "AAC");
    assert_eq!(r.by_index(3)[1].1, 0.79);
    assert_eq!(ranking_total(&gp), 100.0);
    assert_eq!(ranking_total(&[-1.0, 0.0, -0.0]), 0.0);
}

/// A cost credit with no sales (revenue 0, cost -20,000) is gross
/// profit on paper: it must not make an account A by gross profit and
/// push the real customers down.
#[test]
fn gross_profit_without_revenue_ranks_nobody() {
    let rev = [10_000.0, 0.0, 2_000.0];
    let gp = [3_000.0, 20_000.0, 500.0];
    for by in [TierBasis::GrossProfit, TierBasis::Both] {
        let r = Ranked::new(&rev, Some(&gp), &cfg(by));
        let t = r.by_index(3);
        assert_eq!(t[0].0, Tier::A, "{by}: {t:?}");
        assert_eq!(t[1].0, Tier::C, "{by}: {t:?}");
        assert_eq!(t[0].1, 0.0, "{by}: nobody above the real customer");
    }
}

/// Exactly 80% above an account is B however many accounts make it:
/// ten of 8% each leave the eleventh at 80% (summing each one's share
/// gave 79.99999999999999%, A); the same at 95% for C, and with
/// amounts in cents.
#[test]
fn many_accounts_exactly_at_the_line() {
    let mut v = vec![8.0; 10];
    v.extend([4.0; 5]);
    let r = Ranked::new(&v, None, &cfg(TierBasis::Revenue));
    let t = r.by_index(15);
    assert_eq!(t[10], (Tier::B, 0.8), "{t:?}");
    assert_eq!(t[9].0, Tier::A);
    // Twenty of 0.05 (amounts in cents): the seventeenth has exactly
    // 80% above it (a plain running sum makes it 79.99999999999999%).
    let r = Ranked::new(&[0.05; 20], None, &cfg(TierBasis::Revenue));
    let t = r.by_index(20);
    assert_eq!(r.total, 1.0);
    assert_eq!(t[16], (Tier::B, 0.8), "{t:?}");
    assert_eq!(t[15].0, Tier::A, "{t:?}");
    // Twenty of 5: the twentieth has exactly 95% above it: C.
    let t = Ranked::new(&[5.0; 20], None, &cfg(TierBasis::Revenue)).by_index(20);
    assert_eq!((t[18].0, t[19]), (Tier::B, (Tier::C, 0.95)), "{t:?}");
    let tiers = assign_tiers(&[8.0; 10], 80.0, &cfg(TierBasis::Revenue));
    assert_eq!(tiers.iter().filter(|t| **t == Tier::A).count(), 8);
    // Amounts in cents whose sum is exactly 80% of the total, but whose
    // quotient is not (probe4 02: 64,248.68 / 80,310.85 divides out as
    // 0.7999999999999999): the third is B; a cent more above it, A.
    for (k2, want) in [(31_079.36, Tier::B), (31_079.35, Tier::A)] {
        let t = Ranked::new(&[33_169.32, k2, 16_062.17], None, &cfg(TierBasis::Revenue));
        assert_eq!(t.by_index(3)[2].0, want, "K2 {k2}: {:?}", t.by_index(3));
    }
    // And the share above the rules read is the line itself, as decided.
    let t = Ranked::new(
        &[33_169.32, 31_079.36, 16_062.17],
        None,
        &cfg(TierBasis::Revenue),
    );
    assert_eq!(t.by_index(3)[2], (Tier::B, 0.8));
}

#[test]
fn equal_values_rank_in_account_order() {
    let r = Ranked::new(
        &[100.0, 300.0, 300.0, 300.0],
        None,
        &cfg(TierBasis::Revenue),
    );
    assert_eq!(
        r.order.iter().map(|o| o.1).collect::<Vec<_>>(),
        [1, 2, 3, 0]
    );
    assert_eq!(letters(&r, 4), "BAAA");
}

fn series(lines: &[(&str, f64, f64)]) -> Series {
    let mut s = Series::default();
    for (date, revenue, cost) in lines {
        s.push(&OrderDay {
            date: NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap(),
            revenue: *revenue,
            cost: *cost,
            qty: 1.0,
            orders: 1,
        });
    }
    s
}

/// The history ranks each day by the basis, from the series' last 365
/// days; the rankings by one measure alone ignore the tier column.
#[test]
fn the_book_alone_gives_each_measures_total_and_floors() {
    let end = day(NaiveDate::from_ymd_opt(2026, 6, 30).unwrap());
    // Gross profit 8,000, 1,000, 500, and a cost credit without
    // revenue (counts none); revenue 10,000, 5,000, 3,000, 0.
    let s = vec![
        series(&[("2026-03-01", 10_000.0, 2_000.0)]),
        series(&[("2026-03-01", 5_000.0, 4_000.0)]),
        // 2,000 more until yesterday (the order leaves the 12 months today).
        series(&[
            ("2025-06-30", 2_000.0, 2_000.0),
            ("2026-03-01", 3_000.0, 2_500.0),
        ]),
        series(&[("2026-03-01", 0.0, -300.0)]),
        // A loss lowers neither total (the ranking's, of positive values).
        series(&[("2026-03-01", -100.0, 400.0)]),
    ];
    for by in [TierBasis::Revenue, TierBasis::GrossProfit, TierBasis::Both] {
        // The master's tier column changes neither.
        let h = TierHistory::new(end, &cfg(by), s.clone(), vec![Some(Tier::C); 5]);
        let gp = h.book_alone(TierBasis::GrossProfit, 0);
        // 8,000 of 9,500 crosses 80%: A; then 84% and 95% above: B.
        assert_eq!(
            (gp.total, gp.floor_a, gp.floor_b),
            (9_500.0, 8_000.0, 500.0),
            "{by}"
        );
        assert_eq!(h.book_alone(TierBasis::Both, 0), gp, "{by}");
        let rev = h.book_alone(TierBasis::Revenue, 0);
        assert_eq!(
            (rev.total, rev.floor_a, rev.floor_b),
            (18_000.0, 5_000.0, 3_000.0),
            "{by}"
        );
        let ranked = Ranked::new(
            &[10_000.0, 5_000.0, 3_000.0, 0.0],
            None,
            &cfg(TierBasis::Revenue),
        );
        assert_eq!(ranked.floors, (rev.floor_a, rev.floor_b));
    }
    // Yesterday, by revenue: 10,000, 5,000 and 5,000 of 20,000 are A.
    let h = TierHistory::new(end, &cfg(TierBasis::Revenue), s.clone(), vec![None; 5]);
    let yesterday = h.book_alone(TierBasis::Revenue, 1);
    assert_eq!(
        (yesterday.total, yesterday.floor_a, yesterday.floor_b),
        (20_000.0, 5_000.0, 0.0)
    );
    assert_eq!(
        h.book_alone(TierBasis::Revenue, TIER_HISTORY_DAYS as i64),
        AloneBook::default()
    );
    // A tier nobody is in has the floor 0.
    let h = TierHistory::new(end, &cfg(TierBasis::Revenue), vec![series(&[])], vec![None]);
    assert_eq!(
        h.book_alone(TierBasis::GrossProfit, 0),
        AloneBook::default()
    );
}

#[test]
fn history_ranks_each_day_by_the_basis() {
    let end = day(NaiveDate::from_ymd_opt(2026, 6, 30).unwrap());
    // 0 big and thin; 1 smaller with the profit; 2's order is 366
    // days old on the end day, 364 days old 2 days before.
    let s = vec![
        series(&[("2026-03-01", 10_000.0, 9_500.0)]),
        series(&[("2026-03-01", 2_000.0, 0.0)]),
        series(&[("2025-06-29", 50_000.0, 0.0)]),
    ];
    let overrides = vec![None, None, Some(Tier::B)];
    for (by, now, two_days_ago) in [
        (TierBasis::Revenue, "ABB", "BCB"),
        (TierBasis::GrossProfit, "BAB", "CCB"),
        (TierBasis::Both, "BBB", "CCB"),
    ] {
        let h = TierHistory::new(end, &cfg(by), s.clone(), overrides.clone());
        let at = |k| {
            (0..3)
                .map(|i| h.at(i, k).unwrap().0.as_str())
                .collect::<String>()
        };
        assert_eq!(at(0), now, "{by}");
        assert_eq!(at(2), two_days_ago, "{by}");
        assert_eq!(h.by_revenue(0).map(|t| t.0), Some(Tier::A), "{by}");
        assert_eq!(h.by_revenue(2).map(|t| t.0), Some(Tier::C), "{by}");
        assert_eq!(h.by_gross_profit(0).map(|t| t.0), Some(Tier::B), "{by}");
        assert_eq!(h.by_gross_profit(1).map(|t| t.0), Some(Tier::A), "{by}");
        // Two days ago 2's order was in the window: A by revenue alone.
        assert_eq!(
            h.alone_at(TierBasis::Revenue, 2, 2).map(|t| t.0),
            Some(Tier::A)
        );
        assert_eq!(
            h.alone_at(TierBasis::GrossProfit, 2, 2).map(|t| t.0),
            Some(Tier::A)
        );
        assert_eq!(
            h.alone_at(TierBasis::GrossProfit, 0, 2).map(|t| t.0),
            Some(Tier::C)
        );
        assert_eq!(h.at(3, 0), None);
        assert_eq!(h.at(0, TIER_HISTORY_DAYS as i64), None);
    }
}

/// Days ranked ahead (`warm`, on two threads) are what their first use
/// ranks, to the bit, in every basis and kind, with the books asked for;
/// the days warmed count as read, those only asked about beyond the
/// history are skipped, and a day ranked already is kept as it was.
#[test]
fn days_ranked_ahead_equal_their_first_use() {
    let end = day(NaiveDate::from_ymd_opt(2026, 6, 30).unwrap());
    let s: Vec<Series> = (0..40)
        .map(|i| {
            let f = f64::from(i);
            series(&[
                ("2025-05-03", 1_000.0 + f * 37.3, 900.0 - f * 11.1),
                ("2025-09-17", 300.0 * f + 0.01, 290.0 * f),
                ("2026-02-11", 5_000.0 - f * 97.7, 1_000.0 + f * 3.3),
                ("2026-06-29", f * f, f * 0.5),
            ])
        })
        .collect();
    let overrides: Vec<Option<Tier>> = (0..40).map(|i| (i % 7 == 3).then_some(Tier::B)).collect();
    let read = |h: &TierHistory, k: i64| {
        let mut out: Vec<u64> = Vec::new();
        for by in [TierBasis::Revenue, TierBasis::GrossProfit, TierBasis::Both] {
            let b = h.book_alone(by, k);
            out.extend([b.total, b.floor_a, b.floor_b].map(f64::to_bits));
        }
        for i in 0..40 {
            for t in [
                h.at(i, k),
                h.alone_at(TierBasis::Revenue, i, k),
                h.alone_at(TierBasis::GrossProfit, i, k),
            ] {
                let (t, x) = t.unwrap();
                out.extend([t as u64, x.to_bits()]);
            }
        }
        out
    };
    let read_days = |h: &TierHistory| {
        let mut d: Vec<(usize, Day)> = h.read_days().iter().map(|r| (r.0, r.1)).collect();
        d.sort_unstable();
        d
    };
    let ask = |ranking, days_ago, book| Wanted {
        ranking,
        days_ago,
        book,
        shares: false,
    };
    let shares = |ranking, days_ago| Wanted {
        shares: true,
        ..ask(ranking, days_ago, false)
    };
    for by in [TierBasis::Revenue, TierBasis::GrossProfit, TierBasis::Both] {
        let warmed = TierHistory::new(end, &cfg(by), s.clone(), overrides.clone());
        // Day 30 ranked before, for its tiers: left as it is, but for its
        // shares, read below.
        warmed.tier(0, 30);
        let before = warmed.days[30].ranked.get().unwrap().clone();
        // More days than one batch sums at once.
        let many = (100..100 + 2 * WARM_BATCH as i64)
            .map(|k| ask(Some(TierBasis::Revenue), k, k % 2 == 0));
        warmed.warm(many.chain([
            ask(None, 0, false),
            ask(None, 30, false),
            ask(Some(TierBasis::Revenue), 30, true),
            ask(Some(TierBasis::Both), 60, true),
            ask(Some(TierBasis::GrossProfit), 60, false),
            ask(None, 365, false),
            ask(Some(TierBasis::Revenue), 400, false),
            ask(Some(TierBasis::Revenue), TIER_HISTORY_DAYS as i64, true),
            ask(None, -1, false),
            shares(None, 30),
            shares(Some(TierBasis::GrossProfit), 60),
        ]));
        assert!(Arc::ptr_eq(&before, warmed.days[30].ranked.get().unwrap()));
        // Every share kept where a rule reads them, and only there.
        let whole = |d: &Days, k: usize| d[k].ranked.get().unwrap().full.get().is_some();
        assert!(
            whole(&warmed.days, 30) && whole(&warmed.alone[1], 60),
            "{by}"
        );
        assert!(!whole(&warmed.days, 0) && !whole(&warmed.days, 365), "{by}");
        // Whether the day `k` back of ranking alone `a` has its book made.
        let booked = |a: usize, k: usize| {
            warmed.alone[a][k]
                .ranked
                .get()
                .unwrap()
                .book
                .get()
                .is_some()
        };
        // Asked for, and (a ranking by one measure comes with its book)
        // not asked for.
        assert!(booked(0, 30) && booked(1, 60) && booked(0, 400));
        assert!(warmed.alone[1][400].ranked.get().is_none());
        let mut want = vec![
            (0, end),
            (0, end - 30),
            (0, end - 365),
            (1, end - 30),
            (1, end - 400),
            (2, end - 60),
        ];
        want.extend((100..100 + 2 * WARM_BATCH as i32).map(|k| (1, end - k)));
        want.sort_unstable();
        assert_eq!(read_days(&warmed), want, "{by}");
        let fresh = TierHistory::new(end, &cfg(by), s.clone(), overrides.clone());
        for k in [0, 1, 30, 60, 100, 101, 131, 365, 400, 730] {
            assert_eq!(read(&warmed, k), read(&fresh, k), "{by}, {k} days back");
        }
    }
}

#[test]
fn unlisted_accounts_are_counted_from_their_first_order() {
    let a = series(&[("2026-03-01", 100.0, 0.0), ("2026-05-01", 50.0, 0.0)]);
    let b = series(&[("2026-04-01", 30.0, 0.0)]);
    let ids = ["KH9".to_string(), "KH8".to_string()];
    let u = Unlisted::of([(&ids[0], &a), (&ids[1], &b)].into_iter());
    let at = |s: &str| u.seen(day(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()));
    assert_eq!(at("2026-02-28").accounts, 0);
    let march = at("2026-03-31");
    assert_eq!(
        (march.accounts, march.examples.clone()),
        (1, vec!["KH9".into()])
    );
    assert_eq!(march.revenue_12m, 100.0);
    let june = at("2026-06-30");
    assert_eq!(june.examples, ["KH9", "KH8"]);
    assert_eq!(june.revenue_12m, 180.0);
}

#[test]
fn revenue_alone_is_the_basis_ranking_when_they_are_alike() {
    let end = day(NaiveDate::from_ymd_opt(2026, 6, 30).unwrap());
    // Account 0 the largest by far: A by revenue.
    let s: Vec<Series> = (0..12)
        .map(|i| {
            let f = f64::from(12 - i);
            series(&[
                ("2025-09-17", f * f * 100.0, f * 50.0),
                ("2026-06-01", f * 10.0, f),
            ])
        })
        .collect();
    let n = s.len();
    let h = TierHistory::new(end, &cfg(TierBasis::Revenue), s.clone(), vec![None; n]);
    for k in [0, 30, 365] {
        for i in 0..n {
            assert_eq!(h.alone_at(TierBasis::Revenue, i, k), h.at(i, k), "{i} {k}");
        }
    }
    // One ranking kept for a day, under both kinds.
    let days = h.read_days();
    assert!(days.iter().any(|d| d.0 == 1));
    for (_, d, r) in days.iter().filter(|d| d.0 == 1) {
        let basis = days
            .iter()
            .find(|b| b.0 == 0 && b.1 == *d)
            .expect("the basis's day");
        assert!(std::sync::Arc::ptr_eq(r, &basis.2));
    }
    // A master tier column: two rankings, the one by revenue alone without it.
    let mut o = vec![None; n];
    o[0] = Some(Tier::C);
    let h = TierHistory::new(end, &cfg(TierBasis::Revenue), s.clone(), o);
    assert_eq!(h.at(0, 0).unwrap().0, Tier::C);
    assert_eq!(h.alone_at(TierBasis::Revenue, 0, 0).unwrap().0, Tier::A);
    // Another basis: its own ranking.
    let h = TierHistory::new(end, &cfg(TierBasis::GrossProfit), s, vec![None; n]);
    h.at(0, 0);
    h.alone_at(TierBasis::Revenue, 0, 0);
    let days = h.read_days();
    let (a, b) = (
        days.iter().find(|d| d.0 == 0).unwrap(),
        days.iter().find(|d| d.0 == 1).unwrap(),
    );
    assert!(!std::sync::Arc::ptr_eq(&a.2, &b.2));
}

/// A day of a book of 2,000 accounts holds their tiers and the shares of
/// a few accounts just under the A line: `a_line_state` reads every
/// account out of A from that (the others beyond the line), and every
/// share is made only when one beyond those is read, the same to the bit.
#[test]
fn a_day_holds_the_tiers_and_the_shares_of_a_few_accounts_at_the_line() {
    let tiers = TierConfig::default();
    let revenue: Vec<f64> = (0..2000u32)
        .map(|i| (f64::from((i * 7919) % 2000) / 150.0).exp().round() / 100.0 + 1.0)
        .collect();
    let day = DayRanking::ranked(&revenue, None, &tiers, &mut Scratch::default(), false);
    let (shares, _) = day_shares(&revenue, None, &tiers, &mut Scratch::default());
    let near = day.near.as_deref().unwrap().len();
    assert!((1..=10).contains(&near), "{near} shares held");
    let (mut beyond, mut out) = (0, 0);
    for (i, share) in shares.iter().enumerate() {
        if day.tier(i) == Some(Tier::A) {
            continue;
        }
        out += 1;
        match day.line_share(i, tiers.a_share, || unreachable!()).unwrap() {
            LineShare::Beyond => beyond += 1,
            LineShare::Share(s) => assert_eq!(s.to_bits(), share.to_bits()),
        }
    }
    assert!(
        out > 1000 && beyond == out - near,
        "{out} out of A, {beyond} beyond"
    );
    assert!(day.full.get().is_none());
    let a = (0..revenue.len())
        .find(|i| day.tier(*i) == Some(Tier::A))
        .unwrap();
    assert_eq!(
        day.line_share(a, tiers.a_share, || shares.clone()),
        Some(LineShare::Share(shares[a]))
    );
    assert!(day.full.get().is_some());
    for (i, s) in shares.iter().enumerate() {
        assert_eq!(
            day.share(i, || unreachable!()).unwrap().to_bits(),
            s.to_bits()
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

    /// A day of the history ranked for its shares alone
    /// (`DayRanking::ranked`) holds what the snapshot's ranking gives by
    /// account index, to the bit, in every basis: with ties (in index
    /// order), zeros of either sign, negatives, NaN of either sign, values
    /// whose sum overflows, values at a line, a gross profit missing, a
    /// book with nothing positive; books small and large enough to be
    /// sorted by buckets. A ranking by one measure comes with its book,
    /// the one `AloneBook::of` gives.
    #[test]
    fn a_day_ranked_for_its_shares_alone_is_the_full_ranking_to_the_bit(
        picks in proptest::collection::vec((0usize..12, 0usize..12, 1u32..100_000), 0..400),
        with_gp in proptest::prelude::any::<bool>(),
        lines in proptest::sample::select(vec![(0.8, 0.95), (0.5, 0.5), (0.0, 1.0), (0.3, 0.9)]),
    ) {
        let value = |k: usize, c: u32| match k {
            0 => 0.0,
            1 => -0.0,
            2 => f64::NAN,
            3 => -f64::NAN,
            4 => -f64::from(c) / 100.0,
            5 => 100.0,
            6 => 2_000.0,
            7 => 8_000.0,
            // Sums that overflow: the total is no number to divide by.
            8 => f64::MAX,
            _ => f64::from(c) / 100.0,
        };
        let revenue: Vec<f64> = picks.iter().map(|p| value(p.0, p.2)).collect();
        let gp: Vec<f64> = picks.iter().map(|p| value(p.1, p.2 / 3 + 1)).collect();
        let gp = with_gp.then_some(gp.as_slice());
        // One set of buffers for all three, as a thread of the warm-up
        // reuses it from day to day: what one ranking left in it is no
        // part of the next.
        let mut scratch = Scratch::default();
        for by in [TierBasis::Revenue, TierBasis::GrossProfit, TierBasis::Both] {
            let tiers = TierConfig { by, a_share: lines.0, b_share: lines.1 };
            let want: Vec<u64> = Ranked::new(&revenue, gp, &tiers)
                .by_index(revenue.len())
                .iter()
                .map(|p| p.1.to_bits())
                .collect();
            let day = DayRanking::ranked(&revenue, gp, &tiers, &mut scratch, false);
            // The tiers as held, and the shares held near the line, before
            // any share beyond them is read.
            let lines = [tiers.a_share, tiers.b_share];
            for (i, w) in want.iter().enumerate() {
                proptest::prop_assert_eq!(day.tier(i), Some(tier_at(f64::from_bits(*w), lines)), "{} {}", by, i);
                if let Some(s) = day.near_share(i) {
                    proptest::prop_assert_eq!(s.to_bits(), *w, "{} {}", by, i);
                }
            }
            proptest::prop_assert!(day.full.get().is_none());
            let full = || {
                day_shares(&revenue, gp, &tiers, &mut Scratch::default()).0
            };
            let got: Vec<u64> = (0..revenue.len()).map(|i| day.share(i, full).unwrap().to_bits()).collect();
            proptest::prop_assert_eq!(got, want, "{}", by);
            proptest::prop_assert_eq!(day.share(revenue.len(), full), None);
            // The rank order, against a plain stable sort.
            let mut plain: Vec<usize> = (0..revenue.len()).collect();
            plain.sort_by(|a, b| revenue[*b].total_cmp(&revenue[*a]));
            proptest::prop_assert_eq!(rank_one(&revenue, &tiers).0, plain);
            let values = match by {
                TierBasis::Revenue => revenue.clone(),
                _ => ranked_gross_profits(&revenue, gp, &mut Vec::new()).to_vec(),
            };
            let book = (by != TierBasis::Both).then(|| AloneBook::of(&day, &values));
            proptest::prop_assert_eq!(day.book.get().copied(), book, "{}", by);
        }
    }

    /// What a day of the history holds for `a_line_state` of an account
    /// out of A is what it reads from the share, to the bit: the share
    /// itself near the line; beyond it, the share is so far above the line
    /// that growth to the floor of A is the smaller way in (`line.rs`
    /// takes that one), for every account with a positive value. Books of
    /// values near each other (many accounts at the line), spread wide,
    /// with ties, zeros and negatives; lines anywhere, as the config
    /// allows them; a ranking without its book, or read under another
    /// line, reads the share itself.
    #[test]
    fn a_share_held_for_the_line_or_beyond_it_is_what_the_line_reads(
        picks in proptest::collection::vec((0usize..6, 1u32..1_000_000), 1..300),
        lines in proptest::sample::select(vec![(0.8, 0.95), (0.5, 0.5), (0.0, 1.0), (0.3, 0.9), (1.0, 1.0), (0.99, 1.0)]),
        by in proptest::sample::select(vec![TierBasis::Revenue, TierBasis::GrossProfit, TierBasis::Both]),
    ) {
        let value = |k: usize, c: u32| match k {
            0 => 0.0,
            1 => -f64::from(c) / 100.0,
            2 => 1_000.0 + f64::from(c % 100) / 100.0,
            3 => 1_000.0,
            _ => f64::from(c) / 100.0,
        };
        let revenue: Vec<f64> = picks.iter().map(|p| value(p.0, p.1)).collect();
        let gp: Vec<f64> = picks.iter().map(|p| value(p.0, p.1 / 3 + 1)).collect();
        let tiers = TierConfig { by, a_share: lines.0, b_share: lines.1 };
        let (shares, book) = day_shares(&revenue, Some(&gp), &tiers, &mut Scratch::default());
        let values = match by {
            TierBasis::Revenue => revenue.clone(),
            _ => ranked_gross_profits(&revenue, Some(&gp), &mut Vec::new()).to_vec(),
        };
        let full = || shares.clone();
        for other_line in [false, true] {
            let day = DayRanking::ranked(&revenue, Some(&gp), &tiers, &mut Scratch::default(), false);
            let line = if other_line { lines.0 / 2.0 + 0.01 } else { lines.0 };
            // The accounts out of A first: under the ranking's own line a
            // ranking by one measure answers them from what it holds.
            let mut order: Vec<usize> = (0..shares.len()).collect();
            order.sort_by_key(|i| day.tier(*i) == Some(Tier::A));
            let mut out_read = false;
            for i in order {
                let s = shares[i];
                if day.tier(i) == Some(Tier::A) && !out_read {
                    out_read = true;
                    if !other_line && by != TierBasis::Both {
                        proptest::prop_assert!(day.full.get().is_none(), "an account out of A read every share");
                    }
                }
                match day.line_share(i, line, full).unwrap() {
                    LineShare::Share(x) => proptest::prop_assert_eq!(x.to_bits(), s.to_bits()),
                    LineShare::Beyond => {
                        proptest::prop_assert!(!other_line && by != TierBasis::Both);
                        proptest::prop_assert_ne!(day.tier(i), Some(Tier::A));
                        let book = book.unwrap();
                        let v = values[i];
                        if v > 0.0 {
                            let by_floor = book.floor_a - v;
                            let by_share = book.total * (s - line) / line;
                            proptest::prop_assert!(by_floor <= by_share, "{} {} {} {:?}", i, s, v, book);
                        }
                    }
                }
            }
        }
    }

    /// Sorting keys (of 96 bits) by buckets gives the order of sorting
    /// them whole: keys spread wide, bunched in a few buckets, all equal at the top,
    /// at the ends of the range, fewer than the buckets start at.
    #[test]
    fn keys_sorted_by_buckets_are_in_the_order_of_a_whole_sort(
        keys in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::prelude::any::<u128>().prop_map(|k| k >> 32),
                (0u64..4, proptest::prelude::any::<u32>()).prop_map(|(t, i)| (u128::from(t) << 32) | u128::from(i)),
                proptest::sample::select(vec![0u128, u128::MAX >> 32, u128::from(u64::MAX) << 32, 1 << 32]),
                (proptest::prelude::any::<u64>(), 0u32..3).prop_map(|(t, i)| (u128::from(t | 1 << 63) << 32) | u128::from(i)),
            ],
            0..3000,
        ),
    ) {
        let mut want = keys.clone();
        want.sort_unstable();
        let mut s = Sorting { keys, ..Sorting::default() };
        s.sort();
        proptest::prop_assert_eq!(s.keys, want);
    }
}
