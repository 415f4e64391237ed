//! The daemon's metrics kept in memory between evaluations, and brought up
//! to date from what each ingested file wrote instead of read again whole.
//!
//! [`Live::capture`] puts temporary triggers (`notes`) on the daemon's connection
//! (visible to it alone): every order line or visit the connection writes,
//! replaces or deletes notes its account (old and new; for an order line
//! also its dates, old and new), a write to the
//! master, receivables or stock notes the dataset, and every ledger entry
//! its id, in temporary tables, inside the same transaction as the write.
//! A file rolled back leaves no note; a committed one cannot be missed.
//! [`Live::refresh`] reads the notes and reads again only those accounts'
//! order lines (from the `orders_lines_by_account` index, from the first
//! day written on) and visits (by the
//! table's key), or the small datasets named, and assembles the timeline
//! from the same `Parts` a full load gives: the timeline is updated in
//! place for the accounts read again (`Timeline::update`), and the next
//! snapshot of the same day builds their metrics again and keeps the
//! others' from the last one, setting again what the book decides for
//! them (`timeline::Reuse`). Any ledger entry it did not see
//! written (a `kamwatch ingest` in another process, a file the daemon
//! ingested in a child process) makes it load everything again; so does
//! SIGHUP. Reads the store; writes only its own temporary tables.

use std::collections::HashMap;

use anyhow::Result;
use chrono::NaiveDate;
use rusqlite::Connection;

use super::notes;
use super::parts::Parts;
use super::ranks::Kept;
use super::series::Series;
use super::snapshot::{Snapshot, dump};
use super::timeline::{Reuse, Timeline};
use crate::config::TierConfig;

/// The last day read: every line and visit, whatever its date (a
/// snapshot's views see only what lies on or before its day).
pub fn far() -> NaiveDate {
    NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or(NaiveDate::MAX)
}

/// What a refresh did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Refresh {
    /// Everything was read again, and why.
    pub reloaded: Option<String>,
    /// Accounts whose order lines were read again.
    pub orders: usize,
    /// Accounts whose visits were read again.
    pub visits: usize,
    /// Datasets read again whole: "master", "receivables", "inventory".
    pub datasets: Vec<&'static str>,
    /// Ids of the accounts whose lines or visits were read again, sorted.
    pub accounts: Vec<String>,
    /// Of those, the accounts whose order lines were read again, and
    /// those whose visits were, each sorted (for `rules::changed`: the
    /// next evaluation runs again the pairs that read them).
    pub order_accounts: Vec<String>,
    pub visit_accounts: Vec<String>,
    /// The earliest date of an order line written, replaced or deleted
    /// (its old date or its new one); None when none was, or when an
    /// account's first day was not noted (taken as any day).
    pub orders_from: Option<NaiveDate>,
}

/// The earliest of the first days written of `orders` (their dates in
/// `from`); None when there are none, or one is missing or unreadable
/// (then no day can be ruled out).
fn first_day(orders: &[&str], from: &HashMap<String, String>) -> Option<NaiveDate> {
    let mut first: Option<NaiveDate> = None;
    for a in orders {
        let d = from.get(*a)?.parse::<NaiveDate>().ok()?;
        first = Some(first.map_or(d, |f| f.min(d)));
    }
    first
}

impl Refresh {
    pub fn changed(&self) -> bool {
        self.reloaded.is_some() || self.orders + self.visits > 0 || !self.datasets.is_empty()
    }
}

/// The metrics of the whole book, kept between evaluations.
#[derive(Debug)]
pub struct Live {
    parts: Parts,
    /// The newest ledger entry when the parts were read or last refreshed.
    ledger: i64,
    /// The timeline of `parts`, assembled when everything or a dataset
    /// was read, updated in place when some accounts were.
    timeline: Option<Timeline>,
    /// The last snapshot's accounts, kept for the next (see
    /// `Timeline::snapshot_reusing`).
    reuse: Reuse,
    /// The rankings of the days the rules read, kept for the next
    /// snapshot while they hold (`metrics::ranks`).
    ranks: Kept,
    /// From this many accounts whose order lines are read again, half are
    /// read on a second connection (`reread::APART_FROM`; tests lower it).
    read_apart_from: usize,
}

impl Live {
    /// Starts noting, on `conn` alone, what its writes touch. Idempotent.
    pub fn capture(conn: &Connection) -> Result<()> {
        notes::capture(conn)
    }

    /// Reads everything (the notes taken so far are dropped: the read sees
    /// their writes). `capture` must have been called on `conn`.
    pub fn load(conn: &Connection) -> Result<Live> {
        notes::take(conn)?;
        // The ledger first: an entry committed by another process while
        // the parts are read is newer, and the next refresh reads all again.
        let ledger = notes::newest_ledger(conn)?;
        Ok(Live {
            parts: Parts::load(conn, far())?,
            ledger,
            timeline: None,
            reuse: Reuse::default(),
            ranks: Kept::default(),
            read_apart_from: super::reread::APART_FROM,
        })
    }

    /// Reads everything again, the old parts freed first: two books in
    /// memory at once would double the daemon's peak. If the read fails
    /// the parts are left empty and the error returned: the caller reads
    /// everything again before it uses them (the daemon drops them).
    fn reload(&mut self, conn: &Connection) -> Result<()> {
        self.timeline = None;
        self.reuse = Reuse::default();
        self.parts = Parts::empty(far());
        let apart = self.read_apart_from;
        *self = Live::load(conn)?;
        self.read_apart_from = apart;
        Ok(())
    }

    /// What the accounts' histories take in memory.
    pub fn footprint(&self) -> super::parts::Footprint {
        self.parts.footprint()
    }

    /// Brings the parts up to date with what was written since the last
    /// load or refresh.
    pub fn refresh(&mut self, conn: &Connection) -> Result<Refresh> {
        let from = notes::first_order_days(conn)?;
        let notes = notes::take(conn)?;
        let newest = notes::newest_ledger(conn)?;
        let mut own: Vec<i64> = notes
            .iter()
            .filter(|(what, _)| what == "l")
            .filter_map(|(_, id)| id.parse().ok())
            .collect();
        own.sort_unstable();
        let unseen = if newest < self.ledger {
            Some("ledger entries were removed".to_string())
        } else {
            (self.ledger + 1..=newest)
                .find(|id| own.binary_search(id).is_err())
                .map(|id| {
                    format!("ledger entry {id} was written by another process (kamwatch ingest)")
                })
        };
        if let Some(why) = unseen {
            self.reload(conn)?;
            return Ok(Refresh {
                reloaded: Some(why),
                ..Refresh::default()
            });
        }
        let ids = |kind: &str| -> Vec<&str> {
            notes
                .iter()
                .filter(|(what, _)| what == kind)
                .map(|(_, id)| id.as_str())
                .collect()
        };
        let (orders, visits) = (ids("o"), ids("v"));
        // However many accounts a file touched, only they are read again:
        // an account's lines are one range of a covering index
        // (`reread`), cheaper than its share of a full read (a scan of the
        // whole table sorted by SQLite), which also forgets every kept
        // ranking and makes the next evaluation run every rule everywhere.
        self.ledger = newest;
        let has = |kind: &str| notes.iter().any(|(what, _)| what == kind);
        let sorted = |ids: &mut dyn Iterator<Item = &&str>| {
            let mut v: Vec<String> = ids.map(|a| a.to_string()).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let mut done = Refresh {
            orders: orders.len(),
            visits: visits.len(),
            accounts: sorted(&mut orders.iter().chain(&visits)),
            order_accounts: sorted(&mut orders.iter()),
            visit_accounts: sorted(&mut visits.iter()),
            orders_from: first_day(&orders, &from),
            ..Refresh::default()
        };
        if has("m") {
            self.parts.reload_master(conn)?;
            self.ranks.forget();
            done.datasets.push("master");
        }
        if has("r") {
            self.parts.reload_receivables(conn)?;
            done.datasets.push("receivables");
        }
        if has("i") {
            self.parts.reload_inventory(conn)?;
            done.datasets.push("inventory");
        }
        self.reread(conn, &orders, &from, &visits, &done)?;
        Ok(done)
    }

    /// Reads again the order lines of accounts `orders` (from their day
    /// in `from` on, where they have one) and the visits of `visits`, and
    /// brings the timeline up to date with `done`.
    fn reread(
        &mut self,
        conn: &Connection,
        orders: &[&str],
        from: &HashMap<String, String>,
        visits: &[&str],
        done: &Refresh,
    ) -> Result<()> {
        let t0 = std::time::Instant::now();
        let ranks = self.reload_orders(conn, orders, from)?;
        let t_orders = t0.elapsed();
        self.parts.reload_visits(conn, visits)?;
        let t_visits = t0.elapsed();
        self.follow(done);
        tracing::debug!(
            orders_ms = t_orders.as_millis() as u64,
            ranks_ms = ranks.as_millis() as u64,
            visits_ms = (t_visits - t_orders).as_millis() as u64,
            timeline_ms = (t0.elapsed() - t_visits).as_millis() as u64,
            "refresh phases"
        );
        Ok(())
    }

    /// Brings the timeline up to date with what `done` read: updated in
    /// place for the accounts read again (their metrics built again by
    /// the next snapshot), assembled anew when a dataset was read.
    fn follow(&mut self, done: &Refresh) {
        if !done.datasets.is_empty() {
            self.timeline = None;
        } else if !done.accounts.is_empty() {
            let ids: Vec<&str> = done.accounts.iter().map(String::as_str).collect();
            if let Some(t) = self.timeline.as_mut() {
                match t.update(&self.parts, &ids) {
                    Some(updated) => self.reuse.touch(&updated),
                    None => self.timeline = None,
                }
            }
        }
    }

    /// Reads the order lines of `ids` again, and drops the rankings kept
    /// of the days on which their 12-month sums moved; returns how long
    /// the latter took.
    fn reload_orders(
        &mut self,
        conn: &Connection,
        ids: &[&str],
        from: &HashMap<String, String>,
    ) -> Result<std::time::Duration> {
        let before: Vec<Option<Series>> = ids
            .iter()
            .map(|id| self.parts.orders.get(*id).map(|o| o.0.clone()))
            .collect();
        self.parts
            .reload_orders(conn, ids, from, self.read_apart_from)?;
        let after = ids
            .iter()
            .map(|id| self.parts.orders.get(*id).map(|o| &o.0));
        let t0 = std::time::Instant::now();
        self.ranks
            .changed(before.iter().map(Option::as_ref).zip(after));
        Ok(t0.elapsed())
    }

    /// The snapshot as of `as_of`: what `metrics::build` gives for it.
    /// Its accounts are kept (shared) for the next snapshot, which
    /// rebuilds them in place once this one is dropped.
    pub fn snapshot(&mut self, as_of: NaiveDate, tiers: &TierConfig) -> Snapshot {
        let parts = &self.parts;
        let snap = self
            .timeline
            .get_or_insert_with(|| Timeline::of(parts))
            .snapshot_kept(as_of, tiers, &mut self.reuse, &mut self.ranks);
        self.reuse.recycle(snap.accounts.clone());
        snap
    }

    /// How many accounts the last snapshot kept from the one before (the
    /// same day, their own data unchanged), what the book decides for
    /// them set again.
    pub fn restood(&self) -> usize {
        self.reuse.restood()
    }
}

/// What `kamwatch eval --verify-incremental` found.
#[derive(Debug)]
pub struct Verified {
    /// Accounts with order lines or visits, each read again on its own.
    pub accounts: usize,
    /// The first line where the two snapshots differ, if they do:
    /// (line number, full, incremental).
    pub difference: Option<(usize, String, String)>,
    /// Lines of the snapshot's dump.
    pub lines: usize,
}

/// Checks on the database as it is that the incremental path gives what
/// a full read gives: the snapshot as of `as_of` from `metrics::build`
/// against one whose every account's order lines and visits were read
/// again one account at a time, the way a refresh reads them, and
/// assembled as the daemon assembles them. Compared as dumps, bit for bit.
pub fn verify(conn: &Connection, as_of: NaiveDate, tiers: &TierConfig) -> Result<Verified> {
    let full = dump(&Timeline::load(conn, as_of)?.snapshot(as_of, tiers));
    let mut parts = Parts::load(conn, far())?;
    let accounts = parts.reread_by_account(conn)?;
    let inc = dump(&Timeline::of(&parts).snapshot(as_of, tiers));
    Ok(Verified {
        accounts,
        lines: full.lines().count(),
        difference: first_difference(&full, &inc),
    })
}

/// The first line (1-based) where `a` and `b` differ, with both lines.
pub fn first_difference(a: &str, b: &str) -> Option<(usize, String, String)> {
    let (mut x, mut y) = (a.lines(), b.lines());
    let mut n = 0;
    loop {
        n += 1;
        match (x.next(), y.next()) {
            (None, None) => return None,
            (p, q) if p == q => continue,
            (p, q) => {
                return Some((
                    n,
                    p.unwrap_or("(end)").to_string(),
                    q.unwrap_or("(end)").to_string(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
