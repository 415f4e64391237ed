//! Parts: what a timeline is assembled from, each dataset of the store as
//! read up to a last day and kept by account, so that one account's order
//! lines or visits (or one small dataset) can be read again on its own
//! (`live` does, after each ingested file). Reads the store, through
//! `load` and the store's visit reads; writes nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use chrono::NaiveDate;
use rusqlite::Connection;

use super::account::{Roles, SkuLine, Visit};
use super::daylog::DayLog;
use super::load;
use super::master::{self, Listed};
use super::reread;
use super::series::Series;
use crate::model::dates::day;
use crate::store;

/// One account's order lines with a SKU, shared by every day.
#[derive(Debug, Clone, Default)]
pub(super) struct SkuLog {
    /// Summed per day and SKU, by day.
    pub(super) days: DayLog<SkuLine>,
}

/// Every visit up to `until`, by account, in date order; each role's
/// name is shared. The visits come by account: each account's array is
/// made the size it ends with.
fn load_visits(
    conn: &Connection,
    until: NaiveDate,
    roles: &mut RoleIndex,
) -> Result<HashMap<String, DayLog<Visit>>> {
    let mut visits: HashMap<String, DayLog<Visit>> = HashMap::new();
    let mut account = String::new();
    let mut these: Vec<Visit> = Vec::new();
    let mut finish = |account: &mut String, these: &mut Vec<Visit>| {
        if !these.is_empty() {
            let v = std::mem::take(these);
            // Rows of one account are adjacent, so an account seen again
            // cannot happen; were it so, its visits would join in order.
            match visits.get_mut(account.as_str()) {
                Some(have) => {
                    let mut all: Vec<Visit> = have.iter().collect();
                    all.extend(v);
                    *have = DayLog::from(all);
                }
                None => {
                    visits.insert(std::mem::take(account), DayLog::from(v));
                }
            }
        }
    };
    store::for_each_visit(conn, until, |id, date, role| {
        if id != account {
            finish(&mut account, &mut these);
            account.clear();
            account.push_str(id);
        }
        these.push(Visit {
            day: day(date),
            role: role.map_or(0, |r| roles.code(r)),
        });
    })?;
    finish(&mut account, &mut these);
    Ok(visits)
}

/// The visitors' roles, numbered from 1 in the order first read.
#[derive(Debug, Default)]
pub(super) struct RoleIndex {
    codes: HashMap<String, u32>,
    pub(super) names: Roles,
}

impl RoleIndex {
    fn code(&mut self, role: &str) -> u32 {
        if let Some(c) = self.codes.get(role) {
            return *c;
        }
        Arc::make_mut(&mut self.names).push(Arc::from(role));
        let c = self.names.len() as u32;
        self.codes.insert(role.to_string(), c);
        c
    }
}

/// What the accounts' histories take on the heap: see [`Parts::footprint`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    pub series: usize,
    pub sku_lines: usize,
    pub visits: usize,
}

/// What a timeline is assembled from: each dataset of the store as read up
/// to a last day, kept by account so that one account's part can be read
/// again on its own (`metrics::live` does, after each ingested file).
/// [`Timeline::of`](super::timeline::Timeline::of) assembles the same timeline from the same parts
/// however they were read.
#[derive(Debug)]
pub struct Parts {
    pub(super) until: NaiveDate,
    /// Every account with order lines, in id order: daily sums and SKU lines.
    pub(super) orders: BTreeMap<String, (Series, SkuLog)>,
    pub(super) skus: load::SkuIndex,
    pub(super) visits: HashMap<String, DayLog<Visit>>,
    pub(super) roles: RoleIndex,
    /// The customer master, in id order, each account's texts shared.
    pub(super) master: Vec<Listed>,
    pub(super) inventory: load::Inventory,
    /// The number of SKU names `inventory` was read with.
    pub(super) inventory_skus: usize,
    pub(super) invoices: HashMap<String, Vec<load::Issued>>,
}

fn sku_log(l: load::SkuLines) -> SkuLog {
    SkuLog { days: l }
}

impl Parts {
    /// No account, nothing read (up to `until`).
    pub(super) fn empty(until: NaiveDate) -> Parts {
        Parts {
            until,
            orders: BTreeMap::new(),
            skus: load::SkuIndex::default(),
            visits: HashMap::new(),
            roles: RoleIndex::default(),
            master: Vec::new(),
            inventory: load::Inventory::default(),
            inventory_skus: 0,
            invoices: HashMap::new(),
        }
    }

    /// Reads every dataset up to and including `until`.
    pub fn load(conn: &Connection, until: NaiveDate) -> Result<Parts> {
        // Visits are read on a second connection while this one reads the
        // orders, when the database is a file (WAL lets both read at once).
        // Each dataset is read in one statement, so each is as committed
        // at one moment; ingest commits one file at a time.
        let second = conn
            .path()
            .filter(|p| !p.is_empty())
            .and_then(|p| store::open_reader(Path::new(p)).ok());
        let mut roles = RoleIndex::default();
        let (orders, visits) = std::thread::scope(|s| {
            let visits = second.map(|c| {
                let roles = &mut roles;
                s.spawn(move || load_visits(&c, until, roles))
            });
            let orders = load::orders(conn, until);
            let visits = visits.map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the visits reader panicked")))
            });
            (orders, visits)
        });
        let visits = match visits {
            Some(v) => v?,
            None => load_visits(conn, until, &mut roles)?,
        };
        let load::Orders { accounts, index } = orders?;
        let mut parts = Parts {
            orders: accounts
                .into_iter()
                .map(|(id, o)| (id, (o.series, sku_log(o.skus))))
                .collect(),
            skus: index,
            visits,
            roles,
            ..Parts::empty(until)
        };
        parts.reload_master(conn)?;
        parts.reload_inventory(conn)?;
        parts.reload_receivables(conn)?;
        Ok(parts)
    }

    /// Reads the customer master (and its attributes, credit limits and
    /// tier overrides) again.
    pub fn reload_master(&mut self, conn: &Connection) -> Result<()> {
        self.master = master::load(conn)?;
        Ok(())
    }

    /// Reads the stock on hand again.
    pub fn reload_inventory(&mut self, conn: &Connection) -> Result<()> {
        self.inventory = load::inventory(conn, &self.skus)?;
        self.inventory_skus = self.skus.names.len();
        Ok(())
    }

    /// Reads the open invoices again.
    pub fn reload_receivables(&mut self, conn: &Connection) -> Result<()> {
        self.invoices = load::receivables(conn, self.until)?;
        Ok(())
    }

    /// Reads the order lines of `ids` again, each account through the
    /// index on its id (half of them on a second connection from
    /// `apart_from` accounts on, see `reread`), only from its day in
    /// `from` on where it has one (`YYYY-MM-DD`: the first day a file
    /// wrote; its days before are kept); then the stock too if a SKU is
    /// new (the inventory keeps only SKUs that were ever ordered).
    pub fn reload_orders(
        &mut self,
        conn: &Connection,
        ids: &[&str],
        from: &HashMap<String, String>,
        apart_from: usize,
    ) -> Result<()> {
        let kept: Vec<Option<load::Kept<'_>>> = ids
            .iter()
            .map(|id| {
                let d = from
                    .get(*id)
                    .and_then(|t| crate::model::dates::parse_ymd(t))?;
                let (series, skus) = self.orders.get(*id)?;
                Some((day(d), series, &skus.days))
            })
            .collect();
        let fresh = reread::orders_of(conn, ids, &kept, self.until, &mut self.skus, apart_from)?;
        drop(kept);
        for (id, o) in ids.iter().zip(fresh) {
            match o {
                Some(o) => {
                    self.orders
                        .insert((*id).to_string(), (o.series, sku_log(o.skus)));
                }
                None => {
                    self.orders.remove(*id);
                }
            }
        }
        if self.skus.names.len() != self.inventory_skus {
            self.reload_inventory(conn)?;
        }
        Ok(())
    }

    /// Accounts in the book: in the master or with order lines.
    pub fn accounts(&self) -> usize {
        self.master.len().max(self.orders.len())
    }

    /// Reads the visits of `ids` again, each account by the table's key.
    pub fn reload_visits(&mut self, conn: &Connection, ids: &[&str]) -> Result<()> {
        for id in ids {
            let mut v = Vec::new();
            let roles = &mut self.roles;
            store::for_each_visit_of(conn, id, self.until, |date, role| {
                v.push(Visit {
                    day: day(date),
                    role: role.map_or(0, |r| roles.code(r)),
                });
            })?;
            if v.is_empty() {
                self.visits.remove(*id);
            } else {
                self.visits.insert((*id).to_string(), DayLog::from(v));
            }
        }
        Ok(())
    }

    /// What the accounts' histories take on the heap, in bytes (their
    /// arrays by capacity; not the maps holding them): (daily series,
    /// SKU lines, visits).
    pub fn footprint(&self) -> Footprint {
        let mut f = Footprint::default();
        for (series, skus) in self.orders.values() {
            f.series += series.heap_bytes();
            f.sku_lines += skus.days.heap_bytes();
        }
        f.visits = self.visits.values().map(DayLog::heap_bytes).sum();
        f
    }

    /// Every account id with order lines or visits.
    pub fn history_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .orders
            .keys()
            .chain(self.visits.keys())
            .cloned()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Reads every account's order lines and visits again one account at
    /// a time, as a refresh does (for `kamwatch eval --verify-incremental`).
    /// Returns how many accounts.
    pub fn reread_by_account(&mut self, conn: &Connection) -> Result<usize> {
        let ids = self.history_ids();
        self.orders.clear();
        self.visits.clear();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.reload_orders(conn, &ids, &HashMap::new(), reread::APART_FROM)?;
        self.reload_visits(conn, &ids)?;
        Ok(ids.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database with two accounts' order lines interleaved in key order,
    /// one line without a SKU, and visits.
    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = store::open(&dir.path().join("k.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO orders (order_id, line, account_id, date, sku, qty, revenue, cost) VALUES
               ('A', '1', 'X', '2026-11-02', 'S1', 1, 100, 60),
               ('A', '2', 'X', '2026-11-02', 'S2', 2, 50.25, 30),
               ('AB', '1', 'Y', '2026-11-01', 'S2', 5, 7, 1),
               ('B', '1', 'X', '2026-11-01', NULL, NULL, 10, 10),
               ('C', '1', 'Y', '2026-11-03', 'S1', 1, 0.125, 0),
               ('D', '1', 'X', '2026-11-05', 'S1', 9, 999, 0);
             INSERT INTO visits (account_id, date, visitor, role) VALUES
               ('X', '2026-11-01', 'a', '经理'), ('X', '2026-11-04', 'b', NULL),
               ('Y', '2026-11-02', 'a', '经理');",
        )
        .unwrap();
        (dir, conn)
    }

    /// The full read packs every history once, each column at the
    /// narrowest width that gives its values back (`metrics::compact`).
    #[test]
    fn the_full_read_packs_each_column_at_its_narrowest_width() {
        let (_dir, conn) = db();
        let parts = Parts::load(&conn, "2026-12-31".parse().unwrap()).unwrap();
        let (x, y) = (&parts.orders["X"], &parts.orders["Y"]);
        // Series: day, revenue, cost, quantity and orders after each day.
        // X's revenue 10, 160.25, 1159.25 in hundredths (4 bytes), the
        // rest whole and small (1 byte); Y's 7.125 as its 8 bytes.
        assert_eq!(x.0.widths(), [1, 4, 1, 1, 1]);
        assert_eq!(y.0.widths(), [1, 8, 1, 1, 1]);
        // SKU lines: day, SKU, quantity, revenue; Y's 0.125 as 8 bytes.
        assert_eq!(x.1.days.len(), 3);
        assert_eq!(x.1.days.widths(), [1, 1, 1, 4]);
        assert_eq!(y.1.days.widths(), [1, 1, 1, 8]);
        // Visits: day and role (X's second has none: 0), folded in one
        // byte (`compact::fold`).
        assert_eq!(parts.visits["X"].widths(), [1]);
        let f = parts.footprint();
        let t = super::super::compact::overhead;
        assert_eq!(f.series, 2 * t(5) + 3 * 8 + 2 * 12, "{f:?}");
        assert_eq!(f.sku_lines, 2 * t(4) + 3 * 7 + 2 * 11, "{f:?}");
        assert_eq!(f.visits, 2 * t(1) + 3, "{f:?}");
        let got: Vec<_> = parts.visits["X"].iter().collect();
        let role = |v: &Visit| {
            parts
                .roles
                .names
                .get((v.role as usize).wrapping_sub(1))
                .map(|r| &**r)
        };
        assert_eq!(
            got.iter().map(role).collect::<Vec<_>>(),
            [Some("经理"), None]
        );
        let l = y.1.days.get(1);
        assert_eq!((l.qty, l.revenue.to_bits()), (1.0, 0.125f64.to_bits()));
    }

    /// A date the store should never hold stops the read with what and
    /// where, not a panic.
    #[test]
    fn a_bad_date_in_the_store_names_the_order() {
        let (_dir, conn) = db();
        conn.execute(
            "UPDATE orders SET date = '2026-13-40' WHERE order_id = 'C'",
            [],
        )
        .unwrap();
        let e = Parts::load(&conn, "9999-12-31".parse().unwrap()).unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.contains("\"2026-13-40\"") && text.contains("order C"),
            "{text}"
        );
    }
}
