//! Rendering: a notice (or a digest of them) into subject, text, HTML and
//! inline chart images through the locale's templates (`templates`), with
//! the words of `words` and the account's chart (`chart`), drawn once per
//! alert however many messages show it. Reads the metrics it is given;
//! touches nothing else.

use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::NaiveDate;
use serde::Serialize;

use super::address::Recipient;
use super::mime::{Image, Rendered, one_line};
use super::templates::environment;
use super::words::{
    dash, footer, person, reason, severity_color, severity_label, shell_word, silence_command,
    status_line, subject_line, subject_prefix,
};
use crate::alerts::{Item, Notice};
use crate::format::{Locale, Style};
use crate::metrics::Snapshot;

/// The templates of one locale, loaded and checked.
pub struct Templates {
    env: minijinja::Environment<'static>,
    en: bool,
    /// Who the footer says sent the message, who to write to, and the
    /// config the silence command names (`with_mail`).
    from: String,
    admin: Option<String>,
    catch_all: Option<String>,
    config: Option<PathBuf>,
    /// How figures are written: the locale's, in `mail.currency`.
    style: Style,
    /// The cadence and windows the rules declare, for the charts
    /// (`with_values`; the shipped ones until then).
    values: crate::rules::RuleValues,
    /// Charts drawn so far, by Content-ID: an alert mailed to its owner
    /// and in the manager's digest is drawn once.
    charts: std::cell::RefCell<std::collections::HashMap<String, Option<(Image, String)>>>,
}

impl Templates {
    /// Loads `dir/<locale>/*`, falling back to the built-in copies. A
    /// template that does not parse is an error naming its file and line.
    pub fn load(dir: Option<&Path>, locale: &str) -> Result<Templates> {
        Ok(Templates {
            env: environment(dir, locale)?,
            en: locale == "en",
            from: "kamwatch".into(),
            admin: None,
            catch_all: None,
            config: None,
            style: Style::new(
                Locale::parse(locale).unwrap_or_default(),
                crate::format::DEFAULT_CURRENCY,
            ),
            values: crate::rules::RuleValues::shipped(),
            charts: Default::default(),
        })
    }

    /// The same templates drawing charts with the rules' cadence and
    /// windows (`RuleValues::of` the rules that ran).
    pub fn with_values(mut self, values: crate::rules::RuleValues) -> Templates {
        self.values = values;
        self
    }

    /// The same templates writing money in `currency` (`mail.currency`).
    pub fn currency(mut self, currency: &str) -> Templates {
        self.style.currency = currency.to_string();
        self
    }

    /// The sender, admin and catch-all of the footer from the mail config
    /// (and its `currency`), and the config file the silence command names.
    pub fn with_mail(mut self, m: &crate::config::MailConfig, config: Option<&Path>) -> Templates {
        self.style.currency = m.currency.clone();
        self.from = m.from.clone();
        self.admin = m.admin.clone();
        self.catch_all = m.catch_all.clone();
        self.config = config.map(Path::to_path_buf);
        self
    }

    fn render(&self, name: &str, ctx: &minijinja::Value) -> Result<String> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| anyhow::anyhow!("rendering the mail template {name}: {e}"))
    }
}

#[derive(Serialize)]
struct Figure {
    name: String,
    value: String,
}

#[derive(Serialize)]
struct ItemView {
    n: usize,
    rule: String,
    account_id: String,
    account_name: String,
    tier: String,
    region: String,
    owner: String,
    severity: &'static str,
    severity_label: &'static str,
    prefix: String,
    color: &'static str,
    title: String,
    status: String,
    figures: Vec<Figure>,
    action: String,
    resolved: bool,
    footer: String,
    /// Why the reader gets this item (owner of the account, manager of
    /// its owner, catch-all...).
    reason: String,
    /// The exact `kamwatch silence add` command for this alert.
    silence: String,
    chart: Option<String>,
    /// What the chart shows and what its shading means.
    caption: String,
}

impl Templates {
    /// The command that silences this alert for 30 days from its evaluation.
    fn silence(&self, it: &Item) -> String {
        let until = it.as_of + chrono::Days::new(30);
        let config = self
            .config
            .as_deref()
            .map(|c| format!(" --config={}", shell_word(&c.display().to_string())))
            .unwrap_or_default();
        silence_command(&config, &it.rule, &it.key, &it.account_id, until, self.en)
    }

    /// The footer of a message: who sent it and whom to write to.
    fn sent_by(&self) -> (String, String) {
        let en = self.en;
        let from = one_line(&self.from);
        let sent = if en {
            format!(
                "Sent automatically by kamwatch, the key-account early-warning service ({from})."
            )
        } else {
            format!("本邮件由重点客户预警服务 kamwatch 自动发送（{from}）。")
        };
        let admin = match (&self.admin, en) {
            (Some(a), false) => format!(
                "如需暂停某条预警，请写信给管理员 {a}，请其执行该预警下列出的 kamwatch silence add 命令；有疑问也请写信给管理员。"
            ),
            (Some(a), true) => format!(
                "To silence an alert, write to the admin ({a}) and ask them to run the kamwatch silence add command listed with it; write to them with any question too."
            ),
            (None, false) => {
                "如需暂停某条预警，请 kamwatch 的管理员执行该预警下列出的 kamwatch silence add 命令。".into()
            }
            (None, true) => "To silence an alert, ask kamwatch's admin to run the kamwatch silence add command listed with it.".into(),
        };
        (sent, admin)
    }

    /// The greeting: the readers' names from the master.
    fn greeting(&self, to: &[Recipient]) -> String {
        let named: Vec<String> = to
            .iter()
            .filter(|r| !r.name.trim().is_empty())
            .map(person)
            .collect();
        match (named.is_empty(), self.en) {
            (true, false) => "您好".into(),
            (true, true) => "Hello".into(),
            (false, false) => format!("{}，您好", named.join("、")),
            (false, true) => format!("Dear {}", named.join(", ")),
        }
    }

    fn view(
        &self,
        it: &Item,
        n: usize,
        to: &[Recipient],
        chart: Option<(String, String)>,
    ) -> ItemView {
        let en = self.en;
        let (chart, caption) = chart.unzip();
        ItemView {
            n,
            rule: it.rule.clone(),
            account_id: it.account_id.clone(),
            account_name: it.account_name.clone(),
            tier: dash(&it.tier),
            region: dash(&it.region),
            owner: dash(&it.owner),
            severity: it.severity.as_str(),
            severity_label: severity_label(it.severity, en),
            prefix: subject_prefix(it, en),
            color: severity_color(it.severity),
            title: it.title.clone(),
            status: status_line(it, en),
            figures: it
                .figures
                .iter()
                .map(|(k, v)| Figure {
                    name: k.clone(),
                    value: self.style.value(v, it.units.get(k).copied()),
                })
                .collect(),
            action: it.action.clone(),
            resolved: matches!(it.notice, Notice::Resolved { .. }),
            footer: footer(it, en),
            reason: reason(it, to, en, self.catch_all.as_deref(), self.admin.as_deref()),
            silence: self.silence(it),
            chart,
            caption: caption.unwrap_or_default(),
        }
    }
}

/// Content-ID of a chart: from its picture, so the same picture twice in
/// one message is one image.
fn cid(png: &[u8]) -> String {
    format!("chart-{}@kamwatch", &blake3::hash(png).to_hex()[..16])
}

impl Templates {
    /// The item's chart (the one that fits its rule) and its caption.
    fn chart_for(
        &self,
        it: &Item,
        accounts: Option<&Snapshot>,
        months: usize,
    ) -> Option<(Image, String)> {
        let a = accounts?.find(&it.account_id)?;
        let key = format!("{}\u{0}{}\u{0}{}", it.rule, it.account_id, it.as_of);
        if let Some(done) = self.charts.borrow().get(&key) {
            return done.clone();
        }
        let alert = crate::chart::Alert {
            rule: &it.rule,
            as_of: it.as_of,
            started_at: it.started_at,
            figures: &it.figures,
            values: &self.values,
        };
        let image = match crate::chart::for_alert(a, &alert, months, self.en) {
            Ok(c) => Some((
                Image {
                    cid: cid(&c.png),
                    png: c.png,
                },
                c.caption,
            )),
            Err(e) => {
                tracing::warn!(account = %it.account_id, "no chart in the mail: {e:#}");
                None
            }
        };
        self.charts.borrow_mut().insert(key, image.clone());
        image
    }
}

impl Templates {
    /// One notice about one alert to `to`, with its account's chart when
    /// `accounts` knows the account.
    pub fn single(
        &self,
        it: &Item,
        to: &[Recipient],
        accounts: Option<&Snapshot>,
        months: usize,
    ) -> Result<Rendered> {
        let image = self.chart_for(it, accounts, months);
        let v = self.view(
            it,
            1,
            to,
            image.as_ref().map(|(i, c)| (i.cid.clone(), c.clone())),
        );
        let subject = subject_line(&self.render("subject.txt", &minijinja::context! { it => &v })?);
        let (sent_by, admin) = self.sent_by();
        let ctx = minijinja::context! {
            it => &v,
            subject => &subject,
            greeting => self.greeting(to),
            sent_by => sent_by,
            admin => admin,
        };
        Ok(Rendered {
            text: self.render("single.txt", &ctx)?,
            html: self.render("single.html", &ctx)?,
            subject,
            images: image.into_iter().map(|(i, _)| i).collect(),
        })
    }

    /// One recipient's notices of one evaluation, most important first
    /// (`items` come sorted), open ones before resolved ones; charts for
    /// the first `max_charts` open items. An item whose chart is the same
    /// picture as an earlier item's points to that one instead.
    pub fn digest(
        &self,
        items: &[&Item],
        as_of: NaiveDate,
        to: &[Recipient],
        accounts: Option<&Snapshot>,
        months: usize,
        max_charts: usize,
    ) -> Result<Rendered> {
        let (resolved, open): (Vec<&Item>, Vec<&Item>) = items
            .iter()
            .partition(|i| matches!(i.notice, Notice::Resolved { .. }));
        let new = open
            .iter()
            .filter(|i| matches!(i.notice, Notice::Started))
            .count();
        let who =
            to.iter()
                .map(person)
                .collect::<Vec<_>>()
                .join(if self.en { ", " } else { "、" });
        let mut charts = DigestCharts {
            images: Vec::new(),
            shown: Vec::new(),
            max: max_charts,
            accounts,
            months,
        };
        let mut n = 0;
        let mut sections = Vec::new();
        let titles = if self.en {
            ["Needs attention", "Resolved"]
        } else {
            ["需要关注", "已恢复"]
        };
        for (title, list) in titles.into_iter().zip([&open, &resolved]) {
            if list.is_empty() {
                continue;
            }
            let mut views = Vec::new();
            for it in list.iter() {
                n += 1;
                views.push(self.digest_item(it, n, to, &mut charts));
            }
            sections.push(minijinja::context! { title => title, items => views });
        }
        let images = charts.images;
        let subject = subject_line(&self.render(
            "digest_subject.txt",
            &minijinja::context! {
                as_of => as_of.to_string(),
                new => new,
                other => open.len() - new,
                resolved => resolved.len(),
            },
        )?);
        let (sent_by, admin) = self.sent_by();
        let ctx = minijinja::context! {
            subject => &subject,
            who => who,
            greeting => self.greeting(to),
            as_of => as_of.to_string(),
            sections => sections,
            sent_by => sent_by,
            admin => admin,
        };
        Ok(Rendered {
            text: self.render("digest.txt", &ctx)?,
            html: self.render("digest.html", &ctx)?,
            subject,
            images,
        })
    }
}

/// The charts of one digest so far: the images attached, which item
/// shows each picture first (by Content-ID), and how many may be attached.
struct DigestCharts<'a> {
    images: Vec<Image>,
    shown: Vec<(String, usize)>,
    max: usize,
    accounts: Option<&'a Snapshot>,
    months: usize,
}

impl Templates {
    /// Item `n` of a digest, with its chart while fewer than the most are
    /// attached and it is still open; a picture already shown by an
    /// earlier item is not attached again, the caption points to that item.
    fn digest_item(
        &self,
        it: &Item,
        n: usize,
        to: &[Recipient],
        charts: &mut DigestCharts<'_>,
    ) -> ItemView {
        let image =
            if charts.images.len() < charts.max && !matches!(it.notice, Notice::Resolved { .. }) {
                self.chart_for(it, charts.accounts, charts.months)
            } else {
                None
            };
        let mut same_as = None;
        let chart = match image {
            Some((img, caption)) => {
                if let Some((_, k)) = charts.shown.iter().find(|(c, _)| *c == img.cid) {
                    same_as = Some(*k);
                    None
                } else {
                    charts.shown.push((img.cid.clone(), n));
                    let c = (img.cid.clone(), caption);
                    charts.images.push(img);
                    Some(c)
                }
            }
            None => None,
        };
        let mut v = self.view(it, n, to, chart);
        if let Some(k) = same_as {
            v.caption = if self.en {
                format!("The chart is the one of item {k}.")
            } else {
                format!("图表同第 {k} 项。")
            };
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::Notice;
    use crate::mail::fixtures::item;
    use crate::model::Severity;

    /// A message in English says nothing in Chinese but the data, and
    /// writes each figure by its kind.
    // Over 80 lines: one item with every kind of figure, checked in both
    // message kinds; the list of expectations is the test.
    #[test]
    fn english_messages_have_no_chinese_outside_the_data() {
        use crate::format::Unit;
        let mut it = item(Notice::Started, Severity::Critical, "A", 0.4, "K1");
        it.account_name = "华联超市".into();
        it.title = "Orders down 62% on the previous period".into();
        it.action = "Call the buyer this week.".into();
        it.figures = vec![
            ("Revenue, last 90 days".into(), serde_json::json!(22930.4)),
            ("vs previous period".into(), serde_json::json!(-61.66)),
            ("Margin slip".into(), serde_json::json!(3.24)),
            ("Orders, last 90 days".into(), serde_json::json!(6.0)),
            ("Days since the last visit".into(), serde_json::json!(45)),
            ("Plain".into(), serde_json::json!(1234.5)),
        ];
        it.units = [
            ("Revenue, last 90 days", Unit::Money),
            ("vs previous period", Unit::Percent),
            ("Margin slip", Unit::Points),
            ("Orders, last 90 days", Unit::Count),
            ("Days since the last visit", Unit::Days),
        ]
        .into_iter()
        .map(|(k, u)| (k.to_string(), u))
        .collect();
        let mut resolved = item(
            Notice::Resolved { lasted_days: 19 },
            Severity::Warning,
            "B",
            0.1,
            "K2",
        );
        resolved.title = "Margin back".into();
        let to = [Recipient::new("Sun Tao", "sun.tao@example.com")];
        let data = ["华联超市", "华东", "张伟"];
        let tpl = Templates::load(None, "en").unwrap();
        let digest = tpl
            .digest(&[&it, &resolved], it.as_of, &to, None, 18, 3)
            .unwrap();
        let single = tpl.single(&it, &[], None, 18).unwrap();
        for (what, text) in [
            ("digest subject", &digest.subject),
            ("digest text", &digest.text),
            ("digest html", &digest.html),
            ("single subject", &single.subject),
            ("single text", &single.text),
            ("single html", &single.html),
        ] {
            let mut rest = text.clone();
            for d in data {
                rest = rest.replace(d, "");
            }
            let cjk: String = rest.chars().filter(|c| crate::format::is_cjk(*c)).collect();
            assert!(
                cjk.is_empty(),
                "{what} has Chinese outside the data: {cjk:?}\n{text}"
            );
        }
        for want in [
            "¥22,930",
            "−61.7%",
            "3.2 pts",
            "Orders, last 90 days: 6\n",
            "45 days",
            "1,234.50",
        ] {
            assert!(
                single.text.contains(want),
                "{want} missing:\n{}",
                single.text
            );
            assert!(
                digest.text.contains(want.trim_end()),
                "{want} missing:\n{}",
                digest.text
            );
        }
        // Chinese writes large amounts in 万, in the configured currency.
        let zh = Templates::load(None, "zh-CN").unwrap().currency("USD");
        let one = zh.single(&it, &[], None, 18).unwrap();
        assert!(one.text.contains("$2.29万"), "{}", one.text);
        assert!(one.text.contains("3.2 个百分点"), "{}", one.text);
    }

    #[test]
    fn shipped_templates_load_in_both_languages() {
        for loc in ["zh-CN", "en"] {
            Templates::load(None, loc).unwrap();
        }
        assert!(Templates::load(None, "fr").is_err());
    }
}
