//! CLI: the `kamwatch` command line — argument parsing, logging set-up,
//! output formats and exit codes (0 success, 1 a finding or failure of the
//! job, 2 usage or configuration error). Each command is a thin wrapper
//! over `pipeline`, `daemon` or `generate`; no stage logic lives here.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
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
    Check {
        /// Also print each rule's effective policy: what its SETTINGS,
        /// `rule_settings:` and `alerts:` add up to.
        #[arg(long)]
        verbose: bool,
    },
    /// Is the daemon running; last ingest and evaluation; alerts and outbox
    /// (exit 0 running, 1 not running).
    Status {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Rebuild a lost or damaged database from the archived inputs
    /// (`archive/`, oldest first), into the configured database path, which
    /// must not exist (move a damaged one aside first).
    Rebuild,
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
        /// With --explain: the rule to explain (its file name without .rhai).
        #[arg(long, requires = "explain")]
        rule: Option<String>,
        /// With --explain: the account id to explain the rule for.
        #[arg(long, requires = "explain")]
        account: Option<String>,
        /// Print every figure the rule read for the account, and whether and
        /// why it fired. Records and sends nothing.
        #[arg(long, requires_all = ["rule", "account"])]
        explain: bool,
        /// Check on this database that the daemon's in-memory metrics,
        /// each account read again on its own as after a file, equal a full
        /// read, bit for bit. Exit 1 on a difference. Records nothing.
        #[arg(long, conflicts_with_all = ["explain", "dry_run"])]
        verify_incremental: bool,
    },
    /// Run rule test files (YAML: input rows, an as-of date, the alerts
    /// expected). Exit 0 all pass, 1 any fails, 2 a test file is unusable.
    Test {
        /// Test files or folders of them; default: the tests/ folder in the
        /// rules folder.
        paths: Vec<PathBuf>,
    },
    /// About the rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Benchmarks (they print figures; nothing is asserted).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// The key-account book: tiers, shares, margins, recency, alerts, and
    /// who moved between tiers since last month and last year.
    Accounts {
        /// Only this tier (A, B or C).
        #[arg(long, value_parser = ["A", "B", "C"])]
        tier: Option<String>,
        /// As of this date (YYYY-MM-DD) instead of today.
        #[arg(long, value_parser = parse_date_arg)]
        as_of: Option<NaiveDate>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Replay evaluation over the stored history without sending anything:
    /// what each rule would have mailed, per week and per owner.
    Backtest {
        #[arg(long, value_parser = parse_date_arg)]
        from: NaiveDate,
        #[arg(long, value_parser = parse_date_arg)]
        to: NaiveDate,
        /// Only this rule.
        #[arg(long)]
        rule: Option<String>,
        #[arg(long, value_enum, default_value_t = Every::Day)]
        every: Every,
        /// Warn when a rule would send one owner more than this in a week.
        #[arg(long, default_value_t = 10)]
        max_per_owner_week: u64,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The monthly key-account review per manager: the Pareto curve, tier
    /// moves, largest declines and margin slips, key accounts not visited.
    /// Written as files (text, HTML, PNG) to --out.
    Review {
        #[arg(long, value_parser = parse_date_arg)]
        as_of: Option<NaiveDate>,
        /// Folder for the files; default var/review.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Mail each manager their review now (once per as-of date).
        #[arg(long)]
        send: bool,
    },
    /// Silence an alert's mail until a date (it is still recorded).
    Silence {
        #[command(subcommand)]
        action: SilenceCommand,
    },
    /// Mail tools: send a test message, preview a warning.
    Mail {
        #[command(subcommand)]
        action: MailCommand,
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
pub enum MailCommand {
    /// Send a test message through the configured SMTP server and print
    /// what the server said.
    Test {
        /// The address to send it to.
        #[arg(long)]
        to: String,
    },
    /// Write the HTML, text and chart PNG of an alert's last warning to
    /// files, without sending.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["alert", "rule"])))]
    Preview {
        /// The alert's row number in the alerts table.
        #[arg(long, conflicts_with_all = ["rule", "account"])]
        alert: Option<i64>,
        #[arg(long, requires = "account")]
        rule: Option<String>,
        #[arg(long, requires = "rule")]
        account: Option<String>,
        /// Folder for the files (default: the current folder).
        #[arg(long, default_value = ".")]
        out: PathBuf,
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
        /// Add it even though the account is not in the customer master.
        #[arg(long)]
        force: bool,
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
pub enum Every {
    Day,
    Week,
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Print the rule API reference (markdown), generated from the functions
    /// the rule engine registers; docs/rules-api.md is its output.
    Api,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Rule x account evaluations per second with the rules folder's rules
    /// over generated accounts, beside a naive baseline.
    Rules {
        #[arg(long, default_value_t = 100_000)]
        accounts: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Measured rounds; the best is reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Also measure each rule alone (1 thread).
        #[arg(long)]
        per_rule: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable lines or a table.
    #[value(alias = "table")]
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
    if !matches!(cli.command, Command::Run) {
        init_logging("warn", false);
    }
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            let usage = e.downcast_ref::<ConfigError>().is_some()
                || e.downcast_ref::<crate::rules::LoadError>().is_some()
                || e.downcast_ref::<crate::rules::testing::TestFileError>()
                    .is_some();
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            // Not eprintln!: it panics when stderr cannot be written.
            let _ = writeln!(std::io::stderr(), "kamwatch: error: {e:#}");
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

/// stderr for log lines, never failing: a line that cannot be written (disk
/// full, stderr closed or a broken pipe) is dropped. tracing-subscriber
/// reports a failed write with `eprintln!`, which panics on that same
/// stderr ("failed printing to stderr"): logging must never stop the daemon.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Logs to journald when systemd started us with the journal as stderr
/// (`$JOURNAL_STREAM`), otherwise to stderr. `KAMWATCH_LOG` overrides the
/// level given.
fn init_logging(level: &str, daemon: bool) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("KAMWATCH_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if daemon
        && std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(journald.with_syslog_identifier("kamwatch".into()))
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

fn dispatch(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Run => {
            let cfg = config::load(&cli.config)?;
            init_logging(&cfg.cfg.log, true);
            crate::daemon::run(cfg)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { verbose } => check(&cli.config, *verbose),
        Command::Status { format } => status(&config::load(&cli.config)?, *format),
        Command::Ingest { files } => ingest(&config::load(&cli.config)?, files),
        Command::Rebuild => rebuild(&config::load(&cli.config)?),
        Command::Eval {
            as_of,
            rule: Some(rule),
            account: Some(account),
            explain: true,
            ..
        } => {
            let cfg = config::load(&cli.config)?;
            let as_of = as_of.unwrap_or_else(|| cfg.today());
            explain(&cfg, as_of, rule, account)
        }
        Command::Eval {
            as_of,
            verify_incremental: true,
            format,
            ..
        } => {
            let cfg = config::load(&cli.config)?;
            let as_of = as_of.unwrap_or_else(|| cfg.today());
            verify_incremental(&cfg, as_of, *format)
        }
        Command::Eval {
            as_of,
            dry_run,
            format,
            ..
        } => {
            let cfg = config::load(&cli.config)?;
            let as_of = as_of.unwrap_or_else(|| cfg.today());
            eval(&cfg, as_of, *dry_run, *format)
        }
        Command::Accounts {
            tier,
            as_of,
            format,
        } => {
            let cfg = config::load(&cli.config)?;
            let as_of = as_of.unwrap_or_else(|| cfg.today());
            accounts(&cfg, tier.as_deref(), as_of, *format)
        }
        Command::Backtest {
            from,
            to,
            rule,
            every,
            max_per_owner_week,
            format,
        } => backtest(
            &config::load(&cli.config)?,
            &crate::reports::backtest::Options {
                from: *from,
                to: *to,
                every_days: if *every == Every::Week { 7 } else { 1 },
                rule: rule.clone(),
                max_per_owner_week: *max_per_owner_week,
            },
            *format,
        ),
        Command::Review { as_of, out, send } => {
            let cfg = config::load(&cli.config)?;
            let as_of = as_of.unwrap_or_else(|| cfg.today());
            review(&cfg, as_of, out.clone(), *send)
        }
        Command::Silence { action } => {
            let cfg = config::load(&cli.config)?;
            let today = cfg.today();
            silence(&cfg, action, today)
        }
        Command::Mail { action } => mail(&config::load(&cli.config)?, action),
        Command::History {
            account,
            rule,
            since,
            format,
        } => history(
            &config::load(&cli.config)?,
            &crate::alerts::history::Filter {
                account: account.clone(),
                rule: rule.clone(),
                since: *since,
            },
            *format,
        ),
        Command::Test { paths } => rule_tests(&cli.config, paths),
        Command::Rules {
            command: RulesCommand::Api,
        } => {
            write!(
                std::io::stdout().lock(),
                "{}",
                crate::rules::api::reference()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::Rules {
                    accounts,
                    threads,
                    seed,
                    rounds,
                    per_rule,
                },
        } => bench_rules(
            &config::load(&cli.config)?,
            *accounts,
            *threads,
            *seed,
            *rounds,
            *per_rule,
        ),
        Command::Generate {
            out,
            seed,
            accounts,
            months,
            end,
        } => {
            // The last day defaults to today in the config's zone; without
            // a usable config (generating into --out), in the system's.
            let cfg = match out {
                Some(_) => config::load(&cli.config).ok(),
                None => Some(config::load(&cli.config)?),
            };
            let Some(out) = out.clone().or_else(|| cfg.as_ref().map(Loaded::inbox)) else {
                anyhow::bail!("generate: give --out FOLDER, or a config whose inbox to fill");
            };
            let today = cfg
                .as_ref()
                .map_or_else(|| config::Zone::Local.today(), Loaded::today);
            let s = crate::generate::generate(&crate::generate::GenerateOptions {
                out_dir: out,
                seed: *seed,
                accounts: *accounts,
                end: end.unwrap_or(today),
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

fn check(path: &Path, verbose: bool) -> Result<ExitCode> {
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
    // Rules in one language still work; English readers are told.
    if cfg.style().en() {
        for r in &rules.rules {
            for w in crate::rules::chinese_only_texts(r) {
                writeln!(o, "warning: {w}")?;
            }
        }
    }
    if verbose {
        // One precedence for every key: rule_settings.R (alerts.rules.R
        // is read into it) > the script's SETTINGS > the alerts: defaults.
        let policies = crate::alerts::Policies::for_rules(&cfg.cfg, &rules);
        for r in &rules.rules {
            let s = r.settings();
            let p = policies.get(&r.name);
            let list = |v: &Option<Vec<String>>, none: &str| {
                v.as_ref()
                    .filter(|v| !v.is_empty())
                    .map_or(none.to_string(), |v| v.join(","))
            };
            let mut recipients = vec!["owner".to_string()];
            recipients.extend(p.extra_recipients.iter().cloned());
            writeln!(
                o,
                "rule {}: enabled {}, tiers {}, needs {}, book_needs {}, severity {}, for_evaluations {}, repeat_interval_days {}, recipients {}, notify_resolved {}, keep_firing_for_days {}, escalate_after_days {}",
                r.name,
                if r.enabled() { "yes" } else { "no" },
                list(&s.tiers, "all"),
                list(&s.needs, "nothing"),
                list(&s.book_needs, "nothing"),
                s.severity.as_deref().unwrap_or("warning"),
                p.for_evaluations,
                p.repeat_interval_days,
                recipients.join(","),
                if p.notify_resolved { "yes" } else { "no" },
                p.keep_firing_for_days,
                p.escalate_after_days,
            )?;
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
                    None => tracing::debug!(file = ?name, rows, "ingesting"),
                },
            );
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let r = r?;
        let ds = r.dataset.map(|d| d.name()).unwrap_or("?");
        match r.outcome {
            Outcome::Ingested => {
                writeln!(
                    o,
                    "ingested {} ({ds}): {} rows (read {}, stored {}, replaced {} by key from earlier files, skipped {})",
                    f.display(),
                    r.rows,
                    r.read,
                    r.rows,
                    r.replaced,
                    r.skipped
                )?;
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

/// The archived inputs in the order they were ingested: day folders by
/// name, the files in each by mtime (an archived file keeps the mtime it
/// had in the inbox), then name. Reason files beside an archived file and
/// the staging folder are left out.
pub fn archived_inputs(archive: &Path) -> Result<Vec<PathBuf>> {
    let mut days: Vec<PathBuf> = std::fs::read_dir(archive)
        .with_context(|| format!("reading the archive {}", archive.display()))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    days.sort();
    let mut out = Vec::new();
    for day in days {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for e in std::fs::read_dir(&day)
            .with_context(|| format!("reading {}", day.display()))?
            .flatten()
        {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if !m.is_file() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(base) = name.strip_suffix(".errors.txt")
                && day.join(base).exists()
            {
                continue;
            }
            files.push((m.modified().unwrap_or(std::time::UNIX_EPOCH), p));
        }
        files.sort();
        out.extend(files.into_iter().map(|(_, p)| p));
    }
    Ok(out)
}

/// `kamwatch rebuild`: a new database from the archive.
fn rebuild(cfg: &Loaded) -> Result<ExitCode> {
    let db = cfg.database();
    if db.exists() {
        anyhow::bail!(
            "the database {} exists; rebuild writes a new one. Stop kamwatch, move the old file aside (with its -wal and -shm files), then run `kamwatch rebuild` again",
            db.display()
        );
    }
    if crate::daemon::service::holder(&crate::daemon::service::lock_path(&db)).is_some() {
        anyhow::bail!("kamwatch is running on {}; stop it first", db.display());
    }
    let files = archived_inputs(&cfg.archive())?;
    let mut conn = crate::store::open(&db)?;
    let mut o = std::io::stdout().lock();
    let (mut ingested, mut failed) = (0u64, false);
    for f in &files {
        let r = crate::ingest::ingest_in_place(cfg, &mut conn, f)
            .with_context(|| format!("rebuilding from {}", f.display()))?;
        match r.outcome {
            Outcome::Ingested => ingested += r.rows,
            Outcome::Duplicate => {}
            Outcome::Rejected => {
                failed = true;
                writeln!(
                    o,
                    "rejected {}: {}",
                    f.display(),
                    r.reason.unwrap_or_default()
                )?;
            }
        }
    }
    writeln!(
        o,
        "rebuilt {} from {} archived files in {}: {ingested} rows",
        db.display(),
        files.len(),
        cfg.archive().display()
    )?;
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

/// `eval --verify-incremental`: see `metrics::live::verify`.
fn verify_incremental(cfg: &Loaded, as_of: NaiveDate, format: Format) -> Result<ExitCode> {
    let conn = crate::store::open(&cfg.database())?;
    let v = crate::metrics::live::verify(&conn, as_of, &cfg.cfg.tiers)?;
    let same = v.difference.is_none();
    match format {
        Format::Json => {
            let difference = v.difference.as_ref().map(|(line, full, inc)| {
                serde_json::json!({ "line": line, "full": full, "incremental": inc })
            });
            println!(
                "{}",
                serde_json::json!({
                    "as_of": as_of.to_string(),
                    "accounts_reread": v.accounts,
                    "lines": v.lines,
                    "same": same,
                    "difference": difference,
                })
            );
        }
        Format::Text => match &v.difference {
            None => println!(
                "incremental == full as of {as_of}: {} accounts read again one by one, {} lines of metrics compared, no difference",
                v.accounts, v.lines
            ),
            Some((line, full, inc)) => println!(
                "incremental != full as of {as_of}: line {line} of the metrics differs\n  full:        {full}\n  incremental: {inc}\nPlease report this to the kamwatch maintainers; meanwhile SIGHUP (systemctl reload kamwatch) makes the daemon read everything again"
            ),
        },
    }
    Ok(if same {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn eval(cfg: &Loaded, as_of: NaiveDate, dry_run: bool, format: Format) -> Result<ExitCode> {
    let mut conn = crate::store::open(&cfg.database())?;
    // The alerts on record move forward only: an evaluation as of an
    // earlier day than the newest on record would resolve (and mail) what
    // is still true today, and one after today would start what is not
    // yet known. Looking at another day is a dry run (or a backtest).
    if !dry_run {
        let today = cfg.today();
        let newest: Option<String> =
            conn.query_row("SELECT MAX(as_of) FROM evaluations", [], |r| r.get(0))?;
        let newest = newest.as_deref().and_then(crate::store::parse_ymd);
        if as_of > today {
            eprintln!(
                "eval --as-of {as_of}: that is after today ({today} in {}); nothing is known of it yet. Add --dry-run to see what the rules say of the data as of then",
                cfg.cfg.schedule.zone
            );
            return Ok(ExitCode::from(2));
        }
        if let Some(newest) = newest.filter(|n| as_of < *n) {
            eprintln!(
                "eval --as-of {as_of}: the alerts are on record as of {newest}; an evaluation as of an earlier day would resolve and mail what is still true. Add --dry-run to look at {as_of}, or use `kamwatch backtest` for a stretch of past days"
            );
            return Ok(ExitCode::from(2));
        }
    }
    let (rules, errors, unknown) = RuleSet::load_config(cfg)?;
    for e in &errors {
        eprintln!("rule not loaded: {e}");
    }
    for u in &unknown {
        eprintln!("warning: {u}");
    }
    let report = pipeline::evaluate(cfg, &mut conn, &rules, as_of, dry_run)?;
    let delivery = if dry_run {
        None
    } else {
        Some(pipeline::deliver(cfg, &conn, Default::default())?)
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
                    "units": f.units,
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
    // Run-time failures were logged once per rule (pipeline::evaluate).
    if format == Format::Text {
        write!(
            o,
            "as of {as_of}: {} accounts x {} rules, {} warnings raised",
            report.accounts,
            report.rules,
            report.findings.len()
        )?;
        if !report.errors.is_empty() {
            let rules = crate::rules::failures_by_rule(&report.errors).len();
            write!(
                o,
                ", {} rule run(s) failed ({rules} rule(s); their alerts left as they were)",
                report.errors.len()
            )?;
        }
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

fn mail(cfg: &Loaded, action: &MailCommand) -> Result<ExitCode> {
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

fn status(cfg: &Loaded, format: Format) -> Result<ExitCode> {
    let pid = crate::daemon::service::holder(&crate::daemon::service::lock_path(&cfg.database()));
    let db = cfg.database();
    let mut o = std::io::stdout().lock();
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
                pid.map_or("is not running".to_string(), |p| format!(
                    "is running (pid {p})"
                )),
                db.display()
            )?,
        }
        return Ok(ExitCode::from(if pid.is_some() { 0 } else { 1 }));
    }
    // Evaluations failing, as the daemon noted beside the database.
    let failing = std::fs::read_to_string(crate::daemon::eval_failed_path(&db))
        .ok()
        .and_then(|t| {
            let (at, error) = t.trim_end().split_once('\t')?;
            Some((at.to_string(), error.to_string()))
        });
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
                    pid.map_or("is not running".to_string(), |p| format!(
                        "is running (pid {p})"
                    )),
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
            writeln!(
                o,
                "kamwatch {}",
                pid.map_or("is not running".to_string(), |p| format!(
                    "is running (pid {p})"
                ))
            )?;
            writeln!(o, "database {}", db.display())?;
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
            if let Some((at, error)) = &failing {
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
            if s.rejected_files > 0 {
                writeln!(
                    o,
                    "rejected files: {} (reasons in {})",
                    s.rejected_files,
                    cfg.rejected().display()
                )?;
            }
        }
    }
    Ok(ExitCode::from(if pid.is_some() { 0 } else { 1 }))
}

fn accounts(
    cfg: &Loaded,
    tier: Option<&str>,
    as_of: NaiveDate,
    format: Format,
) -> Result<ExitCode> {
    let conn = crate::store::open(&cfg.database())?;
    let book = crate::reports::accounts::book(&conn, as_of, &cfg.cfg.tiers)?;
    let keep = |t: &str| tier.is_none_or(|want| want == t);
    let mut o = std::io::stdout().lock();
    let days = |d: Option<i64>| d.map_or("-".to_string(), |d| d.to_string());
    let style = cfg.style();
    match format {
        Format::Json => {
            // The raw numbers, and what each is (as eval's figures).
            let units: serde_json::Map<String, serde_json::Value> = crate::reports::accounts::UNITS
                .iter()
                .map(|(k, u)| (k.to_string(), u.name().into()))
                .collect();
            for r in book.rows.iter().filter(|r| keep(r.tier)) {
                let mut v = serde_json::to_value(r)?;
                v["units"] = units.clone().into();
                writeln!(o, "{v}")?;
            }
            for (since, list) in [("month", &book.since_month), ("year", &book.since_year)] {
                for m in list.iter().filter(|m| keep(m.to) || keep(m.from)) {
                    let mut v = serde_json::to_value(m)?;
                    v["migration_since"] = since.into();
                    writeln!(o, "{v}")?;
                }
            }
        }
        Format::Text => {
            writeln!(
                o,
                "{:>4}  {:<8} {:<20} {:<6} {:>4} {:>7} {:>7} {:>7} {:>5} {:>14} {:>6} {:>6} {:>6} {:>6}",
                "rank",
                "id",
                "name",
                "owner",
                "tier",
                "share%",
                "cum%",
                "GP sh%",
                "GP t",
                "revenue 12m",
                "GM%",
                "order",
                "visit",
                "alerts"
            )?;
            for r in book.rows.iter().filter(|r| keep(r.tier)) {
                writeln!(
                    o,
                    "{:>4}  {:<8} {} {} {:>4} {:>7.2} {:>7.2} {:>7.2} {:>5} {:>14} {:>6.1} {:>6} {:>6} {:>6}",
                    r.rank,
                    r.id,
                    pad(&r.name, 20),
                    pad(&r.owner, 6),
                    r.tier,
                    r.share_pct,
                    r.cumulative_pct,
                    r.gross_profit_share_pct,
                    r.gross_profit_tier,
                    style.money(r.revenue_12m),
                    r.margin_pct_12m,
                    days(r.days_since_last_order),
                    days(r.days_since_last_visit),
                    r.alerts_firing
                )?;
            }
            for (since, list) in [
                ("last month", &book.since_month),
                ("last year", &book.since_year),
            ] {
                let list: Vec<_> = list.iter().filter(|m| keep(m.to) || keep(m.from)).collect();
                writeln!(o, "\ntier moves since {since} ({}):", list.len())?;
                for m in list {
                    writeln!(o, "  {} -> {}  {} {}", m.from, m.to, m.id, m.name)?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Pads to a display width, counting CJK characters as two columns.
fn pad(s: &str, width: usize) -> String {
    let w: usize = s
        .chars()
        .map(|c| if c.len_utf8() > 1 { 2 } else { 1 })
        .sum();
    let mut out = s.to_string();
    for _ in w..width {
        out.push(' ');
    }
    out
}

fn silence(cfg: &Loaded, action: &SilenceCommand, today: NaiveDate) -> Result<ExitCode> {
    use crate::alerts::silence::{self, Scope};
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
            force,
        } => {
            if *until < today {
                eprintln!(
                    "kamwatch: error: --until {until} is in the past (today is {today} in {}); a silence ending then would silence nothing",
                    cfg.cfg.schedule.zone
                );
                return Ok(ExitCode::from(2));
            }
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
                if !known && !*force {
                    eprintln!(
                        "kamwatch: error: --account {a:?} is not in the customer master; check the id (`kamwatch accounts` lists them), or add --force to silence it before its data arrives"
                    );
                    return Ok(ExitCode::from(2));
                }
            }
            let id = match silence::add(&conn, rule, &scope, *until, reason) {
                Ok(id) => id,
                // The database failing is the job failing (1), not usage.
                Err(e) if e.downcast_ref::<rusqlite::Error>().is_some() => return Err(e),
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
                    Format::Json => {
                        let mut v = serde_json::to_value(&s)?;
                        v["active"] = s.active(today).into();
                        writeln!(o, "{v}")?
                    }
                    Format::Text => writeln!(
                        o,
                        "{:>4}  {:<18} {:<24} until {}  {}  {}",
                        s.id,
                        s.rule,
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

fn scope_text(s: &crate::alerts::silence::Scope) -> String {
    use crate::alerts::silence::Scope;
    match s {
        Scope::Account(a) => format!("account {a}"),
        Scope::Tier(t) => format!("tier {t}"),
        Scope::Owner(w) => format!("owner {w}"),
    }
}

fn history(
    cfg: &Loaded,
    filter: &crate::alerts::history::Filter,
    format: Format,
) -> Result<ExitCode> {
    let conn = crate::store::open(&cfg.database())?;
    let entries = crate::alerts::history::query(&conn, filter)?;
    if let Some(a) = &filter.account
        && entries.is_empty()
    {
        let known: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ?1)",
            [a],
            |r| r.get(0),
        )?;
        if !known {
            eprintln!(
                "kamwatch: error: there is no account {a:?} in the customer master or the alert history; `kamwatch accounts` lists the accounts"
            );
            return Ok(ExitCode::from(1));
        }
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

fn backtest(
    cfg: &Loaded,
    opts: &crate::reports::backtest::Options,
    format: Format,
) -> Result<ExitCode> {
    if opts.from > opts.to {
        return Err(ConfigError::invalid(
            cfg.file.clone(),
            format!("backtest: --from {} is after --to {}", opts.from, opts.to),
        )
        .into());
    }
    let conn = crate::store::open(&cfg.database())?;
    let (rules, errors, _) = RuleSet::load_config(cfg)?;
    for e in &errors {
        eprintln!("rule not loaded: {e}");
    }
    if let Some(r) = &opts.rule
        && !rules.rules.iter().any(|x| &*x.name == r)
    {
        let names: Vec<&str> = rules.rules.iter().map(|r| &*r.name).collect();
        return Err(ConfigError::invalid(
            cfg.rules(),
            format!("no rule named {r:?}; the rules are {}", names.join(", ")),
        )
        .into());
    }
    let report = crate::reports::backtest::run(&conn, cfg, &rules, opts)?;
    let mut o = std::io::stdout().lock();
    match format {
        Format::Json => {
            for r in &report.rules {
                let mut v = serde_json::to_value(r)?;
                v["from"] = report.from.to_string().into();
                v["to"] = report.to.to_string().into();
                v["evaluations"] = report.evaluations.into();
                writeln!(o, "{v}")?;
            }
        }
        Format::Text => {
            writeln!(
                o,
                "backtest {} .. {}: {} evaluations over {} accounts in {:.1} s; nothing recorded or sent",
                report.from, report.to, report.evaluations, report.accounts, report.seconds
            )?;
            for r in &report.rules {
                let weeks = r.per_week.len().max(1) as f64;
                let busiest = r.per_week.values().max().copied().unwrap_or(0);
                writeln!(
                    o,
                    "\n{}: {} alerts would start, {} resolve; {} mails' worth of notices ({:.1} a week on average, {} in the busiest week){}",
                    r.rule,
                    r.started,
                    r.resolved,
                    r.notices,
                    r.notices as f64 / weeks,
                    busiest,
                    if r.errors > 0 {
                        format!("; {} failed runs", r.errors)
                    } else {
                        String::new()
                    }
                )?;
                let mut owners: Vec<_> = r.per_owner.iter().collect();
                owners.sort_by(|a, b| b.1.cmp(a.1));
                let owners: Vec<String> = owners
                    .iter()
                    .take(8)
                    .map(|(o, n)| format!("{o} {n}"))
                    .collect();
                if !owners.is_empty() {
                    writeln!(o, "  per owner: {}", owners.join(", "))?;
                }
                let top: Vec<String> = r
                    .top_accounts
                    .iter()
                    .take(5)
                    .map(|(id, name, n)| format!("{id} {name} ({n})"))
                    .collect();
                if !top.is_empty() {
                    writeln!(o, "  flagged most: {}", top.join(", "))?;
                }
                for (owner, week, n) in &r.floods {
                    writeln!(
                        o,
                        "  warning: {owner} would get {n} notices from {} in the week of {week} (limit {})",
                        r.rule, opts.max_per_owner_week
                    )?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn review(cfg: &Loaded, as_of: NaiveDate, out: Option<PathBuf>, send: bool) -> Result<ExitCode> {
    let conn = crate::store::open(&cfg.database())?;
    if send {
        let queued = pipeline::queue_reviews(cfg, &conn, as_of)?;
        let d = pipeline::deliver(cfg, &conn, Default::default())?;
        writeln!(
            std::io::stdout().lock(),
            "{queued} review(s) queued; mail: {} sent, {} retrying, {} dead",
            d.sent,
            d.retrying,
            d.dead
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let dir = out.unwrap_or_else(|| cfg.database().with_file_name("review"));
    std::fs::create_dir_all(&dir)?;
    let reviews = crate::reports::review::build(&conn, as_of, &cfg.cfg.tiers, &cfg.style())?;
    let mut o = std::io::stdout().lock();
    for r in &reviews {
        let stem: String = r
            .manager
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        // Not with_extension: the stem has dots of its own (a.b@c.com).
        let file = |ext: &str| dir.join(format!("{as_of}_{stem}.{ext}"));
        std::fs::write(file("txt"), &r.text)?;
        // The chart beside the HTML, which names it: it shows when the
        // file is opened from disk (a cid: reference works only in mail).
        std::fs::write(file("png"), &r.chart)?;
        std::fs::write(
            file("html"),
            r.html_with_image(&format!("{as_of}_{stem}.png")),
        )?;
        writeln!(
            o,
            "review for {}: {}",
            r.manager,
            dir.join(format!("{as_of}_{stem}.{{txt,html,png}}"))
                .display()
        )?;
    }
    if reviews.is_empty() {
        writeln!(o, "no account has a manager email; nothing to review")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn explain(cfg: &Loaded, as_of: NaiveDate, rule: &str, account: &str) -> Result<ExitCode> {
    let conn = crate::store::open(&cfg.database())?;
    let (rules, errors, _) = RuleSet::load_config(cfg)?;
    for e in &errors {
        eprintln!("rule not loaded: {e}");
    }
    let snap = crate::metrics::build(&conn, as_of, &cfg.cfg.tiers)?;
    match rules.explain(&snap, rule, account) {
        Ok(ex) => {
            write!(std::io::stdout().lock(), "{ex}")?;
            Ok(if ex.error.is_some() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(e) => {
            eprintln!("kamwatch: error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

/// `kamwatch test`: the rules folder comes from the config when it loads,
/// else `rules/`; test files may name their own with `rules_dir`.
fn rule_tests(config: &Path, paths: &[PathBuf]) -> Result<ExitCode> {
    use crate::rules::testing;
    let rules_dir = config::load(config)
        .map(|c| c.rules())
        .unwrap_or_else(|_| PathBuf::from("rules"));
    let paths = if paths.is_empty() {
        vec![rules_dir.join("tests")]
    } else {
        paths.to_vec()
    };
    let files = testing::collect(&paths)?;
    let mut o = std::io::stdout().lock();
    let (mut passed, mut failed) = (0, 0);
    for f in &files {
        let results = testing::run_file(f, &rules_dir)?;
        writeln!(o, "{}", f.display())?;
        for r in results {
            if r.passed() {
                passed += 1;
                writeln!(o, "  ok    {}", r.name)?;
            } else {
                failed += 1;
                writeln!(o, "  FAIL  {}\n{}", r.name, r.diff.trim_end())?;
            }
        }
    }
    writeln!(
        o,
        "{} test{}: {passed} passed, {failed} failed",
        passed + failed,
        if passed + failed == 1 { "" } else { "s" }
    )?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn bench_rules(
    cfg: &Loaded,
    accounts: usize,
    threads: usize,
    seed: u64,
    rounds: usize,
    per_rule: bool,
) -> Result<ExitCode> {
    use crate::reports::bench;
    let (rules, errors, _) = RuleSet::load_config(cfg)?;
    if let Some(e) = errors.first() {
        anyhow::bail!("a rule does not compile; fix it before benchmarking:\n{e}");
    }
    let as_of = NaiveDate::from_ymd_opt(2026, 9, 15).unwrap_or_default();
    let mut o = std::io::stdout().lock();
    let t = std::time::Instant::now();
    let snap = bench::synthetic(accounts, seed, as_of);
    let names: Vec<&str> = rules.rules.iter().map(|r| &*r.name).collect();
    writeln!(
        o,
        "{} accounts generated in {:.1} s (tier A {}, B {}, C {}), as of {as_of}; {} rules: {}\nload average before the run: {}",
        snap.accounts.len(),
        t.elapsed().as_secs_f64(),
        snap.portfolio.tier_a,
        snap.portfolio.tier_b,
        snap.portfolio.tier_c,
        names.len(),
        names.join(", "),
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into())
    )?;
    // What each evaluation thread pays up front for an engine of its own.
    let t = std::time::Instant::now();
    for _ in 0..20 {
        drop(crate::rules::engine());
    }
    writeln!(
        o,
        "an engine with the rule API: built in {:.2} ms",
        t.elapsed().as_secs_f64() * 1000.0 / 20.0
    )?;
    let best = |f: &dyn Fn() -> bench::Measured| {
        (0..rounds.max(1))
            .map(|_| f())
            .min_by(|a, b| a.secs.total_cmp(&b.secs))
    };
    let runs = [
        if std::env::var_os("KAMWATCH_BENCH_SKIP_NAIVE").is_some() {
            None
        } else {
            best(&|| bench::naive(&rules, &snap))
        },
        best(&|| bench::optimized(&rules, &snap, 1)),
        best(&|| bench::optimized(&rules, &snap, threads)),
    ];
    for m in runs.into_iter().flatten() {
        writeln!(
            o,
            "{:<56} {:>8} pairs decided in {:>6.3} s = {:>9.0}/s wall; {:>6.2} CPU s = {:>9.0}/CPU s; {:>8} scripts run = {:>9.0}/s wall, {:>9.0}/CPU s ({} alerts)",
            m.label,
            m.evaluations,
            m.secs,
            m.per_sec(),
            m.cpu_secs.unwrap_or(0.0),
            m.per_cpu_sec().unwrap_or(0.0),
            m.scripts,
            m.scripts_per_sec(),
            m.scripts_per_cpu_sec().unwrap_or(0.0),
            m.alerts
        )?;
    }
    if per_rule {
        for name in &names {
            let one = rules.subset(&[name.to_string()]);
            if let Some(m) = best(&|| bench::optimized(&one, &snap, 1)) {
                writeln!(
                    o,
                    "  {name:<24} 1 thread: {:>9.0} pairs/s wall, {:>9.0}/CPU s; {:>9.0} scripts/s wall ({} of {} run; {} alerts)",
                    m.per_sec(),
                    m.per_cpu_sec().unwrap_or(0.0),
                    m.scripts_per_sec(),
                    m.scripts,
                    m.evaluations,
                    m.alerts
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
