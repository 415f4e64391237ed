//! CLI command `generate`: realistic sample exports, written into `--out`
//! or the config's inbox. The data is `generate`'s; this picks the folder
//! and the last day (today in the config's zone, or the system's when no
//! config is usable) and prints what was written.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::args::GenerateArgs;
use crate::config::{self, Loaded};

/// `kamwatch generate`.
pub fn generate(config: &Path, a: &GenerateArgs) -> Result<ExitCode> {
    // The last day defaults to today in the config's zone; without a
    // usable config (generating into --out), in the system's.
    let cfg = match a.out {
        Some(_) => config::load(config).ok(),
        None => Some(config::load(config)?),
    };
    let Some(out) = a.out.clone().or_else(|| cfg.as_ref().map(Loaded::inbox)) else {
        anyhow::bail!("generate: give --out FOLDER, or a config whose inbox to fill");
    };
    let today = cfg
        .as_ref()
        .map_or_else(|| config::Zone::Local.today(), Loaded::today);
    let s = crate::generate::generate(&crate::generate::GenerateOptions {
        out_dir: out,
        seed: a.seed,
        accounts: a.accounts,
        end: a.end.unwrap_or(today),
        months: a.months,
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
