//! Tiers through real files: `tiers.by` as `accounts` shows it, and
//! order lines of accounts missing from the master, which are kept and
//! reported but move nobody's tier.

use std::path::PathBuf;

use crate::support::*;

const MASTER: &str = "客户编号,客户名称,区域,业务员,业务员邮箱,主管邮箱\n\
    T,大而薄,华东,张伟,zhang.wei@example.com,chen.jing@example.com\n\
    G,小而厚,华东,张伟,zhang.wei@example.com,chen.jing@example.com\n\
    H,小客户,华东,张伟,zhang.wei@example.com,chen.jing@example.com\n\
    Z,无订单,华东,张伟,zhang.wei@example.com,chen.jing@example.com\n";

/// Revenue 125,000: T holds 80% (A), G 16% with 80% above it (B, exactly
/// at the line), H 4% (C). Gross profit 10,000: G 80% (A), T 15% with 80%
/// above it (B), H 5% (C). Z has no orders: C by both.
const ORDERS: &str = "订单编号,行号,客户编号,客户名称,订单日期,产品编号,产品名称,数量,单价,金额,成本\n\
    SO1,1,T,大而薄,2026-03-01,SP-1,纸巾,1,100000,100000,98500\n\
    SO2,1,G,小而厚,2026-03-01,SP-1,纸巾,1,20000,20000,12000\n\
    SO3,1,H,小客户,2026-03-01,SP-1,纸巾,1,5000,5000,4500\n";

/// Lines for two accounts the master does not list, with more revenue
/// than the whole book: ranked in place, they would make T, G and H all A
/// (the accounts above each would hold well under 80% of the total).
const UNLISTED: &str = "订单编号,行号,客户编号,客户名称,订单日期,产品编号,产品名称,数量,单价,金额,成本\n\
    SO9,1,KH9,新客户,2026-04-01,SP-1,纸巾,1,900000,900000,100000\n\
    SO9,2,KH9,新客户,2026-04-02,SP-1,纸巾,1,100000,100000,10000\n\
    SO8,1,KH8,另一个,2026-05-01,SP-1,纸巾,1,200000,200000,20000\n";

fn write(p: &Project, name: &str, text: &str) -> PathBuf {
    let f = p.path(name);
    std::fs::write(&f, text).unwrap();
    f
}

fn ingest(p: &Project, files: &[PathBuf]) -> String {
    let mut args = vec!["ingest".to_string()];
    args.extend(files.iter().map(|f| f.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    stdout(&p.run_ok(&args))
}

fn book() -> Project {
    let p = Project::new();
    let master = write(&p, "客户主数据.csv", MASTER);
    let orders = write(&p, "销售明细_2026.csv", ORDERS);
    ingest(&p, &[master, orders]);
    p
}

/// `accounts --format json`: the account rows, in their order.
fn rows(p: &Project) -> Vec<serde_json::Value> {
    let o = p.run_ok(&["accounts", "--as-of", "2026-06-30", "--format", "json"]);
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("rank").is_some())
        .collect()
}

/// (id, field) of every row, as text.
fn column(rows: &[serde_json::Value], field: &str) -> Vec<(String, String)> {
    rows.iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r[field].to_string()))
        .collect()
}

fn ids(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Each basis ranks the same book its own way; `accounts` says which one
/// it used (first line of the text, `tiers_by` in JSON) and shows both
/// shares and both single-measure tiers whatever the basis.
#[test]
fn accounts_shows_the_basis_and_both_shares() {
    let p = book();
    let mut current = "revenue";
    for (by, order, tiers, line) in [
        (
            "revenue",
            ["T", "G", "H", "Z"],
            ["A", "B", "C", "C"],
            "tiers by revenue (tiers.by: revenue): A up to 80% of the trailing-12-month revenue, B up to 95%, as of 2026-06-30",
        ),
        (
            "gross_profit",
            ["G", "T", "H", "Z"],
            ["A", "B", "C", "C"],
            "tiers by gross profit (tiers.by: gross_profit): A up to 80% of the trailing-12-month gross profit, B up to 95%, as of 2026-06-30",
        ),
        (
            // T and G are each B by one measure, and both exactly at the
            // line (80% above): in revenue order.
            "both",
            ["T", "G", "H", "Z"],
            ["B", "B", "C", "C"],
            "tiers by revenue and gross profit (tiers.by: both): the lower of the two tiers, each A up to 80% of the trailing-12-month total, B up to 95%, as of 2026-06-30",
        ),
    ] {
        p.edit_config(&format!("  by: {current}\n"), &format!("  by: {by}\n"));
        current = by;
        let rows = rows(&p);
        let got: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r["id"].as_str().unwrap(), r["tier"].as_str().unwrap()))
            .collect();
        let want: Vec<(&str, &str)> = order.into_iter().zip(tiers).collect();
        assert_eq!(got, want, "tiers.by: {by}");
        assert!(rows.iter().all(|r| r["tiers_by"] == by), "{by}: {rows:?}");
        // Both shares and both tiers, whatever the basis.
        let mut share = column(&rows, "share_pct");
        share.sort();
        assert_eq!(
            share,
            ids(&[("G", "16.0"), ("H", "4.0"), ("T", "80.0"), ("Z", "0.0")])
        );
        let mut gp = column(&rows, "gross_profit_share_pct");
        gp.sort();
        assert_eq!(
            gp,
            ids(&[("G", "80.0"), ("H", "5.0"), ("T", "15.0"), ("Z", "0.0")])
        );
        let mut rev_tier = column(&rows, "revenue_tier");
        rev_tier.sort();
        assert_eq!(
            rev_tier,
            ids(&[
                ("G", "\"B\""),
                ("H", "\"C\""),
                ("T", "\"A\""),
                ("Z", "\"C\"")
            ])
        );
        let mut gp_tier = column(&rows, "gross_profit_tier");
        gp_tier.sort();
        assert_eq!(
            gp_tier,
            ids(&[
                ("G", "\"A\""),
                ("H", "\"C\""),
                ("T", "\"B\""),
                ("Z", "\"C\"")
            ])
        );

        let text = stdout(&p.run_ok(&["accounts", "--as-of", "2026-06-30"]));
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(line), "{text}");
        let header = lines.next().unwrap_or_default();
        for col in ["tier", "share%", "GP sh%", "rev t", "GP t"] {
            assert!(header.contains(col), "{header}");
        }
        let t_row = lines.find(|l| l.contains(" T ")).unwrap_or_default();
        let t_cells: Vec<&str> = t_row.split_whitespace().collect();
        // rank, id, name, owner, tier, share%, cum% (two under both),
        // GP sh%, rev t, GP t
        let t_tier = if by == "revenue" { "A" } else { "B" };
        assert_eq!(t_cells[4..6], [t_tier, "80.00"], "{t_row}");
        let gp_at = if by == "both" { 8 } else { 7 };
        assert_eq!(t_cells[gp_at..gp_at + 3], ["15.00", "A", "B"], "{t_row}");
    }
}

/// Order lines of accounts missing from the master are kept, counted and
/// named (the evaluation's log, `accounts`), but rank nobody: the tiers
/// and shares are those of the master's accounts, exactly as before the
/// lines came.
#[test]
fn orders_of_accounts_missing_from_the_master_move_no_tier() {
    let p = book();
    let before = rows(&p);
    let text_before = stdout(&p.run_ok(&["accounts", "--as-of", "2026-06-30"]));
    assert!(
        !text_before.contains("missing from the customer master"),
        "{text_before}"
    );

    let unlisted = write(&p, "销售明细_新客户.csv", UNLISTED);
    ingest(&p, &[unlisted]);
    let kept: i64 = p
        .db()
        .query_row(
            "SELECT COUNT(*) FROM orders WHERE account_id IN ('KH8', 'KH9')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, 3, "the lines are kept");

    let after = rows(&p);
    assert_eq!(after, before, "the tiers and shares do not move");

    let warning = "order lines name 2 account(s) missing from the customer master (\"KH9\", \"KH8\"), with 1200000.00 of revenue in the last 12 months: the lines are kept, but those accounts are not ranked, move no account's tier and get no warnings; add them to the customer master";
    let text = stdout(&p.run_ok(&["accounts", "--as-of", "2026-06-30"]));
    assert!(text.contains(&format!("warning: {warning}")), "{text}");
    let json = stdout(&p.run_ok(&["accounts", "--as-of", "2026-06-30", "--format", "json"]));
    let unl: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("unlisted_accounts").is_some())
        .collect();
    assert_eq!(unl.len(), 1, "{json}");
    assert_eq!(unl[0]["unlisted_accounts"], 2);
    assert_eq!(unl[0]["examples"], serde_json::json!(["KH9", "KH8"]));
    assert_eq!(unl[0]["revenue_12m"], 1_200_000.0);

    // `status` says so too (the daemon is not running here: exit 1).
    let o = p.run(&["status"]);
    assert!(
        stdout(&o).contains("accounts missing from the customer master: 2 (\"KH8\", \"KH9\") have order lines, kept but not ranked into tiers and never warned about; add them to the customer master"),
        "{}",
        show(&o)
    );
    let o = p.run(&["status", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["unlisted_accounts"], 2, "{v}");
    assert_eq!(v["unlisted_examples"], serde_json::json!(["KH8", "KH9"]));

    // Before KH8's first order, only KH9 is seen.
    let text = stdout(&p.run_ok(&["accounts", "--as-of", "2026-04-30"]));
    assert!(
        text.contains(
            "order lines name 1 account(s) missing from the customer master (\"KH9\"), with 1000000.00"
        ),
        "{text}"
    );

    // The evaluation warns in its log, and its warnings are the master's
    // accounts' only.
    let o = p.run_ok(&[
        "eval",
        "--dry-run",
        "--as-of",
        "2026-06-30",
        "--format",
        "json",
    ]);
    assert!(stderr(&o).contains(warning), "{}", show(&o));
    assert!(!stdout(&o).contains("\"KH9\""), "{}", show(&o));

    // Once the master lists them, they are ranked like any account.
    let master = write(
        &p,
        "客户主数据_2.csv",
        &format!(
            "{MASTER}KH9,新客户,华东,张伟,zhang.wei@example.com,chen.jing@example.com\nKH8,另一个,华东,张伟,zhang.wei@example.com,chen.jing@example.com\n"
        ),
    );
    ingest(&p, &[master]);
    let listed = rows(&p);
    assert_eq!(listed.len(), 6);
    assert_eq!(listed[0]["id"], "KH9");
    assert_eq!(listed[0]["tier"], "A");
    let text = stdout(&p.run_ok(&["accounts", "--as-of", "2026-06-30"]));
    assert!(!text.contains("missing from the customer master"), "{text}");
    let o = p.run(&["status"]);
    assert!(
        !stdout(&o).contains("missing from the customer master"),
        "{}",
        show(&o)
    );
}

/// An account the master switched off is not ranked either: the shares
/// are of the accounts still active, and add up to 100%.
#[test]
fn an_account_switched_off_leaves_the_shares() {
    let p = book();
    let master: String = MASTER
        .lines()
        .filter(|l| !l.starts_with("H,"))
        .map(|l| format!("{l}\n"))
        .collect();
    let master = write(&p, "客户主数据_2.csv", &master);
    ingest(&p, &[master]);
    let rows = rows(&p);
    let mut share = column(&rows, "share_pct");
    share.sort();
    assert_eq!(share, ids(&[("G", "16.67"), ("T", "83.33"), ("Z", "0.0")]));
    let mut gp = column(&rows, "gross_profit_share_pct");
    gp.sort();
    // Gross profit 9,500: G 8,000, T 1,500.
    assert_eq!(gp, ids(&[("G", "84.21"), ("T", "15.79"), ("Z", "0.0")]));
    let last = rows.last().unwrap();
    assert_eq!(last["cumulative_pct"], 100.0, "{rows:?}");
    // Switched off, not missing: no warning about the master.
    let text = stdout(&p.run_ok(&["accounts", "--as-of", "2026-06-30"]));
    assert!(!text.contains("missing from the customer master"), "{text}");
}

/// An id from an order file is quoted the way every message quotes a
/// cell: escaped and bounded, so a long or odd id cannot flood the log,
/// `accounts` or `status` (ingest refuses control characters in ids
/// already).
#[test]
fn unlisted_ids_are_quoted_bounded_and_escaped() {
    let p = book();
    let id = format!("A\"B{}", "y".repeat(300));
    let orders = format!(
        "订单编号,行号,客户编号,客户名称,订单日期,产品编号,产品名称,数量,单价,金额,成本\n\
         SO7,1,\"{}\",怪,2026-04-01,SP-1,纸巾,1,10,10,5\n",
        id.replace('"', "\"\"")
    );
    let f = write(&p, "销售明细_怪.csv", &orders);
    ingest(&p, &[f]);
    let quoted = format!("(\"A\\\"B{}…\" (303 bytes))", "y".repeat(77));
    let outputs = [
        stdout(&p.run_ok(&["accounts", "--as-of", "2026-06-30"])),
        stdout(&p.run(&["status"])),
        stderr(&p.run_ok(&["eval", "--dry-run", "--as-of", "2026-06-30"])),
    ];
    for out in outputs {
        assert!(out.contains(&quoted), "{quoted}\n{out}");
        assert!(!out.contains(&"y".repeat(78)), "{out}");
    }
}

/// An account that returned more than it sold (Z: -25,000 of revenue,
/// -5,000 of gross profit) is C and not in the totals: the others rank,
/// share and add up exactly as without it (cumulative 80, 96, 100), never
/// past 100%, under every basis.
#[test]
fn a_net_negative_account_leaves_the_totals() {
    let p = book();
    let returns = write(
        &p,
        "销售明细_退货.csv",
        "订单编号,行号,客户编号,客户名称,订单日期,产品编号,产品名称,数量,单价,金额,成本\n\
         RT1,1,Z,无订单,2026-04-01,SP-1,纸巾,-1,25000,-25000,-20000\n",
    );
    ingest(&p, &[returns]);
    let mut current = "revenue";
    for by in ["revenue", "gross_profit", "both"] {
        p.edit_config(&format!("  by: {current}\n"), &format!("  by: {by}\n"));
        current = by;
        let rows = rows(&p);
        let last = rows.last().unwrap();
        assert_eq!(
            (&last["id"], &last["tier"]),
            (&"Z".into(), &"C".into()),
            "{by}"
        );
        let mut share = column(&rows, "share_pct");
        share.sort();
        assert_eq!(
            share,
            ids(&[("G", "16.0"), ("H", "4.0"), ("T", "80.0"), ("Z", "-20.0")]),
            "{by}"
        );
        let mut gp = column(&rows, "gross_profit_share_pct");
        gp.sort();
        assert_eq!(
            gp,
            ids(&[("G", "80.0"), ("H", "5.0"), ("T", "15.0"), ("Z", "0.0")]),
            "{by}"
        );
        for r in &rows {
            let cum = r["cumulative_pct"].as_f64().unwrap();
            assert!((0.0..=100.0).contains(&cum), "{by}: {rows:?}");
        }
        assert_eq!(last["cumulative_pct"], 100.0, "{by}: {rows:?}");
    }
    let rows = rows(&p);
    let tiers: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["tier"].as_str().unwrap()))
        .collect();
    assert_eq!(tiers, [("T", "B"), ("G", "B"), ("H", "C"), ("Z", "C")]);
}

/// The cumulative column is the basis's, the one the tier lines are on:
/// under `gross_profit` it is the cumulative share of gross profit (G 80,
/// T 95: T is B, past the line), not of revenue in gross-profit order;
/// under `both` the text shows the two shares the tier is the lower of.
/// Its header says which.
#[test]
fn the_cumulative_column_follows_the_basis() {
    let p = book();
    let mut current = "revenue";
    for (by, cum, header) in [
        (
            "revenue",
            [("T", 80.0), ("G", 96.0), ("H", 100.0), ("Z", 100.0)],
            "cum rev%  ",
        ),
        (
            "gross_profit",
            [("G", 80.0), ("T", 95.0), ("H", 100.0), ("Z", 100.0)],
            " cum GP%  ",
        ),
        (
            "both",
            [("T", 95.0), ("G", 96.0), ("H", 100.0), ("Z", 100.0)],
            "cum rev%  cum GP%  ",
        ),
    ] {
        p.edit_config(&format!("  by: {current}\n"), &format!("  by: {by}\n"));
        current = by;
        let rows = rows(&p);
        let got: Vec<(&str, f64)> = rows
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap(),
                    r["cumulative_pct"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, cum, "{by}");
        // Both single-measure cumulative shares, whatever the basis.
        let mut rev = column(&rows, "cumulative_revenue_pct");
        rev.sort();
        assert_eq!(
            rev,
            ids(&[("G", "96.0"), ("H", "100.0"), ("T", "80.0"), ("Z", "100.0")]),
            "{by}"
        );
        let mut gp = column(&rows, "cumulative_gross_profit_pct");
        gp.sort();
        assert_eq!(
            gp,
            ids(&[("G", "80.0"), ("H", "100.0"), ("T", "95.0"), ("Z", "100.0")]),
            "{by}"
        );
        let text = stdout(&p.run_ok(&["accounts", "--as-of", "2026-06-30"]));
        let head = text.lines().nth(1).unwrap_or_default();
        assert!(head.contains(&format!("share% {header}")), "{by}: {text}");
        // The first row (T or G, 80%) under the header's columns.
        let first = text.lines().nth(2).unwrap_or_default();
        let want = if by == "both" {
            "   80.00    95.00 "
        } else {
            "   80.00 "
        };
        assert!(first.contains(want), "{by}: {text}");
    }
}

/// The portfolio's figures are over the ranked accounts, as the shares
/// are: order lines of ZZ (missing from the master) change neither
/// `portfolio.revenue(365)` nor the gross-profit total, so
/// thin_margin_a's "share of gross profit" (T: 1,000 of 10,000) is the
/// same with them, and a rule reading the book sees the two totals agree.
#[test]
fn portfolio_figures_leave_out_unlisted_accounts() {
    let p = Project::new();
    std::fs::write(
        p.path("rules/pf.rhai"),
        r#"alert(#{ title: "pf", figures: [
            ["revenue_12m", portfolio.revenue_12m],
            ["revenue", portfolio.revenue(365)],
            ["gross_profit", portfolio.gross_profit(365)],
            ["gross_profit_12m", portfolio.gross_profit_12m],
            ["accounts", portfolio.accounts],
        ] });"#,
    )
    .unwrap();
    let case = |name: &str, zz: &str| {
        format!(
            "  - name: {name}
    as_of: 2026-06-30
    rules: [thin_margin_a, pf]
    accounts: [{{ id: G }}, {{ id: H }}, {{ id: T }}]
    orders:
      - {{ account: T, date: 2026-03-01, revenue: 100000, cost: 99000 }}
      - {{ account: G, date: 2026-03-01, revenue: 20000, cost: 12000 }}
      - {{ account: H, date: 2026-03-01, revenue: 5000, cost: 4000 }}
{zz}    expect:
      - {{ rule: thin_margin_a, account: T, severity: warning, figures: {{ 毛利占比: 10, 收入占比: 80 }} }}
      - {{ rule: pf, account: G, figures: {{ revenue_12m: 125000, revenue: 125000, gross_profit: 10000, gross_profit_12m: 10000, accounts: 3 }} }}
      - {{ rule: pf, account: H }}
      - {{ rule: pf, account: T }}
"
        )
    };
    let yaml = format!(
        "tests:\n{}{}",
        case("the master's accounts only", ""),
        case(
            "with ZZ's lines, not in the master",
            "      - { account: ZZ, date: 2026-03-01, revenue: 900000, cost: 10000 }\n"
        )
    );
    std::fs::write(p.path("t.yaml"), yaml).unwrap();
    let o = p.run(&["test", &p.path("t.yaml").to_string_lossy()]);
    assert!(o.status.success(), "{}", show(&o));
}

/// A rule test file's `tiers:` block is checked as the config's is, with
/// the config's words: a value out of range, a typo'd key or a value of
/// the wrong type is an error naming the file, the line and what to write
/// (exit 2), not a test that runs with tiers no config could have.
#[test]
fn a_test_files_tiers_block_is_checked_as_the_configs() {
    let p = Project::new();
    let file = p.path("t.yaml");
    let run = |tiers: &str| {
        let yaml = format!(
            "rules: [tier_movement]\n\n{tiers}\ntests:\n  - name: nothing expected\n    as_of: 2026-06-30\n    accounts: [{{ id: G }}]\n    orders: [{{ account: G, date: 2026-03-01, revenue: 1000, cost: 500 }}]\n    expect: []\n"
        );
        std::fs::write(&file, yaml).unwrap();
        p.run(&["test", &file.to_string_lossy()])
    };
    let range = "need 0 < a_share <= b_share <= 1";
    for (tiers, said) in [
        ("tiers: { a_share: 1.5, b_share: 0.95 }", range),
        ("tiers:\n  a_share: 0.95\n  b_share: 0.8", range),
        ("tiers: { a_share: -1, b_share: 0 }", range),
        ("tiers: { a_share: .nan }", range),
        (
            "tiers: { a_shar: 0.5 }",
            "unknown field `a_shar`, expected one of `a_share`, `b_share`, `by` at line 3 column 10. Fix the spelling or remove the key.",
        ),
        (
            "tiers: { a_share: \"x\" }",
            "tiers.a_share: invalid type: string \"x\", expected f64 at line 3",
        ),
        (
            "tiers: revenue",
            "invalid type: string \"revenue\", expected a block of `key: value` lines at line 3",
        ),
        (
            "tiers: { by: revnue }",
            "use one of revenue, gross_profit or both",
        ),
    ] {
        let o = run(tiers);
        assert_exit(&o, 2);
        let err = stderr(&o);
        assert!(err.contains("t.yaml: tiers"), "{tiers}: {}", show(&o));
        assert!(err.contains(said), "{tiers}: {}", show(&o));
        assert!(err.contains("at line 3"), "{tiers}: {}", show(&o));
    }
    // A block in range runs.
    let o = run("tiers: { a_share: 0.5, b_share: 0.9, by: both }");
    assert!(o.status.success(), "{}", show(&o));
    // The config says the same of the same values.
    p.edit_config("  a_share: 0.80\n", "  a_share: 1.5\n");
    assert!(stderr(&p.run(&["check"])).contains(range));
    // A section given one word instead of its keys names no Rust type.
    p.edit_config(
        "tiers:\n  a_share: 1.5\n  b_share: 0.95\n  by: revenue\n",
        "tiers: revenue\n",
    );
    let err = stderr(&p.run(&["check"]));
    assert!(
        err.contains("expected a block of `key: value` lines"),
        "{err}"
    );
    assert!(!err.contains("struct"), "{err}");
}
