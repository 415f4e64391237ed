//! Review: the periodic key-account review each manager gets — the Pareto
//! curve of the book as a chart, tier moves since last month, the largest
//! revenue declines and margin slips among the manager's accounts, and key
//! accounts not visited within their tier's cadence. Built from `metrics`
//! and `accounts`; renders text, HTML (escaped) and a PNG; reads the store
//! and writes nothing (queuing is the caller's).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use chrono::NaiveDate;
use rusqlite::Connection;

use crate::config::TierConfig;
use crate::mail::{escape_html, show};
use crate::metrics::{self, Measure};

/// Days between visits a tier expects (as in rules/lapsed_visits.rhai).
const CADENCE: [(&str, i64); 2] = [("A", 14), ("B", 30)];
/// Lines per section.
const TOP: usize = 10;

/// One manager's review, rendered.
#[derive(Debug, Clone)]
pub struct Review {
    pub manager: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The Pareto curve of the whole book, PNG; referenced as `cid:pareto`.
    pub chart: Vec<u8>,
}

struct Line {
    id: String,
    name: String,
    owner: String,
    tier: &'static str,
    detail: String,
}

/// Builds one review per manager (the master's manager email) as of a date.
pub fn build(conn: &Connection, as_of: NaiveDate, tiers: &TierConfig) -> Result<Vec<Review>> {
    let snap = metrics::build(conn, as_of, tiers)?;
    let book = crate::accounts::book(conn, as_of, tiers)?;
    let end = snap.end();
    let shares: Vec<f64> = snap.accounts.iter().map(|a| a.share).collect();
    let chart = crate::chart::pareto_png(&shares, tiers.a_share, tiers.b_share, false)?;
    let moved: BTreeMap<&str, (&str, &str)> = book
        .since_month
        .iter()
        .map(|m| (m.id.as_str(), (m.from, m.to)))
        .collect();

    let mut managers: BTreeMap<String, Vec<&std::sync::Arc<metrics::AccountMetrics>>> =
        BTreeMap::new();
    for a in &snap.accounts {
        if let Some(m) = a.manager_email.as_deref().filter(|m| !m.is_empty()) {
            managers.entry(m.to_string()).or_default().push(a);
        }
    }
    let p = &snap.portfolio;
    let mut out = Vec::new();
    for (manager, accounts) in managers {
        let line = |a: &metrics::AccountMetrics, detail: String| Line {
            id: a.id.clone(),
            name: a.name.clone(),
            owner: a.owner.clone(),
            tier: a.tier,
            detail,
        };
        let mut declines: Vec<(f64, Line)> = Vec::new();
        let mut slips: Vec<(f64, Line)> = Vec::new();
        let mut unvisited: Vec<(i64, Line)> = Vec::new();
        let mut moves: Vec<Line> = Vec::new();
        for a in &accounts {
            if a.tier == "C" {
                continue;
            }
            let now = a.window(Measure::Revenue, end, 90, 0);
            let prev = a.window(Measure::Revenue, end, 90, 90);
            if prev > 0.0 && now < prev {
                let drop = now - prev;
                declines.push((
                    drop,
                    line(
                        a,
                        format!(
                            "近90天 {} ← 上期 {}（{:+.0}%）",
                            show(&serde_json::json!(now)),
                            show(&serde_json::json!(prev)),
                            crate::rules::pct_change(now, prev)
                        ),
                    ),
                ));
            }
            if now > 0.0 && a.window(Measure::Revenue, end, 270, 90) > 0.0 {
                let gm = a.margin_pct(end, 90, 0);
                let base = a.margin_pct(end, 270, 90);
                if base - gm > 0.5 {
                    slips.push((
                        gm - base,
                        line(
                            a,
                            format!("毛利率 {gm:.1}% ← 基线 {base:.1}%（{:+.1} 点）", gm - base),
                        ),
                    ));
                }
            }
            if let Some((_, cadence)) = CADENCE.iter().find(|(t, _)| *t == a.tier) {
                let since = a.days_since_last_visit(end, None);
                if since.is_none_or(|d| d > *cadence) {
                    let text = since.map_or("从未拜访".to_string(), |d| {
                        format!("{d} 天未拜访（周期 {cadence} 天）")
                    });
                    unvisited.push((since.unwrap_or(i64::MAX), line(a, text)));
                }
            }
        }
        for a in &accounts {
            if let Some((from, to)) = moved.get(a.id.as_str()) {
                moves.push(line(a, format!("{from} → {to}")));
            }
        }
        declines.sort_by(|a, b| a.0.total_cmp(&b.0));
        slips.sort_by(|a, b| a.0.total_cmp(&b.0));
        unvisited.sort_by_key(|x| std::cmp::Reverse(x.0));
        let sections: Vec<(&str, Vec<Line>)> = vec![
            ("分级变动（较上月）", moves),
            (
                "收入降幅最大",
                declines.into_iter().take(TOP).map(|x| x.1).collect(),
            ),
            (
                "毛利率下滑最大",
                slips.into_iter().take(TOP).map(|x| x.1).collect(),
            ),
            (
                "未按周期拜访的重点客户",
                unvisited.into_iter().take(TOP).map(|x| x.1).collect(),
            ),
        ];
        let subject = format!("[kamwatch] 重点客户月度回顾 {as_of}");
        let mut text = String::new();
        let _ = writeln!(
            text,
            "重点客户月度回顾，截至 {as_of}（{manager} 团队的 {} 个客户）\n",
            accounts.len()
        );
        let _ = writeln!(
            text,
            "全部客户 {} 个，近12个月收入 {}；A 类 {}、B 类 {}、C 类 {} 个。\n",
            p.accounts,
            show(&serde_json::json!(p.revenue_12m)),
            p.tier_a,
            p.tier_b,
            p.tier_c
        );
        let mut html = format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{}</title></head>\
             <body style=\"font-family:Arial,'Microsoft YaHei',sans-serif;font-size:14px;color:#222\">\
             <table role=\"presentation\" cellpadding=\"6\" cellspacing=\"0\" border=\"0\" width=\"640\">\
             <tr><td><b>重点客户月度回顾</b> · 截至 {as_of} · {} 团队 {} 个客户</td></tr>\
             <tr><td>全部客户 {} 个，近12个月收入 {}；A 类 {}、B 类 {}、C 类 {} 个。</td></tr>\
             <tr><td><img src=\"cid:pareto\" width=\"640\" height=\"260\" alt=\"Pareto curve of the book\"></td></tr>",
            escape_html(&subject),
            escape_html(&manager),
            accounts.len(),
            p.accounts,
            escape_html(&show(&serde_json::json!(p.revenue_12m))),
            p.tier_a,
            p.tier_b,
            p.tier_c
        );
        for (title, lines) in &sections {
            let _ = writeln!(text, "== {title} ({}) ==", lines.len());
            let _ = write!(
                html,
                "<tr><td><b>{}</b> ({})<table cellpadding=\"4\" cellspacing=\"0\" border=\"1\" style=\"border-collapse:collapse\">",
                escape_html(title),
                lines.len()
            );
            for l in lines {
                let _ = writeln!(
                    text,
                    "  {} {} · {} 类 · 负责人 {} · {}",
                    l.id, l.name, l.tier, l.owner, l.detail
                );
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape_html(&l.id),
                    escape_html(&l.name),
                    escape_html(l.tier),
                    escape_html(&l.owner),
                    escape_html(&l.detail)
                );
            }
            if lines.is_empty() {
                let _ = writeln!(text, "  （无）");
                html.push_str("<tr><td>（无）</td></tr>");
            }
            text.push('\n');
            html.push_str("</table></td></tr>");
        }
        html.push_str("</table></body></html>");
        out.push(Review {
            manager,
            subject,
            text,
            html,
            chart: chart.clone(),
        });
    }
    Ok(out)
}
