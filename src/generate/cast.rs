//! Cast: the synthetic distributor the generator writes about — managers,
//! reps and their regions, city and shop names, products and prices, the
//! kinds of visits and their notes. Constants only; touches nothing.

pub(super) struct Manager {
    pub(super) name: &'static str,
    pub(super) email: &'static str,
}

pub(super) const MANAGERS: [Manager; 3] = [
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

pub(super) struct Rep {
    pub(super) name: &'static str,
    pub(super) email: &'static str,
    pub(super) region: usize,
    pub(super) manager: usize,
}

pub(super) const REGIONS: [&str; 6] = ["华东", "华南", "华北", "西南", "华中", "西北"];

pub(super) const CITIES: [&[&str]; 6] = [
    &["上海", "南京", "杭州", "苏州", "宁波", "合肥", "无锡"],
    &["广州", "深圳", "东莞", "佛山", "厦门", "南宁"],
    &["北京", "天津", "石家庄", "济南", "太原", "青岛"],
    &["成都", "重庆", "昆明", "贵阳", "绵阳"],
    &["武汉", "长沙", "郑州", "南昌", "宜昌"],
    &["西安", "兰州", "银川", "西宁", "乌鲁木齐"],
];

pub(super) const fn rep(
    name: &'static str,
    email: &'static str,
    region: usize,
    manager: usize,
) -> Rep {
    Rep {
        name,
        email,
        region,
        manager,
    }
}

/// Ten reps, each in one region and under one manager.
pub(super) const REPS: [Rep; 10] = [
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

pub(super) const NAME_PREFIXES: [&str; 24] = [
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
pub(super) const NAME_SUFFIXES: [&str; 5] = ["超市", "便利", "连锁", "商贸", "百货"];

pub(super) struct Product {
    pub(super) code: &'static str,
    pub(super) name: &'static str,
    /// Unit price in fen (cents).
    pub(super) price: i64,
}

pub(super) const fn product(code: &'static str, name: &'static str, price: i64) -> Product {
    Product { code, name, price }
}

pub(super) const PRODUCTS: [Product; 12] = [
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

pub(super) const VISIT_KINDS: [&str; 4] = ["上门拜访", "电话回访", "陈列检查", "新品推介"];
/// Cumulative weights (out of 100) for `VISIT_KINDS` on a rep's visit.
pub(super) const REP_KIND_WEIGHTS: [u64; 4] = [50, 75, 90, 100];

pub(super) const NOTES: [&str; 12] = [
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
pub(super) const DECLINE_NOTES: [&str; 4] = [
    "竞品进场,订货量减少",
    "客户反映销售下滑",
    "采购换人，新采购压价",
    "门店客流下降,暂缓进货",
];

pub(super) const ROLE_REP: &str = "业务员";
pub(super) const ROLE_MANAGER: &str = "销售总监";
