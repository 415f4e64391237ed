//! Compact arrays of amounts: (quantity, revenue) pairs held as whole
//! hundredths in two `i32` where every pair of an array reads back to the
//! same `f64` bits, else as `f64`. A large book's SKU lines are most of the
//! daemon's memory; an ERP's amounts mostly have two decimals or fewer.
//! Touches nothing but memory.

use std::sync::Arc;

/// `x` as a whole number of hundredths, when `c as f64 / 100.0` gives `x`
/// back to the bit (so not -0.0, not NaN, nothing beyond ±21,474,836.47,
/// nothing with a third decimal).
pub(super) fn hundredths(x: f64) -> Option<i32> {
    let c = (x * 100.0).round();
    if !(c >= f64::from(i32::MIN) && c <= f64::from(i32::MAX)) {
        return None;
    }
    let c = c as i32;
    (from_hundredths(c).to_bits() == x.to_bits()).then_some(c)
}

/// The `f64` nearest `c / 100` (IEEE division is correctly rounded: the
/// same value as parsing the decimal text).
fn from_hundredths(c: i32) -> f64 {
    f64::from(c) / 100.0
}

/// (quantity, revenue) pairs, each the same `f64`s it was made from.
#[derive(Debug, Clone)]
pub(super) enum Pairs {
    /// Every pair in hundredths: 8 bytes a pair.
    Hundredths(Arc<[[i32; 2]]>),
    /// Some amount is not: 16 bytes a pair.
    Floats(Arc<[(f64, f64)]>),
}

impl Default for Pairs {
    fn default() -> Self {
        Pairs::Hundredths(Arc::new([]))
    }
}

impl Pairs {
    /// The pairs of `v`, in hundredths if every amount reads back exactly.
    pub(super) fn new(v: &[(f64, f64)]) -> Pairs {
        let compact: Option<Vec<[i32; 2]>> = v
            .iter()
            .map(|&(q, r)| Some([hundredths(q)?, hundredths(r)?]))
            .collect();
        match compact {
            Some(c) => Pairs::Hundredths(c.into()),
            None => Pairs::Floats(v.into()),
        }
    }

    /// The `k`th pair.
    pub(super) fn get(&self, k: usize) -> (f64, f64) {
        match self {
            Pairs::Hundredths(p) => (from_hundredths(p[k][0]), from_hundredths(p[k][1])),
            Pairs::Floats(p) => p[k],
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        match self {
            Pairs::Hundredths(p) => p.len(),
            Pairs::Floats(p) => p.len(),
        }
    }

    /// The bytes its pairs take on the heap.
    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            Pairs::Hundredths(p) => size_of_val::<[[i32; 2]]>(p),
            Pairs::Floats(p) => size_of_val::<[(f64, f64)]>(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hundredths_read_back_to_the_bit_or_not_at_all() {
        // Two decimals and fewer, negative, the bounds: in hundredths.
        for (x, c) in [
            (0.0, 0),
            (1.0, 100),
            (123.45, 12345),
            (-7.1, -710),
            (0.29, 29),
            (21_474_836.47, i32::MAX),
            (-21_474_836.48, i32::MIN),
        ] {
            assert_eq!(hundredths(x), Some(c), "{x}");
        }
        // A third decimal, a sum that is not its decimal, -0.0, beyond
        // i32, not finite: as f64.
        for x in [
            0.125,
            0.1 + 0.2,
            -0.0,
            21_474_836.48,
            1e300,
            f64::NAN,
            f64::INFINITY,
        ] {
            assert_eq!(hundredths(x), None, "{x}");
        }
        // Every cent up to a million, read back exactly.
        for c in (0..100_000_000).step_by(9_973) {
            let x: f64 = format!("{}.{:02}", c / 100, c % 100).parse().unwrap();
            assert_eq!(hundredths(x), Some(c), "{x}");
        }
    }

    #[test]
    fn pairs_give_back_what_they_were_made_of() {
        let exact = [(1.0, 10.5), (3.0, 99.99), (0.0, -4.01)];
        let p = Pairs::new(&exact);
        assert!(matches!(p, Pairs::Hundredths(_)));
        assert_eq!(p.heap_bytes(), 24);
        let odd = [(1.0, 10.5), (0.5, 0.1 + 0.2), (2.0, -0.0)];
        let q = Pairs::new(&odd);
        assert!(matches!(q, Pairs::Floats(_)));
        for (pairs, want) in [(p, &exact[..]), (q, &odd[..])] {
            assert_eq!(pairs.len(), want.len());
            for (k, (a, b)) in want.iter().enumerate() {
                let (x, y) = pairs.get(k);
                assert_eq!((x.to_bits(), y.to_bits()), (a.to_bits(), b.to_bits()));
            }
        }
    }
}
