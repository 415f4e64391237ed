//! Test helpers of the charts: a decoded picture, its colours and inked
//! pixels, a month, a date and an account.

use chrono::NaiveDate;
use plotters::style::RGBColor;

use super::monthly::Month;
use crate::metrics::{AccountMetrics, Invoice, StockCover, Visit};
use crate::model::dates::Day;

pub fn month(y: i32, m: u32, revenue: f64, gm: f64) -> Month {
    Month {
        start: NaiveDate::from_ymd_opt(y, m, 1).unwrap(),
        revenue,
        margin_pct: Some(gm),
    }
}

pub fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
    dec.set_transformations(png::Transformations::EXPAND);
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    (info.width, info.height, buf)
}

pub fn has(px: &[u8], c: RGBColor) -> bool {
    px.chunks(3).any(|p| p == [c.0, c.1, c.2])
}

/// Dark text pixels in the image.
pub fn inked(px: &[u8]) -> usize {
    px.chunks(3)
        .filter(|p| p[0] < 90 && p[0] == p[1] && p[1] == p[2])
        .count()
}

pub fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

pub fn account() -> AccountMetrics {
    let mut a = AccountMetrics::empty("K1", "客户");
    a.tier = crate::model::Tier::A;
    a
}

/// A tier A account with evidence for every kind of chart at `end`:
/// visits, invoices due and overdue, a credit limit, and two SKUs' stock.
pub fn evidence_account(end: Day) -> AccountMetrics {
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
    a
}
