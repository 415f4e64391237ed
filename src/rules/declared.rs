//! What the rules declare, for the stages that must agree with them. Each
//! rule's top-level `const NAME = <literal>;` is read when it compiles
//! (`rhai_internals::constants`, before `drop_folded_constants` cuts the
//! leading ones from the AST), and [`RuleValues`] takes from the shipped rules that
//! define them the values the monthly review and the mail's charts use:
//! the visit cadence of lapsed_visits and the windows of declining_orders
//! and margin_slip. An analyst's edit to the rule so reaches the review.
//! A rule that is absent or disabled, or a constant that is missing or
//! not a usable number of days, gives the shipped value, and says why.
//! Touches nothing.

use std::path::PathBuf;

use super::api::MAX_WINDOW_DAYS;
use super::rhai_internals::Constant;
use super::set::RuleSet;
use crate::model::Tier;

/// Why a value is the shipped one and not the rule's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// No rule of that name is loaded (no file, or it does not compile).
    NoRule,
    /// The rule is disabled (`enabled: false`).
    Disabled,
    /// The rule declares no constant of that name.
    NotDeclared,
    /// The constant is there but no usable number of days: `why`.
    Unusable { line: usize, why: String },
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The rule file declares it.
    Rule(PathBuf),
    /// The shipped value, for this reason.
    Shipped(Fallback),
}

/// A number of days the rules declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Days {
    pub days: i64,
    /// The rule and constant it is read from (`lapsed_visits`, `CADENCE_A`).
    pub rule: &'static str,
    pub name: &'static str,
    pub source: Source,
}

impl Days {
    /// The shipped value of `rule`'s `name`, for `why`.
    fn shipped(rule: &'static str, name: &'static str, days: i64, why: Fallback) -> Days {
        Days {
            days,
            rule,
            name,
            source: Source::Shipped(why),
        }
    }

    /// `rule`'s `name` as `set` declares it, else `shipped`.
    fn of(set: &RuleSet, rule: &'static str, name: &'static str, shipped: i64) -> Days {
        let fallback = |why| Days::shipped(rule, name, shipped, why);
        let Some(r) = set.get(rule) else {
            return fallback(Fallback::NoRule);
        };
        if !r.enabled() {
            return fallback(Fallback::Disabled);
        }
        let Some(c) = r.constant(name) else {
            return fallback(Fallback::NotDeclared);
        };
        match whole_days(c, name) {
            Ok(days) => Days {
                days,
                rule,
                name,
                source: Source::Rule(r.path.clone()),
            },
            Err(why) => fallback(Fallback::Unusable { line: c.line, why }),
        }
    }

    /// What is wrong with the rule's value, as a sentence naming the file
    /// and line and what to do; None when the value is the rule's, or the
    /// rule is absent or disabled (nothing to fix).
    pub fn problem(&self) -> Option<String> {
        let Source::Shipped(why) = &self.source else {
            return None;
        };
        let file = format!("{}.rhai", self.rule);
        match why {
            Fallback::NoRule | Fallback::Disabled => None,
            Fallback::NotDeclared => Some(format!(
                "{file}: declares no `const {} = ...;`; the review and the charts use the shipped {} days. Declare it at the top of the rule, e.g. `const {} = {};`",
                self.name, self.days, self.name, self.days
            )),
            Fallback::Unusable { line, why } => Some(format!(
                "{file}:{line}: {why}; the review and the charts use the shipped {} days. Write it as a whole number of days, e.g. `const {} = {};`",
                self.days, self.name, self.days
            )),
        }
    }
}

/// A constant as a whole number of days, 1 to [`MAX_WINDOW_DAYS`], or why
/// it is not one.
fn whole_days(c: &Constant, name: &str) -> Result<i64, String> {
    if c.declared > 1 {
        return Err(format!(
            "{name} is declared {} times, so it has no one value",
            c.declared
        ));
    }
    let Some(v) = &c.value else {
        return Err(format!(
            "{name} is not a literal number: it is computed when the rule runs, so the review cannot read it"
        ));
    };
    let n = if let Ok(i) = v.as_int() {
        i
    } else if let Ok(f) = v.as_float() {
        if f.fract() != 0.0 || !f.is_finite() || f.abs() > 1e9 {
            return Err(format!("{name} is {f}, not a whole number of days"));
        }
        f as i64
    } else {
        return Err(format!(
            "{name} is {} {v}, not a number of days",
            v.type_name()
        ));
    };
    if !(1..=MAX_WINDOW_DAYS).contains(&n) {
        return Err(format!(
            "{name} is {n} days; give 1 to {MAX_WINDOW_DAYS} days"
        ));
    }
    Ok(n)
}

/// The values the review and the charts share with the shipped rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleValues {
    /// lapsed_visits: days allowed between visits, tier A and tier B (the
    /// rule gives every tier but A tier B's).
    pub cadence_a: Days,
    pub cadence_b: Days,
    /// The tiers lapsed_visits runs for, as bits (A=1, B=2, C=4).
    pub cadence_tiers: u8,
    /// declining_orders: the window compared with the one before.
    pub decline_days: Days,
    /// margin_slip: the recent window, and the baseline before it.
    pub margin_days: Days,
    pub baseline_days: Days,
}

impl RuleValues {
    /// The values of the shipped rules, as shipped.
    pub fn shipped() -> RuleValues {
        RuleValues::of(&RuleSet::empty())
    }

    /// The values of the config's rules folder, its `rule_settings`
    /// applied; what an analyst should fix is logged as a warning. A
    /// folder that cannot be read gives the shipped values.
    pub fn load(cfg: &crate::config::Loaded) -> RuleValues {
        let values = match RuleSet::load_config(cfg) {
            Ok((set, _, _)) => RuleValues::of(&set),
            Err(_) => RuleValues::shipped(),
        };
        for p in values.problems() {
            tracing::warn!("{p}");
        }
        values
    }

    /// The values `set` declares, each falling back to the shipped one.
    pub fn of(set: &RuleSet) -> RuleValues {
        let tiers = set
            .get("lapsed_visits")
            .filter(|r| r.enabled())
            .map_or(0b011, |r| r.mask);
        RuleValues {
            cadence_a: Days::of(set, "lapsed_visits", "CADENCE_A", 14),
            cadence_b: Days::of(set, "lapsed_visits", "CADENCE_B", 30),
            cadence_tiers: tiers,
            decline_days: Days::of(set, "declining_orders", "DAYS", 90),
            margin_days: Days::of(set, "margin_slip", "DAYS", 90),
            baseline_days: Days::of(set, "margin_slip", "BASELINE_DAYS", 270),
        }
    }

    /// The visit cadence of `tier` as lapsed_visits reads it (A's for A,
    /// B's for any other tier); None for a tier the rule does not run for.
    pub fn cadence(&self, tier: Tier) -> Option<i64> {
        let bit = super::settings::tier_bit(tier.as_str());
        (self.cadence_tiers & bit != 0).then(|| self.cadence_days(tier))
    }

    /// The cadence lapsed_visits gives `tier`, whether or not it runs for
    /// it (an alert raised before the account changed tier).
    pub fn cadence_days(&self, tier: Tier) -> i64 {
        if tier == Tier::A {
            self.cadence_a.days
        } else {
            self.cadence_b.days
        }
    }

    /// Every value, in the order the review names them.
    pub fn all(&self) -> [&Days; 5] {
        [
            &self.cadence_a,
            &self.cadence_b,
            &self.decline_days,
            &self.margin_days,
            &self.baseline_days,
        ]
    }

    /// What an analyst should fix (a constant missing or unusable), one
    /// sentence each, for `check` and the log.
    pub fn problems(&self) -> Vec<String> {
        self.all().iter().filter_map(|d| d.problem()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_values_are_the_shipped_rules_values() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let (set, errors) = RuleSet::load_dir(&dir).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        let read = RuleValues::of(&set);
        let shipped = RuleValues::shipped();
        for (r, s) in read.all().iter().zip(shipped.all()) {
            assert_eq!(r.days, s.days, "{} {}", r.rule, r.name);
            assert_eq!(
                r.source,
                Source::Rule(dir.join(format!("{}.rhai", r.rule))),
                "{}",
                r.name
            );
            assert_eq!(s.source, Source::Shipped(Fallback::NoRule));
        }
        assert_eq!(read.cadence_tiers, 0b011);
        assert!(read.problems().is_empty());
    }

    #[test]
    fn constants_are_read_with_their_line_literal_or_not() {
        let set = RuleSet::from_sources(&[(
            "c",
            "const A = 14;\nconst B = 7 * 2;\nconst C = account.tier;\nlet x = 1;\nconst D = 2.0;\nconst E = \"x\";\nconst E = 3;\n",
        )])
        .unwrap();
        let r = &set.rules[0];
        let v = |n: &str| r.constant(n).unwrap();
        assert_eq!(v("A").value.as_ref().unwrap().as_int(), Ok(14));
        assert_eq!(v("B").value.as_ref().unwrap().as_int(), Ok(14), "folded");
        assert!(v("C").value.is_none());
        assert_eq!(v("C").line, 3);
        assert_eq!((v("D").line, v("E").declared), (5, 2), "after a let too");
        assert!(r.constant("x").is_none(), "variables are not constants");
        assert_eq!(whole_days(v("A"), "A"), Ok(14));
        assert_eq!(whole_days(v("D"), "D"), Ok(2));
        assert!(
            whole_days(v("C"), "C")
                .unwrap_err()
                .contains("C is not a literal number")
        );
        assert!(
            whole_days(v("E"), "E")
                .unwrap_err()
                .contains("E is declared 2 times")
        );
    }

    #[test]
    fn a_rule_absent_disabled_or_unusable_gives_the_shipped_value_and_says_why() {
        let values =
            |src: &str| RuleValues::of(&RuleSet::from_sources(&[("lapsed_visits", src)]).unwrap());
        let v = values(
            "const SETTINGS = #{ tiers: [\"A\"] };\nconst CADENCE_A = 7;\nconst CADENCE_B = 45;",
        );
        assert_eq!((v.cadence(Tier::A), v.cadence(Tier::B)), (Some(7), None));
        assert_eq!(v.decline_days.source, Source::Shipped(Fallback::NoRule));
        let v = values("const SETTINGS = #{ enabled: false };\nconst CADENCE_A = 7;");
        assert_eq!(v.cadence_a.days, 14);
        assert_eq!(v.cadence_a.source, Source::Shipped(Fallback::Disabled));
        assert_eq!(v.cadence(Tier::B), Some(30));
        assert!(v.problems().is_empty(), "nothing to fix");
        for (src, why) in [
            ("const CADENCE_A = account.tier;", "is not a literal number"),
            (
                "const CADENCE_A = 14.5;",
                "is 14.5, not a whole number of days",
            ),
            ("const CADENCE_A = -3;", "is -3 days; give 1 to 36500 days"),
            ("const CADENCE_A = \"14\";", "not a number of days"),
        ] {
            let v = values(&format!("let x = 1;\n{src}\nconst CADENCE_B = 30;"));
            assert_eq!(v.cadence_a.days, 14, "{src}");
            let p = v.problems();
            assert_eq!(p.len(), 1, "{src}: {p:?}");
            assert!(
                p[0].starts_with("lapsed_visits.rhai:2: CADENCE_A "),
                "{}",
                p[0]
            );
            assert!(
                p[0].contains(why) && p[0].contains("shipped 14 days"),
                "{}",
                p[0]
            );
            assert!(p[0].contains("`const CADENCE_A = 14;`"), "{}", p[0]);
        }
        let v = values("const CADENCE_B = 21;");
        assert_eq!((v.cadence_a.days, v.cadence_b.days), (14, 21));
        assert!(v.problems()[0].contains("declares no `const CADENCE_A = ...;`"));
    }
}
