//! The full read's sums: the book's days dense or sparse, an account's
//! days kept and read again from a day.

use super::*;
use proptest::prelude::*;

fn bits(days: &[BookDay]) -> Vec<(Day, [u64; 4])> {
    days.iter()
        .map(|(d, x)| (*d, x.map(f64::to_bits)))
        .collect()
}

fn series(days: &[(Day, f64, f64)]) -> Series {
    let mut v: Vec<DaySums> = days
        .iter()
        .map(|&(day, revenue, cost)| DaySums {
            day,
            revenue,
            cost,
            qty: revenue / 3.0,
            orders: 1 + (day.unsigned_abs() % 3),
        })
        .collect();
    v.sort_by_key(|d| d.day);
    v.dedup_by_key(|d| d.day);
    Series::of(&v)
}

proptest! {
    /// The book summed in a dense array is the map's, to the bit:
    /// the same days, each summed over the accounts in their order.
    #[test]
    fn the_dense_book_is_the_maps(
        accounts in proptest::collection::vec(
            proptest::collection::vec((19_000i32..19_800, -1e6f64..1e6, -1e6f64..1e6), 0..30),
            0..40,
        ),
        far in proptest::option::of(-800_000i32..800_000),
    ) {
        let mut all: Vec<Series> = accounts.iter().map(|a| series(a)).collect();
        // A date written by hand far away: beyond the dense span.
        if let Some(d) = far {
            all.push(series(&[(d, 12.5, 3.25)]));
        }
        let dense = book_days(all.iter());
        let sparse = book_days_sparse(all.iter().collect());
        prop_assert_eq!(bits(&dense), bits(&sparse));
    }
}

/// A line: (day, order, sku or none, qty, revenue, cost).
type RawLine = (Day, u32, Option<u32>, f64, f64, f64);

/// An account's lines as `account_orders` takes them: sorted by day
/// and order.
fn lines_of(raw: &[RawLine]) -> Vec<Line> {
    let mut v: Vec<Line> = raw
        .iter()
        .map(|&(day, order, sku, qty, revenue, cost)| Line {
            day,
            order,
            sku: sku.unwrap_or(NO_SKU),
            qty,
            revenue,
            cost,
        })
        .collect();
    v.sort_by_key(|l| (l.day, l.order));
    v
}

/// Series and SKU lines as text, to the bit.
fn shown(o: &Option<AccountOrders>) -> String {
    let Some(o) = o else {
        return "none".to_string();
    };
    let mut t = String::new();
    o.series.dump("s", &mut t);
    for l in o.skus.iter() {
        t += &format!(
            "{} {} {:x} {:x}\n",
            l.day,
            l.sku,
            l.qty.to_bits(),
            l.revenue.to_bits()
        );
    }
    t
}

fn raw_lines() -> impl Strategy<Value = Vec<RawLine>> {
    let amount = prop_oneof![
        (0u32..100_000).prop_map(|c| f64::from(c) / 100.0),
        Just(1e15),
        Just(0.01),
        Just(-0.0),
    ];
    proptest::collection::vec(
        (
            0i32..30,
            0u32..4,
            proptest::option::of(0u32..3),
            amount.clone(),
            amount.clone(),
            amount,
        ),
        0..40,
    )
}

proptest! {
    /// Kept days of the old series and SKU lines, followed by the
    /// new lines from a day on, are what all the new lines give, to
    /// the bit: whatever the lines before that day (the same in both),
    /// after it (old and new differ), amounts of 1e15 beside cents.
    #[test]
    fn the_days_kept_and_the_lines_from_a_day_are_the_whole(
        before in raw_lines(),
        old_after in raw_lines(),
        new_after in raw_lines(),
        from in 0i32..30,
    ) {
        let mut index = SkuIndex::default();
        for name in ["S2", "S0", "S1"] {
            index.intern(name).unwrap();
        }
        let split = |v: &[RawLine], keep_before: bool| {
            v.iter().copied().filter(|l| (l.0 < from) == keep_before).collect::<Vec<_>>()
        };
        let before = split(&before, true);
        let (old_after, new_after) = (split(&old_after, false), split(&new_after, false));
        let old_lines = lines_of(&[before.clone(), old_after].concat());
        let new_lines = lines_of(&[before, new_after.clone()].concat());
        let mut scratch = Vec::new();
        let old = account_orders_after(None, &old_lines, &index, &mut scratch);
        let whole = account_orders_after(None, &new_lines, &index, &mut scratch);
        let tail = lines_of(&new_after);
        let kept = old.as_ref().map(|o| (from, &o.series, &o.skus));
        let got = account_orders_after(kept, &tail, &index, &mut scratch);
        prop_assert_eq!(shown(&got), shown(&whole));
    }
}

#[test]
fn an_empty_book_has_no_days() {
    assert!(book_days(std::iter::empty()).is_empty());
    assert!(book_days([Series::default()].iter()).is_empty());
}
