//! Tiers: A, B or C, as ranked from the trailing-12-month revenue share
//! or set by the customer master. Written as the same one-letter strings
//! everywhere (config, rule scripts, the database, JSON output).

use std::fmt;

/// A key-account tier.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Tier {
    A,
    B,
    C,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::A, Tier::B, Tier::C];

    /// `"A"`, `"B"` or `"C"` exactly; anything else is no tier.
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "A" => Some(Tier::A),
            "B" => Some(Tier::B),
            "C" => Some(Tier::C),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::A => "A",
            Tier::B => "B",
            Tier::C => "C",
        }
    }

    /// One bit per tier (A=1, B=2, C=4), for tier sets held as a mask.
    pub fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_read_and_write_as_one_letter() {
        for t in Tier::ALL {
            assert_eq!(Tier::parse(t.as_str()), Some(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{t}\""));
            assert_eq!(serde_json::from_str::<Tier>(&json).unwrap(), t);
        }
        assert_eq!(
            Tier::ALL.map(Tier::bit),
            [1, 2, 4],
            "the bits rules' tier masks use"
        );
        for bad in ["a", "D", "", " A", "AB"] {
            assert_eq!(Tier::parse(bad), None, "{bad:?}");
        }
    }
}
