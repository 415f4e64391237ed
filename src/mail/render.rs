//! Rendering: a notice (or a digest of them) into subject, text, HTML and
//! inline chart images through the minijinja templates, and those into the
//! MIME bytes the outbox keeps.
//!
//! Templates live in `<templates dir>/<locale>/<name>`; any file missing
//! there falls back to the copy built into the binary, so a missing folder
//! still works. Names ending in `.html` are auto-escaped by minijinja: data
//! can never become markup.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::NaiveDate;
use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use serde::Serialize;

use crate::alerts::{Item, Notice};
use crate::metrics::Snapshot;
use crate::rules::Severity;

use crate::format::{Locale, Style};

use super::{Recipient, footer, one_line};
use crate::config::Zone;

/// The template files, each in both shipped languages.
const NAMES: [&str; 6] = [
    "subject.txt",
    "single.txt",
    "single.html",
    "digest_subject.txt",
    "digest.txt",
    "digest.html",
];

fn builtin(locale: &str, name: &str) -> Option<&'static str> {
    macro_rules! t {
        ($l:literal, $n:literal) => {
            include_str!(concat!("../../config/templates/", $l, "/", $n))
        };
    }
    Some(match (locale, name) {
        ("zh-CN", "subject.txt") => t!("zh-CN", "subject.txt"),
        ("zh-CN", "single.txt") => t!("zh-CN", "single.txt"),
        ("zh-CN", "single.html") => t!("zh-CN", "single.html"),
        ("zh-CN", "digest_subject.txt") => t!("zh-CN", "digest_subject.txt"),
        ("zh-CN", "digest.txt") => t!("zh-CN", "digest.txt"),
        ("zh-CN", "digest.html") => t!("zh-CN", "digest.html"),
        ("en", "subject.txt") => t!("en", "subject.txt"),
        ("en", "single.txt") => t!("en", "single.txt"),
        ("en", "single.html") => t!("en", "single.html"),
        ("en", "digest_subject.txt") => t!("en", "digest_subject.txt"),
        ("en", "digest.txt") => t!("en", "digest.txt"),
        ("en", "digest.html") => t!("en", "digest.html"),
        _ => return None,
    })
}

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
    /// Charts drawn so far, by Content-ID: an alert mailed to its owner
    /// and in the manager's digest is drawn once.
    charts: std::cell::RefCell<std::collections::HashMap<String, Option<(Image, String)>>>,
}

impl Templates {
    /// Loads `dir/<locale>/*`, falling back to the built-in copies. A
    /// template that does not parse is an error naming its file and line.
    pub fn load(dir: Option<&Path>, locale: &str) -> Result<Templates> {
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(true);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        for name in NAMES {
            let file: Option<PathBuf> = dir.map(|d| d.join(locale).join(name));
            let src = match file.as_deref().filter(|f| f.exists()) {
                Some(f) => std::fs::read_to_string(f)
                    .with_context(|| format!("reading the mail template {}", f.display()))?,
                None => builtin(locale, name)
                    .with_context(|| {
                        format!("mail.locale {locale:?} has no built-in templates; use zh-CN or en")
                    })?
                    .to_string(),
            };
            let shown = file.filter(|f| f.exists()).map_or_else(
                || format!("built-in {locale}/{name}"),
                |f| f.display().to_string(),
            );
            env.add_template_owned(name, src)
                .map_err(|e| anyhow::anyhow!("mail template {shown}: {e}; fix the template or delete it to use the built-in one"))?;
        }
        Ok(Templates {
            env,
            en: locale == "en",
            from: "kamwatch".into(),
            admin: None,
            catch_all: None,
            config: None,
            style: Style::new(
                Locale::parse(locale).unwrap_or_default(),
                crate::format::DEFAULT_CURRENCY,
            ),
            charts: Default::default(),
        })
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

/// One inline image: its Content-ID (without brackets) and PNG bytes.
#[derive(Debug, Clone)]
pub struct Image {
    pub cid: String,
    pub png: Vec<u8>,
}

/// A rendered message, before MIME.
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub images: Vec<Image>,
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

fn dash(s: &str) -> String {
    if s.trim().is_empty() {
        "—".into()
    } else {
        s.to_string()
    }
}

pub(super) fn severity_label(s: Severity, en: bool) -> &'static str {
    match (s, en) {
        (Severity::Info, false) => "提示",
        (Severity::Warning, false) => "警告",
        (Severity::Critical, false) => "严重",
        (Severity::Info, true) => "Info",
        (Severity::Warning, true) => "Warning",
        (Severity::Critical, true) => "Critical",
    }
}

fn severity_color(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "#b00020",
        Severity::Warning => "#c77700",
        Severity::Info => "#2f6f9f",
    }
}

/// What the notice says about the alert's state, in one line.
fn status_line(it: &Item, en: bool) -> String {
    let since = it.started_at.map(|s| (s, (it.as_of - s).num_days().max(0)));
    let l = |s| severity_label(s, en);
    match (it.notice, since, en) {
        (Notice::Started, _, false) => "新预警".to_string(),
        (Notice::Started, _, true) => "new".to_string(),
        (Notice::Raised { from }, _, false) => {
            format!("严重程度由{}升为{}", l(from), l(it.severity))
        }
        (Notice::Raised { from }, _, true) => {
            format!("raised from {} to {}", l(from), l(it.severity))
        }
        (Notice::Repeat, Some((s, n)), false) => format!("仍未解决：自 {s} 起已 {n} 天"),
        (Notice::Repeat, Some((s, n)), true) => format!("still open: {n} days since {s}"),
        (Notice::Aged, Some((s, n)), false) => {
            format!("持续未解决：自 {s} 起已 {n} 天，已抄送主管")
        }
        (Notice::Aged, Some((s, n)), true) => {
            format!("open for long: {n} days since {s}; the manager is copied")
        }
        (Notice::Resolved { lasted_days }, Some((s, _)), false) => {
            format!("已恢复：自 {s} 起持续 {lasted_days} 天")
        }
        (Notice::Resolved { lasted_days }, Some((s, _)), true) => {
            format!("resolved: lasted {lasted_days} days from {s}")
        }
        (Notice::Resolved { lasted_days }, None, false) => format!("已恢复：持续 {lasted_days} 天"),
        (Notice::Resolved { lasted_days }, None, true) => {
            format!("resolved: lasted {lasted_days} days")
        }
        (Notice::Repeat | Notice::Aged, None, false) => "仍未解决".to_string(),
        (Notice::Repeat | Notice::Aged, None, true) => "still open".to_string(),
    }
}

fn subject_prefix(it: &Item, en: bool) -> String {
    let sev = severity_label(it.severity, en);
    match (it.notice, en) {
        (Notice::Started, _) => sev.to_string(),
        (Notice::Raised { .. }, false) => format!("升级为{sev}"),
        (Notice::Raised { .. }, true) => format!("raised to {sev}"),
        (Notice::Repeat, false) => format!("仍未解决 · {sev}"),
        (Notice::Repeat, true) => format!("still open · {sev}"),
        (Notice::Aged, false) => format!("持续未解决 · {sev}"),
        (Notice::Aged, true) => format!("open for long · {sev}"),
        (Notice::Resolved { .. }, false) => "已恢复".to_string(),
        (Notice::Resolved { .. }, true) => "resolved".to_string(),
    }
}

/// Whom a recipient is to an item.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Owner,
    Manager,
    CatchAll,
    Admin,
    Extra,
}

fn same(a: Option<&str>, b: &str) -> bool {
    a.is_some_and(|a| a.trim().eq_ignore_ascii_case(b.trim()))
}

/// A name for a person: theirs from the master, else their address.
fn person(r: &Recipient) -> String {
    if r.name.trim().is_empty() {
        r.email.clone()
    } else {
        one_line(&r.name).trim().to_string()
    }
}

/// `s` quoted for a POSIX shell when it needs it.
fn shell_word(s: &str) -> String {
    // No `*`: unquoted, the shell would expand it to file names.
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", one_line(s).replace('\'', "'\\''"))
    }
}

/// `kamwatch silence add` for one alert. Options are written `--name=value`
/// so that a value starting with `-` (an account `-K4`) is not read as an
/// option, and each value is quoted for the shell where it needs it.
fn silence_command(
    config: &str,
    rule: &str,
    account: &str,
    until: chrono::NaiveDate,
    en: bool,
) -> String {
    format!(
        "kamwatch silence add{config} --rule={} --account={} --until={until} --reason={}",
        shell_word(rule),
        shell_word(account),
        if en { "'why'" } else { "'原因'" }
    )
}

impl Templates {
    fn role(&self, it: &Item, r: &Recipient) -> Role {
        if same(it.owner_email.as_deref(), &r.email) {
            Role::Owner
        } else if same(it.manager_email.as_deref(), &r.email) {
            Role::Manager
        } else if same(self.catch_all.as_deref(), &r.email) {
            Role::CatchAll
        } else if same(self.admin.as_deref(), &r.email) {
            Role::Admin
        } else {
            Role::Extra
        }
    }

    /// Why `to` get this item: one sentence for one reader, a list for more.
    fn reason(&self, it: &Item, to: &[Recipient]) -> String {
        let en = self.en;
        let owner = it.owner.trim();
        let one = |r: &Recipient, you: bool| -> String {
            match (self.role(it, r), en, you) {
                (Role::Owner, false, true) => "您是该客户的负责人".into(),
                (Role::Owner, true, true) => "you own this account".into(),
                (Role::Owner, false, false) => "客户负责人".into(),
                (Role::Owner, true, false) => "owner of the account".into(),
                (Role::Manager, false, true) if !owner.is_empty() => {
                    format!("您是该客户负责人{owner}的主管")
                }
                (Role::Manager, false, _) => "该客户负责人的主管".into(),
                (Role::Manager, true, true) if !owner.is_empty() => {
                    format!("you manage {owner}, who owns this account")
                }
                (Role::Manager, true, _) => "manager of the account's owner".into(),
                (Role::CatchAll, false, _) => {
                    "该客户在客户主数据中没有负责人邮箱，预警转给默认收件人（mail.catch_all）".into()
                }
                (Role::CatchAll, true, _) => "the account has no owner email in the customer master, so its warnings go to mail.catch_all".into(),
                (Role::Admin, false, _) => "该客户没有负责人邮箱，也未设置 mail.catch_all，预警转给管理员（mail.admin）".into(),
                (Role::Admin, true, _) => "the account has no owner email and mail.catch_all is not set, so its warnings go to the admin (mail.admin)".into(),
                (Role::Extra, false, _) => format!("规则 {} 的设置（rule_settings 的 recipients）把您列为收件人", it.rule),
                (Role::Extra, true, _) => format!("the settings of rule {} (recipients in rule_settings) list you", it.rule),
            }
        };
        match to {
            [r] => one(r, true),
            many => many
                .iter()
                .map(|r| {
                    if en {
                        format!("{} ({})", person(r), one(r, false))
                    } else {
                        format!("{}（{}）", person(r), one(r, false))
                    }
                })
                .collect::<Vec<_>>()
                .join(if en { "; " } else { "；" }),
        }
    }

    /// The command that silences this alert for 30 days from its evaluation.
    fn silence(&self, it: &Item) -> String {
        let until = it.as_of + chrono::Days::new(30);
        let config = self
            .config
            .as_deref()
            .map(|c| format!(" --config={}", shell_word(&c.display().to_string())))
            .unwrap_or_default();
        silence_command(&config, &it.rule, &it.account_id, until, self.en)
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
            reason: self.reason(it, to),
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
        let mut images: Vec<Image> = Vec::new();
        // Content-ID -> the item number that shows it.
        let mut shown: Vec<(String, usize)> = Vec::new();
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
                let image =
                    if images.len() < max_charts && !matches!(it.notice, Notice::Resolved { .. }) {
                        self.chart_for(it, accounts, months)
                    } else {
                        None
                    };
                let mut same_as = None;
                let chart = match image {
                    Some((img, caption)) => {
                        if let Some((_, k)) = shown.iter().find(|(c, _)| *c == img.cid) {
                            same_as = Some(*k);
                            None
                        } else {
                            shown.push((img.cid.clone(), n));
                            let c = (img.cid.clone(), caption);
                            images.push(img);
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
                views.push(v);
            }
            sections.push(minijinja::context! { title => title, items => views });
        }
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

/// A rendered subject as one header line, without leading or trailing
/// blanks (a template's final newline would otherwise end it in a space).
fn subject_line(s: &str) -> String {
    one_line(s).trim().to_string()
}

/// `s` with CRLF line endings. lettre converts a body itself, but by
/// inserting each `\r` in place, which is quadratic: a digest of a few
/// thousand warnings took over a minute. Given CRLF, it has nothing to do.
fn crlf(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 32);
    let mut prev = '\0';
    for c in s.chars() {
        if c == '\n' && prev != '\r' {
            out.push('\r');
        }
        out.push(c);
        prev = c;
    }
    out
}

/// The message as MIME: multipart/alternative of the text and the HTML,
/// the HTML wrapped in multipart/related with its inline images; marked
/// `Auto-Submitted: auto-generated` (RFC 3834: no auto-replies to it), its
/// Date in `zone` (`schedule.timezone`).
pub fn compose(
    from: &Mailbox,
    to: &[Recipient],
    message_id: &str,
    r: &Rendered,
    zone: Zone,
) -> Result<Message> {
    use lettre::message::header::{HeaderName, HeaderValue};
    let mut b = Message::builder()
        .from(from.clone())
        .subject(one_line(&r.subject).trim())
        .message_id(Some(message_id.to_string()))
        .user_agent(format!("kamwatch {}", env!("CARGO_PKG_VERSION")));
    for rcpt in to {
        let address = rcpt
            .email
            .parse()
            .with_context(|| format!("{:?} is not a mail address", rcpt.email))?;
        let name = (!rcpt.name.trim().is_empty()).then(|| one_line(&rcpt.name));
        b = b.to(Mailbox::new(name, address));
    }
    let text = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .body(crlf(&r.text));
    let html = SinglePart::builder()
        .header(ContentType::TEXT_HTML)
        .body(crlf(&r.html));
    let alt = MultiPart::alternative().singlepart(text);
    let alt = if r.images.is_empty() {
        alt.singlepart(html)
    } else {
        let png = ContentType::parse("image/png").context("the PNG content type")?;
        let mut related = MultiPart::related().singlepart(html);
        for i in &r.images {
            related = related
                .singlepart(Attachment::new_inline(i.cid.clone()).body(i.png.clone(), png.clone()));
        }
        alt.multipart(related)
    };
    let mut m = b.multipart(alt)?;
    let h = |name: &'static str, value: String| {
        HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
    };
    m.headers_mut()
        .insert_raw(h("Date", zone.rfc2822(crate::config::now())));
    m.headers_mut()
        .insert_raw(h("Auto-Submitted", "auto-generated".into()));
    Ok(m)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_silence_command_survives_the_shell_whatever_the_ids() {
        let d = chrono::NaiveDate::from_ymd_opt(2026, 12, 28).unwrap();
        let cmd = silence_command("", "r", "-K4", d, true);
        assert_eq!(
            cmd,
            "kamwatch silence add --rule=r --account=-K4 --until=2026-12-28 --reason='why'"
        );
        assert!(silence_command("", "r", "K*1", d, true).contains("--account='K*1'"));
        assert!(silence_command("", "r", "a'b c", d, true).contains("--account='a'\\''b c'"));
        assert!(silence_command("", "r", "$(x)", d, true).contains("--account='$(x)'"));
    }

    use super::*;

    #[test]
    fn line_endings_become_crlf_once() {
        assert_eq!(crlf("a\nb\r\nc\n\n"), "a\r\nb\r\nc\r\n\r\n");
        assert_eq!(crlf("\n中文\r"), "\r\n中文\r");
        assert_eq!(crlf(""), "");
    }

    #[test]
    fn no_header_injection_and_utf8_is_encoded() {
        let r = Rendered {
            subject: "警告 · 华联超市\r\nBcc: evil@example.com".into(),
            text: "t".into(),
            html: "<p>h</p>".into(),
            images: Vec::new(),
        };
        let to = [Recipient::new(
            "张伟\r\nBcc: evil@example.com",
            "zw@example.com",
        )];
        let from: Mailbox = "kamwatch <k@example.com>".parse().unwrap();
        let mime = compose(&from, &to, "<x@kamwatch>", &r, Zone::Local)
            .unwrap()
            .formatted();
        let text = String::from_utf8_lossy(&mime);
        assert!(!text.contains("\r\nBcc:"), "{text}");
        let head = &text[..text.find("\r\n\r\n").unwrap()];
        assert!(head.is_ascii(), "{head}");
        assert!(head.contains("=?utf-8?"), "{head}");
    }

    #[test]
    fn shipped_templates_load_in_both_languages() {
        for loc in ["zh-CN", "en"] {
            Templates::load(None, loc).unwrap();
        }
        assert!(Templates::load(None, "fr").is_err());
    }
}
