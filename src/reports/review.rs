//! Review: the periodic key-account review each manager gets — the Pareto
//! curve of the book as a chart, tier moves since last month, the largest
//! revenue declines and margin slips among the manager's accounts, and key
//! accounts not visited within their tier's cadence. Built from `metrics`
//! and `accounts`; renders text, HTML (escaped, with table headers) and a
//! PNG in the mail's locale (`zh-CN` or `en`); reads the store and writes
//! nothing (queuing, or writing the files, is the caller's). The HTML
//! references the chart as `cid:pareto`; [`Review::html_with_image`] gives
//! it with a file name instead, for a copy opened from disk.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use chrono::NaiveDate;
use rusqlite::Connection;

use crate::config::TierConfig;
use crate::format::{Style, Unit};
use crate::mail::escape_html;
use crate::metrics::{self, Measure};

use crate::chart::CADENCE;
/// Lines per section.
const TOP: usize = 10;

/// One manager's review, rendered.
#[derive(Debug, Clone)]
pub struct Review {
    /// The manager's email.
    pub manager: String,
    /// The manager's name from the master; empty when it has none.
    pub manager_name: String,
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

impl Review {
    /// The HTML with the chart at `src` (a file name beside it) instead of
    /// `cid:pareto`, for a copy opened from disk.
    pub fn html_with_image(&self, src: &str) -> String {
        self.html.replace(
            "src=\"cid:pareto\"",
            &format!("src=\"{}\"", escape_html(src)),
        )
    }

    /// The name the review's files share, `<as_of>_<manager email>`, with
    /// every character but ASCII letters, digits, `.` and `-` made `_`, so
    /// it is one safe file name on any system. It has dots of its own
    /// (`a.b@c.com`): add the extension with `format!`, not `with_extension`.
    pub fn file_stem(&self, as_of: NaiveDate) -> String {
        let manager: String = self
            .manager
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{as_of}_{manager}")
    }
}

/// The words of a review, per locale.
struct Words {
    sections: [&'static str; 4],
    title: &'static str,
    as_of: &'static str,
    team: &'static str,
    header: [&'static str; 5],
    none: &'static str,
    chart_alt: &'static str,
}

const ZH: Words = Words {
    sections: [
        "分级变动（较上月）",
        "收入降幅最大",
        "毛利率下滑最大",
        "未按周期拜访的重点客户",
    ],
    title: "重点客户月度回顾",
    as_of: "截至",
    team: "团队",
    header: ["客户编号", "客户名称", "分级", "负责人", "详情"],
    none: "（无）",
    chart_alt: "全部客户的帕累托曲线：按收入从大到小排列的客户占比与累计收入占比",
};

const EN: Words = Words {
    sections: [
        "Tier moves (since last month)",
        "Largest revenue declines",
        "Largest margin slips",
        "Key accounts not visited within their cadence",
    ],
    title: "Key-account review",
    as_of: "as of",
    team: "team",
    header: ["Account", "Name", "Tier", "Owner", "Detail"],
    none: "(none)",
    chart_alt: "Pareto curve of the book: share of accounts, largest first, against cumulative share of revenue",
};

/// Builds one review per manager (the master's manager email) as of a
/// date, in the locale and currency of `style` (the mail's).
pub fn build(
    conn: &Connection,
    as_of: NaiveDate,
    tiers: &TierConfig,
    style: &Style,
) -> Result<Vec<Review>> {
    let en = style.en();
    let w = if en { &EN } else { &ZH };
    let snap = metrics::build(conn, as_of, tiers)?;
    let book = crate::reports::accounts::book(conn, as_of, tiers)?;
    let end = snap.end();
    let shares: Vec<f64> = snap.accounts.iter().map(|a| a.share).collect();
    let chart = crate::chart::pareto_png(&shares, tiers.a_share, tiers.b_share, en)?;
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
            tier: a.tier.as_str(),
            detail,
        };
        let mut declines: Vec<(f64, Line)> = Vec::new();
        let mut slips: Vec<(f64, Line)> = Vec::new();
        let mut unvisited: Vec<(i64, Line)> = Vec::new();
        let mut moves: Vec<Line> = Vec::new();
        for a in &accounts {
            if a.tier == crate::model::Tier::C {
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
                        if en {
                            format!(
                                "last 90 days {} ← previous {} ({})",
                                style.money(now),
                                style.money(prev),
                                style.number(
                                    crate::rules::pct_change(now, prev),
                                    Some(Unit::Percent)
                                )
                            )
                        } else {
                            format!(
                                "近90天 {} ← 上期 {}（{}）",
                                style.money(now),
                                style.money(prev),
                                style.number(
                                    crate::rules::pct_change(now, prev),
                                    Some(Unit::Percent)
                                )
                            )
                        },
                    ),
                ));
            }
            if now > 0.0 && a.window(Measure::Revenue, end, 270, 90) > 0.0 {
                let gm = a.margin_pct(end, 90, 0);
                let base = a.margin_pct(end, 270, 90);
                if base - gm > 0.5 {
                    slips.push((
                        gm - base,
                        line(a, {
                            let (gm, base, slip) = (
                                style.number(gm, Some(Unit::Percent)),
                                style.number(base, Some(Unit::Percent)),
                                style.number(gm - base, Some(Unit::Points)),
                            );
                            if en {
                                format!("margin {gm} ← baseline {base} ({slip})")
                            } else {
                                format!("毛利率 {gm} ← 基线 {base}（{slip}）")
                            }
                        }),
                    ));
                }
            }
            if let Some((_, cadence)) = CADENCE.iter().find(|(t, _)| *t == a.tier.as_str()) {
                let since = a.days_since_last_visit(end, None);
                if since.is_none_or(|d| d > *cadence) {
                    let text = match (since, en) {
                        (None, false) => "从未拜访".to_string(),
                        (None, true) => "never visited".to_string(),
                        (Some(d), false) => format!("{d} 天未拜访（周期 {cadence} 天）"),
                        (Some(d), true) => {
                            format!("{d} days without a visit (cadence {cadence} days)")
                        }
                    };
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
            (w.sections[0], moves),
            (
                w.sections[1],
                declines.into_iter().take(TOP).map(|x| x.1).collect(),
            ),
            (
                w.sections[2],
                slips.into_iter().take(TOP).map(|x| x.1).collect(),
            ),
            (
                w.sections[3],
                unvisited.into_iter().take(TOP).map(|x| x.1).collect(),
            ),
        ];
        let manager_name = accounts
            .iter()
            .map(|a| a.manager.trim())
            .find(|n| !n.is_empty())
            .unwrap_or_default()
            .to_string();
        let team = if manager_name.is_empty() {
            manager.clone()
        } else {
            manager_name.clone()
        };
        let subject = format!("[kamwatch] {} {as_of}", w.title);
        let (intro, book_line) = if en {
            (
                format!(
                    "{} {} {as_of} ({}'s {}: {} accounts)",
                    w.title,
                    w.as_of,
                    team,
                    w.team,
                    accounts.len()
                ),
                format!(
                    "The book: {} accounts, revenue of the last 12 months {}; tier A {}, tier B {}, tier C {}.",
                    p.accounts,
                    style.money(p.revenue_12m),
                    p.tier_a,
                    p.tier_b,
                    p.tier_c
                ),
            )
        } else {
            (
                format!(
                    "{}，{} {as_of}（{} {}的 {} 个客户）",
                    w.title,
                    w.as_of,
                    team,
                    w.team,
                    accounts.len()
                ),
                format!(
                    "全部客户 {} 个，近12个月收入 {}；A 类 {}、B 类 {}、C 类 {} 个。",
                    p.accounts,
                    style.money(p.revenue_12m),
                    p.tier_a,
                    p.tier_b,
                    p.tier_c
                ),
            )
        };
        let mut text = String::new();
        let _ = writeln!(text, "{intro}\n");
        let _ = writeln!(text, "{book_line}\n");
        let mut html = format!(
            "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{}</title></head>\
             <body style=\"font-family:Arial,'Microsoft YaHei',sans-serif;font-size:14px;color:#222\">\
             <table role=\"presentation\" cellpadding=\"6\" cellspacing=\"0\" border=\"0\" width=\"600\">\
             <tr><td><b>{}</b></td></tr>\
             <tr><td>{}</td></tr>\
             <tr><td><img src=\"cid:pareto\" width=\"600\" height=\"220\" alt=\"{}\"></td></tr>",
            if en { "en" } else { "zh-CN" },
            escape_html(&subject),
            escape_html(&intro),
            escape_html(&book_line),
            escape_html(w.chart_alt),
        );
        for (title, lines) in &sections {
            let _ = writeln!(text, "== {title} ({}) ==", lines.len());
            let _ = write!(
                html,
                "<tr><td><b>{}</b> ({})<table cellpadding=\"4\" cellspacing=\"0\" border=\"1\" style=\"border-collapse:collapse\"><tr>",
                escape_html(title),
                lines.len()
            );
            for h in w.header {
                let _ = write!(
                    html,
                    "<th align=\"left\" style=\"background:#f0f0f0\">{}</th>",
                    escape_html(h)
                );
            }
            html.push_str("</tr>");
            for l in lines {
                let _ = if en {
                    writeln!(
                        text,
                        "  {} {} · tier {} · owner {} · {}",
                        l.id, l.name, l.tier, l.owner, l.detail
                    )
                } else {
                    writeln!(
                        text,
                        "  {} {} · {} 类 · 负责人 {} · {}",
                        l.id, l.name, l.tier, l.owner, l.detail
                    )
                };
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
                let _ = writeln!(text, "  {}", w.none);
                let _ = write!(
                    html,
                    "<tr><td colspan=\"5\">{}</td></tr>",
                    escape_html(w.none)
                );
            }
            text.push('\n');
            html.push_str("</table></td></tr>");
        }
        html.push_str("</table></body></html>");
        out.push(Review {
            manager,
            manager_name,
            subject,
            text,
            html,
            chart: chart.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stem_is_one_safe_name() {
        let r = Review {
            manager: "li.na+east@例子.com/../x".into(),
            manager_name: String::new(),
            subject: String::new(),
            text: String::new(),
            html: String::new(),
            chart: Vec::new(),
        };
        let as_of = NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
        assert_eq!(r.file_stem(as_of), "2026-06-30_li.na_east___.com_.._x");
    }
}
