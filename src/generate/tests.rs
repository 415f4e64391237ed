//! Tests of the generator: determinism, the files' shape, and that the
//! planted problems show in the data.

use super::cast::*;
use super::*;
use chrono::NaiveDate;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

fn end() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()
}

fn opts(dir: &Path, seed: u64, accounts: usize) -> GenerateOptions {
    GenerateOptions {
        out_dir: dir.to_path_buf(),
        seed,
        accounts,
        end: end(),
        months: 24,
    }
}

fn read(path: &Path) -> (Vec<String>, Vec<csv::StringRecord>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r.records().map(|r| r.unwrap()).collect();
    (header, rows)
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn num(s: &str) -> f64 {
    s.parse().unwrap()
}

/// Days before `end()` (0 = the last day).
fn age(s: &str) -> i64 {
    (end() - date(s)).num_days()
}

fn file_names(s: &GenerateSummary) -> Vec<String> {
    s.files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let sa = generate(&opts(a.path(), 7, 80)).unwrap();
    let sb = generate(&opts(b.path(), 7, 80)).unwrap();
    let sc = generate(&opts(c.path(), 8, 80)).unwrap();
    assert_eq!(file_names(&sa), file_names(&sb));
    assert_eq!(file_names(&sa), file_names(&sc));
    for i in 0..3 {
        let fa = fs::read(&sa.files[i]).unwrap();
        assert_eq!(fa, fs::read(&sb.files[i]).unwrap(), "file {i}");
        assert_ne!(fa, fs::read(&sc.files[i]).unwrap(), "file {i}");
    }
    assert_eq!(sa.declining, sb.declining);
    assert_eq!(sa.lapsed_visits, sb.lapsed_visits);
}

#[test]
fn files_names_headers_and_encoding() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("nested").join("inbox");
    let s = generate(&opts(&out, 42, 300)).unwrap();
    assert_eq!(
        file_names(&s),
        [
            "客户主数据_20261128.csv",
            "销售明细_20241101-20261128.csv",
            "拜访记录_20241101-20261128.csv"
        ]
    );
    // Exactly the three files: no temp file left behind.
    let mut listed: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    let mut expected = file_names(&s);
    expected.sort();
    assert_eq!(listed, expected);

    for path in &s.files {
        let bytes = fs::read(path).unwrap();
        assert!(!bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "BOM in {path:?}");
        assert!(!bytes.contains(&b'\r'), "CR in {path:?}");
        assert!(bytes.ends_with(b"\n"));
        std::str::from_utf8(&bytes).unwrap();
    }
    assert_eq!(read(&s.files[0]).0, ACCOUNT_HEADER);
    assert_eq!(read(&s.files[1]).0, ORDER_HEADER);
    assert_eq!(read(&s.files[2]).0, VISIT_HEADER);
    let first = fs::read_to_string(&s.files[0]).unwrap();
    assert!(first.starts_with("客户编号,客户名称,区域,业务员,业务员邮箱,主管邮箱,信用额度,主管\n"));
    let first = fs::read_to_string(&s.files[1]).unwrap();
    assert!(first.starts_with(
        "订单编号,行号,客户编号,客户名称,订单日期,产品编号,产品名称,数量,单价,金额,成本\n"
    ));
    let first = fs::read_to_string(&s.files[2]).unwrap();
    assert!(first.starts_with("拜访日期,客户编号,拜访人,职务,拜访类型,备注\n"));
}

#[test]
fn customer_master() {
    let tmp = tempfile::tempdir().unwrap();
    let s = generate(&opts(tmp.path(), 42, 300)).unwrap();
    let (_, rows) = read(&s.files[0]);
    assert_eq!(rows.len(), 300);
    assert_eq!(s.accounts, 300);
    let mut names = HashSet::new();
    let mut per_rep: BTreeMap<String, usize> = BTreeMap::new();
    let mut managers = HashSet::new();
    let mut no_email = 0;
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(&r[0], format!("KH{}", 1001 + i));
        assert!(names.insert(r[1].to_string()), "duplicate name {}", &r[1]);
        assert!(REGIONS.contains(&&r[2]));
        *per_rep.entry(r[3].to_string()).or_default() += 1;
        if r[4].is_empty() {
            no_email += 1;
        } else {
            assert!(r[4].ends_with("@example.com"));
        }
        managers.insert(r[5].to_string());
        let credit: i64 = r[6].parse().unwrap();
        assert!(credit >= 10_000 && credit % 10_000 == 0, "{credit}");
    }
    assert_eq!(per_rep.len(), 10);
    assert!(per_rep.values().all(|&c| c == 30), "{per_rep:?}");
    assert_eq!(managers.len(), 3);
    assert!((2..=12).contains(&no_email), "{no_email}");
}

#[test]
fn order_lines_are_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let s = generate(&opts(tmp.path(), 42, 300)).unwrap();
    let (_, master) = read(&s.files[0]);
    let names: HashMap<String, String> = master
        .iter()
        .map(|r| (r[0].to_string(), r[1].to_string()))
        .collect();
    let (_, rows) = read(&s.files[1]);
    assert_eq!(rows.len(), s.order_lines);
    assert!((30_000..=120_000).contains(&rows.len()), "{}", rows.len());
    let start = NaiveDate::from_ymd_opt(2024, 11, 1).unwrap();
    let mut prev: Option<(NaiveDate, String, u32)> = None;
    let mut orders_seen = HashSet::new();
    let mut active = HashSet::new();
    for r in &rows {
        let d = date(&r[4]);
        assert!(d >= start && d <= end(), "{d}");
        assert_eq!(&r[0][..8], format!("SO{}", d.format("%y%m%d")));
        assert_eq!(r[0].len(), 12);
        assert_eq!(names[&r[2]], &r[3]);
        active.insert(r[2].to_string());
        let line: u32 = r[1].parse().unwrap();
        assert!((1..=4).contains(&line));
        let key = (d, r[0].to_string(), line);
        match &prev {
            Some((pd, pid, pl)) if *pid == r[0] => {
                assert_eq!(line, pl + 1);
                assert_eq!(*pd, d);
            }
            Some(p) => {
                assert_eq!(line, 1);
                assert!((p.0, &p.1) < (d, &key.1), "not sorted at {}", &r[0]);
                assert!(orders_seen.insert(r[0].to_string()), "{} split", &r[0]);
            }
            None => assert_eq!(line, 1),
        }
        prev = Some(key);
        let p = PRODUCTS.iter().find(|p| p.code == &r[5]).unwrap();
        assert_eq!(p.name, &r[6]);
        let qty: i64 = r[7].parse().unwrap();
        assert!(qty >= 1);
        let (price, amount, cost) = (num(&r[8]), num(&r[9]), num(&r[10]));
        assert!((qty as f64 * price - amount).abs() < 0.006, "{r:?}");
        let margin = 1.0 - cost / amount;
        assert!((0.05..0.32).contains(&margin), "{r:?}");
    }
    assert_eq!(active.len(), 300, "every account has orders");
}

/// Per account: revenue and cost by day before the end.
fn ledger(s: &GenerateSummary) -> HashMap<String, Vec<(i64, f64, f64)>> {
    let mut by: HashMap<String, Vec<(i64, f64, f64)>> = HashMap::new();
    for r in read(&s.files[1]).1 {
        by.entry(r[2].to_string())
            .or_default()
            .push((age(&r[4]), num(&r[9]), num(&r[10])));
    }
    by
}

fn window(lines: &[(i64, f64, f64)], from: i64, to: i64) -> (f64, f64) {
    lines
        .iter()
        .filter(|l| l.0 >= from && l.0 < to)
        .fold((0.0, 0.0), |acc, l| (acc.0 + l.1, acc.1 + l.2))
}

#[test]
fn revenue_is_pareto() {
    let tmp = tempfile::tempdir().unwrap();
    let s = generate(&opts(tmp.path(), 42, 300)).unwrap();
    let mut revenue: Vec<f64> = ledger(&s)
        .values()
        .map(|l| l.iter().map(|x| x.1).sum())
        .collect();
    revenue.sort_by(|a, b| b.total_cmp(a));
    let total: f64 = revenue.iter().sum();
    let top: f64 = revenue[..60].iter().sum();
    let share = top / total;
    assert!((0.65..=0.90).contains(&share), "{share}");
}

#[test]
fn planted_problems_show() {
    let tmp = tempfile::tempdir().unwrap();
    let s = generate(&opts(tmp.path(), 42, 300)).unwrap();
    for list in [&s.declining, &s.margin_slipping, &s.lapsed_visits] {
        assert!(!list.is_empty());
        assert!(list.is_sorted());
    }
    assert!((15..=35).contains(&s.declining.len()));
    assert!((10..=30).contains(&s.margin_slipping.len()));
    assert!((15..=35).contains(&s.lapsed_visits.len()));
    assert!(s.declining.iter().all(|id| !s.margin_slipping.contains(id)));

    let ledger = ledger(&s);
    for id in &s.declining {
        let now = window(&ledger[id], 0, 90).0;
        let before = window(&ledger[id], 90, 180).0;
        assert!(now < 0.6 * before, "{id}: {now} vs {before}");
    }
    for id in &s.margin_slipping {
        let (rn, cn) = window(&ledger[id], 0, 90);
        let (rb, cb) = window(&ledger[id], 90, 360);
        let (now, before) = (1.0 - cn / rn, 1.0 - cb / rb);
        assert!(now <= before - 0.04, "{id}: {now} vs {before}");
    }
    // Nobody else slips.
    for (id, l) in &ledger {
        if s.margin_slipping.contains(id) {
            continue;
        }
        let (rn, cn) = window(l, 0, 90);
        let (rb, cb) = window(l, 90, 360);
        assert!((1.0 - cn / rn) > (1.0 - cb / rb) - 0.02, "{id}");
    }

    let (_, visits) = read(&s.files[2]);
    assert_eq!(visits.len(), s.visits);
    let mut latest: HashMap<String, i64> = HashMap::new();
    for v in &visits {
        let a = age(&v[0]);
        let e = latest.entry(v[1].to_string()).or_insert(a);
        *e = (*e).min(a);
    }
    assert_eq!(latest.len(), 300, "every account is visited");
    for id in &s.lapsed_visits {
        assert!(latest[id] >= 45, "{id} visited {} days ago", latest[id]);
        assert!(latest[id] <= 80, "{id} visited {} days ago", latest[id]);
    }
    for (id, &a) in &latest {
        let planted = s.declining.contains(id)
            || s.margin_slipping.contains(id)
            || s.lapsed_visits.contains(id);
        if !s.lapsed_visits.contains(id) {
            assert!(a <= 10, "{id} last visited {a} days ago");
        }
        if !planted {
            assert!(a < 14);
        }
    }
}

#[test]
fn visits_are_well_formed() {
    let tmp = tempfile::tempdir().unwrap();
    let s = generate(&opts(tmp.path(), 42, 300)).unwrap();
    let (_, master) = read(&s.files[0]);
    let rep_of: HashMap<String, String> = master
        .iter()
        .map(|r| (r[0].to_string(), r[3].to_string()))
        .collect();
    let (_, rows) = read(&s.files[2]);
    let start = NaiveDate::from_ymd_opt(2024, 11, 1).unwrap();
    let mut keys = HashSet::new();
    let mut prev: Option<(NaiveDate, String)> = None;
    let mut by_manager: HashMap<String, usize> = HashMap::new();
    let mut with_comma = 0;
    for r in &rows {
        let d = date(&r[0]);
        assert!(d >= start && d <= end());
        assert!(
            keys.insert((r[1].to_string(), d, r[2].to_string())),
            "duplicate {r:?}"
        );
        let key = (d, r[1].to_string());
        if let Some(p) = &prev {
            assert!(*p <= key, "not sorted at {r:?}");
        }
        prev = Some(key);
        match &r[3] {
            "业务员" => assert_eq!(rep_of[&r[1]], &r[2]),
            "销售总监" => {
                assert!(MANAGERS.iter().any(|m| m.name == &r[2]));
                *by_manager.entry(r[1].to_string()).or_default() += 1;
            }
            other => panic!("role {other}"),
        }
        assert!(VISIT_KINDS.contains(&&r[4]));
        with_comma += usize::from(r[5].contains(','));
    }
    // The top ~20% get a manager visit about once a quarter (~8-10 over 25 months).
    assert!(
        (50..=70).contains(&by_manager.len()),
        "{}",
        by_manager.len()
    );
    assert!(by_manager.values().all(|&n| (6..=11).contains(&n)));
    assert!(with_comma > 0, "some notes need quoting");
}

#[test]
fn small_runs_still_plant_everything() {
    let tmp = tempfile::tempdir().unwrap();
    for n in [40, 12, 3] {
        let dir = tmp.path().join(n.to_string());
        let s = generate(&opts(&dir, 1, n)).unwrap();
        assert_eq!(s.accounts, n);
        assert!(!s.declining.is_empty(), "{n}");
        assert!(!s.margin_slipping.is_empty(), "{n}");
        assert!(!s.lapsed_visits.is_empty(), "{n}");
    }
    let s = generate(&opts(&tmp.path().join("1"), 1, 1)).unwrap();
    assert_eq!(s.declining.len(), 1);
    assert!(generate(&opts(&tmp.path().join("0"), 1, 0)).is_err());
}

#[test]
fn short_history_never_passes_end() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(tmp.path(), 5, 30);
    o.months = 1;
    o.end = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
    let s = generate(&o).unwrap();
    assert_eq!(
        file_names(&s)[1],
        "销售明细_20250201-20250301.csv".to_string()
    );
    let (_, orders) = read(&s.files[1]);
    assert!(!orders.is_empty());
    for r in orders {
        let d = date(&r[4]);
        assert!(d >= NaiveDate::from_ymd_opt(2025, 2, 1).unwrap() && d <= o.end);
    }
    for r in read(&s.files[2]).1 {
        assert!(date(&r[0]) <= o.end);
    }
}
