//! A timeline brought up to date in place after the daemon's metrics
//! read some accounts' order lines or visits again (`metrics::live`),
//! instead of assembled anew from every account's parts: the same
//! timeline, to the bit, as `Timeline::of` gives for the parts as they
//! are now; and an account's metrics kept from the last snapshot of the
//! same day (`Timeline::restand`). Touches nothing but the timeline and
//! the metrics it is given.

use std::collections::HashSet;
use std::sync::Arc;

use super::{
    Base, Reuse, Standing, Timeline, book_days, book_series, sku_lines, stand, unlisted_of,
};
use crate::metrics::account::AccountMetrics;
use crate::metrics::parts::Parts;
use crate::metrics::series::{Measure, Series};
use crate::metrics::stock::SkuScratch;
use crate::model::dates::{Day, day};

/// Past this many of the book's days moved, its daily totals are summed
/// again whole (each day summed again visits every account).
const BOOK_DAYS_AT_MOST: usize = 16;

impl Timeline {
    /// Brings the timeline up to date with `parts` after the order lines
    /// or visits of accounts `ids` were read again, and nothing else of
    /// the parts changed: those accounts' parts, every account's SKU lines
    /// (shared arrays), the accounts missing from the master, the roles'
    /// names, and the book's daily totals: the days on which one of these
    /// accounts' daily sums moved (to the bit) are summed again over every
    /// account in id order, as assembling does; the whole book past
    /// [`BOOK_DAYS_AT_MOST`] days. Returns the timeline indexes of the
    /// active accounts updated (their metrics must be built again); None
    /// when the parts changed otherwise (new SKU names, so the stock was
    /// read again; another last day): the timeline must be assembled anew.
    pub(in crate::metrics) fn update(&mut self, parts: &Parts, ids: &[&str]) -> Option<Vec<usize>> {
        if parts.skus.names.len() != self.skus.names.len() || day(parts.until) != self.until {
            return None;
        }
        let mut updated = Vec::new();
        let mut moved: Vec<Day> = Vec::new();
        // Past BOOK_DAYS_AT_MOST days moved the book is summed again
        // whole, whichever days they are: no need to find more of them (a
        // re-export moves most days with its first accounts).
        let mut whole = false;
        let mut unlisted = false;
        for id in ids {
            let Ok(i) = self.accounts.binary_search_by(|a| (*a.who.id).cmp(id)) else {
                // Missing from the master, or not active in it.
                unlisted = true;
                continue;
            };
            let a = &mut self.accounts[i];
            let (series, skus) = parts.orders.get(*id).cloned().unwrap_or_default();
            if !whole {
                changed_days(&a.series, &series, &mut moved);
                if moved.len() > BOOK_DAYS_AT_MOST {
                    moved.sort_unstable();
                    moved.dedup();
                    whole = moved.len() > BOOK_DAYS_AT_MOST;
                }
            }
            a.series = series;
            a.skus = skus;
            a.visits = parts.visits.get(*id).cloned().unwrap_or_default();
            updated.push(i);
        }
        if unlisted {
            self.unlisted = unlisted_of(parts);
        }
        if !Arc::ptr_eq(&self.roles, &parts.roles.names) {
            self.roles = parts.roles.names.clone();
        }
        let t0 = std::time::Instant::now();
        self.skus.lines = sku_lines(parts);
        let t_skus = t0.elapsed();
        moved.sort_unstable();
        moved.dedup();
        if whole {
            self.book_days = book_days(self.accounts.iter().map(|a| &a.series));
        } else {
            for d in &moved {
                self.sum_day(*d);
            }
        }
        if !moved.is_empty() {
            self.book = book_series(&self.book_days);
        }
        tracing::debug!(
            accounts = updated.len(),
            book_days_moved = moved.len(),
            book_summed_whole = whole,
            sku_lines_ms = t_skus.as_millis() as u64,
            book_ms = (t0.elapsed() - t_skus).as_millis() as u64,
            "timeline updated"
        );
        Some(updated)
    }

    /// Account `a`'s metrics `m` of the last snapshot of the same day,
    /// its parts unchanged since: what the book decides set again (`s`),
    /// the roles' names if there are new ones, and its main SKUs and stock
    /// cover found again where the book's demand for one it draws on the
    /// warehouse for `moved`.
    pub(super) fn restand(
        &self,
        a: &Base,
        m: &mut AccountMetrics,
        s: &Standing,
        moved: &HashSet<&str>,
        end: Day,
        scratch: &mut SkuScratch,
    ) {
        stand(m, s);
        if !Arc::ptr_eq(&m.roles, &self.roles) {
            m.roles = self.roles.clone();
        }
        if m.stock
            .iter()
            .any(|c| !c.dedicated && moved.contains(&*c.sku))
        {
            self.skus.main_skus_and_cover(&a.own_stock, m, end, scratch);
        }
    }

    /// The SKUs whose book demand (over the `DEMAND_DAYS` to `end`) moved
    /// since the last snapshot of `reuse`, if it was of the same day and
    /// some account needed that demand; the demand now is left in
    /// `scratch`. Empty otherwise: no account kept from that snapshot
    /// draws on it.
    pub(super) fn demand_moved(
        &self,
        reuse: &Reuse,
        end: Day,
        scratch: &mut SkuScratch,
    ) -> HashSet<&str> {
        let Some(old) = reuse.book_qty.as_ref().filter(|_| reuse.end == Some(end)) else {
            return HashSet::new();
        };
        let now = scratch.book_qty(&self.skus, end);
        let names = &self.skus.names;
        (0..names.len().max(old.len()).max(now.len()))
            .filter(|&k| {
                let bits = |v: &[f64]| v.get(k).map(|x| x.to_bits());
                bits(old) != bits(now)
            })
            .filter_map(|k| names.get(k).map(String::as_str))
            .collect()
    }

    /// Sums the book's day `d` again over every active account, in id
    /// order, as `book_days` does; a day no account has an order on is
    /// dropped.
    fn sum_day(&mut self, d: Day) {
        let mut sums = [0.0f64; 4];
        let mut any = false;
        for a in &self.accounts {
            if let Some(x) = day_sums(&a.series, d) {
                any = true;
                for (s, y) in sums.iter_mut().zip(x) {
                    *s += y;
                }
            }
        }
        match (self.book_days.binary_search_by_key(&d, |b| b.0), any) {
            (Ok(k), true) => self.book_days[k].1 = sums,
            (Ok(k), false) => {
                self.book_days.remove(k);
            }
            (Err(k), true) => self.book_days.insert(k, (d, sums)),
            (Err(_), false) => {}
        }
    }
}

impl Reuse {
    /// Notes that the accounts at these timeline indexes have other parts
    /// ([`Timeline::update`]): the next snapshot builds them again.
    pub(in crate::metrics) fn touch(&mut self, indexes: &[usize]) {
        for &i in indexes {
            if let Some(s) = self.stale.get_mut(i) {
                *s = true;
            }
        }
    }

    /// How many accounts the last snapshot took from the one before,
    /// setting again only what the book decides for them.
    pub fn restood(&self) -> usize {
        self.restood
    }

    /// Records the snapshot just derived (of day `end`, with the book's
    /// demand per SKU if an account needed it, `restood` accounts kept).
    pub(super) fn done(&mut self, end: Day, book_qty: Option<Vec<f64>>, restood: usize) {
        self.end = Some(end);
        self.stale.fill(false);
        self.book_qty = book_qty;
        self.restood = restood;
    }

    /// Whether the last snapshot's metrics of account `i` (handed back)
    /// hold for a snapshot of day `end`, but for what the book decides:
    /// the same day, its parts not updated since, every account's main
    /// SKUs found.
    pub(super) fn holds(&self, i: usize, end: Day) -> bool {
        self.end == Some(end)
            && self.sku_tiers.is_none()
            && !self.stale.get(i).copied().unwrap_or(true)
    }
}

/// An account's (revenue, cost, quantity, orders) on day `d` as
/// `Series::each_day` gives them (the differences of its prefix sums);
/// None when it has no order that day.
fn day_sums(s: &Series, d: Day) -> Option<[f64; 4]> {
    (s.last_day(d) == Some(d)).then(|| {
        [
            Measure::Revenue,
            Measure::Cost,
            Measure::Qty,
            Measure::Orders,
        ]
        .map(|m| s.sum(m, d, 1))
    })
}

/// Appends to `out` the days on which `old` and `new` differ: a day in
/// one only, or with other daily sums (to the bit).
fn changed_days(old: &Series, new: &Series, out: &mut Vec<Day>) {
    let days = |s: &Series| {
        let mut v: Vec<(Day, [u64; 4])> = Vec::new();
        s.each_day(|d, x| v.push((d, x.map(f64::to_bits))));
        v
    };
    let (a, b) = (days(old), days(new));
    let (mut i, mut j) = (0, 0);
    loop {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                if x.1 != y.1 {
                    out.push(x.0);
                }
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                out.push(x.0);
                i += 1;
            }
            (_, Some(y)) => {
                out.push(y.0);
                j += 1;
            }
            (Some(x), None) => {
                out.push(x.0);
                i += 1;
            }
            (None, None) => return,
        }
    }
}

#[cfg(test)]
impl Timeline {
    /// Everything the timeline holds but its generation, field by field,
    /// as text (every number to the bit, a map's entries sorted): two
    /// timelines hold the same when their dumps are.
    pub(in crate::metrics) fn dump(&self) -> String {
        use super::SkuBook;
        let Timeline {
            until,
            generation: _,
            accounts,
            unlisted,
            book,
            book_days,
            skus,
            roles,
            ranked,
        } = self;
        let SkuBook {
            names,
            lines,
            warehouse,
            texts: _,
        } = skus;
        let mut warehouse: Vec<_> = warehouse.iter().collect();
        warehouse.sort_by_key(|w| w.0);
        let mut o = format!(
            "until {until} ranked {ranked} roles {roles:?}\nunlisted {unlisted:?}\nbook {book:?}\nbook days {book_days:?}\nskus {names:?}\nlines {lines:?}\nwarehouse {warehouse:?}\n"
        );
        for a in accounts {
            let Base {
                who,
                series,
                skus,
                visits,
                attrs,
                credit_limit,
                tier_override,
                invoices,
                own_stock,
            } = a;
            o += &format!(
                "{who:?} {series:?} {skus:?} {visits:?} {attrs:?} {credit_limit:?} {tier_override:?} {invoices:?} {own_stock:?}\n"
            );
        }
        o
    }
}
