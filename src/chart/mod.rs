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
//! the labels in `text` (`scripts/chart-font.sh` rebuilds it; a test checks
//! every label's characters are in it). No system font is needed or used.
//! Data (names, SKUs with other characters) stays out of the image. Pure:
//! reads the metrics it is given and touches nothing else.
//!
//! The rooms: `text` (fonts, labels, ticks), `png` (canvas and encoding),
//! `draw` (colours, legend, keys), one file per kind of chart (`monthly`,
//! `visits`, `receivables`, `stock`, `pareto`), and `alert`, which picks
//! the chart of an alert's rule. This file only declares them and
//! re-exports what other stages use.

mod alert;
mod draw;
mod monthly;
mod pareto;
mod png;
mod receivables;
mod stock;
mod text;
mod visits;

#[cfg(test)]
mod testing;

pub use alert::{Alert, for_alert};
pub use monthly::Month;
pub use pareto::{ParetoShares, book_pareto_png, pareto_png};
pub use png::Chart;
pub use receivables::aging;
