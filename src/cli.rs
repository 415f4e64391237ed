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
                || e.downcast_ref::<crate::rules::LoadError>().is_some()
                || e.downcast_ref::<crate::rules::testing::TestFileError>()
                    .is_some();
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
            rule: Some(rule),
            account: Some(account),
            explain: true,
            ..
        } => explain(&config::load(&cli.config)?, *as_of, rule, account),
        Command::Eval {
            as_of,
            dry_run,
            format,
            ..
        } => eval(&config::load(&cli.config)?, *as_of, *dry_run, *format),
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
    let (rules, errors, unknown) = RuleSet::load_config(cfg)?;
    for e in &errors {
        eprintln!("rule not loaded: {e}");
    }
    for u in &unknown {
        eprintln!("warning: {u}");
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

fn explain(cfg: &Loaded, as_of: Option<NaiveDate>, rule: &str, account: &str) -> Result<ExitCode> {
    let conn = crate::store::open(&cfg.database())?;
    let (rules, errors, _) = RuleSet::load_config(cfg)?;
    for e in &errors {
        eprintln!("rule not loaded: {e}");
    }
    let as_of = as_of.unwrap_or_else(|| chrono::Local::now().date_naive());
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
    use crate::rules::bench;
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
            "{:<56} {:>8} evals in {:>6.3} s = {:>9.0}/s wall; {:>6.2} CPU s = {:>9.0}/CPU s ({} alerts)",
            m.label,
            m.evaluations,
            m.secs,
            m.per_sec(),
            m.cpu_secs.unwrap_or(0.0),
            m.per_cpu_sec().unwrap_or(0.0),
            m.alerts
        )?;
    }
    if per_rule {
        for name in &names {
            let one = rules.subset(&[name.to_string()]);
            if let Some(m) = best(&|| bench::optimized(&one, &snap, 1)) {
                writeln!(
                    o,
                    "  {name:<24} 1 thread: {:>9.0}/s wall, {:>9.0}/CPU s ({} alerts)",
                    m.per_sec(),
                    m.per_cpu_sec().unwrap_or(0.0),
                    m.alerts
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
