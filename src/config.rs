//! Configuration: the YAML file, its defaults and its validation.
//!
//! Owns the `Config` types and the rule that relative paths are resolved
//! against `root`, which is itself relative to the config file. Touches only
//! the config file it is asked to read; every other stage receives a loaded,
//! validated `Config` and never reads YAML itself. Defaults live here and are
//! mirrored, commented, in `config/kamwatch.yaml`.

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
    /// rule's own `const SETTINGS`.
    #[serde(default)]
    pub rule_settings: BTreeMap<String, RuleOverride>,
    #[serde(default)]
    pub tiers: TierConfig,
    #[serde(default)]
    pub watch: WatchConfig,
    #[serde(default)]
    pub mail: MailConfig,
    pub datasets: Datasets,
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

/// Settings of one rule that the config overrides; unset keys keep the
/// rule's own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleOverride {
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Tiers the rule runs for ("A", "B", "C").
    #[serde(default)]
    pub tiers: Option<Vec<String>>,
    /// Default severity of its alerts: info, warning or critical.
    #[serde(default)]
    pub severity: Option<String>,
    /// Consecutive evaluations before an alert fires.
    #[serde(default, rename = "for")]
    pub for_evaluations: Option<u32>,
    /// Days before a still-firing alert is mailed again.
    #[serde(default)]
    pub repeat_days: Option<u32>,
    /// Extra recipients of the rule's alerts.
    #[serde(default)]
    pub recipients: Option<Vec<String>>,
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
}

fn default_settle_ms() -> u64 {
    300
}
fn default_eval_debounce_ms() -> u64 {
    200
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            settle_ms: default_settle_ms(),
            eval_debounce_ms: default_eval_debounce_ms(),
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
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
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
            smtp: None,
        }
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
    /// Seconds before a connection attempt or command gives up.
    #[serde(default = "default_smtp_timeout")]
    pub timeout_secs: u64,
}

fn default_security() -> SmtpSecurity {
    SmtpSecurity::Starttls
}
fn default_smtp_timeout() -> u64 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datasets {
    pub accounts: DatasetConfig,
    pub orders: DatasetConfig,
    pub visits: DatasetConfig,
}

/// One dataset: which files hold it and how their columns are named.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Glob patterns (`*` and `?`) matched against the file name.
    pub files: Vec<String>,
    /// Canonical field -> the export's own column name.
    pub columns: BTreeMap<String, String>,
}

/// The datasets kamwatch knows, with their canonical fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dataset {
    Accounts,
    Orders,
    Visits,
}

impl Dataset {
    pub const ALL: [Dataset; 3] = [Dataset::Accounts, Dataset::Orders, Dataset::Visits];

    pub fn name(self) -> &'static str {
        match self {
            Dataset::Accounts => "accounts",
            Dataset::Orders => "orders",
            Dataset::Visits => "visits",
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
    let text = std::fs::read_to_string(path).map_err(|e| {
        err(format!(
            "cannot read it: {e}; pass another file with --config PATH"
        ))
    })?;
    let cfg = parse(&text).map_err(err)?;
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(Loaded { file, cfg })
}

/// Parses and validates config text. Errors name the key and its line.
pub fn parse(text: &str) -> Result<Config, String> {
    let cfg: Config = serde_yaml::from_str(text).map_err(|e| {
        let msg = e.to_string();
        if msg.contains("unknown field") {
            format!("{msg}. Fix the spelling or remove the key.")
        } else {
            msg
        }
    })?;
    validate(&cfg)?;
    Ok(cfg)
}

fn validate(cfg: &Config) -> Result<(), String> {
    let t = &cfg.tiers;
    if !(0.0 < t.a_share && t.a_share <= t.b_share && t.b_share <= 1.0) {
        return Err(format!(
            "tiers: need 0 < a_share <= b_share <= 1, got a_share {} and b_share {}",
            t.a_share, t.b_share
        ));
    }
    for (name, o) in &cfg.rule_settings {
        for t in o.tiers.iter().flatten() {
            if !matches!(t.as_str(), "A" | "B" | "C") {
                return Err(format!(
                    "rule_settings.{name}.tiers: {t:?} is not a tier; use \"A\", \"B\" or \"C\""
                ));
            }
        }
        if let Some(s) = &o.severity
            && !matches!(s.as_str(), "info" | "warning" | "critical")
        {
            return Err(format!(
                "rule_settings.{name}.severity: {s:?} is not one of info, warning, critical"
            ));
        }
        if o.for_evaluations == Some(0) || o.repeat_days == Some(0) {
            return Err(format!(
                "rule_settings.{name}: `for` and `repeat_days` must be at least 1"
            ));
        }
        for r in o.recipients.iter().flatten() {
            if !r.contains('@') {
                return Err(format!(
                    "rule_settings.{name}.recipients: {r:?} is not an email address"
                ));
            }
        }
    }
    for d in Dataset::ALL {
        let ds = cfg.datasets.get(d);
        if ds.files.is_empty() {
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
    }
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
        if smtp.user.is_some() != smtp.password_env.is_some() {
            return Err("mail.smtp: set both `user` and `password_env`, or neither".into());
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let text = include_str!("../config/kamwatch.yaml");
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
        let text = include_str!("../config/kamwatch.yaml").replace("\ninbox:", "\ninbxo:");
        let e = parse(&text).unwrap_err();
        assert!(e.contains("inbxo"), "{e}");
        assert!(e.contains("line"), "{e}");
    }
}
