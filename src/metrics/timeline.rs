//! The timeline: everything a snapshot is built from, read from the store
//! once up to a last day, from which the snapshot of that day or of any
//! earlier day is derived without reading the store again. `metrics::build`
//! is `Timeline::load(as_of)` then `snapshot(as_of)`; the backtest loads
//! once at `--to` and derives every replayed day, so both share one path.
//!
//! What a day's snapshot sees: order days, SKU lines and visits on or
//! before that day (views of shared arrays, nothing copied per day); tiers,
//! ranks, shares, the book totals and the main SKUs recomputed from those.
//! Some of the store is a current snapshot, not a history, and a past day
//! sees it as it is now: the customer master (names, owners, active flag,
//! attributes, credit limits, tier overrides), the stock on hand, and the
//! open invoices — of which a past day sees those issued on or before it
//! (or without an issue date); invoices paid since are gone from the store,
//! so a past day sees fewer receivables than it had. See docs/backtest.md.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use chrono::NaiveDate;
use rusqlite::Connection;

use super::{
    AccountMetrics, DEMAND_DAYS, Day, DayLog, MAIN_SKUS, Measure, PREV_TIER_DAYS, Portfolio,
    Series, Snapshot, StockCover, Visit, assign_tiers, date_of, day, load, parse_tier,
};
use crate::config::TierConfig;
use crate::store;

/// One account's order lines with a SKU, shared by every day.
#[derive(Debug, Clone, Default)]
struct SkuLog {
    /// (day, sku), by day.
    days: DayLog<(Day, u32)>,
    /// (quantity, revenue) per entry of `days`.
    amounts: Arc<Vec<(f64, f64)>>,
}

/// What one active account of the master brings, for every day.
#[derive(Debug)]
struct Base {
    id: String,
    name: String,
    region: String,
    owner: String,
    owner_email: Option<String>,
    manager_email: Option<String>,
    manager: Option<String>,
    series: Series,
    skus: SkuLog,
    visits: DayLog<Visit>,
    attrs: Arc<serde_json::Map<String, serde_json::Value>>,
    credit_limit: Option<f64>,
    tier_override: Option<&'static str>,
    /// Open invoices with the day each was issued, by due date.
    invoices: Vec<load::Issued>,
    /// Stock held for this account: (sku, on hand).
    own_stock: Vec<(u32, f64)>,
}

/// What a thread keeps from one derived day to the next: see
/// [`Timeline::snapshot_reusing`]. For one timeline; given another, it
/// starts afresh.
#[derive(Debug, Default)]
pub struct Reuse {
    /// The timeline it was last used with (its address).
    timeline: usize,
    /// The accounts handed back, by timeline index.
    spare: Vec<Option<Arc<AccountMetrics>>>,
    /// The timeline index of each account of the last snapshot, in its
    /// (rank) order.
    order: Vec<usize>,
    /// By timeline index: the bounds of the trailing-12-month windows,
    /// now and `PREV_TIER_DAYS` earlier, where the last searches ended.
    hints: Vec<[[usize; 2]; 2]>,
    /// The tiers (A, B, C) whose accounts get their main SKUs and stock
    /// cover; None: all.
    sku_tiers: Option<[bool; 3]>,
}

impl Reuse {
    /// Main SKUs and stock cover only for accounts of these tiers; the
    /// others' are left empty. For a caller that knows nothing reads them
    /// elsewhere (the backtest asks the rules: see
    /// `RuleSet::tiers_reading_skus`): they are the costliest part of a
    /// day, a pass over each account's last twelve months of lines.
    pub fn main_skus_for_tiers(&mut self, tiers: &[&str]) {
        self.sku_tiers = Some(["A", "B", "C"].map(|t| tiers.contains(&t)));
    }

    fn wants_skus(&self, tier: &str) -> bool {
        let k = match tier {
            "A" => 0,
            "B" => 1,
            _ => 2,
        };
        self.sku_tiers.is_none_or(|t| t[k])
    }

    /// Hands back the accounts of the snapshot last derived with this, for
    /// the next day to rebuild in place.
    pub fn recycle(&mut self, accounts: Vec<Arc<AccountMetrics>>) {
        if accounts.len() != self.order.len() {
            return;
        }
        self.spare.clear();
        self.spare.resize(self.hints.len(), None);
        for (m, &i) in accounts.into_iter().zip(&self.order) {
            if let Some(slot) = self.spare.get_mut(i) {
                *slot = Some(m);
            }
        }
    }
}

/// The history of the book up to `until`, loaded once.
#[derive(Debug)]
pub struct Timeline {
    until: Day,
    /// Active accounts of the master, in id order.
    accounts: Vec<Base>,
    /// Series of accounts with orders that are inactive or missing from
    /// the master: their revenue counts in the book's total.
    others: Vec<Series>,
    /// First order day of each account missing from the master, sorted.
    unknown_first: Vec<Day>,
    /// Daily totals of every order.
    book: Series,
    /// SKU lines of every account with any, in account id order (the
    /// order the book's per-SKU demand is summed in).
    lines: Vec<SkuLog>,
    skus: Arc<Vec<String>>,
    roles: super::Roles,
    /// sku -> stock not held for one account.
    warehouse: HashMap<u32, f64>,
}

/// Every visit up to `until`, by account, in date order; each role's
/// name is shared.
fn load_visits(
    conn: &Connection,
    until: NaiveDate,
    roles: &mut RoleIndex,
) -> Result<HashMap<String, Vec<Visit>>> {
    let mut visits: HashMap<String, Vec<Visit>> = HashMap::new();
    store::for_each_visit(conn, until, |id, date, role| {
        let visit = Visit {
            day: day(date),
            role: role.map_or(0, |r| roles.code(r)),
        };
        match visits.get_mut(id) {
            Some(v) => v.push(visit),
            None => {
                visits.insert(id.to_string(), vec![visit]);
            }
        }
    })?;
    Ok(visits)
}

/// The visitors' roles, numbered from 1 in the order first read.
#[derive(Debug, Default)]
struct RoleIndex {
    codes: HashMap<String, u32>,
    names: super::Roles,
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

/// What a timeline is assembled from: each dataset of the store as read up
/// to a last day, kept by account so that one account's part can be read
/// again on its own (`metrics::live` does, after each ingested file).
/// [`Parts::timeline`] assembles the same timeline from the same parts
/// however they were read.
#[derive(Debug)]
pub struct Parts {
    until: NaiveDate,
    /// Every account with order lines, in id order: daily sums and SKU lines.
    orders: BTreeMap<String, (Series, SkuLog)>,
    skus: load::SkuIndex,
    visits: HashMap<String, DayLog<Visit>>,
    roles: RoleIndex,
    master: Vec<store::AccountRecord>,
    extras: HashMap<String, load::Extra>,
    inventory: load::Inventory,
    /// The number of SKU names `inventory` was read with.
    inventory_skus: usize,
    invoices: HashMap<String, Vec<load::Issued>>,
}

fn sku_log(l: load::SkuLines) -> SkuLog {
    SkuLog {
        days: DayLog::from(l.days),
        amounts: Arc::new(l.amounts),
    }
}

impl Parts {
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
            until,
            orders: accounts
                .into_iter()
                .map(|(id, o)| (id, (o.series, sku_log(o.skus))))
                .collect(),
            skus: index,
            visits: visits
                .into_iter()
                .map(|(id, v)| (id, DayLog::from(v)))
                .collect(),
            roles,
            master: Vec::new(),
            extras: HashMap::new(),
            inventory: load::Inventory::default(),
            inventory_skus: 0,
            invoices: HashMap::new(),
        };
        parts.reload_master(conn)?;
        parts.reload_inventory(conn)?;
        parts.reload_receivables(conn)?;
        Ok(parts)
    }

    /// Reads the customer master (and its attributes, credit limits and
    /// tier overrides) again.
    pub fn reload_master(&mut self, conn: &Connection) -> Result<()> {
        self.master = store::load_accounts(conn)?;
        self.extras = load::account_extras(conn)?;
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
    /// index on its id; then the stock too if a SKU is new (the inventory
    /// keeps only SKUs that were ever ordered).
    pub fn reload_orders(&mut self, conn: &Connection, ids: &[&str]) -> Result<()> {
        let fresh = load::orders_of(conn, ids, self.until, &mut self.skus)?;
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
        self.reload_orders(conn, &ids)?;
        self.reload_visits(conn, &ids)?;
        Ok(ids.len())
    }

    /// The timeline of these parts. Only the accounts' arrays are shared
    /// (the parts may change after); names and owners are copied.
    pub fn timeline(&self) -> Timeline {
        let master = &self.master;
        let known: HashSet<&str> = master.iter().map(|a| a.row.id.as_str()).collect();
        let active: HashSet<&str> = master
            .iter()
            .filter(|a| a.active)
            .map(|a| a.row.id.as_str())
            .collect();
        let mut unknown_first: Vec<Day> = self
            .orders
            .iter()
            .filter(|(id, _)| !known.contains(id.as_str()))
            .filter_map(|(_, s)| s.0.first_day())
            .collect();
        unknown_first.sort_unstable();
        let others: Vec<Series> = self
            .orders
            .iter()
            .filter(|(id, _)| !active.contains(id.as_str()))
            .map(|(_, s)| s.0.clone())
            .collect();
        let book = load::book(self.orders.values().map(|o| &o.0));
        let lines: Vec<SkuLog> = self
            .orders
            .values()
            .filter(|o| !o.1.days.is_empty())
            .map(|o| o.1.clone())
            .collect();
        let mut own_stock: HashMap<&str, Vec<(u32, f64)>> = HashMap::new();
        for ((sku, account), on_hand) in &self.inventory.by_account {
            own_stock
                .entry(account.as_str())
                .or_default()
                .push((*sku, *on_hand));
        }

        let mut accounts: Vec<Base> = Vec::with_capacity(active.len());
        for rec in master.iter().filter(|a| a.active) {
            let r = &rec.row;
            let extra = self.extras.get(&r.id);
            let (series, skus) = self.orders.get(&r.id).cloned().unwrap_or_default();
            let mut own = own_stock.remove(r.id.as_str()).unwrap_or_default();
            own.sort_by_key(|s| s.0);
            accounts.push(Base {
                series,
                skus,
                visits: self.visits.get(&r.id).cloned().unwrap_or_default(),
                attrs: extra.map(|e| e.attrs.clone()).unwrap_or_default(),
                credit_limit: extra.and_then(|e| e.credit_limit),
                tier_override: extra
                    .and_then(|e| e.tier_override.as_deref())
                    .and_then(parse_tier),
                invoices: self.invoices.get(&r.id).cloned().unwrap_or_default(),
                own_stock: own,
                id: r.id.clone(),
                name: r.name.clone(),
                region: r.region.clone().unwrap_or_default(),
                owner: r.owner.clone().unwrap_or_default(),
                owner_email: r.owner_email.clone(),
                manager_email: r.manager_email.clone(),
                manager: r.manager.clone(),
            });
        }
        accounts.sort_by(|a, b| a.id.cmp(&b.id));
        Timeline {
            until: day(self.until),
            accounts,
            others,
            unknown_first,
            book,
            lines,
            skus: Arc::new(self.skus.names.clone()),
            roles: self.roles.names.clone(),
            warehouse: self.inventory.warehouse.clone(),
        }
    }
}

impl Timeline {
    /// Reads every dataset up to and including `until`.
    pub fn load(conn: &Connection, until: NaiveDate) -> Result<Timeline> {
        Ok(Parts::load(conn, until)?.timeline())
    }

    /// The last day loaded.
    pub fn until(&self) -> NaiveDate {
        date_of(self.until)
    }

    /// The active accounts as (id, name, owner), in id order: the same
    /// accounts every snapshot holds.
    pub fn accounts(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.accounts
            .iter()
            .map(|a| (a.id.as_str(), a.name.as_str(), a.owner.as_str()))
    }

    /// The snapshot as of `as_of`: what `metrics::build` at that day gives.
    /// Days after `until` see nothing after `until`.
    pub fn snapshot(&self, as_of: NaiveDate, tiers: &TierConfig) -> Snapshot {
        self.snapshot_reusing(as_of, tiers, &mut Reuse::default())
    }

    /// [`Timeline::snapshot`], rebuilding the accounts of the snapshot
    /// last derived with `reuse` (and handed back with [`Reuse::recycle`])
    /// in place where nothing else holds them: no names, ids or owners
    /// copied again, no allocation per account, and each search started
    /// from where it ended that day (`as_of_near`, `revenue_near`). The
    /// backtest keeps one `Reuse` per thread, whose days come in order.
    pub fn snapshot_reusing(
        &self,
        as_of: NaiveDate,
        tiers: &TierConfig,
        reuse: &mut Reuse,
    ) -> Snapshot {
        let n = self.accounts.len();
        if reuse.timeline != (self as *const Timeline as usize) || reuse.hints.len() != n {
            *reuse = Reuse {
                timeline: self as *const Timeline as usize,
                spare: Vec::new(),
                order: Vec::new(),
                hints: vec![[[0; 2]; 2]; n],
                sku_tiers: reuse.sku_tiers,
            };
        }
        let mut spare = std::mem::take(&mut reuse.spare);
        let end = day(as_of);
        let prev_end = end - PREV_TIER_DAYS;
        // Trailing-12-month revenue now and `PREV_TIER_DAYS` earlier, each
        // series visited once.
        let t12 = |s: &Series| {
            (
                s.sum(Measure::Revenue, end, 365),
                s.sum(Measure::Revenue, prev_end, 365),
            )
        };
        let (now, before): (Vec<f64>, Vec<f64>) = self
            .accounts
            .iter()
            .zip(&mut reuse.hints)
            .map(|(a, [h_now, h_before])| {
                (
                    a.series.revenue_near(end, 365, h_now),
                    a.series.revenue_near(prev_end, 365, h_before),
                )
            })
            .unzip();
        let (others_now, others_before): (Vec<f64>, Vec<f64>) = self.others.iter().map(t12).unzip();
        // The loads hold only finite, bounded amounts; a total that still is
        // not finite ranks nobody rather than making every share NaN.
        let finite = |t: f64| if t.is_finite() { t + 0.0 } else { 0.0 };
        let total = finite(now.iter().chain(&others_now).sum());
        let prev_total = finite(before.iter().chain(&others_before).sum());

        // (revenue, account) largest first, and the tiers in that order;
        // ties by id so tiers are deterministic (the accounts are in id
        // order, and the sort is stable).
        let ranking = |revenue: &[f64], total: f64| {
            let mut order: Vec<(f64, usize)> = revenue.iter().copied().zip(0..).collect();
            order.sort_by(|a, b| b.0.total_cmp(&a.0));
            let revenues: Vec<f64> = order.iter().map(|a| a.0).collect();
            (assign_tiers(&revenues, total, tiers), order)
        };
        let (tier_of, order) = ranking(&now, total);
        // The same ranking `PREV_TIER_DAYS` earlier, from the same series.
        let mut prev_tier_of = vec!["C"; self.accounts.len()];
        let (prev_tiers, prev) = ranking(&before, prev_total);
        for (t, (_, i)) in prev_tiers.iter().zip(&prev) {
            prev_tier_of[*i] = t;
        }
        // (tier, share of the accounts above) by account index, now and
        // `PREV_TIER_DAYS` earlier: the first days of the tier history.
        let by_index = |tiers: &[&'static str], order: &[(f64, usize)], total: f64| {
            let mut out = vec![("C", 1.0); n];
            let mut above = 0.0;
            for (t, (rev, i)) in tiers.iter().zip(order) {
                let o = self.accounts[*i].tier_override;
                out[*i] = (o.unwrap_or(t), if total > 0.0 { above } else { 1.0 });
                if total > 0.0 {
                    above += rev / total;
                }
            }
            out
        };
        let seen_now = by_index(&tier_of, &order, total);
        let seen_before = by_index(&prev_tiers, &prev, prev_total);
        let history = Arc::new(super::TierHistory::new(
            end,
            tiers,
            self.accounts.iter().map(|a| a.series.as_of(end)).collect(),
            self.accounts.iter().map(|a| a.tier_override).collect(),
            self.others.iter().map(|s| s.as_of(end)).collect(),
        ));
        let share_above: Vec<f64> = seen_now.iter().map(|x| x.1).collect();
        history.seed(0, seen_now);
        history.seed(PREV_TIER_DAYS as usize, seen_before);

        let mut book_qty: Option<Vec<f64>> = None;
        let mut scratch: Vec<(u32, f64, f64)> = Vec::new();
        let mut portfolio = Portfolio {
            accounts: self.accounts.len(),
            revenue_12m: total,
            a_share: tiers.a_share,
            b_share: tiers.b_share,
            series: self.book.as_of(end),
            ..Portfolio::default()
        };
        let mut accounts = Vec::with_capacity(self.accounts.len());
        reuse.order.clear();
        reuse.order.extend(order.iter().map(|o| o.1));
        for (rank, (rev, i)) in order.into_iter().enumerate() {
            let a = &self.accounts[i];
            let share = if total > 0.0 { rev / total } else { 0.0 };
            match tier_of[rank] {
                "A" if rev > 0.0 => portfolio.floor_a = rev,
                "B" if rev > 0.0 => portfolio.floor_b = rev,
                _ => {}
            }
            let tier = a.tier_override.unwrap_or(tier_of[rank]);
            let prev_tier = a.tier_override.unwrap_or(prev_tier_of[i]);
            match tier {
                "A" => portfolio.tier_a += 1,
                "B" => portfolio.tier_b += 1,
                _ => portfolio.tier_c += 1,
            }
            let issued = a
                .invoices
                .iter()
                .filter(|(issued, _)| issued.is_none_or(|d| d <= end))
                .map(|(_, i)| *i);
            let mut reused = spare.get_mut(i).and_then(Option::take);
            if let Some(m) = reused.as_mut().and_then(Arc::get_mut) {
                m.tier = tier;
                m.prev_tier = prev_tier;
                m.rank = rank + 1;
                m.share = share;
                m.share_above = share_above[i];
                m.history = Some((history.clone(), i));
                m.revenue_12m = rev;
                m.series = a.series.as_of_near(end, &m.series);
                m.sku_days = a.skus.days.as_of_near(end, &m.sku_days);
                m.visits = a.visits.as_of_near(end, &m.visits);
                m.invoices.clear();
                m.invoices.extend(issued);
                if reuse.wants_skus(tier) {
                    self.main_skus_and_cover(a, m, end, &mut scratch, &mut book_qty);
                } else {
                    m.main_skus.clear();
                    m.stock.clear();
                }
            } else {
                let mut m = AccountMetrics {
                    id: a.id.clone(),
                    name: a.name.clone(),
                    region: a.region.clone(),
                    owner: a.owner.clone(),
                    owner_email: a.owner_email.clone(),
                    manager_email: a.manager_email.clone(),
                    manager: a.manager.clone().unwrap_or_default(),
                    tier,
                    prev_tier,
                    rank: rank + 1,
                    share,
                    share_above: share_above[i],
                    history: Some((history.clone(), i)),
                    revenue_12m: rev,
                    series: a.series.as_of(end),
                    sku_days: a.skus.days.as_of(end),
                    visits: a.visits.as_of(end),
                    roles: self.roles.clone(),
                    attrs: a.attrs.clone(),
                    credit_limit: a.credit_limit,
                    invoices: issued.collect(),
                    main_skus: Vec::new(),
                    stock: Vec::new(),
                };
                if reuse.wants_skus(tier) {
                    self.main_skus_and_cover(a, &mut m, end, &mut scratch, &mut book_qty);
                }
                reused = Some(Arc::new(m));
            }
            if let Some(m) = &reused {
                portfolio.count_data(m);
            }
            accounts.extend(reused);
        }
        Snapshot {
            as_of,
            accounts,
            portfolio: Arc::new(portfolio),
            unknown_accounts: self.unknown_first.partition_point(|d| *d <= end),
            skus: self.skus.clone(),
        }
    }

    /// The account's main SKUs by trailing-12-month revenue (ties by name)
    /// and, for those the inventory knows, their days of cover. Sums run
    /// over the lines in day order, as the store returns them.
    ///
    /// Fills `m.main_skus` and `m.stock`, from `m.sku_days`; a name already
    /// in its place is not copied again.
    fn main_skus_and_cover(
        &self,
        a: &Base,
        m: &mut AccountMetrics,
        end: Day,
        sums: &mut Vec<(u32, f64, f64)>,
        book_qty: &mut Option<Vec<f64>>,
    ) {
        let days: &[(Day, u32)] = &m.sku_days;
        let since_12m = end - 365;
        let since_recent = end - DEMAND_DAYS;
        sums.clear();
        let lo = super::seek(days, days.len(), |d| d.0 <= since_12m);
        for (&(d, sku), &(q, v)) in days[lo..].iter().zip(&a.skus.amounts[lo..]) {
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
        let names = &self.skus;
        sums.sort_by(|x, y| {
            y.1.total_cmp(&x.1)
                .then_with(|| names[x.0 as usize].cmp(&names[y.0 as usize]))
        });
        sums.truncate(MAIN_SKUS);
        let (main, stock) = (&mut m.main_skus, &mut m.stock);
        main.truncate(sums.len());
        stock.clear();
        for (k, &(sku, _, qty)) in sums.iter().enumerate() {
            let name = &names[sku as usize];
            match main.get_mut(k) {
                Some(have) if have == name => {}
                Some(have) => have.clone_from(name),
                None => main.push(name.clone()),
            }
            let own = a
                .own_stock
                .binary_search_by_key(&sku, |s| s.0)
                .ok()
                .map(|k| a.own_stock[k].1);
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
        let mut out = vec![0.0; self.skus.len()];
        for l in &self.lines {
            let lo = l.days.partition_point(|d| d.0 <= since);
            let hi = l.days.partition_point(|d| d.0 <= end);
            for k in lo..hi {
                out[l.days[k].1 as usize] += l.amounts[k].0;
            }
        }
        out
    }
}
