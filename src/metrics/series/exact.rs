//! The packed series and day logs against the plain prefix arrays and
//! entries they replaced, to the bit, at the edges of their encodings.

use chrono::NaiveDate;
use proptest::prelude::*;

use super::super::account::{SkuLine, Visit};
use super::super::daylog::DayLog;
use super::*;

/// The arrays as they were held before: `f64` prefix sums pushed one day
/// at a time, `u32` orders.
struct Plain {
    days: Vec<Day>,
    p: [Vec<f64>; 3],
    orders: Vec<u32>,
}

impl Plain {
    fn of(days: &[DaySums]) -> Plain {
        let mut p = [vec![0.0], vec![0.0], vec![0.0]];
        let mut orders = vec![0u32];
        for d in days {
            for (v, x) in p.iter_mut().zip([d.revenue, d.cost, d.qty]) {
                let last = *v.last().unwrap();
                v.push(last + x);
            }
            orders.push(orders.last().unwrap().saturating_add(d.orders));
        }
        Plain {
            days: days.iter().map(|d| d.day).collect(),
            p,
            orders,
        }
    }

    fn sum(&self, m: Measure, end: Day, len: i32) -> f64 {
        if len <= 0 {
            return 0.0;
        }
        let hi = self.days.partition_point(|d| *d <= end);
        let lo = self.days.partition_point(|d| *d <= end - len);
        if hi <= lo {
            return 0.0;
        }
        match m {
            Measure::Orders => f64::from(self.orders[hi] - self.orders[lo]),
            m => {
                let p = &self.p[column(m) - 1];
                p[hi] - p[lo]
            }
        }
    }
}

/// Amounts of every kind a book holds or a bad row could: cents, whole
/// numbers, returns, sums that are not their decimal, -0.0, the largest
/// amount ingest takes, the limits of 4-byte hundredths, any finite f64.
fn amount() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-100_000i64..100_000).prop_map(|c| c as f64 / 100.0),
        (-1_000i64..1_000).prop_map(|c| c as f64),
        Just(0.1 + 0.2),
        Just(-0.0),
        Just(1e15),
        Just(-1e15),
        Just(21_474_836.47),
        Just(-21_474_836.48),
        any::<f64>().prop_filter("finite", |x| x.is_finite()),
    ]
}

/// Up to 60 days in increasing order after `first`, gaps up to `gap`.
fn days(first: Day, gap: i32) -> impl Strategy<Value = Vec<DaySums>> {
    prop::collection::vec((1..=gap, amount(), amount(), amount(), 0u32..50), 0..60).prop_map(
        move |v| {
            let mut d = first;
            v.into_iter()
                .map(|(g, revenue, cost, qty, orders)| {
                    d += g;
                    DaySums {
                        day: d,
                        revenue,
                        cost,
                        qty,
                        orders,
                    }
                })
                .collect()
        },
    )
}

/// The first day chrono knows (less one), near its last, today's era,
/// anywhere; with gaps of a day, of about a year, of about a century.
fn book() -> impl Strategy<Value = Vec<DaySums>> {
    let min = day(NaiveDate::MIN);
    let max = day(NaiveDate::MAX);
    let first = prop_oneof![
        Just(min - 1),
        Just(max - 2_500_000),
        Just(739_000),
        min..max - 2_500_000
    ];
    let gap = prop_oneof![Just(1), Just(400), Just(40_000)];
    (first, gap).prop_flat_map(|(f, g)| days(f, g))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Every window of every measure, and every day's sums, as the plain
    /// arrays give them, to the bit; for a view ending earlier too.
    #[test]
    fn the_packed_series_sums_as_the_plain_arrays(ref v in book(), cut in 0usize..60) {
        let s = Series::of(v);
        let plain = Plain::of(v);
        let bits = |x: f64| x.to_bits();
        let first = v.first().map_or(0, |d| d.day);
        let last = v.last().map_or(0, |d| d.day);
        let ends = v.iter().map(|d| d.day).chain([last + 1, first - 1]);
        for end in ends {
            for len in [0, 1, 2, 30, 365, 366, 40_000, 100_000] {
                for m in [Measure::Revenue, Measure::Cost, Measure::Qty, Measure::Orders] {
                    prop_assert_eq!(bits(s.sum(m, end, len)), bits(plain.sum(m, end, len)));
                }
                let want = (plain.sum(Measure::Revenue, end, len), plain.sum(Measure::Cost, end, len));
                let (r, c) = s.revenue_cost(end, len);
                prop_assert_eq!((bits(r), bits(c)), (bits(want.0), bits(want.1)));
                let mut hint = [0, 0];
                prop_assert_eq!(bits(s.revenue_near(end, len, &mut hint)), bits(want.0));
            }
        }
        // Every end at once, latest first and in the book's order, as
        // one by one.
        let mut ends: Vec<Day> = v.iter().map(|d| d.day).chain([last + 1, first - 1]).collect();
        for turn in 0..2 {
            for len in [0, 1, 30, 365, 40_000] {
                for cost in [false, true] {
                    let mut got = Vec::new();
                    s.revenue_cost_each(&ends, len, cost, |r, c| got.push((bits(r), bits(c))));
                    let want: Vec<_> = ends
                        .iter()
                        .map(|e| {
                            let (r, c) = s.revenue_cost(*e, len);
                            (bits(r), bits(if cost { c } else { 0.0 }))
                        })
                        .collect();
                    prop_assert_eq!(got, want, "len {} cost {}", len, cost);
                }
            }
            if turn == 0 {
                ends.sort_unstable_by(|a, b| b.cmp(a));
            }
        }
        let mut k = 0;
        s.each_day(|d, sums| {
            let i = k;
            k += 1;
            assert_eq!(d, plain.days[i]);
            for (j, x) in sums.iter().take(3).enumerate() {
                assert_eq!(x.to_bits(), (plain.p[j][i + 1] - plain.p[j][i]).to_bits());
            }
            assert_eq!(sums[3], f64::from(plain.orders[i + 1] - plain.orders[i]));
        });
        prop_assert_eq!(k, v.len());
        // A view ending earlier sees exactly the days up to its end.
        if !v.is_empty() {
            let cut = cut.min(v.len() - 1);
            let early = s.as_of(v[cut].day);
            let plain = Plain::of(&v[..=cut]);
            let (end, len) = (i32::MAX / 2, i32::MAX / 2);
            for m in [Measure::Revenue, Measure::Cost, Measure::Qty, Measure::Orders] {
                prop_assert_eq!(bits(early.sum(m, end, len)), bits(plain.sum(m, end, len)));
            }
            prop_assert_eq!(early.last_day(i32::MAX), Some(v[cut].day));
            prop_assert_eq!(early.order_days(i32::MAX), cut + 1);
        }
    }
}

/// Visits and SKU lines come back as they went in, at the edges: the first
/// and last day chrono knows, a leap year's 366 days, more roles and SKUs
/// than one byte numbers, the largest SKU number, returns.
#[test]
fn logs_give_back_every_entry_at_the_edges() {
    let min = day(NaiveDate::MIN);
    let max = day(NaiveDate::MAX);
    let jan1 = day("2024-01-01".parse::<NaiveDate>().unwrap());
    let leap: Vec<Day> = (0..366).map(|k| jan1 + k).collect();
    assert_eq!(leap[365], day("2024-12-31".parse::<NaiveDate>().unwrap()));
    for (days, roles) in [
        (leap.clone(), (0..366).map(|k| k % 3).collect::<Vec<u32>>()),
        (leap.clone(), (0..366).collect()),
        (vec![min, min, max], vec![0, u32::MAX, 255]),
        (vec![min, max], vec![256, 0]),
    ] {
        let visits: Vec<Visit> = days
            .iter()
            .zip(&roles)
            .map(|(&day, &role)| Visit { day, role })
            .collect();
        let log = DayLog::from(visits.clone());
        assert_eq!(log.iter().collect::<Vec<_>>(), visits);
        assert_eq!(log.upto(days[0] - 1), 0);
        assert_eq!(log.upto(*days.last().unwrap()), days.len());
    }
    let lines: Vec<SkuLine> = [
        (min, 0, 1.0, 10.5),
        (min, u32::MAX - 1, -3.0, -250.25),
        (max, 300, 0.1 + 0.2, -0.0),
        (max, 7, 1e15, f64::MAX),
    ]
    .iter()
    .map(|&(day, sku, qty, revenue)| SkuLine {
        day,
        sku,
        qty,
        revenue,
    })
    .collect();
    let log = DayLog::from(lines.clone());
    for (got, want) in log.iter().zip(&lines) {
        assert_eq!((got.day, got.sku), (want.day, want.sku));
        assert_eq!(got.qty.to_bits(), want.qty.to_bits());
        assert_eq!(got.revenue.to_bits(), want.revenue.to_bits());
    }
    // A 366-day year's daily series: days in 2 bytes, sums exact.
    let v: Vec<DaySums> = leap
        .iter()
        .map(|&day| DaySums {
            day,
            revenue: 0.01,
            cost: -0.01,
            qty: 1.0,
            orders: 1,
        })
        .collect();
    let s = Series::of(&v);
    assert_eq!(s.widths()[0], 2);
    assert_eq!(s.sum(Measure::Orders, leap[365], 366), 366.0);
    assert_eq!(s.sum(Measure::Qty, leap[365], 366), 366.0);
    assert_eq!(
        s.sum(Measure::Revenue, leap[365], 366).to_bits(),
        Plain::of(&v)
            .sum(Measure::Revenue, leap[365], 366)
            .to_bits()
    );
}
