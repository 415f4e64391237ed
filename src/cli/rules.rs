//! CLI commands about the rules: `eval` (now, as of a date, a dry run,
//! `--explain` one rule for one account, `--verify-incremental`), `test`
//! (rule test files), `rules api` (the reference) and `bench rules`. The
//! work is the pipeline's, the rules' and the reports'; this checks the
//! arguments against what is on record and prints.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use chrono::NaiveDate;

use super::args::{EvalArgs, Format};
use super::exit::USAGE;
use super::output::success_if;
use crate::config::{self, Loaded};
use crate::pipeline::{self, EvalReport};
use crate::rules::RuleSet;

/// `kamwatch eval` in its three forms.
pub fn eval_command(cfg: &Loaded, a: &EvalArgs) -> Result<ExitCode> {
    let as_of = a.as_of.unwrap_or_else(|| cfg.today());
    match (&a.rule, &a.account) {
        (Some(rule), Some(account)) if a.explain => explain(cfg, as_of, rule, account),
        _ if a.verify_incremental => verify_incremental(cfg, as_of, a.format),
        _ => eval(cfg, as_of, a.dry_run, a.format),
    }
}

/// `kamwatch rules api`: the rule API reference, in markdown.
pub fn api() -> Result<ExitCode> {
    write!(
        std::io::stdout().lock(),
        "{}",
        crate::rules::api::reference()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `eval --verify-incremental`: see `metrics::live::verify`.
pub fn verify_incremental(cfg: &Loaded, as_of: NaiveDate, format: Format) -> Result<ExitCode> {
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
    Ok(success_if(same))
}

/// `kamwatch eval [--as-of D] [--dry-run]`: exit 1 when a rule did not
/// load or failed to run, 2 for a date the alerts on record cannot take.
fn eval(cfg: &Loaded, as_of: NaiveDate, dry_run: bool, format: Format) -> Result<ExitCode> {
    let mut conn = crate::store::open(&cfg.database())?;
    if !dry_run && !date_can_be_recorded(cfg, &conn, as_of)? {
        return Ok(ExitCode::from(USAGE));
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
    // Closed alerts (their final notice sent) stay closed while raised or
    // held: said so, not "held open" (probe6 11).
    let closed = crate::alerts::closed_keys(&conn)?;
    let is_closed = |f: &crate::rules::Finding| {
        closed.contains(&(f.rule.to_string(), f.account.id.to_string(), f.key.clone()))
    };
    let mut o = std::io::stdout().lock();
    for (i, f) in report.findings.iter().enumerate() {
        let started = report.started.contains(&i);
        match format {
            Format::Json => {
                let mut v = finding_json(f, as_of, started);
                if is_closed(f) {
                    v["closed"] = true.into();
                }
                writeln!(o, "{v}")?
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
                    _ if is_closed(f) => "  (closed: final notice sent)",
                    _ if !f.starts => "  (held open)",
                    _ => "",
                }
            )?,
        }
    }
    // Run-time failures were logged once per rule (pipeline::evaluate).
    if format == Format::Text {
        eval_summary(&mut o, as_of, &report, delivery, dry_run)?;
    }
    Ok(success_if(report.errors.is_empty() && errors.is_empty()))
}

/// The alerts on record move forward only: an evaluation as of an earlier
/// day than the newest on record would resolve (and mail) what is still
/// true today, and one after today would start what is not yet known.
/// Looking at another day is a dry run (or a backtest). Says why not on
/// stderr.
fn date_can_be_recorded(
    cfg: &Loaded,
    conn: &rusqlite::Connection,
    as_of: NaiveDate,
) -> Result<bool> {
    let today = cfg.today();
    let newest = crate::store::newest_evaluation(conn)?;
    if as_of > today {
        eprintln!(
            "eval --as-of {as_of}: that is after today ({today} in {}); nothing is known of it yet. Add --dry-run to see what the rules say of the data as of then",
            cfg.cfg.schedule.zone
        );
        return Ok(false);
    }
    if let Some(newest) = newest.filter(|n| as_of < *n) {
        eprintln!(
            "eval --as-of {as_of}: the alerts are on record as of {newest}; an evaluation as of an earlier day would resolve and mail what is still true. Add --dry-run to look at {as_of}, or use `kamwatch backtest` for a stretch of past days"
        );
        return Ok(false);
    }
    Ok(true)
}

/// One finding as `eval --format json` prints it.
fn finding_json(f: &crate::rules::Finding, as_of: NaiveDate, started: bool) -> serde_json::Value {
    let figures: serde_json::Map<String, serde_json::Value> =
        f.figures_owned().into_iter().collect();
    let mut v = serde_json::json!({
        "as_of": as_of.to_string(),
        "rule": &*f.rule,
        "account_id": &*f.account.id,
        "account_name": &*f.account.name,
        "tier": f.account.tier,
        "owner": &*f.account.owner,
        "key": f.key,
        "severity": f.severity.as_str(),
        "title": f.title,
        "figures": figures,
        "units": &*f.units,
        "action": &*f.action,
        "started": started,
    });
    // A held finding (`starts: false`) is listed only while it keeps an
    // open alert open (`pipeline::evaluate` leaves the others out).
    if !f.starts {
        v["starts"] = false.into();
    }
    v
}

/// The last line of `eval`'s text output.
fn eval_summary(
    o: &mut impl std::io::Write,
    as_of: NaiveDate,
    report: &EvalReport,
    delivery: Option<crate::mail::Delivery>,
    dry_run: bool,
) -> Result<()> {
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
    Ok(())
}

pub fn explain(cfg: &Loaded, as_of: NaiveDate, rule: &str, account: &str) -> Result<ExitCode> {
    let conn = crate::store::open(&cfg.database())?;
    let (rules, errors, _) = RuleSet::load_config(cfg)?;
    for e in &errors {
        eprintln!("rule not loaded: {e}");
    }
    let snap = crate::metrics::build(&conn, as_of, &cfg.cfg.tiers)?;
    match rules.explain(&snap, rule, account) {
        Ok(mut ex) => {
            ex.closed = crate::alerts::closed_keys(&conn)?
                .into_iter()
                .filter(|(r, a, _)| *r == ex.rule && *a == ex.account)
                .map(|(_, _, k)| k)
                .collect();
            write!(std::io::stdout().lock(), "{ex}")?;
            Ok(success_if(ex.error.is_none()))
        }
        Err(e) => Err(e.into()),
    }
}

/// `kamwatch test`: the rules folder comes from the config when it loads,
/// else `rules/`; test files may name their own with `rules_dir`.
pub fn rule_tests(config: &Path, paths: &[PathBuf]) -> Result<ExitCode> {
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
        let results = testing::run_file(f, &rules_dir, &crate::alerts::replay)?;
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
    Ok(success_if(failed == 0))
}

/// `kamwatch bench rules`: rule x account evaluations per second over
/// generated accounts, naive and optimised, best of `rounds`.
pub fn bench_rules(
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
        writeln!(o, "{}", measured_line(&m))?;
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

/// One measured run of `bench rules`.
fn measured_line(m: &crate::reports::bench::Measured) -> String {
    format!(
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
    )
}
