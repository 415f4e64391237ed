//! CLI commands about the service: `run` (the daemon), `check` (the config
//! and the rules, like `nginx -t`) and `status` (is the daemon running, what
//! it last did). Each loads what it needs through the stages and prints;
//! `status` reads the database and the notes the daemon leaves beside it.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::args::Format;
use super::output::{running, success_if};
use crate::config::{self, Loaded};
use crate::rules::{Rule, RuleSet};

/// `kamwatch run`: the daemon, logging at the config's level.
pub fn run(cfg: Loaded) -> Result<ExitCode> {
    super::logging::init(&cfg.cfg.log, true);
    crate::daemon::run(cfg)?;
    Ok(ExitCode::SUCCESS)
}

/// `kamwatch check`: exit 0 clean, 1 findings, 2 unusable.
pub fn check(path: &Path, verbose: bool) -> Result<ExitCode> {
    let cfg = config::load(path)?;
    let mut o = std::io::stdout().lock();
    writeln!(o, "config {}: ok", path.display())?;
    crate::mail::Templates::load(Some(&cfg.templates_dir()), &cfg.cfg.mail.locale)?;
    writeln!(
        o,
        "mail templates {} ({}): ok",
        cfg.templates_dir().display(),
        cfg.cfg.mail.locale
    )?;
    let (rules, errors, unknown) = RuleSet::load_config(&cfg)?;
    for u in &unknown {
        writeln!(o, "config {}: {u}", path.display())?;
    }
    if !unknown.is_empty() {
        return Ok(ExitCode::from(1));
    }
    writeln!(
        o,
        "rules {}: {} loaded, {} with errors",
        cfg.rules().display(),
        rules.rules.len(),
        errors
            .iter()
            .map(|e| &e.path)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    )?;
    for e in &errors {
        writeln!(o, "{e}")?;
    }
    // A shipped rule's cadence or window the review and the charts
    // cannot read: they use the shipped value, and the analyst is told.
    for p in crate::rules::RuleValues::of(&rules).problems() {
        writeln!(o, "warning: {p}")?;
    }
    // Rules in one language still work; English readers are told.
    if cfg.style().en() {
        for r in &rules.rules {
            for w in crate::rules::chinese_only_texts(r) {
                writeln!(o, "warning: {w}")?;
            }
        }
    }
    if verbose {
        let policies = crate::alerts::Policies::for_rules(&cfg.cfg, &rules);
        for r in &rules.rules {
            writeln!(o, "{}", policy_line(r, &policies))?;
        }
    }
    // What `run` would refuse or change: the same list the daemon logs
    // as warnings when it starts.
    let findings = config::findings(&cfg);
    for f in &findings {
        writeln!(o, "warning: {}", f.message)?;
    }
    if findings.iter().any(|f| f.refused) {
        return Ok(ExitCode::from(1));
    }
    Ok(success_if(errors.is_empty()))
}

/// `check --verbose`: one rule's effective policy. One precedence for
/// every key: rule_settings.R (alerts.rules.R is read into it) > the
/// script's SETTINGS > the alerts: defaults.
fn policy_line(r: &Rule, policies: &crate::alerts::Policies) -> String {
    let s = r.settings();
    let p = policies.get(&r.name);
    let list = |v: &Option<Vec<String>>, none: &str| {
        v.as_ref()
            .filter(|v| !v.is_empty())
            .map_or(none.to_string(), |v| v.join(","))
    };
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut recipients = vec!["owner".to_string()];
    recipients.extend(p.extra_recipients.iter().cloned());
    format!(
        "rule {}: enabled {}, tiers {}, needs {}, book_needs {}, severity {}, for_evaluations {}, repeat_interval_days {}, info_repeat_interval_days {}, recipients {}, notify_resolved {}, keep_firing_for_days {}, escalate_after_days {}, close_after_days {}, one_open_per_account {}",
        r.name,
        yes(r.enabled()),
        list(&s.tiers, "all"),
        list(&s.needs, "nothing"),
        list(&s.book_needs, "nothing"),
        s.severity.as_deref().unwrap_or("warning"),
        p.for_evaluations,
        p.repeat_interval_days,
        p.repeat_days(crate::model::Severity::Info),
        recipients.join(","),
        yes(p.notify_resolved),
        p.keep_firing_for_days,
        p.escalate_after_days,
        p.close_after_days,
        yes(p.one_open_per_account),
    )
}

/// `kamwatch status`: exit 0 when the daemon runs, 1 when not (or the
/// database cannot be read).
pub fn status(cfg: &Loaded, format: Format) -> Result<ExitCode> {
    let db = cfg.database();
    let pid = crate::daemon::service::holder(&crate::daemon::service::lock_path(&db));
    let mut o = std::io::stdout().lock();
    let running_code = ExitCode::from(if pid.is_some() { 0 } else { 1 });
    if !db.exists() {
        match format {
            Format::Json => writeln!(
                o,
                "{}",
                serde_json::json!({ "running": pid.is_some(), "pid": pid, "database": null })
            )?,
            Format::Text => writeln!(
                o,
                "kamwatch {}; no database yet at {}",
                running(pid),
                db.display()
            )?,
        }
        return Ok(running_code);
    }
    let failing = crate::daemon::eval_failing(&db);
    // A damaged page may lie where no status query reads: look at all.
    let read = crate::store::open(&db).and_then(|conn| {
        crate::store::quick_check(&conn, &db)?;
        crate::reports::status::read(&conn)
    });
    let s = match read {
        Ok(s) => s,
        Err(e) => {
            // Say what is wrong with the file and what to do, not only
            // SQLite's words.
            let text = if format!("{e:#}").contains("is damaged") {
                format!("{e:#}")
            } else {
                format!(
                    "cannot be read: {e:#}. If it is damaged, restore it from a backup, or move it aside and run `kamwatch rebuild`"
                )
            };
            match format {
                Format::Json => writeln!(
                    o,
                    "{}",
                    serde_json::json!({ "running": pid.is_some(), "pid": pid, "database_error": text })
                )?,
                Format::Text => writeln!(
                    o,
                    "kamwatch {}\ndatabase {}: {text}",
                    running(pid),
                    db.display()
                )?,
            }
            return Ok(ExitCode::from(1));
        }
    };
    match format {
        Format::Json => {
            let mut v = serde_json::to_value(&s)?;
            v["running"] = pid.is_some().into();
            v["pid"] = pid.into();
            v["evaluation_failing"] = failing
                .as_ref()
                .map(|(at, error)| serde_json::json!({ "since": at, "error": error }))
                .into();
            writeln!(o, "{v}")?;
        }
        Format::Text => {
            writeln!(o, "kamwatch {}", running(pid))?;
            writeln!(o, "database {}", db.display())?;
            status_text(&mut o, cfg, &s, failing.as_ref())?;
        }
    }
    Ok(running_code)
}

/// The lines of `status` after the daemon and the database.
fn status_text(
    o: &mut impl std::io::Write,
    cfg: &Loaded,
    s: &crate::reports::status::Status,
    failing: Option<&(String, String)>,
) -> Result<()> {
    if s.last_ingest.is_empty() {
        writeln!(o, "last ingest: none")?;
    }
    for i in &s.last_ingest {
        writeln!(
            o,
            "last ingest of {}: {} ({} rows) at {}; {} files in all",
            i.dataset, i.file, i.rows, i.at, i.files
        )?;
    }
    match &s.last_evaluation {
        Some(e) => writeln!(
            o,
            "last evaluation: as of {} at {}: {} accounts, {} warnings, {} new, {} resolved, {} rule errors",
            e.as_of, e.at, e.accounts, e.raised, e.started, e.resolved, e.errors
        )?,
        None => writeln!(o, "last evaluation: none")?,
    }
    if let Some((at, error)) = failing {
        writeln!(o, "evaluations are FAILING (last at {at}): {error}")?;
    }
    writeln!(
        o,
        "alerts firing: {} critical, {} warning, {} info",
        s.firing.critical, s.firing.warning, s.firing.info
    )?;
    writeln!(
        o,
        "outbox: {} pending, {} sent, {} dead",
        s.outbox.pending, s.outbox.sent, s.outbox.dead
    )?;
    for r in &s.outbox.refused {
        writeln!(
            o,
            "recipient refused: {} in {} message(s), last {}: {}",
            r.email, r.messages, r.at, r.reply
        )?;
    }
    if s.unlisted_accounts > 0 {
        let more = if s.unlisted_accounts > s.unlisted_examples.len() as u64 {
            ", ..."
        } else {
            ""
        };
        writeln!(
            o,
            "accounts missing from the customer master: {} ({}{more}) have order lines, kept but not ranked into tiers and never warned about; add them to the customer master",
            s.unlisted_accounts,
            s.unlisted_examples
                .iter()
                .map(|id| crate::ingest::values::excerpt(id))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    if s.rejected_files > 0 {
        writeln!(
            o,
            "rejected files: {} (reasons in {})",
            s.rejected_files,
            cfg.rejected().display()
        )?;
    }
    Ok(())
}
