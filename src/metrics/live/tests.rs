//! The incremental path against a full read: random files into a
//! daemon-like state, compared after each.

use std::path::PathBuf;

use proptest::prelude::*;

use super::*;
use crate::config::Loaded;
use crate::metrics::{AccountMetrics, Portfolio};
use crate::model::Tier;

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
    let day = NaiveDate::from_ymd_opt(2025, 12, 1).unwrap() + chrono::Duration::days(i64::from(d));
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
            let day =
                NaiveDate::from_ymd_opt(2026, 10, 1).unwrap() + chrono::Duration::days(step as i64);
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
            let day =
                NaiveDate::from_ymd_opt(2026, 10, 1).unwrap() + chrono::Duration::days(step as i64);
            (format!("库存_{}.csv", day.format("%Y%m%d")), t)
        }
        Drop::Again(_) if past.is_empty() => (format!("拜访记录_empty{step}.csv"), String::new()),
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
        // Half of them in the 90 days before the as-of day: the book's
        // demand for a SKU the warehouse stocks moves others' cover.
        prop_oneof![0u16..400, 272u16..363],
        0usize..5,
        0u16..50,
        0u32..500_000,
        0u32..400_000,
    );
    prop_oneof![
        3 => prop::collection::vec(line.clone(), 1..12).prop_map(Drop::Orders),
        // A small drop: the accounts it does not name keep their metrics.
        2 => prop::collection::vec(line.clone(), 1..3).prop_map(Drop::Orders),
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

/// Every account's tier and share above on days from today to two years
/// back: by the basis, by revenue alone, by gross profit alone; the
/// incremental snapshot's from the rankings kept between snapshots where
/// they still hold (`metrics::ranks`), the full one's ranked afresh.
fn history(snap: &Snapshot) -> Vec<String> {
    use crate::config::TierBasis;
    const DAYS: [i64; 18] = [
        0, 1, 2, 7, 29, 30, 31, 60, 90, 150, 181, 200, 300, 364, 365, 400, 500, 730,
    ];
    let mut out = Vec::new();
    for a in &snap.accounts {
        for d in DAYS {
            let seen = [
                a.tier_ago(d),
                a.tier_alone_ago(TierBasis::Revenue, d),
                a.tier_alone_ago(TierBasis::GrossProfit, d),
            ];
            let bits: Vec<(Tier, u64)> = seen.iter().map(|(t, s)| (*t, s.to_bits())).collect();
            out.push(format!("{} {d} {bits:?}", a.id));
        }
    }
    out
}

/// Every field of the snapshot, of its portfolio and of each account's
/// metrics, as text to the bit (destructured without `..`: a field added
/// later does not compile here until it is compared); the tier history by
/// [`history`] and the book's rankings alone on the same days.
fn fields(snap: &Snapshot) -> String {
    use crate::config::TierBasis;
    let Snapshot {
        as_of,
        accounts,
        portfolio,
        unknown_accounts,
        unknown_examples,
        unknown_revenue_12m,
        skus,
    } = snap;
    let mut o = format!(
        "{as_of} {unknown_accounts} {unknown_examples:?} {unknown_revenue_12m:?} {skus:?}\n"
    );
    let Portfolio {
        accounts: n,
        revenue_12m,
        tier_a,
        tier_b,
        tier_c,
        series,
        with_data,
        a_share,
        b_share,
        floor_a,
        floor_b,
        by,
        history: book_history,
    } = &**portfolio;
    o += &format!(
        "portfolio {n} {revenue_12m:?} {tier_a} {tier_b} {tier_c} {series:?} {with_data:?} {a_share:?} {b_share:?} {floor_a:?} {floor_b:?} {by:?} {}\n",
        book_history.is_some()
    );
    for d in [0, 1, 30, 31, 200, 364, 400, 730] {
        for by in [TierBasis::Revenue, TierBasis::GrossProfit] {
            o += &format!(" book alone {by:?} {d} {:?}\n", portfolio.book_alone(by, d));
        }
    }
    for a in accounts.iter() {
        let AccountMetrics {
            id,
            name,
            region,
            owner,
            owner_email,
            manager_email,
            manager,
            tier,
            prev_tier,
            rank,
            share,
            share_above,
            history,
            revenue_12m,
            series,
            sku_days,
            visits,
            roles,
            attrs,
            credit_limit,
            invoices,
            main_skus,
            stock,
        } = &**a;
        o += &format!(
            "{id:?} {name:?} {region:?} {owner:?} {owner_email:?} {manager_email:?} {manager:?} {tier} {prev_tier} {rank} {share:?} {share_above:?} {:?} {revenue_12m:?}\n {series:?}\n {:?}\n {:?}\n {roles:?} {attrs:?} {credit_limit:?} {invoices:?} {main_skus:?} {stock:?}\n",
            history.as_ref().map(|h| h.1),
            sku_days.iter().collect::<Vec<_>>(),
            visits.iter().collect::<Vec<_>>(),
        );
    }
    o.push_str(&history(snap).join("\n"));
    o
}

/// The snapshots' as-of days and what the refresh before them read (a
/// day given twice in a row: nothing read between).
struct Checked<'a> {
    days: &'a [NaiveDate],
    /// The refresh read some accounts again (these) and nothing else,
    /// and the last snapshot was of `days[0]`, with this many SKU names:
    /// the first snapshot keeps every account but these from it.
    reuse: Option<(&'a [String], usize)>,
}

/// Compares the live snapshots of `on.days` with full reads, to the
/// bit, and the live timeline with one assembled from the parts as they
/// are; returns whether any account was ranked, and the last snapshot's
/// number of SKU names.
fn check(
    live: &mut Live,
    conn: &Connection,
    cfg: &Loaded,
    rules: &crate::rules::RuleSet,
    what: &str,
    on: Checked,
) -> (bool, usize) {
    let tiers = &cfg.cfg.tiers;
    let mut ranked = false;
    let mut skus = 0;
    for (k, &as_of) in on.days.iter().enumerate() {
        let full = Timeline::load(conn, as_of).unwrap().snapshot(as_of, tiers);
        let inc = live.snapshot(as_of, tiers);
        let (a, b) = (super::dump(&full), super::dump(&inc));
        if let Some((n, x, y)) = first_difference(&a, &b) {
            panic!("{what}, as of {as_of}: line {n} differs\nfull:        {x}\nincremental: {y}");
        }
        // Field by field against a snapshot built afresh from the same
        // parts (a full read up to the as-of day numbers only the SKUs
        // and roles it saw: the dump compares those by name).
        let fresh = Timeline::of(&live.parts);
        let (a, b) = (fields(&fresh.snapshot(as_of, tiers)), fields(&inc));
        if let Some((n, x, y)) = first_difference(&a, &b) {
            panic!("{what}, as of {as_of}: field line {n} differs\nfresh: {x}\nkept:  {y}");
        }
        let timeline = live.timeline.as_ref().map(Timeline::dump);
        assert_eq!(timeline, Some(fresh.dump()), "{what}");
        assert_eq!(findings(rules, &full), findings(rules, &inc), "{what}");
        // The accounts kept from the last snapshot: all but those read
        // again, when it was of the same day and the refresh read nothing
        // else (new SKU names read the stock again: none); else none.
        let reuse = match k {
            0 => on.reuse,
            _ => (on.days[k - 1] == as_of).then_some((&[][..], skus)),
        };
        let kept = match reuse.filter(|r| r.1 == inc.skus.len()) {
            Some((touched, _)) => inc
                .accounts
                .iter()
                .filter(|a| !touched.iter().any(|t| **t == *a.id))
                .count(),
            None => 0,
        };
        assert_eq!(live.restood(), kept, "{what}, as of {as_of}: accounts kept");
        ranked |= !inc.accounts.is_empty();
        skus = inc.skus.len();
    }
    (ranked, skus)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random sequences of files into a daemon-like state: after each,
    /// the refreshed in-memory snapshot equals a full read, to the bit,
    /// field by field, and the rules find the same; so does the timeline
    /// updated in place. Each step takes the snapshot of one as-of day or
    /// of both: a snapshot of the day the last one was of keeps every
    /// account not read again from it (checked by count).
    #[test]
    fn incremental_equals_full(
        master_first in any::<bool>(),
        stock_first in any::<bool>(),
        mut seq in prop::collection::vec(drops(), 1..14),
        picks in prop::collection::vec(0usize..4, 15),
    ) {
        // Half the books start from a master of every account; the
        // others get theirs late, or never.
        if master_first {
            seq.insert(0, Drop::Master((0..6).map(|a| (a, Some(50_000), None)).collect()));
        }
        // Half of them have the warehouse's stock of every SKU from the start.
        if stock_first {
            seq.insert(0, Drop::Inventory((0..4).map(|s| (s, None, 900)).collect()));
        }
        let (_dir, cfg) = project();
        let mut conn = crate::store::open(&cfg.database()).unwrap();
        Live::capture(&conn).unwrap();
        let (rules, errors, _) = crate::rules::RuleSet::load_config(&cfg).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        let mut live = Live::load(&conn).unwrap();
        // Every refresh of two accounts or more reads half of them on a
        // second connection, as a re-export does at scale.
        live.read_apart_from = 2;
        let mut past: Vec<(String, String)> = Vec::new();
        let mut ranked = false;
        let (a, b): (NaiveDate, NaiveDate) = ("2026-11-28".parse().unwrap(), "2026-06-30".parse().unwrap());
        let mut last: Option<(NaiveDate, usize)> = None;
        for (step, drop) in seq.iter().enumerate() {
            let (name, text) = file(step, drop, &past);
            let path: PathBuf = cfg.inbox().join(&name);
            std::fs::write(&path, &text).unwrap();
            let report = crate::ingest::ingest_file(&cfg, &mut conn, &path).unwrap();
            if matches!(drop, Drop::Rejected(_)) {
                prop_assert_eq!(report.outcome, crate::store::Outcome::Rejected);
            }
            past.push((name.clone(), text));
            // The days the last check read are kept for this one, so
            // its incremental history is read from them where they hold.
            prop_assert!(!ranked || live.ranks.days() > 0, "no ranking kept");
            let r = live.refresh(&conn).unwrap();
            prop_assert!(r.reloaded.is_none(), "{:?}", r);
            let days: &[NaiveDate] = match picks[step] {
                0 => &[a, b],
                1 => &[a],
                2 => &[b],
                _ => &[a, a],
            };
            let reuse = last
                .filter(|l| l.0 == days[0] && r.datasets.is_empty())
                .map(|l| (r.accounts.as_slice(), l.1));
            let what = format!("after step {step} ({name}, {:?})", report.outcome);
            let skus;
            (ranked, skus) = check(&mut live, &conn, &cfg, &rules, &what, Checked { days, reuse });
            last = Some((days[days.len() - 1], skus));
        }
    }
}

/// Both as-of days, nothing kept expected (everything was read again).
fn both() -> Checked<'static> {
    static DAYS: std::sync::LazyLock<[NaiveDate; 2]> =
        std::sync::LazyLock::new(|| ["2026-11-28", "2026-06-30"].map(|d| d.parse().unwrap()));
    Checked {
        days: &*DAYS,
        reuse: None,
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
    check(
        &mut live,
        &conn,
        &cfg,
        &rules,
        "after another writer",
        both(),
    );
    // Nothing new: nothing read.
    let r = live.refresh(&conn).unwrap();
    assert!(!r.changed(), "{r:?}");
}

/// A file touching every account of the book (a re-export of them all)
/// reads again those accounts, not everything: the snapshot is still the
/// full one, and a second snapshot of the day keeps no account (all were
/// read again).
#[test]
fn touching_every_account_reads_them_again_not_everything() {
    let (_dir, cfg) = project();
    let mut conn = crate::store::open(&cfg.database()).unwrap();
    Live::capture(&conn).unwrap();
    let (rules, _, _) = crate::rules::RuleSet::load_config(&cfg).unwrap();
    let (name, text) = file(
        0,
        &Drop::Master((0..4).map(|a| (a, Some(50_000), None)).collect()),
        &[],
    );
    let f = cfg.inbox().join(name);
    std::fs::write(&f, text).unwrap();
    crate::ingest::ingest_file(&cfg, &mut conn, &f).unwrap();
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
    live.read_apart_from = 2;
    let a: NaiveDate = "2026-11-28".parse().unwrap();
    check(
        &mut live,
        &conn,
        &cfg,
        &rules,
        "after the load",
        Checked {
            days: &[a],
            reuse: None,
        },
    );
    // Every account, amounts changed.
    let all = vec![
        (1, 1, 0, 350, 1, 3, 12_346, 10_000),
        (2, 1, 1, 351, 2, 1, 199, 50),
        (3, 1, 2, 351, 2, 1, 299, 50),
        (4, 1, 3, 340, 2, 1, 99, 51),
    ];
    let f = cfg.inbox().join("销售明细_c.csv");
    std::fs::write(&f, order_rows(&all, false)).unwrap();
    crate::ingest::ingest_file(&cfg, &mut conn, &f).unwrap();
    let r = live.refresh(&conn).unwrap();
    assert_eq!((r.orders, r.reloaded.as_deref()), (4, None), "{r:?}");
    let skus = live.parts.skus.names.len();
    let on = Checked {
        days: &[a],
        reuse: Some((r.accounts.as_slice(), skus)),
    };
    check(
        &mut live,
        &conn,
        &cfg,
        &rules,
        "after a file touching every account",
        on,
    );
    let r = live.refresh(&conn).unwrap();
    assert!(!r.changed(), "{r:?}");
}

/// A master replaced entirely (every account renamed, the same names):
/// the snapshot is the full one, and the old master's records are freed,
/// not kept by the timeline or the accounts kept for the next snapshot.
#[test]
fn a_master_replaced_entirely_frees_the_old_one() {
    let (_dir, cfg) = project();
    let conn = crate::store::open(&cfg.database()).unwrap();
    Live::capture(&conn).unwrap();
    let master = |prefix: &str| {
        for i in 0..3 {
            conn.execute(
                "INSERT INTO accounts (id, name, owner, updated_at) VALUES (?1, ?2, '王', 'x')",
                rusqlite::params![format!("{prefix}{i}"), format!("客户{i}")],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO orders (order_id, line, account_id, date, sku, qty, revenue, cost)
                 VALUES (?1, '1', ?2, '2026-11-01', 'S1', 1, 100, 60)",
                rusqlite::params![format!("{prefix}O{i}"), format!("{prefix}{i}")],
            )
            .unwrap();
        }
    };
    master("A");
    let tiers = crate::config::TierConfig::default();
    let day: NaiveDate = "2026-11-28".parse().unwrap();
    let mut live = Live::load(&conn).unwrap();
    drop(live.snapshot(day, &tiers));
    let old: Vec<_> = live
        .parts
        .master
        .iter()
        .map(|l| std::sync::Arc::downgrade(&l.who))
        .collect();
    assert_eq!(old.len(), 3);
    conn.execute_batch("DELETE FROM orders; DELETE FROM accounts;")
        .unwrap();
    master("B");
    let r = live.refresh(&conn).unwrap();
    assert_eq!(r.datasets, ["master"], "{r:?}");
    let snap = live.snapshot(day, &tiers);
    let ids: Vec<&str> = snap.accounts.iter().map(|a| &*a.id).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| i.starts_with('B')), "{ids:?}");
    let full = crate::metrics::build(&conn, day, &tiers).unwrap();
    assert_eq!(dump(&snap), dump(&full));
    drop(snap);
    assert!(old.iter().all(|w| w.upgrade().is_none()));
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

/// Re-exports of every kind the ingest writes, each refreshed and
/// compared with a full read, to the bit: a line replaced by itself (the
/// same amounts), a key moved to another account and back within one file
/// and a key repeated with other amounts (`duplicate_keys: keep_last`
/// stores the last row), a line moved to another day, amounts of 1e15
/// beside 0.01 summed many times on one day (where a difference applied
/// to a sum would not give the sum's bits: the refresh reads the
/// account's lines again instead), and an order's lines deleted and
/// replaced by one on another account (a configured `key: [order_id]`).
#[test]
fn re_exports_of_every_kind_equal_a_full_read() {
    let (_dir, mut cfg) = project();
    cfg.cfg.ingest.max_amount = 1e15;
    cfg.cfg.datasets.orders.duplicate_keys = crate::config::DuplicateKeys::KeepLast;
    let mut conn = crate::store::open(&cfg.database()).unwrap();
    Live::capture(&conn).unwrap();
    let (rules, _, _) = crate::rules::RuleSet::load_config(&cfg).unwrap();
    let master = Drop::Master((0..6).map(|a| (a, Some(50_000), None)).collect());
    let (name, text) = file(0, &master, &[]);
    let mut files = vec![(name, text)];
    let header = "订单编号,行号,客户编号,订单日期,产品编号,数量,金额,成本\n";
    let mut first = header.to_string();
    for k in 0..40 {
        // KH1: 1e15 and many cents on one day; KH2 and KH3 a line a day.
        let amount = if k == 0 { "1000000000000000" } else { "0.01" };
        first += &format!("B,{k},KH1,{},S1,1,{amount},0.01\n", date(350));
        first += &format!(
            "C{k},1,KH2,{},S2,2,{}.{:02},1.10\n",
            date(300 + k),
            10 + k,
            k
        );
        first += &format!("D{k},1,KH3,{},,1,0.10,0.07\n", date(320 + k / 4));
    }
    files.push(("销售明细_first.csv".to_string(), first));
    // The same lines again, unchanged (a re-export changing nothing).
    let same = files[1].1.clone();
    files.push(("销售明细_same.csv".to_string(), same + "\n"));
    // One file: C3 moved to KH3, then back to KH2 with another amount;
    // B,5 repeated (the last amount stored); D7 moved a day on.
    files.push((
        "销售明细_moves.csv".to_string(),
        format!(
            "{header}C3,1,KH3,{d},S2,2,13.03,1.10\nB,5,KH1,{b},S1,1,0.02,0.01\nC3,1,KH2,{d},S2,2,13.04,1.10\nB,5,KH1,{b},S1,1,0.03,0.01\nD7,1,KH3,{d7},,1,0.10,0.07\n",
            d = date(303),
            b = date(350),
            d7 = date(330),
        ),
    ));
    // The 1e15 line down to a cent, and a cent line up to 1e15.
    files.push((
        "销售明细_big.csv".to_string(),
        format!(
            "{header}B,0,KH1,{b},S1,1,0.01,0.01\nB,39,KH1,{b},S1,1,1000000000000000,0.01\n",
            b = date(350)
        ),
    ));
    // Keyed by the order alone (`key: [order_id]`): order B's 40 lines
    // on KH1 are deleted and its one line stored, on KH2.
    files.push((
        "销售明细_bykey.csv".to_string(),
        format!("{header}B,0,KH2,{},S1,1,5.00,1.00\n", date(351)),
    ));
    let mut live = Live::load(&conn).unwrap();
    live.read_apart_from = 2;
    let a: NaiveDate = "2026-11-28".parse().unwrap();
    let mut last: Option<usize> = None;
    for (name, text) in &files {
        if name.contains("bykey") {
            cfg.cfg.datasets.orders.key = Some(vec!["order_id".to_string()]);
        }
        let path = cfg.inbox().join(name);
        std::fs::write(&path, text).unwrap();
        let report = crate::ingest::ingest_file(&cfg, &mut conn, &path).unwrap();
        assert_eq!(report.outcome, crate::store::Outcome::Ingested, "{name}");
        if name.contains("moves") {
            let stored: f64 = conn
                .query_row(
                    "SELECT revenue FROM orders WHERE order_id = 'B' AND line = '5'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(stored, 0.03, "keep_last stored the last row");
        }
        let r = live.refresh(&conn).unwrap();
        assert!(r.reloaded.is_none(), "{name}: {r:?}");
        let reuse = last
            .filter(|_| r.datasets.is_empty())
            .map(|skus| (r.accounts.as_slice(), skus));
        let on = Checked { days: &[a], reuse };
        let (_, skus) = check(&mut live, &conn, &cfg, &rules, &format!("after {name}"), on);
        last = Some(skus);
    }
    let b: (i64, String) = conn
        .query_row(
            "SELECT COUNT(*), MIN(account_id) FROM orders WHERE order_id = 'B'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(b, (1, "KH2".to_string()), "order B's lines replaced by one");
    let kh: String = conn
        .query_row(
            "SELECT account_id FROM orders WHERE order_id = 'C3'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kh, "KH2");
}

/// The first day of a refresh's order lines is the earliest of the
/// accounts'; an account without one noted (or an unreadable date) rules
/// no day out, and no order line gives none.
#[test]
fn the_first_day_written_is_the_earliest_and_unknown_rules_nothing_out() {
    let from: HashMap<String, String> = [
        ("K1".to_string(), "2026-11-28".to_string()),
        ("K2".to_string(), "2026-03-01".to_string()),
        ("K3".to_string(), "28/11/2026".to_string()),
    ]
    .into();
    let d = |s: &str| s.parse::<NaiveDate>().unwrap();
    assert_eq!(first_day(&["K1"], &from), Some(d("2026-11-28")));
    assert_eq!(first_day(&["K1", "K2"], &from), Some(d("2026-03-01")));
    assert_eq!(first_day(&["K1", "K4"], &from), None);
    assert_eq!(first_day(&["K3", "K1"], &from), None);
    assert_eq!(first_day(&[], &from), None);
}

/// A refresh after a file says the earliest date its order lines had,
/// old or new (a re-export moving a line earlier says the earlier one).
#[test]
fn a_refresh_says_the_first_day_its_lines_were_written() {
    let (_dir, cfg) = project();
    std::fs::create_dir_all(cfg.database().parent().unwrap()).unwrap();
    let mut conn = crate::store::open(&cfg.database()).unwrap();
    Live::capture(&conn).unwrap();
    let mut live = Live::load(&conn).unwrap();
    let drop = |conn: &mut Connection, name: &str, rows: &str| {
        let path = cfg.inbox().join(name);
        std::fs::create_dir_all(cfg.inbox()).unwrap();
        std::fs::write(
            &path,
            format!("订单编号,行号,客户编号,订单日期,产品编号,数量,金额,成本\n{rows}"),
        )
        .unwrap();
        crate::ingest::ingest_file(&cfg, conn, &path).unwrap();
    };
    // Each file, and the first day the refresh after it says: the old date
    // of a line moved to a later day is the first one written.
    for (name, rows, first) in [
        (
            "销售明细_1.csv",
            "X1,1,KH1001,2026-11-20,SP-001,1,10.00,5.00\nX2,1,KH1002,2026-11-28,SP-001,1,10.00,5.00\n",
            "2026-11-20",
        ),
        (
            "销售明细_2.csv",
            "X1,1,KH1001,2026-11-28,SP-001,1,10.00,5.00\n",
            "2026-11-20",
        ),
        (
            "销售明细_3.csv",
            "X3,1,KH1003,2026-11-28,SP-001,1,10.00,5.00\n",
            "2026-11-28",
        ),
    ] {
        drop(&mut conn, name, rows);
        let r = live.refresh(&conn).unwrap();
        assert_eq!(r.orders_from, first.parse().ok(), "{name}");
    }
    // Visits only: no order line.
    let path = cfg.inbox().join("拜访记录_1.csv");
    std::fs::write(
        &path,
        "拜访日期,客户编号,拜访人,职务\n2026-11-28,KH1001,人,经理\n",
    )
    .unwrap();
    crate::ingest::ingest_file(&cfg, &mut conn, &path).unwrap();
    let r = live.refresh(&conn).unwrap();
    assert_eq!((r.orders, r.orders_from), (0, None));
}
