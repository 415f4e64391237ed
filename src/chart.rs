//! Chart: the picture in a warning email — an account's monthly revenue
//! (bars) and gross-margin % (line) over the last months, with the months of
//! the alert's window shaded — drawn in-process to PNG bytes.
//!
//! Uses plotters with the DejaVu Sans font shipped in `assets/` (its licence
//! beside it). Only Latin text is drawn: Chinese names stay in the mail's
//! text, out of the image, so no CJK font is needed. Pure: reads the metrics
//! it is given and touches nothing else.

use anyhow::{Context, Result, anyhow};
use chrono::{Datelike, NaiveDate};
use plotters::prelude::*;

use crate::metrics::{AccountMetrics, Measure, day};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 260;
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

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
pub fn months(a: &AccountMetrics, as_of: NaiveDate, n: usize) -> Vec<Month> {
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

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            tracing::error!("the shipped chart font does not load; charts will have no text");
        }
    });
}

/// Draws the months as a PNG. `shade_from` is the first month (index into
/// `months`) of the alert's window, shaded to show the period compared.
pub fn monthly_png(months: &[Month], shade_from: Option<usize>) -> Result<Vec<u8>> {
    register_font();
    let mut rgb = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    draw(&mut rgb, months, shade_from).map_err(|e| anyhow!("drawing the chart: {e}"))?;
    encode_png(&rgb)
}

const BAR: RGBColor = RGBColor(79, 129, 189);
const LINE: RGBColor = RGBColor(192, 80, 77);
const SHADE: RGBColor = RGBColor(255, 236, 179);

fn draw(
    rgb: &mut [u8],
    months: &[Month],
    shade_from: Option<usize>,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(rgb, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = months.len().max(1);
    let max_rev = months
        .iter()
        .map(|m| m.revenue)
        .fold(0.0_f64, f64::max)
        .max(1.0)
        * 1.1;
    let (min_gm, max_gm) = months
        .iter()
        .filter_map(|m| m.margin_pct)
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (min_gm, max_gm) = if min_gm > max_gm {
        (0.0, 100.0)
    } else {
        ((min_gm - 2.0).floor(), (max_gm + 2.0).ceil())
    };
    let labels: Vec<String> = months
        .iter()
        .map(|m| format!("{}-{:02}", m.start.year() % 100, m.start.month()))
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .right_y_label_area_size(44)
        .build_cartesian_2d(0f64..n as f64, 0f64..max_rev)?
        .set_secondary_coord(0f64..n as f64, min_gm..max_gm);
    let every = n.div_ceil(12).max(1);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if i < labels.len() && i.is_multiple_of(every) && (x - x.floor()).abs() < 1e-9 {
                labels[i].clone()
            } else {
                String::new()
            }
        })
        .y_desc("revenue")
        .y_label_formatter(&|v| short(*v))
        .label_style(("sans-serif", 11))
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("GM %")
        .label_style(("sans-serif", 11))
        .draw()?;
    if let Some(from) = shade_from.filter(|f| *f < n) {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(from as f64, 0.0), (n as f64, max_rev)],
            SHADE.filled(),
        )))?;
    }
    chart.draw_series(months.iter().enumerate().map(|(i, m)| {
        Rectangle::new(
            [
                (i as f64 + 0.15, 0.0),
                (i as f64 + 0.85, m.revenue.max(0.0)),
            ],
            BAR.filled(),
        )
    }))?;
    chart.draw_secondary_series(LineSeries::new(
        months
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.margin_pct.map(|g| (i as f64 + 0.5, g))),
        LINE.stroke_width(2),
    ))?;
    root.present()?;
    Ok(())
}

/// 1234567 -> "1.2M", 45000 -> "45k".
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The Pareto curve of a book: accounts ranked by revenue (x, % of
/// accounts) against cumulative share of revenue (y, %), with the tier
/// thresholds drawn. `shares` are the accounts' shares (0..1), largest first.
pub fn pareto_png(shares: &[f64], a_share: f64, b_share: f64) -> Result<Vec<u8>> {
    register_font();
    let mut rgb = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    draw_pareto(&mut rgb, shares, a_share, b_share)
        .map_err(|e| anyhow!("drawing the Pareto chart: {e}"))?;
    encode_png(&rgb)
}

fn encode_png(rgb: &[u8]) -> Result<Vec<u8>> {
    let mut png = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png, WIDTH, HEIGHT);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().context("writing the PNG header")?;
        w.write_image_data(rgb).context("writing the PNG data")?;
    }
    Ok(png)
}

fn draw_pareto(
    rgb: &mut [u8],
    shares: &[f64],
    a_share: f64,
    b_share: f64,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
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
        .x_desc("% of accounts, largest first")
        .y_desc("% of revenue")
        .label_style(("sans-serif", 11))
        .draw()?;
    for (t, color) in [(a_share, SHADE), (b_share, RGBColor(220, 220, 220))] {
        chart.draw_series(LineSeries::new(
            [(0.0, t * 100.0), (100.0, t * 100.0)],
            color.stroke_width(2),
        ))?;
    }
    let mut cum = 0.0;
    let points: Vec<(f64, f64)> = std::iter::once((0.0, 0.0))
        .chain(shares.iter().enumerate().map(|(i, s)| {
            cum += s;
            ((i + 1) as f64 / n * 100.0, cum * 100.0)
        }))
        .collect();
    chart.draw_series(AreaSeries::new(points.clone(), 0.0, BAR.mix(0.25)))?;
    chart.draw_series(LineSeries::new(points, BAR.stroke_width(2)))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn month(y: i32, m: u32, revenue: f64, gm: f64) -> Month {
        Month {
            start: NaiveDate::from_ymd_opt(y, m, 1).unwrap(),
            revenue,
            margin_pct: Some(gm),
        }
    }

    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        (info.width, info.height, buf)
    }

    #[test]
    fn draws_a_png_with_bars_line_and_shade() {
        let months: Vec<Month> = (1..=12)
            .map(|m| month(2026, m, 1000.0 * f64::from(m), 20.0 - f64::from(m) * 0.5))
            .collect();
        let png_bytes = monthly_png(&months, Some(9)).unwrap();
        assert_eq!(&png_bytes[1..4], b"PNG");
        let (w, h, px) = decode(&png_bytes);
        assert_eq!((w, h), (WIDTH, HEIGHT));
        let has = |c: RGBColor| px.chunks(3).any(|p| p == [c.0, c.1, c.2]);
        assert!(has(BAR), "bars drawn");
        assert!(has(SHADE), "alert window shaded");
        assert!(has(LINE), "margin line drawn");
        // Text was rendered: some dark grey anti-aliased pixels exist.
        assert!(
            px.chunks(3)
                .any(|p| p[0] < 100 && p[0] == p[1] && p[1] == p[2])
        );
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
        let (_, _, px) = decode(&monthly_png(&months, None).unwrap());
        assert!(!px.chunks(3).any(|p| p == [SHADE.0, SHADE.1, SHADE.2]));
    }

    #[test]
    fn pareto_curve_reaches_the_top() {
        let shares = [0.5, 0.2, 0.1, 0.1, 0.05, 0.05];
        let (w, h, px) = decode(&pareto_png(&shares, 0.8, 0.95).unwrap());
        assert_eq!((w, h), (WIDTH, HEIGHT));
        assert!(
            px.chunks(3).any(|p| p == [BAR.0, BAR.1, BAR.2]),
            "curve drawn"
        );
        assert!(
            px.chunks(3).any(|p| p == [SHADE.0, SHADE.1, SHADE.2]),
            "80% line drawn"
        );
    }

    #[test]
    fn short_amounts() {
        assert_eq!(short(1_234_567.0), "1.2M");
        assert_eq!(short(45_000.0), "45k");
        assert_eq!(short(999.0), "999");
    }
}
