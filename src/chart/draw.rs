//! Chart drawing pieces every kind of chart shares: the colours, a white
//! drawing area over the canvas, the legend box and its keys, and a dashed
//! line. Pure.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::png::{DrawResult, HEIGHT, WIDTH};

pub(super) const BAR: RGBColor = RGBColor(79, 129, 189);
pub(super) const LINE: RGBColor = RGBColor(192, 80, 77);
pub(super) const SHADE: RGBColor = RGBColor(255, 236, 179);
pub(super) const LIMIT: RGBColor = RGBColor(60, 60, 60);
pub(super) const OPEN: RGBColor = RGBColor(230, 145, 56);

/// The whole canvas as a white drawing area.
pub(super) fn area(rgb: &mut [u8]) -> DrawResult<DrawingArea<BitMapBackend<'_>, Shift>> {
    let root = BitMapBackend::with_buffer(rgb, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    Ok(root)
}

/// A legend key for a series of bars: a filled square.
pub(super) fn bar_key(c: RGBColor) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> {
    move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled())
}

/// A legend key for a line: a short stroke.
pub(super) fn line_key(c: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new([(x, y), (x + 14, y)], c.stroke_width(2))
}

/// The legend box in the upper left corner.
pub(super) fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
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

/// A dashed horizontal line at `y` from `x0` to `x1`.
pub(super) fn dashes(x0: f64, x1: f64, y: f64) -> impl Iterator<Item = PathElement<(f64, f64)>> {
    let step = (x1 - x0) / 40.0;
    (0..40).step_by(2).map(move |i| {
        let a = x0 + step * f64::from(i);
        PathElement::new([(a, y), (a + step, y)], LINE.stroke_width(2))
    })
}
