//! Configuration: the YAML file, its defaults and its validation.
//!
//! Owns the `Config` types and the rule that relative paths are resolved
//! against `root`, which is itself relative to the config file. Touches only
//! the config file it is asked to read; every other stage receives a loaded,
//! validated `Config` and never reads YAML itself. Defaults live here and are
//! mirrored, commented, in `config/kamwatch.yaml`. What it reads is bounded
//! before it is parsed: a regular file of at most 1 MiB whose YAML aliases
//! expand to at most 100,000 values.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A configuration that cannot be used. Maps to exit code 2.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config {}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for ConfigError {}

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
    #[serde(default)]
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
    /// The peaks rules plan around (`season("春节")`, `days_until_peak()`),
    /// by name: `from` and `to` as a month-day or a lunar date rule (see
    /// `crate::model::seasons`). Default: 春节, 618, 中秋 and 双11.
    #[serde(default = "default_seasons")]
    pub seasons: BTreeMap<String, SeasonConfig>,
}

/// One season of the config: its first and last day in every year.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
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

impl Config {
    /// The configured seasons, resolved; an error names the season and
    /// the date that cannot be read (`validate` has checked them).
    pub fn season_list(&self) -> Result<crate::model::seasons::Seasons, String> {
        let mut list = Vec::new();
        for (name, s) in &self.seasons {
            list.push(crate::model::seasons::Season::parse(name, &s.from, &s.to)?);
        }
        Ok(crate::model::seasons::Seasons { list })
    }
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
/// "today" is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Local times of day, `HH:MM`, at which the daemon evaluates.
    #[serde(default = "default_times")]
    pub times: Vec<String>,
    /// IANA time zone (`Asia/Shanghai`) or `local` for the system's.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

fn default_times() -> Vec<String> {
    vec!["07:30".to_string()]
}
fn default_timezone() -> String {
    "local".to_string()
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            times: default_times(),
            timezone: default_timezone(),
        }
    }
}

/// A time zone from the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    Local,
    Named(chrono_tz::Tz),
}

/// The one clock: the instant now. Everything under src/ that needs the
/// date or a timestamp asks here (the daemon's timers use `Instant`, which
/// is no date). `KAMWATCH_NOW` (RFC 3339, e.g. `2031-02-28T20:00:00Z`)
/// starts the clock at that instant instead of the wall clock, and it runs
/// on from there: tests and reproductions use it to pin "today".
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use std::sync::OnceLock;
    static START: OnceLock<Option<(chrono::DateTime<chrono::Utc>, std::time::Instant)>> =
        OnceLock::new();
    let start = START.get_or_init(|| {
        let text = std::env::var("KAMWATCH_NOW").ok()?;
        match chrono::DateTime::parse_from_rfc3339(text.trim()) {
            Ok(t) => Some((t.with_timezone(&chrono::Utc), std::time::Instant::now())),
            Err(_) => {
                eprintln!(
                    "kamwatch: warning: KAMWATCH_NOW={text:?} is not a time like 2031-02-28T20:00:00Z; using the system clock"
                );
                None
            }
        }
    });
    match start {
        Some((at, since)) => *at + chrono::Duration::from_std(since.elapsed()).unwrap_or_default(),
        None => chrono::Utc::now(),
    }
}

impl Zone {
    /// Today's date in this zone: the business date every command uses.
    pub fn today(self) -> chrono::NaiveDate {
        self.naive_now().date()
    }

    /// The wall-clock time now in this zone.
    pub fn naive_now(self) -> chrono::NaiveDateTime {
        self.naive_at(now())
    }

    /// The instant `at` as a mail Date header in this zone
    /// ("Mon, 30 Nov 2026 12:31:48 +0800").
    pub fn rfc2822(self, at: chrono::DateTime<chrono::Utc>) -> String {
        match self {
            Zone::Local => at.with_timezone(&chrono::Local).to_rfc2822(),
            Zone::Named(tz) => at.with_timezone(&tz).to_rfc2822(),
        }
    }

    /// The wall-clock time in this zone at the instant `at`.
    pub fn naive_at(self, at: chrono::DateTime<chrono::Utc>) -> chrono::NaiveDateTime {
        match self {
            Zone::Local => at.with_timezone(&chrono::Local).naive_local(),
            Zone::Named(tz) => at.with_timezone(&tz).naive_local(),
        }
    }
}

impl ScheduleConfig {
    pub fn zone(&self) -> Zone {
        parse_zone(&self.timezone).unwrap_or(Zone::Local)
    }

    /// The scheduled times of day, sorted.
    pub fn times_of_day(&self) -> Vec<chrono::NaiveTime> {
        let mut t: Vec<_> = self.times.iter().filter_map(|s| parse_hhmm(s)).collect();
        t.sort();
        t.dedup();
        t
    }
}

fn parse_zone(s: &str) -> Option<Zone> {
    if s == "local" {
        Some(Zone::Local)
    } else {
        s.parse::<chrono_tz::Tz>().ok().map(Zone::Named)
    }
}

fn parse_hhmm(s: &str) -> Option<chrono::NaiveTime> {
    chrono::NaiveTime::parse_from_str(s.trim(), "%H:%M").ok()
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

/// One rule's policy as one source states it: the script's `const SETTINGS`
/// or `rule_settings.<rule>` in the config (`alerts.rules.<rule>` is read as
/// the same). The same keys, with the same meaning and type, in every
/// place; a key left out keeps the value below it. Precedence: the config >
/// the script's SETTINGS > the `alerts:` defaults. The older names `for`,
/// `repeat_days` and `extra_recipients` are read as `for_evaluations`,
/// `repeat_interval_days` and `recipients` (`check` says so).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    /// Whether the rule runs at all.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Tiers the rule runs for ("A", "B", "C"); None: every tier.
    #[serde(default)]
    pub tiers: Option<Vec<String>>,
    /// Data the rule cannot fire without (see [`RuleSettings::NEEDS`]);
    /// accounts lacking any of it are skipped without running the script.
    #[serde(default)]
    pub needs: Option<Vec<String>>,
    /// Data the book must have at all (any active account), or the rule is
    /// skipped for every account: "never visited" needs visits in the
    /// book, not for the account.
    #[serde(default)]
    pub book_needs: Option<Vec<String>>,
    /// Severity of an `alert()` that names none: info, warning or critical.
    #[serde(default)]
    pub severity: Option<String>,
    /// Evaluations (on distinct days) an alert must be raised before it fires.
    #[serde(default)]
    pub for_evaluations: Option<u32>,
    /// Days between reminders while an alert keeps firing; 0 = never.
    #[serde(default)]
    pub repeat_interval_days: Option<u32>,
    /// Whether a resolved notice is mailed.
    #[serde(default)]
    pub notify_resolved: Option<bool>,
    /// Days an alert stays firing after its condition clears.
    #[serde(default)]
    pub keep_firing_for_days: Option<u32>,
    /// Days of firing after which the manager is told too; 0 = never.
    #[serde(default)]
    pub escalate_after_days: Option<u32>,
    /// Addresses mailed besides the account's owner.
    #[serde(default)]
    pub recipients: Option<Vec<String>>,
    // Older names, moved onto the ones above by `settle`.
    #[serde(default, rename = "for")]
    old_for: Option<u32>,
    #[serde(default, rename = "repeat_days")]
    old_repeat_days: Option<u32>,
    #[serde(default, rename = "extra_recipients")]
    old_extra_recipients: Option<Vec<String>>,
}

impl RuleSettings {
    /// Every key, in the order the docs list them.
    pub const KEYS: [&str; 11] = [
        "enabled",
        "tiers",
        "needs",
        "book_needs",
        "severity",
        "for_evaluations",
        "repeat_interval_days",
        "notify_resolved",
        "keep_firing_for_days",
        "escalate_after_days",
        "recipients",
    ];
    /// Older key names and the key each is read as.
    pub const OLD_NAMES: [(&str, &str); 3] = [
        ("for", "for_evaluations"),
        ("repeat_days", "repeat_interval_days"),
        ("extra_recipients", "recipients"),
    ];
    /// The data a rule may need.
    pub const NEEDS: [&str; 5] = ["orders", "visits", "receivables", "credit_limit", "stock"];

    /// Sets an older-named key (see [`RuleSettings::OLD_NAMES`]); the
    /// caller has checked the name.
    pub fn set_old_for(&mut self, n: u32) {
        self.old_for = Some(n);
    }
    pub fn set_old_repeat_days(&mut self, n: u32) {
        self.old_repeat_days = Some(n);
    }
    pub fn set_old_extra_recipients(&mut self, r: Vec<String>) {
        self.old_extra_recipients = Some(r);
    }

    /// Moves values given under an older name onto the key's name. Returns
    /// the older names used; a key given under both names is an error.
    pub fn settle(&mut self) -> Result<Vec<&'static str>, String> {
        let mut used = Vec::new();
        fn take<T>(
            new: &mut Option<T>,
            old: &mut Option<T>,
            names: (&'static str, &'static str),
            used: &mut Vec<&'static str>,
        ) -> Result<(), String> {
            if let Some(v) = old.take() {
                if new.is_some() {
                    return Err(format!(
                        "both `{}` and its older name `{}` are given; keep `{}`",
                        names.1, names.0, names.1
                    ));
                }
                *new = Some(v);
                used.push(names.0);
            }
            Ok(())
        }
        let [f, r, e] = Self::OLD_NAMES;
        take(&mut self.for_evaluations, &mut self.old_for, f, &mut used)?;
        take(
            &mut self.repeat_interval_days,
            &mut self.old_repeat_days,
            r,
            &mut used,
        )?;
        take(
            &mut self.recipients,
            &mut self.old_extra_recipients,
            e,
            &mut used,
        )?;
        Ok(used)
    }

    /// Checks each value; errors start with the key, e.g. "tiers: ...".
    pub fn validate(&self) -> Result<(), String> {
        if let Some(ts) = &self.tiers {
            if ts.is_empty() {
                return Err("tiers: an empty list would leave the rule no account; list the tiers it runs for, or set enabled: false to switch it off".into());
            }
            if let Some(t) = ts.iter().enumerate().find(|(i, t)| ts[..*i].contains(t)) {
                return Err(format!("tiers: {:?} is listed twice", t.1));
            }
        }
        for t in self.tiers.iter().flatten() {
            if !matches!(t.as_str(), "A" | "B" | "C") {
                return Err(format!(
                    "tiers: {t:?} is not a tier; use \"A\", \"B\" or \"C\""
                ));
            }
        }
        for (key, names) in [("needs", &self.needs), ("book_needs", &self.book_needs)] {
            for n in names.iter().flatten() {
                if !Self::NEEDS.contains(&n.as_str()) {
                    return Err(format!(
                        "{key}: {n:?} is not one of {}",
                        Self::NEEDS.join(", ")
                    ));
                }
            }
        }
        if let Some(s) = &self.severity
            && !matches!(s.as_str(), "info" | "warning" | "critical")
        {
            return Err(format!(
                "severity: {s:?} is not one of info, warning, critical"
            ));
        }
        if self.for_evaluations == Some(0) {
            return Err(
                "for_evaluations: must be at least 1 (1 = fire on the first evaluation that raises it)"
                    .into(),
            );
        }
        for r in self.recipients.iter().flatten() {
            if !sendable_address(r) {
                return Err(format!(
                    "recipients: {r:?} is not a mail address like name@example.com"
                ));
            }
        }
        Ok(())
    }

    /// `upper`'s keys over this one's: what a higher source says wins, key
    /// by key.
    pub fn overlay(&mut self, upper: &RuleSettings) {
        fn over<T: Clone>(low: &mut Option<T>, up: &Option<T>) {
            if up.is_some() {
                low.clone_from(up);
            }
        }
        over(&mut self.enabled, &upper.enabled);
        over(&mut self.tiers, &upper.tiers);
        over(&mut self.needs, &upper.needs);
        over(&mut self.book_needs, &upper.book_needs);
        over(&mut self.severity, &upper.severity);
        over(&mut self.for_evaluations, &upper.for_evaluations);
        over(&mut self.repeat_interval_days, &upper.repeat_interval_days);
        over(&mut self.notify_resolved, &upper.notify_resolved);
        over(&mut self.keep_firing_for_days, &upper.keep_firing_for_days);
        over(&mut self.escalate_after_days, &upper.escalate_after_days);
        over(&mut self.recipients, &upper.recipients);
    }

    /// The keys this one sets.
    fn keys_set(&self) -> Vec<&'static str> {
        let set = [
            self.enabled.is_some(),
            self.tiers.is_some(),
            self.needs.is_some(),
            self.book_needs.is_some(),
            self.severity.is_some(),
            self.for_evaluations.is_some(),
            self.repeat_interval_days.is_some(),
            self.notify_resolved.is_some(),
            self.keep_firing_for_days.is_some(),
            self.escalate_after_days.is_some(),
            self.recipients.is_some(),
        ];
        Self::KEYS
            .iter()
            .zip(set)
            .filter_map(|(k, s)| s.then_some(*k))
            .collect()
    }
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
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// A file is taken once its size and mtime have not changed for this long.
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
    /// After the last file of a batch, wait this long before evaluating.
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
    200
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// The From: of every warning.
    #[serde(default = "default_from")]
    pub from: String,
    /// Where messages go when no SMTP server is configured: one .eml a message.
    #[serde(default = "default_mail_dir")]
    pub dir: PathBuf,
    /// Who gets warnings for accounts that have no owner email.
    #[serde(default)]
    pub catch_all: Option<String>,
    /// Who gets mail about kamwatch's own problems (rules that fail to run),
    /// and warnings nobody else can be found for.
    #[serde(default)]
    pub admin: Option<String>,
    #[serde(default)]
    pub digest: DigestConfig,
    /// Recurring quiet windows: mail is held and sent after the window.
    #[serde(default)]
    pub quiet: Vec<QuietWindow>,
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// Language of the shipped templates: `zh-CN` or `en`.
    #[serde(default = "default_locale")]
    pub locale: String,
    /// Currency of the amounts in the exports, as an ISO 4217 code (CNY):
    /// money figures are written with its symbol (¥22,930; ¥2.29万 in
    /// Chinese).
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Folder of user-edited templates (`<locale>/<name>`); a template
    /// missing there falls back to the one built in. Default: `templates`
    /// beside the config file.
    #[serde(default)]
    pub templates: Option<PathBuf>,
    /// Months of revenue and margin the chart in a warning shows.
    #[serde(default = "default_chart_months")]
    pub chart_months: usize,
    /// At most this many charts in one digest (its most important items).
    #[serde(default = "default_charts_per_digest")]
    pub charts_per_digest: usize,
    /// Largest message, in KiB: a digest over it (or over the SIZE the
    /// server announces) first loses charts, then is split into parts.
    #[serde(default = "default_max_message_kb")]
    pub max_message_kb: u64,
    /// `schedule.timezone`, copied here when the config is parsed: the
    /// Date header of every message is written in it.
    #[serde(skip, default = "default_mail_zone")]
    pub zone: Zone,
}

fn default_mail_zone() -> Zone {
    Zone::Local
}

fn default_locale() -> String {
    "zh-CN".to_string()
}
fn default_currency() -> String {
    crate::format::DEFAULT_CURRENCY.to_string()
}
fn default_chart_months() -> usize {
    18
}
fn default_charts_per_digest() -> usize {
    50
}
fn default_max_message_kb() -> u64 {
    10240
}

/// How notices are grouped into messages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestConfig {
    /// One message per recipient per evaluation listing every notice;
    /// false: one message per notice.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Critical notices go at once in a message of their own.
    #[serde(default)]
    pub critical_immediately: bool,
}

fn default_true() -> bool {
    true
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            enabled: true,
            critical_immediately: false,
        }
    }
}

/// A recurring time without mail: weekdays, or a date range given as
/// YYYY-MM-DD (once) or MM-DD (every year), both ends inclusive.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietWindow {
    #[serde(default)]
    pub name: Option<String>,
    /// e.g. [sat, sun]
    #[serde(default)]
    pub weekdays: Vec<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
}

fn default_from() -> String {
    "kamwatch <kamwatch@localhost>".to_string()
}
fn default_mail_dir() -> PathBuf {
    PathBuf::from("var/mail")
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            from: default_from(),
            dir: default_mail_dir(),
            catch_all: None,
            admin: None,
            digest: DigestConfig::default(),
            quiet: Vec::new(),
            smtp: None,
            locale: default_locale(),
            currency: default_currency(),
            templates: None,
            chart_months: default_chart_months(),
            charts_per_digest: default_charts_per_digest(),
            max_message_kb: default_max_message_kb(),
            zone: default_mail_zone(),
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
    /// Critical alerts also go to the account's manager.
    #[serde(default = "default_true")]
    pub escalate_critical: bool,
    /// Days of alert history and notices kept; at least the longest repeat interval.
    #[serde(default = "default_history_retention_days")]
    pub history_retention_days: u32,
    /// Per-rule settings, by rule name: the same as `rule_settings`, read
    /// into it when the config is parsed (empty afterwards).
    #[serde(default)]
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

fn default_max_per_account() -> usize {
    crate::rules::DEFAULT_MAX_ALERTS_PER_ACCOUNT
}
fn default_max_per_rule() -> usize {
    crate::rules::DEFAULT_MAX_ALERTS_PER_RULE
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required.
    Starttls,
    /// Implicit TLS from the first byte (usually port 465).
    Tls,
    /// No encryption at all: only for a server on loopback.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default = "default_security")]
    pub security: SmtpSecurity,
    #[serde(default)]
    pub user: Option<String>,
    /// Name of the environment variable that holds the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file holding the password (first line); it must not be readable
    /// by group or others.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM file of CA certificates to trust besides the public roots
    /// (a company CA, or a self-signed test server).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds before a connection attempt or command gives up.
    #[serde(default = "default_smtp_timeout")]
    pub timeout_secs: u64,
    /// Seconds one message may take in all (connecting, every command and
    /// the data): a server that answers slowly, a byte at a time, cannot
    /// hold delivery longer than this.
    #[serde(default = "default_message_deadline")]
    pub message_deadline_secs: u64,
}

fn default_security() -> SmtpSecurity {
    SmtpSecurity::Starttls
}
fn default_smtp_timeout() -> u64 {
    30
}
fn default_message_deadline() -> u64 {
    120
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datasets {
    pub accounts: DatasetConfig,
    pub orders: DatasetConfig,
    pub visits: DatasetConfig,
    /// Optional: without it no file is routed to receivables.
    #[serde(default)]
    pub receivables: Option<DatasetConfig>,
    /// Optional: without it no file is routed to inventory.
    #[serde(default)]
    pub inventory: Option<DatasetConfig>,
}

/// One dataset: which files hold it, how their columns are named and how
/// the export writes its text and values.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Glob patterns (`*` and `?`) matched against the file name.
    pub files: Vec<String>,
    /// Canonical field -> the export's own column name.
    pub columns: BTreeMap<String, String>,
    /// Text encoding of CSV and JSON Lines files.
    #[serde(default)]
    pub encoding: TextEncoding,
    /// CSV field delimiter: one character (`,` `;` `|`, or `tab`); by default
    /// the one the header line uses most of `,` `;` and tab.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// Worksheet of XLSX/XLS workbooks; by default the first.
    #[serde(default)]
    pub sheet: Option<String>,
    /// How dates that do not start with a 4-digit year are read.
    #[serde(default)]
    pub date_order: DateOrder,
    /// Event datasets (orders, visits): the canonical fields that identify a
    /// row, so a re-exported row replaces the one stored before. Default:
    /// orders `[order_id, line]`, visits `[account_id, date, visitor]`.
    #[serde(default)]
    pub key: Option<Vec<String>>,
    /// What a row that does not validate does to its file.
    #[serde(default)]
    pub on_error: OnError,
    /// Two rows of one file with the same key: `reject` the file (default,
    /// naming both lines) or `keep_last`.
    #[serde(default)]
    pub duplicate_keys: DuplicateKeys,
}

/// A dataset that is not configured: no file matches it.
static UNCONFIGURED: DatasetConfig = DatasetConfig {
    files: Vec::new(),
    columns: BTreeMap::new(),
    encoding: TextEncoding::Auto,
    delimiter: None,
    sheet: None,
    date_order: DateOrder::Ymd,
    key: None,
    on_error: OnError::RejectFile,
    duplicate_keys: DuplicateKeys::Reject,
};

impl DatasetConfig {
    /// The delimiter byte set in config, if any (validated at load).
    pub fn delimiter_byte(&self) -> Option<u8> {
        self.delimiter.as_deref().and_then(parse_delimiter)
    }

    /// The upsert key of an event dataset: from config or the default.
    pub fn key_fields(&self, d: Dataset) -> Vec<String> {
        match &self.key {
            Some(k) => k.clone(),
            None => d.default_key().iter().map(|f| (*f).to_string()).collect(),
        }
    }
}

fn parse_delimiter(s: &str) -> Option<u8> {
    match s {
        "tab" | "\\t" | "\t" => Some(b'\t'),
        _ if s.len() == 1 && s.is_ascii() && s != "\"" && s != "\n" && s != "\r" => {
            Some(s.as_bytes()[0])
        }
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum TextEncoding {
    /// A BOM or valid UTF-8 means UTF-8, anything else GB18030.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "utf-8", alias = "utf8")]
    Utf8,
    /// Read as GB18030, its superset.
    #[serde(rename = "gbk")]
    Gbk,
    #[serde(rename = "gb18030")]
    Gb18030,
}

/// The order of day, month and year in dates like 01/02/2026.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DateOrder {
    #[default]
    Ymd,
    Dmy,
    Mdy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Any bad row rejects the whole file; nothing of it is stored.
    #[default]
    RejectFile,
    /// Good rows are stored; bad rows are listed in `<name>.errors.txt`
    /// beside the archived file.
    SkipRows,
}

/// What two rows of one file with the same key do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateKeys {
    /// The file is rejected, naming both lines: a silent merge loses rows.
    #[default]
    Reject,
    /// The last row of the file with the key is stored.
    KeepLast,
}

/// The datasets kamwatch knows, with their canonical fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dataset {
    Accounts,
    Orders,
    Visits,
    Receivables,
    Inventory,
}

impl Dataset {
    pub const ALL: [Dataset; 5] = [
        Dataset::Accounts,
        Dataset::Orders,
        Dataset::Visits,
        Dataset::Receivables,
        Dataset::Inventory,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dataset::Accounts => "accounts",
            Dataset::Orders => "orders",
            Dataset::Visits => "visits",
            Dataset::Receivables => "receivables",
            Dataset::Inventory => "inventory",
        }
    }

    /// Snapshots replace what the previous file said; events accumulate.
    pub fn is_snapshot(self) -> bool {
        !matches!(self, Dataset::Orders | Dataset::Visits)
    }

    /// The fields that identify an event row by default (the table's key).
    pub fn default_key(self) -> &'static [&'static str] {
        match self {
            Dataset::Orders => &["order_id", "line"],
            Dataset::Visits => &["account_id", "date", "visitor"],
            Dataset::Accounts => &["id"],
            Dataset::Receivables => &["account_id", "invoice"],
            Dataset::Inventory => &["sku", "account_id"],
        }
    }

    /// Canonical fields: (name, required).
    pub fn fields(self) -> &'static [(&'static str, bool)] {
        match self {
            Dataset::Accounts => &[
                ("id", true),
                ("name", true),
                ("region", false),
                ("owner", false),
                ("owner_email", false),
                ("manager_email", false),
                ("manager", false),
                ("credit_limit", false),
                ("tier", false),
            ],
            Dataset::Orders => &[
                ("order_id", true),
                ("line", false),
                ("account_id", true),
                ("date", true),
                ("sku", false),
                ("qty", false),
                ("revenue", true),
                ("cost", true),
            ],
            Dataset::Visits => &[
                ("account_id", true),
                ("date", true),
                ("visitor", false),
                ("role", false),
            ],
            Dataset::Receivables => &[
                ("account_id", true),
                ("invoice", true),
                ("amount", true),
                ("due_date", true),
                ("invoice_date", false),
            ],
            Dataset::Inventory => &[("sku", true), ("on_hand", true), ("account_id", false)],
        }
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Datasets {
    pub fn get(&self, d: Dataset) -> &DatasetConfig {
        match d {
            Dataset::Accounts => &self.accounts,
            Dataset::Orders => &self.orders,
            Dataset::Visits => &self.visits,
            Dataset::Receivables => self.receivables.as_ref().unwrap_or(&UNCONFIGURED),
            Dataset::Inventory => self.inventory.as_ref().unwrap_or(&UNCONFIGURED),
        }
    }

    /// The dataset whose file patterns match `file_name`, if any.
    pub fn route(&self, file_name: &str) -> Option<Dataset> {
        Dataset::ALL
            .into_iter()
            .find(|d| self.get(*d).files.iter().any(|p| glob_match(p, file_name)))
    }
}

/// `*` matches any run of characters, `?` one character; the rest literally.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A loaded config with every path made absolute.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub file: PathBuf,
    pub cfg: Config,
}

impl Loaded {
    /// "Today": the date in `schedule.timezone` now. A command computes it
    /// once when it starts and passes it down; the daemon asks again for
    /// each evaluation and each archived file.
    pub fn today(&self) -> chrono::NaiveDate {
        self.cfg.schedule.zone().today()
    }
    pub fn inbox(&self) -> PathBuf {
        self.resolve(&self.cfg.inbox)
    }
    pub fn archive(&self) -> PathBuf {
        self.resolve(&self.cfg.archive)
    }
    pub fn rejected(&self) -> PathBuf {
        self.resolve(&self.cfg.rejected)
    }
    pub fn database(&self) -> PathBuf {
        self.resolve(&self.cfg.database)
    }
    pub fn rules(&self) -> PathBuf {
        self.resolve(&self.cfg.rules)
    }
    pub fn mail_dir(&self) -> PathBuf {
        self.resolve(&self.cfg.mail.dir)
    }
    /// How figures are written: `mail.locale` and `mail.currency`.
    pub fn style(&self) -> crate::format::Style {
        crate::format::Style::new(
            crate::format::Locale::parse(&self.cfg.mail.locale).unwrap_or_default(),
            &self.cfg.mail.currency,
        )
    }
    /// The folder of user-edited mail templates.
    pub fn templates_dir(&self) -> PathBuf {
        match &self.cfg.mail.templates {
            Some(p) => self.resolve(p),
            None => self
                .file
                .parent()
                .unwrap_or(Path::new("."))
                .join("templates"),
        }
    }
    /// A path from the config (e.g. mail.smtp.ca_file), resolved like the others.
    pub fn path(&self, p: &Path) -> PathBuf {
        self.resolve(p)
    }

    fn root(&self) -> PathBuf {
        let dir = self.file.parent().unwrap_or(Path::new("."));
        dir.join(&self.cfg.root)
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            normalize(&self.root().join(p))
        }
    }
}

/// Drops `.` and folds `dir/..` so paths in messages read well.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Reads and validates the config at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let err = |message: String| ConfigError {
        path: path.to_path_buf(),
        message,
    };
    let text = read_bounded(path).map_err(err)?;
    let cfg = parse(&text).map_err(err)?;
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let loaded = Loaded { file, cfg };
    check_folders(&loaded).map_err(err)?;
    Ok(loaded)
}

/// Every file in the inbox is taken as an export: a folder kamwatch writes
/// (archive, rejected, mail, the database's) inside it would feed kamwatch
/// its own output, a rejected file's reason rejected again without end.
fn check_folders(cfg: &Loaded) -> Result<(), String> {
    let inbox = cfg.inbox();
    let real = |p: &Path| normalize(&std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()));
    let database_dir = cfg
        .database()
        .parent()
        .map_or_else(|| cfg.database(), Path::to_path_buf);
    for (key, dir) in [
        ("archive", cfg.archive()),
        ("rejected", cfg.rejected()),
        ("mail.dir", cfg.mail_dir()),
        ("database", database_dir),
    ] {
        if dir.starts_with(&inbox) || real(&dir).starts_with(real(&inbox)) {
            return Err(format!(
                "`{key}` ({}) is the inbox ({}) or inside it: kamwatch would take what it writes there as new exports. Point `{key}` outside the inbox",
                dir.display(),
                inbox.display()
            ));
        }
    }
    Ok(())
}

/// The largest config file read: the shipped one is about 10 KiB.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// The most values (scalars, sequences, mappings) a config may hold once
/// its YAML aliases are expanded; the shipped one holds a few hundred.
pub const MAX_CONFIG_VALUES: usize = 100_000;

/// The file's text, refused if larger than [`MAX_CONFIG_BYTES`] (read with a
/// limit, so a FIFO or a growing file cannot make it larger) or not UTF-8.
fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let cannot =
        |e: std::io::Error| format!("cannot read it: {e}; pass another file with --config PATH");
    // Not a FIFO or a device: opening one would wait for a writer.
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if !meta.is_file() {
        return Err("it is not a regular file; pass the config file with --config PATH".into());
    }
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "it is larger than {} KiB, which no kamwatch config needs (the shipped one is about 10 KiB); is it the right file?",
            MAX_CONFIG_BYTES / 1024
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "it is not UTF-8 text (invalid byte at offset {}); save it as UTF-8",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Walks the YAML as the deserializer will, aliases expanded, counting
/// values and storing none: refuses text that expands past
/// [`MAX_CONFIG_VALUES`] ("billion laughs") before anything is built from it.
fn check_expansion(text: &str) -> Result<(), String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

    struct Count<'a>(&'a std::cell::Cell<usize>);

    impl Count<'_> {
        fn one<E: serde::de::Error>(&self) -> Result<(), E> {
            let n = self.0.get() + 1;
            self.0.set(n);
            if n > MAX_CONFIG_VALUES {
                Err(E::custom(TOO_MANY))
            } else {
                Ok(())
            }
        }
    }

    const TOO_MANY: &str = "too many values";

    impl<'de> DeserializeSeed<'de> for Count<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Count<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any YAML value")
        }
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
            self.one()
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
            self.one()
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
            self.one()
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
            self.one()
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
            self.one()
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
            self.one()
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
            self.one()
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
        fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
        fn visit_enum<A: serde::de::EnumAccess<'de>>(self, a: A) -> Result<(), A::Error> {
            use serde::de::VariantAccess as _;
            self.one()?;
            let ((), v) = a.variant_seed(Count(self.0))?;
            v.newtype_variant_seed(Count(self.0))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
            self.one()?;
            while a.next_element_seed(Count(self.0))?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
            self.one()?;
            while a.next_key_seed(Count(self.0))?.is_some() {
                a.next_value_seed(Count(self.0))?;
            }
            Ok(())
        }
    }

    let n = std::cell::Cell::new(0);
    match Count(&n).deserialize(serde_yaml::Deserializer::from_str(text)) {
        Err(_) if n.get() > MAX_CONFIG_VALUES => Err(format!(
            "it holds more than {MAX_CONFIG_VALUES} values once its YAML aliases (*name) are expanded, which no kamwatch config needs; write the values out or use fewer aliases"
        )),
        // Any other fault is reported, with its line, by the real parse.
        _ => Ok(()),
    }
}

/// Parses and validates config text. Errors name the key and its line.
pub fn parse(text: &str) -> Result<Config, String> {
    check_expansion(text)?;
    let mut cfg: Config = serde_yaml::from_str(text).map_err(|e| {
        let msg = e.to_string();
        if msg.contains("unknown field") {
            format!("{msg}. Fix the spelling or remove the key.")
        } else {
            msg
        }
    })?;
    settle_rule_settings(&mut cfg)?;
    validate(&cfg)?;
    cfg.mail.zone = cfg.schedule.zone();
    validate_log(&cfg.log).map_err(|m| match line_of(text, "log") {
        Some(n) => format!("log (line {n}): {m}"),
        None => format!("log: {m}"),
    })?;
    Ok(cfg)
}

/// The line (1-based) of a top-level `key:` in the YAML text.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

/// `log:` is a level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or
/// comma-separated `target=level` directives. Anything else would make the
/// log filter refuse it and every line, errors included, go unlogged.
fn validate_log(log: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let bad = log.trim().is_empty()
        || log.split(',').any(|d| {
            let level = d.rsplit_once('=').map_or(d, |(_, l)| l).trim();
            !LEVELS.contains(&level.to_ascii_lowercase().as_str())
        });
    if bad {
        return Err(format!(
            "{log:?} is not a log level; use error, warn, info, debug or trace, or e.g. kamwatch=debug"
        ));
    }
    Ok(())
}

/// What `run` would refuse later or change on its own, though the config
/// parses: `check` reports each, and the daemon logs each as a warning when
/// it starts. `refused` ones make `check` exit 1.
#[derive(Debug, Clone)]
pub struct Finding {
    pub refused: bool,
    pub message: String,
}

/// The [`Finding`]s for a loaded config: one validation for `check` and
/// `run`.
pub fn findings(cfg: &Loaded) -> Vec<Finding> {
    let mut out: Vec<Finding> = cfg
        .cfg
        .notes
        .iter()
        .map(|n| Finding {
            refused: false,
            message: n.clone(),
        })
        .collect();
    let inbox = cfg.inbox();
    if !inbox.is_dir() {
        out.push(Finding {
            refused: false,
            message: format!(
                "inbox {} does not exist; `run` creates it. Check the path if exports are dropped elsewhere",
                inbox.display()
            ),
        });
    }
    if let Some(f) = cfg
        .cfg
        .mail
        .smtp
        .as_ref()
        .and_then(|s| s.password_file.as_ref())
        && let Err(e) = crate::mail::smtp::read_password_file(&cfg.path(f))
    {
        out.push(Finding {
            refused: true,
            message: format!("{e:#}; no mail can be sent until then"),
        });
    }
    let rules = cfg.rules();
    let has_rules = std::fs::read_dir(&rules).is_ok_and(|rd| {
        rd.filter_map(|e| e.ok())
            .any(|e| e.path().extension().is_some_and(|x| x == "rhai"))
    });
    if rules.is_dir() && !has_rules {
        out.push(Finding {
            refused: true,
            message: format!(
                "no rules in {}: nothing will ever fire; copy the shipped rules/ there or set `rules:`",
                rules.display()
            ),
        });
    }
    out
}

/// One home for per-rule settings: older key names are moved onto their
/// names, and `alerts.rules` (an older place for the same settings) is read
/// into `rule_settings`. What was moved is kept in `notes` for `check` and
/// the daemon's start-up log; a key given twice is an error.
fn settle_rule_settings(cfg: &mut Config) -> Result<(), String> {
    for (place, map) in [
        ("rule_settings", &mut cfg.rule_settings),
        ("alerts.rules", &mut cfg.alerts.rules),
    ] {
        for (name, s) in map.iter_mut() {
            let used = s.settle().map_err(|e| format!("{place}.{name}: {e}"))?;
            for old in used {
                let new = RuleSettings::OLD_NAMES
                    .iter()
                    .find(|(o, _)| *o == old)
                    .map_or(old, |(_, n)| *n);
                cfg.notes.push(format!(
                    "{place}.{name}.{old} is read as `{new}`, its name now; rename it"
                ));
            }
        }
    }
    for (name, s) in std::mem::take(&mut cfg.alerts.rules) {
        let here = cfg.rule_settings.entry(name.clone()).or_default();
        let twice: Vec<_> = s
            .keys_set()
            .into_iter()
            .filter(|k| here.keys_set().contains(k))
            .collect();
        if !twice.is_empty() {
            return Err(format!(
                "rule {name}: {} set both in rule_settings.{name} and in alerts.rules.{name}; keep one (rule_settings)",
                twice.join(", ")
            ));
        }
        here.overlay(&s);
        cfg.notes.push(format!(
            "alerts.rules.{name} is read as rule_settings.{name}, the one place for a rule's settings; move it there"
        ));
    }
    Ok(())
}

fn validate(cfg: &Config) -> Result<(), String> {
    cfg.season_list()?;
    let i = &cfg.ingest;
    if !(1024..=1 << 30).contains(&i.max_record_bytes) {
        return Err(format!(
            "ingest.max_record_bytes: {} is out of range; use 1024 to 1073741824 (default 1048576)",
            i.max_record_bytes
        ));
    }
    if !(1..=16384).contains(&i.max_unpacked_mib) {
        return Err(format!(
            "ingest.max_unpacked_mib: {} is out of range; use 1 to 16384 (default 512)",
            i.max_unpacked_mib
        ));
    }
    if !(1..=i.max_unpacked_mib).contains(&i.max_in_memory_mib) {
        return Err(format!(
            "ingest.max_in_memory_mib: {} is out of range; use 1 to max_unpacked_mib ({}) (default 128)",
            i.max_in_memory_mib, i.max_unpacked_mib
        ));
    }
    if i.max_sheet_rows == 0 {
        return Err("ingest.max_sheet_rows: must be at least 1 (default 1048576)".into());
    }
    if !(i.max_amount.is_finite() && i.max_amount >= 1.0 && i.max_amount <= 1e15) {
        return Err(format!(
            "ingest.max_amount: {} is out of range; use 1 to 1e15 (default 1e12)",
            i.max_amount
        ));
    }
    let pct = i.max_accounts_switched_off_pct;
    if !(0.0..=100.0).contains(&pct) {
        return Err(format!(
            "ingest.max_accounts_switched_off_pct: {pct} is out of range; use 0 to 100 (default 20; 100 applies every master as it is)"
        ));
    }
    let t = &cfg.tiers;
    if !(0.0 < t.a_share && t.a_share <= t.b_share && t.b_share <= 1.0) {
        return Err(format!(
            "tiers: need 0 < a_share <= b_share <= 1, got a_share {} and b_share {}",
            t.a_share, t.b_share
        ));
    }
    for (name, o) in &cfg.rule_settings {
        o.validate()
            .map_err(|e| format!("rule_settings.{name}.{e}"))?;
    }
    for d in Dataset::ALL {
        let optional = matches!(d, Dataset::Receivables | Dataset::Inventory);
        let ds = match d {
            Dataset::Receivables => match &cfg.datasets.receivables {
                Some(ds) => ds,
                None => continue,
            },
            Dataset::Inventory => match &cfg.datasets.inventory {
                Some(ds) => ds,
                None => continue,
            },
            _ => cfg.datasets.get(d),
        };
        if ds.files.is_empty() && !optional {
            return Err(format!(
                "datasets.{d}.files: give at least one file name pattern"
            ));
        }
        let known: Vec<&str> = d.fields().iter().map(|(f, _)| *f).collect();
        for key in ds.columns.keys() {
            if !known.contains(&key.as_str()) {
                return Err(format!(
                    "datasets.{d}.columns: unknown field `{key}`; the fields of {d} are {}",
                    known.join(", ")
                ));
            }
        }
        for (field, required) in d.fields() {
            if *required && !ds.columns.contains_key(*field) {
                return Err(format!(
                    "datasets.{d}.columns: the required field `{field}` has no column; add `{field}: <column name in the export>`"
                ));
            }
        }
        validate_dataset_options(d, ds)?;
    }
    if cfg.watch.poll && cfg.watch.poll_interval_ms == 0 {
        return Err("watch.poll_interval_ms: must be at least 1".into());
    }
    for t in &cfg.schedule.times {
        if parse_hhmm(t).is_none() {
            return Err(format!(
                "schedule.times: {t:?} is not a time of day; write it as HH:MM, e.g. \"07:30\""
            ));
        }
    }
    if cfg.review.day_of_month > 28 {
        return Err(format!(
            "review.day_of_month is {}; use 1 to 28 (so every month has it), or 0 for no review mail",
            cfg.review.day_of_month
        ));
    }
    if parse_zone(&cfg.schedule.timezone).is_none() {
        return Err(format!(
            "schedule.timezone: {:?} is not a time zone; use an IANA name such as Asia/Shanghai, or `local`",
            cfg.schedule.timezone
        ));
    }
    validate_alerts(cfg)?;
    if let Some(smtp) = &cfg.mail.smtp {
        if smtp.host.trim().is_empty() {
            return Err(
                "mail.smtp.host is empty; set it or remove mail.smtp to write .eml files".into(),
            );
        }
        if smtp.security == SmtpSecurity::None && !is_loopback(&smtp.host) {
            return Err(format!(
                "mail.smtp.security is `none` but the host {:?} is not loopback; plaintext SMTP is only allowed to 127.0.0.1, ::1 or localhost. Use `starttls` or `tls`",
                smtp.host
            ));
        }
        let password = smtp.password_env.is_some() || smtp.password_file.is_some();
        if smtp.password_env.is_some() && smtp.password_file.is_some() {
            return Err("mail.smtp: set `password_env` or `password_file`, not both".into());
        }
        if smtp.user.is_some() != password {
            return Err("mail.smtp: set `user` together with `password_env` or `password_file`, or none of them".into());
        }
    }
    if !["zh-CN", "en"].contains(&cfg.mail.locale.as_str()) {
        return Err(format!(
            "mail.locale: {:?} is not a shipped language; use zh-CN or en",
            cfg.mail.locale
        ));
    }
    if !crate::format::valid_currency(&cfg.mail.currency) {
        return Err(format!(
            "mail.currency: {:?} is not a currency code; write three capital letters, e.g. CNY, USD or EUR",
            cfg.mail.currency
        ));
    }
    if cfg.mail.chart_months == 0 || cfg.mail.chart_months > 60 {
        return Err("mail.chart_months must be between 1 and 60".into());
    }
    if cfg.mail.from.parse::<lettre::message::Mailbox>().is_err() {
        return Err(format!(
            "mail.from: {:?} is not a mail address like `kamwatch <kamwatch@example.com>`",
            cfg.mail.from
        ));
    }
    Ok(())
}

fn validate_alerts(cfg: &Config) -> Result<(), String> {
    let a = &cfg.alerts;
    let longest = cfg.longest_repeat_days();
    if a.max_per_account == 0 || a.max_per_rule == 0 {
        return Err(
            "alerts.max_per_account and alerts.max_per_rule must be at least 1".to_string(),
        );
    }
    if a.history_retention_days < longest {
        return Err(format!(
            "alerts.history_retention_days is {} but the longest repeat interval is {longest} days; \
             history shorter than a repeat interval would forget when an alert was last mailed. \
             Raise history_retention_days to at least {longest} or shorten the repeat interval",
            a.history_retention_days
        ));
    }
    if a.for_evaluations == 0 {
        return Err("alerts.for_evaluations must be at least 1 (1 = fire on the first evaluation that raises it)".into());
    }
    let address = |what: &str, s: &str| -> Result<(), String> {
        sendable_address(s)
            .then_some(())
            .ok_or_else(|| format!("{what}: {s:?} is not a mail address like name@example.com"))
    };
    if let Some(c) = &cfg.mail.catch_all {
        address("mail.catch_all", c)?;
    }
    if let Some(c) = &cfg.mail.admin {
        address("mail.admin", c)?;
    }
    for (i, q) in cfg.mail.quiet.iter().enumerate() {
        crate::mail::Quiet::parse(q).map_err(|e| format!("mail.quiet[{i}]: {e}"))?;
    }
    Ok(())
}

/// The per-dataset options beyond files and columns.
fn validate_dataset_options(d: Dataset, ds: &DatasetConfig) -> Result<(), String> {
    if let Some(delim) = &ds.delimiter
        && parse_delimiter(delim).is_none()
    {
        return Err(format!(
            "datasets.{d}.delimiter: {delim:?} is not one ASCII character; use e.g. \",\", \";\", \"|\" or tab"
        ));
    }
    if let Some(key) = &ds.key {
        if d.is_snapshot() {
            return Err(format!(
                "datasets.{d}.key: {d} is a snapshot (each file replaces the last), so it has no upsert key; remove `key`"
            ));
        }
        let known: Vec<&str> = d.fields().iter().map(|(f, _)| *f).collect();
        if key.is_empty() {
            return Err(format!(
                "datasets.{d}.key: give at least one field, e.g. [{}]",
                d.default_key().join(", ")
            ));
        }
        for k in key {
            if !known.contains(&k.as_str()) {
                return Err(format!(
                    "datasets.{d}.key: unknown field `{k}`; the fields of {d} are {}",
                    known.join(", ")
                ));
            }
        }
    }
    Ok(())
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether kamwatch can send to `s`: an ASCII `name@domain` that lettre
/// takes both as an address and as a message's recipient. The one test
/// for the config, the customer master and routing, so that an address
/// accepted at ingest can always be mailed. Address literals
/// (`a@[127.0.0.1]`: lettre parses them but cannot build an envelope for
/// them, which failed the whole evaluation) and internationalised addresses
/// (they need SMTPUTF8, which kamwatch does not speak) are refused.
pub fn sendable_address(s: &str) -> bool {
    if !s.is_ascii() || s.contains(['[', ']']) {
        return false;
    }
    let (Ok(to), Ok(from)) = (
        s.parse::<lettre::Address>(),
        "kamwatch@example.com".parse::<lettre::Address>(),
    ) else {
        return false;
    };
    lettre::Message::builder()
        .from(lettre::message::Mailbox::new(None, from))
        .to(lettre::message::Mailbox::new(None, to))
        .body(String::new())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_addresses_are_the_ones_a_message_can_be_built_for() {
        for ok in ["zhang.wei@example.com", "a.b+c@sub.example.cn"] {
            assert!(sendable_address(ok), "{ok}");
        }
        for bad in [
            "a@[127.0.0.1]",
            "张伟@例子.中国",
            "a@x.com; b@y.com",
            "li.na@",
            "",
            "Zhang <z@example.com>",
        ] {
            assert!(!sendable_address(bad), "{bad}");
        }
    }

    #[test]
    fn glob() {
        assert!(glob_match("orders_*.csv", "orders_2026.csv"));
        assert!(glob_match("销售明细*.csv", "销售明细_202609-10.csv"));
        assert!(!glob_match("orders_*.csv", "orders_2026.xlsx"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "abbc"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn shipped_config_parses() {
        let text = include_str!("../../config/kamwatch.yaml");
        let cfg = parse(text).unwrap();
        assert_eq!(
            cfg.datasets.route("销售明细_2026.csv"),
            Some(Dataset::Orders)
        );
        assert_eq!(
            cfg.datasets.route("客户主数据.csv"),
            Some(Dataset::Accounts)
        );
        assert_eq!(cfg.datasets.route("notes.txt"), None);
    }

    #[test]
    fn unknown_key_named_with_line() {
        let text = include_str!("../../config/kamwatch.yaml").replace("\ninbox:", "\ninbxo:");
        let e = parse(&text).unwrap_err();
        assert!(e.contains("inbxo"), "{e}");
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn retention_shorter_than_a_repeat_is_refused() {
        let text = format!(
            "{}\nrule_settings:\n  margin_slip:\n    repeat_interval_days: 30\n",
            include_str!("../../config/kamwatch.yaml")
        );
        assert!(parse(&text).is_ok());
        let text = text.replace("history_retention_days: 400", "history_retention_days: 20");
        let e = parse(&text).unwrap_err();
        assert!(e.contains("history_retention_days is 20"), "{e}");
        assert!(e.contains("at least 30"), "{e}");
    }

    #[test]
    fn bad_quiet_window_and_address_are_refused() {
        let base = include_str!("../../config/kamwatch.yaml");
        let e = parse(&base.replace(
            "  quiet: []",
            "  quiet:\n    - weekdays: [saturday, sunday2]",
        ))
        .unwrap_err();
        assert!(e.contains("mail.quiet[0]") && e.contains("sunday2"), "{e}");
        let e = parse(&base.replace(
            "  quiet: []",
            "  quiet:\n    - from: 2027-02-13\n      to: 2027-02-05",
        ))
        .unwrap_err();
        assert!(e.contains("after"), "{e}");
        let e = parse(&base.replace("  # admin: it@example.com", "  admin: not an address"))
            .unwrap_err();
        assert!(e.contains("mail.admin"), "{e}");
    }

    #[test]
    fn currency_is_an_iso_code() {
        let base = include_str!("../../config/kamwatch.yaml");
        assert_eq!(parse(base).unwrap().mail.currency, "CNY");
        let usd = parse(&base.replace("  currency: CNY", "  currency: USD")).unwrap();
        assert_eq!(usd.mail.currency, "USD");
        for bad in ["¥", "rmb", "CNYX", "\"\""] {
            let e =
                parse(&base.replace("  currency: CNY", &format!("  currency: {bad}"))).unwrap_err();
            assert!(
                e.contains("mail.currency") && e.contains("CNY, USD"),
                "{bad}: {e}"
            );
        }
    }
}
