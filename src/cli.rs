//! CLI: the `kamwatch` command line — argument parsing, logging set-up,
//! output formats and exit codes (0 success, 1 a finding or failure of the
//! job, 2 usage or configuration error). Each command is a thin wrapper
//! over `pipeline`, `daemon` or `generate`; no stage logic lives here.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use chrono::NaiveDate;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, ConfigError, Loaded};
use crate::pipeline;
use crate::rules::RuleSet;
use crate::store::Outcome;

#[derive(Parser, Debug)]
#[command(
    name = "kamwatch",
    version,
    about = "Key-account early warnings from ERP/CRM exports"
)]
pub struct Cli {
    /// The config file; relative paths in it are resolved against it.
    #[arg(long, global = true, default_value = "config/kamwatch.yaml")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: watch the inbox, ingest, evaluate, mail.
    Run,
    /// Check the config and the rules (exit 0 clean, 1 findings, 2 unusable).
    Check,
    /// Ingest export files now. Files outside the inbox are copied to the
    /// archive, files inside it are moved.
    Ingest {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Evaluate the rules now and send the warnings that start firing.
    Eval {
        /// Evaluate as of this date (YYYY-MM-DD) instead of today.
        #[arg(long, value_parser = parse_date_arg)]
        as_of: Option<NaiveDate>,
        /// Print what would fire; change no state and send nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Silence an alert's mail until a date (it is still recorded).
    Silence {
        #[command(subcommand)]
        action: SilenceCommand,
    },
    /// What happened to alerts: every state change and every notice.
    History {
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        rule: Option<String>,
        /// Only evaluations as of this date (YYYY-MM-DD) or later.
        #[arg(long, value_parser = parse_date_arg)]
        since: Option<NaiveDate>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Write realistic sample exports (master, orders, visits).
    Generate {
        /// Output folder; default: the config's inbox.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 300)]
        accounts: usize,
        /// Months of history.
        #[arg(long, default_value_t = 24)]
        months: u32,
        /// Last day of data (YYYY-MM-DD); default today.
        #[arg(long, value_parser = parse_date_arg)]
        end: Option<NaiveDate>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SilenceCommand {
    /// Add a silence for one rule (or '*') and one account, tier or owner.
    Add {
        #[arg(long)]
        rule: String,
        #[arg(long, group = "scope")]
        account: Option<String>,
        #[arg(long, group = "scope")]
        tier: Option<String>,
        /// The owner's name or email.
        #[arg(long, group = "scope")]
        owner: Option<String>,
        /// Last evaluation date (YYYY-MM-DD) that is silenced.
        #[arg(long, value_parser = parse_date_arg)]
        until: NaiveDate,
        #[arg(long)]
        reason: String,
    },
    /// List silences, newest first.
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// End a silence now.
    Expire { id: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    /// One JSON object per line.
    Json,
}

fn parse_date_arg(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is not a date like 2026-11-28"))
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Run));
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            let usage = e.downcast_ref::<ConfigError>().is_some()
                || e.downcast_ref::<crate::rules::LoadError>().is_some();
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("kamwatch: error: {e:#}");
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(daemon: bool) {
    let default = if daemon { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KAMWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

fn dispatch(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Run => {
            let cfg = config::load(&cli.config)?;
            crate::daemon::run(cfg)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => check(&cli.config),
        Command::Ingest { files } => ingest(&config::load(&cli.config)?, files),
        Command::Eval {
            as_of,
            dry_run,
            format,
        } => eval(&config::load(&cli.config)?, *as_of, *dry_run, *format),
        Command::Silence { action } => silence(&config::load(&cli.config)?, action),
        Command::History {
            account,
            rule,
            since,
            format,
        } => history(
            &config::load(&cli.config)?,
            &crate::history::Filter {
                account: account.clone(),
                rule: rule.clone(),
                since: *since,
            },
            *format,
        ),
        Command::Generate {
            out,
            seed,
            accounts,
            months,
            end,
        } => {
            let out = match out {
                Some(o) => o.clone(),
                None => config::load(&cli.config)?.inbox(),
            };
            let s = crate::generate::generate(&crate::generate::GenerateOptions {
                out_dir: out,
                seed: *seed,
                accounts: *accounts,
                end: end.unwrap_or_else(|| chrono::Local::now().date_naive()),
                months: *months,
            })?;
            let mut o = std::io::stdout().lock();
            for f in &s.files {
                writeln!(o, "wrote {}", f.display())?;
            }
            writeln!(
                o,
                "{} accounts, {} order lines, {} visits; planted: {} declining, {} margin slipping, {} visits lapsed",
                s.accounts,
                s.order_lines,
                s.visits,
                s.declining.len(),
                s.margin_slipping.len(),
                s.lapsed_visits.len()
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(path: &Path) -> Result<ExitCode> {
    let cfg = config::load(path)?;
    let mut o = std::io::stdout().lock();
    writeln!(o, "config {}: ok", path.display())?;
    let (rules, errors) = RuleSet::load_dir(&cfg.rules())?;
    writeln!(
        o,
        "rules {}: {} loaded, {} with errors",
        cfg.rules().display(),
        rules.rules.len(),
        errors.len()
    )?;
    for e in &errors {
        writeln!(o, "{e}")?;
    }
    if rules.rules.is_empty() && errors.is_empty() {
        writeln!(
            o,
            "warning: no rules in {}: nothing will ever fire",
            cfg.rules().display()
        )?;
        return Ok(ExitCode::from(1));
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn ingest(cfg: &Loaded, files: &[PathBuf]) -> Result<ExitCode> {
    let mut conn = crate::store::open(&cfg.database())?;
    let inbox = std::fs::canonicalize(cfg.inbox()).ok();
    let mut o = std::io::stdout().lock();
    let mut failed = false;
    for f in files {
        if !f.is_file() {
            writeln!(o, "{}: not a file", f.display())?;
            failed = true;
            continue;
        }
        let in_inbox = inbox.as_ref().is_some_and(|i| {
            std::fs::canonicalize(f).is_ok_and(|c| c.parent() == Some(i.as_path()))
        });
        let r = if in_inbox {
            crate::ingest::ingest_file(cfg, &mut conn, f)?
        } else {
            crate::ingest::ingest_copy(cfg, &mut conn, f)?
        };
        let ds = r.dataset.map(|d| d.name()).unwrap_or("?");
        match r.outcome {
            Outcome::Ingested => writeln!(o, "ingested {} ({ds}): {} rows", f.display(), r.rows)?,
            Outcome::Duplicate => writeln!(
                o,
                "duplicate {} ({ds}): same content was ingested before; counted nowhere",
                f.display()
            )?,
            Outcome::Rejected => {
                failed = true;
                writeln!(
                    o,
                    "rejected {}: {}\n  details: {}.errors.txt",
                    f.display(),
                    r.reason.unwrap_or_default(),
                    r.moved_to.display()
                )?
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn eval(cfg: &Loaded, as_of: Option<NaiveDate>, dry_run: bool, format: Format) -> Result<ExitCode> {
    let mut conn = crate::store::open(&cfg.database())?;
    let (rules, errors) = RuleSet::load_dir(&cfg.rules())?;
    for e in &errors {
        eprintln!("rule not loaded: {e}");
    }
    let as_of = as_of.unwrap_or_else(|| chrono::Local::now().date_naive());
    let report = pipeline::evaluate(cfg, &mut conn, &rules, as_of, dry_run)?;
    let delivery = if dry_run {
        None
    } else {
        Some(pipeline::deliver(cfg, &conn)?)
    };
    let mut o = std::io::stdout().lock();
    for (i, f) in report.findings.iter().enumerate() {
        let started = report.started.contains(&i);
        match format {
            Format::Json => {
                let figures: serde_json::Map<String, serde_json::Value> =
                    f.figures.iter().cloned().collect();
                let v = serde_json::json!({
                    "as_of": as_of.to_string(),
                    "rule": &*f.rule,
                    "account_id": f.account.id,
                    "account_name": f.account.name,
                    "tier": f.account.tier,
                    "owner": f.account.owner,
                    "key": f.key,
                    "severity": f.severity.as_str(),
                    "title": f.title,
                    "figures": figures,
                    "action": f.action,
                    "started": started,
                });
                writeln!(o, "{v}")?;
            }
            Format::Text => writeln!(
                o,
                "{:<8} {:<18} {:<8} {}  {}{}",
                f.severity.as_str(),
                f.rule,
                f.account.id,
                f.account.name,
                f.title,
                match (started, dry_run) {
                    (true, false) => "  (new)",
                    (true, true) => "  (would start)",
                    _ => "",
                }
            )?,
        }
    }
    for e in &report.errors {
        eprintln!("{e}");
    }
    if format == Format::Text {
        write!(
            o,
            "as of {as_of}: {} accounts x {} rules, {} warnings raised",
            report.accounts,
            report.rules,
            report.findings.len()
        )?;
        if dry_run {
            writeln!(o, " (dry run: nothing recorded or sent)")?;
        } else {
            let d = delivery.unwrap_or_default();
            writeln!(
                o,
                ", {} started, {} resolved; mail: {} sent, {} retrying, {} dead",
                report.started.len(),
                report.resolved,
                d.sent,
                d.retrying,
                d.dead
            )?;
        }
    }
    Ok(if report.errors.is_empty() && errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn silence(cfg: &Loaded, action: &SilenceCommand) -> Result<ExitCode> {
    use crate::silence::{self, Scope};
    let conn = crate::store::open(&cfg.database())?;
    let mut o = std::io::stdout().lock();
    match action {
        SilenceCommand::Add {
            rule,
            account,
            tier,
            owner,
            until,
            reason,
        } => {
            let scope = match (account, tier, owner) {
                (Some(a), None, None) => Scope::Account(a.clone()),
                (None, Some(t), None) => Scope::Tier(t.to_uppercase()),
                (None, None, Some(w)) => Scope::Owner(w.clone()),
                _ => {
                    eprintln!(
                        "kamwatch: error: silence add needs exactly one of --account, --tier or --owner"
                    );
                    return Ok(ExitCode::from(2));
                }
            };
            // A typo would silence nothing while the user believes otherwise.
            if rule != "*" {
                let known: Vec<String> = std::fs::read_dir(cfg.rules())
                    .map(|rd| {
                        rd.filter_map(|e| e.ok().map(|e| e.path()))
                            .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
                            .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                if !known.contains(rule) {
                    let mut known = known;
                    known.sort();
                    eprintln!(
                        "kamwatch: error: --rule {rule:?} is not a rule in {}; the rules are: {}. Use '*' for every rule",
                        cfg.rules().display(),
                        known.join(", ")
                    );
                    return Ok(ExitCode::from(2));
                }
            }
            if let Scope::Tier(t) = &scope
                && !["A", "B", "C"].contains(&t.as_str())
            {
                eprintln!("kamwatch: error: --tier {t:?}: tiers are A, B and C");
                return Ok(ExitCode::from(2));
            }
            if let Scope::Account(a) = &scope {
                let known: bool = conn
                    .query_row("SELECT 1 FROM accounts WHERE id = ?1", [a], |_| Ok(()))
                    .is_ok();
                if !known {
                    eprintln!(
                        "kamwatch: warning: account {a:?} is not in the customer master (yet); the silence is added anyway"
                    );
                }
            }
            let id = match silence::add(&conn, rule, &scope, *until, reason) {
                Ok(id) => id,
                Err(e) => {
                    eprintln!("kamwatch: error: {e:#}");
                    return Ok(ExitCode::from(2));
                }
            };
            writeln!(
                o,
                "silence {id} added: {rule} for {scope_text} through {until}",
                scope_text = scope_text(&scope)
            )?;
        }
        SilenceCommand::List { format } => {
            for s in silence::list(&conn)? {
                match format {
                    Format::Json => writeln!(o, "{}", serde_json::to_string(&s)?)?,
                    Format::Text => writeln!(
                        o,
                        "{:>4}  {:<18} {:<24} until {}  {}  {}",
                        s.id,
                        s.rule,
                        scope_text(&s.scope),
                        s.until,
                        match &s.expired_at {
                            Some(at) => format!("expired {at}"),
                            None => "active".to_string(),
                        },
                        s.reason
                    )?,
                }
            }
        }
        SilenceCommand::Expire { id } => match silence::expire(&conn, *id) {
            Ok(s) => writeln!(o, "silence {} expired", s.id)?,
            Err(e) => {
                eprintln!("kamwatch: error: {e:#}");
                return Ok(ExitCode::from(1));
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn scope_text(s: &crate::silence::Scope) -> String {
    use crate::silence::Scope;
    match s {
        Scope::Account(a) => format!("account {a}"),
        Scope::Tier(t) => format!("tier {t}"),
        Scope::Owner(w) => format!("owner {w}"),
    }
}

fn history(cfg: &Loaded, filter: &crate::history::Filter, format: Format) -> Result<ExitCode> {
    let conn = crate::store::open(&cfg.database())?;
    let mut o = std::io::stdout().lock();
    for e in crate::history::query(&conn, filter)? {
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
                writeln!(
                    o,
                    "{}  {:<18} {:<10} {:<8} {:<40} {}",
                    e.as_of, e.rule, e.account_id, e.severity, what, e.title
                )?
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
