//! Options: what the generator is asked for and what it says it wrote.
//! Plain values; touches nothing.

use std::path::PathBuf;

use chrono::NaiveDate;

/// What to generate and where.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Folder the three CSV files are written to; created if missing.
    pub out_dir: PathBuf,
    /// Same seed (and other options) → byte-identical files.
    pub seed: u64,
    /// Number of customer accounts (CLI default: 300).
    pub accounts: usize,
    /// Last day of data (CLI default: today).
    pub end: NaiveDate,
    /// History length in months (CLI default: 24); data starts on the first day of the month
    /// `months` months before `end`.
    pub months: u32,
}

/// What was written, and which accounts carry a planted problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateSummary {
    /// The files written, in the order accounts, orders, visits.
    pub files: Vec<PathBuf>,
    pub accounts: usize,
    pub order_lines: usize,
    pub visits: usize,
    /// account ids whose revenue falls in the last 90 days (see below)
    pub declining: Vec<String>,
    /// account ids whose gross margin slips in the last 90 days
    pub margin_slipping: Vec<String>,
    /// account ids not visited in the last 45+ days
    pub lapsed_visits: Vec<String>,
}
