//! Words: what a message says about an alert, in both languages — the
//! severity's name and colour, the status line, the subject prefix, the
//! footer naming rule and account, whom a reader is to the account, and the
//! `kamwatch silence add` command quoted for the shell. Pure.

use crate::alerts::{Item, Notice};
use crate::model::Severity;

use super::address::Recipient;
use super::mime::one_line;

pub(super) fn dash(s: &str) -> String {
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

pub(super) fn severity_color(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "#b00020",
        Severity::Warning => "#c77700",
        Severity::Info => "#2f6f9f",
    }
}

/// What the notice says about the alert's state, in one line.
pub(super) fn status_line(it: &Item, en: bool) -> String {
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
        (Notice::Final { open_days }, Some((s, _)), false) => {
            format!("{open_days} 天后仍是如此（自 {s} 起）；这是本预警的最后一次提醒")
        }
        (Notice::Final { open_days }, Some((s, _)), true) => {
            format!("still so after {open_days} days (since {s}); this is the last notice")
        }
        (Notice::Final { open_days }, None, false) => {
            format!("{open_days} 天后仍是如此；这是本预警的最后一次提醒")
        }
        (Notice::Final { open_days }, None, true) => {
            format!("still so after {open_days} days; this is the last notice")
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

pub(super) fn subject_prefix(it: &Item, en: bool) -> String {
    let sev = severity_label(it.severity, en);
    match (it.notice, en) {
        (Notice::Started, _) => sev.to_string(),
        (Notice::Raised { .. }, false) => format!("升级为{sev}"),
        (Notice::Raised { .. }, true) => format!("raised to {sev}"),
        (Notice::Repeat, false) => format!("仍未解决 · {sev}"),
        (Notice::Repeat, true) => format!("still open · {sev}"),
        (Notice::Aged, false) => format!("持续未解决 · {sev}"),
        (Notice::Aged, true) => format!("open for long · {sev}"),
        (Notice::Final { .. }, false) => format!("最后提醒 · {sev}"),
        (Notice::Final { .. }, true) => format!("last notice · {sev}"),
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
pub(super) fn person(r: &Recipient) -> String {
    if r.name.trim().is_empty() {
        r.email.clone()
    } else {
        one_line(&r.name).trim().to_string()
    }
}

/// `s` quoted for a POSIX shell when it needs it.
pub(super) fn shell_word(s: &str) -> String {
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
/// With the alert's key when it has one, so that the command holds back
/// this alert and not the rule's others for the account.
pub(super) fn silence_command(
    config: &str,
    rule: &str,
    key: &str,
    account: &str,
    until: chrono::NaiveDate,
    en: bool,
) -> String {
    let key = if key.is_empty() {
        String::new()
    } else {
        format!(" --key={}", shell_word(key))
    };
    format!(
        "kamwatch silence add{config} --rule={}{key} --account={} --until={until} --reason={}",
        shell_word(rule),
        shell_word(account),
        if en { "'why'" } else { "'原因'" }
    )
}

/// The line that names the rule and account of an item; the same in a
/// single message and a digest, so scripts (and tests) can find them.
pub(super) fn footer(it: &Item, en: bool) -> String {
    if en {
        format!(
            "rule {} · account {} · as of {}",
            it.rule, it.account_id, it.as_of
        )
    } else {
        format!(
            "规则 {} · 客户 {} · 评估日期 {}",
            it.rule, it.account_id, it.as_of
        )
    }
}

/// A rendered subject as one header line, without leading or trailing
/// blanks (a template's final newline would otherwise end it in a space).
pub(super) fn subject_line(s: &str) -> String {
    one_line(s).trim().to_string()
}

/// Whom `r` is to the item: its owner, its owner's manager, the catch-all,
/// the admin, or one of the rule's extra recipients.
fn role(it: &Item, r: &Recipient, catch_all: Option<&str>, admin: Option<&str>) -> Role {
    if same(it.owner_email.as_deref(), &r.email) {
        Role::Owner
    } else if same(it.manager_email.as_deref(), &r.email) {
        Role::Manager
    } else if same(catch_all, &r.email) {
        Role::CatchAll
    } else if same(admin, &r.email) {
        Role::Admin
    } else {
        Role::Extra
    }
}

/// Why `to` get this item: one sentence for one reader, a list for more.
pub(super) fn reason(
    it: &Item,
    to: &[Recipient],
    en: bool,
    catch_all: Option<&str>,
    admin: Option<&str>,
) -> String {
    let owner = it.owner.trim();
    let one = |r: &Recipient, you: bool| -> String {
        match (role(it, r, catch_all, admin), en, you) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_silence_command_survives_the_shell_whatever_the_ids() {
        let d = chrono::NaiveDate::from_ymd_opt(2026, 12, 28).unwrap();
        let cmd = silence_command("", "r", "", "-K4", d, true);
        assert_eq!(
            cmd,
            "kamwatch silence add --rule=r --account=-K4 --until=2026-12-28 --reason='why'"
        );
        assert!(silence_command("", "r", "", "K*1", d, true).contains("--account='K*1'"));
        assert!(silence_command("", "r", "", "a'b c", d, true).contains("--account='a'\\''b c'"));
        assert!(silence_command("", "r", "", "$(x)", d, true).contains("--account='$(x)'"));
        // An alert with a key: the command holds back that alert only.
        assert_eq!(
            silence_command("", "lapsed_visits", "senior", "K1", d, false),
            "kamwatch silence add --rule=lapsed_visits --key=senior --account=K1 --until=2026-12-28 --reason='原因'"
        );
    }

    /// The final notice reads after the rule's title ("Dropped out of
    /// tier A (now tier B)"): still so after N days, and the last; it says
    /// so in the subject too.
    #[test]
    fn the_final_notice_says_still_so_after_n_days_and_last() {
        use crate::mail::fixtures::item;
        let it = item(
            Notice::Final { open_days: 180 },
            Severity::Warning,
            "B",
            0.01,
            "K1",
        );
        assert_eq!(
            status_line(&it, true),
            "still so after 180 days (since 2026-10-01); this is the last notice"
        );
        assert_eq!(
            status_line(&it, false),
            "180 天后仍是如此（自 2026-10-01 起）；这是本预警的最后一次提醒"
        );
        assert_eq!(subject_prefix(&it, true), "last notice · Warning");
        assert_eq!(subject_prefix(&it, false), "最后提醒 · 警告");
    }
}
