//! Rule test files: `kamwatch test [PATH...]`, the way `promtool test rules`
//! works. A YAML file gives input rows (inline, or CSV fixture files with
//! the canonical column names), an as-of date and the alerts expected; an
//! empty `expect: []` asserts that the rules stay silent.
//!
//! Each test case gets its own SQLite database on disk (a temporary folder
//! made by `tempfile`, with an unpredictable name, removed afterwards),
//! built through the real migrations and written through the store's
//! writer, the one ingest uses, so a test reads its rows through the same
//! `metrics::build` the daemon uses. Touches only the test files, their
//! fixtures, the rules folder and that temporary folder.
//!
//! A case with `from:` is evaluated on every day (or every `every` days)
//! from then to `as_of`, and those days' findings are stepped through the
//! alert lifecycle by the [`Replay`] the caller hands in (the `alerts`
//! stage's, which sits above this one); its `notices:` are every notice
//! expected of that replay, so a rule's hysteresis (a held finding that
//! keeps an alert open, `keep_firing_for_days`, repeats) is tested where
//! its boundaries are.
//!
//! `schema` is the file format, `rows` writes a case's rows; this file
//! finds the files, runs the cases and compares what was raised.

mod rows;
mod schema;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::TierConfig;
use crate::rules::error::Error;
use crate::rules::finding::Finding;
use crate::rules::set::RuleSet;
pub use schema::{
    AccountIn, Date, Expected, ExpectedNotice, Files, InvoiceIn, OrderIn, StockIn, TestCase,
    TestFile, VisitIn,
};

/// A notice a replay gave: the day, the alert (rule, account, key) and
/// its kind (`started`, `raised`, `repeat`, `aged`, `final`, `resolved`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Noticed {
    pub on: chrono::NaiveDate,
    pub rule: String,
    pub account: String,
    pub key: String,
    pub notice: &'static str,
}

/// Steps a case's days (each day's findings, in day order) through the
/// alert lifecycle with each rule's policy, and gives every notice.
pub type Replay<'a> = &'a dyn Fn(&RuleSet, &[(chrono::NaiveDate, Vec<Finding>)]) -> Vec<Noticed>;

/// A test file that cannot be run (bad YAML, missing fixture, unknown
/// rule): the rules stage's [`Error`] (`TestFile`, `TestPaths`).
pub type TestFileError = Error;

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
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p)
                .map_err(|e| Error::TestPaths(format!("cannot read {}: {e}", p.display())))?;
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            out.extend(files);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(Error::TestPaths(format!(
                "{}: no such file or folder; give rule test files (*.yaml) or folders holding them",
                p.display()
            )));
        }
    }
    if out.is_empty() {
        return Err(Error::TestPaths(
            "no rule test files (*.yaml) found in the paths given".into(),
        ));
    }
    Ok(out)
}

/// Runs every case of one test file; `replay` steps the days of a case
/// with `from:` through the alert lifecycle.
pub fn run_file(
    path: &Path,
    default_rules_dir: &Path,
    replay: Replay<'_>,
) -> Result<Vec<CaseResult>, Error> {
    let err = |why: String| Error::TestFile {
        file: path.to_path_buf(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    let file: TestFile =
        serde_yaml::from_str(&text).map_err(|e| err(crate::config::yaml_problem(&e)))?;
    // The config's own check of a tiers block, with the block's line.
    if let Some(t) = &file.tiers {
        t.check().map_err(|e| {
            let line = crate::config::line_of(&text, "tiers");
            err(line.map_or_else(|| e.to_string(), |n| format!("{e} at line {n}")))
        })?;
    }
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
                out.push(
                    crate::model::seasons::Season::parse(name, &s.from, &s.to)
                        .map_err(|e| err(e.to_string()))?,
                );
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
        let ran = run_case(case, base, &all, wanted, &tiers, replay)
            .map_err(|e| err(format!("test {:?}: {e:#}", case.name)))?;
        let diff = match ran {
            Ok((f, notices)) => {
                let mut d = compare(&case.expect, &f);
                if let (Some(want), Some(got)) = (&case.notices, &notices) {
                    d += &compare_notices(want, got);
                }
                d
            }
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

/// What a case's run gave: the findings as of `as_of`, and with `from`
/// the notices of the replay.
type Ran = (Vec<Finding>, Option<Vec<Noticed>>);

/// Loads the case's rows into a fresh database and evaluates (every day
/// of the replay with `from`). The inner `Err` holds run errors of the
/// rules, as text.
fn run_case(
    case: &TestCase,
    base: &Path,
    all: &RuleSet,
    wanted: Option<&Vec<String>>,
    tiers: &TierConfig,
    replay: Replay<'_>,
) -> Result<Result<Ran, String>> {
    let days = replay_days(case)?;
    let dir = tempfile::Builder::new()
        .prefix("kamwatch-test-")
        .tempdir()
        .context("creating the temporary folder")?;
    let mut conn = crate::store::open(&dir.path().join("test.db"))?;
    rows::load_rows(&mut conn, case, base)?;
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
    let mut seen: Vec<(chrono::NaiveDate, Vec<Finding>)> = Vec::new();
    for day in days {
        let snap = crate::metrics::build(&conn, day, tiers)?;
        let out = subset.evaluate_with(&snap, 1);
        if !out.errors.is_empty() {
            let mut s = String::new();
            for e in &out.errors {
                let _ = writeln!(s, "    {day}: {e}");
            }
            return Ok(Err(s));
        }
        seen.push((day, out.findings));
    }
    let notices = case.from.is_some().then(|| replay(&subset, &seen));
    let last = seen.pop().map(|(_, f)| f).unwrap_or_default();
    Ok(Ok((last, notices)))
}

/// The days a case evaluates: `as_of` alone, or with `from` every `every`
/// days from then, and `as_of` last.
fn replay_days(case: &TestCase) -> Result<Vec<chrono::NaiveDate>> {
    let as_of = case.as_of.0;
    let Some(from) = case.from.map(|d| d.0) else {
        if case.notices.is_some() || case.every.is_some() {
            anyhow::bail!("`notices` and `every` need `from`, the first day of the replay");
        }
        return Ok(vec![as_of]);
    };
    if case.notices.is_none() {
        anyhow::bail!(
            "a case with `from` lists the notices it expects of the replay: `notices: []` for none"
        );
    }
    let every = i64::from(case.every.unwrap_or(1));
    if every < 1 {
        anyhow::bail!("`every` is a number of days, at least 1");
    }
    if from > as_of {
        anyhow::bail!("`from` ({from}) is after `as_of` ({as_of})");
    }
    if (as_of - from).num_days() / every > 3660 {
        anyhow::bail!(
            "the replay from {from} to {as_of} is over 3,660 evaluations; replay a shorter stretch or a larger `every`"
        );
    }
    let mut days = Vec::new();
    let mut day = from;
    while day < as_of {
        days.push(day);
        day += chrono::Duration::days(every);
    }
    days.push(as_of);
    Ok(days)
}

/// What differs between the notices expected of a replay and those it
/// gave, in order; "" if none.
fn compare_notices(want: &[ExpectedNotice], got: &[Noticed]) -> String {
    let same = |w: &ExpectedNotice, g: &Noticed| {
        w.on.0 == g.on
            && w.rule == g.rule
            && w.account == g.account
            && w.key == g.key
            && w.notice == g.notice
    };
    if want.len() == got.len() && want.iter().zip(got).all(|(w, g)| same(w, g)) {
        return String::new();
    }
    let mut s = String::from("  notices of the replay differ:\n");
    for w in want {
        if !got.iter().any(|g| same(w, g)) {
            let _ = writeln!(
                s,
                "  - expected, not given: {} {} {} {}{}",
                w.on.0,
                w.notice,
                w.rule,
                w.account,
                key_text(&w.key)
            );
        }
    }
    for g in got {
        if !want.iter().any(|w| same(w, g)) {
            let _ = writeln!(
                s,
                "  + given, not expected: {} {} {} {}{}",
                g.on,
                g.notice,
                g.rule,
                g.account,
                key_text(&g.key)
            );
        }
    }
    let all: Vec<String> = got
        .iter()
        .map(|g| format!("{} {} {}{}", g.on, g.notice, g.account, key_text(&g.key)))
        .collect();
    let _ = writeln!(s, "    given, in order: [{}]", all.join("; "));
    s
}

fn key_text(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" key={key:?}")
    }
}

fn same_value(want: &serde_json::Value, got: &serde_json::Value) -> bool {
    match (want.as_f64(), got.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs() <= 0.01 + a.abs() * 1e-9,
        _ => want == got || want.as_str().is_some_and(|w| *got == w),
    }
}

fn matches(e: &Expected, f: &Finding) -> bool {
    *f.rule == *e.rule
        && *f.account.id == *e.account
        && f.key == e.key
        && f.starts == e.starts
        && e.severity
            .as_deref()
            .is_none_or(|s| s == f.severity.as_str())
        && e.title.as_deref().is_none_or(|t| t == f.title)
        && e.figures.iter().all(|(k, v)| {
            f.figures
                .iter()
                .any(|(fk, fv)| **fk == **k && same_value(v, fv))
        })
}

fn show_expected(e: &Expected) -> String {
    let mut s = format!("{} {}", e.rule, e.account);
    if !e.key.is_empty() {
        let _ = write!(s, " key={:?}", e.key);
    }
    if !e.starts {
        s += " starts=false";
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
    if !f.starts {
        s += " starts=false";
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows go through the store's writer as an export's would: a tier
    /// column is read in any case and a tier that is none leaves the
    /// computed one, a later row with the same key replaces an earlier one,
    /// and fixtures come after the inline rows.
    #[test]
    fn rows_reach_the_rules_as_ingest_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        std::fs::write(
            dir.path().join("rules/r.rhai"),
            "alert(#{ title: account.tier, figures: [[\"revenue\", account.revenue(30)], [\"visits\", account.visits(30)], [\"open\", account.receivables]] });",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("orders.csv"),
            "account,date,revenue,cost\nK2,2026-06-29,5,1\n",
        )
        .unwrap();
        let file = dir.path().join("t.yaml");
        std::fs::write(
            &file,
            r#"
rules_dir: rules
tests:
  - name: rows
    as_of: 2026-06-30
    accounts:
      - { id: K1, tier: " c" }
      - { id: K2, tier: "D" }
    orders:
      - { account: K1, date: 2026-06-20, revenue: 100, cost: 50 }
      - { account: K2, from: 2026-06-01, to: 2026-06-30, every: 10, revenue: 10, cost: 5 }
    visits:
      - { account: K1, date: 2026-06-21, role: 销售 }
      - { account: K1, date: 2026-06-21, role: 经理 }
    receivables:
      - { account: K1, invoice: I1, amount: 10, due: 2026-07-30 }
      - { account: K1, invoice: I1, amount: 40, due: 2026-07-30 }
    files:
      orders: orders.csv
    expect:
      - { rule: r, account: K1, title: C, figures: { revenue: 100, visits: 1, open: 40 } }
      - { rule: r, account: K2, title: A, figures: { revenue: 35, visits: 0, open: 0 } }
"#,
        )
        .unwrap();
        let results = run_file(&file, dir.path(), &|_, _| Vec::new()).unwrap();
        assert_eq!(results.len(), 1);
        assert!(results[0].passed(), "{}", results[0].diff);
    }

    #[test]
    fn a_test_file_that_cannot_run_says_which_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.yaml");
        std::fs::write(&file, "tests: []\nbogus: 1\n").unwrap();
        let e = run_file(&file, dir.path(), &|_, _| Vec::new()).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("{}: ", file.display())) && text.contains("bogus"),
            "{text}"
        );
        let e = collect(&[dir.path().join("none")]).unwrap_err();
        assert!(e.to_string().contains("no such file or folder"), "{e}");
    }
}
