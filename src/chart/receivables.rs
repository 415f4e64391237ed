//! The receivables charts: open invoices by age (not due, then 1-30, 31-60,
//! 61-90 and over 90 days past due), and receivables against the credit
//! limit. Pure: reads the metrics it is given.

use anyhow::Result;
use plotters::prelude::*;

use super::draw::{BAR, LIMIT, LINE, area, bar_key, legend};
use super::png::{Chart, DrawResult, picture};
use super::text::{family, labels, short};
use crate::metrics::AccountMetrics;
use crate::model::dates::Day;

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

pub(super) fn aging_chart(a: &AccountMetrics, end: Day, en: bool) -> Result<Chart> {
    let b = aging(a, end);
    let (png, ()) = picture("aging chart", |rgb| draw_aging(rgb, &b, en))?;
    let as_of = crate::model::dates::date_of(end);
    let caption = if en {
        format!(
            "Open invoices on {as_of} by days past their due date: blue not yet due, red overdue. The amount axis starts at 0."
        )
    } else {
        format!(
            "截至 {as_of} 的未结发票，按超过到期日的天数分组：蓝色为未到期，红色为已逾期。金额轴从 0 起。"
        )
    };
    Ok(Chart { png, caption })
}

fn draw_aging(rgb: &mut [u8], b: &[f64; 5], en: bool) -> DrawResult<()> {
    let l = labels(en);
    let f = family(en);
    let root = area(rgb)?;
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
        .legend(bar_key(BAR));
    chart
        .draw_series((1..5).map(|i| {
            Rectangle::new(
                [(i as f64 - 0.3, 0.0), (i as f64 + 0.3, b[i])],
                LINE.filled(),
            )
        }))?
        .label(l.overdue)
        .legend(bar_key(LINE));
    legend(&mut chart, f)?;
    root.present()?;
    Ok(())
}

pub(super) fn credit_chart(a: &AccountMetrics, end: Day, en: bool) -> Result<Chart> {
    let b = aging(a, end);
    let not_due = b[0];
    let overdue: f64 = b[1..].iter().sum();
    let limit = a.credit_limit.unwrap_or(0.0);
    let (png, ()) = picture("credit chart", |rgb| {
        draw_credit(rgb, not_due, overdue, limit, en)
    })?;
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
    Ok(Chart { png, caption })
}

fn draw_credit(rgb: &mut [u8], not_due: f64, overdue: f64, limit: f64, en: bool) -> DrawResult<()> {
    let l = labels(en);
    let f = family(en);
    let root = area(rgb)?;
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
        .legend(bar_key(BAR));
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(not_due, -0.5), (not_due + overdue, 0.5)],
            LINE.filled(),
        )))?
        .label(l.overdue)
        .legend(bar_key(LINE));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::testing::{account, d};
    use crate::metrics::Invoice;
    use crate::model::dates::day;

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
}
