//! CLI commands that read reports off the store: `accounts` (the book:
//! tiers, shares, margins, recency, tier moves), `backtest` (what the rules
//! would have mailed over past days) and `review` (each manager's monthly
//! key-account review, as files or mailed). The figures are `reports`';
//! this lays them out and writes the review files where it is told.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use chrono::NaiveDate;

use super::args::Format;
use super::output::pad;
use crate::config::{ConfigError, Loaded};
use crate::pipeline;
use crate::rules::RuleSet;

pub fn accounts(
    cfg: &Loaded,
    tier: Option<&str>,
    as_of: NaiveDate,
    format: Format,
) -> Result<ExitCode> {
    let conn = crate::store::open(&cfg.database())?;
    let book = crate::reports::accounts::book(&conn, as_of, &cfg.cfg.tiers)?;
    let keep = |t: &str| tier.is_none_or(|want| want == t);
    let mut o = std::io::stdout().lock();
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
            let (count, examples, revenue) = &book.unlisted;
            if *count > 0 {
                let v = serde_json::json!({
                    "unlisted_accounts": count,
                    "examples": examples,
                    "revenue_12m": revenue,
                    "message": crate::reports::accounts::unlisted_accounts(*count, examples, *revenue),
                });
                writeln!(o, "{v}")?;
            }
        }
        Format::Text => accounts_table(&mut o, &book, &keep, &style)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `accounts` as a table, then the tier moves.
fn accounts_table(
    o: &mut impl std::io::Write,
    book: &crate::reports::accounts::Book,
    keep: &dyn Fn(&str) -> bool,
    style: &crate::format::Style,
) -> Result<()> {
    let days = |d: Option<i64>| d.map_or("-".to_string(), |d| d.to_string());
    writeln!(
        o,
        "{}, as of {}",
        crate::reports::accounts::basis_line(&book.tiers),
        book.as_of
    )?;
    let (count, examples, revenue) = &book.unlisted;
    if *count > 0 {
        let line = crate::reports::accounts::unlisted_accounts(*count, examples, *revenue);
        writeln!(o, "warning: {line}")?;
    }
    writeln!(
        o,
        "{:>4}  {:<8} {:<20} {:<6} {:>4} {:>7} {:>8} {:>7} {:>5} {:>5} {:>14} {:>6} {:>6} {:>6} {:>6}",
        "rank",
        "id",
        "name",
        "owner",
        "tier",
        "share%",
        crate::reports::accounts::cumulative_header(book.tiers.by),
        "GP sh%",
        "rev t",
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
            "{:>4}  {:<8} {} {} {:>4} {:>7.2} {} {:>7.2} {:>5} {:>5} {:>14} {:>6.1} {:>6} {:>6} {:>6}",
            r.rank,
            r.id,
            pad(&r.name, 20),
            pad(&r.owner, 6),
            r.tier,
            r.share_pct,
            r.cumulative_cells(),
            r.gross_profit_share_pct,
            r.revenue_tier,
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
    Ok(())
}

pub fn backtest(
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
        Format::Text => backtest_text(&mut o, &report, opts.max_per_owner_week)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `backtest` as text: per rule what would start, resolve and be mailed.
fn backtest_text(
    o: &mut impl std::io::Write,
    report: &crate::reports::backtest::Report,
    max_per_owner_week: u64,
) -> Result<()> {
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
                r.rule, max_per_owner_week
            )?;
        }
    }
    Ok(())
}

pub fn review(
    cfg: &Loaded,
    as_of: NaiveDate,
    out: Option<PathBuf>,
    send: bool,
) -> Result<ExitCode> {
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
    let values = crate::rules::RuleValues::load(cfg);
    let reviews =
        crate::reports::review::build(&conn, as_of, &cfg.cfg.tiers, &cfg.style(), &values)?;
    let mut o = std::io::stdout().lock();
    for r in &reviews {
        let stem = r.file_stem(as_of);
        let file = |ext: &str| dir.join(format!("{stem}.{ext}"));
        std::fs::write(file("txt"), &r.text)?;
        // The chart beside the HTML, which names it: it shows when the
        // file is opened from disk (a cid: reference works only in mail).
        std::fs::write(file("png"), &r.chart)?;
        std::fs::write(file("html"), r.html_with_image(&format!("{stem}.png")))?;
        writeln!(
            o,
            "review for {}: {}",
            r.manager,
            file("{txt,html,png}").display()
        )?;
    }
    if reviews.is_empty() {
        writeln!(o, "no account has a manager email; nothing to review")?;
    }
    Ok(ExitCode::SUCCESS)
}
