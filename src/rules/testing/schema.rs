//! The rule test file format (YAML): the rules to run, the rows of each
//! case (inline, or CSV fixtures with the canonical column names) and the
//! alerts expected. Plain serde types; touches nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::NaiveDate;
use serde::Deserialize;

use crate::config::TierConfig;

/// A rule test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The rules folder, relative to this file; default: the folder given
    /// on the command line (the config's `rules`).
    #[serde(default)]
    pub rules_dir: Option<PathBuf>,
    /// Which rules run (file stems); default: every rule in the folder.
    #[serde(default)]
    pub rules: Option<Vec<String>>,
    #[serde(default)]
    pub tiers: Option<TierConfig>,
    /// The seasons, as in the config (a name given twice or blank is
    /// refused); default: the shipped ones.
    #[serde(default, deserialize_with = "crate::config::some_season_map")]
    pub seasons: Option<BTreeMap<String, crate::config::SeasonConfig>>,
    pub tests: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    /// The day evaluated; with `from`, the last day of the replay.
    pub as_of: Date,
    /// Replays every `every` days (default 1) from this day to `as_of`
    /// through the alert lifecycle (each rule's own policy over the
    /// `alerts:` defaults); `notices` then lists what it would mail.
    #[serde(default)]
    pub from: Option<Date>,
    #[serde(default)]
    pub every: Option<u32>,
    /// With `from`: every notice of the replay, in order (`[]`: none).
    #[serde(default)]
    pub notices: Option<Vec<ExpectedNotice>>,
    /// Rules for this case only; default: the file's.
    #[serde(default)]
    pub rules: Option<Vec<String>>,
    /// The locale the rules write their texts in: `zh-CN` (default) or `en`.
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub accounts: Vec<AccountIn>,
    #[serde(default)]
    pub orders: Vec<OrderIn>,
    #[serde(default)]
    pub visits: Vec<VisitIn>,
    #[serde(default)]
    pub receivables: Vec<InvoiceIn>,
    #[serde(default)]
    pub inventory: Vec<StockIn>,
    /// CSV fixture files (canonical column names), relative to the test file.
    #[serde(default)]
    pub files: Files,
    /// The alerts expected, all of them: `[]` asserts silence.
    pub expect: Vec<Expected>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Files {
    #[serde(default)]
    pub accounts: Option<PathBuf>,
    #[serde(default)]
    pub orders: Option<PathBuf>,
    #[serde(default)]
    pub visits: Option<PathBuf>,
    #[serde(default)]
    pub receivables: Option<PathBuf>,
    #[serde(default)]
    pub inventory: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountIn {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub owner_email: Option<String>,
    /// The master's tier column (overrides the computed tier).
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub credit_limit: Option<f64>,
    /// Extra master columns (CSV fixtures cannot carry these).
    #[serde(default)]
    pub attrs: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One order line, or with `from`/`to`/`every` one line every `every` days.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderIn {
    pub account: String,
    #[serde(default)]
    pub date: Option<Date>,
    #[serde(default)]
    pub from: Option<Date>,
    #[serde(default)]
    pub to: Option<Date>,
    #[serde(default)]
    pub every: Option<u32>,
    pub revenue: f64,
    pub cost: f64,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub qty: Option<f64>,
}

/// One visit, or with `from`/`to`/`every` one every `every` days.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisitIn {
    pub account: String,
    #[serde(default)]
    pub date: Option<Date>,
    #[serde(default)]
    pub from: Option<Date>,
    #[serde(default)]
    pub to: Option<Date>,
    #[serde(default)]
    pub every: Option<u32>,
    #[serde(default)]
    pub visitor: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceIn {
    pub account: String,
    #[serde(default)]
    pub invoice: Option<String>,
    pub amount: f64,
    pub due: Date,
    #[serde(default)]
    pub issued: Option<Date>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockIn {
    pub sku: String,
    /// The account the stock is held for; default: the warehouse.
    #[serde(default)]
    pub account: Option<String>,
    pub on_hand: f64,
}

/// An alert expected. Unset fields are not compared; `figures` lists only
/// the figures to check.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub rule: String,
    pub account: String,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub figures: BTreeMap<String, serde_json::Value>,
    /// `false`: a held finding (`alert(#{ starts: false })`), which keeps
    /// an open alert open and starts none; default `true`, a raise.
    #[serde(default = "yes")]
    pub starts: bool,
}

fn yes() -> bool {
    true
}

/// A notice expected of a replay (`from:`): on which day, of which alert,
/// and which (`started`, `raised`, `repeat`, `aged`, `final`, `resolved`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedNotice {
    pub on: Date,
    pub rule: String,
    pub account: String,
    #[serde(default)]
    pub key: String,
    pub notice: String,
}

/// A YAML date, "YYYY-MM-DD".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date(pub NaiveDate);

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let s = String::deserialize(d)?;
        NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
            .map(Date)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a date like 2026-11-28")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test file's `seasons:` is read as the config's: a name given
    /// twice or blank is refused with its line; left out, it is None.
    #[test]
    fn seasons_are_read_as_the_config_reads_them() {
        let file = |seasons: &str| {
            serde_yaml::from_str::<TestFile>(&format!("{seasons}tests: []\n"))
                .map_err(|e| crate::config::yaml_problem(&e))
        };
        let e = file(
            "seasons:\n  双11: { from: \"11-01\", to: \"11-11\" }\n  双11: { from: \"11-05\", to: \"11-20\" }\n",
        )
        .unwrap_err();
        assert!(
            e.starts_with("seasons.双11: the season 双11 is given twice") && e.contains("line 3"),
            "{e}"
        );
        let e = file("seasons:\n  \"\": { from: \"11-01\", to: \"11-11\" }\n").unwrap_err();
        assert!(e.contains("which is blank") && e.contains("line 2"), "{e}");
        assert!(file("").unwrap().seasons.is_none());
        let two = file(
            "seasons:\n  双11: { from: \"11-01\", to: \"11-11\" }\n  618: { from: \"06-01\", to: \"06-18\" }\n",
        )
        .unwrap();
        assert_eq!(two.seasons.unwrap().len(), 2);
    }
}
