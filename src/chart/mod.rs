//! Chart: the picture beside each warning, drawn in-process to PNG bytes,
//! and the Pareto curve of the review. Each shipped rule gets the picture
//! of its own evidence: monthly revenue (bars) and gross-margin % (line)
//! for order and margin rules, the gaps between visits against the tier's
//! cadence for lapsed visits, open invoices by age for receivables,
//! receivables against the credit limit, stock cover per main SKU against
//! the days needed; any other rule gets the monthly chart. Each comes with
//! a caption (for the HTML) that says what is drawn, what is shaded and
//! which axis does not start at zero.
//!
//! Text is drawn in the mail's locale with fonts built into the binary:
//! DejaVu Sans for English, and for Chinese `assets/ChartCJK.ttf`, a subset
//! of WenQuanYi Micro Hei with ASCII and exactly the Chinese characters of
//! the labels below (`scripts/chart-font.sh` rebuilds it; a test checks
//! every label's characters are in it). No system font is needed or used.
//! Data (names, SKUs with other characters) stays out of the image. Pure:
//! reads the metrics it is given and touches nothing else.

use anyhow::{Context, Result, anyhow};
use chrono::{Datelike, NaiveDate};
use plotters::prelude::*;

use crate::metrics::{AccountMetrics, Day, Measure, day};

const WIDTH: u32 = 600;
const HEIGHT: u32 = 220;
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// One month of an account's orders.
#[derive(Debug, Clone, PartialEq)]
pub struct Month {
    /// First day of the month.
    pub start: NaiveDate,
    pub revenue: f64,
    /// Gross margin %, `None` without revenue.
    pub margin_pct: Option<f64>,
}

/// The last `n` calendar months up to and including the month of `as_of`
/// (that month counts only up to `as_of`).
fn months_of(a: &AccountMetrics, as_of: NaiveDate, n: usize) -> Vec<Month> {
    let mut out = Vec::with_capacity(n);
    let mut first = as_of.with_day(1).unwrap_or(as_of);
    let mut last = as_of;
    for _ in 0..n {
        let len = i64::from(day(last) - day(first)) + 1;
        let end = day(last);
        let revenue = a.window(Measure::Revenue, end, len, 0);
        let cost = a.window(Measure::Cost, end, len, 0);
        out.push(Month {
            start: first,
            revenue,
            margin_pct: (revenue.abs() > f64::EPSILON).then(|| (revenue - cost) / revenue * 100.0),
        });
        let Some(prev_last) = first.pred_opt() else {
            break;
        };
        last = prev_last;
        first = prev_last.with_day(1).unwrap_or(prev_last);
    }
    out.reverse();
    out
}

static CJK_FONT: &[u8] = include_bytes!("../../assets/ChartCJK.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            tracing::error!("the shipped chart font does not load; charts will have no text");
        }
        if plotters::style::register_font("cjk", FontStyle::Normal, CJK_FONT).is_err() {
            tracing::error!(
                "the shipped Chinese chart font does not load; Chinese charts will have no text"
            );
        }
    });
}

/// The font family of a locale's labels.
fn family(en: bool) -> &'static str {
    if en { "sans-serif" } else { "cjk" }
}

/// Days between visits a tier expects (as in rules/lapsed_visits.rhai).
pub const CADENCE: [(&str, i64); 2] = [("A", 14), ("B", 30)];

/// Every text drawn into a chart, per locale. The Chinese ones must be
/// in `assets/ChartCJK.ttf` (see `scripts/chart-font.sh`).
struct Labels {
    revenue: &'static str,
    margin: &'static str,
    not_from_zero: &'static str,
    gap: &'static str,
    gap_axis: &'static str,
    open_gap: &'static str,
    cadence: &'static str,
    days: &'static str,
    amount: &'static str,
    not_due: &'static str,
    overdue: &'static str,
    buckets: [&'static str; 5],
    limit: &'static str,
    receivables: &'static str,
    cover: &'static str,
    needed: &'static str,
    no_data: &'static str,
    /// Ten thousand and a hundred million, for Chinese axis ticks.
    units: [&'static str; 2],
    pareto_x: &'static str,
    pareto_y: &'static str,
    pareto_curve: &'static str,
    pareto_a: &'static str,
    pareto_b: &'static str,
}

// chart-font: begin (scripts/chart-font.sh takes the characters from here)
const ZH: Labels = Labels {
    revenue: "销售额",
    margin: "毛利率 %",
    not_from_zero: "（不从0起）",
    gap: "拜访间隔（天）",
    gap_axis: "天",
    open_gap: "上次拜访至今",
    cadence: "要求周期",
    days: "天",
    amount: "金额",
    not_due: "未到期",
    overdue: "已逾期",
    buckets: ["未到期", "逾期1-30天", "31-60天", "61-90天", ">90天"],
    limit: "信用额度",
    receivables: "应收",
    cover: "可售天数",
    needed: "所需覆盖",
    no_data: "无数据",
    units: ["万", "亿"],
    pareto_x: "客户占比 %（按收入从大到小）",
    pareto_y: "累计收入占比 %",
    pareto_curve: "累计收入",
    pareto_a: "A类",
    pareto_b: "B类",
};
// chart-font: end

const EN: Labels = Labels {
    revenue: "revenue",
    margin: "GM %",
    not_from_zero: " (not from 0)",
    gap: "days between visits",
    gap_axis: "days",
    open_gap: "since the last visit",
    cadence: "cadence",
    days: "days",
    amount: "amount",
    not_due: "not due",
    overdue: "overdue",
    buckets: ["not due", "1-30 late", "31-60", "61-90", ">90"],
    limit: "credit limit",
    receivables: "receivables",
    cover: "days of cover",
    needed: "needed",
    no_data: "no data",
    units: ["万", "亿"],
    pareto_x: "% of accounts, largest first",
    pareto_y: "% of revenue",
    pareto_curve: "cumulative revenue",
    pareto_a: "tier A",
    pareto_b: "tier B",
};

fn labels(en: bool) -> &'static Labels {
    if en { &EN } else { &ZH }
}

/// A chart and what it shows, in words.
#[derive(Debug, Clone)]
pub struct Chart {
    pub png: Vec<u8>,
    pub caption: String,
}

/// What an item's chart needs to know about its alert.
pub struct Alert<'a> {
    pub rule: &'a str,
    pub as_of: NaiveDate,
    pub started_at: Option<NaiveDate>,
    /// The alert's figures, for the days a rule says are needed.
    pub figures: &'a [(String, serde_json::Value)],
}

/// The chart that fits the alert's rule, over the last `months` months.
pub fn for_alert(a: &AccountMetrics, al: &Alert<'_>, months: usize, en: bool) -> Result<Chart> {
    register_font();
    let l = labels(en);
    let end = day(al.as_of);
    match al.rule {
        "lapsed_visits" => {
            let cadence = CADENCE
                .iter()
                .find(|(t, _)| *t == a.tier)
                .map_or(30, |(_, c)| *c);
            visits_chart(a, al.as_of, cadence, en)
        }
        "overdue_receivables" => aging_chart(a, end, en),
        "credit_limit" if a.credit_limit.is_some_and(|c| c > 0.0) => credit_chart(a, end, en),
        "credit_limit" => aging_chart(a, end, en),
        "stock_cover" if !a.stock.is_empty() => stock_chart(a, needed_days(al.figures), en),
        rule => {
            let ms = months_of(a, al.as_of, months);
            let window = match rule {
                "declining_orders" | "margin_slip" => Some(90),
                _ => None,
            };
            let since = match window {
                Some(d) => al.as_of - chrono::Days::new(d - 1),
                None => al.started_at.unwrap_or(al.as_of),
            };
            let since_month = since.with_day(1).unwrap_or(since);
            let shade = ms
                .iter()
                .position(|m| m.start >= since_month)
                .or(Some(ms.len().saturating_sub(1)));
            let (png, gm_from_zero) = monthly(&ms, shade, en)?;
            let axis = match (gm_from_zero, en) {
                (true, _) => String::new(),
                (false, false) => "毛利率轴不从 0 起，只显示数据所在的区间；".into(),
                (false, true) => {
                    "The margin axis does not start at 0: it spans the data's range. ".into()
                }
            };
            let shaded = match (rule, en) {
                ("declining_orders", false) => {
                    format!("阴影为规则比较的近 90 天（{since} 起），与之前 90 天及去年同期比较。")
                }
                ("declining_orders", true) => format!(
                    "Shaded: the last 90 days (from {since}) the rule compares with the 90 days before and the same period last year."
                ),
                ("margin_slip", false) => {
                    format!("阴影为近 90 天（{since} 起），其前 270 天为毛利率基线。")
                }
                ("margin_slip", true) => format!(
                    "Shaded: the last 90 days (from {since}); the 270 days before are the margin baseline."
                ),
                (_, false) => format!("阴影为预警开始（{since}）以来的月份。"),
                (_, true) => format!("Shaded: the months since the alert started ({since})."),
            };
            let caption = if en {
                format!(
                    "Monthly {} (bars, left axis from 0) and gross margin % (line, right axis), the last {} months; the current month counts up to {}. {axis}{shaded}",
                    l.revenue,
                    ms.len(),
                    al.as_of
                )
            } else {
                format!(
                    "近 {} 个月每月{}（柱，左轴从 0 起）与毛利率（线，右轴），本月只计到 {}。{axis}{shaded}",
                    ms.len(),
                    l.revenue,
                    al.as_of
                )
            };
            Ok(Chart { png, caption })
        }
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

fn new_canvas() -> Vec<u8> {
    vec![255u8; (WIDTH * HEIGHT * 3) as usize]
}

type DrawResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The monthly chart as a PNG, and whether its margin axis starts at
/// zero. `shade_from` is the first month (index into `months`) of the
/// alert's window, shaded to show the period compared.
fn monthly(months: &[Month], shade_from: Option<usize>, en: bool) -> Result<(Vec<u8>, bool)> {
    register_font();
    let mut rgb = new_canvas();
    let from_zero =
        draw(&mut rgb, months, shade_from, en).map_err(|e| anyhow!("drawing the chart: {e}"))?;
    Ok((encode_png(&rgb)?, from_zero))
}

const BAR: RGBColor = RGBColor(79, 129, 189);
const LINE: RGBColor = RGBColor(192, 80, 77);
const SHADE: RGBColor = RGBColor(255, 236, 179);
const LIMIT: RGBColor = RGBColor(60, 60, 60);

/// The margin axis: from 0 when the data is within a few points of it
/// (or below), else a band around the data. Returns (min, max, from zero).
fn margin_axis(months: &[Month]) -> (f64, f64, bool) {
    let (lo, hi) = months
        .iter()
        .filter_map(|m| m.margin_pct)
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.0, 100.0, true);
    }
    let top = (hi + 2.0).ceil().max(1.0);
    if lo <= 5.0 {
        ((lo - 2.0).floor().min(0.0), top, true)
    } else {
        ((lo - 2.0).floor(), top, false)
    }
}

fn draw(rgb: &mut [u8], months: &[Month], shade_from: Option<usize>, en: bool) -> DrawResult<bool> {
    let l = labels(en);
    let f = family(en);
    let root = BitMapBackend::with_buffer(rgb, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = months.len().max(1);
    let max_rev = months
        .iter()
        .map(|m| m.revenue)
        .fold(0.0_f64, f64::max)
        .max(1.0)
        * 1.25;
    let (min_gm, max_gm, from_zero) = margin_axis(months);
    let labels_x: Vec<String> = months
        .iter()
        .map(|m| format!("{}-{:02}", m.start.year() % 100, m.start.month()))
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(56)
        .right_y_label_area_size(56)
        .build_cartesian_2d(0f64..n as f64, 0f64..max_rev)?
        .set_secondary_coord(0f64..n as f64, min_gm..max_gm);
    let every = n.div_ceil(9).max(1);
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if i < labels_x.len() && i.is_multiple_of(every) && (x - x.floor()).abs() < 1e-9 {
                labels_x[i].clone()
            } else {
                String::new()
            }
        })
        .y_desc(l.revenue)
        .y_label_formatter(&|v| short(*v, en))
        .label_style((f, 11))
        .axis_desc_style((f, 12))
        .draw()?;
    let gm_desc = if from_zero {
        l.margin.to_string()
    } else {
        format!("{}{}", l.margin, l.not_from_zero)
    };
    chart
        .configure_secondary_axes()
        .y_desc(gm_desc)
        .label_style((f, 11))
        .axis_desc_style((f, 12))
        .draw()?;
    if let Some(from) = shade_from.filter(|f| *f < n) {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(from as f64, 0.0), (n as f64, max_rev)],
            SHADE.filled(),
        )))?;
    }
    chart
        .draw_series(months.iter().enumerate().map(|(i, m)| {
            Rectangle::new(
                [
                    (i as f64 + 0.15, 0.0),
                    (i as f64 + 0.85, m.revenue.max(0.0)),
                ],
                BAR.filled(),
            )
        }))?
        .label(l.revenue)
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BAR.filled()));
    chart
        .draw_secondary_series(LineSeries::new(
            months
                .iter()
                .enumerate()
                .filter_map(|(i, m)| m.margin_pct.map(|g| (i as f64 + 0.5, g))),
            LINE.stroke_width(2),
        ))?
        .label(l.margin)
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], LINE.stroke_width(2)));
    legend(&mut chart, f)?;
    root.present()?;
    Ok(from_zero)
}

/// The legend box in the upper left corner.
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    f: &'static str,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font((f, 11))
        .draw()?;
    Ok(())
}

/// The gaps between the visits of the last year (at most the last 12),
/// the last bar the days since the last visit, against the tier's cadence.
fn visits_chart(a: &AccountMetrics, as_of: NaiveDate, cadence: i64, en: bool) -> Result<Chart> {
    let end = day(as_of);
    let days: Vec<Day> = a
        .visits
        .iter()
        .map(|v| v.day)
        .filter(|d| *d <= end)
        .collect();
    let mut days = days;
    days.dedup();
    // (label, gap, open)
    let mut bars: Vec<(String, i64, bool)> = days
        .windows(2)
        .filter(|w| w[1] > end - 366)
        .map(|w| {
            let d = crate::metrics::date_of(w[1]);
            (
                format!("{:02}-{:02}", d.month(), d.day()),
                i64::from(w[1] - w[0]),
                false,
            )
        })
        .collect();
    let keep = bars.len().saturating_sub(11);
    bars.drain(..keep);
    if let Some(last) = days.last() {
        bars.push((
            format!("{:02}-{:02}", as_of.month(), as_of.day()),
            i64::from(end - last),
            true,
        ));
    }
    let mut rgb = new_canvas();
    draw_visits(&mut rgb, &bars, cadence, en)
        .map_err(|e| anyhow!("drawing the visits chart: {e}"))?;
    let tier = a.tier;
    let caption = match (days.last(), en) {
        (Some(last), false) => format!(
            "每根柱为两次拜访之间的天数（标注为后一次拜访的日期，近一年内最多 12 次）；橙色柱为上次拜访（{}）至 {as_of} 的天数。虚线为 {tier} 类客户要求的拜访周期 {cadence} 天，纵轴从 0 起。",
            crate::metrics::date_of(*last)
        ),
        (Some(last), true) => format!(
            "Each bar is the days between two visits (labelled with the later visit's date; at most 12 in the last year); the orange bar is the days from the last visit ({}) to {as_of}. The dashed line is tier {tier}'s cadence of {cadence} days; the axis starts at 0.",
            crate::metrics::date_of(*last)
        ),
        (None, false) => {
            format!("该客户没有拜访记录。虚线为 {tier} 类客户要求的拜访周期 {cadence} 天。")
        }
        (None, true) => format!(
            "The account has no visit on record. The dashed line is tier {tier}'s cadence of {cadence} days."
        ),
    };
    Ok(Chart {
        png: encode_png(&rgb)?,
        caption,
    })
}

const OPEN: RGBColor = RGBColor(230, 145, 56);

fn draw_visits(
    rgb: &mut [u8],
    bars: &[(String, i64, bool)],
    cadence: i64,
    en: bool,
) -> DrawResult<()> {
    let l = labels(en);
    let f = family(en);
    let root = BitMapBackend::with_buffer(rgb, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = bars.len().max(1);
    let top = bars.iter().map(|b| b.1).max().unwrap_or(0).max(cadence) as f64 * 1.3 + 1.0;
    let mut chart = ChartBuilder::on(&root)
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..n as f64, 0f64..top)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor()).abs() < 1e-9 {
                bars.get(i).map(|b| b.0.clone()).unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(l.gap_axis)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((f, 11))
        .axis_desc_style((f, 12))
        .draw()?;
    if bars.is_empty() {
        root.draw(&Text::new(
            l.no_data,
            (WIDTH as i32 / 2 - 20, HEIGHT as i32 / 2),
            (f, 14),
        ))?;
    }
    chart
        .draw_series(bars.iter().enumerate().filter(|(_, b)| !b.2).map(|(i, b)| {
            Rectangle::new(
                [(i as f64 + 0.2, 0.0), (i as f64 + 0.8, b.1 as f64)],
                BAR.filled(),
            )
        }))?
        .label(l.gap)
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BAR.filled()));
    chart
        .draw_series(bars.iter().enumerate().filter(|(_, b)| b.2).map(|(i, b)| {
            Rectangle::new(
                [(i as f64 + 0.2, 0.0), (i as f64 + 0.8, b.1 as f64)],
                OPEN.filled(),
            )
        }))?
        .label(l.open_gap)
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], OPEN.filled()));
    chart
        .draw_series(dashes(0.0, n as f64, cadence as f64))?
        .label(format!("{} {cadence} {}", l.cadence, l.days))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], LINE.stroke_width(2)));
    legend(&mut chart, f)?;
    root.present()?;
    Ok(())
}

/// A dashed horizontal line at `y` from `x0` to `x1`.
fn dashes(x0: f64, x1: f64, y: f64) -> impl Iterator<Item = PathElement<(f64, f64)>> {
    let step = (x1 - x0) / 40.0;
    (0..40).step_by(2).map(move |i| {
        let a = x0 + step * f64::from(i);
        PathElement::new([(a, y), (a + step, y)], LINE.stroke_width(2))
    })
}

/// Open invoices by age at `end`: not due, then the buckets the shipped
/// `overdue_receivables` rule reports (`overdue_between`): 1-30, 31-60,
/// 61-90 and over 90 days past due.
pub fn aging(a: &AccountMetrics, end: Day) -> [f64; 5] {
    let not_due = a
        .invoices
        .iter()
        .filter(|i| i.due >= end)
        .fold(0.0, |sum, i| sum + i.amount);
    [
        not_due,
        a.overdue_between(end, 1, 30),
        a.overdue_between(end, 31, 60),
        a.overdue_between(end, 61, 90),
        a.overdue_between(end, 91, i64::MAX),
    ]
}

fn aging_chart(a: &AccountMetrics, end: Day, en: bool) -> Result<Chart> {
    let b = aging(a, end);
    let mut rgb = new_canvas();
    draw_aging(&mut rgb, &b, en).map_err(|e| anyhow!("drawing the aging chart: {e}"))?;
    let as_of = crate::metrics::date_of(end);
    let caption = if en {
        format!(
            "Open invoices on {as_of} by days past their due date: blue not yet due, red overdue. The amount axis starts at 0."
        )
    } else {
        format!(
            "截至 {as_of} 的未结发票，按超过到期日的天数分组：蓝色为未到期，红色为已逾期。金额轴从 0 起。"
        )
    };
    Ok(Chart {
        png: encode_png(&rgb)?,
        caption,
    })
}

fn draw_aging(rgb: &mut [u8], b: &[f64; 5], en: bool) -> DrawResult<()> {
    let l = labels(en);
    let f = family(en);
    let root = BitMapBackend::with_buffer(rgb, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = b.iter().copied().fold(0.0, f64::max).max(1.0) * 1.5;
    let mut chart = ChartBuilder::on(&root)
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.5f64..4.5f64, 0f64..top)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .disable_x_mesh()
        .x_labels(5)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-9 && i >= 0.0 {
                l.buckets
                    .get(i as usize)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(l.amount)
        .y_label_formatter(&|v| short(*v, en))
        .label_style((f, 11))
        .axis_desc_style((f, 12))
        .draw()?;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(-0.3, 0.0), (0.3, b[0])],
            BAR.filled(),
        )))?
        .label(l.not_due)
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BAR.filled()));
    chart
        .draw_series((1..5).map(|i| {
            Rectangle::new(
                [(i as f64 - 0.3, 0.0), (i as f64 + 0.3, b[i])],
                LINE.filled(),
            )
        }))?
        .label(l.overdue)
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], LINE.filled()));
    legend(&mut chart, f)?;
    root.present()?;
    Ok(())
}

fn credit_chart(a: &AccountMetrics, end: Day, en: bool) -> Result<Chart> {
    let b = aging(a, end);
    let not_due = b[0];
    let overdue: f64 = b[1..].iter().sum();
    let limit = a.credit_limit.unwrap_or(0.0);
    let mut rgb = new_canvas();
    draw_credit(&mut rgb, not_due, overdue, limit, en)
        .map_err(|e| anyhow!("drawing the credit chart: {e}"))?;
    let used = (not_due + overdue) / limit.max(f64::MIN_POSITIVE) * 100.0;
    let caption = if en {
        format!(
            "Receivables against the credit limit ({used:.0}% used): blue not yet due, red overdue; the dark line is the limit. The axis starts at 0."
        )
    } else {
        format!(
            "应收余额与信用额度（已用 {used:.0}%）：蓝色为未到期，红色为已逾期，深色竖线为信用额度。横轴从 0 起。"
        )
    };
    Ok(Chart {
        png: encode_png(&rgb)?,
        caption,
    })
}

fn draw_credit(rgb: &mut [u8], not_due: f64, overdue: f64, limit: f64, en: bool) -> DrawResult<()> {
    let l = labels(en);
    let f = family(en);
    let root = BitMapBackend::with_buffer(rgb, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = (not_due + overdue).max(limit).max(1.0) * 1.2;
    let mut chart = ChartBuilder::on(&root)
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..top, -1.5f64..1.5f64)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .disable_y_mesh()
        .y_labels(3)
        .y_label_formatter(&|y| {
            if y.abs() < 1e-9 {
                l.receivables.to_string()
            } else {
                String::new()
            }
        })
        .x_desc(l.amount)
        .x_label_formatter(&|v| short(*v, en))
        .label_style((f, 11))
        .axis_desc_style((f, 12))
        .draw()?;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, -0.5), (not_due, 0.5)],
            BAR.filled(),
        )))?
        .label(l.not_due)
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BAR.filled()));
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(not_due, -0.5), (not_due + overdue, 0.5)],
            LINE.filled(),
        )))?
        .label(l.overdue)
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], LINE.filled()));
    chart
        .draw_series(std::iter::once(PathElement::new(
            [(limit, -0.9), (limit, 0.9)],
            LIMIT.stroke_width(3),
        )))?
        .label(l.limit)
        .legend(|(x, y)| PathElement::new([(x + 6, y - 6), (x + 6, y + 6)], LIMIT.stroke_width(3)));
    legend(&mut chart, f)?;
    root.present()?;
    Ok(())
}

fn stock_chart(a: &AccountMetrics, needed: Option<f64>, en: bool) -> Result<Chart> {
    // (label, days, SKU)
    let bars: Vec<(String, f64, &str)> = a
        .stock
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let shown = if !s.sku.is_empty()
                && s.sku.len() <= 14
                && s.sku.chars().all(|c| c.is_ascii_graphic())
            {
                s.sku.clone()
            } else {
                format!("#{}", i + 1)
            };
            (shown, s.days, s.sku.as_str())
        })
        .collect();
    let mut rgb = new_canvas();
    draw_stock(&mut rgb, &bars, needed, en).map_err(|e| anyhow!("drawing the stock chart: {e}"))?;
    let skus: Vec<String> = bars
        .iter()
        .filter(|b| b.0 != b.2)
        .map(|b| format!("{} = {}", b.0, b.2))
        .collect();
    let no_demand = bars.iter().any(|b| b.1 < 0.0);
    let mut caption = match (needed, en) {
        (Some(n), false) => format!(
            "主销产品的库存可售天数（按近期日均需求）；虚线为旺季所需覆盖 {n:.0} 天，低于它的柱为红色。纵轴从 0 起。"
        ),
        (Some(n), true) => format!(
            "Days of stock cover of the main SKUs (at recent daily demand); the dashed line is the {n:.0} days needed for the season, bars below it are red. The axis starts at 0."
        ),
        (None, false) => "主销产品的库存可售天数（按近期日均需求）。纵轴从 0 起。".into(),
        (None, true) => {
            "Days of stock cover of the main SKUs (at recent daily demand). The axis starts at 0."
                .into()
        }
    };
    if no_demand {
        caption.push_str(if en {
            " A SKU without recent demand has no bar."
        } else {
            "近期无需求的产品没有柱。"
        });
    }
    if !skus.is_empty() {
        caption.push_str(&format!(" ({})", skus.join(", ")));
    }
    Ok(Chart {
        png: encode_png(&rgb)?,
        caption,
    })
}

fn draw_stock(
    rgb: &mut [u8],
    bars: &[(String, f64, &str)],
    needed: Option<f64>,
    en: bool,
) -> DrawResult<()> {
    let l = labels(en);
    let f = family(en);
    let root = BitMapBackend::with_buffer(rgb, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = bars.len().max(1);
    let top = bars
        .iter()
        .map(|b| b.1)
        .fold(needed.unwrap_or(0.0), f64::max)
        .max(1.0)
        * 1.3;
    let mut chart = ChartBuilder::on(&root)
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..n as f64, 0f64..top)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .disable_x_mesh()
        .x_labels(2 * n + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 1e-9 {
                bars.get(i).map(|b| b.0.clone()).unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(l.cover)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((f, 11))
        .axis_desc_style((f, 12))
        .draw()?;
    let short_of = |d: f64| needed.is_some_and(|n| d < n);
    chart
        .draw_series(
            bars.iter()
                .enumerate()
                .filter(|(_, b)| b.1 >= 0.0 && !short_of(b.1))
                .map(|(i, b)| {
                    Rectangle::new(
                        [(i as f64 + 0.25, 0.0), (i as f64 + 0.75, b.1)],
                        BAR.filled(),
                    )
                }),
        )?
        .label(l.cover)
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BAR.filled()));
    if let Some(need) = needed {
        chart.draw_series(
            bars.iter()
                .enumerate()
                .filter(|(_, b)| b.1 >= 0.0 && short_of(b.1))
                .map(|(i, b)| {
                    Rectangle::new(
                        [(i as f64 + 0.25, 0.0), (i as f64 + 0.75, b.1)],
                        LINE.filled(),
                    )
                }),
        )?;
        chart
            .draw_series(dashes(0.0, n as f64, need))?
            .label(format!("{} {need:.0} {}", l.needed, l.days))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], LINE.stroke_width(2)));
    }
    legend(&mut chart, f)?;
    root.present()?;
    Ok(())
}

/// An axis tick: 1234567 -> "1.2M" ("123万" in Chinese), 45000 -> "45k".
fn short(v: f64, en: bool) -> String {
    if en {
        if v >= 1e6 {
            format!("{:.1}M", v / 1e6)
        } else if v >= 1e3 {
            format!("{:.0}k", v / 1e3)
        } else {
            format!("{v:.0}")
        }
    } else if v >= 1e8 {
        format!("{:.1}{}", v / 1e8, ZH.units[1])
    } else if v >= 1e4 {
        let w = v / 1e4;
        if w >= 100.0 {
            format!("{w:.0}{}", ZH.units[0])
        } else {
            format!("{w:.1}{}", ZH.units[0])
        }
    } else {
        format!("{v:.0}")
    }
}

/// The Pareto curve of a book: accounts ranked by revenue (x, % of
/// accounts) against cumulative share of revenue (y, %), with the tier
/// thresholds drawn. `shares` are the accounts' shares (0..1), largest first.
pub fn pareto_png(shares: &[f64], a_share: f64, b_share: f64, en: bool) -> Result<Vec<u8>> {
    register_font();
    let mut rgb = new_canvas();
    draw_pareto(&mut rgb, shares, a_share, b_share, en)
        .map_err(|e| anyhow!("drawing the Pareto chart: {e}"))?;
    encode_png(&rgb)
}

/// Colours in the PNG's palette at most: the charts' flat colours and the
/// grey levels of their text; rarer anti-aliasing shades take the nearest.
const PALETTE: usize = 24;

/// The picture as an indexed PNG: a few KiB instead of the tens an RGB one
/// takes, so a digest with a chart per item stays small.
fn encode_png(rgb: &[u8]) -> Result<Vec<u8>> {
    use std::collections::HashMap;
    let mut count: HashMap<[u8; 3], u32> = HashMap::new();
    for p in rgb.chunks_exact(3) {
        *count.entry([p[0], p[1], p[2]]).or_default() += 1;
    }
    let mut colours: Vec<([u8; 3], u32)> = count.into_iter().collect();
    colours.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    colours.truncate(PALETTE);
    let palette: Vec<[u8; 3]> = colours.iter().map(|c| c.0).collect();
    let mut index: HashMap<[u8; 3], u8> = palette
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, i as u8))
        .collect();
    let mut nearest = |c: [u8; 3]| -> u8 {
        *index.entry(c).or_insert_with(|| {
            let dist = |p: &[u8; 3]| -> i32 {
                (0..3)
                    .map(|k| (i32::from(p[k]) - i32::from(c[k])).pow(2))
                    .sum()
            };
            palette
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| dist(p))
                .map_or(0, |(i, _)| i as u8)
        })
    };
    let pixels: Vec<u8> = rgb
        .chunks_exact(3)
        .map(|p| nearest([p[0], p[1], p[2]]))
        .collect();
    let mut png = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png, WIDTH, HEIGHT);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(palette.concat());
        enc.set_compression(png::Compression::High);
        let mut w = enc.write_header().context("writing the PNG header")?;
        w.write_image_data(&pixels)
            .context("writing the PNG data")?;
    }
    Ok(png)
}

fn draw_pareto(
    rgb: &mut [u8],
    shares: &[f64],
    a_share: f64,
    b_share: f64,
    en: bool,
) -> DrawResult<()> {
    let l = labels(en);
    let f = family(en);
    let root = BitMapBackend::with_buffer(rgb, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = shares.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(44)
        .build_cartesian_2d(0f64..100f64, 0f64..100f64)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc(l.pareto_x)
        .y_desc(l.pareto_y)
        .label_style((f, 11))
        .axis_desc_style((f, 12))
        .draw()?;
    for (t, color, name) in [
        (a_share, SHADE, l.pareto_a),
        (b_share, RGBColor(200, 200, 200), l.pareto_b),
    ] {
        chart
            .draw_series(LineSeries::new(
                [(0.0, t * 100.0), (100.0, t * 100.0)],
                color.stroke_width(2),
            ))?
            .label(format!("{name} {:.0}%", t * 100.0))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
    }
    let mut cum = 0.0;
    let points: Vec<(f64, f64)> = std::iter::once((0.0, 0.0))
        .chain(shares.iter().enumerate().map(|(i, s)| {
            cum += s;
            ((i + 1) as f64 / n * 100.0, cum * 100.0)
        }))
        .collect();
    chart.draw_series(AreaSeries::new(points.clone(), 0.0, BAR.mix(0.25)))?;
    chart
        .draw_series(LineSeries::new(points, BAR.stroke_width(2)))?
        .label(l.pareto_curve)
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BAR.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font((f, 11))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Invoice, StockCover, Visit};

    fn month(y: i32, m: u32, revenue: f64, gm: f64) -> Month {
        Month {
            start: NaiveDate::from_ymd_opt(y, m, 1).unwrap(),
            revenue,
            margin_pct: Some(gm),
        }
    }

    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let mut dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
        dec.set_transformations(png::Transformations::EXPAND);
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        (info.width, info.height, buf)
    }

    fn has(px: &[u8], c: RGBColor) -> bool {
        px.chunks(3).any(|p| p == [c.0, c.1, c.2])
    }

    /// Dark text pixels in the image.
    fn inked(px: &[u8]) -> usize {
        px.chunks(3)
            .filter(|p| p[0] < 90 && p[0] == p[1] && p[1] == p[2])
            .count()
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn draws_bars_line_shade_and_legend() {
        let months: Vec<Month> = (1..=12)
            .map(|m| month(2026, m, 1000.0 * f64::from(m), 20.0 - f64::from(m) * 0.5))
            .collect();
        let (png_bytes, from_zero) = monthly(&months, Some(9), false).unwrap();
        assert!(
            !from_zero,
            "a margin of 14-20% gets an axis around the data"
        );
        assert_eq!(&png_bytes[1..4], b"PNG");
        let (w, h, px) = decode(&png_bytes);
        assert_eq!((w, h), (WIDTH, HEIGHT));
        assert!(has(&px, BAR), "bars drawn");
        assert!(has(&px, SHADE), "alert window shaded");
        assert!(has(&px, LINE), "margin line drawn");
        assert!(inked(&px) > 200, "labels drawn");
    }

    #[test]
    fn a_margin_near_zero_is_drawn_from_zero() {
        let months = vec![month(2026, 1, 100.0, 3.0), month(2026, 2, 100.0, 9.0)];
        assert!(margin_axis(&months).2);
        let months = vec![month(2026, 1, 100.0, 30.0), month(2026, 2, 100.0, 25.0)];
        let (lo, hi, zero) = margin_axis(&months);
        assert!(!zero && lo <= 25.0 && hi >= 30.0 && lo > 0.0);
    }

    #[test]
    fn no_shade_without_a_window_and_empty_months_draw() {
        let months = vec![
            month(2026, 1, 0.0, 0.0),
            Month {
                start: NaiveDate::from_ymd_opt(2026, 2, 1).unwrap(),
                revenue: 0.0,
                margin_pct: None,
            },
        ];
        let (_, _, px) = decode(&monthly(&months, None, true).unwrap().0);
        assert!(!has(&px, SHADE));
    }

    /// Every Chinese character a chart can draw is in the shipped font:
    /// a missing one would be drawn as an empty box.
    #[test]
    fn every_chinese_label_is_in_the_shipped_font() {
        let face = ttf_parser::Face::parse(CJK_FONT, 0).unwrap();
        let l = &ZH;
        let mut all: Vec<&str> = vec![
            l.revenue,
            l.margin,
            l.not_from_zero,
            l.gap,
            l.gap_axis,
            l.open_gap,
            l.cadence,
            l.days,
            l.amount,
            l.not_due,
            l.overdue,
            l.limit,
            l.receivables,
            l.cover,
            l.needed,
            l.no_data,
            l.pareto_x,
            l.pareto_y,
            l.pareto_curve,
            l.pareto_a,
            l.pareto_b,
        ];
        all.extend(l.buckets);
        all.extend(l.units);
        all.push(" 0123456789.,-+%#>()=:abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");
        let missing: String = all
            .iter()
            .flat_map(|s| s.chars())
            .filter(|c| face.glyph_index(*c).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "not in assets/ChartCJK.ttf: {missing:?}; run scripts/chart-font.sh"
        );
    }

    /// The same chart in Chinese and English differs only in its text, and
    /// the Chinese one has text drawn (not empty boxes from a missing font).
    #[test]
    fn chinese_labels_are_drawn() {
        let months: Vec<Month> = (1..=6).map(|m| month(2026, m, 5000.0, 20.0)).collect();
        let (zh, _) = monthly(&months, Some(4), false).unwrap();
        let (en, _) = monthly(&months, Some(4), true).unwrap();
        assert_ne!(zh, en);
        let (_, _, px) = decode(&zh);
        assert!(inked(&px) > 200);
    }

    fn account() -> AccountMetrics {
        let mut a = AccountMetrics::empty("K1", "客户");
        a.tier = "A";
        a
    }

    #[test]
    fn each_shipped_rule_gets_the_chart_of_its_evidence() {
        let as_of = d("2026-11-20");
        let end = day(as_of);
        let mut a = account();
        a.visits = crate::metrics::DayLog::from(
            [100, 80, 60, 30]
                .iter()
                .map(|back| Visit {
                    day: end - back,
                    role: 0,
                })
                .collect::<Vec<_>>(),
        );
        a.invoices = vec![
            Invoice {
                amount: 5000.0,
                due: end + 10,
            },
            Invoice {
                amount: 3000.0,
                due: end - 45,
            },
            Invoice {
                amount: 2000.0,
                due: end - 120,
            },
        ];
        a.credit_limit = Some(9000.0);
        a.stock = vec![
            StockCover {
                sku: "SKU-1".into(),
                on_hand: 10.0,
                daily_qty: 1.0,
                days: 10.0,
                dedicated: true,
            },
            StockCover {
                sku: "货号2".into(),
                on_hand: 90.0,
                daily_qty: 1.0,
                days: 90.0,
                dedicated: true,
            },
        ];
        let figures = vec![("所需覆盖（天）".to_string(), serde_json::json!(60.0))];
        let chart = |rule: &str, en: bool| {
            for_alert(
                &a,
                &Alert {
                    rule,
                    as_of,
                    started_at: Some(d("2026-10-01")),
                    figures: &figures,
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
    fn aging_buckets_split_at_their_bounds() {
        let end = day(d("2026-11-20"));
        let mut a = account();
        a.invoices = [0, 1, 30, 31, 60, 61, 90, 91]
            .iter()
            .map(|late| Invoice {
                amount: 1.0,
                due: end - late,
            })
            .collect();
        assert_eq!(aging(&a, end), [1.0, 2.0, 2.0, 2.0, 1.0]);
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
            },
            12,
            false,
        )
        .unwrap();
        assert!(c.caption.contains("没有拜访记录"), "{}", c.caption);
    }

    #[test]
    fn pareto_curve_reaches_the_top() {
        let shares = [0.5, 0.2, 0.1, 0.1, 0.05, 0.05];
        for en in [false, true] {
            let (w, h, px) = decode(&pareto_png(&shares, 0.8, 0.95, en).unwrap());
            assert_eq!((w, h), (WIDTH, HEIGHT));
            assert!(has(&px, BAR), "curve drawn");
            assert!(has(&px, SHADE), "80% line drawn");
        }
    }

    #[test]
    fn short_amounts() {
        assert_eq!(short(1_234_567.0, true), "1.2M");
        assert_eq!(short(45_000.0, true), "45k");
        assert_eq!(short(999.0, true), "999");
        assert_eq!(short(1_234_567.0, false), "123万");
        assert_eq!(short(45_000.0, false), "4.5万");
        assert_eq!(short(250_000_000.0, false), "2.5亿");
    }
}
