//! The daemon's metrics kept in memory between evaluations, and brought up
//! to date from what each ingested file wrote instead of read again whole.
//!
//! [`Live::capture`] puts temporary triggers (`notes`) on the daemon's connection
//! (visible to it alone): every order line or visit the connection writes,
//! replaces or deletes notes its account (old and new), a write to the
//! master, receivables or stock notes the dataset, and every ledger entry
//! its id, in a temporary table, inside the same transaction as the write.
//! A file rolled back leaves no note; a committed one cannot be missed.
//! [`Live::refresh`] reads the notes and reads again only those accounts'
//! order lines (through the `orders_by_account` index) and visits (by the
//! table's key), or the small datasets named, and assembles the timeline
//! from the same `Parts` a full load gives. Any ledger entry it did not see
//! written (a `kamwatch ingest` in another process, a file the daemon
//! ingested in a child process) makes it load everything again; so does
//! SIGHUP. Reads the store; writes only its own temporary table.

use anyhow::Result;
use chrono::NaiveDate;
use rusqlite::Connection;

use super::notes;
use super::parts::Parts;
use super::snapshot::{Snapshot, dump};
use super::timeline::Timeline;
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
    /// Ids of the accounts whose lines or visits were read again, sorted
    /// (for `rules::changed`: what the next evaluation runs again).
    pub accounts: Vec<String>,
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
    /// The timeline of `parts`, assembled once per change.
    timeline: Option<Timeline>,
    /// Past this many touched accounts, when they are also half or more of
    /// the book, everything is read again instead (see `refresh`).
    full_read_over: usize,
}

/// A refresh re-reading more accounts than this, and half the book or
/// more, reads everything instead.
const FULL_READ_OVER: usize = 1000;

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
            full_read_over: FULL_READ_OVER,
        })
    }

    /// Reads everything again, the old parts freed first: two books in
    /// memory at once would double the daemon's peak. If the read fails
    /// the parts are left empty and the error returned: the caller reads
    /// everything again before it uses them (the daemon drops them).
    fn reload(&mut self, conn: &Connection) -> Result<()> {
        self.timeline = None;
        self.parts = Parts::empty(far());
        let over = self.full_read_over;
        *self = Live::load(conn)?;
        self.full_read_over = over;
        Ok(())
    }

    /// What the accounts' histories take in memory.
    pub fn footprint(&self) -> super::parts::Footprint {
        self.parts.footprint()
    }

    /// Brings the parts up to date with what was written since the last
    /// load or refresh.
    pub fn refresh(&mut self, conn: &Connection) -> Result<Refresh> {
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
        // Reading accounts one by one costs about twice what the same
        // accounts cost in a full read, in order (a 10,000-line re-export
        // touching 6,000 of 10,000 accounts: 3.6 s against 2.6-3.0 s).
        // Past half the book, everything is read again.
        let touched = orders.len().max(visits.len());
        if touched > self.full_read_over && touched * 2 >= self.parts.accounts() {
            self.reload(conn)?;
            return Ok(Refresh {
                reloaded: Some(format!(
                    "the files touched {touched} accounts, half the book or more: reading everything is faster"
                )),
                ..Refresh::default()
            });
        }
        self.ledger = newest;
        let has = |kind: &str| notes.iter().any(|(what, _)| what == kind);
        let mut accounts: Vec<String> = orders
            .iter()
            .chain(&visits)
            .map(|a| a.to_string())
            .collect();
        accounts.sort_unstable();
        accounts.dedup();
        let mut done = Refresh {
            orders: orders.len(),
            visits: visits.len(),
            accounts,
            ..Refresh::default()
        };
        if has("m") {
            self.parts.reload_master(conn)?;
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
        self.parts.reload_orders(conn, &orders)?;
        self.parts.reload_visits(conn, &visits)?;
        if done.changed() {
            self.timeline = None;
        }
        Ok(done)
    }

    /// The snapshot as of `as_of`: what `metrics::build` gives for it.
    pub fn snapshot(&mut self, as_of: NaiveDate, tiers: &TierConfig) -> Snapshot {
        let parts = &self.parts;
        self.timeline
            .get_or_insert_with(|| Timeline::of(parts))
            .snapshot(as_of, tiers)
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
mod tests {
    use std::path::PathBuf;

    use proptest::prelude::*;

    use super::*;
    use crate::config::Loaded;

    use crate::config::testing::project;

    const ACCOUNTS: [&str; 6] = ["KH1", "KH2", "KH3", "KH4", "KH5", "KH6"];
    const SKUS: [&str; 5] = ["", "S1", "S2", "S3", "S4"];

    /// An order line: (order, line, account, day, sku, qty, revenue, cost).
    type OrderLine = (u8, u8, usize, u16, usize, u16, u32, u32);

    /// One file dropped into the daemon.
    #[derive(Debug, Clone)]
    enum Drop {
        /// Order lines: (order, line, account, day, sku, qty, revenue, cost).
        /// Keys repeat across files: a later file replaces the line, with
        /// other amounts or another account or day.
        Orders(Vec<OrderLine>),
        /// The master: (account, active in it, credit limit, tier override).
        Master(Vec<(usize, Option<u32>, Option<u8>)>),
        /// Visits: (account, day, visitor, role).
        Visits(Vec<(usize, u16, u8, u8)>),
        Receivables(Vec<(usize, u8, u32, u16)>),
        Inventory(Vec<(usize, Option<usize>, u32)>),
        /// An orders file with one bad row: rejected, nothing stored.
        Rejected(Vec<OrderLine>),
        /// The file dropped `n` steps back, again (a duplicate).
        Again(usize),
    }

    fn date(d: u16) -> String {
        let day =
            NaiveDate::from_ymd_opt(2025, 12, 1).unwrap() + chrono::Duration::days(i64::from(d));
        day.format("%Y-%m-%d").to_string()
    }

    fn order_rows(rows: &[OrderLine], bad: bool) -> String {
        let mut t = "订单编号,行号,客户编号,订单日期,产品编号,数量,金额,成本\n".to_string();
        for (k, (o, l, a, d, s, q, r, c)) in rows.iter().enumerate() {
            let amount = if bad && k == rows.len() / 2 {
                "abc".to_string()
            } else {
                // Cents, so sums are not exact in binary.
                format!("{}.{:02}", r / 100, r % 100)
            };
            t += &format!(
                "O{o},{l},{},{},{},{q},{amount},{}.{:02}\n",
                ACCOUNTS[*a],
                date(*d),
                SKUS[*s],
                c / 100,
                c % 100
            );
        }
        t
    }

    /// The file's name and text.
    fn file(step: usize, drop: &Drop, past: &[(String, String)]) -> (String, String) {
        match drop {
            Drop::Orders(rows) => (format!("销售明细_s{step}.csv"), order_rows(rows, false)),
            Drop::Rejected(rows) => (format!("销售明细_bad{step}.csv"), order_rows(rows, true)),
            Drop::Master(rows) => {
                let mut t =
                    "客户编号,客户名称,区域,业务员,业务员邮箱,主管邮箱,信用额度,等级\n".to_string();
                for (a, limit, tier) in rows {
                    t += &format!(
                        "{},客户{a}{step},华东,张伟,zhang@example.com,,{},{}\n",
                        ACCOUNTS[*a],
                        limit.map(|l| l.to_string()).unwrap_or_default(),
                        tier.map(|t| ["A", "B", "C"][usize::from(t % 3)])
                            .unwrap_or("")
                    );
                }
                (format!("客户主数据_s{step}.csv"), t)
            }
            Drop::Visits(rows) => {
                let mut t = "拜访日期,客户编号,拜访人,职务\n".to_string();
                for (a, d, who, role) in rows {
                    t += &format!(
                        "{},{},人{who},{}\n",
                        date(*d),
                        ACCOUNTS[*a],
                        ["业务员", "经理", "总监", ""][usize::from(*role % 4)]
                    );
                }
                (format!("拜访记录_s{step}.csv"), t)
            }
            Drop::Receivables(rows) => {
                let mut t = "客户编号,发票号,开票日期,到期日,未收金额\n".to_string();
                for (a, inv, amount, d) in rows {
                    t += &format!(
                        "{},FP{inv},{},{},{}.{:02}\n",
                        ACCOUNTS[*a],
                        date(*d),
                        date(*d + 30),
                        amount / 100,
                        amount % 100
                    );
                }
                let day = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap()
                    + chrono::Duration::days(step as i64);
                (format!("应收账款_{}.csv", day.format("%Y%m%d")), t)
            }
            Drop::Inventory(rows) => {
                let mut t = "产品编号,客户编号,库存数量\n".to_string();
                for (s, a, on_hand) in rows {
                    t += &format!(
                        "{},{},{on_hand}\n",
                        SKUS[1 + s % 4],
                        a.map(|a| ACCOUNTS[a]).unwrap_or("")
                    );
                }
                let day = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap()
                    + chrono::Duration::days(step as i64);
                (format!("库存_{}.csv", day.format("%Y%m%d")), t)
            }
            Drop::Again(_) if past.is_empty() => {
                (format!("拜访记录_empty{step}.csv"), String::new())
            }
            Drop::Again(n) => {
                let (name, text) = &past[past.len() - 1 - n % past.len().max(1)];
                (format!("again{step}_{name}"), text.clone())
            }
        }
    }

    fn drops() -> impl Strategy<Value = Drop> {
        let line = (
            0u8..12,
            1u8..4,
            0usize..6,
            0u16..400,
            0usize..5,
            0u16..50,
            0u32..500_000,
            0u32..400_000,
        );
        prop_oneof![
            4 => prop::collection::vec(line.clone(), 1..12).prop_map(Drop::Orders),
            1 => prop::collection::vec(line, 2..6).prop_map(Drop::Rejected),
            1 => prop::collection::vec((0usize..6, prop::option::of(0u32..100_000), prop::option::weighted(0.2, 0u8..3)), 1..7)
                .prop_map(Drop::Master),
            2 => prop::collection::vec((0usize..6, 0u16..400, 0u8..3, 0u8..4), 1..8).prop_map(Drop::Visits),
            1 => prop::collection::vec((0usize..6, 0u8..5, 0u32..2_000_000, 200u16..380), 1..6).prop_map(Drop::Receivables),
            1 => prop::collection::vec((0usize..4, prop::option::of(0usize..6), 0u32..5000), 1..6).prop_map(Drop::Inventory),
            1 => (0usize..5).prop_map(Drop::Again),
        ]
    }

    /// What the rules find, without the account's arrays (the daemon's
    /// hold lines after the as-of day too, unseen by the snapshot).
    fn findings(rules: &crate::rules::RuleSet, snap: &Snapshot) -> String {
        let out = rules.evaluate(snap);
        let mut lines: Vec<String> = out
            .findings
            .iter()
            .map(|f| {
                format!(
                    "{} {} {} {:?} {} {:?} {}",
                    f.rule, f.account.id, f.key, f.severity, f.title, f.figures, f.action
                )
            })
            .collect();
        lines.extend(out.errors.iter().map(|e| format!("{e:?}")));
        lines.join("\n")
    }

    fn check(
        live: &mut Live,
        conn: &Connection,
        cfg: &Loaded,
        rules: &crate::rules::RuleSet,
        what: &str,
    ) {
        let tiers = &cfg.cfg.tiers;
        for as_of in ["2026-11-28", "2026-06-30"] {
            let as_of: NaiveDate = as_of.parse().unwrap();
            let full = Timeline::load(conn, as_of).unwrap().snapshot(as_of, tiers);
            let inc = live.snapshot(as_of, tiers);
            let (a, b) = (super::dump(&full), super::dump(&inc));
            if let Some((n, x, y)) = first_difference(&a, &b) {
                panic!(
                    "{what}, as of {as_of}: line {n} differs\nfull:        {x}\nincremental: {y}"
                );
            }
            assert_eq!(findings(rules, &full), findings(rules, &inc), "{what}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Random sequences of files into a daemon-like state: after each,
        /// the refreshed in-memory snapshot equals a full read, to the bit,
        /// and the rules find the same.
        #[test]
        fn incremental_equals_full(
            master_first in any::<bool>(),
            mut seq in prop::collection::vec(drops(), 1..14),
        ) {
            // Half the books start from a master of every account; the
            // others get theirs late, or never.
            if master_first {
                seq.insert(0, Drop::Master((0..6).map(|a| (a, Some(50_000), None)).collect()));
            }
            let (_dir, cfg) = project();
            let mut conn = crate::store::open(&cfg.database()).unwrap();
            Live::capture(&conn).unwrap();
            let (rules, errors, _) = crate::rules::RuleSet::load_config(&cfg).unwrap();
            assert!(errors.is_empty(), "{errors:?}");
            let mut live = Live::load(&conn).unwrap();
            let mut past: Vec<(String, String)> = Vec::new();
            for (step, drop) in seq.iter().enumerate() {
                let (name, text) = file(step, drop, &past);
                let path: PathBuf = cfg.inbox().join(&name);
                std::fs::write(&path, &text).unwrap();
                let report = crate::ingest::ingest_file(&cfg, &mut conn, &path).unwrap();
                if matches!(drop, Drop::Rejected(_)) {
                    prop_assert_eq!(report.outcome, crate::store::Outcome::Rejected);
                }
                past.push((name.clone(), text));
                let r = live.refresh(&conn).unwrap();
                prop_assert!(r.reloaded.is_none(), "{:?}", r);
                check(&mut live, &conn, &cfg, &rules, &format!("after step {step} ({name}, {:?})", report.outcome));
            }
        }
    }

    /// A file ingested by another process is noticed: everything is read
    /// again, and the snapshot is the full one.
    #[test]
    fn another_writer_makes_it_read_everything_again() {
        let (_dir, cfg) = project();
        let mut conn = crate::store::open(&cfg.database()).unwrap();
        Live::capture(&conn).unwrap();
        let (rules, _, _) = crate::rules::RuleSet::load_config(&cfg).unwrap();
        let mut live = Live::load(&conn).unwrap();
        let rows = vec![
            (1, 1, 0, 350, 1, 3, 12_345, 10_000),
            (2, 1, 1, 351, 2, 1, 99, 50),
        ];
        let orders = cfg.inbox().join("销售明细_a.csv");
        std::fs::write(&orders, order_rows(&rows, false)).unwrap();
        crate::ingest::ingest_file(&cfg, &mut conn, &orders).unwrap();
        let r = live.refresh(&conn).unwrap();
        assert_eq!((r.orders, r.reloaded.as_deref()), (2, None));
        // Another connection (as `kamwatch ingest` would) moves KH1's line.
        let mut other = crate::store::open(&cfg.database()).unwrap();
        let moved = vec![(1, 1, 2, 352, 3, 3, 1, 1)];
        let again = cfg.inbox().join("销售明细_b.csv");
        std::fs::write(&again, order_rows(&moved, false)).unwrap();
        crate::ingest::ingest_file(&cfg, &mut other, &again).unwrap();
        let r = live.refresh(&conn).unwrap();
        assert!(
            r.reloaded
                .as_deref()
                .is_some_and(|w| w.contains("another process")),
            "{r:?}"
        );
        check(&mut live, &conn, &cfg, &rules, "after another writer");
        // Nothing new: nothing read.
        let r = live.refresh(&conn).unwrap();
        assert!(!r.changed(), "{r:?}");
    }

    /// A file touching half the book or more is read as a whole book: the
    /// snapshot is still the full one.
    #[test]
    fn touching_most_of_the_book_reads_everything() {
        let (_dir, cfg) = project();
        let mut conn = crate::store::open(&cfg.database()).unwrap();
        Live::capture(&conn).unwrap();
        let (rules, _, _) = crate::rules::RuleSet::load_config(&cfg).unwrap();
        let first = vec![
            (1, 1, 0, 350, 1, 3, 12_345, 10_000),
            (2, 1, 1, 351, 2, 1, 99, 50),
            (3, 1, 2, 351, 2, 1, 99, 50),
            (4, 1, 3, 351, 2, 1, 99, 50),
        ];
        let f = cfg.inbox().join("销售明细_a.csv");
        std::fs::write(&f, order_rows(&first, false)).unwrap();
        crate::ingest::ingest_file(&cfg, &mut conn, &f).unwrap();
        let mut live = Live::load(&conn).unwrap();
        live.full_read_over = 0;
        // One account of four: read on its own.
        let one = vec![(5, 1, 0, 352, 1, 1, 10, 5)];
        let f = cfg.inbox().join("销售明细_b.csv");
        std::fs::write(&f, order_rows(&one, false)).unwrap();
        crate::ingest::ingest_file(&cfg, &mut conn, &f).unwrap();
        let r = live.refresh(&conn).unwrap();
        assert_eq!((r.orders, r.reloaded.as_deref()), (1, None), "{r:?}");
        // Two of four, amounts changed: everything.
        let two = vec![(2, 1, 1, 351, 2, 1, 199, 50), (3, 1, 2, 351, 2, 1, 299, 50)];
        let f = cfg.inbox().join("销售明细_c.csv");
        std::fs::write(&f, order_rows(&two, false)).unwrap();
        crate::ingest::ingest_file(&cfg, &mut conn, &f).unwrap();
        let r = live.refresh(&conn).unwrap();
        assert!(
            r.reloaded
                .as_deref()
                .is_some_and(|w| w.contains("half the book")),
            "{r:?}"
        );
        assert_eq!(live.full_read_over, 0);
        check(
            &mut live,
            &conn,
            &cfg,
            &rules,
            "after a file touching half the book",
        );
        let r = live.refresh(&conn).unwrap();
        assert!(!r.changed(), "{r:?}");
    }

    /// The check of `eval --verify-incremental` agrees on a generated book.
    #[test]
    fn verify_finds_no_difference_on_a_generated_book() {
        let (dir, cfg) = project();
        let mut conn = crate::store::open(&cfg.database()).unwrap();
        let summary = crate::generate::generate(&crate::generate::GenerateOptions {
            out_dir: dir.path().join("gen"),
            accounts: 40,
            seed: 3,
            end: "2026-11-28".parse().unwrap(),
            months: 24,
        })
        .unwrap();
        for f in &summary.files {
            crate::ingest::ingest_file(&cfg, &mut conn, f).unwrap();
        }
        let v = verify(&conn, "2026-11-28".parse().unwrap(), &cfg.cfg.tiers).unwrap();
        assert!(v.accounts >= 40 && v.lines > 1000, "{v:?}");
        assert!(v.difference.is_none(), "{v:?}");
    }
}
