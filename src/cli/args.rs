//! CLI arguments: the clap structures of every command and its options,
//! and how a date argument is read. Parses only; touches nothing.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};

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
    Eval(EvalArgs),
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
    Backtest(BacktestArgs),
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
    Generate(GenerateArgs),
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Evaluate as of this date (YYYY-MM-DD) instead of today.
    #[arg(long, value_parser = parse_date_arg)]
    pub as_of: Option<NaiveDate>,
    /// Print what would fire; change no state and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// With --explain: the rule to explain (its file name without .rhai).
    #[arg(long, requires = "explain")]
    pub rule: Option<String>,
    /// With --explain: the account id to explain the rule for.
    #[arg(long, requires = "explain")]
    pub account: Option<String>,
    /// Print every figure the rule read for the account, and whether and
    /// why it fired. Records and sends nothing.
    #[arg(long, requires_all = ["rule", "account"])]
    pub explain: bool,
    /// Check on this database that the daemon's in-memory metrics,
    /// each account read again on its own as after a file, equal a full
    /// read, bit for bit. Exit 1 on a difference. Records nothing.
    #[arg(long, conflicts_with_all = ["explain", "dry_run"])]
    pub verify_incremental: bool,
}

#[derive(Args, Debug)]
pub struct BacktestArgs {
    #[arg(long, value_parser = parse_date_arg)]
    pub from: NaiveDate,
    #[arg(long, value_parser = parse_date_arg)]
    pub to: NaiveDate,
    /// Only this rule.
    #[arg(long)]
    pub rule: Option<String>,
    #[arg(long, value_enum, default_value_t = Every::Day)]
    pub every: Every,
    /// Warn when a rule would send one owner more than this in a week.
    #[arg(long, default_value_t = 10)]
    pub max_per_owner_week: u64,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Output folder; default: the config's inbox.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 300)]
    pub accounts: usize,
    /// Months of history.
    #[arg(long, default_value_t = 24)]
    pub months: u32,
    /// Last day of data (YYYY-MM-DD); default today.
    #[arg(long, value_parser = parse_date_arg)]
    pub end: Option<NaiveDate>,
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
        /// Only the rule's alert with this key (a rule such as
        /// lapsed_visits raises more than one per account; the mail's
        /// silence command and `kamwatch history` name the key). Default:
        /// every alert of the rule.
        #[arg(long)]
        key: Option<String>,
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
        /// Add it even though the account is not in the customer master, or
        /// the rule has never raised an alert with --key.
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
