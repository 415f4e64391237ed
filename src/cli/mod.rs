//! CLI: the `kamwatch` command line. `main` parses the arguments (`args`),
//! sets up logging (`logging`), runs the command and turns a failure into
//! its message and exit code (`exit`: 0 success, 1 a finding or failure of
//! the job, 2 usage or configuration error). One file per command group —
//! `run` (run, check, status), `ingest` (ingest, rebuild), `rules` (eval,
//! test, rules api, bench), `reports` (accounts, backtest, review),
//! `alerts` (silence, history, mail), `generate` — each a thin wrapper that
//! calls the stages (`pipeline`, `daemon`, `reports`, ...) and prints what
//! they return, laid out by `output`. No stage logic lives here: no SQL,
//! no reading of the rules folder, no file layout of a stage's own.

mod alerts;
pub mod args;
mod exit;
mod generate;
mod ingest;
mod logging;
mod output;
mod reports;
mod rules;
mod run;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser as _;

use crate::config;
use args::{BenchCommand, Every, RulesCommand};
pub use args::{Cli, Command};

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run) {
        logging::init("warn", false);
    }
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => match exit::code(&e) {
            0 => ExitCode::SUCCESS,
            code => {
                // Not eprintln!: it panics when stderr cannot be written.
                let _ = writeln!(std::io::stderr(), "kamwatch: error: {e:#}");
                ExitCode::from(code)
            }
        },
    }
}

/// Runs one command: loads the config where the command needs it and
/// hands the arguments to the command's group.
fn dispatch(cli: &Cli) -> Result<ExitCode> {
    let path = cli.config.as_path();
    let load = || config::load(path);
    match &cli.command {
        Command::Run => run::run(load()?),
        Command::Check { verbose } => run::check(path, *verbose),
        Command::Status { format } => run::status(&load()?, *format),
        Command::Ingest { files } => ingest::ingest(&load()?, files),
        Command::Rebuild => ingest::rebuild(&load()?),
        Command::Eval(a) => rules::eval_command(&load()?, a),
        Command::Test { paths } => rules::rule_tests(path, paths),
        Command::Rules {
            command: RulesCommand::Api,
        } => rules::api(),
        Command::Bench {
            command:
                BenchCommand::Rules {
                    accounts,
                    threads,
                    seed,
                    rounds,
                    per_rule,
                },
        } => rules::bench_rules(&load()?, *accounts, *threads, *seed, *rounds, *per_rule),
        Command::Accounts {
            tier,
            as_of,
            format,
        } => {
            let cfg = load()?;
            let as_of = as_of.unwrap_or_else(|| cfg.today());
            reports::accounts(&cfg, tier.as_deref(), as_of, *format)
        }
        Command::Backtest(a) => reports::backtest(
            &load()?,
            &crate::reports::backtest::Options {
                from: a.from,
                to: a.to,
                every_days: if a.every == Every::Week { 7 } else { 1 },
                rule: a.rule.clone(),
                max_per_owner_week: a.max_per_owner_week,
            },
            a.format,
        ),
        Command::Review { as_of, out, send } => {
            let cfg = load()?;
            let as_of = as_of.unwrap_or_else(|| cfg.today());
            reports::review(&cfg, as_of, out.clone(), *send)
        }
        Command::Silence { action } => {
            let cfg = load()?;
            let today = cfg.today();
            alerts::silence(&cfg, action, today)
        }
        Command::Mail { action } => alerts::mail(&load()?, action),
        Command::History {
            account,
            rule,
            since,
            format,
        } => alerts::history(
            &load()?,
            &crate::alerts::history::Filter {
                account: account.clone(),
                rule: rule.clone(),
                since: *since,
            },
            *format,
        ),
        Command::Generate(a) => generate::generate(path, a),
    }
}
