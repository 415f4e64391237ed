use crate::support::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

const MASTER: &str = "客户主数据.csv";
const MASTER_XLS: &str = "客户主数据.xls";
const ORDERS: &str = "销售明细_202609-10.csv";
const ORDERS_XLSX: &str = "销售明细_202609-10.xlsx";

fn explain(o: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        o.status,
        stdout(o),
        stderr(o)
    )
}

/// `kamwatch ingest FILES` (copies: the files stay where they are); asserts
/// the exit code.
fn ingest_ok(p: &Project, files: &[PathBuf], want: i32) -> String {
    let mut args = vec!["ingest".to_string()];
    args.extend(files.iter().map(|f| f.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = p.run(&args);
    assert_eq!(o.status.code(), Some(want), "{}", explain(&o));
    stdout(&o)
}

fn one<T: rusqlite::types::FromSql>(p: &Project, sql: &str) -> T {
    p.db()
        .query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

type OrderLine = (
    String,
    String,
    String,
    String,
    f64,
    f64,
    f64,
    Option<String>,
);

/// Every stored order line, by (order id, line).
fn stored_orders(p: &Project) -> BTreeMap<(String, String), OrderLine> {
    let db = p.db();
    let mut st = db
        .prepare(
            "SELECT order_id, line, account_id, date, COALESCE(qty, -1), revenue, cost, sku, attrs FROM orders",
        )
        .unwrap();
    st.query_map([], |r| {
        let attrs: Option<String> = r.get(8)?;
        Ok((
            (r.get(0)?, r.get(1)?),
            (
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                attrs.map(|a| {
                    // Compare attributes as values: "15.8" and "15.80" are one price.
                    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
                    let mut m = v.as_object().unwrap().clone();
                    if let Some(x) = m.get("单价").and_then(|x| x.as_str()) {
                        let n: f64 = x.parse().unwrap();
                        m.insert("单价".into(), serde_json::json!(n));
                    }
                    serde_json::Value::Object(m).to_string()
                }),
            ),
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn orders_after_ingesting(file: &Path) -> BTreeMap<(String, String), OrderLine> {
    let p = Project::new();
    ingest_ok(&p, &[file.to_path_buf()], 0);
    stored_orders(&p)
}

#[test]
fn xlsx_from_libreoffice_yields_the_rows_of_the_csv() {
    let from_csv = orders_after_ingesting(&fixture(ORDERS));
    let from_xlsx = orders_after_ingesting(&fixture(ORDERS_XLSX));
    assert!(from_csv.len() > 100, "{}", from_csv.len());
    assert_eq!(from_xlsx.len(), from_csv.len());
    for (k, want) in &from_csv {
        let got = from_xlsx.get(k).unwrap_or_else(|| panic!("{k:?} missing"));
        assert_eq!(got.0, want.0);
        assert_eq!(got.2, want.2, "account of {k:?}");
        assert_eq!(got.3, want.3, "date of {k:?}");
        for (g, w, what) in [
            (got.4, want.4, "qty"),
            (got.5, want.5, "revenue"),
            (got.6, want.6, "cost"),
        ] {
            assert!((g - w).abs() < 1e-9, "{what} of {k:?}: {g} vs {w}");
        }
        assert_eq!(got.7, want.7, "attributes of {k:?}");
    }
    // The extra columns are kept: name of the customer and product, price.
    let (_, first) = from_csv.iter().next().unwrap();
    let attrs = first.7.as_deref().unwrap();
    for key in ["客户名称", "产品名称", "单价"] {
        assert!(attrs.contains(key), "{attrs}");
    }
}

#[test]
fn xlsx_and_csv_of_the_same_lines_count_once() {
    let p = Project::new();
    ingest_ok(&p, &[fixture(ORDERS)], 0);
    let n: i64 = one(&p, "SELECT COUNT(*) FROM orders");
    let out = ingest_ok(&p, &[fixture(ORDERS_XLSX)], 0);
    assert!(out.contains(&format!("(orders): {n} rows")), "{out}");
    assert_eq!(one::<i64>(&p, "SELECT COUNT(*) FROM orders"), n);
}

/// (id, name, owner email, credit limit) of the stored accounts.
fn stored_accounts(p: &Project) -> Vec<(String, String, Option<String>, Option<f64>)> {
    let db = p.db();
    let mut st = db
        .prepare("SELECT id, name, owner_email, credit_limit FROM accounts ORDER BY id")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn xls_master_yields_the_accounts_of_the_csv_with_credit_limits() {
    let a = Project::new();
    ingest_ok(&a, &[fixture(MASTER)], 0);
    let b = Project::new();
    let out = ingest_ok(&b, &[fixture(MASTER_XLS)], 0);
    assert!(out.contains("(accounts): 20 rows"), "{out}");
    let from_csv = stored_accounts(&a);
    assert_eq!(from_csv.len(), 20);
    assert_eq!(stored_accounts(&b), from_csv);
    assert_eq!(from_csv[0].3, Some(50000.0), "{:?}", from_csv[0]);
    assert!(from_csv.iter().all(|r| r.3.is_some_and(|c| c > 0.0)));
}

#[test]
fn jsonl_keys_map_like_headers() {
    let p = Project::new();
    let f = p.path("orders_20261101.jsonl");
    std::fs::write(
        &f,
        concat!(
            "{\"订单编号\":\"J1\",\"行号\":1,\"客户编号\":\"KH1001\",\"订单日期\":\"2026-11-01\",\"金额\":100.5,\"成本\":80,\"渠道\":\"电商\"}\n",
            "\n",
            "{\"订单编号\":\"J1\",\"行号\":2,\"客户编号\":\"KH1001\",\"订单日期\":\"2026/11/1\",\"金额\":\"1,200.00\",\"成本\":900,\"备注\":null}\n",
        ),
    )
    .unwrap();
    let out = ingest_ok(&p, &[f], 0);
    assert!(out.contains("(orders): 2 rows"), "{out}");
    let orders = stored_orders(&p);
    let l1 = &orders[&("J1".to_string(), "1".to_string())];
    assert_eq!(l1.3, "2026-11-01");
    assert_eq!(l1.5, 100.5);
    assert_eq!(l1.7.as_deref(), Some("{\"渠道\":\"电商\"}"));
    let l2 = &orders[&("J1".to_string(), "2".to_string())];
    assert_eq!(l2.3, "2026-11-01");
    assert_eq!(l2.5, 1200.0);
    assert_eq!(l2.7, None, "empty and null values are no attributes");
}

#[test]
fn jsonl_bad_line_is_named() {
    let p = Project::new();
    let f = p.path("orders_bad.jsonl");
    std::fs::write(
        &f,
        "{\"订单编号\":\"J1\",\"客户编号\":\"K\",\"订单日期\":\"2026-11-01\",\"金额\":1,\"成本\":1}\n[1,2]\n{\"订单编号\":\n",
    )
    .unwrap();
    ingest_ok(&p, &[f], 1);
    let errors =
        std::fs::read_to_string(p.path("var/rejected/orders_bad.jsonl.errors.txt")).unwrap();
    assert!(errors.contains("line 2: is a JSON array"), "{errors}");
    assert!(errors.contains("line 3: is not valid JSON"), "{errors}");
}

/// Writes `text` as GBK.
fn gbk(text: &str) -> Vec<u8> {
    let (bytes, _, bad) = encoding_rs::GBK.encode(text);
    assert!(!bad);
    bytes.into_owned()
}

#[test]
fn configured_encoding_delimiter_and_date_order() {
    let p = Project::new();
    let cfg = std::fs::read_to_string(p.config()).unwrap();
    let cfg = cfg.replace(
        "  orders:\n    files:",
        "  orders:\n    encoding: gbk\n    delimiter: \"|\"\n    date_order: dmy\n    files:",
    );
    std::fs::write(p.config(), cfg).unwrap();
    let f = p.path("orders_dmy.csv");
    // So short a sample could pass for UTF-8 by chance; the config says GBK.
    std::fs::write(
        &f,
        gbk("订单编号|行号|客户编号|订单日期|金额|成本\r\nD1|1|KH1001|03/11/2026|￥1,000.00|(12.50)\r\nD1|2|KH1001|28.11.2026|$5|4\r\n"),
    )
    .unwrap();
    let out = ingest_ok(&p, &[f], 0);
    assert!(out.contains("(orders): 2 rows"), "{out}");
    let orders = stored_orders(&p);
    let l1 = &orders[&("D1".to_string(), "1".to_string())];
    assert_eq!(l1.3, "2026-11-03", "day first");
    assert_eq!((l1.5, l1.6), (1000.0, -12.5));
    assert_eq!(orders[&("D1".to_string(), "2".to_string())].3, "2026-11-28");
}

#[test]
fn year_last_dates_without_date_order_say_what_to_set() {
    let p = Project::new();
    let f = p.path("orders_x.csv");
    std::fs::write(
        &f,
        "订单编号,客户编号,订单日期,金额,成本\nX1,KH1001,03/11/2026,1,1\n",
    )
    .unwrap();
    ingest_ok(&p, &[f], 1);
    let errors = std::fs::read_to_string(p.path("var/rejected/orders_x.csv.errors.txt")).unwrap();
    assert!(
        errors.contains("line 2, column 订单日期 (date)"),
        "{errors}"
    );
    assert!(errors.contains("date_order: dmy"), "{errors}");
}
