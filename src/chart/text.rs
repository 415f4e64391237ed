//! Chart text: the fonts built into the binary (DejaVu Sans for English;
//! for Chinese `assets/ChartCJK.ttf`, a subset of WenQuanYi Micro Hei with
//! ASCII and exactly the Chinese characters of the labels below —
//! `scripts/chart-font.sh` rebuilds it from the text between the
//! "chart-font" markers, and a test checks every label's characters are in
//! it), every label drawn into a chart per locale, and axis ticks. No
//! system font is needed or used. Pure.

use plotters::style::FontStyle;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
static CJK_FONT: &[u8] = include_bytes!("../../assets/ChartCJK.ttf");

pub(super) fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            tracing::error!("the shipped chart font does not load; charts will have no text");
        }
        if plotters::style::register_font("cjk", FontStyle::Normal, CJK_FONT).is_err() {
            tracing::error!(
                "the shipped Chinese chart font does not load; Chinese charts will have no text"
            );
        }
    });
}

/// The font family of a locale's labels.
pub(super) fn family(en: bool) -> &'static str {
    if en { "sans-serif" } else { "cjk" }
}

/// Every text drawn into a chart, per locale. The Chinese ones must be
/// in `assets/ChartCJK.ttf` (see `scripts/chart-font.sh`).
pub(super) struct Labels {
    pub(super) revenue: &'static str,
    pub(super) margin: &'static str,
    pub(super) not_from_zero: &'static str,
    pub(super) gap: &'static str,
    pub(super) gap_axis: &'static str,
    pub(super) open_gap: &'static str,
    pub(super) cadence: &'static str,
    pub(super) days: &'static str,
    pub(super) amount: &'static str,
    pub(super) not_due: &'static str,
    pub(super) overdue: &'static str,
    pub(super) buckets: [&'static str; 5],
    pub(super) limit: &'static str,
    pub(super) receivables: &'static str,
    pub(super) cover: &'static str,
    pub(super) needed: &'static str,
    pub(super) no_data: &'static str,
    /// Ten thousand and a hundred million, for Chinese axis ticks.
    pub(super) units: [&'static str; 2],
    pub(super) pareto_x: &'static str,
    pub(super) pareto_y: &'static str,
    /// The y axis with the gross-profit curve alone, and with both drawn
    /// (`tiers.by: gross_profit`, `both`).
    pub(super) pareto_y_gp: &'static str,
    pub(super) pareto_y_both: &'static str,
    pub(super) pareto_curve: &'static str,
    pub(super) pareto_curve_gp: &'static str,
    pub(super) pareto_a: &'static str,
    pub(super) pareto_b: &'static str,
}

// chart-font: begin (scripts/chart-font.sh takes the characters from here)
const ZH: Labels = Labels {
    revenue: "销售额",
    margin: "毛利率 %",
    not_from_zero: "（不从0起）",
    gap: "拜访间隔（天）",
    gap_axis: "天",
    open_gap: "上次拜访至今",
    cadence: "要求周期",
    days: "天",
    amount: "金额",
    not_due: "未到期",
    overdue: "已逾期",
    buckets: ["未到期", "逾期1-30天", "31-60天", "61-90天", ">90天"],
    limit: "信用额度",
    receivables: "应收",
    cover: "可售天数",
    needed: "所需覆盖",
    no_data: "无数据",
    units: ["万", "亿"],
    pareto_x: "客户占比 %（从大到小）",
    pareto_y: "累计收入占比 %",
    pareto_y_gp: "累计毛利占比 %",
    pareto_y_both: "累计占比 %",
    pareto_curve: "累计收入",
    pareto_curve_gp: "累计毛利",
    pareto_a: "A类",
    pareto_b: "B类",
};
// chart-font: end

const EN: Labels = Labels {
    revenue: "revenue",
    margin: "GM %",
    not_from_zero: " (not from 0)",
    gap: "days between visits",
    gap_axis: "days",
    open_gap: "since the last visit",
    cadence: "cadence",
    days: "days",
    amount: "amount",
    not_due: "not due",
    overdue: "overdue",
    buckets: ["not due", "1-30 late", "31-60", "61-90", ">90"],
    limit: "credit limit",
    receivables: "receivables",
    cover: "days of cover",
    needed: "needed",
    no_data: "no data",
    units: ["万", "亿"],
    pareto_x: "% of accounts, largest first",
    pareto_y: "% of revenue",
    pareto_y_gp: "% of gross profit",
    pareto_y_both: "% of the total",
    pareto_curve: "cumulative revenue",
    pareto_curve_gp: "cumulative gross profit",
    pareto_a: "tier A",
    pareto_b: "tier B",
};

pub(super) fn labels(en: bool) -> &'static Labels {
    if en { &EN } else { &ZH }
}

/// An axis tick: 1234567 -> "1.2M" ("123万" in Chinese), 45000 -> "45k".
pub(super) fn short(v: f64, en: bool) -> String {
    if en {
        if v >= 1e6 {
            format!("{:.1}M", v / 1e6)
        } else if v >= 1e3 {
            format!("{:.0}k", v / 1e3)
        } else {
            format!("{v:.0}")
        }
    } else if v >= 1e8 {
        format!("{:.1}{}", v / 1e8, ZH.units[1])
    } else if v >= 1e4 {
        let w = v / 1e4;
        if w >= 100.0 {
            format!("{w:.0}{}", ZH.units[0])
        } else {
            format!("{w:.1}{}", ZH.units[0])
        }
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every Chinese character a chart can draw is in the shipped font:
    /// a missing one would be drawn as an empty box.
    #[test]
    fn every_chinese_label_is_in_the_shipped_font() {
        let face = ttf_parser::Face::parse(CJK_FONT, 0).unwrap();
        let l = &ZH;
        let mut all: Vec<&str> = vec![
            l.revenue,
            l.margin,
            l.not_from_zero,
            l.gap,
            l.gap_axis,
            l.open_gap,
            l.cadence,
            l.days,
            l.amount,
            l.not_due,
            l.overdue,
            l.limit,
            l.receivables,
            l.cover,
            l.needed,
            l.no_data,
            l.pareto_x,
            l.pareto_y,
            l.pareto_y_gp,
            l.pareto_y_both,
            l.pareto_curve,
            l.pareto_curve_gp,
            l.pareto_a,
            l.pareto_b,
        ];
        all.extend(l.buckets);
        all.extend(l.units);
        all.push(" 0123456789.,-+%#>()=:abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");
        let missing: String = all
            .iter()
            .flat_map(|s| s.chars())
            .filter(|c| face.glyph_index(*c).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "not in assets/ChartCJK.ttf: {missing:?}; run scripts/chart-font.sh"
        );
    }

    #[test]
    fn short_amounts() {
        assert_eq!(short(1_234_567.0, true), "1.2M");
        assert_eq!(short(45_000.0, true), "45k");
        assert_eq!(short(999.0, true), "999");
        assert_eq!(short(1_234_567.0, false), "123万");
        assert_eq!(short(45_000.0, false), "4.5万");
        assert_eq!(short(250_000_000.0, false), "2.5亿");
    }
}
