//! Figures as people write them: the kinds a figure can have (money,
//! percent, percentage points, count, days, ratio, date, text), the locales
//! kamwatch speaks, texts given per locale, and how a value of each kind is
//! written in each locale (`¥22,930` / `¥2.29万`, `−61.7%`, `3.2 个百分点` /
//! `3.2 pts`, `6`, `45 天` / `45 days`). One module, so mail, `eval`,
//! `--explain`, `accounts` and the review write numbers the same way; JSON
//! keeps the raw number and names the kind beside it.
//!
//! Pure functions of their arguments: reads and writes nothing.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// A language kamwatch writes in (`mail.locale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Locale {
    #[default]
    ZhCn,
    En,
}

/// The locales, by the key a rule or config writes.
pub const LOCALES: [(&str, Locale); 2] = [("zh-CN", Locale::ZhCn), ("en", Locale::En)];

impl Locale {
    /// `zh-CN` or `en`; None for anything else.
    pub fn parse(s: &str) -> Option<Locale> {
        LOCALES.iter().find(|(k, _)| *k == s).map(|(_, l)| *l)
    }

    pub fn key(self) -> &'static str {
        match self {
            Locale::ZhCn => "zh-CN",
            Locale::En => "en",
        }
    }

    /// The known keys, for messages: `"zh-CN", "en"`.
    pub fn known() -> String {
        LOCALES
            .iter()
            .map(|(k, _)| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What a figure is, which decides how it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// An amount in the configured currency.
    Money,
    /// A percentage, 0..100 (a share, a margin, a change).
    Percent,
    /// A difference of two percentages, in percentage points.
    Points,
    /// A number of things: no decimals.
    Count,
    /// A number of days.
    Days,
    /// A plain ratio (1.25 = one and a quarter).
    Ratio,
    /// A date, YYYY-MM-DD.
    Date,
    /// Text, written as given.
    Text,
}

/// The units, by the name a rule writes (`["label", x, "money"]`).
pub const UNITS: [(&str, Unit); 8] = [
    ("money", Unit::Money),
    ("percent", Unit::Percent),
    ("points", Unit::Points),
    ("count", Unit::Count),
    ("days", Unit::Days),
    ("ratio", Unit::Ratio),
    ("date", Unit::Date),
    ("text", Unit::Text),
];

impl Unit {
    pub fn parse(s: &str) -> Option<Unit> {
        UNITS.iter().find(|(k, _)| *k == s).map(|(_, u)| *u)
    }

    pub fn name(self) -> &'static str {
        UNITS
            .iter()
            .find(|(_, u)| *u == self)
            .map_or("text", |(k, _)| k)
    }

    /// The names, for messages.
    pub fn known() -> String {
        UNITS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
    }
}

/// How figures are written: the locale and the currency (`mail.locale`,
/// `mail.currency`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Style {
    pub locale: Locale,
    /// ISO 4217 code, upper case (CNY).
    pub currency: String,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            locale: Locale::ZhCn,
            currency: DEFAULT_CURRENCY.to_string(),
        }
    }
}

pub const DEFAULT_CURRENCY: &str = "CNY";

/// Currencies with a symbol of their own; any other ISO code is written
/// before the amount ("CHF 1,200").
const SYMBOLS: [(&str, &str); 8] = [
    ("CNY", "¥"),
    ("RMB", "¥"),
    ("JPY", "¥"),
    ("USD", "$"),
    ("EUR", "€"),
    ("GBP", "£"),
    ("HKD", "HK$"),
    ("TWD", "NT$"),
];

/// Whether `s` can be a currency: three ASCII capital letters.
pub fn valid_currency(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// The minus sign people print (U+2212), not the hyphen.
pub const MINUS: char = '\u{2212}';

impl Style {
    pub fn new(locale: Locale, currency: &str) -> Style {
        Style {
            locale,
            currency: currency.to_string(),
        }
    }

    pub fn en(&self) -> bool {
        self.locale == Locale::En
    }

    /// A figure's value as people read it, by its unit; without one, a
    /// number is written with thousands separators and, when it has a
    /// fraction, two decimals.
    pub fn value(&self, v: &serde_json::Value, unit: Option<Unit>) -> String {
        use serde_json::Value;
        match v {
            Value::Null => "—".into(),
            Value::Number(n) => match n.as_f64() {
                Some(x) => self.number(x, unit),
                None => n.to_string(),
            },
            Value::String(s) => s.clone(),
            Value::Bool(b) => match (b, self.locale) {
                (true, Locale::ZhCn) => "是".into(),
                (false, Locale::ZhCn) => "否".into(),
                (true, Locale::En) => "yes".into(),
                (false, Locale::En) => "no".into(),
            },
            other => other.to_string(),
        }
    }

    /// A number as people read it, by its unit.
    pub fn number(&self, x: f64, unit: Option<Unit>) -> String {
        if !x.is_finite() {
            return "—".into();
        }
        let zh = self.locale == Locale::ZhCn;
        match unit {
            None => {
                if x.fract() == 0.0 {
                    grouped(x, 0)
                } else {
                    grouped(x, 2)
                }
            }
            Some(Unit::Money) => self.money(x),
            Some(Unit::Percent) => format!("{}%", grouped(x, 1)),
            Some(Unit::Points) if zh => format!("{} 个百分点", grouped(x, 1)),
            Some(Unit::Points) => format!("{} pts", grouped(x, 1)),
            Some(Unit::Count) => grouped(x, 0),
            // Whole days, or one decimal for a fraction (a median gap of 4.5).
            Some(Unit::Days) => {
                let d = if (x * 10.0).round() % 10.0 == 0.0 {
                    0
                } else {
                    1
                };
                let n = grouped(x, d);
                if zh {
                    format!("{n} 天")
                } else if n == "1" {
                    "1 day".to_string()
                } else {
                    format!("{n} days")
                }
            }
            Some(Unit::Ratio) => grouped(x, 2),
            Some(Unit::Date | Unit::Text) => {
                if x.fract() == 0.0 {
                    grouped(x, 0)
                } else {
                    grouped(x, 2)
                }
            }
        }
    }

    /// An amount: the currency's symbol (or code), thousands separators,
    /// whole units from 100 up. In Chinese, from 10,000 up in 万 (and from
    /// 100,000,000 in 亿), two decimals at most: ¥2.29万.
    pub fn money(&self, x: f64) -> String {
        if !x.is_finite() {
            return "—".into();
        }
        let symbol = SYMBOLS
            .iter()
            .find(|(c, _)| *c == self.currency)
            .map_or_else(|| format!("{} ", self.currency), |(_, s)| s.to_string());
        let sign = if x < 0.0 && x.abs() >= 0.005 {
            MINUS.to_string()
        } else {
            String::new()
        };
        let a = x.abs();
        let body = if a >= HUGE {
            huge(a)
        } else if self.locale == Locale::ZhCn && a >= 1e8 {
            format!("{}亿", trimmed(a / 1e8))
        } else if self.locale == Locale::ZhCn && a >= 1e4 {
            let w = (a / 1e4 * 100.0).round() / 100.0;
            // 99,999,999 rounds to 10000万: that is 1亿.
            // About four significant digits: ¥2.29万, ¥33.16万, ¥439.8万, ¥1,234万.
            if w >= 1e4 {
                format!("{}亿", trimmed(a / 1e8))
            } else if w >= 1000.0 {
                format!("{}万", grouped(a / 1e4, 0))
            } else if w >= 100.0 {
                format!("{}万", trimmed_to(a / 1e4, 1))
            } else {
                format!("{}万", trimmed(a / 1e4))
            }
        } else if a >= 100.0 || (a * 100.0).round() % 100.0 == 0.0 {
            grouped(a, 0)
        } else {
            grouped(a, 2)
        };
        format!("{sign}{symbol}{body}")
    }
}

/// From here on (a thousand trillion) a number is written with an
/// exponent: past it a float holds no exact whole number, and the digits
/// of 1e300 written out would fill a mail with noise.
const HUGE: f64 = 1e15;

/// `a` (not negative) as 1.23e300.
fn huge(a: f64) -> String {
    format!("{a:.2e}")
}

/// `x` with two decimals at most, trailing zeros dropped: 2.29, 2.3, 3.
fn trimmed(x: f64) -> String {
    trimmed_to(x, 2)
}

fn trimmed_to(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// `x` with `decimals` decimals, thousands separated by commas, a real
/// minus sign; no minus for a value that rounds to zero.
pub fn grouped(x: f64, decimals: usize) -> String {
    // Halves round away from zero, as people (and Rhai's `round`) do; the
    // formatter alone would write 4.5 as 4.
    if x.abs() >= HUGE {
        let sign = if x < 0.0 {
            MINUS.to_string()
        } else {
            String::new()
        };
        return format!("{sign}{}", huge(x.abs()));
    }
    let p = 10f64.powi(decimals as i32);
    let r = (x.abs() * p).round() / p;
    let s = format!("{:.*}", decimals, r);
    let zero = s.bytes().all(|b| b == b'0' || b == b'.');
    let (int, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let mut out = String::with_capacity(s.len() + s.len() / 3 + 3);
    if x < 0.0 && !zero {
        out.push(MINUS);
    }
    let n = int.len();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (n - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        let _ = write!(out, ".{f}");
    }
    out
}

/// A text a rule gives in one or several locales. One given text serves
/// every locale; of several, the reader's, else Chinese, else English.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Texts(pub Vec<(Locale, String)>);

impl Texts {
    pub fn one(s: impl Into<String>) -> Texts {
        Texts(vec![(Locale::ZhCn, s.into())])
    }

    /// The text for `locale`, falling back as described above.
    pub fn get(&self, locale: Locale) -> &str {
        Texts::pick(&self.0, locale).map_or("", String::as_str)
    }

    /// Of texts per locale (any kind of text), the one for `locale`,
    /// falling back as described above; None when there are none.
    pub fn pick<T>(texts: &[(Locale, T)], locale: Locale) -> Option<&T> {
        texts
            .iter()
            .find(|(l, _)| *l == locale)
            .or_else(|| texts.iter().find(|(l, _)| *l == Locale::ZhCn))
            .or_else(|| texts.first())
            .map(|(_, t)| t)
    }
}

/// Whether a character is Chinese, Japanese or Korean script (or their
/// punctuation), for tests that an English message says nothing in them.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x2E80..=0x2FDF | 0x3000..=0x303F | 0x3040..=0x30FF | 0x3100..=0x312F
        | 0x3190..=0x31FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF
        | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFFEF | 0x20000..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn zh() -> Style {
        Style::default()
    }
    fn en() -> Style {
        Style::new(Locale::En, "CNY")
    }

    #[test]
    fn money_follows_the_locale_and_currency() {
        assert_eq!(en().money(22930.0), "¥22,930");
        assert_eq!(en().money(1234567.89), "¥1,234,568");
        assert_eq!(en().money(-22930.4), "−¥22,930");
        assert_eq!(en().money(12.5), "¥12.50");
        assert_eq!(zh().money(22930.0), "¥2.29万");
        assert_eq!(zh().money(30000.0), "¥3万");
        assert_eq!(zh().money(9850.0), "¥9,850");
        assert_eq!(zh().money(-123_456_789.0), "−¥1.23亿");
        assert_eq!(zh().money(99_999_999.0), "¥1亿");
        assert_eq!(zh().money(331_573.0), "¥33.16万");
        assert_eq!(zh().money(4_397_549.0), "¥439.8万");
        assert_eq!(zh().money(12_340_000.0), "¥1,234万");
        assert_eq!(Style::new(Locale::En, "USD").money(1500.0), "$1,500");
        assert_eq!(Style::new(Locale::En, "CHF").money(1500.0), "CHF 1,500");
        assert_eq!(en().money(-0.001), "¥0");
        assert_eq!(en().money(0.0), "¥0");
        assert_eq!(en().money(7.0), "¥7");
    }

    /// Numbers no export holds still come out as one short, true text:
    /// an exponent from a thousand trillion up, a dash for what is no
    /// number; never 300 digits, never "NaN".
    #[test]
    fn extreme_numbers_are_written_short_and_true() {
        assert_eq!(zh().money(1e300), "¥1.00e300");
        assert_eq!(en().money(-1e300), "−¥1.00e300");
        assert_eq!(en().money(1e15), "¥1.00e15");
        assert_eq!(en().money(999_999_999_999_999.0), "¥999,999,999,999,999");
        assert_eq!(zh().money(f64::MAX), "¥1.80e308");
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(zh().money(x), "—");
            assert_eq!(en().number(x, Some(Unit::Count)), "—");
        }
        assert_eq!(en().number(1e300, Some(Unit::Count)), "1.00e300");
        assert_eq!(zh().number(-2e20, Some(Unit::Days)), "−2.00e20 天");
        assert_eq!(en().number(1e18, None), "1.00e18");
        assert_eq!(grouped(i64::MAX as f64, 0), "9.22e18");
    }

    #[test]
    fn each_kind_is_written_as_people_write_it() {
        let n = |s: &Style, x: f64, u: Unit| s.number(x, Some(u));
        assert_eq!(n(&zh(), -61.66, Unit::Percent), "−61.7%");
        assert_eq!(n(&en(), 12.0, Unit::Percent), "12.0%");
        assert_eq!(n(&zh(), -3.24, Unit::Points), "−3.2 个百分点");
        assert_eq!(n(&en(), 3.26, Unit::Points), "3.3 pts");
        assert_eq!(n(&zh(), 6.0, Unit::Count), "6");
        assert_eq!(n(&en(), 12345.0, Unit::Count), "12,345");
        assert_eq!(n(&zh(), 45.0, Unit::Days), "45 天");
        assert_eq!(n(&en(), 1.0, Unit::Days), "1 day");
        assert_eq!(n(&en(), 45.0, Unit::Days), "45 days");
        assert_eq!(n(&zh(), 4.5, Unit::Days), "4.5 天");
        assert_eq!(n(&en(), 0.0, Unit::Days), "0 days");
        assert_eq!(n(&zh(), -5.25, Unit::Percent), "−5.3%");
        assert_eq!(n(&en(), 2.5, Unit::Count), "3");
        assert_eq!(n(&en(), 1.254, Unit::Ratio), "1.25");
        assert_eq!(n(&en(), -0.04, Unit::Percent), "0.0%");
        assert_eq!(n(&en(), f64::NAN, Unit::Money), "—");
        assert_eq!(
            en().value(&json!("2031-02-03"), Some(Unit::Date)),
            "2031-02-03"
        );
        assert_eq!(en().value(&json!(null), Some(Unit::Money)), "—");
    }

    #[test]
    fn plain_numbers_get_a_sensible_default() {
        assert_eq!(zh().value(&json!(6.0), None), "6");
        assert_eq!(zh().value(&json!(1234567.5), None), "1,234,567.50");
        assert_eq!(zh().value(&json!(-1234), None), "−1,234");
        assert_eq!(zh().value(&json!(12), None), "12");
        assert_eq!(zh().value(&json!("x"), None), "x");
    }

    #[test]
    fn texts_fall_back_to_one_language() {
        let both = Texts(vec![(Locale::En, "b".into()), (Locale::ZhCn, "a".into())]);
        assert_eq!(both.get(Locale::En), "b");
        assert_eq!(both.get(Locale::ZhCn), "a");
        let one = Texts(vec![(Locale::En, "only".into())]);
        assert_eq!(one.get(Locale::ZhCn), "only");
        assert_eq!(Texts::one("单").get(Locale::En), "单");
    }

    #[test]
    fn units_and_locales_round_trip_their_names() {
        for (k, u) in UNITS {
            assert_eq!(Unit::parse(k), Some(u));
            assert_eq!(u.name(), k);
            assert_eq!(serde_json::to_value(u).unwrap(), json!(k));
        }
        assert_eq!(Locale::parse("zh-CN"), Some(Locale::ZhCn));
        assert_eq!(Locale::parse("zh"), None);
        assert!(is_cjk('万') && is_cjk('，') && !is_cjk('¥') && !is_cjk('−'));
    }
}
