//! Write: the three CSV exports as an ERP writes them (Chinese headers,
//! amounts in yuan with two decimals, `\n` line ends), each written
//! atomically (dot-prefixed temp name, fsync, rename) so a watcher of the
//! folder never sees a partial file. Touches only the folder it is given.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::NaiveDate;

use super::build::{Account, Order, Visit, date_at};
use super::cast::*;

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

pub(super) fn money(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// Writes `name` in `dir` through a dot-prefixed temp file that is synced and then renamed, so
/// a watcher of `dir` never sees a partial file.
pub(super) fn write_atomic<F>(dir: &Path, name: &str, header: &[&str], rows: F) -> Result<PathBuf>
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

/// `销售明细_<start>-<end>.csv`: one row per order line, order ids
/// `SO<yymmdd><nnnn>` numbered within each day; returns the file and the
/// number of lines.
pub(super) fn write_orders(
    dir: &Path,
    name: &str,
    start: NaiveDate,
    accounts: &[Account],
    orders: &[Order],
) -> Result<(PathBuf, usize)> {
    let mut order_lines = 0;
    let path = write_atomic(dir, name, &ORDER_HEADER, |w| {
        let mut prev_day = -1;
        let mut seq = 0;
        for o in orders {
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
    })?;
    Ok((path, order_lines))
}

/// `拜访记录_<start>-<end>.csv`: one row per visit, by the rep or the
/// manager.
pub(super) fn write_visits(
    dir: &Path,
    name: &str,
    start: NaiveDate,
    accounts: &[Account],
    visits: &[Visit],
) -> Result<PathBuf> {
    write_atomic(dir, name, &VISIT_HEADER, |w| {
        for v in visits {
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
    })
}

/// `客户主数据_<end>.csv`: the customer master.
pub(super) fn write_accounts(dir: &Path, name: &str, accounts: &[Account]) -> Result<PathBuf> {
    write_atomic(dir, name, &ACCOUNT_HEADER, |w| {
        for a in accounts {
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
    })
}
