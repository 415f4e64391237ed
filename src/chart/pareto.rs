//! The Pareto chart of the review: accounts ranked by revenue against
//! their cumulative share, with the tier thresholds drawn. Pure.

use anyhow::Result;
use plotters::prelude::*;

use super::draw::{BAR, SHADE, area, line_key};
use super::png::{DrawResult, picture};
use super::text::{family, labels, register_font};

/// The Pareto curve of a book: accounts ranked by revenue (x, % of
/// accounts) against cumulative share of revenue (y, %), with the tier
/// thresholds drawn. `shares` are the accounts' shares (0..1), largest first.
pub fn pareto_png(shares: &[f64], a_share: f64, b_share: f64, en: bool) -> Result<Vec<u8>> {
    register_font();
    let (png, ()) = picture("Pareto chart", |rgb| {
        draw_pareto(rgb, shares, a_share, b_share, en)
    })?;
    Ok(png)
}

/// The curve's points: (% of accounts, cumulative % of the total), from
/// (0, 0). An account at zero or below is in no total (the ranking's
/// convention): it adds nothing, so returns never bend the curve back
/// under 100%.
fn curve(shares: &[f64]) -> Vec<(f64, f64)> {
    let n = shares.len().max(1) as f64;
    let mut cum = 0.0;
    std::iter::once((0.0, 0.0))
        .chain(shares.iter().enumerate().map(|(i, s)| {
            cum += s.max(0.0);
            ((i + 1) as f64 / n * 100.0, cum * 100.0)
        }))
        .collect()
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
    let root = area(rgb)?;
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
            .legend(line_key(color));
    }
    let points = curve(shares);
    chart.draw_series(AreaSeries::new(points.clone(), 0.0, BAR.mix(0.25)))?;
    chart
        .draw_series(LineSeries::new(points, BAR.stroke_width(2)))?
        .label(l.pareto_curve)
        .legend(line_key(BAR));
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
    use crate::chart::png::{HEIGHT, WIDTH};
    use crate::chart::testing::{decode, has};

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
    fn a_net_negative_account_does_not_bend_the_curve_back() {
        let pts = curve(&[0.75, 0.25, 0.0, -0.5]);
        assert_eq!(
            pts,
            [
                (0.0, 0.0),
                (25.0, 75.0),
                (50.0, 100.0),
                (75.0, 100.0),
                (100.0, 100.0)
            ]
        );
        assert_eq!(curve(&[]), [(0.0, 0.0)]);
    }
}
