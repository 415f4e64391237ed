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
use std::sync::Arc;

use anyhow::Result;
use chrono::NaiveDate;
use rusqlite::Connection;

use crate::config::TierConfig;
use crate::format::{Style, Unit};
use crate::mail::escape_html;
use crate::metrics::{self, AccountMetrics, Measure};
use crate::model::dates::Day;

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
    // The revenue Pareto curve, largest first: under `tiers.by` other than
    // revenue the snapshot is in another order.
    let mut shares: Vec<f64> = snap.accounts.iter().map(|a| a.share).collect();
    shares.sort_by(|a, b| b.total_cmp(a));
    let chart = crate::chart::pareto_png(&shares, tiers.a_share, tiers.b_share, en)?;
    let moved: BTreeMap<&str, (&str, &str)> = book
        .since_month
        .iter()
        .map(|m| (m.id.as_str(), (m.from, m.to)))
        .collect();
    let mut out = Vec::new();
    for (manager, accounts) in by_manager(&snap) {
        let sections = sections(&accounts, &moved, end, style, w);
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
        let (intro, book_line) = intro(&team, accounts.len(), &snap.portfolio, as_of, style, w);
        out.push(Review {
            manager,
            manager_name,
            text: text(&intro, &book_line, &sections, w, en),
            html: html(&subject, &intro, &book_line, &sections, w, en),
            subject,
            chart: chart.clone(),
        });
    }
    Ok(out)
}

/// The accounts of each manager (by the master's manager email), managers
/// in order of their email.
fn by_manager(snap: &metrics::Snapshot) -> BTreeMap<String, Vec<&Arc<AccountMetrics>>> {
    let mut managers: BTreeMap<String, Vec<&Arc<AccountMetrics>>> = BTreeMap::new();
    for a in &snap.accounts {
        if let Some(m) = a.manager_email.as_deref().filter(|m| !m.is_empty()) {
            managers.entry(m.to_string()).or_default().push(a);
        }
    }
    managers
}

/// A section's line for account `a`.
fn line(a: &AccountMetrics, detail: String) -> Line {
    Line {
        id: a.id.clone(),
        name: a.name.clone(),
        owner: a.owner.clone(),
        tier: a.tier.as_str(),
        detail,
    }
}

/// One manager's sections, in order: tier moves, the largest revenue
/// declines, the largest margin slips and the key accounts not visited
/// within their cadence (tier C accounts are left out of the last three),
/// at most `TOP` lines each but the moves.
fn sections<'w>(
    accounts: &[&Arc<AccountMetrics>],
    moved: &BTreeMap<&str, (&str, &str)>,
    end: Day,
    style: &Style,
    w: &'w Words,
) -> Vec<(&'w str, Vec<Line>)> {
    let mut declines: Vec<(f64, Line)> = Vec::new();
    let mut slips: Vec<(f64, Line)> = Vec::new();
    let mut unvisited: Vec<(i64, Line)> = Vec::new();
    for a in accounts {
        if a.tier == crate::model::Tier::C {
            continue;
        }
        declines.extend(decline(a, end, style));
        slips.extend(slip(a, end, style));
        unvisited.extend(lapse(a, end, style.en()));
    }
    let moves: Vec<Line> = accounts
        .iter()
        .filter_map(|a| {
            let (from, to) = moved.get(a.id.as_str())?;
            Some(line(a, format!("{from} → {to}")))
        })
        .collect();
    declines.sort_by(|a, b| a.0.total_cmp(&b.0));
    slips.sort_by(|a, b| a.0.total_cmp(&b.0));
    unvisited.sort_by_key(|x| std::cmp::Reverse(x.0));
    vec![
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
    ]
}

/// Revenue of the last 90 days below the 90 days before: the drop (to sort
/// by, most negative first) and its line.
fn decline(a: &AccountMetrics, end: Day, style: &Style) -> Option<(f64, Line)> {
    let now = a.window(Measure::Revenue, end, 90, 0);
    let prev = a.window(Measure::Revenue, end, 90, 90);
    if !(prev > 0.0 && now < prev) {
        return None;
    }
    let change = style.number(crate::rules::pct_change(now, prev), Some(Unit::Percent));
    let (now_s, prev_s) = (style.money(now), style.money(prev));
    let detail = if style.en() {
        format!("last 90 days {now_s} ← previous {prev_s} ({change})")
    } else {
        format!("近90天 {now_s} ← 上期 {prev_s}（{change}）")
    };
    Some((now - prev, line(a, detail)))
}

/// Margin of the last 90 days more than half a point below its baseline
/// (the 270 days before): the slip (to sort by) and its line.
fn slip(a: &AccountMetrics, end: Day, style: &Style) -> Option<(f64, Line)> {
    let now = a.window(Measure::Revenue, end, 90, 0);
    if !(now > 0.0 && a.window(Measure::Revenue, end, 270, 90) > 0.0) {
        return None;
    }
    let gm = a.margin_pct(end, 90, 0);
    let base = a.margin_pct(end, 270, 90);
    let slipped = base - gm > 0.5;
    if !slipped {
        return None;
    }
    let (gm_s, base_s, slip_s) = (
        style.number(gm, Some(Unit::Percent)),
        style.number(base, Some(Unit::Percent)),
        style.number(gm - base, Some(Unit::Points)),
    );
    let detail = if style.en() {
        format!("margin {gm_s} ← baseline {base_s} ({slip_s})")
    } else {
        format!("毛利率 {gm_s} ← 基线 {base_s}（{slip_s}）")
    };
    Some((gm - base, line(a, detail)))
}

/// A key account not visited within its tier's cadence: the days since
/// the last visit (never: the most) and its line.
fn lapse(a: &AccountMetrics, end: Day, en: bool) -> Option<(i64, Line)> {
    let (_, cadence) = CADENCE.iter().find(|(t, _)| *t == a.tier.as_str())?;
    let since = a.days_since_last_visit(end, None);
    if since.is_some_and(|d| d <= *cadence) {
        return None;
    }
    let text = match (since, en) {
        (None, false) => "从未拜访".to_string(),
        (None, true) => "never visited".to_string(),
        (Some(d), false) => format!("{d} 天未拜访（周期 {cadence} 天）"),
        (Some(d), true) => format!("{d} days without a visit (cadence {cadence} days)"),
    };
    Some((since.unwrap_or(i64::MAX), line(a, text)))
}

/// The review's first two lines: whose review it is, and the whole book.
fn intro(
    team: &str,
    accounts: usize,
    p: &metrics::Portfolio,
    as_of: NaiveDate,
    style: &Style,
    w: &Words,
) -> (String, String) {
    if style.en() {
        (
            format!(
                "{} {} {as_of} ({}'s {}: {} accounts)",
                w.title, w.as_of, team, w.team, accounts
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
                w.title, w.as_of, team, w.team, accounts
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
    }
}

/// The review as plain text.
fn text(
    intro: &str,
    book_line: &str,
    sections: &[(&str, Vec<Line>)],
    w: &Words,
    en: bool,
) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "{intro}\n");
    let _ = writeln!(text, "{book_line}\n");
    for (title, lines) in sections {
        let _ = writeln!(text, "== {title} ({}) ==", lines.len());
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
        }
        if lines.is_empty() {
            let _ = writeln!(text, "  {}", w.none);
        }
        text.push('\n');
    }
    text
}

/// The review as HTML: every piece of data escaped, each section a table
/// with a header row, the chart as `cid:pareto`.
fn html(
    subject: &str,
    intro: &str,
    book_line: &str,
    sections: &[(&str, Vec<Line>)],
    w: &Words,
    en: bool,
) -> String {
    let mut html = format!(
        "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{}</title></head>\
         <body style=\"font-family:Arial,'Microsoft YaHei',sans-serif;font-size:14px;color:#222\">\
         <table role=\"presentation\" cellpadding=\"6\" cellspacing=\"0\" border=\"0\" width=\"600\">\
         <tr><td><b>{}</b></td></tr>\
         <tr><td>{}</td></tr>\
         <tr><td><img src=\"cid:pareto\" width=\"600\" height=\"220\" alt=\"{}\"></td></tr>",
        if en { "en" } else { "zh-CN" },
        escape_html(subject),
        escape_html(intro),
        escape_html(book_line),
        escape_html(w.chart_alt),
    );
    for (title, lines) in sections {
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
            let _ = write!(
                html,
                "<tr><td colspan=\"5\">{}</td></tr>",
                escape_html(w.none)
            );
        }
        html.push_str("</table></td></tr>");
    }
    html.push_str("</table></body></html>");
    html
}
