//! The monthly chart: revenue per month (bars) and gross margin % (line)
//! over the last months, the alert's window shaded, with its caption —
//! the chart of order and margin rules, and of any rule without a chart of
//! its own. Pure: reads the metrics it is given.

use anyhow::Result;
use chrono::{Datelike, NaiveDate};
use plotters::prelude::*;

use super::draw::{BAR, LINE, SHADE, area, bar_key, legend, line_key};
use super::png::{Chart, DrawResult, picture};
use super::text::{family, labels, register_font, short};
use crate::metrics::{AccountMetrics, Measure};
use crate::model::dates::day;
use crate::rules::RuleValues;

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

/// The monthly chart of the alert's account over the last `months`
/// months, shading the window its rule looks at (the rule's own: the last
/// 90 days as shipped, for declining orders and margin slips), else the
/// months since it started.
pub(super) fn monthly_chart(
    a: &AccountMetrics,
    rule: &str,
    (as_of, started_at): (NaiveDate, Option<NaiveDate>),
    v: &RuleValues,
    months: usize,
    en: bool,
) -> Result<Chart> {
    let ms = months_of(a, as_of, months);
    let window = match rule {
        "declining_orders" => Some(v.decline_days.days),
        "margin_slip" => Some(v.margin_days.days),
        _ => None,
    };
    let since = match window {
        Some(d) => as_of - chrono::Days::new(d.unsigned_abs().max(1) - 1),
        None => started_at.unwrap_or(as_of),
    };
    let since_month = since.with_day(1).unwrap_or(since);
    let shade = ms
        .iter()
        .position(|m| m.start >= since_month)
        .or(Some(ms.len().saturating_sub(1)));
    let (png, gm_from_zero) = monthly(&ms, shade, en)?;
    let caption = monthly_caption(rule, since, ms.len(), as_of, gm_from_zero, v, en);
    Ok(Chart { png, caption })
}

/// What the monthly chart shows: the months, where the margin axis starts,
/// and what is shaded.
fn monthly_caption(
    rule: &str,
    since: NaiveDate,
    n: usize,
    as_of: NaiveDate,
    gm_from_zero: bool,
    v: &RuleValues,
    en: bool,
) -> String {
    let d = v.decline_days.days;
    let (m, base) = (v.margin_days.days, v.baseline_days.days);
    let l = labels(en);
    let axis = match (gm_from_zero, en) {
        (true, _) => String::new(),
        (false, false) => "毛利率轴不从 0 起，只显示数据所在的区间；".into(),
        (false, true) => "The margin axis does not start at 0: it spans the data's range. ".into(),
    };
    let shaded = match (rule, en) {
        ("declining_orders", false) => {
            format!("阴影为规则比较的近 {d} 天（{since} 起），与之前 {d} 天及去年同期比较。")
        }
        ("declining_orders", true) => format!(
            "Shaded: the last {d} days (from {since}) the rule compares with the {d} days before and the same period last year."
        ),
        ("margin_slip", false) => {
            format!("阴影为近 {m} 天（{since} 起），其前 {base} 天为毛利率基线。")
        }
        ("margin_slip", true) => format!(
            "Shaded: the last {m} days (from {since}); the {base} days before are the margin baseline."
        ),
        (_, false) => format!("阴影为预警开始（{since}）以来的月份。"),
        (_, true) => format!("Shaded: the months since the alert started ({since})."),
    };
    if en {
        format!(
            "Monthly {} (bars, left axis from 0) and gross margin % (line, right axis), the last {} months; the current month counts up to {}. {axis}{shaded}",
            l.revenue, n, as_of
        )
    } else {
        format!(
            "近 {} 个月每月{}（柱，左轴从 0 起）与毛利率（线，右轴），本月只计到 {}。{axis}{shaded}",
            n, l.revenue, as_of
        )
    }
}

/// The monthly chart as a PNG, and whether its margin axis starts at
/// zero. `shade_from` is the first month (index into `months`) of the
/// alert's window, shaded to show the period compared.
pub(super) fn monthly(
    months: &[Month],
    shade_from: Option<usize>,
    en: bool,
) -> Result<(Vec<u8>, bool)> {
    register_font();
    picture("chart", |rgb| draw_monthly(rgb, months, shade_from, en))
}

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

/// A month on the axis: `26-03`.
fn month_label(start: NaiveDate) -> String {
    format!("{}-{:02}", start.year() % 100, start.month())
}

/// The label of tick `x`: the month's on every `every`th whole month, else none.
fn every_nth(labels: &[String], x: f64, every: usize) -> String {
    let i = x.floor() as usize;
    if i < labels.len() && i.is_multiple_of(every) && (x - x.floor()).abs() < 1e-9 {
        labels[i].clone()
    } else {
        String::new()
    }
}

fn draw_monthly(
    rgb: &mut [u8],
    months: &[Month],
    shade_from: Option<usize>,
    en: bool,
) -> DrawResult<bool> {
    let l = labels(en);
    let f = family(en);
    let root = area(rgb)?;
    let n = months.len().max(1);
    let max_rev = months
        .iter()
        .map(|m| m.revenue)
        .fold(0.0_f64, f64::max)
        .max(1.0)
        * 1.25;
    let (min_gm, max_gm, from_zero) = margin_axis(months);
    let labels_x: Vec<String> = months.iter().map(|m| month_label(m.start)).collect();
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
        .x_label_formatter(&|x| every_nth(&labels_x, *x, every))
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
        .legend(bar_key(BAR));
    chart
        .draw_secondary_series(LineSeries::new(
            months
                .iter()
                .enumerate()
                .filter_map(|(i, m)| m.margin_pct.map(|g| (i as f64 + 0.5, g))),
            LINE.stroke_width(2),
        ))?
        .label(l.margin)
        .legend(line_key(LINE));
    legend(&mut chart, f)?;
    root.present()?;
    Ok(from_zero)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::draw::LINE;
    use crate::chart::png::{HEIGHT, WIDTH};
    use crate::chart::testing::{decode, has, inked, month};

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
}
