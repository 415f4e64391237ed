//! Rule test files: `kamwatch test [PATH...]`, the way `promtool test rules`
//! works. A YAML file gives input rows (inline, or CSV fixture files with
//! the canonical column names), an as-of date and the alerts expected; an
//! empty `expect: []` asserts that the rules stay silent.
//!
//! Each test case gets its own SQLite database on disk (a temporary folder,
//! removed afterwards), built through the real migrations, so a test reads
//! its rows through the same `metrics::build` the daemon uses. Touches only
//! the test files, their fixtures, the rules folder and that temporary
//! folder.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::NaiveDate;
use rusqlite::{Connection, params};
use serde::Deserialize;

use super::{Finding, RuleSet};
use crate::config::TierConfig;
use crate::store::date_text;

/// A rule test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The rules folder, relative to this file; default: the folder given
    /// on the command line (the config's `rules`).
    #[serde(default)]
    pub rules_dir: Option<PathBuf>,
    /// Which rules run (file stems); default: every rule in the folder.
    #[serde(default)]
    pub rules: Option<Vec<String>>,
    #[serde(default)]
    pub tiers: Option<TierConfig>,
    /// The seasons, as in the config; default: the shipped ones.
    #[serde(default)]
    pub seasons: Option<BTreeMap<String, crate::config::SeasonConfig>>,
    pub tests: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    pub as_of: Date,
    /// Rules for this case only; default: the file's.
    #[serde(default)]
    pub rules: Option<Vec<String>>,
    /// The locale the rules write their texts in: `zh-CN` (default) or `en`.
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub accounts: Vec<AccountIn>,
    #[serde(default)]
    pub orders: Vec<OrderIn>,
    #[serde(default)]
    pub visits: Vec<VisitIn>,
    #[serde(default)]
    pub receivables: Vec<InvoiceIn>,
    #[serde(default)]
    pub inventory: Vec<StockIn>,
    /// CSV fixture files (canonical column names), relative to the test file.
    #[serde(default)]
    pub files: Files,
    /// The alerts expected, all of them: `[]` asserts silence.
    pub expect: Vec<Expected>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Files {
    #[serde(default)]
    pub accounts: Option<PathBuf>,
    #[serde(default)]
    pub orders: Option<PathBuf>,
    #[serde(default)]
    pub visits: Option<PathBuf>,
    #[serde(default)]
    pub receivables: Option<PathBuf>,
    #[serde(default)]
    pub inventory: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountIn {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub owner_email: Option<String>,
    /// The master's tier column (overrides the computed tier).
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub credit_limit: Option<f64>,
    /// Extra master columns (CSV fixtures cannot carry these).
    #[serde(default)]
    pub attrs: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One order line, or with `from`/`to`/`every` one line every `every` days.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderIn {
    pub account: String,
    #[serde(default)]
    pub date: Option<Date>,
    #[serde(default)]
    pub from: Option<Date>,
    #[serde(default)]
    pub to: Option<Date>,
    #[serde(default)]
    pub every: Option<u32>,
    pub revenue: f64,
    pub cost: f64,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub qty: Option<f64>,
}

/// One visit, or with `from`/`to`/`every` one every `every` days.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisitIn {
    pub account: String,
    #[serde(default)]
    pub date: Option<Date>,
    #[serde(default)]
    pub from: Option<Date>,
    #[serde(default)]
    pub to: Option<Date>,
    #[serde(default)]
    pub every: Option<u32>,
    #[serde(default)]
    pub visitor: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceIn {
    pub account: String,
    #[serde(default)]
    pub invoice: Option<String>,
    pub amount: f64,
    pub due: Date,
    #[serde(default)]
    pub issued: Option<Date>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockIn {
    pub sku: String,
    /// The account the stock is held for; default: the warehouse.
    #[serde(default)]
    pub account: Option<String>,
    pub on_hand: f64,
}

/// An alert expected. Unset fields are not compared; `figures` lists only
/// the figures to check.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub rule: String,
    pub account: String,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub figures: BTreeMap<String, serde_json::Value>,
}

/// A YAML date, "YYYY-MM-DD".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date(pub NaiveDate);

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let s = String::deserialize(d)?;
        NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
            .map(Date)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a date like 2026-11-28")))
    }
}

/// A test file that cannot be run (bad YAML, missing fixture, unknown rule).
#[derive(Debug)]
pub struct TestFileError(pub String);

impl std::fmt::Display for TestFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TestFileError {}

/// The outcome of one test case.
#[derive(Debug)]
pub struct CaseResult {
    pub file: PathBuf,
    pub name: String,
    /// Empty when the case passed; otherwise what differs, ready to print.
    pub diff: String,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.diff.is_empty()
    }
}

/// The test files under `paths` (files as given, folders: their `*.yaml`
/// and `*.yml`, sorted).
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, TestFileError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p)
                .map_err(|e| TestFileError(format!("cannot read {}: {e}", p.display())))?;
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            out.extend(files);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(TestFileError(format!(
                "{}: no such file or folder; give rule test files (*.yaml) or folders holding them",
                p.display()
            )));
        }
    }
    if out.is_empty() {
        return Err(TestFileError(
            "no rule test files (*.yaml) found in the paths given".into(),
        ));
    }
    Ok(out)
}

/// Runs every case of one test file.
pub fn run_file(path: &Path, default_rules_dir: &Path) -> Result<Vec<CaseResult>, TestFileError> {
    let err = |m: String| TestFileError(format!("{}: {m}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    let file: TestFile = serde_yaml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let rules_dir = file
        .rules_dir
        .as_ref()
        .map_or_else(|| default_rules_dir.to_path_buf(), |d| base.join(d));
    let (mut all, errors) = RuleSet::load_dir(&rules_dir).map_err(|e| err(e.to_string()))?;
    if let Some(e) = errors.first() {
        return Err(err(format!("a rule does not compile:\n{e}")));
    }
    let tiers = file.tiers.clone().unwrap_or_default();
    let seasons = match &file.seasons {
        Some(list) => {
            let mut out = Vec::new();
            for (name, s) in list {
                out.push(crate::model::seasons::Season::parse(name, &s.from, &s.to).map_err(err)?);
            }
            std::sync::Arc::new(crate::model::seasons::Seasons { list: out })
        }
        None => std::sync::Arc::new(crate::model::seasons::Seasons::shipped()),
    };
    all.seasons = seasons;
    let mut results = Vec::new();
    for case in &file.tests {
        let wanted = case.rules.as_ref().or(file.rules.as_ref());
        if let Some(names) = wanted {
            for n in names {
                if all.get(n).is_none() {
                    return Err(err(format!(
                        "test {:?}: no rule {n}.rhai in {}",
                        case.name,
                        rules_dir.display()
                    )));
                }
            }
        }
        let findings = run_case(case, base, &all, wanted, &tiers)
            .map_err(|e| err(format!("test {:?}: {e:#}", case.name)))?;
        let diff = match findings {
            Ok(f) => compare(&case.expect, &f),
            Err(run_errors) => format!("  the rules failed:\n{run_errors}"),
        };
        results.push(CaseResult {
            file: path.to_path_buf(),
            name: case.name.clone(),
            diff,
        });
    }
    Ok(results)
}

/// Loads the case's rows into a fresh database and evaluates. The inner
/// `Err` holds run errors of the rules, as text.
fn run_case(
    case: &TestCase,
    base: &Path,
    all: &RuleSet,
    wanted: Option<&Vec<String>>,
    tiers: &TierConfig,
) -> Result<Result<Vec<Finding>, String>> {
    let dir = TempDir::new()?;
    let conn = crate::store::open(&dir.0.join("test.db"))?;
    load_rows(&conn, case, base)?;
    let snap = crate::metrics::build(&conn, case.as_of.0, tiers)?;
    let subset = match wanted {
        Some(names) => all.subset(names),
        None => all.subset(
            &all.rules
                .iter()
                .map(|r| r.name.to_string())
                .collect::<Vec<_>>(),
        ),
    };
    let mut subset = subset;
    if let Some(l) = &case.locale {
        subset.style.locale = crate::format::Locale::parse(l).ok_or_else(|| {
            anyhow::anyhow!(
                "locale {l:?} is not one kamwatch writes in; use {}",
                crate::format::Locale::known()
            )
        })?;
    }
    let out = subset.evaluate_with(&snap, 1);
    if !out.errors.is_empty() {
        let mut s = String::new();
        for e in &out.errors {
            let _ = writeln!(s, "    {e}");
        }
        return Ok(Err(s));
    }
    Ok(Ok(out.findings))
}

/// A folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = crate::config::now().timestamp_subsec_nanos();
        let p =
            std::env::temp_dir().join(format!("kamwatch-test-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p)
            .with_context(|| format!("creating the temporary folder {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read_csv<T: serde::de::DeserializeOwned>(base: &Path, rel: &Path) -> Result<Vec<T>> {
    let path = base.join(rel);
    let mut r = csv::Reader::from_path(&path)
        .with_context(|| format!("opening the fixture {}", path.display()))?;
    let mut out = Vec::new();
    for (i, row) in r.deserialize().enumerate() {
        out.push(row.with_context(|| {
            format!(
                "{} row {}: use the canonical column names (as in inline rows)",
                path.display(),
                i + 2
            )
        })?);
    }
    Ok(out)
}

/// Dates of a row: `date`, or every `every` days from `from` to `to`.
fn dates(
    date: Option<Date>,
    from: Option<Date>,
    to: Option<Date>,
    every: Option<u32>,
) -> Result<Vec<NaiveDate>> {
    match (date, from, to) {
        (Some(d), None, None) => Ok(vec![d.0]),
        (None, Some(Date(from)), Some(Date(to))) => {
            let step = i64::from(every.unwrap_or(1).max(1));
            let mut out = Vec::new();
            let mut d = from;
            while d <= to {
                out.push(d);
                d += chrono::TimeDelta::days(step);
            }
            Ok(out)
        }
        _ => anyhow::bail!("a row needs either `date` or both `from` and `to` (with `every`)"),
    }
}

fn load_rows(conn: &Connection, case: &TestCase, base: &Path) -> Result<()> {
    let mut accounts: Vec<AccountIn> = Vec::new();
    let mut orders: Vec<&OrderIn> = case.orders.iter().collect();
    let mut visits: Vec<&VisitIn> = case.visits.iter().collect();
    let mut invoices: Vec<&InvoiceIn> = case.receivables.iter().collect();
    let mut stock: Vec<&StockIn> = case.inventory.iter().collect();
    let f = &case.files;
    if let Some(p) = &f.accounts {
        accounts.extend(read_csv::<AccountIn>(base, p)?);
    }
    let file_orders: Vec<OrderIn> = match &f.orders {
        Some(p) => read_csv(base, p)?,
        None => Vec::new(),
    };
    orders.extend(file_orders.iter());
    let file_visits: Vec<VisitIn> = match &f.visits {
        Some(p) => read_csv(base, p)?,
        None => Vec::new(),
    };
    visits.extend(file_visits.iter());
    let file_invoices: Vec<InvoiceIn> = match &f.receivables {
        Some(p) => read_csv(base, p)?,
        None => Vec::new(),
    };
    invoices.extend(file_invoices.iter());
    let file_stock: Vec<StockIn> = match &f.inventory {
        Some(p) => read_csv(base, p)?,
        None => Vec::new(),
    };
    stock.extend(file_stock.iter());

    let now = crate::store::now_text();
    for a in case.accounts.iter().chain(accounts.iter()) {
        let attrs = a
            .attrs
            .as_ref()
            .map(|m| serde_json::Value::Object(m.clone()).to_string());
        conn.execute(
            "INSERT INTO accounts (id, name, region, owner, owner_email, active, updated_at, attrs, credit_limit, tier_override)
             VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8, ?9)",
            params![
                a.id,
                a.name.clone().unwrap_or_else(|| a.id.clone()),
                a.region,
                a.owner,
                a.owner_email,
                now,
                attrs,
                a.credit_limit,
                a.tier
            ],
        )
        .with_context(|| format!("account {}", a.id))?;
    }
    let mut n = 0u64;
    for o in orders {
        for d in dates(o.date, o.from, o.to, o.every)
            .with_context(|| format!("an order of {}", o.account))?
        {
            n += 1;
            conn.execute(
                "INSERT INTO orders (order_id, line, account_id, date, sku, qty, revenue, cost)
                 VALUES (?1, '1', ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    format!("T{n}"),
                    o.account,
                    date_text(d),
                    o.sku,
                    o.qty,
                    o.revenue,
                    o.cost
                ],
            )?;
        }
    }
    for v in visits {
        for d in dates(v.date, v.from, v.to, v.every)
            .with_context(|| format!("a visit of {}", v.account))?
        {
            conn.execute(
                "INSERT OR REPLACE INTO visits (account_id, date, visitor, role) VALUES (?1, ?2, ?3, ?4)",
                params![
                    v.account,
                    date_text(d),
                    v.visitor.clone().unwrap_or_else(|| "rep".into()),
                    v.role
                ],
            )?;
        }
    }
    for (i, inv) in invoices.into_iter().enumerate() {
        conn.execute(
            "INSERT INTO receivables (account_id, invoice, amount, due_date, invoice_date) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                inv.account,
                inv.invoice.clone().unwrap_or_else(|| format!("INV{}", i + 1)),
                inv.amount,
                date_text(inv.due.0),
                inv.issued.map(|d| date_text(d.0))
            ],
        )?;
    }
    for s in stock {
        conn.execute(
            "INSERT INTO inventory (sku, account_id, on_hand) VALUES (?1, ?2, ?3)",
            params![s.sku, s.account.clone().unwrap_or_default(), s.on_hand],
        )?;
    }
    Ok(())
}

fn same_value(want: &serde_json::Value, got: &serde_json::Value) -> bool {
    match (want.as_f64(), got.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs() <= 0.01 + a.abs() * 1e-9,
        _ => want == got || want.as_str().is_some_and(|w| *got == w),
    }
}

fn matches(e: &Expected, f: &Finding) -> bool {
    *f.rule == *e.rule
        && f.account.id == e.account
        && f.key == e.key
        && e.severity
            .as_deref()
            .is_none_or(|s| s == f.severity.as_str())
        && e.title.as_deref().is_none_or(|t| t == f.title)
        && e.figures.iter().all(|(k, v)| {
            f.figures
                .iter()
                .any(|(fk, fv)| fk == k && same_value(v, fv))
        })
}

fn show_expected(e: &Expected) -> String {
    let mut s = format!("{} {}", e.rule, e.account);
    if !e.key.is_empty() {
        let _ = write!(s, " key={:?}", e.key);
    }
    if let Some(v) = &e.severity {
        let _ = write!(s, " severity={v}");
    }
    if let Some(t) = &e.title {
        let _ = write!(s, " title={t:?}");
    }
    if !e.figures.is_empty() {
        let figs: Vec<String> = e.figures.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = write!(s, " figures {{{}}}", figs.join(", "));
    }
    s
}

fn show_finding(f: &Finding) -> String {
    let mut s = format!("{} {}", f.rule, f.account.id);
    if !f.key.is_empty() {
        let _ = write!(s, " key={:?}", f.key);
    }
    let figs: Vec<String> = f.figures.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = write!(
        s,
        " severity={} title={:?} figures {{{}}}",
        f.severity,
        f.title,
        figs.join(", ")
    );
    s
}

/// What differs between the expected alerts and those raised; "" if none.
fn compare(expect: &[Expected], got: &[Finding]) -> String {
    let mut used = vec![false; got.len()];
    let mut missing = Vec::new();
    for e in expect {
        match (0..got.len()).find(|i| !used[*i] && matches(e, &got[*i])) {
            Some(i) => used[i] = true,
            None => missing.push(e),
        }
    }
    let extra: Vec<&Finding> = got
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(f, _)| f)
        .collect();
    if missing.is_empty() && extra.is_empty() {
        return String::new();
    }
    let mut s = String::new();
    for e in missing {
        let _ = writeln!(s, "  - expected, not raised: {}", show_expected(e));
    }
    for f in extra {
        let _ = writeln!(s, "  + raised, not expected: {}", show_finding(f));
    }
    s
}

impl RuleSet {
    /// A set with only the named rules (sharing nothing with `self` but
    /// the compiled scripts).
    pub fn subset(&self, names: &[String]) -> RuleSet {
        let mut out = RuleSet::empty();
        out.caps = self.caps;
        out.seasons = self.seasons.clone();
        out.style = self.style.clone();
        for r in &self.rules {
            if names.iter().any(|n| *n == *r.name) {
                out.rules.push(r.clone());
            }
        }
        out
    }
}
