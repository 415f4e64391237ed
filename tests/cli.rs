use crate::support::*;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use mail_parser::{MessageParser, MimeHeaders};

// The three UTF-8 fixtures that make a complete data set.
const MASTER: &str = "客户主数据.csv";
const ORDERS: &str = "销售明细_202609-10.csv";
const VISITS: &str = "拜访记录_202609-10.csv";
// GBK, CRLF, "1,234.50" amounts, 2026/9/1 dates: the first 120 order lines
// of ORDERS as Excel saves them.
const ORDERS_EXCEL: &str = "销售明细_excel导出.csv";

fn count(p: &Project, sql: &str) -> i64 {
    p.db()
        .query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Non-blank lines of a fixture (any encoding, LF or CRLF), minus the header.
fn data_lines(path: &Path) -> i64 {
    let bytes = std::fs::read(path).unwrap();
    let lines = bytes
        .split(|b| *b == b'\n')
        .filter(|l| l.iter().any(|b| !b.is_ascii_whitespace()))
        .count();
    assert!(lines > 1, "{} has no data lines", path.display());
    lines as i64 - 1
}

/// `kamwatch ingest` of fixtures given by path (outside the inbox: copied).
fn ingest(p: &Project, paths: &[PathBuf]) -> Output {
    let mut args = vec!["ingest".to_string()];
    args.extend(paths.iter().map(|f| f.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    p.run(&args)
}

/// A project holding the three UTF-8 fixtures.
fn loaded_project() -> Project {
    let p = Project::new();
    let o = ingest(&p, &[fixture(MASTER), fixture(ORDERS), fixture(VISITS)]);
    assert_exit(&o, 0);
    p
}

/// The text of `var/rejected/<name>.errors.txt`, after checking that the
/// rejected file itself sits beside it with the original bytes.
fn rejected_errors(p: &Project, original: &Path) -> String {
    let name = original.file_name().unwrap().to_str().unwrap();
    let files = p.files_under("var/rejected");
    let copy = p.path("var/rejected").join(name);
    let errors = p.path("var/rejected").join(format!("{name}.errors.txt"));
    assert!(
        files.contains(&copy),
        "{name} not in var/rejected: {files:?}"
    );
    assert!(
        files.contains(&errors),
        "{name}.errors.txt not in var/rejected: {files:?}"
    );
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(original).unwrap(),
        "the rejected copy of {name} differs from the original"
    );
    std::fs::read_to_string(&errors).unwrap()
}

/// Ingests one bad file (outside the inbox): exit 1, the file left in place,
/// one 'rejected' ledger row, nothing stored; returns (stdout, errors text).
fn ingest_rejected(p: &Project, f: &Path) -> (String, String) {
    let bad = f.display();
    assert!(f.is_file(), "missing fixture {bad}");
    let o = ingest(p, &[f.to_path_buf()]);
    assert_exit(&o, 1);
    let out = stdout(&o);
    assert!(out.starts_with("rejected "), "{}", show(&o));
    assert!(f.is_file(), "{bad} was moved away");
    assert_eq!(
        count(p, "SELECT COUNT(*) FROM ledger WHERE outcome = 'rejected'"),
        1
    );
    assert_eq!(
        count(p, "SELECT COUNT(*) FROM ledger WHERE outcome <> 'rejected'"),
        0
    );
    for table in ["accounts", "orders", "visits"] {
        assert_eq!(
            count(p, &format!("SELECT COUNT(*) FROM {table}")),
            0,
            "{table} got rows from {bad}"
        );
    }
    assert!(
        p.files_under("var/archive").is_empty(),
        "{bad} was archived"
    );
    let errors = rejected_errors(p, f);
    (out, errors)
}

/// Order lines of the UTF-8 orders fixture: (order id, line) -> (date,
/// revenue, cost), read with the header's own column names.
fn utf8_orders() -> BTreeMap<(String, String), (String, f64, f64)> {
    let text = std::fs::read_to_string(fixture(ORDERS)).unwrap();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (id, line, date, revenue, cost) = (
        col("订单编号"),
        col("行号"),
        col("订单日期"),
        col("金额"),
        col("成本"),
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), header.len(), "{l}");
            (
                (f[id].to_string(), f[line].to_string()),
                (
                    f[date].to_string(),
                    f[revenue].parse().unwrap(),
                    f[cost].parse().unwrap(),
                ),
            )
        })
        .collect()
}

/// Every stored order line equals the UTF-8 fixture's, and there are no others.
fn assert_orders_match_utf8_file(p: &Project) {
    let want = utf8_orders();
    let db = p.db();
    let mut st = db
        .prepare("SELECT order_id, line, date, revenue, cost FROM orders")
        .unwrap();
    let got: BTreeMap<(String, String), (String, f64, f64)> = st
        .query_map([], |r| {
            Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?, r.get(4)?)))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got.len(), want.len(), "order line count");
    for (k, (date, revenue, cost)) in &want {
        let (gd, gr, gc) = got
            .get(k)
            .unwrap_or_else(|| panic!("order line {k:?} is missing"));
        assert_eq!(gd, date, "date of {k:?}");
        assert!(
            (gr - revenue).abs() < 1e-9,
            "revenue of {k:?}: {gr} vs {revenue}"
        );
        assert!((gc - cost).abs() < 1e-9, "cost of {k:?}: {gc} vs {cost}");
    }
}

fn revenue_of(p: &Project, order_id: &str, line: &str) -> f64 {
    p.db()
        .query_row(
            "SELECT revenue FROM orders WHERE order_id = ?1 AND line = ?2",
            [order_id, line],
            |r| r.get(0),
        )
        .unwrap()
}

/// The .eml files under var/mail (and a check that nothing else is there).
fn eml_files(p: &Project) -> Vec<PathBuf> {
    let all = p.files_under("var/mail");
    for f in &all {
        assert!(
            f.extension().is_some_and(|x| x == "eml"),
            "not an .eml in var/mail: {}",
            f.display()
        );
    }
    all
}

// ---------------------------------------------------------------- check

/// How many rules ship in rules/.
fn shipped_rule_count() -> usize {
    std::fs::read_dir(repo().join("rules"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "rhai")
        })
        .count()
}

#[test]
fn check_shipped_config_is_clean() {
    let p = Project::new();
    let o = p.run(&["check"]);
    assert_exit(&o, 0);
    let out = stdout(&o);
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("config ") && first.ends_with(": ok"),
        "{}",
        show(&o)
    );
    assert!(first.contains("config.yaml"), "{}", show(&o));
    let shipped = shipped_rule_count();
    assert!(out.contains(&format!("{shipped} loaded")), "{}", show(&o));
    assert!(out.contains("0 with errors"), "{}", show(&o));
}

/// With `mail.locale: en`, `check` names each alert() whose texts are in
/// Chinese only (the shipped rules have none); a misspelt call standing as
/// a statement of its own is an error like any other.
#[test]
fn check_in_english_names_chinese_only_texts_and_calls_standing_alone() {
    let p = Project::new();
    let cfg = std::fs::read_to_string(p.config()).unwrap();
    std::fs::write(
        p.config(),
        cfg.replace("  locale: zh-CN\n", "  locale: en\n"),
    )
    .unwrap();
    std::fs::write(
        p.path("rules/old.rhai"),
        "alert(#{ title: \"常量\", figures: [[\"标签\", 1]] });\nif account.tier == \"A\" {\n  alert(#{ key: \"k\", title: #{ \"zh-CN\": \"中\", en: \"en\" }, action: `致电 ${account.id}` });\n}\n",
    )
    .unwrap();
    std::fs::write(p.path("rules/typo2.rhai"), "alrt(#{ title: \"x\" });\n").unwrap();
    let o = p.run(&["check"]);
    assert_exit(&o, 1);
    let out = stdout(&o);
    let warned: Vec<&str> = out.lines().filter(|l| l.contains("Chinese only")).collect();
    assert_eq!(warned.len(), 2, "{}", show(&o));
    assert!(
        warned[0].contains("old.rhai:1:1:") && warned[0].contains("(title, a figure label)"),
        "{}",
        show(&o)
    );
    assert!(
        warned[1].contains("old.rhai:3:3:") && warned[1].contains("(action)"),
        "{}",
        show(&o)
    );
    assert!(
        out.contains("typo2.rhai:1:1: unknown function `alrt` (1 argument); did you mean `alert`?"),
        "{}",
        show(&o)
    );
}

#[test]
fn check_names_misspelt_key_and_its_line() {
    let p = Project::new();
    let text = std::fs::read_to_string(p.config()).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("inbox:"))
        .expect("the config has an inbox: key")
        + 1;
    std::fs::write(p.config(), text.replace("\ninbox:", "\ninbxo:")).unwrap();
    let o = p.run(&["check"]);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(err.contains("inbxo"), "{}", show(&o));
    assert!(
        err.contains(&format!("line {line}")),
        "want line {line}\n{}",
        show(&o)
    );
    assert!(!stdout(&o).contains(": ok"), "{}", show(&o));
}

#[test]
fn check_refuses_a_season_named_twice_or_blank_with_its_line() {
    let p = Project::new();
    let text = std::fs::read_to_string(p.config()).unwrap();
    let shipped = r#"双11: { from: "11-01", to: "11-11" }"#;
    let line = text[..text.find(shipped).expect("the project config's 双11")]
        .lines()
        .count();
    for (again, says) in [
        (
            r#"双11: { from: "11-05", to: "11-20" }"#,
            "seasons.双11: the season 双11 is given twice",
        ),
        (r#""  ": { from: "11-05", to: "11-20" }"#, "which is blank"),
    ] {
        let bad = text.replacen(shipped, &format!("{shipped}\n  {again}"), 1);
        std::fs::write(p.config(), &bad).unwrap();
        let o = p.run(&["check"]);
        assert_exit(&o, 2);
        let err = stderr(&o);
        assert!(
            err.contains(says) && err.contains(&format!("at line {}", line + 1)),
            "{}",
            show(&o)
        );
    }
}

#[test]
fn check_warns_of_two_seasons_on_the_same_days() {
    let p = Project::new();
    let text = std::fs::read_to_string(p.config()).unwrap();
    let shipped = r#"双11: { from: "11-01", to: "11-11" }"#;
    assert!(text.contains(shipped), "the project config's 双11");
    // The same days under another name (and a lunar one spelt two ways):
    // warned, not refused; a day apart: nothing.
    for (again, warned) in [
        (
            r#"Singles Day: { from: "11-01", to: "11-11" }"#,
            Some("seasons Singles Day and 双11 fall on the same days every year"),
        ),
        (r#"Singles Day: { from: "11-02", to: "11-11" }"#, None),
    ] {
        std::fs::write(
            p.config(),
            text.replacen(shipped, &format!("{shipped}\n  {again}"), 1),
        )
        .unwrap();
        let o = p.run(&["check"]);
        assert_exit(&o, 0);
        let out = stdout(&o);
        match warned {
            Some(w) => assert!(
                out.contains(&format!("warning: {w}"))
                    && out.contains("mails each of its alerts twice"),
                "{}",
                show(&o)
            ),
            None => assert!(!out.contains("same days every year"), "{}", show(&o)),
        }
    }
}

#[test]
fn check_refuses_a_season_it_cannot_place_and_resolves_the_season_calls() {
    let p = Project::new();
    let text = std::fs::read_to_string(p.config()).unwrap();
    let bad = text.replacen(
        r#"中秋: { from: "中秋 - 30", to: "中秋" }"#,
        r#"中秋: { from: "中元 - 30", to: "中秋" }"#,
        1,
    );
    assert_ne!(bad, text, "the project config has no 中秋 season");
    std::fs::write(p.config(), &bad).unwrap();
    let o = p.run(&["check"]);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("seasons.中秋.from") && err.contains("\"中元 - 30\" is not a season date"),
        "{}",
        show(&o)
    );

    // The season functions are part of the API `check` resolves calls
    // against: known names pass, a wrong count or spelling is named.
    std::fs::write(p.config(), &text).unwrap();
    std::fs::write(
        p.path("rules/peaks.rhai"),
        "let s = season(\"春节\");\nlet d = days_until_peak();\nlet n = next_season();\nlet x = season();\nlet y = days_until_peaks();\n",
    )
    .unwrap();
    let o = p.run(&["check"]);
    assert_exit(&o, 1);
    let out = stdout(&o);
    assert!(
        !out.contains("peaks.rhai:1:")
            && !out.contains("peaks.rhai:2:")
            && !out.contains("peaks.rhai:3:"),
        "{}",
        show(&o)
    );
    assert!(
        out.contains("peaks.rhai:4:9: function `season` does not take 0 arguments; it takes 1"),
        "{}",
        show(&o)
    );
    assert!(
        out.contains("peaks.rhai:5:9: unknown function `days_until_peaks` (0 arguments); did you mean `days_until_peak`?"),
        "{}",
        show(&o)
    );
}

#[test]
fn check_names_a_value_of_the_wrong_type() {
    let p = Project::new();
    let text = std::fs::read_to_string(p.config()).unwrap();
    let line = text
        .lines()
        .position(|l| l.trim_start().starts_with("settle_ms:"))
        .expect("the config has watch.settle_ms")
        + 1;
    let bad = text.replacen("settle_ms: 150", "settle_ms: soon", 1);
    assert_ne!(bad, text, "the project config changed shape");
    std::fs::write(p.config(), bad).unwrap();
    let o = p.run(&["check"]);
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(err.contains("settle_ms"), "{}", show(&o));
    assert!(err.contains("soon"), "{}", show(&o));
    assert!(
        err.contains(&format!("line {line}")),
        "want line {line}\n{}",
        show(&o)
    );
}

#[test]
fn check_shows_rule_syntax_error_with_caret() {
    let p = Project::new();
    std::fs::write(
        p.path("rules/broken.rhai"),
        "// a rule with a typo\nlet a = 1;\nlet x = (1 + ;\nalert(#{ title: \"x\" });\n",
    )
    .unwrap();
    let o = p.run(&["check"]);
    assert_exit(&o, 1);
    let out = stdout(&o);
    let loaded = format!("{} loaded, 1 with errors", shipped_rule_count());
    assert!(out.contains(&loaded), "{}", show(&o));
    assert!(out.contains("broken.rhai:3:"), "{}", show(&o));
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("let x = (1 + ;"))
        .unwrap_or_else(|| panic!("the source line is not shown\n{}", show(&o)));
    let caret = lines.get(at + 1).copied().unwrap_or_default();
    assert_eq!(
        caret.find('^'),
        lines[at].find(';'),
        "the caret is not under the `;`\n{}",
        show(&o)
    );
}

/// A misspelt function or method, or a known one with the wrong number of
/// arguments, is found by `check` (not by every account at run time): each
/// with file:line:col, the line, a caret under the name, and the nearest
/// known name. The rule is not loaded.
#[test]
fn check_finds_calls_to_functions_that_do_not_exist() {
    let p = Project::new();
    std::fs::write(
        p.path("rules/typo.rhai"),
        "// four bad calls\nlet m = account.margin_percent(90);\nlet d = days_betwen(as_of, as_of);\nlet r = account.margin_pct(1, 2, 3, 4);\nfn own(x) { x }\nlet o = own(1) + account.revenue(90);\nlet f = Fn(\"owm\");\nlet g = [Fn(\"own\"), Fn(\"margin_pct\")];\n",
    )
    .unwrap();
    let o = p.run(&["check"]);
    assert_exit(&o, 1);
    let out = stdout(&o);
    let loaded = format!("{} loaded, 1 with errors", shipped_rule_count());
    assert!(out.contains(&loaded), "{}", show(&o));
    let lines: Vec<&str> = out.lines().collect();
    let finding = |at: &str, says: &str, name: &str| {
        let i = lines
            .iter()
            .position(|l| l.contains(at))
            .unwrap_or_else(|| panic!("no {at}\n{}", show(&o)));
        assert!(lines[i].contains(says), "{}\n{}", lines[i], show(&o));
        let (src, caret) = (lines[i + 1], lines[i + 2]);
        assert_eq!(
            caret.find('^'),
            src.find(name),
            "the caret is not under `{name}`\n{}",
            show(&o)
        );
    };
    finding(
        "typo.rhai:2:17:",
        "unknown method `margin_percent` (1 argument); did you mean `margin_pct`?",
        "margin_percent",
    );
    finding(
        "typo.rhai:3:9:",
        "did you mean `days_between`?",
        "days_betwen",
    );
    finding(
        "typo.rhai:4:",
        "method `margin_pct` does not take 4 arguments",
        "margin_pct",
    );
    // A function pointer naming no function would fail only when called.
    finding(
        "typo.rhai:7:9:",
        "`Fn(\"owm\")` names no function; did you mean `own`?",
        "Fn(",
    );
    // The script's own function and the real API pass, called or pointed to.
    assert!(!out.contains("typo.rhai:6:"), "{}", show(&o));
    assert!(!out.contains("typo.rhai:8:"), "{}", show(&o));
    // eval does not run it either: it says so and fails no account.
    let e = p.run(&["eval", "--dry-run", "--as-of", "2026-10-31"]);
    assert_exit(&e, 1);
    assert!(stderr(&e).contains("rule not loaded: "), "{}", show(&e));
    assert!(!stderr(&e).contains("failed for"), "{}", show(&e));
}

#[test]
fn check_missing_config_file_is_a_usage_error() {
    let p = Project::new();
    std::fs::remove_file(p.config()).unwrap();
    let o = p.run(&["check"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("config.yaml"), "{}", show(&o));
}

/// The exit code comes from the error's type (cli/exit.rs): a silence
/// refused as given is a usage error (2), an unknown silence a failure (1),
/// both with the stage's own words.
#[test]
fn silence_errors_exit_by_their_type() {
    let p = Project::new();
    let until = "2099-01-01";
    let o = p.run(&[
        "silence", "add", "--rule", "*", "--tier", "A", "--until", until, "--reason", " ",
    ]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("--reason is empty"), "{}", show(&o));
    let o = p.run(&["silence", "expire", "42"]);
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("no silence 42"), "{}", show(&o));
}

// ---------------------------------------------------------------- ingest

#[test]
fn ingest_utf8_fixtures_copies_and_counts() {
    let p = Project::new();
    let files = [fixture(MASTER), fixture(ORDERS), fixture(VISITS)];
    let o = ingest(&p, &files);
    assert_exit(&o, 0);
    let out = stdout(&o);
    for f in &files {
        assert!(f.is_file(), "{} was moved away", f.display());
    }
    for (file, dataset, table) in [
        (MASTER, "accounts", "accounts"),
        (ORDERS, "orders", "orders"),
        (VISITS, "visits", "visits"),
    ] {
        let n = data_lines(&fixture(file));
        assert!(
            out.contains(&format!("{file} ({dataset}): {n} rows")),
            "want {n} rows for {file}\n{}",
            show(&o)
        );
        assert_eq!(
            count(&p, &format!("SELECT COUNT(*) FROM {table}")),
            n,
            "{table}"
        );
        assert_eq!(
            count(
                &p,
                &format!(
                    "SELECT COUNT(*) FROM ledger WHERE file_name = '{file}' AND outcome = 'ingested' AND rows = {n}"
                )
            ),
            1,
            "ledger row of {file}"
        );
    }
    // The copies went to the archive; the originals stayed.
    let archived: BTreeSet<String> = p
        .files_under("var/archive")
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let want: BTreeSet<String> = [MASTER, ORDERS, VISITS].map(String::from).into();
    assert_eq!(archived, want);
    assert!(p.nothing_under("var/rejected"));
    assert_orders_match_utf8_file(&p);
}

#[test]
fn ingest_from_inbox_moves_the_file() {
    let p = Project::new();
    let inbox = p.path("inbox").join(ORDERS);
    std::fs::copy(fixture(ORDERS), &inbox).unwrap();
    let o = ingest(&p, std::slice::from_ref(&inbox));
    assert_exit(&o, 0);
    assert!(!inbox.exists(), "the file is still in the inbox");
    let archived = p.files_under("var/archive");
    assert_eq!(archived.len(), 1, "{archived:?}");
    assert_eq!(
        std::fs::read(&archived[0]).unwrap(),
        std::fs::read(fixture(ORDERS)).unwrap()
    );
    assert_eq!(
        count(&p, "SELECT COUNT(*) FROM orders"),
        data_lines(&fixture(ORDERS))
    );
}

#[test]
fn ingest_overlapping_exports_counts_each_line_once() {
    let utf8_rows = data_lines(&fixture(ORDERS));
    let excel_rows = data_lines(&fixture(ORDERS_EXCEL));
    assert_eq!(excel_rows, 120);
    assert!(utf8_rows > excel_rows);
    // Either order: the Excel export's values are the same as the UTF-8 ones.
    for order in [[ORDERS, ORDERS_EXCEL], [ORDERS_EXCEL, ORDERS]] {
        let p = Project::new();
        for f in order {
            let o = ingest(&p, &[fixture(f)]);
            assert_exit(&o, 0);
            let n = data_lines(&fixture(f));
            assert!(
                stdout(&o).contains(&format!("(orders): {n} rows")),
                "{}",
                show(&o)
            );
        }
        assert_eq!(
            count(&p, "SELECT COUNT(*) FROM orders"),
            utf8_rows,
            "order lines after {order:?}"
        );
        assert!((revenue_of(&p, "SO26090001", "1") - 5308.8).abs() < 1e-9);
        assert_orders_match_utf8_file(&p);
    }
}

#[test]
fn ingest_same_file_twice_is_a_duplicate() {
    let p = Project::new();
    let f = fixture(ORDERS);
    let n = data_lines(&f);
    let first = ingest(&p, std::slice::from_ref(&f));
    assert_exit(&first, 0);
    assert!(stdout(&first).starts_with("ingested "), "{}", show(&first));
    assert_eq!(count(&p, "SELECT COUNT(*) FROM orders"), n);
    let revenue: f64 = p
        .db()
        .query_row("SELECT SUM(revenue) FROM orders", [], |r| r.get(0))
        .unwrap();

    let second = ingest(&p, std::slice::from_ref(&f));
    assert_exit(&second, 0);
    assert!(
        stdout(&second).starts_with("duplicate "),
        "{}",
        show(&second)
    );
    assert!(
        stdout(&second).contains("counted nowhere"),
        "{}",
        show(&second)
    );
    assert_eq!(count(&p, "SELECT COUNT(*) FROM orders"), n);
    let again: f64 = p
        .db()
        .query_row("SELECT SUM(revenue) FROM orders", [], |r| r.get(0))
        .unwrap();
    assert_eq!(again, revenue);
    assert_eq!(
        count(
            &p,
            &format!(
                "SELECT COUNT(*) FROM ledger WHERE file_name = '{ORDERS}' AND outcome = 'ingested'"
            )
        ),
        1
    );
    assert_eq!(
        count(
            &p,
            &format!(
                "SELECT COUNT(*) FROM ledger WHERE file_name = '{ORDERS}' AND outcome = 'duplicate' AND rows = 0"
            )
        ),
        1
    );
    assert_eq!(count(&p, "SELECT COUNT(*) FROM ledger"), 2);
}

/// The rows of bad/销售明细_坏行.csv: 6 data rows. Data row 3 (file line 4)
/// has 金额 "一百六"; data row 5 (file line 6) has 订单日期 2026-02-30.
/// `blank_before` is how many blank lines precede data row 3.
fn assert_bad_rows_reported(p: &Project, file: &Path, blank_before: u32) {
    let (out, errors) = ingest_rejected(p, file);
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(out.contains(name), "{out}");
    assert!(out.contains(".errors.txt"), "{out}");

    let line = |n: u32| -> &str {
        let prefix = format!("line {n},");
        errors
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no error for file line {n} in {name}:\n{errors}"))
    };
    let revenue = line(4 + blank_before);
    assert!(revenue.contains("金额"), "{revenue}");
    assert!(revenue.contains("一百六"), "{revenue}");
    let date = line(6 + blank_before);
    assert!(date.contains("订单日期"), "{date}");
    assert!(date.contains("2026-02-30"), "{date}");
    // Only those two lines are blamed.
    let blamed: Vec<&str> = errors.lines().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(blamed.len(), 2, "{errors}");
    assert!(
        errors.contains("nothing from this file was stored"),
        "{errors}"
    );
}

/// bad/销售明细_坏行.csv rewritten into the project folder (not the inbox)
/// with LF line ends and `blank` blank lines before data row 3.
fn bad_rows_variant(p: &Project, name: &str, blank: usize) -> PathBuf {
    let text = std::fs::read_to_string(fixture("bad/销售明细_坏行.csv")).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    for _ in 0..blank {
        lines.insert(3, "");
    }
    let f = p.path(name);
    std::fs::write(&f, lines.join("\n") + "\n").unwrap();
    f
}

#[test]
fn ingest_bad_rows_rejects_whole_file_with_line_numbers() {
    // CRLF, as Excel and the ERP write it (and as every fixture is).
    let p = Project::new();
    let f = fixture("bad/销售明细_坏行.csv");
    assert!(std::fs::read(&f).unwrap().ends_with(b"\r\n"));
    assert_bad_rows_reported(&p, &f, 0);
}

#[test]
fn ingest_bad_rows_line_numbers_with_lf_line_ends() {
    let p = Project::new();
    let f = bad_rows_variant(&p, "销售明细_坏行_lf.csv", 0);
    assert_bad_rows_reported(&p, &f, 0);
}

#[test]
fn ingest_bad_rows_line_numbers_count_blank_lines() {
    // Blank lines are skipped, but they are still lines of the file.
    let p = Project::new();
    let f = bad_rows_variant(&p, "销售明细_坏行_空行.csv", 1);
    assert_bad_rows_reported(&p, &f, 1);
}

#[test]
fn ingest_unroutable_file_name_is_rejected() {
    let p = Project::new();
    let (out, errors) = ingest_rejected(&p, &fixture("bad/notes.csv"));
    assert!(out.contains("notes.csv"), "{out}");
    assert!(errors.contains("matches no dataset pattern"), "{errors}");
    // It tells what names would be taken.
    assert!(errors.contains("销售明细*.csv"), "{errors}");
    assert_eq!(
        count(&p, "SELECT COUNT(*) FROM ledger WHERE dataset IS NULL"),
        1
    );
}

#[test]
fn ingest_missing_required_column_is_rejected() {
    let p = Project::new();
    let (out, errors) = ingest_rejected(&p, &fixture("bad/销售明细_缺成本.csv"));
    assert!(out.contains("成本"), "{out}");
    assert!(errors.contains("成本"), "{errors}");
    // The header found is listed, column by column.
    let found =
        "订单编号, 行号, 客户编号, 客户名称, 订单日期, 产品编号, 产品名称, 数量, 单价, 金额";
    assert!(
        errors.contains(found),
        "want the header found listed\n{errors}"
    );
}

#[test]
fn ingest_empty_file_is_rejected() {
    let p = Project::new();
    assert_eq!(
        std::fs::metadata(fixture("bad/销售明细_空.csv"))
            .unwrap()
            .len(),
        0
    );
    let (out, errors) = ingest_rejected(&p, &fixture("bad/销售明细_空.csv"));
    assert!(out.contains("empty"), "{out}");
    assert!(errors.contains("empty"), "{errors}");
}

// ---------------------------------------------------------------- eval

/// Row counts of every table eval may write.
fn state(p: &Project) -> Vec<(&'static str, i64)> {
    [
        "alerts",
        "alert_history",
        "outbox",
        "evaluations",
        "ledger",
        "orders",
    ]
    .into_iter()
    .map(|t| (t, count(p, &format!("SELECT COUNT(*) FROM {t}"))))
    .collect()
}

#[test]
fn eval_dry_run_json_changes_nothing() {
    let p = loaded_project();
    let before = state(&p);
    let args = [
        "eval",
        "--as-of",
        "2026-10-31",
        "--dry-run",
        "--format",
        "json",
    ];
    let first = p.run(&args);
    assert_exit(&first, 0);
    let out = stdout(&first);
    assert!(
        !out.trim().is_empty(),
        "nothing fires on the fixtures\n{}",
        show(&first)
    );

    let rules: BTreeSet<String> = std::fs::read_dir(p.path("rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| f.extension().is_some_and(|x| x == "rhai"))
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let accounts: BTreeSet<String> = {
        let db = p.db();
        let mut st = db.prepare("SELECT id FROM accounts").unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    for line in out.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for field in ["rule", "account_id", "severity", "title"] {
            assert!(v[field].is_string(), "{field} is not a string: {line}");
        }
        assert!(rules.contains(v["rule"].as_str().unwrap()), "{line}");
        assert!(
            accounts.contains(v["account_id"].as_str().unwrap()),
            "{line}"
        );
        assert!(
            ["info", "warning", "critical"].contains(&v["severity"].as_str().unwrap()),
            "{line}"
        );
        assert!(!v["title"].as_str().unwrap().is_empty(), "{line}");
        assert_eq!(v["as_of"], "2026-10-31", "{line}");
    }

    let second = p.run(&args);
    assert_exit(&second, 0);
    assert_eq!(
        stdout(&second),
        out,
        "a second dry run printed something else"
    );
    assert_eq!(state(&p), before, "a dry run changed the database");
    assert_eq!(count(&p, "SELECT COUNT(*) FROM alerts"), 0);
    assert!(p.nothing_under("var/mail"), "a dry run wrote mail");
}

/// Each owner gets one message per evaluation (a digest when several of
/// their alerts start, a single warning when one does) that lists every
/// started alert of their accounts exactly once; the manager gets the
/// critical ones; a second evaluation writes nothing.
#[test]
fn eval_writes_one_digest_per_recipient_once() {
    let p = loaded_project();
    let args = ["eval", "--as-of", "2026-10-31"];
    let first = p.run(&args);
    assert_exit(&first, 0);
    let firing = count(&p, "SELECT COUNT(*) FROM alerts WHERE state = 'firing'");
    assert!(
        firing > 0,
        "no rule fires on the fixtures\n{}",
        show(&first)
    );
    assert!(
        stdout(&first).contains(&format!("{firing} started")),
        "{}",
        show(&first)
    );
    let mails = eml_files(&p);

    // (rule, account) -> (severity, owner email, manager email) of every firing alert.
    type Who = (String, Option<String>, Option<String>);
    let alerts: BTreeMap<(String, String), Who> = {
        let db = p.db();
        let mut st = db
            .prepare(
                "SELECT a.rule, a.account_id, a.severity, c.owner_email, c.manager_email FROM alerts a
                 JOIN accounts c ON c.id = a.account_id WHERE a.state = 'firing'",
            )
            .unwrap();
        st.query_map([], |r| {
            Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?, r.get(4)?)))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    assert_eq!(alerts.len() as i64, firing);
    let recipients: BTreeSet<String> = alerts
        .values()
        .flat_map(|(sev, owner, manager)| {
            let mut v: Vec<String> = owner.iter().cloned().collect();
            if sev == "critical" {
                v.extend(manager.iter().cloned());
            }
            v
        })
        .collect();
    assert_eq!(
        mails.len(),
        recipients.len(),
        "one message per recipient: {recipients:?}\n{mails:?}"
    );

    let mut to_owner: BTreeSet<(String, String)> = BTreeSet::new();
    let mut addressed: BTreeSet<String> = BTreeSet::new();
    for m in &mails {
        let bytes = std::fs::read(m).unwrap();
        let msg = MessageParser::default()
            .parse(&bytes)
            .unwrap_or_else(|| panic!("{} does not parse", m.display()));
        assert!(
            msg.is_content_type("multipart", "alternative"),
            "{}",
            m.display()
        );
        assert!(
            msg.parts.iter().any(|x| x.is_content_type("text", "plain")),
            "no text/plain part in {}",
            m.display()
        );
        assert!(
            msg.parts.iter().any(|x| x.is_content_type("text", "html")),
            "no text/html part in {}",
            m.display()
        );
        let subject = msg.subject().unwrap_or_default();
        assert!(subject.starts_with("[kamwatch]"), "{subject}");
        let text = msg.body_text(0).expect("a text body");
        let html = msg.body_html(0).expect("an HTML body");
        let to: Vec<String> = msg
            .to()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.address())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(to.len(), 1, "one recipient per message: {}", m.display());
        assert!(
            addressed.insert(to[0].clone()),
            "two messages for {}",
            to[0]
        );
        let items = listed(&text);
        assert!(!items.is_empty(), "{} lists nothing:\n{text}", m.display());
        if items.len() > 1 {
            assert!(subject.contains("预警摘要"), "{subject}");
        }
        for (rule, id) in items {
            assert!(html.contains(&format!("客户 {id}")), "{id} not in the HTML");
            let (sev, owner, manager) =
                alerts.get(&(rule.clone(), id.clone())).unwrap_or_else(|| {
                    panic!("{} lists {rule} {id}, which is not firing", m.display())
                });
            if owner.as_deref() == Some(to[0].as_str()) {
                assert!(
                    to_owner.insert((rule.clone(), id.clone())),
                    "{rule} {id} listed twice"
                );
            } else {
                assert_eq!(manager.as_deref(), Some(to[0].as_str()), "{rule} {id}");
                assert_eq!(sev, "critical", "only critical alerts go to the manager");
            }
        }
    }
    let with_owner: BTreeSet<(String, String)> = alerts
        .iter()
        .filter(|(_, v)| v.1.is_some())
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(to_owner, with_owner, "every alert reaches its owner once");

    let second = p.run(&args);
    assert_exit(&second, 0);
    assert!(stdout(&second).contains(" 0 started"), "{}", show(&second));
    assert_eq!(eml_files(&p), mails, "a second eval wrote mail again");
    assert_eq!(
        count(&p, "SELECT COUNT(*) FROM alerts WHERE state = 'firing'"),
        firing
    );
    assert_eq!(count(&p, "SELECT COUNT(*) FROM outbox"), mails.len() as i64);
}

#[test]
fn eval_bad_date_is_a_usage_error() {
    let p = Project::new();
    let o = p.run(&["eval", "--as-of", "notadate"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("notadate"), "{}", show(&o));
    assert!(stdout(&o).is_empty(), "{}", show(&o));
    assert!(
        !p.path("var/kamwatch.db").exists(),
        "a usage error created the database"
    );
}

/// "Today" is the date in `schedule.timezone` for every command and the
/// daemon alike. On a UTC machine at 20:00 UTC it is already the next day
/// in Shanghai: `generate`'s last day, the archive folder of `ingest`,
/// `eval`, `eval --explain` and the daemon's evaluation all say 1 March.
#[test]
fn today_is_the_zone_date_for_every_command_and_the_daemon() {
    let p = Project::new();
    let cfg = std::fs::read_to_string(p.config()).unwrap();
    assert!(cfg.contains("timezone: Asia/Shanghai"), "the zone changed");
    let clock = [("TZ", "UTC"), ("KAMWATCH_NOW", "2031-02-28T20:00:00Z")];
    let run = |args: &[&str]| {
        let o = p
            .command(args)
            .envs(clock.iter().copied())
            .output()
            .unwrap();
        assert_exit(&o, 0);
        o
    };
    let staging = p.path("staging");
    run(&[
        "generate",
        "--out",
        staging.to_str().unwrap(),
        "--accounts",
        "12",
        "--months",
        "4",
    ]);
    let files: Vec<String> = p
        .files_under("staging")
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("客户主数据_20310301.csv")),
        "generate's last day is not 1 March: {files:?}"
    );
    let mut args = vec!["ingest"];
    args.extend(files.iter().map(String::as_str));
    run(&args);
    let archived: Vec<PathBuf> = p.files_under("var/archive");
    assert!(!archived.is_empty(), "nothing archived");
    for f in &archived {
        assert!(
            f.to_string_lossy().contains("/2031-03-01/"),
            "archived under another day: {}",
            f.display()
        );
    }

    let eval = run(&["eval", "--dry-run"]);
    assert!(
        stdout(&eval).contains("as of 2031-03-01:"),
        "{}",
        show(&eval)
    );
    let explain = run(&[
        "eval",
        "--explain",
        "--rule",
        "order_gap",
        "--account",
        "KH1001",
    ]);
    assert!(
        stdout(&explain).contains(" as of 2031-03-01\n"),
        "{}",
        show(&explain)
    );

    // The daemon has never evaluated: it catches up at start, as of today.
    let d = Daemon::start_with(&p, &clock);
    let as_of: String = wait_for(30, "the daemon's first evaluation", || {
        p.db()
            .query_row(
                "SELECT as_of FROM evaluations ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .ok()
    });
    d.stop();
    assert_eq!(as_of, "2031-03-01");
}

/// Two fresh databases fed the same data queue the same mail, but never
/// the same Message-ID: each carries its database's random installation id
/// and the domain of `mail.from`. The id in each .eml is the outbox row's.
#[test]
fn message_ids_are_unique_to_each_database() {
    let ids = |p: &Project| -> (String, BTreeSet<String>) {
        let install: String = p
            .db()
            .query_row("SELECT id FROM installation", [], |r| r.get(0))
            .unwrap();
        let outbox: BTreeSet<String> = {
            let db = p.db();
            let mut st = db.prepare("SELECT message_id FROM outbox").unwrap();
            st.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let sent: BTreeSet<String> = eml_files(p)
            .iter()
            .map(|f| {
                let bytes = std::fs::read(f).unwrap();
                let m = MessageParser::default().parse(&bytes).unwrap();
                format!("<{}>", m.message_id().expect("a Message-ID"))
            })
            .collect();
        assert_eq!(sent, outbox, "the .eml files carry other ids");
        (install, outbox)
    };
    let projects: Vec<Project> = (0..2)
        .map(|_| {
            let p = loaded_project();
            p.edit_config(
                "from: \"kamwatch <kamwatch@localhost>\"",
                "from: \"kamwatch <alerts@mail.example.net>\"",
            );
            p.run_ok(&["eval", "--as-of", "2026-10-31"]);
            p
        })
        .collect();
    let (a_install, a) = ids(&projects[0]);
    let (b_install, b) = ids(&projects[1]);
    assert!(!a.is_empty() && a.len() == b.len(), "{a:?}\n{b:?}");
    assert_ne!(a_install, b_install);
    assert!(a_install.len() >= 32, "{a_install}");
    assert!(a.is_disjoint(&b), "shared Message-IDs: {a:?} {b:?}");
    for (install, set) in [(&a_install, &a), (&b_install, &b)] {
        for id in set {
            assert!(
                id.ends_with(&format!(".{install}@mail.example.net>")),
                "{id}"
            );
        }
    }
}

/// One validation for `check` and `run`. A misspelt log level is refused by
/// both, with its line (it used to switch every log line off). What `run`
/// would refuse later or change on its own — a password file others can
/// read, an empty rules folder, a missing inbox — `check` reports, and the
/// daemon logs as a warning when it starts.
#[test]
fn check_reports_what_run_would_refuse_or_change() {
    let p = Project::new();
    p.edit_config("\nlog: info\n", "\nlog: warnings\n");
    let line = std::fs::read_to_string(p.config())
        .unwrap()
        .lines()
        .position(|l| l == "log: warnings")
        .unwrap()
        + 1;
    for cmd in [&["check"][..], &["run"][..]] {
        let o = p.run(cmd);
        assert_exit(&o, 2);
        assert!(
            stderr(&o).contains(&format!(
                "log (line {line}): \"warnings\" is not a log level"
            )),
            "{cmd:?}: {}",
            show(&o)
        );
    }
    p.edit_config("\nlog: warnings\n", "\nlog: info\n");

    let secret = p.path("smtp-password");
    std::fs::write(&secret, "hunter2\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    p.edit_config(
        "  dir: var/mail\n",
        &format!(
            "  dir: var/mail\n  smtp:\n    host: 127.0.0.1\n    port: 1\n    security: none\n    user: kamwatch\n    password_file: {}\n",
            secret.display()
        ),
    );
    std::fs::remove_dir(p.path("inbox")).unwrap();
    for e in std::fs::read_dir(p.path("rules")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let o = p.run(&["check"]);
    assert_exit(&o, 1);
    let out = stdout(&o);
    let said = [
        "can be read by group or others (mode 644)",
        "no rules in",
        "does not exist; `run` creates it",
    ];
    for s in said {
        assert!(out.contains("warning: "), "{}", show(&o));
        assert!(out.contains(s), "{s}\n{}", show(&o));
    }
    assert!(!out.contains("hunter2"), "the secret was printed");

    // The daemon starts, and says the same.
    let d = Daemon::start_with(&p, &[("KAMWATCH_NOW", NOW)]);
    let log = wait_for(30, "the daemon's start-up warnings", || {
        let log = Daemon::log(&p);
        log.contains("kamwatch started").then_some(log)
    });
    d.stop();
    for s in said {
        let l = log
            .lines()
            .find(|l| l.contains(s))
            .unwrap_or_else(|| panic!("not logged: {s}\n{log}"));
        assert!(l.contains("WARN"), "{l}");
    }
    assert!(!log.contains("hunter2"), "the secret was logged");
}

/// `eval --verify-incremental` on a generated book: every account read
/// again on its own equals the full read; exit 0, and JSON says so too.
#[test]
fn eval_verify_incremental_finds_no_difference() {
    let p = Project::new();
    p.with_generated_history(30, 5);
    let out = p.run_ok(&["eval", "--as-of", "2026-11-28", "--verify-incremental"]);
    assert!(
        stdout(&out).contains("incremental == full as of 2026-11-28: 30 accounts"),
        "{}",
        show(&out)
    );
    let out = p.run_ok(&[
        "eval",
        "--as-of",
        "2026-11-28",
        "--verify-incremental",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["same"], true, "{v}");
    assert!(v["lines"].as_u64().unwrap() > 1000, "{v}");
    // It cannot be combined with a dry run: a usage error.
    let out = p.run(&["eval", "--verify-incremental", "--dry-run"]);
    assert_exit(&out, 2);
}

/// The suite's own guard: a "nothing there" check on a misspelt folder
/// must fail, not pass because the folder does not exist.
#[test]
#[should_panic(expected = "the config names no folder var/rejectd")]
fn a_check_on_a_misspelt_folder_fails() {
    let p = Project::new();
    let _ = p.files_under("var/rejectd");
}

/// The alerts on record move forward only: an evaluation as of a day
/// before the newest on record (which would resolve and mail what is still
/// true) or after today is refused, exit 2, changing nothing; the same
/// days as a dry run are fine.
#[test]
fn eval_refuses_to_rewrite_the_record_with_another_day() {
    let p = loaded_project();
    p.run_ok(&["eval", "--as-of", "2026-10-31"]);
    let state = |p: &Project| {
        (
            count(p, "SELECT COUNT(*) FROM alerts WHERE state = 'firing'"),
            count(p, "SELECT COUNT(*) FROM outbox"),
            count(p, "SELECT COUNT(*) FROM evaluations"),
        )
    };
    let before = state(&p);
    assert!(before.0 > 0 && before.1 > 0, "{before:?}");
    for (day, why) in [
        ("2026-06-30", "the alerts are on record as of 2026-10-31"),
        ("2099-01-01", "that is after today"),
    ] {
        let o = p.run(&["eval", "--as-of", day]);
        assert_exit(&o, 2);
        assert!(stderr(&o).contains(why), "{}", show(&o));
        assert_eq!(state(&p), before, "eval --as-of {day} changed the record");
        let o = p.run(&["eval", "--as-of", day, "--dry-run"]);
        assert_exit(&o, 0);
        assert_eq!(state(&p), before);
    }
    // The same day again, or a later one, is an evaluation like any other.
    p.run_ok(&["eval", "--as-of", "2026-10-31"]);
    p.run_ok(&["eval", "--as-of", "2026-11-01"]);
    assert_eq!(count(&p, "SELECT COUNT(*) FROM evaluations"), before.2 + 2);
}

/// Without SMTP, warnings are written into `mail.dir`: a path where no
/// folder can be (a file, or a file above it) is refused by `check` with
/// what to do, instead of every message silently waiting to be retried.
#[test]
fn check_refuses_a_mail_folder_that_cannot_be() {
    let p = Project::new();
    let file = p.path("not-a-folder");
    std::fs::write(&file, "x").unwrap();
    for (dir, says) in [
        (file.clone(), "it is a file, not a folder"),
        (file.join("mail"), "not-a-folder is a file, not a folder"),
    ] {
        p.edit_config("  dir: var/mail\n", &format!("  dir: {}\n", dir.display()));
        let o = p.run(&["check"]);
        assert_exit(&o, 1);
        let out = stdout(&o);
        assert!(
            out.contains(says) && out.contains("point mail.dir at"),
            "{}",
            show(&o)
        );
        p.edit_config(&format!("  dir: {}\n", dir.display()), "  dir: var/mail\n");
    }
    // A folder not made yet is fine: the first message makes it.
    p.edit_config("  dir: var/mail\n", "  dir: var/not/yet/mail\n");
    assert_exit(&p.run(&["check"]), 0);
}
