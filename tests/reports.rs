use crate::support::*;

/// `kamwatch accounts` ranks the book into tiers by cumulative share and
/// lists tier moves; JSON is one object per line.
#[test]
fn accounts_table_ranks_and_tiers() {
    let p = Project::new();
    let o = p.run(&[
        "generate",
        "--out",
        p.path("inbox").to_str().unwrap(),
        "--accounts",
        "50",
        "--end",
        "2026-11-28",
        "--seed",
        "5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let files: Vec<String> = p
        .files_under("inbox")
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    let mut args = vec!["ingest"];
    args.extend(files.iter().map(String::as_str));
    assert!(p.run(&args).status.success());

    let o = p.run(&["accounts", "--as-of", "2026-11-28", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rows: Vec<&serde_json::Value> = lines.iter().filter(|v| v.get("rank").is_some()).collect();
    assert_eq!(rows.len(), 50);
    let mut before = 0.0;
    let mut last_revenue = f64::MAX;
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["rank"], i + 1);
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
    assert!(
        text.lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .all(|l| l.contains(" A ")),
        "{text}"
    );
    assert!(text.contains("tier moves since last month"));
}
