//! `kamwatch mail preview`: renders the last notice recorded for an alert
//! to files (HTML, text, PNG) without sending, so a template can be edited
//! with a browser open on the result.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OptionalExtension, params};

use crate::alerts::Item;
use crate::config::Loaded;

/// Which alert to preview.
pub enum Which<'a> {
    /// The alert's row number in the `alerts` table (SQLite rowid).
    Alert(i64),
    RuleAccount(&'a str, &'a str),
}

/// Writes `<rule>_<account>.html`, `.txt` and `-N.png` into `out` and
/// returns the files written. In the HTML file the `cid:` references point
/// at the PNG files, so a browser shows the chart.
pub fn preview(
    cfg: &Loaded,
    conn: &Connection,
    which: Which<'_>,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let (rule, account) = match which {
        Which::Alert(id) => conn
            .query_row(
                "SELECT rule, account_id FROM alerts WHERE rowid = ?1",
                [id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()?
            .with_context(|| {
                format!("there is no alert {id}; list alerts with `kamwatch history`")
            })?,
        Which::RuleAccount(r, a) => (r.to_string(), a.to_string()),
    };
    let row: Option<(String, String)> = conn
        .query_row(
            "SELECT item, recipients FROM notifications WHERE rule = ?1 AND account_id = ?2 ORDER BY id DESC LIMIT 1",
            params![rule, account],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((item, to)) = row else {
        bail!(
            "no warning of rule {rule} for account {account} has been recorded yet; run `kamwatch eval` first, or check the names with `kamwatch history`"
        );
    };
    let item: Item = serde_json::from_str(&item).context("reading the stored notice")?;
    let snap = crate::metrics::build(conn, item.as_of, &cfg.cfg.tiers)?;
    let tpl = super::render::Templates::load(Some(&cfg.templates_dir()), &cfg.cfg.mail.locale)?
        .with_mail(&cfg.cfg.mail, Some(&cfg.file))
        .with_values(crate::rules::RuleValues::load(cfg));
    // The readers it was routed to when it was recorded.
    let to: Vec<super::address::Recipient> = serde_json::from_str(&to).unwrap_or_default();
    let r = tpl.single(&item, &to, Some(&snap), cfg.cfg.mail.chart_months)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let stem = format!("{}_{}", safe(&rule), safe(&account));
    let mut html = r.html.clone();
    let mut files = Vec::new();
    for (i, img) in r.images.iter().enumerate() {
        let name = format!("{stem}-{}.png", i + 1);
        let p = out.join(&name);
        std::fs::write(&p, &img.png).with_context(|| format!("writing {}", p.display()))?;
        html = html.replace(&format!("cid:{}", img.cid), &name);
        files.push(p);
    }
    let text = format!("Subject: {}\n\n{}", r.subject, r.text);
    for (ext, body) in [("html", html), ("txt", text)] {
        let p = out.join(format!("{stem}.{ext}"));
        std::fs::write(&p, body).with_context(|| format!("writing {}", p.display()))?;
        files.insert(0, p);
    }
    Ok(files)
}
