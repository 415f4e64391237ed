//! Compact columns: a history's arrays (days, roles, SKU numbers, amounts,
//! prefix sums) packed side by side in one shared buffer, each column at
//! the narrowest width that gives back every value of it exactly. A large
//! book's histories are most of the daemon's memory. Touches nothing but
//! memory.
//!
//! Whole numbers (days, roles, SKU numbers, order counts) are held as
//! their distance from the column's smallest value in 1, 2, 4 or 8
//! bytes: two years of days in 2, a handful of roles in 1. Amounts (`f64`)
//! are held as whole units or whole hundredths in 1, 2 or 4 bytes when
//! every value of the column reads back to the same `f64` bits
//! (`c as f64 / 100.0` is correctly rounded: the value parsing the decimal
//! text gives); or, when each is within 127 steps of the `f64` (units in
//! the last place) of its nearest hundredth, as that hundredth and the
//! steps, one byte more (a running sum of amounts in cents drifts from its
//! decimal by a few such steps); else as their 8 bytes. An amount is never
//! changed by being held, whatever the book holds (-0.0, a third decimal,
//! NaN, 1e300 all come back as they went in): an encoding is chosen only
//! when every value of the column reads back from it to its bits.

use std::sync::Arc;

/// Most columns a table holds (a series has five).
pub(super) const COLS: usize = 5;

/// The largest whole number a scaled amount may be held as: beyond 2^53 an
/// `i64` is not exactly an `f64`.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// How one column is held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Spec {
    /// Added to every stored number (the column's smallest value).
    base: i64,
    /// Where the column starts in the buffer.
    at: u32,
    /// Bytes per value: 0 (no column), 1, 2, 4 or 8.
    width: u8,
    /// For amounts: 1 (whole units) or 100 (hundredths) the number is
    /// divided by; [`NEAR`]: hundredths and steps; 0: the number is the
    /// `f64`'s bits. Whole numbers: 1, or for a column holding two (see
    /// [`fold`]) the radix: the number is `int * scale + low`.
    scale: u8,
}

/// The scale of a column of hundredths each moved by some steps of the
/// `f64` (an `i8` per entry, after the column's numbers).
const NEAR: u8 = 0xff;

/// A spec's bytes in a table's header: base, at, width, scale.
const SPEC: usize = 8 + 4 + 1 + 1;
/// The header's bytes before the specs: the entries in each column (a
/// `u32`) and the number of columns.
const HEAD: usize = 5;

impl Spec {
    fn write(&self, to: &mut [u8]) {
        to[..8].copy_from_slice(&self.base.to_le_bytes());
        to[8..12].copy_from_slice(&self.at.to_le_bytes());
        to[12] = self.width;
        to[13] = self.scale;
    }

    #[inline]
    fn read(from: &[u8]) -> Spec {
        let mut base = [0u8; 8];
        base.copy_from_slice(&from[..8]);
        Spec {
            base: i64::from_le_bytes(base),
            at: u32::from_le_bytes([from[8], from[9], from[10], from[11]]),
            width: from[12],
            scale: from[13],
        }
    }
}

/// What a table of `cols` columns with entries takes beside its columns'
/// bytes: the shared buffer's counts and the header.
#[cfg(test)]
pub(super) const fn overhead(cols: usize) -> usize {
    2 * size_of::<usize>() + HEAD + SPEC * cols
}

/// The values of one column, as given to [`Table::new`].
pub enum Values<'a> {
    Ints(&'a [i64]),
    Amounts(&'a [f64]),
    /// Two whole numbers in one, as [`fold`] made them, and the radix.
    Folded(&'a [i64], u8),
}

impl Values<'_> {
    fn len(&self) -> usize {
        match self {
            Values::Ints(v) | Values::Folded(v, _) => v.len(),
            Values::Amounts(v) => v.len(),
        }
    }
}

/// The largest radix a folded column may have.
const MAX_RADIX: i64 = 128;

/// `high` and `low` (of one length, `low` small and not negative: a
/// visit's day and role) as one column of `high * radix + low` (the radix
/// the power of two above the largest `low`), when that
/// is narrower than the two apart (two years of days and a few roles: 2
/// bytes instead of 3). None when it is not, or `low` does not fit.
pub(super) fn fold(high: &[i64], low: &[i64]) -> Option<(Vec<i64>, u8)> {
    let top = low.iter().copied().max().unwrap_or(0);
    if high.len() != low.len() || low.iter().any(|l| *l < 0) || top >= MAX_RADIX {
        return None;
    }
    // A power of two: the numbers come apart by a shift and a mask, no
    // division on the rules' path.
    let radix = ((top + 1).max(1) as u64).next_power_of_two() as i64;
    let folded = high
        .iter()
        .zip(low)
        .map(|(h, l)| h.checked_mul(radix)?.checked_add(*l))
        .collect::<Option<Vec<i64>>>()?;
    let narrower = int_spec(&folded).1 < int_spec(high).1 + int_spec(low).1;
    narrower.then_some((folded, radix as u8))
}

/// Up to [`COLS`] columns of equal length, packed in one shared buffer
/// (one allocation), shared by its clones: a header (the length, the
/// number of columns, each column's [`Spec`]) and the columns' bytes. An
/// empty table allocates nothing. Its views (`Series`, `DayLog`) keep the
/// length they see.
#[derive(Debug, Clone, Default)]
pub struct Table {
    bytes: Option<Arc<[u8]>>,
}

/// One column of a table, its spec read: `int` and `amount` as the
/// table's, without reading the spec again for each value.
#[derive(Debug, Clone, Copy, Default)]
pub struct Column<'a> {
    spec: Spec,
    bytes: &'a [u8],
}

impl Column<'_> {
    /// Value `k` of a whole-number column (0 in an empty table).
    #[inline]
    pub(super) fn int(&self, k: usize) -> i64 {
        if self.bytes.is_empty() {
            return 0;
        }
        Table::number(&self.spec, self.bytes, k)
    }

    /// The high number of value `k` of a folded column (see [`fold`]);
    /// of any other whole-number column, its value.
    #[inline]
    pub(super) fn high(&self, k: usize) -> i64 {
        match self.spec.scale {
            0 | 1 => self.int(k),
            r => self.int(k) >> r.trailing_zeros(),
        }
    }

    /// The low number of value `k` of a folded column (see [`fold`]); 0
    /// for any other whole-number column and in an empty table.
    #[inline]
    pub(super) fn low(&self, k: usize) -> i64 {
        if self.bytes.is_empty() || self.spec.scale == 1 {
            return 0;
        }
        Table::number(&self.spec, self.bytes, k) & (i64::from(self.spec.scale) - 1)
    }

    /// Value `k` of an amount column: the `f64` it was made from, to the bit.
    #[inline]
    pub(super) fn amount(&self, k: usize) -> f64 {
        let (s, b) = (&self.spec, self.bytes);
        if b.is_empty() {
            return 0.0;
        }
        let n = Table::number(s, b, k);
        match s.scale {
            0 => f64::from_bits(n as u64),
            NEAR => {
                let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let after = s.at as usize + len * usize::from(s.width);
                moved(n, b[after + k] as i8)
            }
            scale => amount_of(n, scale),
        }
    }
}

/// The narrowest width in bytes holding every distance up to `span`.
fn width_for(span: u64) -> u8 {
    match span {
        0..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 4,
        _ => 8,
    }
}

/// The smallest value and the width holding every value's distance from it.
fn int_spec(v: &[i64]) -> (i64, u8) {
    let (lo, hi) = v
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
    if v.is_empty() {
        return (0, 1);
    }
    // i128: the distance between any two i64 fits a u64.
    let span = (i128::from(hi) - i128::from(lo)) as u64;
    (lo, width_for(span))
}

/// The `f64` a whole number `c` of 1/`scale` stands for; the one
/// expression both the check and the read use.
fn amount_of(c: i64, scale: u8) -> f64 {
    if scale == 1 {
        c as f64
    } else {
        c as f64 / f64::from(scale)
    }
}

/// `x` as a whole number of 1/`scale`, when [`amount_of`] gives `x` back
/// to the bit.
fn scaled(x: f64, scale: u8) -> Option<i64> {
    let c = (x * f64::from(scale)).round();
    // Also false for NaN.
    if c.is_nan() || c.abs() > EXACT {
        return None;
    }
    let c = c as i64;
    (amount_of(c, scale).to_bits() == x.to_bits()).then_some(c)
}

/// `x` as its nearest whole number of hundredths and the steps of the
/// `f64` from that hundredth's `f64` to `x`, when there are at most 127.
fn near(x: f64) -> Option<(i64, i8)> {
    let c = (x * 100.0).round();
    if c.is_nan() || c.abs() > EXACT {
        return None;
    }
    let c = c as i64;
    let q = amount_of(c, 100).to_bits() as i64;
    let steps = i8::try_from(i128::from(x.to_bits() as i64) - i128::from(q)).ok()?;
    (moved(c, steps).to_bits() == x.to_bits()).then_some((c, steps))
}

/// The `f64` `steps` steps from the one of `c` hundredths: what [`near`]
/// took apart.
fn moved(c: i64, steps: i8) -> f64 {
    let q = amount_of(c, 100).to_bits() as i64;
    f64::from_bits(q.wrapping_add(i64::from(steps)) as u64)
}

/// How a column of amounts is held: its spec, the numbers stored (before
/// the base is taken off) and, for [`NEAR`], each one's steps.
type Held = (Spec, Vec<i64>, Vec<i8>);

/// How amounts `v` are held: the fewest bytes of whole units, hundredths
/// and hundredths with steps that give every one back, else their bits.
fn amount_spec(v: &[f64]) -> Held {
    let spec = |base, width, scale| Spec {
        base,
        width,
        scale,
        at: 0,
    };
    let bits = v.iter().map(|x| x.to_bits() as i64).collect();
    let mut best: Held = (spec(0, 8, 0), bits, Vec::new());
    let mut bytes = 8;
    for scale in [1u8, 100] {
        let Some(c) = v
            .iter()
            .map(|x| scaled(*x, scale))
            .collect::<Option<Vec<i64>>>()
        else {
            continue;
        };
        let (base, width) = int_spec(&c);
        if width < bytes {
            bytes = width;
            best = (spec(base, width, scale), c, Vec::new());
        }
    }
    if bytes > 2
        && let Some(cs) = v.iter().map(|x| near(*x)).collect::<Option<Vec<_>>>()
    {
        let (c, steps): (Vec<i64>, Vec<i8>) = cs.into_iter().unzip();
        let (base, width) = int_spec(&c);
        if width + 1 < bytes {
            best = (spec(base, width, NEAR), c, steps);
        }
    }
    best
}

impl Table {
    /// The columns `cols`, all of one length (at most [`COLS`] of them).
    /// Panics when they are not: a bug in the caller, not the data.
    pub(super) fn new(cols: &[Values<'_>]) -> Table {
        let len = cols.first().map_or(0, Values::len);
        assert!(cols.len() <= COLS && cols.iter().all(|c| c.len() == len));
        if len == 0 {
            return Table::default();
        }
        let mut specs = Vec::with_capacity(cols.len());
        let mut held = Vec::with_capacity(cols.len());
        let mut at = HEAD + SPEC * cols.len();
        for col in cols {
            let (s, n, steps) = match col {
                Values::Ints(v) | Values::Folded(v, _) => {
                    let (base, width) = int_spec(v);
                    let s = Spec {
                        base,
                        width,
                        scale: match col {
                            Values::Folded(_, radix) => (*radix).max(1),
                            _ => 1,
                        },
                        at: 0,
                    };
                    (s, v.to_vec(), Vec::new())
                }
                Values::Amounts(v) => amount_spec(v),
            };
            specs.push(Spec {
                at: u32::try_from(at).expect("a history's table under 4 GiB"),
                ..s
            });
            at += len * usize::from(s.width) + steps.len();
            held.push((n, steps));
        }
        let mut bytes = vec![0u8; at];
        let len32 = u32::try_from(len).expect("a history under 4 billion entries");
        bytes[..4].copy_from_slice(&len32.to_le_bytes());
        bytes[4] = cols.len() as u8;
        for (c, (spec, (n, steps))) in specs.iter().zip(&held).enumerate() {
            spec.write(&mut bytes[HEAD + SPEC * c..]);
            let w = usize::from(spec.width);
            for (k, x) in n.iter().enumerate() {
                let u = x.wrapping_sub(spec.base) as u64;
                let at = spec.at as usize + k * w;
                bytes[at..at + w].copy_from_slice(&u.to_le_bytes()[..w]);
            }
            let after = spec.at as usize + len * w;
            for (k, d) in steps.iter().enumerate() {
                bytes[after + k] = *d as u8;
            }
        }
        Table {
            bytes: Some(Arc::from(bytes)),
        }
    }

    /// Whether `self` and `other` share their buffer.
    pub(super) fn same(&self, other: &Table) -> bool {
        match (&self.bytes, &other.bytes) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    /// The spec of column `c` and the buffer; None for an empty table or a
    /// column it does not have.
    #[inline]
    fn spec(&self, c: usize) -> Option<(Spec, &[u8])> {
        let b = self.bytes.as_deref()?;
        (c < usize::from(b[4])).then(|| (Spec::read(&b[HEAD + SPEC * c..]), b))
    }

    /// The stored number `k` of column `s`, its base added back.
    #[inline]
    fn number(s: &Spec, b: &[u8], k: usize) -> i64 {
        let w = usize::from(s.width);
        let at = s.at as usize + k * w;
        let b = &b[at..at + w];
        let u = match w {
            1 => u64::from(b[0]),
            2 => u64::from(u16::from_le_bytes([b[0], b[1]])),
            4 => u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            _ => {
                let mut x = [0u8; 8];
                x.copy_from_slice(b);
                u64::from_le_bytes(x)
            }
        };
        s.base.wrapping_add(u as i64)
    }

    /// Value `k` of whole-number column `c`.
    #[inline]
    pub(super) fn int(&self, c: usize, k: usize) -> i64 {
        self.column(c).int(k)
    }

    /// Value `k` of amount column `c`: the `f64` it was made from, to the bit.
    #[inline]
    pub(super) fn amount(&self, c: usize, k: usize) -> f64 {
        self.column(c).amount(k)
    }

    /// Column `c`, its spec read once: for reading many of its values.
    #[inline]
    pub(super) fn column(&self, c: usize) -> Column<'_> {
        match self.spec(c) {
            Some((spec, bytes)) => Column { spec, bytes },
            None => Column::default(),
        }
    }

    /// Asks the processor to bring the first `lines` cache lines of the
    /// buffer (the header and the columns after it) into its cache ahead
    /// of a read: a hint, which changes nothing the table gives.
    #[inline]
    pub(super) fn prefetch(&self, lines: usize) {
        #[cfg(target_arch = "x86_64")]
        if let Some(b) = self.bytes.as_deref() {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            for at in (0..b.len()).step_by(64).take(lines) {
                // SAFETY: a prefetch reads nothing the program sees and
                // never faults; `at` is within the buffer.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(b.as_ptr().add(at).cast()) };
            }
        }
    }

    /// The bytes it takes on the heap (buffer and column specs; shared
    /// clones count each).
    pub(super) fn heap_bytes(&self) -> usize {
        self.bytes
            .as_ref()
            .map_or(0, |b| 2 * size_of::<usize>() + b.len())
    }

    /// Bytes per entry of each column (a step's byte included), for tests.
    #[cfg(test)]
    pub(super) fn widths(&self) -> Vec<u8> {
        let Some(b) = self.bytes.as_deref() else {
            return Vec::new();
        };
        (0..usize::from(b[4]))
            .filter_map(|c| self.spec(c))
            .map(|(s, _)| s.width + u8::from(s.scale == NEAR))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: &[f64]) -> Table {
        let t = Table::new(&[Values::Amounts(v)]);
        for (k, x) in v.iter().enumerate() {
            assert_eq!(t.amount(0, k).to_bits(), x.to_bits(), "{x:?} at {k}");
        }
        t
    }

    #[test]
    fn amounts_read_back_to_the_bit_at_the_narrowest_width() {
        // Whole units in one byte, hundredths in two or four.
        assert_eq!(round_trip(&[1.0, 3.0, 200.0]).widths()[0], 1);
        assert_eq!(round_trip(&[0.01, -7.1, 123.45]).widths()[0], 2);
        assert_eq!(round_trip(&[21_474_836.47, -21_474_836.48]).widths()[0], 4);
        // Returns, negative sums: the base is the smallest.
        assert_eq!(round_trip(&[-3.0, -251.0, 5.0]).widths()[0], 2);
        // A sum that is not its decimal: its nearest hundredth and the
        // steps to it, one byte more; up to 127 steps either way.
        assert_eq!(round_trip(&[1.0, 0.1 + 0.2, 2.0]).widths()[0], 2);
        let steps = |x: f64, k: i64| f64::from_bits((x.to_bits() as i64 + k) as u64);
        for k in [127, -128, 1, -1] {
            assert_eq!(round_trip(&[steps(0.3, k), 2.0]).widths()[0], 2, "{k}");
            assert_eq!(round_trip(&[steps(-1234.56, k), 0.0]).widths()[0], 5, "{k}");
        }
        for k in [128, -129, 1 << 40] {
            assert_eq!(round_trip(&[steps(0.3, k), 2.0]).widths()[0], 8, "{k}");
        }
        // A third decimal, -0.0, NaN, infinities, beyond 2^53, the
        // extremes of f64: as bits.
        for odd in [
            0.125,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            9_007_199_254_740_994.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
        ] {
            assert_eq!(round_trip(&[1.0, odd, 2.0]).widths()[0], 8, "{odd:?}");
        }
        // Hundredths beyond what 4 bytes hold from the base: as bits.
        assert_eq!(round_trip(&[0.01, 50_000_000.01]).widths()[0], 8);
        // Every cent up to a million, as parsed from its text.
        let cents: Vec<f64> = (0..100_000_000)
            .step_by(9_973)
            .map(|c| format!("{}.{:02}", c / 100, c % 100).parse().unwrap())
            .collect();
        assert_eq!(round_trip(&cents).widths()[0], 4);
    }

    #[test]
    fn whole_numbers_at_their_limits_never_wrap() {
        let cases: [&[i64]; 6] = [
            &[0, 255],
            &[0, 256],
            &[-1, 65_534],
            &[i64::from(i32::MIN), i64::from(i32::MAX)],
            &[i64::MIN, i64::MAX, 0, -1, 1],
            &[739_000, 739_000 + 65_535],
        ];
        let widths = [1, 2, 2, 4, 8, 2];
        for (v, w) in cases.iter().zip(widths) {
            let t = Table::new(&[Values::Ints(v)]);
            assert_eq!(t.widths()[0], w, "{v:?}");
            for (k, x) in v.iter().enumerate() {
                assert_eq!(t.int(0, k), *x, "{v:?}");
            }
        }
    }

    /// Two whole numbers folded in one column come back apart, whatever
    /// their values: days at the ends of the range (negative, far
    /// future), ten roles on one day, the largest radix; and are folded
    /// only when narrower than apart.
    #[test]
    fn folded_columns_give_both_numbers_back_and_only_when_narrower() {
        let back = |high: &[i64], low: &[i64]| -> Option<u8> {
            let (both, radix) = fold(high, low)?;
            let t = Table::new(&[Values::Folded(&both, radix)]);
            let c = t.column(0);
            for k in 0..high.len() {
                assert_eq!((c.high(k), c.low(k)), (high[k], low[k]), "{k}");
            }
            Some(t.widths()[0])
        };
        // Two years of days and three roles: 2 bytes, not 2 + 1.
        let days: Vec<i64> = (739_000..739_730).collect();
        let roles: Vec<i64> = days.iter().map(|d| d % 3).collect();
        assert_eq!(back(&days, &roles), Some(2));
        // Ten roles on one day, days far back and far ahead.
        let one_day = [-719_162i64; 10];
        assert_eq!(back(&one_day, &(0..10).collect::<Vec<_>>()), Some(1));
        assert_eq!(back(&[-719_162, -719_161], &[127, 0]), Some(1));
        assert_eq!(back(&[-719_162, -718_000], &[3, 0]), Some(2));
        assert_eq!(back(&[2_932_896, 2_932_897], &[1, 0]), Some(1));
        // Not narrower (days over 19 years with 10 roles: 4 bytes against
        // 2 + 1), a role past the largest radix, a negative low, a
        // product beyond i64: apart.
        let wide: Vec<i64> = (0..7_000).collect();
        assert_eq!(back(&wide, &vec![9; 7_000]), None);
        assert_eq!(fold(&[1, 2], &[0, 128]), None);
        assert_eq!(fold(&[1, 2], &[0, -1]), None);
        assert_eq!(fold(&[i64::MAX / 2 + 1, 0], &[1, 0]), None);
        // Any other whole-number column has no low number.
        let t = Table::new(&[Values::Ints(&[5, 7])]);
        assert_eq!((t.column(0).high(1), t.column(0).low(1)), (7, 0));
        assert_eq!(
            (Column::default().high(0), Column::default().low(0)),
            (0, 0)
        );
    }

    #[test]
    fn columns_of_a_table_keep_their_own_widths() {
        let days = [739_000i64, 739_001, 739_366];
        let roles = [0i64, 2, 1];
        let amounts = [10.5, 0.1 + 0.2, -4.0];
        let whole = [1.0, 2.0, 1_000_000.0];
        let t = Table::new(&[
            Values::Ints(&days),
            Values::Ints(&roles),
            Values::Amounts(&amounts),
            Values::Amounts(&whole),
        ]);
        // 0.1 + 0.2 is 30 hundredths and a step.
        assert_eq!(t.widths(), vec![2, 1, 3, 4]);
        for k in 0..3 {
            assert_eq!(t.int(0, k), days[k]);
            assert_eq!(t.int(1, k), roles[k]);
            assert_eq!(t.amount(2, k).to_bits(), amounts[k].to_bits());
            assert_eq!(t.amount(3, k).to_bits(), whole[k].to_bits());
        }
        assert_eq!(t.heap_bytes(), overhead(4) + 3 * (2 + 1 + 3 + 4));
        let empty = Table::new(&[Values::Ints(&[]), Values::Amounts(&[])]);
        assert_eq!(empty.heap_bytes(), 0);
    }
}
