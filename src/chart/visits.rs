//! The visits chart: the gaps between an account's visits over the last
//! year against its tier's cadence, the last bar the days since the last
//! visit. Pure: reads the metrics it is given.

use anyhow::Result;
use chrono::{Datelike, NaiveDate};
use plotters::prelude::*;

use super::draw::{BAR, LINE, OPEN, area, bar_key, dashes, legend, line_key};
use super::png::{Chart, DrawResult, HEIGHT, WIDTH, picture};
use super::text::{family, labels};
use crate::metrics::AccountMetrics;
use crate::model::dates::{Day, day};

/// The gaps between the visits of the last year (at most the last 12),
/// the last bar the days since the last visit, against the tier's cadence.
pub(super) fn visits_chart(
    a: &AccountMetrics,
    as_of: NaiveDate,
    cadence: i64,
    en: bool,
) -> Result<Chart> {
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
            let d = crate::model::dates::date_of(w[1]);
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
    let (png, ()) = picture("visits chart", |rgb| draw_visits(rgb, &bars, cadence, en))?;
    let tier = a.tier;
    let caption = match (days.last(), en) {
        (Some(last), false) => format!(
            "每根柱为两次拜访之间的天数（标注为后一次拜访的日期，近一年内最多 12 次）；橙色柱为上次拜访（{}）至 {as_of} 的天数。虚线为 {tier} 类客户要求的拜访周期 {cadence} 天，纵轴从 0 起。",
            crate::model::dates::date_of(*last)
        ),
        (Some(last), true) => format!(
            "Each bar is the days between two visits (labelled with the later visit's date; at most 12 in the last year); the orange bar is the days from the last visit ({}) to {as_of}. The dashed line is tier {tier}'s cadence of {cadence} days; the axis starts at 0.",
            crate::model::dates::date_of(*last)
        ),
        (None, false) => {
            format!("该客户没有拜访记录。虚线为 {tier} 类客户要求的拜访周期 {cadence} 天。")
        }
        (None, true) => format!(
            "The account has no visit on record. The dashed line is tier {tier}'s cadence of {cadence} days."
        ),
    };
    Ok(Chart { png, caption })
}

fn draw_visits(
    rgb: &mut [u8],
    bars: &[(String, i64, bool)],
    cadence: i64,
    en: bool,
) -> DrawResult<()> {
    let l = labels(en);
    let f = family(en);
    let root = area(rgb)?;
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
        .legend(bar_key(BAR));
    chart
        .draw_series(bars.iter().enumerate().filter(|(_, b)| b.2).map(|(i, b)| {
            Rectangle::new(
                [(i as f64 + 0.2, 0.0), (i as f64 + 0.8, b.1 as f64)],
                OPEN.filled(),
            )
        }))?
        .label(l.open_gap)
        .legend(bar_key(OPEN));
    chart
        .draw_series(dashes(0.0, n as f64, cadence as f64))?
        .label(format!("{} {cadence} {}", l.cadence, l.days))
        .legend(line_key(LINE));
    legend(&mut chart, f)?;
    root.present()?;
    Ok(())
}
