//! Main SKUs and stock cover: an account's largest SKUs by trailing-12-
//! month revenue and, where the inventory knows them, how many days the
//! stock on hand lasts at the account's own demand (stock held for it) or
//! the whole book's (the warehouse's). Touches nothing but the timeline's
//! memory.

use std::collections::HashMap;
use std::sync::Arc;

use super::account::{AccountMetrics, DEMAND_DAYS, MAIN_SKUS, StockCover};
use super::parts::SkuLog;
use crate::model::dates::Day;

/// The book's SKUs, shared by every day of a timeline.
#[derive(Debug)]
pub(super) struct SkuBook {
    /// SKU names, by number.
    pub(super) names: Arc<Vec<String>>,
    /// The same names, by number, each held once for the main SKUs and
    /// stock cover of every account to share.
    pub(super) texts: Vec<Arc<str>>,
    /// SKU lines of every account with any, in account id order (the
    /// order the book's per-SKU demand is summed in).
    pub(super) lines: Vec<SkuLog>,
    /// sku -> stock not held for one account.
    pub(super) warehouse: HashMap<u32, f64>,
}

/// What the accounts of one snapshot share while their main SKUs are
/// found: a buffer for the sums, and the book's demand per SKU, summed on
/// first use.
#[derive(Default)]
pub(super) struct SkuScratch {
    sums: Vec<(u32, f64, f64)>,
    book_qty: Option<Vec<f64>>,
}

impl SkuScratch {
    /// The book's demand per SKU over the `DEMAND_DAYS` to `end`
    /// (by SKU number), summed now unless it was for this snapshot.
    pub(super) fn book_qty(&mut self, book: &SkuBook, end: Day) -> &[f64] {
        self.book_qty
            .get_or_insert_with(|| book.book_qty(end - DEMAND_DAYS, end))
    }

    /// The book's demand per SKU, if an account of this snapshot needed it.
    pub(super) fn take_book_qty(&mut self) -> Option<Vec<f64>> {
        self.book_qty.take()
    }
}

impl SkuBook {
    /// The account's main SKUs by trailing-12-month revenue (ties by name)
    /// and, for those the inventory knows, their days of cover. Sums run
    /// over the lines in day order, as the store returns them.
    ///
    /// Fills `m.main_skus` and `m.stock`, from `m.sku_days` and the stock
    /// held for the account, `own_stock` (by SKU); the names are the
    /// book's, shared, not copies.
    pub(super) fn main_skus_and_cover(
        &self,
        own_stock: &[(u32, f64)],
        m: &mut AccountMetrics,
        end: Day,
        scratch: &mut SkuScratch,
    ) {
        let SkuScratch { sums, book_qty } = scratch;
        let days = &m.sku_days;
        let since_12m = end - 365;
        let since_recent = end - DEMAND_DAYS;
        sums.clear();
        let lo = days.upto(since_12m);
        for l in days.range(lo..days.len()) {
            let (d, sku, q, v) = (l.day, l.sku, l.qty, l.revenue);
            let k = match sums.iter().position(|s| s.0 == sku) {
                Some(k) => k,
                None => {
                    sums.push((sku, 0.0, 0.0));
                    sums.len() - 1
                }
            };
            sums[k].1 += v;
            if d > since_recent {
                sums[k].2 += q;
            }
        }
        sums.retain(|s| s.1 > 0.0);
        let names = &self.names;
        sums.sort_by(|x, y| {
            y.1.total_cmp(&x.1)
                .then_with(|| names[x.0 as usize].cmp(&names[y.0 as usize]))
        });
        sums.truncate(MAIN_SKUS);
        let (main, stock) = (&mut m.main_skus, &mut m.stock);
        main.truncate(sums.len());
        // Sized to what it holds: one per account of a large book.
        main.reserve_exact(sums.len() - main.len());
        stock.clear();
        for (k, &(sku, _, qty)) in sums.iter().enumerate() {
            let name = &self.texts[sku as usize];
            match main.get_mut(k) {
                Some(have) if Arc::ptr_eq(have, name) => {}
                Some(have) => *have = name.clone(),
                None => main.push(name.clone()),
            }
            let own = own_stock
                .binary_search_by_key(&sku, |s| s.0)
                .ok()
                .map(|k| own_stock[k].1);
            let (on_hand, demand, dedicated) = match own {
                Some(on_hand) => (Some(on_hand), qty, true),
                None => match self.warehouse.get(&sku) {
                    Some(on_hand) => (
                        Some(*on_hand),
                        book_qty.get_or_insert_with(|| self.book_qty(since_recent, end))
                            [sku as usize],
                        false,
                    ),
                    None => (None, 0.0, false),
                },
            };
            if let Some(on_hand) = on_hand {
                let daily_qty = demand / f64::from(DEMAND_DAYS);
                stock.push(StockCover {
                    sku: name.clone(),
                    on_hand,
                    daily_qty,
                    days: if daily_qty > 0.0 {
                        on_hand / daily_qty
                    } else {
                        -1.0
                    },
                    dedicated,
                });
            }
        }
    }

    /// The whole book's quantity per SKU over `(since, end]`, summed
    /// account by account in id order.
    fn book_qty(&self, since: Day, end: Day) -> Vec<f64> {
        let mut out = vec![0.0; self.names.len()];
        for l in &self.lines {
            let hi = l.days.upto(end);
            let lo = l.days.upto_from(hi, since);
            for x in l.days.range(lo..hi) {
                out[x.sku as usize] += x.qty;
            }
        }
        out
    }
}
