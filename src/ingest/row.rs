//! Rows: one record's cells read as its dataset's fields and validated
//! (identifiers, dates in the configured order or with an offset, amounts
//! within `ingest.max_amount`, one email address, a tier), into the row the
//! store writes. Every problem is reported as (column, message), so the
//! errors file can name the cell. Touches nothing but the record it is
//! given.

use chrono::NaiveDate;
use csv::StringRecord;

use super::columns::ColumnMap;
use super::values;
use crate::config::{Dataset, DatasetConfig, Zone};
use crate::model::Tier;
use crate::store::{AccountRow, Extra, InventoryRow, OrderRow, ReceivableRow, VisitRow};

/// How cells are read beyond their dataset's columns.
#[derive(Clone, Copy)]
pub(super) struct CellRules {
    /// Amounts beyond ± this are row errors (`ingest.max_amount`).
    pub(super) max_amount: f64,
    /// A time with an offset (`2026-11-28T20:00:00Z`) is the date it is in
    /// this zone (`schedule.timezone`), the business day of every date.
    pub(super) zone: Zone,
}

/// A row of one dataset, validated.
pub(super) enum Parsed {
    Account(AccountRow, Extra),
    Order(OrderRow),
    Visit(VisitRow),
    Receivable(ReceivableRow),
    Stock(InventoryRow),
}

/// The problems of one row: (column, message).
pub(super) type CellErrors = Vec<(String, String)>;

/// Parses and validates one row. `reuse`: a row already written, whose
/// strings an order line refills instead of allocating its own.
pub(super) fn parse_row(
    dataset: Dataset,
    ds: &DatasetConfig,
    map: &ColumnMap,
    rec: &StringRecord,
    errs: &mut CellErrors,
    reuse: Option<Parsed>,
    rules: CellRules,
) -> Option<Parsed> {
    let mut c = Cells {
        ds,
        map,
        rec,
        rules,
        errs,
    };
    match dataset {
        Dataset::Accounts => c.account(),
        Dataset::Orders => c.order(reuse),
        Dataset::Visits => c.visit(),
        Dataset::Receivables => c.receivable(),
        Dataset::Inventory => c.stock(),
    }
}

/// One record's cells, read field by field; each problem goes to `errs`.
struct Cells<'a> {
    ds: &'a DatasetConfig,
    map: &'a ColumnMap,
    rec: &'a StringRecord,
    rules: CellRules,
    errs: &'a mut CellErrors,
}

impl<'a> Cells<'a> {
    fn raw(&self, field: &str) -> &'a str {
        let rec: &'a StringRecord = self.rec;
        self.map.idx(field).and_then(|i| rec.get(i)).unwrap_or("")
    }

    fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errs.push((self.map.header(field), message.into()));
    }

    fn text(&self, field: &str) -> Option<String> {
        Some(self.raw(field).trim())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    fn required(&mut self, field: &str) -> String {
        match self.text(field) {
            Some(v) => v,
            None => {
                self.error(field, "is empty but required");
                String::new()
            }
        }
    }

    /// An identifier (see `values::identifier`): "" when empty, which a
    /// required one reports.
    fn id(&mut self, field: &str, need: bool) -> String {
        match values::identifier(self.raw(field)) {
            Ok(v) => {
                if v.is_empty() && need {
                    self.error(field, "is empty but required");
                }
                v.into_owned()
            }
            Err(e) => {
                self.error(field, e);
                String::new()
            }
        }
    }

    /// The cell of `field` as an identifier into `dst`; false if it is
    /// empty (a bad one is reported here).
    fn put(&mut self, dst: &mut String, field: &str) -> bool {
        dst.clear();
        match values::identifier(self.raw(field)) {
            Ok(v) => {
                dst.push_str(&v);
                !v.is_empty()
            }
            Err(e) => {
                self.error(field, e);
                true
            }
        }
    }

    fn date(&mut self, field: &str, need: bool) -> Option<NaiveDate> {
        let v = self.raw(field);
        if !need && v.trim().is_empty() {
            return None;
        }
        if let Some(at) = values::instant_with_offset(v) {
            return Some(self.rules.zone.naive_at(at).date());
        }
        match values::parse_date_in(v, self.ds.date_order) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(field, e);
                None
            }
        }
    }

    fn number(&mut self, field: &str, need: bool) -> Option<f64> {
        let max_amount = self.rules.max_amount;
        match values::parse_number(self.raw(field)) {
            Ok(None) if need => {
                self.error(field, "is empty but required");
                None
            }
            Ok(Some(v)) if v.abs() > max_amount => {
                let message = format!(
                    "{} is beyond the amounts accepted (±{max_amount:e}, `ingest.max_amount`): a typo or a broken export? Fix the cell, or raise `ingest.max_amount` in the config",
                    values::excerpt(self.raw(field).trim())
                );
                self.error(field, message);
                None
            }
            Ok(v) => v,
            Err(e) => {
                self.error(field, e);
                None
            }
        }
    }

    /// One address per cell, checked like the mail does; a list is refused
    /// with what to do, not mailed to half of it.
    fn email(&mut self, field: &str) -> Option<String> {
        let v = self.text(field)?;
        // `张伟 <zhang.wei@example.com>`, as mail clients copy it: the
        // address is what is in the brackets (the name is the owner column's).
        let v = match (v.rfind('<'), v.trim_end().strip_suffix('>')) {
            (Some(open), Some(inner)) if !v[..open].contains(['<', '>', '@']) => {
                inner[open + 1..].trim().to_string()
            }
            _ => v,
        };
        let parts: Vec<&str> = v
            .split([';', ',', '；', '，', ' ', '\t', '\n', '\r'])
            .filter(|p| !p.is_empty())
            .collect();
        if parts.len() > 1 {
            let message = format!(
                "{} holds {} addresses; write one address per account here (the account's owner or manager). To copy more people on an account's warnings, use a rule's `recipients` in `rule_settings`",
                values::excerpt(&v),
                parts.len()
            );
            self.error(field, message);
            return None;
        }
        if !crate::config::sendable_address(&v) {
            let message = format!(
                "{} is not an email address kamwatch can send to (name@example.com, ASCII, no address literal); fix it or leave the cell empty",
                values::excerpt(&v)
            );
            self.error(field, message);
            return None;
        }
        Some(v)
    }

    /// The master's tier column: A, B or C in any case, or empty.
    fn tier(&mut self, field: &str) -> Option<Tier> {
        let t = self.text(field)?;
        let tier = Tier::parse(&t.to_ascii_uppercase());
        if tier.is_none() {
            let message = format!(
                "{} is not a tier; write A, B or C, or leave it empty to let kamwatch compute it",
                values::excerpt(&t)
            );
            self.error(field, message);
        }
        tier
    }

    fn account(&mut self) -> Option<Parsed> {
        let id = self.id("id", true);
        let name = self.required("name");
        let credit_limit = self.number("credit_limit", false);
        let tier_override = self.tier("tier");
        Some(Parsed::Account(
            AccountRow {
                id,
                name,
                region: self.text("region"),
                owner: self.text("owner"),
                owner_email: self.email("owner_email"),
                manager_email: self.email("manager_email"),
                manager: self.text("manager"),
            },
            Extra {
                credit_limit,
                tier_override,
                attrs: None,
            },
        ))
    }

    fn order(&mut self, reuse: Option<Parsed>) -> Option<Parsed> {
        let mut r = match reuse {
            Some(Parsed::Order(r)) => r,
            _ => OrderRow {
                order_id: String::new(),
                line: String::new(),
                account_id: String::new(),
                date: NaiveDate::MIN,
                sku: None,
                qty: None,
                revenue: 0.0,
                cost: 0.0,
            },
        };
        for (dst, field) in [
            (&mut r.order_id, "order_id"),
            (&mut r.account_id, "account_id"),
        ] {
            if !self.put(dst, field) {
                self.error(field, "is empty but required");
            }
        }
        // An empty line number is filled in by the caller: the order's
        // rows are numbered in file order.
        self.put(&mut r.line, "line");
        // A line number is a number: `0010` in one export and `10` in
        // another (or a workbook's numeric cell) are one line, not two.
        if r.line.len() > 1 && r.line.starts_with('0') && r.line.bytes().all(|b| b.is_ascii_digit())
        {
            let zeros = r.line.len() - r.line.trim_start_matches('0').len();
            r.line.drain(..zeros.min(r.line.len() - 1));
        }
        let mut sku = r.sku.take().unwrap_or_default();
        r.sku = self.put(&mut sku, "sku").then_some(sku);
        let d = self.date("date", true);
        r.qty = self.number("qty", false);
        let revenue = self.number("revenue", true);
        let cost = self.number("cost", true);
        r.date = d?;
        r.revenue = revenue?;
        r.cost = cost?;
        Some(Parsed::Order(r))
    }

    fn visit(&mut self) -> Option<Parsed> {
        let account_id = self.id("account_id", true);
        let d = self.date("date", true);
        Some(Parsed::Visit(VisitRow {
            account_id,
            date: d?,
            visitor: self.text("visitor").unwrap_or_default(),
            role: self.text("role"),
        }))
    }

    fn receivable(&mut self) -> Option<Parsed> {
        let account_id = self.id("account_id", true);
        let invoice = self.id("invoice", true);
        let amount = self.number("amount", true);
        let due = self.date("due_date", true);
        let issued = self.date("invoice_date", false);
        Some(Parsed::Receivable(ReceivableRow {
            account_id,
            invoice,
            amount: amount?,
            due_date: due?,
            invoice_date: issued,
        }))
    }

    fn stock(&mut self) -> Option<Parsed> {
        let sku = self.id("sku", true);
        let on_hand = self.number("on_hand", true);
        Some(Parsed::Stock(InventoryRow {
            sku,
            account_id: self.id("account_id", false),
            on_hand: on_hand?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::columns::map_columns;
    use super::*;

    fn orders_config() -> DatasetConfig {
        let text = include_str!("../../config/kamwatch.yaml");
        crate::config::parse(text).unwrap().datasets.orders
    }

    /// A row refilled from a written one holds nothing of it.
    #[test]
    fn a_reused_order_row_is_the_new_row_only() {
        let ds = orders_config();
        let h = StringRecord::from(vec![
            "订单编号",
            "行号",
            "客户编号",
            "订单日期",
            "产品编号",
            "数量",
            "金额",
            "成本",
        ]);
        let map = map_columns(Dataset::Orders, &ds, &h).unwrap();
        let parse = |cells: Vec<&str>, reuse| {
            let mut errs = Vec::new();
            let p = parse_row(
                Dataset::Orders,
                &ds,
                &map,
                &StringRecord::from(cells),
                &mut errs,
                reuse,
                CellRules {
                    max_amount: 1e12,
                    zone: Zone::Local,
                },
            );
            (p, errs)
        };
        let (old, errs) = parse(
            vec![
                "SO-LONG-ID-1",
                "3",
                "KH-LONG",
                "2026-01-05",
                "SP-9",
                "4",
                "10",
                "5",
            ],
            None,
        );
        assert!(errs.is_empty(), "{errs:?}");
        let (new, errs) = parse(
            vec!["S2", "", "K", "2026-02-01", " ", "", "1,234.5", "(2)"],
            old,
        );
        assert!(errs.is_empty(), "{errs:?}");
        let Some(Parsed::Order(r)) = new else {
            panic!("not an order")
        };
        assert_eq!(
            r,
            OrderRow {
                order_id: "S2".into(),
                line: String::new(),
                account_id: "K".into(),
                date: chrono::NaiveDate::from_ymd_opt(2026, 2, 1).unwrap(),
                sku: None,
                qty: None,
                revenue: 1234.5,
                cost: -2.0,
            }
        );
        // A bad row reports its cells, reused or not.
        let (bad, errs) = parse(
            vec!["", "1", "K", "x", "", "", "1", "1"],
            Some(Parsed::Order(r)),
        );
        assert!(bad.is_none());
        let cols: Vec<&str> = errs.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(cols, ["订单编号 (order_id)", "订单日期 (date)"]);
    }
}
