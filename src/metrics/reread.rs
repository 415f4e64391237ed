//! Reread: the order lines of some accounts read again (after a file wrote
//! them, for the daemon's metrics in memory), each account from the
//! `orders_lines_by_account` index alone (it holds every column read, in
//! the order the full read `load::orders` takes them: one range of the
//! index per account, no table page) and built by the same steps: what
//! the full read gives for that account, to the bit. An account whose
//! series is in memory is read only from the first day the file wrote
//! (`metrics::notes`: old and new dates of every line written): its days
//! before are kept, prefix sums and all (`load::account_orders_after`).
//! From [`APART_FROM`] accounts on, the second half is read on a second
//! connection in a thread of its own while this one reads the first (a
//! 10,000-line re-export touches about 9,500 accounts of 100,000: 850,000
//! lines, about half of them from the first day written); new SKU names
//! are numbered as reading them all here in order would. Reads the store;
//! writes nothing.

use std::path::Path;

use anyhow::Result;
use chrono::NaiveDate;
use rusqlite::Connection;

use super::load::{
    AccountOrders, Kept, Line, Lines, NO_SKU, SkuIndex, account_orders_after, warn_insane,
};
use crate::model::dates::{date_of, date_text};

/// From this many accounts on, half of them are read on a second
/// connection (opening it costs about a millisecond).
pub const APART_FROM: usize = 200;

const ORDERS_OF: &str = "SELECT order_id, date, sku, COALESCE(qty, 0), revenue, cost
     FROM orders INDEXED BY orders_lines_by_account
     WHERE account_id = ?1 AND date >= ?2 AND date <= ?3 ORDER BY date, order_id, line";

/// The order lines of each of `ids` up to `until` (see the module
/// header); `None` for an account without lines. Where `kept` (beside
/// `ids`) has an account's first day written and its series and SKU lines
/// as they were, only its lines from that day on are read, and the days
/// before are kept (`load::account_orders_after`: the same bits). New SKU
/// names are added to `index`. Half of `ids` are read apart when there
/// are `apart_from` or more and the database is a file that a second
/// connection can open.
pub fn orders_of(
    conn: &Connection,
    ids: &[&str],
    kept: &[Option<Kept<'_>>],
    until: NaiveDate,
    index: &mut SkuIndex,
    apart_from: usize,
) -> Result<Vec<Option<AccountOrders>>> {
    anyhow::ensure!(ids.len() == kept.len(), "one kept part per account");
    let second = if ids.len() >= apart_from.max(2) {
        conn.path()
            .filter(|p| !p.is_empty())
            .and_then(|p| crate::store::open_reader(Path::new(p)).ok())
    } else {
        None
    };
    let Some(second) = second else {
        let mut lines = Lines::default();
        let out = here(conn, ids, kept, until, index, &mut lines)?;
        warn_insane("orders", lines.insane);
        return Ok(out);
    };
    let (near, far) = ids.split_at(ids.len() / 2);
    let (kept_near, kept_far) = kept.split_at(near.len());
    // The other thread numbers the SKU names it meets that are not known
    // yet from `known` on, in the order it meets them.
    let known = index.names.len();
    let mut theirs = SkuIndex {
        names: index.names.clone(),
        ids: index.ids.clone(),
    };
    let mut lines = Lines::default();
    let (out, read) = std::thread::scope(|s| {
        let apart = s.spawn(move || {
            let mut lines = Lines::default();
            let raw = raw(&second, far, kept_far, until, &mut theirs, &mut lines);
            raw.map(|r| (r, theirs, lines.insane))
        });
        let out = here(conn, near, kept_near, until, index, &mut lines);
        let read = apart
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the second reader of order lines panicked")));
        (out, read)
    });
    let (mut out, (accounts, theirs, insane)) = (out?, read?);
    // Their new names, numbered as if read here after the first half: in
    // the order met, each one not met here before.
    let renumber = theirs.names[known..]
        .iter()
        .map(|name| index.intern(name))
        .collect::<Result<Vec<u32>>>()?;
    let mut scratch = Vec::new();
    for (mut account, kept) in accounts.into_iter().zip(kept_far) {
        for l in &mut account {
            if l.sku != NO_SKU
                && let Some(k) = (l.sku as usize).checked_sub(known)
            {
                l.sku = renumber[k];
            }
        }
        out.push(account_orders_after(*kept, &account, index, &mut scratch));
    }
    warn_insane("orders", lines.insane + insane);
    Ok(out)
}

/// Reads `ids` on `conn` and builds each account at once.
fn here(
    conn: &Connection,
    ids: &[&str],
    kept: &[Option<Kept<'_>>],
    until: NaiveDate,
    index: &mut SkuIndex,
    lines: &mut Lines,
) -> Result<Vec<Option<AccountOrders>>> {
    each(conn, ids, kept, until, index, lines, |k, lines, index| {
        lines.take_after(kept[k], index)
    })
}

/// Reads `ids` on `conn`: each account's lines as read, numbered with
/// `index` (new names added to it).
fn raw(
    conn: &Connection,
    ids: &[&str],
    kept: &[Option<Kept<'_>>],
    until: NaiveDate,
    index: &mut SkuIndex,
    lines: &mut Lines,
) -> Result<Vec<Vec<Line>>> {
    each(conn, ids, kept, until, index, lines, |_, lines, _| {
        lines.raw()
    })
}

/// Reads each of `ids` on `conn` into `lines` (SKUs numbered with
/// `index`), from the day `kept` has for it (all its lines without),
/// and keeps what `done` makes of them (given the account's place).
fn each<T>(
    conn: &Connection,
    ids: &[&str],
    kept: &[Option<Kept<'_>>],
    until: NaiveDate,
    index: &mut SkuIndex,
    lines: &mut Lines,
    mut done: impl FnMut(usize, &mut Lines, &mut SkuIndex) -> T,
) -> Result<Vec<T>> {
    let mut st = conn.prepare_cached(ORDERS_OF)?;
    let mut out = Vec::with_capacity(ids.len());
    let until = date_text(until);
    for (k, (id, kept)) in ids.iter().zip(kept).enumerate() {
        // Every stored date is YYYY-MM-DD: "" is before all of them.
        let from = kept.map_or(String::new(), |(d, _, _)| date_text(date_of(d)));
        let mut rows = st.query(rusqlite::params![id, from, until])?;
        while let Some(r) = rows.next()? {
            lines.push(r, 0, index)?;
        }
        out.push(done(k, lines, index));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::load;

    /// Each account's series and SKU lines as text, the SKUs by name.
    fn shown(out: &[Option<AccountOrders>], index: &SkuIndex) -> Vec<String> {
        out.iter()
            .map(|o| match o {
                None => "none".to_string(),
                Some(o) => {
                    let skus: Vec<String> = o
                        .skus
                        .iter()
                        .map(|l| {
                            let name = &index.names[l.sku as usize];
                            format!(
                                "{} {name} {:?} {:?}",
                                l.day,
                                l.qty.to_bits(),
                                l.revenue.to_bits()
                            )
                        })
                        .collect();
                    format!("{:?} {skus:?}", o.series)
                }
            })
            .collect()
    }

    /// An account's lines are read from the index alone, in the order
    /// the sums take them: no table page and no sort (the plan would say
    /// `USE TEMP B-TREE` or a plain `INDEX` otherwise).
    #[test]
    fn an_accounts_lines_come_from_the_index_alone() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("k.db")).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {ORDERS_OF}"))
            .unwrap()
            .query_map(rusqlite::params!["K1", "2026-02-01", "2026-12-31"], |r| {
                r.get(3)
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            plan,
            [
                "SEARCH orders USING COVERING INDEX orders_lines_by_account (account_id=? AND date>? AND date<?)"
            ]
        );
        let old: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'orders_by_account'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old, 0, "the index it replaces is dropped");
    }

    /// Read apart or here, every account is what the full read gives, to
    /// the bit, and new SKU names are numbered in the same order: names
    /// met first in the second half, met in both halves, and met in the
    /// second half only after the first half met them.
    #[test]
    fn read_apart_is_read_here() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        let conn = crate::store::open(&path).unwrap();
        let mut sql = String::from(
            "INSERT INTO orders (order_id, line, account_id, date, sku, qty, revenue, cost) VALUES ",
        );
        let mut rows = Vec::new();
        for a in 0..12u32 {
            for k in 0..(3 + a % 4) {
                // SKUs: S0 everywhere; first-half accounts also N1; the
                // second half N2, then N1; account 7 a line without a SKU.
                let sku = match (a, k % 3) {
                    (7, 2) => "NULL".to_string(),
                    (_, 0) => "'S0'".to_string(),
                    (0..=5, _) => "'N1'".to_string(),
                    (_, 1) => "'N2'".to_string(),
                    _ => "'N1'".to_string(),
                };
                rows.push(format!(
                    "('O{a}-{}', '{k}', 'K{a:02}', '2026-0{}-1{}', {sku}, {k}, {}.1, {}.37)",
                    k / 2,
                    1 + k % 5,
                    k % 4,
                    a * 7 + k,
                    k
                ));
            }
        }
        sql += &rows.join(", ");
        conn.execute_batch(&sql).unwrap();
        let ids: Vec<String> = (0..13).map(|a| format!("K{a:02}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let until: NaiveDate = "2026-12-31".parse().unwrap();
        let start = || {
            let mut i = SkuIndex::default();
            i.intern("S0").unwrap();
            i
        };
        let (mut i_here, mut i_apart) = (start(), start());
        let whole = vec![None; ids.len()];
        let here = orders_of(&conn, &ids, &whole, until, &mut i_here, usize::MAX).unwrap();
        let apart = orders_of(&conn, &ids, &whole, until, &mut i_apart, 2).unwrap();
        assert_eq!(i_here.names, ["S0", "N1", "N2"]);
        assert_eq!(i_apart.names, i_here.names);
        assert_eq!(shown(&apart, &i_apart), shown(&here, &i_here));
        assert_eq!(apart.len(), 13);
        assert!(apart[12].is_none(), "K12 has no lines");
        // And the full read's, account by account.
        let full = load::orders(&conn, until).unwrap();
        let full_out: Vec<Option<AccountOrders>> = ids
            .iter()
            .map(|id| {
                full.accounts.get(*id).map(|o| AccountOrders {
                    series: o.series.clone(),
                    skus: o.skus.clone(),
                })
            })
            .collect();
        assert_eq!(shown(&apart, &i_apart), shown(&full_out, &full.index));
    }
}
