//! Generate: realistic sample exports (customer master, order lines, visits) for demos, tests and benchmarks.
//!
//! Owns the synthetic distributor (accounts, reps, managers, products, seasonality) and the problems
//! it plants on purpose (declining revenue, slipping margin, lapsed visits), which the summary lists.
//! Output is a pure function of `GenerateOptions`: a built-in SplitMix64 PRNG and only basic, exactly
//! rounded arithmetic, so a seed gives byte-identical files on any machine. Touches only the output
//! folder it is given, writing each file atomically (dot-prefixed temp name, fsync, rename).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use chrono::{Datelike, Months, NaiveDate, TimeDelta};

/// What to generate and where.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Folder the three CSV files are written to; created if missing.
    pub out_dir: PathBuf,
    /// Same seed (and other options) → byte-identical files.
    pub seed: u64,
    /// Number of customer accounts (CLI default: 300).
    pub accounts: usize,
    /// Last day of data (CLI default: today).
    pub end: NaiveDate,
    /// History length in months (CLI default: 24); data starts on the first day of the month
    /// `months` months before `end`.
    pub months: u32,
}

/// What was written, and which accounts carry a planted problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateSummary {
    /// The files written, in the order accounts, orders, visits.
    pub files: Vec<PathBuf>,
    pub accounts: usize,
    pub order_lines: usize,
    pub visits: usize,
    /// account ids whose revenue falls in the last 90 days (see below)
    pub declining: Vec<String>,
    /// account ids whose gross margin slips in the last 90 days
    pub margin_slipping: Vec<String>,
    /// account ids not visited in the last 45+ days
    pub lapsed_visits: Vec<String>,
}

/// Header of `客户主数据_<end>.csv`.
pub const ACCOUNT_HEADER: [&str; 8] = [
    "客户编号",
    "客户名称",
    "区域",
    "业务员",
    "业务员邮箱",
    "主管邮箱",
    "信用额度",
    "主管",
];
/// Header of `销售明细_<start>-<end>.csv`.
pub const ORDER_HEADER: [&str; 11] = [
    "订单编号",
    "行号",
    "客户编号",
    "客户名称",
    "订单日期",
    "产品编号",
    "产品名称",
    "数量",
    "单价",
    "金额",
    "成本",
];
/// Header of `拜访记录_<start>-<end>.csv`.
pub const VISIT_HEADER: [&str; 6] = ["拜访日期", "客户编号", "拜访人", "职务", "拜访类型", "备注"];

/// Length of the "recent" window in which the planted problems show, in days (end-89 ..= end).
const RECENT_DAYS: i64 = 90;
/// Volume factor applied to both order frequency and order size of a declining account in the
/// recent window: 0.63 × 0.63 ≈ 40% of the volume it would otherwise have.
const DECLINE_FACTOR: f64 = 0.63;
/// Gross-margin points lost by a slipping account in the recent window.
const MARGIN_SLIP: f64 = 0.07;
/// Average month length, for turning monthly rates into day gaps.
const DAYS_PER_MONTH: f64 = 30.4375;
/// Expected monthly revenue (yuan) of the largest account; everything else scales from it.
const TOP_MONTHLY_REVENUE: f64 = 1_200_000.0;

// ---------------------------------------------------------------------------------------------
// Reference data
// ---------------------------------------------------------------------------------------------

struct Manager {
    name: &'static str,
    email: &'static str,
}

const MANAGERS: [Manager; 3] = [
    Manager {
        name: "陈静",
        email: "chen.jing@example.com",
    },
    Manager {
        name: "孙涛",
        email: "sun.tao@example.com",
    },
    Manager {
        name: "马丽",
        email: "ma.li@example.com",
    },
];

struct Rep {
    name: &'static str,
    email: &'static str,
    region: usize,
    manager: usize,
}

const REGIONS: [&str; 6] = ["华东", "华南", "华北", "西南", "华中", "西北"];

const CITIES: [&[&str]; 6] = [
    &["上海", "南京", "杭州", "苏州", "宁波", "合肥", "无锡"],
    &["广州", "深圳", "东莞", "佛山", "厦门", "南宁"],
    &["北京", "天津", "石家庄", "济南", "太原", "青岛"],
    &["成都", "重庆", "昆明", "贵阳", "绵阳"],
    &["武汉", "长沙", "郑州", "南昌", "宜昌"],
    &["西安", "兰州", "银川", "西宁", "乌鲁木齐"],
];

const fn rep(name: &'static str, email: &'static str, region: usize, manager: usize) -> Rep {
    Rep {
        name,
        email,
        region,
        manager,
    }
}

/// Ten reps, each in one region and under one manager.
const REPS: [Rep; 10] = [
    rep("张伟", "zhang.wei@example.com", 0, 0),
    rep("王芳", "wang.fang@example.com", 0, 0),
    rep("李娜", "li.na@example.com", 0, 0),
    rep("刘洋", "liu.yang@example.com", 4, 0),
    rep("陈磊", "chen.lei@example.com", 1, 1),
    rep("杨静", "yang.jing@example.com", 1, 1),
    rep("赵强", "zhao.qiang@example.com", 3, 1),
    rep("黄敏", "huang.min@example.com", 2, 2),
    rep("周杰", "zhou.jie@example.com", 2, 2),
    rep("吴霞", "wu.xia@example.com", 5, 2),
];

const NAME_PREFIXES: [&str; 24] = [
    "华联",
    "永辉",
    "物美",
    "红旗",
    "人人乐",
    "京客隆",
    "联华",
    "大润",
    "家乐",
    "百佳",
    "天虹",
    "步步高",
    "新一佳",
    "中百",
    "美宜佳",
    "苏果",
    "欧尚",
    "易初",
    "世纪",
    "好又多",
    "金百合",
    "万家福",
    "惠民",
    "佳佳",
];
const NAME_SUFFIXES: [&str; 5] = ["超市", "便利", "连锁", "商贸", "百货"];

struct Product {
    code: &'static str,
    name: &'static str,
    /// Unit price in fen (cents).
    price: i64,
}

const fn product(code: &'static str, name: &'static str, price: i64) -> Product {
    Product { code, name, price }
}

const PRODUCTS: [Product; 12] = [
    product("SP-001", "纸巾10包", 1990),
    product("SP-002", "方便面五连包", 1250),
    product("SP-003", "酸奶200g", 480),
    product("SP-004", "矿泉水550ml", 160),
    product("SP-005", "洗衣液2kg", 3200),
    product("SP-006", "食用油5L", 6880),
    product("SP-007", "大米10kg", 4900),
    product("SP-008", "牙膏120g", 990),
    product("SP-009", "饼干礼盒", 4500),
    product("SP-010", "啤酒500ml×12", 4200),
    product("SP-011", "洗发水750ml", 3990),
    product("SP-012", "牛奶250ml×24", 5800),
];

const VISIT_KINDS: [&str; 4] = ["上门拜访", "电话回访", "陈列检查", "新品推介"];
/// Cumulative weights (out of 100) for `VISIT_KINDS` on a rep's visit.
const REP_KIND_WEIGHTS: [u64; 4] = [50, 75, 90, 100];

const NOTES: [&str; 12] = [
    "客户反映库存偏高",
    "要求增加促销支持,希望下月加大力度",
    "货架陈列需调整",
    "新店开业，需要备货",
    "账期问题,需财务跟进",
    "对新品反馈不错,准备试销",
    "店长更换，需重新对接",
    "端午节堆头已确认",
    "竞品\"康师傅\"在做买赠",
    "反馈缺货,要求尽快补货",
    "门店装修，暂停进货两周",
    "对账无误",
];
const DECLINE_NOTES: [&str; 4] = [
    "竞品进场,订货量减少",
    "客户反映销售下滑",
    "采购换人，新采购压价",
    "门店客流下降,暂缓进货",
];

const ROLE_REP: &str = "业务员";
const ROLE_MANAGER: &str = "销售总监";

// ---------------------------------------------------------------------------------------------
// PRNG: SplitMix64, so the output never depends on an external crate's algorithm.
// ---------------------------------------------------------------------------------------------

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small deterministic PRNG (SplitMix64): a seed gives the same stream
/// on every machine. Shared by the generator, `bench rules` and the tests.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Uniform in 0..n by the remainder (n > 0; slightly biased, fine for
    /// test data).
    pub fn below_u64(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// An independent stream for one purpose (`tag`) and one item (`index`), so that e.g. one
    /// account's orders do not shift when another account changes.
    fn stream(seed: u64, tag: u64, index: u64) -> Self {
        Rng(mix64(
            mix64(seed ^ tag.wrapping_mul(GOLDEN)).wrapping_add(index),
        ))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix64(self.0)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in lo..=hi.
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as usize) as i64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

const TAG_ACCOUNTS: u64 = 1;
const TAG_PLANTS: u64 = 2;
const TAG_ORDERS: u64 = 3;
const TAG_VISITS: u64 = 4;

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

struct Account {
    id: String,
    name: String,
    rep: usize,
    rep_email_missing: bool,
    /// Relative size, ~1.0 for the largest account.
    size: f64,
    /// Base orders per month.
    rate: f64,
    /// Typical value of one order line, in yuan.
    line_value: f64,
    /// Fewest lines per order (1 for small accounts, 2 for the top 30%).
    min_lines: i64,
    /// Base gross margin, 0.15..0.30.
    margin: f64,
    credit: i64,
    declining: bool,
    slipping: bool,
    lapsed: bool,
    /// Among the top ~20% by size: also visited by the manager.
    key: bool,
}

struct Line {
    product: usize,
    qty: i64,
    amount: i64,
    cost: i64,
}

struct Order {
    day: i64,
    account: usize,
    lines: Vec<Line>,
}

struct Visit {
    day: i64,
    account: usize,
    by_manager: bool,
    kind: &'static str,
    note: &'static str,
}

/// Days since `start` → date.
fn date_at(start: NaiveDate, day: i64) -> NaiveDate {
    start + TimeDelta::days(day)
}

/// Seasonal multiplier on order volume: peaks before Spring Festival (January, early February)
/// and in June; dips in March and August. About ±15%.
fn seasonal(date: NaiveDate) -> f64 {
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
fn share(n: usize, share: f64) -> usize {
    ((n as f64 * share).round() as usize).clamp(1, n.max(1))
}

fn build_accounts(opts: &GenerateOptions) -> Vec<Account> {
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

    let mut plants = Rng::stream(opts.seed, TAG_PLANTS, 0);
    let mut pool: Vec<usize> = by_size[..top30].to_vec();
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
    accounts
}

/// A plausible, unique retailer name: prefix + format (+ city branch), numbered if taken.
fn account_name(rng: &mut Rng, region: usize, taken: &mut BTreeSet<String>) -> String {
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

fn build_orders(opts: &GenerateOptions, start: NaiveDate, accounts: &[Account]) -> Vec<Order> {
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
const MAX_ATTEMPTS: u64 = 16;

/// One account's orders over days `0..=last`, on a regular-ish reorder cycle with a random phase.
fn account_orders(
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

fn build_visits(opts: &GenerateOptions, start: NaiveDate, accounts: &[Account]) -> Vec<Visit> {
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

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

fn money(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// Writes `name` in `dir` through a dot-prefixed temp file that is synced and then renamed, so
/// a watcher of `dir` never sees a partial file.
fn write_atomic<F>(dir: &Path, name: &str, header: &[&str], rows: F) -> Result<PathBuf>
where
    F: FnOnce(&mut csv::Writer<File>) -> Result<()>,
{
    let tmp = dir.join(format!(".{name}.tmp"));
    let dest = dir.join(name);
    let result = (|| -> Result<()> {
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(file);
        w.write_record(header)?;
        rows(&mut w)?;
        w.flush()?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &dest)
            .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e.context(format!("writing {}", dest.display())));
    }
    Ok(dest)
}

/// Generates the three exports into `opts.out_dir` and says what it planted.
pub fn generate(opts: &GenerateOptions) -> Result<GenerateSummary> {
    ensure!(opts.accounts >= 1, "accounts must be at least 1");
    let start = opts
        .end
        .with_day(1)
        .and_then(|d| d.checked_sub_months(Months::new(opts.months)))
        .with_context(|| format!("{} months before {} is out of range", opts.months, opts.end))?;
    fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;

    let accounts = build_accounts(opts);
    let orders = build_orders(opts, start, &accounts);
    let visits = build_visits(opts, start, &accounts);

    let end_s = opts.end.format("%Y%m%d").to_string();
    let start_s = start.format("%Y%m%d").to_string();
    let dir = opts.out_dir.as_path();

    let mut order_lines = 0;
    let orders_path = write_atomic(
        dir,
        &format!("销售明细_{start_s}-{end_s}.csv"),
        &ORDER_HEADER,
        |w| {
            let mut prev_day = -1;
            let mut seq = 0;
            for o in &orders {
                if o.day != prev_day {
                    prev_day = o.day;
                    seq = 0;
                }
                seq += 1;
                let date = date_at(start, o.day);
                let id = format!("SO{}{seq:04}", date.format("%y%m%d"));
                let date = date.format("%Y-%m-%d").to_string();
                let a = &accounts[o.account];
                for (n, l) in o.lines.iter().enumerate() {
                    let p = &PRODUCTS[l.product];
                    w.write_record([
                        id.as_str(),
                        &(n + 1).to_string(),
                        &a.id,
                        &a.name,
                        &date,
                        p.code,
                        p.name,
                        &l.qty.to_string(),
                        &money(p.price),
                        &money(l.amount),
                        &money(l.cost),
                    ])?;
                    order_lines += 1;
                }
            }
            Ok(())
        },
    )?;

    let visits_path = write_atomic(
        dir,
        &format!("拜访记录_{start_s}-{end_s}.csv"),
        &VISIT_HEADER,
        |w| {
            for v in &visits {
                let a = &accounts[v.account];
                let rep = &REPS[a.rep];
                let (who, role) = if v.by_manager {
                    (MANAGERS[rep.manager].name, ROLE_MANAGER)
                } else {
                    (rep.name, ROLE_REP)
                };
                let date = date_at(start, v.day).format("%Y-%m-%d").to_string();
                w.write_record([date.as_str(), &a.id, who, role, v.kind, v.note])?;
            }
            Ok(())
        },
    )?;

    let accounts_path = write_atomic(
        dir,
        &format!("客户主数据_{end_s}.csv"),
        &ACCOUNT_HEADER,
        |w| {
            for a in &accounts {
                let rep = &REPS[a.rep];
                w.write_record([
                    a.id.as_str(),
                    &a.name,
                    REGIONS[rep.region],
                    rep.name,
                    if a.rep_email_missing { "" } else { rep.email },
                    MANAGERS[rep.manager].email,
                    &a.credit.to_string(),
                    MANAGERS[rep.manager].name,
                ])?;
            }
            Ok(())
        },
    )?;

    // Make the renames themselves durable.
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }

    let ids = |f: fn(&Account) -> bool| -> Vec<String> {
        let mut ids: Vec<String> = accounts
            .iter()
            .filter(|a| f(a))
            .map(|a| a.id.clone())
            .collect();
        ids.sort();
        ids
    };
    Ok(GenerateSummary {
        files: vec![accounts_path, orders_path, visits_path],
        accounts: accounts.len(),
        order_lines,
        visits: visits.len(),
        declining: ids(|a| a.declining),
        margin_slipping: ids(|a| a.slipping),
        lapsed_visits: ids(|a| a.lapsed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap, HashSet};

    fn end() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()
    }

    fn opts(dir: &Path, seed: u64, accounts: usize) -> GenerateOptions {
        GenerateOptions {
            out_dir: dir.to_path_buf(),
            seed,
            accounts,
            end: end(),
            months: 24,
        }
    }

    fn read(path: &Path) -> (Vec<String>, Vec<csv::StringRecord>) {
        let mut r = csv::Reader::from_path(path).unwrap();
        let header = r.headers().unwrap().iter().map(String::from).collect();
        let rows = r.records().map(|r| r.unwrap()).collect();
        (header, rows)
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn num(s: &str) -> f64 {
        s.parse().unwrap()
    }

    /// Days before `end()` (0 = the last day).
    fn age(s: &str) -> i64 {
        (end() - date(s)).num_days()
    }

    fn file_names(s: &GenerateSummary) -> Vec<String> {
        s.files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let sa = generate(&opts(a.path(), 7, 80)).unwrap();
        let sb = generate(&opts(b.path(), 7, 80)).unwrap();
        let sc = generate(&opts(c.path(), 8, 80)).unwrap();
        assert_eq!(file_names(&sa), file_names(&sb));
        assert_eq!(file_names(&sa), file_names(&sc));
        for i in 0..3 {
            let fa = fs::read(&sa.files[i]).unwrap();
            assert_eq!(fa, fs::read(&sb.files[i]).unwrap(), "file {i}");
            assert_ne!(fa, fs::read(&sc.files[i]).unwrap(), "file {i}");
        }
        assert_eq!(sa.declining, sb.declining);
        assert_eq!(sa.lapsed_visits, sb.lapsed_visits);
    }

    #[test]
    fn files_names_headers_and_encoding() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("nested").join("inbox");
        let s = generate(&opts(&out, 42, 300)).unwrap();
        assert_eq!(
            file_names(&s),
            [
                "客户主数据_20261128.csv",
                "销售明细_20241101-20261128.csv",
                "拜访记录_20241101-20261128.csv"
            ]
        );
        // Exactly the three files: no temp file left behind.
        let mut listed: Vec<String> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        listed.sort();
        let mut expected = file_names(&s);
        expected.sort();
        assert_eq!(listed, expected);

        for path in &s.files {
            let bytes = fs::read(path).unwrap();
            assert!(!bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "BOM in {path:?}");
            assert!(!bytes.contains(&b'\r'), "CR in {path:?}");
            assert!(bytes.ends_with(b"\n"));
            std::str::from_utf8(&bytes).unwrap();
        }
        assert_eq!(read(&s.files[0]).0, ACCOUNT_HEADER);
        assert_eq!(read(&s.files[1]).0, ORDER_HEADER);
        assert_eq!(read(&s.files[2]).0, VISIT_HEADER);
        let first = fs::read_to_string(&s.files[0]).unwrap();
        assert!(
            first.starts_with("客户编号,客户名称,区域,业务员,业务员邮箱,主管邮箱,信用额度,主管\n")
        );
        let first = fs::read_to_string(&s.files[1]).unwrap();
        assert!(first.starts_with(
            "订单编号,行号,客户编号,客户名称,订单日期,产品编号,产品名称,数量,单价,金额,成本\n"
        ));
        let first = fs::read_to_string(&s.files[2]).unwrap();
        assert!(first.starts_with("拜访日期,客户编号,拜访人,职务,拜访类型,备注\n"));
    }

    #[test]
    fn customer_master() {
        let tmp = tempfile::tempdir().unwrap();
        let s = generate(&opts(tmp.path(), 42, 300)).unwrap();
        let (_, rows) = read(&s.files[0]);
        assert_eq!(rows.len(), 300);
        assert_eq!(s.accounts, 300);
        let mut names = HashSet::new();
        let mut per_rep: BTreeMap<String, usize> = BTreeMap::new();
        let mut managers = HashSet::new();
        let mut no_email = 0;
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(&r[0], format!("KH{}", 1001 + i));
            assert!(names.insert(r[1].to_string()), "duplicate name {}", &r[1]);
            assert!(REGIONS.contains(&&r[2]));
            *per_rep.entry(r[3].to_string()).or_default() += 1;
            if r[4].is_empty() {
                no_email += 1;
            } else {
                assert!(r[4].ends_with("@example.com"));
            }
            managers.insert(r[5].to_string());
            let credit: i64 = r[6].parse().unwrap();
            assert!(credit >= 10_000 && credit % 10_000 == 0, "{credit}");
        }
        assert_eq!(per_rep.len(), 10);
        assert!(per_rep.values().all(|&c| c == 30), "{per_rep:?}");
        assert_eq!(managers.len(), 3);
        assert!((2..=12).contains(&no_email), "{no_email}");
    }

    #[test]
    fn order_lines_are_consistent() {
        let tmp = tempfile::tempdir().unwrap();
        let s = generate(&opts(tmp.path(), 42, 300)).unwrap();
        let (_, master) = read(&s.files[0]);
        let names: HashMap<String, String> = master
            .iter()
            .map(|r| (r[0].to_string(), r[1].to_string()))
            .collect();
        let (_, rows) = read(&s.files[1]);
        assert_eq!(rows.len(), s.order_lines);
        assert!((30_000..=120_000).contains(&rows.len()), "{}", rows.len());
        let start = NaiveDate::from_ymd_opt(2024, 11, 1).unwrap();
        let mut prev: Option<(NaiveDate, String, u32)> = None;
        let mut orders_seen = HashSet::new();
        let mut active = HashSet::new();
        for r in &rows {
            let d = date(&r[4]);
            assert!(d >= start && d <= end(), "{d}");
            assert_eq!(&r[0][..8], format!("SO{}", d.format("%y%m%d")));
            assert_eq!(r[0].len(), 12);
            assert_eq!(names[&r[2]], &r[3]);
            active.insert(r[2].to_string());
            let line: u32 = r[1].parse().unwrap();
            assert!((1..=4).contains(&line));
            let key = (d, r[0].to_string(), line);
            match &prev {
                Some((pd, pid, pl)) if *pid == r[0] => {
                    assert_eq!(line, pl + 1);
                    assert_eq!(*pd, d);
                }
                Some(p) => {
                    assert_eq!(line, 1);
                    assert!((p.0, &p.1) < (d, &key.1), "not sorted at {}", &r[0]);
                    assert!(orders_seen.insert(r[0].to_string()), "{} split", &r[0]);
                }
                None => assert_eq!(line, 1),
            }
            prev = Some(key);
            let p = PRODUCTS.iter().find(|p| p.code == &r[5]).unwrap();
            assert_eq!(p.name, &r[6]);
            let qty: i64 = r[7].parse().unwrap();
            assert!(qty >= 1);
            let (price, amount, cost) = (num(&r[8]), num(&r[9]), num(&r[10]));
            assert!((qty as f64 * price - amount).abs() < 0.006, "{r:?}");
            let margin = 1.0 - cost / amount;
            assert!((0.05..0.32).contains(&margin), "{r:?}");
        }
        assert_eq!(active.len(), 300, "every account has orders");
    }

    /// Per account: revenue and cost by day before the end.
    fn ledger(s: &GenerateSummary) -> HashMap<String, Vec<(i64, f64, f64)>> {
        let mut by: HashMap<String, Vec<(i64, f64, f64)>> = HashMap::new();
        for r in read(&s.files[1]).1 {
            by.entry(r[2].to_string())
                .or_default()
                .push((age(&r[4]), num(&r[9]), num(&r[10])));
        }
        by
    }

    fn window(lines: &[(i64, f64, f64)], from: i64, to: i64) -> (f64, f64) {
        lines
            .iter()
            .filter(|l| l.0 >= from && l.0 < to)
            .fold((0.0, 0.0), |acc, l| (acc.0 + l.1, acc.1 + l.2))
    }

    #[test]
    fn revenue_is_pareto() {
        let tmp = tempfile::tempdir().unwrap();
        let s = generate(&opts(tmp.path(), 42, 300)).unwrap();
        let mut revenue: Vec<f64> = ledger(&s)
            .values()
            .map(|l| l.iter().map(|x| x.1).sum())
            .collect();
        revenue.sort_by(|a, b| b.total_cmp(a));
        let total: f64 = revenue.iter().sum();
        let top: f64 = revenue[..60].iter().sum();
        let share = top / total;
        assert!((0.65..=0.90).contains(&share), "{share}");
    }

    #[test]
    fn planted_problems_show() {
        let tmp = tempfile::tempdir().unwrap();
        let s = generate(&opts(tmp.path(), 42, 300)).unwrap();
        for list in [&s.declining, &s.margin_slipping, &s.lapsed_visits] {
            assert!(!list.is_empty());
            assert!(list.is_sorted());
        }
        assert!((15..=35).contains(&s.declining.len()));
        assert!((10..=30).contains(&s.margin_slipping.len()));
        assert!((15..=35).contains(&s.lapsed_visits.len()));
        assert!(s.declining.iter().all(|id| !s.margin_slipping.contains(id)));

        let ledger = ledger(&s);
        for id in &s.declining {
            let now = window(&ledger[id], 0, 90).0;
            let before = window(&ledger[id], 90, 180).0;
            assert!(now < 0.6 * before, "{id}: {now} vs {before}");
        }
        for id in &s.margin_slipping {
            let (rn, cn) = window(&ledger[id], 0, 90);
            let (rb, cb) = window(&ledger[id], 90, 360);
            let (now, before) = (1.0 - cn / rn, 1.0 - cb / rb);
            assert!(now <= before - 0.04, "{id}: {now} vs {before}");
        }
        // Nobody else slips.
        for (id, l) in &ledger {
            if s.margin_slipping.contains(id) {
                continue;
            }
            let (rn, cn) = window(l, 0, 90);
            let (rb, cb) = window(l, 90, 360);
            assert!((1.0 - cn / rn) > (1.0 - cb / rb) - 0.02, "{id}");
        }

        let (_, visits) = read(&s.files[2]);
        assert_eq!(visits.len(), s.visits);
        let mut latest: HashMap<String, i64> = HashMap::new();
        for v in &visits {
            let a = age(&v[0]);
            let e = latest.entry(v[1].to_string()).or_insert(a);
            *e = (*e).min(a);
        }
        assert_eq!(latest.len(), 300, "every account is visited");
        for id in &s.lapsed_visits {
            assert!(latest[id] >= 45, "{id} visited {} days ago", latest[id]);
            assert!(latest[id] <= 80, "{id} visited {} days ago", latest[id]);
        }
        for (id, &a) in &latest {
            let planted = s.declining.contains(id)
                || s.margin_slipping.contains(id)
                || s.lapsed_visits.contains(id);
            if !s.lapsed_visits.contains(id) {
                assert!(a <= 10, "{id} last visited {a} days ago");
            }
            if !planted {
                assert!(a < 14);
            }
        }
    }

    #[test]
    fn visits_are_well_formed() {
        let tmp = tempfile::tempdir().unwrap();
        let s = generate(&opts(tmp.path(), 42, 300)).unwrap();
        let (_, master) = read(&s.files[0]);
        let rep_of: HashMap<String, String> = master
            .iter()
            .map(|r| (r[0].to_string(), r[3].to_string()))
            .collect();
        let (_, rows) = read(&s.files[2]);
        let start = NaiveDate::from_ymd_opt(2024, 11, 1).unwrap();
        let mut keys = HashSet::new();
        let mut prev: Option<(NaiveDate, String)> = None;
        let mut by_manager: HashMap<String, usize> = HashMap::new();
        let mut with_comma = 0;
        for r in &rows {
            let d = date(&r[0]);
            assert!(d >= start && d <= end());
            assert!(
                keys.insert((r[1].to_string(), d, r[2].to_string())),
                "duplicate {r:?}"
            );
            let key = (d, r[1].to_string());
            if let Some(p) = &prev {
                assert!(*p <= key, "not sorted at {r:?}");
            }
            prev = Some(key);
            match &r[3] {
                "业务员" => assert_eq!(rep_of[&r[1]], &r[2]),
                "销售总监" => {
                    assert!(MANAGERS.iter().any(|m| m.name == &r[2]));
                    *by_manager.entry(r[1].to_string()).or_default() += 1;
                }
                other => panic!("role {other}"),
            }
            assert!(VISIT_KINDS.contains(&&r[4]));
            with_comma += usize::from(r[5].contains(','));
        }
        // The top ~20% get a manager visit about once a quarter (~8-10 over 25 months).
        assert!(
            (50..=70).contains(&by_manager.len()),
            "{}",
            by_manager.len()
        );
        assert!(by_manager.values().all(|&n| (6..=11).contains(&n)));
        assert!(with_comma > 0, "some notes need quoting");
    }

    #[test]
    fn small_runs_still_plant_everything() {
        let tmp = tempfile::tempdir().unwrap();
        for n in [40, 12, 3] {
            let dir = tmp.path().join(n.to_string());
            let s = generate(&opts(&dir, 1, n)).unwrap();
            assert_eq!(s.accounts, n);
            assert!(!s.declining.is_empty(), "{n}");
            assert!(!s.margin_slipping.is_empty(), "{n}");
            assert!(!s.lapsed_visits.is_empty(), "{n}");
        }
        let s = generate(&opts(&tmp.path().join("1"), 1, 1)).unwrap();
        assert_eq!(s.declining.len(), 1);
        assert!(generate(&opts(&tmp.path().join("0"), 1, 0)).is_err());
    }

    #[test]
    fn short_history_never_passes_end() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = opts(tmp.path(), 5, 30);
        o.months = 1;
        o.end = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
        let s = generate(&o).unwrap();
        assert_eq!(
            file_names(&s)[1],
            "销售明细_20250201-20250301.csv".to_string()
        );
        let (_, orders) = read(&s.files[1]);
        assert!(!orders.is_empty());
        for r in orders {
            let d = date(&r[4]);
            assert!(d >= NaiveDate::from_ymd_opt(2025, 2, 1).unwrap() && d <= o.end);
        }
        for r in read(&s.files[2]).1 {
            assert!(date(&r[0]) <= o.end);
        }
    }
}
