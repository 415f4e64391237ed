//! The checks a parsed config passes before anything uses it, one named
//! check per section, in the order their errors are reported; and the
//! values kept as text in the file (schedule times and zone, quiet windows)
//! parsed into their types here, once. Every error names the key and says
//! what to write instead. Pure: reads nothing (the folders and secret files
//! are checked in `config/load.rs`).

use chrono::NaiveTime;

use super::clock::Zone;
use super::error::{Problem, invalid};
use super::mail::{MailConfig, Quiet, SmtpSecurity, sendable_address};
use super::schema::{
    Config, IngestConfig, ReviewConfig, ScheduleConfig, TierConfig, WatchConfig, parse_hhmm,
    resolve_seasons,
};
use super::settings::RuleSettings;

/// Checks `cfg` and fills in its typed values (`seasons`,
/// `schedule.times`, `schedule.zone`, `mail.quiet`, `mail.zone`). The first problem found
/// is returned.
pub(super) fn validate(cfg: &mut Config) -> Result<(), Problem> {
    cfg.seasons = resolve_seasons(&cfg.seasons_text)?;
    check_ingest(&cfg.ingest)?;
    check_tiers(&cfg.tiers)?;
    for (name, o) in &cfg.rule_settings {
        o.validate()
            .map_err(|e| Problem::Invalid(format!("rule_settings.{name}.{e}")))?;
    }
    cfg.datasets.check()?;
    check_watch(&cfg.watch)?;
    cfg.schedule.times = schedule_times(&cfg.schedule)?;
    check_review(&cfg.review)?;
    cfg.schedule.zone = schedule_zone(&cfg.schedule)?;
    check_alerts(cfg)?;
    cfg.mail.quiet = quiet_windows(&cfg.mail)?;
    check_smtp(&cfg.mail)?;
    check_mail(&cfg.mail)?;
    cfg.mail.zone = cfg.schedule.zone;
    Ok(())
}

/// `ingest:`: each bound within what a machine can hold and a file needs.
fn check_ingest(i: &IngestConfig) -> Result<(), Problem> {
    if !(1024..=1 << 30).contains(&i.max_record_bytes) {
        invalid!(
            "ingest.max_record_bytes: {} is out of range; use 1024 to 1073741824 (default 1048576)",
            i.max_record_bytes
        );
    }
    if !(1..=16384).contains(&i.max_unpacked_mib) {
        invalid!(
            "ingest.max_unpacked_mib: {} is out of range; use 1 to 16384 (default 512)",
            i.max_unpacked_mib
        );
    }
    if !(1..=i.max_unpacked_mib).contains(&i.max_in_memory_mib) {
        invalid!(
            "ingest.max_in_memory_mib: {} is out of range; use 1 to max_unpacked_mib ({}) (default 128)",
            i.max_in_memory_mib,
            i.max_unpacked_mib
        );
    }
    if i.max_sheet_rows == 0 {
        invalid!("ingest.max_sheet_rows: must be at least 1 (default 1048576)");
    }
    if !(i.max_amount.is_finite() && i.max_amount >= 1.0 && i.max_amount <= 1e15) {
        invalid!(
            "ingest.max_amount: {} is out of range; use 1 to 1e15 (default 1e12)",
            i.max_amount
        );
    }
    let pct = i.max_accounts_switched_off_pct;
    if !(0.0..=100.0).contains(&pct) {
        invalid!(
            "ingest.max_accounts_switched_off_pct: {pct} is out of range; use 0 to 100 (default 20; 100 applies every master as it is)"
        );
    }
    Ok(())
}

impl TierConfig {
    /// The config's check of a `tiers:` block, for another file that
    /// holds one (a rule test file): the same rule, the same words.
    pub fn check(&self) -> Result<(), Problem> {
        check_tiers(self)
    }
}

/// `tiers:`: the A and B shares in order, within (0, 1].
fn check_tiers(t: &TierConfig) -> Result<(), Problem> {
    if !(0.0 < t.a_share && t.a_share <= t.b_share && t.b_share <= 1.0) {
        invalid!(
            "tiers: need 0 < a_share <= b_share <= 1, got a_share {} and b_share {}",
            t.a_share,
            t.b_share
        );
    }
    Ok(())
}

/// `watch:`: polling needs an interval.
fn check_watch(w: &WatchConfig) -> Result<(), Problem> {
    if w.poll && w.poll_interval_ms == 0 {
        invalid!("watch.poll_interval_ms: must be at least 1");
    }
    Ok(())
}

/// `schedule.times`, read as times of day: sorted, without repeats.
fn schedule_times(s: &ScheduleConfig) -> Result<Vec<NaiveTime>, Problem> {
    let mut times = Vec::new();
    for t in &s.times_text {
        match parse_hhmm(t) {
            Some(time) => times.push(time),
            None => invalid!(
                "schedule.times: {t:?} is not a time of day; write it as HH:MM, e.g. \"07:30\""
            ),
        }
    }
    times.sort();
    times.dedup();
    Ok(times)
}

/// `schedule.timezone`, read as a zone.
fn schedule_zone(s: &ScheduleConfig) -> Result<Zone, Problem> {
    match Zone::parse(&s.timezone_text) {
        Some(z) => Ok(z),
        None => invalid!(
            "schedule.timezone: {:?} is not a time zone; use an IANA name such as Asia/Shanghai, or `local`",
            s.timezone_text
        ),
    }
}

/// `review.day_of_month`: a day every month has.
fn check_review(r: &ReviewConfig) -> Result<(), Problem> {
    if r.day_of_month > 28 {
        invalid!(
            "review.day_of_month is {}; use 1 to 28 (so every month has it), or 0 for no review mail",
            r.day_of_month
        );
    }
    Ok(())
}

/// `alerts:` and the addresses of last resort (`mail.catch_all`,
/// `mail.admin`).
fn check_alerts(cfg: &Config) -> Result<(), Problem> {
    let a = &cfg.alerts;
    let longest = cfg.longest_repeat_days();
    if a.max_per_account == 0 || a.max_per_rule == 0 {
        invalid!("alerts.max_per_account and alerts.max_per_rule must be at least 1");
    }
    if a.history_retention_days < longest {
        invalid!(
            "alerts.history_retention_days is {} but the longest repeat interval is {longest} days; \
             history shorter than a repeat interval would forget when an alert was last mailed. \
             Raise history_retention_days to at least {longest} or shorten the repeat interval",
            a.history_retention_days
        );
    }
    if a.for_evaluations == 0 {
        invalid!(
            "alerts.for_evaluations must be at least 1 (1 = fire on the first evaluation that raises it)"
        );
    }
    for (what, address) in [
        ("mail.catch_all", &cfg.mail.catch_all),
        ("mail.admin", &cfg.mail.admin),
    ] {
        if let Some(s) = address
            && !sendable_address(s)
        {
            invalid!("{what}: {s:?} is not a mail address like name@example.com");
        }
    }
    Ok(())
}

/// `mail.quiet`, read as quiet windows.
fn quiet_windows(m: &MailConfig) -> Result<Vec<Quiet>, Problem> {
    m.quiet_windows
        .iter()
        .enumerate()
        .map(|(i, q)| {
            Quiet::parse(q).map_err(|e| Problem::Invalid(format!("mail.quiet[{i}]: {e}")))
        })
        .collect()
}

/// `mail.smtp`: a host, no plaintext beyond loopback, and a password
/// source exactly when there is a user.
fn check_smtp(m: &MailConfig) -> Result<(), Problem> {
    let Some(smtp) = &m.smtp else {
        return Ok(());
    };
    if smtp.host.trim().is_empty() {
        invalid!("mail.smtp.host is empty; set it or remove mail.smtp to write .eml files");
    }
    if smtp.security == SmtpSecurity::None && !is_loopback(&smtp.host) {
        invalid!(
            "mail.smtp.security is `none` but the host {:?} is not loopback; plaintext SMTP is only allowed to 127.0.0.1, ::1 or localhost. Use `starttls` or `tls`",
            smtp.host
        );
    }
    let password = smtp.password_env.is_some() || smtp.password_file.is_some();
    if smtp.password_env.is_some() && smtp.password_file.is_some() {
        invalid!("mail.smtp: set `password_env` or `password_file`, not both");
    }
    if smtp.user.is_some() != password {
        invalid!(
            "mail.smtp: set `user` together with `password_env` or `password_file`, or none of them"
        );
    }
    Ok(())
}

/// The rest of `mail:`: language, currency, chart length and sender.
fn check_mail(m: &MailConfig) -> Result<(), Problem> {
    if !["zh-CN", "en"].contains(&m.locale.as_str()) {
        invalid!(
            "mail.locale: {:?} is not a shipped language; use zh-CN or en",
            m.locale
        );
    }
    if !crate::format::valid_currency(&m.currency) {
        invalid!(
            "mail.currency: {:?} is not a currency code; write three capital letters, e.g. CNY, USD or EUR",
            m.currency
        );
    }
    if m.chart_months == 0 || m.chart_months > 60 {
        invalid!("mail.chart_months must be between 1 and 60");
    }
    if m.from.parse::<lettre::message::Mailbox>().is_err() {
        invalid!(
            "mail.from: {:?} is not a mail address like `kamwatch <kamwatch@example.com>`",
            m.from
        );
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

/// One home for per-rule settings: older key names are moved onto their
/// names, and `alerts.rules` (an older place for the same settings) is read
/// into `rule_settings`. What was moved is kept in `notes` for `check` and
/// the daemon's start-up log; a key given twice is an error.
pub(super) fn settle_rule_settings(cfg: &mut Config) -> Result<(), Problem> {
    for (place, map) in [
        ("rule_settings", &mut cfg.rule_settings),
        ("alerts.rules", &mut cfg.alerts.rules),
    ] {
        for (name, s) in map.iter_mut() {
            let used = s
                .settle()
                .map_err(|e| Problem::Invalid(format!("{place}.{name}: {e}")))?;
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
            invalid!(
                "rule {name}: {} set both in rule_settings.{name} and in alerts.rules.{name}; keep one (rule_settings)",
                twice.join(", ")
            );
        }
        here.overlay(&s);
        cfg.notes.push(format!(
            "alerts.rules.{name} is read as rule_settings.{name}, the one place for a rule's settings; move it there"
        ));
    }
    Ok(())
}

/// `log:` is a level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or
/// comma-separated `target=level` directives. Anything else would make the
/// log filter refuse it and every line, errors included, go unlogged.
/// `line` is the line of `log:` in the file, when it is there.
pub(super) fn check_log(log: &str, line: Option<usize>) -> Result<(), Problem> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let bad = log.trim().is_empty()
        || log.split(',').any(|d| {
            let level = d.rsplit_once('=').map_or(d, |(_, l)| l).trim();
            !LEVELS.contains(&level.to_ascii_lowercase().as_str())
        });
    if bad {
        let m = format!(
            "{log:?} is not a log level; use error, warn, info, debug or trace, or e.g. kamwatch=debug"
        );
        match line {
            Some(n) => invalid!("log (line {n}): {m}"),
            None => invalid!("log: {m}"),
        }
    }
    Ok(())
}
