//! Review: the periodic key-account review each manager gets — the Pareto
//! curve of the book as a chart, tier moves since last month, the largest
//! revenue declines and margin slips among the manager's accounts, and key
//! accounts not visited within their tier's cadence. Built from `metrics`
//! and `accounts`; renders text, HTML (escaped, with table headers) and a
//! PNG in the mail's locale (`zh-CN` or `en`); reads the store and writes
//! nothing (queuing, or writing the files, is the caller's). The windows
//! and the visit cadence are the rules' own ([`RuleValues`]: what
//! declining_orders, margin_slip and lapsed_visits declare, else the
//! shipped values), and the review's last line says which rule each came
//! from. The HTML references the chart as `cid:pareto`;
//! [`Review::html_with_image`] gives it with a file name instead, for a
//! copy opened from disk.

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
use crate::rules::{Days, Fallback, RuleValues, Source};

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
    no_visits: &'static str,
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
    no_visits: "（全部客户都没有拜访记录：拜访数据尚未导入）",
    chart_alt: "全部客户的帕累托曲线：按分级依据（收入、毛利或两者）从大到小排列的客户占比与累计占比",
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
    no_visits: "(no account has a visit on record: the visits export is not set up yet)",
    chart_alt: "Pareto curve of the book: share of accounts, largest first, against the cumulative share of what the tiers are ranked by (revenue, gross profit, or both)",
};

/// Builds one review per manager (the master's manager email) as of a
/// date, in the locale and currency of `style` (the mail's), with the
/// windows and cadence of `values` (the rules').
pub fn build(
    conn: &Connection,
    as_of: NaiveDate,
    tiers: &TierConfig,
    style: &Style,
    values: &RuleValues,
) -> Result<Vec<Review>> {
    let en = style.en();
    let w = if en { &EN } else { &ZH };
    let snap = metrics::build(conn, as_of, tiers)?;
    let book = crate::reports::accounts::book(conn, as_of, tiers)?;
    let end = snap.end();
    let chart = crate::chart::book_pareto_png(&snap, tiers, en)?;
    let moved: BTreeMap<&str, (&str, &str)> = book
        .since_month
        .iter()
        .map(|m| (m.id.as_str(), (m.from, m.to)))
        .collect();
    let visits = snap.portfolio.accounts_with("visits").unwrap_or(0) > 0;
    let sources = sources(values, en);
    let mut out = Vec::new();
    for (manager, accounts) in by_manager(&snap) {
        let sections = sections(&accounts, &moved, end, style, values, visits, w);
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
            text: text(&intro, &book_line, &sections, &sources, en),
            html: html(&subject, &intro, &book_line, &sections, &sources, w, en),
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
        id: a.id.to_string(),
        name: a.name.to_string(),
        owner: a.owner.to_string(),
        tier: a.tier.as_str(),
        detail,
    }
}

/// A section: its title, its lines, and what to say when it has none.
type Section<'w> = (&'w str, Vec<Line>, &'w str);

/// One manager's sections, in order: tier moves, the largest revenue
/// declines, the largest margin slips and the key accounts not visited
/// within their cadence (tier C accounts are left out of the last three;
/// the last only for the tiers lapsed_visits runs for, and only when the
/// book has visits at all), at most `TOP` lines each but the moves.
fn sections<'w>(
    accounts: &[&Arc<AccountMetrics>],
    moved: &BTreeMap<&str, (&str, &str)>,
    end: Day,
    style: &Style,
    values: &RuleValues,
    visits: bool,
    w: &'w Words,
) -> Vec<Section<'w>> {
    let mut declines: Vec<(f64, Line)> = Vec::new();
    let mut slips: Vec<(f64, Line)> = Vec::new();
    let mut unvisited: Vec<(i64, Line)> = Vec::new();
    for a in accounts {
        if a.tier == crate::model::Tier::C {
            continue;
        }
        declines.extend(decline(a, end, style, values.decline_days.days));
        slips.extend(slip(a, end, style, values));
        if visits {
            unvisited.extend(lapse(a, end, style.en(), values));
        }
    }
    let moves: Vec<Line> = accounts
        .iter()
        .filter_map(|a| {
            let (from, to) = moved.get(&*a.id)?;
            Some(line(a, format!("{from} → {to}")))
        })
        .collect();
    declines.sort_by(|a, b| a.0.total_cmp(&b.0));
    slips.sort_by(|a, b| a.0.total_cmp(&b.0));
    unvisited.sort_by_key(|x| std::cmp::Reverse(x.0));
    vec![
        (w.sections[0], moves, w.none),
        (
            w.sections[1],
            declines.into_iter().take(TOP).map(|x| x.1).collect(),
            w.none,
        ),
        (
            w.sections[2],
            slips.into_iter().take(TOP).map(|x| x.1).collect(),
            w.none,
        ),
        (
            w.sections[3],
            unvisited.into_iter().take(TOP).map(|x| x.1).collect(),
            if visits { w.none } else { w.no_visits },
        ),
    ]
}

/// Revenue of the last `days` days (declining_orders' window) below the
/// `days` before: the drop (to sort by, most negative first) and its line.
fn decline(a: &AccountMetrics, end: Day, style: &Style, days: i64) -> Option<(f64, Line)> {
    let now = a.window(Measure::Revenue, end, days, 0);
    let prev = a.window(Measure::Revenue, end, days, days);
    if !(prev > 0.0 && now < prev) {
        return None;
    }
    let change = style.number(crate::rules::pct_change(now, prev), Some(Unit::Percent));
    let (now_s, prev_s) = (style.money(now), style.money(prev));
    let detail = if style.en() {
        format!("last {days} days {now_s} ← previous {prev_s} ({change})")
    } else {
        format!("近{days}天 {now_s} ← 上期 {prev_s}（{change}）")
    };
    Some((now - prev, line(a, detail)))
}

/// Margin of margin_slip's recent window (shipped: the last 90 days) more
/// than half a point below its baseline (the 270 days before): the slip
/// (to sort by) and its line.
fn slip(a: &AccountMetrics, end: Day, style: &Style, values: &RuleValues) -> Option<(f64, Line)> {
    let (days, base_days) = (values.margin_days.days, values.baseline_days.days);
    let now = a.window(Measure::Revenue, end, days, 0);
    if !(now > 0.0 && a.window(Measure::Revenue, end, base_days, days) > 0.0) {
        return None;
    }
    let gm = a.margin_pct(end, days, 0);
    let base = a.margin_pct(end, base_days, days);
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

/// A key account not visited within its tier's cadence (lapsed_visits'):
/// the days since the last visit (never: the most) and its line.
fn lapse(a: &AccountMetrics, end: Day, en: bool, values: &RuleValues) -> Option<(i64, Line)> {
    let cadence = values.cadence(a.tier)?;
    let since = a.days_since_last_visit(end, None);
    if since.is_some_and(|d| d <= cadence) {
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
fn text(intro: &str, book_line: &str, sections: &[Section<'_>], sources: &str, en: bool) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "{intro}\n");
    let _ = writeln!(text, "{book_line}\n");
    for (title, lines, none) in sections {
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
            let _ = writeln!(text, "  {none}");
        }
        text.push('\n');
    }
    let _ = writeln!(text, "{sources}");
    text
}

/// The review as HTML: every piece of data escaped, each section a table
/// with a header row, the chart as `cid:pareto`.
fn html(
    subject: &str,
    intro: &str,
    book_line: &str,
    sections: &[Section<'_>],
    sources: &str,
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
    for (title, lines, none) in sections {
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
                escape_html(none)
            );
        }
        html.push_str("</table></td></tr>");
    }
    let _ = write!(
        html,
        "<tr><td style=\"color:#555;font-size:12px\">{}</td></tr>",
        escape_html(sources)
    );
    html.push_str("</table></body></html>");
    html
}

/// The review's last line: the windows and cadence it used, and the rule
/// each came from (or why it is the shipped value).
fn sources(v: &RuleValues, en: bool) -> String {
    let from = |ds: &[&Days]| {
        let mut parts: Vec<String> = ds.iter().map(|d| source(d, en)).collect();
        parts.dedup();
        parts.join(if en { "; " } else { "；" })
    };
    let (a, b) = (v.cadence_a.days, v.cadence_b.days);
    let tiers: Vec<String> = [(crate::model::Tier::A, a), (crate::model::Tier::B, b)]
        .into_iter()
        .filter(|(t, _)| v.cadence(*t).is_some())
        .map(|(t, d)| {
            if en {
                format!("tier {t} {d} days")
            } else {
                format!("{t} 类 {d} 天")
            }
        })
        .collect();
    let cadence = [&v.cadence_a, &v.cadence_b];
    let (d, m, base) = (
        v.decline_days.days,
        v.margin_days.days,
        v.baseline_days.days,
    );
    let decline = from(&[&v.decline_days]);
    let margin = from(&[&v.margin_days, &v.baseline_days]);
    if en {
        format!(
            "As the rules say: visit cadence {} ({}); revenue of the last {d} days against the {d} before ({decline}); margin of the last {m} days against the {base} before ({margin}).",
            if tiers.is_empty() {
                "none".to_string()
            } else {
                tiers.join(", ")
            },
            from(&cadence),
        )
    } else {
        format!(
            "取自规则：拜访周期 {}（{}）；收入比较近 {d} 天与之前 {d} 天（{decline}）；毛利率比较近 {m} 天与之前 {base} 天（{margin}）。",
            if tiers.is_empty() {
                "无".to_string()
            } else {
                tiers.join("、")
            },
            from(&cadence),
        )
    }
}

/// Where one value came from, for a reader: the rule file, or the shipped
/// value and why.
fn source(d: &Days, en: bool) -> String {
    let (rule, name) = (d.rule, d.name);
    match (&d.source, en) {
        (Source::Rule(path), _) => path.file_name().map_or_else(
            || format!("{rule}.rhai"),
            |f| f.to_string_lossy().into_owned(),
        ),
        (Source::Shipped(why), true) => format!(
            "shipped {name} {}: {}",
            d.days,
            match why {
                Fallback::NoRule => format!("no rule {rule} is loaded"),
                Fallback::Disabled => format!("{rule} is disabled"),
                Fallback::NotDeclared => format!("{rule}.rhai declares no {name}"),
                Fallback::Unusable { line, .. } =>
                    format!("{name} in {rule}.rhai (line {line}) is not a number of days"),
            }
        ),
        (Source::Shipped(why), false) => format!(
            "内置默认 {name} {}：{}",
            d.days,
            match why {
                Fallback::NoRule => format!("未加载规则 {rule}"),
                Fallback::Disabled => format!("规则 {rule} 已停用"),
                Fallback::NotDeclared => format!("{rule}.rhai 未声明 {name}"),
                Fallback::Unusable { line, .. } =>
                    format!("{rule}.rhai 第 {line} 行的 {name} 不是天数"),
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;

    /// The review's last line names the rule file of each value, or the
    /// shipped value and why, in the reader's language; a tier the rule
    /// does not run for has no cadence.
    #[test]
    fn the_sources_line_says_where_each_value_came_from() {
        let en = sources(&RuleValues::shipped(), true);
        assert_eq!(
            en,
            "As the rules say: visit cadence tier A 14 days, tier B 30 days (shipped CADENCE_A 14: no rule lapsed_visits is loaded; shipped CADENCE_B 30: no rule lapsed_visits is loaded); revenue of the last 90 days against the 90 before (shipped DAYS 90: no rule declining_orders is loaded); margin of the last 90 days against the 270 before (shipped DAYS 90: no rule margin_slip is loaded; shipped BASELINE_DAYS 270: no rule margin_slip is loaded)."
        );
        let set = RuleSet::from_sources(&[
            (
                "lapsed_visits",
                "const SETTINGS = #{ tiers: [\"A\"] };\nconst CADENCE_A = 10;\nconst CADENCE_B = 20;",
            ),
            ("declining_orders", "const SETTINGS = #{ enabled: false };\nconst DAYS = 30;"),
            ("margin_slip", "let x = 1;\nconst DAYS = x;\nconst BASELINE_DAYS = 180;"),
        ])
        .unwrap();
        let v = RuleValues::of(&set);
        let en = sources(&v, true);
        assert!(
            en.contains("visit cadence tier A 10 days (lapsed_visits.rhai)"),
            "{en}"
        );
        assert!(
            en.contains(
                "last 90 days against the 90 before (shipped DAYS 90: declining_orders is disabled)"
            ),
            "{en}"
        );
        assert!(
            en.contains("last 90 days against the 180 before (shipped DAYS 90: DAYS in margin_slip.rhai (line 2) is not a number of days; margin_slip.rhai)"),
            "{en}"
        );
        let zh = sources(&v, false);
        assert!(
            zh.starts_with("取自规则：拜访周期 A 类 10 天（lapsed_visits.rhai）")
                && zh.contains("内置默认 DAYS 90：规则 declining_orders 已停用")
                && zh.contains("margin_slip.rhai 第 2 行的 DAYS 不是天数"),
            "{zh}"
        );
    }
}
