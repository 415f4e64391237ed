//! CLI commands about alerts and their mail: `silence` (add, list, expire),
//! `history` (every state change and notice) and `mail` (a test message, a
//! warning's preview as files). Checks the arguments against the rules and
//! the customer master, so a typo never silences nothing unnoticed; the
//! work is `alerts`' and `mail`'s.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use chrono::NaiveDate;

use super::args::{Format, MailCommand, SilenceCommand};
use super::exit::Usage;
use crate::alerts::silence::{self, Scope};
use crate::config::Loaded;

/// `kamwatch silence add|list|expire`.
pub fn silence(cfg: &Loaded, action: &SilenceCommand, today: NaiveDate) -> Result<ExitCode> {
    let conn = crate::store::open(&cfg.database())?;
    let mut o = std::io::stdout().lock();
    match action {
        SilenceCommand::Add { .. } => silence_add(cfg, &conn, action, today)?,
        SilenceCommand::List { format } => {
            for s in silence::list(&conn)? {
                match format {
                    Format::Json => {
                        let mut v = serde_json::to_value(&s)?;
                        v["active"] = s.active(today).into();
                        writeln!(o, "{v}")?
                    }
                    Format::Text => writeln!(
                        o,
                        "{:>4}  {:<18} {:<24} until {}  {}  {}",
                        s.id,
                        rule_text(&s.rule, s.key.as_deref()),
                        scope_text(&s.scope),
                        s.until,
                        match &s.expired_at {
                            Some(at) => format!("expired {at}"),
                            None if s.until < today => "ended".to_string(),
                            None => "active".to_string(),
                        },
                        s.reason
                    )?,
                }
            }
        }
        SilenceCommand::Expire { id } => {
            let s = silence::expire(&conn, *id)?;
            writeln!(o, "silence {} expired", s.id)?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `silence add`: a usage error (exit 2) for an end in the past, a rule
/// that is not in the rules folder, a tier that is none, or an account
/// not in the customer master (unless `--force`).
fn silence_add(
    cfg: &Loaded,
    conn: &rusqlite::Connection,
    action: &SilenceCommand,
    today: NaiveDate,
) -> Result<()> {
    let SilenceCommand::Add {
        rule,
        key,
        account,
        tier,
        owner,
        until,
        reason,
        force,
    } = action
    else {
        return Ok(());
    };
    if *until < today {
        return Err(Usage(format!(
            "--until {until} is in the past (today is {today} in {}); a silence ending then would silence nothing",
            cfg.cfg.schedule.zone
        ))
        .into());
    }
    let scope = match (account, tier, owner) {
        (Some(a), None, None) => Scope::Account(a.clone()),
        (None, Some(t), None) => Scope::Tier(t.to_uppercase()),
        (None, None, Some(w)) => Scope::Owner(w.clone()),
        _ => {
            return Err(Usage(
                "silence add needs exactly one of --account, --tier or --owner".into(),
            )
            .into());
        }
    };
    // A typo would silence nothing while the user believes otherwise.
    if rule != "*" {
        let known = crate::rules::rule_names(&cfg.rules());
        if !known.contains(rule) {
            return Err(Usage(format!(
                "--rule {rule:?} is not a rule in {}; the rules are: {}. Use '*' for every rule",
                cfg.rules().display(),
                known.join(", ")
            ))
            .into());
        }
    }
    if let Scope::Tier(t) = &scope
        && !["A", "B", "C"].contains(&t.as_str())
    {
        return Err(Usage(format!("--tier {t:?}: tiers are A, B and C")).into());
    }
    if let Scope::Account(a) = &scope {
        let known = crate::store::account_exists(conn, a).unwrap_or(false);
        if !known && !*force {
            return Err(Usage(format!(
                "--account {a:?} is not in the customer master; check the id (`kamwatch accounts` lists them), or add --force to silence it before its data arrives"
            ))
            .into());
        }
    }
    let key = key.as_deref().map(str::trim);
    if let Some(k) = key {
        if k.is_empty() || k == "*" {
            return Err(Usage(format!(
                "--key {k:?}: leave --key out to silence every alert of the rule"
            ))
            .into());
        }
        if k.chars().any(char::is_control) {
            return Err(Usage(format!(
                "--key {k:?} holds a control character, which no key has; copy the key from the mail or `kamwatch history --rule {rule}`"
            ))
            .into());
        }
        // A misspelt key would silence nothing, like a misspelt account.
        let seen = silence::keys_raised(conn, rule)?;
        if !seen.iter().any(|s| s == k) && !*force {
            let listed = if seen.is_empty() {
                "none so far".to_string()
            } else {
                seen.iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(Usage(format!(
                "--key {k:?}: {rule} has never raised an alert with this key (keys raised so far: {listed}); copy the key from the mail or `kamwatch history --rule {rule}`, or add --force to silence it before it is first raised"
            ))
            .into());
        }
    }
    let id = silence::add(conn, rule, key, &scope, *until, reason)?;
    writeln!(
        std::io::stdout().lock(),
        "silence {id} added: {rule} for {scope_text} through {until}",
        rule = rule_text(rule, key),
        scope_text = scope_text(&scope)
    )?;
    Ok(())
}

/// A silence's rule, with its key when it holds back one alert only.
fn rule_text(rule: &str, key: Option<&str>) -> String {
    match key {
        Some(k) => format!("{rule} (key {k})"),
        None => rule.to_string(),
    }
}

fn scope_text(s: &Scope) -> String {
    match s {
        Scope::Account(a) => format!("account {a}"),
        Scope::Tier(t) => format!("tier {t}"),
        Scope::Owner(w) => format!("owner {w}"),
    }
}

/// `kamwatch history`: exit 1 when asked about an account nobody knows.
pub fn history(
    cfg: &Loaded,
    filter: &crate::alerts::history::Filter,
    format: Format,
) -> Result<ExitCode> {
    let conn = crate::store::open(&cfg.database())?;
    let entries = crate::alerts::history::query(&conn, filter)?;
    if let Some(a) = &filter.account
        && entries.is_empty()
        && !crate::store::account_exists(&conn, a)?
    {
        anyhow::bail!(
            "there is no account {a:?} in the customer master or the alert history; `kamwatch accounts` lists the accounts"
        );
    }
    let mut o = std::io::stdout().lock();
    for e in entries {
        match format {
            Format::Json => writeln!(o, "{}", serde_json::to_string(&e)?)?,
            Format::Text => {
                let what = match e.event {
                    "state" => format!(
                        "{} -> {}",
                        e.from_state.as_deref().unwrap_or("new"),
                        e.to_state.as_deref().unwrap_or("")
                    ),
                    _ => format!(
                        "notice {} {} {}{}",
                        e.notice.as_deref().unwrap_or(""),
                        e.mail.as_deref().unwrap_or(""),
                        e.recipients.join(","),
                        if e.delivery.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", e.delivery.join(","))
                        }
                    ),
                };
                let rule = if e.key.is_empty() {
                    e.rule.clone()
                } else {
                    format!("{} [{}]", e.rule, e.key)
                };
                writeln!(
                    o,
                    "{}  {:<18} {:<10} {:<8} {:<40} {}",
                    e.as_of, rule, e.account_id, e.severity, what, e.title
                )?
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kamwatch mail test|preview`.
pub fn mail(cfg: &Loaded, action: &MailCommand) -> Result<ExitCode> {
    let mut o = std::io::stdout().lock();
    match action {
        MailCommand::Test { to } => {
            let said = crate::mail::smtp::send_test(cfg, to)?;
            writeln!(o, "{said}")?;
        }
        MailCommand::Preview {
            alert,
            rule,
            account,
            out,
        } => {
            use crate::mail::preview::{Which, preview};
            let conn = crate::store::open(&cfg.database())?;
            let which = match (alert, rule, account) {
                (Some(id), _, _) => Which::Alert(*id),
                (None, Some(r), Some(a)) => Which::RuleAccount(r, a),
                _ => anyhow::bail!("give --alert ID, or --rule R and --account A"),
            };
            for f in preview(cfg, &conn, which, out)? {
                writeln!(o, "wrote {}", f.display())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
