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
        let bar = progress_bar(f);
        let name = f.display().to_string();
        let r =
            crate::ingest::ingest_with_progress(
                cfg,
                &mut conn,
                f,
                !in_inbox,
                &mut |rows| match &bar {
                    Some(b) => b.set_position(rows),
                    None => tracing::debug!(file = %name, rows, "ingesting"),
                },
            );
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let r = r?;
        let ds = r.dataset.map(|d| d.name()).unwrap_or("?");
        match r.outcome {
            Outcome::Ingested => {
                writeln!(o, "ingested {} ({ds}): {} rows", f.display(), r.rows)?;
                if let Some(note) = &r.reason {
                    writeln!(o, "  note: {note}")?;
                }
                if let Some(e) = &r.errors_file {
                    writeln!(o, "  skipped rows: {}", e.display())?;
                }
            }
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

/// Files at least this big get a progress bar (on a terminal).
const PROGRESS_BAR_BYTES: u64 = 4 << 20;

/// A progress bar (rows, rows/s) on stderr for a large file, when stderr is
/// a terminal; `None` otherwise, so scripts and logs stay quiet.
fn progress_bar(f: &Path) -> Option<indicatif::ProgressBar> {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    if std::fs::metadata(f).map(|m| m.len()).unwrap_or(0) < PROGRESS_BAR_BYTES {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} {msg} {human_pos} rows ({per_sec:0}, {elapsed})",
    )
    .ok()?;
    bar.set_style(style);
    bar.set_message(
        f.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(bar)
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
