use mail_parser::MimeHeaders;

use crate::support::*;

/// `kamwatch accounts` ranks the book into tiers by cumulative share and
/// lists tier moves; JSON is one object per line.
#[test]
fn accounts_table_ranks_and_tiers() {
    let p = Project::new();
    p.with_generated_history(50, 5);

    let o = p.run(&["accounts", "--as-of", "2026-11-28", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rows: Vec<&serde_json::Value> = lines.iter().filter(|v| v.get("rank").is_some()).collect();
    assert_eq!(rows.len(), 50);

    // The tiers computed from the generated order rows themselves, not from
    // anything kamwatch printed: revenue of the 365 days to 2026-11-28 per
    // account, ranked, and the cumulative share before each account decides
    // (the account that crosses 80% is still A; B up to 95%).
    let end = chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
    let mut revenue: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    for f in p.files_under("staging") {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("客户主数据") {
            let mut r = csv::Reader::from_path(&f).unwrap();
            for rec in r.records() {
                revenue.entry(rec.unwrap()[0].to_string()).or_insert(0.0);
            }
        }
        if !name.starts_with("销售明细") {
            continue;
        }
        let mut r = csv::Reader::from_path(&f).unwrap();
        let h = r.headers().unwrap().clone();
        let col = |n: &str| h.iter().position(|x| x == n).unwrap();
        let (acc, date, amount) = (col("客户编号"), col("订单日期"), col("金额"));
        for rec in r.records() {
            let rec = rec.unwrap();
            let d = chrono::NaiveDate::parse_from_str(&rec[date], "%Y-%m-%d").unwrap();
            if d <= end && (end - d).num_days() < 365 {
                *revenue.entry(rec[acc].to_string()).or_insert(0.0) +=
                    rec[amount].parse::<f64>().unwrap();
            }
        }
    }
    assert_eq!(revenue.len(), 50);
    let total: f64 = revenue.values().sum();
    let mut ranked: Vec<(&String, &f64)> = revenue.iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(a.1));
    let mut expected: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    let mut cumulative = 0.0;
    for (id, r) in ranked {
        let share_before = cumulative / total;
        expected.insert(
            id,
            if share_before < 0.80 - 1e-9 {
                "A"
            } else if share_before < 0.95 - 1e-9 {
                "B"
            } else {
                "C"
            },
        );
        cumulative += r;
    }
    for r in &rows {
        let id = r["id"].as_str().or(r["account_id"].as_str()).unwrap();
        assert_eq!(
            r["tier"].as_str(),
            Some(expected[id]),
            "{id}: kamwatch says {} from its revenue {}, the rows say {}",
            r["tier"],
            r["revenue_12m"],
            revenue[id]
        );
    }
    assert!(expected.values().any(|t| *t == "A") && expected.values().any(|t| *t == "C"));
    let mut before = 0.0;
    let mut last_revenue = f64::MAX;
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["rank"], i + 1);
        // Raw numbers, and their kinds beside them.
        assert_eq!(r["units"]["revenue_12m"], "money", "{r}");
        assert_eq!(r["units"]["share_pct"], "percent", "{r}");
        assert_eq!(r["units"]["gross_profit_share_pct"], "percent", "{r}");
        assert!(
            ["A", "B", "C"].contains(&r["gross_profit_tier"].as_str().unwrap_or("")),
            "{r}"
        );
        assert_eq!(r["units"]["days_since_last_visit"], "days", "{r}");
        let revenue = r["revenue_12m"].as_f64().unwrap();
        assert!(revenue <= last_revenue, "sorted by revenue");
        last_revenue = revenue;
        // The account that crosses 80% is still A; after it, B up to 95%.
        let want = if before < 80.0 - 1e-6 {
            "A"
        } else if before < 95.0 - 1e-6 {
            "B"
        } else {
            "C"
        };
        assert_eq!(r["tier"], want, "rank {} at cumulative {before}", i + 1);
        before = r["cumulative_pct"].as_f64().unwrap();
    }
    assert!(
        (before - 100.0).abs() < 0.05,
        "shares add up to 100%, got {before}"
    );
    for m in lines.iter().filter(|v| v.get("migration_since").is_some()) {
        assert_ne!(m["from"], m["to"]);
    }

    let o = p.run(&["accounts", "--as-of", "2026-11-28", "--tier", "A"]);
    let text = stdout(&o);
    // The basis, the column header, then the rows.
    assert!(
        text.starts_with("tiers by revenue (tiers.by: revenue)"),
        "{text}"
    );
    assert!(
        text.lines()
            .skip(2)
            .take_while(|l| !l.is_empty())
            .all(|l| l.contains(" A ")),
        "{text}"
    );
    assert!(text.contains("tier moves since last month"));
}

/// `kamwatch backtest` replays the lifecycle over history, records and
/// sends nothing, and its counts add up; a low limit flags floods.
#[test]
fn backtest_counts_add_up_and_touch_nothing() {
    let p = Project::new();
    p.with_generated_history(40, 9);

    let o = p.run(&[
        "backtest",
        "--from",
        "2026-09-01",
        "--to",
        "2026-11-28",
        "--every",
        "week",
        "--max-per-owner-week",
        "0",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rules: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let shipped = p
        .files_under("rules")
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rhai"))
        .count();
    assert_eq!(rules.len(), shipped, "{}", stdout(&o));
    let mut started = 0;
    for r in &rules {
        assert_eq!(r["evaluations"], 13);
        let notices = r["notices"].as_u64().unwrap();
        let sum = |k: &str| -> u64 {
            r[k].as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap())
                .sum()
        };
        assert_eq!(sum("per_week"), notices, "{r}");
        assert_eq!(sum("per_owner"), notices, "{r}");
        assert!(r["started"].as_u64().unwrap() <= notices);
        // With a limit of 0, every owner-week with a notice is a flood.
        assert_eq!(
            r["floods"].as_array().unwrap().is_empty(),
            notices == 0,
            "{r}"
        );
        started += r["started"].as_u64().unwrap();
    }
    assert!(started > 0, "nothing would have fired: {}", stdout(&o));

    // Nothing recorded, nothing sent.
    let db = p.db();
    let n = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(n("SELECT COUNT(*) FROM alerts"), 0);
    assert_eq!(n("SELECT COUNT(*) FROM outbox"), 0);
    assert!(p.nothing_under("var/mail"));

    // One rule only; an unknown rule is a usage error naming the rules.
    let o = p.run(&[
        "backtest",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-28",
        "--rule",
        "margin_slip",
        "--format",
        "json",
    ]);
    assert_eq!(stdout(&o).lines().count(), 1);
    let o = p.run(&[
        "backtest",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-28",
        "--rule",
        "nope",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("declining_orders"), "{}", stderr(&o));
}

/// `kamwatch review` writes one review per manager: the sections of the
/// periodic key-account review and the Pareto chart it references.
#[test]
fn review_per_manager() {
    let p = Project::new();
    p.with_generated_history(60, 4);
    let out = p.path("review");
    let o = p.run_ok(&[
        "review",
        "--as-of",
        "2026-11-28",
        "--out",
        out.to_str().unwrap(),
    ]);
    let managers = stdout(&o).lines().count();
    assert!(managers >= 2, "{}", stdout(&o));
    let files = p.files_under("review");
    assert_eq!(files.len(), managers * 3, "{files:?}");
    let text_files: Vec<_> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "txt"))
        .collect();
    let mut unvisited = 0;
    for f in &text_files {
        let text = std::fs::read_to_string(f).unwrap();
        for section in [
            "分级变动",
            "收入降幅最大",
            "毛利率下滑最大",
            "未按周期拜访的重点客户",
        ] {
            assert!(
                text.contains(section),
                "{section} missing in {}",
                f.display()
            );
        }
        unvisited += text.lines().filter(|l| l.contains("天未拜访")).count();
        // Opened from disk, the HTML shows the chart written beside it.
        let html = std::fs::read_to_string(f.with_extension("html")).unwrap();
        assert!(
            !html.contains("cid:"),
            "a cid: image is broken outside mail"
        );
        let png_name = f.with_extension("png");
        let png_name = png_name.file_name().unwrap().to_str().unwrap();
        assert!(html.contains(&format!("<img src=\"{png_name}\"")), "{html}");
        let png = std::fs::read(f.with_extension("png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        for h in ["<th", "客户编号", "客户名称", "负责人"] {
            assert!(html.contains(h), "{h} missing in {html}");
        }
        // Greeted by the manager's name from the master, not the address.
        let first = text.lines().next().unwrap();
        assert!(
            first.contains(" 团队的 ") && !first.contains('@'),
            "{first}"
        );
    }
    // The generator plants lapsed visits among the largest accounts.
    assert!(unvisited > 0, "no unvisited key account reported");

    // --send mails each manager once, the chart inline; again: nothing new.
    let o = p.run_ok(&["review", "--as-of", "2026-11-28", "--send"]);
    assert!(
        stdout(&o).starts_with(&format!("{managers} review(s) queued")),
        "{}",
        stdout(&o)
    );
    let mails = p.files_under("var/mail");
    assert_eq!(mails.len(), managers);
    for m in &mails {
        let bytes = std::fs::read(m).unwrap();
        let msg = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        let to = msg.to().unwrap().first().unwrap();
        assert!(to.name().is_some_and(|n| !n.contains('@')), "{to:?}");
        assert!(
            msg.subject()
                .unwrap_or_default()
                .contains("重点客户月度回顾")
        );
        let html = msg.body_html(0).unwrap();
        assert!(html.contains("cid:pareto"));
        assert!(
            msg.attachments().any(|a| a.content_id() == Some("pareto")),
            "no inline chart"
        );
    }
    let o = p.run_ok(&["review", "--as-of", "2026-11-28", "--send"]);
    assert!(
        stdout(&o).starts_with("0 review(s) queued"),
        "{}",
        stdout(&o)
    );
    assert_eq!(p.files_under("var/mail").len(), managers);
}

/// With `mail.locale: en` the review's files are in English, headers and
/// chart included, and every piece of data in the HTML is escaped.
#[test]
fn review_in_english_with_escaped_data() {
    let p = Project::new();
    p.edit_config("  locale: zh-CN\n", "  locale: en\n");
    p.with_generated_history(60, 4);
    let evil = "<script>x</script>";
    p.db()
        .execute(
            "UPDATE accounts SET name = ?1, owner = ?1, manager = ?1",
            [evil],
        )
        .unwrap();
    let out = p.path("review");
    p.run_ok(&[
        "review",
        "--as-of",
        "2026-11-28",
        "--out",
        out.to_str().unwrap(),
    ]);
    let htmls: Vec<_> = p
        .files_under("review")
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "html"))
        .collect();
    assert!(!htmls.is_empty());
    for f in &htmls {
        let html = std::fs::read_to_string(f).unwrap();
        assert!(html.contains("<html lang=\"en\">"), "{html}");
        for h in [
            "<th align=\"left\" style=\"background:#f0f0f0\">Account</th>",
            "Largest revenue declines",
            "Key-account review",
        ] {
            assert!(html.contains(h), "{h} missing in {html}");
        }
        assert!(
            !html.contains(evil) && html.contains("&lt;script&gt;"),
            "{html}"
        );
        assert!(
            !html.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
            "Chinese in the English review: {html}"
        );
        let png = f.with_extension("png");
        assert!(png.exists(), "{}", png.display());
    }
}

/// The review's cadence and windows are the rules' own: an analyst's edit
/// to lapsed_visits.rhai or declining_orders.rhai reaches the review (text
/// and HTML), which names the rule file; without the rule the shipped
/// values are used and the review says why; a constant the review cannot
/// read (computed at run time) is a `check` warning naming the file and
/// line, and the review uses the shipped value and says so.
#[test]
fn review_follows_the_rules_declared_cadence_and_windows() {
    let p = Project::new();
    p.with_generated_history(60, 4);
    let review = |p: &Project| {
        let out = p.path("review");
        let _ = std::fs::remove_dir_all(&out);
        p.run_ok(&[
            "review",
            "--as-of",
            "2026-11-28",
            "--out",
            out.to_str().unwrap(),
        ]);
        let mut text = String::new();
        let mut html = String::new();
        for f in p.files_under("review") {
            match f.extension().and_then(|e| e.to_str()) {
                Some("txt") => text += &std::fs::read_to_string(&f).unwrap(),
                Some("html") => html += &std::fs::read_to_string(&f).unwrap(),
                _ => {}
            }
        }
        (text, html)
    };
    let lapsed = |text: &str, cadence: &str| {
        text.lines()
            .filter(|l| l.contains("天未拜访") && l.contains(cadence))
            .count()
    };
    let (text, html) = review(&p);
    assert!(lapsed(&text, "（周期 14 天）") > 0, "{text}");
    assert_eq!(lapsed(&text, "（周期 7 天）"), 0);
    assert!(text.contains("近90天 "), "{text}");
    let shipped = "取自规则：拜访周期 A 类 14 天、B 类 30 天（lapsed_visits.rhai）；收入比较近 90 天与之前 90 天（declining_orders.rhai）；毛利率比较近 90 天与之前 270 天（margin_slip.rhai）。";
    assert!(text.contains(shipped), "{text}");
    assert!(html.contains(shipped), "the HTML names its sources too");

    let edit = |rule: &str, from: &str, to: &str| {
        let f = p.path(&format!("rules/{rule}.rhai"));
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.contains(from), "{rule} declares {from}");
        std::fs::write(&f, text.replace(from, to)).unwrap();
    };
    edit(
        "lapsed_visits",
        "const CADENCE_A = 14;",
        "const CADENCE_A = 7;",
    );
    edit("declining_orders", "const DAYS = 90;", "const DAYS = 60;");
    let (text, html) = review(&p);
    assert!(lapsed(&text, "（周期 7 天）") > 0, "{text}");
    assert_eq!(lapsed(&text, "（周期 14 天）"), 0, "{text}");
    assert!(
        text.contains("近60天 ") && !text.contains("近90天 "),
        "{text}"
    );
    let edited = "拜访周期 A 类 7 天、B 类 30 天（lapsed_visits.rhai）；收入比较近 60 天与之前 60 天（declining_orders.rhai）";
    assert!(text.contains(edited) && html.contains(edited), "{text}");

    // A cadence computed when the rule runs cannot be read: check says
    // where and what to write; the review uses the shipped value.
    edit(
        "lapsed_visits",
        "const CADENCE_A = 7;",
        "const CADENCE_A = account.rank;",
    );
    let o = p.run_ok(&["check"]);
    let out = stdout(&o);
    let line = std::fs::read_to_string(p.path("rules/lapsed_visits.rhai"))
        .unwrap()
        .lines()
        .position(|l| l.starts_with("const CADENCE_A"))
        .unwrap()
        + 1;
    assert!(
        out.contains(&format!(
            "warning: lapsed_visits.rhai:{line}: CADENCE_A is not a literal number"
        )) && out.contains("`const CADENCE_A = 14;`"),
        "{out}"
    );
    let (text, _) = review(&p);
    assert!(lapsed(&text, "（周期 14 天）") > 0, "{text}");
    assert!(
        text.contains(&format!(
            "拜访周期 A 类 14 天、B 类 30 天（内置默认 CADENCE_A 14：lapsed_visits.rhai 第 {line} 行的 CADENCE_A 不是天数；lapsed_visits.rhai）"
        )),
        "{text}"
    );

    // Without the rule: the shipped values, and why.
    std::fs::remove_file(p.path("rules/lapsed_visits.rhai")).unwrap();
    let (text, _) = review(&p);
    assert!(lapsed(&text, "（周期 14 天）") > 0, "{text}");
    assert!(
        text.contains("（内置默认 CADENCE_A 14：未加载规则 lapsed_visits；内置默认 CADENCE_B 30：未加载规则 lapsed_visits）"),
        "{text}"
    );
}

/// A book without any visit (the visits export not set up yet) says
/// nothing about visits: the review's "not visited" section says why it
/// is empty instead of calling every key account never visited.
#[test]
fn review_without_visit_data_calls_no_account_never_visited() {
    let p = Project::new();
    p.with_generated_history(40, 5);
    p.db().execute("DELETE FROM visits", []).unwrap();
    let out = p.path("review");
    p.run_ok(&[
        "review",
        "--as-of",
        "2026-11-28",
        "--out",
        out.to_str().unwrap(),
    ]);
    let texts: Vec<String> = p
        .files_under("review")
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "txt"))
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(!texts.is_empty());
    for text in &texts {
        assert!(!text.contains("从未拜访"), "{text}");
        assert!(
            text.contains(
                "== 未按周期拜访的重点客户 (0) ==\n  （全部客户都没有拜访记录：拜访数据尚未导入）"
            ),
            "{text}"
        );
        // The other sections are there as before.
        assert!(text.contains("== 收入降幅最大 ("), "{text}");
    }
}
