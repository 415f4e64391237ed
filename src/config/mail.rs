//! The `mail:` section of the config: sender, folder, recipients of last
//! resort, digests, quiet windows (parsed into [`Quiet`] when the config is
//! loaded), SMTP server and limits, with their defaults; and the one test
//! of a mail address kamwatch can send to (`sendable_address`). Reads
//! nothing itself; the mail stage sends with what it holds.

use std::path::PathBuf;

use chrono::NaiveDate;
use serde::Deserialize;

use super::clock::Zone;
use super::error::{Problem, invalid};

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
    /// Recurring quiet windows as written; parsed into `quiet` when the
    /// config is loaded.
    #[serde(default, rename = "quiet")]
    pub(super) quiet_windows: Vec<QuietWindow>,
    /// Recurring quiet windows: mail is held and sent after the window.
    #[serde(skip)]
    pub quiet: Vec<Quiet>,
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

pub(super) fn default_true() -> bool {
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
            quiet_windows: Vec::new(),
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

/// A quiet window, parsed from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Quiet {
    pub name: String,
    weekdays: Vec<chrono::Weekday>,
    range: Option<(DateSpec, DateSpec)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum DateSpec {
    Once(NaiveDate),
    /// (month, day), every year.
    Yearly(u32, u32),
}

impl DateSpec {
    fn parse(s: &str) -> Result<DateSpec, Problem> {
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(DateSpec::Once(d));
        }
        let md = s.split_once('-').and_then(|(m, d)| {
            let (m, d) = (m.parse::<u32>().ok()?, d.parse::<u32>().ok()?);
            NaiveDate::from_ymd_opt(2000, m, d).map(|_| DateSpec::Yearly(m, d))
        });
        md.ok_or_else(|| {
            Problem::Invalid(format!(
                "{s:?} is not a date: write YYYY-MM-DD for one year or MM-DD for every year"
            ))
        })
    }
}

impl Quiet {
    /// Reads a window as the config writes it; the error says what to
    /// write instead (the config prefixes it with `mail.quiet[i]`).
    pub fn parse(q: &QuietWindow) -> Result<Quiet, Problem> {
        let weekdays = q
            .weekdays
            .iter()
            .map(|w| {
                w.parse::<chrono::Weekday>().map_err(|_| {
                    Problem::Invalid(format!("weekdays: {w:?} is not a weekday; write mon, tue, wed, thu, fri, sat or sun"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let range = match (&q.from, &q.to) {
            (None, None) => None,
            (Some(f), Some(t)) => {
                let (f, t) = (DateSpec::parse(f)?, DateSpec::parse(t)?);
                match (f, t) {
                    (DateSpec::Once(a), DateSpec::Once(b)) if a > b => {
                        invalid!("from {a} is after to {b}");
                    }
                    (DateSpec::Once(_), DateSpec::Yearly(..))
                    | (DateSpec::Yearly(..), DateSpec::Once(_)) => {
                        invalid!("give `from` and `to` both as YYYY-MM-DD or both as MM-DD");
                    }
                    _ => {}
                }
                Some((f, t))
            }
            _ => invalid!("give both `from` and `to`, or neither"),
        };
        if weekdays.is_empty() && range.is_none() {
            invalid!("a quiet window needs `weekdays` or `from` and `to`");
        }
        Ok(Quiet {
            name: q.name.clone().unwrap_or_else(|| "quiet window".into()),
            weekdays,
            range,
        })
    }

    /// Whether mail is held on this day.
    pub fn covers(&self, d: NaiveDate) -> bool {
        use chrono::Datelike;
        if self.weekdays.contains(&d.weekday()) {
            return true;
        }
        match self.range {
            Some((DateSpec::Once(a), DateSpec::Once(b))) => a <= d && d <= b,
            Some((DateSpec::Yearly(m1, d1), DateSpec::Yearly(m2, d2))) => {
                let x = (d.month(), d.day());
                if (m1, d1) <= (m2, d2) {
                    (m1, d1) <= x && x <= (m2, d2)
                } else {
                    x >= (m1, d1) || x <= (m2, d2) // across New Year
                }
            }
            _ => false,
        }
    }
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
    fn quiet_windows() {
        let q = |w: &[&str], f: Option<&str>, t: Option<&str>| {
            Quiet::parse(&QuietWindow {
                name: None,
                weekdays: w.iter().map(|s| s.to_string()).collect(),
                from: f.map(str::to_string),
                to: t.map(str::to_string),
            })
        };
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let weekend = q(&["sat", "sun"], None, None).unwrap();
        assert!(weekend.covers(d("2026-11-28"))); // a Saturday
        assert!(!weekend.covers(d("2026-11-27")));
        let year_end = q(&[], Some("12-30"), Some("01-02")).unwrap();
        assert!(year_end.covers(d("2026-12-31")) && year_end.covers(d("2027-01-02")));
        assert!(!year_end.covers(d("2027-01-03")));
        let once = q(&[], Some("2027-02-05"), Some("2027-02-13")).unwrap();
        assert!(once.covers(d("2027-02-13")) && !once.covers(d("2028-02-06")));
        assert!(q(&[], Some("2027-02-05"), None).is_err());
        assert!(q(&[], None, None).is_err());
        assert!(q(&[], Some("13-01"), Some("12-01")).is_err());
    }
}
