//! The chart of an alert: the one that shows its rule's evidence, with its
//! caption. Pure: reads the metrics it is given.

use anyhow::Result;
use chrono::NaiveDate;

use super::monthly::monthly_chart;
use super::png::Chart;
use super::receivables::{aging_chart, credit_chart};
use super::stock::stock_chart;
use super::text::register_font;
use super::visits::visits_chart;
use crate::metrics::AccountMetrics;
use crate::model::dates::day;
use crate::rules::RuleValues;

/// What an item's chart needs to know about its alert.
pub struct Alert<'a> {
    pub rule: &'a str,
    pub as_of: NaiveDate,
    pub started_at: Option<NaiveDate>,
    /// The alert's figures, for the days a rule says are needed.
    pub figures: &'a [(String, serde_json::Value)],
    /// The cadence and windows the rules declare (lapsed_visits,
    /// declining_orders, margin_slip), drawn and named in the captions.
    pub values: &'a RuleValues,
}

/// The chart that fits the alert's rule, over the last `months` months.
pub fn for_alert(a: &AccountMetrics, al: &Alert<'_>, months: usize, en: bool) -> Result<Chart> {
    register_font();
    let end = day(al.as_of);
    match al.rule {
        "lapsed_visits" => visits_chart(a, al.as_of, al.values.cadence_days(a.tier), en),
        "overdue_receivables" => aging_chart(a, end, en),
        "credit_limit" if a.credit_limit.is_some_and(|c| c > 0.0) => credit_chart(a, end, en),
        "credit_limit" => aging_chart(a, end, en),
        "stock_cover" if !a.stock.is_empty() => stock_chart(a, needed_days(al.figures), en),
        rule => monthly_chart(a, rule, (al.as_of, al.started_at), al.values, months, en),
    }
}

/// The days of cover a stock alert says are needed: its figure named
/// "所需…" or "…needed…".
fn needed_days(figures: &[(String, serde_json::Value)]) -> Option<f64> {
    figures
        .iter()
        .find(|(k, _)| k.contains("所需") || k.to_lowercase().contains("needed"))
        .and_then(|(_, v)| v.as_f64())
        .filter(|v| v.is_finite() && *v >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::draw::{BAR, LIMIT, LINE, OPEN};
    use crate::chart::png::{HEIGHT, WIDTH};
    use crate::chart::testing::{account, d, decode, evidence_account, has, inked};

    // Over 80 lines: every shipped rule's chart of one account, compared
    // with each other, then what each must show.
    #[test]
    fn each_shipped_rule_gets_the_chart_of_its_evidence() {
        let as_of = d("2026-11-20");
        let end = day(as_of);
        let a = evidence_account(end);
        let figures = vec![("所需覆盖（天）".to_string(), serde_json::json!(60.0))];
        let chart = |rule: &str, en: bool| {
            for_alert(
                &a,
                &Alert {
                    rule,
                    as_of,
                    started_at: Some(d("2026-10-01")),
                    figures: &figures,
                    values: &RuleValues::shipped(),
                },
                12,
                en,
            )
            .unwrap()
        };
        let rules = [
            "declining_orders",
            "margin_slip",
            "order_gap",
            "lapsed_visits",
            "overdue_receivables",
            "credit_limit",
            "stock_cover",
            "tier_movement",
        ];
        let mut pngs: Vec<Vec<u8>> = Vec::new();
        for rule in rules {
            for en in [false, true] {
                let c = chart(rule, en);
                let (w, h, px) = decode(&c.png);
                assert_eq!((w, h), (WIDTH, HEIGHT), "{rule}");
                assert!(inked(&px) > 100, "{rule}: labels drawn");
                assert!(!c.caption.is_empty(), "{rule}");
                if !en {
                    pngs.push(c.png);
                }
            }
        }
        // The rules with evidence of their own have a picture of their own.
        for (i, rule) in rules.iter().enumerate().skip(3).take(4) {
            for j in 0..rules.len() {
                assert!(
                    i == j || pngs[i] != pngs[j],
                    "{rule} and {} drew the same picture",
                    rules[j]
                );
            }
        }
        let visits = chart("lapsed_visits", false);
        assert!(visits.caption.contains("14 天"), "{}", visits.caption);
        let (_, _, px) = decode(&visits.png);
        assert!(
            has(&px, OPEN) && has(&px, BAR) && has(&px, LINE),
            "gaps, open gap, cadence"
        );
        let (_, _, px) = decode(&chart("overdue_receivables", false).png);
        assert!(
            has(&px, BAR) && has(&px, LINE),
            "not due and overdue buckets"
        );
        let credit = chart("credit_limit", true);
        assert!(credit.caption.contains("111% used"), "{}", credit.caption);
        let (_, _, px) = decode(&credit.png);
        assert!(has(&px, LIMIT), "the limit drawn");
        let stock = chart("stock_cover", true);
        assert!(
            stock.caption.contains("60 days needed") && stock.caption.contains("#2 = 货号2"),
            "{}",
            stock.caption
        );
        let (_, _, px) = decode(&stock.png);
        assert!(
            has(&px, LINE) && has(&px, BAR),
            "short SKU red, the other blue"
        );
        let decl = chart("declining_orders", false);
        assert!(
            decl.caption.contains("近 90 天（2026-08-23 起）"),
            "{}",
            decl.caption
        );
        let other = chart("tier_movement", true);
        assert!(
            other
                .caption
                .contains("since the alert started (2026-10-01)"),
            "{}",
            other.caption
        );
    }

    #[test]
    fn a_never_visited_account_still_gets_its_cadence() {
        let a = account();
        let c = for_alert(
            &a,
            &Alert {
                rule: "lapsed_visits",
                as_of: d("2026-11-20"),
                started_at: None,
                figures: &[],
                values: &RuleValues::shipped(),
            },
            12,
            false,
        )
        .unwrap();
        assert!(c.caption.contains("没有拜访记录"), "{}", c.caption);
    }

    /// An analyst's edit to a shipped rule's constants reaches the charts:
    /// lapsed_visits' cadence is the dashed line and the caption's, and
    /// declining_orders' and margin_slip's windows are shaded and named.
    #[test]
    fn the_charts_follow_the_rules_declared_cadence_and_windows() {
        let dir = tempfile::tempdir().unwrap();
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        for (rule, from, to) in [
            (
                "lapsed_visits",
                "const CADENCE_A = 14;",
                "const CADENCE_A = 7;",
            ),
            ("declining_orders", "const DAYS = 90;", "const DAYS = 60;"),
            (
                "margin_slip",
                "const BASELINE_DAYS = 270;",
                "const BASELINE_DAYS = 180;",
            ),
        ] {
            let text = std::fs::read_to_string(shipped.join(format!("{rule}.rhai"))).unwrap();
            assert!(text.contains(from), "{rule} declares {from}");
            std::fs::write(
                dir.path().join(format!("{rule}.rhai")),
                text.replace(from, to),
            )
            .unwrap();
        }
        let (set, errors) = crate::rules::RuleSet::load_dir(dir.path()).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        let values = RuleValues::of(&set);
        let as_of = d("2026-11-20");
        let a = evidence_account(day(as_of));
        let caption = |rule: &str, values: &RuleValues, en: bool| {
            let al = Alert {
                rule,
                as_of,
                started_at: None,
                figures: &[],
                values,
            };
            for_alert(&a, &al, 12, en).unwrap().caption
        };
        let shipped = RuleValues::shipped();
        assert!(caption("lapsed_visits", &values, false).contains("拜访周期 7 天"));
        assert!(caption("lapsed_visits", &shipped, false).contains("拜访周期 14 天"));
        let decl = caption("declining_orders", &values, true);
        assert!(
            decl.contains("the last 60 days (from 2026-09-22)")
                && decl.contains("with the 60 days before"),
            "{decl}"
        );
        let slip = caption("margin_slip", &values, false);
        assert!(
            slip.contains("近 90 天") && slip.contains("其前 180 天"),
            "{slip}"
        );
        // The pictures differ too: the cadence line moved.
        let png = |values: &RuleValues| {
            let al = Alert {
                rule: "lapsed_visits",
                as_of,
                started_at: None,
                figures: &[],
                values,
            };
            for_alert(&a, &al, 12, false).unwrap().png
        };
        assert_ne!(png(&values), png(&shipped));
    }
}
