//! The Pareto chart of the review: accounts ranked by what the tiers are
//! ranked by (revenue, gross profit, or both curves) against their
//! cumulative share, with the tier thresholds drawn. Reads the snapshot
//! it is given; pure.

use anyhow::Result;
use plotters::prelude::*;

use super::draw::{BAR, LINE, SHADE, area, line_key};
use super::png::{DrawResult, picture};
use super::text::{family, labels, register_font};
use crate::config::{TierBasis, TierConfig};
use crate::metrics::Snapshot;

/// The review's Pareto chart of a snapshot's book: the curve of what the
/// tiers are cut on (`tiers.by`; both curves under `both`), with the
/// tier lines.
pub fn book_pareto_png(snap: &Snapshot, tiers: &TierConfig, en: bool) -> Result<Vec<u8>> {
    // Each largest first: the snapshot is in the basis's order.
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(|a, b| b.total_cmp(a));
        v
    };
    let revenue = (tiers.by != TierBasis::GrossProfit)
        .then(|| sorted(snap.accounts.iter().map(|a| a.share).collect()));
    let gross_profit = (tiers.by != TierBasis::Revenue).then(|| sorted(snap.gross_profit_shares()));
    let shares = ParetoShares {
        revenue: revenue.as_deref(),
        gross_profit: gross_profit.as_deref(),
    };
    pareto_png(shares, tiers.a_share, tiers.b_share, en)
}

/// The accounts' shares (0..1, each largest first) of the measures the
/// tiers are ranked by: revenue, gross profit, or both (`tiers.by`).
#[derive(Debug, Clone, Copy)]
pub struct ParetoShares<'a> {
    pub revenue: Option<&'a [f64]>,
    pub gross_profit: Option<&'a [f64]>,
}

/// The Pareto curves of a book: accounts ranked largest first (x, % of
/// accounts) against the cumulative share (y, %) of each measure the
/// tiers are ranked by, with the tier thresholds drawn, so the lines meet
/// the curve the tiers are cut on.
pub fn pareto_png(
    shares: ParetoShares<'_>,
    a_share: f64,
    b_share: f64,
    en: bool,
) -> Result<Vec<u8>> {
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
    shares: ParetoShares<'_>,
    a_share: f64,
    b_share: f64,
    en: bool,
) -> DrawResult<()> {
    let l = labels(en);
    let y_desc = match (shares.revenue, shares.gross_profit) {
        (Some(_), Some(_)) => l.pareto_y_both,
        (None, Some(_)) => l.pareto_y_gp,
        _ => l.pareto_y,
    };
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
        .y_desc(y_desc)
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
    // The first curve drawn is shaded beneath.
    let curves = [
        (shares.revenue, BAR, l.pareto_curve),
        (shares.gross_profit, LINE, l.pareto_curve_gp),
    ];
    let mut shaded = false;
    for (s, color, name) in curves {
        let Some(s) = s else { continue };
        let points = curve(s);
        if !shaded {
            chart.draw_series(AreaSeries::new(points.clone(), 0.0, color.mix(0.25)))?;
            shaded = true;
        }
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(line_key(color));
    }
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
    use crate::chart::testing::{d, decode, has};

    #[test]
    fn pareto_curve_reaches_the_top() {
        let shares = [0.5, 0.2, 0.1, 0.1, 0.05, 0.05];
        let gp = [0.6, 0.2, 0.1, 0.05, 0.05, 0.0];
        for en in [false, true] {
            // Each basis draws its own curve: revenue (blue), gross
            // profit (red), or both.
            for (revenue, gross_profit) in [
                (Some(&shares[..]), None),
                (None, Some(&gp[..])),
                (Some(&shares[..]), Some(&gp[..])),
            ] {
                let s = ParetoShares {
                    revenue,
                    gross_profit,
                };
                let (w, h, px) = decode(&pareto_png(s, 0.8, 0.95, en).unwrap());
                assert_eq!((w, h), (WIDTH, HEIGHT));
                assert_eq!(has(&px, BAR), revenue.is_some(), "revenue curve drawn");
                assert_eq!(has(&px, LINE), gross_profit.is_some(), "gross profit");
                assert!(has(&px, SHADE), "80% line drawn");
            }
        }
    }

    /// The review's chart draws the curve the tiers are cut on: revenue
    /// (blue) by revenue, gross profit (red) by gross profit, both under
    /// `both`; it drew the revenue curve whatever the basis.
    #[test]
    fn the_books_curve_follows_the_basis() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("k.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO accounts (id, name, active, updated_at) VALUES ('X', 'x', 1, 'x'), ('Y', 'y', 1, 'x');
             INSERT INTO orders (order_id, line, account_id, date, sku, qty, revenue, cost) VALUES
               ('A', '1', 'X', '2026-11-02', 'S1', 1, 300, 100), ('B', '1', 'Y', '2026-11-02', 'S1', 1, 100, 90);",
        )
        .unwrap();
        for (by, revenue, gross_profit) in [
            (TierBasis::Revenue, true, false),
            (TierBasis::GrossProfit, false, true),
            (TierBasis::Both, true, true),
        ] {
            let tiers = TierConfig {
                by,
                ..TierConfig::default()
            };
            let snap = crate::metrics::build(&conn, d("2026-11-30"), &tiers).unwrap();
            let (_, _, px) = decode(&book_pareto_png(&snap, &tiers, false).unwrap());
            assert_eq!(has(&px, BAR), revenue, "{by}");
            assert_eq!(has(&px, LINE), gross_profit, "{by}");
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
