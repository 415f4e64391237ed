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
            "SELECT order_id, line, account_id, date, COALESCE(qty, -1), revenue, cost, sku, attrs FROM orders_attrs",
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

/// One account whatever the keyboard: a full-width ID as a Chinese input
/// method types it, and one with a zero-width space copied along, are the
/// master's KH1001, not two more accounts. A column without a header name
/// keeps what it holds.
#[test]
fn full_width_and_invisible_characters_do_not_make_another_account() {
    let p = Project::new();
    let f = p.path("销售明细_202611.csv");
    std::fs::write(
        &f,
        concat!(
            "订单编号,客户编号,订单日期,金额,成本,\n",
            "S1,KH1001,2026-11-01,10,5,\n",
            "S2,ＫＨ１００１,2026-11-02,10,5,\n",
            "S3,\u{200B}KH1001\u{FEFF},2026-11-03,10,5,快送\n",
            "Ｓ４,KH1001　,2026-11-04,10,5,\n",
        ),
    )
    .unwrap();
    let out = ingest_ok(&p, &[f], 0);
    assert!(out.contains("(orders): 4 rows"), "{out}");
    let ids: Vec<String> = {
        let db = p.db();
        let mut st = db
            .prepare("SELECT DISTINCT account_id FROM orders ORDER BY 1")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(ids, vec!["KH1001"]);
    let orders = stored_orders(&p);
    assert!(
        orders.contains_key(&("S4".to_string(), "1".to_string())),
        "{orders:?}"
    );
    let attrs: String = one(&p, "SELECT attrs FROM orders_attrs WHERE order_id = 'S3'");
    assert_eq!(attrs, "{\"column F\":\"快送\"}");
}

/// A time written with an offset (UTC, as JSON exports write it) is the
/// date it is in `schedule.timezone` (Asia/Shanghai in the test config):
/// 20:00 UTC on the 28th is the 29th there. A time without one is the date
/// as written.
#[test]
fn a_time_with_an_offset_is_its_date_in_the_business_zone() {
    let p = Project::new();
    let f = p.path("orders_20261129.jsonl");
    std::fs::write(
        &f,
        concat!(
            "{\"订单编号\":\"U1\",\"客户编号\":\"KH1001\",\"订单日期\":\"2026-11-28T20:00:00Z\",\"金额\":1,\"成本\":1}\n",
            "{\"订单编号\":\"U2\",\"客户编号\":\"KH1001\",\"订单日期\":\"2026-11-28T20:00:00+08:00\",\"金额\":1,\"成本\":1}\n",
            "{\"订单编号\":\"U3\",\"客户编号\":\"KH1001\",\"订单日期\":\"2026-11-28 23:59:59\",\"金额\":1,\"成本\":1}\n",
        ),
    )
    .unwrap();
    assert!(
        std::fs::read_to_string(p.config())
            .unwrap()
            .contains("timezone: Asia/Shanghai")
    );
    ingest_ok(&p, &[f], 0);
    let orders = stored_orders(&p);
    let date = |o: &str| orders[&(o.to_string(), "1".to_string())].3.clone();
    assert_eq!(date("U1"), "2026-11-29");
    assert_eq!(date("U2"), "2026-11-28");
    assert_eq!(date("U3"), "2026-11-28");
}

/// A header cell with an invisible character is the column it shows: read
/// alone, and refused as a second one beside the plain name (the value was
/// read from the wrong column).
#[test]
fn an_invisible_character_in_a_header_is_the_column_it_shows() {
    let p = Project::new();
    let f = p.path("销售明细_zw.csv");
    std::fs::write(
        &f,
        "订单编号,客户编号,订单日期,\u{200B}金额\u{FEFF},成本\nZ1,KH1001,2026-11-01,100,50\n",
    )
    .unwrap();
    ingest_ok(&p, &[f], 0);
    assert_eq!(
        one::<f64>(&p, "SELECT revenue FROM orders WHERE order_id = 'Z1'"),
        100.0
    );
    let f = p.path("销售明细_zw2.csv");
    std::fs::write(
        &f,
        "订单编号,客户编号,订单日期,金额\u{200B},成本,金额\nZ2,KH1001,2026-11-01,999,50,100\n",
    )
    .unwrap();
    ingest_ok(&p, &[f], 1);
    let errors =
        std::fs::read_to_string(p.path("var/rejected/销售明细_zw2.csv.errors.txt")).unwrap();
    assert!(
        errors.contains("the header has the column \"金额\" 2 times (columns 4, 6)"),
        "{errors}"
    );
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
    p.orders_config("    encoding: gbk\n    delimiter: \"|\"\n    date_order: dmy\n");
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

// ---------------------------------------------------------------- datasets

#[test]
fn receivables_snapshot_replaces_the_table() {
    let p = Project::new();
    let out = ingest_ok(&p, &[fixture("应收账款_20261128.csv")], 0);
    assert!(out.contains("(receivables): 4 rows"), "{out}");
    let (amount, due, issued, attrs): (f64, String, Option<String>, String) = p
        .db()
        .query_row(
            "SELECT amount, due_date, invoice_date, attrs FROM receivables WHERE invoice = 'FP2609001'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (amount, due.as_str(), issued.as_deref()),
        (12500.0, "2026-10-15", Some("2026-09-15"))
    );
    assert_eq!(attrs, "{\"客户名称\":\"华联超市\"}");
    assert_eq!(
        one::<Option<String>>(
            &p,
            "SELECT invoice_date FROM receivables WHERE invoice = 'FP2610011'"
        ),
        None
    );
    assert_eq!(
        one::<f64>(
            &p,
            "SELECT amount FROM receivables WHERE invoice = 'FP2610011'"
        ),
        -1200.0
    );

    // A newer snapshot with one invoice left open replaces all four.
    let f = p.path("应收账款_20261129.csv");
    std::fs::write(
        &f,
        "客户编号,发票号,到期日,未收金额\nKH1001,FP2610007,2026-11-19,8300\n",
    )
    .unwrap();
    ingest_ok(&p, &[f], 0);
    assert_eq!(one::<i64>(&p, "SELECT COUNT(*) FROM receivables"), 1);

    // An older one (by the date in its name) is validated, not applied.
    let old = p.path("应收账款_20261101.csv");
    std::fs::write(
        &old,
        "客户编号,发票号,到期日,未收金额\nKH1009,FP1,2026-10-01,1\nKH1009,FP2,2026-10-01,1\n",
    )
    .unwrap();
    let out = ingest_ok(&p, &[old], 0);
    assert!(out.contains("(receivables): 0 rows"), "{out}");
    assert!(out.contains("older than 应收账款_20261129.csv"), "{out}");
    assert_eq!(one::<i64>(&p, "SELECT COUNT(*) FROM receivables"), 1);

    // Everything paid: a newer snapshot with a header only empties the
    // table (it was refused as "no data rows", and the paid invoice's
    // overdue warning went on repeating).
    let paid = p.path("应收账款_20261130.csv");
    std::fs::write(&paid, "客户编号,发票号,到期日,未收金额\n").unwrap();
    let out = ingest_ok(&p, &[paid], 0);
    assert!(out.contains("(receivables): 0 rows"), "{out}");
    assert_eq!(one::<i64>(&p, "SELECT COUNT(*) FROM receivables"), 0);
    // Nothing on hand, likewise; an events file with a header only is
    // still refused (tests/data/bad/销售明细_只有表头.csv).
    let stock = p.path("库存_20261130.csv");
    std::fs::write(&stock, "产品编号,客户编号,库存数量\n").unwrap();
    let out = ingest_ok(&p, &[stock], 0);
    assert!(out.contains("(inventory): 0 rows"), "{out}");
}

#[test]
fn inventory_snapshot_with_optional_account() {
    let p = Project::new();
    let out = ingest_ok(&p, &[fixture("库存_20261128.csv")], 0);
    assert!(out.contains("(inventory): 4 rows"), "{out}");
    assert_eq!(
        one::<f64>(
            &p,
            "SELECT on_hand FROM inventory WHERE sku = 'SP-002' AND account_id = ''"
        ),
        800.0
    );
    assert_eq!(
        one::<f64>(
            &p,
            "SELECT on_hand FROM inventory WHERE sku = 'SP-002' AND account_id = 'KH1001'"
        ),
        150.0
    );
    assert_eq!(
        one::<String>(&p, "SELECT attrs FROM inventory WHERE sku = 'SP-001'"),
        "{\"产品名称\":\"矿泉水550ml\",\"仓库\":\"华东仓\"}"
    );
}

/// Writes a master with these (id, name, tier) rows, dated `day` in its name.
fn master_file(p: &Project, day: &str, rows: &[(&str, &str, &str)]) -> PathBuf {
    let f = p.path(&format!("客户主数据_{day}.csv"));
    let mut text = String::from("客户编号,客户名称,信用额度,客户等级,渠道\n");
    for (id, name, tier) in rows {
        text.push_str(&format!("{id},{name},\"10,000\",{tier},商超\n"));
    }
    std::fs::write(&f, text).unwrap();
    f
}

fn active_accounts(p: &Project) -> Vec<(String, String, bool)> {
    let db = p.db();
    let mut st = db
        .prepare("SELECT id, name, active FROM accounts ORDER BY id")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? == 1)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn newest_master_wins_and_an_older_one_deactivates_nothing() {
    let p = Project::new();
    let newer = master_file(&p, "20261128", &[("K1", "新名", "A"), ("K2", "乙", "")]);
    ingest_ok(&p, &[newer], 0);
    assert_eq!(
        one::<Option<String>>(&p, "SELECT tier_override FROM accounts WHERE id = 'K1'"),
        Some("A".into())
    );
    assert_eq!(
        one::<Option<String>>(&p, "SELECT tier_override FROM accounts WHERE id = 'K2'"),
        None
    );
    assert_eq!(
        one::<f64>(&p, "SELECT credit_limit FROM accounts WHERE id = 'K1'"),
        10000.0
    );
    assert_eq!(
        one::<String>(&p, "SELECT attrs FROM accounts WHERE id = 'K1'"),
        "{\"渠道\":\"商超\"}"
    );

    // Dropped late, an October master lists K1 under its old name and K3.
    let older = master_file(&p, "20261001", &[("K1", "旧名", "b"), ("K3", "丙", "C")]);
    let out = ingest_ok(&p, &[older], 0);
    assert!(out.contains("older than 客户主数据_20261128.csv"), "{out}");
    assert_eq!(
        active_accounts(&p),
        vec![
            ("K1".into(), "新名".into(), true),
            ("K2".into(), "乙".into(), true),
            ("K3".into(), "丙".into(), false),
        ]
    );
    let reason: String = one(
        &p,
        "SELECT reason FROM ledger WHERE file_name = '客户主数据_20261001.csv'",
    );
    assert!(
        reason.contains("no account was changed or deactivated"),
        "{reason}"
    );

    // A December master is the new truth: K2 is gone from it.
    let newest = master_file(&p, "20261201", &[("K1", "新名", "z")]);
    let out = ingest_ok(&p, &[newest], 1);
    assert!(out.contains("rejected"), "{out}");
    let errors =
        std::fs::read_to_string(p.path("var/rejected/客户主数据_20261201.csv.errors.txt")).unwrap();
    assert!(
        errors.contains("line 2, column 客户等级 (tier): \"z\" is not a tier"),
        "{errors}"
    );
    let newest = master_file(&p, "20261201", &[("K1", "新名", "")]);
    ingest_ok(&p, &[newest], 0);
    assert_eq!(
        active_accounts(&p).iter().map(|a| a.2).collect::<Vec<_>>(),
        vec![true, false, false]
    );
}

#[test]
fn configured_key_replaces_rows_that_share_it() {
    let p = Project::new();
    // This ERP numbers lines afresh in each export; the order id alone is the key.
    p.orders_config("    key: [order_id]\n");
    let a = p.path("orders_a.csv");
    std::fs::write(&a, "订单编号,行号,客户编号,订单日期,金额,成本\nO1,1,K,2026-11-01,10,5\nO2,1,K,2026-11-01,20,5\n").unwrap();
    let b = p.path("orders_b.csv");
    std::fs::write(
        &b,
        "订单编号,行号,客户编号,订单日期,金额,成本\nO1,7,K,2026-11-01,11,5\n",
    )
    .unwrap();
    ingest_ok(&p, &[a, b], 0);
    assert_eq!(one::<i64>(&p, "SELECT COUNT(*) FROM orders"), 2);
    assert_eq!(
        one::<f64>(&p, "SELECT revenue FROM orders WHERE order_id = 'O1'"),
        11.0
    );
}

/// A key that is not a leading part of the primary key gets an index of
/// its own (orders keep no other), so the delete by key is a lookup.
#[test]
fn a_configured_key_has_an_index() {
    let p = Project::new();
    p.orders_config("    key: [account_id, date, sku]\n");
    let a = p.path("orders_a.csv");
    let head = "订单编号,行号,客户编号,订单日期,产品编号,金额,成本\n";
    std::fs::write(
        &a,
        format!("{head}O1,1,K,2026-11-01,S1,10,5\nO1,2,K,2026-11-01,S2,20,5\n"),
    )
    .unwrap();
    let b = p.path("orders_b.csv");
    std::fs::write(&b, format!("{head}O9,1,K,2026-11-01,S1,11,5\n")).unwrap();
    ingest_ok(&p, &[a, b], 0);
    assert_eq!(one::<i64>(&p, "SELECT COUNT(*) FROM orders"), 2);
    assert_eq!(
        one::<f64>(&p, "SELECT revenue FROM orders WHERE sku = 'S1'"),
        11.0
    );
    let db = p.db();
    let mut st = db
        .prepare(
            "EXPLAIN QUERY PLAN DELETE FROM orders
             WHERE account_id IS 'K' AND date IS '2026-11-01' AND sku IS 'S1'",
        )
        .unwrap();
    let plan: Vec<String> = st
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let plan = plan.join("; ");
    assert!(plan.contains("orders_key_account_id_date_sku"), "{plan}");
}

#[test]
fn an_unknown_key_field_is_a_config_error() {
    let p = Project::new();
    p.orders_config("    key: [order_no]\n");
    let o = p.run(&["check"]);
    assert_eq!(o.status.code(), Some(2), "{}", explain(&o));
    assert!(
        stderr(&o).contains("datasets.orders.key: unknown field `order_no`"),
        "{}",
        explain(&o)
    );
}

// ---------------------------------------------------------------- bad input

/// (file, fragment of its reason) from tests/data/bad/expected.tsv.
fn bad_inputs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(fixture("bad/expected.tsv")).unwrap();
    let table: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (f, why) = l.split_once('\t').unwrap_or_else(|| panic!("no tab: {l}"));
            (f.to_string(), why.to_string())
        })
        .collect();
    for e in std::fs::read_dir(fixture("bad")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name == "expected.tsv" || table.iter().any(|(f, _)| *f == name),
            "bad/{name} has no line in bad/expected.tsv"
        );
    }
    table
}

#[test]
fn every_bad_input_is_rejected_with_its_reason() {
    let table = bad_inputs();
    assert!(table.len() >= 10);
    for (name, why) in &table {
        let p = Project::new();
        let f = fixture(&format!("bad/{name}"));
        let out = ingest_ok(&p, std::slice::from_ref(&f), 1);
        assert!(
            out.starts_with(&format!("rejected {}", f.display())),
            "{name}: {out}"
        );
        let copy = p.path("var/rejected").join(name);
        assert_eq!(
            std::fs::read(&copy).unwrap_or_default(),
            std::fs::read(&f).unwrap(),
            "{name}: the rejected copy differs"
        );
        let errors = std::fs::read_to_string(p.path(&format!("var/rejected/{name}.errors.txt")))
            .unwrap_or_else(|e| panic!("{name}: no errors file: {e}"));
        assert!(
            errors.contains(why.as_str()),
            "{name}: want {why:?} in\n{errors}"
        );
        assert!(
            errors.starts_with(&format!("kamwatch rejected {name}")),
            "{errors}"
        );
        let reason: String = one(&p, "SELECT reason FROM ledger WHERE outcome = 'rejected'");
        assert_eq!(reason, errors, "{name}: the ledger keeps the same reason");
        for table in ["accounts", "orders", "visits", "receivables", "inventory"] {
            let n: i64 = one(&p, &format!("SELECT COUNT(*) FROM {table}"));
            assert_eq!(n, 0, "{name} stored rows in {table}");
        }
    }
}

#[test]
fn skip_rows_stores_the_good_rows_and_lists_the_bad_beside_the_archive() {
    let p = Project::new();
    p.orders_config("    on_error: skip_rows\n");
    let out = ingest_ok(
        &p,
        &[
            fixture("bad/销售明细_坏行.csv"),
            fixture("bad/销售明细_200列.csv"),
        ],
        0,
    );
    assert!(out.contains("(orders): 4 rows"), "{out}");
    assert!(out.contains("(orders): 1 rows"), "{out}");
    assert_eq!(one::<i64>(&p, "SELECT COUNT(*) FROM orders"), 5);
    let archived = p.files_under("var/archive");
    let errors_file = archived
        .iter()
        .find(|f| {
            f.to_string_lossy()
                .ends_with("销售明细_坏行.csv.errors.txt")
        })
        .unwrap_or_else(|| panic!("no errors file beside the archive: {archived:?}"));
    let errors = std::fs::read_to_string(errors_file).unwrap();
    assert!(errors.contains("without 2 bad row(s)"), "{errors}");
    assert!(
        errors.contains("line 4, column 金额 (revenue): \"一百六\" is not a number"),
        "{errors}"
    );
    assert!(
        errors.contains("line 6, column 订单日期 (date)"),
        "{errors}"
    );
    let reason: String = one(
        &p,
        "SELECT reason FROM ledger WHERE file_name = '销售明细_坏行.csv'",
    );
    assert!(reason.contains("2 bad row(s) skipped"), "{reason}");
    // A fatal read error still rejects the whole file.
    let out = ingest_ok(&p, &[fixture("bad/销售明细_超长行.csv")], 1);
    assert!(out.starts_with("rejected"), "{out}");
}

#[test]
fn formula_looking_cells_are_kept_as_text() {
    let p = Project::new();
    ingest_ok(&p, &[fixture("销售明细_公式.csv")], 0);
    assert_eq!(one::<String>(&p, "SELECT sku FROM orders"), "=SUM(A1:A9)");
    let attrs: serde_json::Value =
        serde_json::from_str(&one::<String>(&p, "SELECT attrs FROM orders_attrs")).unwrap();
    assert_eq!(
        attrs["客户名称"],
        "=HYPERLINK(\"http://evil.example/x\",\"华联超市\")"
    );
    assert_eq!(attrs["产品名称"], "@cmd");
    // In a number column it is no number.
    let f = p.path("orders_formula.csv");
    std::fs::write(
        &f,
        "订单编号,客户编号,订单日期,金额,成本\nF1,K,2026-11-01,=1+2,1\n",
    )
    .unwrap();
    ingest_ok(&p, &[f], 1);
    let errors =
        std::fs::read_to_string(p.path("var/rejected/orders_formula.csv.errors.txt")).unwrap();
    assert!(
        errors.contains("line 2, column 金额 (revenue): \"=1+2\" is not a number"),
        "{errors}"
    );
}

#[test]
fn a_workbook_with_a_csv_name_is_read_as_a_workbook() {
    let p = Project::new();
    let f = p.path("销售明细_wrong-name.csv");
    std::fs::copy(fixture(ORDERS_XLSX), &f).unwrap();
    let out = ingest_ok(&p, &[f], 0);
    assert!(out.contains("(orders): "), "{out}");
    assert!(one::<i64>(&p, "SELECT COUNT(*) FROM orders") > 100);
}

// ---------------------------------------------------------------- processes

/// `kamwatch run` on a project; killed if a test fails before it stops.
struct Running(std::process::Child);

impl Running {
    fn start(p: &Project) -> Running {
        let log = std::fs::File::create(p.path("daemon.log")).unwrap();
        let child = p
            .command(&["run"])
            .env("KAMWATCH_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting kamwatch run");
        Running(child)
    }

    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn set_watch(p: &Project, settle_ms: u64) {
    let cfg = std::fs::read_to_string(p.config()).unwrap();
    let cfg = cfg.replace("settle_ms: 150", &format!("settle_ms: {settle_ms}"));
    assert!(cfg.contains(&format!("settle_ms: {settle_ms}")));
    std::fs::write(p.config(), cfg).unwrap();
}

/// With a settle interval of an hour, only a file renamed into the inbox
/// can be taken; bad files on the way do not stop the daemon.
#[test]
fn daemon_takes_renamed_files_at_once_and_survives_bad_input() {
    let p = Project::new();
    set_watch(&p, 3_600_000);
    let mut d = Running::start(&p);
    // The start-up scan has run once the daemon logs that it started.
    wait_for(30, "the daemon to start", || {
        std::fs::read_to_string(p.path("daemon.log"))
            .ok()
            .filter(|l| l.contains("kamwatch started"))
    });
    let staging = p.path("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let mut names = Vec::new();
    for (name, _) in bad_inputs() {
        std::fs::copy(fixture(&format!("bad/{name}")), staging.join(&name)).unwrap();
        names.push(name);
    }
    std::fs::copy(fixture(ORDERS), staging.join(ORDERS)).unwrap();
    names.push(ORDERS.to_string());
    for n in &names {
        std::fs::rename(staging.join(n), p.path("inbox").join(n)).unwrap();
    }
    let rejected = names.len() - 1;
    wait_for(60, "every file ingested or rejected", || {
        let db = p.db();
        let n: i64 = db
            .query_row("SELECT COUNT(*) FROM ledger", [], |r| r.get(0))
            .unwrap_or(0);
        (n as usize == names.len()).then_some(())
    });
    assert!(d.alive(), "the daemon stopped");
    assert_eq!(
        one::<i64>(&p, "SELECT COUNT(*) FROM ledger WHERE outcome = 'rejected'") as usize,
        rejected
    );
    assert_eq!(
        one::<i64>(&p, "SELECT COUNT(*) FROM ledger WHERE outcome = 'ingested'"),
        1
    );
    assert!(one::<i64>(&p, "SELECT COUNT(*) FROM orders") > 100);
    for n in &names[..rejected] {
        assert!(
            p.path(&format!("var/rejected/{n}.errors.txt")).is_file(),
            "no reason for {n}"
        );
    }
    assert!(std::fs::read_dir(p.path("inbox")).unwrap().next().is_none());
}

/// Writes an orders CSV of `rows` lines.
fn big_orders(path: &Path, rows: usize) {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(w, "订单编号,行号,客户编号,订单日期,产品编号,数量,金额,成本").unwrap();
    for i in 0..rows {
        writeln!(
            w,
            "SO{:08},{},KH{:04},2026-{:02}-{:02},SP-{:03},{},{}.50,{}.25",
            i / 3,
            i % 3 + 1,
            i % 500,
            i % 12 + 1,
            i % 28 + 1,
            i % 200,
            i % 90 + 1,
            i % 1000,
            i % 700
        )
        .unwrap();
    }
    w.flush().unwrap();
}

/// kill -9 in the middle of a big ingest leaves nothing of the file; the
/// rerun stores every row exactly once.
#[test]
fn sigkill_mid_ingest_leaves_all_or_nothing() {
    use std::io::BufRead;
    let p = Project::new();
    let rows = 360_000;
    let f = p.path("orders_big.csv");
    big_orders(&f, rows);
    // Orders have no secondary index of their own (migration 0006); one
    // made by hand stands in for any, to check a bulk load restores it.
    kamwatch::store::open(&p.path("var/kamwatch.db"))
        .unwrap()
        .execute_batch("CREATE INDEX orders_by_sku ON orders(sku)")
        .unwrap();
    let mut child = p
        .command(&["ingest", f.to_str().unwrap()])
        .env("KAMWATCH_LOG", "kamwatch=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The CLI logs its progress when not on a terminal: kill it once a
    // third of the rows are written into the open transaction.
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = 0u64;
    for line in stderr.lines() {
        let line = line.unwrap();
        if let Some(n) = line
            .split("rows=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|r| r.parse::<u64>().ok())
        {
            seen = n;
            if n >= rows as u64 / 3 {
                break;
            }
        }
    }
    assert!(seen >= rows as u64 / 3, "no progress seen before the end");
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );

    // A bulk load runs in a rollback journal (pages written once): the
    // kill leaves a hot journal, which the next connection rolls back.
    assert!(
        p.path("var/kamwatch.db-journal").exists(),
        "no rollback journal: the bulk load ran in WAL mode"
    );
    assert_eq!(
        one::<i64>(&p, "SELECT COUNT(*) FROM orders"),
        0,
        "a partial file was stored"
    );
    assert_eq!(one::<i64>(&p, "SELECT COUNT(*) FROM ledger"), 0);
    // A file this big is loaded with the orders index dropped and rebuilt
    // in the same transaction: the kill must not have lost it.
    let index = "SELECT COUNT(*) FROM sqlite_master WHERE name = 'orders_by_sku'";
    assert_eq!(one::<i64>(&p, index), 1, "the orders index is gone");
    let size = std::fs::metadata(&f).unwrap().len();
    assert!(size > 16 << 20, "{size} bytes: too small for a bulk load");
    let out = ingest_ok(&p, std::slice::from_ref(&f), 0);
    assert!(out.contains(&format!("(orders): {rows} rows")), "{out}");
    assert_eq!(one::<i64>(&p, "SELECT COUNT(*) FROM orders"), rows as i64);
    assert_eq!(one::<i64>(&p, index), 1, "the orders index was not rebuilt");
    assert_eq!(
        one::<String>(&p, "PRAGMA journal_mode"),
        "wal",
        "not back in WAL mode"
    );
    let per_sku = "SELECT COUNT(*) FROM orders INDEXED BY orders_by_sku WHERE sku = 'SP-007'";
    assert_eq!(one::<i64>(&p, per_sku), (rows / 200) as i64);
    // And once more: a duplicate, counted nowhere.
    let out = ingest_ok(&p, &[f], 0);
    assert!(out.starts_with("duplicate"), "{out}");
    assert_eq!(one::<i64>(&p, "SELECT COUNT(*) FROM orders"), rows as i64);
}

#[test]
fn utf8_bom_and_semicolons_and_invalid_utf8() {
    let p = Project::new();
    let f = p.path("orders_bom.csv");
    let mut bytes = vec![0xEF, 0xBB, 0xBF];
    bytes.extend_from_slice(
        "订单编号;客户编号;订单日期;金额;成本\r\nB1;KH1001;2026-11-01;\"1.234,5\";1\r\n".as_bytes(),
    );
    std::fs::write(&f, &bytes).unwrap();
    // "1.234,5" is not how this parser reads numbers: a person sees why.
    ingest_ok(&p, std::slice::from_ref(&f), 1);
    let errors = std::fs::read_to_string(p.path("var/rejected/orders_bom.csv.errors.txt")).unwrap();
    assert!(
        errors.contains("line 2, column 金额 (revenue): \"1.234,5\""),
        "{errors}"
    );
    let f = p.path("orders_bom2.csv");
    bytes.truncate(bytes.len() - "\"1.234,5\";1\r\n".len());
    bytes.extend_from_slice(b"1234.5;1\r\n");
    std::fs::write(&f, &bytes).unwrap();
    let out = ingest_ok(&p, &[f], 0);
    assert!(out.contains("(orders): 1 rows"), "{out}");
    assert_eq!(one::<String>(&p, "SELECT order_id FROM orders"), "B1");

    // Valid UTF-8 at the start, a broken byte far below: named, not replaced.
    let f = p.path("orders_broken.csv");
    let mut text = String::from("订单编号,客户编号,订单日期,金额,成本\n");
    for i in 0..3000 {
        text.push_str(&format!("U{i},KH1001,2026-11-01,1,1\n"));
    }
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"U9,KH\xff1,2026-11-01,1,1\n");
    std::fs::write(&f, &bytes).unwrap();
    ingest_ok(&p, &[f], 1);
    let errors =
        std::fs::read_to_string(p.path("var/rejected/orders_broken.csv.errors.txt")).unwrap();
    assert!(
        errors.contains(
            "line 3002: column \"客户编号\" is not valid UTF-8 text (byte 3 of the cell)"
        ),
        "{errors}"
    );
}

#[test]
fn a_missing_sheet_is_named_with_the_sheets_there_are() {
    let p = Project::new();
    p.orders_config("    sheet: 明细\n");
    let out = ingest_ok(&p, &[fixture(ORDERS_XLSX)], 1);
    assert!(out.contains("no sheet named \"明细\""), "{out}");
    let errors =
        std::fs::read_to_string(p.path(&format!("var/rejected/{ORDERS_XLSX}.errors.txt"))).unwrap();
    assert!(errors.contains("its sheets are: "), "{errors}");
    // Named as it is, the sheet is read.
    let sheet = errors
        .split("its sheets are: ")
        .nth(1)
        .and_then(|s| s.split(['.', ',']).next())
        .unwrap()
        .to_string();
    p.edit_config("sheet: 明细", &format!("sheet: \"{sheet}\""));
    let out = ingest_ok(&p, &[fixture(ORDERS_XLSX)], 0);
    assert!(out.contains("(orders): "), "{out}");
}

// ------------------------------------------------------ hostile content

/// Writes a minimal .xlsx: one sheet whose XML `sheet` writes the rows
/// (inline strings, no shared strings), and optionally a shared-strings
/// part of `shared_bytes` bytes. Deflated, so a big sheet is a small file.
fn xlsx(
    path: &Path,
    dimension: &str,
    sheet: &dyn Fn(&mut dyn std::io::Write),
    shared_bytes: usize,
) {
    use std::io::Write;
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1));
    let parts: [(&str, String); 4] = [
        (
            "[Content_Types].xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#.into(),
        ),
        (
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.into(),
        ),
        (
            "xl/workbook.xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="明细" sheetId="1" r:id="rId1"/></sheets></workbook>"#.into(),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#.into(),
        ),
    ];
    for (name, text) in &parts {
        z.start_file(*name, opts).unwrap();
        z.write_all(text.as_bytes()).unwrap();
    }
    if shared_bytes > 0 {
        z.start_file("xl/sharedStrings.xml", opts).unwrap();
        write!(z, r#"<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">"#).unwrap();
        let si = "<si><t>客户名称客户名称</t></si>";
        for _ in 0..shared_bytes / si.len() {
            z.write_all(si.as_bytes()).unwrap();
        }
        z.write_all(b"</sst>").unwrap();
    }
    z.start_file("xl/worksheets/sheet1.xml", opts).unwrap();
    write!(z, r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><dimension ref="{dimension}"/><sheetData>"#).unwrap();
    sheet(&mut z);
    z.write_all(b"</sheetData></worksheet>").unwrap();
    z.finish().unwrap();
}

/// A row of inline-string cells from column A.
fn xlsx_row(w: &mut dyn std::io::Write, row: u32, cells: &[&str]) {
    write!(w, r#"<row r="{row}">"#).unwrap();
    for (i, c) in cells.iter().enumerate() {
        let col = (b'A' + i as u8) as char;
        write!(
            w,
            r#"<c r="{col}{row}" t="inlineStr"><is><t>{c}</t></is></c>"#
        )
        .unwrap();
    }
    w.write_all(b"</row>").unwrap();
}

const XLSX_HEADER: [&str; 5] = ["订单编号", "客户编号", "订单日期", "金额", "成本"];

/// Ingests `file` expecting a rejection; returns its reason file.
fn rejected_reason(p: &Project, file: &Path) -> String {
    let out = ingest_ok(p, &[file.to_path_buf()], 1);
    assert!(out.starts_with("rejected"), "{out}");
    let name = file.file_name().unwrap().to_string_lossy();
    let reason = std::fs::read_to_string(p.path(&format!("var/rejected/{name}.errors.txt")))
        .unwrap_or_else(|e| panic!("no reason for {name}: {e}"));
    assert!(
        reason.starts_with(&format!("kamwatch rejected {name}")),
        "{reason}"
    );
    reason
}

/// One cell at XFD1048576: the sheet is streamed, never laid out as a
/// 16384 x 1048576 grid; the stray cell is named with its row and column.
#[test]
fn a_sparse_workbook_is_rejected_naming_its_far_cell() {
    let p = Project::new();
    let f = p.path("销售明细_稀疏.xlsx");
    xlsx(
        &f,
        "A1:XFD1048576",
        &|w| {
            xlsx_row(w, 1, &XLSX_HEADER);
            xlsx_row(w, 2, &["SO1", "KH1001", "2026-11-01", "100", "80"]);
            write!(
                w,
                r#"<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>"#
            )
            .unwrap();
        },
        0,
    );
    assert!(std::fs::metadata(&f).unwrap().len() < 4096);
    let reason = rejected_reason(&p, &f);
    assert!(
        reason.contains(
            "row 1048576: has a value in column XFD (16384), beyond the header's 5 column(s)"
        ),
        "{reason}"
    );
    assert_eq!(one::<i64>(&p, "SELECT COUNT(*) FROM orders"), 0);
    // Without the stray cell the same workbook is read.
    let ok = p.path("销售明细_正常.xlsx");
    xlsx(
        &ok,
        "A1:E2",
        &|w| {
            xlsx_row(w, 1, &XLSX_HEADER);
            xlsx_row(w, 2, &["SO1", "KH1001", "2026-11-01", "100", "80"]);
        },
        0,
    );
    let out = ingest_ok(&p, &[ok], 0);
    assert!(out.contains("(orders): 1 rows"), "{out}");
}

/// Workbooks that unpack to more than the limits are refused before the
/// memory is spent: a sheet bigger than `max_unpacked_mib` (a zip bomb,
/// scaled down to the limit set here), shared strings bigger than
/// `max_in_memory_mib`, a sheet declaring more rows than `max_sheet_rows`,
/// one cell bigger than `max_record_bytes`.
#[test]
fn zip_bombs_and_oversized_workbooks_are_refused_by_the_limits() {
    let p = Project::new();
    p.edit_config("max_unpacked_mib: 512", "max_unpacked_mib: 4");
    p.edit_config("max_in_memory_mib: 128", "max_in_memory_mib: 2");
    p.edit_config("max_sheet_rows: 1048576", "max_sheet_rows: 1000");
    p.edit_config("max_record_bytes: 1048576", "max_record_bytes: 65536");
    let rows = |from: u32, to: u32| {
        move |w: &mut dyn std::io::Write| {
            xlsx_row(w, 1, &XLSX_HEADER);
            for r in from..to {
                xlsx_row(w, r, &["SO1", "KH1001", "2026-11-01", "100", "80"]);
            }
        }
    };
    // 8 MiB of sheet in a file of some KiB.
    let bomb = p.path("销售明细_炸弹.xlsx");
    xlsx(
        &bomb,
        "A1:E999",
        &|w| {
            xlsx_row(w, 1, &XLSX_HEADER);
            let filler = format!("<!--{}-->", "0".repeat(60_000));
            for _ in 0..140 {
                w.write_all(filler.as_bytes()).unwrap();
            }
            rows(2, 3)(w)
        },
        0,
    );
    assert!(std::fs::metadata(&bomb).unwrap().len() < 200_000);
    let reason = rejected_reason(&p, &bomb);
    assert!(
        reason.contains("more than the 4 MiB allowed (`ingest.max_unpacked_mib`"),
        "{reason}"
    );
    // Shared strings are held in memory: bounded separately.
    let strings = p.path("销售明细_字符串.xlsx");
    xlsx(&strings, "A1:E3", &rows(2, 3), 3 << 20);
    let reason = rejected_reason(&p, &strings);
    assert!(
        reason.contains("(`ingest.max_in_memory_mib`; the part \"xl/sharedStrings.xml\""),
        "{reason}"
    );
    // The declared dimension says too many rows: refused before reading.
    let tall = p.path("销售明细_超高.xlsx");
    xlsx(&tall, "A1:E5000", &rows(2, 3), 0);
    let reason = rejected_reason(&p, &tall);
    assert!(reason.contains("says it has 5000 rows"), "{reason}");
    // The dimension lies; the rows read count.
    let liar = p.path("销售明细_谎报.xlsx");
    xlsx(&liar, "A1:E2", &rows(2, 1200), 0);
    let reason = rejected_reason(&p, &liar);
    assert!(
        reason.contains("row 1001: is past the 1000 rows allowed"),
        "{reason}"
    );
    // One cell of 100 KiB.
    let fat = p.path("销售明细_大格.xlsx");
    let big = "长".repeat(40_000);
    xlsx(
        &fat,
        "A1:E2",
        &|w| {
            xlsx_row(w, 1, &XLSX_HEADER);
            xlsx_row(w, 2, &["SO1", &big, "2026-11-01", "100", "80"]);
        },
        0,
    );
    let reason = rejected_reason(&p, &fat);
    assert!(
        reason.contains("holds a single cell or tag longer than 65536 bytes"),
        "{reason}"
    );
    // Within the limits, the same shapes are read.
    let fine = p.path("销售明细_可以.xlsx");
    xlsx(&fine, "A1:E999", &rows(2, 1000), 0);
    let out = ingest_ok(&p, &[fine], 0);
    assert!(out.contains("(orders): "), "{out}");
    // 998 lines of one order without a line column: numbered 1..998.
    assert_eq!(one::<i64>(&p, "SELECT COUNT(*) FROM orders"), 998);
}

/// A quoted field that spans many lines is bounded like a line: the
/// record is refused at the limit, naming the line it starts on, and is
/// never held whole.
#[test]
fn a_quoted_field_spanning_many_lines_is_bounded() {
    let p = Project::new();
    p.edit_config("max_record_bytes: 1048576", "max_record_bytes: 4096");
    let f = p.path("销售明细_长字段.csv");
    let mut text =
        String::from("订单编号,客户编号,订单日期,金额,成本\nSO1,KH1001,2026-11-01,1,1\nSO2,\"");
    for i in 0..2000 {
        text.push_str(&format!("line {i} of a field that never closes\n"));
    }
    text.push_str("\",2026-11-01,1,1\n");
    std::fs::write(&f, &text).unwrap();
    let reason = rejected_reason(&p, &f);
    assert!(
        reason.contains("line 3: starts a record (a row, its quoted fields spanning lines) longer than 4096 bytes"),
        "{reason}"
    );
    // No copy of the field in the reason or the ledger.
    assert!(!reason.contains("line 100 of a field"), "{reason}");
    // Far longer: the read stops at the bound, the rest is never held.
    let f = p.path("销售明细_长字段2.csv");
    let mut text = String::from("订单编号,客户编号,订单日期,金额,成本\nSO1,\"");
    for i in 0..40_000 {
        text.push_str(&format!("line {i} of a field that never closes\n"));
    }
    std::fs::write(&f, &text).unwrap();
    let reason = rejected_reason(&p, &f);
    assert!(
        reason.contains("line 2 cannot be read, so the rest of the file cannot be either"),
        "{reason}"
    );
    assert!(reason.contains("line 2: starts a record"), "{reason}");
    assert_eq!(one::<i64>(&p, "SELECT COUNT(*) FROM orders"), 0);
    // Quoted fields with line breaks under the bound are fine.
    let ok = p.path("销售明细_多行.csv");
    std::fs::write(
        &ok,
        "订单编号,客户编号,订单日期,金额,成本,备注\nSO1,KH1001,2026-11-01,1,1,\"two\nlines\"\nSO2,KH1001,2026-11-01,1,1,x\n",
    )
    .unwrap();
    let out = ingest_ok(&p, &[ok], 0);
    assert!(out.contains("(orders): 2 rows"), "{out}");
}

/// Order lines without a line column are numbered per order in file order
/// (a real export stored 5,009 of 10,925 rows when all were line 1); the
/// summary and the ledger say what was read, stored, replaced and skipped.
#[test]
fn order_lines_without_a_line_column_are_numbered_and_counted() {
    let p = Project::new();
    let f = p.path("销售明细_无行号.csv");
    let text = "订单编号,客户编号,订单日期,金额,成本\nSO1,KH1001,2026-11-01,100,80\nSO2,KH1001,2026-11-01,5,4\nSO1,KH1001,2026-11-01,50,40\nSO1,KH1001,2026-11-01,7,6\n";
    std::fs::write(&f, text).unwrap();
    let out = ingest_ok(&p, &[f], 0);
    assert!(
        out.contains(
            "(orders): 4 rows (read 4, stored 4, replaced 0 by key from earlier files, skipped 0)"
        ),
        "{out}"
    );
    let lines: Vec<(String, String, f64)> = {
        let db = p.db();
        let mut st = db
            .prepare("SELECT order_id, line, revenue FROM orders ORDER BY order_id, CAST(line AS INTEGER)")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let want = [
        ("SO1", "1", 100.0),
        ("SO1", "2", 50.0),
        ("SO1", "3", 7.0),
        ("SO2", "1", 5.0),
    ];
    assert_eq!(lines.len(), want.len(), "{lines:?}");
    for ((o, l, r), (wo, wl, wr)) in lines.iter().zip(want) {
        assert_eq!((o.as_str(), l.as_str(), *r), (wo, wl, wr), "{lines:?}");
    }
    // The same export again, one amount corrected: the same lines, replaced.
    let f2 = p.path("销售明细_无行号2.csv");
    std::fs::write(&f2, text.replace(",7,6", ",8,6")).unwrap();
    let out = ingest_ok(&p, &[f2], 0);
    assert!(
        out.contains("(read 4, stored 4, replaced 4 by key from earlier files, skipped 0)"),
        "{out}"
    );
    assert_eq!(one::<f64>(&p, "SELECT SUM(revenue) FROM orders"), 163.0);
    let (read, stored, replaced, skipped): (i64, i64, i64, i64) = p
        .db()
        .query_row(
            "SELECT rows_read, rows, rows_replaced, rows_skipped FROM ledger WHERE file_name = '销售明细_无行号2.csv'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((read, stored, replaced, skipped), (4, 4, 4, 0));
}

/// Two rows of one file with the same key are never merged silently: the
/// file is rejected naming both lines, unless `duplicate_keys: keep_last`.
#[test]
fn repeated_keys_in_one_file_reject_it_unless_keep_last() {
    let p = Project::new();
    let f = p.path("销售明细_重复.csv");
    std::fs::write(
        &f,
        "订单编号,行号,客户编号,订单日期,金额,成本\nSO1,1,KH1001,2026-11-01,100,80\nSO1,2,KH1001,2026-11-01,5,4\nSO1,1,KH1001,2026-11-01,50,40\n",
    )
    .unwrap();
    let reason = rejected_reason(&p, &f);
    assert!(
        reason.contains("line 4: has the same key (order_id, line) as line 2"),
        "{reason}"
    );
    assert!(reason.contains("duplicate_keys: keep_last"), "{reason}");
    assert!(!reason.contains("not listed"), "{reason}");
    assert_eq!(one::<i64>(&p, "SELECT COUNT(*) FROM orders"), 0);
    // A repeat beside a bad row: both listed, and none counted as unlisted
    // (each was counted twice before).
    let g = p.path("销售明细_重复坏行.csv");
    std::fs::write(
        &g,
        "订单编号,行号,客户编号,订单日期,金额,成本\nSO1,1,KH1001,2026-11-01,100,80\nSO2,1,KH1001,not a day,5,4\nSO1,1,KH1001,2026-11-01,50,40\n",
    )
    .unwrap();
    let reason = rejected_reason(&p, &g);
    assert!(reason.contains("line 3, column"), "{reason}");
    assert!(reason.contains("line 4: has the same key"), "{reason}");
    assert!(!reason.contains("not listed"), "{reason}");
    // A master listing an account twice is refused the same way.
    let m = p.path("客户主数据_重复.csv");
    std::fs::write(&m, "客户编号,客户名称\nKH1,甲\nKH2,乙\nKH1,丙\n").unwrap();
    let reason = rejected_reason(&p, &m);
    assert!(
        reason.contains("line 4: has the same key (id) as line 2"),
        "{reason}"
    );
    // Kept last when asked, and said so.
    p.orders_config("    duplicate_keys: keep_last\n");
    let out = ingest_ok(&p, &[f], 0);
    assert!(
        out.contains("(orders): 3 rows (read 3, stored 3, replaced 0 by key"),
        "{out}"
    );
    assert!(
        out.contains(
            "1 row(s) repeated the key of an earlier row of the file; the last of each was kept"
        ),
        "{out}"
    );
    assert_eq!(
        one::<f64>(&p, "SELECT revenue FROM orders WHERE line = '1'"),
        50.0
    );
}

/// `1e308` is refused at ingest; an absurd amount already in the database
/// (stored before the bound, or by hand) counts as 0 in the metrics, so the
/// book's total and every share stay finite and the tiers stay as they are.
#[test]
fn absurd_amounts_never_reach_the_metrics() {
    let p = Project::new();
    ingest_ok(&p, &[fixture(MASTER), fixture(ORDERS)], 0);
    let tiers = |p: &Project| -> Vec<(String, String, f64)> {
        let o = p.run(&["accounts", "--as-of", "2026-10-31", "--format", "json"]);
        assert!(o.status.success(), "{}", explain(&o));
        let text = stdout(&o);
        assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v.get("rank").is_some())
            .map(|v| {
                (
                    v["id"].as_str().unwrap_or_default().to_string(),
                    v["tier"].as_str().unwrap_or_default().to_string(),
                    v["cumulative_pct"].as_f64().expect("a finite share"),
                )
            })
            .collect()
    };
    let before = tiers(&p);
    assert!(before.len() > 5, "{before:?}");
    let db = p.db();
    db.execute_batch(
        "INSERT INTO orders (order_id, line, account_id, date, revenue, cost)
           VALUES ('X1', '1', 'KH1001', '2026-10-01', 1e308, 0),
                  ('X2', '1', 'KH1002', '2026-10-01', 9e999, 0),
                  ('X3', '1', 'KH1003', '2026-10-01', 1e308, -9e999);",
    )
    .unwrap();
    drop(db);
    let after = tiers(&p);
    assert_eq!(after, before);
}

/// What a file holds is never copied into the reason, the ledger or the
/// log beyond an excerpt of the offending cell: at most 80 characters,
/// control characters escaped (a terminal escape in a cell stays text).
#[test]
fn reasons_and_logs_quote_only_a_bounded_escaped_excerpt() {
    let p = Project::new();
    let f = p.path("销售明细_长值.csv");
    let cell = format!("\u{1b}[31mSECRET{}", "s".repeat(5000));
    std::fs::write(
        &f,
        format!("订单编号,客户编号,订单日期,金额,成本\nSO1,KH1001,2026-11-01,\"{cell}\",1\n"),
    )
    .unwrap();
    let o = p
        .command(&["ingest", &f.to_string_lossy()])
        .env("KAMWATCH_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", explain(&o));
    let reason =
        std::fs::read_to_string(p.path("var/rejected/销售明细_长值.csv.errors.txt")).unwrap();
    let ledger: String = one(&p, "SELECT reason FROM ledger");
    for (what, text) in [
        ("reason", &reason),
        ("ledger", &ledger),
        ("stdout", &stdout(&o)),
        ("stderr", &stderr(&o)),
    ] {
        assert!(!text.contains('\u{1b}'), "{what}: a raw escape in {text:?}");
        assert!(
            !text.contains(&"s".repeat(100)),
            "{what} copies the cell: {} bytes",
            text.len()
        );
    }
    assert!(reason.contains("\"\\u{1b}[31mSECRETsss"), "{reason}");
    assert!(
        reason.contains("…\" (5011 bytes) is not a number"),
        "{reason}"
    );
    // A header of one huge name is named by an excerpt too.
    let h = p.path("销售明细_长表头.csv");
    std::fs::write(&h, format!("订单编号,{}\nSO1,1\n", "列".repeat(20_000))).unwrap();
    let reason = rejected_reason(&p, &h);
    assert!(
        reason.len() < 2000,
        "{} bytes: {}",
        reason.len(),
        &reason[..300]
    );
    assert!(reason.contains("lacks the required column(s)"), "{reason}");
}

/// A customer master is the whole book, so one that leaves out most of it
/// (a partial export: one region, one new account) is held back with a
/// reason instead of switching every other account off; raising the limit
/// applies it, and the summary says how many accounts it switched off.
#[test]
fn a_master_that_drops_most_of_the_book_is_held_back() {
    let p = Project::new();
    ingest_ok(&p, &[fixture("客户主数据.csv")], 0);
    let active = |p: &Project| -> i64 { one(p, "SELECT COUNT(*) FROM accounts WHERE active = 1") };
    assert_eq!(active(&p), 20);

    let partial = p.path("客户主数据_新客户.csv");
    std::fs::write(
        &partial,
        "客户编号,客户名称,区域,业务员,业务员邮箱,主管邮箱,信用额度\nKHNEW,新客户,华东,张伟,zhang.wei@example.com,chen.jing@example.com,1000\n",
    )
    .unwrap();
    let o = p.run(&["ingest", partial.to_str().unwrap()]);
    assert_exit(&o, 1);
    assert_eq!(active(&p), 20, "the held-back master switched accounts off");
    let known: i64 = one(&p, "SELECT COUNT(*) FROM accounts WHERE id = 'KHNEW'");
    assert_eq!(known, 0, "a row of the held-back master was stored");
    let reasons: Vec<PathBuf> = p
        .files_under("var/rejected")
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".errors.txt"))
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    let reason = std::fs::read_to_string(&reasons[0]).unwrap();
    assert!(
        reason.contains("lists 1 account(s) and would switch off 20 of the 20 active now (100%")
            && reason.contains("max_accounts_switched_off_pct"),
        "{reason}"
    );

    // The admin says the book really shrank: it applies, and says so.
    p.edit_config(
        "max_accounts_switched_off_pct: 20",
        "max_accounts_switched_off_pct: 100",
    );
    let again = p.path("客户主数据_新客户2.csv");
    std::fs::copy(&partial, &again).unwrap();
    let out = ingest_ok(&p, &[again], 0);
    assert_eq!(active(&p), 1);
    assert!(
        out.contains("20 account(s) listed by the previous master are not in this one"),
        "{out}"
    );
}

/// A JSON Lines file whose lines use ever new keys would make every row as
/// wide as all the keys: refused past 1024 distinct keys, naming the line.
#[test]
fn jsonl_with_ever_new_keys_is_refused() {
    let p = Project::new();
    let f = p.path("orders_keys.jsonl");
    let mut text = String::new();
    for i in 0..2000 {
        text.push_str(&format!(
            "{{\"订单编号\":\"SO{i}\",\"客户编号\":\"KH1\",\"订单日期\":\"2026-11-01\",\"金额\":1,\"成本\":1,\"k{i}\":1}}\n"
        ));
    }
    std::fs::write(&f, text).unwrap();
    let reason = rejected_reason(&p, &f);
    assert!(
        reason.contains("line 1020: the file has more than 1024 distinct keys"),
        "{reason}"
    );
}

/// An owner address as mail clients copy it, `Name <address>`, is one
/// address: the one in the brackets is stored.
#[test]
fn an_address_with_a_display_name_is_one_address() {
    let p = Project::new();
    let f = p.path("客户主数据_显示名.csv");
    std::fs::write(
        &f,
        "客户编号,客户名称,业务员,业务员邮箱,主管邮箱\nKH1001,华联超市,张伟,张伟 <zhang.wei@example.com>,Chen Jing<chen.jing@example.com> \n",
    )
    .unwrap();
    ingest_ok(&p, &[f], 0);
    let got: (String, String) = p
        .db()
        .query_row(
            "SELECT owner_email, manager_email FROM accounts WHERE id = 'KH1001'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        got,
        (
            "zhang.wei@example.com".to_string(),
            "chen.jing@example.com".to_string()
        )
    );
}

/// A line number is a number: `0010` in one export and `10` in the next are
/// the same order line, stored once.
#[test]
fn zero_padded_line_numbers_are_the_same_line() {
    let p = Project::new();
    let head = "订单编号,行号,客户编号,客户名称,订单日期,产品编号,产品名称,数量,单价,金额,成本\n";
    let a = p.path("销售明细_a.csv");
    let b = p.path("销售明细_b.csv");
    std::fs::write(&a, format!("{head}SO1,0010,KH1001,华联超市,2026-11-01,SP-1,纸巾,1,100,100,60\nSO1,0,KH1001,华联超市,2026-11-01,SP-2,毛巾,1,5,5,3\n")).unwrap();
    std::fs::write(&b, format!("{head}SO1,10,KH1001,华联超市,2026-11-01,SP-1,纸巾,1,120,120,60\nSO1,00,KH1001,华联超市,2026-11-01,SP-2,毛巾,1,5,5,3\n")).unwrap();
    ingest_ok(&p, &[a, b], 0);
    let lines: Vec<(String, f64)> = {
        let db = p.db();
        let mut st = db
            .prepare("SELECT line, revenue FROM orders ORDER BY line")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(lines, [("0".to_string(), 5.0), ("10".to_string(), 120.0)]);
}

/// What Excel and old DOS tools leave after the last row — rows of only
/// commas, a ^Z — is no row: the file is ingested, not rejected.
#[test]
fn excel_leftovers_after_the_last_row_are_no_rows() {
    let p = Project::new();
    let head = "订单编号,行号,客户编号,客户名称,订单日期,产品编号,产品名称,数量,单价,金额,成本\r\n";
    let f = p.path("销售明细_尾行.csv");
    std::fs::write(
        &f,
        format!("{head}SO1,1,KH1001,华联超市,2026-11-01,SP-1,纸巾,1,100,100,60\r\n,,,,,,,,,,\r\n , ,,,,,,,,,\r\n\u{1a}"),
    )
    .unwrap();
    let out = ingest_ok(&p, &[f], 0);
    assert!(out.contains("1 rows (read 1, stored 1"), "{out}");
}
