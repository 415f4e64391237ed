//! The config file's shape: the serde structs of its sections (paths,
//! tiers, watch, schedule, daemon, review, log, alerts, ingest bounds,
//! seasons) with their defaults, which `config/kamwatch.yaml` mirrors,
//! commented. The `mail:` section is in `config/mail.rs`, datasets in
//! `config/datasets.rs`, per-rule settings in `config/settings.rs`. Values
//! kept as text in the file (seasons, schedule times and zone) are parsed into
//! types when the config is loaded. Reads nothing itself.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::NaiveTime;
use serde::Deserialize;

use super::clock::Zone;
use super::datasets::Datasets;
use super::error::Problem;
use super::mail::{MailConfig, default_true};
use super::settings::RuleSettings;
use crate::model::seasons::{Season, Seasons};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Folder that the relative paths below are resolved against; itself
    /// relative to the folder holding the config file.
    #[serde(default = "default_root")]
    pub root: PathBuf,
    #[serde(default = "default_inbox")]
    pub inbox: PathBuf,
    #[serde(default = "default_archive")]
    pub archive: PathBuf,
    #[serde(default = "default_rejected")]
    pub rejected: PathBuf,
    #[serde(default = "default_database")]
    pub database: PathBuf,
    #[serde(default = "default_rules")]
    pub rules: PathBuf,
    /// Per-rule settings by rule name (file stem); they override the
    /// rule's own `const SETTINGS`. `alerts.rules` is merged in here when
    /// the config is parsed.
    #[serde(default, deserialize_with = "unique_map")]
    pub rule_settings: BTreeMap<String, RuleSettings>,
    /// What parsing moved or renamed (older key names), for `check` and the
    /// daemon's start-up log. Not a key.
    #[serde(skip)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub tiers: TierConfig,
    #[serde(default)]
    pub watch: WatchConfig,
    #[serde(default)]
    pub mail: MailConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub daemon: DaemonConfig,
    #[serde(default)]
    pub review: ReviewConfig,
    /// Log level or filter (`info`, `debug`, `kamwatch=debug`); the
    /// environment variable KAMWATCH_LOG overrides it.
    #[serde(default = "default_log")]
    pub log: String,
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Bounds on what one export file may hold.
    #[serde(default)]
    pub ingest: IngestConfig,
    pub datasets: Datasets,
    /// The peaks rules plan around (`season("春节")`, `seasons_within(60)`,
    /// `days_until_peak()`),
    /// by name: `from` and `to` as a month-day or a lunar date rule (see
    /// `crate::model::seasons`). Default: 春节, 618, 中秋 and 双11. A name
    /// given twice or blank is refused ([`season_map`]).
    #[serde(
        default = "default_seasons",
        rename = "seasons",
        deserialize_with = "season_map"
    )]
    pub(super) seasons_text: BTreeMap<String, SeasonConfig>,
    /// The seasons, resolved when the config is loaded.
    #[serde(skip)]
    pub seasons: Seasons,
}

/// One season of the config: its first and last day in every year.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(
    deny_unknown_fields,
    expecting = "a block of `from:` and `to:`, e.g. { from: \"11-01\", to: \"11-11\" }"
)]
pub struct SeasonConfig {
    pub from: String,
    pub to: String,
}

fn default_seasons() -> BTreeMap<String, SeasonConfig> {
    crate::model::seasons::SHIPPED
        .iter()
        .map(|(name, from, to)| {
            (
                name.to_string(),
                SeasonConfig {
                    from: from.to_string(),
                    to: to.to_string(),
                },
            )
        })
        .collect()
}

/// Reads a `seasons:` block, refusing what a map would otherwise take
/// silently: a name given twice ([`unique_map`]) and a blank name (no rule
/// can ask for it, and its alerts would have a blank key).
pub fn season_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, SeasonConfig>, D::Error> {
    checked_map(d, |name, twice| {
        if name.trim().is_empty() {
            Some(format!(
                "a season named {name:?}, which is blank: rules ask for a season by its name (season(\"双11\")) and its alerts are told apart by it; give it a name"
            ))
        } else if twice {
            Some(format!(
                "the season {name} is given twice, and only the last would be used; delete one, or give each its own name"
            ))
        } else {
            None
        }
    })
}

/// Reads a block of `name: value` (rule_settings, a dataset's columns),
/// refusing a name given twice: YAML keeps the last, dropping the first
/// without a word, so a setting or a column the user wrote would be
/// ignored.
pub fn unique_map<'de, D, T>(d: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    checked_map(d, |name, twice| {
        twice.then(|| format!("{name} is given twice, and only the last would be used; delete one"))
    })
}

/// A map whose names `refuse(name, given before)` may refuse, with why.
/// The error is raised while the entry's value is read, so the parser
/// names the entry (`seasons.双11`, `rule_settings.margin_slip`) and its
/// line.
fn checked_map<'de, D, T>(
    d: D,
    refuse: impl Fn(&str, bool) -> Option<String>,
) -> Result<BTreeMap<String, T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    use std::marker::PhantomData;
    /// One entry's value, or why its name is refused: refused from inside
    /// the value, so the parser gives the entry's line and path.
    struct Entry<T>(Option<String>, PhantomData<T>);
    impl<'de, T: serde::Deserialize<'de>> serde::de::DeserializeSeed<'de> for Entry<T> {
        type Value = T;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
            match self.0 {
                None => T::deserialize(d),
                Some(why) => d.deserialize_any(Refuse(why, PhantomData)),
            }
        }
    }
    /// Refuses whatever the value is, with why.
    struct Refuse<T>(String, PhantomData<T>);
    macro_rules! refuse {
        ($($f:ident($t:ty)),*) => {$(
            fn $f<E: serde::de::Error>(self, _: $t) -> Result<T, E> {
                Err(E::custom(self.0))
            }
        )*};
    }
    impl<'de, T> serde::de::Visitor<'de> for Refuse<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(&self.0)
        }
        refuse!(
            visit_bool(bool),
            visit_i64(i64),
            visit_u64(u64),
            visit_f64(f64),
            visit_str(&str)
        );
        fn visit_unit<E: serde::de::Error>(self) -> Result<T, E> {
            Err(E::custom(self.0))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<T, A::Error> {
            Err(serde::de::Error::custom(self.0))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<T, A::Error> {
            Err(serde::de::Error::custom(self.0))
        }
    }
    struct Map<T, F>(F, PhantomData<T>);
    impl<'de, T: serde::Deserialize<'de>, F: Fn(&str, bool) -> Option<String>>
        serde::de::Visitor<'de> for Map<T, F>
    {
        type Value = BTreeMap<String, T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a block of `name: value` entries")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(name) = a.next_key::<String>()? {
                let why = (self.0)(&name, out.contains_key(&name));
                let value = a.next_value_seed(Entry(why, PhantomData))?;
                out.insert(name, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Map(refuse, PhantomData))
}

/// [`season_map`] for a block that may be left out (rule test files).
pub fn some_season_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, SeasonConfig>>, D::Error> {
    season_map(d).map(Some)
}

/// The seasons of the config, resolved; an error names the season and the
/// date that cannot be read. `kamwatch test` files name seasons the same way.
pub fn resolve_seasons(map: &BTreeMap<String, SeasonConfig>) -> Result<Seasons, Problem> {
    let mut list = Vec::new();
    for (name, s) in map {
        list.push(Season::parse(name, &s.from, &s.to)?);
    }
    Ok(Seasons { list })
}

/// Bounds on one export file, checked while it is read, before memory is
/// spent on it: what is over a bound rejects the file with a reason.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// The longest CSV record or JSON Lines line, and so the longest field
    /// (a quoted field may span lines), in bytes.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: u64,
    /// The most a workbook may unpack to (every part together, the sheet
    /// included), in MiB: a small zip can unpack to gigabytes.
    #[serde(default = "default_max_unpacked_mib")]
    pub max_unpacked_mib: u64,
    /// The most of a workbook held in memory while it is read, in MiB:
    /// an XLSX's shared strings and styles (its sheet is streamed), an XLS
    /// or ODS workbook whole.
    #[serde(default = "default_max_in_memory_mib")]
    pub max_in_memory_mib: u64,
    /// The most rows a worksheet may have (by its declared dimension and by
    /// the rows read). Excel itself stops at 1,048,576.
    #[serde(default = "default_max_sheet_rows")]
    pub max_sheet_rows: u64,
    /// The largest amount (revenue, cost, quantity, credit limit, open
    /// amount, stock) accepted, either sign; anything beyond is a typo or
    /// a broken export and would swamp every total.
    #[serde(default = "default_max_amount")]
    pub max_amount: f64,
    /// The largest share of the active accounts (percent) one customer
    /// master may switch off; a master that leaves out more is held back
    /// (rejected with the reason), as a partial export would be. Books of
    /// fewer than 10 active accounts are not checked.
    #[serde(default = "default_max_accounts_switched_off_pct")]
    pub max_accounts_switched_off_pct: f64,
}

fn default_max_record_bytes() -> u64 {
    1 << 20
}
fn default_max_unpacked_mib() -> u64 {
    512
}
fn default_max_in_memory_mib() -> u64 {
    128
}
fn default_max_sheet_rows() -> u64 {
    1_048_576
}
fn default_max_amount() -> f64 {
    1e12
}
fn default_max_accounts_switched_off_pct() -> f64 {
    20.0
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_record_bytes: default_max_record_bytes(),
            max_unpacked_mib: default_max_unpacked_mib(),
            max_in_memory_mib: default_max_in_memory_mib(),
            max_sheet_rows: default_max_sheet_rows(),
            max_amount: default_max_amount(),
            max_accounts_switched_off_pct: default_max_accounts_switched_off_pct(),
        }
    }
}

/// The monthly key-account review each manager gets by mail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewConfig {
    /// Day of the month (1-28) the daemon mails it; 0 turns it off.
    #[serde(default = "default_review_day")]
    pub day_of_month: u32,
}

fn default_review_day() -> u32 {
    1
}

impl Default for ReviewConfig {
    fn default() -> Self {
        ReviewConfig {
            day_of_month: default_review_day(),
        }
    }
}

/// How the daemon judges its own health.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// A job (an ingest or an evaluation) running longer than this counts
    /// as stuck: WATCHDOG pings stop, and systemd restarts the service.
    #[serde(default = "default_stuck_after")]
    pub stuck_after_secs: u64,
}

fn default_stuck_after() -> u64 {
    600
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            stuck_after_secs: default_stuck_after(),
        }
    }
}

fn default_log() -> String {
    "info".to_string()
}

/// When the daemon evaluates without new data, and in which time zone
/// "today" is. Read as text and parsed once, when the config is loaded
/// (`validate` reports what cannot be read); the rest of kamwatch uses
/// `times` and `zone`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Local times of day, `HH:MM`, at which the daemon evaluates, as written.
    #[serde(default = "default_times", rename = "times")]
    pub(super) times_text: Vec<String>,
    /// IANA time zone (`Asia/Shanghai`) or `local` for the system's, as written.
    #[serde(default = "default_timezone", rename = "timezone")]
    pub(super) timezone_text: String,
    /// The times of day, sorted, without repeats.
    #[serde(skip)]
    pub times: Vec<NaiveTime>,
    /// The zone "today" is counted in.
    #[serde(skip, default = "default_zone")]
    pub zone: Zone,
}

fn default_times() -> Vec<String> {
    vec!["07:30".to_string()]
}
fn default_timezone() -> String {
    "local".to_string()
}
fn default_zone() -> Zone {
    Zone::Local
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        let mut s = ScheduleConfig {
            times_text: default_times(),
            timezone_text: default_timezone(),
            times: Vec::new(),
            zone: default_zone(),
        };
        s.times = s.times_text.iter().filter_map(|t| parse_hhmm(t)).collect();
        s
    }
}

impl ScheduleConfig {
    /// The zone "today" is counted in (`schedule.timezone`).
    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// The scheduled times of day, sorted.
    pub fn times_of_day(&self) -> Vec<NaiveTime> {
        self.times.clone()
    }
}

/// A time of day as `HH:MM` (blanks around it allowed).
pub(super) fn parse_hhmm(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M").ok()
}

fn default_root() -> PathBuf {
    PathBuf::from(".")
}
fn default_inbox() -> PathBuf {
    PathBuf::from("inbox")
}
fn default_archive() -> PathBuf {
    PathBuf::from("var/archive")
}
fn default_rejected() -> PathBuf {
    PathBuf::from("var/rejected")
}
fn default_database() -> PathBuf {
    PathBuf::from("var/kamwatch.db")
}
fn default_rules() -> PathBuf {
    PathBuf::from("rules")
}

/// How accounts are ranked into tiers A/B/C.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Cumulative share of trailing-12-month revenue that is tier A.
    #[serde(default = "default_a_share")]
    pub a_share: f64,
    /// Cumulative share up to which an account is tier B.
    #[serde(default = "default_b_share")]
    pub b_share: f64,
    /// What the book is ranked by (`tiers.by`).
    #[serde(default)]
    pub by: TierBasis,
}

/// What tiers rank by: trailing-12-month revenue, gross profit (revenue -
/// cost), or both — the lower of the two tiers, so an account is A only if
/// it is A by revenue and by gross profit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TierBasis {
    #[default]
    Revenue,
    GrossProfit,
    Both,
}

impl TierBasis {
    /// The names `tiers.by` takes, in the config's spelling.
    pub const NAMES: [&'static str; 3] = ["revenue", "gross_profit", "both"];

    pub fn as_str(self) -> &'static str {
        match self {
            TierBasis::Revenue => "revenue",
            TierBasis::GrossProfit => "gross_profit",
            TierBasis::Both => "both",
        }
    }
}

impl std::fmt::Display for TierBasis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Read by hand rather than derived, so a number or a misspelling gets a
/// message listing the values `tiers.by` takes (serde_yaml adds the key
/// and the line).
impl<'de> Deserialize<'de> for TierBasis {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Basis;
        const EXPECTED: &str = "one of revenue, gross_profit or both (default revenue)";
        impl serde::de::Visitor<'_> for Basis {
            type Value = TierBasis;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TierBasis, E> {
                match v {
                    "revenue" => Ok(TierBasis::Revenue),
                    "gross_profit" => Ok(TierBasis::GrossProfit),
                    "both" => Ok(TierBasis::Both),
                    _ => Err(E::custom(format!(
                        "{v:?} is not a tier basis; use {EXPECTED}"
                    ))),
                }
            }
        }
        d.deserialize_any(Basis)
    }
}

fn default_a_share() -> f64 {
    0.80
}
fn default_b_share() -> f64 {
    0.95
}

impl Default for TierConfig {
    fn default() -> Self {
        TierConfig {
            a_share: default_a_share(),
            b_share: default_b_share(),
            by: TierBasis::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// A file is taken once its size and mtime have not changed for this long.
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
    /// After the last file of a batch, wait this long before evaluating
    /// (0: at once, once nothing else in the inbox is settling or waiting
    /// to be ingested).
    #[serde(default = "default_eval_debounce_ms")]
    pub eval_debounce_ms: u64,
    /// Poll the inbox instead of using inotify: for network shares (NFS,
    /// SMB), where the kernel sees no changes made by other machines.
    #[serde(default)]
    pub poll: bool,
    /// How often the polling watcher lists the inbox.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
}

fn default_settle_ms() -> u64 {
    300
}
fn default_eval_debounce_ms() -> u64 {
    0
}
fn default_poll_interval_ms() -> u64 {
    2000
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            settle_ms: default_settle_ms(),
            eval_debounce_ms: default_eval_debounce_ms(),
            poll: false,
            poll_interval_ms: default_poll_interval_ms(),
        }
    }
}

/// Alert lifecycle defaults (every rule) and per-rule overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Evaluations (on distinct days) a rule must raise an alert before it fires.
    #[serde(default = "default_for_evaluations")]
    pub for_evaluations: u32,
    /// Days between reminders while an alert keeps firing; 0 = never.
    #[serde(default = "default_repeat_interval_days")]
    pub repeat_interval_days: u32,
    /// Mail a notice when an alert resolves.
    #[serde(default = "default_true")]
    pub notify_resolved: bool,
    /// Days an alert stays firing after its condition clears (hysteresis).
    #[serde(default)]
    pub keep_firing_for_days: u32,
    /// Days of firing after which the manager is told too; 0 = never.
    #[serde(default = "default_escalate_after_days")]
    pub escalate_after_days: u32,
    /// Days of firing after which an alert still raised gets a final
    /// notice and is closed; 0 = never.
    #[serde(default)]
    pub close_after_days: u32,
    /// Critical alerts also go to the account's manager.
    #[serde(default = "default_true")]
    pub escalate_critical: bool,
    /// Days of alert history and notices kept; at least the longest repeat interval.
    #[serde(default = "default_history_retention_days")]
    pub history_retention_days: u32,
    /// Per-rule settings, by rule name: the same as `rule_settings`, read
    /// into it when the config is parsed (empty afterwards).
    #[serde(default, deserialize_with = "unique_map")]
    pub rules: BTreeMap<String, RuleSettings>,
    /// The most alerts one rule may raise for one account in one run; past
    /// it the run fails (named, reported to the admin).
    #[serde(default = "default_max_per_account")]
    pub max_per_account: usize,
    /// The most alerts one rule may raise in one evaluation; the accounts
    /// past it count as failed for that rule.
    #[serde(default = "default_max_per_rule")]
    pub max_per_rule: usize,
}

/// Defaults of `alerts.max_per_account` and `alerts.max_per_rule`.
pub const DEFAULT_MAX_ALERTS_PER_ACCOUNT: usize = 100;
pub const DEFAULT_MAX_ALERTS_PER_RULE: usize = 25_000;

fn default_max_per_account() -> usize {
    DEFAULT_MAX_ALERTS_PER_ACCOUNT
}
fn default_max_per_rule() -> usize {
    DEFAULT_MAX_ALERTS_PER_RULE
}

fn default_for_evaluations() -> u32 {
    1
}
fn default_repeat_interval_days() -> u32 {
    7
}
fn default_escalate_after_days() -> u32 {
    14
}
fn default_history_retention_days() -> u32 {
    400
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            for_evaluations: default_for_evaluations(),
            repeat_interval_days: default_repeat_interval_days(),
            notify_resolved: true,
            keep_firing_for_days: 0,
            escalate_after_days: default_escalate_after_days(),
            close_after_days: 0,
            escalate_critical: true,
            history_retention_days: default_history_retention_days(),
            rules: BTreeMap::new(),
            max_per_account: default_max_per_account(),
            max_per_rule: default_max_per_rule(),
        }
    }
}

impl Config {
    /// The longest repeat interval the config gives any rule, in days.
    pub fn longest_repeat_days(&self) -> u32 {
        self.rule_settings
            .values()
            .filter_map(|r| r.repeat_interval_days)
            .chain([self.alerts.repeat_interval_days])
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiers(by: &str) -> Result<TierConfig, String> {
        let text = include_str!("../../config/kamwatch.yaml")
            .replace("  by: revenue\n", &format!("  by: {by}\n"));
        crate::config::parse(&text)
            .map(|c| c.tiers)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn tiers_by_takes_three_names_and_defaults_to_revenue() {
        for (name, want) in TierBasis::NAMES.iter().zip([
            TierBasis::Revenue,
            TierBasis::GrossProfit,
            TierBasis::Both,
        ]) {
            assert_eq!(tiers(name).map(|t| t.by), Ok(want));
            assert_eq!(want.as_str(), *name);
        }
        let text = include_str!("../../config/kamwatch.yaml").replace("  by: revenue\n", "");
        assert!(!text.contains("by: revenue"));
        let cfg = crate::config::parse(&text).unwrap();
        assert_eq!(cfg.tiers.by, TierBasis::Revenue);
    }

    #[test]
    fn a_bad_tiers_by_names_the_key_the_line_and_the_values() {
        let line = include_str!("../../config/kamwatch.yaml")
            .lines()
            .position(|l| l == "  by: revenue")
            .map(|i| i + 1)
            .unwrap();
        for bad in ["profit", "3", "Revenue", "[revenue]", "\"\""] {
            let e = tiers(bad).unwrap_err();
            assert!(e.starts_with("tiers.by: "), "{bad}: {e}");
            assert!(
                e.contains("revenue, gross_profit or both (default revenue)"),
                "{bad}: {e}"
            );
            assert!(e.contains(&format!("line {line}")), "{bad}: {e}");
        }
        assert!(
            tiers("profit")
                .unwrap_err()
                .contains("\"profit\" is not a tier basis")
        );
        assert!(tiers("3").unwrap_err().contains("3"));
    }

    /// The shipped config with its `seasons:` block's 双11 line replaced by
    /// `lines`, and the line number of the first of them.
    fn with_seasons(lines: &str) -> (String, usize) {
        let text = include_str!("../../config/kamwatch.yaml");
        let old = "  双11: { from: \"11-01\", to: \"11-11\" }\n";
        let line = text[..text.find(old).expect("the shipped 双11 season")]
            .lines()
            .count()
            + 1;
        (text.replacen(old, lines, 1), line)
    }

    #[test]
    fn a_season_name_given_twice_is_refused_with_its_line() {
        let (text, line) = with_seasons(
            "  双11: { from: \"11-01\", to: \"11-11\" }\n  双11: { from: \"11-05\", to: \"11-20\" }\n",
        );
        let e = crate::config::parse(&text).unwrap_err().to_string();
        assert!(
            e.starts_with("seasons.双11: the season 双11 is given twice"),
            "{e}"
        );
        assert!(e.contains("delete one, or give each its own name"), "{e}");
        assert!(e.contains(&format!("at line {}", line + 1)), "{e}");
        // Two names, the same dates: both kept.
        let (text, _) = with_seasons(
            "  双11: { from: \"11-01\", to: \"11-11\" }\n  Singles Day: { from: \"11-01\", to: \"11-11\" }\n",
        );
        let cfg = crate::config::parse(&text).unwrap();
        assert!(cfg.seasons.get("双11").is_some() && cfg.seasons.get("Singles Day").is_some());
    }

    #[test]
    fn a_blank_season_name_is_refused_with_its_line() {
        for blank in ["\"\"", "\"  \"", "\"\\u3000\""] {
            let (text, line) = with_seasons(&format!(
                "  {blank}: {{ from: \"11-05\", to: \"11-20\" }}\n"
            ));
            let e = crate::config::parse(&text).unwrap_err().to_string();
            assert!(e.contains("which is blank"), "{blank}: {e}");
            assert!(e.contains("give it a name"), "{blank}: {e}");
            assert!(e.contains(&format!("at line {line}")), "{blank}: {e}");
        }
    }

    #[test]
    fn a_rule_setting_or_a_column_given_twice_is_refused_with_its_line() {
        let base = include_str!("../../config/kamwatch.yaml");
        let twice = base.replacen(
            "\ndatasets:",
            "\nrule_settings:\n  margin_slip:\n    enabled: false\n  margin_slip:\n    repeat_interval_days: 3\ndatasets:",
            1,
        );
        let line = twice[..twice.find("    repeat_interval_days: 3").unwrap()]
            .lines()
            .count()
            + 1;
        let e = crate::config::parse(&twice).unwrap_err().to_string();
        assert!(
            e.starts_with("rule_settings.margin_slip: margin_slip is given twice, and only the last would be used; delete one"),
            "{e}"
        );
        assert!(e.contains(&format!("at line {line}")), "{e}");
        // alerts.rules, the older place, too.
        let old = base.replacen(
            "alerts:\n",
            "alerts:\n  rules:\n    order_gap: { repeat_days: 9 }\n    order_gap: { repeat_days: 3 }\n",
            1,
        );
        let e = crate::config::parse(&old).unwrap_err().to_string();
        assert!(
            e.starts_with("alerts.rules.order_gap: order_gap is given twice"),
            "{e}"
        );
        // A dataset's column named twice: the first would be dropped.
        let (field, column) = ("account_id: ", "客户编号");
        let at = base
            .find(&format!("{field}{column}"))
            .expect("the shipped orders' account column");
        let cols = format!("{}{field}客户编码\n      {}", &base[..at], &base[at..]);
        let e = crate::config::parse(&cols).unwrap_err().to_string();
        assert!(
            e.starts_with("datasets.orders.columns.account_id: account_id is given twice"),
            "{e}"
        );
        // Two rules, each once: both kept.
        let two = base.replacen(
            "\ndatasets:",
            "\nrule_settings:\n  margin_slip: { enabled: false }\n  order_gap: { enabled: false }\ndatasets:",
            1,
        );
        assert_eq!(crate::config::parse(&two).unwrap().rule_settings.len(), 2);
    }

    #[test]
    fn a_season_block_still_says_what_it_expects() {
        let (text, _) = with_seasons("  双11: \"11-01\"\n");
        let e = crate::config::parse(&text).unwrap_err().to_string();
        assert!(
            e.starts_with("seasons.双11: invalid type: string \"11-01\", expected a block of `from:` and `to:`"),
            "{e}"
        );
        let (text, _) = with_seasons("  双11: { from: \"11-01\", til: \"11-11\" }\n");
        let e = crate::config::parse(&text).unwrap_err().to_string();
        assert!(e.contains("unknown field `til`"), "{e}");
    }
}
