//! Build: the generator's book in memory — accounts with their size, rate,
//! margin and planted problems (declining revenue, slipping margin, lapsed
//! visits), their orders with seasonality, and their visits — each from a
//! random stream of its own (per purpose and item), so one account's data
//! does not shift when another's changes. Pure: touches nothing.

use std::collections::BTreeSet;

use chrono::{Datelike, NaiveDate, TimeDelta};

use super::cast::*;
use super::options::GenerateOptions;
use super::rng::Rng;

/// Length of the "recent" window in which the planted problems show, in days (end-89 ..= end).
pub(super) const RECENT_DAYS: i64 = 90;
/// Volume factor applied to both order frequency and order size of a declining account in the
/// recent window: 0.63 × 0.63 ≈ 40% of the volume it would otherwise have.
pub(super) const DECLINE_FACTOR: f64 = 0.63;
/// Gross-margin points lost by a slipping account in the recent window.
pub(super) const MARGIN_SLIP: f64 = 0.07;
/// Average month length, for turning monthly rates into day gaps.
pub(super) const DAYS_PER_MONTH: f64 = 30.4375;
/// Expected monthly revenue (yuan) of the largest account; everything else scales from it.
pub(super) const TOP_MONTHLY_REVENUE: f64 = 1_200_000.0;

pub(super) const TAG_ACCOUNTS: u64 = 1;
pub(super) const TAG_PLANTS: u64 = 2;
pub(super) const TAG_ORDERS: u64 = 3;
pub(super) const TAG_VISITS: u64 = 4;

pub(super) struct Account {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) rep: usize,
    pub(super) rep_email_missing: bool,
    /// Relative size, ~1.0 for the largest account.
    pub(super) size: f64,
    /// Base orders per month.
    pub(super) rate: f64,
    /// Typical value of one order line, in yuan.
    pub(super) line_value: f64,
    /// Fewest lines per order (1 for small accounts, 2 for the top 30%).
    pub(super) min_lines: i64,
    /// Base gross margin, 0.15..0.30.
    pub(super) margin: f64,
    pub(super) credit: i64,
    pub(super) declining: bool,
    pub(super) slipping: bool,
    pub(super) lapsed: bool,
    /// Among the top ~20% by size: also visited by the manager.
    pub(super) key: bool,
}

pub(super) struct Line {
    pub(super) product: usize,
    pub(super) qty: i64,
    pub(super) amount: i64,
    pub(super) cost: i64,
}

pub(super) struct Order {
    pub(super) day: i64,
    pub(super) account: usize,
    pub(super) lines: Vec<Line>,
}

pub(super) struct Visit {
    pub(super) day: i64,
    pub(super) account: usize,
    pub(super) by_manager: bool,
    pub(super) kind: &'static str,
    pub(super) note: &'static str,
}

/// Days since `start` → date.
pub(super) fn date_at(start: NaiveDate, day: i64) -> NaiveDate {
    start + TimeDelta::days(day)
}

/// Seasonal multiplier on order volume: peaks before Spring Festival (January, early February)
/// and in June; dips in March and August. About ±15%.
pub(super) fn seasonal(date: NaiveDate) -> f64 {
    match date.month() {
        1 => 1.15,
        2 if date.day() <= 10 => 1.12,
        2 => 0.92,
        3 => 0.86,
        4 => 0.95,
        5 => 1.03,
        6 => 1.15,
        7 => 1.00,
        8 => 0.86,
        9 => 0.97,
        10 => 1.04,
        11 => 0.98,
        _ => 1.08,
    }
}

/// `n`·`share` rounded, at least 1, at most `n`.
pub(super) fn share(n: usize, share: f64) -> usize {
    ((n as f64 * share).round() as usize).clamp(1, n.max(1))
}

pub(super) fn build_accounts(opts: &GenerateOptions) -> Vec<Account> {
    let n = opts.accounts;
    let mut rng = Rng::stream(opts.seed, TAG_ACCOUNTS, 0);

    // Zipf-like sizes: rank^-1.125 (= 1 / (r · r^(1/8)), only sqrt needed) with ±15% noise, the
    // ranks dealt to accounts at random. Gives roughly an 80/20 revenue split.
    let mut ranks: Vec<usize> = (1..=n).collect();
    rng.shuffle(&mut ranks);
    let rep_offset = rng.below(REPS.len());
    let mut names = BTreeSet::new();
    let mut accounts = Vec::with_capacity(n);
    for (i, &rank) in ranks.iter().enumerate() {
        let r = rank as f64;
        let size = 1.0 / (r * r.sqrt().sqrt().sqrt()) * rng.uniform(0.85, 1.15);
        // Big accounts order often (several a week), small ones once or twice a month; the rest
        // of the size difference is in the order value.
        let rate = 1.2 + 17.0 * size.sqrt();
        let min_lines = 1; // refined below once the size ranking is known
        let rep = (i + rep_offset) % REPS.len();
        let region = REPS[rep].region;
        let name = account_name(&mut rng, region, &mut names);
        let margin = rng.uniform(0.15, 0.30);
        accounts.push(Account {
            id: format!("KH{}", 1001 + i),
            name,
            rep,
            rep_email_missing: false,
            size,
            rate,
            line_value: 0.0,
            min_lines,
            margin,
            credit: 0,
            declining: false,
            slipping: false,
            lapsed: false,
            key: false,
        });
    }

    // About 2% of accounts have an owner without an email address.
    let missing = (n as f64 * 0.02).round() as usize;
    let mut idx: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut idx);
    for &i in idx.iter().take(missing) {
        accounts[i].rep_email_missing = true;
    }

    // Rank by size; the top 30% are the candidates for the planted problems.
    let mut by_size: Vec<usize> = (0..n).collect();
    by_size.sort_by(|&a, &b| {
        accounts[b]
            .size
            .total_cmp(&accounts[a].size)
            .then(a.cmp(&b))
    });
    let top30 = ((n * 3).div_ceil(10)).max(n.min(2));
    let top20 = (n * 2).div_ceil(10);
    for (pos, &i) in by_size.iter().enumerate() {
        let a = &mut accounts[i];
        a.min_lines = if pos < top30 { 2 } else { 1 };
        a.key = pos < top20;
        let mean_lines = (a.min_lines + 4) as f64 / 2.0;
        a.line_value = (TOP_MONTHLY_REVENUE * a.size / (a.rate * mean_lines)).max(60.0);
        let monthly = a.rate * mean_lines * a.line_value;
        a.credit = ((monthly * 2.5 / 10_000.0).round() as i64).max(1) * 10_000;
    }

    plant_problems(opts.seed, &mut accounts, &by_size[..top30]);
    accounts
}

/// Plants the problems among `pool` (the largest 30% of accounts), from a
/// stream of their own: revenue declining (8% of all accounts), margin
/// slipping (6%, other accounts), visits lapsed (8%, drawn again).
fn plant_problems(seed: u64, accounts: &mut [Account], pool: &[usize]) {
    let n = accounts.len();
    let mut plants = Rng::stream(seed, TAG_PLANTS, 0);
    let mut pool: Vec<usize> = pool.to_vec();
    plants.shuffle(&mut pool);
    let n_declining = share(n, 0.08).min(pool.len());
    let n_slipping = share(n, 0.06).min(pool.len() - n_declining);
    for &i in &pool[..n_declining] {
        accounts[i].declining = true;
    }
    for &i in &pool[n_declining..n_declining + n_slipping] {
        accounts[i].slipping = true;
    }
    plants.shuffle(&mut pool);
    for &i in pool.iter().take(share(n, 0.08)) {
        accounts[i].lapsed = true;
    }
}

/// A plausible, unique retailer name: prefix + format (+ city branch), numbered if taken.
pub(super) fn account_name(rng: &mut Rng, region: usize, taken: &mut BTreeSet<String>) -> String {
    let prefix = rng.pick(&NAME_PREFIXES);
    let suffix = rng.pick(&NAME_SUFFIXES);
    let city = rng.pick(CITIES[region]);
    let base = if rng.chance(0.8) {
        format!("{prefix}{suffix}{city}")
    } else {
        format!("{prefix}{suffix}")
    };
    let mut name = if base.ends_with(suffix) {
        base.clone()
    } else {
        format!("{base}店")
    };
    let mut k = 2;
    while taken.contains(&name) {
        name = format!("{base}{k}号店");
        k += 1;
    }
    taken.insert(name.clone());
    name
}

pub(super) fn build_orders(
    opts: &GenerateOptions,
    start: NaiveDate,
    accounts: &[Account],
) -> Vec<Order> {
    let last = (opts.end - start).num_days();
    let recent = last - (RECENT_DAYS - 1);
    // Volume multiplier per day: seasonality × mild (~5%/year) growth.
    let volume: Vec<f64> = (0..=last)
        .map(|d| seasonal(date_at(start, d)) * (1.0 + 0.05 * d as f64 / 365.25))
        .collect();
    // Revenue in the recent window over the one before it, to keep a random draw from hiding a
    // planted decline (or from faking one on a normal account).
    let trend = |orders: &[Order]| -> Option<f64> {
        if recent - RECENT_DAYS < 0 {
            return None;
        }
        let (mut now, mut before) = (0i64, 0i64);
        for o in orders {
            let amount: i64 = o.lines.iter().map(|l| l.amount).sum();
            if o.day >= recent {
                now += amount;
            } else if o.day >= recent - RECENT_DAYS {
                before += amount;
            }
        }
        Some(if before == 0 {
            f64::INFINITY
        } else {
            now as f64 / before as f64
        })
    };

    let mut orders = Vec::new();
    for (ai, a) in accounts.iter().enumerate() {
        let mut best: Option<(f64, Vec<Order>)> = None;
        for attempt in 0..MAX_ATTEMPTS {
            let mut rng = Rng::stream(opts.seed, TAG_ORDERS, ai as u64 | (attempt << 32));
            let drawn = account_orders(&mut rng, a, ai, last, recent, &volume);
            let Some(ratio) = trend(&drawn) else {
                best = Some((0.0, drawn));
                break;
            };
            // Distance from the wanted band: declining ≤ 0.5, otherwise ≥ 0.7.
            let miss = if a.declining {
                (ratio - 0.5).max(0.0)
            } else {
                (0.7 - ratio).max(0.0)
            };
            if best.as_ref().is_none_or(|(m, _)| miss < *m) {
                best = Some((miss, drawn));
            }
            if miss == 0.0 {
                break;
            }
        }
        orders.extend(best.map(|(_, o)| o).unwrap_or_default());
    }
    // Stable sort keeps each account's orders of one day in generation order.
    orders.sort_by_key(|o| (o.day, o.account));
    orders
}

/// Draws for one account attempts at most this many order histories.
pub(super) const MAX_ATTEMPTS: u64 = 16;

/// One account's orders over days `0..=last`, on a regular-ish reorder cycle with a random phase.
pub(super) fn account_orders(
    rng: &mut Rng,
    a: &Account,
    ai: usize,
    last: i64,
    recent: i64,
    volume: &[f64],
) -> Vec<Order> {
    let mut orders = Vec::new();
    let mut t = rng.unit() * DAYS_PER_MONTH / a.rate;
    loop {
        let day = t as i64;
        if day > last {
            break;
        }
        let in_recent = day >= recent;
        let decline = if a.declining && in_recent {
            DECLINE_FACTOR
        } else {
            1.0
        };
        let n_lines = rng.between(a.min_lines, 4) as usize;
        let mut products: Vec<usize> = (0..PRODUCTS.len()).collect();
        rng.shuffle(&mut products);
        products.truncate(n_lines);
        products.sort_unstable();
        let mut lines = Vec::with_capacity(n_lines);
        for product in products {
            let price = PRODUCTS[product].price;
            let target = a.line_value * decline * rng.uniform(0.75, 1.25);
            let qty = ((target * 100.0 / price as f64).round() as i64).max(1);
            let amount = qty * price;
            let mut margin = a.margin + rng.uniform(-0.015, 0.015);
            if a.slipping && in_recent {
                margin -= MARGIN_SLIP;
            }
            let cost = (amount as f64 * (1.0 - margin)).round() as i64;
            lines.push(Line {
                product,
                qty,
                amount,
                cost,
            });
        }
        orders.push(Order {
            day,
            account: ai,
            lines,
        });
        let rate = a.rate * volume[day as usize] * decline;
        t += DAYS_PER_MONTH / rate * rng.uniform(0.7, 1.3);
    }
    orders
}

pub(super) fn build_visits(
    opts: &GenerateOptions,
    start: NaiveDate,
    accounts: &[Account],
) -> Vec<Visit> {
    let last = (opts.end - start).num_days();
    let recent = last - (RECENT_DAYS - 1);
    let mut visits = Vec::new();
    let mut seen = BTreeSet::new();
    for (ai, a) in accounts.iter().enumerate() {
        let mut rng = Rng::stream(opts.seed, TAG_VISITS, ai as u64);
        // The rep, every 4-10 days back from a last visit close to the end (50-80 days
        // before it for a lapsed account).
        let mut day = if a.lapsed {
            last - rng.between(50, 80)
        } else {
            last - rng.between(0, 9)
        };
        while day >= 0 {
            let w = rng.below(100) as u64;
            let kind = VISIT_KINDS[REP_KIND_WEIGHTS.iter().position(|&c| w < c).unwrap_or(0)];
            let note = if a.declining && day >= recent && rng.chance(0.4) {
                *rng.pick(&DECLINE_NOTES)
            } else if rng.chance(0.15) {
                *rng.pick(&NOTES)
            } else {
                ""
            };
            if seen.insert((ai, day, false)) {
                visits.push(Visit {
                    day,
                    account: ai,
                    by_manager: false,
                    kind,
                    note,
                });
            }
            day -= rng.between(4, 10);
        }
        // Key accounts: their rep's manager, about once a quarter.
        if a.key {
            let mut day = if a.lapsed {
                last - rng.between(50, 120)
            } else {
                last - rng.between(0, 90)
            };
            while day >= 0 {
                let kind = if rng.chance(0.7) {
                    VISIT_KINDS[0]
                } else {
                    VISIT_KINDS[2]
                };
                let note = if rng.chance(0.3) {
                    *rng.pick(&NOTES)
                } else {
                    ""
                };
                if seen.insert((ai, day, true)) {
                    visits.push(Visit {
                        day,
                        account: ai,
                        by_manager: true,
                        kind,
                        note,
                    });
                }
                day -= rng.between(75, 105);
            }
        }
    }
    visits.sort_by_key(|v| (v.day, v.account, v.by_manager));
    visits
}
