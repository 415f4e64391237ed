//! The bad-input corpus beyond export files (those are in tests/ingest.rs):
//! rules that must not load or run, and configs that must be refused, each
//! with the message fragment it must produce.

use crate::support::*;

fn table(path: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(fixture(path))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').map(|f| f.replace("\\n", "\n")).collect())
        .collect()
}

#[test]
fn every_bad_rule_is_reported_with_where() {
    let cases = table("bad-rules/expected.tsv");
    assert!(cases.len() >= 8);
    // Every file in the folder is in the table.
    for e in std::fs::read_dir(fixture("bad-rules")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name == "expected.tsv" || cases.iter().any(|c| c[0] == name),
            "bad-rules/{name} has no line in expected.tsv"
        );
    }
    let p = Project::new();
    let fixtures = [
        "客户主数据.csv",
        "销售明细_202609-10.csv",
        "拜访记录_202609-10.csv",
    ]
    .map(|f| fixture(f).to_string_lossy().into_owned());
    let mut args = vec!["ingest"];
    args.extend(fixtures.iter().map(String::as_str));
    p.run_ok(&args);
    for c in &cases {
        let (file, command, fragment) = (&c[0], c[1].as_str(), &c[2]);
        for e in std::fs::read_dir(p.path("rules")).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        std::fs::copy(
            fixture(&format!("bad-rules/{file}")),
            p.path("rules").join(file),
        )
        .unwrap();
        let o = match command {
            "check" => p.run(&["check"]),
            _ => p.run(&["eval", "--as-of", "2026-10-31", "--dry-run"]),
        };
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert_eq!(o.status.code(), Some(1), "{file}: {}", show(&o));
        assert!(
            all.contains(fragment.as_str()),
            "{file}: no {fragment:?} in\n{all}"
        );
        if command == "eval" {
            // A run-time failure is reported once, with the rule, how many
            // accounts it failed for (all 20 here) and an example account.
            let stem = file.trim_end_matches(".rhai");
            let said = format!("rule {stem} failed for 20 accounts, e.g. KH");
            assert_eq!(all.matches(&said).count(), 1, "{file}: {all}");
        }
    }
}

#[test]
fn every_bad_config_is_refused_with_its_reason() {
    let cases = table("bad-config/cases.tsv");
    assert!(cases.len() >= 6);
    for c in &cases {
        let (from, to, fragment) = (&c[0], &c[1], &c[2]);
        let p = Project::new();
        let cfg = std::fs::read_to_string(p.config()).unwrap();
        assert!(
            cfg.contains(from.as_str()),
            "the shipped config has no {from:?}"
        );
        std::fs::write(p.config(), cfg.replacen(from.as_str(), to, 1)).unwrap();
        let o = p.run(&["check"]);
        assert_eq!(o.status.code(), Some(2), "{to:?}: {}", show(&o));
        assert!(
            stderr(&o).contains(fragment.as_str()),
            "{to:?}: no {fragment:?} in {}",
            stderr(&o)
        );
    }
}
