//! Generate: realistic sample exports (customer master, order lines, visits) for demos, tests and benchmarks.
//!
//! Owns the synthetic distributor (`cast`: accounts, reps, managers, products; `build`:
//! seasonality and the problems it plants on purpose — declining revenue, slipping margin,
//! lapsed visits — which the summary lists). Output is a pure function of `GenerateOptions`
//! (`options`): a built-in SplitMix64 PRNG (`rng`) and only basic, exactly rounded arithmetic,
//! so a seed gives byte-identical files on any machine. Touches only the output folder it is
//! given, writing each file atomically (`write`: dot-prefixed temp name, fsync, rename).
//! Imports nothing of kamwatch: it sits on the bottom floor.

mod build;
mod cast;
mod options;
mod rng;
#[cfg(test)]
mod tests;
mod write;

use std::fs::{self, File};

use anyhow::{Context, Result, ensure};
use chrono::{Datelike, Months};

use build::{Account, build_accounts, build_orders, build_visits};
pub use options::{GenerateOptions, GenerateSummary};
pub use rng::Rng;
pub use write::{ACCOUNT_HEADER, ORDER_HEADER, VISIT_HEADER};
use write::{write_accounts, write_orders, write_visits};

/// Generates the three exports into `opts.out_dir` and says what it planted.
pub fn generate(opts: &GenerateOptions) -> Result<GenerateSummary> {
    ensure!(opts.accounts >= 1, "accounts must be at least 1");
    let start = opts
        .end
        .with_day(1)
        .and_then(|d| d.checked_sub_months(Months::new(opts.months)))
        .with_context(|| format!("{} months before {} is out of range", opts.months, opts.end))?;
    fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;

    let accounts = build_accounts(opts);
    let orders = build_orders(opts, start, &accounts);
    let visits = build_visits(opts, start, &accounts);

    let end_s = opts.end.format("%Y%m%d").to_string();
    let start_s = start.format("%Y%m%d").to_string();
    let dir = opts.out_dir.as_path();
    let (orders_path, order_lines) = write_orders(
        dir,
        &format!("销售明细_{start_s}-{end_s}.csv"),
        start,
        &accounts,
        &orders,
    )?;
    let visits_path = write_visits(
        dir,
        &format!("拜访记录_{start_s}-{end_s}.csv"),
        start,
        &accounts,
        &visits,
    )?;
    let accounts_path = write_accounts(dir, &format!("客户主数据_{end_s}.csv"), &accounts)?;

    // Make the renames themselves durable.
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }

    let ids = |f: fn(&Account) -> bool| -> Vec<String> {
        let mut ids: Vec<String> = accounts
            .iter()
            .filter(|a| f(a))
            .map(|a| a.id.clone())
            .collect();
        ids.sort();
        ids
    };
    Ok(GenerateSummary {
        files: vec![accounts_path, orders_path, visits_path],
        accounts: accounts.len(),
        order_lines,
        visits: visits.len(),
        declining: ids(|a| a.declining),
        margin_slipping: ids(|a| a.slipping),
        lapsed_visits: ids(|a| a.lapsed),
    })
}
