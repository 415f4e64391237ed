//! The stock chart: days of stock cover of an account's main SKUs against
//! the days needed for the coming season. Pure: reads the metrics it is
//! given.

use anyhow::Result;
use plotters::prelude::*;

use super::draw::{BAR, LINE, area, bar_key, dashes, legend, line_key};
use super::png::{Chart, DrawResult, picture};
use super::text::{family, labels};
use crate::metrics::AccountMetrics;

pub(super) fn stock_chart(a: &AccountMetrics, needed: Option<f64>, en: bool) -> Result<Chart> {
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
                s.sku.to_string()
            } else {
                format!("#{}", i + 1)
            };
            (shown, s.days, &*s.sku)
        })
        .collect();
    let (png, ()) = picture("stock chart", |rgb| draw_stock(rgb, &bars, needed, en))?;
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
    Ok(Chart { png, caption })
}

fn draw_stock(
    rgb: &mut [u8],
    bars: &[(String, f64, &str)],
    needed: Option<f64>,
    en: bool,
) -> DrawResult<()> {
    let l = labels(en);
    let f = family(en);
    let root = area(rgb)?;
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
        .legend(bar_key(BAR));
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
            .legend(line_key(LINE));
    }
    legend(&mut chart, f)?;
    root.present()?;
    Ok(())
}
