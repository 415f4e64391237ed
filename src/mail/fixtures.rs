//! Test fixtures of the mail stage: an alert item full of characters that
//! must be escaped.

use chrono::NaiveDate;

use crate::alerts::{Item, Notice};
use crate::model::Severity;

pub fn item(notice: Notice, severity: Severity, tier: &str, share: f64, id: &str) -> Item {
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    Item {
        rule: "r<1>".into(),
        account_id: id.into(),
        account_name: "<b>Acme & Co</b>".into(),
        tier: tier.into(),
        share,
        region: "华东".into(),
        owner: "张伟".into(),
        owner_email: Some("zw@example.com".into()),
        manager_email: Some("boss@example.com".into()),
        manager: "孙涛".into(),
        key: String::new(),
        severity,
        title: "<script>x</script>".into(),
        figures: vec![("a<b".into(), serde_json::json!("<i>"))],
        units: Default::default(),
        action: "call".into(),
        notice,
        started_at: Some(d("2026-10-01")),
        as_of: d("2026-10-20"),
    }
}
